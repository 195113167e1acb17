//! A malicious resource's pending URL cannot drive the agent without limit: answering
//! each poll with `202`, `Retry-After: 0` and a new interaction code, a new question, or
//! a new valid resource token, it gets the person prompted (or the Person Server asked to
//! reach them), the clarification hook asked, or the Person Server asked for an auth
//! token, each at most its cap for the pending request; then the agent stops with
//! `AgentError::PendingCap` naming the cap, and withdraws the request. Between polls the
//! agent waits at least a second whatever `Retry-After` says, unless it just posted an
//! answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aauth_agent::{AgentError, PendingCap};
use bytes::Bytes;
use http::Request;

use crate::support::{Handler, auth_route, get, parties, response};

/// When each poll (`GET`) and each answer (`POST`) reached the pending URL, in order.
type Seen = Arc<Mutex<Vec<(http::Method, tokio::time::Instant)>>>;

/// A resource at resource.example whose every answer (the first and each poll) is a
/// `202` with `Retry-After: 0` at `/pending/abc`, its requirement from `next(n)` (the
/// `n`th answer's, with its body); a `POST` there (an answer) gets `200`.
fn flooding(next: impl Fn(usize) -> (String, String) + Send + Sync + 'static) -> (Handler, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let count = Arc::new(AtomicUsize::new(0));
    let handler: Handler = Arc::new(move |req: Request<Bytes>| {
        let at_pending = req.uri().path() == "/pending/abc";
        if at_pending {
            log.lock()
                .unwrap()
                .push((req.method().clone(), tokio::time::Instant::now()));
        }
        let resp = if at_pending && req.method() != http::Method::GET {
            response(200, &[], "{}")
        } else {
            let (requirement, body) = next(count.fetch_add(1, Ordering::SeqCst));
            response(
                202,
                &[
                    ("location", "/pending/abc"),
                    ("retry-after", "0"),
                    ("aauth-requirement", &requirement),
                ],
                &body,
            )
        };
        Box::pin(async move { resp })
    });
    (handler, seen)
}

/// Each poll of the pending URL came at least a second after the one before, unless the
/// agent posted an answer in between; returns how many polls there were.
fn polled_at_most_once_a_second(seen: &Seen) -> usize {
    let seen = seen.lock().unwrap().clone();
    let mut last_get: Option<tokio::time::Instant> = None;
    let mut answered = false;
    for (method, at) in &seen {
        match *method {
            http::Method::GET => {
                if let Some(before) = last_get
                    && !answered
                {
                    assert!(
                        at.duration_since(before).as_secs() >= 1,
                        "polled again after {:?}",
                        at.duration_since(before)
                    );
                }
                last_get = Some(*at);
                answered = false;
            }
            http::Method::POST => answered = true,
            _ => {}
        }
    }
    seen.iter().filter(|(m, _)| *m == http::Method::GET).count()
}

/// Whether the agent withdrew the request (`DELETE` on its pending URL).
fn withdrawn(seen: &Seen) -> bool {
    seen.lock()
        .unwrap()
        .iter()
        .any(|(m, _)| *m == http::Method::DELETE)
}

