//! Everything the Access Server keeps, behind one trait: issuance records (AS-44),
//! revocations received, token requests waiting at pending URLs, people's bindings of
//! their Person Server, and Person Servers' billing relationships. [`MemoryStore`] for a
//! single process and tests; `SqliteStore` (feature `sqlite`, the default) for a
//! deployment whose waiting requests, bindings and records survive a restart.

mod memory_waiting;

use aauth_metadata::audit::{AuditEvent, AuditPage, AuditQuery};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use aauth_keys::time::UnixTime;
use aauth_tokens::ServerId;
use async_trait::async_trait;

pub use aauth_metadata::store::StoreError;

/// How long records are kept past their `exp` (the clock skew a verifier allows).
pub const RECORD_GRACE: u64 = 60;

/// How long a waiting request is kept past its `expires`, no longer live (no lookup but
/// [`AsStore::waiting_kept`] finds it): so that a late poll of an expired request is
/// answered `408 expired`, and one of a request answered terminally (kept as
/// [`Awaiting::Answered`], expiring as it ends) `410`, rather than `404`.
pub const WAITING_KEPT: u64 = 600;

/// How long a waiting request taken to be decided again ([`AsStore::take_waiting`]) stays
/// its taker's, in seconds: a lease, so that a taker that fails (its store's write back
/// failed, or its process died) leaves the request to the next poll once it runs out,
/// rather than losing it. Longer than one decision takes: its outbound calls are the
/// issuers' keys (the agent's provider, the resource, the Person Server, an upstream
/// token's issuer), each a metadata document and a key set fetched under the metadata
/// cache's 10 s fetch timeout (80 s at worst, one after another), and a few store calls
/// (each connect bounded by 5 s). Should a decision outlive it all the same, the request
/// may be taken and decided again by another poll meanwhile: the late taker's write
/// ([`AsStore::put_taken`]) then lands nowhere ([`WaitingPut::NoLongerTaken`]), and an auth
/// token it minted is recorded revoked and never delivered (its poll is told to poll
/// again): one live token at most per request.
pub const TAKE_LEASE: u64 = 120;

// A request is taken only unexpired, and swept only [`WAITING_KEPT`] past its expiry:
// with a lease shorter than that, no sweep ever finds a request whose lease lasts.
const _: () = assert!(TAKE_LEASE < WAITING_KEPT);

/// An issued auth token's record (AS-44): kept until `exp` plus [`RECORD_GRACE`], so that
/// revoking the person token it was issued against reaches it at its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedRecord {
    /// The auth token's `jti`.
    pub jti: String,
    /// The Person Server it was issued to (only it may revoke what it was issued
    /// against).
    pub ps: ServerId,
    /// The `jti` of the token it was issued against (the resource token's `presented_jti`).
    pub presented_jti: String,
    /// Its resource (`aud`).
    pub aud: ServerId,
    /// Its `exp`.
    pub exp: u64,
}

impl IssuedRecord {
    /// A record of auth token `jti` for `aud`, issued to `ps` against `presented_jti`.
    #[must_use]
    pub fn new(jti: String, ps: ServerId, presented_jti: String, aud: ServerId, exp: u64) -> Self {
        Self {
            jti,
            ps,
            presented_jti,
            aud,
            exp,
        }
    }
}

/// What a waiting request waits for (how a store lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Awaiting {
    /// The Person Server's claims.
    Claims,
    /// The person at the interaction page.
    Interaction,
    /// An approval out of band.
    Approval,
    /// An answer to a question.
    Clarification,
    /// A payment's confirmation.
    Payment,
    /// Nothing any more: ended (its resource token was revoked), answered at the next poll.
    Ended,
    /// Answered terminally: only the record of its end, kept [`WAITING_KEPT`] past its
    /// `expires` so that a late poll is told it ended (`410`).
    Answered,
}

