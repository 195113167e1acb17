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
//!
//! A resource may also require server-provided nonces (RFC 9449 §9, [`DpopNonces`]): a
//! proof must then carry a `nonce` this resource issued lately, or it is refused with
//! `use_dpop_nonce` and a fresh nonce in `DPoP-Nonce`. The nonces are stateless (a time
//! step and its MAC under the resource's secret), so every instance sharing the secret
//! accepts every other's.

use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_keys::{Jwk, Thumbprint, ThumbprintHash, base64url, digest};
use aauth_signing::{ReplayStore, ReplayStoreError, ReplayUse};
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
    /// `nonce`, if the proof carries one.
    pub nonce: Option<String>,
}

/// The longest `nonce` accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 256;

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
        let nonce = c
            .get("nonce")
            .map(|raw| string_value(raw).map(std::borrow::Cow::into_owned))
            .transpose()
            .map_err(|e| bad(format!("nonce: {e}")))?;
        if nonce
            .as_ref()
            .is_some_and(|n| n.is_empty() || n.len() > MAX_NONCE_LEN)
        {
            return Err(bad(format!("nonce must have 1 to {MAX_NONCE_LEN} bytes")));
        }
        key.verify(alg, signing_input.as_bytes(), &signature)
            .map_err(|_| bad("signature does not verify with its jwk"))?;
        Ok(Self {
            jkt,
            jti,
            iat: UnixTime(iat),
            nonce,
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
    // RFC 7515 §4.1.11: an extension this reader does not know must not be ignored; and a
    // proof carries its key in `jwk`, never a place to fetch one from.
    if let Some((name, _)) = h
        .members()
        .find(|(n, _)| matches!(*n, "crit" | "jku" | "x5u" | "x5c" | "b64" | "zip"))
    {
        return Err(bad(format!("{name} is not accepted in a DPoP proof")));
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

/// Server-provided DPoP nonces (RFC 9449 §9): each is a time step and its MAC under the
/// resource's secret, accepted during its step and the next (so a nonce lives one to two
/// `period`s). Nothing is stored: every instance given the same secret issues and accepts
/// the same nonces.
///
/// ```
/// use aauth_keys::time::UnixTime;
/// use aauth_oauth::DpopNonces;
/// let nonces = DpopNonces::new(&[7; 32]);
/// let now = UnixTime(1_800_000_000);
/// let n = nonces.issue(now);
/// assert!(nonces.accepts(&n, now.plus(299)));
/// assert!(!nonces.accepts(&n, now.plus(900)), "stale");
/// assert!(!DpopNonces::new(&[8; 32]).accepts(&n, now), "another resource's");
/// ```
#[derive(Clone)]
pub struct DpopNonces {
    key: aws_lc_rs::hmac::Key,
    period: u64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces under `secret` (keep it out of logs; the same at every instance), each step
    /// five minutes.
    #[must_use]
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            period: 300,
        }
    }

    /// Steps of `seconds` instead (at least 10).
    #[must_use]
    pub fn period(mut self, seconds: u64) -> Self {
        self.period = seconds.max(10);
        self
    }

    fn mac(&self, step: u64) -> Vec<u8> {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.key);
        ctx.update(b"aauth-dpop-nonce\0");
        ctx.update(&step.to_be_bytes());
        ctx.sign().as_ref()[..16].to_vec()
    }

    /// The nonce for `now`.
    #[must_use]
    pub fn issue(&self, now: UnixTime) -> String {
        let step = now.as_secs() / self.period;
        let mut raw = step.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.mac(step));
        base64url::encode(&raw)
    }

    /// Whether `nonce` is one this secret issued in the current step or the one before.
    #[must_use]
    pub fn accepts(&self, nonce: &str, now: UnixTime) -> bool {
        let Ok(raw) = base64url::decode(nonce) else {
            return false;
        };
        let Some((step, mac)) = raw.split_first_chunk::<8>() else {
            return false;
        };
        let step = u64::from_be_bytes(*step);
        let current = now.as_secs() / self.period;
        (step == current || step.saturating_add(1) == current)
            && aws_lc_rs::constant_time::verify_slices_are_equal(mac, &self.mac(step)).is_ok()
    }
}

