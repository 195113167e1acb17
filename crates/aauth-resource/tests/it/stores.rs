//! The store contracts, run against the memory stores and the Redis stores alike: the
//! replay cache against its model, sessions, revocations, and the layer over each Redis
//! store (the held store's contract is in `held.rs`).

use std::sync::Arc;

use aauth_keys::PrivateKey;
use aauth_keys::time::UnixTime;
use aauth_resource::{
    MemoryReplayStore, MemoryRevocationList, MemorySessionStore, RecordError, RedisReplayStore,
    RedisRevocationList, RedisSessionStore, ReplayStore, ReplayStoreError, RevocationStore,
    Session, SessionStore,
};
use aauth_signing::ReplayUse;
use aauth_tokens::AgentId;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::shared::{fresh_prefix, redis};
use crate::{NOW, id};

/// A replay store whose entry count a test can read.
#[async_trait::async_trait]
trait Entries: ReplayStore {
    async fn entries(&self) -> usize;
}

#[async_trait::async_trait]
impl Entries for MemoryReplayStore {
    async fn entries(&self) -> usize {
        self.len()
    }
}

#[async_trait::async_trait]
impl Entries for RedisReplayStore {
    async fn entries(&self) -> usize {
        Self::entries(self).await.unwrap()
    }
}

/// Uses by `(signer, key, lifetime, step)`, the bound and the share.
type ReplayCase = (Vec<(u8, u8, u64, u64)>, usize, usize);

fn replay_case() -> impl Strategy<Value = ReplayCase> {
    (
        proptest::collection::vec((0u8..4, 0u8..12, 0u64..200, 0u64..40), 1..120),
        1usize..10,
        1usize..6,
    )
}

