//! Deferring a request to the person: the pending request and its interaction code, the agent's hints (`prompt`, `login_hint`, …), and the `202` that names the pending URL.

use aauth_keys::time::UnixTime;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use crate::PsError;
use crate::pending::{Pending, PendingRequest, PendingState};
use crate::policy::{ConsentRequest, Decision};
use crate::store::{PendingCaps, PendingCreated};
use aauth_metadata::serve::json_response;

use super::verify::{Acting, AgentRequest};
use super::{INTERACT_PATH, Outcome, PENDING_PATH, PersonServer};

/// The optional parameters both token endpoints accept (draft -11 §7.2, PS-10), all
/// agent-asserted: `justification`, `platform` and `device` are shown to the person
/// (escaped); `prompt` is honoured; `login_hint`, `tenant` and `domain_hint` are checked
/// for size and otherwise not used by this Person Server (it MAY ignore them).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Hints {
    #[serde(default)]
    pub(super) justification: Option<String>,
    #[serde(default)]
    pub(super) login_hint: Option<String>,
    #[serde(default)]
    pub(super) tenant: Option<String>,
    #[serde(default)]
    pub(super) domain_hint: Option<String>,
    #[serde(default)]
    pub(super) prompt: Option<String>,
    #[serde(default)]
    pub(super) platform: Option<String>,
    #[serde(default)]
    pub(super) device: Option<String>,
}

/// What `prompt` asks of the consent decision.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Prompt {
    /// `none`: never ask the person (`user_unreachable` if they would be).
    pub(super) none: bool,
    /// `consent` (or `login`, `select_account`: the person must act): always ask.
    pub(super) ask: bool,
}

impl Prompt {
    pub(super) fn apply(self, d: Decision) -> Result<Decision, PsError> {
        match d {
            Decision::AskPerson if self.none => Err(PsError::UserUnreachable(
                "the person must be asked and the request says prompt=none".to_owned(),
            )),
            Decision::Approve if self.ask => Ok(Decision::AskPerson),
            other => Ok(other),
        }
    }
}

impl Hints {
    /// Sizes and forms (`invalid_request` otherwise); the `prompt` asked for.
    pub(super) fn check(&self) -> Result<Prompt, PsError> {
        let bad = |what: &str| Err(PsError::InvalidRequest(what.to_owned()));
        let printable =
            |s: &str, max: usize| s.chars().count() <= max && !s.chars().any(char::is_control);
        if self.device.as_deref().is_some_and(|d| !printable(d, 64)) {
            return bad("device: at most 64 printable characters");
        }
        if self.platform.as_deref().is_some_and(|p| !printable(p, 64)) {
            return bad("platform: at most 64 printable characters");
        }
        for (name, v) in [
            ("login_hint", &self.login_hint),
            ("tenant", &self.tenant),
            ("domain_hint", &self.domain_hint),
        ] {
            if v.as_deref().is_some_and(|v| !printable(v, 256)) {
                return Err(PsError::InvalidRequest(format!(
                    "{name}: at most 256 printable characters"
                )));
            }
        }
        if self
            .justification
            .as_deref()
            .is_some_and(|j| j.len() > 16 * 1024)
        {
            return bad("justification: at most 16 KiB");
        }
        let mut p = Prompt::default();
        if let Some(values) = &self.prompt {
            let values: Vec<&str> = values.split(' ').collect();
            for v in &values {
                match *v {
                    "none" => p.none = true,
                    "login" | "consent" | "select_account" => p.ask = true,
                    other => {
                        return Err(PsError::InvalidRequest(format!(
                            "prompt: {other:?} is not none, login, consent or select_account"
                        )));
                    }
                }
            }
            if p.none && values.len() > 1 {
                return bad("prompt: none cannot be combined with other values");
            }
        }
        Ok(p)
    }
}

/// Counts a deferred request created, or ended with `outcome`
/// (`aauth_pending_requests_total`).
pub(super) fn count_pending(outcome: &'static str) {
    metrics::counter!(aauth_metadata::metric::PENDING_REQUESTS, "state" => outcome).increment(1);
}

impl PersonServer {
    /// Stores a new deferred request within the agent's share of open ones and, when no
    /// person here is known for it (an agent not yet bound), within its provider's share
    /// and the total kept here.
    pub(super) async fn create_pending(&self, p: Pending, now: UnixTime) -> Result<(), PsError> {
        let mut caps = PendingCaps::new(self.max_pending);
        if p.account.is_none() {
            caps = caps
                .with_per_provider(self.max_pending_per_provider)
                .with_total(self.max_pending_total);
        }
        let reason = match self.store.create_pending(p, caps, now).await? {
            PendingCreated::Created => {
                count_pending("created");
                return Ok(());
            }
            PendingCreated::AgentFull => format!(
                "this agent already has {} requests waiting for the person",
                self.max_pending
            ),
            PendingCreated::ProviderFull => format!(
                "this agent's provider already has {} requests waiting for a person here",
                self.max_pending_per_provider
            ),
            PendingCreated::Full => format!(
                "this Person Server already keeps {} deferred requests",
                self.max_pending_total
            ),
            // Drawn at random: another request's id or code is a failure to retry.
            PendingCreated::Taken => {
                return Err(aauth_metadata::serve::InternalError::produce(
                    "pending request",
                    "its pending id or interaction code is another request's",
                )
                .into());
            }
        };
        Err(PsError::RateLimited {
            reason,
            // A share frees up at the latest when its oldest request expires; the total
            // as requests end or expire, each kept a while for its late polls.
            retry_after: self.pending_ttl,
        })
    }

