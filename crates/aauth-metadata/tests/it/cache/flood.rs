//! The key cache under a flood of strangers (a verifier that accepts agent tokens from any
//! provider fetches the keys of whatever issuer a token names): fetch slots kept for the
//! sources that have keys, and the issuers in use kept through a burst of one-time ones.

use aauth_keys::time::UnixTime;
use aauth_metadata::{CacheConfig, DiscoveryError, Fetched, HttpsUrl, OverloadBound};
use aauth_tokens::{IssuerKeyResolver, KeyRequest, ServerId};

use super::{JWKS, T0, World, config, never_answers, settle, world, world_with};
use crate::support::{Behaviour, agent_metadata, jwks, key};

/// An attacker's issuer (wildcard DNS, a wildcard certificate) that answers with keys.
fn attacker_issuer(w: &World, i: usize) -> ServerId {
    let iss = format!("https://i{i}.attacker.example");
    let jwks_uri = format!("{iss}/jwks.json");
    w.fetch.set(
        &format!("{iss}/.well-known/aauth-agent.json"),
        Behaviour::Answer(Fetched::ok(agent_metadata(&iss, &jwks_uri))),
    );
    w.fetch.set(
        &jwks_uri,
        Behaviour::Answer(Fetched::ok(jwks(&[(7, "k1")]))),
    );
    aauth_test_support::id(&iss)
}

/// A JWKS URL that answers with keys.
fn answering(w: &World, name: &str) -> HttpsUrl {
    let url = HttpsUrl::parse(&format!("https://{name}.example/jwks.json")).unwrap();
    w.fetch.set(
        url.as_str(),
        Behaviour::Answer(Fetched::ok(jwks(&[(1, "k1")]))),
    );
    url
}

#[tokio::test(start_paused = true)]
async fn strangers_that_hang_leave_fetch_slots_for_issuers_with_keys() {
    let w = world(); // 32 fetches at once, at most half of them of sources without keys
    let max = CacheConfig::default().max_inflight;
    w.get("k1").await.unwrap();
    // As many strangers as there are slots, each hanging to its 10 s deadline (subdomains
    // resolving to an address that drops packets).
    let hanging: Vec<_> = (0..max)
        .map(|i| {
            w.fetch.set(never_answers(i).as_str(), Behaviour::Hang);
            let cache = w.cache.clone();
            tokio::spawn(async move { cache.jwks_key(&never_answers(i), "k1").await })
        })
        .collect();
    settle().await;
    // While they hang, the issuer rotates its key: the unknown kid is refetched (the floor
    // allows it) and found...
    w.set_jwks(&[(1, "k1"), (2, "k2")], None);
    w.clock.set(UnixTime(T0 + 60));
    assert_eq!(&w.get("k2").await.unwrap(), key(2).public_key());
    assert_eq!(w.jwks_calls(), 2);
    // ...its refresh-ahead runs...
    w.clock.set(UnixTime(T0 + 60 + 240));
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    settle().await;
    assert_eq!(w.jwks_calls(), 3);
    assert_eq!(w.cache.stats().refreshes, 1);
    // ...and past the stale bound its keys are fetched again rather than refused.
    w.clock.set(UnixTime(T0 + 300 + 300 + 3600));
    assert_eq!(&w.get("k2").await.unwrap(), key(2).public_key());
    assert_eq!(w.jwks_calls(), 4);
    // The strangers held their share of the slots, no more: the others were refused at
    // once, and so is a new one, while the share hangs.
    assert_eq!(w.cache.in_flight(), max / 2);
    let refused = hanging.iter().filter(|h| h.is_finished()).count();
    assert_eq!(refused, max - max / 2);
    for h in hanging
        .into_iter()
        .filter(tokio::task::JoinHandle::is_finished)
    {
        assert_eq!(
            h.await.unwrap().unwrap_err(),
            DiscoveryError::Overloaded {
                limit: max / 2,
                bound: OverloadBound::StrangerFetches
            }
        );
    }
    assert_eq!(
        w.cache
            .jwks_key(&never_answers(max), "k1")
            .await
            .unwrap_err(),
        DiscoveryError::Overloaded {
            limit: max / 2,
            bound: OverloadBound::StrangerFetches
        }
    );
    assert_eq!(w.fetch.calls(never_answers(max).as_str()), 0);
}

