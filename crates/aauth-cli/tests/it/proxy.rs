//! `aauth serve resource-proxy`: the proxy as a real process in front of a small axum
//! upstream this test runs (it echoes the headers it got and counts its calls), with the
//! agent provider and the Person Server as processes too, over the demo world's TLS. The
//! agent is `aauth fetch`, or, where a response must be read as it streams or a
//! connection upgraded, a hyper client signing with the assistant's key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aauth_demos::world::World;
use aauth_keys::PrivateKey;
use aauth_keys::time::{Clock, SystemClock};
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serve::{
    Served, free_port, get, key_file, person_server_config, provider_config, scrape, tls_files,
};
use crate::{aauth, scratch, stdout};

/// What the upstream saw.
#[derive(Default)]
struct Seen {
    /// Every request that reached it.
    calls: AtomicUsize,
    /// The headers of each.
    headers: Mutex<Vec<HeaderMap>>,
    /// Lets `/events` send its last event.
    release: tokio::sync::Notify,
    /// Whether `/events` has ended.
    finished: AtomicBool,
}

impl Seen {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last(&self) -> HeaderMap {
        self.headers.lock().unwrap().last().cloned().unwrap()
    }
}

/// The upstream API: `/hang` never answers, `/events` is a server-sent event stream that
/// waits for `release` between its two events, `/ws` switches protocols and echoes, and
/// every other path echoes the request's headers as JSON.
async fn upstream() -> (SocketAddr, Arc<Seen>) {
    use axum::extract::Request as AxumRequest;
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |mut req: AxumRequest| {
        let s = Arc::clone(&s);
        async move {
            s.calls.fetch_add(1, Ordering::SeqCst);
            s.headers.lock().unwrap().push(req.headers().clone());
            match req.uri().path() {
                "/agent/hang" => {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    http::Response::new(Body::empty())
                }
                "/agent/events" => events(s),
                "/agent/ws" => echo_upgrade(hyper::upgrade::on(&mut req)),
                _ => echo(&req),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    (addr, seen)
}

/// `{"path", "headers": {name: value}}` of `req`.
fn echo(req: &axum::extract::Request) -> http::Response<Body> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
        .collect();
    let json = serde_json::json!({ "path": req.uri().path(), "headers": headers });
    let mut resp = http::Response::new(Body::from(json.to_string()));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// Two events, the second only once the test has seen the first.
fn events(seen: Arc<Seen>) -> http::Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
        seen.release.notified().await;
        let _ = tx.send(Bytes::from_static(b"data: last\n\n")).await;
        seen.finished.store(true, Ordering::SeqCst);
    });
    let mut resp = http::Response::new(Body::new(ChannelBody(rx)));
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    resp
}

