//! A resource's pending request, as the shared polling loop drives it
//! ([`crate::deferred_poll`]): what the agent does with each `202` (prompts the person,
//! answers a question, obtains an auth token), and the bounds on how often one pending
//! URL may have it do so.
//!
//! The resource chooses every `202`, and each new interaction code, question or resource
//! token in one would otherwise be acted on: the person prompted (or the Person Server
//! asked to reach them), the clarification hook asked and its answer posted, the Person
//! Server asked for an auth token; for as long as the agent polls. So per pending request
//! the agent acts on at most [`MAX_INTERACTIONS`] interactions, [`MAX_CLARIFICATIONS`]
//! questions and [`MAX_RESOURCE_TOKENS`] resource tokens, and stops at the next one with
//! [`AgentError::PendingCap`] (withdrawing the request); and the loop waits at least
//! `PollPolicy::min_interval` between polls, whatever `Retry-After` says, except right
//! after the agent posted an answer.

use super::*;
use crate::PendingCap;

/// The most distinct interactions (`requirement=interaction`, by URL and code) one
/// pending request at a resource has the agent act on: show the person (the interaction
/// hook) or relay through the Person Server. One is the usual; a few allow a resource that
/// issues a fresh code, or chains another server's.
pub(crate) const MAX_INTERACTIONS: usize = 4;

/// The most distinct questions (`requirement=clarification`) the agent answers for one
/// pending request at a resource (as many as for one Person Server request).
pub(crate) const MAX_CLARIFICATIONS: usize = 8;

/// The most distinct resource tokens (a deferred `requirement=auth-token`) the agent
/// asks its Person Server an auth token for, for one pending request at a resource.
pub(crate) const MAX_RESOURCE_TOKENS: usize = 4;

impl PendingCap {
    /// The bound: how many of its kind one pending request may have the agent act on.
    #[must_use]
    pub fn max(self) -> usize {
        match self {
            Self::Interactions => MAX_INTERACTIONS,
            Self::Clarifications => MAX_CLARIFICATIONS,
            Self::ResourceTokens => MAX_RESOURCE_TOKENS,
        }
    }
}

/// What one pending request has had the agent act on, each kind counted against its cap.
#[derive(Default)]
pub(super) struct Acted {
    interactions: BTreeSet<String>,
    clarifications: BTreeSet<String>,
    resource_tokens: BTreeSet<String>,
}

impl Acted {
    /// Whether `value` is new for `cap` (then it is counted); the error once `cap`'s
    /// bound was reached, before anything is done for it.
    fn first(&mut self, cap: PendingCap, value: &str) -> Result<bool, AgentError> {
        let max = cap.max();
        let seen = match cap {
            PendingCap::Interactions => &mut self.interactions,
            PendingCap::Clarifications => &mut self.clarifications,
            PendingCap::ResourceTokens => &mut self.resource_tokens,
        };
        if seen.contains(value) {
            return Ok(false);
        }
        if seen.len() >= max {
            return Err(AgentError::PendingCap { cap, max });
        }
        seen.insert(value.to_owned());
        Ok(true)
    }
}

/// A resource's pending request, as the shared polling loop drives it.
pub(super) struct ResourcePending<'a> {
    pub(super) client: &'a AAuthClient,
    pub(super) resource: &'a ServerId,
    pub(super) location: http::Uri,
    /// Interactions, questions and resource tokens already acted on.
    pub(super) acted: Acted,
    /// What the call learnt answering its challenges, before and while polling.
    pub(super) call: Call,
}

