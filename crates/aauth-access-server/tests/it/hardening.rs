//! Hardening: one completed step issues one token however many polls race for it; a
//! stranger costs no key fetch; waiting requests and code guesses are bounded; the
//! resources served can be named; a revocation's `exp` cannot overflow or live forever.

use std::sync::atomic::{AtomicUsize, Ordering};

use aauth_access_server::{REVOCATION_PATH, SqliteStore};
use aauth_tokens::{IssuerKeyResolver, KeyRequest, ResolveError};

use super::*;

/// Counts every key lookup the Access Server makes.
struct Counting(Arc<dyn IssuerKeyResolver>, Arc<AtomicUsize>);

#[async_trait::async_trait]
impl IssuerKeyResolver for Counting {
    async fn resolve(&self, req: &KeyRequest<'_>) -> Result<aauth_keys::PublicKey, ResolveError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.resolve(req).await
    }
}

/// Catalogue P9 (one terminal state, one token): eight polls race for one approved request, many rounds
/// over both stores; exactly one auth token each round, the other polls get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approved_request_issues_one_token_however_many_polls_race() {
    for sqlite in [false, true] {
        let mut w = world();
        w.server = w.server.policy(Arc::new(ApproverFirst));
        if sqlite {
            w.server = w.server.store(Arc::new(SqliteStore::in_memory().unwrap()));
        }
        let w = Arc::new(w);
        for round in 0..20 {
            let t = w.tokens(600);
            let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
            let (s, h, json) = w
                .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
                .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{json}");
            let location = h["location"].to_str().unwrap().to_owned();
            let id = location
                .trim_start_matches(aauth_access_server::PENDING_PATH)
                .to_owned();
            assert!(w.server.decide_approval(&id, true, NOW).await.unwrap());
            let before = w.server.issued().await.unwrap();
            let polls: Vec<_> = (0..8)
                .map(|_| {
                    let (w, location) = (Arc::clone(&w), location.clone());
                    tokio::spawn(
                        async move { w.get_path(&location, "https://ps.example", &w.ps).await },
                    )
                })
                .collect();
            let mut tokens = Vec::new();
            for p in polls {
                let (s, json) = p.await.unwrap();
                match s {
                    StatusCode::OK => tokens.push(json["auth_token"].as_str().unwrap().to_owned()),
                    // Taken by another poll meanwhile, or already answered by it.
                    StatusCode::NOT_FOUND | StatusCode::ACCEPTED | StatusCode::GONE => {}
                    other => panic!("round {round}: {other} {json}"),
                }
            }
            assert_eq!(
                tokens.len(),
                1,
                "round {round} (sqlite: {sqlite}): {tokens:?}"
            );
            assert_eq!(w.server.issued().await.unwrap(), before + 1);
        }
    }
}

/// A request signed as a Person Server this Access Server does not trust is refused
/// before that Person Server's keys are fetched.
#[tokio::test]
async fn an_untrusted_person_server_costs_no_key_fetch() {
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&lookups);
    let w = world_with_keys(move |k| Arc::new(Counting(k, counter)));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, json) = w.ask_as(&request, "https://stranger.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    assert_eq!(lookups.load(Ordering::SeqCst), 0, "no key was looked up");
    // A document no caller of an Access Server publishes: refused the same way.
    let (s, _, _) = w
        .send_signed(
            "POST",
            AUTH_TOKEN_PATH,
            Some(&request),
            ("https://ps.example", "aauth-agent.json", "ps-1"),
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
    // The trusted Person Server is served (and its keys looked up).
    let (s, json) = w.ask(&request).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(lookups.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn a_person_server_has_a_bounded_number_of_waiting_requests() {
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(ApproverFirst))
        .max_waiting_per_person_server(3);
    for n in 0..3 {
        let t = w.tokens(600);
        let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
        let (s, _, json) = w
            .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{n}: {json}");
    }
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, h, json) = w
        .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert_eq!(h["retry-after"], "600");
    assert_eq!(w.server.awaiting_approval(NOW).await.unwrap().len(), 3);
}

/// Guessing interaction codes at the Access Server's page: each wrong code counts against
/// the signed-in account; past the free tries even the right code opens nothing and binds
/// nothing.
#[tokio::test]
async fn interaction_codes_cannot_be_guessed_without_limit() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let mallory = [("cookie", "as-session=mallory")];
    for guess in [
        "AAAAAAAA", "AAAAAAAB", "AAAAAAAC", "AAAAAAAD", "AAAAAAAE", "AAAAAAAF",
    ] {
        let (s, _, _) = w
            .page_with("GET", &format!("/interact?code={guess}"), "", &mallory)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{guess}");
    }
    let (s, h, html) = w
        .page_with("GET", &format!("/interact?code={code}"), "", &mallory)
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{html}");
    assert!(h.contains_key("retry-after"));
    assert!(!html.contains("resource.example"));
    let form = format!("code={code}&decision=grant");
    let (s, _, _) = w
        .page_with(
            "POST",
            "/interact",
            &form,
            &[
                ("cookie", "as-session=mallory"),
                ("origin", "https://as.example"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // Nothing was bound: the request still waits for the person.
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    // alice is not affected by mallory's count.
    let (s, _) = w.page("GET", &format!("/interact?code={code}"), "").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn an_access_server_can_name_the_resources_it_serves() {
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&lookups);
    let mut w = world_with_keys(move |k| Arc::new(Counting(k, counter)));
    w.server = w.server.governed([id("https://calendar.example")]);
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, json) = w.ask(&request).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_resource_token")),
        "{json}"
    );
    // Decided before any token was verified: only the caller's key was looked up.
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
    // Nor does it keep revocations from a resource it does not serve: anyone can stand
    // one up, and each would be a record here.
    let rt = w.resource_token(&t, |b| b);
    assert_eq!(w.revoke_resource_token(&rt).await, StatusCode::FORBIDDEN);
    assert_eq!(w.ask(&request).await.0, StatusCode::BAD_REQUEST);
    w.server = w.server.governed([id("https://resource.example")]);
    let (s, json) = w.ask(&request).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    // Served: its revocations are taken, and the revoked resource token is refused.
    assert_eq!(w.revoke_resource_token(&rt).await, StatusCode::OK);
    let revoked = serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person});
    let (s, json) = w.ask(&revoked).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_resource_token")),
        "{json}"
    );
}

#[tokio::test]
async fn a_revocation_with_the_largest_exp_neither_overflows_nor_lives_forever() {
    for sqlite in [false, true] {
        let mut w = world();
        if sqlite {
            w.server = w.server.store(Arc::new(SqliteStore::in_memory().unwrap()));
        }
        let t = w.tokens(600);
        let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
        let (s, _, _) = w
            .send_signed(
                "POST",
                REVOCATION_PATH,
                Some(&serde_json::json!({"jti": t.person_jti, "exp": u64::MAX})),
                ("https://ps.example", "aauth-person.json", "ps-1"),
                &w.ps,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, json) = w.ask(&request).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("revoked_presented_token")),
            "sqlite: {sqlite}"
        );
    }
}
