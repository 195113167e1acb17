//! The client-credentials token source against an in-memory token endpoint: each client
//! authentication, the cache and its refresh ahead of expiry, one fetch for concurrent
//! callers, retries, the breaker, stale-if-error, and typed refusals.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_keys::time::{FixedClock, UnixTime};
use aauth_keys::{PrivateKey, base64url};
use aauth_metadata::{HttpsUrl, RetryPolicy, Transport, TransportError};
use aauth_oauth::{ClientAuth, ClientConfig, ClientCredentials, ClientError, REFRESH_PAUSE};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::NOW;

const ENDPOINT: &str = "https://as.example/token";

/// What the endpoint answers next; the requests it received.
#[derive(Default)]
struct Endpoint {
    answers: Mutex<VecDeque<Result<(u16, String), String>>>,
    seen: Mutex<Vec<http::Request<Bytes>>>,
    calls: AtomicUsize,
    /// Answer every request with this when the queue is empty.
    fallback: Mutex<Option<(u16, String)>>,
    /// A `DPoP-Nonce` on every answer.
    dpop_nonce: Mutex<Option<&'static str>>,
}

impl Endpoint {
    fn answer(&self, status: u16, body: Value) -> &Self {
        self.answers
            .lock()
            .unwrap()
            .push_back(Ok((status, body.to_string())));
        self
    }

    fn answer_raw(&self, status: u16, body: &str) -> &Self {
        self.answers
            .lock()
            .unwrap()
            .push_back(Ok((status, body.to_owned())));
        self
    }

    fn down(&self, times: usize) -> &Self {
        for _ in 0..times {
            self.answers
                .lock()
                .unwrap()
                .push_back(Err("connection refused".to_owned()));
        }
        self
    }

    fn always(&self, status: u16, body: Value) {
        *self.fallback.lock().unwrap() = Some((status, body.to_string()));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn form(&self, i: usize) -> Vec<(String, String)> {
        let seen = self.seen.lock().unwrap();
        form_urlencoded::parse(seen[i].body())
            .into_owned()
            .collect()
    }

    fn header(&self, i: usize, name: &str) -> Option<String> {
        self.seen.lock().unwrap()[i]
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

#[async_trait::async_trait]
impl Transport for Endpoint {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(req.uri().to_string(), ENDPOINT);
        self.seen.lock().unwrap().push(req);
        // Let concurrent callers pile up behind the one fetch.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = self.answers.lock().unwrap().pop_front();
        let next = next.unwrap_or_else(|| {
            self.fallback
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| "no answer queued".to_owned())
        });
        match next {
            Ok((status, body)) => {
                let mut r = http::Response::new(Bytes::from(body));
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                if status == 503 {
                    r.headers_mut()
                        .insert("retry-after", http::HeaderValue::from_static("0"));
                }
                if let Some(n) = *self.dpop_nonce.lock().unwrap() {
                    r.headers_mut()
                        .insert("dpop-nonce", http::HeaderValue::from_static(n));
                }
                Ok(r)
            }
            Err(reason) => Err(TransportError { reason }),
        }
    }
}

fn token_body(token: &str, expires_in: u64) -> Value {
    json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": "read"})
}

fn source(
    auth: ClientAuth,
    endpoint: &Arc<Endpoint>,
    clock: &Arc<FixedClock>,
) -> Arc<ClientCredentials> {
    let mut config = ClientConfig::new(HttpsUrl::parse(ENDPOINT).unwrap(), auth)
        .scope("read")
        .resource("https://api.example");
    let mut retry = RetryPolicy::default();
    retry.base_delay = Duration::from_millis(1);
    retry.max_delay = Duration::from_millis(2);
    config.retry = retry;
    Arc::new(ClientCredentials::new(
        config,
        Arc::clone(endpoint) as Arc<dyn Transport>,
        clock.clone(),
    ))
}

fn basic() -> ClientAuth {
    ClientAuth::SecretBasic {
        client_id: "svc 1".to_owned(),
        secret: "s3cr:t".to_owned(),
    }
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(UnixTime(NOW)))
}

