//! Fetching a source's keys: the metadata document (its `issuer` checked, its `jwks_uri`
//! on the issuer's origin or admitted), then the JWKS, indexed once; and [`discover`], the
//! uncached fetch of a metadata document.

use std::collections::BTreeMap;
use std::sync::Arc;

use aauth_keys::JwkSet;
use aauth_tokens::ServerId;

use super::{CachedKey, DiscoveryError, Inner, KeySet, KeySource};
use crate::freshness::{Freshness, freshness};
use crate::{Fetch, FetchError, Fetched, HttpsUrl, KeyDiscovery, MetadataError};

pub(super) fn source_url(source: &KeySource) -> String {
    match source {
        KeySource::Issuer { iss, dwk } => iss.well_known(dwk),
        KeySource::Jwks(u) => u.as_str().to_owned(),
    }
}

async fn get_doc<F: Fetch>(inner: &Inner<F>, url: &HttpsUrl) -> Result<Fetched, DiscoveryError> {
    let fail = |error| DiscoveryError::Fetch {
        url: url.as_str().to_owned(),
        error,
    };
    let doc = inner.fetcher.get(url).await.map_err(fail)?;
    if doc.status != 200 {
        return Err(fail(FetchError::Status {
            status: doc.status,
            retry_after: None,
        }));
    }
    Ok(doc)
}

fn shorter(a: Freshness, b: Freshness) -> Freshness {
    match (a, b) {
        (Freshness::NoStore, _) | (_, Freshness::NoStore) => Freshness::NoStore,
        (Freshness::MaxAge(x), Freshness::MaxAge(y)) => Freshness::MaxAge(x.min(y)),
        (Freshness::MaxAge(x), Freshness::Unspecified)
        | (Freshness::Unspecified, Freshness::MaxAge(x)) => Freshness::MaxAge(x),
        (Freshness::Unspecified, Freshness::Unspecified) => Freshness::Unspecified,
    }
}

/// Fetches a source: metadata (checked) then JWKS, or the JWKS directly.
pub(super) async fn fetch<F: Fetch, K: CachedKey>(
    inner: &Inner<F>,
    source: &KeySource,
) -> Result<(Arc<KeySet<K>>, Freshness), DiscoveryError> {
    let now = inner.clock.now();
    let (jwks_uri, meta_fresh) = match source {
        KeySource::Jwks(url) => (url.clone(), Freshness::Unspecified),
        KeySource::Issuer { iss, dwk } => {
            let url = HttpsUrl::well_known(iss, dwk).map_err(|e| DiscoveryError::Metadata {
                url: iss.well_known(dwk),
                error: MetadataError::Invalid {
                    member: "dwk",
                    reason: e.reason.to_owned(),
                },
            })?;
            let doc = get_doc(inner, &url).await?;
            let found = KeyDiscovery::parse_for(dwk, &doc.body, iss).map_err(|error| {
                DiscoveryError::Metadata {
                    url: url.as_str().to_owned(),
                    error,
                }
            })?;
            let admitted = (found.jwks_uri.host() == iss.host() && found.jwks_uri.port() == 443)
                || inner
                    .config
                    .cross_origin_jwks
                    .iter()
                    .any(|(i, o)| i == iss.as_str() && o == found.jwks_uri.origin());
            if !admitted {
                return Err(DiscoveryError::CrossOriginJwks {
                    issuer: iss.as_str().to_owned(),
                    jwks_uri: found.jwks_uri.as_str().to_owned(),
                });
            }
            let f = freshness(doc.cache_control.as_deref(), doc.expires.as_deref(), now);
            (found.jwks_uri, f)
        }
    };
    let doc = get_doc(inner, &jwks_uri).await?;
    let fresh = shorter(
        meta_fresh,
        freshness(doc.cache_control.as_deref(), doc.expires.as_deref(), now),
    );
    let set = index(&doc.body, inner.config.max_keys).map_err(|reason| DiscoveryError::Jwks {
        url: jwks_uri.as_str().to_owned(),
        reason,
    })?;
    Ok((Arc::new(set), fresh))
}

/// Parses every member with a `kid` once, so hits are a map lookup. Members without a
/// `kid`, or whose `kid` is not a string, cannot be selected by `kid`; a `kid` published
/// twice is refused as ambiguous. Every member the import accepts, with or without `kid`,
/// is also kept in order for a lookup without `kid` ([`Pick::Sole`](super::Pick::Sole)).
fn index<K: CachedKey>(body: &[u8], max_keys: usize) -> Result<KeySet<K>, String> {
    let set = JwkSet::from_json(body).map_err(|e| e.to_string())?;
    if set.len() > max_keys {
        return Err(format!(
            "{} keys, more than the {max_keys} accepted",
            set.len()
        ));
    }
    let mut keys = BTreeMap::new();
    for kid in set.kids() {
        let key = set.find_jwk(&kid).and_then(|jwk| K::from_jwk(&jwk));
        keys.insert(kid, key);
    }
    let usable = set
        .jwks()
        .filter_map(|jwk| K::from_jwk(&jwk.ok()?).ok())
        .collect();
    Ok(KeySet { keys, usable })
}

/// Fetches the document `D` of `id` (`{id}/.well-known/{D::DWK}`) and parses it for `id`:
/// `issuer` checked first, then every member. Not cached: agents and servers call this
/// when they meet a party, and keep what they need.
///
/// # Errors
///
/// [`DiscoveryError::Fetch`] (including a status other than 200) or
/// [`DiscoveryError::Metadata`].
pub async fn discover<D: crate::MetadataDocument>(
    fetch: &dyn Fetch,
    id: &ServerId,
) -> Result<D, DiscoveryError> {
    let url = HttpsUrl::well_known(id, D::DWK).map_err(|e| DiscoveryError::Metadata {
        url: id.well_known(D::DWK),
        error: MetadataError::Invalid {
            member: "dwk",
            reason: e.reason.to_owned(),
        },
    })?;
    let fail = |error| DiscoveryError::Fetch {
        url: url.as_str().to_owned(),
        error,
    };
    let doc = fetch.get(&url).await.map_err(fail)?;
    if doc.status != 200 {
        return Err(fail(FetchError::Status {
            status: doc.status,
            retry_after: None,
        }));
    }
    D::parse_for(&doc.body, id).map_err(|error| DiscoveryError::Metadata {
        url: url.as_str().to_owned(),
        error,
    })
}
