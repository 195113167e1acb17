//! The deferred `requirement=auth-token` (draft -11 §8.2, RS-36): instead of a `401`, the
//! resource answers `202` with a pending URL and holds the invocation; the first poll
//! presenting a valid auth token runs it, and its result is kept, keyed by that auth
//! token's `jti` until the token's `exp`, and replayed to repeated presentations.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use aauth_keys::base64url;
use aauth_keys::rand::{OsRandom, RandomSource};
use aauth_keys::time::UnixTime;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};

/// A held invocation: the request as it arrived, and whose it is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Held {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The HTTP version.
    pub version: Version,
    /// The header fields.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The thumbprint of the agent key that signed it: only that key may poll.
    pub jkt: String,
    /// The person's Person Server and directed identifier the resource token named: the
    /// auth token must be for the same person.
    pub ps: String,
    /// See `ps`.
    pub sub: String,
    /// When an unanswered hold is dropped.
    pub expires: UnixTime,
}

/// A response kept for replay.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The header fields.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Where a held invocation stands.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HeldState {
    /// Waiting for an auth token.
    Pending,
    /// Running for the auth token `jti`.
    Running {
        /// The auth token's `jti`.
        jti: String,
    },
    /// Done: the result for the auth token `jti`, kept until its `exp`.
    Done {
        /// The auth token's `jti`.
        jti: String,
        /// The result.
        response: StoredResponse,
    },
    /// Cancelled by the agent (`DELETE`): every later request gets `410`.
    Cancelled,
}

/// What [`HeldStore::claim`] found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Claim {
    /// The caller runs the invocation now.
    Run,
    /// Another poll is running it; poll again.
    Busy,
    /// It already ran: here is the state (done or cancelled).
    Settled(HeldState),
}

/// Why the held-invocation store could not answer (the layer answers `503`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("held-request store: {reason}")]
pub struct HeldStoreError {
    /// What failed.
    pub reason: String,
}

/// Storage for held invocations, behind a trait so that several resource instances can
/// share one (memory here).
#[async_trait]
pub trait HeldStore: Send + Sync {
    /// Holds `held` under `id`.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`] when it cannot be kept (full, unavailable).
    async fn hold(&self, id: &str, held: Held, now: UnixTime) -> Result<(), HeldStoreError>;

    /// The held invocation `id` and its state, if it exists and has not expired.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn get(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<(Held, HeldState)>, HeldStoreError>;

    /// Claims `id` for the auth token `jti` (atomically: one poll runs it).
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn claim(&self, id: &str, jti: &str, now: UnixTime) -> Result<Claim, HeldStoreError>;

    /// Records the result for `jti`, kept until `keep_until`; `None` releases the claim
    /// (the invocation failed to run and may be retried).
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn finish(
        &self,
        id: &str,
        jti: &str,
        response: Option<StoredResponse>,
        keep_until: UnixTime,
    ) -> Result<(), HeldStoreError>;

    /// Cancels `id`.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn cancel(&self, id: &str, now: UnixTime) -> Result<(), HeldStoreError>;
}

#[derive(Debug)]
struct Entry {
    held: Held,
    state: HeldState,
    until: UnixTime,
}

/// An in-memory [`HeldStore`], bounded: when full, new holds are refused (`503`), never
/// evicting a pending one.
#[derive(Debug)]
pub struct MemoryHeldStore {
    entries: Mutex<BTreeMap<String, Entry>>,
    max: usize,
}

impl MemoryHeldStore {
    /// A store holding at most `max` invocations.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            entries: Mutex::new(BTreeMap::new()),
            max,
        }
    }
}

impl Default for MemoryHeldStore {
    fn default() -> Self {
        Self::new(10_000)
    }
}

