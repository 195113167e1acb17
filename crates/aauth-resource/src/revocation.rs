//! Token revocation at a resource (draft -11 §Token Revocation): a Person Server or Access
//! Server, authenticated under the `jwks_uri` scheme as the token's issuer, posts
//! `{"jti", "exp"}`; the resource keys the record by `(iss, jti)`, keeps it until `exp` plus
//! the clock-skew allowance, and refuses later use of that token with `revoked_jwt`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use aauth_keys::time::UnixTime;
use aauth_signing::{
    AuthoritySource, BodyCoverage, KeyIdentity, KeyResolver, ReplayGuard, RevocationList, Verifier,
    VerifyError, VerifyPolicy, jwks_uri_signers,
};
use aauth_tokens::ServerId;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, request::Parts};

/// The longest `jti` recorded (longer ones are `invalid_request`): records hold the value.
pub const MAX_JTI_LEN: usize = 256;

/// Revoked tokens by `(iss, jti)`, in memory, bounded. One process; a deployment with
/// several instances needs a shared list behind [`RevocationList`].
#[derive(Debug)]
pub struct MemoryRevocationList {
    records: Mutex<BTreeMap<(String, String), u64>>,
    skew: u64,
    max: usize,
}

/// Why a revocation could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The list holds `max` live records.
    #[error("revocation list full")]
    Full,
    /// The list cannot answer (a shared store that is down or timed out).
    #[error("revocation list unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
}

/// Where a resource records the revocations its endpoint accepts, and reads them back
/// ([`RevocationList`]): [`MemoryRevocationList`] for one process, a shared list (the
/// `redis` feature's `RedisRevocationList`) for several instances, where a revocation
/// received by one is enforced by all.
#[async_trait]
pub trait RevocationStore: RevocationList {
    /// Records `(iss, jti)` until `exp` plus the list's clock-skew allowance. Idempotent;
    /// a later `exp` extends.
    ///
    /// # Errors
    ///
    /// [`RecordError::Full`] when every slot holds a live record,
    /// [`RecordError::Unavailable`] when the list cannot answer.
    async fn revoke(
        &self,
        iss: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), RecordError>;
}

impl MemoryRevocationList {
    /// A list keeping each record until `exp + skew`, holding at most `max` live records.
    #[must_use]
    pub fn new(skew: u64, max: usize) -> Self {
        Self {
            records: Mutex::new(BTreeMap::new()),
            skew,
            max: max.max(1),
        }
    }

    /// Records `(iss, jti)` until `exp + skew`. Idempotent; a later `exp` extends.
    ///
    /// # Errors
    ///
    /// [`RecordError::Full`] when every slot holds a live record.
    pub fn revoke(
        &self,
        iss: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), RecordError> {
        let mut r = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (iss.as_str().to_owned(), jti.to_owned());
        let until = exp.saturating_add(self.skew);
        if !r.contains_key(&key) && r.len() >= self.max {
            r.retain(|_, &mut u| u > now.as_secs());
            if r.len() >= self.max {
                return Err(RecordError::Full);
            }
        }
        let entry = r.entry(key).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }
}

