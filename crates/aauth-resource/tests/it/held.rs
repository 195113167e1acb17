//! The held-request stores on their own, memory and Redis alike: expiry, the byte budget
//! and the quotas, against a model, for any sizes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::Redis;
use aauth_metadata::store::redis::client::Cmd;
use aauth_resource::{
    Cancel, Claim, Held, HeldState, HeldStore, HoldError, MemoryHeldStore, Presenter,
    RedisHeldStore, StoredResponse,
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::NOW;
use crate::shared::redis;

/// A held store whose record count and bytes a test can read.
#[async_trait::async_trait]
pub(crate) trait Counted: HeldStore {
    /// Records kept (expired ones until a call sweeps them).
    async fn len(&self) -> usize;
    /// Bytes kept, as the budget counts them.
    async fn bytes(&self) -> usize;
    /// Whether nothing is kept.
    async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[async_trait::async_trait]
impl Counted for MemoryHeldStore {
    async fn len(&self) -> usize {
        Self::len(self)
    }
    async fn bytes(&self) -> usize {
        Self::bytes(self)
    }
}

#[async_trait::async_trait]
impl Counted for RedisHeldStore {
    async fn len(&self) -> usize {
        self.records().await.unwrap()
    }
    async fn bytes(&self) -> usize {
        Self::bytes(self).await.unwrap()
    }
}

/// Runs `contract` against a memory store and a Redis store made by `configure` from
/// the memory and the Redis bases (the Redis one skipped, loudly, without a Redis).
macro_rules! both_stores {
    ($contract:ident, $memory:ident, $redis:ident, $make:expr) => {
        #[tokio::test]
        async fn $memory() {
            let (m, _) = $make;
            $contract(&m(MemoryHeldStore::new)).await;
        }

        #[tokio::test]
        async fn $redis() {
            let Some(r) = redis(stringify!($redis)).await else {
                return;
            };
            let (_, make) = $make;
            $contract(&make(r)).await;
        }
    };
}

fn held(body: usize, fields: usize, jkt: &str, sub: &str, expires: UnixTime) -> Held {
    let mut req = http::Request::post("/doc");
    for i in 0..fields {
        req = req.header(format!("x-field-{i}"), "v".repeat(i % 50));
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    Held::new(
        parts,
        Bytes::from(vec![b'x'; body]),
        jkt,
        "https://ps.example",
        sub,
        expires,
    )
}

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

both_stores!(
    expired_holds_are_swept_and_their_bytes_and_slots_return,
    expired_holds_are_swept_in_memory,
    expired_holds_are_swept_in_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(3).quota(2),
        |r: Redis| RedisHeldStore::new(r, 3).quota(2)
    )
);

async fn expired_holds_are_swept_and_their_bytes_and_slots_return(store: &dyn Counted) {
    for (i, ttl) in [(0, 10), (1, 20), (2, 30)] {
        let h = held(1000, 2, &format!("k{i}"), "p", NOW.plus(ttl));
        // Two for person p, then the third is over its quota.
        let r = store.hold(&format!("id{i}"), h, NOW).await;
        if i < 2 {
            r.unwrap();
        } else {
            assert_eq!(
                r.unwrap_err(),
                HoldError::QuotaExceeded {
                    presenter: Presenter::Person,
                    quota: 2,
                    retry_after: 10
                }
            );
        }
    }
    let full = store.bytes().await;
    assert!(full > 2000, "{full}");
    // At the first hold's expiry it is gone (any operation sweeps), and so are its bytes
    // and its quota slot.
    assert!(store.get("id0", NOW.plus(10)).await.unwrap().is_none());
    assert_eq!(store.len().await, 1);
    let bytes = store.bytes().await;
    assert!(bytes < full && bytes > 1000, "{bytes}");
    store
        .hold("id3", held(10, 0, "k3", "p", NOW.plus(100)), NOW.plus(10))
        .await
        .unwrap();
    // A hold sweeps by itself: at id1's expiry a new hold of p fits its quota of two
    // only because id1 is gone.
    store
        .hold("id4", held(10, 0, "k4", "p", NOW.plus(100)), NOW.plus(20))
        .await
        .unwrap();
    assert_eq!(store.len().await, 2);
    // Past every expiry the store is empty.
    assert!(store.get("id3", NOW.plus(100)).await.unwrap().is_none());
    assert!(store.is_empty().await);
    assert_eq!(store.bytes().await, 0);
}

both_stores!(
    a_settled_hold_keeps_its_owner_and_result_not_its_request,
    a_settled_hold_in_memory,
    a_settled_hold_in_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(10_000),
        |r: Redis| RedisHeldStore::new(r, 10_000)
    )
);

async fn a_settled_hold_keeps_its_owner_and_result_not_its_request(store: &dyn Counted) {
    store
        .hold("a", held(10_000, 3, "k", "p", NOW.plus(600)), NOW)
        .await
        .unwrap();
    let before = store.bytes().await;
    assert!(matches!(
        store
            .claim("a", "jti-1", NOW.plus(3600), NOW)
            .await
            .unwrap(),
        Claim::Run
    ));
    let result = StoredResponse::new(StatusCode::CREATED, HeaderMap::new(), Bytes::from("ok"));
    store
        .finish("a", "jti-1", result, NOW.plus(3600))
        .await
        .unwrap();
    // The request's body and fields are dropped; the result is counted instead.
    let after = store.bytes().await;
    assert!(after < before - 10_000 + 100, "{after}");
    let (h, state) = store.get("a", NOW.plus(1000)).await.unwrap().unwrap();
    assert!(h.body.is_empty());
    assert!(h.headers.is_empty());
    assert_eq!((h.jkt.as_str(), h.sub.as_str()), ("k", "p"));
    assert!(matches!(state, HeldState::Done { .. }));
    // Kept until the auth token's expiry, then swept, leaving only a tombstone.
    let (h, state) = store.get("a", NOW.plus(3600)).await.unwrap().unwrap();
    assert!(matches!(state, HeldState::Gone), "{state:?}");
    assert_eq!(h.jkt, "k");
    assert!(store.is_empty().await);
    assert_eq!(store.bytes().await, 0);
}

both_stores!(
    a_run_is_settled_by_its_claimant_and_never_released,
    a_run_is_settled_in_memory,
    a_run_is_settled_in_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(100),
        |r: Redis| RedisHeldStore::new(r, 100)
    )
);