/// A replay store against a naive model: a key is admitted exactly when no live entry
/// holds it and both bounds allow, whatever the order of uses and clocks.
async fn replay_follows_the_model(
    store: &dyn Entries,
    (ops, max, share): ReplayCase,
) -> Result<(), TestCaseError> {
    let share = share.min(max);
    // key -> (until, signer)
    let mut model: Vec<([u8; 32], u64, u8)> = Vec::new();
    let mut now = 0u64;
    for (signer, key, life, step) in ops {
        now += step;
        let until = now + life;
        model.retain(|(_, u, _)| *u > now);
        let k = [key; 32];
        let name = format!("signer-{signer}");
        let got = store
            .first_use(&ReplayUse::new(&name, k, UnixTime(until)), UnixTime(now))
            .await;
        let expected = if model.iter().any(|(mk, _, _)| *mk == k) {
            Ok(false)
        } else if model.len() >= max {
            Err(ReplayStoreError::Full { live: max })
        } else if model.iter().filter(|(_, _, s)| *s == signer).count() >= share {
            Err(ReplayStoreError::SignerOverShare { share })
        } else {
            model.push((k, until, signer));
            Ok(true)
        };
        prop_assert_eq!(got, expected);
        prop_assert_eq!(store.entries().await, model.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_memory_replay_store_follows_the_model(case in replay_case()) {
        let (_, max, share) = case;
        let store = MemoryReplayStore::new(max).share(share);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(replay_follows_the_model(&store, case))?;
    }
}

#[test]
fn the_redis_replay_store_follows_the_model() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(base) = rt.block_on(redis("the_redis_replay_store_follows_the_model")) else {
        return;
    };
    TestRunner::new(Config::with_cases(32))
        .run(&replay_case(), |case| {
            let (_, max, share) = case;
            let store = RedisReplayStore::new(base.with_prefix(&fresh_prefix()))
                .max(max)
                .share(share);
            rt.block_on(replay_follows_the_model(&store, case))
        })
        .unwrap();
}

#[tokio::test]
async fn the_redis_replay_store_goes_by_the_callers_clock() {
    let Some(r) = redis("the_redis_replay_store_goes_by_the_callers_clock").await else {
        return;
    };
    crate::replay::clock_backwards(&RedisReplayStore::new(r)).await;
}

#[tokio::test]
async fn the_layer_accepts_a_signed_post_once_through_redis() {
    let Some(r) = redis("the_layer_accepts_a_signed_post_once_through_redis").await else {
        return;
    };
    crate::replay::accepted_once(Arc::new(RedisReplayStore::new(r))).await;
}

fn session(agent: &str, seed: u8, ends: UnixTime) -> Session {
    Session::new(
        AgentId::parse(agent).unwrap(),
        PrivateKey::ed25519_from_seed(&[seed; 32])
            .public_key()
            .thumbprint(),
        Some("data.read".to_owned()),
        ends,
    )
}

/// What every session store keeps: sessions found until they end, rolled with a grace
/// for the old token, bounded without ending anyone's session. `store` holds at most
/// three.
async fn session_contract(store: &dyn SessionStore) {
    let a = session("aauth:a@agent.example", 1, NOW.plus(10));
    let ta = store.issue(a.clone(), NOW).await.unwrap();
    assert_eq!(store.lookup(ta.secret(), NOW).await.unwrap(), Some(a));
    assert_eq!(store.lookup(ta.secret(), NOW.plus(10)).await.unwrap(), None);
    assert_eq!(store.lookup("never-issued", NOW).await.unwrap(), None);
    let mut unscoped = session("aauth:b@agent.example", 2, NOW.plus(100));
    unscoped.scope = None;
    let tb = store.issue(unscoped.clone(), NOW).await.unwrap();
    assert_ne!(ta.secret(), tb.secret());
    assert_eq!(
        store.lookup(tb.secret(), NOW).await.unwrap(),
        Some(unscoped)
    );
    let c = session("aauth:c@agent.example", 3, NOW.plus(100));
    let tc = store.issue(c.clone(), NOW).await.unwrap();
    // Three live sessions, the bound: a fourth is refused rather than one ended early.
    let d = session("aauth:d@agent.example", 4, NOW.plus(100));
    let e = store.issue(d.clone(), NOW).await.unwrap_err();
    assert!(e.reason.contains("bound"), "{e}");
    assert!(store.lookup(ta.secret(), NOW).await.unwrap().is_some());

    // A roll (a has ended: two live): the new token is the same session; the old one
    // works for the grace only.
    let at = NOW.plus(20);
    assert_eq!(store.roll(ta.secret(), at).await.unwrap(), None, "ended");
    assert_eq!(store.roll("never-issued", at).await.unwrap(), None);
    let rolled = store.roll(tc.secret(), at).await.unwrap().unwrap();
    assert_ne!(rolled.secret(), tc.secret());
    assert_eq!(
        store.lookup(rolled.secret(), at).await.unwrap(),
        Some(c.clone())
    );
    let grace_end = at.plus(aauth_resource::ROLL_GRACE);
    let mut in_grace = c.clone();
    in_grace.expires = grace_end;
    assert_eq!(
        store.lookup(tc.secret(), grace_end.minus(1)).await.unwrap(),
        Some(in_grace)
    );
    // The old token counts until its grace ends.
    assert!(store.issue(d.clone(), at).await.is_err());
    assert_eq!(store.lookup(tc.secret(), grace_end).await.unwrap(), None);
    assert_eq!(
        store.lookup(rolled.secret(), grace_end).await.unwrap(),
        Some(c)
    );
    let td = store.issue(d.clone(), grace_end).await.unwrap();
    assert_eq!(store.lookup(td.secret(), grace_end).await.unwrap(), Some(d));
}

#[tokio::test]
async fn the_memory_session_store_keeps_the_contract() {
    session_contract(&MemorySessionStore::new(3)).await;
}

#[tokio::test]
async fn the_redis_session_store_keeps_the_contract() {
    let Some(r) = redis("the_redis_session_store_keeps_the_contract").await else {
        return;
    };
    session_contract(&RedisSessionStore::new(r, 3)).await;
}

#[tokio::test]
async fn the_layer_issues_presents_and_rolls_redis_sessions() {
    let Some(r) = redis("the_layer_issues_presents_and_rolls_redis_sessions").await else {
        return;
    };
    let rig = crate::two_party::rig_with(Arc::new(RedisSessionStore::new(r, 100)));
    crate::two_party::issued_presented_covered_and_rolled(rig).await;
}

/// What every revocation list keeps: a record until `exp` plus the skew, idempotent,
/// bounded without forgetting a live record. `list` holds at most two, skew 60.
async fn revocation_contract<L: RevocationStore>(list: &L) {
    let ps = id("https://ps.example");
    let other = id("https://as.example");
    assert!(!list.is_revoked(&ps, "j1").await.unwrap());
    list.revoke(&ps, "j1", NOW.as_secs() + 10, NOW)
        .await
        .unwrap();
    assert!(list.is_revoked(&ps, "j1").await.unwrap());
    // Keyed by the issuer too.
    assert!(!list.is_revoked(&other, "j1").await.unwrap());
    // Again, and with a later exp: still one record.
    list.revoke(&ps, "j1", NOW.as_secs() + 10, NOW)
        .await
        .unwrap();
    list.revoke(&ps, "j1", NOW.as_secs() + 500, NOW)
        .await
        .unwrap();
    list.revoke(&other, "j1", NOW.as_secs() + 10, NOW)
        .await
        .unwrap();
    // Two live records: a third is refused, the others stay.
    assert_eq!(
        list.revoke(&ps, "j2", NOW.as_secs() + 10, NOW).await,
        Err(RecordError::Full)
    );
    assert!(list.is_revoked(&other, "j1").await.unwrap());
    // Once `other`'s record is past exp + skew it no longer counts; `ps`'s was extended.
    let later = NOW.plus(71);
    list.revoke(&ps, "j2", NOW.as_secs() + 100, later)
        .await
        .unwrap();
    assert!(list.is_revoked(&ps, "j2").await.unwrap());
    assert!(list.is_revoked(&ps, "j1").await.unwrap());
    assert_eq!(
        list.revoke(&ps, "j3", NOW.as_secs() + 100, later).await,
        Err(RecordError::Full),
        "j1 lives until exp + 500 + 60"
    );
}

#[tokio::test]
async fn the_memory_revocation_list_keeps_the_contract() {
    revocation_contract(&MemoryRevocationList::new(60, 2)).await;
}

#[tokio::test]
async fn the_redis_revocation_list_keeps_the_contract() {
    let Some(r) = redis("the_redis_revocation_list_keeps_the_contract").await else {
        return;
    };
    revocation_contract(&RedisRevocationList::new(r, 60, 2)).await;
}
