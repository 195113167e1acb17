//! Token verification in the draft's order, with the issuer's key from an injected
//! resolver.
//!
//! Order (draft -11 §11.5, Signature-Key -09 §3.8): structure → `typ` → algorithm policy
//! → claim types, identifiers, `dwk` → `exp` (no tolerance) → issuer key (`iss` + `dwk` +
//! `kid`) → signature → future `iat` (`clock_skew`) → lifetime cap → `aud` → `cnf.jwk`.
//! Everything before the key lookup is local, so a malformed, mistyped, expired or
//! wrongly-issued token costs no fetch and no signature check.

use std::collections::BTreeMap;

use aauth_keys::time::UnixTime;
use aauth_keys::{KeyError, PublicKey};
use async_trait::async_trait;

use crate::claims::{AgentClaims, AuthClaims, PersonClaims, RawClaims, TokenClaims, TokenType};
use crate::jws::{CompactJws, HeaderPolicy, JwsHeader};
use crate::{ServerId, TokenError};

/// Which issuer key to look up: `{iss}/.well-known/{dwk}` → `jwks_uri` → `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRequest<'a> {
    /// The token issuer.
    pub iss: &'a ServerId,
    /// The issuer's metadata document name.
    pub dwk: &'a str,
    /// The key identifier from the JWS header.
    pub kid: &'a str,
}

impl<'a> KeyRequest<'a> {
    /// A request for the key `kid` of `iss`, discovered through the document `dwk`.
    #[must_use]
    pub fn new(iss: &'a ServerId, dwk: &'a str, kid: &'a str) -> Self {
        Self { iss, dwk, kid }
    }
}

/// Why the issuer's key could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The metadata document has no `issuer` (`issuer_missing`).
    #[error("issuer metadata has no issuer member")]
    IssuerMissing,
    /// The metadata `issuer` differs from the token's `iss` (`issuer_mismatch`).
    #[error("issuer metadata names {found:?}, not the token issuer")]
    IssuerMismatch {
        /// The `issuer` found.
        found: String,
    },
    /// No key with that `kid`, even after the one permitted refresh (`unknown_key`).
    #[error("issuer publishes no key {kid:?}")]
    UnknownKey {
        /// The `kid`.
        kid: String,
    },
    /// The selected key is refused (`invalid_key` or `unsupported_algorithm`).
    #[error("issuer key refused: {0}")]
    Key(#[source] KeyError),
    /// The verifier does not trust this issuer.
    #[error("issuer {iss} is not trusted here")]
    Untrusted {
        /// The issuer.
        iss: String,
    },
    /// The issuer's keys cannot be fetched now and none are cached: a server condition
    /// (`503`), not a verdict on the token.
    #[error("issuer keys unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
}

/// Supplies issuer keys. The metadata crate implements it over HTTPS with a JWKS cache;
/// [`StaticIssuerKeys`] serves configured keys.
#[async_trait]
pub trait IssuerKeyResolver: Send + Sync {
    /// The key `req` names.
    ///
    /// # Errors
    ///
    /// [`ResolveError`].
    async fn resolve(&self, req: &KeyRequest<'_>) -> Result<PublicKey, ResolveError>;

    /// Called once when the key from [`IssuerKeyResolver::resolve`] did not verify the
    /// token: a resolver with a cache may refetch (within its once-a-minute floor) and
    /// return a replacement for a silently re-keyed `kid`. The default has none.
    ///
    /// # Errors
    ///
    /// [`ResolveError`].
    async fn refresh(&self, req: &KeyRequest<'_>) -> Result<Option<PublicKey>, ResolveError> {
        let _ = req;
        Ok(None)
    }
}

/// Issuer keys configured in advance, keyed by `(iss, dwk, kid)`.
#[derive(Debug, Clone, Default)]
pub struct StaticIssuerKeys {
    keys: BTreeMap<(String, String, String), PublicKey>,
}

impl StaticIssuerKeys {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a key.
    pub fn insert(&mut self, iss: &ServerId, dwk: &str, kid: &str, key: PublicKey) {
        self.keys.insert(
            (iss.as_str().to_owned(), dwk.to_owned(), kid.to_owned()),
            key,
        );
    }