/// The state of `id` once it is no longer running: an abandoned run is settled by a write
/// the store may make in the background (Redis: a task of its own).
async fn once_settled(store: &dyn Counted, id: &str) -> HeldState {
    for _ in 0..200 {
        let (_, state) = store.get(id, NOW).await.unwrap().unwrap();
        if !matches!(state, HeldState::Running { .. }) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} is still running");
}

fn answer(status: StatusCode, body: &'static str) -> StoredResponse {
    StoredResponse::new(
        status,
        HeaderMap::new(),
        Bytes::from_static(body.as_bytes()),
    )
}

/// Once claimed, a hold is settled, never released to run again: an abandoned run (its
/// poll dropped) is settled with what the poll leaves, by its own claimant only, and
/// never over a result already kept.
async fn a_run_is_settled_by_its_claimant_and_never_released(store: &dyn Counted) {
    for id in ["a", "b"] {
        store
            .hold(id, held(10, 1, "k", "p", NOW.plus(600)), NOW)
            .await
            .unwrap();
        assert!(matches!(
            store.claim(id, "jti-1", NOW.plus(3600), NOW).await.unwrap(),
            Claim::Run
        ));
    }
    // Another token's abandon does nothing; the claimant's settles it.
    let lost = answer(StatusCode::INTERNAL_SERVER_ERROR, "lost");
    store.abandon(
        "a",
        "jti-2",
        answer(StatusCode::OK, "not mine"),
        NOW.plus(3600),
    );
    store.abandon("a", "jti-1", lost, NOW.plus(3600));
    let HeldState::Done { jti, response } = once_settled(store, "a").await else {
        panic!("not done");
    };
    assert_eq!(
        (jti.as_str(), response.status, &response.body[..]),
        ("jti-1", StatusCode::INTERNAL_SERVER_ERROR, &b"lost"[..])
    );
    // Settled: no poll runs it again, whatever its token.
    for jti in ["jti-1", "jti-2"] {
        assert!(matches!(
            store.claim("a", jti, NOW.plus(3600), NOW).await.unwrap(),
            Claim::Settled(HeldState::Done { .. })
        ));
    }
    // A result kept is never replaced by a late abandon.
    store
        .finish(
            "b",
            "jti-1",
            answer(StatusCode::CREATED, "kept"),
            NOW.plus(3600),
        )
        .await
        .unwrap();
    store.abandon(
        "b",
        "jti-1",
        answer(StatusCode::INTERNAL_SERVER_ERROR, "late"),
        NOW.plus(3600),
    );
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let HeldState::Done { response, .. } = once_settled(store, "b").await else {
        panic!("not done");
    };
    assert_eq!(
        (response.status, &response.body[..]),
        (StatusCode::CREATED, &b"kept"[..])
    );
}

