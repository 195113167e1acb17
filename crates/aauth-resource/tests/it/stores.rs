//! The store contracts, run against the memory stores and the Redis stores alike: the
//! replay cache against its model, sessions, revocations, and the layer over each Redis
//! store (the held store's contract is in `held.rs`).

use std::sync::Arc;

use aauth_keys::PrivateKey;
use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::client::Cmd;
use aauth_resource::{
    MemoryReplayStore, MemoryRevocationList, MemorySessionStore, RecordError,
    RedisReplayAndRevocations, RedisReplayStore, RedisRevocationList, RedisSessionStore,
    ReplayStore, ReplayStoreError, RevocationStore, Session, SessionStore, Wrapped,
};
use aauth_signing::{FirstUse, ReplayUse, RevocationReplayStore};
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

/// Uses by `(signer, key, lifetime, step)`, the bound, the share and the issuer's share
/// (signer `n` is vouched for by issuer `n % 2`).
type ReplayCase = (Vec<(u8, u8, u64, u64)>, usize, usize, usize);

fn replay_case() -> impl Strategy<Value = ReplayCase> {
    (
        proptest::collection::vec((0u8..4, 0u8..12, 0u64..200, 0u64..40), 1..120),
        1usize..10,
        1usize..6,
        1usize..8,
    )
}

/// A replay store against a naive model: a key is admitted exactly when no live entry
/// holds it and every bound allows, whatever the order of uses and clocks.
async fn replay_follows_the_model(
    store: &dyn Entries,
    (ops, max, share, issuer_share): ReplayCase,
) -> Result<(), TestCaseError> {
    let share = share.min(max);
    let issuer_share = issuer_share.min(max);
    // key -> (until, signer)
    let mut model: Vec<([u8; 32], u64, u8)> = Vec::new();
    let mut now = 0u64;
    for (signer, key, life, step) in ops {
        now += step;
        let until = now + life;
        model.retain(|(_, u, _)| *u > now);
        let k = [key; 32];
        let name = format!("signer-{signer}");
        let issuer = format!("https://issuer-{}.example", signer % 2);
        let entry = ReplayUse::new(&name, k, UnixTime(until)).issuer(&issuer);
        let got = store.first_use(&entry, UnixTime(now)).await;
        let expected = if model.iter().any(|(mk, _, _)| *mk == k) {
            Ok(false)
        } else if model.len() >= max {
            Err(ReplayStoreError::Full { live: max })
        } else if model.iter().filter(|(_, _, s)| *s == signer).count() >= share {
            Err(ReplayStoreError::SignerOverShare { share })
        } else if model.iter().filter(|(_, _, s)| s % 2 == signer % 2).count() >= issuer_share {
            Err(ReplayStoreError::IssuerOverShare {
                share: issuer_share,
            })
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
        let (_, max, share, issuer_share) = case;
        let store = MemoryReplayStore::new(max).share(share).issuer_share(issuer_share);
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
            let (_, max, share, issuer_share) = case;
            let store = RedisReplayStore::new(base.with_prefix(&fresh_prefix()))
                .max(max)
                .share(share)
                .issuer_share(issuer_share);
            rt.block_on(replay_follows_the_model(&store, case))
        })
        .unwrap();
}