    /// The same set with a key added.
    #[must_use]
    pub fn with(mut self, iss: &ServerId, dwk: &str, kid: &str, key: PublicKey) -> Self {
        self.insert(iss, dwk, kid, key);
        self
    }
}

#[async_trait]
impl IssuerKeyResolver for StaticIssuerKeys {
    async fn resolve(&self, req: &KeyRequest<'_>) -> Result<PublicKey, ResolveError> {
        let found = self
            .keys
            .iter()
            .find(|((i, d, k), _)| i == req.iss.as_str() && d == req.dwk && k == req.kid);
        if let Some((_, key)) = found {
            return Ok(key.clone());
        }
        if self.keys.keys().any(|(i, _, _)| i == req.iss.as_str()) {
            Err(ResolveError::UnknownKey {
                kid: req.kid.to_owned(),
            })
        } else {
            Err(ResolveError::Untrusted {
                iss: req.iss.as_str().to_owned(),
            })
        }
    }
}

/// The verifier's context.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Validation<'a> {
    /// The verifier's current time.
    pub now: UnixTime,
    /// The verifier's own identifier: required for person, resource and auth tokens, whose
    /// `aud` must equal it.
    pub audience: Option<&'a ServerId>,
    /// How far `iat` may be ahead of `now` before `clock_skew` (default 60 s, the signature
    /// window, as Signature-Key -09 §5.4.14 recommends).
    pub max_iat_skew: u64,
    /// The longest agent-token lifetime (`exp - iat`) accepted: by default
    /// [`TokenType::verify_lifetime_cap`] (24 hours), the draft's bound for issuers.
    pub max_agent_lifetime: u64,
    /// Compatibility, off by default: a resource token without `presented_jti` is read
    /// through `person_token_jti`, the claim's name before draft -11 renamed it (§6.7.1).
    /// See [`Validation::accept_person_token_jti`].
    pub accept_person_token_jti: bool,
}

impl<'a> Validation<'a> {
    /// Validation at `now` with no audience and a 60-second `iat` skew.
    #[must_use]
    pub fn new(now: UnixTime) -> Self {
        Self {
            now,
            audience: None,
            max_iat_skew: 60,
            max_agent_lifetime: TokenType::Agent.verify_lifetime_cap(),
            accept_person_token_jti: false,
        }
    }

    /// Compatibility with resources that lag draft -11 (off by default, strict -11): a
    /// resource token that carries no `presented_jti` is read with the value of
    /// `person_token_jti`, the claim's name before -11 renamed it (§6.7.1). A token that
    /// carries both is read from `presented_jti`, and refused when the two differ (it
    /// would name two tokens). Only resource tokens are affected.
    ///
    /// ```
    /// use aauth_keys::time::UnixTime;
    /// use aauth_tokens::Validation;
    /// let v = Validation::new(UnixTime(1_800_000_000)).accept_person_token_jti(true);
    /// assert!(v.accept_person_token_jti);
    /// assert!(!Validation::new(UnixTime(1_800_000_000)).accept_person_token_jti);
    /// ```
    #[must_use]
    pub fn accept_person_token_jti(mut self, on: bool) -> Self {
        self.accept_person_token_jti = on;
        self
    }

    /// Accepts agent tokens living up to `lifetime` (whole seconds; default 24 hours). Raise it only for
    /// issuers known to mint longer-lived tokens (test vectors built never to expire);
    /// the person- and auth-token caps are the draft's MUSTs and cannot be raised.
    #[must_use]
    pub fn max_agent_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.max_agent_lifetime = lifetime.as_secs();
        self
    }

    /// Sets the verifier's identifier.
    #[must_use]
    pub fn audience(mut self, audience: &'a ServerId) -> Self {
        self.audience = Some(audience);
        self
    }

    /// Sets the allowed `iat` skew (whole seconds).
    #[must_use]
    pub fn max_iat_skew(mut self, skew: std::time::Duration) -> Self {
        self.max_iat_skew = skew.as_secs();
        self
    }
}

/// A verified token: its header, its claims, and (for bound tokens) its validated
/// confirmation key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified<C> {
    /// The protected header.
    pub header: JwsHeader,
    /// The claims.
    pub claims: C,
    /// The validated `cnf.jwk` (absent only for resource tokens).
    pub cnf_key: Option<PublicKey>,
}

/// A token decoded and checked up to the key lookup, not yet verified.
#[derive(Debug)]
pub struct Unverified<'a, C> {
    jws: CompactJws<'a>,
    claims: C,
    kid: String,
}

impl<'a, C: TokenClaims> Unverified<'a, C> {
    /// Runs every check that needs no key: structure, `typ`, algorithm policy, claim
    /// types, identifiers, `dwk`, `exp`, and the presence of `kid`.
    ///
    /// # Errors
    ///
    /// The first [`TokenError`] in the order above.
    pub fn decode(token: &'a str, v: &Validation<'_>) -> Result<Self, TokenError> {
        let jws = CompactJws::parse_with(token, HeaderPolicy::Standard, &|typ| {
            check_typ(&[C::TYPE], typ)
        })?;
        Self::from_jws(jws, v)
    }