impl Awaiting {
    /// Its stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claims => "claims",
            Self::Interaction => "interaction",
            Self::Approval => "approval",
            Self::Clarification => "clarification",
            Self::Payment => "payment",
            Self::Ended => "ended",
            Self::Answered => "answered",
        }
    }

    /// The value stored as `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Claims,
            Self::Interaction,
            Self::Approval,
            Self::Clarification,
            Self::Payment,
            Self::Ended,
            Self::Answered,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

/// A token request waiting at a pending URL. The fields a store looks requests up by
/// are explicit; the rest of the server's state for it is `data` (JSON the server writes
/// and reads, opaque to stores).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitingRecord {
    /// The unguessable id in its pending URL.
    pub id: String,
    /// The Person Server that asked (only it may poll or answer).
    pub ps: ServerId,
    /// Until when it is kept (seconds since the epoch).
    pub expires: u64,
    /// The `(iss, jti)` of its resource token (its revocation ends the request).
    pub resource_token: (String, String),
    /// Its interaction code, while the person is awaited at the interaction page.
    pub code: Option<String>,
    /// What it waits for.
    pub awaiting: Awaiting,
    /// The server's state for it.
    pub data: String,
    /// Until when it is taken to be decided again (its lease, [`TAKE_LEASE`] from the
    /// take), as a store reads it back; none when not taken. Set by
    /// [`AsStore::take_waiting`] only: every write stores the record not taken, whatever
    /// this says.
    pub taken_until: Option<u64>,
}

impl WaitingRecord {
    /// A record (what a store reads back from its own rows).
    #[must_use]
    pub fn new(
        id: String,
        ps: ServerId,
        expires: u64,
        resource_token: (String, String),
        code: Option<String>,
        awaiting: Awaiting,
        data: String,
    ) -> Self {
        Self {
            id,
            ps,
            expires,
            resource_token,
            code,
            awaiting,
            data,
            taken_until: None,
        }
    }

    /// Whether it is taken at `now` ([`AsStore::take_waiting`]: its lease has not run
    /// out): still pending, its taker deciding it.
    #[must_use]
    pub fn taken_at(&self, now: UnixTime) -> bool {
        self.taken_until.is_some_and(|t| t > now.as_secs())
    }
}

/// The bounds a new waiting request is stored within ([`AsStore::create_waiting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitingCaps {
    /// The most unexpired requests one Person Server may have waiting.
    pub per_person_server: usize,
    /// The most requests the store keeps in all, every Person Server's together (the
    /// unexpired ones, and the ones kept [`WAITING_KEPT`] past their expiry); `None`: not
    /// bounded for this request (the server leaves the Person Servers it trusts out of
    /// this bound).
    pub total: Option<usize>,
}

impl WaitingCaps {
    /// At most `per_person_server` unexpired requests of its Person Server, and at most
    /// `total` requests kept in all (none: no such bound).
    #[must_use]
    pub fn new(per_person_server: usize, total: Option<usize>) -> Self {
        Self {
            per_person_server,
            total,
        }
    }
}

/// What [`AsStore::create_waiting`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitingCreated {
    /// The request is stored.
    Created,
    /// Not stored: its Person Server already has [`WaitingCaps::per_person_server`]
    /// unexpired requests.
    PersonServerFull,
    /// Not stored: the store already keeps [`WaitingCaps::total`] requests.
    Full,
    /// Not stored: its id, or its interaction code, is another request's.
    Taken,
}

/// What [`AsStore::put_waiting`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum WaitingPut {
    /// The request is stored, in place of its own earlier record if there was one.
    Stored,
    /// Not stored: its interaction code is another request's. Nothing is written: the
    /// other request stays as it was (reachable by its code), and so does this request's
    /// earlier record, if there is one.
    CodeTaken,
    /// Not stored ([`AsStore::put_taken`]): the request is no longer taken as the caller
    /// took it (its lease ran out and it was taken again, or written meanwhile, or it is
    /// gone). Nothing is written.
    NoLongerTaken,
}