/// A body whose frames come from a channel, each as it is sent.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// `101`, then every byte read is written back.
fn echo_upgrade(on: hyper::upgrade::OnUpgrade) -> http::Response<Body> {
    tokio::spawn(async move {
        let Ok(upgraded) = on.await else { return };
        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let mut resp = http::Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    resp.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    resp
}

/// The proxy's configuration: resource.example on `port`, in front of `upstream`,
/// reaching the issuers in `reach`; a route of each access mode.
fn proxy_config(
    world: &World,
    dir: &Path,
    port: u16,
    upstream: &str,
    reach: &[(&str, SocketAddr)],
) -> PathBuf {
    key_file(dir, "proxy", 0x55);
    std::fs::write(dir.join("ca.pem"), world.ca_pem()).unwrap();
    let connect_to: Vec<String> = reach
        .iter()
        .map(|(name, a)| format!("\"{name}:443:{}:{}\"", a.ip(), a.port()))
        .collect();
    let config = format!(
        r#"id = "https://resource.example"
listen = "127.0.0.1:{port}"
signing_key_file = "proxy.jwk"
shutdown_deadline_secs = 2
{tls}
[egress]
ca_files = ["ca.pem"]
connect_to = [{connect_to}]

[resource_proxy]
upstream = "{upstream}"
connect_timeout_secs = 1
request_timeout_secs = 2
name = "Example Files"
revoking_issuers = ["https://ps.example"]
[resource_proxy.scope_descriptions]
"files.read" = "Read your files"
[[resource_proxy.routes]]
path = "/agent/*"
access = "agent-token"
[[resource_proxy.routes]]
path = "/person/*"
methods = ["GET"]
access = "person-token"
[[resource_proxy.routes]]
path = "/files/*"
access = "auth-token"
scope = "files.read"
"#,
        tls = tls_files(world, dir, "resource.example"),
        connect_to = connect_to.join(", "),
    );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `aauth fetch` as the assistant, reaching each name at its address.
async fn fetch(dir: &Path, url: &str, extra: &[&str], reach: &[(&str, SocketAddr)]) -> Output {
    let (key, _) = key_file(dir, "me", 0x22);
    let mut args: Vec<String> = [
        "fetch",
        url,
        "--agent",
        "aauth:assistant@agent.example",
        "--key",
        key.to_str().unwrap(),
        "--provider",
        "https://agent.example",
        "--ca-file",
        "ca.pem",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    for (name, addr) in reach {
        args.push("--connect-to".to_owned());
        args.push(format!("{name}:443:{}:{}", addr.ip(), addr.port()));
    }
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aauth(&dir, &args)
    })
    .await
    .unwrap()
}

/// The world with the agent provider, the upstream, and the proxy (no Person Server).
struct AgentSetup {
    world: World,
    dir: PathBuf,
    provider: Served,
    proxy: Served,
    seen: Arc<Seen>,
}

impl AgentSetup {
    async fn start(name: &str) -> Self {
        let dir = scratch(name);
        let world = World::new().unwrap();
        let provider = Served::start(&dir, "agent-provider", &provider_config(&world, &dir));
        world.alias("agent.example", provider.addr);
        let (up, seen) = upstream().await;
        let config = proxy_config(
            &world,
            &dir,
            free_port(),
            &format!("http://{up}"),
            &[("agent.example", provider.addr)],
        );
        let proxy = Served::start(&dir, "resource-proxy", &config);
        world.alias("resource.example", proxy.addr);
        Self {
            world,
            dir,
            provider,
            proxy,
            seen,
        }
    }

    fn reach(&self) -> Vec<(&'static str, SocketAddr)> {
        vec![
            ("agent.example", self.provider.addr),
            ("resource.example", self.proxy.addr),
        ]
    }
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), crate::stderr(o)))
}

#[tokio::test]
async fn an_agent_token_route_passes_the_verified_agent_and_never_a_spoofed_one() {
    let s = AgentSetup::start("proxy-agent").await;
    let o = fetch(
        &s.dir,
        "https://resource.example/agent/hello",
        &[
            "-H",
            "x-aauth-agent: aauth:mallory@agent.example",
            "-H",
            "X-AAuth-Person-Sub: alice",
        ],
        &s.reach(),
    )
    .await;
    assert!(
        o.status.success(),
        "{}\n{}",
        crate::stderr(&o),
        s.proxy.log()
    );
    let echoed = json(&o);
    assert_eq!(echoed["path"], "/agent/hello");
    let headers = s.seen.last();
    let agents: Vec<_> = headers.get_all("x-aauth-agent").iter().collect();
    assert_eq!(agents, ["aauth:assistant@agent.example"], "{headers:?}");
    assert!(!headers.contains_key("x-aauth-person-sub"), "{headers:?}");
    assert!(!headers.contains_key("x-aauth-scope"), "{headers:?}");
    assert!(headers.contains_key("x-aauth-token-jti"), "{headers:?}");
    assert_eq!(headers["x-forwarded-host"], "resource.example");
    assert_eq!(s.seen.calls(), 1);

    // The resource's documents are the proxy's: mixed routes declare no access mode.
    let doc = get(
        &s.world,
        "https://resource.example/.well-known/aauth-resource.json",
        &[],
    )
    .await;
    assert_eq!(doc.status(), 200);
    let doc: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    assert_eq!(doc["issuer"], "https://resource.example");
    assert_eq!(doc["jwks_uri"], "https://resource.example/aauth/jwks.json");
    assert_eq!(
        doc["authorization_endpoint"],
        "https://resource.example/aauth/authorize"
    );
    assert_eq!(
        doc["revocation_endpoint"],
        "https://resource.example/aauth/revoke"
    );
    assert_eq!(doc["scope_descriptions"]["files.read"], "Read your files");
    assert!(doc.get("access_mode").is_none(), "{doc}");
    let jwks = get(&s.world, "https://resource.example/aauth/jwks.json", &[]).await;
    assert!(String::from_utf8_lossy(jwks.body()).contains("proxy-1"));
    let ready = get(&s.world, "https://resource.example/readyz", &[]).await;
    assert_eq!(ready.status(), 200);
    assert_eq!(s.seen.calls(), 1, "the proxy's own paths are not sent on");
}

