//! Verifying access tokens against the keys of configured issuers: discovery of each
//! issuer's `jwks_uri` (RFC 8414, then OpenID Connect Discovery), and the workspace's key
//! cache for the keys themselves (refresh on an unknown `kid`, one refetch after a
//! signature failure, stale-if-error, bounded fetches; a token without `kid` takes the
//! issuer's one key for its `alg`, never a guess among several); or the secret an issuer was
//! configured with, when it signs with HMAC (nothing is fetched for it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::Clock;
use aauth_metadata::{
    CacheConfig, DiscoveryError, Fetch, FetchError, HttpsUrl, KeyCache, KeySource, Pick, UrlError,
};
use aauth_tokens::json::Object;
use tokio::sync::Mutex;

use crate::{
    AccessToken, AccessTokenClaims, AccessTokenPolicy, IssuerKey, IssuerSigning, JwsAlgorithm,
    OAuthError, SharedSecret, TokenAlgorithm,
};

/// How long a discovered `jwks_uri` is used before the metadata is read again.
const REDISCOVER_AFTER: u64 = 24 * 3600;
/// The first wait after a failed discovery; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: u64 = 60;
const MAX_BACKOFF: u64 = 3600;
/// The deadline of one discovery (both documents).
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(10);

/// An authorization server whose access tokens a resource accepts.
#[derive(Debug, Clone)]
pub struct Issuer {
    issuer: String,
    jwks_uri: Option<HttpsUrl>,
    secret: Option<SharedSecret>,
}

impl Issuer {
    /// An issuer whose `jwks_uri` is discovered from its metadata:
    /// `/.well-known/oauth-authorization-server` (RFC 8414 §3.1, inserted before the
    /// issuer's path), and if that is `404`, `{issuer}/.well-known/openid-configuration`
    /// (OpenID Connect Discovery §4). The document's `issuer` must equal `issuer`
    /// exactly.
    ///
    /// # Errors
    ///
    /// [`UrlError`] when `issuer` is not an `https` URL without query or fragment.
    pub fn discover(issuer: &str) -> Result<Self, UrlError> {
        HttpsUrl::endpoint(issuer)?;
        Ok(Self {
            issuer: issuer.to_owned(),
            jwks_uri: None,
            secret: None,
        })
    }

    /// An issuer whose keys are at `jwks_uri`, configured rather than discovered.
    ///
    /// # Errors
    ///
    /// As [`Issuer::discover`].
    pub fn with_jwks_uri(issuer: &str, jwks_uri: HttpsUrl) -> Result<Self, UrlError> {
        HttpsUrl::endpoint(issuer)?;
        Ok(Self {
            issuer: issuer.to_owned(),
            jwks_uri: Some(jwks_uri),
            secret: None,
        })
    }

    /// An issuer that signs its tokens with `secret` (HS256, HS384 or HS512), configured
    /// here explicitly: its tokens must name the secret's algorithm and are checked with
    /// the secret alone; a token from it under any other `alg` is refused, and no other
    /// issuer's HMAC token is ever accepted. Nothing is discovered or fetched for it, so
    /// `issuer` may be any non-empty `iss` value (some servers use a plain name).
    ///
    /// ```
    /// use aauth_oauth::{HmacAlgorithm, Issuer, SharedSecret};
    /// let secret = SharedSecret::new(HmacAlgorithm::Hs256, &[7; 32]).unwrap();
    /// let issuer = Issuer::with_shared_secret("https://auth.example/v1", secret).unwrap();
    /// assert_eq!(issuer.id(), "https://auth.example/v1");
    /// assert!(Issuer::with_shared_secret("", SharedSecret::new(HmacAlgorithm::Hs256, &[7; 32]).unwrap()).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`UrlError`] when `issuer` is empty.
    pub fn with_shared_secret(issuer: &str, secret: SharedSecret) -> Result<Self, UrlError> {
        if issuer.is_empty() {
            return Err(UrlError {
                value: String::new(),
                reason: "an issuer identifier cannot be empty",
            });
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            jwks_uri: None,
            secret: Some(secret),
        })
    }

    /// The issuer identifier, as tokens must carry it in `iss`.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.issuer
    }

    /// How its tokens are signed.
    #[must_use]
    pub fn signing(&self) -> IssuerSigning {
        self.secret.as_ref().map_or(IssuerSigning::Keys, |s| {
            IssuerSigning::Secret(s.algorithm())
        })
    }

    /// The metadata URLs to try, in order.
    fn metadata_urls(&self) -> Result<[HttpsUrl; 2], UrlError> {
        let url = HttpsUrl::endpoint(&self.issuer)?;
        let path = url.path_and_query().trim_end_matches('/');
        let rfc8414 = format!(
            "{}/.well-known/oauth-authorization-server{path}",
            url.origin()
        );
        let oidc = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        Ok([HttpsUrl::endpoint(&rfc8414)?, HttpsUrl::endpoint(&oidc)?])
    }
}

