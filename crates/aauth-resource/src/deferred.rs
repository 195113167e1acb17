//! The deferred `requirement=auth-token` (draft -11 §8.2, RS-36): instead of a `401`, the
//! resource answers `202` with a pending URL and holds the invocation; the first poll
//! presenting a valid auth token runs it, and its result is kept, keyed by that auth
//! token's `jti` until the token's `exp`, and replayed to repeated presentations.
//!
//! Anyone who runs a Person Server can mint person tokens for a resource, so what is held
//! is bounded: a body larger than [`DeferredAuth::max_held_body`] (64 KiB) is not held
//! (the plain `401` is answered and the agent retries with its auth token);
//! [`MemoryHeldStore`] keeps at most a count of records and a byte budget (64 MiB), past
//! which a call is not held but answered with the plain `401` too (so a store filled by
//! someone minting fresh people costs the deferral, not the service); and each person
//! `(ps, sub)` and each agent key has at most [`DEFAULT_HOLD_QUOTA`] open holds, refused
//! past it with `429` and `Retry-After`.
//! A result is kept up to [`DeferredAuth::max_held_result`] (1 MiB): a larger one is
//! replaced by a `500 server_error` saying so, kept and replayed in its place (the call is not run
//! again).
//!
//! A `DELETE` at the pending URL cancels a call that is still pending (`204`). Once a poll
//! has started running it, it is too late: the call may already have acted, and may be
//! running on another instance, so it is neither stopped nor reported cancelled; the
//! `DELETE` is answered `409 Conflict` (`invalid_request`), and the call runs to its end,
//! its result kept and replayed as for any run ([`Cancel::Running`]). A running call's
//! record lives at least until its result's retention ends (the auth token's `exp`, at most
//! an hour ahead), however short the hold was, so that a call outlasting its hold keeps its result.
//!
//! Once a held call has ended (run, or cancelled) its pending URL is `410` to every request
//! of its agent (draft -11 §Pending URL Security), except the replay to the auth token it
//! ran for; past the time the record is kept, a tombstone (its owner only, bounded in
//! count, [`DEFAULT_TOMBSTONES`], and time, [`DEFAULT_TOMBSTONE_TTL`]) keeps it `410`, so
//! that a late poll is never told `408 expired` (which lets the agent send a call that
//! already ran again) nor `404`. Another agent key is told what it was before: `404`, or
//! `408` once the id's time has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use aauth_keys::base64url;
use aauth_keys::rand::{RandomSource, SharedRandom};
use aauth_keys::time::UnixTime;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};

/// The default byte budget of a [`MemoryHeldStore`] (64 MiB): held bodies and header
/// fields, and kept results, as [`Held::size`] and [`StoredResponse::size`] count them.
pub const DEFAULT_HELD_BYTES: usize = 64 * 1024 * 1024;

/// The default number of open (pending or running) holds one person `(ps, sub)`, and one
/// agent key, may have in a [`MemoryHeldStore`]: 16 each.
pub const DEFAULT_HOLD_QUOTA: usize = 16;

/// The default largest body a [`DeferredAuth`] holds (64 KiB): a larger request is
/// answered with the plain `401 requirement=auth-token`, and the agent sends it again
/// with its auth token.
pub const DEFAULT_MAX_HELD_BODY: usize = 64 * 1024;

/// The default largest result body a [`DeferredAuth`] keeps (1 MiB): a held call whose
/// response body is larger has a `500 server_error` kept and replayed in its place, since results are
/// kept until the auth token's `exp` (up to an hour), in memory or in Redis.
pub const DEFAULT_MAX_HELD_RESULT: usize = 1024 * 1024;

/// The default number of tombstones a held store keeps (16 384): ids of settled holds
/// past the time their result (or their cancellation) was kept, so that a late poll by
/// their agent is told `410` (draft -11 §Pending URL Security), never `408` or `404`.
pub const DEFAULT_TOMBSTONES: usize = 16 * 1024;

/// The default time a tombstone is kept past the end of its record (a day).
pub const DEFAULT_TOMBSTONE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What a record costs beyond the bytes it carries (map nodes, its id, its state), so that
/// many small holds cost something too.
const RECORD_OVERHEAD: usize = 256;

