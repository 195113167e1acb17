//! What the Redis tests share: the Redis of `AAUTH_REDIS_URL` under a fresh key prefix
//! (`aauth_test_support::services`: skipped loudly without it, failed without it in CI).

use aauth_keys::base64url;
use aauth_keys::rand::{OsRandom, RandomSource};
use aauth_metadata::store::redis::{Redis, RedisConfig};

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
    let url = aauth_test_support::services::redis_url(test)?;
    Some(Redis::connect(&config(&url)).await.unwrap())
}
