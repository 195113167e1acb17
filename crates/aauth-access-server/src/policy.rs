//! The Access Server's decision: its own policy for its resources, after every check of
//! the request has passed.

use aauth_tokens::{AgentId, ServerId};

/// What the policy sees: the verified request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AccessRequest<'a> {
    /// The Person Server asking (verified, trusted).
    pub ps: &'a ServerId,
    /// The resource (the resource token's `iss`).
    pub resource: &'a ServerId,
    /// The person's directed identifier at the resource.
    pub sub: &'a str,
    /// The scope the resource token asks for.
    pub scope: Option<&'a str>,
    /// The agent (its agent token's provider and identifier).
    pub agent: (&'a ServerId, &'a AgentId),
    /// The mission, if any.
    pub mission_s256: Option<&'a str>,
    /// The claims the Person Server provided after a [`AccessDecision::RequireClaims`]
    /// (never `sub`: the person is `ps` and `sub` already).
    pub claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// Whether this Person Server is one this Access Server trusts by configuration
    /// ([`crate::AccessServer::trusted`]); `false` only when it admits unknown Person
    /// Servers ([`crate::AccessServer::admit_unknown_person_servers`]).
    pub pre_established: bool,
    /// Whether the person has approved this Person Server here, for this resource, on
    /// this Access Server's interaction page (the one-time binding of draft -11
    /// §PS-AS Trust Establishment).
    pub bound: bool,
    /// The account signed in here that made that binding (`Some` exactly when `bound`):
    /// a policy may hold the person to the accounts it knows for the resource's people,
    /// rather than to any account that was shown the code.
    pub bound_account: Option<&'a str>,
    /// Whether this request was approved out of band after a
    /// [`AccessDecision::RequireApproval`].
    pub approved: bool,
    /// The answer to this request's last [`AccessDecision::RequireClarification`], from
    /// the Person Server (which triaged it: itself, the person, or the agent).
    pub clarification: Option<&'a str>,
    /// Whether this Person Server has a billing relationship here (a payment was
    /// confirmed after a [`AccessDecision::RequirePayment`]: draft -11 §PS-AS Trust
    /// Establishment, "the AS trusts future requests from that PS").
    pub billed: bool,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessDecision {
    /// Issue, with the resource token's scope.
    Grant,
    /// Issue with this scope instead (space-separated; must be within the resource
    /// token's, or the request is refused as a server error: a policy bug must not
    /// widen a grant).
    GrantScope(String),
    /// Refuse (`403 denied`), with a reason for the problem body.
    Deny(String),
    /// Ask the Person Server for these identity claims first (`202`,
    /// `requirement=claims`); the policy decides again with them. `sub` is never asked
    /// for (AS-17) and is dropped from the list. Asked again once claims were given, it
    /// is a refusal.
    RequireClaims(Vec<String>),
    /// The person must come to this Access Server first (`202`,
    /// `requirement=interaction`): its interaction page binds their Person Server here
    /// for this resource, and the request is then decided again with `bound`.
    RequireInteraction,
    /// Someone other than the person must approve first (`202`,
    /// `requirement=approval`; out of band: [`crate::AccessServer::decide_approval`]);
    /// the request is decided again with `approved`.
    RequireApproval,
    /// A question first (`202`, `requirement=clarification`, body `clarification`
    /// (Markdown) and `options`): the Person Server answers at the pending URL with
    /// `action: clarification_response` (or sends an `updated_request`, AS-16) and the
    /// request is decided again with `clarification`. At most five rounds, then a refusal.
    RequireClarification {
        /// The question (Markdown).
        question: String,
        /// Suggested answers, if any.
        options: Vec<String>,
    },
    /// A billing relationship first (`402 Payment Required`, `Location` for the Person
    /// Server to poll after settling, `WWW-Authenticate` carrying this challenge, e.g.
    /// `Payment id="…", method="…", request="…"`). Once the payment is confirmed
    /// ([`crate::AccessServer::confirm_payment`]) the Person Server is billed here and the
    /// request is decided again with `billed`.
    RequirePayment(String),
}

/// Decides access. Deterministic: the same request gets the same answer.
pub trait AccessPolicy: Send + Sync {
    /// The decision for `request`.
    fn decide(&self, request: &AccessRequest<'_>) -> AccessDecision;
}

/// Grants every verified request from a Person Server this Access Server trusts
/// ([`AccessServer::trusted`](crate::AccessServer::trusted)), and refuses the others (the
/// default: a deployment grants nothing until it names whom it trusts).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantTrusted;

impl AccessPolicy for GrantTrusted {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.pre_established {
            AccessDecision::Grant
        } else {
            AccessDecision::Deny("no trust is established with this Person Server".to_owned())
        }
    }
}

/// Trust established by interaction (draft -11 §PS-AS Trust Establishment): a Person
/// Server with pre-established trust is granted; another is granted for a person once
/// that person has approved it on this Access Server's interaction page (asked for with
/// `requirement=interaction` the first time).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustByInteraction;

impl AccessPolicy for TrustByInteraction {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.pre_established || r.bound {
            AccessDecision::Grant
        } else {
            AccessDecision::RequireInteraction
        }
    }
}