/// What each header field costs beyond its name and value (as RFC 9113 §6.5.2 counts a
/// header list).
const FIELD_OVERHEAD: usize = 32;

fn headers_size(headers: &HeaderMap) -> usize {
    headers.iter().fold(0, |n: usize, (name, value)| {
        n.saturating_add(name.as_str().len())
            .saturating_add(value.len())
            .saturating_add(FIELD_OVERHEAD)
    })
}

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
    /// The prefix of the pending URL it was held under ([`Held::under`]): only a layer
    /// serving that prefix may poll, run or cancel it, so that layers sharing a store do
    /// not run each other's calls. Empty for a record that names none (one kept before
    /// records named it), which no layer serves.
    pub prefix: String,
}

impl Held {
    /// The request `parts` and `body`, signed by the agent key whose thumbprint is `jkt`
    /// for the person `(ps, sub)`, held until `expires`.
    ///
    /// ```
    /// use aauth_keys::time::UnixTime;
    /// use aauth_resource::Held;
    /// let (parts, ()) = http::Request::post("/doc")
    ///     .header("content-type", "application/json")
    ///     .body(())?
    ///     .into_parts();
    /// let body = bytes::Bytes::from_static(br#"{"title":"q3"}"#);
    /// let held = Held::new(parts, body, "jkt", "https://ps.example", "person-1", UnixTime(1_800_000_600));
    /// assert!(held.size() > 14 + "content-type".len() + "application/json".len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn new(
        parts: http::request::Parts,
        body: Bytes,
        jkt: &str,
        ps: &str,
        sub: &str,
        expires: UnixTime,
    ) -> Self {
        Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
            jkt: jkt.to_owned(),
            ps: ps.to_owned(),
            sub: sub.to_owned(),
            expires,
            prefix: String::new(),
        }
    }

    /// What [`HeldStore::get`] answers for a tombstone ([`HeldState::Gone`]): only the
    /// agent key thumbprint `jkt` and the pending `prefix` of the hold, the rest empty.
    #[must_use]
    pub fn tombstone(jkt: &str, prefix: &str) -> Self {
        let (parts, ()) = http::Request::new(()).into_parts();
        Self::new(parts, Bytes::new(), jkt, "", "", UnixTime(0)).under(prefix)
    }

    /// The same hold, bound to the pending URLs under `prefix`: only a layer serving that
    /// prefix may poll it (the layer binds every hold to its own).
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// The bytes this record keeps, as a store's budget counts them: the body, each header
    /// field's name and value plus 32, the target, the owner, the pending prefix, and 256
    /// for the record itself. Never overflows.
    #[must_use]
    pub fn size(&self) -> usize {
        self.bare_size()
            .saturating_add(self.body.len())
            .saturating_add(headers_size(&self.headers))
    }

    /// What [`Held::size`] counts once the header fields and the body are dropped (a
    /// settled hold).
    pub(crate) fn bare_size(&self) -> usize {
        [
            self.uri.scheme_str().map_or(0, str::len),
            self.uri.authority().map_or(0, |a| a.as_str().len()),
            self.uri.path_and_query().map_or(0, |p| p.as_str().len()),
            self.method.as_str().len(),
            self.jkt.len(),
            self.ps.len(),
            self.sub.len(),
            self.prefix.len(),
            RECORD_OVERHEAD,
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }
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

impl StoredResponse {
    /// A response with `status`, `headers` and `body`.
    #[must_use]
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            status,
            headers,
            body,
        }
    }

    /// The bytes it keeps: the body and each header field's name and value plus 32.
    #[must_use]
    pub fn size(&self) -> usize {
        self.body.len().saturating_add(headers_size(&self.headers))
    }
}

/// Where a held invocation stands.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HeldState {
    /// Waiting for an auth token.
    Pending,
    /// Running for the auth token `jti`: its record is kept at least until its result's
    /// retention ends ([`HeldStore::claim`]), whenever the hold itself expires.
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
    /// Settled (done, cancelled, or claimed to run) and past the time its record was kept:
    /// a tombstone, so that a late poll by its agent gets `410` (draft -11 §Pending URL
    /// Security), not `408 expired` (which would let the agent send a call that already ran
    /// again) nor `404`. [`HeldStore::get`] answers it with a [`Held`] that carries only the
    /// owner: `jkt` and `prefix` ([`Held::tombstone`]).
    Gone,
}