/// Why a person's binding of their Person Server was not made ([`AsStore::bind`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// That person (their `sub` at the resource, from that Person Server) is already
    /// bound here to another account: the binding stands as it was, never overwritten.
    #[error("the person is already bound here to another account")]
    BoundToAnotherAccount,
    /// The store could not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one token request needs from the store, asked at once (see
/// [`AsStore::standing`]): the resource token `(resource, resource_token_jti)`, the
/// presented token `(ps, presented_jti)`, and the person `(ps, resource, sub)`.
#[derive(Debug, Clone, Copy)]
pub struct StandingQuery<'a> {
    /// The Person Server asking.
    pub ps: &'a ServerId,
    /// The resource (the resource token's `iss`).
    pub resource: &'a ServerId,
    /// The person's directed identifier at the resource.
    pub sub: &'a str,
    /// The resource token's `jti`.
    pub resource_token_jti: &'a str,
    /// The presented token's `jti` (the resource token's `presented_jti`).
    pub presented_jti: &'a str,
}

/// The answers to a [`StandingQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standing {
    /// The resource revoked its resource token (AS-42).
    pub resource_token_revoked: bool,
    /// The Person Server revoked the presented token (AS-41).
    pub presented_token_revoked: bool,
    /// The account here the person bound this Person Server to, for this resource (none:
    /// not bound).
    pub bound_account: Option<String>,
    /// The Person Server is billed here.
    pub billed: bool,
}

/// Everything the Access Server keeps. Implementations must be safe to share; each
/// method is one atomic step.
#[async_trait]
pub trait AsStore: Send + Sync {
    /// Records an issued auth token (AS-44); records past `exp` plus [`RECORD_GRACE`] at
    /// `now` may be dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_issued(&self, record: IssuedRecord, now: UnixTime) -> Result<(), StoreError>;

