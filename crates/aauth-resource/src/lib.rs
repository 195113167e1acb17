//! AAuth layer 3: the resource role.
//!
//! A [`Resource`] has an identifier and resolves keys (agent tokens through the issuer's
//! published keys; pseudonymous `hwk` keys inline). Each [`Route`] says what it requires
//! ([`Access`]) and how strictly it checks ([`RoutePolicy`]); [`Route::check`] admits a
//! request or returns the [`Refusal`] the draft names, as a response: `401` with
//! `AAuth-Requirement` for an unsigned request, `401` with `Signature-Error` (and
//! `Accept-Signature-*`) for a signature failure, `503` when keys cannot be fetched,
//! `403` for an authenticated caller that is not allowed, each with an RFC 9457 body.
//! [`AAuthLayer`] does the same in front of any tower service (axum, hyper); with the
//! `axum` feature (off by default: `features = ["axum"]`), [`Admitted`] and [`CallingAgent`] are extractors.
//! With the `redis` feature (off by default), what several instances of one resource
//! share lives in Redis: `RedisReplayStore`, `RedisSessionStore`, `RedisRevocationList`
//! and `RedisHeldStore` keep the contracts of the memory stores across instances.
//! With the `oauth` feature (off by default), a route also admits OAuth clients by their
//! Bearer access tokens (`OAuthAccess`, `AAuthLayer::oauth`), every `401` carrying both
//! challenges, and the handler reads a [`Principal`] that says which protocol admitted
//! the caller.
//!
//! ```
//! use std::sync::Arc;
//! use aauth_keys::time::{FixedClock, UnixTime};
//! use aauth_resource::{AAuthLayer, Access, Resource, RoutePolicy};
//! use aauth_tokens::{ServerId, StaticIssuerKeys};
//! let resource = Resource::new(
//!     ServerId::parse("https://resource.example")?,
//!     Arc::new(StaticIssuerKeys::new()),
//! );
//! let layer = AAuthLayer::new(
//!     resource.route(RoutePolicy::new(Access::AgentToken)),
//!     Arc::new(FixedClock::new(UnixTime(1_800_000_000))),
//! );
//! # drop(layer);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod deferred;
mod gate;
mod layer;
#[cfg(feature = "oauth")]
mod oauth;
pub mod paths;
mod principal;
#[cfg(feature = "redis")]
mod redis;
mod revocation;
mod session;
mod stream;
mod token_cache;
mod tokens;

/// The bound on request bodies held read whole at once ([`AAuthLayer::body_budget`]):
/// `aauth-metadata`'s, so that one budget may be shared with a role's services.
pub use aauth_metadata::budget::BodyBudget;
/// The replay check every route applies by default (one mechanism for every role, in
/// `aauth-signing`).
pub use aauth_signing::{
    MemoryReplayStore, ReplayGuard, ReplayScope, ReplayStore, ReplayStoreError,
};
#[cfg(feature = "axum")]
pub use axum::{Authorization, CallingAgent, NotAdmitted, Person};
pub use deferred::{
    Cancel, Claim, DEFAULT_HELD_BYTES, DEFAULT_HOLD_QUOTA, DEFAULT_MAX_HELD_BODY,
    DEFAULT_MAX_HELD_RESULT, DEFAULT_TOMBSTONE_TTL, DEFAULT_TOMBSTONES, DeferredAuth, Held,
    HeldState, HeldStore, HeldStoreError, HoldError, MemoryHeldStore, Presenter, StoredResponse,
};
pub use gate::{Access, Admitted, Refusal, Resource, Route, RoutePolicy};
pub use layer::{AAuthLayer, AAuthService, DEFAULT_MAX_BODY};
#[cfg(feature = "oauth")]
pub use oauth::{OAuthAccess, OAuthCaller};
pub use principal::Principal;
#[cfg(feature = "redis")]
pub use redis::{
    RedisHeldStore, RedisReplayAndRevocations, RedisReplayStore, RedisRevocationList,
    RedisSessionStore,
};
pub use revocation::{
    MAX_JTI_LEN, MemoryRevocationList, RecordError, RevocationEndpoint, RevocationStore,
};
pub use session::{
    MemorySessionStore, ROLL_GRACE, Session, SessionStore, SessionStoreError, Wrapped,
};
pub use stream::{BoxError, ForwardBody, StreamingLayer, StreamingService};
pub use token_cache::{TokenCacheConfig, VerifiedTokenCache};
pub use tokens::{AccountCheck, Compatibility, LoginHint, MAX_AUTHORIZATION_PARAM, ResourceTokens};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
