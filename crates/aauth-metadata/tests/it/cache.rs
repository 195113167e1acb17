//! The key cache's fault behaviour against a programmable fake server, on an injected
//! clock (cache time) and Tokio's paused clock (deadlines).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aauth_keys::KeyError;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{FixedClock, UnixTime};
use aauth_metadata::{
    CacheConfig, DiscoveryError, FetchError, Fetched, HttpsUrl, KeyCache, KeySource, OverloadBound,
};
use aauth_tokens::{
    AgentClaims, AgentId, AgentTokenBuilder, IssuerKeyResolver, KeyRequest, ResolveError, ServerId,
    Validation, verify,
};

use crate::support::{Behaviour, FakeFetch, agent_metadata, jwk, jwks, key};

mod flood;

const T0: u64 = 1_800_000_000;
const META: &str = "https://agent.example/.well-known/aauth-agent.json";
const JWKS: &str = "https://agent.example/jwks.json";

struct World {
    fetch: Arc<FakeFetch>,
    clock: FixedClock,
    cache: KeyCache<FakeFetch>,
    iss: ServerId,
}

fn world_with(config: CacheConfig) -> World {
    let fetch = Arc::new(FakeFetch::default());
    fetch.set(
        META,
        Behaviour::Answer(Fetched::ok(agent_metadata("https://agent.example", JWKS))),
    );
    fetch.set(JWKS, Behaviour::Answer(Fetched::ok(jwks(&[(1, "k1")]))));
    let clock = FixedClock::new(UnixTime(T0));
    let cache = KeyCache::new(Arc::clone(&fetch), Arc::new(clock.clone()), config);
    World {
        fetch,
        clock,
        cache,
        iss: aauth_test_support::id("https://agent.example"),
    }
}

fn config(f: impl FnOnce(&mut CacheConfig)) -> CacheConfig {
    let mut c = CacheConfig::default();
    f(&mut c);
    c
}

/// Bounds that cross (a ceiling under the floor) are clamped, never a panic.
#[test]
fn crossed_bounds_are_clamped() {
    for c in [
        config(|c| c.max_ttl = 30),
        config(|c| c.refetch_floor = 10 * 24 * 3600),
        config(|c| {
            c.max_ttl = 0;
            c.min_ttl = u64::MAX;
            c.default_ttl = 0;
        }),
    ] {
        let cache: KeyCache<FakeFetch> = KeyCache::new(
            Arc::new(FakeFetch::default()),
            Arc::new(FixedClock::new(UnixTime(1000))),
            c,
        );
        drop(cache);
    }
}

fn world() -> World {
    world_with(CacheConfig::default())
}

impl World {
    async fn get(&self, kid: &str) -> Result<aauth_keys::PublicKey, DiscoveryError> {
        self.cache
            .issuer_key(&self.iss, "aauth-agent.json", kid)
            .await
    }

    fn set_jwks(&self, keys: &[(u8, &str)], cache_control: Option<&str>) {
        let mut f = Fetched::ok(jwks(keys));
        if let Some(cc) = cache_control {
            f = f.with_cache_control(cc);
        }
        self.fetch.set(JWKS, Behaviour::Answer(f));
    }

    fn jwks_calls(&self) -> usize {
        self.fetch.calls(JWKS)
    }
}

/// Lets spawned background refreshes run to completion.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_hit_fetches_once_and_returns_the_published_key() {
    let w = world();
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    let s = w.cache.stats();
    assert_eq!((s.fetches, s.misses, s.hits), (1, 1, 1));
    assert_eq!(w.fetch.calls(META), 1);
    assert_eq!(w.jwks_calls(), 1);
}

