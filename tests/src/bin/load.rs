//! The load harness behind `cargo xtask load` (issue 4's performance target): a resource in
//! agent-token mode, and the same handler without AAuth, each driven over loopback HTTP/1.1
//! with fresh signed requests.
//!
//! ```text
//! load serve aauth|plain          serve on 127.0.0.1:0, print "port=N", run until killed
//! load drive aauth|plain PORT S C N [P]
//!                                 send at most N requests over C connections for S seconds,
//!                                 P at a time per connection (HTTP/1.1 pipelining; default 1),
//!                                 print "rps=… p50_us=… p90_us=… p99_us=… sent=… failed=…"
//! load warm                       time the warm verification in process, print "warm_us=…"
//! ```
//! The xtask pins `serve` to one core and `drive` to another with `taskset` when it can.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a command-line measuring tool"
)]

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_resource::{AAuthLayer, Access, Resource, Route, RoutePolicy};
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

fn route() -> Result<Route, String> {
    let provider = PrivateKey::ed25519_from_seed(&PROVIDER_SEED);
    let iss = ServerId::parse("https://agent.example").map_err(e)?;
    let keys = StaticIssuerKeys::new().with(
        &iss,
        "aauth-agent.json",
        "key-1",
        provider.public_key().clone(),
    );
    let resource = Resource::new(
        ServerId::parse("https://resource.example").map_err(e)?,
        Arc::new(keys),
    );
    Ok(resource.route(RoutePolicy::new(Access::AgentToken)))
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
    path: &str,
    token: &str,
    now: aauth_keys::time::UnixTime,
) -> Result<http::Request<Vec<u8>>, String> {
    let agent = PrivateKey::ed25519_from_seed(&AGENT_SEED);
    let mut req = http::Request::get(format!("https://resource.example{path}"))
        .body(Vec::new())
        .map_err(e)?;
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

async fn serve(aauth: bool) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(e)?;
    println!("port={}", listener.local_addr().map_err(e)?.port());
    let layer = AAuthLayer::new(route()?, Arc::new(SystemClock));
    loop {
        let (tcp, _) = listener.accept().await.map_err(e)?;
        let _ = tcp.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(tcp);
        if aauth {
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
        } else {
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
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn drive(
    aauth: bool,
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
        let req = if aauth {
            signed_request(&format!("/data/{i}"), &token, clock.now())?
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
        requests.push(http::Request::from_parts(
            parts,
            Full::new(Bytes::from(body)),
        ));
    }
    if pipeline > 1 {
        let raw: Vec<Vec<u8>> = requests.iter().map(serialize).collect();
        return drive_pipelined(raw, port, seconds, connections, pipeline).await;
    }
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

/// A request as HTTP/1.1 bytes on the wire.
fn serialize(req: &http::Request<Full<Bytes>>) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method(), req.uri()).into_bytes();
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
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

async fn warm() -> Result<(), String> {
    let route = route()?;
    let clock = SystemClock;
    let token = agent_token(clock.now())?;
    let mut reqs = Vec::new();
    for i in 0..2000 {
        let (mut parts, _) =
            signed_request(&format!("/data/{i}"), &token, clock.now())?.into_parts();
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
    let result = match args.first().map(String::as_str) {
        Some("serve") => rt.block_on(serve(args.get(1).map(String::as_str) != Some("plain"))),
        Some("drive") => rt.block_on(drive(
            args.get(1).map(String::as_str) != Some("plain"),
            num(2, 0) as u16,
            num(3, 5),
            num(4, 8) as usize,
            num(5, 50_000) as usize,
            num(6, 1) as usize,
        )),
        Some("warm") => rt.block_on(warm()),
        _ => Err("usage: load serve aauth|plain | load drive aauth|plain PORT SECONDS CONNECTIONS MAX [PIPELINE] | load warm".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load: {err}");
            ExitCode::FAILURE
        }
    }
}
