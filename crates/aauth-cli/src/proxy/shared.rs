//! What the resource proxy's instances share, as `store` says: in this process
//! (`memory`, the default: one instance) or in Redis (`redis://…`, `rediss://…`: every
//! instance on the same Redis shares the replay cache, revocations, held calls and
//! sessions, so a request replayed to another instance is refused, a revocation received
//! by one is enforced by all, a held call is run once whichever instance the poll
//! reaches, and a session granted through one is honoured by all).

use std::sync::Arc;

use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_resource::{
    HeldStore, MemoryHeldStore, MemoryReplayStore, MemoryRevocationList, MemorySessionStore,
    RedisHeldStore, RedisReplayAndRevocations, RedisReplayStore, RedisRevocationList,
    RedisSessionStore, ReplayGuard, ReplayStore, RevocationStore, SessionStore,
};
use aauth_tokens::ServerId;

use crate::config::{Config, ProxyReplay};
use crate::error::CliError;

/// How many revocations the proxy remembers (each until its token's `exp` plus a minute).
const REVOCATIONS: usize = 10_000;
/// How many calls it holds for their auth tokens.
const HELD_CALLS: usize = 10_000;
/// How many live sessions it keeps (the session-token access mode).
const SESSIONS: usize = 100_000;
/// The clock-skew allowance of revocation records.
const SKEW: u64 = 60;

/// The proxy's shared state.
pub(super) struct Shared {
    /// The replay cache, within `[resource_proxy.replay]`'s bounds: of the routes, the
    /// revocation endpoint and DPoP proofs alike.
    pub(super) replay: Arc<dyn ReplayStore>,
    pub(super) revocations: Arc<dyn RevocationStore>,
    /// The two above in one Redis, asked together (one round trip for a token-bearing
    /// state-changing request instead of two).
    pub(super) both: Option<Arc<RedisReplayAndRevocations>>,
    pub(super) held: Arc<dyn HeldStore>,
    /// The sessions the upstream granted.
    pub(super) sessions: Arc<dyn SessionStore>,
    /// The Redis behind them, for the readiness check.
    pub(super) redis: Option<Redis>,
}

impl Shared {
    /// The replay guard of the revocation endpoint: the routes' cache.
    pub(super) fn revocation_replay(&self) -> ReplayGuard {
        ReplayGuard::new(Arc::clone(&self.replay))
    }
}

/// Where `store` says the state lives: `None` for memory, the Redis URL otherwise.
fn redis_url(c: &Config) -> Result<Option<&str>, CliError> {
    let store = c.store.as_str();
    if store == "memory" {
        return Ok(None);
    }
    if store.starts_with("redis://") || store.starts_with("rediss://") {
        // Read now, so that a malformed URL is a configuration error, not a 503 later.
        aauth_metadata::store::redis::client::Client::open(store).map_err(|e| CliError::Usage {
            flag: "store",
            reason: format!("{}: {e}", crate::config::redact_url(store)),
        })?;
        return Ok(Some(store));
    }
    Err(CliError::Usage {
        flag: "store",
        reason: format!(
            "{}: the resource proxy keeps what its instances share in \"memory\" (one \
             instance) or in Redis (\"redis://…\" or \"rediss://…\")",
            crate::config::redact_url(store)
        ),
    })
}

/// `aauth config check` of `store` and `[resource_proxy.replay]` for the proxy: what
/// [`shared`] would refuse, without connecting.
pub(super) fn check(c: &Config) -> Result<(), CliError> {
    replay_bounds(c)?;
    credential_key(c)?;
    redis_url(c).map(drop)
}

/// The replay cache's bounds: in all, per key, per issuer.
struct ReplayBounds {
    entries: usize,
    key_share: usize,
    issuer_share: usize,
}