both_stores!(
    a_hold_keeps_the_prefix_it_was_held_under,
    a_hold_keeps_its_prefix_in_memory,
    a_hold_keeps_its_prefix_in_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(100),
        |r: Redis| RedisHeldStore::new(r, 100)
    )
);

/// The pending prefix a hold was held under is what it reads back with, open and
/// settled (the layer polls it only through that prefix); a hold bound to none has none.
async fn a_hold_keeps_the_prefix_it_was_held_under(store: &dyn Counted) {
    let bound = held(10, 1, "k", "p", NOW.plus(600)).under("/admin/pending/");
    assert_eq!(
        bound.size(),
        held(10, 1, "k", "p", NOW.plus(600)).size() + "/admin/pending/".len()
    );
    store.hold("a", bound, NOW).await.unwrap();
    store
        .hold("b", held(10, 1, "k", "q", NOW.plus(600)), NOW)
        .await
        .unwrap();
    let (h, _) = store.get("a", NOW).await.unwrap().unwrap();
    assert_eq!(h.prefix, "/admin/pending/");
    let (h, _) = store.get("b", NOW).await.unwrap().unwrap();
    assert_eq!(h.prefix, "");
    assert!(matches!(
        store
            .claim("a", "jti-1", NOW.plus(3600), NOW)
            .await
            .unwrap(),
        Claim::Run
    ));
    store
        .finish("a", "jti-1", answer(StatusCode::OK, "ok"), NOW.plus(3600))
        .await
        .unwrap();
    let (h, state) = store.get("a", NOW).await.unwrap().unwrap();
    assert!(matches!(state, HeldState::Done { .. }));
    assert_eq!(h.prefix, "/admin/pending/");
}

both_stores!(
    a_record_count_still_bounds_the_store,
    a_record_count_bounds_memory,
    a_record_count_bounds_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(2),
        |r: Redis| RedisHeldStore::new(r, 2)
    )
);

async fn a_record_count_still_bounds_the_store(store: &dyn Counted) {
    for i in 0..2 {
        store
            .hold(
                &format!("{i}"),
                held(0, 0, &format!("k{i}"), &format!("p{i}"), NOW.plus(9)),
                NOW,
            )
            .await
            .unwrap();
    }
    let e = store
        .hold("2", held(0, 0, "k2", "p2", NOW.plus(9)), NOW)
        .await
        .unwrap_err();
    assert_eq!(e, HoldError::Full { max: 2 });
    assert_eq!(
        (e.status(), e.retry_after()),
        (StatusCode::SERVICE_UNAVAILABLE, 1)
    );
    // A pending hold is never evicted to make room.
    assert!(store.get("0", NOW).await.unwrap().is_some());
}

