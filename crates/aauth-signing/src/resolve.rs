//! Key resolution: from the selected `Signature-Key` member to the key that verifies the
//! request, per scheme.
//!
//! This crate implements the schemes that need no fetch: `hwk` (inline key), `jkt-jwt`
//! (self-issued delegation) and `jwt` (through `aauth-tokens`, with the issuer's key from
//! an injected [`IssuerKeyResolver`]). The fetching schemes (`jwks_uri`, `jwks`,
//! `self-jwt`) are registered on a [`SchemeResolver`] by the metadata crate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aauth_headers::{ErrorCode, Hwk, MemberError, Scheme};
use aauth_keys::time::UnixTime;
use aauth_keys::{Jwk, PublicKey, Thumbprint};
use aauth_tokens::{
    BoundToken, IssuerKeyResolver, ServerId, TokenType, Validation, VerifiedJktJwt, verify_bound,
    verify_jkt_jwt,
};
use async_trait::async_trait;

use crate::VerifyError;

/// What a resolver knows besides the member.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ResolveContext<'a> {
    /// The verifier's current time.
    pub now: UnixTime,
    /// The signature label being verified.
    pub label: &'a str,
}

impl<'a> ResolveContext<'a> {
    /// A context at `now` for `label`.
    #[must_use]
    pub fn new(now: UnixTime, label: &'a str) -> Self {
        Self { now, label }
    }
}

/// Who signed, as far as the scheme says.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeyIdentity {
    /// `hwk`: a pseudonymous key, known only by its thumbprint.
    Pseudonym {
        /// The key's RFC 7638 thumbprint.
        thumbprint: Thumbprint,
    },
    /// `jkt-jwt`: an enclave key's pseudonym and its delegation.
    JktJwt(Box<VerifiedJktJwt>),
    /// `jwt`: the verified AAuth token that binds the key.
    Token(Box<BoundToken>),
    /// `jwks_uri`: a signer identified by its server identifier.
    JwksUri {
        /// The signer identifier.
        id: String,
        /// Its metadata document.
        dwk: String,
        /// The key identifier.
        kid: String,
    },
    /// `jwks`: a signer identified by its JWKS URL.
    Jwks {
        /// The JWKS URL.
        url: String,
        /// The key identifier.
        kid: String,
    },
    /// Another scheme's identity, described in text.
    Other {
        /// The scheme.
        scheme: String,
        /// The identity.
        id: String,
    },
}

/// A resolved verification key with the identity it belongs to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolvedKey {
    /// The key that must verify the request signature.
    pub key: PublicKey,
    /// Who the key belongs to.
    pub identity: KeyIdentity,
    /// The `kid` the key goes by, for the `keyid` consistency check (-09 §4.3): the
    /// conveyed JWK's (`cnf.jwk` of `jwt` and `jkt-jwt`), or the `kid` of the member it
    /// was resolved by (`jwks_uri`, `jwks`). A resolver that leaves it `None` makes a
    /// `keyid` other than the key's thumbprint a [`VerifyError::KeyIdMismatch`].
    pub kid: Option<String>,
}

impl ResolvedKey {
    /// A resolved key.
    #[must_use]
    pub fn new(key: PublicKey, identity: KeyIdentity) -> Self {
        Self {
            key,
            identity,
            kid: None,
        }
    }

    /// The verified token, for the `jwt` scheme.
    #[must_use]
    pub fn token(&self) -> Option<&BoundToken> {
        match &self.identity {
            KeyIdentity::Token(t) => Some(t),
            _ => None,
        }
    }
}

/// Obtains the key for a `Signature-Key` member. Supplied by the caller; see
/// [`SchemeResolver`] for the usual composition.
#[async_trait]
pub trait KeyResolver: Send + Sync {
    /// Resolves `scheme` (already accepted by the policy).
    ///
    /// # Errors
    ///
    /// The [`VerifyError`] the failure maps to: [`VerifyError::UnsupportedScheme`] for a
    /// scheme this resolver does not implement, [`VerifyError::Key`],
    /// [`VerifyError::Token`], [`VerifyError::Unavailable`], …
    async fn resolve(
        &self,
        scheme: &Scheme,
        ctx: &ResolveContext<'_>,
    ) -> Result<ResolvedKey, VerifyError>;
}

