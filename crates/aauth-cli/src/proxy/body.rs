//! The body of every response `aauth serve` sends: whole (a role's answer, a refusal) or
//! streamed from the upstream, frame by frame, as it arrives.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// An error inside a body, as hyper takes it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: whole bytes or a stream (`From<Bytes>`, as the resource layer's
/// refusals need).
#[derive(Debug)]
pub(crate) struct ProxyBody(UnsyncBoxBody<Bytes, BoxError>);

impl ProxyBody {
    /// A body streamed from `body` (the upstream's), each frame passed on as it comes.
    pub(crate) fn stream<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self(body.map_err(Into::into).boxed_unsync())
    }

    /// The same body, holding `guard` until it is dropped (after its last frame, or
    /// when the response is abandoned).
    pub(crate) fn holding<G: Send + 'static>(self, guard: G) -> Self {
        Self(
            self.0
                .map_frame(move |frame| {
                    let _held = &guard;
                    frame
                })
                .boxed_unsync(),
        )
    }

    /// No body.
    pub(crate) fn empty() -> Self {
        Self::from(Bytes::new())
    }
}

impl From<Bytes> for ProxyBody {
    fn from(bytes: Bytes) -> Self {
        Self(
            Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
