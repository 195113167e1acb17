//! The load harness behind `cargo xtask load` (issue 4's performance target): a resource in
//! agent-token mode, and the same handler without AAuth, each driven over loopback HTTP/1.1
//! with fresh signed requests.
//!
//! ```text
//! load serve MODE                 serve on 127.0.0.1:0, print "port=N", run until killed
//! load drive MODE PORT S C N [P]  send at most N requests over C connections for S seconds,
//!                                 P at a time per connection (HTTP/1.1 pipelining; default 1),
//!                                 print "rps=… p50_us=… p90_us=… p99_us=… sent=… failed=…"
//! load warm                       time the warm verification in process, print "warm_us=…"
//! load warm-replay                time the warm check of POSTs with and without the replay
//!                                 check, interleaved, print "replay_us=… noreplay_us=…"
//! load proxy-world DIR            write the resource proxy's configuration into DIR, serve
//!                                 its issuer and its upstream, print "port=N" (the upstream)
//! load plain-proxy PORT           a plain reverse proxy to 127.0.0.1:PORT, print "port=N"
//! load redis-info | redis-clean PREFIX   the Redis of `--redis` (see [`redis`])
//! ```
//! MODE: `aauth` (signed GETs), `plain` (the handler without AAuth), `post` (signed POSTs,
//! the replay check on, as by default), `post-noreplay` (the same without it),
//! `post-memory`, `post-redis PREFIX`, `post-redis-apart PREFIX` (signed POSTs, the replay
//! cache and a revocation list in memory, or in Redis: see [`redis`]).
//! The xtask pins the servers to one core and `drive` to another with `taskset` when it
//! can. `cargo xtask load --proxy` drives `aauth serve resource-proxy` (configured by
//! `proxy-world`) and the plain proxy with the same `drive` (see [`proxy`]).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a command-line measuring tool"
)]

mod proxy;
mod redis;

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_resource::{AAuthLayer, Access, MemoryReplayStore, Resource, Route, RoutePolicy};
use aauth_signing::sign_request;
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

const PROVIDER_SEED: [u8; 32] = [11; 32];
const AGENT_SEED: [u8; 32] = [12; 32];

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// What a run serves and sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Signed GETs (the replay check does not apply to safe methods).
    Aauth,
    /// The handler without AAuth.
    Plain,
    /// Signed POSTs, each one new, the replay check on (the default).
    Post,
    /// The same POSTs with the replay check off.
    PostNoReplay,
    /// The same POSTs, the replay cache and a revocation list kept as this says.
    PostKept(redis::Kept),
}

impl Mode {
    fn parse(s: Option<&str>) -> Result<Self, String> {
        Ok(match s {
            Some("aauth") => Self::Aauth,
            Some("plain") => Self::Plain,
            Some("post") => Self::Post,
            Some("post-noreplay") => Self::PostNoReplay,
            Some("post-memory") => Self::PostKept(redis::Kept::Memory),
            Some("post-redis") => Self::PostKept(redis::Kept::Redis),
            Some("post-redis-apart") => Self::PostKept(redis::Kept::RedisApart),
            other => return Err(format!("unknown mode {other:?}")),
        })
    }

    fn method(self) -> http::Method {
        match self {
            Self::Post | Self::PostNoReplay | Self::PostKept(_) => http::Method::POST,
            _ => http::Method::GET,
        }
    }
}

/// The resource's route. Its replay store is sized for a load test's rate from one key
/// and its provider (a deployment expecting that rate configures its store so);
/// `replay: false` turns the check off, for the comparison.
fn route(replay: bool) -> Result<Route, String> {
    let resource = resource()?;
    let resource = if replay {
        resource.replay_store(Arc::new(
            MemoryReplayStore::new(2_000_000)
                .share(2_000_000)
                .issuer_share(2_000_000),
        ))
    } else {
        resource.without_replay_check()
    };
    Ok(resource.route(RoutePolicy::new(Access::AgentToken)))
}

/// The route `mode` serves (`prefix`: its Redis keys').
async fn route_for(mode: Mode, prefix: &str) -> Result<Route, String> {
    match mode {
        Mode::PostKept(kept) => Ok(redis::stores(resource()?, kept, prefix)
            .await?
            .route(RoutePolicy::new(Access::AgentToken))),
        _ => route(mode != Mode::PostNoReplay),
    }
}

