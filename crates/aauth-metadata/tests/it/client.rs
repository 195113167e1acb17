//! The HTTPS transport against a local misbehaving server with real TLS: the fault cases
//! of issue 3 end to end (hang, slow body, huge body, redirects, throttling, TLS names),
//! and the key cache on top.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aauth_keys::time::{FixedClock, UnixTime};
use aauth_metadata::{
    CacheConfig, DiscoveryError, EgressError, EgressPolicy, Fetch, FetchError, FetchLimits,
    GuardedFetch, HttpsTransport, HttpsUrl, KeyCache, Resolve,
};
use aauth_tokens::{ResolveError, ServerId};
use async_trait::async_trait;

use crate::server::{Mode, TestCa, TestServer, json};
use crate::support::{agent_metadata, jwks, key};

/// Maps names to the test server's socket, whatever port the URL names (the demo world's
/// connector does the same).
struct Names(BTreeMap<String, SocketAddr>);

#[async_trait]
impl Resolve for Names {
    async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        Ok(self.0.get(host).into_iter().copied().collect())
    }
}

struct Rig {
    server: TestServer,
    fetch: Arc<GuardedFetch<Names, HttpsTransport>>,
}

async fn rig_with(cert_names: &[&str], limits: FetchLimits, trust_test_ca: bool) -> Rig {
    let ca = TestCa::new();
    let server = TestServer::start(ca.server_config(cert_names)).await;
    let names = Names([("agent.example".to_owned(), server.addr)].into());
    let transport = if trust_test_ca {
        HttpsTransport::with_roots(ca.roots())
    } else {
        HttpsTransport::with_webpki_roots()
    };
    let mut policy = EgressPolicy::new();
    policy.dangerous().allow_host("agent.example");
    let fetch = Arc::new(GuardedFetch::new(
        policy,
        Arc::new(names),
        Arc::new(transport),
        limits,
    ));
    Rig { server, fetch }
}

async fn rig() -> Rig {
    rig_with(
        &["agent.example"],
        limits(Duration::from_secs(2), 64 * 1024),
        true,
    )
    .await
}

fn limits(deadline: Duration, max_body: usize) -> FetchLimits {
    let mut l = FetchLimits::default();
    l.deadline = deadline;
    l.max_body = max_body;
    l
}

fn url(path: &str) -> HttpsUrl {
    HttpsUrl::parse(&format!("https://agent.example{path}")).unwrap()
}

#[tokio::test]
async fn a_document_is_fetched_over_tls_with_its_caching_headers() {
    let r = rig().await;
    r.server.route(
        "/jwks.json",
        Mode::Answer(
            200,
            vec![("cache-control".to_owned(), "max-age=120".to_owned())],
            b"{\"keys\":[]}".to_vec(),
        ),
    );
    let got = r.fetch.get(&url("/jwks.json")).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"{\"keys\":[]}");
    assert_eq!(got.cache_control.as_deref(), Some("max-age=120"));
    let head = r.server.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /jwks.json http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: agent.example\r\n"), "{head}");
}