both_stores!(
    settled_records_leave_bounded_tombstones,
    tombstones_in_memory,
    tombstones_in_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(100).tombstones(2, Duration::from_secs(1000)),
        |r: Redis| RedisHeldStore::new(r, 100).tombstones(2, Duration::from_secs(1000))
    )
);

/// Draft -11 §Pending URL Security (`410` once ended): a record that was not pending
/// when its time ran out (done, cancelled, or claimed to run) reads back as
/// [`HeldState::Gone`] with its owner, for the tombstone time past its end and within the
/// tombstone count (the one ending first goes); a pending one that expired leaves
/// nothing. Cancelling a settled record leaves it as it is.
async fn settled_records_leave_bounded_tombstones(store: &dyn Counted) {
    for id in ["p", "d", "c", "r", "d2"] {
        let h = held(10, 1, "k", id, NOW.plus(50)).under("/x/");
        store.hold(id, h, NOW).await.unwrap();
    }
    for (id, keep) in [("d", 100), ("d2", 200)] {
        assert!(matches!(
            store.claim(id, "jti-1", NOW.plus(keep), NOW).await.unwrap(),
            Claim::Run
        ));
        store
            .finish(
                id,
                "jti-1",
                answer(StatusCode::CREATED, "ran"),
                NOW.plus(keep),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.cancel("c", NOW).await.unwrap(), Cancel::Cancelled);
    // Its result would be kept until +55: still running then, it is swept, leaving a
    // tombstone.
    assert!(matches!(
        store.claim("r", "jti-1", NOW.plus(55), NOW).await.unwrap(),
        Claim::Run
    ));
    // A cancel does not touch a result kept (it would drop the replay).
    assert_eq!(store.cancel("d", NOW).await.unwrap(), Cancel::Ended);
    let (_, state) = store.get("d", NOW).await.unwrap().unwrap();
    assert!(matches!(state, HeldState::Done { .. }), "{state:?}");

    let gone = |found: Option<(Held, HeldState)>| match found {
        Some((h, HeldState::Gone)) => (h.jkt == "k" && h.prefix == "/x/") || panic!("{h:?}"),
        Some((_, state)) => panic!("{state:?}"),
        None => false,
    };
    // Past the holds' time (and r's result's): the pending one leaves nothing, the
    // cancelled and the running ones a tombstone; the results are still kept.
    let t = NOW.plus(60);
    assert!(store.get("p", t).await.unwrap().is_none());
    assert!(gone(store.get("c", t).await.unwrap()));
    assert!(gone(store.get("r", t).await.unwrap()));
    assert_eq!(store.len().await, 2);
    // Past d's result: its tombstone is the third, and the first to end (c) goes.
    let t = NOW.plus(150);
    assert!(gone(store.get("d", t).await.unwrap()));
    assert!(!gone(store.get("c", t).await.unwrap()));
    assert!(gone(store.get("r", t).await.unwrap()));
    // Each for the tombstone time past its record's end.
    let t = NOW.plus(1100);
    assert!(!gone(store.get("r", t).await.unwrap()));
    assert!(!gone(store.get("d", t).await.unwrap()));
    assert!(gone(store.get("d2", t).await.unwrap()));
    assert!(!gone(store.get("d2", NOW.plus(1200)).await.unwrap()));
    // Tombstones are not records: neither counted nor in the budget.
    assert!(store.is_empty().await);
    assert_eq!(store.bytes().await, 0);
}

both_stores!(
    a_running_call_outlives_its_hold,
    a_running_call_outlives_its_hold_in_memory,
    a_running_call_outlives_its_hold_in_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(100).quota(1),
        |r: Redis| RedisHeldStore::new(r, 100).quota(1)
    )
);