/// The resource, its agent tokens' issuer key in hand.
fn resource() -> Result<Resource, String> {
    let provider = PrivateKey::ed25519_from_seed(&PROVIDER_SEED);
    let iss = ServerId::parse("https://agent.example").map_err(e)?;
    let keys = StaticIssuerKeys::new().with(
        &iss,
        "aauth-agent.json",
        "key-1",
        provider.public_key().clone(),
    );
    Ok(Resource::new(
        ServerId::parse("https://resource.example").map_err(e)?,
        Arc::new(keys),
    ))
}

fn agent_token(now: aauth_keys::time::UnixTime) -> Result<String, String> {
    let provider = PrivateKey::ed25519_from_seed(&PROVIDER_SEED);
    let agent = PrivateKey::ed25519_from_seed(&AGENT_SEED);
    Ok(AgentTokenBuilder::new(
        ServerId::parse("https://agent.example").map_err(e)?,
        AgentId::parse("aauth:load@agent.example").map_err(e)?,
        agent.public_key(),
    )
    .sign(&provider, "key-1", now, &mut OsRandom)
    .map_err(e)?
    .token)
}

fn signed_request(
    method: &http::Method,
    path: &str,
    token: &str,
    now: aauth_keys::time::UnixTime,
) -> Result<http::Request<Vec<u8>>, String> {
    let agent = PrivateKey::ed25519_from_seed(&AGENT_SEED);
    let mut b = http::Request::builder()
        .method(method.clone())
        .uri(format!("https://resource.example{path}"));
    let body = if *method == http::Method::POST {
        b = b.header("content-type", "application/json");
        br#"{"event":"load"}"#.to_vec()
    } else {
        Vec::new()
    };
    let mut req = b.body(body).map_err(e)?;
    sign_request(&mut req, &agent, &Scheme::jwt(token.to_owned()), now).map_err(e)?;
    Ok(req)
}

/// The handler both servers run.
#[derive(Clone)]
struct Hello;

impl Service<http::Request<Full<Bytes>>> for Hello {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Full<Bytes>>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            b"ok",
        )))))
    }
}