/// One issuer minting many keys: each key within its own share, together past the
/// issuer's. Its next key is refused (429, only its signers); another issuer's signer
/// still gets through, and once the window closes the issuer may write again. `store`
/// holds 100 entries, 3 per signer, 4 per issuer.
async fn issuer_share_contract(store: &dyn Entries) {
    let until = NOW.plus(60);
    let keys: Vec<String> = (0..6).map(|i| format!("minted-key-{i}")).collect();
    let by = |key: &'static str, k: u8| ReplayUse::new(key, [k; 32], until);
    for (i, key) in keys.iter().take(4).enumerate() {
        let k = u8::try_from(i).unwrap();
        let entry = ReplayUse::new(key, [k; 32], until).issuer("https://mint.example");
        assert_eq!(store.first_use(&entry, NOW).await, Ok(true), "{key}");
    }
    let fifth = ReplayUse::new(&keys[4], [4; 32], until).issuer("https://mint.example");
    assert_eq!(
        store.first_use(&fifth, NOW).await,
        Err(ReplayStoreError::IssuerOverShare { share: 4 })
    );
    let other = by("honest-key", 9).issuer("https://agent.example");
    assert_eq!(store.first_use(&other, NOW).await, Ok(true));
    // A use that names no issuer counts only in its signer's share.
    assert_eq!(store.first_use(&by("bare", 10), NOW).await, Ok(true));
    assert_eq!(store.entries().await, 6);
    let later = until;
    let again = ReplayUse::new(&keys[5], [5; 32], later.plus(60)).issuer("https://mint.example");
    assert_eq!(store.first_use(&again, later).await, Ok(true));
}

#[tokio::test]
async fn the_memory_replay_store_keeps_each_issuer_to_its_share() {
    issuer_share_contract(&MemoryReplayStore::new(100).share(3).issuer_share(4)).await;
}

#[tokio::test]
async fn the_redis_replay_store_keeps_each_issuer_to_its_share() {
    let Some(r) = redis("the_redis_replay_store_keeps_each_issuer_to_its_share").await else {
        return;
    };
    let store = RedisReplayStore::new(r.with_prefix(&fresh_prefix()))
        .max(100)
        .share(3)
        .issuer_share(4);
    issuer_share_contract(&store).await;
}

#[tokio::test]
async fn the_redis_joint_store_keeps_each_issuer_to_its_share() {
    let Some(r) = redis("the_redis_joint_store_keeps_each_issuer_to_its_share").await else {
        return;
    };
    let r = r.with_prefix(&fresh_prefix());
    let store = Unrevoked(RedisReplayAndRevocations::new(
        RedisReplayStore::new(r.clone())
            .max(100)
            .share(3)
            .issuer_share(4),
        RedisRevocationList::new(r, 60, 100),
    ));
    issuer_share_contract(&store).await;
}

/// The joint store's `first_use_unrevoked` for a token never revoked, as a replay store:
/// its script must keep the replay script's bounds exactly.
struct Unrevoked(RedisReplayAndRevocations);

#[async_trait::async_trait]
impl ReplayStore for Unrevoked {
    async fn first_use(
        &self,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        let iss = id("https://agent.example");
        match self.0.first_use_unrevoked(&iss, "live", entry, now).await? {
            FirstUse::Recorded => Ok(true),
            FirstUse::Replayed => Ok(false),
            other => panic!("{other:?} for a token never revoked"),
        }
    }
}

#[async_trait::async_trait]
impl Entries for Unrevoked {
    async fn entries(&self) -> usize {
        self.0.replay().entries().await.unwrap()
    }
}

#[test]
fn the_redis_joint_store_follows_the_replay_model() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(base) = rt.block_on(redis("the_redis_joint_store_follows_the_replay_model")) else {
        return;
    };
    TestRunner::new(Config::with_cases(16))
        .run(&replay_case(), |case| {
            let (_, max, share, issuer_share) = case;
            let r = base.with_prefix(&fresh_prefix());
            let store = Unrevoked(RedisReplayAndRevocations::new(
                RedisReplayStore::new(r.clone())
                    .max(max)
                    .share(share)
                    .issuer_share(issuer_share),
                RedisRevocationList::new(r, 60, 100),
            ));
            rt.block_on(replay_follows_the_model(&store, case))
        })
        .unwrap();
}

