//! The agent's HTTP client for its Person Server (draft -11 §7.1, §7.2): person tokens and
//! auth tokens, requested with the agent token, the body covered by the signature.

use std::sync::{Arc, Mutex, PoisonError};

use aauth_headers::{AAuthRequirement, Prefer, Requirement, Scheme};
use aauth_keys::rand::SharedRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_metadata::{MetadataDocument, PersonServerMetadata};
use aauth_signing::{SignOptions, SigningKey, sign};
use aauth_tokens::ServerId;
use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use sha2::Digest as _;

use crate::agent::problem_error;
use crate::deferred_poll::pending_url;
use crate::{
    Agent, AgentError, AuthTokenRequest, Interaction, PendingCap, PersonServerClient,
    PersonTokenRequest, PollPolicy, Transport,
};

/// A Person Server over HTTPS: its endpoints discovered from
/// `{ps}/.well-known/aauth-person.json` (the document's `issuer` checked), requests signed
/// with the agent token, deferred (`202`) answers polled at their pending URL.
pub struct HttpPersonServer {
    ps: ServerId,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    capabilities: Vec<String>,
    poll: PollPolicy,
    endpoints: Mutex<Option<Endpoints>>,
    on_interaction: Option<Arc<crate::client::InteractionHook>>,
    on_clarification: Option<Arc<crate::client::ClarificationHook>>,
    random: SharedRandom,
}

impl std::fmt::Debug for HttpPersonServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPersonServer")
            .field("ps", &self.ps)
            .finish_non_exhaustive()
    }
}

impl HttpPersonServer {
    /// The Person Server `ps`, reached through `transport`.
    #[must_use]
    pub fn new(ps: ServerId, transport: Arc<dyn Transport>) -> Self {
        Self {
            ps,
            transport,
            clock: Arc::new(SystemClock),
            capabilities: Vec::new(),
            poll: PollPolicy::default(),
            endpoints: Mutex::new(None),
            on_interaction: None,
            on_clarification: None,
            random: SharedRandom::default(),
        }
    }

    /// Answers the person's questions (clarification chat): called with each question,
    /// its answer is posted to the pending URL; `None` gives up. With it, requests declare
    /// the `clarification` capability.
    #[must_use]
    pub fn on_clarification(
        mut self,
        hook: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_clarification = Some(Arc::new(hook));
        if !self.capabilities.iter().any(|c| c == "clarification") {
            self.capabilities.push("clarification".to_owned());
        }
        self
    }

    /// Called once per interaction the Person Server asks for (the person opens
    /// `{url}?code={code}`); with it, requests declare the `interaction` capability.
    #[must_use]
    pub fn on_interaction(mut self, hook: impl Fn(&Interaction) + Send + Sync + 'static) -> Self {
        self.on_interaction = Some(Arc::new(hook));
        if !self.capabilities.iter().any(|c| c == "interaction") {
            self.capabilities.push("interaction".to_owned());
        }
        self
    }

    /// The clock for `created`.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The `capabilities` sent with each request (`interaction`, `clarification`, …).
    #[must_use]
    pub fn capabilities(mut self, caps: &[&str]) -> Self {
        self.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// How deferred answers are polled.
    #[must_use]
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Where the signatures' `nonce` values come from (the operating system's CSPRNG by
    /// default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// The Person Server's endpoints, discovered once.
    async fn endpoints(&self) -> Result<Endpoints, AgentError> {
        if let Some(e) = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(e);
        }
        let url = format!(
            "{}/.well-known/{}",
            self.ps.as_str(),
            PersonServerMetadata::DWK
        );
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(AgentError::transport)?;
        let resp = self.transport.send(req).await?;
        if resp.status() != StatusCode::OK {
            return Err(AgentError::PersonServer {
                status: resp.status(),
                error: "metadata document unavailable".to_owned(),
            });
        }
        let doc = PersonServerMetadata::parse_for(resp.body(), &self.ps).map_err(|e| {
            AgentError::PersonServer {
                status: resp.status(),
                error: format!("metadata: {e}"),
            }
        })?;
        let e = Endpoints {
            person: doc.person_token_endpoint.as_str().to_owned(),
            auth: doc.auth_token_endpoint.as_str().to_owned(),
            mission: doc.mission_endpoint.as_ref().map(|u| u.as_str().to_owned()),
            document: Arc::new(doc),
        };
        *self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
        Ok(e)
    }

