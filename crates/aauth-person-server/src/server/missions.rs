//! Missions: `POST /mission` (a proposal), the mission URL (status, completion, the log), the person's approval and termination, and the checks every token request against a mission passes.

use aauth_keys::time::UnixTime;
use aauth_keys::{PublicKey, base64url};
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::{HeaderValue, Method};
use serde::Deserialize;

use crate::PsError;
use crate::mission::{Check, Constraints, Mission, Proposal, TerminationReason};
use crate::pending::PendingRequest;
use crate::policy::{ConsentKind, ConsentRequest, Decision};

use super::defer::Deferral;
use super::defer::Hints;
use super::governance::at_most;
use super::tokens::PersonTokenGrant;
use super::verify::AgentRequest;
use super::{
    MAX_PROPOSAL_RESOURCES, MAX_PROPOSAL_TEXT, MAX_PROPOSAL_TOOLS, MAX_TRACKED_AGENTS, Outcome,
    PersonServer,
};

/// How many times a mission change is redone after others changed the mission first,
/// before the request is answered `503` (each try is one read and one conditional write).
const MISSION_WRITE_TRIES: usize = 16;

/// Decides the constraints a mission is approved with, from the proposal and the time.
pub type MissionTerms = dyn Fn(&Proposal, u64) -> Constraints + Send + Sync;

/// The default terms: a day, no sub-agents, no grant budget, and no limit on resources
/// or tools. The proposal's lists are recorded in the blob (`approved_resources`,
/// `approved_tools`) but are not limits (draft -11 §Mission Approval: nothing enforces
/// the tool list, and `approved_resources` "is not a limit"); limits are what the person
/// sets, through [`PersonServer::mission_terms`].
pub(super) fn default_terms(_proposal: &Proposal, now: u64) -> Constraints {
    Constraints {
        valid_until: Some(now + 86_400),
        ..Constraints::default()
    }
}

impl PersonServer {
    /// Makes `change` to mission `m` and writes it over the version `m` was read at; if
    /// someone changed the mission meanwhile (another request, another instance), reads
    /// it again and makes the change again, on what is there now. `change` returns what
    /// the caller needs of it (a verdict), or an error that stops the change unwritten.
    /// Returns the mission as written and what the last `change` returned. A mission that
    /// ended meanwhile is [`PsError::MissionTerminated`].
    pub(super) async fn commit_mission<T>(
        &self,
        mut m: Mission,
        mut change: impl FnMut(&mut Mission) -> Result<T, PsError>,
    ) -> Result<(Mission, T), PsError> {
        for _ in 0..MISSION_WRITE_TRIES {
            let out = change(&mut m)?;
            if self.store.replace_mission(&m).await? {
                m.version = m.version.saturating_add(1);
                return Ok((m, out));
            }
            m = self
                .store
                .mission(&m.s256)
                .await?
                .ok_or(PsError::MissionNotFound)?;
            if let Some(reason) = m.terminated {
                return Err(PsError::MissionTerminated(reason.as_str()));
            }
        }
        Err(PsError::Store(aauth_metadata::store::StoreError::backend(
            "missions",
            "the mission kept changing under this request",
        )))
    }