/// The `hwk` member that conveys `key` inline (with its `alg`, as -09 requires).
///
/// ```
/// use aauth_keys::PrivateKey;
/// let key = PrivateKey::ed25519_from_seed(&[1; 32]);
/// let scheme = aauth_signing::hwk_scheme(key.public_key());
/// assert_eq!(scheme.name(), "hwk");
/// ```
#[must_use]
pub fn hwk_scheme(key: &PublicKey) -> Scheme {
    let jwk = key.to_jwk();
    let mut h = Hwk::default();
    h.kty = Some(jwk.kty.clone());
    h.crv.clone_from(&jwk.crv);
    h.x.clone_from(&jwk.x);
    h.y.clone_from(&jwk.y);
    h.alg.clone_from(&jwk.alg);
    Scheme::Hwk(h)
}

/// Resolves `hwk`: the inline key, held to the algorithm policy and the weak-key checks.
///
/// # Errors
///
/// [`VerifyError::Key`].
pub fn resolve_hwk(hwk: &Hwk) -> Result<ResolvedKey, VerifyError> {
    let mut jwk = Jwk::new(hwk.kty.clone().unwrap_or_default());
    jwk.crv.clone_from(&hwk.crv);
    jwk.x.clone_from(&hwk.x);
    jwk.y.clone_from(&hwk.y);
    jwk.n.clone_from(&hwk.n);
    jwk.e.clone_from(&hwk.e);
    jwk.alg.clone_from(&hwk.alg);
    let key = PublicKey::from_jwk(&jwk).map_err(VerifyError::Key)?;
    let thumbprint = key.thumbprint();
    Ok(ResolvedKey::new(key, KeyIdentity::Pseudonym { thumbprint }))
}

/// Resolves `jkt-jwt`: verifies the delegation JWT with its header key and returns the
/// delegated `cnf.jwk` (with its `kid`, if it has one). Both keys are held here to the
/// algorithms this library verifies; the verifier's own list of accepted algorithms is
/// applied to both when the request is finished ([`crate::Prepared::finish`]).
///
/// # Errors
///
/// [`VerifyError::Token`]: `unsupported_algorithm` when the header key or `cnf.jwk`
/// fails Algorithm Determination (-09 §3.3, §3.5).
pub fn resolve_jkt_jwt(
    jwt: &str,
    now: UnixTime,
    max_iat_skew: u64,
) -> Result<ResolvedKey, VerifyError> {
    let v = verify_jkt_jwt(jwt, now, max_iat_skew).map_err(VerifyError::Token)?;
    let kid = v.cnf_kid.clone();
    Ok(ResolvedKey {
        key: v.cnf_key.clone(),
        identity: KeyIdentity::JktJwt(Box::new(v)),
        kid,
    })
}

/// Resolves the `jwt` scheme with AAuth tokens: the token's `typ` must be one of the
/// accepted types, the token verifies under its issuer's key, and its `cnf.jwk` is the key.
#[derive(Clone)]
pub struct JwtResolver {
    issuer_keys: Arc<dyn IssuerKeyResolver>,
    accepted: Vec<TokenType>,
    audience: Option<ServerId>,
    max_iat_skew: u64,
}