    /// A request to the Person Server signed with the agent token.
    async fn signed(
        &self,
        agent: &Agent,
        method: Method,
        url: &str,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, AgentError> {
        let now = self.clock.now();
        let token = agent.token(now).await?;
        let mut b = http::Request::builder().method(method).uri(url);
        if !body.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        let (mut parts, ()) = b.body(()).map_err(AgentError::transport)?.into_parts();
        let signer = agent.signer();
        let scheme = Scheme::jwt(token.token.as_str());
        let options = SignOptions::default().unique_for(&parts.method, &mut self.random.clone())?;
        sign(
            &mut parts,
            &body,
            &[SigningKey::new("sig", signer.as_ref(), &scheme)],
            &options,
            now,
        )?;
        Ok(self
            .transport
            .send(http::Request::from_parts(parts, body))
            .await?)
    }

    /// POSTs `body` and returns the `200` JSON, polling a `202` until it completes.
    async fn call(
        &self,
        agent: &Agent,
        url: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, AgentError> {
        let body = Bytes::from(body.to_string());
        let mut resp = self.signed(agent, Method::POST, url, body.clone()).await?;
        // AG-60: the agent token was revoked or has expired: one fresh one from the
        // provider, and the request again.
        if resp.status() == StatusCode::UNAUTHORIZED
            && resp
                .headers()
                .get(aauth_headers::names::SIGNATURE_ERROR)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| aauth_headers::SignatureErrorHeader::parse(v).ok())
                .is_some_and(|h| {
                    matches!(
                        h.code,
                        aauth_headers::ErrorCode::RevokedJwt | aauth_headers::ErrorCode::ExpiredJwt
                    )
                })
        {
            let now = self.clock.now();
            let stale = agent.token(now).await?;
            agent.refresh(now, &stale.token).await?;
            resp = self.signed(agent, Method::POST, url, body).await?;
        }
        let resp = match resp.status() {
            StatusCode::OK => resp,
            StatusCode::ACCEPTED => {
                let request: http::Uri = url.parse().map_err(|_| AgentError::BadDeferred {
                    reason: "the request URL is not a URI".to_owned(),
                })?;
                let mut pending = PsPending {
                    client: self,
                    agent,
                    location: pending_url(&resp, &request)?.to_string(),
                    prompted: Vec::new(),
                    answered: Vec::new(),
                };
                crate::deferred_poll::until_done(&mut pending, &self.poll, resp).await?
            }
            s => {
                return Err(AgentError::PersonServer {
                    status: s,
                    error: problem_error(resp.body()),
                });
            }
        };
        serde_json::from_slice(resp.body()).map_err(|e| AgentError::PersonServer {
            status: resp.status(),
            error: format!("unreadable answer: {e}"),
        })
    }
}

impl HttpPersonServer {
    /// A signed `GET` of the pending URL, long-polling when configured.
    async fn poll_once(
        &self,
        agent: &Agent,
        pending: &str,
    ) -> Result<http::Response<Bytes>, AgentError> {
        let now = self.clock.now();
        let token = agent.token(now).await?;
        let mut b = http::Request::get(pending);
        if let Some(wait) = self
            .poll
            .prefer_wait
            .and_then(|w| Prefer::wait(w).serialize())
        {
            b = b.header("prefer", wait);
        }
        let (mut parts, ()) = b.body(()).map_err(AgentError::transport)?.into_parts();
        let signer = agent.signer();
        let scheme = Scheme::jwt(token.token.as_str());
        let options = SignOptions::default().unique_for(&parts.method, &mut self.random.clone())?;
        sign(
            &mut parts,
            &[],
            &[SigningKey::new("sig", signer.as_ref(), &scheme)],
            &options,
            now,
        )?;
        Ok(self
            .transport
            .send(http::Request::from_parts(parts, Bytes::new()))
            .await?)
    }

