//! A WebSocket over HTTP/2 (RFC 8441: an extended `CONNECT` with `:protocol =
//! websocket`): admitted as any request on its route is, sent upstream as the HTTP/1.1
//! upgrade it stands for, and tunnelled both ways; unsigned, it never reaches the upstream.

use super::*;

/// `req` sent to the proxy at `proxy` over TLS negotiated as HTTP/2.
pub(super) async fn send_h2(
    world: &World,
    proxy: SocketAddr,
    req: http::Request<Vec<u8>>,
) -> http::Response<hyper::body::Incoming> {
    let (mut sender, _conn) = crate::connect_h2(world, proxy, "resource.example").await;
    sender
        .send_request(req.map(|b| Full::new(Bytes::from(b))))
        .await
        .unwrap()
}

/// An extended `CONNECT` for a WebSocket at `path`, signed by the assistant when
/// `signed_by_agent`.
pub(super) fn websocket(path: &str, signed_by_agent: bool) -> http::Request<Vec<u8>> {
    let headers = [("sec-websocket-version", "13")];
    let mut req = if signed_by_agent {
        signed("CONNECT", path, &headers, b"", &assistant_token())
    } else {
        let mut r = http::Request::builder()
            .method("CONNECT")
            .uri(format!("https://resource.example{path}"))
            .body(Vec::new())
            .unwrap();
        r.headers_mut()
            .insert("sec-websocket-version", "13".parse().unwrap());
        r
    };
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    req
}

#[tokio::test]
async fn a_websocket_over_http2_is_admitted_then_tunnelled_to_an_http1_upstream() {
    let s = AgentSetup::start("proxy-ws-h2").await;
    let resp = send_h2(&s.world, s.proxy.addr, websocket("/agent/ws", true)).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", s.proxy.log());
    assert!(!resp.headers().contains_key("sec-websocket-accept"));
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"hello over h2").await.unwrap();
    let mut back = [0u8; 13];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"hello over h2");
    // Upstream it was the HTTP/1.1 upgrade, with a key of the proxy's and the agent.
    let headers = s.seen.last();
    assert_eq!(headers["upgrade"], "websocket");
    assert_eq!(headers["sec-websocket-version"], "13");
    assert_eq!(headers["sec-websocket-key"].len(), 24, "{headers:?}");
    assert_eq!(headers["x-aauth-agent"], "aauth:assistant@agent.example");
    assert_eq!(s.seen.calls(), 1);

    // An upstream that answers without switching: no tunnel, 502 (over HTTP/2 a success
    // would open one and carry its answer as the WebSocket's data).
    let resp = send_h2(&s.world, s.proxy.addr, websocket("/agent/plain", true)).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(s.seen.calls(), 2);

    // Unsigned: refused, and the upstream never asked.
    let resp = send_h2(&s.world, s.proxy.addr, websocket("/agent/ws", false)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.seen.calls(), 2);
}

/// A request whose decision reads the body whole (here: it carries a `Content-Digest`)
/// is no wait for a WebSocket over HTTP/2: the extended `CONNECT`'s stream is the
/// tunnel's, never its body (hyper hands the request an empty one and the stream to the
/// upgrade), so the proxy decides at once and the tunnel opens.
#[tokio::test]
async fn a_websocket_over_http2_on_the_read_whole_path_does_not_wait_for_a_body() {
    let s = AgentSetup::start("proxy-ws-h2-digest").await;
    let headers = [
        ("sec-websocket-version", "13"),
        (
            "content-digest",
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
        ),
    ];
    let mut req = signed("CONNECT", "/agent/ws", &headers, b"", &assistant_token());
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        send_h2(&s.world, s.proxy.addr, req),
    )
    .await
    .unwrap_or_else(|_| panic!("the proxy waited for the tunnel's data\n{}", s.proxy.log()));
    assert_eq!(resp.status(), StatusCode::OK, "{}", s.proxy.log());
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    io.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ping");
    assert_eq!(s.seen.calls(), 1);
}

/// An HTTP/2 connection with no request open for `header_timeout_secs` is closed by the
/// server, though its client answers every ping; one with a WebSocket open through it
/// stays as long as the tunnel does.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_an_open_tunnel_is_not() {
    let s = AgentSetup::start_with("proxy-h2-idle", |text| {
        format!("header_timeout_secs = 1\n{text}")
    })
    .await;
    let (mut sender, conn) = crate::connect_h2(&s.world, s.proxy.addr, "resource.example").await;
    let health = http::Request::get("https://resource.example/healthz")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(health).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", s.proxy.log());
    let answered = Instant::now();
    drop(resp);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the idle connection was kept open");
    assert!(ended.unwrap().is_ok(), "closed cleanly");
    assert!(
        answered.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the idle time",
        answered.elapsed()
    );

    // A tunnel outlives the idle time, and still carries data.
    let resp = send_h2(&s.world, s.proxy.addr, websocket("/agent/ws", true)).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", s.proxy.log());
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    io.write_all(b"still here").await.unwrap();
    let mut back = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"still here");
}
