//! Deferred token requests (draft -11 §9): what the Person Server holds while it asks the
//! person.

use aauth_keys::Jwk;
use aauth_tokens::{AgentId, ServerId};

/// What the agent asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "the auth-token variant is the common one; a pending request is held one at a time between store reads, so boxing it would only add an allocation"
)]
pub enum PendingRequest {
    /// A person token for `resource`.
    PersonToken {
        /// The resource.
        resource: ServerId,
        /// The mission it is asked under.
        mission_s256: Option<String>,
        /// Call chaining: the intermediaries the request came through, first to last
        /// (recorded with the token it yields).
        chain: Vec<ServerId>,
        /// Call chaining: the upstream token's `jti` (its revocation ends the request).
        upstream_jti: Option<Box<str>>,
    },
    /// An auth token, from a verified resource token and presented token.
    AuthToken {
        /// The resource (the resource token's `iss`).
        resource: ServerId,
        /// The person's directed identifier there.
        sub: String,
        /// The scope the resource token asks for.
        scope: Option<String>,
        /// The account the resource token names.
        account_claim: Option<String>,
        /// The mission.
        mission_s256: Option<String>,
        /// The tenant.
        tenant: Option<String>,
        /// The presented token's `jti`.
        presented_jti: String,
        /// The resource token's `jti` (its revocation by the resource ends the request:
        /// polling error `revoked`). `None` for requests stored before it was kept.
        resource_token_jti: Option<Box<str>>,
        /// The resource's own interaction, which the person goes through before this
        /// server's consent (draft -11 §Resource-Initiated Interaction).
        resource_interaction: Option<Box<ResourceInteraction>>,
        /// The presented token's `exp` (the auth token's cap).
        presented_exp: u64,
        /// The budget the resource offers (draft-hardt-aauth-budgets).
        budget: Option<aauth_tokens::Budget>,
        /// What the resource reports recent grants consumed.
        budget_consumed: Vec<aauth_tokens::Consumption>,
        /// Four-party: what the resource's Access Server is asked with.
        four_party: Option<Box<FourParty>>,
        /// Call chaining: the intermediaries the request came through, first to last.
        chain: Vec<ServerId>,
        /// Call chaining: the upstream token's `jti` (its revocation ends the request).
        upstream_jti: Option<Box<str>>,
    },
    /// A mission proposal (its JSON as received).
    Mission {
        /// The proposal body.
        proposal: String,
    },
    /// A mission's completion, for the person to accept.
    Completion {
        /// The mission.
        s256: String,
        /// The agent's summary.
        summary: String,
    },
    /// Permission for an action outside any resource (a tool call).
    Permission {
        /// The action (a tool name).
        action: String,
        /// What it will do (agent-asserted).
        description: Option<String>,
        /// The mission, if any.
        mission_s256: Option<String>,
    },
    /// A question for the person.
    Question {
        /// The question (agent-asserted).
        question: String,
        /// The mission, if any.
        mission_s256: Option<String>,
    },
}

/// A four-party request as the Access Server will be asked (draft -11 §9.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FourParty {
    /// The resource's Access Server (the resource token's `aud`).
    pub access_server: ServerId,
    /// The resource token, as received.
    pub resource_token: String,
    /// The agent's (or, for a sub-agent, its parent's) agent token.
    pub agent_token: String,
    /// The presented token.
    pub presented_token: String,
    /// The sub-agent's token, when a parent asks for it.
    pub subagent_token: Option<String>,
    /// The upstream token (call chaining).
    pub upstream_token: Option<String>,
    /// Where the Access Server keeps the request while the person is with it.
    pub access_server_pending: Option<String>,
    /// The Access Server's question (`requirement=clarification`), passed to the agent,
    /// and the agent's answer once given and not yet forwarded.
    pub access_server_question: Option<(String, Option<String>)>,
}

impl FourParty {
    /// A four-party request to `access_server` without sub-agent or upstream tokens.
    #[must_use]
    pub fn new(
        access_server: ServerId,
        resource_token: String,
        agent_token: String,
        presented_token: String,
    ) -> Self {
        Self {
            access_server,
            resource_token,
            agent_token,
            presented_token,
            subagent_token: None,
            upstream_token: None,
            access_server_pending: None,
            access_server_question: None,
        }
    }
}