#[async_trait]
impl HeldStore for MemoryHeldStore {
    async fn hold(&self, id: &str, held: Held, now: UnixTime) -> Result<(), HeldStoreError> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, e| e.until > now);
        if map.len() >= self.max {
            return Err(HeldStoreError {
                reason: "full".to_owned(),
            });
        }
        let until = held.expires;
        map.insert(
            id.to_owned(),
            Entry {
                held,
                state: HeldState::Pending,
                until,
            },
        );
        Ok(())
    }

    async fn get(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<(Held, HeldState)>, HeldStoreError> {
        let map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(map
            .get(id)
            .filter(|e| e.until > now)
            .map(|e| (e.held.clone(), e.state.clone())))
    }

    async fn claim(&self, id: &str, jti: &str, now: UnixTime) -> Result<Claim, HeldStoreError> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = map.get_mut(id).filter(|e| e.until > now) else {
            return Ok(Claim::Settled(HeldState::Cancelled));
        };
        Ok(match &e.state {
            HeldState::Pending => {
                e.state = HeldState::Running {
                    jti: jti.to_owned(),
                };
                Claim::Run
            }
            HeldState::Running { .. } => Claim::Busy,
            other => Claim::Settled(other.clone()),
        })
    }

    async fn finish(
        &self,
        id: &str,
        jti: &str,
        response: Option<StoredResponse>,
        keep_until: UnixTime,
    ) -> Result<(), HeldStoreError> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get_mut(id) {
            match response {
                Some(response) => {
                    e.state = HeldState::Done {
                        jti: jti.to_owned(),
                        response,
                    };
                    e.until = keep_until;
                }
                None => e.state = HeldState::Pending,
            }
        }
        Ok(())
    }

    async fn cancel(&self, id: &str, _now: UnixTime) -> Result<(), HeldStoreError> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get_mut(id) {
            e.state = HeldState::Cancelled;
        }
        Ok(())
    }
}

/// The deferral settings of an [`crate::AAuthLayer`]: where held invocations are kept,
/// the path prefix of pending URLs, and how long an unanswered hold lasts.
#[derive(Clone)]
pub struct DeferredAuth {
    pub(crate) store: std::sync::Arc<dyn HeldStore>,
    pub(crate) prefix: String,
    pub(crate) ttl: u64,
}

impl std::fmt::Debug for DeferredAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredAuth")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DeferredAuth {
    /// Holds invocations in `store` under pending URLs `{prefix}{id}` (the prefix must
    /// start and end with `/`, and the layer must see requests to it), for ten minutes.
    #[must_use]
    pub fn new(store: std::sync::Arc<dyn HeldStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.to_owned(),
            ttl: 600,
        }
    }

    /// How long an unanswered hold lasts, in seconds.
    #[must_use]
    pub fn ttl(mut self, secs: u64) -> Self {
        self.ttl = secs;
        self
    }

    /// The pending id in `path`, if it is a pending URL.
    pub(crate) fn id_of<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(self.prefix.as_str())
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }

    /// A new unguessable id (128 bits from the OS).
    pub(crate) fn new_id() -> Result<String, HeldStoreError> {
        let mut b = [0u8; 16];
        OsRandom.fill(&mut b).map_err(|e| HeldStoreError {
            reason: e.to_string(),
        })?;
        Ok(base64url::encode(&b))
    }
}

/// The `202` of a deferred request: `Location`, `Retry-After`, `Cache-Control: no-store`,
/// the requirement, `{"status": "pending"}`.
pub(crate) fn pending_response(
    location: &str,
    requirement: Option<HeaderValue>,
    retry_after: u64,
) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from_static(br#"{"status":"pending"}"#));
    *resp.status_mut() = StatusCode::ACCEPTED;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(http::header::LOCATION, v);
    }
    h.insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(r) = requirement {
        h.insert(aauth_headers::names::AAUTH_REQUIREMENT, r);
    }
    resp
}

/// A problem response with the draft's `error` code.
pub(crate) fn problem(status: StatusCode, error: &str, detail: &str) -> http::Response<Bytes> {
    let body = serde_json::json!({
        "type": "about:blank",
        "status": status.as_u16(),
        "error": error,
        "detail": detail,
    })
    .to_string();
    let mut resp = http::Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}