#[tokio::test]
async fn client_secret_basic_and_post_send_what_rfc_6749_says() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("t1", 300));
    let c = clock();
    let t = source(basic(), &ep, &c).token().await.unwrap();
    assert_eq!(
        (t.access_token.as_str(), t.token_type.as_str()),
        ("t1", "Bearer")
    );
    assert_eq!(t.expires_at, UnixTime(NOW + 300));
    // Basic over the form-encoded id and secret (RFC 6749 §2.3.1).
    let auth = ep.header(0, "authorization").unwrap();
    let decoded = base64url::decode(
        &auth["Basic ".len()..]
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "svc+1:s3cr%3At");
    let form = ep.form(0);
    assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
    assert!(form.contains(&("scope".into(), "read".into())));
    assert!(form.contains(&("resource".into(), "https://api.example".into())));
    assert!(!form.iter().any(|(k, _)| k == "client_secret"));

    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("t2", 300));
    let post = ClientAuth::SecretPost {
        client_id: "svc".to_owned(),
        secret: "pw".to_owned(),
    };
    source(post, &ep, &c).token().await.unwrap();
    assert!(ep.header(0, "authorization").is_none());
    let form = ep.form(0);
    assert!(form.contains(&("client_id".into(), "svc".into())));
    assert!(form.contains(&("client_secret".into(), "pw".into())));
}

/// A server that takes only its issuer identifier as the assertion's `aud` is given it.
#[tokio::test]
async fn private_key_jwt_names_the_audience_it_is_given() {
    let key = Arc::new(PrivateKey::es256_from_scalar(&[4; 32]).unwrap());
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("t", 300));
    let auth = ClientAuth::PrivateKeyJwt {
        client_id: "svc".to_owned(),
        key,
        kid: "k1".to_owned(),
    };
    let config = ClientConfig::new(HttpsUrl::parse(ENDPOINT).unwrap(), auth)
        .assertion_audience("https://as.example");
    let tokens = ClientCredentials::new(config, Arc::clone(&ep) as Arc<dyn Transport>, clock());
    tokens.token().await.unwrap();
    let form = ep.form(0);
    let assertion = &form
        .iter()
        .find(|(n, _)| n == "client_assertion")
        .unwrap()
        .1;
    let claims = assertion.split('.').nth(1).unwrap();
    let c: Value = serde_json::from_slice(&base64url::decode(claims).unwrap()).unwrap();
    assert_eq!(c["aud"], "https://as.example");
}

#[tokio::test]
async fn private_key_jwt_sends_a_signed_assertion_for_the_endpoint() {
    let key = Arc::new(PrivateKey::es256_from_scalar(&[4; 32]).unwrap());
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("t", 300));
    let auth = ClientAuth::PrivateKeyJwt {
        client_id: "svc".to_owned(),
        key: key.clone(),
        kid: "k1".to_owned(),
    };
    source(auth, &ep, &clock()).token().await.unwrap();
    let form = ep.form(0);
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        get("client_assertion_type"),
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let assertion = get("client_assertion");
    let (input, sig) = assertion.rsplit_once('.').unwrap();
    key.public_key()
        .verify(input.as_bytes(), &base64url::decode(sig).unwrap())
        .unwrap();
    let (h, c) = input.split_once('.').unwrap();
    let h: Value = serde_json::from_slice(&base64url::decode(h).unwrap()).unwrap();
    let c: Value = serde_json::from_slice(&base64url::decode(c).unwrap()).unwrap();
    assert_eq!(
        (h["alg"].as_str(), h["kid"].as_str()),
        (Some("ES256"), Some("k1"))
    );
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str()),
        (Some("svc"), Some("svc"))
    );
    assert_eq!(c["aud"], ENDPOINT);
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 60);
    assert_eq!(c["jti"].as_str().unwrap().len(), 22);
}