#[tokio::test]
async fn the_redis_joint_store_refuses_a_revoked_token_and_records_nothing() {
    let Some(r) = redis("the_redis_joint_store_refuses_a_revoked_token_and_records_nothing").await
    else {
        return;
    };
    let both = RedisReplayAndRevocations::new(
        RedisReplayStore::new(r.clone()),
        RedisRevocationList::new(r, 60, 100),
    );
    let iss = id("https://agent.example");
    let (one, two) = (
        ReplayUse::new("signer", [1; 32], NOW.plus(60)),
        ReplayUse::new("signer", [2; 32], NOW.plus(60)),
    );
    both.revocations()
        .revoke(&iss, "withdrawn", NOW.as_secs() + 600, NOW)
        .await
        .unwrap();
    let revoked = both.first_use_unrevoked(&iss, "withdrawn", &one, NOW);
    assert_eq!(revoked.await, Ok(FirstUse::Revoked));
    assert_eq!(both.replay().entries().await.unwrap(), 0);
    // The same entry for a live token is a first use, then a replay; another issuer's
    // token of the same `jti` is not revoked.
    let live = || both.first_use_unrevoked(&iss, "live", &one, NOW);
    assert_eq!(live().await, Ok(FirstUse::Recorded));
    assert_eq!(live().await, Ok(FirstUse::Replayed));
    let other = id("https://other.example");
    let other = both.first_use_unrevoked(&other, "withdrawn", &two, NOW);
    assert_eq!(other.await, Ok(FirstUse::Recorded));
    assert_eq!(both.replay().entries().await.unwrap(), 2);
}

#[tokio::test]
async fn the_redis_replay_store_goes_by_the_callers_clock() {
    let Some(r) = redis("the_redis_replay_store_goes_by_the_callers_clock").await else {
        return;
    };
    crate::replay::clock_backwards(&RedisReplayStore::new(r)).await;
}

/// Milliseconds Redis keeps the replay entry of `key`.
async fn entry_pttl(r: &aauth_metadata::store::redis::Redis, key: [u8; 32]) -> i64 {
    let entry = r.key(&["replay", "k", &aauth_keys::base64url::encode(&key)]);
    r.query("test", &Cmd::pttl(&entry)).await.unwrap()
}