impl HeldState {
    /// Whether the invocation is still open: pending or running (what a presenter's quota
    /// counts).
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Pending | Self::Running { .. })
    }
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

/// What [`HeldStore::cancel`] found, and what the layer answers the agent's `DELETE` with.
///
/// The draft (-11 §Cancel Request, §Deferred Delivery) says what follows a cancellation
/// (`410 Gone`) but not what a cancellation of a call that has already started is: here a
/// `DELETE` never says "cancelled" of a call that may have acted. A running call is not
/// stopped (it may already have acted, and the poll running it may be on another
/// instance): the `DELETE` is answered `409 Conflict` with `error` `invalid_request`, and
/// the call runs to its end, its result kept for the auth token it runs for and replayed to
/// that token's polls, as for any run. A client can rely on `204` meaning the call never
/// runs, and on `409` meaning it runs (poll for its result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancel {
    /// It was pending: it is cancelled and never runs (`204`; every later request of its
    /// agent gets `410`).
    Cancelled,
    /// A poll is running it: too late to cancel, left running (`409`).
    Running,
    /// It had already ended, run or cancelled, and is left as it is (`410`).
    Ended,
    /// No record of it is live: never held, or its time is up (`404`, or `408` once the
    /// time in its id has passed).
    Missing,
}

/// Why the held-invocation store could not answer (the layer answers `503`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("held-request store: {reason}")]
pub struct HeldStoreError {
    /// What failed.
    pub reason: String,
}

/// Whose quota of open holds a request exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Presenter {
    /// The person `(ps, sub)` the presented person or auth token names.
    Person,
    /// The agent key that signed the request.
    AgentKey,
}

impl std::fmt::Display for Presenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Person => "person",
            Self::AgentKey => "agent key",
        })
    }
}

/// Why an invocation was not held. The layer answers `429` with `Retry-After` for a
/// presenter past its quota; the plain `401 requirement=auth-token` for a store at its
/// bounds ([`HoldError::Full`], [`HoldError::OverBudget`]: the agent comes back with its
/// auth token, as it would for a body too large to hold); `503` with `Retry-After: 1` for
/// a store that cannot answer. A request that is not held is never run unchecked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    /// The store keeps as many records as it may; none is evicted to make room.
    #[error("held-request store full ({max} records)")]
    Full {
        /// The record limit.
        max: usize,
    },
    /// Keeping this request would take the store past its byte budget.
    #[error("held-request store: {size} more bytes would pass its budget of {budget}")]
    OverBudget {
        /// What the request would cost ([`Held::size`]).
        size: usize,
        /// The budget.
        budget: usize,
    },
    /// The presenter already has its quota of open holds.
    #[error("this {presenter} already has {quota} open held requests")]
    QuotaExceeded {
        /// Whose quota.
        presenter: Presenter,
        /// The quota.
        quota: usize,
        /// Seconds until the presenter's oldest open hold ends (a slot is free by then at
        /// the latest): its hold's expiry, or for a call running, its result's retention.
        retry_after: u64,
    },
    /// The store cannot answer.
    #[error(transparent)]
    Store(#[from] HeldStoreError),
}

impl HoldError {
    /// `429` for [`HoldError::QuotaExceeded`], `503` for the others: what refusing the
    /// hold would answer (the layer answers a store at its bounds with the plain `401`
    /// challenge instead).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `Retry-After` seconds: until the presenter's oldest open hold expires for a
    /// quota, one second otherwise.
    #[must_use]
    pub fn retry_after(&self) -> u64 {
        match self {
            Self::QuotaExceeded { retry_after, .. } => (*retry_after).max(1),
            _ => 1,
        }
    }
}

/// Storage for held invocations, behind a trait so that several resource instances can
/// share one (memory here).
///
/// A store keeps what anyone with a person token for the resource sends, so it must bound
/// it: a count, a byte budget, and a quota of open holds per presenter (person and agent
/// key), refusing past them rather than evicting a pending hold.
#[async_trait]
pub trait HeldStore: Send + Sync {
    /// Holds `held` under `id`.
    ///
    /// # Errors
    ///
    /// [`HoldError`] when it is not kept: the store is full or past its budget, the
    /// presenter is past its quota, or the store is unavailable.
    async fn hold(&self, id: &str, held: Held, now: UnixTime) -> Result<(), HoldError>;