impl std::fmt::Debug for JwtResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtResolver")
            .field("accepted", &self.accepted)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtResolver {
    /// Accepts the token types in `accepted` (agent, person, auth), with issuer keys from
    /// `issuer_keys`.
    #[must_use]
    pub fn new(issuer_keys: Arc<dyn IssuerKeyResolver>, accepted: &[TokenType]) -> Self {
        Self {
            issuer_keys,
            accepted: accepted.to_vec(),
            audience: None,
            max_iat_skew: 60,
        }
    }

    /// The verifier's identifier, which person and auth tokens must name in `aud`.
    #[must_use]
    pub fn audience(mut self, audience: ServerId) -> Self {
        self.audience = Some(audience);
        self
    }

    /// The allowed future skew of `iat` (default 60 s).
    #[must_use]
    pub fn max_iat_skew(mut self, skew: Duration) -> Self {
        self.max_iat_skew = skew.as_secs();
        self
    }

    /// Verifies `jwt` and returns its confirmation key.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Token`].
    pub async fn resolve_jwt(&self, jwt: &str, now: UnixTime) -> Result<ResolvedKey, VerifyError> {
        let mut v = Validation::new(now).max_iat_skew(Duration::from_secs(self.max_iat_skew));
        if let Some(a) = &self.audience {
            v = v.audience(a);
        }
        let token = verify_bound(jwt, &self.accepted, &v, self.issuer_keys.as_ref())
            .await
            .map_err(|e| match e {
                aauth_tokens::TokenError::KeyResolution(
                    aauth_tokens::ResolveError::Unavailable { reason },
                ) => VerifyError::Unavailable { reason },
                other => VerifyError::Token(other),
            })?;
        let key = token.cnf_key().cloned().ok_or(VerifyError::Token(
            aauth_tokens::TokenError::Claim {
                claim: "cnf",
                reason: "is missing".to_owned(),
            },
        ))?;
        let kid = match &token {
            BoundToken::Agent(t) => t.claims.cnf.jwk.kid.clone(),
            BoundToken::Person(t) => t.claims.cnf.jwk.kid.clone(),
            BoundToken::Auth(t) => t.claims.cnf.jwk.kid.clone(),
            _ => None,
        };
        Ok(ResolvedKey {
            key,
            identity: KeyIdentity::Token(Box::new(token)),
            kid,
        })
    }
}

/// Dispatches on the scheme token to the resolvers registered for it. A scheme with no
/// resolver is `unsupported_scheme`.
#[derive(Clone, Default)]
pub struct SchemeResolver {
    jwt: Option<JwtResolver>,
    hwk: bool,
    jkt_jwt: bool,
    others: BTreeMap<String, Arc<dyn KeyResolver>>,
}

