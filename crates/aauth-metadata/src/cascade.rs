//! Revocation cascades that outlast their request (draft -11 §Revocation Response and
//! §Revocation Cascade; checklists PS-111, PS-114, AS-41): a recipient answers `200` once
//! its cascade is terminal, or `202` with a pending URL (`Location`) when the cascade
//! takes longer. The sender polls that URL with a signed `GET` under the same identity;
//! anyone else is answered `404`. Absent `Prefer: wait`, the recipient holds the request
//! about 20 seconds before answering `202`.
//!
//! [`Cascades`] is that machinery, shared by the Person Server and the Access Server:
//!
//! - [`Cascades::run`] runs a cascade while the request is held (the server's hold,
//!   [`DEFAULT_REVOCATION_HOLD`] by default, or the sender's `Prefer: wait=N`, at most
//!   [`MAX_REVOCATION_HOLD`]). A cascade that finishes inside the hold is answered exactly
//!   as it answers; one that does not goes on in a Tokio task and the request is answered
//!   `202` with `Location: {prefix}{id}`, the id 32 bytes from the server's random source.
//! - [`Cascades::poll`] answers a `GET` on that URL by the same caller: held again (same
//!   rule), then `202` while the cascade runs, or its final answer. Another caller, or an
//!   id that is not (or no longer) here, gets [`Cascades::not_found`], the same `404`.
//! - [`Cascades::stop_holding`]: the server is stopping; every request and poll held is
//!   answered at once (`202`, or the final answer when there is one), and none is held
//!   from then on.
//! - The final answer is given once: a later poll by the same caller gets `410 Gone`
//!   (§Pending URL Security: "once a terminal response is returned, the pending URL MUST
//!   return `410 Gone`"), for [`FINISHED_CASCADE_TTL`] after the cascade ended, then
//!   `404`. A sender whose final answer was lost in transit sends the revocation again:
//!   revocation is idempotent, and an Access Server re-attempts the resources that
//!   failed (AS-41), so the `downstream` report is produced again.
//!
//! Everything is bounded: at most [`DEFAULT_MAX_CASCADES`] pending revocations (finished
//! ones are evicted first, oldest first; with every one still running, a cascade that
//! outlasts its hold is refused, [`CascadeError::Busy`]), a cascade stops after
//! [`MAX_CASCADE_RUN`], and at most [`DEFAULT_MAX_HELD`] requests are held at once (past
//! that one is answered at once).
//!
//! By default the table is this process's memory: a pending revocation is answered only
//! by the instance that started it, and is lost with it (the sender then sees `404` and
//! resends; revocation is idempotent). Servers whose instances share a database give
//! [`Cascades::shared`] a [`CascadeStore`] (PostgreSQL's is
//! `aauth_metadata::store::PgCascadeStore`): every pending revocation is recorded there
//! when it is answered `202`, its final answer when it ends, and a poll is answered from
//! there by whichever instance it reaches (given once across all of them). A cascade
//! whose instance ended before it did is answered `500` once its longest run is past.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aauth_keys::rand::{RandomError, SharedRandom, random_id};
use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_signing::KeyIdentity;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::serve::{json_response, problem_response};
use crate::store::StoreError;

/// How long a revocation request (or a poll of one) is held, absent `Prefer: wait`,
/// before it is answered `202`: about 20 seconds, as the draft suggests.
pub const DEFAULT_REVOCATION_HOLD: Duration = Duration::from_secs(20);

/// The longest hold: a configured hold and a sender's `Prefer: wait=N` are both clamped
/// to it (30 s, as the Person Server's long polls; within the 30-second deadline of the
/// agent crate's HTTPS client).
pub const MAX_REVOCATION_HOLD: Duration = Duration::from_secs(30);

/// How long a finished cascade's final answer is kept for polls: five minutes after the
/// cascade ended.
pub const FINISHED_CASCADE_TTL: Duration = Duration::from_secs(300);

/// The longest a cascade runs in the background: past it, it is stopped and its final
/// answer is `500 server_error` (the sender resends; revocation is idempotent).
pub const MAX_CASCADE_RUN: Duration = Duration::from_secs(600);

/// The most pending revocations kept at once, running or finished.
pub const DEFAULT_MAX_CASCADES: usize = 1024;

/// The most revocation requests and polls held at once; past it, one is answered at
/// once (`202` or its final answer).
pub const DEFAULT_MAX_HELD: usize = 256;

