//! AS-41: a person token's cascade that outlasts its hold is answered `202` with a pending
//! URL; the Person Server that revoked polls it with a signed `GET` and gets the `200`
//! with the `downstream` report; anyone else gets the `404` of an unknown id. The
//! resources here are slow (a delay before each revocation is answered), and the clock
//! is Tokio's paused one, so the holds and delays are exact and the tests quick.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_access_server::{IssuedRecord, MemoryStore, REVOCATION_PATH, REVOCATION_PENDING_PATH};
use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use aauth_test_support::{NOW, id, request};

use crate::{World, world};

/// A resource whose revocation endpoint answers `status` (and `body`) after `delay`.
struct SlowResource {
    delay: Duration,
    status: StatusCode,
    body: &'static str,
    /// Whether its metadata names a `revocation_endpoint`.
    endpoint: bool,
    /// The `jti`s revoked at it, in the order their revocations arrived.
    got: Mutex<Vec<String>>,
}

impl SlowResource {
    fn new(delay: Duration, status: StatusCode) -> Arc<Self> {
        Self::answering(delay, status, "", true)
    }

    /// One that answers `status` with `body` at once (its metadata naming a revocation
    /// endpoint when `endpoint`).
    fn answering(
        delay: Duration,
        status: StatusCode,
        body: &'static str,
        endpoint: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            delay,
            status,
            body,
            endpoint,
            got: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait::async_trait]
impl aauth_metadata::Transport for SlowResource {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, aauth_metadata::TransportError> {
        if req.method() == http::Method::GET {
            return Ok(http::Response::new(Bytes::from_static(if self.endpoint {
                br#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json","revocation_endpoint":"https://resource.example/revocation"}"#
            } else {
                br#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json"}"#
            })));
        }
        tokio::time::sleep(self.delay).await;
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        self.got
            .lock()
            .unwrap()
            .push(body["jti"].as_str().unwrap().to_owned());
        let mut r = http::Response::new(Bytes::from_static(self.body.as_bytes()));
        *r.status_mut() = self.status;
        Ok(r)
    }
}

/// Who signs a request: identifier, document, `kid`.
type Signer<'a> = (&'a str, &'a str, &'a str);

const PS: Signer<'static> = ("https://ps.example", "aauth-person.json", "ps-1");

impl World {
    /// The world's Access Server holding revocations `hold`, revoking at `resource`, with
    /// auth token `at-1` for resource.example issued to ps.example against person token
    /// `pt-1` (and ps2.example trusted too).
    async fn cascading(mut self, hold: Duration, resource: Arc<SlowResource>) -> Self {
        let store = Arc::new(MemoryStore::default());
        aauth_access_server::AsStore::record_issued(
            store.as_ref(),
            IssuedRecord::new(
                "at-1".to_owned(),
                id("https://ps.example"),
                "pt-1".to_owned(),
                id("https://resource.example"),
                NOW.as_secs() + 600,
            ),
            NOW,
        )
        .await
        .unwrap();
        self.server = self
            .server
            .store(store)
            .revocation_transport(resource)
            .revocation_hold(hold)
            .trusted([id("https://ps2.example")]);
        self
    }

    /// `method` on `path`, signed by `key` as `signer`, with `Prefer: {prefer}` if given.
    async fn send_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        (signer, dwk, kid): Signer<'_>,
        key: &PrivateKey,
        prefer: Option<&str>,
    ) -> http::Response<Bytes> {
        let req = request::json(method, &format!("https://as.example{path}"), body);
        let scheme = Scheme::JwksUri {
            id: signer.to_owned(),
            dwk: dwk.to_owned(),
            kid: kid.to_owned(),
        };
        let (mut parts, body) = request::signed_unique(req, key, &scheme, NOW).into_parts();
        if let Some(p) = prefer {
            parts
                .headers
                .insert("prefer", HeaderValue::from_str(p).unwrap());
        }
        crate::served(self.server.handle(&parts, &body, NOW).await)
    }

    /// ps.example revokes person token `pt-1`.
    async fn revoke_pt1(&self, prefer: Option<&str>) -> http::Response<Bytes> {
        let body = serde_json::json!({"jti": "pt-1", "exp": NOW.as_secs() + 600});
        self.send_as("POST", REVOCATION_PATH, Some(&body), PS, &self.ps, prefer)
            .await
    }

    /// ps.example polls `location`.
    async fn poll(&self, location: &str) -> http::Response<Bytes> {
        self.send_as("GET", location, None, PS, &self.ps, None)
            .await
    }
}