    /// Writes a change of `p`, unless another writer changed it first.
    pub(super) async fn save(&self, p: &mut Pending) -> Result<(), PsError> {
        match self.store.update_pending(p).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PsError::Conflict(
                "the pending request changed while this was answered: read it again",
            )),
            Err(e) => Err(PsError::from(e)),
        }
    }

    /// Asks the policy; an unbound agent always needs the person (to bind it).
    pub(super) fn decide(&self, request: &ConsentRequest<'_>, bound: bool) -> Decision {
        if bound {
            self.policy.decide(request)
        } else {
            Decision::AskPerson
        }
    }

    /// Defers `request` until the person answers: `202` with the pending URL and an
    /// interaction code, when this server can reach the person and the agent can relay an
    /// interaction; `user_unreachable` otherwise.
    pub(super) async fn defer(&self, d: Deferral<'_>, now: UnixTime) -> Result<Outcome, PsError> {
        if !self.interaction {
            return Err(PsError::UserUnreachable(
                "this Person Server has no interaction channel to the person".to_owned(),
            ));
        }
        if !d.capabilities.iter().any(|c| c == "interaction") {
            return Err(PsError::UserUnreachable(
                "the person must be asked and the agent declared no interaction capability"
                    .to_owned(),
            ));
        }
        let p = self.pending_for(d, now)?;
        let resp = self.pending_response(&p, StatusCode::ACCEPTED, "pending", 0);
        self.create_pending(p, now).await?;
        Ok(Outcome::Respond(resp))
    }

    /// A new pending request (not stored).
    pub(super) fn pending_for(&self, d: Deferral<'_>, now: UnixTime) -> Result<Pending, PsError> {
        let ttl = self.pending_ttl;
        let Deferral {
            agent: r,
            acting,
            account,
            request,
            capabilities,
            hints,
        } = d;
        // PS-32: an auth-token request is not asked of the person past its presented
        // token, which nothing may be issued with after it expires.
        let presented_exp = match &request {
            PendingRequest::AuthToken { presented_exp, .. } => *presented_exp,
            _ => u64::MAX,
        };
        Ok(Pending {
            id: self.random_token()?,
            code: aauth_metadata::code::new_code(&mut self.random.clone()).map_err(|e| {
                aauth_metadata::serve::InternalError::produce("interaction code", e)
            })?,
            // Polls come from the signer; the token will bind the acting party's key.
            agent: (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()),
            // A parent asking for its sub-agent: the token is the sub-agent's.
            subagent: (acting.agent.1 != r.agent.claims.sub).then(|| acting.agent.1.clone()),
            key: acting.key.to_jwk(),
            jkt: r.key.thumbprint().as_str().to_owned(),
            agent_exp: acting.exp,
            account,
            viewer: None,
            request,
            state: PendingState::Pending,
            // PS-64: a chained request ends with its upstream token.
            expires: now
                .as_secs()
                .saturating_add(ttl)
                .min(acting.ends.unwrap_or(u64::MAX))
                .min(presented_exp),
            attempts: 0,
            clarification: capabilities.iter().any(|c| c == "clarification"),
            chat: Vec::new(),
            revision: 0,
            justification: hints.justification.clone(),
            platform: hints.platform.clone(),
            device: hints.device.clone(),
            version: 0,
        })
    }

    /// A `202` for `p` (or its status while pending): `Location`, `Retry-After`,
    /// `Cache-Control: no-store`, the interaction requirement, `{"status": …}`.
    pub(super) fn pending_response(
        &self,
        p: &Pending,
        status: StatusCode,
        state: &str,
        retry_after: u64,
    ) -> http::Response<Bytes> {
        let question = p
            .open_access_server_question()
            .or_else(|| p.open_question())
            .filter(|_| p.clarification);
        let mut body = serde_json::json!({ "status": state });
        if let Some(q) = question {
            body["clarification"] = q.into();
        }
        let mut r = json_response(status, &body);
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{}", p.id)) {
            h.insert(http::header::LOCATION, v);
        }
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
        let requirement = aauth_headers::AAuthRequirement::new(if question.is_some() {
            aauth_headers::Requirement::Clarification
        } else {
            aauth_headers::Requirement::Interaction {
                url: format!("{}{INTERACT_PATH}", self.id.as_str()),
                code: aauth_metadata::code::display(&p.code),
            }
        });
        if let Some(v) = requirement
            .serialize()
            .ok()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            h.insert(aauth_headers::names::AAUTH_REQUIREMENT, v);
        }
        r
    }
}

/// A request to be deferred to the person: who asks, for whom, what, and what the agent
/// can relay.
pub(super) struct Deferral<'a> {
    /// The verified request of the signing agent.
    pub(super) agent: &'a AgentRequest,
    /// Who the token would be issued to.
    pub(super) acting: &'a Acting,
    /// The person's account, when the agent is bound to one already.
    pub(super) account: Option<String>,
    /// What is asked.
    pub(super) request: PendingRequest,
    /// The agent's declared capabilities.
    pub(super) capabilities: &'a [String],
    /// The agent's hints about the person.
    pub(super) hints: &'a Hints,
}
