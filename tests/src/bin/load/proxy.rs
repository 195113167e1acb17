//! What `cargo xtask load --proxy` puts around `aauth serve resource-proxy`, and the plain
//! reverse proxy it is compared with.
//!
//! `proxy-world DIR` writes the proxy's configuration (`DIR/proxy.toml`: the resource
//! `https://resource.example` on `127.0.0.1:0`, plain HTTP, one agent-token route `/data/*`
//! in front of the upstream, as `serve aauth` verifies), its signing key and the world's CA,
//! then serves, until killed, the upstream (the `Hello` handler, plain HTTP) and
//! `agent.example` (the agent provider whose key signs the load's agent tokens: its
//! metadata and JWKS over TLS, fetched once by the proxy's key cache).
//!
//! `plain-proxy PORT` is a reverse proxy without AAuth: hyper's pooled client to the
//! upstream, the hop-by-hop headers dropped, `x-forwarded-host` and `-proto` set, the
//! same response-head timeout, the response streamed back. What it leaves out beside the
//! verification is the request log (id and line) `aauth serve` writes for every request.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aauth_agent::AgentProvider;
use aauth_demos::world::{World, provider_handler};
use aauth_keys::PrivateKey;
use aauth_keys::time::{Clock, SystemClock};
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{PROVIDER_SEED, e, serve_plain};

/// The proxy's own signing key (its resource tokens; unused by an agent-token route).
const PROXY_SEED: [u8; 32] = [13; 32];

/// Writes `dir/proxy.toml` and what it names, then serves the issuer and the upstream.
pub(crate) async fn world(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(e)?;
    let world = World::new().map_err(e)?;
    let provider_id = ServerId::parse("https://agent.example").map_err(e)?;
    let provider = AgentProvider::new(
        provider_id.clone(),
        Arc::new(PrivateKey::ed25519_from_seed(&PROVIDER_SEED)),
        "key-1",
    )
    .map_err(e)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let issuer = world
        .serve_async(&provider_id, provider_handler(Arc::new(provider), clock))
        .await
        .map_err(e)?;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(e)?;
    let upstream_port = upstream.local_addr().map_err(e)?.port();

    std::fs::write(dir.join("ca.pem"), world.ca_pem()).map_err(e)?;
    let mut jwk = PrivateKey::ed25519_from_seed(&PROXY_SEED).to_private_jwk();
    jwk.kid = Some("proxy-1".to_owned());
    let key = dir.join("proxy.jwk");
    std::fs::write(&key, jwk.to_json()).map_err(e)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(e)?;
    }
    let config = format!(
        r#"# Written by `load proxy-world` for `cargo xtask load --proxy`.
id = "https://resource.example"
listen = "127.0.0.1:0"
signing_key_file = "proxy.jwk"

[egress]
ca_files = ["ca.pem"]
connect_to = ["agent.example:443:{issuer}"]

[resource_proxy]
upstream = "http://127.0.0.1:{upstream_port}"

[[resource_proxy.routes]]
path = "/data/*"
access = "agent-token"
"#
    );
    std::fs::write(dir.join("proxy.toml"), config).map_err(e)?;
    println!("port={upstream_port}");
    // `world` serves the issuer for as long as this runs.
    let served = serve_plain(upstream).await;
    drop(world);
    served
}

/// The headers that describe one connection (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The response-head timeout (`aauth serve resource-proxy`'s default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// The plain reverse proxy to `127.0.0.1:upstream`, on a multi-threaded runtime as
/// `aauth serve` runs; prints `port=N`, serves until killed.
pub(crate) fn plain(upstream: u16) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async move {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .build(http);
        let authority: http::uri::Authority = format!("127.0.0.1:{upstream}").parse().map_err(e)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(e)?;
        println!("port={}", listener.local_addr().map_err(e)?.port());
        loop {
            let (tcp, _) = listener.accept().await.map_err(e)?;
            let _ = tcp.set_nodelay(true);
            let (client, authority) = (client.clone(), authority.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    forward(client.clone(), authority.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    })
}

/// Sends `req` on to the upstream and streams its answer back (`502`, `504` otherwise).
async fn forward(
    client: Client<HttpConnector, Incoming>,
    authority: http::uri::Authority,
    req: http::Request<Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = match http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority)
        .path_and_query(pq)
        .build()
    {
        Ok(u) => u,
        Err(_) => return Ok(status(http::StatusCode::BAD_REQUEST)),
    };
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if let Some(host) = parts.headers.remove(header::HOST) {
        parts.headers.insert("x-forwarded-host", host);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    parts.version = http::Version::HTTP_11;
    let sent = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.request(http::Request::from_parts(parts, body)),
    )
    .await;
    Ok(match sent {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            for name in &HOP_BY_HOP {
                parts.headers.remove(name);
            }
            http::Response::from_parts(parts, body.boxed_unsync())
        }
        Ok(Err(_)) => status(http::StatusCode::BAD_GATEWAY),
        Err(_) => status(http::StatusCode::GATEWAY_TIMEOUT),
    })
}

/// An empty answer with `code`.
fn status(code: http::StatusCode) -> http::Response<Body> {
    let mut r = http::Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = code;
    r
}