    /// The held invocation `id` and its state, if it exists and has not expired. Once
    /// settled (done or cancelled) a store may drop the request's header fields and body:
    /// only its owner is needed then. A record that was not pending when its time ran out
    /// (done, cancelled, or claimed to run) leaves a tombstone, bounded in count and time,
    /// answered as [`HeldState::Gone`] with [`Held::tombstone`] while it is kept.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn get(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<(Held, HeldState)>, HeldStoreError>;

    /// Claims `id` for the auth token `jti` (atomically: one poll runs it), its result to be
    /// kept until `keep_until` (the auth token's `exp`). A claimed record lives at least
    /// until `keep_until`, whenever its hold expires, and counts in its presenters' quotas
    /// until it is settled: a call that outlasts its hold is not swept while it runs, and
    /// its result is kept as long as it would have been had it ended at once. What a run
    /// keeps is bounded by `keep_until` (the layer passes a verified auth token's `exp`, at
    /// most an hour ahead): a record still running then is swept, leaving a tombstone.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn claim(
        &self,
        id: &str,
        jti: &str,
        keep_until: UnixTime,
        now: UnixTime,
    ) -> Result<Claim, HeldStoreError>;

    /// Records the result for `jti`, kept until `keep_until`. A claim is never released:
    /// once an invocation has started it may have acted, so whatever ends it (its result,
    /// or an error answer standing for it) is what every repeat is answered with, and it
    /// is never run again.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn finish(
        &self,
        id: &str,
        jti: &str,
        response: StoredResponse,
        keep_until: UnixTime,
    ) -> Result<(), HeldStoreError>;

    /// Settles `id` with `response` as [`HeldStore::finish`] does, but only while it is
    /// still running for `jti`, and from where nothing can wait: the drop of a poll that
    /// was running it (its client went away), so that the record does not stay running
    /// until its result's retention ends. It must not block: a store that needs I/O starts the write
    /// and returns (`RedisHeldStore` spawns it on the current Tokio runtime).
    fn abandon(&self, id: &str, jti: &str, response: StoredResponse, keep_until: UnixTime);

    /// Cancels `id` if it is still pending, atomically with reading its state, and says
    /// what it found ([`Cancel`]). A running record is left running (its call may already
    /// have acted), a settled one (its result kept, or already cancelled) as it is.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`].
    async fn cancel(&self, id: &str, now: UnixTime) -> Result<Cancel, HeldStoreError>;
}

#[derive(Debug)]
struct Entry {
    held: Held,
    state: HeldState,
    until: UnixTime,
    /// What it costs now (counted in `State::bytes`).
    size: usize,
}

impl Entry {
    fn cost(&self) -> usize {
        let kept = match &self.state {
            HeldState::Done { response, .. } => response.size(),
            _ => 0,
        };
        self.held.size().saturating_add(kept)
    }
}

/// `(expires, id)`: ordered by expiry, so the oldest is first.
type Slot = (UnixTime, String);

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<String, Entry>,
    /// Every record by `(until, id)`: the sweep takes expired ones from the front, so
    /// nothing ever scans the whole map.
    expiry: BTreeSet<Slot>,
    /// The open holds of each person `(ps, sub)`.
    by_person: BTreeMap<(String, String), BTreeSet<Slot>>,
    /// The open holds of each agent key (thumbprint).
    by_key: BTreeMap<String, BTreeSet<Slot>>,
    /// The sum of every record's `size`.
    bytes: usize,
    /// The tombstones of settled records past their time, by id: the owner's `(jkt,
    /// prefix)` and until when.
    tombs: BTreeMap<String, Tomb>,
    /// Every tombstone by `(until, id)`: swept and evicted from the front.
    tomb_expiry: BTreeSet<Slot>,
    /// The most tombstones kept.
    tomb_max: usize,
    /// How long a tombstone is kept past its record's end, in seconds.
    tomb_keep: u64,
}