#[tokio::test]
async fn a_refused_or_unrouted_request_never_reaches_the_upstream() {
    let s = AgentSetup::start("proxy-refused").await;
    // Unsigned: told to bring an agent token.
    let r = get(&s.world, "https://resource.example/agent/hello", &[]).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["aauth-requirement"]
            .to_str()
            .unwrap()
            .contains("agent-token"),
        "{:?}",
        r.headers()
    );
    // A signature that does not verify, carrying a spoofed identity.
    let bogus = [
        ("signature-input", "sig=(\"@method\");created=1"),
        ("signature", "sig=:AAAA:"),
        ("signature-key", "sig=jwt;jwt=\"e30.e30.AAAA\""),
        ("x-aauth-agent", "aauth:mallory@agent.example"),
    ];
    let r = get(&s.world, "https://resource.example/agent/hello", &bogus).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers().contains_key("signature-error"),
        "{:?}",
        r.headers()
    );
    // No route, and a path an upstream could read as another: not sent on either.
    let r = get(&s.world, "https://resource.example/elsewhere", &[]).await;
    assert_eq!(r.status(), 404);
    let o = fetch(
        &s.dir,
        "https://resource.example/nowhere",
        &["-i"],
        &s.reach(),
    )
    .await;
    assert!(stdout(&o).contains(" 404 "), "{}", stdout(&o));
    let r = get(&s.world, "https://resource.example/agent/%2e%2e/admin", &[]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(s.seen.calls(), 0, "{}", s.proxy.log());

    // The counter can move: a good request does reach it.
    let o = fetch(&s.dir, "https://resource.example/agent/x", &[], &s.reach()).await;
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert_eq!(s.seen.calls(), 1);
}

/// An upstream that does not answer is `504` once `request_timeout_secs` (2) have passed;
/// one that is not there is `502`, and the proxy is not ready.
#[tokio::test]
async fn a_hanging_upstream_is_504_and_a_missing_one_is_502() {
    let s = AgentSetup::start("proxy-timeouts").await;
    let started = Instant::now();
    let o = fetch(
        &s.dir,
        "https://resource.example/agent/hang",
        &["-i"],
        &s.reach(),
    )
    .await;
    let out = stdout(&o);
    assert!(out.contains(" 504 "), "{out}\n{}", crate::stderr(&o));
    assert!(out.contains("application/problem+json"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.seen.calls(), 1, "the request did reach the upstream");

    // A second proxy, whose upstream is a port nobody listens on; with metrics.
    let dir = scratch("proxy-down");
    let config = proxy_config(
        &s.world,
        &dir,
        free_port(),
        &format!("http://127.0.0.1:{}", free_port()),
        &[("agent.example", s.provider.addr)],
    );
    let metrics = free_port();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[egress]",
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[egress]"),
    );
    std::fs::write(&config, text).unwrap();
    let down = Served::start(&dir, "resource-proxy", &config);
    s.world.alias("resource.example", down.addr);
    let ready = get(&s.world, "https://resource.example/readyz", &[]).await;
    assert_eq!(ready.status(), 503);
    let reach = [
        ("agent.example", s.provider.addr),
        ("resource.example", down.addr),
    ];
    let o = fetch(&dir, "https://resource.example/agent/x", &["-i"], &reach).await;
    let out = stdout(&o);
    assert!(out.contains(" 502 "), "{out}\n{}", crate::stderr(&o));
    assert!(down.log().contains("the upstream failed"), "{}", down.log());
    // The wait for the upstream is measured, by outcome.
    let scraped = scrape(metrics);
    let needle = "aauth_upstream_duration_seconds_count{outcome=\"error\"} 1";
    assert!(scraped.contains(needle), "{needle} not in:\n{scraped}");
}

