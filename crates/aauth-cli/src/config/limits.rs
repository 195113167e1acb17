//! The bounds a served role keeps that the configuration sets, with the libraries'
//! defaults, and their check:
//!
//! - `max_buffered_body_bytes` (top level): the bytes of request bodies the role's own
//!   endpoints hold at once, read whole (`aauth_metadata::budget::BodyBudget`; default 64
//!   MiB). Past it a request is answered `503` with `Retry-After: 1`. At least 64 KiB, the
//!   largest body a role reads (`aauth_metadata::serve::DEFAULT_BODY_LIMIT`): a smaller
//!   budget would refuse a body a role reads as if the service were busy, every time. A
//!   resource proxy's `/aauth/…` endpoints are its own endpoints; its routes hold theirs
//!   within `[resource_proxy] max_buffered_body_bytes`, a budget apart. Shared, anyone
//!   could have the API refused: the own endpoints read a body before anything in it is
//!   checked. Apart, neither can crowd out the other (the routes' bodies, its agents'
//!   uploads, cannot have a revocation sent to the proxy refused either); a proxy holds at
//!   most the two together.
//! - `[person_server] max_pending_per_provider` and `max_pending_total`: the requests
//!   waiting for a person per agent provider and in all (every agent's, and the ended ones
//!   kept for late polls), past which an agent no person there is bound to is refused
//!   `429` with `Retry-After` (`PersonServer::max_pending_per_provider`,
//!   `max_pending_total`; defaults 256 and 10 000). A bound agent is held to its own 16.
//!
//! None takes 0: the Person Server's builders would take 0 as 1 without a word, and a
//! budget below the largest body is refused above.

use super::Config;
use super::checks::Written;
use crate::error::CliError;

/// The default of `max_buffered_body_bytes`.
pub(super) fn body_budget() -> usize {
    aauth_metadata::budget::DEFAULT_BODY_BUDGET
}

/// The default of `[person_server] max_pending_per_provider`.
pub(super) fn pending_per_provider() -> usize {
    aauth_person_server::DEFAULT_MAX_PENDING_PER_PROVIDER
}

/// The default of `[person_server] max_pending_total`.
pub(super) fn pending_total() -> usize {
    aauth_person_server::DEFAULT_MAX_PENDING_TOTAL
}

/// The smallest `max_buffered_body_bytes`: the largest body a role reads.
const MIN_BODY_BUDGET: usize = aauth_metadata::serve::DEFAULT_BODY_LIMIT;

/// The bounds above, each within its range; a refusal names the key and, when the file
/// sets it, its line.
pub(super) fn check(c: &Config, written: Written<'_>) -> Result<(), CliError> {
    let refuse = |key: &'static str, value: usize, reason: String| CliError::Usage {
        flag: key,
        reason: written.at(key, &value.to_string(), format!("{value}: {reason}")),
    };
    if c.max_buffered_body_bytes < MIN_BODY_BUDGET {
        return Err(refuse(
            "max_buffered_body_bytes",
            c.max_buffered_body_bytes,
            format!(
                "at least {MIN_BODY_BUDGET} (64 KiB, the largest body a role reads), or no \
                 body that size is ever read"
            ),
        ));
    }
    if let Some(ps) = &c.person_server {
        for (key, value) in [
            (
                "person_server.max_pending_per_provider",
                ps.max_pending_per_provider,
            ),
            ("person_server.max_pending_total", ps.max_pending_total),
        ] {
            if value == 0 {
                return Err(refuse(
                    key,
                    value,
                    "at least 1 (the Person Server would take 0 as 1)".to_owned(),
                ));
            }
        }
    }
    Ok(())
}
