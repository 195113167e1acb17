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

mod forwarded;
mod labels;
mod oauth;
mod sessions;
mod shared_store;
mod trailers;
mod tunnel_idle;
mod websocket_h2;

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
    /// `/agent/upload` has its first chunk.
    first_chunk: tokio::sync::Notify,
    /// Upgraded connections whose client side (the proxy) has closed.
    tunnels_ended: AtomicUsize,
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
    let seen = Arc::new(Seen::default());
    let app = upstream_app(Arc::clone(&seen));
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

/// The same upstream over TLS as `localhost` (a certificate from the world's CA),
/// offering HTTP/2 and HTTP/1.1 by ALPN: its port.
async fn upstream_tls(world: &World) -> (u16, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = upstream_app(Arc::clone(&seen));
    let (cert, key) = world.issue_pem("localhost").unwrap();
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = <rustls::pki_types::PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper_util::service::TowerToHyperService::new(app);
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, service)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .with_upgrades()
                        .await;
                }
            });
        }
    });
    (port, seen)
}

/// The upstream's routes, counting into `seen`.
fn upstream_app(seen: Arc<Seen>) -> axum::Router {
    use axum::extract::Request as AxumRequest;
    axum::Router::new().fallback(move |mut req: AxumRequest| {
        let s = Arc::clone(&seen);
        async move {
            s.calls.fetch_add(1, Ordering::SeqCst);
            s.headers.lock().unwrap().push(req.headers().clone());
            match req.uri().path() {
                "/agent/hang" => {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    http::Response::new(Body::empty())
                }
                "/agent/events" => events(s),
                "/agent/ws" => {
                    let key = req.headers().get("sec-websocket-key").cloned();
                    echo_upgrade(hyper::upgrade::on(&mut req), key.as_ref(), s)
                }
                // A `101` that is no WebSocket handshake (no `Sec-WebSocket-Accept`).
                "/agent/raw-switch" => echo_upgrade(hyper::upgrade::on(&mut req), None, s),
                "/agent/upload" => upload(&s, req).await,
                // The API's own flow done: a session granted (and one it tried to set
                // itself, which the proxy must not pass on).
                "/agent/login" => granting(&req, "files.read"),
                "/agent/bad-grant" => granting(&req, "files\"read"),
                // The API already authorizes with OAuth tokens: it hands its own over.
                "/agent/login-oauth" => {
                    let mut resp = granting(&req, "files.read");
                    resp.headers_mut()
                        .insert("x-aauth-grant-credential", UPSTREAM_TOKEN.parse().unwrap());
                    resp
                }
                "/agent/bad-credential" => {
                    let mut resp = granting(&req, "files.read");
                    resp.headers_mut()
                        .insert("x-aauth-grant-credential", "two words".parse().unwrap());
                    resp
                }
                _ => echo(&req),
            }
        }
    })
}

/// The access token the upstream's own OAuth server issued, which it hands the proxy to
/// wrap in a session.
pub(crate) const UPSTREAM_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.upstream-oauth-token.c2ln";

