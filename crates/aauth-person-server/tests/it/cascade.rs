//! PS-111: an agent token's cascade that outlasts its hold is answered `202` with a
//! pending URL; the agent provider that revoked polls it with a signed `GET` and gets the
//! empty `200`; anyone else gets the `404` of an unknown id. And PS-114 end to end: this
//! Person Server's revocation sender, revoking at a real Access Server whose resource is
//! slow, follows the Access Server's `202` to its `downstream` report. The clock is
//! Tokio's paused one, so the holds and delays are exact and the tests quick.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_person_server::{
    HttpRevocationNotifier, PERSON_TOKEN_PATH, REVOCATION_PATH, REVOCATION_PENDING_PATH,
    RevocationNotifier,
};
use aauth_tokens::{PersonClaims, ServerId};
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::revocation::jti_of;
use crate::{NOW, World, id, world};

/// Revokes at resources after `delay`, recording what it revoked.
struct SlowNotifier {
    delay: Duration,
    revoked: Mutex<Vec<String>>,
}

#[async_trait]
impl RevocationNotifier for SlowNotifier {
    async fn notify(&self, _resource: &ServerId, jti: &str, _exp: u64) -> Result<(), String> {
        tokio::time::sleep(self.delay).await;
        self.revoked.lock().unwrap().push(jti.to_owned());
        Ok(())
    }
}

/// Who signs a request: identifier, document, `kid`, key.
type Signer<'a> = (&'a str, &'a str, &'a str, &'a PrivateKey);

/// A world whose Person Server takes revocations from agent.example and
/// resource.example (as an agent provider), holds them `hold`, and whose notifier takes
/// `delay` per resource; the agent bound and holding a person token for
/// resource.example. With the notifier and that person token's `jti`.
async fn slow_cascade(hold: Duration, delay: Duration) -> (World, Arc<SlowNotifier>, String) {
    let notifier = Arc::new(SlowNotifier {
        delay,
        revoked: Mutex::new(Vec::new()),
    });
    let mut w = world();
    w.ps =
        w.ps.revoking_providers([id("https://agent.example"), id("https://resource.example")])
            .revocation_notifier(notifier.clone())
            .revocation_hold(hold);
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    (w, notifier, pc.jti)
}

impl World {
    /// The agent provider itself.
    fn provider_signer(&self) -> Signer<'_> {
        (
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            &self.provider,
        )
    }

    /// `method` on `path`, signed as `signer`, with `Prefer: {prefer}` if given.
    async fn send_signed(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        (signer, dwk, kid, key): Signer<'_>,
        prefer: Option<&str>,
    ) -> http::Response<Bytes> {
        let scheme = Scheme::JwksUri {
            id: signer.to_owned(),
            dwk: dwk.to_owned(),
            kid: kid.to_owned(),
        };
        let (mut parts, body) = crate::arriving(method, path, body, key, &scheme, NOW);
        if let Some(p) = prefer {
            parts
                .headers
                .insert("prefer", HeaderValue::from_str(p).unwrap());
        }
        self.ps.handle(&parts, &body, NOW).await.unwrap()
    }

    /// The provider revokes the world's agent token.
    async fn revoke_agent(&self, prefer: Option<&str>) -> http::Response<Bytes> {
        let body =
            serde_json::json!({"jti": jti_of(&self.agent_token), "exp": NOW.as_secs() + 1800});
        self.send_signed(
            "POST",
            REVOCATION_PATH,
            Some(&body),
            self.provider_signer(),
            prefer,
        )
        .await
    }
}

