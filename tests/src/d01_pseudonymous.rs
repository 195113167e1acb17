//! Demo 1 (phase 1): pseudonymous proof of possession, and what an AAuth resource answers
//! a request that carries no signature. Over real TLS in the demo world.
//!
//! `https://resource.example` serves two routes: `/open` accepts a pseudonymous key
//! (`Signature-Key: sig=hwk;…`, Signature-Key -09 §3.4), `/agents` requires an agent token
//! (the agent-token access mode of draft -11). The agent has only a key pair.

use std::sync::Arc;

use aauth_keys::PrivateKey;
use aauth_keys::time::{Clock, SystemClock};
use aauth_resource::{AAuthLayer, AAuthService, Access, Admitted, Resource, RoutePolicy};
use aauth_signing::{hwk_scheme, sign_request};
use aauth_tokens::{ServerId, StaticIssuerKeys};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::Transcript;
use crate::world::{AsyncHandler, Request, Response, World};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A protected handler: answers `200` with the JSON its function makes of the admitted
/// request.
#[derive(Clone, Copy)]
pub(crate) struct Answers(pub(crate) fn(&http::Request<Full<Bytes>>) -> serde_json::Value);

impl Service<http::Request<Full<Bytes>>> for Answers {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let mut resp = http::Response::new(Full::new(Bytes::from((self.0)(&req).to_string())));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        std::future::ready(Ok(resp))
    }
}

/// The protected handler: says who it served.
pub(crate) const HELLO: Answers = Answers(hello);

fn hello(req: &http::Request<Full<Bytes>>) -> serde_json::Value {
    req.extensions().get::<Admitted>().map_or_else(
        || serde_json::json!({}),
        |a| match (a.agent(), a.pseudonym(), a.person()) {
            (Some(agent), _, _) => serde_json::json!({ "message": "Access granted", "agent": agent.as_str() }),
            (_, _, Some((iss, sub))) => serde_json::json!({ "message": "Access granted", "person": { "iss": iss.as_str(), "sub": sub }, "scope": a.scope() }),
            (_, Some(t), _) => serde_json::json!({ "message": "Access granted", "scheme": "hwk", "pseudonym": t.as_str(), "method": req.method().as_str() }),
            _ => serde_json::json!({ "message": "Access granted" }),
        },
    )
}

/// A world handler serving every path through `layer` in front of `inner`.
pub(crate) fn layered<S>(layer: AAuthLayer, inner: S) -> AsyncHandler
where
    S: Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<Full<Bytes>>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let svc = layer.layer(inner);
    routed(move |_| svc.clone())
}

/// A world handler dispatching on the path to one of several layered services.
fn routed<S>(pick: impl Fn(&str) -> AAuthService<S> + Send + Sync + 'static) -> AsyncHandler
where
    S: Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<Full<Bytes>>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    Arc::new(move |req: Request| {
        let mut svc = pick(req.uri().path());
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let resp = match svc
                .call(http::Request::from_parts(
                    parts,
                    Full::new(Bytes::from(body)),
                ))
                .await
            {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (parts, body) = resp.into_parts();
            let body = match body.collect().await {
                Ok(c) => c.to_bytes().to_vec(),
                Err(never) => match never {},
            };
            Response::from_parts(parts, body)
        })
    })
}

/// The resource as a world handler: `/open` and `/agents`, each behind its own layer.
fn resource_handler(clock: Arc<dyn Clock>) -> Result<AsyncHandler, String> {
    let resource = Resource::new(
        ServerId::parse("https://resource.example").map_err(e)?,
        Arc::new(StaticIssuerKeys::new()),
    );
    let open = AAuthLayer::new(
        resource.route(RoutePolicy::new(Access::Pseudonymous)),
        Arc::clone(&clock),
    )
    .layer(HELLO);
    let agents =
        AAuthLayer::new(resource.route(RoutePolicy::new(Access::AgentToken)), clock).layer(HELLO);
    Ok(routed(move |path| {
        if path == "/open" {
            open.clone()
        } else {
            agents.clone()
        }
    }))
}

/// Records one exchange: the request as sent, then the response.
pub(crate) fn exchange(
    t: &mut Transcript,
    actor: &'static str,
    summary: &str,
    req: Request,
    resp: &Response,
) {
    let mut d = show_request(&req);
    d.push("→".to_owned());
    d.extend(show_response(resp));
    t.step(actor, summary.to_owned(), d);
}

