//! What a server publishes, read back.

use aauth_keys::{JwkSet, PublicKey};
use aauth_metadata::Published;

/// The key `kid` in the JWKS that `published` serves at `/jwks.json`.
///
/// # Panics
///
/// If there is no such JWKS or no such key in it.
#[must_use]
pub fn published_key(published: &Published, kid: &str) -> PublicKey {
    let jwks = published
        .respond(&http::Method::GET, "/jwks.json")
        .expect("a JWKS at /jwks.json");
    JwkSet::from_json(jwks.body())
        .expect("a valid JWKS")
        .find(kid)
        .expect("the key is published")
}