#[async_trait]
impl RevocationList for MemoryRevocationList {
    async fn is_revoked(&self, iss: &ServerId, jti: &str) -> Result<bool, String> {
        let r = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        // An expired record may linger until pruned; the token it names has expired too, so
        // answering "revoked" for it changes nothing.
        Ok(r.contains_key(&(iss.as_str().to_owned(), jti.to_owned())))
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocationList {
    async fn revoke(
        &self,
        iss: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), RecordError> {
        Self::revoke(self, iss, jti, exp, now)
    }
}

/// The resource's revocation endpoint: accepts only the issuers this resource trusts,
/// decided from the `jwks_uri` member before any key is fetched, verifies the caller under
/// `jwks_uri` (through the supplied resolver, normally the metadata crate's
/// `DiscoveryResolver`), requires body coverage, and records the revocation.
#[derive(Clone)]
pub struct RevocationEndpoint {
    verifier: Verifier,
    trusted: Arc<BTreeSet<String>>,
    list: Arc<dyn RevocationStore>,
}

impl std::fmt::Debug for RevocationEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationEndpoint")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// The revocation request (draft -11 §Revocation Request). Members the draft does not
/// define are ignored, as extensions may add them.
#[derive(serde::Deserialize)]
struct Body {
    jti: String,
    exp: u64,
}

/// An empty `status` answer, or an RFC 9457 problem naming `error` (draft -11 §Error
/// Response Format: `application/problem+json` with `error` and `detail`).
fn reply(status: StatusCode, error: Option<&str>, detail: &str) -> http::Response<Bytes> {
    let Some(error) = error else {
        let mut resp = http::Response::new(Bytes::new());
        *resp.status_mut() = status;
        return resp;
    };
    let body = serde_json::json!({
        "type": "about:blank",
        "status": status.as_u16(),
        "error": error,
        "detail": detail,
    });
    let mut resp = http::Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

impl RevocationEndpoint {
    /// The revocation endpoint of the resource `resource` (requests must be addressed to
    /// its host; [`RevocationEndpoint::authority`] for other names), accepting revocations
    /// from the issuers in `trusted` (Person and Access Servers), resolving their keys with
    /// `resolver`, recording into `list`. A replayed revocation request is refused, like
    /// every state-changing request ([`RevocationEndpoint::replay_guard`]).
    #[must_use]
    pub fn new<'a>(
        resource: &ServerId,
        resolver: Arc<dyn KeyResolver>,
        trusted: impl IntoIterator<Item = &'a ServerId>,
        list: Arc<dyn RevocationStore>,
    ) -> Self {
        let policy = VerifyPolicy::for_server(resource)
            .accept_schemes(&["jwks_uri"])
            .body_coverage(BodyCoverage::Required);
        let trusted: Arc<BTreeSet<String>> =
            Arc::new(trusted.into_iter().map(|i| i.as_str().to_owned()).collect());
        // A stranger's request costs no fetch of the stranger's keys: the signer is checked
        // against the trusted issuers before its key is resolved.
        let gate = {
            let trusted = Arc::clone(&trusted);
            jwks_uri_signers(move |id, _| trusted.contains(id))
        };
        Self {
            verifier: Verifier::new(policy, resolver)
                .gate(gate)
                .replay(ReplayGuard::in_memory()),
            trusted,
            list,
        }
    }

    /// The authorities the endpoint answers to (several names, or behind a proxy).
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.verifier = self.verifier.authority(source);
        self
    }

    /// Records accepted revocation requests under `guard` (a store shared with the
    /// resource's routes, or across instances).
    #[must_use]
    pub fn replay_guard(mut self, guard: ReplayGuard) -> Self {
        self.verifier = self.verifier.replay(guard);
        self
    }

    /// Handles `POST {revocation_endpoint}`: `200` with an empty body once recorded
    /// (also for a token never seen), `401` for a signature failure, `403 unsupported_iss`
    /// for an issuer this resource does not trust (answered before its keys are looked
    /// up), `400 invalid_request` for a bad body,
    /// `503` with `Retry-After` when the list is full or cannot answer (fail closed).
    pub async fn handle(&self, parts: &Parts, body: &[u8], now: UnixTime) -> http::Response<Bytes> {
        if parts.method != http::Method::POST {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                Some("invalid_request"),
                "use POST",
            );
        }
        let verified = match self.verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(VerifyError::SignerNotAdmitted { .. }) => {
                return reply(
                    StatusCode::FORBIDDEN,
                    Some("unsupported_iss"),
                    "this resource does not accept tokens from that issuer",
                );
            }
            Err(e) => {
                return e
                    .into_http_response(self.verifier.policy())
                    .map(Bytes::from);
            }
        };
        let KeyIdentity::JwksUri { id, .. } = &verified.identity else {
            return reply(
                StatusCode::FORBIDDEN,
                Some("unsupported_iss"),
                "the caller is not identified by jwks_uri",
            );
        };
        if !self.trusted.contains(id) {
            return reply(
                StatusCode::FORBIDDEN,
                Some("unsupported_iss"),
                "this resource does not accept tokens from that issuer",
            );
        }
        let Ok(iss) = ServerId::parse(id) else {
            return reply(
                StatusCode::FORBIDDEN,
                Some("unsupported_iss"),
                "the caller is not a server identifier",
            );
        };
        let req: Body = match serde_json::from_slice(body) {
            Ok(b) if body.trim_ascii_start().first() == Some(&b'{') => b,
            _ => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    Some("invalid_request"),
                    "the body must be {\"jti\": string, \"exp\": NumericDate}",
                );
            }
        };
        if req.jti.is_empty() || req.jti.len() > MAX_JTI_LEN {
            return reply(
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                "jti must be 1 to 256 bytes",
            );
        }
        let (detail, retry) = match self.list.revoke(&iss, &req.jti, req.exp, now).await {
            Ok(()) => return reply(StatusCode::OK, None, ""),
            Err(RecordError::Full) => ("revocation store full", "5"),
            Err(_) => ("revocation store unavailable", "1"),
        };
        let mut resp = reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("server_error"),
            detail,
        );
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static(retry));
        resp
    }
}