    /// Records an issued auth token ([`AsStore::record_issued`]) and its `issued` audit
    /// event as one step: both or neither. The default writes them in turn; a database
    /// writes them together (one statement, one round trip).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_issuance(
        &self,
        record: IssuedRecord,
        event: AuditEvent,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.record_issued(record, now).await?;
        self.record_event(event).await
    }

    /// The unexpired auth tokens issued to Person Server `ps` against `presented_jti`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn issued_against(
        &self,
        ps: &ServerId,
        presented_jti: &str,
        now: UnixTime,
    ) -> Result<Vec<IssuedRecord>, StoreError>;

    /// The issuance record of auth token `jti` (one this server issued), unless it is
    /// past `exp` plus [`RECORD_GRACE`] at `now`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn issued_record(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<IssuedRecord>, StoreError>;

    /// How many issuance records it holds.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn issued_count(&self) -> Result<usize, StoreError>;

    /// Records the revocation of token `jti` from issuer `iss` (kept until `exp` plus
    /// [`RECORD_GRACE`]; records past that at `now` may be dropped). A revocation repeated
    /// with an earlier `exp` never shortens the record: it is kept until the latest.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn revoke(&self, iss: &str, jti: &str, exp: u64, now: UnixTime)
    -> Result<(), StoreError>;

    /// Whether token `jti` from `iss` was revoked.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn is_revoked(&self, iss: &str, jti: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Stores (or replaces) the waiting request `record.id`, not taken (a lease on the
    /// earlier record is cleared), unless its interaction code is another request's, one
    /// the store still holds, expired or not ([`WaitingPut::CodeTaken`]: nothing is
    /// written, and the other request stays as it was, reachable by its code). For a
    /// request read not taken (a record of its end); its taker writes it back with
    /// [`AsStore::put_taken`]. Requests expired more than [`WAITING_KEPT`] before `now`
    /// may be dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn put_waiting(
        &self,
        record: WaitingRecord,
        now: UnixTime,
    ) -> Result<WaitingPut, StoreError>;

    /// Replaces the waiting request `record.id` with `record`, only if it is still there,
    /// unexpired, not taken at `now` ([`WaitingRecord::taken_at`]), and its `data` is
    /// still `read` (what the caller read): `false` otherwise. A change made from a read
    /// (an approval, the person's yes, a revocation's mark) never writes over a request
    /// taken to be decided meanwhile, nor brings back one decided since, nor writes over
    /// another step. Nor over another request: a `record` whose interaction code is
    /// another request's is not written either (`false`). One whose lease ran out is
    /// replaced as one never taken (its taker's write back then lands nowhere).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn replace_waiting(
        &self,
        record: WaitingRecord,
        read: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// The waiting request `id`, unless expired.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn waiting(&self, id: &str, now: UnixTime) -> Result<Option<WaitingRecord>, StoreError>;

    /// The waiting request `id`, expired or not, while it is kept (until `expires` plus
    /// [`WAITING_KEPT`]): what a poll of it is answered from.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn waiting_kept(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError>;

    /// The unexpired waiting request whose interaction code is `code`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn waiting_by_code(
        &self,
        code: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError>;

    /// The unexpired waiting requests waiting for `awaiting`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn waiting_on(
        &self,
        awaiting: Awaiting,
        now: UnixTime,
    ) -> Result<Vec<WaitingRecord>, StoreError>;

    /// The waiting requests started with resource token `(iss, jti)`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn waiting_with(&self, iss: &str, jti: &str) -> Result<Vec<WaitingRecord>, StoreError>;

    /// Stores a new waiting request within `caps` at `now`: unless its Person Server
    /// already has [`WaitingCaps::per_person_server`] unexpired ones
    /// ([`WaitingCreated::PersonServerFull`]), or, when [`WaitingCaps::total`] is set, the
    /// store already keeps that many requests of every Person Server together, unexpired
    /// or kept past their expiry (until `expires` plus [`WAITING_KEPT`])
    /// ([`WaitingCreated::Full`]), or its id or interaction code is another request's
    /// ([`WaitingCreated::Taken`]); nothing is stored then. Counted and stored as one
    /// step, across every instance sharing the store. Requests expired more than
    /// [`WAITING_KEPT`] before `now` may be dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn create_waiting(
        &self,
        record: WaitingRecord,
        caps: WaitingCaps,
        now: UnixTime,
    ) -> Result<WaitingCreated, StoreError>;

    /// Takes the unexpired waiting request `id` to decide it again: marks it taken until
    /// `now` plus [`TAKE_LEASE`] and returns it so (`taken_until` set), as one step (one
    /// conditional write): of two callers taking the same request, one gets it and the
    /// other `None`, and while the lease lasts every take gets `None`. What a request is
    /// decided again from, so that one step's completion issues one token. It is never
    /// removed: every lookup still finds it, with its lease (a poll of it is told to poll
    /// again), until its taker writes what became of it ([`AsStore::put_taken`], which
    /// clears the lease); should the taker never write (its store failed, its process
    /// died), the lease runs out and the request is taken again as it was. An expired one
    /// is not taken (kept for [`AsStore::waiting_kept`]).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn take_waiting(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError>;

    /// Writes `record` (its next step, its end, or as it was) in place of the request
    /// `taken` (as [`AsStore::take_waiting`] returned it: its id and lease), not taken any
    /// more, only if the store still holds it under that lease (one conditional write):
    /// [`WaitingPut::NoLongerTaken`] otherwise (its lease ran out and it was taken again,
    /// or written meanwhile, or it is gone), and [`WaitingPut::CodeTaken`] when its
    /// interaction code is another request's, as for [`AsStore::put_waiting`]; nothing is
    /// written then. Whether it expired meanwhile does not matter.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn put_taken(
        &self,
        record: WaitingRecord,
        taken: &WaitingRecord,
    ) -> Result<WaitingPut, StoreError>;

    /// Records that the person `sub` at `resource`, signed in here as `account`, approved
    /// their Person Server `ps` here. Binding them again to the same account changes
    /// nothing; to another account is refused, as one step (the binding kept as it was).
    ///
    /// # Errors
    ///
    /// [`BindError::BoundToAnotherAccount`] when they are bound to another account;
    /// [`BindError::Store`].
    async fn bind(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<(), BindError>;

    /// Removes the binding ([`AsStore::bind`]) of the person `sub` at `resource` from
    /// `ps` if it names `account`, as one step: another account's binding, or none, is
    /// left as it is. For an approval that made the binding and then could not be saved
    /// (the request changed or ended meanwhile): no Person Server stays bound here
    /// without an approval. Whether a binding was removed.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn unbind_if(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<bool, StoreError>;

    /// The account that binding ([`AsStore::bind`]) names, if it exists.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn bound_account(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Appends `e` to the audit log (events older than
    /// the store's retention ([`AUDIT_RETENTION`](aauth_metadata::audit::AUDIT_RETENTION)
    /// unless set) before `e.at` may be
    /// dropped).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError>;

    /// The page of audit events `q` selects, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// Records a billing relationship with Person Server `ps`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn bill(&self, ps: &ServerId) -> Result<(), StoreError>;

    /// Whether Person Server `ps` is billed here.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn is_billed(&self, ps: &ServerId) -> Result<bool, StoreError>;

    /// Everything one token request looks up, in one call: the default asks the four
    /// questions one by one; a store with a round trip per call (a database) should
    /// answer them in one.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn standing(&self, q: &StandingQuery<'_>, now: UnixTime) -> Result<Standing, StoreError> {
        Ok(Standing {
            resource_token_revoked: self
                .is_revoked(q.resource.as_str(), q.resource_token_jti, now)
                .await?,
            presented_token_revoked: self.is_revoked(q.ps.as_str(), q.presented_jti, now).await?,
            bound_account: self.bound_account(q.ps, q.resource, q.sub).await?,
            billed: self.is_billed(q.ps).await?,
        })
    }
}