#[derive(Debug, Default)]
struct Discovered {
    /// The issuer's keys: `KeySource::Jwks(jwks_uri)`, shared so a hit copies no URL.
    jwks_uri: Option<Arc<KeySource>>,
    /// When `jwks_uri` was read (0 for a configured one: never re-read).
    read_at: u64,
    failures: u32,
    retry_at: u64,
    last_error: Option<String>,
}

#[derive(Debug)]
struct IssuerState {
    issuer: Issuer,
    /// Held across one discovery, so that concurrent first tokens share it.
    discovered: Mutex<Discovered>,
}

/// Verifies bearer access tokens for one resource (one audience) from a fixed set of
/// issuers. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_keys::time::SystemClock;
/// use aauth_metadata::{CacheConfig, EgressPolicy, HttpsTransport, https_fetcher};
/// use aauth_oauth::{AccessTokenPolicy, AccessTokenVerifier, Issuer};
/// let clock = Arc::new(SystemClock);
/// let fetch = Arc::new(https_fetcher(EgressPolicy::new(), HttpsTransport::with_webpki_roots(), clock.clone()));
/// let verifier = AccessTokenVerifier::new(
///     AccessTokenPolicy::new("https://api.example"),
///     [Issuer::discover("https://login.example")?],
///     fetch,
///     clock,
///     CacheConfig::default(),
/// );
/// let claims = verifier.verify_bearer("eyJ...").await?;
/// claims.require_scopes(["read"])?;
/// # Ok(()) }
/// ```
pub struct AccessTokenVerifier<F> {
    policy: AccessTokenPolicy,
    issuers: Arc<BTreeMap<String, IssuerState>>,
    keys: KeyCache<F, IssuerKey>,
    fetcher: Arc<F>,
    clock: Arc<dyn Clock>,
}

