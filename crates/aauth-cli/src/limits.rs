//! What `[rate_limit]` gives a served role: its rules, counted in its Redis or in this
//! process, and, with a Redis, the wrong-guess throttle (interaction codes, passwords)
//! that every instance of a Person or Access Server shares.

use std::sync::Arc;
use std::time::Duration;

use aauth_metadata::rate::{
    MemoryRateLimiter, RateLimit, RateLimiter, RateLimits, RateScope, RedisRateLimiter, Rule,
};
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{RedisThrottle, Throttle, ThrottlePolicy};

use crate::config::{self, Config};
use crate::error::CliError;
use crate::serve::config_error;

/// What a service counts requests and guesses with.
#[derive(Clone, Default)]
pub(crate) struct Limits {
    /// The configured rules (absent: no `[rate_limit]`).
    pub(crate) rules: Option<Arc<RateLimits>>,
    /// The throttle of wrong guesses in `[rate_limit] redis`, for every instance at once
    /// (absent: each server counts in its own memory, and N instances give N times the
    /// guesses).
    pub(crate) throttle: Option<Arc<dyn Throttle>>,
}

/// The limits of `c`'s `[rate_limit]`: one connection to its Redis, if any, for the rule
/// counts and the throttle (keys under `aauth:<id>:`, so that the instances of one
/// service share them and other services do not).
pub(crate) async fn limits(c: &Config) -> Result<Limits, CliError> {
    let Some(section) = &c.rate_limit else {
        return Ok(Limits::default());
    };
    let rules = rules(c, section)?;
    let redis = match &section.redis {
        Some(url) => {
            let config = RedisConfig::new(url.clone()).prefix(format!("aauth:{}:", c.id));
            Some(
                Redis::connect(&config)
                    .await
                    .map_err(|e| config_error(c, "rate_limit.redis", e))?,
            )
        }
        None => None,
    };
    let limiter: Arc<dyn RateLimiter> = match &redis {
        Some(r) => Arc::new(RedisRateLimiter::new(r.clone())),
        None => Arc::new(MemoryRateLimiter::default()),
    };
    Ok(Limits {
        rules: Some(Arc::new(RateLimits::new(rules, limiter))),
        throttle: redis.map(|r| {
            Arc::new(RedisThrottle::new(r, ThrottlePolicy::default())) as Arc<dyn Throttle>
        }),
    })
}

/// The rules of `[[rate_limit.rules]]`, each checked.
fn rules(c: &Config, section: &config::RateLimitSection) -> Result<Vec<Rule>, CliError> {
    let mut rules = Vec::new();
    for r in &section.rules {
        let limit = RateLimit::new(
            r.requests,
            Duration::from_secs(r.per_secs),
            r.burst.unwrap_or(r.requests),
        )
        .map_err(|e| config_error(c, "rate_limit.rules", e))?;
        if !r.path.starts_with('/') {
            return Err(config_error(
                c,
                "rate_limit.rules.path",
                format!("{:?} does not start with /", r.path),
            ));
        }
        rules.push(Rule {
            scope: match r.scope {
                config::RateRuleScope::Client => RateScope::Client,
                config::RateRuleScope::Endpoint => RateScope::Endpoint,
            },
            path: r.path.clone(),
            limit,
        });
    }
    Ok(rules)
}