/// Where a deferred request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingState {
    /// Waiting for the person.
    Pending,
    /// The person opened the consent page.
    Interacting,
    /// The person approved, as `account`; the next poll gets the token.
    Approved {
        /// The approving person's account.
        account: String,
    },
    /// The person answered a question.
    Answered {
        /// The answer.
        answer: String,
    },
    /// The person denied.
    Denied,
    /// One poll claimed the approved request and is minting its token: other polls wait
    /// (`202`) until it is `Done`, so one approval delivers one token. A claim older than
    /// [`DELIVERY_LEASE`] (its server stopped mid-way) may be taken over.
    Delivering {
        /// The approving person's account.
        account: String,
        /// When the claim was made (seconds since the epoch).
        since: u64,
    },
    /// The token was delivered, or the agent cancelled: later polls get `410`.
    Done,
    /// It expired before it was decided, and a poll said so: later polls get `410`, and
    /// its interaction code, presented, is told it expired (draft -11 §Interaction Code
    /// Format) rather than that it matches nothing.
    Expired,
    /// The request ended with a polling error other than `denied` (the resource's own
    /// interaction came back with an error: `abandoned`, `expired`, `server_error`).
    Ended {
        /// The polling error.
        error: String,
    },
}

/// The resource's own user-facing flow a resource token requires (its `interaction`
/// claim), and how far the person got through it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceInteraction {
    /// The resource's interaction URL (https).
    pub url: String,
    /// The resource's interaction code.
    pub code: String,
    /// This server's per-flow value in the callback URL it gives the resource: a
    /// callback without it is not this flow's.
    pub flow: String,
    /// Whether the resource's flow came back successfully.
    pub done: bool,
}

impl ResourceInteraction {
    /// The flow `url`?code=`code`, not yet done, its callback marked with `flow`.
    #[must_use]
    pub fn new(url: String, code: String, flow: String) -> Self {
        Self {
            url,
            code,
            flow,
            done: false,
        }
    }
}

/// How long a delivery claim ([`PendingState::Delivering`]) holds before another poll may
/// take it over.
pub const DELIVERY_LEASE: u64 = 30;

/// A deferred token request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pending {
    /// The unguessable id in the pending URL.
    pub id: String,
    /// The interaction code, normalized (eight Crockford symbols).
    pub code: String,
    /// The agent (provider, identifier).
    pub agent: (ServerId, AgentId),
    /// The sub-agent the token is for, when `agent` asked on its behalf (its
    /// `subagent_token`; the same provider): the token is recorded as issued to it.
    pub subagent: Option<AgentId>,
    /// The key that signed the request (its JWK): polls must be signed by it, and the
    /// token will bind it.
    pub key: Jwk,
    /// The thumbprint of `key`.
    pub jkt: String,
    /// The agent token's `exp` (the token's cap).
    pub agent_exp: u64,
    /// The person, when known before consent (an agent already bound).
    pub account: Option<String>,
    /// When no person was known before consent (`account` is `None`): the signed-in
    /// account that first presented the interaction code. The code is theirs from then
    /// on (draft -11: a code is single-use): another account presenting it is refused
    /// as a wrong attempt, and only they decide.
    pub viewer: Option<String>,
    /// What was asked.
    pub request: PendingRequest,
    /// Where it stands.
    pub state: PendingState,
    /// When it expires (`408 expired` after).
    pub expires: u64,
    /// Wrong codes entered against it (it fails terminally past the limit).
    pub attempts: u32,
    /// Whether the agent declared the `clarification` capability.
    pub clarification: bool,
    /// The clarification chat: the person's questions and the agent's answers.
    pub chat: Vec<ChatTurn>,
    /// How many times the agent updated the request (`action: updated_request`): an
    /// approval is of the revision the person saw.
    pub revision: u32,
    /// The agent's justification of its request, or of its latest update
    /// (agent-asserted Markdown, shown escaped).
    pub justification: Option<String>,
    /// The runtime platform the agent says it runs on (agent-asserted, shown escaped).
    pub platform: Option<String>,
    /// The device the agent says it runs on (agent-asserted, at most 64 characters).
    pub device: Option<String>,
    /// The stored version, kept by the store: [`crate::PsStore::update_pending`] writes
    /// only over the version it was read at, so two writers never both win.
    pub version: u64,
}