/// What is left of a settled record past its time: whose it was.
#[derive(Debug)]
struct Tomb {
    jkt: String,
    prefix: String,
    until: UnixTime,
}

impl State {
    /// Drops every record whose time is up, leaving a tombstone for one that was not
    /// pending, and every tombstone whose time is up: each is removed once, in `O(log n)`.
    fn sweep(&mut self, now: UnixTime) {
        while self
            .tomb_expiry
            .first()
            .is_some_and(|(until, _)| *until <= now)
        {
            let Some((_, id)) = self.tomb_expiry.pop_first() else {
                break;
            };
            self.tombs.remove(&id);
        }
        while self.expiry.first().is_some_and(|(until, _)| *until <= now) {
            let Some((_, id)) = self.expiry.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&id) {
                self.bytes = self.bytes.saturating_sub(e.size);
                if e.state.is_open() {
                    close(&mut self.by_person, &mut self.by_key, &id, &e);
                }
                if !matches!(e.state, HeldState::Pending) {
                    self.bury(id, &e.held, e.until, now);
                }
            }
        }
    }

    /// Keeps a tombstone for the settled record `id` (owned by `held`) that ended at
    /// `ended`, for the store's tombstone time; past the count, the one ending first goes.
    fn bury(&mut self, id: String, held: &Held, ended: UnixTime, now: UnixTime) {
        let until = ended.plus(self.tomb_keep);
        if self.tomb_max == 0 || until <= now {
            return;
        }
        let tomb = Tomb {
            jkt: held.jkt.clone(),
            prefix: held.prefix.clone(),
            until,
        };
        if let Some(old) = self.tombs.insert(id.clone(), tomb) {
            self.tomb_expiry.remove(&(old.until, id.clone()));
        }
        self.tomb_expiry.insert((until, id));
        while self.tombs.len() > self.tomb_max {
            let Some((_, first)) = self.tomb_expiry.pop_first() else {
                break;
            };
            self.tombs.remove(&first);
        }
    }
}

/// Removes the open hold `id` (`e`) from its presenters' quotas, where it counts under its
/// record's time (`e.until`: its hold's expiry, or once claimed its result's retention).
fn close(
    by_person: &mut BTreeMap<(String, String), BTreeSet<Slot>>,
    by_key: &mut BTreeMap<String, BTreeSet<Slot>>,
    id: &str,
    e: &Entry,
) {
    let held = &e.held;
    let slot = (e.until, id.to_owned());
    let person = (held.ps.clone(), held.sub.clone());
    if let Some(open) = by_person.get_mut(&person) {
        open.remove(&slot);
        if open.is_empty() {
            by_person.remove(&person);
        }
    }
    if let Some(open) = by_key.get_mut(&held.jkt) {
        open.remove(&slot);
        if open.is_empty() {
            by_key.remove(&held.jkt);
        }
    }
}

/// Keeps the open record `id` (`e`) until `until` at least: its place in the expiry index
/// and in its presenters' quotas moves with it (a running call counts as open until it is
/// settled).
fn extend(st: &mut State, id: &str, until: UnixTime) {
    let Some(e) = st.entries.get_mut(id).filter(|e| e.until < until) else {
        return;
    };
    let (old, new) = ((e.until, id.to_owned()), (until, id.to_owned()));
    st.expiry.remove(&old);
    st.expiry.insert(new.clone());
    let person = (e.held.ps.clone(), e.held.sub.clone());
    for open in [
        st.by_person.get_mut(&person),
        st.by_key.get_mut(&e.held.jkt),
    ]
    .into_iter()
    .flatten()
    {
        if open.remove(&old) {
            open.insert(new.clone());
        }
    }
    e.until = until;
}

/// Settles an open hold: it leaves its presenters' quotas, and the request it carried is
/// dropped (a settled hold needs only its owner).
fn settle(
    by_person: &mut BTreeMap<(String, String), BTreeSet<Slot>>,
    by_key: &mut BTreeMap<String, BTreeSet<Slot>>,
    id: &str,
    e: &mut Entry,
) {
    if e.state.is_open() {
        close(by_person, by_key, id, e);
        e.held.headers = HeaderMap::new();
        e.held.body = Bytes::new();
    }
}

