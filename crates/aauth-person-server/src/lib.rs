//! AAuth layer 4: the Person Server (the design card's "mission manager").
//!
//! It represents the person: it binds agents to a person, issues person tokens
//! (`person_token_endpoint`) and three-party auth tokens (`auth_token_endpoint`), each only
//! after checking everything draft -11 names (PS-10…35): the agent's signature under its
//! agent token, the resource token under the resource's published keys and bound to the
//! signing key, the presented token as one this Person Server issued for that resource,
//! person, mission and tenant. Directed identifiers (`sub`) are stable per person and
//! resource and unlinkable across resources. Consent goes through a [`ConsentPolicy`].
//!
//! When the person must be asked (an agent not yet bound to them, or a policy that asks),
//! and the server has its consent pages ([`PersonServer::consent_pages`]), the agent
//! gets a `202` with a pending URL and an interaction code (Crockford base32, 40 bits from
//! the OS CSPRNG, single use, attempt-limited, expiring with the request); the person signs
//! in (argon2id password hashes, a `__Host-` session cookie, CSRF tokens on every form),
//! sees what the resource asks apart from what the agent says, and grants or denies; the
//! agent's signed polls (`Prefer: wait` long-polls) get the token once, then `410`.
//!
//! Beyond that: missions with power-of-attorney constraints and a budget ledger,
//! clarification chat and updated requests, the governance endpoints, sub-agents, call
//! chaining (`upstream_token`), four-party federation with Access Servers
//! ([`PersonServer::federation`]), revocation received and sent, interaction callbacks, and
//! the embedded SQLite store (the `sqlite` feature, off by default: it builds SQLite from
//! source).
//!
//! The server is sans-IO ([`PersonServer::handle`]); it mounts on an axum `Router` or plain
//! hyper as an [`aauth_metadata::serve::EndpointService`]:
//! `Router::new().fallback_service(EndpointService::new(Arc::new(ps), clock))`.

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
use aauth_metadata::audit;
mod changes;
mod compat;
mod error;
mod mission;
mod outbound;
mod pending;
mod policy;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
mod server;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod web;

pub use admin::{Admin, AdminError, TokenListing};
pub use audit::{
    AUDIT_RETENTION, AuditAction, AuditCursor, AuditEvent, AuditPage, AuditQuery, MAX_AUDIT_QUERY,
    MEMORY_AUDIT_CAP, UnknownAction,
};
pub use changes::{ChangeHub, POLLING_FALLBACK, PendingChanges};
pub use compat::Compatibility;
pub use error::PsError;
pub use mission::{
    Allocation, CONSTRAINTS_MEMBER, Constraints, LogEntry, LogFull, MISSION_LOG_RESERVE, Mission,
    MissionApproval, Proposal, TerminationReason, Tool, iso8601, s256, violation,
};
pub use outbound::{HttpRevocationNotifier, RevocationNotifier};
pub use pending::{
    ChatTurn, DELIVERY_LEASE, FourParty, MAX_CLARIFICATIONS, Pending, PendingRequest, PendingState,
    ResourceInteraction, WebSession,
};
pub use policy::dangerous;
pub use policy::{
    AccessServerQuestions, AlwaysAsk, ClaimsRequest, ClaimsSource, ConsentKind, ConsentPolicy,
    ConsentRequest, Decision, PaymentSettler,
};
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use server::{
    AUDIT_PATH, AUTH_TOKEN_PATH, DEFAULT_CONCURRENT_HASHES, DEFAULT_LONG_POLLS, DEFAULT_MAX_CHAIN,
    DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_PER_PROVIDER, DEFAULT_MAX_PENDING_TOTAL,
    DEFAULT_RESOURCE_LIMIT, INTERACT_PATH, INTERACTION_PATH, JWKS_PATH, LOGIN_PATH, LOGOUT_PATH,
    MAX_MISSION_LOG, MAX_PROPOSAL_RESOURCES, MAX_PROPOSAL_TEXT, MAX_PROPOSAL_TOOLS, MISSION_PATH,
    MissionTerms, OIDC_CALLBACK_PATH, OIDC_START_PATH, PENDING_PATH, PERMISSION_PATH,
    PERSON_TOKEN_PATH, PersonServer, REVOCATION_PATH, REVOCATION_PENDING_PATH,
};
#[cfg(feature = "oidc")]
pub use server::{NewAccounts, SignInProvider, SignInSetupError};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{
    AccountRecord, AuthTokenRecord, Binding, Issuance, IssuedToken, MAX_MISSIONS_LISTED,
    MAX_PENDING_LISTED, MemoryStore, PENDING_KEPT, PendingCaps, PendingCreated, PersonTokenRecord,
    PsStore, RECORD_GRACE, Standing, StoreError, TokenRecord,
};
pub use web::callback_allowed;
pub use web::text::{Messages, MessagesError, Text};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