    /// Answers a `requirement=clarification`: `true` when an answer was posted. A
    /// question already `answered` is not asked of the hook again (the loop waits for
    /// the server's `Retry-After`), and at most [`PendingCap::Clarifications`]' bound
    /// are answered per request (as at a resource's pending URL): the next new one is
    /// [`AgentError::PendingCap`], before the hook is asked, and the request is withdrawn.
    async fn clarify(
        &self,
        agent: &Agent,
        resp: &http::Response<Bytes>,
        pending: &str,
        answered: &mut Vec<String>,
    ) -> Result<bool, AgentError> {
        #[derive(Deserialize)]
        struct Question {
            clarification: String,
        }
        let asked = resp
            .headers()
            .get(aauth_headers::names::AAUTH_REQUIREMENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| AAuthRequirement::parse(v).ok())
            .is_some_and(|r| r.requirement == Requirement::Clarification);
        if !asked {
            return Ok(false);
        }
        let q: Question =
            serde_json::from_slice(resp.body()).map_err(|e| AgentError::BadDeferred {
                reason: format!("clarification without a question: {e}"),
            })?;
        if answered.contains(&q.clarification) {
            return Ok(false);
        }
        // The server asked more than the agent answers for one request: a bound of the
        // agent's, not a requirement nobody could meet.
        let (cap, max) = (PendingCap::Clarifications, PendingCap::Clarifications.max());
        if answered.len() >= max {
            return Err(AgentError::PendingCap { cap, max });
        }
        let answer = self
            .on_clarification
            .as_ref()
            .and_then(|hook| hook(&q.clarification))
            .ok_or_else(|| AgentError::Unsatisfiable {
                requirement: "clarification".to_owned(),
                reason: "no answer to the person's question".to_owned(),
            })?;
        let body = serde_json::json!({
            "action": "clarification_response",
            "clarification_response": answer,
        });
        let r = self
            .signed(agent, Method::POST, pending, Bytes::from(body.to_string()))
            .await?;
        if r.status().is_success() {
            answered.push(q.clarification);
            Ok(true)
        } else {
            Err(AgentError::PersonServer {
                status: r.status(),
                error: problem_error(r.body()),
            })
        }
    }

    /// Passes an interaction requirement to the hook, once per code, for at most
    /// [`PendingCap::Interactions`]' bound of codes per request (as at a resource's
    /// pending URL): the next new one is [`AgentError::PendingCap`], and the request is
    /// withdrawn.
    fn prompt(
        &self,
        resp: &http::Response<Bytes>,
        prompted: &mut Vec<String>,
    ) -> Result<(), AgentError> {
        let Some(req) = resp
            .headers()
            .get(aauth_headers::names::AAUTH_REQUIREMENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| AAuthRequirement::parse(v).ok())
        else {
            return Ok(());
        };
        if let Requirement::Interaction { url, code } = req.requirement {
            if prompted.contains(&code) {
                return Ok(());
            }
            let (cap, max) = (PendingCap::Interactions, PendingCap::Interactions.max());
            if prompted.len() >= max {
                return Err(AgentError::PendingCap { cap, max });
            }
            let hook = crate::client::interaction_hook(self.on_interaction.as_ref())?;
            hook(&Interaction::checked(&url, &code)?);
            prompted.push(code);
        }
        Ok(())
    }
}

/// The Person Server's endpoints.
#[derive(Debug, Clone)]
struct Endpoints {
    person: String,
    auth: String,
    mission: Option<String>,
    /// The whole document, for the governance endpoints.
    document: Arc<PersonServerMetadata>,
}

/// An approved mission (draft -11 §Mission): its digest and the exact bytes approved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovedMission {
    /// `base64url(SHA-256(blob))`, checked by the client (AG-32).
    pub s256: String,
    /// The approved mission blob (JSON bytes).
    pub blob: Vec<u8>,
    /// What the Person Server can do for the person now.
    pub capabilities: Vec<String>,
    /// Person tokens for the approved resources, by resource.
    pub person_tokens: std::collections::BTreeMap<String, String>,
}