/// A call claimed before its hold expires is kept while it runs, past the hold's time,
/// until its result would go (the claim's `keep_until`, the auth token's `exp`): neither
/// swept nor buried at the hold's expiry, still open in its presenters' quotas, left
/// running by a cancel, and its result, however late, kept and read back. A claim never
/// shortens a record.
async fn a_running_call_outlives_its_hold(store: &dyn Counted) {
    store
        .hold("a", held(10, 1, "k", "p", NOW.plus(10)), NOW)
        .await
        .unwrap();
    assert!(matches!(
        store.claim("a", "jti-1", NOW.plus(100), NOW).await.unwrap(),
        Claim::Run
    ));
    let t = NOW.plus(50);
    let (_, state) = store.get("a", t).await.unwrap().unwrap();
    assert!(
        matches!(&state, HeldState::Running { jti } if jti == "jti-1"),
        "{state:?}"
    );
    assert_eq!(store.len().await, 1);
    // Open until settled: the person's quota of one is taken until its result would go.
    let b = || held(10, 1, "k2", "p", NOW.plus(200));
    assert_eq!(
        store.hold("b", b(), t).await.unwrap_err(),
        HoldError::QuotaExceeded {
            presenter: Presenter::Person,
            quota: 1,
            retry_after: 50
        }
    );
    assert_eq!(store.cancel("a", t).await.unwrap(), Cancel::Running);
    // Its result, come past the hold's time, is kept and read back until it goes.
    store
        .finish(
            "a",
            "jti-1",
            answer(StatusCode::CREATED, "late"),
            NOW.plus(100),
        )
        .await
        .unwrap();
    let (_, state) = store.get("a", NOW.plus(99)).await.unwrap().unwrap();
    let HeldState::Done { jti, response } = state else {
        panic!("{state:?}");
    };
    assert_eq!(
        (jti.as_str(), response.status, &response.body[..]),
        ("jti-1", StatusCode::CREATED, &b"late"[..])
    );
    store.hold("b", b(), NOW.plus(99)).await.unwrap();
    let (_, state) = store.get("a", NOW.plus(100)).await.unwrap().unwrap();
    assert!(matches!(state, HeldState::Gone), "{state:?}");
    // A claim whose result would go before its hold expires leaves the hold's time.
    store
        .hold("c", held(10, 1, "k3", "q", NOW.plus(300)), NOW.plus(100))
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim("c", "jti-2", NOW.plus(150), NOW.plus(100))
            .await
            .unwrap(),
        Claim::Run
    ));
    let (_, state) = store.get("c", NOW.plus(299)).await.unwrap().unwrap();
    assert!(matches!(state, HeldState::Running { .. }), "{state:?}");
}

/// Redis keeps a claimed record's keys (Redis's own expiry, on its clock) until its
/// result would go, not only for its hold's time: else a call outlasting its hold would
/// find its record dropped by Redis, whatever the callers' clocks say.
#[tokio::test]
async fn a_redis_running_call_keeps_its_keys_until_its_result_would_go() {
    let Some(r) = redis("a_redis_running_call_keeps_its_keys_until_its_result_would_go").await
    else {
        return;
    };
    let store = RedisHeldStore::new(r.clone(), 100);
    store
        .hold("a", held(10, 1, "k", "p", NOW.plus(10)), NOW)
        .await
        .unwrap();
    let pttl = async |key: String| -> i64 { r.query("test", &Cmd::pttl(&key)).await.unwrap() };
    let person = r.key(&[
        "held",
        "p",
        &aauth_keys::digest::s256(b"https://ps.example\0p"),
    ]);
    let agent_key = r.key(&["held", "k", &aauth_keys::digest::s256(b"k")]);
    let parts = ["exp", "meta", "req", "state", "size", "bare", "quota"];
    let mut keys: Vec<String> = parts.iter().map(|p| r.key(&["held", p])).collect();
    keys.extend([person, agent_key]);
    for key in &keys {
        let ms = pttl(key.clone()).await;
        assert!((1..=15_000).contains(&ms), "{key}: {ms}");
    }
    assert!(matches!(
        store
            .claim("a", "jti-1", NOW.plus(3000), NOW)
            .await
            .unwrap(),
        Claim::Run
    ));
    for key in &keys {
        let ms = pttl(key.clone()).await;
        assert!(ms > 2_990_000, "{key}: {ms}");
    }
}