/// Recounts `e` in `bytes` after a change.
fn recount(bytes: &mut usize, e: &mut Entry) {
    let size = e.cost();
    *bytes = bytes.saturating_sub(e.size).saturating_add(size);
    e.size = size;
}

/// An in-memory [`HeldStore`], bounded four ways, each refusing a new hold rather than
/// evicting a pending one: at most `max` records and [`DEFAULT_HELD_BYTES`] bytes (the
/// layer then answers the plain `401` challenge), and at most [`DEFAULT_HOLD_QUOTA`]
/// open holds per person and per agent key (`429`). Expired records are swept through an
/// expiry index, so a hold costs `O(log n)` amortized, never a scan of the store.
///
/// ```
/// use aauth_resource::MemoryHeldStore;
/// let store = MemoryHeldStore::new(1_000).byte_budget(8 * 1024 * 1024).quota(4);
/// assert!(store.is_empty());
/// assert_eq!(store.bytes(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryHeldStore {
    state: Mutex<State>,
    max: usize,
    budget: usize,
    quota: usize,
}

impl MemoryHeldStore {
    /// A store keeping at most `max` records, within [`DEFAULT_HELD_BYTES`], with
    /// [`DEFAULT_HOLD_QUOTA`] open holds per presenter.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(State {
                tomb_max: DEFAULT_TOMBSTONES,
                tomb_keep: DEFAULT_TOMBSTONE_TTL.as_secs(),
                ..State::default()
            }),
            max,
            budget: DEFAULT_HELD_BYTES,
            quota: DEFAULT_HOLD_QUOTA,
        }
    }

    /// Keeps at most `max` tombstones (default [`DEFAULT_TOMBSTONES`]), each for `keep`
    /// (whole seconds, default [`DEFAULT_TOMBSTONE_TTL`]) past the end of its record: a
    /// settled record past its time leaves one, so that its agent's late poll is `410`
    /// ([`HeldState::Gone`]). Past the count, the tombstone ending first is dropped (that
    /// id's late poll is then `408`, as it was without tombstones). A tombstone costs its
    /// id, the agent key thumbprint and the pending prefix, outside the byte budget.
    #[must_use]
    pub fn tombstones(self, max: usize, keep: std::time::Duration) -> Self {
        {
            let mut st = lock(&self.state);
            st.tomb_max = max;
            st.tomb_keep = keep.as_secs();
        }
        self
    }

    /// The most bytes kept: held requests and kept results, as [`Held::size`] and
    /// [`StoredResponse::size`] count them. A result is never refused (its invocation has
    /// run), so results can take the store past the budget; new holds are then refused
    /// until they expire.
    #[must_use]
    pub fn byte_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// The most open (pending or running) holds one person `(ps, sub)`, and one agent
    /// key, may have.
    #[must_use]
    pub fn quota(mut self, open: usize) -> Self {
        self.quota = open;
        self
    }

    /// How many records are kept (expired ones until the next sweep).
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// Whether nothing is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes kept, as the budget counts them.
    #[must_use]
    pub fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }
}

impl MemoryHeldStore {
    /// Records `response` as the result of `id` for `jti`, kept until `keep_until`; with
    /// `only_running`, only if it is still running for `jti`.
    fn done(
        &self,
        id: &str,
        jti: &str,
        response: StoredResponse,
        keep_until: UnixTime,
        only_running: bool,
    ) {
        let mut guard = lock(&self.state);
        let State {
            entries,
            expiry,
            by_person,
            by_key,
            bytes,
            ..
        } = &mut *guard;
        let Some(e) = entries.get_mut(id) else {
            return;
        };
        if only_running && !matches!(&e.state, HeldState::Running { jti: j } if j == jti) {
            return;
        }
        settle(by_person, by_key, id, e);
        e.state = HeldState::Done {
            jti: jti.to_owned(),
            response,
        };
        expiry.remove(&(e.until, id.to_owned()));
        e.until = keep_until;
        expiry.insert((keep_until, id.to_owned()));
        recount(bytes, e);
    }
}