async fn serve(mode: Mode, prefix: &str) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(e)?;
    let port = listener.local_addr().map_err(e)?.port();
    if mode == Mode::Plain {
        println!("port={port}");
        return serve_plain(listener).await;
    }
    let route = route_for(mode, prefix).await?;
    if let Mode::PostKept(_) = mode {
        println!("port={port} stats={}", redis::stats().await?);
    } else {
        println!("port={port}");
    }
    let layer = AAuthLayer::new(route, Arc::new(SystemClock));
    loop {
        let (tcp, _) = listener.accept().await.map_err(e)?;
        let _ = tcp.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(tcp);
        let svc = layer.clone().layer(Hello);
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let mut svc = svc.clone();
                    async move { svc.call(req).await }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// The handler without AAuth on `listener`, until killed: the plain server of `serve
/// plain`, and the upstream behind the proxies.
async fn serve_plain(listener: tokio::net::TcpListener) -> Result<(), String> {
    loop {
        let (tcp, _) = listener.accept().await.map_err(e)?;
        let _ = tcp.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(tcp);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |req: http::Request<hyper::body::Incoming>| async move {
                    let (parts, _) = req.into_parts();
                    Hello
                        .call(http::Request::from_parts(parts, Full::new(Bytes::new())))
                        .await
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// Waits for the drive's connections and prints its line: requests per second, latency
/// percentiles (µs), requests sent and failed.
async fn report(
    tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    start: Instant,
    failed: &AtomicUsize,
) -> Result<(), String> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(e)?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "rps={:.0} p50_us={} p90_us={} p99_us={} sent={} failed={}",
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        all.len(),
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn drive(
    mode: Mode,
    port: u16,
    seconds: u64,
    connections: usize,
    max: usize,
    pipeline: usize,
) -> Result<(), String> {
    // Fresh signed requests, made before the clock starts: one signature each.
    let clock = SystemClock;
    let token = agent_token(clock.now())?;
    let mut requests = Vec::with_capacity(max);
    for i in 0..max {
        let req = if mode != Mode::Plain {
            signed_request(&mode.method(), &format!("/data/{i}"), &token, clock.now())?
        } else {
            http::Request::get(format!("https://resource.example/data/{i}"))
                .body(Vec::new())
                .map_err(e)?
        };
        let (mut parts, body) = req.into_parts();
        parts.uri = format!("/data/{i}").parse().map_err(e)?;
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("resource.example"),
        );
        requests.push((parts, body));
    }
    if pipeline > 1 {
        let raw: Vec<Vec<u8>> = requests.iter().map(|(p, b)| serialize(p, b)).collect();
        return drive_pipelined(raw, port, seconds, connections, pipeline).await;
    }
    let requests: Vec<http::Request<Full<Bytes>>> = requests
        .into_iter()
        .map(|(parts, body)| http::Request::from_parts(parts, Full::new(Bytes::from(body))))
        .collect();
    let requests = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (requests, failed) = (Arc::clone(&requests), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return lat;
            };
            let _ = tcp.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
            else {
                return lat;
            };
            tokio::spawn(conn);
            while Instant::now() < deadline {
                let next = requests.lock().ok().and_then(|mut it| it.next());
                let Some(req) = next else { break };
                let t0 = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.into_body().collect().await;
                        lat.push(t0.elapsed().as_micros() as u64);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    report(tasks, start, &failed).await
}

/// A request as HTTP/1.1 bytes on the wire.
fn serialize(parts: &http::request::Parts, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", parts.method, parts.uri).into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// How many complete responses `buf` holds from `at` on, and where the next begins;
/// `Err` for a response that is not a 2xx with a `content-length`.
fn parse_responses(buf: &[u8], mut at: usize, want: usize) -> Result<(usize, usize), String> {
    let mut done = 0;
    while done < want {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[at..]) {
            Ok(httparse::Status::Complete(head)) => {
                if !resp.code.is_some_and(|c| (200..300).contains(&c)) {
                    return Err(format!("status {:?}", resp.code));
                }
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or("no content-length")?;
                if buf.len() < at + head + len {
                    break;
                }
                at += head + len;
                done += 1;
            }
            Ok(httparse::Status::Partial) => break,
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok((done, at))
}

/// Each connection writes `pipeline` requests at once, then reads their responses.
async fn drive_pipelined(
    raw: Vec<Vec<u8>>,
    port: u16,
    seconds: u64,
    connections: usize,
    pipeline: usize,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let raw = Arc::new(raw);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (raw, next, failed) = (Arc::clone(&raw), Arc::clone(&next), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return lat;
            };
            let _ = tcp.set_nodelay(true);
            let mut out = Vec::new();
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut chunk = vec![0u8; 64 * 1024];
            while Instant::now() < deadline {
                let first = next.fetch_add(pipeline, Ordering::Relaxed);
                if first >= raw.len() {
                    break;
                }
                let batch = &raw[first..raw.len().min(first + pipeline)];
                out.clear();
                for r in batch {
                    out.extend_from_slice(r);
                }
                let t0 = Instant::now();
                if tcp.write_all(&out).await.is_err() {
                    failed.fetch_add(batch.len(), Ordering::Relaxed);
                    break;
                }
                buf.clear();
                let (mut got, mut at) = (0, 0);
                while got < batch.len() {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    match parse_responses(&buf, at, batch.len() - got) {
                        Ok((n, next_at)) => {
                            got += n;
                            at = next_at;
                        }
                        Err(_) => break,
                    }
                }
                let us = t0.elapsed().as_micros() as u64;
                lat.extend(std::iter::repeat_n(us, got));
                if got < batch.len() {
                    failed.fetch_add(batch.len() - got, Ordering::Relaxed);
                    break;
                }
            }
            lat
        }));
    }
    report(tasks, start, &failed).await
}

async fn warm() -> Result<(), String> {
    let route = route(true)?;
    let clock = SystemClock;
    let token = agent_token(clock.now())?;
    let mut reqs = Vec::new();
    for i in 0..2000 {
        let (mut parts, _) = signed_request(
            &http::Method::GET,
            &format!("/data/{i}"),
            &token,
            clock.now(),
        )?
        .into_parts();
        parts.uri = format!("/data/{i}").parse().map_err(e)?;
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("resource.example"),
        );
        reqs.push(parts);
    }
    // The first check verifies the token; every later one is the warm path.
    route
        .check(&reqs[0], b"", clock.now())
        .await
        .map_err(|r| format!("{r:?}"))?;
    let now = clock.now();
    let start = Instant::now();
    for parts in &reqs {
        route
            .check(parts, b"", now)
            .await
            .map_err(|r| format!("{r:?}"))?;
    }
    println!(
        "warm_us={:.2}",
        start.elapsed().as_secs_f64() * 1e6 / reqs.len() as f64
    );
    Ok(())
}

/// The warm check of POSTs with the replay check and without, in alternating rounds over
/// fresh requests (this VM's speed drifts over seconds, so each pair is measured close
/// together); prints the median of each.
async fn warm_replay() -> Result<(), String> {
    let clock = SystemClock;
    let token = agent_token(clock.now())?;
    let (with, without) = (route(true)?, route(false)?);
    let batch = |n: usize, from: usize| -> Result<Vec<(http::request::Parts, Vec<u8>)>, String> {
        (from..from + n)
            .map(|i| {
                let (mut parts, body) = signed_request(
                    &http::Method::POST,
                    &format!("/data/{i}"),
                    &token,
                    clock.now(),
                )?
                .into_parts();
                parts.uri = format!("/data/{i}").parse().map_err(e)?;
                parts.headers.insert(
                    http::header::HOST,
                    http::HeaderValue::from_static("resource.example"),
                );
                Ok((parts, body))
            })
            .collect()
    };
    let time = |route: &Route, reqs: &[(http::request::Parts, Vec<u8>)]| {
        let now = clock.now();
        let route = route.clone();
        let reqs = reqs.to_vec();
        async move {
            let start = Instant::now();
            for (parts, body) in &reqs {
                route
                    .check(parts, body, now)
                    .await
                    .map_err(|r| format!("{r:?}"))?;
            }
            Ok::<f64, String>(start.elapsed().as_secs_f64() * 1e6 / reqs.len() as f64)
        }
    };
    // Warm both (the token verified once each).
    let first = batch(1, 0)?;
    time(&with, &first).await?;
    time(&without, &first).await?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..15 {
        let reqs = batch(1000, 1 + round * 1000)?;
        if round % 2 == 0 {
            a.push(time(&with, &reqs).await?);
            b.push(time(&without, &reqs).await?);
        } else {
            b.push(time(&without, &reqs).await?);
            a.push(time(&with, &reqs).await?);
        }
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (m_a, m_b) = (a[a.len() / 2], b[b.len() / 2]);
    println!(
        "replay_us={m_a:.2} noreplay_us={m_b:.2} ratio={:.3}",
        m_a / m_b
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("load: {err}");
            return ExitCode::FAILURE;
        }
    };
    let num = |i: usize, default: u64| {
        args.get(i)
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let mode = || Mode::parse(args.get(1).map(String::as_str));
    let result = match args.first().map(String::as_str) {
        Some("serve") => mode().and_then(|m| {
            rt.block_on(serve(m, args.get(2).map_or("", String::as_str)))
        }),
        Some("drive") => mode().and_then(|m| {
            rt.block_on(drive(
                m,
                num(2, 0) as u16,
                num(3, 5),
                num(4, 8) as usize,
                num(5, 50_000) as usize,
                num(6, 1) as usize,
            ))
        }),
        Some("warm") => rt.block_on(warm()),
        Some("warm-replay") => rt.block_on(warm_replay()),
        Some("proxy-world") => match args.get(1) {
            Some(dir) => rt.block_on(proxy::world(std::path::Path::new(dir))),
            None => Err("load proxy-world DIR".to_owned()),
        },
        // Served as `aauth serve` serves: on Tokio's multi-threaded runtime (one worker
        // when pinned to one core).
        Some("plain-proxy") => proxy::plain(num(1, 0) as u16),
        Some("redis-info") => rt.block_on(redis::info()),
        Some("redis-clean") => match args.get(1) {
            Some(prefix) => rt.block_on(redis::clean(prefix)),
            None => Err("load redis-clean PREFIX".to_owned()),
        },
        _ => Err("usage: load serve MODE | load drive MODE PORT SECONDS CONNECTIONS MAX [PIPELINE] | load warm | load warm-replay | load proxy-world DIR | load plain-proxy PORT | load redis-info | load redis-clean PREFIX (MODE: aauth, plain, post, post-noreplay, post-memory, post-redis PREFIX, post-redis-apart PREFIX)".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load: {err}");
            ExitCode::FAILURE
        }
    }
}