#[tokio::test]
async fn warm_cache_survives_an_outage_until_the_stale_bound() {
    let w = world(); // default lifetime 300 s, max_stale 3600 s
    w.get("k1").await.unwrap();
    w.fetch.set(
        JWKS,
        Behaviour::Fail(FetchError::Transport("connection refused".to_owned())),
    );
    // Past expiry: served stale while the refresh (in the background) fails.
    w.clock.set(UnixTime(T0 + 301));
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    settle().await;
    assert_eq!(w.jwks_calls(), 2);
    assert_eq!(w.cache.stats().failures, 1);
    // Still served near the bound, with fetches limited by the backoff.
    w.clock.set(UnixTime(T0 + 300 + 3599));
    assert!(w.get("k1").await.is_ok());
    settle().await;
    let served_stale = w.cache.stats().stale_hits;
    assert_eq!(served_stale, 2);
    // At the stale bound the keys are gone and the outage is an error, not a key.
    w.clock.set(UnixTime(T0 + 300 + 3600));
    let err = w.get("k1").await.unwrap_err();
    assert!(
        matches!(
            &err,
            DiscoveryError::Fetch {
                error: FetchError::Transport(_),
                ..
            } | DiscoveryError::BackingOff { .. }
        ),
        "{err:?}"
    );
    assert!(matches!(
        ResolveError::from(err),
        ResolveError::Unavailable { .. }
    ));
}