/// An entry lives until its `until` on the recording instance's clock; an instance whose
/// clock is behind still has the request inside its window after that, by as much as it
/// is behind. So Redis keeps the entry the clock-skew allowance longer (by default the
/// signature window, 60 s), not 5 s: with 5 s an instance 6 s behind admitted a replay
/// once Redis had dropped the entry.
#[tokio::test]
async fn a_redis_replay_entry_outlives_its_end_by_the_clock_skew_allowance() {
    let Some(r) = redis("a_redis_replay_entry_outlives_its_end_by_the_clock_skew_allowance").await
    else {
        return;
    };
    // The window closes 61 s from now on the recording clock.
    let until = NOW.plus(61);
    let within = |pttl: i64, ms: i64| (ms - 2_000..=ms).contains(&pttl);
    // By default: the time left, 5 s for Redis's own clock, and the 60 s allowance.
    let store = RedisReplayStore::new(r.clone());
    assert!(
        store
            .first_use(&ReplayUse::new("s", [1; 32], until), NOW)
            .await
            .unwrap()
    );
    let pttl = entry_pttl(&r, [1; 32]).await;
    assert!(within(pttl, 61_000 + 5_000 + 60_000), "{pttl}");
    // The same through the store that asks the revocation too.
    let both = RedisReplayAndRevocations::new(
        RedisReplayStore::new(r.clone()),
        RedisRevocationList::new(r.clone(), 60, 100),
    );
    let use_two = ReplayUse::new("s", [2; 32], until);
    let iss = id("https://agent.example");
    let first = both.first_use_unrevoked(&iss, "j", &use_two, NOW);
    assert_eq!(first.await, Ok(FirstUse::Recorded));
    let pttl = entry_pttl(&r, [2; 32]).await;
    assert!(within(pttl, 61_000 + 5_000 + 60_000), "{pttl}");
    // As configured.
    let store = RedisReplayStore::new(r.clone()).clock_skew(std::time::Duration::from_secs(10));
    assert!(
        store
            .first_use(&ReplayUse::new("s", [3; 32], until), NOW)
            .await
            .unwrap()
    );
    let pttl = entry_pttl(&r, [3; 32]).await;
    assert!(within(pttl, 61_000 + 5_000 + 10_000), "{pttl}");
    // An entry already past its end on the recording clock is still kept the allowance.
    let store = RedisReplayStore::new(r.clone());
    let late = ReplayUse::new("s", [4; 32], NOW.plus(1));
    assert!(store.first_use(&late, NOW.plus(1)).await.unwrap());
    let pttl = entry_pttl(&r, [4; 32]).await;
    assert!(within(pttl, 5_000 + 60_000), "{pttl}");
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
    // Nor can a roll make room: it fails and the token keeps its whole life.
    let full = store.roll(tc.secret(), NOW).await.unwrap_err();
    assert!(full.reason.contains("bound"), "{full}");
    assert_eq!(
        store.lookup(tc.secret(), NOW.plus(50)).await.unwrap(),
        Some(c.clone())
    );

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
    // Rolled once: each use of the old token in its grace (requests in flight, or the
    // same agent over and over) gets the same successor back, never another session.
    for later in [at, at.plus(1), grace_end.minus(1)] {
        let again = store.roll(tc.secret(), later).await.unwrap();
        assert_eq!(again.as_ref().map(|t| t.secret()), Some(rolled.secret()));
    }
    assert_eq!(store.roll(tc.secret(), grace_end).await.unwrap(), None);
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

/// A session that wraps a credential of the resource's own: found with it, and rolled
/// with it.
async fn wrapped_contract(store: &dyn SessionStore) {
    let s = session("aauth:w@agent.example", 9, NOW.plus(100))
        .wrapping(Wrapped::new("eyJ.an-oauth-access-token.sig"));
    let t = store.issue(s.clone(), NOW).await.unwrap();
    assert_eq!(
        store.lookup(t.secret(), NOW).await.unwrap(),
        Some(s.clone())
    );
    let rolled = store.roll(t.secret(), NOW).await.unwrap().unwrap();
    assert_eq!(store.lookup(rolled.secret(), NOW).await.unwrap(), Some(s));
    assert!(!t.secret().contains("an-oauth-access-token"));
}

#[tokio::test]
async fn the_memory_session_store_keeps_wrapped_credentials() {
    wrapped_contract(&MemorySessionStore::new(3)).await;
}

#[tokio::test]
async fn the_redis_session_store_keeps_wrapped_credentials_sealed() {
    let Some(r) = redis("the_redis_session_store_keeps_wrapped_credentials_sealed").await else {
        return;
    };
    let store = RedisSessionStore::new(r.clone(), 3).seal_credentials(&[7; 32]);
    wrapped_contract(&store).await;

    // What Redis holds: no credential in the clear.
    let keys: Vec<String> = r
        .query(
            "test",
            Cmd::new().arg("KEYS").arg(r.key(&["session", "t", "*"])),
        )
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for k in &keys {
        let fields: Vec<String> = r
            .query("test", Cmd::new().arg("HGETALL").arg(k))
            .await
            .unwrap();
        assert!(fields.iter().any(|f| f == "wrapped"), "{fields:?}");
        assert!(
            fields.iter().all(|f| !f.contains("an-oauth-access-token")),
            "{fields:?}"
        );
    }

    // Without the key, a wrapping session is refused, not stored in the clear; under
    // another key, a stored one does not read back.
    let s = session("aauth:x@agent.example", 8, NOW.plus(100)).wrapping(Wrapped::new("secret"));
    let bare = RedisSessionStore::new(r.clone(), 10);
    let e = bare.issue(s.clone(), NOW).await.unwrap_err();
    assert!(e.reason.contains("sealing key"), "{e}");
    let t = RedisSessionStore::new(r.clone(), 10)
        .seal_credentials(&[7; 32])
        .issue(s, NOW)
        .await
        .unwrap();
    let e = RedisSessionStore::new(r, 10)
        .seal_credentials(&[8; 32])
        .lookup(t.secret(), NOW)
        .await
        .unwrap_err();
    assert!(e.reason.contains("wrapped credential"), "{e}");
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

/// A store holding both, counting what the verifier asks of it.
struct Asked {
    list: MemoryRevocationList,
    replay: MemoryReplayStore,
    /// `is_revoked`, `first_use`, `first_use_unrevoked`.
    calls: std::sync::Mutex<(usize, usize, usize)>,
}

impl Asked {
    fn calls(&self) -> (usize, usize, usize) {
        *self.calls.lock().unwrap()
    }
}

#[async_trait::async_trait]
impl aauth_signing::RevocationList for Asked {
    async fn is_revoked(&self, iss: &aauth_tokens::ServerId, jti: &str) -> Result<bool, String> {
        self.calls.lock().unwrap().0 += 1;
        self.list.is_revoked(iss, jti).await
    }
}

#[async_trait::async_trait]
impl ReplayStore for Asked {
    async fn first_use(
        &self,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        self.calls.lock().unwrap().1 += 1;
        self.replay.first_use(entry, now).await
    }
}

#[async_trait::async_trait]
impl RevocationReplayStore for Asked {
    async fn first_use_unrevoked(
        &self,
        iss: &aauth_tokens::ServerId,
        jti: &str,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<FirstUse, ReplayStoreError> {
        self.calls.lock().unwrap().2 += 1;
        let revoked = aauth_signing::RevocationList::is_revoked(&self.list, iss, jti);
        if revoked.await.unwrap() {
            return Ok(FirstUse::Revoked);
        }
        Ok(if self.replay.first_use(entry, now).await? {
            FirstUse::Recorded
        } else {
            FirstUse::Replayed
        })
    }
}

/// A token-bearing POST asks a store that holds both once (one round trip to a shared
/// store); a GET asks the list alone; a list given apart afterwards is asked apart.
#[tokio::test]
async fn a_token_bearing_post_asks_a_joint_store_once() {
    use aauth_resource::{AAuthLayer, Access, RoutePolicy};
    use http::StatusCode;
    use tower_layer::Layer;

    use crate::replay::{copy, post};

    let w = crate::world();
    let calls = crate::handler();
    let asked = Arc::new(Asked {
        list: MemoryRevocationList::new(60, 100),
        replay: MemoryReplayStore::new(100),
        calls: std::sync::Mutex::default(),
    });
    let layer = |resource: aauth_resource::Resource| {
        AAuthLayer::new(
            resource.route(RoutePolicy::new(Access::AgentToken)),
            aauth_test_support::time::fixed_clock(),
        )
        .layer(calls.clone())
    };
    let joint = w.resource.clone().revocations_and_replay(asked.clone());
    let mut svc = layer(joint.clone());
    let token = w.agent_token(3600);
    let req = post(&w, &token, b"{}");
    assert_eq!(crate::send(&mut svc, copy(&req)).await.0, StatusCode::OK);
    assert_eq!(asked.calls(), (0, 0, 1));
    let get = crate::signed(
        "GET",
        "/data",
        b"",
        &w.agent,
        &aauth_headers::Scheme::jwt(token.clone()),
    );
    assert_eq!(crate::send(&mut svc, get).await.0, StatusCode::OK);
    assert_eq!(asked.calls(), (1, 0, 1));
    let replayed = crate::send(&mut svc, copy(&req)).await.0;
    assert_eq!(
        (replayed, asked.calls()),
        (StatusCode::UNAUTHORIZED, (1, 0, 2))
    );

    // Another list: the two are asked apart again (the list given, then the store).
    let apart = joint.revocations(Arc::new(MemoryRevocationList::new(60, 100)));
    let mut svc = layer(apart);
    let req = post(&w, &token, b"{\"n\":2}");
    assert_eq!(crate::send(&mut svc, copy(&req)).await.0, StatusCode::OK);
    assert_eq!(asked.calls(), (1, 1, 2));
    assert_eq!(calls.calls(), 3);
}
