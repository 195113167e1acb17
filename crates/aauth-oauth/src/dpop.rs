//! DPoP proofs at a resource (RFC 9449 §4.3, §7.1): the proof checked sans-IO
//! ([`DpopProof::check`]), then its `jti` recorded once in the workspace's replay store
//! ([`DpopCheck::verify`]), and the access token's `cnf.jkt` compared with the proof's key.
//!
//! Order, cheap checks first: one `DPoP` field → compact JWS → `typ` `dpop+jwt` → `alg`
//! (asymmetric) → `jwk` (public, imported by the issuer-key rules, allowing `alg`) →
//! claims (`jti`, `htm`, `htu`, `iat`, `ath`) → `htm` equals the method → `htu` equals the
//! request URI without query and fragment (scheme and host case-insensitive, default
//! port dropped) → `iat` inside the window → `ath` is the token's hash → signature by the
//! `jwk` → then the `jti` recorded, unseen, until the window closes.

use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_keys::{Jwk, Thumbprint, ThumbprintHash, base64url, digest};
use aauth_signing::{ReplayStore, ReplayUse};
use aauth_tokens::json::{Object, string_value, u64_value};

use crate::jwt::split;
use crate::{IssuerKey, JwsAlgorithm, OAuthError};

/// The longest `jti` accepted, in characters.
pub const MAX_JTI_LEN: usize = 256;

/// A proof that passed every check but the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key: what `cnf.jkt` must equal.
    pub jkt: String,
    /// `jti`.
    pub jti: String,
    /// `iat`.
    pub iat: UnixTime,
}

fn bad(reason: impl Into<String>) -> OAuthError {
    OAuthError::DpopProof {
        reason: reason.into(),
    }
}

impl DpopProof {
    /// Checks `proof` for a request of `method` to `uri` presenting `access_token`, at
    /// `now`, accepting an `iat` up to `window` seconds old (and `leeway` ahead).
    ///
    /// # Errors
    ///
    /// [`OAuthError::DpopProof`] naming the check that failed.
    pub fn check(
        proof: &str,
        method: &str,
        uri: &str,
        access_token: &str,
        window: u64,
        leeway: u64,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        let (signing_input, header, payload, signature) =
            split(proof).map_err(|e| bad(e.to_string()))?;
        let (alg, key, jkt) = read_header(&header)?;
        let c = Object::parse(&payload).map_err(|e| bad(format!("claims: {e}")))?;
        let text = |name: &'static str| -> Result<String, OAuthError> {
            let raw = c
                .get(name)
                .ok_or_else(|| bad(format!("{name} is absent")))?;
            string_value(raw)
                .map(std::borrow::Cow::into_owned)
                .map_err(|e| bad(format!("{name}: {e}")))
        };
        let jti = text("jti")?;
        if jti.is_empty() || jti.chars().count() > MAX_JTI_LEN {
            return Err(bad(format!("jti must have 1 to {MAX_JTI_LEN} characters")));
        }
        if text("htm")? != method {
            return Err(bad("htm is not the request's method"));
        }
        let htu = text("htu")?;
        match (normalize(&htu), normalize(uri)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return Err(bad("htu is not the request's URI")),
        }
        let iat = c
            .get("iat")
            .ok_or_else(|| bad("iat is absent"))
            .and_then(|raw| u64_value(raw).map_err(|e| bad(format!("iat: {e}"))))?;
        let t = now.as_secs();
        if iat > t.saturating_add(leeway) || iat.saturating_add(window) < t {
            return Err(bad(format!(
                "iat {iat} is outside the accepted window ({window} s before {t}, {leeway} s after)"
            )));
        }
        let ath = text("ath")?;
        if ath != base64url::encode(&digest::sha256(access_token.as_bytes())) {
            return Err(bad("ath is not the hash of the access token"));
        }
        key.verify(alg, signing_input.as_bytes(), &signature)
            .map_err(|_| bad("signature does not verify with its jwk"))?;
        Ok(Self {
            jkt,
            jti,
            iat: UnixTime(iat),
        })
    }
}

