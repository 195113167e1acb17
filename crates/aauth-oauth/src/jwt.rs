//! JWT access tokens (RFC 9068, and the plain JWT access tokens many servers issue),
//! checked sans-IO: [`AccessToken::parse`] runs every check that needs no key, then
//! [`AccessToken::finish`] verifies the signature with the issuer's key.
//!
//! Order, cheap checks first (nothing is fetched for a token that fails one):
//! size → three segments, none empty (an unsigned token has an empty
//! third) → canonical base64url (nothing outside the alphabet) → header as one JSON object, no member twice → `alg`
//! (`none` never) → `typ` → no `crit`, `jku`, `x5u`, `jwk`, `zip`, `b64` → claims as one
//! JSON object, no member twice → `iss` trusted → `alg` is how that issuer signs (HMAC only
//! from an issuer configured with a [`SharedSecret`], and only its algorithm) → `exp` →
//! `nbf`, `iat` → lifetime → `aud` → then, with the key or the secret: the key allows `alg`
//! → signature. A token under a published key names it by `kid`, or, without `kid` (RFC
//! 7515 §4.1.4 makes it optional), is verified only when its issuer publishes exactly one
//! key for its `alg` ([`crate::AccessTokenVerifier`]). Scopes are the route's business
//! ([`AccessTokenClaims::require_scopes`]).

use aauth_keys::time::UnixTime;
use std::borrow::Cow;

use aauth_tokens::json::{Object, string_value};
use aauth_tokens::jws::segments;

use crate::claims::{AccessTokenClaims, read_claims};

use crate::{AlgorithmRefusal, HmacAlgorithm, IssuerKey, JwsAlgorithm, OAuthError, SharedSecret};

/// The largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Header members that would make a verifier fetch or trust something the token names,
/// or change how it is read (RFC 8725 §3.10, RFC 7515 §4.1.11, RFC 7797).
const REFUSED_HEADERS: [&str; 6] = ["crit", "jku", "x5u", "jwk", "zip", "b64"];

/// Which `typ` values a resource accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenTypes {
    /// RFC 9068 §4: `at+jwt` (or `application/at+jwt`) only. An ID token or another
    /// JWT of the same issuer can never pass as an access token.
    #[default]
    AtJwt,
    /// `at+jwt`, and also `JWT` or no `typ`: the plain JWT access tokens of servers that
    /// predate RFC 9068. The audience check then is what keeps an ID token out (its `aud`
    /// is a client, not this resource).
    AtJwtOrPlain,
}

/// What a resource accepts in an access token, beyond the issuer's signature.
///
/// ```
/// use aauth_oauth::{AccessTokenPolicy, TokenTypes};
/// let policy = AccessTokenPolicy::new("https://api.example")
///     .with_leeway(30)
///     .with_types(TokenTypes::AtJwtOrPlain);
/// assert_eq!(policy.audience(), "https://api.example");
/// ```
#[derive(Debug, Clone)]
pub struct AccessTokenPolicy {
    audience: String,
    leeway: u64,
    types: TokenTypes,
    max_lifetime: Option<u64>,
}

impl AccessTokenPolicy {
    /// Tokens for `audience` (the resource's identifier, RFC 8707), `at+jwt` only, with a
    /// 60-second leeway on `exp`, `nbf` and `iat`, and any lifetime.
    #[must_use]
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            leeway: 60,
            types: TokenTypes::AtJwt,
            max_lifetime: None,
        }
    }

    /// The leeway, in seconds, for the clocks of issuer and resource (default 60).
    #[must_use]
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Which `typ` values pass (default [`TokenTypes::AtJwt`]).
    #[must_use]
    pub fn with_types(mut self, types: TokenTypes) -> Self {
        self.types = types;
        self
    }

    /// Refuses tokens whose `exp - iat` is longer than `seconds` (and tokens without
    /// `iat`).
    #[must_use]
    pub fn with_max_lifetime(mut self, seconds: u64) -> Self {
        self.max_lifetime = Some(seconds);
        self
    }

    /// The audience tokens must name.
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// How a trusted issuer signs its access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuerSigning {
    /// With the keys it publishes (RS256, PS256, ES256, EdDSA): tokens name one by `kid`,
    /// or carry none when the issuer publishes one key for their `alg`.
    Keys,
    /// With a secret it shares with this resource, under this one algorithm
    /// ([`SharedSecret`]); `kid` is optional.
    Secret(HmacAlgorithm),
}

/// The `alg` of an access token that passed the header checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenAlgorithm {
    /// Signed with a published key.
    Key(JwsAlgorithm),
    /// Signed with a shared secret.
    Secret(HmacAlgorithm),
}