fn header(r: &http::Response<Bytes>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The `202` of a cascade still running: its pending URL (under `/revocation/`,
/// unguessable).
fn pending_url(r: &http::Response<Bytes>) -> String {
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
    assert_eq!(crate::json_of(r), serde_json::json!({"status": "pending"}));
    let location = header(r, "location");
    let id = location.strip_prefix(REVOCATION_PENDING_PATH).unwrap();
    assert_eq!(id.len(), 43, "32 random bytes: {location}");
    location
}

/// The empty `200` of a cascade done (nothing reported to the provider).
fn assert_done(r: &http::Response<Bytes>) {
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    assert!(r.body().is_empty(), "no downstream report to the provider");
    assert_eq!(header(r, "cache-control"), "no-store");
}

#[tokio::test(start_paused = true)]
async fn a_slow_cascade_is_answered_202_and_its_poll_gets_the_empty_200() {
    let (w, notifier, person_jti) =
        slow_cascade(Duration::from_secs(1), Duration::from_millis(2500)).await;
    let started = tokio::time::Instant::now();
    let r = w.revoke_agent(None).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "held for the hold"
    );
    let location = pending_url(&r);
    assert_eq!(header(&r, "retry-after"), "0", "polls are held: no pause");
    // The agent token is refused already; its cascade is under way.
    let (s, _) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(notifier.revoked.lock().unwrap().is_empty());

    let provider = w.provider_signer();
    let r = w.send_signed("GET", &location, None, provider, None).await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(pending_url(&r), location, "the same pending URL");
    let r = w.send_signed("GET", &location, None, provider, None).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2500),
        "answered when the cascade ended, not at the end of the hold"
    );
    assert_done(&r);
    assert_eq!(*notifier.revoked.lock().unwrap(), vec![person_jti.clone()]);
    assert!(w.ps.store().is_revoked(&person_jti, NOW).await.unwrap());
    // Given once: a repeated poll is told the pending URL is gone (-11 §Pending URL
    // Security), at once.
    let r = w.send_signed("GET", &location, None, provider, None).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(started.elapsed(), Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn a_poll_by_anyone_else_is_the_same_404_as_an_unknown_id() {
    let (w, _, _) = slow_cascade(Duration::from_secs(1), Duration::from_secs(3)).await;
    let location = pending_url(&w.revoke_agent(None).await);
    let unknown = w
        .send_signed(
            "GET",
            &format!("{REVOCATION_PENDING_PATH}{}", "A".repeat(43)),
            None,
            w.provider_signer(),
            None,
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let others: [(&str, Signer<'_>); 3] = [
        (
            "another agent provider this server takes revocations from",
            (
                "https://resource.example",
                "aauth-agent.json",
                "rs-agents",
                &w.rs,
            ),
        ),
        (
            "a resource (it may revoke here too)",
            (
                "https://resource.example",
                "aauth-resource.json",
                "rs-1",
                &w.rs,
            ),
        ),
        (
            "an agent provider this server takes no revocations from",
            (
                "https://other.example",
                "aauth-agent.json",
                "rs-agents",
                &w.rs,
            ),
        ),
    ];
    for (who, signer) in others {
        let r = w.send_signed("GET", &location, None, signer, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{who}");
        assert_eq!(r.headers(), unknown.headers(), "{who}");
        assert_eq!(r.body(), unknown.body(), "{who}");
    }
    // Another method on the pending URL, even by the provider: the same 404.
    let r = w
        .send_signed("DELETE", &location, None, w.provider_signer(), None)
        .await;
    assert_eq!((r.status(), r.body()), (unknown.status(), unknown.body()));
    // A poll not signed by the provider's key is refused as any bad signature.
    let stranger = PrivateKey::ed25519_from_seed(&[61; 32]);
    let r = w
        .send_signed(
            "GET",
            &location,
            None,
            (
                "https://agent.example",
                "aauth-agent.json",
                "key-1",
                &stranger,
            ),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The provider still gets its answer, once the cascade has ended.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = w
        .send_signed("GET", &location, None, w.provider_signer(), None)
        .await;
    assert_done(&r);
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_sets_the_hold_within_its_bounds() {
    // A long hold, and a provider that will not wait: 202 at once.
    let (w, _, _) = slow_cascade(Duration::from_secs(20), Duration::from_secs(3)).await;
    let started = tokio::time::Instant::now();
    let location = pending_url(&w.revoke_agent(Some("wait=0")).await);
    assert_eq!(started.elapsed(), Duration::ZERO);
    let r = w
        .send_signed("GET", &location, None, w.provider_signer(), None)
        .await;
    assert_done(&r);
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    // No hold at all, and a provider that waits: the cascade's own answer.
    let (w, _, _) = slow_cascade(Duration::ZERO, Duration::from_secs(3)).await;
    let started = tokio::time::Instant::now();
    assert_done(&w.revoke_agent(Some("wait=5")).await);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    // Without `Prefer`, not held: 202, and polls paced by Retry-After.
    let r = w.revoke_agent(None).await;
    pending_url(&r);
    assert_eq!(header(&r, "retry-after"), "1");

    // A provider asking for more than the longest hold is held 30 s.
    let (w, _, _) = slow_cascade(Duration::from_secs(1), Duration::from_secs(40)).await;
    let started = tokio::time::Instant::now();
    pending_url(&w.revoke_agent(Some("wait=100")).await);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_cascade_done_within_the_default_hold_is_answered_200_directly() {
    let (w, _, _) = slow_cascade(
        aauth_metadata::cascade::DEFAULT_REVOCATION_HOLD,
        Duration::from_secs(3),
    )
    .await;
    let started = tokio::time::Instant::now();
    let r = w.revoke_agent(None).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_done(&r);
    assert!(r.headers().get("location").is_none());
}

/// A resource that answers revocations with `status` after `delay`.
struct SlowResource {
    delay: Duration,
    status: StatusCode,
    got: Mutex<Vec<String>>,
}

#[async_trait]
impl aauth_metadata::Transport for SlowResource {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, aauth_metadata::TransportError> {
        if req.method() == http::Method::GET {
            return Ok(http::Response::new(Bytes::from_static(
                br#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json","revocation_endpoint":"https://resource.example/revocation"}"#,
            )));
        }
        tokio::time::sleep(self.delay).await;
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        self.got
            .lock()
            .unwrap()
            .push(body["jti"].as_str().unwrap().to_owned());
        let mut r = http::Response::new(Bytes::new());
        *r.status_mut() = self.status;
        Ok(r)
    }
}

/// An Access Server reached in process, each request as it arrived (method, path) with
/// the status it was answered.
struct ToAccessServer {
    server: aauth_access_server::AccessServer,
    seen: Mutex<Vec<(String, String, StatusCode)>>,
}

#[async_trait]
impl aauth_metadata::Transport for ToAccessServer {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, aauth_metadata::TransportError> {
        let (mut parts, body) = req.into_parts();
        let host = parts.uri.host().unwrap().to_owned();
        parts.uri = parts
            .uri
            .path_and_query()
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        parts.headers.insert("host", host.parse().unwrap());
        let resp = self.server.handle(&parts, &body, NOW).await.unwrap();
        self.seen.lock().unwrap().push((
            parts.method.to_string(),
            parts.uri.to_string(),
            resp.status(),
        ));
        Ok(resp)
    }
}

/// This Person Server's revocation of person token `pt-1` at as.example, which issued
/// auth token `at-1` against it for resource.example, whose revocation endpoint answers
/// `status` after 2.5 s; the Access Server holds revocations 1 s. The notifier's outcome,
/// the requests the Access Server saw, the revocations the resource saw.
async fn revoke_at_a_slow_access_server(
    status: StatusCode,
) -> (
    Result<(), String>,
    Vec<(String, String, StatusCode)>,
    Vec<String>,
) {
    use aauth_access_server::{AccessServer, AsStore, IssuedRecord, MemoryStore};
    let ps_key = PrivateKey::ed25519_from_seed(&[4; 32]);
    let keys = aauth_test_support::verify::issuer_keys(&[(
        "https://ps.example",
        "aauth-person.json",
        "ps-1",
        ps_key.public_key(),
    )]);
    let store = Arc::new(MemoryStore::default());
    store
        .record_issued(
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
    let resource = Arc::new(SlowResource {
        delay: Duration::from_millis(2500),
        status,
        got: Mutex::new(Vec::new()),
    });
    let server = AccessServer::new(
        id("https://as.example"),
        Arc::new(PrivateKey::ed25519_from_seed(&[5; 32])),
        "as-1",
        Arc::new(keys),
    )
    .unwrap()
    .trusted([id("https://ps.example")])
    .store(store)
    .revocation_transport(resource.clone())
    .revocation_hold(Duration::from_secs(1));
    let transport = Arc::new(ToAccessServer {
        server,
        seen: Mutex::new(Vec::new()),
    });
    let notifier = HttpRevocationNotifier::new(
        id("https://ps.example"),
        Arc::new(ps_key),
        "ps-1",
        transport.clone(),
        Arc::new(aauth_keys::time::FixedClock::new(NOW)),
    );
    let outcome = notifier
        .notify_access_server(&id("https://as.example"), "pt-1", NOW.as_secs() + 600)
        .await;
    let seen = transport.seen.lock().unwrap().clone();
    let got = resource.got.lock().unwrap().clone();
    (outcome, seen, got)
}

/// The (method, status) of each revocation request the Access Server saw, its
/// metadata fetch left out; `GET` for a poll of its pending URL.
fn exchanges(seen: &[(String, String, StatusCode)]) -> Vec<(String, StatusCode)> {
    seen.iter()
        .filter(|(_, path, _)| path.starts_with(REVOCATION_PATH))
        .map(|(m, path, s)| {
            if m == "GET" {
                assert!(path.starts_with(REVOCATION_PENDING_PATH), "{path}");
            }
            (m.clone(), *s)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_revoker_follows_a_slow_access_servers_202_to_its_downstream_report() {
    let (outcome, seen, got) = revoke_at_a_slow_access_server(StatusCode::OK).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(got, vec!["at-1".to_owned()]);
    // Sent once; 202 after the Access Server's 1 s hold; a poll held 1 s (202); a poll
    // answered when the resource answered (200, the report read: nothing failed).
    let (post, get) = ("POST".to_owned(), "GET".to_owned());
    assert_eq!(
        exchanges(&seen),
        vec![
            (post, StatusCode::ACCEPTED),
            (get.clone(), StatusCode::ACCEPTED),
            (get, StatusCode::OK),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_in_the_report_reached_by_polling_is_sent_again_and_then_reported() {
    let (outcome, seen, got) =
        revoke_at_a_slow_access_server(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        outcome,
        Err("downstream: https://resource.example: revocation_unavailable".to_owned())
    );
    assert_eq!(
        got,
        vec!["at-1".to_owned(), "at-1".to_owned()],
        "re-attempted"
    );
    let posts = exchanges(&seen)
        .iter()
        .filter(|(m, s)| m == "POST" && *s == StatusCode::ACCEPTED)
        .count();
    let finals = exchanges(&seen)
        .iter()
        .filter(|(m, s)| m == "GET" && *s == StatusCode::OK)
        .count();
    assert_eq!(
        (posts, finals),
        (2, 2),
        "each sending answered 202 and its report reached by polling"
    );
}

/// Sends its first notice, then hangs on every later one while `hang` is set (a resource
/// that never answers); `sent` holds the notices that came back.
pub(crate) struct HangsAfterFirst {
    pub(crate) hang: std::sync::atomic::AtomicBool,
    pub(crate) calls: std::sync::atomic::AtomicUsize,
    pub(crate) sent: Mutex<Vec<String>>,
}

impl HangsAfterFirst {
    /// Hanging after its first notice.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            hang: true.into(),
            calls: 0.into(),
            sent: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl RevocationNotifier for HangsAfterFirst {
    async fn notify(&self, _resource: &ServerId, jti: &str, _exp: u64) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.calls.fetch_add(1, SeqCst) > 0 && self.hang.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        self.sent.lock().unwrap().push(jti.to_owned());
        Ok(())
    }
}

/// A revocation whose request is dropped while its cascade waits on a resource (the
/// process stopping: its held requests are aborted) leaves every token issued to the
/// agent revoked here all the same; the provider's resend sends every notice again.
#[tokio::test(start_paused = true)]
async fn a_cascade_cut_short_leaves_no_token_live_and_a_resend_notifies_again() {
    use std::sync::atomic::Ordering::SeqCst;
    let notifier = HangsAfterFirst::new();
    let mut w = world();
    w.ps =
        w.ps.revoking_providers([id("https://agent.example")])
            .revocation_notifier(notifier.clone())
            .revocation_hold(Duration::from_secs(20));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let mut jtis = Vec::new();
    for resource in [
        "https://resource.example",
        "https://other.example",
        "https://resource.example",
    ] {
        let pc: PersonClaims = w.read(&w.person_token(resource).await, resource);
        jtis.push(pc.jti);
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 3);

    let cut = tokio::time::timeout(Duration::from_secs(5), w.revoke_agent(None)).await;
    assert!(cut.is_err(), "dropped while held");
    assert_eq!(
        notifier.calls.load(SeqCst),
        2,
        "one notice sent, one hanging"
    );
    let admin = aauth_person_server::Admin::new(Arc::clone(w.ps.store()));
    let listing = admin.tokens(Some("alice"), NOW).await.unwrap();
    assert_eq!(listing.person.len(), 3);
    assert!(
        listing.person.iter().all(|(_, revoked)| *revoked),
        "every token revoked here: {listing:?}"
    );

    // The provider resends: every token's notice is sent again.
    notifier.hang.store(false, SeqCst);
    notifier.sent.lock().unwrap().clear();
    assert_done(&w.revoke_agent(None).await);
    let mut sent = notifier.sent.lock().unwrap().clone();
    sent.sort();
    assert_eq!(sent, jtis);
}

/// The server stopping answers a held revocation, and a held poll of one, `202` at once
/// (within the shutdown's deadline); every token is revoked here already.
#[tokio::test(start_paused = true)]
async fn stopping_answers_held_revocations_at_once() {
    use aauth_metadata::serve::Endpoint;
    let (w, notifier, person_jti) =
        slow_cascade(Duration::from_secs(20), Duration::from_secs(600)).await;
    let start = tokio::time::Instant::now();
    let first = pending_url(&w.revoke_agent(Some("wait=0")).await);
    let provider = w.provider_signer();
    let (held, polled, ()) = tokio::join!(
        w.revoke_agent(None),
        w.send_signed("GET", &first, None, provider, None),
        async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            w.ps.stop_holding();
        }
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "answered at the stop"
    );
    pending_url(&held);
    assert_eq!(pending_url(&polled), first);
    assert!(w.ps.store().is_revoked(&person_jti, NOW).await.unwrap());
    assert!(
        notifier.revoked.lock().unwrap().is_empty(),
        "still under way"
    );
}