    fn from_jws(jws: CompactJws<'a>, v: &Validation<'_>) -> Result<Self, TokenError> {
        let json = std::str::from_utf8(&jws.payload).map_err(|_| TokenError::ClaimSet {
            reason: "payload is not UTF-8".to_owned(),
        })?;
        let raw = RawClaims::parse(json)?.accepting_person_token_jti(
            C::TYPE == TokenType::Resource && v.accept_person_token_jti,
        );
        let claims = C::read(&raw)?;
        let common = claims.common();
        if v.now.as_secs() >= common.exp {
            return Err(TokenError::Expired {
                exp: common.exp,
                now: v.now.as_secs(),
            });
        }
        if let Some(nbf) = raw.not_before()?
            && nbf > v.now.as_secs().saturating_add(v.max_iat_skew)
        {
            return Err(TokenError::NotYetValid {
                nbf,
                now: v.now.as_secs(),
            });
        }
        let kid = jws.header.kid.clone().ok_or(TokenError::MissingKid)?;
        Ok(Self { jws, claims, kid })
    }

    /// The claims, **not yet verified**: use them only to choose the key.
    #[must_use]
    pub fn unverified_claims(&self) -> &C {
        &self.claims
    }

    /// Which issuer key verifies this token.
    #[must_use]
    pub fn key_request(&self) -> KeyRequest<'_> {
        let c = self.claims.common();
        KeyRequest {
            iss: c.iss,
            dwk: c.dwk,
            kid: &self.kid,
        }
    }

    /// Checks the signature under `key` only.
    ///
    /// # Errors
    ///
    /// [`TokenError::KeyAlgorithmMismatch`] or [`TokenError::BadSignature`].
    pub fn check_signature(&self, key: &PublicKey) -> Result<(), TokenError> {
        self.jws.verify(key)
    }

    /// Verifies the signature under `key` and runs the remaining checks.
    ///
    /// # Errors
    ///
    /// The first [`TokenError`]: signature, future `iat`, lifetime, `aud`, `cnf.jwk`.
    pub fn finish(self, key: &PublicKey, v: &Validation<'_>) -> Result<Verified<C>, TokenError> {
        self.check_signature(key)?;
        self.finish_verified(v)
    }

    fn finish_verified(self, v: &Validation<'_>) -> Result<Verified<C>, TokenError> {
        let c = self.claims.common();
        let now = v.now.as_secs();
        if c.iat > now.saturating_add(v.max_iat_skew) {
            return Err(TokenError::IssuedInFuture { iat: c.iat, now });
        }
        if c.exp < c.iat {
            return Err(TokenError::ExpBeforeIat);
        }
        // `exp >= iat` was checked just above, so the subtraction cannot wrap.
        let lifetime = c.exp.saturating_sub(c.iat);
        let cap = match C::TYPE {
            TokenType::Agent => v.max_agent_lifetime,
            other => other.verify_lifetime_cap(),
        };
        if lifetime > cap {
            return Err(TokenError::LifetimeTooLong { lifetime, cap });
        }
        if let Some(aud) = c.aud {
            let expected = v.audience.ok_or_else(|| TokenError::WrongAudience {
                expected: "(the verifier has no audience configured)".to_owned(),
                found: aud.as_str().to_owned(),
            })?;
            if aud != expected {
                return Err(TokenError::WrongAudience {
                    expected: expected.as_str().to_owned(),
                    found: aud.as_str().to_owned(),
                });
            }
        }
        let cnf_key = match c.cnf {
            Some(jwk) => Some(PublicKey::from_jwk(jwk).map_err(TokenError::Confirmation)?),
            None => None,
        };
        Ok(Verified {
            header: self.jws.header,
            claims: self.claims,
            cnf_key,
        })
    }
}

fn check_typ(accepted: &[TokenType], typ: Option<&str>) -> Result<(), TokenError> {
    match typ {
        Some(t) if accepted.iter().any(|a| a.matches_typ(t)) => Ok(()),
        other => Err(TokenError::WrongType {
            expected: match accepted {
                [one] => one.typ(),
                _ => "an AAuth token type accepted here",
            },
            found: other.map(str::to_owned),
        }),
    }
}