/// What a resource needs to accept DPoP-bound tokens: its public origin (the `htu` a
/// client signs), the replay store proofs' `jti`s are recorded in, and the window.
#[derive(Clone)]
pub struct DpopCheck {
    origin: String,
    replay: Arc<dyn ReplayStore>,
    window: u64,
    leeway: u64,
    nonces: Option<DpopNonces>,
}

impl std::fmt::Debug for DpopCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopCheck")
            .field("origin", &self.origin)
            .field("window", &self.window)
            .field("nonces", &self.nonces)
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
            nonces: None,
        }
    }

    /// Requires every proof to carry a nonce from `nonces` (RFC 9449 §9): a proof
    /// without one, or with a stale or foreign one, is refused with
    /// [`OAuthError::DpopNonce`] (`use_dpop_nonce`), and the refusal carries a fresh one
    /// ([`DpopCheck::nonce`]).
    #[must_use]
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// The nonce to send in `DPoP-Nonce` now, when nonces are required.
    #[must_use]
    pub fn nonce(&self, now: UnixTime) -> Option<String> {
        self.nonces.as_ref().map(|n| n.issue(now))
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
    /// [`OAuthError::DpopProof`], or [`OAuthError::DpopNonce`] when nonces are required.
    pub fn check(
        &self,
        proof: &str,
        method: &str,
        path: &str,
        access_token: &str,
        now: UnixTime,
    ) -> Result<DpopProof, OAuthError> {
        let uri = format!("{}{path}", self.origin);
        let checked = DpopProof::check(
            proof,
            method,
            &uri,
            access_token,
            self.window,
            self.leeway,
            now,
        )?;
        if let Some(nonces) = &self.nonces {
            match checked.nonce.as_deref() {
                None => {
                    return Err(OAuthError::DpopNonce {
                        reason: "this resource requires a nonce in the DPoP proof",
                    });
                }
                Some(n) if !nonces.accepts(n, now) => {
                    return Err(OAuthError::DpopNonce {
                        reason: "the DPoP proof's nonce is stale or not this resource's",
                    });
                }
                Some(_) => {}
            }
        }
        Ok(checked)
    }

    /// Records a checked proof's `jti` until its window closes, in its key's share of
    /// the replay store.
    ///
    /// # Errors
    ///
    /// [`OAuthError::DpopProof`] for a `jti` seen before, [`OAuthError::RateLimited`]
    /// when the proof's key or its issuer's keys hold their whole share of the store,
    /// [`OAuthError::Unavailable`] when the store fails.
    pub async fn record(&self, checked: &DpopProof, now: UnixTime) -> Result<(), OAuthError> {
        self.record_in(checked, None, now).await
    }

    /// As [`DpopCheck::record`], also in the share of `issuer`, the authorization server
    /// whose token binds the proof's key (it can bind any number of keys): a resource
    /// sharing its replay store with AAuth signatures keeps each issuer's proofs to that
    /// issuer's share.
    ///
    /// # Errors
    ///
    /// As [`DpopCheck::record`].
    pub async fn record_for_issuer(
        &self,
        checked: &DpopProof,
        issuer: &str,
        now: UnixTime,
    ) -> Result<(), OAuthError> {
        self.record_in(checked, Some(issuer), now).await
    }

    async fn record_in(
        &self,
        checked: &DpopProof,
        issuer: Option<&str>,
        now: UnixTime,
    ) -> Result<(), OAuthError> {
        let mut input = Vec::with_capacity(8 + checked.jkt.len() + checked.jti.len());
        input.extend_from_slice(b"dpop\0");
        input.extend_from_slice(checked.jkt.as_bytes());
        input.push(0);
        input.extend_from_slice(checked.jti.as_bytes());
        let until = checked.iat.plus(self.window.saturating_add(self.leeway));
        let mut entry = ReplayUse::new(&checked.jkt, digest::sha256(&input), until);
        if let Some(issuer) = issuer {
            entry = entry.issuer(issuer);
        }
        match self.replay.first_use(&entry, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad("jti was used before: a replayed proof")),
            Err(
                e @ (ReplayStoreError::SignerOverShare { .. }
                | ReplayStoreError::IssuerOverShare { .. }),
            ) => Err(OAuthError::RateLimited {
                reason: e.to_string(),
                retry_after: self.window.saturating_add(self.leeway).max(1),
            }),
            Err(e) => Err(OAuthError::Unavailable {
                reason: format!("replay store: {e}"),
            }),
        }
    }
}
