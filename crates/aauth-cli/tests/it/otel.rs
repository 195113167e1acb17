//! `[otel]` (a build with `--features otel`): `aauth serve` exports each request's span
//! over OTLP/HTTP to a collector, here a small receiver that keeps what it is sent; the
//! spans still batched at SIGTERM are sent before the process exits.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_demos::world::{Request, World};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::serve::{Flow, Served, fetch_through, flow, provider_config};
use crate::{aauth, assert_fails, scratch, stdout};

/// One POST the collector received: its path, content type and body.
#[derive(Debug, Clone)]
struct Export {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// An OTLP/HTTP receiver on loopback: every POST kept, answered `200` with an empty
/// (protobuf) `ExportTraceServiceResponse`.
async fn collector() -> (SocketAddr, Arc<Mutex<Vec<Export>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let kept = Arc::clone(&kept);
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let kept = Arc::clone(&kept);
                    async move {
                        let path = req.uri().path().to_owned();
                        let content_type = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await?.to_bytes().to_vec();
                        kept.lock().unwrap().push(Export {
                            path,
                            content_type,
                            body,
                        });
                        let mut resp = http::Response::new(Full::new(Bytes::new()));
                        resp.headers_mut()
                            .insert("content-type", "application/x-protobuf".parse().unwrap());
                        Ok::<_, hyper::Error>(resp)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn request_spans_reach_the_collector_by_shutdown_and_carry_no_credential() {
    let (collector, received) = collector().await;
    let dir = scratch("otel");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[otel]\nendpoint = \"http://{collector}/v1/traces\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut served = Served::start(&dir, "agent-provider", &config);
    world.alias("agent.example", served.addr);

    // A refused token request carrying a token-looking Signature-Key and a signature.
    let secretish = "eyJhbGciOiJFZERTQSJ9.b3RlbC1zZWNyZXQ.c2lnbmF0dXJl";
    let mut req = Request::new(b"{}".to_vec());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = "https://agent.example/agent-token".parse().unwrap();
    for (k, v) in [
        ("x-request-id", "otel-trace-me-7"),
        ("content-type", "application/json"),
        ("signature-input", "sig=(\"@method\");created=1"),
        ("signature", "sig=:QkJCQkJC:"),
        ("signature-key", &format!("sig=jwt;jwt=\"{secretish}\"")),
    ] {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let r = world.send(req).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "otel-trace-me-7");

    // Spans are batched for 5 s: none is sent yet; SIGTERM sends them.
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = served.terminate(Duration::from_secs(10));
        (status, served.log())
    })
    .await
    .unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after SIGTERM:\n{log}"));
    assert!(status.success(), "{status:?}\n{log}");

    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "nothing exported; log:\n{log}");
    for export in &received {
        assert_eq!(export.path, "/v1/traces");
        assert_eq!(export.content_type, "application/x-protobuf");
    }
    let all: Vec<u8> = received.iter().flat_map(|e| e.body.clone()).collect();
    // The request's id and path, the service, the span's name.
    for expected in [
        "otel-trace-me-7",
        "/agent-token",
        "aauth-agent-provider",
        "POST /agent-token",
    ] {
        assert!(contains(&all, expected), "{expected:?} not exported");
    }
    for secret in [secretish, "b3RlbC1zZWNyZXQ", "QkJCQkJC", "sig=jwt"] {
        assert!(!contains(&all, secret), "{secret} was exported");
    }
}

#[test]
fn config_check_shows_the_otel_section_and_names_a_bad_endpoint() {
    let dir = scratch("otel-check");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[otel]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n"),
    )
    .unwrap();
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let shown = stdout(&o);
    assert!(
        shown.contains("[otel]") && shown.contains("http://127.0.0.1:4318/v1/traces"),
        "{shown}"
    );
    std::fs::write(
        dir.join("bad.toml"),
        format!("{text}\n[otel]\nendpoint = \"collector:4318\"\n"),
    )
    .unwrap();
    assert_fails(
        &aauth(&dir, &["config", "check", "bad.toml"]),
        2,
        "otel.endpoint",
    );
}

/// What a served role asks of other servers (here the Person Server fetching the agent
/// provider's and the resource's keys and metadata) is exported as spans of their own:
/// method, host and path, never a query or a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_calls_are_exported_as_spans() {
    let (collector, received) = collector().await;
    let dir = scratch("otel-outgoing");
    let Flow {
        world,
        provider,
        resource,
        ps_config,
    } = flow(&dir, |text| {
        format!("{text}\n[otel]\nendpoint = \"http://{collector}/v1/traces\"\n")
    })
    .await;
    let mut ps = Served::start(&dir, "person-server", &ps_config);
    world.alias("ps.example", ps.addr);
    let o = fetch_through(&dir, [provider.addr, ps.addr, resource]).await;
    assert!(o.status.success(), "{}\n{}", stdout(&o), crate::stderr(&o));
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = ps.terminate(Duration::from_secs(10));
        (status, ps.log())
    })
    .await
    .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{log}");
    let all: Vec<u8> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|e| e.body.clone())
        .collect();
    for expected in [
        "outgoing request",
        "agent.example",
        "/.well-known/aauth-agent.json",
    ] {
        assert!(
            contains(&all, expected),
            "{expected:?} not exported; log:\n{log}"
        );
    }
    assert!(!contains(&all, "eyJ"), "a token was exported");
}