impl HttpPersonServer {
    async fn mission_endpoint(&self) -> Result<String, AgentError> {
        self.endpoints()
            .await?
            .mission
            .ok_or_else(|| AgentError::PersonServer {
                status: StatusCode::NOT_FOUND,
                error: "the Person Server declares no mission_endpoint".to_owned(),
            })
    }

    /// Proposes a mission (`{"description", "tools"?, "resources"?}`), waiting through a
    /// review by the person if the Person Server defers; checks that `s256` covers the
    /// bytes returned.
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`] (also when `s256` does not match), or as polling.
    pub async fn propose_mission(
        &self,
        agent: &Agent,
        proposal: serde_json::Value,
    ) -> Result<ApprovedMission, AgentError> {
        #[derive(Deserialize)]
        struct Approval {
            s256: String,
            mission: String,
            #[serde(default)]
            capabilities: Vec<String>,
            #[serde(default)]
            person_tokens: std::collections::BTreeMap<String, String>,
        }
        let url = self.mission_endpoint().await?;
        let mut body = proposal;
        if !self.capabilities.is_empty() {
            body["capabilities"] = self.capabilities.clone().into();
        }
        let answer = self.call(agent, &url, body).await?;
        let bad = |e: String| AgentError::PersonServer {
            status: StatusCode::OK,
            error: e,
        };
        let a: Approval =
            serde_json::from_value(answer).map_err(|e| bad(format!("approval: {e}")))?;
        let blob =
            aauth_keys::base64url::decode(&a.mission).map_err(|e| bad(format!("mission: {e}")))?;
        let digest = aauth_keys::base64url::encode(&sha2::Sha256::digest(&blob));
        if digest != a.s256 {
            return Err(bad(
                "s256 does not cover the mission bytes returned".to_owned()
            ));
        }
        Ok(ApprovedMission {
            s256: a.s256,
            blob,
            capabilities: a.capabilities,
            person_tokens: a.person_tokens,
        })
    }

    /// Records a change to mission `s256`; the digest of the update as persisted.
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`] (`mission_terminated`, `mission_not_found`, …).
    pub async fn update_mission(
        &self,
        agent: &Agent,
        s256: &str,
        description: &str,
    ) -> Result<String, AgentError> {
        let url = format!("{}/{s256}", self.mission_endpoint().await?);
        let answer = self
            .call(
                agent,
                &url,
                serde_json::json!({ "action": "update", "description": description }),
            )
            .await?;
        answer["s256"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AgentError::PersonServer {
                status: StatusCode::OK,
                error: "no s256 in the answer".to_owned(),
            })
    }

    /// Proposes that mission `s256` is complete; returns when the person (or the policy)
    /// accepted it.
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`], or [`AgentError::Deferred`] if the person refused.
    pub async fn complete_mission(
        &self,
        agent: &Agent,
        s256: &str,
        summary: &str,
    ) -> Result<(), AgentError> {
        let url = format!("{}/{s256}", self.mission_endpoint().await?);
        let mut body = serde_json::json!({ "action": "completion", "summary": summary });
        if !self.capabilities.is_empty() {
            body["capabilities"] = self.capabilities.clone().into();
        }
        self.call(agent, &url, body).await.map(drop)
    }
}

/// The Person Server's answer to a permission request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permission {
    /// The agent may proceed.
    Granted,
    /// The agent must not proceed, with the reason if one was given.
    Denied(Option<String>),
}

impl HttpPersonServer {
    async fn governance_endpoint(
        &self,
        pick: fn(&PersonServerMetadata) -> Option<&aauth_metadata::HttpsUrl>,
    ) -> Result<String, AgentError> {
        let e = self.endpoints().await?;
        pick(&e.document)
            .map(|u| u.as_str().to_owned())
            .ok_or_else(|| AgentError::PersonServer {
                status: StatusCode::NOT_FOUND,
                error: "the Person Server does not publish that endpoint".to_owned(),
            })
    }

    /// Asks permission for `action` (a tool call outside any resource), waiting through
    /// the person's decision if the Person Server defers.
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`] (`mission_terminated`, …), or as polling.
    pub async fn permission(
        &self,
        agent: &Agent,
        action: &str,
        description: Option<&str>,
        mission_s256: Option<&str>,
    ) -> Result<Permission, AgentError> {
        let url = self
            .governance_endpoint(|d| d.permission_endpoint.as_ref())
            .await?;
        let mut body = serde_json::json!({ "action": action });
        if let Some(d) = description {
            body["description"] = d.into();
        }
        if let Some(m) = mission_s256 {
            body["mission_s256"] = m.into();
        }
        if !self.capabilities.is_empty() {
            body["capabilities"] = self.capabilities.clone().into();
        }
        let answer = self.call(agent, &url, body).await?;
        match answer["permission"].as_str() {
            Some("granted") => Ok(Permission::Granted),
            Some("denied") => Ok(Permission::Denied(
                answer["reason"].as_str().map(str::to_owned),
            )),
            _ => Err(AgentError::PersonServer {
                status: StatusCode::OK,
                error: "no permission in the answer".to_owned(),
            }),
        }
    }

    /// Records an action performed under mission `mission_s256` (`201`).
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`] (`mission_terminated`, `invalid_request`).
    pub async fn audit(
        &self,
        agent: &Agent,
        mission_s256: &str,
        action: &str,
        description: Option<&str>,
    ) -> Result<(), AgentError> {
        let url = self
            .governance_endpoint(|d| d.audit_endpoint.as_ref())
            .await?;
        let mut body = serde_json::json!({ "mission_s256": mission_s256, "action": action });
        if let Some(d) = description {
            body["description"] = d.into();
        }
        let resp = self
            .signed(agent, Method::POST, &url, Bytes::from(body.to_string()))
            .await?;
        if resp.status() == StatusCode::CREATED {
            Ok(())
        } else {
            Err(AgentError::PersonServer {
                status: resp.status(),
                error: problem_error(resp.body()),
            })
        }
    }

    /// Relays `interaction` through the Person Server's `interaction_endpoint` (draft -11
    /// §Relaying Through the Person Server), signed as `agent`: whether it took it
    /// (`202`). Anything else (`424 interaction_unavailable`, no endpoint, an error, no
    /// answer) is `false`: the agent directs the person itself, as it would without a
    /// Person Server.
    pub async fn relay_as(&self, agent: &Agent, interaction: &Interaction) -> bool {
        let Ok(url) = self
            .governance_endpoint(|d| d.interaction_endpoint.as_ref())
            .await
        else {
            return false;
        };
        let body = serde_json::json!({
            "type": "interaction",
            "url": interaction.url,
            "code": interaction.code,
        });
        self.signed(agent, Method::POST, &url, Bytes::from(body.to_string()))
            .await
            .is_ok_and(|r| r.status() == StatusCode::ACCEPTED)
    }

    /// Asks the person a question through the Person Server; their answer.
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`] (`user_unreachable`, …), or as polling.
    pub async fn ask(&self, agent: &Agent, question: &str) -> Result<String, AgentError> {
        let url = self
            .governance_endpoint(|d| d.interaction_endpoint.as_ref())
            .await?;
        let mut body = serde_json::json!({ "type": "question", "question": question });
        if !self.capabilities.is_empty() {
            body["capabilities"] = self.capabilities.clone().into();
        }
        let answer = self.call(agent, &url, body).await?;
        answer["answer"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AgentError::PersonServer {
                status: StatusCode::OK,
                error: "no answer".to_owned(),
            })
    }
}