#[tokio::test(start_paused = true)]
async fn a_new_interaction_at_every_poll_prompts_the_person_at_most_the_cap() {
    // Relayed through the Person Server, or shown by the agent itself.
    for relay in [true, false] {
        let w = parties();
        let (handler, seen) = flooding(|n| {
            (
                format!(
                    "requirement=interaction; url=\"https://resource.example/interact\"; code=\"CODE-{n}\""
                ),
                r#"{"status":"pending"}"#.to_owned(),
            )
        });
        w.net.host("resource.example", handler);
        let prompts = Arc::new(AtomicUsize::new(0));
        let p = Arc::clone(&prompts);
        let ps = w.ps();
        ps.relays_taken.store(true, Ordering::SeqCst);
        let client = aauth_agent::AAuthClient::builder(w.agent())
            .clock(w.clock.clone())
            .person_server(ps.clone(), w.keys())
            .relay_interactions(relay)
            .on_interaction(move |_| {
                p.fetch_add(1, Ordering::SeqCst);
            })
            .build(w.net.clone());
        let got = client.send(get("/job")).await;
        assert!(
            matches!(
                got,
                Err(AgentError::PendingCap {
                    cap: PendingCap::Interactions,
                    max: 4
                })
            ),
            "{got:?}"
        );
        let reached = prompts.load(Ordering::SeqCst) + ps.relayed.lock().unwrap().len();
        assert_eq!(reached, PendingCap::Interactions.max(), "relay: {relay}");
        assert_eq!(polled_at_most_once_a_second(&seen), 4);
        assert!(withdrawn(&seen));
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_question_at_every_poll_is_answered_at_most_the_cap() {
    let w = parties();
    let (handler, seen) = flooding(|n| {
        (
            "requirement=clarification".to_owned(),
            format!(r#"{{"status":"pending","clarification":"Question {n}?"}}"#),
        )
    });
    w.net.host("resource.example", handler);
    let asked = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&asked);
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .on_clarification(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
            Some("yes".to_owned())
        })
        .build(w.net.clone());
    let got = client.send(get("/job")).await;
    assert!(
        matches!(
            got,
            Err(AgentError::PendingCap {
                cap: PendingCap::Clarifications,
                max: 8
            })
        ),
        "{got:?}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 8);
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| *m == http::Method::POST)
        .count();
    assert_eq!(posts, 8, "each answer posted once");
    // After an answer the next poll comes at once; otherwise a second apart.
    assert_eq!(polled_at_most_once_a_second(&seen), 8);
    assert!(withdrawn(&seen));
}

/// The resource's own `202 requirement=auth-token` (a held call), then at every poll a
/// fresh resource token, valid in every way (signed by the resource, for this agent's
/// key and the person token presented): the Person Server is asked for an auth token at
/// most the cap.
#[tokio::test(start_paused = true)]
async fn a_new_resource_token_at_every_poll_asks_for_auth_tokens_at_most_the_cap() {
    let w = parties();
    let (_who, real) = w.deferred_handler(auth_route("write"));
    let rs_key = w.rs_key.clone();
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    w.net.host(
        "resource.example",
        Arc::new(move |req: Request<Bytes>| {
            let (real, rs_key, first, log) = (
                real.clone(),
                rs_key.clone(),
                Arc::clone(&first),
                Arc::clone(&log),
            );
            Box::pin(async move {
                let polled = req.uri().path().starts_with("/aauth/pending/");
                if polled {
                    log.lock()
                        .unwrap()
                        .push((req.method().clone(), tokio::time::Instant::now()));
                }
                let template = first.lock().unwrap().clone();
                match template {
                    Some(token) if polled && req.method() == http::Method::GET => {
                        let location = req.uri().path().to_owned();
                        let fresh = fresh_for(&token, &presented_jti(&req), rs_key.as_ref());
                        let requirement =
                            format!("requirement=auth-token; resource-token=\"{fresh}\"");
                        response(
                            202,
                            &[
                                ("location", &location),
                                ("retry-after", "0"),
                                ("aauth-requirement", &requirement),
                            ],
                            r#"{"status":"pending"}"#,
                        )
                    }
                    _ => {
                        let resp = real(req).await;
                        if resp.status() == http::StatusCode::ACCEPTED
                            && let Some(token) = resource_token_of(&resp)
                        {
                            *first.lock().unwrap() = Some(token);
                        }
                        resp
                    }
                }
            })
        }),
    );
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));
    let req = Request::post("https://resource.example/doc")
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"title":"q3"}"#))
        .unwrap();
    let got = client.send(req).await;
    assert!(
        matches!(
            got,
            Err(AgentError::PendingCap {
                cap: PendingCap::ResourceTokens,
                max: 4
            })
        ),
        "{got:?}"
    );
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 4);
    assert_eq!(polled_at_most_once_a_second(&seen), 4);
    assert!(withdrawn(&seen));
}

/// The resource token of a `requirement=auth-token`.
fn resource_token_of(resp: &http::Response<Bytes>) -> Option<String> {
    let value = resp.headers().get("aauth-requirement")?.to_str().ok()?;
    let (_, rest) = value.split_once("resource-token=\"")?;
    Some(rest.split_once('"')?.0.to_owned())
}

/// The claims of compact JWS `token`.
fn claims_of(token: &str) -> serde_json::Map<String, serde_json::Value> {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&aauth_keys::base64url::decode(payload).unwrap()).unwrap()
}

/// The `jti` of the token `req` is signed under (its `Signature-Key`'s `jwt`).
fn presented_jti(req: &Request<Bytes>) -> String {
    let key = req.headers()["signature-key"].to_str().unwrap();
    let (_, rest) = key.split_once("jwt=\"").unwrap();
    let token = rest.split_once('"').unwrap().0;
    claims_of(token)["jti"].as_str().unwrap().to_owned()
}

/// `token` (a resource token) signed again by the resource with a fresh `jti`, for the
/// token the poll presented (`presented_jti`): as valid as the first, and new to the
/// agent.
fn fresh_for(token: &str, presented: &str, key: &dyn aauth_keys::Signer) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut claims = claims_of(token);
    claims.insert(
        "jti".to_owned(),
        format!("flood-{}", N.fetch_add(1, Ordering::SeqCst)).into(),
    );
    claims.insert("presented_jti".to_owned(), presented.into());
    let json = serde_json::Value::Object(claims).to_string();
    aauth_tokens::jws::sign(key, "rs-1", "aa-resource+jwt", json.as_bytes()).unwrap()
}