impl Default for MemoryHeldStore {
    fn default() -> Self {
        Self::new(10_000)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update leaves the state consistent before anything can fail, so a poisoned
    // lock is still a usable state.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl HeldStore for MemoryHeldStore {
    async fn hold(&self, id: &str, held: Held, now: UnixTime) -> Result<(), HoldError> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.sweep(now);
        let person = (held.ps.clone(), held.sub.clone());
        let quotas = [
            (Presenter::Person, st.by_person.get(&person)),
            (Presenter::AgentKey, st.by_key.get(&held.jkt)),
        ];
        for (presenter, open) in quotas {
            let open_now = open.map_or(0, BTreeSet::len);
            if open_now >= self.quota {
                let oldest = open.and_then(BTreeSet::first).map_or(now, |(t, _)| *t);
                return Err(HoldError::QuotaExceeded {
                    presenter,
                    quota: self.quota,
                    retry_after: oldest.as_secs().saturating_sub(now.as_secs()).max(1),
                });
            }
        }
        if st.entries.len() >= self.max {
            return Err(HoldError::Full { max: self.max });
        }
        let size = held.size();
        if st.bytes.saturating_add(size) > self.budget {
            return Err(HoldError::OverBudget {
                size,
                budget: self.budget,
            });
        }
        if st.entries.contains_key(id) {
            return Err(HoldError::Store(HeldStoreError {
                reason: "the id is in use".to_owned(),
            }));
        }
        let slot = (held.expires, id.to_owned());
        st.expiry.insert(slot.clone());
        st.by_person.entry(person).or_default().insert(slot.clone());
        st.by_key.entry(held.jkt.clone()).or_default().insert(slot);
        st.bytes = st.bytes.saturating_add(size);
        st.entries.insert(
            id.to_owned(),
            Entry {
                until: held.expires,
                held,
                state: HeldState::Pending,
                size,
            },
        );
        Ok(())
    }

    async fn get(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<(Held, HeldState)>, HeldStoreError> {
        let mut st = lock(&self.state);
        st.sweep(now);
        if let Some(e) = st.entries.get(id).filter(|e| e.until > now) {
            return Ok(Some((e.held.clone(), e.state.clone())));
        }
        Ok(st
            .tombs
            .get(id)
            .filter(|t| t.until > now)
            .map(|t| (Held::tombstone(&t.jkt, &t.prefix), HeldState::Gone)))
    }

    async fn claim(
        &self,
        id: &str,
        jti: &str,
        keep_until: UnixTime,
        now: UnixTime,
    ) -> Result<Claim, HeldStoreError> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.sweep(now);
        let Some(e) = st.entries.get_mut(id).filter(|e| e.until > now) else {
            return Ok(Claim::Settled(HeldState::Cancelled));
        };
        match &e.state {
            HeldState::Pending => {
                e.state = HeldState::Running {
                    jti: jti.to_owned(),
                };
            }
            HeldState::Running { .. } => return Ok(Claim::Busy),
            other => return Ok(Claim::Settled(other.clone())),
        }
        // Kept while it runs, whenever its hold expires, until its result would go.
        extend(st, id, keep_until);
        Ok(Claim::Run)
    }

    async fn finish(
        &self,
        id: &str,
        jti: &str,
        response: StoredResponse,
        keep_until: UnixTime,
    ) -> Result<(), HeldStoreError> {
        self.done(id, jti, response, keep_until, false);
        Ok(())
    }

    fn abandon(&self, id: &str, jti: &str, response: StoredResponse, keep_until: UnixTime) {
        self.done(id, jti, response, keep_until, true);
    }

    async fn cancel(&self, id: &str, now: UnixTime) -> Result<Cancel, HeldStoreError> {
        let mut guard = lock(&self.state);
        guard.sweep(now);
        let State {
            entries,
            by_person,
            by_key,
            bytes,
            tombs,
            ..
        } = &mut *guard;
        let Some(e) = entries.get_mut(id).filter(|e| e.until > now) else {
            // A tombstone is a record that ended (the sweep left only live ones).
            return Ok(if tombs.contains_key(id) {
                Cancel::Ended
            } else {
                Cancel::Missing
            });
        };
        Ok(match e.state {
            HeldState::Pending => {
                settle(by_person, by_key, id, e);
                e.state = HeldState::Cancelled;
                recount(bytes, e);
                Cancel::Cancelled
            }
            HeldState::Running { .. } => Cancel::Running,
            _ => Cancel::Ended,
        })
    }
}

