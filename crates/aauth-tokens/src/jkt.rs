//! The `jkt-jwt` self-issued key delegation JWT (Signature-Key -09 §3.5): an enclave key,
//! carried in the header, delegates to an ephemeral key in `cnf.jwk`. No fetch is needed.

use aauth_keys::time::UnixTime;
use aauth_keys::{PublicKey, ThumbprintHash};

use crate::TokenError;
use crate::claims::RawClaims;
use crate::jws::{CompactJws, HeaderPolicy};

/// A verified `jkt-jwt`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedJktJwt {
    /// `urn:jkt:<hash>:<thumbprint of the enclave key>`: the pseudonymous identity.
    pub iss: String,
    /// The enclave (identity) key from the header.
    pub enclave_key: PublicKey,
    /// The delegated signing key from `cnf.jwk`.
    pub cnf_key: PublicKey,
    /// The `kid` of `cnf.jwk`, if it has one: a name for the delegated key that a
    /// request's `keyid` may use (-09 §4.3).
    pub cnf_kid: Option<String>,
    /// `jti`, if present.
    pub jti: Option<String>,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
}

fn hash_for(typ: &str) -> Option<(ThumbprintHash, &'static str)> {
    if typ.eq_ignore_ascii_case("jkt-s256+jwt") {
        Some((ThumbprintHash::Sha256, "urn:jkt:sha-256:"))
    } else if typ.eq_ignore_ascii_case("jkt-s512+jwt") {
        Some((ThumbprintHash::Sha512, "urn:jkt:sha-512:"))
    } else {
        None
    }
}

/// Verifies a `jkt-jwt` per -09 §3.5: `typ` names the thumbprint hash, `iss` must equal
/// the thumbprint URN of the header `jwk` (recomputed, never trusted), the header `jwk`
/// verifies the signature, `exp` and `iat` hold, and `cnf.jwk` is a valid key. Both keys
/// are held to Algorithm Determination (-09 §3.3, §3.5).
///
/// # Errors
///
/// The [`TokenError`] naming the failed step: [`TokenError::HeaderKey`] for a header key
/// (or the algorithm it signs with) that is refused, [`TokenError::Confirmation`] for a
/// refused `cnf.jwk`.
pub fn verify_jkt_jwt(
    token: &str,
    now: UnixTime,
    max_iat_skew: u64,
) -> Result<VerifiedJktJwt, TokenError> {
    let jws = CompactJws::parse_with(token, HeaderPolicy::EmbeddedJwk, &|typ| match typ {
        Some(t) if hash_for(t).is_some() => Ok(()),
        other => Err(TokenError::WrongType {
            expected: "jkt-s256+jwt or jkt-s512+jwt",
            found: other.map(str::to_owned),
        }),
    })
    .map_err(|e| match e {
        // The token is signed by its header key with that key's algorithm (checked in
        // `verify` below): an algorithm refused here is the header key's.
        TokenError::Algorithm(k) => TokenError::HeaderKey(k),
        other => other,
    })?;
    let (hash, prefix) =
        jws.header
            .typ
            .as_deref()
            .and_then(hash_for)
            .ok_or(TokenError::Malformed {
                reason: "typ vanished after check",
            })?;
    let header_jwk = jws.header.jwk.as_ref().ok_or(TokenError::Header {
        reason: "jwk is missing".to_owned(),
    })?;
    let enclave_key = PublicKey::from_jwk(header_jwk).map_err(TokenError::HeaderKey)?;
    let json = std::str::from_utf8(&jws.payload).map_err(|_| TokenError::ClaimSet {
        reason: "payload is not UTF-8".to_owned(),
    })?;
    let raw = RawClaims::parse(json)?;
    let iss = raw.req_string("iss")?;
    let expected = format!("{prefix}{}", enclave_key.thumbprint_with(hash));
    if iss != expected {
        return Err(TokenError::Claim {
            claim: "iss",
            reason: "is not the thumbprint URN of the header jwk".to_owned(),
        });
    }
    jws.verify(&enclave_key)?;
    let iat = raw.time_claim("iat")?;
    let exp = raw.time_claim("exp")?;
    if now.as_secs() >= exp {
        return Err(TokenError::Expired {
            exp,
            now: now.as_secs(),
        });
    }
    if iat > now.as_secs().saturating_add(max_iat_skew) {
        return Err(TokenError::IssuedInFuture {
            iat,
            now: now.as_secs(),
        });
    }
    let cnf = raw.cnf_claim()?;
    let cnf_key = PublicKey::from_jwk(&cnf.jwk).map_err(TokenError::Confirmation)?;
    Ok(VerifiedJktJwt {
        iss,
        enclave_key,
        cnf_key,
        cnf_kid: cnf.jwk.kid,
        jti: raw.opt_string("jti")?,
        iat,
        exp,
    })
}
