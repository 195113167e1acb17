//! What the Redis tests share: the Redis of `AAUTH_REDIS_URL` under a fresh key prefix
//! (skipped loudly without it, failed without it in CI), and a TCP proxy in front of it
//! that a test cuts and restores.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aauth_keys::base64url;
use aauth_keys::rand::{OsRandom, RandomSource};
use aauth_metadata::store::redis::{Redis, RedisConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The Redis URL the tests use, or `None` (with a loud note) when it is not set. In CI
/// (`CI` set) a missing URL fails the test: the stores must be tested there.
pub(crate) fn redis_url(test: &str) -> Option<String> {
    match std::env::var("AAUTH_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: AAUTH_REDIS_URL is not set, and in CI the Redis store tests must run"
            );
            // Straight to the process's stderr: the test harness would hide a captured
            // line of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "!! SKIPPED {test}: AAUTH_REDIS_URL is not set (e.g. redis://127.0.0.1:6379); \
                 the Redis stores were NOT tested."
            );
            None
        }
    }
}

/// A key prefix no other test (or run) uses.
pub(crate) fn fresh_prefix() -> String {
    let mut b = [0u8; 12];
    OsRandom.fill(&mut b).unwrap();
    format!("aauth-test:{}:", base64url::encode(&b))
}

/// The configuration of `url` under a fresh prefix. The timeouts are generous: a debug
/// build verifying fifty signatures at once can keep the connection's task waiting for a
/// while, and a timeout would be a (correct, but here unwanted) `503`.
pub(crate) fn config(url: &str) -> RedisConfig {
    RedisConfig::new(url)
        .prefix(fresh_prefix())
        .connect_timeout(std::time::Duration::from_secs(5))
        .response_timeout(std::time::Duration::from_secs(5))
}

/// The Redis of `AAUTH_REDIS_URL` under a fresh prefix, or `None` when the test skips.
pub(crate) async fn redis(test: &str) -> Option<Redis> {
    let url = redis_url(test)?;
    Some(Redis::connect(&config(&url)).await.unwrap())
}

/// A TCP proxy to Redis that the test can cut (every connection through it is closed,
/// and new ones are closed as they arrive) and restore.
pub(crate) struct Cutter {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.accept.abort();
        self.sever();
    }
}

impl Cutter {
    /// A proxy on loopback forwarding to the Redis of `url`.
    pub(crate) async fn start(url: &str) -> Self {
        let target = host_port(url);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (cut, open) = (Arc::clone(&cut), Arc::clone(&open));
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    open.lock().unwrap().push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Self {
            addr,
            cut,
            open,
            accept,
        }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub(crate) fn url(&self, url: &str) -> String {
        url.replacen(&host_port(url), &self.addr.to_string(), 1)
    }

    /// Closes every connection through the proxy, and every new one until
    /// [`Cutter::restore`].
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.sever();
    }

    /// Forwards again.
    pub(crate) fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn sever(&self) {
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// The `host:port` of a `redis://` URL (6379 when it names none).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:6379")
    }
}