impl<F> std::fmt::Debug for AccessTokenVerifier<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenVerifier")
            .field("policy", &self.policy)
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl<F> Clone for AccessTokenVerifier<F> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            issuers: Arc::clone(&self.issuers),
            keys: self.keys.clone(),
            fetcher: Arc::clone(&self.fetcher),
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<F: Fetch> AccessTokenVerifier<F> {
    /// A verifier of tokens for `policy`'s audience from `issuers`, fetching metadata
    /// and keys through `fetcher` (give it the egress-guarded HTTPS fetcher), its keys
    /// held in a key cache tuned by `cache`.
    ///
    /// An issuer identifier given twice counts once: the first entry that checks tokens
    /// against published keys ([`Issuer::discover`], [`Issuer::with_jwks_uri`]) if there
    /// is one, else the first; so an HMAC secret given for an issuer also configured with
    /// published keys is never used (its HMAC tokens are refused), whatever the order.
    #[must_use]
    pub fn new(
        policy: AccessTokenPolicy,
        issuers: impl IntoIterator<Item = Issuer>,
        fetcher: Arc<F>,
        clock: Arc<dyn Clock>,
        cache: CacheConfig,
    ) -> Self {
        let mut kept: BTreeMap<String, Issuer> = BTreeMap::new();
        for issuer in issuers {
            match kept.get(&issuer.issuer) {
                // Keys win over a secret; otherwise the first stays.
                Some(first) if !(first.secret.is_some() && issuer.secret.is_none()) => {}
                _ => {
                    kept.insert(issuer.issuer.clone(), issuer);
                }
            }
        }
        let issuers = kept
            .into_iter()
            .map(|(id, issuer)| {
                let discovered = Discovered {
                    jwks_uri: issuer
                        .jwks_uri
                        .clone()
                        .map(|u| Arc::new(KeySource::Jwks(u))),
                    ..Discovered::default()
                };
                (
                    id,
                    IssuerState {
                        issuer,
                        discovered: Mutex::new(discovered),
                    },
                )
            })
            .collect();
        Self {
            policy,
            issuers: Arc::new(issuers),
            keys: KeyCache::of_keys(Arc::clone(&fetcher), Arc::clone(&clock), cache),
            fetcher,
            clock,
        }
    }

    /// The policy tokens are held to.
    #[must_use]
    pub fn policy(&self) -> &AccessTokenPolicy {
        &self.policy
    }

    /// The key cache (its statistics, for metrics).
    #[must_use]
    pub fn keys(&self) -> &KeyCache<F, IssuerKey> {
        &self.keys
    }

    /// Verifies a token sent as `Authorization: Bearer`: every check of
    /// [`AccessToken::parse`], the issuer's key, the signature. A token bound to a DPoP key
    /// (`cnf.jkt`) is refused here: it is valid only with a proof (RFC 9449 §7.1).
    ///
    /// # Errors
    ///
    /// [`OAuthError`]; [`OAuthError::Unavailable`] (a `503`) when the issuer's metadata
    /// or keys cannot be had.
    pub async fn verify_bearer(&self, token: &str) -> Result<AccessTokenClaims, OAuthError> {
        crate::bearer::bearer_only(self.verify_token(token).await?)
    }

    /// Verifies a token whatever its binding: the caller checks `cnf.jkt` against the
    /// DPoP proof it verified.
    ///
    /// # Errors
    ///
    /// As [`AccessTokenVerifier::verify_bearer`].
    pub async fn verify_token(&self, token: &str) -> Result<AccessTokenClaims, OAuthError> {
        let now = self.clock.now();
        // The issuer is looked up once, while parsing.
        let (parsed, state) = {
            let found = std::cell::Cell::new(None);
            let parsed = AccessToken::parse_trusting(
                token,
                &self.policy,
                &|iss| {
                    let state = self.issuers.get(iss)?;
                    found.set(Some(state));
                    Some(state.issuer.signing())
                },
                now,
            )?;
            (parsed, found.get())
        };
        if let Some(secret) = state.and_then(|s| s.issuer.secret.as_ref()) {
            return parsed.finish_with_secret(secret);
        }
        let TokenAlgorithm::Key(alg) = parsed.algorithm() else {
            // Not reached: parsing refuses HMAC from an issuer without a secret.
            return Err(OAuthError::Signature);
        };
        let source = self.key_source(parsed.issuer()).await?;
        verify_signature(&self.keys, &source, parsed.kid(), alg, |key| {
            parsed.verifies(key)
        })
        .await?;
        Ok(parsed.into_claims())
    }

    /// The issuer's `jwks_uri`: configured, or discovered (once per day, backing off
    /// after failures, concurrent callers sharing one discovery).
    async fn key_source(&self, iss: &str) -> Result<Arc<KeySource>, OAuthError> {
        let Some(state) = self.issuers.get(iss) else {
            return Err(OAuthError::UnknownIssuer {
                iss: iss.to_owned(),
            });
        };
        let mut d = state.discovered.lock().await;
        let now = self.clock.now().as_secs();
        let configured = state.issuer.jwks_uri.is_some();
        if let Some(uri) = &d.jwks_uri
            && (configured || now < d.read_at.saturating_add(REDISCOVER_AFTER) || now < d.retry_at)
        {
            return Ok(Arc::clone(uri));
        }
        if now < d.retry_at {
            return Err(OAuthError::Unavailable {
                reason: format!(
                    "discovery of {iss} backing off after: {}",
                    d.last_error.as_deref().unwrap_or("a failure")
                ),
            });
        }
        let result =
            tokio::time::timeout(DISCOVERY_DEADLINE, discover(&*self.fetcher, &state.issuer))
                .await
                .unwrap_or_else(|_| Err(format!("no metadata within {DISCOVERY_DEADLINE:?}")));
        match result {
            Ok(uri) => {
                let source = Arc::new(KeySource::Jwks(uri));
                *d = Discovered {
                    jwks_uri: Some(Arc::clone(&source)),
                    read_at: now,
                    ..Discovered::default()
                };
                Ok(source)
            }
            Err(reason) => {
                d.failures = d.failures.saturating_add(1);
                d.retry_at = now.saturating_add(
                    FIRST_BACKOFF
                        .saturating_mul(1 << (d.failures - 1).min(16))
                        .min(MAX_BACKOFF),
                );
                d.last_error = Some(reason.clone());
                // A jwks_uri read before keeps serving while the metadata is unreachable.
                match &d.jwks_uri {
                    Some(uri) => Ok(Arc::clone(uri)),
                    None => Err(OAuthError::Unavailable { reason }),
                }
            }
        }
    }
}

