//! A store that fails when told: every call goes to the store it wraps, except the
//! next `standing` (the lookups of a token request) once armed, which fails as a
//! database that did not answer would, and the next write of an interaction code once
//! armed (or every one, while told), which finds the code another request's. Its lookups by interaction code are
//! counted, and yield first when told, as a store over the network does. The next
//! `bind` can be held once made, for what lands between an approval's binding and its
//! write of the request; the next `take_waiting` likewise, for what lands while a poll
//! holds the request it took; the next write of a taken request back (`put_taken`) can
//! fail, as a database that did not answer, or find it no longer taken (nothing
//! written), as when its lease ran out and another poll took it; the next take can find
//! the request moved on since it was read; and the auth tokens recorded issued are kept,
//! in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use aauth_access_server::{
    AsStore, Awaiting, BindError, IssuedRecord, Standing, StandingQuery, StoreError, WaitingRecord,
};
use aauth_keys::time::UnixTime;
use aauth_metadata::audit::{AuditEvent, AuditPage, AuditQuery};
use aauth_tokens::ServerId;

/// The wrapped store, whether the next `standing` fails, whether the next
/// `take_waiting` finds its request already taken, and whether the next `put_waiting` of
/// a code finds it another request's.
pub(crate) struct Flaky {
    inner: Arc<dyn AsStore>,
    fail_standing: AtomicBool,
    taken_elsewhere: AtomicBool,
    code_elsewhere: AtomicBool,
    codes_elsewhere: AtomicBool,
    slow_lookups: AtomicBool,
    lookups: AtomicUsize,
    held_bind: std::sync::Mutex<Option<BindHold>>,
    held_take: std::sync::Mutex<Option<BindHold>>,
    fail_put_taken: AtomicBool,
    fail_after_put_taken: AtomicBool,
    lose_put_taken: AtomicBool,
    moved_before_take: std::sync::Mutex<Option<String>>,
    issued: std::sync::Mutex<Vec<(String, u64)>>,
}

/// A `bind` held once made ([`Flaky::hold_next_bind`]): `bound` is told when the binding
/// is made; the call answers once `release` is told.
#[derive(Clone)]
pub(crate) struct BindHold {
    pub(crate) bound: Arc<Notify>,
    pub(crate) release: Arc<Notify>,
}

