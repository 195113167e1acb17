//! SSRF cases (catalogue family F, `docs/conformance.md`): a stub resolver supplies the addresses, and a
//! transport that records every call proves no connection was attempted to a refused
//! destination.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_metadata::egress::special_range;
use aauth_metadata::{
    AdmittedDestination, EgressError, EgressPolicy, Fetch, FetchError, FetchLimits, FetchTransport,
    Fetched, GuardedFetch, HttpsUrl, Resolve,
};
use aauth_test_support::url;
use async_trait::async_trait;

/// Answers each call with the next list (the last one repeats): a rebinding resolver.
struct StubResolver {
    answers: Vec<Vec<IpAddr>>,
    calls: AtomicUsize,
}

impl StubResolver {
    fn new(answers: &[&[&str]]) -> Arc<Self> {
        Arc::new(Self {
            answers: answers
                .iter()
                .map(|a| a.iter().map(|s| s.parse().unwrap()).collect())
                .collect(),
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Resolve for StubResolver {
    async fn resolve(&self, _host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.answers[i.min(self.answers.len() - 1)]
            .iter()
            .map(|&ip| SocketAddr::new(ip, port))
            .collect())
    }
}

/// Records the destinations it was asked to connect to, and answers with `reply`.
struct RecordingTransport {
    connects: Mutex<Vec<Vec<SocketAddr>>>,
    reply: Mutex<Option<Fetched>>,
    delay: Option<Duration>,
}

impl RecordingTransport {
    fn answering(reply: Fetched) -> Arc<Self> {
        Arc::new(Self {
            connects: Mutex::new(Vec::new()),
            reply: Mutex::new(Some(reply)),
            delay: None,
        })
    }

    fn slow(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            connects: Mutex::new(Vec::new()),
            reply: Mutex::new(Some(Fetched::ok("{}"))),
            delay: Some(delay),
        })
    }

    fn connects(&self) -> Vec<Vec<SocketAddr>> {
        self.connects.lock().unwrap().clone()
    }
}

#[async_trait]
impl FetchTransport for RecordingTransport {
    async fn get(
        &self,
        _url: &HttpsUrl,
        dest: &AdmittedDestination,
        _limits: &FetchLimits,
    ) -> Result<Fetched, FetchError> {
        self.connects.lock().unwrap().push(dest.addrs.clone());
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        Ok(self
            .reply
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| Fetched::status(500)))
    }
}

fn guarded(
    policy: EgressPolicy,
    resolver: &Arc<StubResolver>,
    transport: &Arc<RecordingTransport>,
) -> GuardedFetch<StubResolver, RecordingTransport> {
    GuardedFetch::new(
        policy,
        Arc::clone(resolver),
        Arc::clone(transport),
        FetchLimits::default(),
    )
}