#[tokio::test]
async fn the_token_is_cached_and_refreshed_a_minute_before_it_expires() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("first", 300))
        .answer(200, token_body("second", 300));
    let c = clock();
    let s = source(basic(), &ep, &c);
    assert_eq!(s.token().await.unwrap().access_token, "first");
    c.advance(Duration::from_secs(239));
    assert_eq!(s.token().await.unwrap().access_token, "first");
    assert_eq!(ep.calls(), 1);
    c.advance(Duration::from_secs(1));
    assert_eq!(s.token().await.unwrap().access_token, "second");
    assert_eq!(ep.calls(), 2);
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_at_half_its_life() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("a", 4))
        .answer(200, token_body("b", 4));
    let c = clock();
    let s = source(basic(), &ep, &c);
    assert_eq!(s.token().await.unwrap().access_token, "a");
    c.advance(Duration::from_secs(1));
    assert_eq!(s.token().await.unwrap().access_token, "a");
    c.advance(Duration::from_secs(1));
    assert_eq!(s.token().await.unwrap().access_token, "b");
}

/// `token_now` inside the refresh margin: the token held at once, to every caller, and
/// one refresh behind them, whose token the next callers get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_now_refreshes_ahead_in_the_background() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("held", 300))
        .answer(200, token_body("next", 300));
    let c = clock();
    let s = source(basic(), &ep, &c);
    assert_eq!(s.token_now().await.unwrap().access_token, "held");
    c.advance(Duration::from_secs(250));
    // The endpoint takes 20 ms to answer: none of these waits for it.
    for _ in 0..5 {
        assert_eq!(s.token_now().await.unwrap().access_token, "held");
    }
    let mut got = String::new();
    for _ in 0..200 {
        got.clone_from(&s.token_now().await.unwrap().access_token);
        if got == "next" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(got, "next");
    assert_eq!(
        ep.calls(),
        2,
        "one refresh for all the callers in the margin"
    );
    // Past expiry with nothing held, it fetches inline, as `token` does.
    ep.answer(200, token_body("third", 300));
    c.advance(Duration::from_secs(400));
    assert_eq!(s.token_now().await.unwrap().access_token, "third");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("only", 300));
    let s = source(basic(), &ep, &clock());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.token().await.unwrap().access_token.clone() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "only");
    }
    assert_eq!(ep.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_caller_refreshes_the_others_keep_the_held_token() {
    for up in [true, false] {
        let ep = Arc::new(Endpoint::default());
        ep.answer(200, token_body("held", 300));
        let c = clock();
        let s = source(basic(), &ep, &c);
        s.token().await.unwrap();
        if up {
            ep.answer(200, token_body("next", 300));
        } else {
            ep.always(503, json!({}));
        }
        // Inside the refresh window: one caller refreshes, the rest are not held up.
        c.advance(Duration::from_secs(250));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { s.token().await.unwrap().access_token.clone() })
            })
            .collect();
        for t in tasks {
            let got = t.await.unwrap();
            assert!(got == "held" || (up && got == "next"), "{got}");
        }
        let refresh = if up { 1 } else { 3 };
        assert_eq!(
            ep.calls(),
            1 + refresh,
            "up: {up}; one refresh, its retries"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_waited_share_a_failed_fetch() {
    let ep = Arc::new(Endpoint::default());
    ep.always(503, json!({}));
    let s = source(basic(), &ep, &clock());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.token().await.unwrap_err() })
        })
        .collect();
    for t in tasks {
        let e = t.await.unwrap();
        assert!(matches!(e, ClientError::Unavailable { .. }), "{e:?}");
    }
    assert_eq!(
        ep.calls(),
        3,
        "one fetch and its retries, not one per caller"
    );
}