pub(crate) fn show_request(req: &Request) -> Vec<String> {
    let mut out = vec![format!("{} {}", req.method(), req.uri())];
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("<binary>");
        let shown = if v.len() > 140 {
            format!("{}…", &v[..140])
        } else {
            v.to_owned()
        };
        out.push(format!("{k}: {shown}"));
    }
    if !req.body().is_empty() {
        out.push(format!("body: {}", String::from_utf8_lossy(req.body())));
    }
    out
}

pub(crate) fn show_response(resp: &Response) -> Vec<String> {
    let mut out = vec![format!("HTTP/1.1 {}", resp.status())];
    for name in [
        "location",
        "retry-after",
        "aauth-requirement",
        "signature-error",
        "accept-signature-scheme",
        "accept-signature-alg",
    ] {
        if let Some(v) = resp.headers().get(name) {
            out.push(format!("{name}: {}", v.to_str().unwrap_or_default()));
        }
    }
    out.push(format!("body: {}", String::from_utf8_lossy(resp.body())));
    out
}

pub(crate) fn unsigned(method: &str, url: &str) -> Result<Request, String> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .body(Vec::new())
        .map_err(e)
}

/// Runs the demo.
///
/// # Errors
///
/// A description of the first step that did not behave as the drafts require.
pub(crate) fn run() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let world = World::new().map_err(e)?;
        world
            .serve_async(&ServerId::parse("https://resource.example").map_err(e)?, resource_handler(Arc::clone(&clock))?)
            .await
            .map_err(e)?;
        t.step("world", "https://resource.example serves /open (hwk accepted) and /agents (agent token required) over TLS on loopback", vec![]);

        let key = PrivateKey::generate(aauth_keys::Algorithm::Ed25519, &mut aauth_keys::rand::OsRandom).map_err(e)?;
        let scheme = hwk_scheme(key.public_key());
        t.step("agent", format!("holds only a key pair; its pseudonym is the key's thumbprint {}", key.public_key().thumbprint().as_str()), vec![]);


        // 1. Unsigned, where an agent token is required.
        let req = unsigned("GET", "https://resource.example/agents")?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 401, "aauth-requirement", "requirement=agent-token")?;
        exchange(&mut t, "agent", "asks /agents without a signature: told to present an agent token", req, &resp);

        // 2. Unsigned, at the pseudonymous endpoint.
        let req = unsigned("GET", "https://resource.example/open")?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 401, "signature-error", "error=invalid_signature")?;
        exchange(&mut t, "agent", "asks /open without a signature: invalid_signature", req, &resp);

        // 3. Signed with the pseudonymous key.
        let mut req = unsigned("GET", "https://resource.example/open")?;
        sign_request(&mut req, &key, &scheme, clock.now()).map_err(e)?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 200, "content-type", "application/json")?;
        let body: serde_json::Value = serde_json::from_slice(resp.body()).map_err(e)?;
        if body["pseudonym"] != key.public_key().thumbprint().as_str() {
            return Err(format!("the resource did not name the pseudonym: {body}"));
        }
        exchange(&mut t, "agent", "signs GET /open with sig=hwk: admitted under its pseudonym", req, &resp);

        // 4. A POST with a body: content-digest and content-type are covered.
        let mut req = http::Request::post("https://resource.example/open")
            .header("content-type", "application/json")
            .body(br#"{"note":"hello"}"#.to_vec())
            .map_err(e)?;
        sign_request(&mut req, &key, &scheme, clock.now()).map_err(e)?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 200, "content-type", "application/json")?;
        exchange(&mut t, "agent", "signs POST /open with a body: content-digest and content-type covered", req, &resp);

        // 5. The pseudonymous key where an agent token is required.
        let mut req = unsigned("GET", "https://resource.example/agents")?;
        sign_request(&mut req, &key, &scheme, clock.now()).map_err(e)?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 401, "signature-error", "error=unsupported_scheme")?;
        expect(&resp, 401, "accept-signature-scheme", "jwt")?;
        exchange(&mut t, "agent", "signs GET /agents with sig=hwk: unsupported_scheme, jwt accepted", req, &resp);
        Ok(t)
    })
}

pub(crate) fn expect(
    resp: &Response,
    status: u16,
    header: &str,
    value: &str,
) -> Result<(), String> {
    let got = resp
        .headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if resp.status().as_u16() != status || got != value {
        return Err(format!(
            "expected {status} with {header}: {value}, got {} with {header}: {got} ({})",
            resp.status(),
            String::from_utf8_lossy(resp.body())
        ));
    }
    Ok(())
}
