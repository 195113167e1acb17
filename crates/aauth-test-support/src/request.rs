//! Requests as a server receives them: built as a client would (absolute URI), signed,
//! then turned into the server's view (origin-form URI, `Host` header).

use aauth_headers::Scheme;
use aauth_keys::Signer;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_signing::{sign_request, sign_request_unique};
use http::request::Parts;
use http::{HeaderMap, Request};

/// A request to the absolute `url` with `body`, typed `application/json` unless empty.
///
/// # Panics
///
/// If `method` or `url` is not valid HTTP.
#[must_use]
pub fn build(method: &str, url: &str, body: &[u8]) -> Request<Vec<u8>> {
    let mut req = Request::builder().method(method).uri(url);
    if !body.is_empty() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    req.body(body.to_vec()).expect("a valid request")
}

/// A request to the absolute `url`, with `body` as JSON (and its content type) if any.
///
/// # Panics
///
/// If `method` or `url` is not valid HTTP.
#[must_use]
pub fn json(method: &str, url: &str, body: Option<&serde_json::Value>) -> Request<Vec<u8>> {
    build(
        method,
        url,
        &body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    )
}

/// What a server sees of the client's `parts`: the URI in origin form, the authority in
/// `Host`.
///
/// # Panics
///
/// If the URI has no authority.
#[must_use]
pub fn as_server(mut parts: Parts) -> Parts {
    let authority = parts
        .uri
        .authority()
        .expect("an absolute URI")
        .as_str()
        .to_owned();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .expect("an origin-form URI");
    parts
        .headers
        .insert(http::header::HOST, authority.parse().expect("a valid Host"));
    parts
}

/// [`as_server`] for a whole request.
///
/// # Panics
///
/// If the URI has no authority.
#[must_use]
pub fn to_server<B>(req: Request<B>) -> Request<B> {
    let (parts, body) = req.into_parts();
    Request::from_parts(as_server(parts), body)
}

/// `req` signed by `key` under `scheme` at `at` with the default covered components, as
/// the server receives it ([`to_server`]).
///
/// # Panics
///
/// If signing fails or the URI has no authority.
#[must_use]
pub fn signed<B: AsRef<[u8]>>(
    mut req: Request<B>,
    key: &dyn Signer,
    scheme: &Scheme,
    at: UnixTime,
) -> Request<B> {
    sign_request(&mut req, key, scheme, at).expect("the request signs");
    to_server(req)
}

/// As [`signed`], with a fresh nonce for a non-idempotent method (so that a replay
/// cache accepts each request once).
///
/// # Panics
///
/// If signing fails or the URI has no authority.
#[must_use]
pub fn signed_unique<B: AsRef<[u8]>>(
    mut req: Request<B>,
    key: &dyn Signer,
    scheme: &Scheme,
    at: UnixTime,
) -> Request<B> {
    sign_request_unique(&mut req, key, scheme, at, &mut OsRandom).expect("the request signs");
    to_server(req)
}

/// An operator's `GET url` (with its query) as it reaches the server: signed under
/// `hwk` with `key`, the query covered, at `at`; unsigned without a key.
///
/// # Panics
///
/// If `url` is not a URL or signing fails.
#[must_use]
pub fn operator_get(url: &str, key: Option<&aauth_keys::PrivateKey>, at: UnixTime) -> Parts {
    let (mut parts, ()) = Request::get(url)
        .body(())
        .expect("a GET request")
        .into_parts();
    if let Some(key) = key {
        let scheme = aauth_signing::hwk_scheme(key.public_key());
        aauth_signing::sign(
            &mut parts,
            &[],
            &[aauth_signing::SigningKey::new("sig", key, &scheme)],
            &aauth_signing::SignOptions::default().with_query(),
            at,
        )
        .expect("the request signs");
    }
    parts
}

/// The value of header `name` as text; empty when absent.
///
/// # Panics
///
/// If the value is not visible ASCII.
#[must_use]
pub fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().expect("a text header").to_owned())
        .unwrap_or_default()
}