/// `[resource_proxy.replay]`, checked: every bound at least one, no share above the
/// whole; a share not given is its default, or the whole if that is smaller.
fn replay_bounds(c: &Config) -> Result<ReplayBounds, CliError> {
    let r: ProxyReplay = c
        .resource_proxy
        .as_ref()
        .map(|p| p.replay)
        .unwrap_or_default(); // default: no section, the documented bounds
    if r.entries == 0 {
        return Err(CliError::Usage {
            flag: "resource_proxy.replay.entries",
            reason: "must be at least 1".to_owned(),
        });
    }
    let share = |flag: &'static str, given: Option<usize>, default: usize| match given {
        None => Ok(default.min(r.entries)),
        Some(n) if n >= 1 && n <= r.entries => Ok(n),
        Some(n) => Err(CliError::Usage {
            flag,
            reason: format!("{n}: must be between 1 and entries ({})", r.entries),
        }),
    };
    Ok(ReplayBounds {
        entries: r.entries,
        key_share: share(
            "resource_proxy.replay.key_share",
            r.key_share,
            aauth_signing::DEFAULT_REPLAY_SHARE,
        )?,
        issuer_share: share(
            "resource_proxy.replay.issuer_share",
            r.issuer_share,
            aauth_signing::DEFAULT_REPLAY_ISSUER_SHARE,
        )?,
    })
}

/// The sessions in `redis`, sealing the credentials they wrap under
/// `resource_proxy.sessions.credential_key_file` when given.
fn sessions(c: &Config, redis: &Redis) -> Result<RedisSessionStore, CliError> {
    let store = RedisSessionStore::new(redis.clone(), SESSIONS);
    Ok(match credential_key(c)? {
        Some(key) => store.seal_credentials(&key),
        None => store,
    })
}

/// `resource_proxy.sessions.credential_key_file`'s key, when it names one.
fn credential_key(c: &Config) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, CliError> {
    let Some(path) = c
        .resource_proxy
        .as_ref()
        .and_then(|p| p.sessions.credential_key_file.as_ref())
    else {
        return Ok(None);
    };
    let text = crate::keys::read_secret_text(path)?;
    let key = crate::roles::hex32(&text).ok_or_else(|| CliError::Usage {
        flag: "resource_proxy.sessions.credential_key_file",
        reason: format!("{}: not 64 hex digits", path.display()),
    })?;
    Ok(Some(zeroize::Zeroizing::new(key)))
}

/// The key prefix of the resource `id` in a shared Redis: its identifier, so that several
/// resources may share one Redis and each keeps its own state.
fn prefix(id: &ServerId) -> String {
    format!("aauth:{}:", id.as_str())
}

/// The shared state `c` configures for the resource `id`, connecting to Redis if it
/// names one.
pub(super) async fn shared(c: &Config, id: &ServerId) -> Result<Shared, CliError> {
    let bounds = replay_bounds(c)?;
    let Some(url) = redis_url(c)? else {
        let replay = MemoryReplayStore::new(bounds.entries)
            .share(bounds.key_share)
            .issuer_share(bounds.issuer_share);
        return Ok(Shared {
            replay: Arc::new(replay),
            revocations: Arc::new(MemoryRevocationList::new(SKEW, REVOCATIONS)),
            both: None,
            held: Arc::new(MemoryHeldStore::new(HELD_CALLS)),
            sessions: Arc::new(MemorySessionStore::new(SESSIONS)),
            redis: None,
        });
    };
    let config = RedisConfig::new(url).prefix(prefix(id));
    let redis = Redis::connect(&config).await.map_err(|e| {
        CliError::Operational(format!(
            "{} (store): {}: {}",
            c.id,
            config.redacted_url(),
            aauth_metadata::store::redis::describe(&e)
        ))
    })?;
    let both = Arc::new(RedisReplayAndRevocations::new(
        RedisReplayStore::new(redis.clone())
            .max(bounds.entries)
            .share(bounds.key_share)
            .issuer_share(bounds.issuer_share),
        RedisRevocationList::new(redis.clone(), SKEW, REVOCATIONS),
    ));
    Ok(Shared {
        replay: Arc::clone(&both) as Arc<dyn ReplayStore>,
        revocations: Arc::clone(&both) as Arc<dyn RevocationStore>,
        both: Some(both),
        held: Arc::new(RedisHeldStore::new(redis.clone(), HELD_CALLS)),
        sessions: Arc::new(sessions(c, &redis)?),
        redis: Some(redis),
    })
}