/// The deferral settings of an [`crate::AAuthLayer`]: where held invocations are kept,
/// the path prefix of pending URLs, how long an unanswered hold lasts, and the largest
/// body held.
#[derive(Clone)]
pub struct DeferredAuth {
    pub(crate) store: std::sync::Arc<dyn HeldStore>,
    pub(crate) prefix: String,
    pub(crate) ttl: u64,
    pub(crate) max_held_body: usize,
    pub(crate) max_held_result: usize,
    random: SharedRandom,
}

impl std::fmt::Debug for DeferredAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredAuth")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("max_held_body", &self.max_held_body)
            .field("max_held_result", &self.max_held_result)
            .finish_non_exhaustive()
    }
}

impl DeferredAuth {
    /// Holds invocations in `store` under pending URLs `{prefix}{id}` (the prefix must
    /// start and end with `/`, and the layer must see requests to it; layers sharing a
    /// store each take their own, since a hold is polled, run and cancelled only through
    /// the layer whose prefix it was held under), for ten minutes, with bodies up to
    /// [`DEFAULT_MAX_HELD_BODY`] and results up to [`DEFAULT_MAX_HELD_RESULT`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use aauth_resource::{DeferredAuth, MemoryHeldStore};
    /// let deferred = DeferredAuth::new(Arc::new(MemoryHeldStore::default()), "/aauth/pending/")
    ///     .ttl(std::time::Duration::from_secs(300))
    ///     .max_held_body(16 * 1024)
    ///     .max_held_result(256 * 1024);
    /// # drop(deferred);
    /// ```
    #[must_use]
    pub fn new(store: std::sync::Arc<dyn HeldStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.to_owned(),
            ttl: 600,
            max_held_body: DEFAULT_MAX_HELD_BODY,
            max_held_result: DEFAULT_MAX_HELD_RESULT,
            random: SharedRandom::default(),
        }
    }

    /// Where pending ids come from (the operating system's CSPRNG by default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// How long an unanswered hold lasts (whole seconds). A call a poll starts before then
    /// is kept, however long it runs, until its result's retention ends (the auth token's
    /// `exp`, [`HeldStore::claim`]).
    #[must_use]
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = ttl.as_secs();
        self
    }

    /// The largest body held, in bytes (default [`DEFAULT_MAX_HELD_BODY`]; the layer's
    /// [`crate::AAuthLayer::max_body`] still bounds what is read). A request with a larger
    /// body is not held: it is answered with the plain `401 requirement=auth-token`.
    #[must_use]
    pub fn max_held_body(mut self, bytes: usize) -> Self {
        self.max_held_body = bytes;
        self
    }

    /// The largest result body kept, in bytes (default [`DEFAULT_MAX_HELD_RESULT`]). A
    /// held call whose response body is larger has run: a `500` saying its result was too
    /// large to keep is kept and replayed in its place, and it is not run again.
    #[must_use]
    pub fn max_held_result(mut self, bytes: usize) -> Self {
        self.max_held_result = bytes;
        self
    }

    /// The pending id in `path`, if it is a pending URL.
    pub(crate) fn id_of<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(self.prefix.as_str())
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }

    /// A new unguessable id for a hold that lasts until `expires`: 128 bits from the
    /// random source, then `.` and the expiry in seconds, so that a poll after the hold
    /// is gone from the store can still be told it expired (`408`) rather than that it
    /// never was (`404`). The time is no secret: it says only when this URL stops
    /// answering.
    pub(crate) fn new_id(&self, expires: UnixTime) -> Result<String, HeldStoreError> {
        let mut b = [0u8; 16];
        self.random
            .clone()
            .fill(&mut b)
            .map_err(|e| HeldStoreError {
                reason: e.to_string(),
            })?;
        Ok(format!("{}.{}", base64url::encode(&b), expires.as_secs()))
    }

    /// Whether pending id `id` names a hold that has expired by `now` (by the time it
    /// carries; an id without one never has).
    pub(crate) fn expired_id(id: &str, now: UnixTime) -> bool {
        id.rsplit_once('.')
            .and_then(|(_, t)| t.parse::<u64>().ok())
            .is_some_and(|t| t <= now.as_secs())
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