#[async_trait]
impl crate::deferred_poll::PendingRequest for ResourcePending<'_> {
    async fn pending(&mut self, resp: &http::Response<Bytes>) -> Result<bool, AgentError> {
        let Some(requirement) = requirement(resp)? else {
            return Ok(false);
        };
        match requirement {
            Requirement::Interaction { url, code } => {
                self.interaction(resp, &url, &code).await?;
                Ok(false)
            }
            // AG-26: the deferred `requirement=auth-token`; later polls present the auth
            // token.
            Requirement::AuthToken { resource_token } => {
                if self
                    .acted
                    .first(PendingCap::ResourceTokens, &resource_token)?
                {
                    let client = self.client;
                    let cred = client
                        .credential(self.resource, client.now(), &self.call)
                        .await?;
                    self.call.obtained = Some(
                        client
                            .obtain_auth(self.resource, &cred, &resource_token)
                            .await?,
                    );
                }
                Ok(false)
            }
            Requirement::Clarification => self.clarification(resp).await,
            // `approval`, and values this agent does not know: keep polling (§7.1).
            _ => Ok(false),
        }
    }

    async fn unauthorized(&mut self, resp: &http::Response<Bytes>) -> Result<bool, AgentError> {
        let cred = self
            .client
            .credential(self.resource, self.client.now(), &self.call)
            .await?;
        self.client
            .answer_401(resp, self.resource, &cred, &mut self.call)
            .await
    }

    async fn poll(&mut self) -> Result<http::Response<Bytes>, AgentError> {
        self.client
            .poll_once(
                self.resource,
                &self.location,
                Method::GET,
                Bytes::new(),
                &self.call,
            )
            .await
    }

    async fn cancel(&mut self) {
        // Best effort: tell the server to stop holding the request.
        let _cancelled = self.client.cancel(self.resource, &self.location).await;
    }

    fn now(&self) -> UnixTime {
        self.client.now()
    }
}

impl ResourcePending<'_> {
    /// A `requirement=interaction`: a new one (while the person is not already
    /// interacting) goes to the Person Server first, else to the interaction hook.
    async fn interaction(
        &mut self,
        resp: &http::Response<Bytes>,
        url: &str,
        code: &str,
    ) -> Result<(), AgentError> {
        if !self
            .acted
            .first(PendingCap::Interactions, &format!("{url}?{code}"))?
            || pending_status(resp) == "interacting"
        {
            return Ok(());
        }
        let interaction = Interaction::checked(url, code)?;
        let config = &self.client.config;
        // Draft -11 §Relaying Through the Person Server: it may reach the person more
        // easily; the resource's pending URL, polled on, says when they are done.
        if let Some(ps) = config.person_server.as_ref().filter(|_| config.relay)
            && ps.relay_interaction(&config.agent, &interaction).await
        {
            return Ok(());
        }
        interaction_hook(config.on_interaction.as_ref())?(&interaction);
        Ok(())
    }

    /// A `requirement=clarification`: a new question is put to the clarification hook
    /// and its answer posted to the pending URL (`true`: the next poll comes at once).
    async fn clarification(&mut self, resp: &http::Response<Bytes>) -> Result<bool, AgentError> {
        #[derive(Deserialize)]
        struct Question {
            clarification: String,
        }
        let q: Question =
            serde_json::from_slice(resp.body()).map_err(|e| AgentError::BadDeferred {
                reason: format!("clarification without a question: {e}"),
            })?;
        if !self
            .acted
            .first(PendingCap::Clarifications, &q.clarification)?
        {
            return Ok(false);
        }
        let answer = self
            .client
            .config
            .on_clarification
            .as_ref()
            .and_then(|hook| hook(&q.clarification))
            .ok_or_else(|| AgentError::Unsatisfiable {
                requirement: "clarification".to_owned(),
                reason: "no answer".to_owned(),
            })?;
        let body = serde_json::json!({
            "action": "clarification_response",
            "clarification_response": answer,
        })
        .to_string();
        let r = self
            .client
            .poll_once(
                self.resource,
                &self.location,
                Method::POST,
                Bytes::from(body),
                &self.call,
            )
            .await?;
        if !r.status().is_success() {
            return Err(AgentError::Deferred {
                status: r.status(),
                error: problem_error(r.body()),
            });
        }
        Ok(true)
    }
}
