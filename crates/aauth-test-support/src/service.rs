//! A protected handler behind a resource's layer: a tower service that answers each
//! request with text and counts its calls.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower_service::Service;

/// What a handler answers a request with (for example, who the layer admitted).
pub type Answer = fn(&Request<Full<Bytes>>) -> String;

/// A handler answering `200` with the text of its [`Answer`] to each request; clones
/// share one call count.
#[derive(Debug, Clone)]
pub struct Answering {
    answer: Answer,
    calls: Arc<AtomicUsize>,
}

impl Answering {
    /// A handler answering with `answer`.
    #[must_use]
    pub fn new(answer: Answer) -> Self {
        Self {
            answer,
            calls: Arc::default(),
        }
    }

    /// How many requests reached it.
    #[must_use]
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<Full<Bytes>>> for Answering {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new(Full::new(Bytes::from((self.answer)(
            &req,
        ))))))
    }
}