#[derive(Deserialize)]
struct PersonAnswer {
    person_token: String,
}

#[derive(Deserialize)]
struct AuthAnswer {
    auth_token: String,
}

impl HttpPersonServer {
    /// A person token, asked by `signer` (for a sub-agent: its parent, with the
    /// sub-agent's token as `subagent_token`). With `upstream_token` no `mission_s256` is
    /// sent (draft -11 §7.1: the mission is the upstream token's, which the Person Server
    /// copies; a request naming one beside it is rejected).
    async fn person_token_as(
        &self,
        signer: &Agent,
        request: PersonTokenRequest<'_>,
        subagent_token: Option<String>,
        upstream_token: Option<&str>,
    ) -> Result<String, AgentError> {
        let url = self.endpoints().await?.person;
        let mut body = serde_json::json!({ "resource": request.resource.as_str() });
        match (request.mission_s256, upstream_token) {
            (_, Some(t)) => body["upstream_token"] = t.into(),
            (Some(m), None) => body["mission_s256"] = m.into(),
            (None, None) => {}
        }
        if let Some(t) = subagent_token {
            body["subagent_token"] = t.into();
        }
        if !self.capabilities.is_empty() {
            body["capabilities"] = self.capabilities.clone().into();
        }
        let answer = self.call(signer, &url, body).await?;
        serde_json::from_value::<PersonAnswer>(answer)
            .map(|a| a.person_token)
            .map_err(|e| AgentError::PersonServer {
                status: StatusCode::OK,
                error: format!("no person_token: {e}"),
            })
    }

