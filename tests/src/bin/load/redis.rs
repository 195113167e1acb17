//! `cargo xtask load --redis`: the resource's replay cache and revocation list in Redis,
//! beside the same route with both in memory.
//!
//! ```text
//! load serve post-memory           signed POSTs; replay cache and revocation list in memory
//! load serve post-redis PREFIX     the same, both in Redis under PREFIX, asked together
//!                                  (one round trip a request)
//! load serve post-redis-apart PREFIX  both in Redis, asked apart (two round trips)
//! load redis-info                  print "pid=N" (the Redis server's process) or fail
//! load redis-clean PREFIX          delete every key under PREFIX, print "deleted=N"
//! ```
//!
//! The Redis is `AAUTH_REDIS_URL` (default `redis://127.0.0.1:6379`). A Redis server
//! prints `port=N stats=M`: on port M it answers every connection with the Redis calls
//! it made so far (`calls=… call_us=…`: the store metrics' count and summed duration,
//! each call one round trip) and closes it, apart from the measured port.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aauth_metadata::store::redis::client::cmd;
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_resource::{
    MemoryRevocationList, RedisReplayAndRevocations, RedisReplayStore, RedisRevocationList,
    Resource,
};

use crate::e;

/// The Redis the load uses when `AAUTH_REDIS_URL` does not name one.
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// The revocation list's clock-skew allowance and bound (the resource proxy's).
const SKEW: u64 = 60;
const REVOCATIONS: usize = 10_000;
/// The replay store's bound and shares (the key's and its issuer's): sized for a load
/// test's rate from one key, as the memory store of the other modes is.
const REPLAY_ENTRIES: usize = 2_000_000;

fn url() -> String {
    std::env::var("AAUTH_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

async fn connect(prefix: &str) -> Result<Redis, String> {
    let config = RedisConfig::new(url()).prefix(prefix);
    Redis::connect(&config)
        .await
        .map_err(|err| format!("{}: {err}", config.redacted_url()))
}

/// How the POST modes keep their shared state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Replay cache and revocation list in this process.
    Memory,
    /// Both in Redis, asked together ([`RedisReplayAndRevocations`]).
    Redis,
    /// Both in Redis, asked apart.
    RedisApart,
}

/// `resource` with its replay cache and revocation list kept as `kept` says (`prefix`:
/// the Redis keys').
pub(crate) async fn stores(
    resource: Resource,
    kept: Kept,
    prefix: &str,
) -> Result<Resource, String> {
    if kept == Kept::Memory {
        return Ok(resource
            .replay_store(Arc::new(
                aauth_resource::MemoryReplayStore::new(REPLAY_ENTRIES)
                    .share(REPLAY_ENTRIES)
                    .issuer_share(REPLAY_ENTRIES),
            ))
            .revocations(Arc::new(MemoryRevocationList::new(SKEW, REVOCATIONS))));
    }
    let redis = connect(prefix).await?;
    let replay = RedisReplayStore::new(redis.clone())
        .max(REPLAY_ENTRIES)
        .share(REPLAY_ENTRIES)
        .issuer_share(REPLAY_ENTRIES);
    let revocations = RedisRevocationList::new(redis, SKEW, REVOCATIONS);
    Ok(if kept == Kept::Redis {
        resource.revocations_and_replay(Arc::new(RedisReplayAndRevocations::new(
            replay,
            revocations,
        )))
    } else {
        resource
            .replay_store(Arc::new(replay))
            .revocations(Arc::new(revocations))
    })
}

/// The Redis calls made so far: the store metrics' count and summed time.
#[derive(Default)]
struct Calls {
    count: AtomicU64,
    nanos: AtomicU64,
}

impl metrics::HistogramFn for Calls {
    fn record(&self, seconds: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }
}

/// A recorder that keeps only the store calls' durations.
struct Recorder(Arc<Calls>);

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        if key.name() == aauth_metadata::metric::STORE_DURATION {
            metrics::Histogram::from_arc(Arc::clone(&self.0))
        } else {
            metrics::Histogram::noop()
        }
    }
}

/// Counts this process's store calls and answers them on a port of their own; that port.
pub(crate) async fn stats() -> Result<u16, String> {
    let calls = Arc::new(Calls::default());
    metrics::set_global_recorder(Recorder(Arc::clone(&calls))).map_err(e)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(e)?;
    let port = listener.local_addr().map_err(e)?.port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let line = format!(
                "calls={} call_us={:.1}\n",
                calls.count.load(Ordering::Relaxed),
                calls.nanos.load(Ordering::Relaxed) as f64 / 1e3
            );
            let _ = tcp.write_all(line.as_bytes()).await;
        }
    });
    Ok(port)
}

/// Prints the Redis server's process id (for its CPU time), or fails when it does not
/// answer.
pub(crate) async fn info() -> Result<(), String> {
    let redis = connect("").await?;
    let info: String = cmd("INFO")
        .arg("server")
        .query_async(&mut redis.connection())
        .await
        .map_err(e)?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .map(str::trim)
        .ok_or("INFO server names no process_id")?;
    println!("pid={pid}");
    Ok(())
}

/// Deletes every key under `prefix`.
pub(crate) async fn clean(prefix: &str) -> Result<(), String> {
    if prefix.len() < 8 || !prefix.starts_with("aauth-load:") {
        return Err(format!("{prefix:?} is not a load run's prefix"));
    }
    let redis = connect(prefix).await?;
    let mut conn = redis.connection();
    let pattern = format!("{prefix}*");
    let (mut cursor, mut deleted) = (0_u64, 0_u64);
    loop {
        let (next, keys): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(e)?;
        if !keys.is_empty() {
            let n: u64 = cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(e)?;
            deleted += n;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    println!("deleted={deleted}");
    Ok(())
}
