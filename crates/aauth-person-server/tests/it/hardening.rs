//! Hardening: one approval delivers one token however many polls race for it; guessing
//! codes and passwords is throttled (per account, across sessions, per client, codes sent
//! at once as one after another) without locking a person out of their own browser or
//! their own requests; an agent's open requests are bounded; a
//! revoked sub-agent token is refused; replayed requests issue nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{MemoryThrottle, RedisThrottle, Throttle, ThrottlePolicy};
use aauth_person_server::{AlwaysAsk, MemoryStore, PersonServer, SqliteStore};
use aauth_test_support::services::{redis_url, unique_name};
use aauth_tokens::{AgentId, AgentTokenBuilder, PersonClaims};
use http::StatusCode;

use crate::consent::{Browser, approve, code_of, decide, header_of, poll};
use crate::racing::{ChangedOnBind, Hooked};
use crate::{AUTH_TOKEN_PATH, NOW, PERSON_TOKEN_PATH, World, id, world_with};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;

async fn with_pages(mut w: World, sqlite: bool) -> World {
    if sqlite {
        w.ps = rebuild_on_sqlite(w.ps);
        w.mem = None;
    }
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    for (account, password) in [
        ("alice", "alice's password"),
        ("mallory", "mallory's password"),
    ] {
        w.ps.set_password(account, password).await.unwrap();
    }
    w
}

/// The same Person Server, keeping its records in SQLite.
fn rebuild_on_sqlite(ps: PersonServer) -> PersonServer {
    let keys = crate::issuer_keys();
    drop(ps);
    PersonServer::new(
        id("https://ps.example"),
        Arc::new(PrivateKey::ed25519_from_seed(&[4; 32])),
        "ps-1",
        Arc::new(keys),
        Arc::new(SqliteStore::in_memory().unwrap()),
        [9; 32],
    )
    .unwrap()
    .policy(Arc::new(aauth_person_server::dangerous::AutoApprove))
    .policy(Arc::new(AlwaysAsk))
}

/// A deferred person token for the (unbound) assistant: its pending URL and code.
async fn deferred(w: &World) -> (String, String) {
    let (s, headers, json) = w
        .post_full(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    (header_of(&headers, "location"), code_of(&headers))
}

/// Catalogue P9 (one terminal state, one token): eight polls race for one approved request, many rounds,
/// with both stores; exactly one person token each round, and the request then ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_approval_delivers_one_token_however_many_polls_race() {
    for sqlite in [false, true] {
        let w = Arc::new(with_pages(world_with(Some(Arc::new(AlwaysAsk))), sqlite).await);
        for round in 0..12 {
            let (location, code) = deferred(&w).await;
            approve(&w, &code, "alice", "alice's password").await;
            let polls: Vec<_> = (0..8)
                .map(|_| {
                    let (w, location) = (Arc::clone(&w), location.clone());
                    tokio::spawn(async move {
                        poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await
                    })
                })
                .collect();
            let mut tokens = Vec::new();
            for p in polls {
                let (s, _, json) = p.await.unwrap();
                match s {
                    StatusCode::OK => {
                        tokens.push(json["person_token"].as_str().unwrap().to_owned());
                    }
                    // Another poll holds or has made the delivery.
                    StatusCode::ACCEPTED | StatusCode::CONFLICT | StatusCode::GONE => {}
                    other => panic!("round {round}: {other} {json}"),
                }
            }
            assert_eq!(tokens.len(), 1, "round {round} (sqlite: {sqlite})");
            let (s, _, json) =
                poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::GONE, Some("invalid_code"))
            );
        }
    }
}

