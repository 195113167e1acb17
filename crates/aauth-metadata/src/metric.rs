//! The names of the metrics the roles record through the [`metrics`](https://docs.rs/metrics)
//! facade. Nothing is recorded until the application installs a recorder (the `aauth`
//! command installs a Prometheus one when its configuration has `[metrics]`); an
//! application embedding a role installs its own, or none.
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `aauth_http_requests_total` | counter | `role`, `route`, `status` | requests answered (feature `ops`) |
//! | `aauth_http_request_duration_seconds` | histogram | `role`, `route` | time to answer (feature `ops`) |
//! | `aauth_refusals_total` | counter | `role`, `signature_error`, `requirement`, `oauth_error` | requests refused with a `Signature-Error`, an `AAuth-Requirement`, or an OAuth `WWW-Authenticate` error (feature `ops`) |
//! | `aauth_tokens_issued_total` | counter | `type` (`agent`, `person`, `auth`) | tokens signed by a role |
//! | `aauth_pending_requests_total` | counter | `state` (`created`, then how each ended: `delivered`, `denied`, `answered`, `expired`, `revoked`, `cancelled`, `failed`) | a Person Server's deferred requests; open = created − ended |
//! | `aauth_store_call_duration_seconds` | histogram | `store` | a blocking store call, queueing on the blocking pool included ([`crate::store::blocking`], feature `runtime`) |
//! | `aauth_store_errors_total` | counter | `store` | store calls that failed |
//! | `aauth_key_cache_*` | gauge | — | the key cache's counters ([`crate::CacheStats`]), set by the `aauth` command at each scrape |
//! | `aauth_rate_limited_total` | counter | `path` (the rule's path prefix, from the configuration) | requests refused `429` by a configured rate limit ([`crate::rate`]) |
//! | `aauth_upstream_duration_seconds` | histogram | `outcome` (`response`, `error`, `timeout`) | the `aauth` command's resource proxy: from sending an admitted request upstream to the upstream's response head (or its failure) |
//!
//! `route` is the path's first segment (`/pending`, `/interact`, …) or, for a
//! `/.well-known/` document, its whole path: never an identifier, so the label's values
//! stay few.

/// Requests answered.
pub const HTTP_REQUESTS: &str = "aauth_http_requests_total";
/// Time to answer a request.
pub const HTTP_DURATION: &str = "aauth_http_request_duration_seconds";
/// Requests refused with a draft error code or requirement.
pub const REFUSALS: &str = "aauth_refusals_total";
/// Tokens signed, by type.
pub const TOKENS_ISSUED: &str = "aauth_tokens_issued_total";
/// A Person Server's deferred requests: created, and ended by outcome.
pub const PENDING_REQUESTS: &str = "aauth_pending_requests_total";
/// Time a blocking store call took.
pub const STORE_DURATION: &str = "aauth_store_call_duration_seconds";
/// Store calls that failed.
pub const STORE_ERRORS: &str = "aauth_store_errors_total";
/// The resource proxy's wait for its upstream, by outcome.
pub const UPSTREAM_DURATION: &str = "aauth_upstream_duration_seconds";
/// Requests refused by a configured rate limit, by the rule's path prefix.
pub const RATE_LIMITED: &str = "aauth_rate_limited_total";
