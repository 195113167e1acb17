//! An upgraded connection's tunnel (a WebSocket passed through): bytes copied both ways
//! until either side closes, or until none has passed either way for
//! `tunnel_idle_timeout_secs`, when both halves are shut down. Without that, a tunnel
//! where neither side sends anything would hold its client connection (one of
//! `max_connections`) and an upstream connection for ever.
//!
//! The copying is [`tokio::io::copy_bidirectional`]'s (a half-close passed on, each
//! direction until its end) over the two streams, each wrapped to note the time of the
//! last read or write that moved a byte: a clock read per I/O call, never per byte. A
//! timer set for the idle time after that last activity runs beside the copy; when it
//! fires with activity since, it is set again from the newer time (once per idle time at
//! most, however busy the tunnel), and otherwise ends the tunnel.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// How long an idle tunnel's two shutdowns may take (a TLS `close_notify` to a peer that
/// reads nothing would wait for ever): the streams are dropped after it anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a tunnel ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Both sides closed (bytes copied client to upstream, upstream to client).
    Closed(u64, u64),
    /// A side failed.
    Failed(std::io::Error),
    /// Nothing passed either way for the idle time: both halves were shut down.
    Idle,
}

/// When bytes last moved, either way: nanoseconds after `start`.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Bytes moved now.
    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    /// When bytes last moved (the start, if never).
    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// Ends once nothing has moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            // An idle time too long for the clock never comes.
            let Some(due) = self.last().checked_add(idle) else {
                return std::future::pending().await;
            };
            if due <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A stream that notes in its [`Activity`] every read or write that moves a byte.
#[derive(Debug)]
struct Watched<'a, T> {
    io: T,
    activity: &'a Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Copies bytes both ways between `client` and `upstream` until both have closed, one
/// fails, or nothing has passed either way for `idle` (then both are shut down).
pub(crate) async fn run<C, U>(client: C, upstream: U, idle: Duration) -> Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut client = Watched {
        io: client,
        activity: &activity,
    };
    let mut upstream = Watched {
        io: upstream,
        activity: &activity,
    };
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => copied,
        () = activity.idle(idle) => {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
                tokio::join!(client.shutdown(), upstream.shutdown())
            })
            .await;
            return Ended::Idle;
        }
    };
    match copied {
        Ok((up, down)) => Ended::Closed(up, down),
        Err(e) => Ended::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;

    const IDLE: Duration = Duration::from_secs(300);

    /// A tunnel between two in-memory peers, run in a task: (the client's end, the
    /// upstream's end, the tunnel).
    fn tunnel() -> (
        DuplexStream,
        DuplexStream,
        tokio::task::JoinHandle<(Ended, Instant)>,
    ) {
        let (client, client_side) = tokio::io::duplex(1024);
        let (upstream, upstream_side) = tokio::io::duplex(1024);
        let running = tokio::spawn(async move {
            // Paused, the clock jumps to the next timer: a tunnel that never ends fails
            // the test here instead of hanging it.
            let ended = tokio::time::timeout(10 * IDLE, run(client_side, upstream_side, IDLE))
                .await
                .expect("the tunnel ended");
            (ended, Instant::now())
        });
        (client, upstream, running)
    }

    /// Reads until the peer's end: what came before it.
    async fn to_end(s: &mut DuplexStream) -> Vec<u8> {
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        all
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_ends_after_the_idle_time_and_both_sides_see_it() {
        let started = Instant::now();
        let (mut client, mut upstream, running) = tunnel();
        client.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        upstream.read_exact(&mut got).await.unwrap();
        let (ended, at) = running.await.unwrap();
        assert!(matches!(ended, Ended::Idle), "{ended:?}");
        assert_eq!(at - started, IDLE);
        assert!(to_end(&mut client).await.is_empty());
        assert!(to_end(&mut upstream).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_either_way_put_the_idle_time_back() {
        let started = Instant::now();
        let (mut client, mut upstream, running) = tunnel();
        let step = Duration::from_secs(200);
        // Client to upstream at 200 s, upstream to client at 400 s: idle from 400 s.
        tokio::time::sleep(step).await;
        client.write_all(b"up").await.unwrap();
        let mut got = [0u8; 2];
        upstream.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(step).await;
        upstream.write_all(b"down").await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        let (ended, at) = running.await.unwrap();
        assert!(matches!(ended, Ended::Idle), "{ended:?}");
        assert_eq!(at - started, 2 * step + IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_close_passes_through_and_the_tunnel_ends_with_both() {
        let (mut client, mut upstream, running) = tunnel();
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(to_end(&mut upstream).await, b"request");
        // The other way still carries bytes until the upstream closes too.
        upstream.write_all(b"answer").await.unwrap();
        upstream.shutdown().await.unwrap();
        assert_eq!(to_end(&mut client).await, b"answer");
        let (ended, _) = running.await.unwrap();
        assert!(matches!(ended, Ended::Closed(7, 6)), "{ended:?}");
    }
}