/// `typ`, `alg`, and the `jwk` as a key and its thumbprint.
fn read_header(json: &str) -> Result<(JwsAlgorithm, IssuerKey, String), OAuthError> {
    let h = Object::parse(json).map_err(|e| bad(format!("header: {e}")))?;
    let typ = h
        .get("typ")
        .map(string_value)
        .transpose()
        .map_err(|e| bad(format!("typ: {e}")))?;
    if typ.as_deref() != Some("dpop+jwt") {
        return Err(bad("typ is not dpop+jwt"));
    }
    let alg = h
        .get("alg")
        .map(string_value)
        .transpose()
        .map_err(|e| bad(format!("alg: {e}")))?
        .ok_or_else(|| bad("alg is absent"))?;
    let alg = JwsAlgorithm::parse(&alg).map_err(|_| bad(format!("alg {alg} is not accepted")))?;
    let raw = h.get("jwk").ok_or_else(|| bad("jwk is absent"))?;
    let jwk = Jwk::from_json(raw.get()).map_err(|e| bad(format!("jwk: {e}")))?;
    let key = IssuerKey::from_jwk(&jwk).map_err(|e| bad(format!("jwk: {e}")))?;
    if !key.allows(alg) {
        return Err(bad(format!("jwk does not verify {alg}")));
    }
    let jkt =
        Thumbprint::of_jwk(&jwk, ThumbprintHash::Sha256).map_err(|e| bad(format!("jwk: {e}")))?;
    Ok((alg, key, jkt.as_str().to_owned()))
}

/// `https://Host:443/p?q#f` → `https://host/p`: scheme and host lowercased, the default
/// port dropped, query and fragment removed (RFC 9449 §4.3 step 9; RFC 3986 §6.2.2, §6.2.3).
fn normalize(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next()?;
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    if authority.ends_with(default) {
        authority.truncate(authority.len() - default.len());
    }
    Some(format!("{scheme}://{authority}{path}"))
}

/// What a resource needs to accept DPoP-bound tokens: its public origin (the `htu` a
/// client signs), the replay store proofs' `jti`s are recorded in, and the window.
#[derive(Clone)]
pub struct DpopCheck {
    origin: String,
    replay: Arc<dyn ReplayStore>,
    window: u64,
    leeway: u64,
}

impl std::fmt::Debug for DpopCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopCheck")
            .field("origin", &self.origin)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl DpopCheck {
    /// Proofs for requests to `origin` (`https://api.example`), their `jti` recorded in
    /// `replay`; an `iat` up to 60 s old and 5 s ahead.
    #[must_use]
    pub fn new(origin: impl Into<String>, replay: Arc<dyn ReplayStore>) -> Self {
        Self {
            origin: origin.into().trim_end_matches('/').to_owned(),
            replay,
            window: 60,
            leeway: 5,
        }
    }

    /// How old a proof's `iat` may be, in seconds (default 60).
    #[must_use]
    pub fn window(mut self, seconds: u64) -> Self {
        self.window = seconds;
        self
    }

    /// Checks `proof` for a request of `method` to `path` (origin-form) presenting
    /// `access_token`, then records its `jti`.
    ///
    /// # Errors
    ///
    /// [`OAuthError::DpopProof`] (a replayed `jti` included), or
    /// [`OAuthError::Unavailable`] when the replay store fails (fail closed).
    pub async fn verify(
        &self,
        proof: &str,
        method: &str,
        path: &str,
        access_token: &str,
        now: UnixTime,
    ) -> Result<DpopProof, OAuthError> {
        let checked = self.check(proof, method, path, access_token, now)?;
        self.record(&checked, now).await?;
        Ok(checked)
    }

    /// The sans-IO part of [`DpopCheck::verify`]: every check but the replay check.
    ///
    /// # Errors
    ///
    /// [`OAuthError::DpopProof`].
    pub fn check(
        &self,
        proof: &str,
        method: &str,
        path: &str,
        access_token: &str,
        now: UnixTime,
    ) -> Result<DpopProof, OAuthError> {
        let uri = format!("{}{path}", self.origin);
        DpopProof::check(
            proof,
            method,
            &uri,
            access_token,
            self.window,
            self.leeway,
            now,
        )
    }

    /// Records a checked proof's `jti` until its window closes.
    ///
    /// # Errors
    ///
    /// [`OAuthError::DpopProof`] for a `jti` seen before, [`OAuthError::Unavailable`]
    /// when the store fails.
    pub async fn record(&self, checked: &DpopProof, now: UnixTime) -> Result<(), OAuthError> {
        let mut input = Vec::with_capacity(8 + checked.jkt.len() + checked.jti.len());
        input.extend_from_slice(b"dpop\0");
        input.extend_from_slice(checked.jkt.as_bytes());
        input.push(0);
        input.extend_from_slice(checked.jti.as_bytes());
        let until = checked.iat.plus(self.window.saturating_add(self.leeway));
        let entry = ReplayUse::new(&checked.jkt, digest::sha256(&input), until);
        match self.replay.first_use(&entry, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad("jti was used before: a replayed proof")),
            Err(e) => Err(OAuthError::Unavailable {
                reason: format!("replay store: {e}"),
            }),
        }
    }
}