/// One step of a client of the store.
#[derive(Debug, Clone)]
enum Op {
    Hold {
        body: usize,
        fields: usize,
        key: u8,
        sub: u8,
        ttl: u64,
    },
    Cancel(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            prop_oneof![0..2_000usize, 0..300_000usize],
            0..40usize,
            0..4u8,
            0..4u8,
            0..1_000u64
        )
            .prop_map(|(body, fields, key, sub, ttl)| Op::Hold {
                body,
                fields,
                key,
                sub,
                ttl
            }),
        1 => (0..64usize).prop_map(Op::Cancel),
        2 => (0..400u64).prop_map(Op::Advance),
    ]
}

/// What the model remembers of a record.
struct Rec {
    id: String,
    key: u8,
    sub: u8,
    until: UnixTime,
    open: bool,
    size: usize,
}

/// The sizes a model run is made of.
fn model_case() -> impl Strategy<Value = (usize, usize, usize, Vec<Op>)> {
    (
        prop_oneof![0..8usize, Just(usize::MAX)],
        prop_oneof![0..1_000_000usize, Just(usize::MAX)],
        prop_oneof![0..5usize, Just(usize::MAX)],
        proptest::collection::vec(op(), 1..40),
    )
}

/// Whatever arrives, the store answers as the model says, never holds more than its
/// count, budget or quotas allow, and never panics.
async fn follow_the_model(
    store: &dyn Counted,
    (max, budget, quota, ops): (usize, usize, usize, Vec<Op>),
) -> Result<(), TestCaseError> {
    let mut model: Vec<Rec> = Vec::new();
    let mut now = NOW;
    let mut ids = 0usize;
    for op in ops {
        // Every operation sweeps what has expired at its `now`.
        model.retain(|r| r.until > now);
        match op {
            Op::Hold {
                body,
                fields,
                key,
                sub,
                ttl,
            } => {
                let h = held(
                    body,
                    fields,
                    &format!("k{key}"),
                    &format!("p{sub}"),
                    now.plus(ttl),
                );
                let size = h.size();
                let id = format!("id{ids}");
                ids += 1;
                let open =
                    |f: &dyn Fn(&Rec) -> bool| model.iter().filter(|r| r.open && f(r)).count();
                let expected = if open(&|r| r.sub == sub) >= quota {
                    Some(Presenter::Person)
                } else if open(&|r| r.key == key) >= quota {
                    Some(Presenter::AgentKey)
                } else {
                    None
                };
                let used: usize = model.iter().map(|r| r.size).sum();
                match (expected, store.hold(&id, h.clone(), now).await) {
                    (
                        Some(p),
                        Err(HoldError::QuotaExceeded {
                            presenter,
                            retry_after,
                            ..
                        }),
                    ) => {
                        prop_assert_eq!(p, presenter);
                        prop_assert!((1..=1_000).contains(&retry_after));
                    }
                    (None, Err(HoldError::Full { .. })) => prop_assert!(model.len() >= max),
                    (None, Err(HoldError::OverBudget { .. })) => {
                        prop_assert!(model.len() < max);
                        prop_assert!(used.saturating_add(size) > budget);
                    }
                    (None, Ok(())) => {
                        prop_assert!(model.len() < max);
                        prop_assert!(used + size <= budget);
                        model.push(Rec {
                            id,
                            key,
                            sub,
                            until: now.plus(ttl),
                            open: true,
                            size,
                        });
                    }
                    (e, r) => prop_assert!(false, "expected {e:?}, got {r:?}"),
                }
            }
            Op::Cancel(i) => {
                if i >= model.len() {
                    prop_assert_eq!(store.cancel("none", now).await.unwrap(), Cancel::Missing);
                }
                if let Some(r) = model.get_mut(i) {
                    // Nothing is claimed here: an open record is pending.
                    let expected = if r.open {
                        Cancel::Cancelled
                    } else {
                        Cancel::Ended
                    };
                    prop_assert_eq!(store.cancel(&r.id, now).await.unwrap(), expected);
                    if r.open {
                        r.open = false;
                        let mut stripped = held(
                            0,
                            0,
                            &format!("k{}", r.key),
                            &format!("p{}", r.sub),
                            r.until,
                        );
                        stripped.headers.clear();
                        r.size = stripped.size();
                    }
                }
            }
            // Time passes with no call: the next operation must sweep by itself.
            Op::Advance(secs) => {
                now = now.plus(secs);
                continue;
            }
        }
        let (len, bytes) = (store.len().await, store.bytes().await);
        prop_assert_eq!(len, model.len());
        prop_assert_eq!(bytes, model.iter().map(|r| r.size).sum::<usize>());
        prop_assert!(bytes <= budget);
        prop_assert!(len <= max);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_memory_store_follows_the_model_for_any_sizes(case in model_case()) {
        let (max, budget, quota, _) = case;
        let store = Arc::new(MemoryHeldStore::new(max).byte_budget(budget).quota(quota));
        block(follow_the_model(store.as_ref(), case))?;
    }
}

/// The same model against Redis: each case in a store of its own (a fresh key prefix)
/// on one connection.
#[test]
fn the_redis_store_follows_the_model_for_any_sizes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(base) = rt.block_on(redis("the_redis_store_follows_the_model_for_any_sizes")) else {
        return;
    };
    let mut runner = TestRunner::new(Config::with_cases(32));
    runner
        .run(&model_case(), |case| {
            let (max, budget, quota, _) = case;
            let store = RedisHeldStore::new(base.with_prefix(&crate::shared::fresh_prefix()), max)
                .byte_budget(budget)
                .quota(quota);
            rt.block_on(follow_the_model(&store, case))
        })
        .unwrap();
}