/// A cascade to run: it owns what it needs, so that it can go on after its request has
/// been answered, and comes to the response its request would get.
pub type Cascade = Pin<Box<dyn Future<Output = Response<Bytes>> + Send + 'static>>;

/// Why a cascade that outlasted its hold got no pending URL. Either way the cascade is
/// dropped: what it did so far stands, and a resend (revocation is idempotent) does the
/// rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CascadeError {
    /// Every pending revocation this server keeps is still running: `rate_limited`
    /// (`429`), try again in `retry_after` seconds.
    #[error("too many revocation cascades are running")]
    Busy {
        /// Seconds until a resend may find room.
        retry_after: u64,
    },
    /// No pending id could be drawn from the random source (`500 server_error`).
    #[error("no pending revocation id could be drawn")]
    Random(#[source] RandomError),
    /// The shared [`CascadeStore`] could not record the pending revocation (`500
    /// server_error`); `reason` is the store's error, for the operator's log.
    #[error("the pending revocation could not be recorded: {reason}")]
    Store {
        /// The store's error.
        reason: String,
    },
}

/// How often a poll held on a cascade that another instance runs reads the shared store.
pub const SHARED_POLL_EVERY: Duration = Duration::from_millis(500);

/// How long past [`MAX_CASCADE_RUN`] a cascade run by another instance, its end not
/// recorded, is still taken to be running (its instance may be recording its end).
pub const STOPPED_GRACE: Duration = Duration::from_secs(60);

/// A final answer as a [`CascadeStore`] keeps it: its status, `Content-Type` and body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeptAnswer {
    /// The HTTP status.
    pub status: u16,
    /// Its `Content-Type`, if it had one.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl KeptAnswer {
    /// An answer with `status`, `content_type` and `body`.
    #[must_use]
    pub fn new(status: u16, content_type: Option<String>, body: Bytes) -> Self {
        Self {
            status,
            content_type,
            body,
        }
    }

    fn of(response: &Response<Bytes>) -> Self {
        Self {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: response.body().clone(),
        }
    }

    /// The answer as sent: `Cache-Control: no-store`, as every answer of a revocation
    /// endpoint; a status that is none (a store's corruption) is a `500`.
    fn response(self) -> Response<Bytes> {
        let status = StatusCode::from_u16(self.status)
            .ok()
            .filter(|s| !s.is_informational())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = Response::new(self.body);
        *r.status_mut() = status;
        if let Some(v) = self
            .content_type
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// A pending revocation as a [`CascadeStore`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kept {
    /// Still running (on some instance) since `since`.
    Running {
        /// When it was recorded.
        since: UnixTime,
    },
    /// Ended with `answer`; `delivered` once a poll was given it.
    Finished {
        /// The final answer.
        answer: KeptAnswer,
        /// Whether it was given already (a later poll gets `410`).
        delivered: bool,
    },
}

/// Where pending revocations are kept when several instances answer for one server
/// ([`Cascades::shared`]). A record is kept [`FINISHED_CASCADE_TTL`] after its end, or,
/// when no end was recorded, [`MAX_CASCADE_RUN`] and then [`FINISHED_CASCADE_TTL`] from
/// its start (polled at another instance past [`MAX_CASCADE_RUN`] and
/// [`STOPPED_GRACE`], it is answered `500`); later it reads as absent.
#[async_trait]
pub trait CascadeStore: Send + Sync + 'static {
    /// Records pending revocation `id`, pollable by `caller`, running from `now`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn begin(&self, id: &str, caller: &str, now: UnixTime) -> Result<(), StoreError>;

    /// Records the final answer of `id`, ended at `now`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn finish(&self, id: &str, answer: &KeptAnswer, now: UnixTime) -> Result<(), StoreError>;

    /// `id` as `caller` may read it at `now`: `None` when there is none, it is another
    /// caller's, or it is past keeping.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn read(&self, id: &str, caller: &str, now: UnixTime)
    -> Result<Option<Kept>, StoreError>;

    /// Marks the final answer of `id` given: `true` for the one call that marked it,
    /// `false` when it was given already (or has none yet).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn deliver(&self, id: &str) -> Result<bool, StoreError>;
}

/// Who may poll a pending revocation: the verified signer of the revocation, by its
/// `jwks_uri` identifier and document (`None` for any other scheme: no server revokes
/// under one).
#[must_use]
pub fn caller_of(identity: &KeyIdentity) -> Option<String> {
    match identity {
        KeyIdentity::JwksUri { id, dwk, .. } => Some(format!("{id} {dwk}")),
        _ => None,
    }
}