    /// Ends mission `s256` (a person or administrator's decision; there is no way back).
    ///
    /// # Errors
    ///
    /// [`PsError::MissionNotFound`], [`PsError::Store`].
    pub async fn terminate_mission(
        &self,
        s256: &str,
        reason: TerminationReason,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let m = self
            .store
            .mission(s256)
            .await?
            .ok_or(PsError::MissionNotFound)?;
        if m.terminated.is_some() {
            return Ok(());
        }
        let ended = self
            .commit_mission(m, |m| {
                m.terminate(reason, now.as_secs());
                Ok(())
            })
            .await;
        match ended {
            Ok((m, ())) => {
                let event = mission_event(&m, &format!("terminated: {}", reason.as_str()), now);
                self.log_event(event).await?;
                Ok(())
            }
            // Ended by someone else meanwhile: ended all the same.
            Err(PsError::MissionTerminated(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Admits (and notes) `resource` for `agent` under the PS-13 limit.
    pub(super) fn admit_resource(
        &self,
        agent: &(ServerId, aauth_tokens::AgentId),
        resource: &ServerId,
        now: u64,
    ) -> Result<(), PsError> {
        let (max, window) = self.resource_limit;
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: past the bound, the agent asked least recently is forgotten first
        // (one at a time, never a scan of the whole map).
        if asked.len() >= MAX_TRACKED_AGENTS && !asked.contains_key(agent) {
            let quietest = asked
                .iter()
                .take(64)
                .min_by_key(|(_, seen)| seen.values().max().copied().unwrap_or(0))
                .map(|(k, _)| k.clone());
            if let Some(k) = quietest {
                asked.remove(&k);
            }
        }
        let seen = asked.entry(agent.clone()).or_default();
        seen.retain(|_, t| t.saturating_add(window) > now);
        if !seen.contains_key(resource.as_str()) && seen.len() >= max {
            let oldest = seen.values().min().copied().unwrap_or(now);
            return Err(PsError::RateLimited {
                reason: format!("this agent asked for {max} distinct resources within {window} s"),
                retry_after: oldest.saturating_add(window).saturating_sub(now).max(1),
            });
        }
        seen.insert(resource.as_str().to_owned(), now);
        Ok(())
    }

    /// The mission `s256` names, if any, active (call chaining: the upstream's mission,
    /// whose agent is not the intermediary): `mission_terminated` once it ended.
    pub(super) async fn mission_active(
        &self,
        s256: Option<&str>,
        now: UnixTime,
    ) -> Result<Option<Mission>, PsError> {
        let Some(s256) = s256 else {
            return Ok(None);
        };
        let m = self.store.mission(s256).await?.ok_or_else(|| {
            PsError::InvalidUpstreamToken("its mission is not on record".to_owned())
        })?;
        let m = self.expire(m, now).await?;
        match m.terminated {
            Some(reason) => Err(PsError::MissionTerminated(reason.as_str())),
            None => Ok(Some(m)),
        }
    }

    /// `POST {mission_endpoint}`: a proposal, approved at once or after the person
    /// reviews it.
    pub(super) async fn propose(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Caps {
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let proposal: Proposal = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("proposal: {e}")))?;
        if proposal.description.trim().is_empty() {
            return Err(PsError::InvalidRequest(
                "description is required".to_owned(),
            ));
        }
        // Bounded: an approval mints a person token per resource and keeps the
        // proposal's bytes (the blob) for the mission's life.
        if proposal.resources.len() > MAX_PROPOSAL_RESOURCES
            || proposal.tools.len() > MAX_PROPOSAL_TOOLS
            || proposal.description.len() > MAX_PROPOSAL_TEXT
            || proposal
                .tools
                .iter()
                .any(|t| t.name.len() > 256 || t.description.len() > MAX_PROPOSAL_TEXT)
        {
            return Err(PsError::InvalidRequest(format!(
                "a proposal names at most {MAX_PROPOSAL_RESOURCES} resources and \
                 {MAX_PROPOSAL_TOOLS} tools, with texts of at most {MAX_PROPOSAL_TEXT} bytes"
            )));
        }
        for res in &proposal.resources {
            ServerId::parse(res).map_err(|e| PsError::InvalidRequest(format!("resources: {e}")))?;
        }
        let caps = serde_json::from_slice::<Caps>(body)
            .map(|c| c.capabilities)
            .unwrap_or_default(); // default: the proposal parsed; a capabilities member that does not is none declared
        let account = self.binding_of(r).await?;
        let decision = self.decide(
            &ConsentRequest {
                account: account.as_deref().unwrap_or_default(), // default: an unbound agent has no account yet; the policy is told it is unbound
                provider: &r.agent.claims.iss,
                agent: &r.agent.claims.sub,
                resource: &self.id,
                scope: None,
                kind: ConsentKind::Mission,
                chained: false,
            },
            account.is_some(),
        );
        match (decision, account) {
            (Decision::Approve, Some(account)) => self
                .approve_mission(
                    &proposal,
                    &account,
                    &r.key,
                    (&r.agent.claims.iss, &r.agent.claims.sub),
                    r.agent.claims.exp,
                    now,
                )
                .await
                .map(Outcome::Issued),
            (Decision::Deny(reason), _) => Err(PsError::Denied(reason)),
            (_, account) => {
                let acting = self.acting(r, None, now).await?;
                // What the request keeps is the proposal's known members written again,
                // never the bytes that came (unknown members of up to 64 KiB): everything
                // that reads it back parses it as a `Proposal`, and the mission's `s256`
                // is over the blob built from the parsed proposal, not over these bytes.
                let proposal = serde_json::to_string(&proposal).map_err(|e| {
                    aauth_metadata::serve::InternalError::produce("mission proposal", e)
                })?;
                self.defer(
                    Deferral {
                        agent: r,
                        acting: &acting,
                        account,
                        request: PendingRequest::Mission { proposal },
                        capabilities: &caps,
                        hints: &Hints::default(),
                    },
                    now,
                )
                .await
            }
        }
    }

    /// Creates the mission and answers `{s256, mission, capabilities, person_tokens}`.
    pub(super) async fn approve_mission(
        &self,
        proposal: &Proposal,
        account: &str,
        key: &PublicKey,
        agent: (&ServerId, &aauth_tokens::AgentId),
        agent_exp: u64,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let constraints = (self.terms)(proposal, now.as_secs());
        let blob = crate::mission::blob(agent.1, proposal, &constraints, now.as_secs());
        let mut m = Mission::new(
            blob,
            (agent.0.clone(), agent.1.clone()),
            account,
            constraints,
        );
        m.log(now.as_secs(), "proposal", None, "permit", None);
        let s256 = m.s256.clone();
        let mut person_tokens = serde_json::Map::new();
        // A person token for each resource the proposal named (`approved_resources`), as
        // far as the person's own limits allow.
        let resources: Vec<String> = proposal
            .resources
            .iter()
            .filter(|r| {
                m.constraints
                    .resources
                    .as_ref()
                    .is_none_or(|limit| limit.contains(r))
            })
            .cloned()
            .collect();
        let expires_at = m.expires_at();
        let event = mission_event(&m, "approved by the person", now);
        // The same agent's same proposal approved twice within one second is the same
        // mission (its bytes, so its s256): kept as it is, its ledger with it; and a
        // terminated one stays terminated (the store keeps it final in any case).
        match self.store.mission(&s256).await? {
            Some(existing) => {
                if let Some(reason) = existing.terminated {
                    return Err(PsError::MissionTerminated(reason.as_str()));
                }
            }
            None => self.store.put_mission(m).await?,
        }
        self.log_event(event).await?;
        for res in resources {
            let resource = ServerId::parse(&res).map_err(|e| {
                aauth_metadata::serve::InternalError::unreadable("mission resource", e)
            })?;
            // The same limit on distinct resources as a person-token request's.
            self.admit_resource(
                &(agent.0.clone(), agent.1.clone()),
                &resource,
                now.as_secs(),
            )?;
            let cap = expires_at.map_or(agent_exp, |e| e.min(agent_exp));
            let json = self
                .mint_person_in(
                    PersonTokenGrant {
                        chain: &[],
                        resource: &resource,
                        account,
                        key,
                        agent,
                        cap,
                        mission: Some(&s256),
                    },
                    now,
                )
                .await?;
            if let Some(t) = json.get("person_token") {
                person_tokens.insert(res, t.clone());
            }
        }
        let stored = self.store.mission(&s256).await?.ok_or(
            aauth_metadata::serve::InternalError::Invariant("a mission just stored reads back"),
        )?;
        let mut capabilities = Vec::new();
        if self.interaction {
            capabilities.push("interaction");
        }
        Ok(serde_json::json!({
            "s256": s256,
            "mission": base64url::encode(&stored.blob),
            "capabilities": capabilities,
            "person_tokens": person_tokens,
        }))
    }

    /// The mission `s256` if it exists and belongs to the signer; otherwise the one
    /// answer for both cases.
    pub(super) async fn owned_mission(
        &self,
        r: &AgentRequest,
        s256: &str,
        now: UnixTime,
    ) -> Result<Mission, PsError> {
        let owner = (r.agent.claims.iss.clone(), r.agent.claims.sub.clone());
        let m = self
            .store
            .owned_mission(s256, &owner)
            .await?
            .ok_or(PsError::MissionNotFound)?;
        let m = self.expire(m, now).await?;
        // Unlinked from the mission's person: no longer the agent's to act in.
        if m.terminated.is_none() && !self.linked_to_mission(&m).await? {
            return Err(PsError::MissionNotFound);
        }
        Ok(m)
    }

    /// Marks a mission past its `expires_at` terminated (`expired`).
    pub(super) async fn expire(&self, m: Mission, now: UnixTime) -> Result<Mission, PsError> {
        if m.terminated.is_some() || m.expires_at().is_none_or(|e| now.as_secs() < e) {
            return Ok(m);
        }
        let s256 = m.s256.clone();
        let expired = self
            .commit_mission(m, |m| {
                m.terminate(TerminationReason::Expired, now.as_secs());
                Ok(())
            })
            .await;
        match expired {
            Ok((m, ())) => {
                self.log_event(mission_event(&m, "expired", now)).await?;
                Ok(m)
            }
            // Ended meanwhile another way: as it is now.
            Err(PsError::MissionTerminated(_)) => self
                .store
                .mission(&s256)
                .await?
                .ok_or(PsError::MissionNotFound),
            Err(e) => Err(e),
        }
    }

    /// `{mission_endpoint}/{s256}`: `GET` the approved bytes; `POST` an `update` or a
    /// `completion`.
    pub(super) async fn mission_url(
        &self,
        r: &AgentRequest,
        s256: &str,
        method: &Method,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        // Draft -11 §Mission Endpoint Errors: a malformed `{mission_s256}` (anything but
        // the 43 base64url characters of a SHA-256 digest) is `invalid_request`, told
        // apart before any lookup (so by its form alone, never by what is stored).
        if base64url::decode_array::<32>(s256).is_err() {
            return Err(PsError::InvalidRequest(
                "the mission_s256 path segment is not an unpadded base64url SHA-256 digest"
                    .to_owned(),
            ));
        }
        let m = self.owned_mission(r, s256, now).await?;
        if *method == Method::GET {
            let mut resp = http::Response::new(Bytes::from(m.blob.clone()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(Outcome::Respond(resp));
        }
        if *method != Method::POST {
            return Err(PsError::InvalidRequest("GET or POST".to_owned()));
        }
        #[derive(Deserialize)]
        struct Action {
            action: Option<String>,
            description: Option<String>,
            summary: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let a: Action = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        if let Some(reason) = m.terminated {
            return Err(PsError::MissionTerminated(reason.as_str()));
        }
        match a.action.as_deref() {
            Some("update") => {
                let text = a
                    .description
                    .filter(|d| !d.trim().is_empty())
                    .ok_or_else(|| {
                        PsError::InvalidRequest("update needs a description".to_owned())
                    })?;
                // Kept in the mission's log: a proposal's text is no longer.
                at_most("description", Some(&text), MAX_PROPOSAL_TEXT)?;
                let digest = crate::mission::s256(text.as_bytes());
                let (m, ()) = self
                    .commit_mission(m, |m| {
                        m.log_agent(now.as_secs(), "update", None, "permit", Some(text.clone()))
                            .map_err(PsError::from)
                    })
                    .await?;
                let event = mission_event(&m, &format!("updated (new description {digest})"), now);
                self.log_event(event).await?;
                Ok(Outcome::Issued(serde_json::json!({ "s256": digest })))
            }
            Some("completion") => {
                let summary = a.summary.filter(|d| !d.trim().is_empty()).ok_or_else(|| {
                    PsError::InvalidRequest("completion needs a summary".to_owned())
                })?;
                // Kept with the deferred completion and in the mission's log.
                at_most("summary", Some(&summary), MAX_PROPOSAL_TEXT)?;
                let account = m.account.clone();
                match self.policy.decide(&ConsentRequest {
                    account: &account,
                    provider: &r.agent.claims.iss,
                    agent: &r.agent.claims.sub,
                    resource: &self.id,
                    scope: None,
                    kind: ConsentKind::Completion,
                    chained: false,
                }) {
                    Decision::Approve => {
                        self.complete(m, &summary, now).await?;
                        Ok(Outcome::Issued(
                            serde_json::json!({ "status": "completed" }),
                        ))
                    }
                    Decision::Deny(reason) => Err(PsError::Denied(reason)),
                    Decision::AskPerson => {
                        let acting = self.acting(r, None, now).await?;
                        self.defer(
                            Deferral {
                                agent: r,
                                acting: &acting,
                                account: Some(account),
                                request: PendingRequest::Completion {
                                    s256: m.s256.clone(),
                                    summary,
                                },
                                capabilities: &a.capabilities,
                                hints: &Hints::default(),
                            },
                            now,
                        )
                        .await
                    }
                }
            }
            _ => Err(PsError::InvalidRequest(
                "action must be update or completion".to_owned(),
            )),
        }
    }

    pub(super) async fn complete(
        &self,
        m: Mission,
        summary: &str,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let (m, ()) = self
            .commit_mission(m, |m| {
                m.log(
                    now.as_secs(),
                    "completion",
                    None,
                    "permit",
                    Some(summary.to_owned()),
                );
                m.terminated = Some(TerminationReason::Completed);
                Ok(())
            })
            .await?;
        let event = mission_event(&m, "completed by its agent", now);
        self.log_event(event).await
    }

    /// The mission named by a token request, checked by the policy engine; the decision
    /// is logged. `Ok(None)` without a mission. A request in call chaining
    /// ([`Asker::Chained`]) is held to the upstream token's mission as a request of the
    /// mission's own agent is (draft -11 §Call Chaining: the PS evaluates the downstream
    /// request against the mission context).
    pub(super) async fn mission_check(
        &self,
        s256: Option<&str>,
        asker: Asker<'_>,
        event: &str,
        check: Check<'_>,
        now: UnixTime,
    ) -> Result<Option<Mission>, PsError> {
        let Some(s256) = s256 else {
            return Ok(None);
        };
        let found = self.store.mission(s256).await?;
        let m = match asker {
            Asker::Owner(provider, agent) => found
                .filter(|m| m.agent.0 == *provider && m.agent.1 == *agent)
                // At a token endpoint an unknown mission is a bad parameter (draft -11 §7.1).
                .ok_or_else(|| {
                    PsError::InvalidRequest(
                        "mission_s256 names no mission of this agent".to_owned(),
                    )
                })?,
            // The upstream token's mission, whichever agent it is of.
            Asker::Chained => found.ok_or_else(|| {
                PsError::InvalidUpstreamToken("its mission is not on record".to_owned())
            })?,
        };
        let m = self.expire(m, now).await?;
        if let Some(reason) = m.terminated {
            return Err(PsError::MissionTerminated(reason.as_str()));
        }
        // The verdict and its log entry: one change, made again on the mission as it is
        // now if another request changed it first. A grant is counted when its token is
        // issued (`record_grant`), not when it is asked for: one denied, or never
        // answered, spends nothing.
        let (m, verdict) = self
            .commit_mission(m, |m| {
                let verdict = m.check(&check);
                // A full log refuses the request, whatever the verdict: no token under a
                // mission goes unlogged.
                m.log_agent(
                    now.as_secs(),
                    event,
                    Some(check.resource),
                    if verdict.is_ok() { "permit" } else { "deny" },
                    verdict.err().map(str::to_owned),
                )?;
                Ok(verdict)
            })
            .await?;
        let terminated = m.terminated;
        match verdict {
            Ok(()) => Ok(Some(m)),
            Err(crate::mission::violation::TERMINATED) => Err(PsError::MissionTerminated(
                terminated.map_or("revoked", TerminationReason::as_str),
            )),
            Err(code) => Err(PsError::Violation(code)),
        }
    }

    /// The agent's mission `s256`, active: `mission_terminated` once ended.
    pub(super) async fn active_mission(
        &self,
        s256: &str,
        owner: (&ServerId, &aauth_tokens::AgentId),
        now: UnixTime,
    ) -> Result<Mission, PsError> {
        let m = self
            .store
            .mission(s256)
            .await?
            .filter(|m| m.agent == (owner.0.clone(), owner.1.clone()))
            .ok_or_else(|| {
                PsError::InvalidRequest("mission_s256 names no mission of this agent".to_owned())
            })?;
        let m = self.expire(m, now).await?;
        if let Some(reason) = m.terminated {
            return Err(PsError::MissionTerminated(reason.as_str()));
        }
        // Unlinked from the mission's person: no longer the agent's to act in.
        if !self.linked_to_mission(&m).await? {
            return Err(PsError::InvalidRequest(
                "mission_s256 names no mission of this agent".to_owned(),
            ));
        }
        Ok(m)
    }
}

/// Who asks for a token under a mission.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asker<'a> {
    /// The mission's own agent (provider, identifier): another agent's mission is not
    /// found.
    Owner(&'a ServerId, &'a aauth_tokens::AgentId),
    /// An intermediary in call chaining: the mission is its upstream token's, whichever
    /// agent it is of; one not on record makes the upstream token invalid.
    Chained,
}

/// The audit event of a change to mission `m`: its account, its agent, what happened.
fn mission_event(m: &Mission, what: &str, now: UnixTime) -> crate::AuditEvent {
    crate::AuditEvent::new(
        now.as_secs(),
        crate::AuditAction::Mission,
        format!("mission {} {what}", m.s256),
    )
    .account(m.account.as_str())
    .agent(m.agent.1.as_str())
}
