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
    entries: Vec<(String, Body)>,
}

/// A published body: fixed, or (a JWKS with retiring keys) one body per period, each
/// served until its time, then the next.
#[derive(Debug, Clone)]
enum Body {
    Fixed(bytes::Bytes),
    /// `(until, body)` in time order, then the body served from the last `until` on.
    Scheduled(Vec<(u64, bytes::Bytes)>, bytes::Bytes),
}

impl Body {
    fn at(&self, now: u64) -> &bytes::Bytes {
        match self {
            Self::Fixed(b) => b,
            Self::Scheduled(periods, last) => periods
                .iter()
                .find(|(until, _)| now < *until)
                .map_or(last, |(_, b)| b),
        }
    }
}

/// A key that no longer signs but is still published, until `until` (seconds since the
/// epoch): what a verifier holding a token it signed, or a cached JWKS, needs during a key
/// rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetiringKey {
    /// Its public JWK (with its `kid`).
    pub jwk: aauth_keys::Jwk,
    /// When it stops being published.
    pub until: u64,
}

impl RetiringKey {
    /// `jwk`, published until `until`.
    #[must_use]
    pub fn new(jwk: aauth_keys::Jwk, until: u64) -> Self {
        Self { jwk, until }
    }
}

impl Published {
    /// Publishes `document` at `/.well-known/{dwk}`.
    #[must_use]
    pub fn new<D: MetadataDocument>(document: &D) -> Self {
        Self {
            entries: vec![(
                format!("/.well-known/{}", D::DWK),
                Body::Fixed(bytes::Bytes::from(document.to_json())),
            )],
        }
    }

    /// Also publishes the JSON document `json` at `path` (another protocol's metadata
    /// beside AAuth's, such as RFC 9728 protected-resource metadata).
    #[must_use]
    pub fn json(mut self, path: &str, json: String) -> Self {
        self.entries
            .push((path.to_owned(), Body::Fixed(bytes::Bytes::from(json))));
        self
    }

    /// Also publishes `set` at `path` (the path of the document's `jwks_uri`).
    #[must_use]
    pub fn jwks(mut self, path: &str, set: &JwkSet) -> Self {
        self.entries.push((
            path.to_owned(),
            Body::Fixed(bytes::Bytes::from(set.to_json())),
        ));
        self
    }

    /// Publishes `current` at `path` with `retiring` beside it, each until its time: from
    /// then on it is dropped from the JWKS served (a key rotation's overlap, without a
    /// restart). A retiring key whose `kid` is in `set` is not published twice.
    ///
    /// ```
    /// use aauth_keys::{JwkSet, PrivateKey};
    /// use aauth_keys::time::UnixTime;
    /// use aauth_metadata::{AgentProviderMetadata, HttpsUrl, Published, RetiringKey};
    /// use aauth_tokens::ServerId;
    ///
    /// let jwk = |seed: u8, kid: &str| {
    ///     let mut j = PrivateKey::ed25519_from_seed(&[seed; 32]).public_key().to_jwk();
    ///     j.kid = Some(kid.to_owned());
    ///     j
    /// };
    /// let doc = AgentProviderMetadata::new(
    ///     ServerId::parse("https://agent.example")?,
    ///     HttpsUrl::parse("https://agent.example/jwks.json")?,
    /// );
    /// let published = Published::new(&doc).jwks_rotating(
    ///     "/jwks.json",
    ///     &[jwk(2, "new")],
    ///     &[RetiringKey::new(jwk(1, "old"), 1_000)],
    /// );
    /// let kids = |at: u64| {
    ///     let r = published.respond_at(&http::Method::GET, "/jwks.json", UnixTime(at)).unwrap();
    ///     JwkSet::from_json(r.body()).unwrap().kids()
    /// };
    /// assert_eq!(kids(999), ["new", "old"]);
    /// assert_eq!(kids(1_000), ["new"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn jwks_rotating(
        mut self,
        path: &str,
        current: &[aauth_keys::Jwk],
        retiring: &[RetiringKey],
    ) -> Self {
        let mut retiring: Vec<&RetiringKey> = retiring
            .iter()
            .filter(|r| {
                !current
                    .iter()
                    .any(|c| c.kid.is_some() && c.kid == r.jwk.kid)
            })
            .collect();
        retiring.sort_by_key(|r| r.until);
        let body = |from: usize| {
            let mut keys: Vec<aauth_keys::Jwk> = current.to_vec();
            keys.extend(retiring[from..].iter().map(|r| r.jwk.clone()));
            bytes::Bytes::from(JwkSet::from_jwks(&keys).to_json())
        };
        let periods = (0..retiring.len())
            .map(|i| (retiring[i].until, body(i)))
            .collect();
        self.entries.retain(|(p, _)| p != path);
        self.entries.push((
            path.to_owned(),
            Body::Scheduled(periods, body(retiring.len())),
        ));
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
        use aauth_keys::time::Clock;
        self.respond_at(method, path, aauth_keys::time::SystemClock.now())
    }

    /// [`Published::respond`] at `now` (which keys a rotating JWKS still holds).
    #[must_use]
    pub fn respond_at(
        &self,
        method: &Method,
        path: &str,
        now: aauth_keys::time::UnixTime,
    ) -> Option<Response<bytes::Bytes>> {
        let (_, body) = self.entries.iter().find(|(p, _)| p == path)?;
        let body = body.at(now.as_secs());
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
