//! Whether the person approves: a policy consulted for every person token and auth token.

use aauth_tokens::{AgentId, ServerId};

/// What the policy is asked about.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsentRequest<'a> {
    /// The person's account.
    pub account: &'a str,
    /// The agent's provider.
    pub provider: &'a ServerId,
    /// The agent.
    pub agent: &'a AgentId,
    /// The resource.
    pub resource: &'a ServerId,
    /// The scope asked for (auth tokens), if any.
    pub scope: Option<&'a str>,
    /// Whether this is a person token (identity only) or an auth token (access).
    pub kind: ConsentKind,
    /// Whether the request came through call chaining (draft -11 §Call Chaining): an
    /// intermediary resource's agent asking for the person its `upstream_token` names, so
    /// `agent` is that intermediary's, not an agent the person bound (PS-63). Only person
    /// and auth tokens are asked for so.
    pub chained: bool,
}

/// Which token consent is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentKind {
    /// A person token.
    PersonToken,
    /// An auth token.
    AuthToken,
    /// A mission proposal (`resource` is the Person Server itself).
    Mission,
    /// A mission's completion, for the person to accept.
    Completion,
    /// Permission for an action outside any resource (`scope` is the action).
    Permission,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Issue.
    Approve,
    /// Ask the person first.
    AskPerson,
    /// Refuse, with a reason for the problem body.
    Deny(String),
}

/// Decides consent. Deterministic: the same request gets the same answer.
pub trait ConsentPolicy: Send + Sync {
    /// The decision for `request`.
    fn decide(&self, request: &ConsentRequest<'_>) -> Decision;

    /// Whether the person may answer `request` (an auth token asked under a mission) for
    /// the rest of that mission: the consent page then offers "approve for this mission"
    /// beside "approve once", and later auth tokens for the same resource and scope under
    /// the same active mission are issued without asking (unless the agent asks with
    /// `prompt=consent`). Yes by default; a policy that wants every token asked for says
    /// no.
    fn mission_wide(&self, request: &ConsentRequest<'_>) -> bool {
        let _ = request;
        true
    }
}

/// Policies that give tokens away without asking anyone: for demos, tests and agents a
/// person has chosen to let act alone. The module's name is the warning.
pub mod dangerous {
    use super::{ConsentPolicy, ConsentRequest, Decision};

    /// Approves everything an agent bound to a person asks, for any resource and any
    /// scope, without asking the person again (an unbound agent's request still goes to
    /// the person, who binds it). For autonomous agents and demos.
    ///
    /// A chained request ([`ConsentRequest::chained`]: draft -11 call chaining, an
    /// intermediary resource's agent presenting the person's token as `upstream_token`)
    /// is not one of the person's agents asking: it is left to the person
    /// ([`Decision::AskPerson`]), as [`super::AlwaysAsk`] leaves everything. Approved
    /// too, any resource that receives one of the person's tokens could obtain tokens in
    /// the person's name at other resources. [`AutoApproveChained`] approves those as
    /// well.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct AutoApprove;

    impl ConsentPolicy for AutoApprove {
        fn decide(&self, request: &ConsentRequest<'_>) -> Decision {
            if request.chained {
                Decision::AskPerson
            } else {
                Decision::Approve
            }
        }
    }

    /// [`AutoApprove`], and chained requests approved too, within what the upstream token
    /// allows (its person, its mission, no later expiry, at most three hops): under this
    /// policy any resource that receives one of the person's tokens can obtain tokens in
    /// the person's name at other resources without the person. For demos and tests of
    /// call chaining.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct AutoApproveChained;

    impl ConsentPolicy for AutoApproveChained {
        fn decide(&self, _: &ConsentRequest<'_>) -> Decision {
            Decision::Approve
        }
    }
}

/// Asks the person about everything (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAsk;

impl ConsentPolicy for AlwaysAsk {
    fn decide(&self, _: &ConsentRequest<'_>) -> Decision {
        Decision::AskPerson
    }
}

/// What an Access Server asks a Person Server's [`ClaimsSource`] for: the person, the
/// claim names, and who is asking (the Access Server a resource token named as its
/// `aud`: a resource chooses it, so a policy decides per Access Server what it lets out).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ClaimsRequest<'a> {
    /// The person's account here.
    pub account: &'a str,
    /// The claims asked for (never `sub`).
    pub names: &'a [String],
    /// The Access Server asking.
    pub access_server: &'a ServerId,
}

impl<'a> ClaimsRequest<'a> {
    /// A request for `names` of `account`, by `access_server`.
    #[must_use]
    pub fn new(account: &'a str, names: &'a [String], access_server: &'a ServerId) -> Self {
        Self {
            account,
            names,
            access_server,
        }
    }
}

/// The identity claims this Person Server gives an Access Server that asks for them
/// (`requirement=claims`, draft -11 §9.2): the values of the names asked for, for the
/// person, that the person's policy lets out to that Access Server. `sub` is never given
/// (PS-55: the person is `ps` and `sub` of the tokens already); names it does not know are
/// left out.
pub trait ClaimsSource: Send + Sync {
    /// The claims to send to `request.access_server`.
    fn claims(&self, request: &ClaimsRequest<'_>) -> serde_json::Map<String, serde_json::Value>;
}

/// Settles an Access Server's `402 Payment Required` (draft -11 §AS Response): the payment
/// protocol (x402, the Payment HTTP authentication scheme, …) and the billing terms are
/// outside the draft, so the Person Server hands the challenge here, once per `402`, and
/// then polls the Access Server's pending URL until the payment is confirmed there.
#[async_trait::async_trait]
pub trait PaymentSettler: Send + Sync {
    /// Pays `access_server` per `challenge` (its `WWW-Authenticate` value, empty when it
    /// sent none). An `Err` ends the request with the Access Server's `402` relayed.
    ///
    /// # Errors
    ///
    /// Why the payment could not be made.
    async fn settle(&self, access_server: &ServerId, challenge: &str) -> Result<(), String>;
}

/// Answers an Access Server's question (`requirement=clarification`) on the person's
/// behalf when the Person Server knows the answer (draft -11 §AS Response: the Person
/// Server triages who answers: itself, the person, or the agent). `None` passes the
/// question on to the agent.
pub trait AccessServerQuestions: Send + Sync {
    /// The answer for the person `account`, if this Person Server gives one.
    fn answer(&self, account: &str, access_server: &ServerId, question: &str) -> Option<String>;
}