/// `{"path", "headers": {name: value}}` of `req`.
fn echo(req: &axum::extract::Request) -> http::Response<Body> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
        .collect();
    let json = serde_json::json!({
        "path": req.uri().path(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let mut resp = http::Response::new(Body::from(json.to_string()));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// `echo` of `req`, granting a session for `scope` (`x-aauth-grant-session`), with an
/// `AAuth-Access` of the upstream's own.
fn granting(req: &axum::extract::Request, scope: &str) -> http::Response<Body> {
    let mut resp = echo(req);
    resp.headers_mut()
        .insert("x-aauth-grant-session", scope.parse().unwrap());
    resp.headers_mut()
        .insert("aauth-access", "minted-by-the-upstream".parse().unwrap());
    resp
}

/// Reads the body frame by frame (telling `seen` when the first arrives):
/// `{"received": bytes, "trailers": [the names of its trailers], "version"}`.
async fn upload(seen: &Seen, req: axum::extract::Request) -> http::Response<Body> {
    let version = format!("{:?}", req.version());
    let mut body = req.into_body();
    let mut received = 0usize;
    let mut trailers = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            if received == 0 && !data.is_empty() {
                seen.first_chunk.notify_one();
            }
            received += data.len();
        }
        if let Some(t) = frame.trailers_ref() {
            trailers.extend(t.keys().map(http::HeaderName::to_string));
        }
    }
    let mut resp = http::Response::new(Body::from(
        serde_json::json!({ "received": received, "trailers": trailers, "version": version })
            .to_string(),
    ));
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

/// `101` (answering the WebSocket `key`, if given), then every byte read is written
/// back until the other side closes (counted in `seen`).
fn echo_upgrade(
    on: hyper::upgrade::OnUpgrade,
    key: Option<&http::HeaderValue>,
    seen: Arc<Seen>,
) -> http::Response<Body> {
    tokio::spawn(async move {
        let Ok(upgraded) = on.await else { return };
        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut r, &mut w).await;
        seen.tunnels_ended.fetch_add(1, Ordering::SeqCst);
    });
    let mut resp = http::Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    resp.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    if let Some(key) = key {
        use base64::Engine as _;
        let mut sha1 =
            aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
        sha1.update(key.as_bytes());
        sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finish());
        resp.headers_mut()
            .insert("sec-websocket-accept", accept.parse().unwrap());
    }
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
        Self::start_with(name, |text| text).await
    }

    /// As `start`, with the proxy's configuration changed by `edit`.
    async fn start_with(name: &str, edit: impl Fn(String) -> String) -> Self {
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
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, edit(text)).unwrap();
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

    /// A second proxy process with the same configuration on another port.
    fn another_instance(&self) -> Served {
        let config = std::fs::read_to_string(self.dir.join("proxy.toml")).unwrap();
        let port = self.proxy.addr.port();
        let second = config.replace(
            &format!("listen = \"127.0.0.1:{port}\""),
            &format!("listen = \"127.0.0.1:{}\"", free_port()),
        );
        assert_ne!(second, config);
        std::fs::write(self.dir.join("proxy2.toml"), second).unwrap();
        Served::start(&self.dir, "resource-proxy", &self.dir.join("proxy2.toml"))
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
            // What would make the API run another method or path than was admitted.
            "-H",
            "X-HTTP-Method-Override: DELETE",
            "-H",
            "X_Original_URL: /admin",
            "-H",
            "X-Forwarded-Prefix: /admin",
            // Credentials nobody checked (this route takes no OAuth token): an API that
            // honoured them would take the request as someone else.
            "-H",
            "Authorization: Bearer stolen-token",
            "-H",
            "DPoP: e30.e30.e30",
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
    assert_eq!(headers["x-forwarded-proto"], "https");
    for name in [
        "x-http-method-override",
        "x_original_url",
        "x-forwarded-prefix",
        "authorization",
        "dpop",
    ] {
        assert!(!headers.contains_key(name), "{name}: {headers:?}");
    }
    for name in ["signature", "signature-input", "signature-key"] {
        assert!(
            !headers.contains_key(name),
            "{name}: the agent's signature and token stay at the proxy"
        );
    }
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

/// An upstream that answers in HTTP/1.0 (Python's `http.server`) is answered to an
/// HTTP/1.1 client in HTTP/1.1, on a connection kept open for the next request.
#[tokio::test]
async fn an_http10_upstream_is_answered_in_the_clients_version() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                while stream.read_line(&mut line).await.unwrap_or(0) > 2 {
                    line.clear();
                }
                let _ = stream
                    .get_mut()
                    .write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let s = AgentSetup::start("proxy-http10-main").await;
    let dir = scratch("proxy-http10");
    let config = proxy_config(
        &s.world,
        &dir,
        free_port(),
        &format!("http://{up}"),
        &[("agent.example", s.provider.addr)],
    );
    let proxy = Served::start(&dir, "resource-proxy", &config);
    let req = signed("GET", "/agent/old", &[], b"", &assistant_token());
    let resp = send_tls(&s.world, proxy.addr, req).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", proxy.log());
    assert_eq!(resp.version(), http::Version::HTTP_11);
    assert!(!resp.headers().contains_key("connection"), "{resp:?}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"ok");
}

/// A streamed body the upstream stops reading (it never answers): the wait for its
/// answer starts at the body's deadline (`body_timeout_secs`, 1 here) even though the
/// body never ended, and the client gets `504` after `request_timeout_secs` (2) more,
/// rather than waiting for as long as the upstream does.
#[tokio::test]
async fn a_body_the_upstream_stops_reading_still_meets_the_timeout() {
    let s = AgentSetup::start_with("proxy-unread-body", |text| {
        text.replace(
            "shutdown_deadline_secs = 2\n",
            "shutdown_deadline_secs = 2\nbody_timeout_secs = 1\n",
        )
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (parts, _) = signed("POST", "/agent/hang", &[], b"", &assistant_token()).into_parts();
    // More than the sockets on the way hold: the upstream, not reading, stops taking it.
    let feeding = tokio::spawn(async move {
        for _ in 0..512 {
            if tx.send(Bytes::from(vec![b'x'; 64 * 1024])).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        send_tls_body(
            &s.world,
            s.proxy.addr,
            http::Request::from_parts(parts, ChannelBody(rx)),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer within 20 s:\n{}", s.proxy.log()));
    assert_eq!(resp.status(), 504, "{}", s.proxy.log());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    feeding.abort();
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
    world: World,
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
            world,
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
    // Run at the poll, it still says who sent it; the proxy's note of that stays home.
    let headers = s.seen.last();
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers:?}");
    assert!(!headers.contains_key("x-aauth-proxy-peer"), "{headers:?}");
    // Nothing under the pending prefix but a pending URL is a route's: a path that only
    // starts like one (dot segments, an index written otherwise) is the proxy's own 404,
    // never forwarded upstream.
    for path in [
        "/aauth/pending/2/../../../admin/users",
        "/aauth/pending/+2/x",
        "/aauth/pending/02/x",
        "/aauth/pending/2/a/b",
    ] {
        let r = signed_send(&s.world, s.proxy.addr, path, &[]).await;
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    assert_eq!(s.seen.calls(), 1, "none reached the upstream");
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
    let req = signed("GET", path, headers, b"", &assistant_token());
    send_tls(world, proxy, req).await
}

/// The assistant's agent token, minted now with the provider's key (seed 0x11), as its
/// provider would, bound to the assistant's key (seed 0x22).
fn assistant_token() -> String {
    assistant_token_for(0x22)
}

/// The assistant's agent token as [`assistant_token`], bound to the key of `seed`.
fn assistant_token_for(seed: u8) -> String {
    aauth_tokens::AgentTokenBuilder::new(
        aauth_tokens::ServerId::parse("https://agent.example").unwrap(),
        aauth_tokens::AgentId::parse("aauth:assistant@agent.example").unwrap(),
        PrivateKey::ed25519_from_seed(&[seed; 32]).public_key(),
    )
    .sign(
        &PrivateKey::ed25519_from_seed(&[0x11; 32]),
        "provider-1",
        SystemClock.now(),
        &mut aauth_keys::rand::OsRandom,
    )
    .unwrap()
    .token
}

/// `method path` with `headers` and `body`, signed by the assistant's key under the JWT
/// `token` (an agent, person or auth token bound to that key).
fn signed(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    token: &str,
) -> http::Request<Vec<u8>> {
    signed_by(0x22, (method, path), headers, body, token)
}

/// As [`signed`], by the key of `seed`.
fn signed_by(
    seed: u8,
    (method, path): (&str, &str),
    headers: &[(&str, &str)],
    body: &[u8],
    token: &str,
) -> http::Request<Vec<u8>> {
    let agent = PrivateKey::ed25519_from_seed(&[seed; 32]);
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://resource.example{path}"))
        .body(body.to_vec())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    aauth_signing::sign_request_unique(
        &mut req,
        &agent,
        &aauth_headers::Scheme::jwt(token.to_owned()),
        SystemClock.now(),
        &mut aauth_keys::rand::OsRandom,
    )
    .unwrap();
    req
}

/// Sends `req` to the proxy at `proxy` over TLS (HTTP/1.1, upgrades allowed).
async fn send_tls(
    world: &World,
    proxy: SocketAddr,
    req: http::Request<Vec<u8>>,
) -> http::Response<hyper::body::Incoming> {
    send_tls_body(world, proxy, req.map(|b| Full::new(Bytes::from(b)))).await
}

/// As `send_tls`, with any body (sent as it yields its frames).
async fn send_tls_body<B>(
    world: &World,
    proxy: SocketAddr,
    req: http::Request<B>,
) -> http::Response<hyper::body::Incoming>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().unwrap().as_str().to_owned();
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
        .send_request(http::Request::from_parts(parts, body))
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

    // A `101` that does not complete the WebSocket handshake is not passed through:
    // the client would get a raw connection to the upstream.
    let resp = signed_send(&s.world, s.proxy.addr, "/agent/raw-switch", &ws).await;
    assert_eq!(resp.status(), 502, "{}", s.proxy.log());

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
            "buffered-bodies",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\nmax_buffered_body_bytes = 1000\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n",
            "resource_proxy.max_buffered_body_bytes",
        ),
        (
            "session-lifetime",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n[resource_proxy.sessions]\nlifetime_secs = 5\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"session-token\"\n",
            "resource_proxy.sessions.lifetime_secs",
        ),
        (
            "replay-share",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n[resource_proxy.replay]\nentries = 100\nissuer_share = 200\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n",
            "resource_proxy.replay.issuer_share",
        ),
        (
            "trusted-person-servers",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\ntrusted_person_servers = [\"http://ps.example\"]\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"person-token\"\n",
            "resource_proxy.trusted_person_servers",
        ),
        (
            "tunnel-idle",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\ntunnel_idle_timeout_secs = 0\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n",
            "resource_proxy.tunnel_idle_timeout_secs",
        ),
        (
            "connect-timeout",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\nconnect_timeout_secs = 0\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n",
            "resource_proxy.connect_timeout_secs",
        ),
        (
            "request-timeout",
            "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\nrequest_timeout_secs = 0\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n",
            "resource_proxy.request_timeout_secs",
        ),
        (
            "trusted-proxies",
            "trusted_proxies = [\"10.0.0.0/33\"]\n[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n",
            "trusted_proxies",
        ),
    ] {
        let file = format!("{name}.toml");
        std::fs::write(dir.join(&file), format!("{base}{section}")).unwrap();
        let o = aauth(&dir, &["serve", "resource-proxy", "--config", &file]);
        let code = 2;
        crate::assert_fails(&o, code, needle);
        if name != "none" {
            // `aauth config check` says so too, before anything is served.
            let o = aauth(&dir, &["config", "check", &file]);
            crate::assert_fails(&o, code, needle);
        }
    }
    // An upstream with credentials in it is refused without showing them.
    std::fs::write(
        dir.join("userinfo.toml"),
        format!("{base}[resource_proxy]\nupstream = \"http://app:hunter2@127.0.0.1:9\"\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n"),
    )
    .unwrap();
    let o = aauth(&dir, &["config", "check", "userinfo.toml"]);
    crate::assert_fails(&o, 2, "no user information");
    assert!(
        !crate::stderr(&o).contains("hunter2"),
        "{}",
        crate::stderr(&o)
    );
}

/// A route that requires body coverage: a signed body goes through (with its digest,
/// and here the signature headers too, as configured); a body that is not the one
/// signed is refused and never reaches the upstream.
#[tokio::test]
async fn a_body_covered_route_refuses_a_body_that_was_not_signed() {
    let s = AgentSetup::start_with("proxy-body", |text| {
        text.replace(
            "revoking_issuers",
            "forward_signature_headers = true\nrevoking_issuers",
        ) + "[[resource_proxy.routes]]\npath = \"/upload/*\"\nmethods = [\"POST\"]\naccess = \"agent-token\"\nrequire_body_coverage = true\n"
    })
    .await;
    let o = fetch(
        &s.dir,
        "https://resource.example/upload/notes",
        &["-d", "{\"n\":1}", "-H", "content-type: application/json"],
        &s.reach(),
    )
    .await;
    assert!(
        o.status.success(),
        "{}\n{}",
        crate::stderr(&o),
        s.proxy.log()
    );
    let headers = s.seen.last();
    assert!(headers.contains_key("content-digest"), "{headers:?}");
    assert!(
        headers["signature-input"]
            .to_str()
            .unwrap()
            .contains("\"content-digest\""),
        "{headers:?}"
    );
    assert!(
        headers.contains_key("signature-key"),
        "forwarded, as configured"
    );
    let calls = s.seen.calls();

    // Signed over one body, sent with another.
    let token = assistant_token();
    let req = signed(
        "POST",
        "/upload/notes",
        &[("content-type", "application/json")],
        b"{\"n\":1}",
        &token,
    );
    let (parts, _) = req.into_parts();
    let tampered = http::Request::from_parts(parts, b"{\"n\":2}".to_vec());
    let resp = send_tls(&s.world, s.proxy.addr, tampered).await;
    assert_eq!(resp.status(), 401, "{}", s.proxy.log());
    let error = resp.headers()["signature-error"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("invalid_signature") || error.contains("digest"),
        "{error}"
    );
    assert_eq!(
        s.seen.calls(),
        calls,
        "the tampered request never reached the upstream"
    );

    // Unsigned over its body at all: the route requires the coverage.
    let req = signed("POST", "/upload/notes", &[], b"", &token);
    let (parts, _) = req.into_parts();
    let added = http::Request::from_parts(parts, b"smuggled".to_vec());
    let resp = send_tls(&s.world, s.proxy.addr, added).await;
    assert_eq!(resp.status(), 401, "{}", s.proxy.log());
    assert_eq!(s.seen.calls(), calls);
}

/// The operator revokes the agent at the Person Server; the Person Server's revocation
/// reaches the proxy (its `revocation_endpoint`), and the auth token it had admitted is
/// refused from then on, before the upstream.
#[tokio::test]
async fn a_revocation_from_the_person_server_closes_the_token_at_the_proxy() {
    let s = PersonSetup::start("proxy-revoked", false).await;
    let o = fetch(
        &s.dir,
        "https://resource.example/files/report",
        &["-v", "--show-credentials"],
        &s.reach,
    )
    .await;
    let err = crate::stderr(&o);
    assert!(o.status.success(), "{err}\nproxy:\n{}", s.proxy.log());
    // The auth token, as the agent sent it to the resource.
    let auth_token = err
        .lines()
        .filter_map(|l| l.strip_prefix("> signature-key: "))
        .filter_map(|v| v.split("jwt=\"").nth(1))
        .filter_map(|v| v.split('"').next())
        .find(|t| {
            let header = t.split('.').next().unwrap_or_default();
            String::from_utf8_lossy(&aauth_keys::base64url::decode(header).unwrap_or_default())
                .contains("aa-auth+jwt")
        })
        .unwrap_or_else(|| panic!("no auth token on the wire:\n{err}"))
        .to_owned();
    let calls = s.seen.calls();
    let again = send_tls(
        &s.world,
        s.proxy.addr,
        signed("GET", "/files/report", &[], b"", &auth_token),
    )
    .await;
    assert_eq!(again.status(), 200, "the token works before the revocation");
    assert_eq!(s.seen.calls(), calls + 1);

    let ps_config = s.dir.join("ps.toml");
    let revoked = aauth(
        &s.dir,
        &[
            "admin",
            "--config",
            ps_config.to_str().unwrap(),
            "agents",
            "revoke",
            "aauth:assistant@agent.example",
        ],
    );
    // Revoked and sent on; the exit status says the configuration binds it again.
    assert!(
        stdout(&revoked).contains("token(s) revoked")
            && crate::stderr(&revoked).contains("declared in the configuration"),
        "{}{}",
        stdout(&revoked),
        crate::stderr(&revoked)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        s.proxy.log().contains("/aauth/revoke"),
        "the revocation reached the proxy:\n{}",
        s.proxy.log()
    );
    let after = send_tls(
        &s.world,
        s.proxy.addr,
        signed("GET", "/files/report", &[], b"", &auth_token),
    )
    .await;
    assert_eq!(after.status(), 401, "{}", s.proxy.log());
    let error = after.headers()["signature-error"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("revoked"), "{error}");
    assert_eq!(s.seen.calls(), calls + 1, "refused before the upstream");
}

/// An `https://` upstream (trusted through `[egress] ca_files`) that offers HTTP/2: the
/// admitted request reaches it over HTTP/2, with the verified identity.
#[tokio::test]
async fn an_https_upstream_is_reached_over_http2() {
    let dir = scratch("proxy-https");
    let world = World::new().unwrap();
    let provider = Served::start(&dir, "agent-provider", &provider_config(&world, &dir));
    world.alias("agent.example", provider.addr);
    let (port, seen) = upstream_tls(&world).await;
    let config = proxy_config(
        &world,
        &dir,
        free_port(),
        &format!("https://localhost:{port}"),
        &[("agent.example", provider.addr)],
    );
    let proxy = Served::start(&dir, "resource-proxy", &config);
    world.alias("resource.example", proxy.addr);
    let reach = [
        ("agent.example", provider.addr),
        ("resource.example", proxy.addr),
    ];
    let o = fetch(&dir, "https://resource.example/agent/hello", &[], &reach).await;
    assert!(o.status.success(), "{}\n{}", crate::stderr(&o), proxy.log());
    let echoed = json(&o);
    assert_eq!(echoed["version"], "HTTP/2.0", "{echoed}");
    assert_eq!(
        echoed["headers"]["x-aauth-agent"],
        "aauth:assistant@agent.example"
    );
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen.calls(), 1);
    let ready = get(&world, "https://resource.example/readyz", &[]).await;
    assert_eq!(ready.status(), 200);
}

/// Four-party, every party a process: the proxy's resource tokens name its Access
/// Server; the Person Server asks that Access Server (auto-approving a trusted Person
/// Server), which issues the auth token; the upstream sees the person it names.
#[tokio::test]
async fn four_party_access_runs_through_the_access_server() {
    let dir = scratch("proxy-four-party");
    let world = World::new().unwrap();
    let provider = Served::start(&dir, "agent-provider", &provider_config(&world, &dir));
    let (proxy_port, as_port) = (free_port(), free_port());
    let proxy_addr: SocketAddr = format!("127.0.0.1:{proxy_port}").parse().unwrap();
    let as_addr: SocketAddr = format!("127.0.0.1:{as_port}").parse().unwrap();
    let ps_config = person_server_config(
        &world,
        &dir,
        &[
            ("agent.example", provider.addr),
            ("resource.example", proxy_addr),
            ("as.example", as_addr),
        ],
    );
    let ps = Served::start(&dir, "person-server", &ps_config);
    key_file(&dir, "as", 0x44);
    let as_config = format!(
        "id = \"https://as.example\"\nlisten = \"127.0.0.1:{as_port}\"\nsigning_key_file = \"as.jwk\"\nstore = \"sqlite:as.sqlite\"\nshutdown_deadline_secs = 2\n{}\n[egress]\nca_files = [\"ca.pem\"]\nconnect_to = [\"ps.example:443:{}:{}\", \"resource.example:443:{}:{}\", \"agent.example:443:{}:{}\"]\n\n[access_server]\ntrusted_person_servers = [\"https://ps.example\"]\n",
        tls_files(&world, &dir, "as.example"),
        ps.addr.ip(),
        ps.addr.port(),
        proxy_addr.ip(),
        proxy_addr.port(),
        provider.addr.ip(),
        provider.addr.port(),
    );
    // First without a route to the agent provider: the Access Server cannot check the
    // agent's token, answers 500, and logs why (never a token).
    let unreachable = format!(
        ", \"agent.example:443:{}:{}\"",
        provider.addr.ip(),
        provider.addr.port()
    );
    std::fs::write(dir.join("as.toml"), as_config.replace(&unreachable, "")).unwrap();
    let mut access = Served::start(&dir, "access-server", &dir.join("as.toml"));
    assert_eq!(access.addr, as_addr);
    let (up, seen) = upstream().await;
    let reach = [
        ("agent.example", provider.addr),
        ("ps.example", ps.addr),
        ("as.example", as_addr),
        ("resource.example", proxy_addr),
    ];
    let config = proxy_config(
        &world,
        &dir,
        proxy_port,
        &format!("http://{up}"),
        &reach[..3],
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "revoking_issuers",
        "access_server = \"https://as.example\"\nrevoking_issuers",
    );
    std::fs::write(&config, text).unwrap();
    let proxy = Served::start(&dir, "resource-proxy", &config);
    assert_eq!(proxy.addr, proxy_addr);

    let o = fetch(&dir, "https://resource.example/files/report", &[], &reach).await;
    assert!(!o.status.success(), "{}", stdout(&o));
    std::thread::sleep(Duration::from_millis(200));
    let log = access.log();
    let failed = log
        .lines()
        .find(|l| l.contains("the request failed on this server"))
        .unwrap_or_else(|| panic!("no failure logged:\n{log}"));
    assert!(
        failed.contains("agent.example") && failed.contains("request_id"),
        "the cause and the request id: {failed}"
    );
    assert!(!log.contains("eyJ"), "a token in the log:\n{log}");
    assert_eq!(seen.calls(), 0);

    // Then with it.
    drop(access);
    std::fs::write(dir.join("as.toml"), &as_config).unwrap();
    access = Served::start(&dir, "access-server", &dir.join("as.toml"));
    let o = fetch(
        &dir,
        "https://resource.example/files/report",
        &["-v"],
        &reach,
    )
    .await;
    let err = crate::stderr(&o);
    assert!(
        o.status.success(),
        "{err}\nproxy:\n{}\nPS:\n{}\nAS:\n{}",
        proxy.log(),
        ps.log(),
        access.log()
    );
    let headers = seen.last();
    assert_eq!(headers["x-aauth-scope"], "files.read");
    assert_eq!(headers["x-aauth-person-iss"], "https://ps.example");
    assert_eq!(seen.calls(), 1);
    // The Access Server answered the Person Server's request for the auth token.
    assert!(
        access.log().contains("\"status\":200") || access.log().contains("status=200"),
        "{}",
        access.log()
    );

    // Revoked at the Person Server: it tells the Access Server, which passes the auth
    // tokens it issued on to the proxy. The proxy takes them from its `access_server`,
    // though `revoking_issuers` names only the Person Server.
    let revoked = aauth(
        &dir,
        &[
            "admin",
            "--config",
            ps_config.to_str().unwrap(),
            "agents",
            "revoke",
            "aauth:assistant@agent.example",
        ],
    );
    assert!(
        stdout(&revoked).contains("token(s) revoked"),
        "{}{}",
        stdout(&revoked),
        crate::stderr(&revoked)
    );
    let revocations = || -> Vec<String> {
        proxy
            .log()
            .lines()
            .filter(|l| l.contains("/aauth/revoke") && l.contains("\"status\""))
            .map(str::to_owned)
            .collect()
    };
    // The Person Server's two (the person and the auth token), then the Access Server's,
    // after its own revocation.
    let until = Instant::now() + Duration::from_secs(10);
    while revocations().len() < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let answered = revocations();
    assert!(answered.len() >= 3, "{answered:#?}\nAS:\n{}", access.log());
    assert!(
        answered.iter().all(|l| l.contains("\"status\":200")),
        "{answered:#?}"
    );
    // The Access Server says so when a resource refuses its revocation: here none did.
    assert!(
        !access.log().contains("a revocation was not taken"),
        "{}",
        access.log()
    );
}

/// A body the decision does not need (no coverage required, no `Content-Digest`) streams
/// to the upstream as it arrives, beyond `max_body_bytes`; one with a digest is read whole
/// and checked first, and refused past the cap before any of it goes upstream.
#[tokio::test]
async fn an_unsigned_body_streams_and_a_digested_one_is_checked_first() {
    let s = AgentSetup::start_with("proxy-upload", |text| {
        text.replace(
            "revoking_issuers",
            "max_body_bytes = 65536\nrevoking_issuers",
        )
    })
    .await;
    let token = assistant_token();

    // Signed without its body; the first chunk reaches the upstream while the client
    // still holds the rest, and the whole (beyond the cap) arrives.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (parts, _) = signed("POST", "/agent/upload", &[], b"", &token).into_parts();
    let sending = send_tls_body(
        &s.world,
        s.proxy.addr,
        http::Request::from_parts(parts, ChannelBody(rx)),
    );
    let driving = async {
        tx.send(Bytes::from(vec![b'a'; 1000])).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), s.seen.first_chunk.notified())
            .await
            .unwrap_or_else(|_| {
                panic!("the first chunk did not stream through:\n{}", s.proxy.log())
            });
        // Slower than `request_timeout_secs` (2): the wait for the answer starts once
        // the body is sent, so the upload is not cut off.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for _ in 0..4 {
            tx.send(Bytes::from(vec![b'b'; 50_000])).await.unwrap();
        }
        drop(tx);
    };
    let (resp, ()) = tokio::join!(sending, driving);
    assert_eq!(resp.status(), 200, "{}", s.proxy.log());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["received"], 201_000, "{json}");

    // With a Content-Digest (the agent signs its body), the body is read and checked
    // first: past the cap, 413, and the upstream sees nothing.
    let calls = s.seen.calls();
    let big = vec![b'c'; 100_000];
    let resp = send_tls(
        &s.world,
        s.proxy.addr,
        signed(
            "POST",
            "/agent/upload",
            &[("content-type", "text/plain")],
            &big,
            &token,
        ),
    )
    .await;
    assert_eq!(resp.status(), 413, "{}", s.proxy.log());
    assert_eq!(s.seen.calls(), calls);
    // Within the cap, it goes through whole.
    let resp = send_tls(
        &s.world,
        s.proxy.addr,
        signed(
            "POST",
            "/agent/upload",
            &[("content-type", "text/plain")],
            &big[..60_000],
            &token,
        ),
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", s.proxy.log());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["received"],
        60_000
    );
}
