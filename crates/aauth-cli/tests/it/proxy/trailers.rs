//! A request's trailers never reach the upstream: they come after the headers were
//! checked, and an upstream that merged them into its headers would take an `x-aauth-*`
//! one from the client. The upstream here is reached over HTTP/2, which would carry them
//! (over HTTP/1.1 hyper sends only the trailers a `Trailer` header names, and that header
//! is hop-by-hop, dropped by the proxy).

use super::*;

/// A body of one chunk and then `trailers`, of no known length (so sent chunked over
/// HTTP/1.1).
struct Trailed {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Trailed {
    fn new(data: &'static [u8]) -> Self {
        let mut trailers = HeaderMap::new();
        trailers.insert(
            "x-aauth-agent",
            "aauth:mallory@agent.example".parse().unwrap(),
        );
        trailers.insert("x-smuggled", "1".parse().unwrap());
        Self {
            data: Some(Bytes::from_static(data)),
            trailers: Some(trailers),
        }
    }
}

impl http_body::Body for Trailed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let frame = match self.data.take() {
            Some(data) => Some(http_body::Frame::data(data)),
            None => self.trailers.take().map(http_body::Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

/// `POST /agent/upload` with a [`Trailed`] body, its trailers named in `Trailer` (which
/// hyper needs to send them over HTTP/1.1), signed by the assistant.
fn trailed_upload() -> http::Request<Trailed> {
    let trailer = [("trailer", "x-aauth-agent, x-smuggled")];
    let (parts, _) =
        signed("POST", "/agent/upload", &trailer, b"", &assistant_token()).into_parts();
    http::Request::from_parts(parts, Trailed::new(b"the body"))
}

/// Sends `req` straight to the TLS upstream on `port` (as `localhost`, HTTP/1.1).
async fn send_upstream(
    world: &World,
    port: u16,
    req: http::Request<Trailed>,
) -> http::Response<hyper::body::Incoming> {
    let (mut parts, body) = req.into_parts();
    parts.uri = "/agent/upload".parse().unwrap();
    parts.headers.insert("host", "localhost".parse().unwrap());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(world.roots())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
        .send_request(http::Request::from_parts(parts, body))
        .await
        .unwrap()
}

async fn json_of(resp: http::Response<hyper::body::Incoming>) -> serde_json::Value {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn a_requests_trailers_do_not_reach_the_upstream() {
    let dir = scratch("proxy-trailers");
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

    // Sent to the upstream itself, the trailers arrive: the upstream reads them.
    let direct = json_of(send_upstream(&world, port, trailed_upload()).await).await;
    assert_eq!(direct["received"], 8, "{direct}");
    assert_eq!(
        direct["trailers"],
        serde_json::json!(["x-aauth-agent", "x-smuggled"])
    );

    // Through the proxy: the body goes on (over HTTP/2), the trailers do not.
    let resp = send_tls_body(&world, proxy.addr, trailed_upload()).await;
    assert_eq!(resp.status(), 200, "{}", proxy.log());
    let through = json_of(resp).await;
    assert_eq!(through["received"], 8, "{through}");
    assert_eq!(through["version"], "HTTP/2.0", "{through}");
    assert_eq!(through["trailers"], serde_json::json!([]), "{through}");
    let headers = seen.last();
    assert_eq!(headers["x-aauth-agent"], "aauth:assistant@agent.example");
    assert!(!headers.contains_key("trailer"), "{headers:?}");
    assert_eq!(seen.calls(), 2);
}