/// A Person Server's pending request is held to the same cap: a new interaction code at
/// every poll prompts the person at most four times, then the agent stops with
/// `PendingCap` and withdraws the request.
#[tokio::test(start_paused = true)]
async fn a_person_server_asking_for_a_new_interaction_at_every_poll_is_capped() {
    use aauth_agent::HttpPersonServer;
    let w = parties();
    let metadata = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","auth_token_endpoint":"https://ps.example/auth-token","person_token_endpoint":"https://ps.example/person-token"}"#;
    let count = Arc::new(AtomicUsize::new(0));
    let withdrawals = Arc::new(AtomicUsize::new(0));
    let (n, d) = (Arc::clone(&count), Arc::clone(&withdrawals));
    w.net.host(
        "ps.example",
        Arc::new(move |req: Request<Bytes>| {
            let resp = if req.uri().path().starts_with("/.well-known/") {
                response(200, &[], metadata)
            } else if req.method() == http::Method::DELETE {
                d.fetch_add(1, Ordering::SeqCst);
                response(204, &[], "")
            } else {
                let code = n.fetch_add(1, Ordering::SeqCst);
                let requirement = format!(
                    "requirement=interaction; url=\"https://ps.example/interact\"; code=\"CODE-{code}\""
                );
                response(
                    202,
                    &[
                        ("location", "/pending/p1"),
                        ("retry-after", "0"),
                        ("aauth-requirement", &requirement),
                    ],
                    r#"{"status":"pending"}"#,
                )
            };
            Box::pin(async move { resp })
        }),
    );
    let prompts = Arc::new(AtomicUsize::new(0));
    let p = Arc::clone(&prompts);
    let ps = HttpPersonServer::new(crate::support::id("https://ps.example"), w.net.clone())
        .clock(w.clock.clone())
        .on_interaction(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        });
    let got = person_token_within(&ps, &w, 60).await;
    assert!(
        matches!(
            got,
            Err(AgentError::PendingCap {
                cap: PendingCap::Interactions,
                max: 4
            })
        ),
        "{got:?}"
    );
    assert_eq!(prompts.load(Ordering::SeqCst), 4);
    assert_eq!(
        count.load(Ordering::SeqCst),
        5,
        "the fifth code was not shown"
    );
    assert_eq!(
        withdrawals.load(Ordering::SeqCst),
        1,
        "the request was withdrawn"
    );
}

/// A Person Server asking a new question at every poll: the agent answers at most
/// `PendingCap::Clarifications`' bound, then stops with `PendingCap` naming it (the server
/// asked more than the agent's limit, not a requirement nobody could meet), asks the hook
/// nothing more, and withdraws the request.
#[tokio::test(start_paused = true)]
async fn a_person_server_asking_a_new_question_at_every_poll_is_capped() {
    use aauth_agent::HttpPersonServer;
    let w = parties();
    let metadata = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","auth_token_endpoint":"https://ps.example/auth-token","person_token_endpoint":"https://ps.example/person-token"}"#;
    let questions = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(AtomicUsize::new(0));
    let withdrawals = Arc::new(AtomicUsize::new(0));
    let (q, a, d) = (
        Arc::clone(&questions),
        Arc::clone(&answers),
        Arc::clone(&withdrawals),
    );
    w.net.host(
        "ps.example",
        Arc::new(move |req: Request<Bytes>| {
            let at_pending = req.uri().path() == "/pending/p1";
            let resp = if req.uri().path().starts_with("/.well-known/") {
                response(200, &[], metadata)
            } else if req.method() == http::Method::DELETE {
                d.fetch_add(1, Ordering::SeqCst);
                response(204, &[], "")
            } else if at_pending && req.method() == http::Method::POST {
                a.fetch_add(1, Ordering::SeqCst);
                response(200, &[], "{}")
            } else {
                let n = q.fetch_add(1, Ordering::SeqCst);
                response(
                    202,
                    &[
                        ("location", "/pending/p1"),
                        ("retry-after", "0"),
                        ("aauth-requirement", "requirement=clarification"),
                    ],
                    &format!(r#"{{"status":"pending","clarification":"Question {n}?"}}"#),
                )
            };
            Box::pin(async move { resp })
        }),
    );
    let asked = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&asked);
    let ps = HttpPersonServer::new(crate::support::id("https://ps.example"), w.net.clone())
        .clock(w.clock.clone())
        .on_clarification(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
            Some("yes".to_owned())
        });
    let got = person_token_within(&ps, &w, 120).await;
    assert!(
        matches!(
            got,
            Err(AgentError::PendingCap {
                cap: PendingCap::Clarifications,
                max: 8
            })
        ),
        "{got:?}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 8, "the hook asked the cap");
    assert_eq!(answers.load(Ordering::SeqCst), 8, "each answer posted once");
    assert_eq!(
        questions.load(Ordering::SeqCst),
        9,
        "the ninth question was not put to the hook"
    );
    assert_eq!(
        withdrawals.load(Ordering::SeqCst),
        1,
        "the request was withdrawn"
    );
}

/// What `ps` answers the agent of `w` asking for a person token at resource.example,
/// within `secs` (the agent stops well before its own deadline).
async fn person_token_within(
    ps: &aauth_agent::HttpPersonServer,
    w: &crate::support::Parties,
    secs: u64,
) -> Result<String, AgentError> {
    use aauth_agent::PersonServerClient;
    let resource = crate::support::id("https://resource.example");
    tokio::time::timeout(
        std::time::Duration::from_secs(secs),
        ps.person_token(
            &w.agent(),
            aauth_agent::PersonTokenRequest::new(&resource, None),
        ),
    )
    .await
    .expect("the agent stops well before its deadline")
}