fn header(r: &http::Response<Bytes>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn json(r: &http::Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(r.body()).unwrap_or(serde_json::Value::Null)
}

/// The `202` of a cascade still running: its pending URL (on this origin, under
/// `/revocation/`, unguessable).
fn pending_url(r: &http::Response<Bytes>) -> String {
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", json(r));
    assert_eq!(json(r), serde_json::json!({"status": "pending"}));
    assert_eq!(header(r, "cache-control"), "no-store");
    let location = header(r, "location");
    let id = location.strip_prefix(REVOCATION_PENDING_PATH).unwrap();
    assert_eq!(id.len(), 43, "32 random bytes: {location}");
    location
}

#[tokio::test(start_paused = true)]
async fn a_slow_cascade_is_answered_202_and_its_poll_gets_the_downstream_report() {
    // The resource answers after 2.5 s (not on a hold's boundary, so that which wakes
    // first is never a tie).
    let resource = SlowResource::new(Duration::from_millis(2500), StatusCode::OK);
    let w = world()
        .cascading(Duration::from_secs(1), Arc::clone(&resource))
        .await;
    let started = tokio::time::Instant::now();
    let r = w.revoke_pt1(None).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "held for the hold"
    );
    let location = pending_url(&r);
    assert_eq!(header(&r, "retry-after"), "0", "polls are held: no pause");
    assert!(resource.got.lock().unwrap().is_empty(), "still under way");

    // Each poll is held too: 202 until the resource has answered, then the 200 with
    // the report.
    let r = w.poll(&location).await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(pending_url(&r), location, "the same pending URL");
    let r = w.poll(&location).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2500),
        "answered when the cascade ended, not at the end of the hold"
    );
    assert_eq!(r.status(), StatusCode::OK);
    let report = serde_json::json!({"downstream": [{"recipient": "https://resource.example"}]});
    assert_eq!(json(&r), report);
    assert_eq!(*resource.got.lock().unwrap(), vec!["at-1".to_owned()]);
    // Given once: a repeated poll is told the pending URL is gone (-11 §Pending URL
    // Security), at once.
    let r = w.poll(&location).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(started.elapsed(), Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn the_final_answer_says_what_failed_downstream() {
    let resource = SlowResource::new(Duration::from_secs(3), StatusCode::SERVICE_UNAVAILABLE);
    let w = world()
        .cascading(Duration::from_secs(1), Arc::clone(&resource))
        .await;
    let location = pending_url(&w.revoke_pt1(None).await);
    let mut r = w.poll(&location).await;
    for _ in 0..5 {
        if r.status() != StatusCode::ACCEPTED {
            break;
        }
        r = w.poll(&location).await;
    }
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        json(&r),
        serde_json::json!({"downstream": [{"recipient": "https://resource.example", "error": "revocation_unavailable"}]})
    );
}