#[test]
fn special_ranges_are_classified() {
    let special = [
        ("0.0.0.0", "this-network"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared (CGN)"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.169.254", "link-local"), // cloud metadata
        ("192.0.0.170", "IETF protocol assignment"),
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:93.184.216.34", "IPv4-mapped"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("64:ff9b::a9fe:a9fe", "NAT64 of a special IPv4 address"), // 169.254.169.254
        ("64:ff9b:1::1", "NAT64 local-use"),
        ("100::1", "discard-only"),
        ("2001:db8::1", "documentation"),
        ("2001::1", "IETF protocol assignment (incl. Teredo)"),
        ("2002:a00:1::1", "6to4"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
    ];
    for (ip, range) in special {
        assert_eq!(special_range(ip.parse().unwrap()), Some(range), "{ip}");
    }
    for ip in [
        "93.184.216.34",
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "169.255.0.1",
        "2606:4700::1111",
        "64:ff9b::5db8:d822", // NAT64 of 93.184.216.34
        "2a00:1450::1",
    ] {
        assert_eq!(special_range(ip.parse().unwrap()), None, "{ip}");
    }
}

#[tokio::test]
async fn private_loopback_link_local_and_mapped_addresses_are_never_connected() {
    for addrs in [
        &["10.0.0.5"][..],
        &["127.0.0.1"],
        &["169.254.169.254"],
        &["::1"],
        &["fe80::1"],
        &["fd00::1"],
        &["::ffff:10.0.0.5"],
        &["93.184.216.34", "10.0.0.5"], // one bad answer refuses the host
    ] {
        let resolver = StubResolver::new(&[addrs]);
        let transport = RecordingTransport::answering(Fetched::ok("{}"));
        let f = guarded(EgressPolicy::new(), &resolver, &transport);
        let err = f
            .get(&url("https://agent.example/jwks.json"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::Egress(EgressError::SpecialAddress { .. })),
            "{addrs:?}: {err:?}"
        );
        assert!(
            transport.connects().is_empty(),
            "{addrs:?}: a connection was attempted"
        );
    }
}

#[tokio::test]
async fn ip_literal_hosts_are_checked_without_resolution() {
    let resolver = StubResolver::new(&[&["93.184.216.34"]]);
    let transport = RecordingTransport::answering(Fetched::ok("{}"));
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    let err = f
        .get(&url("https://127.0.0.1/jwks.json"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        FetchError::Egress(EgressError::SpecialAddress { .. })
    ));
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 0);
    assert!(transport.connects().is_empty());
}

#[tokio::test]
async fn rebinding_cannot_swap_the_checked_address() {
    // First answer public, every later answer loopback: the guard resolves once and the
    // transport is handed exactly the checked addresses.
    let resolver = StubResolver::new(&[&["93.184.216.34"], &["127.0.0.1"]]);
    let transport = RecordingTransport::answering(Fetched::ok("{}"));
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    f.get(&url("https://agent.example:8443/jwks.json"))
        .await
        .unwrap();
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        transport.connects(),
        vec![vec!["93.184.216.34:8443".parse::<SocketAddr>().unwrap()]]
    );
    // The next fetch resolves again and is refused before any connection.
    let err = f
        .get(&url("https://agent.example:8443/jwks.json"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        FetchError::Egress(EgressError::SpecialAddress { .. })
    ));
    assert_eq!(transport.connects().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    for (location, egress) in [
        ("http://169.254.169.254/latest/meta-data/", true),
        ("https://evil.example/jwks.json", true),
        ("https://agent.example/other.json", false), // same origin: still not followed
        ("", true),
    ] {
        let resolver = StubResolver::new(&[&["93.184.216.34"]]);
        let transport = RecordingTransport::answering(Fetched::status(302).with_location(location));
        let f = guarded(EgressPolicy::new(), &resolver, &transport);
        let err = f
            .get(&url("https://agent.example/jwks.json"))
            .await
            .unwrap_err();
        if egress {
            assert!(
                matches!(err, FetchError::Egress(EgressError::Redirect { .. })),
                "{location}: {err:?}"
            );
        } else {
            assert_eq!(
                err,
                FetchError::Redirect {
                    location: location.to_owned()
                }
            );
        }
        assert_eq!(transport.connects().len(), 1, "{location}: followed");
    }
}

#[test]
fn plain_http_cannot_be_requested() {
    // Discovery takes only HttpsUrl, which refuses every other scheme.
    for u in [
        "http://agent.example/jwks.json",
        "ftp://agent.example/",
        "file:///etc/passwd",
        "//agent.example/",
    ] {
        assert_eq!(
            HttpsUrl::parse(u).unwrap_err().reason,
            "scheme must be https",
            "{u}"
        );
    }
}