/// A signed-in person posting decisions with guessed codes: throttled like the page's
/// lookups, so a guess that finally matches approves nothing.
#[tokio::test]
async fn guessed_codes_in_decisions_are_throttled_and_approve_nothing() {
    let w = with_pages(world_with(Some(Arc::new(AlwaysAsk))), false).await;
    let (location, code) = deferred(&w).await;
    // Mallory's own agent asks her something, so that she has a consent page (and its
    // form token) of her own.
    let her_key = PrivateKey::ed25519_from_seed(&[71; 32]);
    let her_token = crate::agent_token(&w.provider, "aauth:mallorys@agent.example", &her_key, 1800);
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]}),
            &her_key,
            &her_token,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let her_code = mallory_code(&w, &her_key, &her_token).await;
    let mut mallory = Browser::default();
    let page = mallory
        .sign_in(&w, &her_code, "mallory", "mallory's password")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let consent = mallory
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    assert_eq!(consent.status, StatusCode::OK);
    let csrf = mallory_csrf(&consent.html);
    assert!(!csrf.is_empty());
    for guess in [
        "ZZZZ-ZZZY",
        "ZZZZ-ZZZX",
        "ZZZZ-ZZZW",
        "ZZZZ-ZZZV",
        "ZZZZ-ZZZT",
        "ZZZZ-ZZZS",
    ] {
        let page = mallory
            .go(
                &w,
                "POST",
                "/interact",
                &[("code", guess), ("csrf", &csrf), ("decision", "grant")],
            )
            .await;
        // Five wrong codes are all a session gets, posted as looked up.
        let expected = if guess == "ZZZZ-ZZZS" {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::GONE
        };
        assert_eq!(page.status, expected, "{guess}");
    }
    let before = w.state();
    let page = mallory
        .go(
            &w,
            "POST",
            "/interact",
            &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.html);
    assert_eq!(w.state(), before, "nothing changed");
    let (s, _, _) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED, "still waiting for the person");
    // The person it belongs to is not affected.
    approve(&w, &code, "alice", "alice's password").await;
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// The throttles a test runs over: in memory, and in Redis when there is one (under a
/// prefix of its own).
async fn throttles(test: &str) -> Vec<(&'static str, Arc<dyn Throttle>)> {
    let mut all: Vec<(&'static str, Arc<dyn Throttle>)> =
        vec![("memory", Arc::new(MemoryThrottle::default()))];
    if let Some(url) = redis_url(test) {
        let redis =
            Redis::connect(&RedisConfig::new(url).prefix(format!("{}:", unique_name("ps"))))
                .await
                .unwrap();
        all.push((
            "redis",
            Arc::new(RedisThrottle::new(redis, ThrottlePolicy::default())),
        ));
    }
    all
}

/// A world with consent pages and mallory's and alice's passwords, over a store that can
/// slow and count its lookups by code, counting guesses in `throttle`.
async fn world_counting_lookups(
    throttle: Arc<dyn Throttle>,
) -> (World, Arc<Hooked<ChangedOnBind>>) {
    let store = Arc::new(ChangedOnBind::over(Arc::new(MemoryStore::default()), false));
    let mut w = crate::world_over(
        Arc::clone(&store) as Arc<dyn aauth_person_server::PsStore>,
        Some(Arc::new(AlwaysAsk)),
    );
    w.ps =
        w.ps.consent_pages(Duration::from_secs(600))
            .throttle(throttle);
    for (account, password) in [
        ("alice", "alice's password"),
        ("mallory", "mallory's password"),
    ] {
        w.ps.set_password(account, password).await.unwrap();
    }
    (w, store)
}

/// Twenty wrong codes posted at once by one person (each from a session of its own, so
/// the per-session limit plays no part) while lookups take their time, as over a
/// network: no more are looked up than one after another would be (five free, and the
/// one that starts the block); the rest are refused before any lookup. With the
/// throttle in memory and in Redis.
#[tokio::test]
async fn code_guesses_sent_at_once_are_throttled_as_one_after_another() {
    for (what, throttle) in
        throttles("code_guesses_sent_at_once_are_throttled_as_one_after_another").await
    {
        let (w, store) = world_counting_lookups(throttle).await;
        let w = Arc::new(w);
        let (_, code) = deferred(&w).await;
        let mut sessions = Vec::new();
        for _ in 0..20 {
            let mut b = Browser::default();
            let page = b.sign_in(&w, &code, "mallory", "mallory's password").await;
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}: {}", page.html);
            let consent = b
                .go(&w, "GET", &header_of(&page.headers, "location"), &[])
                .await;
            assert_eq!(consent.status, StatusCode::OK, "{what}: {}", consent.html);
            let csrf = mallory_csrf(&consent.html);
            sessions.push((b, csrf));
        }
        store.hooks.lookups.store(0, Ordering::SeqCst);
        store.hooks.slow_lookups.store(true, Ordering::SeqCst);
        let guesses: Vec<_> = sessions
            .into_iter()
            .zip(
                "STVWXYZ"
                    .chars()
                    .flat_map(|a| "STV".chars().map(move |b| (a, b))),
            )
            .map(|((mut b, csrf), (x, y))| {
                let w = Arc::clone(&w);
                tokio::spawn(async move {
                    let guess = format!("ZZZZ-ZZ{x}{y}");
                    let form = [
                        ("code", guess.as_str()),
                        ("csrf", csrf.as_str()),
                        ("decision", "grant"),
                    ];
                    b.go(&w, "POST", "/interact", &form).await.status
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for g in guesses {
            statuses.push(g.await.unwrap());
        }
        let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
        assert_eq!(count(StatusCode::GONE), 6, "{what}: {statuses:?}");
        assert_eq!(
            count(StatusCode::TOO_MANY_REQUESTS),
            14,
            "{what}: {statuses:?}"
        );
        assert_eq!(
            store.hooks.lookups.load(Ordering::SeqCst),
            6,
            "{what}: looked up"
        );
    }
}

/// The regression that once reverted counting codes before their lookup: five wrong
/// codes from one address (the free failures of its key, by mallory), then alice, from
/// the same address, opens her own request, approves it, and opens and approves her next
/// one. Each of her codes is counted before its lookup, one past the free failures, and
/// given back: nothing it started refuses her next page. The address's own count is
/// unchanged: its next wrong code is its sixth, and starts the block.
#[tokio::test]
async fn a_person_behind_an_address_with_wrong_codes_gets_their_own_requests() {
    for (what, throttle) in
        throttles("a_person_behind_an_address_with_wrong_codes_gets_their_own_requests").await
    {
        let (w, _) = world_counting_lookups(throttle).await;
        let shared = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let mut mallory = Browser::from(shared);
        let page = mallory
            .sign_in(&w, "ZZZZ-ZZZZ", "mallory", "mallory's password")
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}");
        for guess in [
            "ZZZZ-ZZZY",
            "ZZZZ-ZZZX",
            "ZZZZ-ZZZW",
            "ZZZZ-ZZZV",
            "ZZZZ-ZZZT",
        ] {
            let page = mallory
                .go(&w, "GET", &format!("/interact?code={guess}"), &[])
                .await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{what}: {guess}");
        }
        let mut alice = Browser::from(shared);
        for round in 0..2 {
            let (location, code) = deferred(&w).await;
            let consent = if round == 0 {
                let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
                assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}");
                alice
                    .go(&w, "GET", &header_of(&page.headers, "location"), &[])
                    .await
            } else {
                alice
                    .go(&w, "GET", &format!("/interact?code={code}"), &[])
                    .await
            };
            assert_eq!(
                consent.status,
                StatusCode::OK,
                "{what} {round}: {}",
                consent.html
            );
            let done = decide(&mut alice, &w, &code, &consent.hidden("csrf"), "grant").await;
            assert_eq!(done.status, StatusCode::OK, "{what} {round}: {}", done.html);
            let (s, _, json) =
                poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
            assert_eq!(s, StatusCode::OK, "{what} {round}: {json}");
        }
        let mut other = Browser::from(shared);
        let page = other
            .sign_in(&w, "ZZZZ-ZZZZ", "mallory", "mallory's password")
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}");
        for (guess, expected) in [
            ("ZZZZ-ZZZS", StatusCode::NOT_FOUND),
            ("ZZZZ-ZZZR", StatusCode::TOO_MANY_REQUESTS),
        ] {
            let page = other
                .go(&w, "GET", &format!("/interact?code={guess}"), &[])
                .await;
            assert_eq!(page.status, expected, "{what}: {guess}");
        }
    }
}

/// The code of a new deferred request of the agent with `key` and `token`.
async fn mallory_code(w: &World, key: &PrivateKey, token: &str) -> String {
    let resp = w
        .respond(
            "POST",
            "/person-token",
            Some(&serde_json::json!({"resource": "https://other.example", "capabilities": ["interaction"]})),
            (key, token),
            NOW,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    code_of(resp.headers())
}

/// The consent page's CSRF token (only a signed-in session has one; the sign-in form's
/// is a cookie's).
fn mallory_csrf(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Passwords: wrong ones count per account and per client; past the free tries even the
/// right password is refused before any hash, from any new browser; alice's own browser
/// (which signed in before) still gets in; the lockout ends.
#[tokio::test]
async fn password_guessing_is_throttled_without_locking_the_person_out() {
    let w = with_pages(world_with(Some(Arc::new(AlwaysAsk))), false).await;
    let (_, code) = deferred(&w).await;
    // alice signed in from her browser yesterday: it is known.
    let mut alice = Browser::default();
    let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    // Mallory guesses alice's password from several addresses.
    for n in 0..6u8 {
        let mut guesser = Browser::from(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)));
        let page = guesser.sign_in(&w, &code, "alice", "hunter2").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "try {n}");
    }
    // Now the account is blocked for every new browser, even with the right password.
    let mut fresh = Browser::default();
    let page = fresh.sign_in(&w, &code, "alice", "alice's password").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.html);
    assert!(
        header_of(&page.headers, "retry-after")
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // alice's own browser is exempt from the account's count (its session has ended;
    // its device cookie is still there).
    alice.forget_session();
    let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    // A device cookie is for one account only, and forged ones count for nothing.
    let mut forger = Browser::default();
    let page = forger
        .go(&w, "GET", &format!("/interact?code={code}"), &[])
        .await;
    let csrf = page.hidden("csrf");
    let cookie_page = forger
        .go(
            &w,
            "POST",
            "/interact/login",
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("username", "mallory"),
                ("password", "mallory's password"),
            ],
        )
        .await;
    assert_eq!(cookie_page.status, StatusCode::SEE_OTHER);
    forger.forget_session();
    let page = forger.sign_in(&w, &code, "alice", "alice's password").await;
    assert_eq!(
        page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "mallory's device is not alice's"
    );
    // One client guessing across accounts is throttled by its address too.
    let mut roamer = Browser::from(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
    for account in ["a1", "a2", "a3", "a4", "a5", "a6"] {
        let page = roamer.sign_in(&w, &code, account, "guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{account}");
    }
    let page = roamer
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    // Signing in to one's own account between guesses does not reset the address's
    // count: four guesses, mallory's own password, then the fifth and sixth guesses
    // (the sixth failure starts the block).
    let mut mallory = Browser::from(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77)));
    for account in ["b1", "b2", "b3", "b4"] {
        let page = mallory.sign_in(&w, &code, account, "guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{account}");
    }
    let page = mallory
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    mallory.forget_session();
    for account in ["b5", "b6"] {
        let page = mallory.sign_in(&w, &code, account, "guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{account}");
    }
    let page = mallory.sign_in(&w, &code, "b7", "guess").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.html);
    // The lockout ends (the back-off is seconds at this count).
    let later = NOW.plus(120);
    let mut next_day = Browser::default();
    let login = next_day
        .go_at(&w, "GET", &format!("/interact?code={code}"), &[], later)
        .await;
    let csrf = login.hidden("csrf");
    let page = next_day
        .go_at(
            &w,
            "POST",
            "/interact/login",
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", "alice's password"),
            ],
            later,
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
}