/// The agent provider, a Person Server (auto-approving, alice with the assistant bound)
/// and the proxy as processes; with `defer`, the proxy holds auth-token calls (`202`).
struct PersonSetup {
    dir: PathBuf,
    _provider: Served,
    ps: Served,
    proxy: Served,
    seen: Arc<Seen>,
    reach: Vec<(&'static str, SocketAddr)>,
}

impl PersonSetup {
    async fn start(name: &str, defer: bool) -> Self {
        let dir = scratch(name);
        let world = World::new().unwrap();
        let provider = Served::start(&dir, "agent-provider", &provider_config(&world, &dir));
        let port = free_port();
        let proxy_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ps_config = person_server_config(
            &world,
            &dir,
            &[
                ("agent.example", provider.addr),
                ("resource.example", proxy_addr),
            ],
        );
        let ps = Served::start(&dir, "person-server", &ps_config);
        let (up, seen) = upstream().await;
        let reach = vec![
            ("agent.example", provider.addr),
            ("ps.example", ps.addr),
            ("resource.example", proxy_addr),
        ];
        let config = proxy_config(&world, &dir, port, &format!("http://{up}"), &reach[..2]);
        if defer {
            let text = std::fs::read_to_string(&config).unwrap().replace(
                "revoking_issuers",
                "defer_auth_token = true\nrevoking_issuers",
            );
            std::fs::write(&config, text).unwrap();
        }
        let proxy = Served::start(&dir, "resource-proxy", &config);
        assert_eq!(proxy.addr, proxy_addr);
        Self {
            dir,
            _provider: provider,
            ps,
            proxy,
            seen,
            reach,
        }
    }

    /// The upstream saw the person of an auth token for `files.read`, and no agent.
    #[track_caller]
    fn assert_auth_token_identity(&self) {
        let headers = self.seen.last();
        assert_eq!(headers["x-aauth-person-iss"], "https://ps.example");
        assert!(!headers["x-aauth-person-sub"].is_empty());
        assert_eq!(headers["x-aauth-scope"], "files.read");
        assert!(headers.contains_key("x-aauth-token-jti"));
        assert!(
            !headers.contains_key("x-aauth-agent"),
            "an auth token names no agent"
        );
    }
}

/// Person-token and auth-token routes end to end: the Person Server is a process, the
/// proxy mints the resource token, the agent gets its auth token, and the upstream sees
/// the person.
#[tokio::test]
async fn person_and_auth_token_routes_run_end_to_end() {
    let s = PersonSetup::start("proxy-auth", false).await;
    let (dir, reach, proxy, ps, seen) = (&s.dir, &s.reach, &s.proxy, &s.ps, &s.seen);
    let o = fetch(dir, "https://resource.example/files/report", &["-v"], reach).await;
    let err = crate::stderr(&o);
    assert!(
        o.status.success(),
        "{err}\nproxy:\n{}\nPS:\n{}",
        proxy.log(),
        ps.log()
    );
    assert!(
        err.contains("< 401") && err.contains("requirement=auth-token"),
        "{err}"
    );
    assert!(err.contains("> POST https://ps.example/"), "{err}");
    s.assert_auth_token_identity();
    assert_eq!(
        seen.calls(),
        1,
        "only the admitted request reached the upstream"
    );

    let o = fetch(dir, "https://resource.example/person/me", &[], reach).await;
    assert!(o.status.success(), "{}\n{}", crate::stderr(&o), proxy.log());
    let headers = seen.last();
    assert_eq!(headers["x-aauth-person-iss"], "https://ps.example");
    assert!(!headers.contains_key("x-aauth-scope"), "{headers:?}");
    assert_eq!(seen.calls(), 2);
}

/// With `defer_auth_token`, the auth-token call is held (`202`, a pending URL under
/// `/aauth/pending/`); the agent polls it with its auth token, and only then does the
/// call reach the upstream, once.
#[tokio::test]
async fn a_held_auth_token_call_reaches_the_upstream_once_the_token_comes() {
    let s = PersonSetup::start("proxy-deferred", true).await;
    let o = fetch(
        &s.dir,
        "https://resource.example/files/report",
        &["-v"],
        &s.reach,
    )
    .await;
    let err = crate::stderr(&o);
    assert!(
        o.status.success(),
        "{err}\nproxy:\n{}\nPS:\n{}",
        s.proxy.log(),
        s.ps.log()
    );
    assert!(err.contains("< 202"), "{err}");
    assert!(
        err.contains("> GET https://resource.example/aauth/pending/2/"),
        "{err}"
    );
    assert_eq!(json(&o)["path"], "/files/report");
    s.assert_auth_token_identity();
    assert_eq!(s.seen.calls(), 1, "the held call ran once");
}

/// A request signed as the assistant (agent token minted with the provider's key, as
/// its provider would), sent over TLS with hyper so that the response can be read as it
/// streams, or the connection upgraded.
async fn signed_send(
    world: &World,
    proxy: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let now = SystemClock.now();
    let provider = PrivateKey::ed25519_from_seed(&[0x11; 32]);
    let agent = PrivateKey::ed25519_from_seed(&[0x22; 32]);
    let token = aauth_tokens::AgentTokenBuilder::new(
        aauth_tokens::ServerId::parse("https://agent.example").unwrap(),
        aauth_tokens::AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent.public_key(),
    )
    .sign(
        &provider,
        "provider-1",
        now,
        &mut aauth_keys::rand::OsRandom,
    )
    .unwrap();
    let mut req = http::Request::get(format!("https://resource.example{path}"))
        .body(Vec::new())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    aauth_signing::sign_request(
        &mut req,
        &agent,
        &aauth_headers::Scheme::jwt(token.token),
        now,
    )
    .unwrap();
    let (mut parts, _) = req.into_parts();
    parts.uri = path.parse().unwrap();
    parts
        .headers
        .insert("host", "resource.example".parse().unwrap());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(world.roots())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("resource.example".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
        .send_request(http::Request::from_parts(parts, Full::new(Bytes::new())))
        .await
        .unwrap()
}

#[tokio::test]
async fn server_sent_events_stream_and_websockets_pass_through() {
    let s = AgentSetup::start("proxy-stream").await;
    // The response head and the first event come while the upstream holds the rest.
    let mut resp = tokio::time::timeout(
        Duration::from_secs(10),
        signed_send(&s.world, s.proxy.addr, "/agent/events", &[]),
    )
    .await
    .expect("the response head arrives before the upstream finishes");
    assert_eq!(resp.status(), 200, "{}", s.proxy.log());
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(10), resp.body_mut().frame())
        .await
        .expect("the first event arrives while the stream is open")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    assert!(
        !s.seen.finished.load(Ordering::SeqCst),
        "the upstream has not finished"
    );
    s.seen.release.notify_one();
    let rest = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: last\n\n");

    // An upgrade: the upstream's 101, then bytes both ways.
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let resp = signed_send(&s.world, s.proxy.addr, "/agent/ws", &ws).await;
    assert_eq!(resp.status(), 101, "{}", s.proxy.log());
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"hello through the proxy").await.unwrap();
    let mut back = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"hello through the proxy");
    let headers = s.seen.last();
    assert_eq!(headers["x-aauth-agent"], "aauth:assistant@agent.example");

    // Unsigned, the upgrade is refused and never reaches the upstream.
    let calls = s.seen.calls();
    let r = get(&s.world, "https://resource.example/agent/ws", &ws).await;
    assert_eq!(r.status(), 401);
    assert_eq!(s.seen.calls(), calls);
}