#[tokio::test]
async fn allow_listed_names_may_be_private() {
    let resolver = StubResolver::new(&[&["127.0.0.1"]]);
    let transport = RecordingTransport::answering(Fetched::ok("{}"));
    let mut policy = EgressPolicy::new();
    policy.dangerous().allow_host("ps.example");
    let f = guarded(policy, &resolver, &transport);
    f.get(&url("https://ps.example/.well-known/aauth-person.json"))
        .await
        .unwrap();
    // Only the exact name: a sibling is still refused.
    assert!(f.get(&url("https://evil.ps.example/")).await.is_err());
    assert_eq!(transport.connects().len(), 1);
}

#[tokio::test]
async fn no_address_and_body_cap() {
    let resolver = StubResolver::new(&[&[]]);
    let transport = RecordingTransport::answering(Fetched::ok("{}"));
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    assert!(matches!(
        f.get(&url("https://agent.example/")).await.unwrap_err(),
        FetchError::Egress(EgressError::NoAddress { .. })
    ));

    let resolver = StubResolver::new(&[&["93.184.216.34"]]);
    let transport = RecordingTransport::answering(Fetched::ok(vec![b' '; 64 * 1024 + 1]));
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    assert_eq!(
        f.get(&url("https://agent.example/")).await.unwrap_err(),
        FetchError::TooLarge { limit: 64 * 1024 }
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_exchange_meets_the_total_deadline() {
    let resolver = StubResolver::new(&[&["93.184.216.34"]]);
    let transport = RecordingTransport::slow(Duration::from_secs(30));
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    let started = tokio::time::Instant::now();
    let err = f.get(&url("https://agent.example/")).await.unwrap_err();
    assert_eq!(err, FetchError::Timeout(Duration::from_secs(5)));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

/// A gateway in front of a host that is down (502, 504) is an error a retry may get
/// past and a breaker counts, as 503 is; a 500 is the host's own answer.
#[tokio::test]
async fn gateway_errors_are_transient_failures() {
    let resolver = StubResolver::new(&[&["93.184.216.34"]]);
    for status in [502, 504] {
        let transport = RecordingTransport::answering(Fetched::status(status));
        let f = guarded(EgressPolicy::new(), &resolver, &transport);
        let err = f.get(&url("https://agent.example/")).await.unwrap_err();
        assert_eq!(
            err,
            FetchError::Status {
                status,
                retry_after: None
            }
        );
        assert!(err.is_transient());
    }
    let transport = RecordingTransport::answering(Fetched::status(500));
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    assert_eq!(
        f.get(&url("https://agent.example/")).await.unwrap().status,
        500
    );
}

#[tokio::test]
async fn throttling_reports_retry_after() {
    let resolver = StubResolver::new(&[&["93.184.216.34"]]);
    let mut reply = Fetched::status(429);
    reply.retry_after = Some("30".to_owned());
    let transport = RecordingTransport::answering(reply);
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    let err = f.get(&url("https://agent.example/")).await.unwrap_err();
    assert_eq!(
        err,
        FetchError::Status {
            status: 429,
            retry_after: Some(30)
        }
    );
    assert!(err.is_transient());
}

/// RFC 9110 §10.2.3: `Retry-After` may be an HTTP-date; it is read as the seconds until
/// then, not dropped (the retry then waits what the host asked, not the backoff).
#[tokio::test]
async fn throttling_reports_a_retry_after_date_as_seconds() {
    use aauth_keys::time::{Clock, SystemClock};
    let resolver = StubResolver::new(&[&["93.184.216.34"]]);
    let at = std::time::UNIX_EPOCH + Duration::from_secs(SystemClock.now().as_secs() + 120);
    let mut reply = Fetched::status(503);
    reply.retry_after = Some(httpdate::fmt_http_date(at));
    let transport = RecordingTransport::answering(reply);
    let f = guarded(EgressPolicy::new(), &resolver, &transport);
    let err = f.get(&url("https://agent.example/")).await.unwrap_err();
    let FetchError::Status {
        status: 503,
        retry_after: Some(secs),
    } = err
    else {
        panic!("{err:?}");
    };
    assert!((110..=120).contains(&secs), "{secs}");
}