    /// An auth token, asked by `signer` (see [`HttpPersonServer::person_token_as`]).
    async fn auth_token_as(
        &self,
        signer: &Agent,
        request: AuthTokenRequest<'_>,
        subagent_token: Option<String>,
        upstream_token: Option<&str>,
    ) -> Result<String, AgentError> {
        let url = self.endpoints().await?.auth;
        let mut body = serde_json::json!({
            "resource_token": request.resource_token,
            "presented_token": request.presented_token,
        });
        if let Some(h) = request.login_hint {
            body["login_hint"] = h.into();
        }
        if let Some(t) = subagent_token {
            body["subagent_token"] = t.into();
        }
        if let Some(t) = upstream_token {
            body["upstream_token"] = t.into();
        }
        if !self.capabilities.is_empty() {
            body["capabilities"] = self.capabilities.clone().into();
        }
        let answer = self.call(signer, &url, body).await?;
        serde_json::from_value::<AuthAnswer>(answer)
            .map(|a| a.auth_token)
            .map_err(|e| AgentError::PersonServer {
                status: StatusCode::OK,
                error: format!("no auth_token: {e}"),
            })
    }
}

#[async_trait]
impl PersonServerClient for HttpPersonServer {
    async fn person_token(
        &self,
        agent: &Agent,
        request: PersonTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.person_token_as(agent, request, None, None).await
    }

    async fn auth_token(
        &self,
        agent: &Agent,
        request: AuthTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.auth_token_as(agent, request, None, None).await
    }

    async fn relay_interaction(&self, agent: &Agent, interaction: &Interaction) -> bool {
        self.relay_as(agent, interaction).await
    }
}