both_stores!(
    a_cancel_sweeps_its_own_record_first,
    a_cancel_sweeps_its_own_record_first_in_memory,
    a_cancel_sweeps_its_own_record_first_in_redis,
    (
        |m: fn(usize) -> MemoryHeldStore| m(400).tombstones(400, Duration::from_secs(1000)),
        |r: Redis| RedisHeldStore::new(r, 400).tombstones(400, Duration::from_secs(1000))
    )
);

/// A cancel of a record whose time ran out while it ran, among more expired records than
/// one sweep reaches (Redis sweeps 256 a call, the oldest first): the record is swept
/// first and its tombstone answers, `Ended` (`410`) in both stores, never `Missing`.
async fn a_cancel_sweeps_its_own_record_first(store: &dyn Counted) {
    for i in 0..300 {
        let (jkt, sub) = (format!("k{i}"), format!("s{i}"));
        let h = held(10, 1, &jkt, &sub, NOW.plus(10));
        store.hold(&format!("f{i}"), h, NOW).await.unwrap();
    }
    store
        .hold("z", held(10, 1, "kz", "sz", NOW.plus(20)), NOW)
        .await
        .unwrap();
    assert!(matches!(
        store.claim("z", "jti-1", NOW.plus(20), NOW).await.unwrap(),
        Claim::Run
    ));
    assert_eq!(
        store.cancel("z", NOW.plus(30)).await.unwrap(),
        Cancel::Ended
    );
}
