//! `body_timeout_secs`: a request body must arrive whole within it of its head. A client
//! that sends its body a byte at a time otherwise holds one of `max_connections` (and
//! what is buffered of the body) for as long as it likes; `header_timeout_secs` only
//! covers the head.
//!
//! Every role's requests carry an [`InBody`]: hyper's body with the deadline. Past it the
//! body ends with a [`BodyTimedOut`] error (an `io::Error` of kind `TimedOut`), which a
//! role reading the body answers `408`, and the resource proxy's upstream sees as a body
//! that broke off. A body already whole with its head has none: a WebSocket's handshake
//! (its tunnel is not the body, and hyper gives an HTTP/2 extended `CONNECT` an empty
//! one). A request that asks for an upgrade and sends a body anyway is held to it like
//! any other. A request's trailers are dropped here: no role reads them, and the resource
//! proxy must not pass on headers it never checked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

/// A request body that did not arrive within `body_timeout_secs`, inside an `io::Error`
/// of kind `TimedOut`, so that readers that know nothing of this type can tell it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} s (body_timeout_secs)")]
pub(crate) struct BodyTimedOut(pub(crate) u64);

/// hyper's request body, ended with [`BodyTimedOut`] once its deadline passes.
#[derive(Debug)]
pub(crate) struct InBody {
    inner: Incoming,
    /// `None`: no deadline (the body is whole), or it has passed and been reported.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The configured seconds, for the error.
    secs: u64,
    /// Told once the body has ended (whole, broken off or timed out): the resource
    /// proxy starts its wait for the upstream's answer then ([`InBody::end`]).
    ended: Option<Arc<Notify>>,
    /// When the deadline passes (`None`: the body was whole with its head).
    due: Option<tokio::time::Instant>,
}

impl InBody {
    /// `inner` with a deadline `limit` from now, unless it is already whole.
    pub(crate) fn new(inner: Incoming, limit: Duration) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(limit)));
        Self {
            due: deadline.as_ref().map(|d| d.deadline()),
            inner,
            deadline,
            secs: limit.as_secs(),
            ended: None,
        }
    }

    /// When the body must have arrived whole (`None`: it was whole with its head). Past
    /// it the body is over, whether or not anyone reads it: a reader that stopped (an
    /// upstream that no longer takes the body) never sees the deadline's error.
    pub(crate) fn due(&self) -> Option<tokio::time::Instant> {
        self.due
    }

    /// What is told when the body has ended: at once if it has (a `notified()` completes
    /// for the one waiter, however late it asks).
    pub(crate) fn end(&mut self) -> Arc<Notify> {
        let ended = Arc::clone(self.ended.get_or_insert_with(Arc::default));
        if self.inner.is_end_stream() {
            ended.notify_one();
        }
        ended
    }

    /// The body has ended: tell whoever asked.
    fn ending(&mut self) {
        self.deadline = None;
        if let Some(ended) = self.ended.take() {
            ended.notify_one();
        }
    }
}

impl Body for InBody {
    type Data = Bytes;
    /// hyper's error, or the deadline's (kind `TimedOut`).
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                // A request's trailers are nobody's here, and never go on: an upstream
                // that merged them into its headers would take an `x-aauth-*` one from
                // the client (trailers come after the headers were checked). What
                // follows them is the end.
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                    this.ending();
                    continue;
                }
                Poll::Ready(frame) => {
                    let broke = matches!(frame, Some(Err(_)));
                    if frame.is_none() || broke || this.inner.is_end_stream() {
                        this.ending();
                    }
                    Poll::Ready(frame.map(|f| f.map_err(std::io::Error::other)))
                }
                Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        this.ending();
                        Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            BodyTimedOut(this.secs),
                        ))))
                    }
                    _ => Poll::Pending,
                },
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