/// A finished cascade's answer, kept for polls.
#[derive(Clone)]
struct Finished {
    /// When the cascade ended.
    at: Instant,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Finished {
    fn of(response: Response<Bytes>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            at: Instant::now(),
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    fn response(self) -> Response<Bytes> {
        let mut r = Response::new(self.body);
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        r
    }
}

/// One pending revocation: who may poll it, and its answer once there is one.
struct Entry {
    caller: String,
    done: watch::Receiver<Option<Finished>>,
    /// Whether the final answer was given (later polls: `410`).
    delivered: Arc<std::sync::atomic::AtomicBool>,
}

impl Entry {
    /// When its cascade ended, if it has.
    fn finished_at(&self) -> Option<Instant> {
        self.done.borrow().as_ref().map(|f| f.at)
    }

    /// Whether it is past keeping: its answer kept long enough, or its task gone
    /// without one.
    fn expired(&self, now: Instant) -> bool {
        match self.finished_at() {
            Some(at) => now.saturating_duration_since(at) >= FINISHED_CASCADE_TTL,
            None => self.done.has_changed().is_err(),
        }
    }
}

/// The revocation cascades a server is running, or has finished within
/// [`FINISHED_CASCADE_TTL`]: the `202` and its polls (see the [module](self)). Needs a
/// Tokio runtime with its timer (outside one, a cascade runs to its end inside its
/// request).
pub struct Cascades {
    /// The pending URL of id `x` is `{prefix}x`.
    prefix: String,
    hold: Duration,
    max: usize,
    table: Mutex<BTreeMap<String, Entry>>,
    held: Arc<Semaphore>,
    /// Where pending revocations are shared with the other instances, if they are.
    shared: Option<Arc<dyn CascadeStore>>,
    /// `true` once the server is stopping ([`Cascades::stop_holding`]): nothing is held.
    stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for Cascades {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cascades")
            .field("prefix", &self.prefix)
            .field("hold", &self.hold)
            .field("max", &self.max)
            .field("pending", &lock(&self.table).len())
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the table was held leaves it consistent (every change is one
    // insert or removal).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cascades {
    /// Pending revocations whose URLs are `{pending_prefix}{id}` (an absolute path on
    /// the server's origin, such as `/revocation/`), held [`DEFAULT_REVOCATION_HOLD`], at
    /// most [`DEFAULT_MAX_CASCADES`] of them.
    #[must_use]
    pub fn new(pending_prefix: &str) -> Self {
        Self {
            prefix: pending_prefix.to_owned(),
            hold: DEFAULT_REVOCATION_HOLD,
            max: DEFAULT_MAX_CASCADES,
            table: Mutex::new(BTreeMap::new()),
            held: Arc::new(Semaphore::new(DEFAULT_MAX_HELD)),
            shared: None,
            stopping: watch::Sender::new(false),
        }
    }

    /// The server is stopping: every request and poll held now is answered at once, as
    /// at the end of its hold (`202` with its pending URL while its cascade runs, or its
    /// answer when it is done), and none is held from now on. A cascade answered `202` goes
    /// on in its task for as long as the runtime does; one cut short by the process's end
    /// is resent by its sender (revocation is idempotent). The server's shutdown hook
    /// calls it ([`Endpoint::stop_holding`](crate::serve::Endpoint::stop_holding)), so
    /// that held requests end within the shutdown's deadline.
    pub fn stop_holding(&self) {
        self.stopping.send_replace(true);
    }

    /// Shares pending revocations with the server's other instances through `store`
    /// (see the [module](self)): any of them answers a poll.
    #[must_use]
    pub fn shared(mut self, store: Arc<dyn CascadeStore>) -> Self {
        self.shared = Some(store);
        self
    }

    /// Holds requests and polls `hold` absent `Prefer: wait` (clamped to
    /// [`MAX_REVOCATION_HOLD`]; zero answers `202` at once unless the cascade is already
    /// done).
    #[must_use]
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold.min(MAX_REVOCATION_HOLD);
        self
    }

    /// Keeps at most `max` pending revocations (at least one).
    #[must_use]
    pub fn max_pending(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self
    }

    /// The hold for a request with `headers`: its `Prefer: wait=N` (clamped to
    /// [`MAX_REVOCATION_HOLD`]), or the server's hold.
    #[must_use]
    pub fn hold_for(&self, headers: &HeaderMap) -> Duration {
        headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| aauth_headers::Prefer::parse(v).ok())
            .and_then(|p| p.wait)
            .map_or(self.hold, |s| {
                Duration::from_secs(s).min(MAX_REVOCATION_HOLD)
            })
    }

    /// Runs `cascade` for `caller` (the revocation's verified signer, [`caller_of`]),
    /// holding the request as its `headers` say ([`Cascades::hold_for`]): its own answer
    /// if it finishes in that time, else `202` with the pending URL (an id drawn from
    /// `random`) while it goes on in a task.
    ///
    /// # Errors
    ///
    /// [`CascadeError`] when it outlasted the hold and no pending URL could be given.
    pub async fn run(
        &self,
        caller: &str,
        headers: &HeaderMap,
        random: &SharedRandom,
        mut cascade: Cascade,
    ) -> Result<Response<Bytes>, CascadeError> {
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to go on in: the request waits for the whole cascade.
            return Ok(cascade.await);
        }
        if let Some(done) = self.held(self.hold_for(headers), &mut cascade).await {
            return Ok(done);
        }
        let id = random_id(&mut random.clone(), 32).map_err(CascadeError::Random)?;
        let (tx, rx) = watch::channel(None);
        self.insert(
            id.clone(),
            Entry {
                caller: caller.to_owned(),
                done: rx,
                delivered: Arc::default(),
            },
        )?;
        if let Some(store) = &self.shared
            && let Err(e) = store.begin(&id, caller, SystemClock.now()).await
        {
            lock(&self.table).remove(&id);
            return Err(CascadeError::Store {
                reason: error_chain(&e),
            });
        }
        let shared = self.shared.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            let answer = tokio::time::timeout(MAX_CASCADE_RUN, cascade)
                .await
                .unwrap_or_else(|_| stopped());
            if let Some(store) = shared {
                record_end(store.as_ref(), &task_id, &KeptAnswer::of(&answer)).await;
            }
            // Kept whether or not anyone is waiting: the table holds a receiver.
            tx.send_replace(Some(Finished::of(answer)));
        });
        Ok(self.accepted(&id))
    }

    /// Answers a poll of pending revocation `id` by `caller` (the poll's verified signer,
    /// [`caller_of`]), held as its `headers` say: `202` while the cascade runs, then its
    /// final answer, once; `410 Gone` to a later poll (draft -11 §Pending URL Security).
    /// `404` for another caller or an id not here, the same for both.
    pub async fn poll(&self, id: &str, caller: &str, headers: &HeaderMap) -> Response<Bytes> {
        if let Some(store) = &self.shared {
            return self.poll_shared(store.as_ref(), id, caller, headers).await;
        }
        let Some((mut done, delivered)) = self.receiver(id, caller) else {
            return Self::not_found();
        };
        if delivered.load(std::sync::atomic::Ordering::Acquire) {
            return gone_410();
        }
        // Woken when the cascade ends, or at the end of the hold: either way the answer
        // is read below.
        let _ended = self.held(self.hold_for(headers), ended(&mut done)).await;
        // Whether its task is gone, read before the answer: a task gone, then no answer,
        // means none will come.
        let task_gone = done.has_changed().is_err();
        let finished = done.borrow().clone();
        match finished {
            // Given once, even to two polls racing for it.
            Some(f) => match delivered.swap(true, std::sync::atomic::Ordering::AcqRel) {
                false => f.response(),
                true => gone_410(),
            },
            None if task_gone => {
                // Its task ended without an answer (the runtime is shutting down).
                lock(&self.table).remove(id);
                stopped()
            }
            None => self.accepted(id),
        }
    }

    /// [`Cascades::poll`] from the shared store: read again every [`SHARED_POLL_EVERY`]
    /// while held (at once when this instance runs the cascade and it ends).
    async fn poll_shared(
        &self,
        store: &dyn CascadeStore,
        id: &str,
        caller: &str,
        headers: &HeaderMap,
    ) -> Response<Bytes> {
        let hold = self.hold_for(headers);
        let permit = if hold.is_zero() {
            None
        } else {
            Arc::clone(&self.held).try_acquire_owned().ok()
        };
        let mut until = Instant::now()
            + if permit.is_some() {
                hold
            } else {
                Duration::ZERO
            };
        // This instance's own cascade, if it runs it: its end wakes the hold at once.
        let local = self.receiver(id, caller);
        let mut local_ended = false;
        loop {
            let now = SystemClock.now();
            let kept = match store.read(id, caller, now).await {
                Ok(kept) => kept,
                // The record is still there to read: the poll stays pending.
                Err(e) => return self.unreadable(id, &e),
            };
            match kept {
                None => return Self::not_found(),
                Some(Kept::Finished {
                    delivered: true, ..
                }) => return gone_410(),
                Some(Kept::Finished { answer, .. }) => {
                    return match store.deliver(id).await {
                        Ok(true) => answer.response(),
                        Ok(false) => gone_410(),
                        Err(e) => self.unreadable(id, &e),
                    };
                }
                Some(Kept::Running { since }) => {
                    if let Some((done, delivered)) = &local {
                        // Ended here, its end not recorded (the store failed): this
                        // instance gives its answer, once.
                        let finished = done.borrow().clone();
                        if let Some(f) = finished {
                            return match delivered.swap(true, std::sync::atomic::Ordering::AcqRel) {
                                false => f.response(),
                                true => gone_410(),
                            };
                        }
                        if done.has_changed().is_err() {
                            // Its task here ended without an answer.
                            return stopped();
                        }
                    } else if now.as_secs()
                        > since
                            .as_secs()
                            .saturating_add(MAX_CASCADE_RUN.as_secs() + STOPPED_GRACE.as_secs())
                    {
                        // Run elsewhere, past its longest run: its instance ended first.
                        return stopped();
                    }
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || *self.stopping.borrow() {
                return self.accepted(id);
            }
            let pause = left.min(SHARED_POLL_EVERY);
            let paused = match &local {
                Some((done, _)) if !local_ended => {
                    let mut done = done.clone();
                    // Ended (or its task gone): read again at once, then pace.
                    let waited = self
                        .unless_stopping(tokio::time::timeout(pause, ended(&mut done)))
                        .await;
                    local_ended = matches!(waited, Some(Ok(_)));
                    waited.is_some()
                }
                _ => self
                    .unless_stopping(tokio::time::sleep(pause))
                    .await
                    .is_some(),
            };
            if !paused {
                // The server is stopping: the record is read once more, then `202`.
                until = Instant::now();
            }
        }
    }

    /// The `202` of a poll whose record could not be read or marked now (the store
    /// failed): it is still pending; poll again in a second.
    fn unreadable(&self, id: &str, _e: &StoreError) -> Response<Bytes> {
        #[cfg(feature = "ops")]
        tracing::warn!(error = %_e, "a pending revocation could not be read");
        let mut r = self.accepted(id);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }

    /// A poll as it arrives: a `GET` of pending revocation `id`, its signature verified by
    /// `verifier` (the one the revocation endpoint uses), then [`Cascades::poll`] under
    /// the verified caller. Another method, a signer the verifier does not admit, or one
    /// with no `jwks_uri` identity gets [`Cascades::not_found`]; a signature that fails
    /// gets the verifier's own answer.
    pub async fn poll_signed(
        &self,
        verifier: &aauth_signing::Verifier,
        id: &str,
        parts: &http::request::Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Response<Bytes> {
        if parts.method != http::Method::GET {
            return Self::not_found();
        }
        let verified = match verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(aauth_signing::VerifyError::SignerNotAdmitted { .. }) => {
                return Self::not_found();
            }
            Err(error) => {
                return error.into_http_response(verifier.policy()).map(Bytes::from);
            }
        };
        match caller_of(&verified.identity) {
            Some(caller) => self.poll(id, &caller, &parts.headers).await,
            None => Self::not_found(),
        }
    }

    /// The `404` of a poll that is not the caller's, or of no pending revocation: one
    /// answer for both (and for a signer the server takes no revocations from).
    #[must_use]
    pub fn not_found() -> Response<Bytes> {
        json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": "not_found", "detail": "no such pending revocation" }),
        )
    }

    /// How many pending revocations are kept now (running or finished).
    #[must_use]
    pub fn pending(&self) -> usize {
        lock(&self.table).len()
    }

    /// `fut`'s output, waited for at most `hold` (no longer than it takes when a permit
    /// to hold is left and the server is not stopping, else not at all: it is polled
    /// once); `None` when it did not come in that time.
    async fn held<F: Future>(&self, hold: Duration, fut: F) -> Option<F::Output> {
        let permit = if hold.is_zero() {
            None
        } else {
            Arc::clone(&self.held).try_acquire_owned().ok()
        };
        let hold = if permit.is_some() {
            hold
        } else {
            Duration::ZERO
        };
        self.unless_stopping(tokio::time::timeout(hold, fut))
            .await
            .and_then(Result::ok)
    }

    /// `fut`'s output, unless the server is stopping first ([`Cascades::stop_holding`]):
    /// then `None`, once `fut` has been polled once.
    async fn unless_stopping<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut stopping = self.stopping.subscribe();
        let mut fut = std::pin::pin!(fut);
        let mut stopped = std::pin::pin!(async move {
            // The sender lives as long as `self`: an error cannot come while `self` is
            // borrowed, and is taken as stopping.
            let _stopped = stopping.wait_for(|s| *s).await;
        });
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(out) = fut.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(out));
            }
            stopped.as_mut().poll(cx).map(|()| None)
        })
        .await
    }

    /// The answer receiver of `id` and whether its answer was given, if it is `caller`'s
    /// and not expired.
    fn receiver(&self, id: &str, caller: &str) -> Option<Receiver> {
        let mut table = lock(&self.table);
        let entry = table.get(id)?;
        if entry.expired(Instant::now()) {
            table.remove(id);
            return None;
        }
        (entry.caller == caller).then(|| (entry.done.clone(), Arc::clone(&entry.delivered)))
    }

    /// Keeps `entry` as `id`: expired ones dropped first, then, when full, the one that
    /// finished first; `Busy` when every one is still running.
    fn insert(&self, id: String, entry: Entry) -> Result<(), CascadeError> {
        let mut table = lock(&self.table);
        let now = Instant::now();
        table.retain(|_, e| !e.expired(now));
        if table.len() >= self.max {
            let oldest = table
                .iter()
                .filter_map(|(k, e)| e.finished_at().map(|at| (at, k.clone())))
                .min();
            match oldest {
                Some((_, k)) => {
                    table.remove(&k);
                }
                None => {
                    return Err(CascadeError::Busy {
                        retry_after: self.hold.as_secs().max(1),
                    });
                }
            }
        }
        table.insert(id, entry);
        Ok(())
    }

    /// `202 Accepted` with the pending URL of `id`; `Retry-After: 0` when polls are held
    /// (the hold paces them), else `1`.
    fn accepted(&self, id: &str) -> Response<Bytes> {
        let Ok(location) = HeaderValue::from_str(&format!("{}{id}", self.prefix)) else {
            return server_error("the pending URL could not be formed");
        };
        let mut r = json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "status": "pending" }),
        );
        r.headers_mut().insert(header::LOCATION, location);
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(u16::from(self.hold.is_zero())),
        );
        r
    }
}

