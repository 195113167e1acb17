//! Key resolvers for the `Signature-Key` schemes that fetch: `jwks_uri` (signer identifier
//! → metadata → JWKS), `jwks` (a JWKS URL) and `self-jwt` (a JWT signed by the key that
//! signs the request, found through its `iss` and `dwk`). The `jwt` scheme uses
//! [`KeyCache`] as its [`aauth_tokens::IssuerKeyResolver`] through
//! [`aauth_signing::JwtResolver`]. `x509` is not resolved: it stays `unsupported_scheme`
//! (decision 0003).

use std::collections::BTreeSet;
use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::time::UnixTime;
use aauth_signing::{
    AAUTH_DOCUMENTS, KeyIdentity, KeyResolver, ResolveContext, ResolvedKey, SchemeResolver,
    VerifyError, check_jwks_uri_dwk,
};
use aauth_tokens::jws::CompactJws;
use aauth_tokens::{ResolveError, ServerId, TokenError};
use async_trait::async_trait;

use crate::{Fetch, HttpsUrl, KeyCache, KeySource};

/// Resolves `jwks_uri` and `jwks` members through a [`KeyCache`], optionally only for
/// named signers. A `jwks_uri` member (and a `self-jwt`'s `dwk` claim) must name one of the
/// four AAuth metadata documents ([`aauth_signing::AAUTH_DOCUMENTS`]); any other is
/// refused before anything is fetched.
///
/// ```
/// # use std::sync::Arc;
/// # use aauth_keys::time::SystemClock;
/// # use aauth_metadata::{CacheConfig, DiscoveryResolver, GuardedFetch, EgressPolicy, FetchLimits,
/// #     HttpsTransport, KeyCache, SystemResolver};
/// # use aauth_signing::SchemeResolver;
/// let fetch = GuardedFetch::new(
///     EgressPolicy::new(),
///     Arc::new(SystemResolver),
///     Arc::new(HttpsTransport::with_webpki_roots()),
///     FetchLimits::default(),
/// );
/// let cache = KeyCache::new(Arc::new(fetch), Arc::new(SystemClock), CacheConfig::default());
/// let resolver = DiscoveryResolver::new(cache)
///     .allow_signers(["https://ps.example"])
///     .register(SchemeResolver::new().hwk());
/// # drop(resolver);
/// ```
pub struct DiscoveryResolver<F> {
    cache: KeyCache<F>,
    signers: Option<BTreeSet<String>>,
}

impl<F> std::fmt::Debug for DiscoveryResolver<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryResolver")
            .field("signers", &self.signers)
            .finish_non_exhaustive()
    }
}

impl<F: Fetch> DiscoveryResolver<F> {
    /// Resolves through `cache`, for any signer.
    #[must_use]
    pub fn new(cache: KeyCache<F>) -> Self {
        Self {
            cache,
            signers: None,
        }
    }

    /// Accepts only these signers: server identifiers for `jwks_uri`, JWKS URLs for
    /// `jwks`. Others are refused (`invalid_key`) without a fetch.
    #[must_use]
    pub fn allow_signers<'a>(mut self, signers: impl IntoIterator<Item = &'a str>) -> Self {
        self.signers = Some(signers.into_iter().map(str::to_owned).collect());
        self
    }

    /// Registers this resolver for `jwks_uri`, `jwks` and `self-jwt` on `schemes`.
    #[must_use]
    pub fn register(self, schemes: SchemeResolver) -> SchemeResolver {
        let me: Arc<dyn KeyResolver> = Arc::new(self);
        schemes
            .scheme("jwks_uri", Arc::clone(&me))
            .scheme("jwks", Arc::clone(&me))
            .scheme("self-jwt", me)
    }

    fn admitted(&self, signer: &str) -> Result<(), VerifyError> {
        match &self.signers {
            Some(set) if !set.contains(signer) => {
                Err(VerifyError::KeyDiscovery(ResolveError::Untrusted {
                    iss: signer.to_owned(),
                }))
            }
            _ => Ok(()),
        }
    }
}

fn untrusted(signer: &str) -> VerifyError {
    VerifyError::KeyDiscovery(ResolveError::Untrusted {
        iss: signer.chars().take(200).collect(),
    })
}

