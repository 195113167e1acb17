//! When an HTTP/2 connection is idle. hyper closes an HTTP/1.1 connection that sends no
//! next request within `header_timeout_secs`, and pings an HTTP/2 one, closing it when a
//! ping goes unanswered; but a client that answers pings and opens no stream would keep
//! its connection, one of `max_connections`, for ever. [`Streams`] counts a connection's
//! requests from their head to the end of their response body, and [`Streams::idle`]
//! ends once none has been open for the idle time, when the connection is shut as at
//! shutdown (a `GOAWAY`; a stream opened meanwhile is still answered, and every open
//! stream runs to its end). A WebSocket over HTTP/2 (an extended `CONNECT`) counts only
//! until its `200`: its tunnel outlives the `GOAWAY` that may follow, and the client
//! opens a new connection for its next request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The requests open on one connection (cheap to clone: clones count together).
#[derive(Clone, Debug)]
pub(crate) struct Streams(Arc<watch::Sender<usize>>);

/// One open request: the count goes down when it is dropped (with its response body).
#[derive(Debug)]
pub(crate) struct Open(Arc<watch::Sender<usize>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Streams {
    pub(crate) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }

    /// A request begins; it is open until the returned guard is dropped.
    pub(crate) fn open(&self) -> Open {
        self.0.send_modify(|n| *n += 1);
        Open(Arc::clone(&self.0))
    }

    /// Ends once no request has been open for `idle` together.
    pub(crate) async fn idle(&self, idle: Duration) {
        let mut open = self.0.subscribe();
        loop {
            // Never an error: `self` holds the sender.
            if open.wait_for(|n| *n == 0).await.is_err() {
                return std::future::pending().await;
            }
            match tokio::time::timeout(idle, open.changed()).await {
                // Nothing began (or ended) for `idle`, and none is open.
                Err(_) => return,
                Ok(Ok(())) => {}
                Ok(Err(_)) => return std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_ends_only_after_the_idle_time_with_nothing_open() {
        let streams = Streams::new();
        let idle = Duration::from_secs(30);
        let started = tokio::time::Instant::now();
        // Open for 50 s, then closed: idle 30 s after that, not before.
        let open = streams.open();
        let s = streams.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(50)).await;
            drop(open);
            // A request of 1 s at 60 s puts the idle time back.
            tokio::time::sleep(Duration::from_secs(10)).await;
            let again = s.open();
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(again);
        });
        streams.idle(idle).await;
        assert_eq!(started.elapsed(), Duration::from_secs(91));
    }
}