/// A configuration the proxy cannot serve is refused at start (and by `aauth config
/// check`), naming the key.
#[test]
fn a_bad_proxy_configuration_is_refused_naming_its_key() {
    let dir = scratch("proxy-config");
    key_file(&dir, "proxy", 0x55);
    let base = "id = \"https://resource.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"proxy.jwk\"\n";
    for (name, section, needle) in [
        ("none", "", "[resource_proxy]"),
        (
            "no-scope",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"auth-token\"\n",
            "resource_proxy.routes.scope",
        ),
        (
            "bad-path",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n[[resource_proxy.routes]]\npath = \"/a/*/b\"\naccess = \"agent-token\"\n",
            "resource_proxy.routes.path",
        ),
        (
            "bad-upstream",
            "[resource_proxy]\nupstream = \"ftp://files\"\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n",
            "resource_proxy.upstream",
        ),
        (
            "session",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"session-token\"\n",
            "access",
        ),
    ] {
        let file = format!("{name}.toml");
        std::fs::write(dir.join(&file), format!("{base}{section}")).unwrap();
        let o = aauth(&dir, &["serve", "resource-proxy", "--config", &file]);
        let code = if name == "session" { 3 } else { 2 };
        crate::assert_fails(&o, code, needle);
        if name != "none" {
            // `aauth config check` says so too, before anything is served.
            let o = aauth(&dir, &["config", "check", &file]);
            crate::assert_fails(&o, code, needle);
        }
    }
}