impl TokenAlgorithm {
    /// The JOSE `alg` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Key(a) => a.as_str(),
            Self::Secret(a) => a.as_str(),
        }
    }
}

/// An access token that passed every check but its signature.
#[derive(Debug, Clone)]
pub struct AccessToken<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    alg: TokenAlgorithm,
    kid: Option<String>,
    claims: AccessTokenClaims,
}

impl<'a> AccessToken<'a> {
    /// Runs every check that needs no key, for issuers that sign with published keys.
    /// `trusted` says whether an `iss` is one the resource accepts tokens from (checked
    /// before anything is fetched for it). `none` and HMAC tokens are refused.
    ///
    /// # Errors
    ///
    /// [`OAuthError`] naming the first check that failed.
    pub fn parse(
        token: &'a str,
        policy: &AccessTokenPolicy,
        trusted: &dyn Fn(&str) -> bool,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        Self::parse_trusting(
            token,
            policy,
            &|iss| trusted(iss).then_some(IssuerSigning::Keys),
            now,
        )
    }

    /// As [`AccessToken::parse`], where `trust` also says how each trusted issuer signs:
    /// an HMAC token passes only from an issuer that [`IssuerSigning::Secret`] names, under
    /// that algorithm; a token under a published key never from such an issuer.
    ///
    /// # Errors
    ///
    /// [`OAuthError`] naming the first check that failed; [`OAuthError::Algorithm`] with
    /// [`AlgorithmRefusal::Forbidden`] for HMAC from an issuer with published keys, and
    /// [`AlgorithmRefusal::NotTheIssuers`] for any other `alg` its issuer does not sign
    /// with.
    pub fn parse_trusting(
        token: &'a str,
        policy: &AccessTokenPolicy,
        trust: &dyn Fn(&str) -> Option<IssuerSigning>,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        let (signing_input, header, payload, signature) = split(token)?;
        let (alg, kid) = read_header(&header, policy.types)?;
        let (claims, nbf) = read_claims(payload)?;
        let Some(signing) = trust(claims.issuer()) else {
            return Err(OAuthError::UnknownIssuer {
                iss: claims.issuer().to_owned(),
            });
        };
        let refused = |refusal| OAuthError::Algorithm {
            alg: alg.as_str().to_owned(),
            refusal,
        };
        match (alg, signing) {
            (TokenAlgorithm::Key(_), IssuerSigning::Keys) => {}
            (TokenAlgorithm::Secret(a), IssuerSigning::Secret(b)) if a == b => {}
            (TokenAlgorithm::Secret(_), IssuerSigning::Keys) => {
                return Err(refused(AlgorithmRefusal::Forbidden));
            }
            _ => return Err(refused(AlgorithmRefusal::NotTheIssuers)),
        }
        check_times(&claims, nbf, policy, now)?;
        if !claims.audience().any(|a| a == policy.audience) {
            return Err(OAuthError::Audience {
                expected: policy.audience.clone(),
                found: claims.audience().map(str::to_owned).collect(),
            });
        }
        Ok(Self {
            signing_input,
            signature,
            alg,
            kid,
            claims,
        })
    }

    /// `iss`: whose keys verify this token.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.claims.issuer()
    }

    /// The header's `kid`, if any (without one, a token under a published key is verified
    /// only with its issuer's sole key for its `alg`).
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The header's `alg`.
    #[must_use]
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.alg
    }

    /// Verifies the signature with the issuer's key for [`AccessToken::kid`].
    ///
    /// # Errors
    ///
    /// [`OAuthError::Signature`], also when the key does not verify the token's `alg`
    /// (the key decides the algorithm).
    pub fn finish(self, key: &IssuerKey) -> Result<AccessTokenClaims, OAuthError> {
        self.check(key)?;
        Ok(self.claims)
    }

    /// Verifies an HMAC token's tag with its issuer's secret.
    ///
    /// # Errors
    ///
    /// [`OAuthError::Signature`], also when the token is not an HMAC token under the
    /// secret's algorithm.
    pub fn finish_with_secret(
        self,
        secret: &SharedSecret,
    ) -> Result<AccessTokenClaims, OAuthError> {
        match self.alg {
            TokenAlgorithm::Secret(alg)
                if secret.verifies(alg, self.signing_input.as_bytes(), &self.signature) =>
            {
                Ok(self.claims)
            }
            _ => Err(OAuthError::Signature),
        }
    }

    /// Whether `key` verifies the signature (the caller then takes the claims with
    /// [`AccessToken::into_claims`]; outside the crate, [`AccessToken::finish`] does both).
    pub(crate) fn verifies(&self, key: &IssuerKey) -> bool {
        self.check(key).is_ok()
    }

    /// The claims, once [`AccessToken::verifies`] said yes.
    pub(crate) fn into_claims(self) -> AccessTokenClaims {
        self.claims
    }

    fn check(&self, key: &IssuerKey) -> Result<(), OAuthError> {
        let TokenAlgorithm::Key(alg) = self.alg else {
            return Err(OAuthError::Signature);
        };
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| OAuthError::Signature)
    }
}