/// Twenty wrong passwords for one account sent at once, from twenty addresses: no more
/// are checked than one after another would be (the five free tries and the one that
/// starts the block); every other is refused before its hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_guesses_sent_at_once_are_throttled_as_one_after_another() {
    let w = Arc::new(with_pages(world_with(Some(Arc::new(AlwaysAsk))), false).await);
    let (_, code) = deferred(&w).await;
    let mut ready = Vec::new();
    for n in 0..20u8 {
        let mut b = Browser::from(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)));
        let login = b
            .go(&w, "GET", &format!("/interact?code={code}"), &[])
            .await;
        ready.push((b, login.hidden("csrf")));
    }
    let guesses: Vec<_> = ready
        .into_iter()
        .map(|(mut b, csrf)| {
            let (w, code) = (Arc::clone(&w), code.clone());
            tokio::spawn(async move {
                let form = [
                    ("code", code.as_str()),
                    ("csrf", csrf.as_str()),
                    ("username", "alice"),
                    ("password", "hunter2"),
                ];
                b.go(&w, "POST", "/interact/login", &form).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(count(StatusCode::UNAUTHORIZED), 6, "{statuses:?}");
    assert_eq!(count(StatusCode::TOO_MANY_REQUESTS), 14, "{statuses:?}");
}

/// Catalogue Z7: an agent cannot open requests for the person without bound.
#[tokio::test]
async fn an_agents_open_requests_are_bounded() {
    let mut w = with_pages(world_with(Some(Arc::new(AlwaysAsk))), false).await;
    w.ps = w.ps.max_pending_per_agent(4);
    for n in 0..4 {
        let (s, _, json) = w
            .post_full(
                PERSON_TOKEN_PATH,
                serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"], "justification": "x".repeat(1000)}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{n}: {json}");
    }
    let before = w.state();
    let (s, headers, json) = w
        .post_full(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{json}"
    );
    assert_eq!(header_of(&headers, "retry-after"), "600");
    // Nothing stored but the record of the agent token seen (already there).
    assert_eq!(w.state(), before);
}

/// A sub-agent token its provider revoked is refused (`revoked_subagent_token`), like the
/// signer's own agent token.
#[tokio::test]
async fn a_revoked_sub_agent_token_is_refused() {
    let w = world_with(None);
    w.bind("aauth:assistant@agent.example", "alice").await;
    let sub_key = PrivateKey::ed25519_from_seed(&[33; 32]);
    let minted = AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse("aauth:assistant+search@agent.example").unwrap(),
        sub_key.public_key(),
    )
    .parent_agent(AgentId::parse("aauth:assistant@agent.example").unwrap())
    .lifetime(Duration::from_secs(600))
    .sign(&w.provider, "key-1", NOW.minus(5), &mut OsRandom)
    .unwrap();
    let ask =
        serde_json::json!({"resource": "https://resource.example", "subagent_token": minted.token});
    let (s, json) = w.post(PERSON_TOKEN_PATH, ask.clone()).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let person = json["person_token"].as_str().unwrap().to_owned();
    // Its provider revokes it (what the revocation endpoint records).
    w.ps.store()
        .revoke(
            &format!("agent https://agent.example {}", minted.jti),
            minted.exp,
            NOW,
        )
        .await
        .unwrap();
    let (s, json) = w.post(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_subagent_token")),
        "{json}"
    );
    // Nor is an auth token issued for it with a person token it got before.
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    // The resource token names the sub-agent's key.
    let rt = w.resource_token_for("https://resource.example", &pc, &sub_key, "read");
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person, "subagent_token": minted.token}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_subagent_token")),
        "{json}"
    );
}