/// `record` as every write stores it: not taken (only a take sets a lease).
fn untaken(mut record: WaitingRecord) -> WaitingRecord {
    record.taken_until = None;
    record
}

/// Whether waiting request `w` is still kept at `now` ([`WAITING_KEPT`] past `expires`).
fn kept(w: &WaitingRecord, now: UnixTime) -> bool {
    w.expires.saturating_add(WAITING_KEPT) > now.as_secs()
}

#[derive(Debug, Default)]
struct Memory {
    audit: aauth_metadata::audit::MemoryAuditLog,
    issued: BTreeMap<String, IssuedRecord>,
    revoked: BTreeMap<(String, String), u64>,
    waiting: memory_waiting::WaitingTable,
    /// (Person Server, resource, `sub`) → the account here that approved it.
    bindings: BTreeMap<(ServerId, ServerId, String), String>,
    billed: BTreeSet<ServerId>,
}

/// An [`AsStore`] in memory (one process; lost on restart). Expired records are dropped
/// as new ones arrive (waiting requests from an index by expiry, so a write costs what it
/// drops, never a scan of them all). Its `Debug` output is its whole state (for "nothing
/// changed" assertions in tests).
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<Memory>);

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Keeps audit events for `retention` instead of
    /// [`AUDIT_RETENTION`](aauth_metadata::audit::AUDIT_RETENTION) (90 days).
    #[must_use]
    pub fn audit_retention(self, retention: std::time::Duration) -> Self {
        self.with(|m| {
            let log = std::mem::take(&mut m.audit);
            m.audit = log.retention(retention);
        });
        self
    }
}

