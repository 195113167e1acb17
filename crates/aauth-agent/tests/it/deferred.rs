//! Deferred (`202`) responses: polling, slow-down, interaction, clarification, the
//! deferred auth-token requirement, terminal errors, give-up with `DELETE`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_agent::{AgentError, Interaction, PollPolicy};
use bytes::Bytes;

use crate::support::{NOW, get, parties, response, scripted};

fn pending(headers: &[(&str, &str)], body: &str) -> http::Response<Bytes> {
    let mut h = vec![("location", "/pending/abc"), ("cache-control", "no-store")];
    h.extend_from_slice(headers);
    response(202, &h, body)
}

#[tokio::test(start_paused = true)]
async fn polls_with_retry_after_slows_down_on_429_and_prompts_once() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![
            pending(
                &[("retry-after", "0"), ("aauth-requirement", "requirement=interaction; url=\"https://resource.example/interact\"; code=\"ABCD-1234\"")],
                r#"{"status":"pending"}"#,
            ),
            pending(
                &[("retry-after", "2"), ("aauth-requirement", "requirement=interaction; url=\"https://resource.example/interact\"; code=\"ABCD-1234\"")],
                r#"{"status":"interacting"}"#,
            ),
            response(429, &[], ""),
            pending(&[], r#"{"status":"pending"}"#),
            response(200, &[], "done"),
        ]),
    );
    let prompts: Arc<Mutex<Vec<Interaction>>> = Arc::default();
    let p = prompts.clone();
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .on_interaction(move |i| p.lock().unwrap().push(i.clone()))
        .poll_policy(PollPolicy::default().prefer_wait(Duration::from_secs(20)))
        .build(w.net.clone());
    let started = tokio::time::Instant::now();
    let resp = client.send(get("/job")).await.unwrap();
    assert_eq!(resp.body(), "done");
    let prompts = prompts.lock().unwrap().clone();
    assert_eq!(prompts.len(), 1, "one prompt per interaction");
    assert_eq!(prompts[0].code, "ABCD-1234");
    let seen = w.net.seen();
    assert_eq!(seen.len(), 5);
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.method == http::Method::GET && s.path == "/pending/abc")
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.header("signature-key").starts_with("sig=jwt"))
    );
    assert!(seen[1..].iter().all(|s| s.header("prefer") == "wait=20"));
    assert_eq!(seen[0].header("prefer"), "", "only polls long-poll");
    // 1 s (the server's 0, raised to the minimum interval), then 2 s, then 5 + 5 s
    // after the 429 (default 5 s plus the slow-down), then 5 + 5 s again (the slow-down
    // stays).
    assert_eq!(started.elapsed().as_secs(), 23);
}

#[tokio::test(start_paused = true)]
async fn terminal_answers_end_polling_with_their_code() {
    for (status, body, code) in [
        (403, r#"{"error":"denied"}"#, "denied"),
        (
            403,
            r#"{"error":"revoked","detail":"auth token revoked"}"#,
            "revoked",
        ),
        (408, "", "expired"),
        (410, "", "invalid_code"),
    ] {
        let w = parties();
        w.net.host(
            "resource.example",
            scripted(vec![pending(&[], "{}"), response(status, &[], body)]),
        );
        match w.client(None).send(get("/job")).await {
            Err(AgentError::Deferred { status: s, error }) => {
                assert_eq!((s.as_u16(), error.as_str()), (status, code));
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn past_the_deadline_the_request_is_cancelled() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![pending(&[("retry-after", "30")], "{}")]),
    );
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .poll_policy(PollPolicy::default().deadline(Duration::from_secs(100)))
        .build(w.net.clone());
    assert!(matches!(
        client.send(get("/job")).await,
        Err(AgentError::PollTimeout { secs: 100 })
    ));
    let last = w.net.seen().pop().unwrap();
    assert_eq!(
        (last.method, last.path.as_str()),
        (http::Method::DELETE, "/pending/abc")
    );
}

#[tokio::test(start_paused = true)]
async fn a_pending_url_on_another_origin_or_missing_is_refused() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![response(
            202,
            &[("location", "https://evil.example/pending/1")],
            "{}",
        )]),
    );
    assert!(matches!(
        w.client(None).send(get("/job")).await,
        Err(AgentError::BadDeferred { .. })
    ));
    w.net
        .host("resource.example", scripted(vec![response(202, &[], "{}")]));
    assert!(matches!(
        w.client(None).send(get("/job")).await,
        Err(AgentError::BadDeferred { .. })
    ));
    assert_eq!(
        w.net.seen().len(),
        2,
        "nothing was sent to the other origin"
    );
}