#[tokio::test]
async fn the_strangers_share_of_fetch_slots_is_a_setting() {
    // All of them: no slot kept for sources with keys (the cache as it was).
    let w = world_with(config(|c| {
        c.max_inflight = 4;
        c.stranger_inflight_percent = 100;
    }));
    w.get("k1").await.unwrap();
    for i in 0..4 {
        w.fetch.set(never_answers(i).as_str(), Behaviour::Hang);
        let cache = w.cache.clone();
        tokio::spawn(async move { cache.jwks_key(&never_answers(i), "k1").await });
    }
    settle().await;
    assert_eq!(w.cache.in_flight(), 4);
    w.clock.set(UnixTime(T0 + 60));
    let refused = w.get("k2").await.unwrap_err();
    assert_eq!(
        refused,
        DiscoveryError::Overloaded {
            limit: 4,
            bound: OverloadBound::Fetches
        }
    );
    assert_eq!(refused.to_string(), "4 key fetches are already running");
    // A share never rounds down to no slot at all.
    let w = world_with(config(|c| {
        c.max_inflight = 1;
        c.stranger_inflight_percent = 1;
    }));
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
}

#[tokio::test]
async fn a_burst_of_one_time_issuers_leaves_the_issuers_in_use_their_keys() {
    let w = world(); // 1024 sources with keys at most
    let bound = CacheConfig::default().max_entries;
    // The issuer verifies requests (its keys are used again)...
    w.get("k1").await.unwrap();
    w.get("k1").await.unwrap();
    // ...when more issuers than the table holds each verify one request.
    let burst = bound + 76;
    for i in 0..burst {
        let iss = attacker_issuer(&w, i);
        assert_eq!(
            &w.cache
                .issuer_key(&iss, "aauth-agent.json", "k1")
                .await
                .unwrap(),
            key(7).public_key()
        );
    }
    // The table is bounded as before, the burst evicting its own...
    assert_eq!(w.cache.len(), bound);
    assert_eq!(w.cache.stats().evictions, (burst + 1 - bound) as u64);
    // ...and the issuer's keys are still held: a hit, no fetch.
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    assert_eq!(w.jwks_calls(), 1);
    // The first of the burst, seen once, went first.
    let first = attacker_issuer(&w, 0);
    w.cache
        .issuer_key(&first, "aauth-agent.json", "k1")
        .await
        .unwrap();
    assert_eq!(w.fetch.calls("https://i0.attacker.example/jwks.json"), 2);
}

#[tokio::test]
async fn sources_used_again_hold_at_most_four_fifths_of_the_table() {
    let w = world_with(config(|c| c.max_entries = 5)); // 4 may be protected
    let used: Vec<_> = (0..6).map(|i| answering(&w, &format!("u{i}"))).collect();
    for url in &used {
        w.cache.jwks_key(url, "k1").await.unwrap();
        w.cache.jwks_key(url, "k1").await.unwrap();
    }
    // One-time sources then take the fifth place in turn; of the sources used again, the
    // least recently used went for the sixth, and one more to make room for the burst.
    for i in 0..10 {
        w.cache
            .jwks_key(&answering(&w, &format!("once{i}")), "k1")
            .await
            .unwrap();
    }
    assert_eq!(w.cache.len(), 5);
    for url in &used[2..] {
        w.cache.jwks_key(url, "k1").await.unwrap();
        assert_eq!(w.fetch.calls(url.as_str()), 1, "{url:?} kept");
    }
    w.cache.jwks_key(&used[0], "k1").await.unwrap();
    assert_eq!(
        w.fetch.calls(used[0].as_str()),
        2,
        "the least recently used went"
    );
}

#[tokio::test]
async fn a_token_that_fails_verification_is_no_second_use() {
    // A one-time issuer's token with a bad signature makes the verifier look its key up
    // twice (resolve, then refresh): that is still one request, and the issuer stays on
    // probation, where the next new source evicts it rather than an issuer in use.
    let w = world_with(config(|c| c.max_entries = 2));
    w.get("k1").await.unwrap();
    w.get("k1").await.unwrap();
    let iss = attacker_issuer(&w, 1);
    let req = KeyRequest::new(&iss, "aauth-agent.json", "k1");
    IssuerKeyResolver::resolve(&w.cache, &req).await.unwrap();
    assert_eq!(IssuerKeyResolver::refresh(&w.cache, &req).await, Ok(None));
    let next = attacker_issuer(&w, 2);
    w.cache
        .issuer_key(&next, "aauth-agent.json", "k1")
        .await
        .unwrap();
    assert_eq!(&w.get("k1").await.unwrap(), key(1).public_key());
    assert_eq!(w.fetch.calls(JWKS), 1);
}
