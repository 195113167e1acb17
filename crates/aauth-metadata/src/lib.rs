//! AAuth layer 2: metadata documents, key discovery with a JWKS cache, and the egress
//! guard every discovery fetch passes.
//!
//! Features (both on by default): `runtime` (the key cache, retries, the guarded fetcher,
//! serving a role, stores' blocking helper: Tokio) and `client` (the HTTPS client: hyper
//! and rustls; implies `runtime`). Without them the crate is the documents, URLs, the
//! egress policy, publishing and the throttle, with no runtime, socket or TLS stack
//! (decision 0009).
//!
//! - [`AgentProviderMetadata`], [`PersonServerMetadata`], [`AccessServerMetadata`],
//!   [`ResourceMetadata`]: the four documents of draft -11, validated on parse and
//!   serialized for serving; [`MetadataDocument::parse_for`] checks `issuer` first
//!   (`issuer_missing`, `issuer_mismatch`).
//! - [`KeyCache`]: `{iss}/.well-known/{dwk}` → `issuer` → `jwks_uri` → JWKS → `kid`, with
//!   refresh-ahead, stale-while-revalidate, stale-if-error, a one-minute refetch floor,
//!   single-flight fetches, backoff, a size bound and counters. It implements
//!   [`aauth_tokens::IssuerKeyResolver`], so a token verifier uses it directly.
//! - [`DiscoveryResolver`]: the `jwks_uri` and `jwks` `Signature-Key` schemes for
//!   `aauth-signing`'s verifier, through the cache.
//! - [`Fetch`]: the boundary to the network, so tests and embedders can supply their own.
//! - [`ResilientFetch`]: retries with backoff and jitter honouring `Retry-After`, and a
//!   per-host [`CircuitBreaker`], around any [`Fetch`].
//! - [`serve`]: [`serve::EndpointService`], the one adapter from a role (agent provider,
//!   Person Server, Access Server) to a tower service, so it mounts on axum or hyper;
//!   [`budget`]: the bound on the request bodies its services hold at once.
//! - [`store`]: the [`store::StoreError`] every server's store answers with (the
//!   backend's error kept as its source), and [`store::blocking`] for embedded databases.
//! - [`throttle`]: one throttle for every guessable secret a server checks (interaction
//!   codes, passwords): exponential back-off per key, bounded, `O(1)` to check.
//! - [`cascade`]: revocation cascades that outlast their request: the hold, the `202`
//!   with its pending URL, and the sender's polls ([`cascade::Cascades`]).
//! - [`outbound`]: requests one server sends another, signed as itself, and the
//!   revocation requests every role sends ([`outbound::Revoker`]).
//! - [`egress`]: the SSRF guard (special-purpose address ranges, allow-list, pinned
//!   addresses; no redirect is followed).

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod budget;
#[cfg(feature = "runtime")]
mod cache;
pub mod callback;
#[cfg(feature = "runtime")]
pub mod cascade;
#[cfg(feature = "client")]
mod client;
pub mod code;
mod document;
pub mod egress;
mod fetch;
pub mod freshness;
#[cfg(feature = "runtime")]
mod guard;
pub mod link;
pub mod metric;
#[cfg(feature = "ops")]
pub mod ops;
#[cfg(feature = "runtime")]
pub mod outbound;
mod publish;
#[cfg(feature = "runtime")]
pub mod rate;
#[cfg(feature = "runtime")]
mod resilience;
#[cfg(feature = "runtime")]
mod resolvers;
#[cfg(feature = "runtime")]
pub mod serve;
pub mod store;
pub mod throttle;
mod transport;
mod url;

#[cfg(feature = "runtime")]
pub use cache::{
    CacheConfig, CacheStats, CachedKey, DiscoveryError, KeyCache, KeySource, MAX_AGE_CEILING,
    OverloadBound, Pick, discover,
};
#[cfg(feature = "client")]
pub use client::{HttpsTransport, SystemResolver, USER_AGENT, https_fetcher};
pub use document::{
    AccessMode, AccessServerMetadata, AgentProviderMetadata, CommonMetadata,
    DEFAULT_SIGNATURE_WINDOW, IgnoredMember, KeyDiscovery, MAX_DOCUMENT_LEN, MetadataDocument,
    MetadataError, PersonServerMetadata, ResourceMetadata,
};
pub use egress::{AdmittedDestination, DangerousEgressPolicy, EgressError, EgressPolicy, Resolve};
pub use fetch::{Fetch, FetchError, Fetched};
#[cfg(feature = "runtime")]
pub use guard::{FetchLimits, FetchTransport, GuardedFetch};
pub use publish::{PUBLISHED_CACHE_CONTROL, Published, RetiringKey};
#[cfg(feature = "runtime")]
pub use resilience::{BreakerConfig, BreakerState, CircuitBreaker, ResilientFetch, RetryPolicy};
#[cfg(feature = "runtime")]
pub use resolvers::DiscoveryResolver;
#[cfg(feature = "runtime")]
pub use transport::ServiceTransport;
pub use transport::{Transport, TransportError};
pub use url::{HttpsUrl, MAX_URL_LEN, UrlError};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