pub(crate) type Parts<'a> = (&'a str, String, String, Vec<u8>);

/// The segments of a compact JWS (the workspace's one cut, `aauth_tokens::jws::segments`;
/// it refuses every byte outside the base64url alphabet), header and payload as text.
pub(crate) fn split(token: &str) -> Result<Parts<'_>, OAuthError> {
    let malformed = |reason| OAuthError::Malformed { reason };
    let s = segments(token).map_err(malformed)?;
    let header = String::from_utf8(s.header).map_err(|_| malformed("header is not UTF-8"))?;
    let payload = String::from_utf8(s.payload).map_err(|_| malformed("payload is not UTF-8"))?;
    Ok((s.signing_input, header, payload, s.signature))
}

/// The header in one pass over its members (whether the issuer signs with `alg`, and so
/// whether `kid` must be there, is decided once the claims name the issuer).
fn read_header(
    json: &str,
    types: TokenTypes,
) -> Result<(TokenAlgorithm, Option<String>), OAuthError> {
    let header = |reason: String| OAuthError::Header { reason };
    let h = Object::parse(json).map_err(|e| header(e.to_string()))?;
    let (mut alg, mut typ, mut kid) = (None, None, None);
    for (name, raw) in h.members() {
        match name {
            "alg" => alg = Some(string_value(raw).map_err(|e| header(format!("alg: {e}")))?),
            "typ" => typ = Some(string_value(raw).map_err(|e| header(format!("typ: {e}")))?),
            "kid" => kid = Some(string_value(raw).map_err(|e| header(format!("kid: {e}")))?),
            _ => {}
        }
    }
    let alg = alg.ok_or_else(|| header("alg is absent".to_owned()))?;
    let alg = match HmacAlgorithm::parse(&alg) {
        Some(hmac) => TokenAlgorithm::Secret(hmac),
        None => TokenAlgorithm::Key(JwsAlgorithm::parse(&alg).map_err(|refusal| {
            OAuthError::Algorithm {
                alg: alg.into_owned(),
                refusal,
            }
        })?),
    };
    if !typ_accepted(typ.as_deref(), types) {
        return Err(OAuthError::Type {
            typ: typ.map(Cow::into_owned),
        });
    }
    if let Some((name, _)) = h.members().find(|(n, _)| REFUSED_HEADERS.contains(n)) {
        return Err(header(format!("{name} is not accepted in an access token")));
    }
    Ok((alg, kid.map(Cow::into_owned)))
}

/// RFC 9068 §4: `at+jwt`, or the full media type `application/at+jwt`; media types
/// compare case-insensitively (RFC 7515 §4.1.9).
fn typ_accepted(typ: Option<&str>, types: TokenTypes) -> bool {
    let at_jwt =
        |t: &str| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt");
    match (typ, types) {
        (Some(t), _) if at_jwt(t) => true,
        (None, TokenTypes::AtJwtOrPlain) => true,
        (Some(t), TokenTypes::AtJwtOrPlain) => {
            t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt")
        }
        _ => false,
    }
}

fn check_times(
    claims: &AccessTokenClaims,
    nbf: Option<u64>,
    policy: &AccessTokenPolicy,
    now: UnixTime,
) -> Result<(), OAuthError> {
    let now = now.as_secs();
    let exp = claims.expires_at().as_secs();
    if exp.saturating_add(policy.leeway) <= now {
        return Err(OAuthError::Expired { exp, now });
    }
    for not_before in [nbf, claims.issued_at().map(UnixTime::as_secs)]
        .into_iter()
        .flatten()
    {
        if not_before > now.saturating_add(policy.leeway) {
            return Err(OAuthError::NotYetValid { not_before, now });
        }
    }
    if let Some(max) = policy.max_lifetime {
        let lifetime = claims
            .issued_at()
            .map_or(u64::MAX, |iat| exp.saturating_sub(iat.as_secs()));
        if lifetime > max {
            return Err(OAuthError::Lifetime { lifetime, max });
        }
    }
    Ok(())
}