/// AS-41: a `downstream` entry's `error` is `revocation_unsupported` or
/// `revocation_unavailable` only (draft -11 §11.12.3 Revocation Response): a resource
/// answering `429 rate_limited` is reported `revocation_unavailable` (the Person Server
/// resends, and the resource is tried again), never `rate_limited`.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_resource_is_reported_revocation_unavailable() {
    let resource = SlowResource::new(Duration::ZERO, StatusCode::TOO_MANY_REQUESTS);
    let w = world()
        .cascading(Duration::from_secs(5), Arc::clone(&resource))
        .await;
    let r = w.revoke_pt1(None).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", json(&r));
    assert_eq!(
        json(&r),
        serde_json::json!({"downstream": [{"recipient": "https://resource.example", "error": "revocation_unavailable"}]})
    );
    assert_eq!(*resource.got.lock().unwrap(), vec!["at-1".to_owned()]);
}

/// AS-41, draft -11 §11.12.3 Revocation Response: a resource is reported
/// `revocation_unsupported` only when it takes no revocations from this server (its
/// metadata names no `revocation_endpoint`, or it answers `403 unsupported_iss`, the
/// revocation endpoint's error for an issuer it takes none from); any other refusal is
/// `revocation_unavailable`, one a later attempt may get past: a `403` that is not
/// `unsupported_iss`, a `401` refusing this server's signature, an `invalid_request`, a
/// `404`, a `5xx`.
#[tokio::test(start_paused = true)]
async fn only_a_resource_that_takes_no_revocations_from_here_is_reported_unsupported() {
    let unsupported = Some("revocation_unsupported");
    let unavailable = Some("revocation_unavailable");
    let cases: [(StatusCode, &'static str, bool, Option<&str>); 11] = [
        (StatusCode::OK, "", true, None),
        (StatusCode::OK, "", false, unsupported),
        (
            StatusCode::FORBIDDEN,
            r#"{"error":"unsupported_iss"}"#,
            true,
            unsupported,
        ),
        (
            StatusCode::FORBIDDEN,
            r#"{"error":"denied","detail":"not now"}"#,
            true,
            unavailable,
        ),
        (StatusCode::FORBIDDEN, "", true, unavailable),
        (StatusCode::UNAUTHORIZED, "", true, unavailable),
        (
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_request"}"#,
            true,
            unavailable,
        ),
        (StatusCode::NOT_FOUND, "", true, unavailable),
        (StatusCode::TOO_MANY_REQUESTS, "", true, unavailable),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"server_error"}"#,
            true,
            unavailable,
        ),
        (StatusCode::SERVICE_UNAVAILABLE, "", true, unavailable),
    ];
    for (status, body, endpoint, error) in cases {
        let resource = SlowResource::answering(Duration::ZERO, status, body, endpoint);
        let w = world()
            .cascading(Duration::from_secs(5), Arc::clone(&resource))
            .await;
        let r = w.revoke_pt1(None).await;
        assert_eq!(r.status(), StatusCode::OK, "{status} {body}: {}", json(&r));
        let mut entry = serde_json::json!({"recipient": "https://resource.example"});
        if let Some(e) = error {
            entry["error"] = e.into();
        }
        assert_eq!(
            json(&r),
            serde_json::json!({ "downstream": [entry] }),
            "{status} {body} (endpoint named: {endpoint})"
        );
        let sent = if endpoint {
            vec!["at-1".to_owned()]
        } else {
            Vec::new()
        };
        assert_eq!(*resource.got.lock().unwrap(), sent, "{status} {body}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_poll_by_anyone_else_is_the_same_404_as_an_unknown_id() {
    let resource = SlowResource::new(Duration::from_secs(3), StatusCode::OK);
    let w = world()
        .cascading(Duration::from_secs(1), Arc::clone(&resource))
        .await;
    let location = pending_url(&w.revoke_pt1(None).await);
    let unknown = w
        .send_as(
            "GET",
            &format!("{REVOCATION_PENDING_PATH}{}", "A".repeat(43)),
            None,
            PS,
            &w.ps,
            None,
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let others: [(&str, Signer<'_>, &PrivateKey); 3] = [
        (
            "another Person Server this server trusts",
            ("https://ps2.example", "aauth-person.json", "ps-1"),
            &w.ps,
        ),
        (
            "a resource (it may revoke here too)",
            ("https://resource.example", "aauth-resource.json", "rs-1"),
            &w.rs,
        ),
        (
            "a signer this server takes no revocations from",
            ("https://agent.example", "aauth-agent.json", "key-1"),
            &w.provider,
        ),
    ];
    for (who, signer, key) in others {
        let r = w.send_as("GET", &location, None, signer, key, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{who}");
        assert_eq!(r.headers(), unknown.headers(), "{who}");
        assert_eq!(r.body(), unknown.body(), "{who}");
    }
    // Until the cascade has ended, and after.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = w
        .send_as(
            "GET",
            &location,
            None,
            ("https://ps2.example", "aauth-person.json", "ps-1"),
            &w.ps,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A poll that is not signed as the Person Server is refused as any bad signature.
    let stranger = PrivateKey::ed25519_from_seed(&[66; 32]);
    let r = w.send_as("GET", &location, None, PS, &stranger, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The Person Server that revoked still gets its answer.
    let r = w.poll(&location).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", json(&r));
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_sets_the_hold_within_its_bounds() {
    // A long hold, and a sender that will not wait: 202 at once.
    let w = world()
        .cascading(
            Duration::from_secs(20),
            SlowResource::new(Duration::from_secs(3), StatusCode::OK),
        )
        .await;
    let started = tokio::time::Instant::now();
    let location = pending_url(&w.revoke_pt1(Some("wait=0")).await);
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Its poll without `Prefer` is held by the server's hold: the cascade ends within it.
    let r = w.poll(&location).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    // No hold at all, and a sender that waits: the cascade's own answer.
    let w = world()
        .cascading(
            Duration::ZERO,
            SlowResource::new(Duration::from_secs(3), StatusCode::OK),
        )
        .await;
    let started = tokio::time::Instant::now();
    let r = w.revoke_pt1(Some("wait=5")).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", json(&r));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    // And without `Prefer` it is not held: 202, and polls paced by Retry-After.
    let body = serde_json::json!({"jti": "pt-1", "exp": NOW.as_secs() + 600});
    let r = w
        .send_as("POST", REVOCATION_PATH, Some(&body), PS, &w.ps, None)
        .await;
    pending_url(&r);
    assert_eq!(header(&r, "retry-after"), "1");

    // A sender asking for more than the longest hold is held 30 s.
    let w = world()
        .cascading(
            Duration::from_secs(1),
            SlowResource::new(Duration::from_secs(40), StatusCode::OK),
        )
        .await;
    let started = tokio::time::Instant::now();
    pending_url(&w.revoke_pt1(Some("wait=100")).await);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_cascade_done_within_the_hold_is_answered_200_directly() {
    let resource = SlowResource::new(Duration::from_secs(3), StatusCode::OK);
    // The default hold (20 s) outlasts the resource.
    let mut w = world();
    let hold = aauth_metadata::cascade::DEFAULT_REVOCATION_HOLD;
    w = w.cascading(hold, Arc::clone(&resource)).await;
    let started = tokio::time::Instant::now();
    let r = w.revoke_pt1(None).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        json(&r),
        serde_json::json!({"downstream": [{"recipient": "https://resource.example"}]})
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_answers_held_revocations_at_once() {
    use aauth_metadata::serve::Endpoint;
    let resource = SlowResource::new(Duration::from_secs(60), StatusCode::OK);
    let w = world()
        .cascading(Duration::from_secs(20), Arc::clone(&resource))
        .await;
    let started = tokio::time::Instant::now();
    let (held, ()) = tokio::join!(w.revoke_pt1(None), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        w.server.stop_holding();
    });
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "answered at the stop, not at the end of its 20 s hold"
    );
    let location = pending_url(&held);
    // A poll after the stop is not held either.
    let r = w.poll(&location).await;
    assert_eq!(pending_url(&r), location);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert!(resource.got.lock().unwrap().is_empty(), "still under way");
}