#[tokio::test]
async fn an_abandoned_probe_does_not_keep_the_breaker_open() {
    let ep = Arc::new(Endpoint::default());
    ep.always(503, json!({}));
    let c = clock();
    let s = source(basic(), &ep, &c);
    // Five failed fetches open the breaker.
    for _ in 0..5 {
        assert!(s.token().await.is_err());
    }
    assert!(matches!(
        s.breaker(),
        aauth_metadata::BreakerState::Open { .. }
    ));
    // After 30 s the probe goes, and its caller gives up before the answer (the
    // endpoint takes 20 ms): nobody reports its outcome.
    c.advance(Duration::from_secs(30));
    ep.answer(200, token_body("back", 300));
    let gave_up = tokio::time::timeout(Duration::from_millis(5), s.token()).await;
    assert!(gave_up.is_err(), "the probe was abandoned");
    assert!(matches!(
        s.token().await.unwrap_err(),
        ClientError::CircuitOpen { .. }
    ));
    // A whole period later, the next caller probes again.
    c.advance(Duration::from_secs(30));
    assert_eq!(s.token().await.unwrap().access_token, "back");
}

#[tokio::test]
async fn the_servers_refusal_is_typed_and_not_retried() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(
        401,
        json!({"error": "invalid_client", "error_description": "client authentication failed"}),
    );
    let s = source(basic(), &ep, &clock());
    let e = s.token().await.unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            status: 401,
            error: "invalid_client".to_owned(),
            description: Some("client authentication failed".to_owned()),
        }
    );
    assert_eq!(e.code(), "invalid_client");
    assert_eq!(ep.calls(), 1);
    // A refusal without a JSON body still says what happened.
    ep.answer(400, json!("not an object"));
    assert!(matches!(
        s.token().await.unwrap_err(),
        ClientError::Refused { status: 400, ref error, .. } if error == "http_400"
    ));
}

/// A refusal of a refresh ahead of expiry is answered as it is, every time: never paused
/// into the token held (the server said no to this client).
#[tokio::test]
async fn a_refused_refresh_is_never_answered_with_the_token_held() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("held", 300));
    let c = clock();
    let s = source(basic(), &ep, &c);
    s.token().await.unwrap();
    ep.always(401, json!({"error": "invalid_client"}));
    c.advance(Duration::from_secs(250));
    for _ in 0..2 {
        assert!(matches!(
            s.token().await.unwrap_err(),
            ClientError::Refused { ref error, .. } if error == "invalid_client"
        ));
    }
    assert_eq!(ep.calls(), 1 + 2);
}

#[tokio::test]
async fn transient_failures_are_retried_then_typed() {
    let ep = Arc::new(Endpoint::default());
    ep.down(1)
        .answer(503, json!({}))
        .answer(200, token_body("ok", 300));
    let s = source(basic(), &ep, &clock());
    assert_eq!(s.token().await.unwrap().access_token, "ok");
    assert_eq!(ep.calls(), 3);
    let ep = Arc::new(Endpoint::default());
    ep.down(3);
    let s = source(basic(), &ep, &clock());
    assert!(matches!(
        s.token().await.unwrap_err(),
        ClientError::Unavailable { .. }
    ));
    assert_eq!(ep.calls(), 3, "three attempts, the retry policy's default");
}

