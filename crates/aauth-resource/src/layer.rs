//! The tower layer: verifies each request before the inner service sees it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aauth_keys::time::Clock;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Refusal, Route};

/// The default cap on a request body the layer buffers for the digest check (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Verifies every request against a [`Route`]; admitted requests reach the inner service
/// with an [`crate::Admitted`] in their extensions and the body buffered; refused ones are
/// answered by the layer and never reach it.
///
/// The body is read whole (up to [`DEFAULT_MAX_BODY`], else `413`) because
/// `Content-Digest` must be checked before the handler runs.
#[derive(Clone)]
pub struct AAuthLayer {
    /// Shared: a layer (and its service) is cloned per request.
    route: Arc<Route>,
    clock: Arc<dyn Clock>,
    max_body: usize,
}

impl std::fmt::Debug for AAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthLayer")
            .field("route", &self.route)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl AAuthLayer {
    /// A layer for `route`, reading the time from `clock`.
    #[must_use]
    pub fn new(route: Route, clock: Arc<dyn Clock>) -> Self {
        Self {
            route: Arc::new(route),
            clock,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The largest body accepted, in bytes.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for AAuthLayer {
    type Service = AAuthService<S>;

    fn layer(&self, inner: S) -> AAuthService<S> {
        AAuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AAuthLayer`] produces.
#[derive(Clone)]
pub struct AAuthService<S> {
    inner: S,
    layer: AAuthLayer,
}

impl<S> std::fmt::Debug for AAuthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<B>> for AAuthService<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // An unsigned request is answered without reading its body.
            if let Some(refusal) = layer.route.precheck(&parts) {
                return Ok(refusal.into_http_response().map(ResB::from));
            }
            let bytes = match Limited::new(body, layer.max_body).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    let refusal = if e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        Refusal::TooLarge {
                            limit: layer.max_body,
                        }
                    } else {
                        Refusal::UnreadableBody {
                            reason: e.to_string(),
                        }
                    };
                    return Ok(refusal.into_http_response().map(ResB::from));
                }
            };
            match layer.route.check(&parts, &bytes, layer.clock.now()).await {
                Ok(admitted) => {
                    let rolled = admitted.rolled.clone();
                    parts.extensions.insert(admitted);
                    let mut resp = inner
                        .call(Request::from_parts(parts, Full::new(bytes)))
                        .await?;
                    if let Some(token) = rolled
                        && let Ok(mut v) = http::HeaderValue::from_str(token.secret())
                    {
                        v.set_sensitive(true);
                        resp.headers_mut()
                            .insert(aauth_headers::names::AAUTH_ACCESS, v);
                    }
                    Ok(resp)
                }
                Err(refusal) => Ok(refusal.into_http_response().map(ResB::from)),
            }
        })
    }
}
