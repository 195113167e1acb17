//! The replay cache and the revocations in one Redis, asked together.

use std::sync::LazyLock;

use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::client::Script;
use aauth_signing::{
    FirstUse, ReplayStore, ReplayStoreError, ReplayUse, RevocationList, RevocationReplayStore,
};
use aauth_tokens::ServerId;
use async_trait::async_trait;

use super::KEEP_LUA;
use super::replay::FIRST_USE_LUA;
use crate::{RecordError, RedisReplayStore, RedisRevocationList, RevocationStore};

/// The replay script with the revocation lookup in front. `KEYS` and `ARGV` are the
/// replay script's, and `KEYS[5]` the revocation record. Answers -3 for a revoked token
/// (nothing recorded), else as the replay script.
static FIRST_USE_UNREVOKED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{KEEP_LUA}if redis.call('EXISTS', KEYS[5]) == 1 then return -3 end\n{FIRST_USE_LUA}"
    ))
});

/// A resource's replay cache and revocation list in one Redis, asked together: the
/// revocation check and the replay check of a token-bearing state-changing request are
/// one script, one round trip ([`RevocationReplayStore::first_use_unrevoked`]), where
/// [`RedisRevocationList`] and [`RedisReplayStore`] given apart cost two.
///
/// Nothing is cached: the script reads the revocation record in Redis on every request,
/// so a revocation recorded by any instance is enforced by every instance on its next
/// request, as with the list alone; a revoked token's request records nothing. A safe
/// request (no replay check) or one without a token asks one question, one round trip,
/// as before. The store keeps the bounds and errors of the two it joins, and both must
/// be on the same Redis server (one [`aauth_metadata::store::redis::Redis`], as every
/// store of one process is); their key prefixes may differ.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_metadata::store::redis::{Redis, RedisConfig};
/// use aauth_resource::{
///     RedisReplayAndRevocations, RedisReplayStore, RedisRevocationList, Resource,
/// };
/// use aauth_tokens::{ServerId, StaticIssuerKeys};
/// let redis = Redis::connect(&RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let both = RedisReplayAndRevocations::new(
///     RedisReplayStore::new(redis.clone()),
///     RedisRevocationList::new(redis, 60, 100_000),
/// );
/// let resource = Resource::new(
///     ServerId::parse("https://resource.example")?,
///     Arc::new(StaticIssuerKeys::new()),
/// )
/// .revocations_and_replay(Arc::new(both));
/// # drop(resource);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisReplayAndRevocations {
    replay: RedisReplayStore,
    revocations: RedisRevocationList,
}

impl RedisReplayAndRevocations {
    /// `replay` and `revocations`, asked together (both on one Redis server).
    #[must_use]
    pub fn new(replay: RedisReplayStore, revocations: RedisRevocationList) -> Self {
        Self {
            replay,
            revocations,
        }
    }

    /// The replay cache.
    #[must_use]
    pub fn replay(&self) -> &RedisReplayStore {
        &self.replay
    }

    /// The revocation list (what the revocation endpoint records into).
    #[must_use]
    pub fn revocations(&self) -> &RedisRevocationList {
        &self.revocations
    }
}

#[async_trait]
impl RevocationList for RedisReplayAndRevocations {
    async fn is_revoked(&self, iss: &ServerId, jti: &str) -> Result<bool, String> {
        self.revocations.is_revoked(iss, jti).await
    }
}

#[async_trait]
impl RevocationStore for RedisReplayAndRevocations {
    async fn revoke(
        &self,
        iss: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), RecordError> {
        self.revocations.revoke(iss, jti, exp, now).await
    }
}

#[async_trait]
impl ReplayStore for RedisReplayAndRevocations {
    async fn first_use(
        &self,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        self.replay.first_use(entry, now).await
    }
}

#[async_trait]
impl RevocationReplayStore for RedisReplayAndRevocations {
    async fn first_use_unrevoked(
        &self,
        iss: &ServerId,
        jti: &str,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<FirstUse, ReplayStoreError> {
        let mut call = FIRST_USE_UNREVOKED.prepare_invoke();
        self.replay.first_use_call(&mut call, entry, now);
        call.key(self.revocations.record_key(iss, jti));
        match self.replay.run(&call).await? {
            -3 => Ok(FirstUse::Revoked),
            answer => Ok(if self.replay.answer(answer)? {
                FirstUse::Recorded
            } else {
                FirstUse::Replayed
            }),
        }
    }
}
