//! What `[rate_limit]` gives a served role: its rules, counted in its Redis or in this
//! process, and, with a Redis, the wrong-guess throttle (interaction codes, passwords)
//! that every instance of a Person or Access Server shares.
//!
//! The rules by client address and by endpoint are checked before the role sees a
//! request (`serve`'s `AppService`); the rules by who signed (`agent`, `person_server`)
//! by the Person or Access Server itself, once the signature verified: the same
//! [`RateLimits`], given to both.

use std::sync::Arc;
use std::time::Duration;

use aauth_metadata::rate::{
    MemoryRateLimiter, RateLimit, RateLimiter, RateLimits, RateScope, RedisRateLimiter, Rule,
};
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{RedisThrottle, Throttle, ThrottlePolicy};

use crate::cli::Role;
use crate::config::{self, Config, RateRuleScope};
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
    /// `[rate_limit] redis`, for `/readyz` to ask.
    pub(crate) redis: Option<Redis>,
}

/// The limits of `c`'s `[rate_limit]`: one connection to its Redis, if any, for the rule
/// counts and the throttle (keys under `aauth:<id>:`, so that the instances of one
/// service share them and other services do not).
pub(crate) async fn limits(c: &Config, role: Role) -> Result<Limits, CliError> {
    let Some(section) = &c.rate_limit else {
        return Ok(Limits::default());
    };
    let rules = rules(c, section, role)?;
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
        throttle: redis.clone().map(|r| {
            Arc::new(RedisThrottle::new(r, ThrottlePolicy::default())) as Arc<dyn Throttle>
        }),
        redis,
    })
}

/// What `aauth config check` checks of `[rate_limit]` without reaching its Redis: each
/// rule, for the role the configuration's section names (a scope that role never counts
/// is refused here, as at start).
pub(crate) fn check(c: &Config) -> Result<(), CliError> {
    let Some(section) = &c.rate_limit else {
        return Ok(());
    };
    let role = if c.resource_proxy.is_some() {
        Role::ResourceProxy
    } else if c.person_server.is_some() {
        Role::PersonServer
    } else if c.access_server.is_some() {
        Role::AccessServer
    } else {
        Role::AgentProvider
    };
    rules(c, section, role).map(drop)
}

/// The rules of `[[rate_limit.rules]]`, each checked, for `role`.
fn rules(
    c: &Config,
    section: &config::RateLimitSection,
    role: Role,
) -> Result<Vec<Rule>, CliError> {
    let mut rules = Vec::new();
    for r in &section.rules {
        scope_served_by(r.scope, role)?;
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
                RateRuleScope::Client => RateScope::Client,
                RateRuleScope::Endpoint => RateScope::Endpoint,
                RateRuleScope::Agent => RateScope::Agent,
                RateRuleScope::PersonServer => RateScope::PersonServer,
            },
            path: r.path.clone(),
            limit,
        });
    }
    Ok(rules)
}

/// Whether `role` counts rules of `scope`: by agent, only a Person or an Access Server
/// (the servers that verify agents); by Person Server, only an Access Server (the one
/// server Person Servers sign to). A rule no served role would count is a mistake,
/// refused by its key rather than ignored.
fn scope_served_by(scope: RateRuleScope, role: Role) -> Result<(), CliError> {
    let (name, counted, by) = match scope {
        RateRuleScope::Client | RateRuleScope::Endpoint => return Ok(()),
        RateRuleScope::Agent => (
            "agent",
            matches!(role, Role::PersonServer | Role::AccessServer),
            "aauth serve person-server and access-server",
        ),
        RateRuleScope::PersonServer => (
            "person_server",
            matches!(role, Role::AccessServer),
            "aauth serve access-server",
        ),
    };
    if counted {
        return Ok(());
    }
    Err(CliError::Usage {
        flag: "rate_limit.rules.scope",
        reason: format!(
            "{name:?} is counted only by {by} (it counts who signed a request, once \
             verified); aauth serve {} counts \"client\" and \"endpoint\"",
            role.name()
        ),
    })
}