#[tokio::test(start_paused = true)]
async fn a_clarification_is_answered_at_the_pending_url() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![
            pending(
                &[
                    ("retry-after", "0"),
                    ("aauth-requirement", "requirement=clarification"),
                ],
                r#"{"status":"pending","clarification":"Which calendar?"}"#,
            ),
            response(202, &[], "{}"),
            response(200, &[], "done"),
        ]),
    );
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .on_clarification(|q| (q == "Which calendar?").then(|| "Work".to_owned()))
        .build(w.net.clone());
    assert_eq!(client.send(get("/job")).await.unwrap().body(), "done");
    let seen = w.net.seen();
    assert_eq!(seen[1].method, http::Method::POST);
    assert!(seen[1].header("signature-input").contains("content-digest"));
    assert_eq!(seen[0].header("aauth-capabilities"), "clarification");
}

/// AG-26: `requirement=auth-token` delivered as a `202` from a real resource route: the
/// agent gets the auth token and polls with it; the held call runs once.
#[tokio::test(start_paused = true)]
async fn a_deferred_auth_token_requirement_completes_at_the_pending_url() {
    let w = parties();
    let who = w.serve_deferred(crate::support::auth_route("write"));
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));
    let req = http::Request::post("https://resource.example/doc")
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"title":"q3"}"#))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.body(), "person https://ps.example person-1");
    assert_eq!(who.calls(), 1);
    let seen = w.net.seen();
    let steps: Vec<(String, String)> = seen
        .iter()
        .map(|s| {
            (
                format!(
                    "{} {}",
                    s.method,
                    s.path.split('/').take(3).collect::<Vec<_>>().join("/")
                ),
                s.token_typ().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("POST /doc".to_owned(), "aa-agent+jwt".to_owned()),
            ("POST /doc".to_owned(), "aa-person+jwt".to_owned()),
            ("GET /aauth/pending".to_owned(), "aa-auth+jwt".to_owned()),
        ]
    );
    assert_eq!(ps.auth_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Draft -11 §Authorization Endpoint Responses: a resource that authorizes the agent
/// itself answers the authorization request with a `202` (its person decides on its own
/// page), then `200 {"status":"authorized"}` with a session in `AAuth-Access`; the agent
/// MUST handle the `202`, and uses the session after.
#[tokio::test(start_paused = true)]
async fn an_authorization_request_deferred_by_the_resource_ends_authorized() {
    let w = parties();
    let metadata = r#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json","authorization_endpoint":"https://resource.example/authorize"}"#;
    w.net.host(
        "resource.example",
        scripted(vec![
            response(200, &[], metadata),
            pending(
                &[
                    ("retry-after", "0"),
                    (
                        "aauth-requirement",
                        "requirement=interaction; url=\"https://resource.example/consent\"; code=\"WXYZ-2345\"",
                    ),
                ],
                r#"{"status":"pending"}"#,
            ),
            response(
                200,
                &[("aauth-access", "c2Vzc2lvbi0x")],
                r#"{"status":"authorized","scope":"data.read"}"#,
            ),
            response(200, &[], "data"),
        ]),
    );
    let prompts: Arc<Mutex<Vec<Interaction>>> = Arc::default();
    let p = prompts.clone();
    let ps = w.ps();
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .person_server(ps.clone(), w.keys())
        .on_interaction(move |i| p.lock().unwrap().push(i.clone()))
        .build(w.net.clone());
    let resource = aauth_tokens::ServerId::parse("https://resource.example").unwrap();
    client
        .authorize(&resource, "data.read", None)
        .await
        .unwrap();
    assert_eq!(
        prompts.lock().unwrap().len(),
        1,
        "the person was sent to the resource"
    );
    assert_eq!(ps.auth_calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The session the resource granted goes with the next call.
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.body(), "data");
    let seen = w.net.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.path, "/data");
    assert_eq!(last.header("authorization"), "AAuth c2Vzc2lvbi0x");
    assert_eq!(
        seen[2].path, "/pending/abc",
        "the agent polled the pending URL"
    );
}

/// Draft -11 §Relaying Through the Person Server: a resource's interaction goes to the
/// Person Server first. Taken there, the person is not prompted by the agent, which
/// polls the resource's pending URL (the authority on completion) as before; declined,
/// or with relaying turned off, the hook directs the person.
#[tokio::test(start_paused = true)]
async fn a_resources_interaction_is_relayed_through_the_person_server_first() {
    use std::sync::atomic::Ordering;
    for (taken, relay) in [(true, true), (false, true), (true, false)] {
        let w = parties();
        w.net.host(
            "resource.example",
            scripted(vec![
                pending(
                    &[
                        ("retry-after", "0"),
                        (
                            "aauth-requirement",
                            "requirement=interaction; url=\"https://resource.example/link\"; code=\"WXYZ-2345\"",
                        ),
                    ],
                    r#"{"status":"pending"}"#,
                ),
                response(200, &[], "linked"),
            ]),
        );
        let prompts: Arc<Mutex<Vec<Interaction>>> = Arc::default();
        let p = prompts.clone();
        let ps = w.ps();
        ps.relays_taken.store(taken, Ordering::SeqCst);
        let client = aauth_agent::AAuthClient::builder(w.agent())
            .clock(w.clock.clone())
            .person_server(ps.clone(), w.keys())
            .relay_interactions(relay)
            .on_interaction(move |i| p.lock().unwrap().push(i.clone()))
            .build(w.net.clone());
        let resp = client.send(get("/account")).await.unwrap();
        assert_eq!(resp.body(), "linked", "{taken} {relay}");
        let relayed = ps.relayed.lock().unwrap().clone();
        let prompted = prompts.lock().unwrap().clone();
        let asked = Interaction::checked("https://resource.example/link", "WXYZ-2345").unwrap();
        assert_eq!(relayed, if relay { vec![asked.clone()] } else { vec![] });
        assert_eq!(
            prompted,
            if taken && relay { vec![] } else { vec![asked] },
            "{taken} {relay}"
        );
        assert_eq!(w.net.seen()[1].path, "/pending/abc", "the resource polled");
    }
}

/// The HTTP Person Server client relays to the `interaction_endpoint` it publishes,
/// signed as the agent: `202` is taken, `424 interaction_unavailable` (or no endpoint)
/// is not.
#[tokio::test(start_paused = true)]
async fn the_http_person_server_relays_to_its_interaction_endpoint() {
    use aauth_agent::HttpPersonServer;
    let metadata = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","person_token_endpoint":"https://ps.example/person","auth_token_endpoint":"https://ps.example/token","interaction_endpoint":"https://ps.example/interaction"}"#;
    let bare = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","person_token_endpoint":"https://ps.example/person","auth_token_endpoint":"https://ps.example/token"}"#;
    let asked = Interaction::checked("https://resource.example/link", "WXYZ-2345").unwrap();
    for (doc, answer, taken) in [
        (
            metadata,
            Some(pending(&[("retry-after", "5")], r#"{"status":"pending"}"#)),
            true,
        ),
        (
            metadata,
            Some(response(424, &[], r#"{"error":"interaction_unavailable"}"#)),
            false,
        ),
        (bare, None, false),
    ] {
        let w = parties();
        let mut script = vec![response(200, &[], doc)];
        script.extend(answer);
        let answers = scripted(script);
        let posted: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let keep = posted.clone();
        w.net.host(
            "ps.example",
            Arc::new(move |req: http::Request<Bytes>| {
                keep.lock().unwrap().push(req.body().clone());
                answers(req)
            }),
        );
        let ps = HttpPersonServer::new(
            aauth_tokens::ServerId::parse("https://ps.example").unwrap(),
            w.net.clone(),
        )
        .clock(w.clock.clone());
        assert_eq!(ps.relay_as(&w.agent(), &asked).await, taken, "{doc}");
        let seen = w.net.seen();
        if doc == metadata {
            let post = &seen[1];
            assert_eq!(post.path, "/interaction");
            assert!(post.header("signature-key").starts_with("sig=jwt"));
            let body: serde_json::Value =
                serde_json::from_slice(&posted.lock().unwrap()[1]).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"type": "interaction", "url": asked.url, "code": asked.code})
            );
        } else {
            assert_eq!(seen.len(), 1, "no endpoint: nothing posted");
        }
    }
}

/// The Person Server client: a deferred person token prompts the person once and ends
/// with the Person Server's polling error.
#[tokio::test(start_paused = true)]
async fn a_person_servers_deferred_answer_prompts_once_and_ends_with_its_error() {
    use aauth_agent::{HttpPersonServer, PersonServerClient};
    let w = parties();
    let metadata = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","auth_token_endpoint":"https://ps.example/auth-token","person_token_endpoint":"https://ps.example/person-token"}"#;
    let interaction = (
        "aauth-requirement",
        "requirement=interaction; url=\"https://ps.example/interact\"; code=\"ABCD-EFGH\"",
    );
    w.net.host(
        "ps.example",
        scripted(vec![
            response(200, &[], metadata),
            response(
                202,
                &[
                    ("location", "/pending/p1"),
                    ("retry-after", "0"),
                    interaction,
                ],
                r#"{"status":"pending"}"#,
            ),
            response(
                202,
                &[
                    ("location", "/pending/p1"),
                    ("retry-after", "1"),
                    interaction,
                ],
                r#"{"status":"interacting"}"#,
            ),
            response(403, &[], r#"{"error":"denied"}"#),
        ]),
    );
    let prompts: Arc<Mutex<Vec<Interaction>>> = Arc::default();
    let p = prompts.clone();
    let ps = HttpPersonServer::new(crate::support::id("https://ps.example"), w.net.clone())
        .clock(w.clock.clone())
        .on_interaction(move |i| p.lock().unwrap().push(i.clone()));
    let agent = w.agent();
    let resource = crate::support::id("https://resource.example");
    let got = ps
        .person_token(
            &agent,
            aauth_agent::PersonTokenRequest::new(&resource, None),
        )
        .await;
    match got {
        Err(AgentError::Deferred { status, error }) => {
            assert_eq!((status.as_u16(), error.as_str()), (403, "denied"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(prompts.lock().unwrap().len(), 1);
    let seen = w.net.seen();
    let ps_calls: Vec<String> = seen
        .iter()
        .filter(|s| s.header("host") == "ps.example")
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        ps_calls,
        [
            "GET /.well-known/aauth-person.json",
            "POST /person-token",
            "GET /pending/p1",
            "GET /pending/p1"
        ]
    );
    let post = seen
        .iter()
        .find(|s| s.method == http::Method::POST)
        .unwrap();
    assert!(post.header("signature-input").contains("content-digest"));
    assert_eq!(post.token_typ().as_deref(), Some("aa-agent+jwt"));
}

/// Catalogue C9: a `Retry-After` of `u64::MAX` (and a slow_down on top of it) is capped,
/// never added up into an overflow.
#[tokio::test(start_paused = true)]
async fn the_largest_retry_after_is_capped_not_overflowed() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![
            pending(&[("retry-after", "0")], "{}"),
            // A slow_down first, so that the next wait is the largest Retry-After plus it.
            response(429, &[], ""),
            pending(&[("retry-after", "18446744073709551615")], "{}"),
        ]),
    );
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .poll_policy(PollPolicy::default().deadline(Duration::from_secs(100)))
        .build(w.net.clone());
    assert!(matches!(
        client.send(get("/job")).await,
        Err(AgentError::PollTimeout { secs: 100 })
    ));
}

/// Draft -11 "Polling with GET": the agent MUST respect `Retry-After`, also beyond the
/// longest pause it would choose itself, and read it as an HTTP date too.
#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_agents_own_cap_is_respected() {
    let w = parties();
    let soon = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(NOW.0 + 90));
    w.net.host(
        "resource.example",
        scripted(vec![
            pending(&[("retry-after", "120")], r#"{"status":"pending"}"#),
            pending(&[("retry-after", &soon)], r#"{"status":"pending"}"#),
            response(200, &[], "done"),
        ]),
    );
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .build(w.net.clone());
    let started = tokio::time::Instant::now();
    assert_eq!(client.send(get("/job")).await.unwrap().body(), "done");
    // 120 s, then the 90 s until the date (by the client's clock).
    assert_eq!(started.elapsed().as_secs(), 210);
}

/// Draft -11 §Requirement Responses: an interaction `url` is `https` without query or
/// fragment, and its code cannot add to the URL the person opens; anything else is never
/// shown to the person.
#[tokio::test(start_paused = true)]
async fn an_interaction_that_breaks_the_format_is_never_shown() {
    for (url, code) in [
        ("http://resource.example/interact", "ABCD-1234"),
        ("https://resource.example/interact?next=x", "ABCD-1234"),
        ("javascript:alert(1)", "ABCD-1234"),
        ("https://resource.example/interact", "ABCD 1234"),
        ("https://resource.example/interact", "AB&next=x"),
        ("https://resource.example/interact", "AB#frag"),
    ] {
        let w = parties();
        let requirement = format!("requirement=interaction; url=\"{url}\"; code=\"{code}\"");
        w.net.host(
            "resource.example",
            scripted(vec![pending(
                &[("retry-after", "0"), ("aauth-requirement", &requirement)],
                r#"{"status":"pending"}"#,
            )]),
        );
        let prompts: Arc<Mutex<Vec<Interaction>>> = Arc::default();
        let p = prompts.clone();
        let client = aauth_agent::AAuthClient::builder(w.agent())
            .clock(w.clock.clone())
            .on_interaction(move |i| p.lock().unwrap().push(i.clone()))
            .build(w.net.clone());
        let got = client.send(get("/job")).await;
        assert!(
            matches!(got, Err(AgentError::BadDeferred { .. })),
            "{url} {code}: {got:?}"
        );
        assert!(prompts.lock().unwrap().is_empty(), "{url} {code}");
        // Given up by the agent: withdrawn, so the server stops holding it.
        assert!(
            w.net
                .seen()
                .iter()
                .any(|s| s.method == http::Method::DELETE && s.path == "/pending/abc"),
            "{url} {code}"
        );
    }
}

/// A Person Server that asks the same question again is not answered again (nor the
/// hook asked again): the agent waits for its `Retry-After` and keeps polling.
#[tokio::test(start_paused = true)]
async fn a_person_servers_repeated_question_is_answered_once() {
    use aauth_agent::{HttpPersonServer, PersonServerClient};
    let w = parties();
    let metadata = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","auth_token_endpoint":"https://ps.example/auth-token","person_token_endpoint":"https://ps.example/person-token"}"#;
    let question = || {
        response(
            202,
            &[
                ("location", "/pending/p1"),
                ("retry-after", "3"),
                ("aauth-requirement", "requirement=clarification"),
            ],
            r#"{"status":"pending","clarification":"Which calendar?"}"#,
        )
    };
    w.net.host(
        "ps.example",
        scripted(vec![
            response(200, &[], metadata),
            question(),
            response(200, &[], "{}"),
            question(),
            question(),
            response(403, &[], r#"{"error":"denied"}"#),
        ]),
    );
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = asked.clone();
    let ps = HttpPersonServer::new(crate::support::id("https://ps.example"), w.net.clone())
        .clock(w.clock.clone())
        .on_clarification(move |_| {
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some("Work".to_owned())
        });
    let agent = w.agent();
    let resource = crate::support::id("https://resource.example");
    let started = tokio::time::Instant::now();
    let got = ps
        .person_token(
            &agent,
            aauth_agent::PersonTokenRequest::new(&resource, None),
        )
        .await;
    assert!(matches!(got, Err(AgentError::Deferred { .. })), "{got:?}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    let posts = w
        .net
        .seen()
        .iter()
        .filter(|s| s.method == http::Method::POST && s.path == "/pending/p1")
        .count();
    assert_eq!(posts, 1);
    assert_eq!(
        started.elapsed().as_secs(),
        6,
        "the repeats were waited out"
    );
}
