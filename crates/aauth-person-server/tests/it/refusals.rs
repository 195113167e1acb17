//! Four-party, the person approved here and the agent's poll asks the Access Server
//! (PS-54): a terminal refusal ends the request, the agent told once (then `410`) and the
//! Access Server asked once; what may pass (`5xx`, `429`, `clock_skew`) leaves the
//! approval standing for the next poll; and once a `402` is paid, the Person Server waits
//! at the Access Server's pending URL, never paying again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_metadata::{Transport, TransportError};
use aauth_person_server::{PENDING_PATH, PaymentSettler, PendingState, PersonServer};
use aauth_tokens::{PersonClaims, ServerId};
use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;

use crate::consent::{AskForAccess, approve, header_of, poll};
use crate::federation::{ScriptedAs, as_token, federated_world, ok, scripted, waiting_for_alice};
use crate::{NOW, World};

/// A federated world whose Person Server asks the person for auth tokens, made `ps` by
/// `finish`; the agent's auth-token request deferred and approved by alice. Its pending
/// URL, and the claims of the person token it presents.
async fn approved_with(
    transport: Arc<ScriptedAs>,
    finish: impl FnOnce(PersonServer) -> PersonServer,
) -> (World, String, PersonClaims) {
    let mut w = federated_world(transport);
    w.ps = finish(
        w.ps.consent_pages(Duration::from_secs(600))
            .policy(Arc::new(AskForAccess)),
    );
    let (location, code, pc) = waiting_for_alice(&w).await;
    approve(&w, &code, "alice", "correct horse battery").await;
    (w, location, pc)
}

/// An Access Server that answers every token request `status` with `error`, counted.
fn refusing(status: StatusCode, error: &str, asked: &Arc<AtomicUsize>) -> Arc<ScriptedAs> {
    let asked = Arc::clone(asked);
    let body = format!(r#"{{"error":"{error}","detail":"decided for good"}}"#);
    scripted(Box::new(move |_| {
        asked.fetch_add(1, Ordering::SeqCst);
        let mut r = http::Response::new(Bytes::from(body.clone()));
        *r.status_mut() = status;
        Ok(r)
    }))
}

/// The agent's poll of `location`: status and body.
async fn poll_of(w: &World, location: &str) -> (StatusCode, serde_json::Value) {
    let (s, _, json) = poll(w, "GET", location, &w.agent, &w.agent_token, None, NOW).await;
    (s, json)
}

/// After the terminal answer: later polls get `410 invalid_code`, the store holds the
/// request as ended (whichever instance reads it) and no auth token is on record.
async fn ended(w: &World, location: &str, what: &str) {
    for _ in 0..2 {
        let (s, json) = poll_of(w, location).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::GONE, Some("invalid_code")),
            "{what}: {json}"
        );
    }
    let id = location.strip_prefix(PENDING_PATH).unwrap();
    let p = w.ps.store().pending(id).await.unwrap().unwrap();
    assert_eq!(p.state, PendingState::Done, "{what}");
    let (_, auth) = w.ps.store().issued_records(None, NOW).await.unwrap();
    assert!(auth.is_empty(), "{what}: nothing issued: {auth:?}");
}

/// PS-54 at delivery: the Access Server's `403 denied`, `403 revoked` or `400` token
/// endpoint error is relayed to the poll that asked it, and ends the request: the next
/// polls get `410`, and the Access Server is not asked again.
#[tokio::test]
async fn a_terminal_refusal_at_delivery_ends_the_request_the_access_server_asked_once() {
    let cases = [
        (StatusCode::FORBIDDEN, "denied"),
        (StatusCode::FORBIDDEN, "revoked"),
        (StatusCode::BAD_REQUEST, "invalid_resource_token"),
        (StatusCode::BAD_REQUEST, "expired_resource_token"),
    ];
    for (status, error) in cases {
        let asked = Arc::new(AtomicUsize::new(0));
        let (w, location, _) = approved_with(refusing(status, error, &asked), |ps| ps).await;
        let (s, json) = poll_of(&w, &location).await;
        assert_eq!((s, json["error"].as_str()), (status, Some(error)), "{json}");
        assert!(
            json["detail"]
                .as_str()
                .is_some_and(|d| d.contains("decided for good")),
            "{json}"
        );
        ended(&w, &location, error).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1, "{error}: asked once");
    }
}