/// Catalogue R1 at the Person Server: the same signed token request twice issues one
/// token; the second is refused as a replay and changes nothing.
#[tokio::test]
async fn a_replayed_token_request_issues_nothing() {
    let w = world_with(None);
    w.bind("aauth:assistant@agent.example", "alice").await;
    let req = aauth_test_support::request::json(
        "POST",
        "https://ps.example/person-token",
        Some(&serde_json::json!({"resource": "https://resource.example"})),
    );
    let (parts, body) = aauth_test_support::request::signed(
        req,
        &w.agent,
        &aauth_headers::Scheme::jwt(w.agent_token.clone()),
        NOW,
    )
    .into_parts();
    let first = w.ps.handle(&parts, &body, NOW).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let before = w.state();
    let again = w.ps.handle(&parts, &body, NOW.plus(3)).await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        again.headers()["signature-error"],
        "error=invalid_signature"
    );
    assert_eq!(w.state(), before, "no second token recorded");
    // Relayed to another Person Server's name: refused too.
    let mut relayed = parts.clone();
    relayed
        .headers
        .insert("host", "ps2.example".parse().unwrap());
    let r = w.ps.handle(&relayed, &body, NOW).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// PS-13: the limit on distinct resources counts the signing agent, so a parent
/// cannot buy more resources by minting sub-agents; and a mission proposal is bounded
/// (its approval mints a person token per resource it names).
#[tokio::test]
async fn sub_agents_share_their_parents_resource_count_and_proposals_are_bounded() {
    let mut w = world_with(None);
    w.ps =
        w.ps.distinct_resources_per_agent(1, Duration::from_secs(3600));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let sub_key = PrivateKey::ed25519_from_seed(&[34; 32]);
    let sub = AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse("aauth:assistant+fresh@agent.example").unwrap(),
        sub_key.public_key(),
    )
    .parent_agent(AgentId::parse("aauth:assistant@agent.example").unwrap())
    .lifetime(Duration::from_secs(600))
    .sign(&w.provider, "key-1", NOW.minus(5), &mut OsRandom)
    .unwrap()
    .token;
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://other.example", "subagent_token": sub}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{json}"
    );
    // A proposal naming more resources than a mission may: refused before anything.
    let resources: Vec<String> = (0..=aauth_person_server::MAX_PROPOSAL_RESOURCES)
        .map(|n| format!("https://r{n}.example"))
        .collect();
    let before = w.state();
    let (s, json) = w
        .post(
            "/mission",
            serde_json::json!({"description": "plan", "resources": resources}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{json}"
    );
    assert_eq!(w.state(), before);
}

