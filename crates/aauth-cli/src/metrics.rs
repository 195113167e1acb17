//! `[metrics]`: Prometheus metrics on their own listen address (plain HTTP, for the
//! scraper on the operator's network, never the public port): what the roles record
//! through the `metrics` facade (`aauth_metadata::metric` lists the names), the key
//! cache's counters, read at each scrape, and the `aauth` command's own:
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `aauth_connections_refused_total` | counter | `reason` (`client_share`) | connections closed as soon as accepted: their client held its share of `max_connections` already (`max_connections_per_client`) |
//!
//! The listener serves at most [`MAX_CONNECTIONS`] connections at once (more wait in the
//! kernel's queue), each closed when a request's head does not arrive within
//! `header_timeout_secs`, as on the service's own listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;

use crate::error::CliError;

/// Connections closed as soon as accepted, by `reason`.
pub(crate) const CONNECTIONS_REFUSED: &str = "aauth_connections_refused_total";

/// The connections the metrics listener serves at once: a scraper or two, and a person
/// with `curl`.
pub(crate) const MAX_CONNECTIONS: usize = 8;

/// The key cache whose counters are exported.
pub(crate) trait CacheCounters: Send + Sync + 'static {
    fn counters(&self) -> aauth_metadata::CacheStats;
}

impl<F: Send + Sync + 'static> CacheCounters for aauth_metadata::KeyCache<F> {
    fn counters(&self) -> aauth_metadata::CacheStats {
        self.stats()
    }
}

/// Installs the Prometheus recorder and serves `GET /metrics` on `listen` in the
/// background, at most [`MAX_CONNECTIONS`] connections at once, each given `header_timeout`
/// for a request's head.
pub(crate) async fn serve(
    listen: SocketAddr,
    header_timeout: Duration,
    cache: Arc<dyn CacheCounters>,
) -> Result<(), CliError> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| CliError::Operational(format!("metrics: {e}")))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Operational(format!("metrics: listening on {listen}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Operational(e.to_string()))?;
    tracing::info!(listen = %local, "serving metrics");
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            // Past the cap, connections wait in the kernel's queue.
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: wait rather than spin on the error.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (handle, cache) = (handle.clone(), Arc::clone(&cache));
            tokio::spawn(async move {
                let _permit = permit;
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let answer = scrape(&req, &handle, cache.as_ref());
                    async move { Ok::<_, std::convert::Infallible>(answer) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// `GET /metrics`: the text exposition, the cache's counters set first; else `404`.
fn scrape<B>(
    req: &http::Request<B>,
    handle: &PrometheusHandle,
    cache: &dyn CacheCounters,
) -> http::Response<Full<Bytes>> {
    if req.method() != http::Method::GET || req.uri().path() != "/metrics" {
        let mut r = http::Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        return r;
    }
    let s = cache.counters();
    for (name, value) in [
        ("aauth_key_cache_hits", s.hits),
        ("aauth_key_cache_stale_hits", s.stale_hits),
        ("aauth_key_cache_misses", s.misses),
        ("aauth_key_cache_fetches", s.fetches),
        ("aauth_key_cache_fetch_failures", s.failures),
    ] {
        #[expect(clippy::cast_precision_loss, reason = "a counter far below 2^52")]
        metrics::gauge!(name).set(value as f64);
    }
    let mut r = http::Response::new(Full::new(Bytes::from(handle.render())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