#[tokio::test]
async fn malformed_token_responses_are_typed() {
    for body in [
        json!({"token_type": "Bearer"}),
        json!({"access_token": "t", "token_type": "mac"}),
        json!({"access_token": "t", "token_type": "Bearer", "expires_in": "300"}),
        // Could never be sent in a header: a failed fetch, not a cached token.
        json!({"access_token": "has a space", "token_type": "Bearer"}),
        json!({"access_token": "caf\u{e9}", "token_type": "Bearer"}),
        json!(r#"{"access_token":"t","access_token":"u","token_type":"Bearer"}"#),
    ] {
        let ep = Arc::new(Endpoint::default());
        match body.as_str() {
            // Sent as written (a JSON value cannot hold a member twice).
            Some(raw) => ep.answer_raw(200, raw),
            None => ep.answer(200, body.clone()),
        };
        let e = source(basic(), &ep, &clock()).token().await.unwrap_err();
        assert!(matches!(e, ClientError::Response { .. }), "{body}: {e:?}");
    }
}

/// A `DPoP` token for a client with no DPoP key could never be presented (no proof can be
/// made for it): the fetch fails, and nothing is cached to fail every request until it
/// expires.
#[tokio::test]
async fn a_dpop_token_for_a_client_without_a_dpop_key_is_a_failed_fetch() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(
        200,
        json!({"access_token": "bound", "token_type": "DPoP", "expires_in": 300}),
    )
    .answer(200, token_body("plain", 300));
    let s = source(basic(), &ep, &clock());
    match s.token().await.unwrap_err() {
        ClientError::Response { reason } => assert!(reason.contains("DPoP key"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.token().await.unwrap().access_token, "plain");
    assert_eq!(ep.calls(), 2, "the refused token was not cached");
}

#[tokio::test]
async fn a_server_that_is_down_gets_the_stale_token_until_expiry_then_the_breaker() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("held", 300));
    let c = clock();
    let s = source(basic(), &ep, &c);
    s.token().await.unwrap();
    ep.always(503, json!({}));
    // Past the refresh point: a call tries (three attempts), fails, serves the token.
    c.advance(Duration::from_secs(250));
    assert_eq!(s.token().await.unwrap().access_token, "held");
    assert_eq!(ep.calls(), 1 + 3);
    // For REFRESH_PAUSE after a failure, calls get the held token without a request.
    for _ in 0..10 {
        assert_eq!(s.token().await.unwrap().access_token, "held");
    }
    assert_eq!(ep.calls(), 1 + 3, "paused after the failure");
    // Past each pause, failures keep counting until the breaker opens (five by
    // default); then no request is sent at all, and the held token is still served.
    for _ in 0..4 {
        c.advance(Duration::from_secs(REFRESH_PAUSE));
        assert_eq!(s.token().await.unwrap().access_token, "held");
    }
    let sent = ep.calls();
    assert!(matches!(
        s.breaker(),
        aauth_metadata::BreakerState::Open { .. }
    ));
    c.advance(Duration::from_secs(REFRESH_PAUSE));
    assert_eq!(s.token().await.unwrap().access_token, "held");
    assert_eq!(ep.calls(), sent, "an open breaker sends nothing");
    // Expired, and past the breaker's 30 s: one probe (not retried), which fails; then
    // the breaker is open again and nothing is sent: each a typed error.
    c.advance(Duration::from_secs(51));
    let sent = ep.calls();
    assert!(matches!(
        s.token().await.unwrap_err(),
        ClientError::Unavailable { .. }
    ));
    assert_eq!(ep.calls(), sent + 1, "a half-open breaker sends one probe");
    assert!(matches!(
        s.token().await.unwrap_err(),
        ClientError::CircuitOpen { .. }
    ));
    assert_eq!(ep.calls(), sent + 1);
    // The server recovers; once the breaker lets one request through, it closes.
    ep.answer(200, token_body("fresh", 300));
    c.advance(Duration::from_secs(30));
    assert_eq!(s.token().await.unwrap().access_token, "fresh");
    assert!(matches!(
        s.breaker(),
        aauth_metadata::BreakerState::Closed { failures: 0 }
    ));
}

#[tokio::test]
async fn secrets_never_reach_debug_output() {
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("the-token-value", 300));
    let s = source(basic(), &ep, &clock());
    let t = s.token().await.unwrap();
    let shown = format!("{s:?} {t:?} {:?}", basic());
    assert!(
        !shown.contains("s3cr") && !shown.contains("the-token-value"),
        "{shown}"
    );
}

/// An API that refuses the first token it sees as `invalid_token`.
#[derive(Clone, Default)]
struct Api {
    seen: Arc<Mutex<Vec<String>>>,
}