/// A sub-agent's way to its Person Server (draft -11 §10.2): a Person Server rejects
/// requests signed by a sub-agent token, so the parent asks, with the sub-agent's token as
/// `subagent_token`; the tokens bind the sub-agent's key.
#[derive(Debug)]
pub struct SubagentRelay {
    ps: Arc<HttpPersonServer>,
    parent: Arc<Agent>,
}

impl SubagentRelay {
    /// The parent `parent` asks `ps` on the sub-agent's behalf.
    #[must_use]
    pub fn new(ps: Arc<HttpPersonServer>, parent: Arc<Agent>) -> Self {
        Self { ps, parent }
    }
}

#[async_trait]
impl PersonServerClient for SubagentRelay {
    async fn person_token(
        &self,
        subagent: &Agent,
        request: PersonTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        let token = subagent.token(self.ps.clock.now()).await?.token.clone();
        self.ps
            .person_token_as(&self.parent, request, Some(token), None)
            .await
    }

    async fn auth_token(
        &self,
        subagent: &Agent,
        request: AuthTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        let token = subagent.token(self.ps.clock.now()).await?.token.clone();
        self.ps
            .auth_token_as(&self.parent, request, Some(token), None)
            .await
    }

    /// Relayed by the parent (a sub-agent never calls the Person Server itself).
    async fn relay_interaction(&self, _subagent: &Agent, interaction: &Interaction) -> bool {
        self.ps.relay_as(&self.parent, interaction).await
    }
}

/// Call chaining (draft -11 §10.1): an intermediary (a resource that is its own agent
/// provider) calling a downstream resource for the person of an incoming request asks
/// the Person Server that request's token names, with that token as `upstream_token`
/// on every request; the Person Server issues for the person it names, never beyond it,
/// under its mission (§7.1): no `mission_s256` is sent beside it, and a client built with
/// this relay expects the upstream token's mission in the person tokens it receives.
/// One relay (and one client) per upstream token.
#[derive(Debug)]
pub struct UpstreamRelay {
    ps: Arc<HttpPersonServer>,
    upstream_token: String,
}

impl UpstreamRelay {
    /// Asks `ps` with `upstream_token` (the person or auth token the intermediary was
    /// called with).
    #[must_use]
    pub fn new(ps: Arc<HttpPersonServer>, upstream_token: impl Into<String>) -> Self {
        Self {
            ps,
            upstream_token: upstream_token.into(),
        }
    }
}

#[async_trait]
impl PersonServerClient for UpstreamRelay {
    async fn person_token(
        &self,
        agent: &Agent,
        request: PersonTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.ps
            .person_token_as(agent, request, None, Some(&self.upstream_token))
            .await
    }

    async fn auth_token(
        &self,
        agent: &Agent,
        request: AuthTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.ps
            .auth_token_as(agent, request, None, Some(&self.upstream_token))
            .await
    }

    fn upstream_token(&self) -> Option<&str> {
        Some(&self.upstream_token)
    }
}

/// A Person Server's pending request, as the shared polling loop drives it.
struct PsPending<'a> {
    client: &'a HttpPersonServer,
    agent: &'a Agent,
    location: String,
    /// Interactions already shown to the person.
    prompted: Vec<String>,
    /// Questions already answered.
    answered: Vec<String>,
}

#[async_trait]
impl crate::deferred_poll::PendingRequest for PsPending<'_> {
    async fn pending(&mut self, resp: &http::Response<Bytes>) -> Result<bool, AgentError> {
        self.client.prompt(resp, &mut self.prompted)?;
        self.client
            .clarify(self.agent, resp, &self.location, &mut self.answered)
            .await
    }

    async fn poll(&mut self) -> Result<http::Response<Bytes>, AgentError> {
        self.client.poll_once(self.agent, &self.location).await
    }

    async fn cancel(&mut self) {
        let _cancelled = self
            .client
            .signed(self.agent, Method::DELETE, &self.location, Bytes::new())
            .await;
    }

    fn now(&self) -> aauth_keys::time::UnixTime {
        self.client.clock.now()
    }
}