#[tokio::test]
async fn a_hanging_server_meets_the_deadline() {
    let r = rig_with(
        &["agent.example"],
        limits(Duration::from_millis(400), 64 * 1024),
        true,
    )
    .await;
    r.server.route("/jwks.json", Mode::Hang);
    let started = Instant::now();
    let err = r.fetch.get(&url("/jwks.json")).await.unwrap_err();
    assert_eq!(err, FetchError::Timeout(Duration::from_millis(400)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_body_meets_the_deadline() {
    let r = rig_with(
        &["agent.example"],
        limits(Duration::from_millis(400), 64 * 1024),
        true,
    )
    .await;
    r.server.route(
        "/jwks.json",
        Mode::Drip {
            len: 100,
            every: Duration::from_millis(50),
        },
    );
    let started = Instant::now();
    assert_eq!(
        r.fetch.get(&url("/jwks.json")).await.unwrap_err(),
        FetchError::Timeout(Duration::from_millis(400))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn huge_bodies_are_cut_at_the_cap() {
    let r = rig_with(
        &["agent.example"],
        limits(Duration::from_secs(5), 4096),
        true,
    )
    .await;
    // Declared too large: refused before reading.
    r.server
        .route("/declared", Mode::Answer(200, vec![], vec![b'x'; 5000]));
    assert_eq!(
        r.fetch.get(&url("/declared")).await.unwrap_err(),
        FetchError::TooLarge { limit: 4096 }
    );
    // Undeclared and endless: refused once the cap is passed.
    r.server.route("/endless", Mode::Endless);
    assert_eq!(
        r.fetch.get(&url("/endless")).await.unwrap_err(),
        FetchError::TooLarge { limit: 4096 }
    );
}

#[tokio::test]
async fn redirects_and_throttling_are_reported_not_followed() {
    let r = rig().await;
    r.server.route(
        "/moved",
        Mode::Answer(
            302,
            vec![("location".to_owned(), "https://169.254.169.254/".to_owned())],
            vec![],
        ),
    );
    assert!(matches!(
        r.fetch.get(&url("/moved")).await.unwrap_err(),
        FetchError::Egress(EgressError::Redirect { .. })
    ));
    assert_eq!(r.server.hits("/"), 0);
    r.server.route(
        "/busy",
        Mode::Answer(
            503,
            vec![("retry-after".to_owned(), "3".to_owned())],
            vec![],
        ),
    );
    assert_eq!(
        r.fetch.get(&url("/busy")).await.unwrap_err(),
        FetchError::Status {
            status: 503,
            retry_after: Some(3)
        }
    );
}

#[tokio::test]
async fn tls_names_and_roots_are_verified() {
    // A certificate for another name.
    let r = rig_with(&["other.example"], FetchLimits::default(), true).await;
    r.server.route("/jwks.json", json("{}"));
    assert!(
        matches!(r.fetch.get(&url("/jwks.json")).await.unwrap_err(), FetchError::Transport(m) if m.contains("TLS"))
    );
    assert_eq!(r.server.hits("/jwks.json"), 0);
    // A CA the client does not trust.
    let r = rig_with(&["agent.example"], FetchLimits::default(), false).await;
    r.server.route("/jwks.json", json("{}"));
    assert!(
        matches!(r.fetch.get(&url("/jwks.json")).await.unwrap_err(), FetchError::Transport(m) if m.contains("TLS"))
    );
    assert_eq!(r.server.hits("/jwks.json"), 0);
}

#[tokio::test]
async fn the_key_cache_over_real_https_keeps_serving_when_the_server_goes_away() {
    let (r, clock, cache, iss) = cache_rig().await;
    assert_eq!(
        &cache
            .issuer_key(&iss, "aauth-agent.json", "k1")
            .await
            .unwrap(),
        key(1).public_key()
    );
    // The server goes away; past expiry the cache still answers (stale-if-error).
    r.server.stop();
    clock.advance(Duration::from_secs(400));
    assert_eq!(
        &cache
            .issuer_key(&iss, "aauth-agent.json", "k1")
            .await
            .unwrap(),
        key(1).public_key()
    );

    // A document naming another issuer is refused as issuer_mismatch.
    let r = rig().await;
    r.server.route(
        "/.well-known/aauth-agent.json",
        json(&agent_metadata(
            "https://evil.example",
            "https://agent.example/jwks.json",
        )),
    );
    let cache = KeyCache::new(
        Arc::clone(&r.fetch),
        Arc::new(clock.clone()),
        CacheConfig::default(),
    );
    let err = cache
        .issuer_key(&iss, "aauth-agent.json", "k1")
        .await
        .unwrap_err();
    assert!(matches!(&err, DiscoveryError::Metadata { .. }), "{err:?}");
    assert_eq!(
        ResolveError::from(err),
        ResolveError::IssuerMismatch {
            found: "https://evil.example".to_owned()
        }
    );
    assert_eq!(r.server.hits("/jwks.json"), 0);
}

#[tokio::test]
async fn without_allow_listing_loopback_is_refused_before_connecting() {
    let ca = TestCa::new();
    let server = TestServer::start(ca.server_config(&["agent.example"])).await;
    server.route("/jwks.json", json("{}"));
    let names = Names([("agent.example".to_owned(), server.addr)].into());
    let fetch = GuardedFetch::new(
        EgressPolicy::new(),
        Arc::new(names),
        Arc::new(HttpsTransport::with_roots(ca.roots())),
        FetchLimits::default(),
    );
    assert!(matches!(
        fetch.get(&url("/jwks.json")).await.unwrap_err(),
        FetchError::Egress(EgressError::SpecialAddress {
            range: "loopback",
            ..
        })
    ));
    // Give a connection, had one been made, time to arrive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(server.requests.lock().unwrap().is_empty());
}

const META_PATH: &str = "/.well-known/aauth-agent.json";

async fn cache_rig() -> (
    Rig,
    FixedClock,
    KeyCache<GuardedFetch<Names, HttpsTransport>>,
    ServerId,
) {
    let r = rig().await;
    r.server.route(
        META_PATH,
        json(&agent_metadata(
            "https://agent.example",
            "https://agent.example/jwks.json",
        )),
    );
    r.server.route("/jwks.json", json(&jwks(&[(1, "k1")])));
    let clock = FixedClock::new(UnixTime(1_800_000_000));
    let cache = KeyCache::new(
        Arc::clone(&r.fetch),
        Arc::new(clock.clone()),
        CacheConfig::default(),
    );
    (
        r,
        clock,
        cache,
        ServerId::parse("https://agent.example").unwrap(),
    )
}

/// 200 lookups of kids the issuer never published.
async fn flood(cache: &KeyCache<GuardedFetch<Names, HttpsTransport>>, iss: &ServerId) {
    for i in 0..200 {
        let _ = cache
            .issuer_key(iss, "aauth-agent.json", &format!("junk-{i}"))
            .await;
    }
}

#[tokio::test]
async fn against_the_server_cold_outage_rotation_flood_and_concurrency() {
    // Cold cache, server gone: a clear transport error naming the URL, then backoff.
    let (r, _clock, cache, iss) = cache_rig().await;
    r.server.stop();
    tokio::time::sleep(Duration::from_millis(20)).await;
    match cache
        .issuer_key(&iss, "aauth-agent.json", "k1")
        .await
        .unwrap_err()
    {
        DiscoveryError::Fetch {
            url,
            error: FetchError::Transport(m),
        } => {
            assert_eq!(url, "https://agent.example/.well-known/aauth-agent.json");
            assert!(m.contains("connect"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cache.issuer_key(&iss, "aauth-agent.json", "k1").await,
        Err(DiscoveryError::BackingOff { .. })
    ));

    // Rotation and a flood of unknown kids, counted at the server.
    let (r, clock, cache, iss) = cache_rig().await;
    assert!(
        cache
            .issuer_key(&iss, "aauth-agent.json", "k1")
            .await
            .is_ok()
    );
    r.server
        .route("/jwks.json", json(&jwks(&[(1, "k1"), (2, "k2")])));
    flood(&cache, &iss).await;
    assert_eq!(
        r.server.hits("/jwks.json"),
        1,
        "no refetch inside the first minute"
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        &cache
            .issuer_key(&iss, "aauth-agent.json", "k2")
            .await
            .unwrap(),
        key(2).public_key()
    );
    flood(&cache, &iss).await;
    assert_eq!(
        r.server.hits("/jwks.json"),
        2,
        "one refetch for the new kid, none for the flood"
    );
    assert!(
        cache
            .issuer_key(&iss, "aauth-agent.json", "k1")
            .await
            .is_ok(),
        "k1 is still published"
    );

    // Concurrent misses on a cold cache: one request reaches the server.
    let (r, _clock, cache, iss) = cache_rig().await;
    let lookups: Vec<_> = (0..20)
        .map(|_| {
            let (cache, iss) = (cache.clone(), iss.clone());
            tokio::spawn(async move { cache.issuer_key(&iss, "aauth-agent.json", "k1").await })
        })
        .collect();
    for l in lookups {
        assert!(l.await.unwrap().is_ok());
    }
    assert_eq!(
        (r.server.hits(META_PATH), r.server.hits("/jwks.json")),
        (1, 1)
    );
}