impl Flaky {
    pub(crate) fn new(inner: Arc<dyn AsStore>) -> Self {
        Self {
            inner,
            fail_standing: AtomicBool::new(false),
            taken_elsewhere: AtomicBool::new(false),
            code_elsewhere: AtomicBool::new(false),
            codes_elsewhere: AtomicBool::new(false),
            slow_lookups: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
            held_bind: std::sync::Mutex::new(None),
            held_take: std::sync::Mutex::new(None),
            fail_put_taken: AtomicBool::new(false),
            fail_after_put_taken: AtomicBool::new(false),
            lose_put_taken: AtomicBool::new(false),
            moved_before_take: std::sync::Mutex::new(None),
            issued: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The next write of a taken request back (`put_taken`) finds it no longer taken as
    /// it was (`NoLongerTaken`), nothing written, once: as when its lease ran out and
    /// another poll took it.
    pub(crate) fn lose_next_put_taken(&self) {
        self.lose_put_taken.store(true, Ordering::SeqCst);
    }

    /// Just before the next `take_waiting`, the request's `data` becomes `data` (written
    /// from a read, as another poll moving it on between a poll's read and its take
    /// would), once.
    pub(crate) fn move_before_next_take(&self, data: String) {
        *self
            .moved_before_take
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(data);
    }

    /// The `(jti, exp)` of every auth token recorded issued through this store, in order.
    pub(crate) fn issued(&self) -> Vec<(String, u64)> {
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The next `bind`, once the binding is made in the wrapped store, tells the hold's
    /// `bound` and answers only when its `release` is told: what lands meanwhile lands
    /// between an approval's binding and its write of the request, once.
    pub(crate) fn hold_next_bind(&self) -> BindHold {
        let hold = BindHold {
            bound: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        };
        *self
            .held_bind
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hold.clone());
        hold
    }

    /// The next `take_waiting`, once made in the wrapped store, tells the hold's `bound`
    /// and answers only when its `release` is told: what lands meanwhile lands while a
    /// poll holds the request it took, once.
    pub(crate) fn hold_next_take(&self) -> BindHold {
        let hold = BindHold {
            bound: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        };
        *self
            .held_take
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hold.clone());
        hold
    }

    /// The next write of a taken request back (`put_taken`: its next step, its end, or
    /// as it was) fails (transient: `503`), nothing written, once.
    pub(crate) fn fail_next_put_taken(&self) {
        self.fail_put_taken.store(true, Ordering::SeqCst);
    }

    /// The next write of a taken request back is written, and then answered with a
    /// failure (a connection lost after its `COMMIT`), once.
    pub(crate) fn fail_after_next_put_taken(&self) {
        self.fail_after_put_taken.store(true, Ordering::SeqCst);
    }

    /// From now on, a lookup by code yields to the runtime first (requests in flight at
    /// once then interleave at their lookups); the count of lookups starts again.
    pub(crate) fn slow_lookups(&self) {
        self.lookups.store(0, Ordering::SeqCst);
        self.slow_lookups.store(true, Ordering::SeqCst);
    }

    /// The lookups by code since [`Flaky::slow_lookups`] (or since it was made).
    pub(crate) fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    /// The next `take_waiting` finds nothing, as when another poll of the request took
    /// it a moment before (it stays in the wrapped store), once.
    pub(crate) fn take_next_elsewhere(&self) {
        self.taken_elsewhere.store(true, Ordering::SeqCst);
    }

    /// The next `put_waiting` of a record with an interaction code finds the code
    /// another request's, as when the record that held it was dropped meanwhile and the
    /// code drawn again for a new request (nothing is written), once.
    pub(crate) fn code_next_elsewhere(&self) {
        self.code_elsewhere.store(true, Ordering::SeqCst);
    }

    /// While `on`, every `put_waiting` of a record with an interaction code finds the code
    /// another request's (nothing is written), as a random source that repeats itself
    /// makes it.
    pub(crate) fn codes_elsewhere(&self, on: bool) {
        self.codes_elsewhere.store(on, Ordering::SeqCst);
    }

    /// The next `standing` fails (transient: `503`), once.
    pub(crate) fn fail_next_standing(&self) {
        self.fail_standing.store(true, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl AsStore for Flaky {
    async fn record_issued(&self, record: IssuedRecord, now: UnixTime) -> Result<(), StoreError> {
        self.inner.record_issued(record, now).await
    }

    async fn record_issuance(
        &self,
        record: IssuedRecord,
        event: AuditEvent,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((record.jti.clone(), record.exp));
        self.inner.record_issuance(record, event, now).await
    }

    async fn issued_against(
        &self,
        ps: &ServerId,
        presented_jti: &str,
        now: UnixTime,
    ) -> Result<Vec<IssuedRecord>, StoreError> {
        self.inner.issued_against(ps, presented_jti, now).await
    }

    async fn issued_record(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<IssuedRecord>, StoreError> {
        self.inner.issued_record(jti, now).await
    }

    async fn issued_count(&self) -> Result<usize, StoreError> {
        self.inner.issued_count().await
    }

    async fn revoke(
        &self,
        iss: &str,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.inner.revoke(iss, jti, exp, now).await
    }

    async fn is_revoked(&self, iss: &str, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        self.inner.is_revoked(iss, jti, now).await
    }

    async fn put_waiting(
        &self,
        record: WaitingRecord,
        now: UnixTime,
    ) -> Result<aauth_access_server::WaitingPut, StoreError> {
        if record.code.is_some()
            && (self.codes_elsewhere.load(Ordering::SeqCst)
                || self.code_elsewhere.swap(false, Ordering::SeqCst))
        {
            return Ok(aauth_access_server::WaitingPut::CodeTaken);
        }
        self.inner.put_waiting(record, now).await
    }

    async fn replace_waiting(
        &self,
        record: WaitingRecord,
        read: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner.replace_waiting(record, read, now).await
    }

    async fn waiting(&self, id: &str, now: UnixTime) -> Result<Option<WaitingRecord>, StoreError> {
        self.inner.waiting(id, now).await
    }

    async fn waiting_kept(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        self.inner.waiting_kept(id, now).await
    }

    async fn waiting_by_code(
        &self,
        code: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.slow_lookups.load(Ordering::SeqCst) {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
        self.inner.waiting_by_code(code, now).await
    }

    async fn waiting_on(
        &self,
        awaiting: Awaiting,
        now: UnixTime,
    ) -> Result<Vec<WaitingRecord>, StoreError> {
        self.inner.waiting_on(awaiting, now).await
    }

    async fn waiting_with(&self, iss: &str, jti: &str) -> Result<Vec<WaitingRecord>, StoreError> {
        self.inner.waiting_with(iss, jti).await
    }

    async fn create_waiting(
        &self,
        record: WaitingRecord,
        caps: aauth_access_server::WaitingCaps,
        now: UnixTime,
    ) -> Result<aauth_access_server::WaitingCreated, StoreError> {
        self.inner.create_waiting(record, caps, now).await
    }

    async fn take_waiting(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        if self.taken_elsewhere.swap(false, Ordering::SeqCst) {
            return Ok(None);
        }
        let moved = self
            .moved_before_take
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(data) = moved
            && let Some(read) = self.inner.waiting(id, now).await?
        {
            let mut next = read.clone();
            next.data = data;
            assert!(self.inner.replace_waiting(next, &read.data, now).await?);
        }
        let taken = self.inner.take_waiting(id, now).await;
        let held = self
            .held_take
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(hold) = held {
            hold.bound.notify_one();
            hold.release.notified().await;
        }
        taken
    }

    async fn put_taken(
        &self,
        record: WaitingRecord,
        taken: &WaitingRecord,
    ) -> Result<aauth_access_server::WaitingPut, StoreError> {
        if self.fail_put_taken.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend("flaky", "the database did not answer"));
        }
        if self.lose_put_taken.swap(false, Ordering::SeqCst) {
            return Ok(aauth_access_server::WaitingPut::NoLongerTaken);
        }
        if record.code.is_some()
            && (self.codes_elsewhere.load(Ordering::SeqCst)
                || self.code_elsewhere.swap(false, Ordering::SeqCst))
        {
            return Ok(aauth_access_server::WaitingPut::CodeTaken);
        }
        let put = self.inner.put_taken(record, taken).await;
        if self.fail_after_put_taken.swap(false, Ordering::SeqCst) {
            let _written = put?;
            return Err(StoreError::backend("flaky", "the connection was lost"));
        }
        put
    }

    async fn bind(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<(), BindError> {
        let bound = self.inner.bind(ps, resource, sub, account).await;
        let held = self
            .held_bind
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(hold) = held {
            hold.bound.notify_one();
            hold.release.notified().await;
        }
        bound
    }

    async fn unbind_if(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        self.inner.unbind_if(ps, resource, sub, account).await
    }

    async fn bound_account(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.bound_account(ps, resource, sub).await
    }

    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.inner.record_event(e).await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.audit(q).await
    }

    async fn bill(&self, ps: &ServerId) -> Result<(), StoreError> {
        self.inner.bill(ps).await
    }

    async fn is_billed(&self, ps: &ServerId) -> Result<bool, StoreError> {
        self.inner.is_billed(ps).await
    }

    async fn standing(&self, q: &StandingQuery<'_>, now: UnixTime) -> Result<Standing, StoreError> {
        if self.fail_standing.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend("flaky", "the database did not answer"));
        }
        self.inner.standing(q, now).await
    }
}