/// Verifies a token of type `C`, fetching the issuer key from `resolver` (with one refresh
/// if the key does not verify).
///
/// # Errors
///
/// The first failing check as a [`TokenError`].
pub async fn verify<C: TokenClaims>(
    token: &str,
    v: &Validation<'_>,
    resolver: &dyn IssuerKeyResolver,
) -> Result<Verified<C>, TokenError> {
    let unverified = Unverified::<C>::decode(token, v)?;
    verify_decoded(unverified, v, resolver).await
}

async fn verify_decoded<C: TokenClaims>(
    unverified: Unverified<'_, C>,
    v: &Validation<'_>,
    resolver: &dyn IssuerKeyResolver,
) -> Result<Verified<C>, TokenError> {
    let req = unverified.key_request();
    let key = resolver
        .resolve(&req)
        .await
        .map_err(TokenError::KeyResolution)?;
    match unverified.check_signature(&key) {
        Ok(()) => {}
        Err(TokenError::BadSignature) => {
            // A cached key that fails: one refresh, for a kid re-keyed in place (-09 §7.2).
            let fresh = resolver
                .refresh(&req)
                .await
                .map_err(TokenError::KeyResolution)?;
            match fresh {
                Some(k) if k != key => unverified.check_signature(&k)?,
                _ => return Err(TokenError::BadSignature),
            }
        }
        Err(e) => return Err(e),
    }
    unverified.finish_verified(v)
}

/// A verified token that binds a signing key: what `Signature-Key: sig=jwt` may carry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BoundToken {
    /// An agent token (or sub-agent token).
    Agent(Verified<AgentClaims>),
    /// A person token.
    Person(Verified<PersonClaims>),
    /// An auth token.
    Auth(Verified<AuthClaims>),
}

impl BoundToken {
    /// The token type.
    #[must_use]
    pub fn token_type(&self) -> TokenType {
        match self {
            Self::Agent(_) => TokenType::Agent,
            Self::Person(_) => TokenType::Person,
            Self::Auth(_) => TokenType::Auth,
        }
    }

    /// The key the token binds (`cnf.jwk`).
    #[must_use]
    pub fn cnf_key(&self) -> Option<&PublicKey> {
        match self {
            Self::Agent(t) => t.cnf_key.as_ref(),
            Self::Person(t) => t.cnf_key.as_ref(),
            Self::Auth(t) => t.cnf_key.as_ref(),
        }
    }

    /// The issuer and `jti`, which key revocation state.
    #[must_use]
    pub fn iss_jti(&self) -> (&ServerId, &str) {
        match self {
            Self::Agent(t) => (&t.claims.iss, &t.claims.jti),
            Self::Person(t) => (&t.claims.iss, &t.claims.jti),
            Self::Auth(t) => (&t.claims.iss, &t.claims.jti),
        }
    }

    /// The expiry.
    #[must_use]
    pub fn exp(&self) -> u64 {
        match self {
            Self::Agent(t) => t.claims.exp,
            Self::Person(t) => t.claims.exp,
            Self::Auth(t) => t.claims.exp,
        }
    }
}

/// Verifies a token whose type must be one of `accepted` (agent, person, auth), chosen by
/// its `typ`.
///
/// # Errors
///
/// [`TokenError::WrongType`] when `typ` names no accepted type, otherwise as [`verify`].
pub async fn verify_bound(
    token: &str,
    accepted: &[TokenType],
    v: &Validation<'_>,
    resolver: &dyn IssuerKeyResolver,
) -> Result<BoundToken, TokenError> {
    let accepted: Vec<TokenType> = accepted
        .iter()
        .copied()
        .filter(|t| *t != TokenType::Resource)
        .collect();
    let jws = CompactJws::parse_with(token, HeaderPolicy::Standard, &|typ| {
        check_typ(&accepted, typ)
    })?;
    let ty = jws
        .header
        .typ
        .as_deref()
        .and_then(TokenType::from_typ)
        .ok_or(TokenError::Malformed {
            reason: "typ vanished after check",
        })?;
    Ok(match ty {
        TokenType::Person => BoundToken::Person(
            verify_decoded(Unverified::<PersonClaims>::from_jws(jws, v)?, v, resolver).await?,
        ),
        TokenType::Auth => BoundToken::Auth(
            verify_decoded(Unverified::<AuthClaims>::from_jws(jws, v)?, v, resolver).await?,
        ),
        _ => BoundToken::Agent(
            verify_decoded(Unverified::<AgentClaims>::from_jws(jws, v)?, v, resolver).await?,
        ),
    })
}
