//! An in-memory network for the agent's [`Transport`]: each host is a handler (a
//! sans-IO endpoint or a tower service), every request recorded as it went on the wire.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use aauth_agent::{Transport, TransportError};
use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower_service::Service;

/// One host's answer to a request (in origin form, with `Host`).
pub type Handler = Arc<
    dyn Fn(Request<Bytes>) -> Pin<Box<dyn Future<Output = Response<Bytes>> + Send>> + Send + Sync,
>;

/// One request as it went on the wire.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its method.
    pub method: http::Method,
    /// Its path and query.
    pub path: String,
    /// Its headers, `Host` included.
    pub headers: http::HeaderMap,
}

impl Seen {
    /// The `typ` of the token in `Signature-Key: sig=jwt;jwt="…"`, if any.
    #[must_use]
    pub fn token_typ(&self) -> Option<String> {
        let sk = self.headers.get("signature-key")?.to_str().ok()?;
        let jwt = sk.split("jwt=\"").nth(1)?.split('"').next()?;
        let header = aauth_keys::base64url::decode(jwt.split('.').next()?).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
        v["typ"].as_str().map(str::to_owned)
    }

    /// The value of header `name` as text; empty when absent.
    ///
    /// # Panics
    ///
    /// If the value is not visible ASCII.
    #[must_use]
    pub fn header(&self, name: &str) -> String {
        crate::request::header(&self.headers, name)
    }
}

/// Hosts → handlers; every request recorded, delivered in origin form with `Host`.
#[derive(Default)]
pub struct Net {
    hosts: Mutex<BTreeMap<String, Handler>>,
    /// Every request sent, in order.
    pub log: Mutex<Vec<Seen>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = lock(&self.hosts).keys().cloned().collect();
        f.debug_struct("Net")
            .field("hosts", &hosts)
            .field("log", &lock(&self.log).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Net {
    /// Serves `host` with `handler` (replacing any handler it had).
    pub fn host(&self, host: &str, handler: Handler) {
        lock(&self.hosts).insert(host.to_owned(), handler);
    }

    /// The requests sent so far.
    #[must_use]
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.log).clone()
    }

    /// The `typ` of each request's token so far ([`Seen::token_typ`]), `-` for none.
    #[must_use]
    pub fn typs(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| s.token_typ().unwrap_or_else(|| "-".to_owned()))
            .collect()
    }
}

#[async_trait]
impl Transport for Net {
    /// # Panics
    ///
    /// If the request's URI has no host or path.
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        // Host names compare without case, as DNS does.
        let host = req
            .uri()
            .host()
            .expect("an absolute URI")
            .to_ascii_lowercase();
        let handler = lock(&self.hosts)
            .get(&host)
            .cloned()
            .ok_or_else(|| TransportError::new(format!("no host {host}")))?;
        let (mut parts, body) = req.into_parts();
        parts.uri = parts
            .uri
            .path_and_query()
            .expect("a path")
            .as_str()
            .parse()
            .expect("an origin-form URI");
        parts
            .headers
            .insert("host", host.parse().expect("a valid Host"));
        lock(&self.log).push(Seen {
            method: parts.method.clone(),
            path: parts.uri.to_string(),
            headers: parts.headers.clone(),
        });
        Ok(handler(Request::from_parts(parts, body)).await)
    }
}

/// A tower service (such as a resource's layered route) served as a [`Handler`], its
/// response body collected.
///
/// # Panics
///
/// The handler panics if the service or its body fails.
pub fn service_handler<S, B>(svc: S) -> Handler
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    Arc::new(move |req: Request<Bytes>| {
        let mut svc = svc.clone();
        Box::pin(async move {
            let resp = svc
                .call(req.map(Full::new))
                .await
                .expect("the service answers");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("the body is read").to_bytes();
            Response::from_parts(parts, body)
        })
    })
}

/// A response with `status`, `headers` and `body`.
///
/// # Panics
///
/// If the status or a header is not valid HTTP.
#[must_use]
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body.to_owned()));
    *r.status_mut() = http::StatusCode::from_u16(status).expect("a valid status");
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("a valid header name"),
            v.parse().expect("a valid header value"),
        );
    }
    r
}

/// A handler answering from a script, one response per request, the last one repeated.
///
/// # Panics
///
/// The handler panics if the script is empty.
#[must_use]
pub fn scripted(script: Vec<Response<Bytes>>) -> Handler {
    let script = Arc::new(Mutex::new(script));
    Arc::new(move |_req| {
        let script = script.clone();
        Box::pin(async move {
            let mut s = lock(&script);
            if s.len() > 1 {
                s.remove(0)
            } else {
                s.first().expect("a non-empty script").clone()
            }
        })
    })
}