/// The most questions a person may ask about one request (draft -11 recommends 5).
pub const MAX_CLARIFICATIONS: usize = 5;

/// One round of clarification chat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatTurn {
    /// The person's question (plain text; shown escaped).
    pub question: String,
    /// The agent's answer (agent-asserted; shown escaped, apart from the resource's
    /// content).
    pub answer: Option<String>,
}

impl ChatTurn {
    /// A question not yet answered.
    #[must_use]
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            answer: None,
        }
    }
}

impl Pending {
    /// The resource's Access Server's question (four-party), not yet answered here.
    #[must_use]
    pub fn open_access_server_question(&self) -> Option<&str> {
        match &self.request {
            PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } => f
                .access_server_question
                .as_ref()
                .filter(|(_, a)| a.is_none())
                .map(|(q, _)| q.as_str()),
            _ => None,
        }
    }

    /// Whether the person may still answer it (waiting for them, or shown to them),
    /// whatever its expiry.
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            PendingState::Pending | PendingState::Interacting
        )
    }

    /// The agent the token is issued to: the sub-agent the request was made for, else
    /// the agent that made it.
    #[must_use]
    pub fn issued_to(&self) -> &AgentId {
        self.subagent.as_ref().unwrap_or(&self.agent.1)
    }

    /// The person whose request this is: the account it was asked of, else the account
    /// that first presented its code ([`Pending::viewer`]), else nobody yet.
    #[must_use]
    pub fn person(&self) -> Option<&str> {
        self.account.as_deref().or(self.viewer.as_deref())
    }

    /// Whether the request is chained (call chaining: its person is the upstream token's,
    /// not whoever the agent is bound to).
    #[must_use]
    pub fn chained(&self) -> bool {
        matches!(
            &self.request,
            PendingRequest::PersonToken {
                upstream_jti: Some(_),
                ..
            } | PendingRequest::AuthToken {
                upstream_jti: Some(_),
                ..
            }
        )
    }

    /// Whether the presented token of an auth-token request has expired at `now`
    /// (seconds): nothing is issued with it, nor is it sent to an Access Server, from then
    /// on (PS-32).
    #[must_use]
    pub fn presented_expired(&self, now: u64) -> bool {
        matches!(
            &self.request,
            PendingRequest::AuthToken { presented_exp, .. } if now >= *presented_exp
        )
    }

    /// The question waiting for the agent's answer, if any.
    #[must_use]
    pub fn open_question(&self) -> Option<&str> {
        self.chat
            .last()
            .filter(|t| t.answer.is_none())
            .map(|t| t.question.as_str())
    }
}

impl Pending {
    /// A new deferred request, pending, with no account known and no wrong attempts;
    /// `key` is the JWK of the key that signed the request.
    #[must_use]
    pub fn new(
        id: String,
        code: String,
        agent: (ServerId, AgentId),
        key: Jwk,
        agent_exp: u64,
        request: PendingRequest,
        expires: u64,
    ) -> Self {
        let jkt = aauth_keys::PublicKey::from_jwk(&key)
            .map(|k| k.thumbprint().as_str().to_owned())
            .unwrap_or_default(); // default: a key that does not import matches no signer: nobody can poll
        Self {
            id,
            code,
            agent,
            subagent: None,
            key,
            jkt,
            agent_exp,
            account: None,
            viewer: None,
            request,
            state: PendingState::Pending,
            expires,
            attempts: 0,
            clarification: false,
            chat: Vec::new(),
            revision: 0,
            justification: None,
            platform: None,
            device: None,
            version: 0,
        }
    }
}

/// A person's signed-in session on the consent pages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebSession {
    /// The account.
    pub account: String,
    /// The CSRF token the session's forms must carry.
    pub csrf: String,
    /// When it ends.
    pub expires: u64,
    /// Codes entered in this session that matched nothing (the session is refused past
    /// the limit).
    pub bad_codes: u32,
}

impl WebSession {
    /// A session for `account` until `expires`.
    #[must_use]
    pub fn new(account: impl Into<String>, csrf: impl Into<String>, expires: u64) -> Self {
        Self {
            account: account.into(),
            csrf: csrf.into(),
            expires,
            bad_codes: 0,
        }
    }
}