impl tower_service::Service<http::Request<Bytes>> for Api {
    type Response = http::Response<Bytes>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<http::Response<Bytes>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
        let mut seen = self.seen.lock().unwrap();
        seen.push(auth);
        let mut r = http::Response::new(req.into_body());
        if seen.len() == 1 {
            *r.status_mut() = http::StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                "www-authenticate",
                http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        std::future::ready(Ok(r))
    }
}

#[tokio::test]
async fn the_layer_puts_the_token_on_requests_and_renews_a_refused_one_once() {
    use tower_layer::Layer as _;
    use tower_service::Service as _;
    let ep = Arc::new(Endpoint::default());
    ep.answer(200, token_body("old", 300))
        .answer(200, token_body("new", 300));
    let tokens = source(basic(), &ep, &clock());
    let api = Api::default();
    let mut svc = aauth_oauth::BearerLayer::new(tokens).layer(api.clone());
    let resp = svc
        .call(
            http::Request::post("https://api.example/x")
                .body(Bytes::from_static(b"body"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.body().as_ref(), b"body", "the body is resent whole");
    assert_eq!(*api.seen.lock().unwrap(), ["Bearer old", "Bearer new"]);
    // Refused again: answered as it is, not retried forever.
    let resp = svc
        .call(
            http::Request::get("https://api.example/y")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(ep.calls(), 2);
}

#[tokio::test]
async fn a_dpop_client_proves_its_key_at_the_token_endpoint_and_on_each_request() {
    use tower_layer::Layer as _;
    use tower_service::Service as _;
    let key: Arc<dyn aauth_keys::Signer> =
        Arc::new(PrivateKey::es256_from_scalar(&[8; 32]).unwrap());
    let ep = Arc::new(Endpoint::default());
    ep.answer(
        200,
        json!({"access_token": "bound-1", "token_type": "DPoP", "expires_in": 300}),
    );
    let c = clock();
    let mut config =
        ClientConfig::new(HttpsUrl::parse(ENDPOINT).unwrap(), basic()).dpop(Arc::clone(&key));
    config.retry.base_delay = Duration::from_millis(1);
    let tokens = Arc::new(ClientCredentials::new(
        config,
        Arc::clone(&ep) as Arc<dyn Transport>,
        c.clone(),
    ));
    let token = tokens.token().await.unwrap();
    assert_eq!(token.token_type, "DPoP");
    // The token request's proof: for POST to the endpoint, by the key, no ath.
    let proof = ep
        .header(0, "dpop")
        .expect("a DPoP proof at the token endpoint");
    let checked = aauth_oauth::DpopProof::check(&proof, "POST", ENDPOINT, "", 60, 5, UnixTime(NOW));
    assert!(
        matches!(checked, Err(aauth_oauth::OAuthError::DpopProof { ref reason }) if reason.contains("ath")),
        "a token request's proof has no ath: {checked:?}"
    );
    // Each API request: `Authorization: DPoP` and a proof for it, with ath.
    let seen_proofs = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        proofs: Arc::clone(&seen_proofs),
    };
    let mut svc = aauth_oauth::BearerLayer::new(Arc::clone(&tokens)).layer(recorder);
    let _ = svc
        .call(
            http::Request::get("https://api.example/x?y=1")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let proofs = seen_proofs.lock().unwrap().clone();
    let (auth, proof) = proofs.first().cloned().unwrap();
    assert_eq!(auth, "DPoP bound-1");
    let checked = aauth_oauth::DpopProof::check(
        &proof,
        "GET",
        "https://api.example/x",
        "bound-1",
        60,
        5,
        UnixTime(NOW),
    )
    .unwrap();
    assert_eq!(checked.jkt, key.public_key().thumbprint().as_str());
}

/// The `nonce` of a proof (whatever else it is for).
fn proof_nonce(proof: &str) -> Option<String> {
    let claims = proof.split('.').nth(1).unwrap();
    let v: Value = serde_json::from_slice(&base64url::decode(claims).unwrap()).unwrap();
    v["nonce"].as_str().map(str::to_owned)
}

/// RFC 9449 §8 and §9: a token endpoint and an API that each want their nonce in the
/// proof say so once (`use_dpop_nonce` with `DPoP-Nonce`); the client sends the request
/// again with it, and puts it in its next proofs to that server without being asked.
#[tokio::test]
async fn a_dpop_client_follows_the_servers_nonces() {
    use tower_layer::Layer as _;
    use tower_service::Service as _;
    let key: Arc<dyn aauth_keys::Signer> =
        Arc::new(PrivateKey::es256_from_scalar(&[8; 32]).unwrap());
    let ep = Arc::new(Endpoint::default());
    *ep.dpop_nonce.lock().unwrap() = Some("as-nonce-1");
    ep.answer(
        400,
        json!({"error": "use_dpop_nonce", "error_description": "nonce required"}),
    )
    .answer(
        200,
        json!({"access_token": "bound-1", "token_type": "DPoP", "expires_in": 300}),
    );
    let mut config =
        ClientConfig::new(HttpsUrl::parse(ENDPOINT).unwrap(), basic()).dpop(Arc::clone(&key));
    config.retry.base_delay = Duration::from_millis(1);
    let tokens = Arc::new(ClientCredentials::new(
        config,
        Arc::clone(&ep) as Arc<dyn Transport>,
        clock(),
    ));
    assert_eq!(tokens.token().await.unwrap().access_token, "bound-1");
    assert_eq!(ep.calls(), 2);
    assert_eq!(proof_nonce(&ep.header(0, "dpop").unwrap()), None);
    assert_eq!(
        proof_nonce(&ep.header(1, "dpop").unwrap()).as_deref(),
        Some("as-nonce-1")
    );
    assert_eq!(tokens.fetches(), 1, "a nonce round is not a retry");

    let api = NonceApi::default();
    let mut svc = aauth_oauth::BearerLayer::new(Arc::clone(&tokens)).layer(api.clone());
    for _ in 0..2 {
        let resp = svc
            .call(
                http::Request::get("https://api.example/x")
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let seen = api.nonces.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            None,
            Some("rs-nonce-1".to_owned()),
            Some("rs-nonce-1".to_owned())
        ],
        "asked once, then remembered"
    );
}

/// An API that wants `rs-nonce-1` in every proof: `401 use_dpop_nonce` without it.
#[derive(Clone, Default)]
struct NonceApi {
    nonces: Arc<Mutex<Vec<Option<String>>>>,
}

impl tower_service::Service<http::Request<Bytes>> for NonceApi {
    type Response = http::Response<Bytes>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<http::Response<Bytes>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let nonce = req
            .headers()
            .get("dpop")
            .and_then(|p| proof_nonce(p.to_str().unwrap()));
        self.nonces.lock().unwrap().push(nonce.clone());
        let mut resp = http::Response::new(Bytes::new());
        if nonce.as_deref() != Some("rs-nonce-1") {
            *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
            resp.headers_mut().insert(
                "www-authenticate",
                http::HeaderValue::from_static(r#"DPoP error="use_dpop_nonce", algs="ES256""#),
            );
            resp.headers_mut()
                .insert("dpop-nonce", http::HeaderValue::from_static("rs-nonce-1"));
        }
        std::future::ready(Ok(resp))
    }
}

/// Records each request's `Authorization` and `DPoP`, and answers `200`.
#[derive(Clone)]
struct Recorder {
    proofs: Arc<Mutex<Vec<(String, String)>>>,
}

impl tower_service::Service<http::Request<Bytes>> for Recorder {
    type Response = http::Response<Bytes>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<http::Response<Bytes>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let get = |n: &str| {
            req.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        self.proofs
            .lock()
            .unwrap()
            .push((get("authorization"), get("dpop")));
        std::future::ready(Ok(http::Response::new(Bytes::new())))
    }
}
