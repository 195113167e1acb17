//! The layer that passes a request body on as it arrives when the decision does not need
//! it ([`AAuthLayer::streaming`]): a reverse proxy in front of an upload API, say.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use crate::Refusal;
use crate::gate::Outcome;
use crate::layer::{AAuthLayer, AAuthService, with_rolled};

/// An error inside a body, as `http_body` carries it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body an inner service behind [`StreamingLayer`] receives: read whole (the decision
/// needed it, and checked it), or streamed from the client, unread.
#[derive(Debug)]
#[non_exhaustive]
pub enum ForwardBody<B> {
    /// Read whole before the decision: its `Content-Digest` was checked, or the route
    /// holds calls.
    Read(Full<Bytes>),
    /// Passed on as it arrives: the decision did not depend on it (no body coverage
    /// required, no `Content-Digest` sent).
    Streamed(B),
}

impl<B> Body for ForwardBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Read(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Self::Streamed(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Read(full) => full.is_end_stream(),
            Self::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Read(full) => full.size_hint(),
            Self::Streamed(body) => body.size_hint(),
        }
    }
}

/// [`AAuthLayer`] for an inner service that takes the body as it arrives; see
/// [`AAuthLayer::streaming`].
#[derive(Clone, Debug)]
pub struct StreamingLayer(AAuthLayer);

impl AAuthLayer {
    /// This layer, passing a request's body on unread when the decision does not need
    /// it: the route does not require body coverage and the request carries no
    /// `Content-Digest` (a body nothing signed cannot change the decision, so reading it
    /// first would only delay it and cap its size). Otherwise the body is read whole
    /// (capped at [`AAuthLayer::max_body`]) and checked before the inner service sees
    /// any of it, as [`AAuthLayer`] does: an upstream never receives bytes whose digest
    /// has not yet been checked. Calls held for their auth token
    /// ([`AAuthLayer::defer_auth_token`]) are always read whole. The inner service takes
    /// `Request<ForwardBody<B>>`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use aauth_keys::time::{Clock, SystemClock};
    /// use aauth_resource::{AAuthLayer, Access, Resource, RoutePolicy};
    /// use aauth_tokens::{ServerId, StaticIssuerKeys};
    ///
    /// let resource = Resource::new(
    ///     ServerId::parse("https://api.example")?,
    ///     Arc::new(StaticIssuerKeys::new()),
    /// );
    /// let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    /// // Uploads stream to the handler; a signed digest is still checked first.
    /// let layer = AAuthLayer::new(resource.route(RoutePolicy::new(Access::AgentToken)), clock)
    ///     .streaming();
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn streaming(self) -> StreamingLayer {
        StreamingLayer(self)
    }
}

impl<S> Layer<S> for StreamingLayer {
    type Service = StreamingService<S>;

    fn layer(&self, inner: S) -> StreamingService<S> {
        StreamingService {
            inner,
            layer: self.0.clone(),
        }
    }
}

/// The service [`StreamingLayer`] produces.
#[derive(Clone)]
pub struct StreamingService<S> {
    inner: S,
    layer: AAuthLayer,
}

impl<S> std::fmt::Debug for StreamingService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

/// The inner service seen through [`AAuthService`]: a body read whole becomes
/// [`ForwardBody::Read`].
struct ReadWhole<S, B>(S, PhantomData<fn() -> B>);

impl<S: Clone, B> Clone for ReadWhole<S, B> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<S, B> Service<Request<Full<Bytes>>> for ReadWhole<S, B>
where
    S: Service<Request<ForwardBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> S::Future {
        self.0.call(req.map(ForwardBody::Read))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<B>> for StreamingService<S>
where
    S: Service<Request<ForwardBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: From<Bytes> + Body<Data = Bytes> + Send + 'static,
    ResB::Error: std::fmt::Display,
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
        let (parts, body) = req.into_parts();
        if layer.deferred().is_some() || layer.route().reads_body(&parts) {
            let mut whole = AAuthService::new(ReadWhole(inner, PhantomData), layer);
            return whole.call(Request::from_parts(parts, body));
        }
        Box::pin(async move {
            let mut parts = parts;
            #[cfg(feature = "oauth")]
            if let Some(oauth) = layer.oauth_access() {
                match oauth.step(&parts, layer.now()).await {
                    crate::oauth::OAuthStep::NotOAuth => {}
                    crate::oauth::OAuthStep::Admit(caller) => {
                        parts.extensions.insert(*caller);
                        return inner
                            .call(Request::from_parts(parts, ForwardBody::Streamed(body)))
                            .await;
                    }
                    crate::oauth::OAuthStep::Refuse(resp) => {
                        return Ok(crate::layer::with_requirement(layer.route(), &parts, resp)
                            .map(ResB::from));
                    }
                }
            }
            if let Some(refusal) = layer.route().precheck(&parts) {
                return Ok(layer.answer(refusal.into_http_response()).map(ResB::from));
            }
            let now = layer.now();
            // The body plays no part: no coverage required, no digest to check.
            match layer.route().decide(&parts, &[], now).await {
                Outcome::Admit(admitted) => {
                    let rolled = admitted.rolled.clone();
                    parts.extensions.insert(*admitted);
                    let resp = inner
                        .call(Request::from_parts(parts, ForwardBody::Streamed(body)))
                        .await?;
                    Ok(with_rolled(resp, rolled))
                }
                Outcome::AuthChallenge { resource_token, .. } => Ok(layer
                    .answer(
                        Refusal::Challenge {
                            requirement: aauth_headers::Requirement::AuthToken { resource_token },
                        }
                        .into_http_response(),
                    )
                    .map(ResB::from)),
                Outcome::Refuse(refusal) => {
                    Ok(layer.answer(refusal.into_http_response()).map(ResB::from))
                }
            }
        })
    }
}