/// Pays whatever is asked, counted.
#[derive(Default)]
struct Pays(AtomicUsize);

#[async_trait]
impl PaymentSettler for Pays {
    async fn settle(&self, _: &ServerId, _: &str) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What an Access Server answers a poll of its pending URL.
enum Polled {
    /// This status, with this body and these headers.
    Answer(
        StatusCode,
        &'static str,
        &'static [(&'static str, &'static str)],
    ),
    /// No answer: the connection refused.
    Refused,
    /// No answer ever: the connection held open.
    Hangs,
    /// `200` with this auth token.
    Token(String),
}

/// An Access Server that asks for payment (`402`, its pending URL `/pending/p1`), then
/// answers the polls of its pending URL (after the payment) in the order given; each
/// request counted.
#[derive(Default)]
struct PaidThen {
    posts: AtomicUsize,
    polls: AtomicUsize,
    answers: Mutex<std::collections::VecDeque<Polled>>,
}

impl PaidThen {
    fn answering(answers: impl IntoIterator<Item = Polled>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into_iter().collect()),
            ..Self::default()
        })
    }

    /// `(token requests, polls)` it received.
    fn asked(&self) -> (usize, usize) {
        (
            self.posts.load(Ordering::SeqCst),
            self.polls.load(Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl Transport for PaidThen {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let mut r = if req.uri() == "https://as.example/.well-known/aauth-access.json" {
            http::Response::new(Bytes::from_static(
                br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks.json","auth_token_endpoint":"https://as.example/auth-token"}"#,
            ))
        } else if req.method() == http::Method::POST {
            self.posts.fetch_add(1, Ordering::SeqCst);
            let mut r = http::Response::new(Bytes::from_static(br#"{"status":"pending"}"#));
            *r.status_mut() = StatusCode::PAYMENT_REQUIRED;
            r.headers_mut()
                .insert("location", "/pending/p1".parse().unwrap());
            r.headers_mut()
                .insert("www-authenticate", "Payment id=\"1\"".parse().unwrap());
            r
        } else {
            assert_eq!(req.uri(), "https://as.example/pending/p1");
            self.polls.fetch_add(1, Ordering::SeqCst);
            let next = self.answers.lock().unwrap().pop_front();
            match next.expect("a poll the script answers") {
                Polled::Answer(status, body, headers) => {
                    let mut r = http::Response::new(Bytes::from_static(body.as_bytes()));
                    *r.status_mut() = status;
                    for (name, value) in headers {
                        r.headers_mut().insert(*name, value.parse().unwrap());
                    }
                    r
                }
                Polled::Refused => return Err(TransportError::new("connection refused")),
                Polled::Hangs => std::future::pending().await,
                Polled::Token(token) => http::Response::new(Bytes::from(
                    serde_json::json!({"auth_token": token}).to_string(),
                )),
            }
        };
        r.headers_mut()
            .insert("cache-control", "no-store".parse().unwrap());
        Ok(r)
    }
}

/// The poll of the Access Server's pending URL that follows a payment is a poll: its
/// `410` is the Access Server's polling error, relayed, and the request ends; it is not
/// taken for an unknown status, after which each of the agent's polls would ask (and
/// pay) again.
#[tokio::test]
async fn a_polling_error_after_a_payment_ends_the_request_paid_once() {
    let access = PaidThen::answering([Polled::Answer(
        StatusCode::GONE,
        r#"{"error":"invalid_code","detail":"this request has ended"}"#,
        &[],
    )]);
    let pays = Arc::new(Pays::default());
    let (w, location, _) = approved_with(scripted(Box::new(|_| ok(&serde_json::json!({})))), {
        let (access, pays) = (Arc::clone(&access), Arc::clone(&pays));
        move |ps| ps.federation(access).payment_settler(pays)
    })
    .await;
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code")),
        "{json}"
    );
    ended(&w, &location, "410 after a payment").await;
    assert_eq!(
        (access.asked(), pays.0.load(Ordering::SeqCst)),
        ((1, 1), 1),
        "asked, polled and paid once"
    );
}

/// After the payment, what the poll of the Access Server's pending URL gets first
/// (`202 pending` while the payment is confirmed or another poll decides, a `503` or
/// `429` with `Retry-After`, no answer, no answer in time, a `400 clock_skew` that passes
/// with time) is ordinary deferred polling: the Person Server waits there, the agent is
/// told to wait, and its next poll polls that URL and gets the token. The Access Server is asked once and the payment
/// settled once (`PaymentSettler`: once per `402`), never again at a later poll.
#[tokio::test]
async fn after_a_payment_the_person_server_waits_at_the_access_servers_pending_url() {
    let pending = || Polled::Answer(StatusCode::ACCEPTED, r#"{"status":"pending"}"#, &[]);
    let busy = |status| {
        Polled::Answer(
            status,
            r#"{"error":"temporarily_unavailable","detail":"later"}"#,
            &[("retry-after", "3")],
        )
    };
    let cases = [
        ("202 pending", pending()),
        ("503", busy(StatusCode::SERVICE_UNAVAILABLE)),
        ("429", busy(StatusCode::TOO_MANY_REQUESTS)),
        ("no answer", Polled::Refused),
        ("no answer in time", Polled::Hangs),
        (
            "400 clock_skew",
            Polled::Answer(
                StatusCode::BAD_REQUEST,
                r#"{"error":"clock_skew","detail":"iat is ahead of this clock"}"#,
                &[],
            ),
        ),
    ];
    for (what, first) in cases {
        let access = PaidThen::answering([first]);
        let pays = Arc::new(Pays::default());
        let (w, location, pc) =
            approved_with(scripted(Box::new(|_| ok(&serde_json::json!({})))), {
                let (access, pays) = (Arc::clone(&access), Arc::clone(&pays));
                move |ps| {
                    ps.federation(access)
                        .payment_settler(pays)
                        .federation_timeout(Duration::from_millis(300))
                }
            })
            .await;
        let token = as_token(&w, &pc, |b| b);
        access
            .answers
            .lock()
            .unwrap()
            .push_back(Polled::Token(token.clone()));
        let (s, headers, json) =
            poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
        assert_eq!(
            (s, json["status"].as_str()),
            (StatusCode::ACCEPTED, Some("pending")),
            "{what}: {json}"
        );
        assert_eq!(header_of(&headers, "location"), location, "{what}");
        let (s, json) = poll_of(&w, &location).await;
        assert_eq!(s, StatusCode::OK, "{what}: {json}");
        assert_eq!(json["auth_token"].as_str(), Some(token.as_str()), "{what}");
        assert_eq!(
            (access.asked(), pays.0.load(Ordering::SeqCst)),
            ((1, 2), 1),
            "{what}: asked once, polled twice, paid once"
        );
        assert_eq!(poll_of(&w, &location).await.0, StatusCode::GONE, "{what}");
    }
}

/// Pays once the payment processor is done, which takes longer than the federation
/// deadline; counted as it starts and as it ends.
#[derive(Default)]
struct PaysSlowly {
    started: AtomicUsize,
    done: AtomicUsize,
}

/// How long [`PaysSlowly`] takes.
const PAYING: Duration = Duration::from_secs(5);

#[async_trait]
impl PaymentSettler for PaysSlowly {
    async fn settle(&self, _: &ServerId, _: &str) -> Result<(), String> {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(PAYING).await;
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A payment still being made when the federation deadline passes: the `402` counts as
/// paid from the moment the payment starts, so the Person Server waits at the Access
/// Server's pending URL (not a `502`, after which the next poll would ask, and pay,
/// again), and the payment itself is not cut short by the deadline. The agent's polls
/// end with the token; the Access Server is asked once and the payment made once.
#[tokio::test(start_paused = true)]
async fn a_payment_outlasting_the_deadline_is_made_once_and_waited_for() {
    let access = PaidThen::answering([Polled::Answer(
        StatusCode::PAYMENT_REQUIRED,
        r#"{"status":"pending"}"#,
        &[],
    )]);
    let pays = Arc::new(PaysSlowly::default());
    let (w, location, pc) = approved_with(scripted(Box::new(|_| ok(&serde_json::json!({})))), {
        let (access, pays) = (Arc::clone(&access), Arc::clone(&pays));
        move |ps| {
            ps.federation(access)
                .payment_settler(pays)
                .federation_timeout(Duration::from_secs(1))
        }
    })
    .await;
    let token = as_token(&w, &pc, |b| b);
    access
        .answers
        .lock()
        .unwrap()
        .push_back(Polled::Token(token.clone()));
    let (s, headers, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending")),
        "{json}"
    );
    assert_eq!(header_of(&headers, "location"), location);
    // The payment is still being made: the Access Server's `402` at its pending URL.
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    tokio::time::sleep(PAYING).await;
    assert_eq!(
        pays.done.load(Ordering::SeqCst),
        1,
        "the payment was made to its end"
    );
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(json["auth_token"].as_str(), Some(token.as_str()));
    assert_eq!(
        (access.asked(), pays.started.load(Ordering::SeqCst)),
        ((1, 2), 1),
        "asked once, polled twice, paid once"
    );
    assert_eq!(poll_of(&w, &location).await.0, StatusCode::GONE);
}

/// A payment processor that never answers; says when the payment it was asked for was
/// given up (its future dropped).
#[derive(Default)]
struct Hangs(Arc<std::sync::atomic::AtomicBool>);

#[async_trait]
impl PaymentSettler for Hangs {
    async fn settle(&self, _: &ServerId, _: &str) -> Result<(), String> {
        struct GivenUp(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for GivenUp {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _given_up = GivenUp(Arc::clone(&self.0));
        std::future::pending().await
    }
}

/// A payment processor that never answers is given up after five minutes, so that the
/// payment's task ends; meanwhile the Person Server waits at the paid pending URL.
#[tokio::test(start_paused = true)]
async fn a_payment_that_never_answers_is_given_up() {
    let access = PaidThen::answering([Polled::Answer(
        StatusCode::PAYMENT_REQUIRED,
        r#"{"status":"pending"}"#,
        &[],
    )]);
    let hangs = Arc::new(Hangs::default());
    let (w, location, _) = approved_with(scripted(Box::new(|_| ok(&serde_json::json!({})))), {
        let (access, hangs) = (Arc::clone(&access), Arc::clone(&hangs));
        move |ps| {
            ps.federation(access)
                .payment_settler(hangs)
                .federation_timeout(Duration::from_secs(1))
        }
    })
    .await;
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    tokio::time::sleep(Duration::from_secs(290)).await;
    assert!(!hangs.0.load(Ordering::SeqCst), "still waited for");
    tokio::time::sleep(Duration::from_secs(20)).await;
    tokio::task::yield_now().await;
    assert!(
        hangs.0.load(Ordering::SeqCst),
        "given up after five minutes"
    );
}

/// Refuses every payment, counted.
#[derive(Default)]
struct Declines(AtomicUsize);

#[async_trait]
impl PaymentSettler for Declines {
    async fn settle(&self, _: &ServerId, _: &str) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err("the card was declined".to_owned())
    }
}

/// A payment that fails ends the request with the Access Server's `402` relayed
/// (`payment_required`, the settler's reason), though the `402` counted as paid from the
/// moment the payment started: the pending URL is never polled, nor the payment tried
/// again.
#[tokio::test]
async fn a_failed_payment_ends_the_request_tried_once() {
    let access = PaidThen::answering([]);
    let declines = Arc::new(Declines::default());
    let (w, location, _) = approved_with(scripted(Box::new(|_| ok(&serde_json::json!({})))), {
        let (access, declines) = (Arc::clone(&access), Arc::clone(&declines));
        move |ps| ps.federation(access).payment_settler(declines)
    })
    .await;
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("payment_required")),
        "{json}"
    );
    assert!(
        json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("the card was declined")),
        "{json}"
    );
    ended(&w, &location, "a failed payment").await;
    assert_eq!(
        (access.asked(), declines.0.load(Ordering::SeqCst)),
        ((1, 0), 1),
        "asked once, never polled, tried once"
    );
}

/// The same at the token endpoint, the request approved at once: the payment's
/// confirmation pending, the agent gets this server's pending URL (not a `502` after
/// which it would ask, and the Person Server pay, again), and polls the token there.
#[tokio::test]
async fn a_payment_confirmed_later_defers_the_token_request_paid_once() {
    let access = PaidThen::answering([Polled::Answer(
        StatusCode::ACCEPTED,
        r#"{"status":"pending"}"#,
        &[],
    )]);
    let pays = Arc::new(Pays::default());
    let mut w = federated_world(scripted(Box::new(|_| ok(&serde_json::json!({})))));
    w.ps =
        w.ps.federation(Arc::clone(&access) as Arc<dyn Transport>)
            .payment_settler(Arc::clone(&pays) as Arc<dyn PaymentSettler>);
    let (body, pc) = crate::federation::request(&w).await;
    let token = as_token(&w, &pc, |b| b);
    access
        .answers
        .lock()
        .unwrap()
        .push_back(Polled::Token(token.clone()));
    let (s, headers, json) = w
        .post_full(aauth_person_server::AUTH_TOKEN_PATH, body)
        .await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending")),
        "{json}"
    );
    let location = header_of(&headers, "location");
    assert!(location.starts_with(PENDING_PATH), "{location}");
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(json["auth_token"].as_str(), Some(token.as_str()));
    assert_eq!(
        (access.asked(), pays.0.load(Ordering::SeqCst)),
        ((1, 2), 1),
        "asked once, polled twice, paid once"
    );
}

/// What may pass does not end the request: the Access Server's `503` (`502
/// as_unreachable`) and `429` (relayed with its `Retry-After`) leave the approval
/// standing, and the next poll asks again and gets the token.
#[tokio::test]
async fn a_failing_or_busy_access_server_at_delivery_is_asked_again() {
    let asked = Arc::new(AtomicUsize::new(0));
    let token: Arc<Mutex<Option<String>>> = Arc::default();
    let transport = {
        let (asked, token) = (Arc::clone(&asked), Arc::clone(&token));
        scripted(Box::new(move |_| {
            let (status, retry_after) = match asked.fetch_add(1, Ordering::SeqCst) {
                0 => (StatusCode::SERVICE_UNAVAILABLE, None),
                1 => (StatusCode::TOO_MANY_REQUESTS, Some("7")),
                _ => return ok(&serde_json::json!({"auth_token": token.lock().unwrap().clone()})),
            };
            let mut r = http::Response::new(Bytes::from_static(
                br#"{"error":"rate_limited","detail":"later"}"#,
            ));
            *r.status_mut() = status;
            if let Some(after) = retry_after {
                r.headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            Ok(r)
        }))
    };
    let (w, location, pc) = approved_with(transport, |ps| ps).await;
    *token.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("as_unreachable")),
        "{json}"
    );
    let (s, headers, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{json}"
    );
    assert_eq!(header_of(&headers, "retry-after"), "7");
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        json["auth_token"].as_str(),
        token.lock().unwrap().as_deref()
    );
    assert_eq!(asked.load(Ordering::SeqCst), 3);
    assert_eq!(poll_of(&w, &location).await.0, StatusCode::GONE);
}

/// The Access Server's `400 clock_skew` (a token's `iat`, or this server's `created`,
/// ahead of its clock: draft -11 §11.5.2 lets it refuse so) passes with time: relayed to
/// the poll that asked, it leaves the approval standing, and the next poll asks again and
/// gets the token. Every other `400` still ends the request
/// (`a_terminal_refusal_at_delivery_ends_the_request_the_access_server_asked_once`).
#[tokio::test]
async fn a_clock_skew_at_delivery_leaves_the_approval_standing() {
    let asked = Arc::new(AtomicUsize::new(0));
    let token: Arc<Mutex<Option<String>>> = Arc::default();
    let transport = {
        let (asked, token) = (Arc::clone(&asked), Arc::clone(&token));
        scripted(Box::new(move |_| {
            if asked.fetch_add(1, Ordering::SeqCst) > 0 {
                return ok(&serde_json::json!({"auth_token": token.lock().unwrap().clone()}));
            }
            let mut r = http::Response::new(Bytes::from_static(
                br#"{"error":"clock_skew","detail":"iat is ahead of this clock"}"#,
            ));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            Ok(r)
        }))
    };
    let (w, location, pc) = approved_with(transport, |ps| ps).await;
    *token.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("clock_skew")),
        "{json}"
    );
    let id = location.strip_prefix(PENDING_PATH).unwrap();
    let p = w.ps.store().pending(id).await.unwrap().unwrap();
    assert!(
        matches!(p.state, PendingState::Approved { .. }),
        "the approval stands: {:?}",
        p.state
    );
    let (s, json) = poll_of(&w, &location).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        json["auth_token"].as_str(),
        token.lock().unwrap().as_deref()
    );
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(poll_of(&w, &location).await.0, StatusCode::GONE);
}