impl std::fmt::Debug for SchemeResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemeResolver")
            .field("jwt", &self.jwt)
            .field("hwk", &self.hwk)
            .field("jkt_jwt", &self.jkt_jwt)
            .field("others", &self.others.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SchemeResolver {
    /// A resolver for no scheme.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolves `jwt` with `resolver`.
    #[must_use]
    pub fn jwt(mut self, resolver: JwtResolver) -> Self {
        self.jwt = Some(resolver);
        self
    }

    /// Resolves `hwk`.
    #[must_use]
    pub fn hwk(mut self) -> Self {
        self.hwk = true;
        self
    }

    /// Resolves `jkt-jwt`.
    #[must_use]
    pub fn jkt_jwt(mut self) -> Self {
        self.jkt_jwt = true;
        self
    }

    /// Resolves the scheme named `name` with `resolver`.
    #[must_use]
    pub fn scheme(mut self, name: &str, resolver: Arc<dyn KeyResolver>) -> Self {
        self.others.insert(name.to_owned(), resolver);
        self
    }
}

#[async_trait]
impl KeyResolver for SchemeResolver {
    async fn resolve(
        &self,
        scheme: &Scheme,
        ctx: &ResolveContext<'_>,
    ) -> Result<ResolvedKey, VerifyError> {
        match scheme {
            Scheme::Jwt { jwt, .. } if self.jwt.is_some() => match &self.jwt {
                Some(r) => r.resolve_jwt(jwt, ctx.now).await,
                None => Err(unsupported(scheme)),
            },
            Scheme::Hwk(h) if self.hwk => resolve_hwk(h),
            Scheme::JktJwt { jwt, .. } if self.jkt_jwt => resolve_jkt_jwt(jwt, ctx.now, 60),
            other => match self.others.get(other.name()) {
                Some(r) => r.resolve(other, ctx).await,
                None => Err(unsupported(other)),
            },
        }
    }
}

fn unsupported(scheme: &Scheme) -> VerifyError {
    VerifyError::UnsupportedScheme {
        scheme: Some(scheme.name().to_owned()),
    }
}

/// Whether an issuer withdrew a token (draft -11 §11.12): keyed by `(iss, jti)`.
#[async_trait]
pub trait RevocationList: Send + Sync {
    /// Whether the token `(iss, jti)` is revoked.
    ///
    /// # Errors
    ///
    /// A description of the failure when the store cannot answer; verification then fails
    /// closed with [`VerifyError::Unavailable`].
    async fn is_revoked(&self, iss: &ServerId, jti: &str) -> Result<bool, String>;
}

/// The metadata documents through which AAuth parties publish their keys (draft -11): the
/// only `dwk` values a `jwks_uri` member may name here.
pub const AAUTH_DOCUMENTS: [&str; 4] = [
    "aauth-agent.json",
    "aauth-person.json",
    "aauth-access.json",
    "aauth-resource.json",
];

/// Admits a `jwks_uri` member's `dwk` only if it names one of the [`AAUTH_DOCUMENTS`], so
/// that a caller cannot make a verifier fetch `{id}/.well-known/{anything}`: refused as an
/// unusable member (`invalid_key`) before anything is fetched.
///
/// ```
/// use aauth_keys::time::UnixTime;
/// use aauth_signing::{ResolveContext, check_jwks_uri_dwk};
/// let ctx = ResolveContext::new(UnixTime(1_800_000_000), "sig");
/// assert!(check_jwks_uri_dwk("aauth-person.json", &ctx).is_ok());
/// let e = check_jwks_uri_dwk("openid-configuration", &ctx).unwrap_err();
/// assert_eq!(e.code(), Some(aauth_headers::ErrorCode::InvalidKey));
/// ```
///
/// # Errors
///
/// [`VerifyError::BadKeyMember`] with [`MemberError::ParameterValue`] and `invalid_key`.
pub fn check_jwks_uri_dwk(dwk: &str, ctx: &ResolveContext<'_>) -> Result<(), VerifyError> {
    if AAUTH_DOCUMENTS.contains(&dwk) {
        Ok(())
    } else {
        Err(VerifyError::BadKeyMember {
            label: ctx.label.to_owned(),
            reason: MemberError::ParameterValue {
                name: "dwk",
                reason: "names no AAuth metadata document",
            },
            code: ErrorCode::InvalidKey,
        })
    }
}

/// Resolves `Signature-Key: sig=jwks_uri;id;dwk;kid` through an issuer-key resolver (the
/// metadata crate's key cache in production, a static set in tests): the signer is `id`,
/// its key the one its `{id}/.well-known/{dwk}` → `jwks_uri` publishes under `kid`, where
/// `dwk` must be one of the [`AAUTH_DOCUMENTS`] ([`check_jwks_uri_dwk`]). What a server
/// uses to verify another server (a Person Server calling an Access Server, a
/// revocation).
#[derive(Clone)]
pub struct IssuerJwksUriResolver {
    keys: Arc<dyn IssuerKeyResolver>,
}

impl std::fmt::Debug for IssuerJwksUriResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerJwksUriResolver")
            .finish_non_exhaustive()
    }
}

impl IssuerJwksUriResolver {
    /// Resolves through `keys`.
    #[must_use]
    pub fn new(keys: Arc<dyn IssuerKeyResolver>) -> Self {
        Self { keys }
    }
}

#[async_trait]
impl KeyResolver for IssuerJwksUriResolver {
    async fn resolve(
        &self,
        scheme: &Scheme,
        ctx: &ResolveContext<'_>,
    ) -> Result<ResolvedKey, VerifyError> {
        let Scheme::JwksUri { id, dwk, kid } = scheme else {
            return Err(VerifyError::UnsupportedScheme {
                scheme: Some(scheme.name().to_owned()),
            });
        };
        check_jwks_uri_dwk(dwk, ctx)?;
        let iss = ServerId::parse(id).map_err(|_| {
            VerifyError::KeyDiscovery(aauth_tokens::ResolveError::Untrusted { iss: id.clone() })
        })?;
        let key = self
            .keys
            .resolve(&aauth_tokens::KeyRequest::new(&iss, dwk, kid))
            .await
            .map_err(|e| match e {
                aauth_tokens::ResolveError::Unavailable { reason } => {
                    VerifyError::Unavailable { reason }
                }
                other => VerifyError::KeyDiscovery(other),
            })?;
        let mut resolved = ResolvedKey::new(
            key,
            KeyIdentity::JwksUri {
                id: id.clone(),
                dwk: dwk.clone(),
                kid: kid.clone(),
            },
        );
        // The key goes by the member's `kid`: a `keyid` naming it names the same key.
        resolved.kid = Some(kid.clone());
        Ok(resolved)
    }
}