/// Reads the issuer's metadata for its `jwks_uri`.
async fn discover<F: Fetch + ?Sized>(fetcher: &F, issuer: &Issuer) -> Result<HttpsUrl, String> {
    let urls = issuer.metadata_urls().map_err(|e| e.to_string())?;
    let mut last = String::new();
    for url in &urls {
        let doc = match fetcher.get(url).await {
            Ok(doc) if doc.status == 200 => doc,
            Ok(doc) if doc.status == 404 => {
                last = format!("{url}: 404");
                continue;
            }
            Ok(doc) => return Err(format!("{url}: status {}", doc.status)),
            Err(FetchError::Status { status: 404, .. }) => {
                last = format!("{url}: 404");
                continue;
            }
            Err(e) => return Err(format!("{url}: {e}")),
        };
        return parse_metadata(&doc.body, issuer.id()).map_err(|e| format!("{url}: {e}"));
    }
    Err(format!("no metadata document ({last})"))
}

/// `issuer` must equal the configured one exactly (RFC 8414 §3.3); `jwks_uri` must be an
/// `https` URL.
pub(crate) fn parse_metadata(body: &[u8], expected: &str) -> Result<HttpsUrl, String> {
    let text = std::str::from_utf8(body).map_err(|_| "metadata is not UTF-8".to_owned())?;
    let doc = Object::parse(text).map_err(|e| e.to_string())?;
    let issuer = doc
        .string("issuer")
        .map_err(|e| format!("issuer: {e}"))?
        .ok_or("issuer is absent")?;
    if issuer != expected {
        return Err(format!("issuer {issuer:?} is not {expected:?}"));
    }
    let jwks = doc
        .string("jwks_uri")
        .map_err(|e| format!("jwks_uri: {e}"))?
        .ok_or("jwks_uri is absent")?;
    HttpsUrl::parse(&jwks).map_err(|e| format!("jwks_uri: {e}"))
}

/// Checks a signature of `alg` with the key `kid` of `source`, or, for a token without
/// `kid`, with the one key of `source` that allows `alg` (key type, curve, and the JWK's
/// `alg` when it has one; none or several is [`OAuthError::NoSoleKey`]): `verifies` says
/// whether a key verifies it. When the cached key does not, the source is refetched once
/// (an issuer that re-keyed under the same `kid`), if the cache's floor allows, and the
/// fresh key tried. Shared by access tokens and ID tokens.
pub(crate) async fn verify_signature<F: Fetch>(
    keys: &KeyCache<F, IssuerKey>,
    source: &KeySource,
    kid: Option<&str>,
    alg: JwsAlgorithm,
    verifies: impl Fn(&IssuerKey) -> bool,
) -> Result<(), OAuthError> {
    let fits = move |key: &IssuerKey| key.allows(alg);
    let pick = kid.map_or(Pick::Sole(&fits), Pick::Kid);
    let failed = |e| match e {
        DiscoveryError::NoSoleKey { candidates } => OAuthError::NoSoleKey {
            alg: alg.as_str().to_owned(),
            candidates,
        },
        other => from_discovery(other),
    };
    let key = keys.picked(source, pick).await.map_err(failed)?;
    if verifies(&key) {
        return Ok(());
    }
    match keys
        .repick_after_failure(source, pick, &key)
        .await
        .map_err(failed)?
    {
        Some(fresh) if verifies(&fresh) => Ok(()),
        _ => Err(OAuthError::Signature),
    }
}

/// Discovery failures: the key's own problems are the token's (`401`); the rest mean the
/// issuer cannot be checked now (`503`, fail closed).
fn from_discovery(e: DiscoveryError) -> OAuthError {
    match e {
        DiscoveryError::UnknownKey { kid } => OAuthError::Key {
            kid,
            reason: "not published by the issuer".to_owned(),
        },
        DiscoveryError::Key { kid, error } => OAuthError::Key {
            kid,
            reason: error.to_string(),
        },
        DiscoveryError::BackingOff { last, .. } => match from_discovery(*last) {
            OAuthError::Unavailable { reason } => OAuthError::Unavailable {
                reason: format!("{reason} (backing off)"),
            },
            other => other,
        },
        other => OAuthError::Unavailable {
            reason: other.to_string(),
        },
    }
}