/// A decision posted with a code that names another person's request, or a request
/// already answered, is counted as the page's lookup of it is: another person's request
/// ends after five such tries, and a session that posted five codes it may not answer is
/// refused.
#[tokio::test]
async fn posted_decisions_count_every_code_that_is_not_the_persons() {
    let w = with_pages(world_with(Some(Arc::new(AlwaysAsk))), false).await;
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (location, code) = deferred(&w).await;
    // Mallory has a consent page (and its form token) of her own.
    let her_key = PrivateKey::ed25519_from_seed(&[71; 32]);
    let her_token = crate::agent_token(&w.provider, "aauth:mallorys@agent.example", &her_key, 1800);
    let her_code = mallory_code(&w, &her_key, &her_token).await;
    let mut mallory = Browser::default();
    let page = mallory
        .sign_in(&w, &her_code, "mallory", "mallory's password")
        .await;
    let consent = mallory
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    assert_eq!(consent.status, StatusCode::OK);
    let csrf = mallory_csrf(&consent.html);
    for n in 0..5 {
        let page = mallory
            .go(
                &w,
                "POST",
                "/interact",
                &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
            )
            .await;
        assert_eq!(page.status, StatusCode::GONE, "try {n}");
    }
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code")),
        "five tries from another account ended alice's request"
    );

    // alice answers her next request, then posts on its spent code again and again.
    let (location, code) = deferred(&w).await;
    let mut alice = Browser::default();
    let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
    let consent = alice
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    let csrf = consent.hidden("csrf");
    let grant = [
        ("code", code.as_str()),
        ("csrf", csrf.as_str()),
        ("decision", "grant"),
    ];
    assert_eq!(
        alice.go(&w, "POST", "/interact", &grant).await.status,
        StatusCode::OK
    );
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    for n in 0..5 {
        let page = alice.go(&w, "POST", "/interact", &grant).await;
        assert_eq!(page.status, StatusCode::GONE, "try {n}");
    }
    let page = alice.go(&w, "POST", "/interact", &grant).await;
    assert_eq!(
        page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "five spent codes are the session's wrong codes: {}",
        page.html
    );
}