#[async_trait]
impl AsStore for MemoryStore {
    async fn record_issued(&self, record: IssuedRecord, now: UnixTime) -> Result<(), StoreError> {
        self.with(|m| {
            // Amortized sweep: records are needed until `exp` plus the grace only.
            if m.issued.len() % 256 == 255 {
                m.issued
                    .retain(|_, r| r.exp.saturating_add(RECORD_GRACE) >= now.as_secs());
            }
            m.issued.insert(record.jti.clone(), record);
        });
        Ok(())
    }

    async fn issued_against(
        &self,
        ps: &ServerId,
        presented_jti: &str,
        now: UnixTime,
    ) -> Result<Vec<IssuedRecord>, StoreError> {
        Ok(self.with(|m| {
            m.issued
                .values()
                .filter(|r| {
                    r.ps == *ps
                        && r.presented_jti == presented_jti
                        && r.exp.saturating_add(RECORD_GRACE) >= now.as_secs()
                })
                .cloned()
                .collect()
        }))
    }

    async fn issued_record(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<IssuedRecord>, StoreError> {
        Ok(self.with(|m| {
            m.issued
                .get(jti)
                .filter(|r| r.exp.saturating_add(RECORD_GRACE) >= now.as_secs())
                .cloned()
        }))
    }

    async fn issued_count(&self) -> Result<usize, StoreError> {
        Ok(self.with(|m| m.issued.len()))
    }

    async fn revoke(
        &self,
        iss: &str,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.with(|m| {
            if m.revoked.len() % 256 == 255 {
                // Amortized: a revocation record outlives its token by the grace only.
                m.revoked
                    .retain(|_, e| e.saturating_add(RECORD_GRACE) >= now.as_secs());
            }
            // A later `exp` extends a record; an earlier one never shortens it.
            m.revoked
                .entry((iss.to_owned(), jti.to_owned()))
                .and_modify(|e| *e = (*e).max(exp))
                .or_insert(exp);
        });
        Ok(())
    }

    async fn is_revoked(&self, iss: &str, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        Ok(self.with(|m| {
            m.revoked
                .get(&(iss.to_owned(), jti.to_owned()))
                .is_some_and(|exp| now.as_secs() <= exp.saturating_add(RECORD_GRACE))
        }))
    }

    async fn put_waiting(
        &self,
        record: WaitingRecord,
        now: UnixTime,
    ) -> Result<WaitingPut, StoreError> {
        Ok(self.with(|m| {
            m.waiting.sweep(now);
            if m.waiting.code_of_another(&record) {
                return WaitingPut::CodeTaken;
            }
            m.waiting.insert(untaken(record));
            WaitingPut::Stored
        }))
    }

    async fn replace_waiting(
        &self,
        record: WaitingRecord,
        read: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|m| match m.waiting.get(&record.id) {
            Some(w)
                if w.expires > now.as_secs()
                    && !w.taken_at(now)
                    && w.data == read
                    && !m.waiting.code_of_another(&record) =>
            {
                m.waiting.insert(untaken(record));
                true
            }
            _ => false,
        }))
    }

    async fn waiting(&self, id: &str, now: UnixTime) -> Result<Option<WaitingRecord>, StoreError> {
        Ok(self.with(|m| {
            m.waiting
                .get(id)
                .filter(|w| w.expires > now.as_secs())
                .cloned()
        }))
    }

    async fn waiting_kept(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        Ok(self.with(|m| m.waiting.get(id).filter(|w| kept(w, now)).cloned()))
    }

    async fn waiting_by_code(
        &self,
        code: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        Ok(self.with(|m| {
            m.waiting
                .by_code(code)
                .filter(|w| w.expires > now.as_secs())
                .cloned()
        }))
    }

    async fn waiting_on(
        &self,
        awaiting: Awaiting,
        now: UnixTime,
    ) -> Result<Vec<WaitingRecord>, StoreError> {
        Ok(self.with(|m| {
            m.waiting
                .values()
                .filter(|w| w.awaiting == awaiting && w.expires > now.as_secs())
                .cloned()
                .collect()
        }))
    }

    async fn waiting_with(&self, iss: &str, jti: &str) -> Result<Vec<WaitingRecord>, StoreError> {
        Ok(self.with(|m| {
            m.waiting
                .values()
                .filter(|w| w.resource_token.0 == iss && w.resource_token.1 == jti)
                .cloned()
                .collect()
        }))
    }

    async fn create_waiting(
        &self,
        record: WaitingRecord,
        caps: WaitingCaps,
        now: UnixTime,
    ) -> Result<WaitingCreated, StoreError> {
        Ok(self.with(|m| {
            // What is left after the sweep is what is kept: the total's count.
            m.waiting.sweep(now);
            if m.waiting.open_of(&record.ps, now) >= caps.per_person_server {
                return WaitingCreated::PersonServerFull;
            }
            if caps.total.is_some_and(|total| m.waiting.len() >= total) {
                return WaitingCreated::Full;
            }
            let taken = m.waiting.get(&record.id).is_some()
                || record
                    .code
                    .as_deref()
                    .is_some_and(|c| m.waiting.by_code(c).is_some());
            if taken {
                return WaitingCreated::Taken;
            }
            m.waiting.insert(untaken(record));
            WaitingCreated::Created
        }))
    }

    async fn take_waiting(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        Ok(self.with(|m| {
            let w = m.waiting.get(id)?;
            if w.expires <= now.as_secs() || w.taken_at(now) {
                return None;
            }
            let mut taken = w.clone();
            taken.taken_until = Some(now.as_secs().saturating_add(TAKE_LEASE));
            m.waiting.insert(taken.clone());
            Some(taken)
        }))
    }

    async fn put_taken(
        &self,
        record: WaitingRecord,
        taken: &WaitingRecord,
    ) -> Result<WaitingPut, StoreError> {
        Ok(self.with(|m| {
            let held = m
                .waiting
                .get(&taken.id)
                .is_some_and(|w| w.taken_until.is_some() && w.taken_until == taken.taken_until);
            if !held || record.id != taken.id {
                return WaitingPut::NoLongerTaken;
            }
            if m.waiting.code_of_another(&record) {
                return WaitingPut::CodeTaken;
            }
            m.waiting.insert(untaken(record));
            WaitingPut::Stored
        }))
    }

    async fn bind(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<(), BindError> {
        use std::collections::btree_map::Entry;
        self.with(|m| {
            match m
                .bindings
                .entry((ps.clone(), resource.clone(), sub.to_owned()))
            {
                Entry::Occupied(e) if e.get() != account => Err(BindError::BoundToAnotherAccount),
                Entry::Occupied(_) => Ok(()),
                Entry::Vacant(e) => {
                    e.insert(account.to_owned());
                    Ok(())
                }
            }
        })
    }

    async fn unbind_if(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        use std::collections::btree_map::Entry;
        Ok(self.with(|m| {
            match m
                .bindings
                .entry((ps.clone(), resource.clone(), sub.to_owned()))
            {
                Entry::Occupied(e) if e.get() == account => {
                    e.remove();
                    true
                }
                _ => false,
            }
        }))
    }

    async fn bound_account(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.with(|m| {
            m.bindings
                .get(&(ps.clone(), resource.clone(), sub.to_owned()))
                .cloned()
        }))
    }

    async fn bill(&self, ps: &ServerId) -> Result<(), StoreError> {
        self.with(|m| m.billed.insert(ps.clone()));
        Ok(())
    }

    async fn is_billed(&self, ps: &ServerId) -> Result<bool, StoreError> {
        Ok(self.with(|m| m.billed.contains(ps)))
    }

    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.with(|m| m.audit.record(e));
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        Ok(self.with(|m| m.audit.query(q)))
    }
}
