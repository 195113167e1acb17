//! Serving a party's own metadata document and JWKS: what every role publishes.

use aauth_keys::JwkSet;
use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::MetadataDocument;

/// How long clients may cache the published documents (`Cache-Control`): one hour, so a rotated key is picked up within the hour even by a cache that
/// ignores refresh-ahead, while a busy verifier fetches at most once an hour.
pub const PUBLISHED_CACHE_CONTROL: &str = "max-age=3600";

/// A party's published documents: its metadata at `/.well-known/{dwk}` and its JWKS at the
/// path its `jwks_uri` names. The bodies are serialized once; [`Published::respond`]
/// answers a request for one of them, or says it is not one of these paths.
///
/// ```
/// use aauth_keys::{JwkSet, PrivateKey};
/// use aauth_metadata::{HttpsUrl, AgentProviderMetadata, Published};
/// use aauth_tokens::ServerId;
///
/// let key = PrivateKey::ed25519_from_seed(&[1; 32]);
/// let mut jwk = key.public_key().to_jwk();
/// jwk.kid = Some("key-1".to_owned());
/// let doc = AgentProviderMetadata::new(
///     ServerId::parse("https://agent.example")?,
///     HttpsUrl::parse("https://agent.example/jwks.json")?,
/// );
/// let published = Published::new(&doc).jwks("/jwks.json", &JwkSet::from_jwks(&[jwk]));
/// let resp = published.respond(&http::Method::GET, "/.well-known/aauth-agent.json").unwrap();
/// assert_eq!(resp.status(), 200);
/// assert!(published.respond(&http::Method::GET, "/other").is_none());
/// assert_eq!(published.respond(&http::Method::POST, "/jwks.json").unwrap().status(), 405);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Published {
    entries: Vec<(String, bytes::Bytes)>,
}

impl Published {
    /// Publishes `document` at `/.well-known/{dwk}`.
    #[must_use]
    pub fn new<D: MetadataDocument>(document: &D) -> Self {
        Self {
            entries: vec![(
                format!("/.well-known/{}", D::DWK),
                bytes::Bytes::from(document.to_json()),
            )],
        }
    }

    /// Also publishes `set` at `path` (the path of the document's `jwks_uri`).
    #[must_use]
    pub fn jwks(mut self, path: &str, set: &JwkSet) -> Self {
        self.entries
            .push((path.to_owned(), bytes::Bytes::from(set.to_json())));
        self
    }

    /// The paths served.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(p, _)| p.as_str())
    }

    /// The response to `method` on `path`: `200` with the JSON for `GET` or `HEAD` (no
    /// body for `HEAD`), `405` with `Allow` for another method, `None` for a path that is
    /// not published here.
    #[must_use]
    pub fn respond(&self, method: &Method, path: &str) -> Option<Response<bytes::Bytes>> {
        let (_, body) = self.entries.iter().find(|(p, _)| p == path)?;
        let mut resp = if method == Method::GET || method == Method::HEAD {
            let mut r = Response::new(if method == Method::HEAD {
                bytes::Bytes::new()
            } else {
                body.clone()
            });
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(PUBLISHED_CACHE_CONTROL),
            );
            r
        } else {
            let mut r = Response::new(bytes::Bytes::new());
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        };
        if method == Method::HEAD {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        Some(resp)
    }
}