/// A browser is known to an account only while the account keeps the password it signed
/// in with: after the operator resets it, the browser's device cookie no longer spares it
/// the account's count that guessing from elsewhere filled. And a known browser is
/// counted too, apart: wrong passwords from it are limited like anyone's.
#[tokio::test]
async fn a_known_browser_is_forgotten_by_a_password_reset_and_still_counted() {
    let w = with_pages(world_with(Some(Arc::new(AlwaysAsk))), false).await;
    let (_, code) = deferred(&w).await;
    let mut alice = Browser::default();
    let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    alice.forget_session();
    aauth_person_server::Admin::new(Arc::clone(w.ps.store()))
        .reset_password("alice", "alice's new password", NOW)
        .await
        .unwrap();
    for n in 0..6u8 {
        let mut guesser = Browser::from(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)));
        let page = guesser.sign_in(&w, &code, "alice", "hunter2").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "try {n}");
    }
    let page = alice
        .sign_in(&w, &code, "alice", "alice's new password")
        .await;
    assert_eq!(
        page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a device cookie from before the reset is no longer known: {}",
        page.html
    );

    // Mallory's own browser, known to her account: its wrong passwords count as well.
    let mut mallory = Browser::default();
    let page = mallory
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    mallory.forget_session();
    for n in 0..6 {
        let page = mallory.sign_in(&w, &code, "mallory", "guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "try {n}");
    }
    let page = mallory
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.html);
    // ... on a count of its own: a new browser is not blocked by it.
    let mut fresh = Browser::default();
    let page = fresh
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
}