#[tokio::test]
async fn cold_cache_outage_is_a_clear_error_and_backs_off() {
    let w = world();
    w.fetch.set(
        META,
        Behaviour::Fail(FetchError::Transport("connection refused".to_owned())),
    );
    let err = w.get("k1").await.unwrap_err();
    assert_eq!(
        err,
        DiscoveryError::Fetch {
            url: META.to_owned(),
            error: FetchError::Transport("connection refused".to_owned())
        }
    );
    // Negative caching: no second fetch inside the backoff.
    w.clock.set(UnixTime(T0 + 30));
    match w.get("k1").await.unwrap_err() {
        DiscoveryError::BackingOff { until, last } => {
            assert_eq!(until, UnixTime(T0 + 60));
            assert!(matches!(*last, DiscoveryError::Fetch { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.fetch.calls(META), 1);
    // After the backoff one more attempt; a second failure doubles it.
    w.clock.set(UnixTime(T0 + 60));
    assert!(w.get("k1").await.is_err());
    assert_eq!(w.fetch.calls(META), 2);
    w.clock.set(UnixTime(T0 + 60 + 119));
    assert!(matches!(
        w.get("k1").await,
        Err(DiscoveryError::BackingOff { .. })
    ));
    assert_eq!(w.fetch.calls(META), 2);
    // Recovery.
    w.fetch.set(
        META,
        Behaviour::Answer(Fetched::ok(agent_metadata("https://agent.example", JWKS))),
    );
    w.clock.set(UnixTime(T0 + 60 + 120));
    assert!(w.get("k1").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_server_meets_the_deadline() {
    let w = world_with(config(|c| c.fetch_timeout = Duration::from_secs(3)));
    w.fetch.set(JWKS, Behaviour::Hang);
    let started = tokio::time::Instant::now();
    let err = w.get("k1").await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(
        err,
        DiscoveryError::Fetch {
            url: META.to_owned(),
            error: FetchError::Timeout(Duration::from_secs(3))
        }
    );
    // A slow (not hanging) answer within the deadline is fine.
    w.fetch.set(
        JWKS,
        Behaviour::Slow(Duration::from_secs(2), Fetched::ok(jwks(&[(1, "k1")]))),
    );
    w.clock.advance(Duration::from_secs(60));
    assert!(w.get("k1").await.is_ok());
}

#[tokio::test]
async fn issuer_missing_and_mismatch_are_reported_as_such() {
    let w = world();
    w.fetch.set(
        META,
        Behaviour::Answer(Fetched::ok(format!(r#"{{"jwks_uri":"{JWKS}"}}"#))),
    );
    let err = w.get("k1").await.unwrap_err();
    assert_eq!(ResolveError::from(err), ResolveError::IssuerMissing);

    let w = world();
    w.fetch.set(
        META,
        Behaviour::Answer(Fetched::ok(agent_metadata("https://evil.example", JWKS))),
    );
    let err = w.get("k1").await.unwrap_err();
    assert_eq!(
        ResolveError::from(err),
        ResolveError::IssuerMismatch {
            found: "https://evil.example".to_owned()
        }
    );
    assert_eq!(w.jwks_calls(), 0, "no JWKS fetch after a refused document");
}

#[tokio::test]
async fn rotation_new_kid_after_one_refetch_old_kid_while_published() {
    let w = world();
    w.get("k1").await.unwrap();
    w.set_jwks(&[(1, "k1"), (2, "k2")], None);
    // Within the floor, an unknown kid is refused without a fetch.
    w.clock.set(UnixTime(T0 + 10));
    assert_eq!(
        w.get("k2").await.unwrap_err(),
        DiscoveryError::UnknownKey {
            kid: "k2".to_owned()
        }
    );
    assert_eq!(w.jwks_calls(), 1);
    assert_eq!(w.cache.stats().floor_refusals, 1);
    // After the floor: one refetch, and both keys are accepted.
    w.clock.set(UnixTime(T0 + 60));
    assert_eq!(&w.get("k2").await.unwrap(), key(2).public_key());
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    assert_eq!(w.jwks_calls(), 2);
    // k1 withdrawn: once the set is refetched, k1 is unknown.
    w.set_jwks(&[(2, "k2")], None);
    w.clock.set(UnixTime(T0 + 60 + 300));
    assert!(w.get("k2").await.is_ok()); // stale hit starts the refresh
    settle().await;
    assert_eq!(w.jwks_calls(), 3);
    assert_eq!(
        w.get("k1").await.unwrap_err(),
        DiscoveryError::UnknownKey {
            kid: "k1".to_owned()
        }
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_a_minute() {
    let w = world();
    w.get("k1").await.unwrap();
    for i in 0..1000u64 {
        w.clock.set(UnixTime(T0 + 60 + i % 60));
        let kid = format!("attacker-{i}");
        assert!(matches!(
            w.get(&kid).await,
            Err(DiscoveryError::UnknownKey { .. })
        ));
    }
    assert_eq!(
        w.jwks_calls(),
        2,
        "the first fetch and one refetch in the minute"
    );
    assert_eq!(w.cache.stats().floor_refusals, 999);
    // The next minute allows one more.
    w.clock.set(UnixTime(T0 + 120));
    assert!(w.get("attacker-x").await.is_err());
    assert!(w.get("attacker-y").await.is_err());
    assert_eq!(w.jwks_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_fetch() {
    let w = world();
    w.fetch.set(
        JWKS,
        Behaviour::Slow(Duration::from_millis(200), Fetched::ok(jwks(&[(1, "k1")]))),
    );
    let lookups = (0..50).map(|_| {
        let cache = w.cache.clone();
        let iss = w.iss.clone();
        tokio::spawn(async move { cache.issuer_key(&iss, "aauth-agent.json", "k1").await })
    });
    for h in lookups.collect::<Vec<_>>() {
        assert_eq!(&h.await.unwrap().unwrap(), key(1).public_key());
    }
    assert_eq!(w.jwks_calls(), 1);
    assert_eq!(w.fetch.calls(META), 1);
    let s = w.cache.stats();
    assert_eq!((s.fetches, s.misses, s.coalesced), (1, 1, 49));
}

#[tokio::test]
async fn cache_control_and_expires_set_the_lifetime_within_bounds() {
    // max-age=120: fresh (no refetch) until T0+120, then refreshed.
    let w = world();
    w.set_jwks(&[(1, "k1")], Some("max-age=120"));
    w.get("k1").await.unwrap();
    w.clock.set(UnixTime(T0 + 95)); // before 80 % of 120
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 1);
    w.clock.set(UnixTime(T0 + 96)); // 80 %: refresh ahead, served at once
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 2);
    assert_eq!(w.cache.stats().refreshes, 1);
    assert_eq!(w.cache.stats().stale_hits, 0);

    // A week is clamped to 24 h: refresh starts at 80 % of a day.
    let w = world();
    w.set_jwks(&[(1, "k1")], Some("public, max-age=604800"));
    w.get("k1").await.unwrap();
    w.clock.set(UnixTime(T0 + 86_400 * 8 / 10 - 1));
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 1);
    w.clock.set(UnixTime(T0 + 86_400 * 8 / 10));
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 2);

    // no-store: the shortest lifetime (the one-minute floor), not zero; the floor also
    // holds the refresh-ahead back, so the refetch comes at expiry, served stale.
    let w = world();
    w.set_jwks(&[(1, "k1")], Some("no-store"));
    w.get("k1").await.unwrap();
    w.clock.set(UnixTime(T0 + 59));
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 1);
    w.clock.set(UnixTime(T0 + 60));
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 2);
    assert_eq!(w.cache.stats().stale_hits, 1);

    // Expires one hour ahead.
    let w = world();
    w.fetch.set(
        JWKS,
        Behaviour::Answer(
            Fetched::ok(jwks(&[(1, "k1")])).with_expires(&httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(T0 + 3600),
            )),
        ),
    );
    w.get("k1").await.unwrap();
    w.clock.set(UnixTime(T0 + 2879));
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 1);
    w.clock.set(UnixTime(T0 + 2880));
    w.get("k1").await.unwrap();
    settle().await;
    assert_eq!(w.jwks_calls(), 2);
}

#[tokio::test]
async fn a_key_that_fails_verification_is_refetched_once() {
    let w = world();
    let old = w.get("k1").await.unwrap();
    // The issuer re-keyed k1 silently.
    w.set_jwks(&[(3, "k1")], None);
    let source = KeySource::Issuer {
        iss: w.iss.clone(),
        dwk: "aauth-agent.json".to_owned(),
    };
    w.clock.set(UnixTime(T0 + 60));
    let new = w
        .cache
        .refetch_after_failure(&source, "k1", &old)
        .await
        .unwrap();
    assert_eq!(new.as_ref(), Some(key(3).public_key()));
    // A second failure inside the floor gets no fetch.
    assert_eq!(
        w.cache
            .refetch_after_failure(&source, "k1", &new.unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(w.jwks_calls(), 2);
}

#[tokio::test]
async fn the_token_verifier_rekeys_through_the_cache() {
    // A token signed with the new k1 verifies although the cache held the old k1: the
    // verifier's one refresh finds the new key.
    let w = world();
    w.get("k1").await.unwrap();
    w.set_jwks(&[(3, "k1")], None);
    w.clock.set(UnixTime(T0 + 60));
    let agent = key(9);
    let minted = AgentTokenBuilder::new(
        w.iss.clone(),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent.public_key(),
    )
    .sign(&key(3), "k1", UnixTime(T0 + 60), &mut OsRandom)
    .unwrap();
    let v = Validation::new(UnixTime(T0 + 60));
    let verified = verify::<AgentClaims>(&minted.token, &v, &w.cache)
        .await
        .unwrap();
    assert_eq!(verified.cnf_key.as_ref(), Some(agent.public_key()));
    // Signed by a key the issuer never published: unknown after the one refetch.
    let forged = AgentTokenBuilder::new(
        w.iss.clone(),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent.public_key(),
    )
    .sign(&key(4), "k1", UnixTime(T0 + 60), &mut OsRandom)
    .unwrap();
    assert!(
        verify::<AgentClaims>(&forged.token, &v, &w.cache)
            .await
            .is_err()
    );
    assert_eq!(w.jwks_calls(), 2);
}

#[tokio::test]
async fn the_cache_is_an_issuer_key_resolver() {
    let w = world();
    let req = KeyRequest::new(&w.iss, "aauth-agent.json", "k1");
    assert_eq!(
        &IssuerKeyResolver::resolve(&w.cache, &req).await.unwrap(),
        key(1).public_key()
    );
    let req = KeyRequest::new(&w.iss, "aauth-agent.json", "nope");
    assert_eq!(
        IssuerKeyResolver::resolve(&w.cache, &req)
            .await
            .unwrap_err(),
        ResolveError::UnknownKey {
            kid: "nope".to_owned()
        }
    );
}

#[tokio::test]
async fn the_number_of_sources_is_bounded() {
    let w = world_with(config(|c| c.max_entries = 2));
    for host in ["a", "b", "c"] {
        let url = HttpsUrl::parse(&format!("https://{host}.example/jwks.json")).unwrap();
        w.fetch.set(
            url.as_str(),
            Behaviour::Answer(Fetched::ok(jwks(&[(1, "k1")]))),
        );
        w.cache.jwks_key(&url, "k1").await.unwrap();
    }
    assert_eq!(w.cache.len(), 2);
    assert_eq!(w.cache.stats().evictions, 1);
    // The evicted (least recently used) source is fetched again.
    let a = HttpsUrl::parse("https://a.example/jwks.json").unwrap();
    w.cache.jwks_key(&a, "k1").await.unwrap();
    assert_eq!(w.fetch.calls(a.as_str()), 2);
}

/// A JWKS URL on a host of the attacker's, which never answers with keys (404).
fn never_answers(i: usize) -> HttpsUrl {
    HttpsUrl::parse(&format!("https://n{i}.attacker.example/jwks.json")).unwrap()
}

#[tokio::test]
async fn a_flood_of_sources_that_never_answer_does_not_evict_an_issuers_keys() {
    let w = world(); // default bounds: 1024 sources with keys, 1024 without
    w.get("k1").await.unwrap();
    // More fresh sources than both bounds together: each is fetched once and fails.
    for i in 0..2100 {
        assert!(w.cache.jwks_key(&never_answers(i), "k1").await.is_err());
        assert!(w.cache.negative_len() <= 1024);
    }
    let s = w.cache.stats();
    assert_eq!(
        (s.failures, s.evictions, s.negative_evictions),
        (2100, 0, 2100 - 1024)
    );
    assert_eq!(w.cache.len(), 1 + 1024);
    // The issuer's keys are still held: a hit, no fetch...
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    assert_eq!(w.jwks_calls(), 1);
    // ...and so is their stale-if-error protection: the issuer goes down, its keys expire,
    // and they are still served.
    w.fetch.set(
        JWKS,
        Behaviour::Fail(FetchError::Transport("connection refused".to_owned())),
    );
    w.clock.set(UnixTime(T0 + 301));
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    settle().await;
    assert_eq!(w.cache.stats().stale_hits, 1);
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
}

#[tokio::test]
async fn a_source_that_never_answered_keeps_its_backoff_longest() {
    // The negative entry whose backoff ends soonest is the one evicted: a source that has
    // failed several times (a long backoff) outlives a flood of first failures.
    let w = world_with(config(|c| c.max_negative_entries = 4));
    let down = never_answers(9999);
    for round in 0..3u64 {
        w.clock.set(UnixTime(T0 + [0, 60, 180][round as usize]));
        assert!(w.cache.jwks_key(&down, "k1").await.is_err());
    }
    assert_eq!(w.fetch.calls(down.as_str()), 3); // backoff now 240 s, until T0 + 420
    for i in 0..20 {
        assert!(w.cache.jwks_key(&never_answers(i), "k1").await.is_err());
    }
    assert_eq!(w.cache.negative_len(), 4);
    // Still backing off: no fetch.
    assert!(matches!(
        w.cache.jwks_key(&down, "k1").await,
        Err(DiscoveryError::BackingOff { .. })
    ));
    assert_eq!(w.fetch.calls(down.as_str()), 3);
}

#[tokio::test(start_paused = true)]
async fn fetches_running_at_once_are_bounded_and_never_leaked() {
    let w = world_with(config(|c| {
        c.max_inflight = 4; // of which 2 for sources without keys
        c.fetch_timeout = Duration::from_secs(5);
    }));
    w.get("k1").await.unwrap();
    for i in 0..3 {
        w.fetch.set(never_answers(i).as_str(), Behaviour::Hang);
    }
    // Two lookups of hanging sources take both slots of their share; their callers go
    // away (aborted), which must neither cancel the fetch nor leak its slot.
    let pending: Vec<_> = (0..2)
        .map(|i| {
            let cache = w.cache.clone();
            tokio::spawn(async move { cache.jwks_key(&never_answers(i), "k1").await })
        })
        .collect();
    settle().await;
    assert_eq!(w.cache.in_flight(), 2);
    for p in &pending {
        p.abort();
    }
    // A third source is refused at once, unfetched, and not remembered.
    let before = w.cache.len();
    let refused = w.cache.jwks_key(&never_answers(2), "k1").await.unwrap_err();
    assert_eq!(
        refused,
        DiscoveryError::Overloaded {
            limit: 2,
            bound: OverloadBound::StrangerFetches
        }
    );
    assert_eq!(
        refused.to_string(),
        "2 key fetches of sources without keys are already running"
    );
    assert!(matches!(
        ResolveError::from(refused),
        ResolveError::Unavailable { .. }
    ));
    assert_eq!(w.fetch.calls(never_answers(2).as_str()), 0);
    assert_eq!(w.cache.len(), before);
    assert_eq!(w.cache.stats().overloaded, 1);
    // A source being fetched is joined, not fetched again; cached keys need no slot.
    let joined = {
        let cache = w.cache.clone();
        tokio::spawn(async move { cache.jwks_key(&never_answers(0), "k1").await })
    };
    settle().await;
    assert_eq!(w.cache.stats().coalesced, 1);
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    // At their deadline both fetches end, and their slots are free again.
    assert!(matches!(
        joined.await.unwrap(),
        Err(DiscoveryError::Fetch {
            error: FetchError::Timeout(_),
            ..
        })
    ));
    settle().await;
    assert_eq!(w.cache.in_flight(), 0);
    w.fetch.set(
        never_answers(2).as_str(),
        Behaviour::Answer(Fetched::ok(jwks(&[(2, "k1")]))),
    );
    assert_eq!(
        &w.cache.jwks_key(&never_answers(2), "k1").await.unwrap(),
        key(2).public_key()
    );
}

#[tokio::test]
async fn the_tables_stay_within_their_bounds_while_fetches_run() {
    let w = world_with(config(|c| {
        c.max_entries = 2;
        c.max_negative_entries = 2;
        c.max_inflight = 8;
    }));
    // Two sources whose first fetch is running fill the negative table: a third new
    // source is refused rather than growing it or evicting a fetch in flight.
    for i in 0..2 {
        w.fetch.set(
            never_answers(i).as_str(),
            Behaviour::Slow(Duration::from_millis(50), Fetched::status(404)),
        );
    }
    let running: Vec<_> = (0..2)
        .map(|i| {
            let cache = w.cache.clone();
            tokio::spawn(async move { cache.jwks_key(&never_answers(i), "k1").await })
        })
        .collect();
    settle().await;
    assert_eq!((w.cache.in_flight(), w.cache.negative_len()), (2, 2));
    // The bound that refused it is the table's, not the fetches' (8, of which 2 run).
    let refused = w.cache.jwks_key(&never_answers(2), "k1").await.unwrap_err();
    assert_eq!(
        refused,
        DiscoveryError::Overloaded {
            limit: 2,
            bound: OverloadBound::NegativeTable
        }
    );
    assert_eq!(
        refused.to_string(),
        "the table of sources without keys is full: 2 sources, each being fetched"
    );
    assert_eq!(w.cache.negative_len(), 2);
    for r in running {
        assert!(r.await.unwrap().is_err());
    }
    // Sources that answer move to the other table, within its own bound.
    for i in 10..15 {
        let url = never_answers(i);
        w.fetch.set(
            url.as_str(),
            Behaviour::Answer(Fetched::ok(jwks(&[(1, "k1")]))),
        );
        w.cache.jwks_key(&url, "k1").await.unwrap();
        assert!(w.cache.len() <= 4);
        assert!(w.cache.negative_len() <= 2);
    }
    assert_eq!(w.cache.len() - w.cache.negative_len(), 2);
    assert_eq!(w.cache.stats().evictions, 3);
}

#[tokio::test]
async fn a_fetcher_that_panics_leaves_no_slot_taken() {
    let w = world();
    w.fetch.set(JWKS, Behaviour::Panic);
    assert_eq!(w.get("k1").await.unwrap_err(), DiscoveryError::Aborted);
    assert_eq!(w.cache.in_flight(), 0);
    // The source is not stuck "in flight": after the floor it is fetched again.
    w.set_jwks(&[(1, "k1")], None);
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
}

#[tokio::test]
async fn cross_origin_jwks_uri_needs_admission() {
    let other = "https://keys.cdn.example/agent.json";
    let w = world();
    w.fetch.set(
        META,
        Behaviour::Answer(Fetched::ok(agent_metadata("https://agent.example", other))),
    );
    w.fetch
        .set(other, Behaviour::Answer(Fetched::ok(jwks(&[(1, "k1")]))));
    assert_eq!(
        w.get("k1").await.unwrap_err(),
        DiscoveryError::CrossOriginJwks {
            issuer: "https://agent.example".to_owned(),
            jwks_uri: other.to_owned()
        }
    );
    assert_eq!(w.fetch.calls(other), 0);

    let w = world_with(config(|c| {
        c.cross_origin_jwks = vec![(
            "https://agent.example".to_owned(),
            "https://keys.cdn.example".to_owned(),
        )];
    }));
    w.fetch.set(
        META,
        Behaviour::Answer(Fetched::ok(agent_metadata("https://agent.example", other))),
    );
    w.fetch
        .set(other, Behaviour::Answer(Fetched::ok(jwks(&[(1, "k1")]))));
    assert!(w.get("k1").await.is_ok());
}

#[tokio::test]
async fn jwks_members_are_held_to_the_key_policy() {
    let w = world();
    let mut eddsa = jwk(2, "poly");
    eddsa.alg = Some("EdDSA".to_owned());
    let mut no_alg = jwk(3, "bare");
    no_alg.alg = None;
    let body =
        aauth_keys::JwkSet::from_jwks(&[jwk(1, "k1"), eddsa, no_alg, jwk(4, "dup"), jwk(5, "dup")])
            .to_json();
    w.fetch.set(JWKS, Behaviour::Answer(Fetched::ok(body)));
    assert!(
        w.get("k1").await.is_ok(),
        "one bad member does not spoil the set"
    );
    assert_eq!(
        w.get("poly").await.unwrap_err(),
        DiscoveryError::Key {
            kid: "poly".to_owned(),
            error: KeyError::PolymorphicAlgorithm
        }
    );
    assert_eq!(
        w.get("bare").await.unwrap_err(),
        DiscoveryError::Key {
            kid: "bare".to_owned(),
            error: KeyError::MissingAlgorithm
        }
    );
    assert!(matches!(
        w.get("dup").await.unwrap_err(),
        DiscoveryError::Key {
            error: KeyError::DuplicateKid { .. },
            ..
        }
    ));

    let w = world_with(config(|c| c.max_keys = 3));
    w.set_jwks(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")], None);
    assert!(matches!(
        w.get("a").await.unwrap_err(),
        DiscoveryError::Jwks { .. }
    ));
    w.fetch.set(JWKS, Behaviour::Answer(Fetched::status(500)));
    w.clock.advance(Duration::from_secs(61));
    assert!(matches!(
        w.get("a").await.unwrap_err(),
        DiscoveryError::Fetch {
            error: FetchError::Status { status: 500, .. },
            ..
        }
    ));
}

#[test]
fn without_a_runtime_the_cache_reports_it() {
    let w = world();
    let r = futures_executor_block_on(w.get("k1"));
    assert_eq!(r.unwrap_err(), DiscoveryError::NoRuntime);
}

/// A minimal executor, so the no-runtime case runs outside Tokio.
fn futures_executor_block_on<F: Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[tokio::test]
async fn a_lookup_without_kid_takes_the_one_key_that_fits_and_never_guesses() {
    use aauth_metadata::Pick;
    let w = world();
    let source = KeySource::Issuer {
        iss: w.iss.clone(),
        dwk: "aauth-agent.json".to_owned(),
    };
    let mut kidless = jwk(2, "x");
    kidless.kid = None;
    let set = |members: &[aauth_keys::Jwk]| {
        w.fetch.set(
            JWKS,
            Behaviour::Answer(Fetched::ok(
                aauth_keys::JwkSet::from_jwks(members).to_json(),
            )),
        );
    };
    set(&[jwk(1, "k1"), kidless.clone()]);
    let two = key(2).public_key().clone();
    let is_two = move |k: &aauth_keys::PublicKey| *k == two;
    let any = |_: &aauth_keys::PublicKey| true;
    // The member without kid is found by what fits; a member with a kid counts too.
    assert_eq!(
        &w.cache.picked(&source, Pick::Sole(&is_two)).await.unwrap(),
        key(2).public_key()
    );
    assert_eq!(
        w.cache.picked(&source, Pick::Sole(&any)).await.unwrap_err(),
        DiscoveryError::NoSoleKey { candidates: 2 }
    );
    // By kid, the member without one is still never selected.
    assert!(matches!(
        w.get("x").await,
        Err(DiscoveryError::UnknownKey { .. })
    ));
    assert_eq!(w.jwks_calls(), 1, "ambiguity is not refetched");
    // None fits: within the floor, refused without a fetch; after it, refetched once.
    let three = key(3).public_key().clone();
    let is_three = move |k: &aauth_keys::PublicKey| *k == three;
    assert_eq!(
        w.cache
            .picked(&source, Pick::Sole(&is_three))
            .await
            .unwrap_err(),
        DiscoveryError::NoSoleKey { candidates: 0 }
    );
    assert_eq!(w.jwks_calls(), 1);
    let mut three_kidless = jwk(3, "y");
    three_kidless.kid = None;
    set(&[three_kidless]);
    w.clock.advance(Duration::from_secs(61));
    assert_eq!(
        &w.cache
            .picked(&source, Pick::Sole(&is_three))
            .await
            .unwrap(),
        key(3).public_key()
    );
    assert_eq!(w.jwks_calls(), 2);
}