#[async_trait]
impl<F: Fetch> KeyResolver for DiscoveryResolver<F> {
    async fn resolve(
        &self,
        scheme: &Scheme,
        ctx: &ResolveContext<'_>,
    ) -> Result<ResolvedKey, VerifyError> {
        let (source, kid, identity) = match scheme {
            Scheme::SelfJwt { jwt } => return self.self_jwt(jwt, ctx.now).await,
            Scheme::JwksUri { id, dwk, kid } => {
                let iss = ServerId::parse(id).map_err(|_| untrusted(id))?;
                // Only the four AAuth documents: the caller names `dwk`, and the fetch of
                // `{id}/.well-known/{dwk}` is ours.
                check_jwks_uri_dwk(dwk, ctx)?;
                self.admitted(id)?;
                let source = KeySource::Issuer {
                    iss,
                    dwk: dwk.clone(),
                };
                let identity = KeyIdentity::JwksUri {
                    id: id.clone(),
                    dwk: dwk.clone(),
                    kid: kid.clone(),
                };
                (source, kid, identity)
            }
            Scheme::Jwks { url, kid } => {
                let parsed = HttpsUrl::parse(url).map_err(|_| untrusted(url))?;
                self.admitted(url)?;
                let identity = KeyIdentity::Jwks {
                    url: url.clone(),
                    kid: kid.clone(),
                };
                (KeySource::Jwks(parsed), kid, identity)
            }
            other => {
                return Err(VerifyError::UnsupportedScheme {
                    scheme: Some(other.name().to_owned()),
                });
            }
        };
        let key = self
            .cache
            .key(&source, kid)
            .await
            .map_err(|e| VerifyError::KeyDiscovery(e.into()))?;
        let mut resolved = ResolvedKey::new(key, identity);
        resolved.kid = Some(kid.clone());
        Ok(resolved)
    }
}

/// The claims a `self-jwt` must carry (Signature-Key -09 §3.9): `iss`, `dwk`, `exp`; and
/// never `cnf` (the JWT's own signer is the request's signer).
#[derive(serde::Deserialize)]
struct SelfJwtClaims {
    iss: String,
    dwk: String,
    exp: u64,
    #[serde(default)]
    cnf: Option<serde::de::IgnoredAny>,
}

fn jwt_error(e: TokenError) -> VerifyError {
    VerifyError::Token(e)
}

impl<F: Fetch> DiscoveryResolver<F> {
    /// `self-jwt`: reads `iss`, `dwk` and the header `kid`, discovers that key, and
    /// verifies the JWT with it; the same key then verifies the request. Not cached
    /// beyond the key set.
    async fn self_jwt(&self, jwt: &str, now: UnixTime) -> Result<ResolvedKey, VerifyError> {
        let jws = CompactJws::parse(jwt).map_err(jwt_error)?;
        let kid = jws
            .header
            .kid
            .clone()
            .ok_or(VerifyError::Token(TokenError::MissingKid))?;
        if jws.payload.trim_ascii_start().first() != Some(&b'{') {
            return Err(jwt_error(TokenError::ClaimSet {
                reason: "the claim set is not a JSON object".to_owned(),
            }));
        }
        let claims: SelfJwtClaims = serde_json::from_slice(&jws.payload).map_err(|e| {
            jwt_error(TokenError::ClaimSet {
                reason: e.to_string(),
            })
        })?;
        if claims.cnf.is_some() {
            return Err(jwt_error(TokenError::ForbiddenClaim { claim: "cnf" }));
        }
        if claims.exp <= now.as_secs() {
            return Err(jwt_error(TokenError::Expired {
                exp: claims.exp,
                now: now.as_secs(),
            }));
        }
        let iss = ServerId::parse(&claims.iss).map_err(|e| {
            jwt_error(TokenError::Claim {
                claim: "iss",
                reason: e.to_string(),
            })
        })?;
        if !AAUTH_DOCUMENTS.contains(&claims.dwk.as_str()) {
            return Err(jwt_error(TokenError::WrongDwk {
                expected: "an AAuth metadata document",
                found: claims.dwk.chars().take(200).collect(),
            }));
        }
        self.admitted(iss.as_str())?;
        let source = KeySource::Issuer {
            iss: iss.clone(),
            dwk: claims.dwk.clone(),
        };
        let key = self
            .cache
            .key(&source, &kid)
            .await
            .map_err(|e| VerifyError::KeyDiscovery(e.into()))?;
        jws.verify(&key).map_err(jwt_error)?;
        let mut resolved = ResolvedKey::new(
            key,
            KeyIdentity::JwksUri {
                id: iss.as_str().to_owned(),
                dwk: claims.dwk,
                kid: kid.clone(),
            },
        );
        resolved.kid = Some(kid);
        Ok(resolved)
    }
}