/// A pending revocation's answer, as a poll reads it: the receiver, and whether the
/// answer was given already.
type Receiver = (
    watch::Receiver<Option<Finished>>,
    Arc<std::sync::atomic::AtomicBool>,
);

/// The `410` of a poll after the final answer was given (draft -11 §Pending URL
/// Security): this pending URL has ended; send the revocation again to run it again.
fn gone_410() -> Response<Bytes> {
    json_response(
        StatusCode::GONE,
        &serde_json::json!({
            "error": "invalid_code",
            "detail": "this pending revocation has ended and its answer was given",
        }),
    )
}

/// Waits until the cascade has an answer (or its task is gone).
async fn ended(done: &mut watch::Receiver<Option<Finished>>) -> bool {
    done.wait_for(Option::is_some).await.is_ok()
}

/// Records the end of cascade `id` in `store`, trying three times a second apart: a
/// poll elsewhere answers from it (unrecorded, polls see it running until its longest
/// run is past, then `500`, and the sender resends).
async fn record_end(store: &dyn CascadeStore, id: &str, answer: &KeptAnswer) {
    for attempt in 1..=3 {
        match store.finish(id, answer, SystemClock.now()).await {
            Ok(()) => return,
            Err(_e) if attempt == 3 => {
                #[cfg(feature = "ops")]
                tracing::warn!(error = %_e, "a revocation cascade's end could not be recorded");
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// `e` and its sources, `: `-separated.
fn error_chain(e: &StoreError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The final answer of a cascade stopped before its end.
fn stopped() -> Response<Bytes> {
    server_error("the revocation cascade stopped before its end; send the revocation again")
}

/// `500 server_error` saying `detail`.
fn server_error(detail: &str) -> Response<Bytes> {
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &serde_json::json!({ "error": "server_error", "detail": detail }),
    )
}
