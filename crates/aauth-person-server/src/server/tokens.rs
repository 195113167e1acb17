//! The token endpoints: `POST /person-token` and `POST /auth-token` (three-party and, through [`federation`](super::federation), four-party), an updated request on a pending URL, and minting.

use std::time::Duration;

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AgentId, AuthIssuer, AuthTokenBuilder, PersonTokenBuilder, ServerId};
use serde::Deserialize;

use crate::PsError;
use crate::audit::{AuditAction, AuditEvent};
use crate::mission::{Check, Mission};
use crate::pending::{Pending, PendingRequest};
use crate::policy::{ConsentKind, ConsentRequest, Decision};
use crate::store::{AuthTokenRecord, Issuance, PersonTokenRecord, TokenRecord};

use super::defer::Deferral;
use super::defer::Hints;
use super::federation::Federated;
use super::missions::Asker;
use super::verify::{Acting, AgentRequest};
use super::{Outcome, PersonServer};

/// The body of `POST /person-token`.
#[derive(Deserialize)]
struct PersonTokenBody {
    resource: String,
    #[serde(default)]
    mission_s256: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    subagent_token: Option<String>,
    #[serde(default)]
    upstream_token: Option<String>,
    #[serde(flatten)]
    hints: Hints,
}

/// The body of `POST /auth-token`.
#[derive(Deserialize)]
struct AuthTokenBody {
    resource_token: String,
    presented_token: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    subagent_token: Option<String>,
    #[serde(default)]
    upstream_token: Option<String>,
    #[serde(flatten)]
    hints: Hints,
}

impl PersonServer {
    /// `person_token_endpoint` (draft -11 §7.1, PS-10…13).
    pub(super) async fn person_token(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        let b: PersonTokenBody = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let prompt = b.hints.check()?;
        let resource = ServerId::parse(&b.resource)
            .map_err(|e| PsError::InvalidRequest(format!("resource: {e}")))?;
        let mut acting = self.acting(r, b.subagent_token.as_deref(), now).await?;
        let (upstream, mission_s256, account) =
            self.person_for(r, &b, &resource, &mut acting, now).await?;
        let decision = prompt.apply(self.decide(
            &ConsentRequest {
                account: account.as_deref().unwrap_or_default(), // default: an unbound agent has no account yet; the policy is told it is unbound
                provider: &acting.agent.0,
                agent: &acting.agent.1,
                resource: &resource,
                scope: None,
                kind: ConsentKind::PersonToken,
                chained: upstream.is_some(),
            },
            account.is_some(),
        ))?;
        let chain = Self::chain_to(upstream.as_ref(), &resource)?;
        // Counted against the agent that signs (a parent's sub-agents share its count:
        // minting sub-agents buys no more resources).
        self.admit_resource(
            &(r.agent.claims.iss.clone(), r.agent.claims.sub.clone()),
            &resource,
            now.as_secs(),
        )?;
        match (decision, account) {
            (Decision::Approve, Some(account)) => self
                .mint_person_for(
                    &r.agent.claims.sub,
                    PersonTokenGrant {
                        chain: &chain,
                        resource: &resource,
                        account: &account,
                        key: &acting.key,
                        agent: (&acting.agent.0, &acting.agent.1),
                        cap: acting.exp,
                        mission: mission_s256.as_deref(),
                    },
                    now,
                )
                .await
                .map(Outcome::Issued),
            (Decision::Deny(reason), account) => {
                let mut e = AuditEvent::new(
                    now.as_secs(),
                    AuditAction::Denied,
                    format!("person token refused by the policy: {reason}"),
                )
                .agent(acting.agent.1.as_str())
                .resource(resource.as_str());
                if let Some(a) = account {
                    e = e.account(a);
                }
                self.log_event(e).await?;
                Err(PsError::Denied(reason))
            }
            (_, account) => {
                self.defer(
                    Deferral {
                        agent: r,
                        acting: &acting,
                        account,
                        request: PendingRequest::PersonToken {
                            resource,
                            mission_s256,
                            chain,
                            upstream_jti: upstream.as_ref().map(|u| u.jti.as_str().into()),
                        },
                        capabilities: &b.capabilities,
                        hints: &b.hints,
                    },
                    now,
                )
                .await
            }
        }
    }

    /// Whom a person token is for: the person an upstream token names (call chaining,
    /// PS-60, PS-63: the mission is the upstream's; no binding is used or made), or the
    /// person the agent is bound to, under the mission asked for. Caps `acting`'s `exp`
    /// by the mission's and the upstream token's.
    async fn person_for(
        &self,
        r: &AgentRequest,
        b: &PersonTokenBody,
        resource: &ServerId,
        acting: &mut Acting,
        now: UnixTime,
    ) -> Result<
        (
            Option<super::verify::Upstream>,
            Option<String>,
            Option<String>,
        ),
        PsError,
    > {
        let upstream = match &b.upstream_token {
            Some(t) => {
                if b.mission_s256.is_some() {
                    return Err(PsError::InvalidRequest(
                        "with upstream_token the mission is the upstream token's".to_owned(),
                    ));
                }
                Some(self.upstream(t, &r.agent.claims.iss, now).await?)
            }
            None => None,
        };
        let mission_s256 = match &upstream {
            Some(u) => u.mission_s256.clone(),
            None => b.mission_s256.clone(),
        };
        // Direct or chained, the request is held to the mission's limits.
        let asker = match &upstream {
            Some(_) => Asker::Chained,
            None => Asker::Owner(&r.agent.claims.iss, &r.agent.claims.sub),
        };
        let mission = self
            .mission_check(
                mission_s256.as_deref(),
                asker,
                "person_token",
                Check {
                    now: now.as_secs(),
                    resource,
                    scope: None,
                    subagent: b.subagent_token.is_some(),
                    offer: None,
                    consumed: &[],
                },
                now,
            )
            .await?;
        if let Some(e) = mission.as_ref().and_then(Mission::expires_at) {
            acting.exp = acting.exp.min(e);
        }
        let account = match &upstream {
            Some(u) => {
                acting.exp = acting.exp.min(u.exp);
                acting.ends = Some(u.exp);
                Some(u.account.clone())
            }
            None => self.binding_of(r).await?,
        };
        // A mission is its person's: after the agent was unlinked and linked to someone
        // else, its earlier missions are not the new person's to spend.
        if let (Some(m), Some(a)) = (&mission, &account)
            && m.account != *a
        {
            return Err(PsError::InvalidRequest(
                "mission_s256 names no mission of this person".to_owned(),
            ));
        }
        Ok((upstream, mission_s256, account))
    }

    /// Call chaining (the same person as upstream, the upstream's mission, and nothing
    /// that outlives the upstream token) or the mission's checks; caps `acting`'s `exp`
    /// by the mission's. The upstream token, if any.
    async fn auth_context(
        &self,
        r: &AgentRequest,
        b: &AuthTokenBody,
        rt: &aauth_tokens::ResourceClaims,
        held: &super::verify::PresentedGrant,
        acting: &mut Acting,
        now: UnixTime,
    ) -> Result<Option<super::verify::Upstream>, PsError> {
        let upstream = match &b.upstream_token {
            Some(t) => {
                let u = self.upstream(t, &r.agent.claims.iss, now).await?;
                if u.account != held.account {
                    return Err(PsError::InvalidUpstreamToken(
                        "the upstream token is another person's".to_owned(),
                    ));
                }
                if u.mission_s256 != rt.mission_s256 {
                    return Err(PsError::InvalidResourceToken(
                        "mission_s256 differs from the upstream token's".to_owned(),
                    ));
                }
                acting.exp = acting.exp.min(u.exp);
                acting.ends = Some(u.exp);
                Some(u)
            }
            None => None,
        };
        // Direct or chained, the request is held to the mission's limits (its budget is
        // spent when the token is made, in `mint_auth`).
        let asker = match &upstream {
            Some(_) => Asker::Chained,
            None => Asker::Owner(&r.agent.claims.iss, &r.agent.claims.sub),
        };
        let mission = self
            .mission_check(
                rt.mission_s256.as_deref(),
                asker,
                "auth_token",
                Check {
                    now: now.as_secs(),
                    resource: &rt.iss,
                    scope: Some(rt.scope.as_deref().unwrap_or_default()), // default: no scope is the empty scope
                    subagent: b.subagent_token.is_some(),
                    offer: rt.budget.as_ref(),
                    consumed: rt.budget_consumed.as_deref().unwrap_or_default(), // default: no consumption reported
                },
                now,
            )
            .await?;
        if let Some(e) = mission.as_ref().and_then(Mission::expires_at) {
            acting.exp = acting.exp.min(e);
        }
        Ok(upstream)
    }

    /// The presented token's grant and its text, with the resource token's revocation.
    async fn held(
        &self,
        presented: Option<String>,
        rt: &aauth_tokens::ResourceClaims,
        acting: &Acting,
        now: UnixTime,
    ) -> Result<(super::verify::PresentedGrant, String), PsError> {
        Ok(match presented {
            // The records asked once: the resource token's revocation with the rest.
            Some(p) => (self.presented_standing(&p, rt, now).await?, p),
            // Compatibility: the token from this server's records. Its text is needed only
            // to forward it to an Access Server, which `presented_on_record` refuses.
            None => {
                self.resource_token_unrevoked(rt, now).await?;
                (
                    self.presented_on_record(rt, acting, now).await?,
                    String::new(),
                )
            }
        })
    }

    /// What an auth-token request asks, as a pending request would keep it.
    fn auth_request(
        &self,
        r: &AgentRequest,
        b: &AuthTokenBody,
        rt: &aauth_tokens::ResourceClaims,
        held: &super::verify::PresentedGrant,
        presented: String,
        (chain, upstream_jti): (Vec<ServerId>, Option<Box<str>>),
    ) -> PendingRequest {
        PendingRequest::AuthToken {
            chain,
            upstream_jti,
            resource: rt.iss.clone(),
            sub: rt.sub.clone(),
            scope: rt.scope.clone(),
            account_claim: rt.account.clone(),
            mission_s256: rt.mission_s256.clone(),
            tenant: rt.tenant.clone(),
            presented_jti: rt.presented_jti.clone(),
            resource_token_jti: Some(rt.jti.as_str().into()),
            resource_interaction: None,
            presented_exp: held.exp,
            budget: rt.budget.clone(),
            budget_consumed: rt.budget_consumed.clone().unwrap_or_default(), // default: no consumption reported
            four_party: (rt.aud != self.id).then(|| {
                Box::new(crate::pending::FourParty {
                    access_server: rt.aud.clone(),
                    resource_token: b.resource_token.clone(),
                    agent_token: r.token.clone(),
                    presented_token: presented.clone(),
                    subagent_token: b.subagent_token.clone(),
                    upstream_token: b.upstream_token.clone(),
                    access_server_pending: None,
                    access_server_question: None,
                })
            }),
        }
    }

    /// Mints and records a person token (under `mission` when given), expiring no later
    /// than `cap`, for the agent that asked.
    pub(super) async fn mint_person_in(
        &self,
        grant: PersonTokenGrant<'_>,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let signer = grant.agent.1;
        self.mint_person_for(signer, grant, now).await
    }

    /// [`PersonServer::mint_person_in`], asked for by `signer`: a token for one of its
    /// sub-agents is recorded with it as the parent (unlinking the parent revokes it).
    pub(super) async fn mint_person_for(
        &self,
        signer: &AgentId,
        grant: PersonTokenGrant<'_>,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let PersonTokenGrant {
            chain,
            resource,
            account,
            key,
            agent,
            cap,
            mission,
        } = grant;
        self.account_active(account).await?;
        let sub = self.directed_sub(account, resource);
        let mut builder =
            PersonTokenBuilder::new(self.id.clone(), resource.clone(), sub.clone(), key)
                .lifetime(Duration::from_secs(self.person_lifetime))
                .not_after(UnixTime(cap));
        if let Some(m) = mission {
            builder = builder.mission_s256(m);
        }
        let minted = builder
            .sign(
                self.signer.as_ref(),
                &self.kid,
                now,
                &mut self.random.clone(),
            )
            .map_err(|e| aauth_metadata::serve::InternalError::produce("person token", e))?;
        metrics::counter!(aauth_metadata::metric::TOKENS_ISSUED, "type" => "person").increment(1);
        // The record, its chain and its audit event: one step.
        let event = AuditEvent::new(
            now.as_secs(),
            AuditAction::Issued,
            format!("person token {}", minted.jti),
        )
        .account(account)
        .agent(agent.1.as_str())
        .resource(resource.as_str());
        self.record_issued(
            Issuance::new(
                TokenRecord::Person(PersonTokenRecord {
                    jti: minted.jti.clone(),
                    aud: resource.clone(),
                    sub,
                    account: account.to_owned(),
                    agent: (agent.0.clone(), agent.1.clone()),
                    parent: (signer != agent.1).then(|| signer.clone()),
                    mission_s256: mission.map(str::to_owned),
                    exp: minted.exp,
                }),
                chain.to_vec(),
                event,
            ),
            account,
            now,
        )
        .await?;
        Ok(
            serde_json::json!({ "person_token": minted.token, "expires_in": minted.expires_in(now) }),
        )
    }

    /// `auth_token_endpoint`, three-party (draft -11 §7.2, PS-30…35).
    pub(super) async fn auth_token(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        let b: AuthTokenBody = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let prompt = b.hints.check()?;
        if b.presented_token.is_none() && !self.compatibility.accepts_missing_presented_token() {
            return Err(PsError::InvalidRequest(
                "presented_token is required (PS-30)".to_owned(),
            ));
        }
        let mut acting = self.acting(r, b.subagent_token.as_deref(), now).await?;
        let rt = self
            .resource_token_claims(&b.resource_token, &acting, now)
            .await?;
        let (held, presented) = self
            .held(b.presented_token.clone(), &rt, &acting, now)
            .await?;
        if b.upstream_token.is_none() {
            self.still_linked_to(r, &held.account).await?;
        }
        let upstream = self
            .auth_context(r, &b, &rt, &held, &mut acting, now)
            .await?;
        let chain = Self::chain_to(upstream.as_ref(), &rt.iss)?;
        let upstream_jti = upstream.as_ref().map(|u| u.jti.as_str().into());
        let mut request = self.auth_request(r, &b, &rt, &held, presented, (chain, upstream_jti));
        let resource_flow = self.resource_flow(&rt, &mut request)?;
        let asked = ConsentRequest {
            account: &held.account,
            provider: &acting.agent.0,
            agent: &acting.agent.1,
            resource: &rt.iss,
            scope: rt.scope.as_deref(),
            kind: ConsentKind::AuthToken,
            chained: upstream.is_some(),
        };
        let decided = self.decide(&asked, true);
        let decided = self
            .approved_for_mission(decided, &asked, rt.mission_s256.as_deref())
            .await?;
        let decision = prompt.apply(decided)?;
        // A resource that requires its own flow first: the person goes through it, and
        // then this server's consent, whatever the policy would have decided alone.
        let decision = match decision {
            Decision::Approve if resource_flow => Decision::AskPerson,
            d => d,
        };
        match decision {
            Decision::Approve => {
                self.issue_at_once(r, &acting, held, request, &b.capabilities, now)
                    .await
            }
            Decision::Deny(reason) => {
                self.log_event(
                    AuditEvent::new(
                        now.as_secs(),
                        AuditAction::Denied,
                        format!("auth token refused by the policy: {reason}"),
                    )
                    .account(held.account.as_str())
                    .agent(acting.agent.1.as_str())
                    .resource(rt.iss.as_str())
                    .scope(rt.scope.as_deref()),
                )
                .await?;
                Err(PsError::Denied(reason))
            }
            Decision::AskPerson => {
                self.defer(
                    Deferral {
                        agent: r,
                        acting: &acting,
                        account: Some(held.account),
                        request,
                        capabilities: &b.capabilities,
                        hints: &b.hints,
                    },
                    now,
                )
                .await
            }
        }
    }

    /// An approved auth-token request, issued now: by this server, or by the resource's
    /// Access Server, which may first need the person (the request then waits here).
    async fn issue_at_once(
        &self,
        r: &AgentRequest,
        acting: &Acting,
        held: super::verify::PresentedGrant,
        request: PendingRequest,
        capabilities: &[String],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        let holder = Holder {
            account: &held.account,
            disabled: held.account_disabled,
        };
        match self
            .mint_auth(
                &request,
                holder,
                &acting.agent.1,
                &acting.key,
                acting.exp,
                now,
            )
            .await
        {
            Ok(json) => Ok(Outcome::Issued(json)),
            Err(PsError::AccessServerInteraction {
                location,
                requirement,
                question,
            }) => {
                self.defer_to_access_server(
                    Deferral {
                        agent: r,
                        acting,
                        account: Some(held.account),
                        request,
                        capabilities,
                        hints: &Hints::default(),
                    },
                    (location, requirement, question),
                    now,
                )
                .await
            }
            Err(e) => Err(e),
        }
    }

    /// Refuses (`denied`) a request made in the name of `account` unless its signer (a
    /// sub-agent's parent) is still linked to them: unlinking an agent ends what it and
    /// its sub-agents obtain with tokens issued before (draft -11 §Sub-Agents: revoking
    /// the parent's grant fails the next sub-agent authorization). Not for a chained
    /// request, whose person is its upstream token's.
    async fn still_linked_to(&self, r: &AgentRequest, account: &str) -> Result<(), PsError> {
        if self.binding_of(r).await?.as_deref() == Some(account) {
            return Ok(());
        }
        Err(PsError::Denied(
            "the agent is not linked to the person the presented token names".to_owned(),
        ))
    }

    /// `decided`, unless it asks the person for what they already approved for the whole
    /// mission `mission` (the same agent, resource and scope, the mission theirs and
    /// active, the policy allowing it): then approved.
    async fn approved_for_mission(
        &self,
        decided: Decision,
        asked: &ConsentRequest<'_>,
        mission: Option<&str>,
    ) -> Result<Decision, PsError> {
        let (Decision::AskPerson, Some(s256)) = (&decided, mission) else {
            return Ok(decided);
        };
        if !self.policy.mission_wide(asked) {
            return Ok(decided);
        }
        let owner = (asked.provider.clone(), asked.agent.clone());
        let standing = self
            .store
            .owned_mission(s256, &owner)
            .await?
            .is_some_and(|m| {
                m.account == asked.account
                    && m.approved_for(asked.resource.as_str(), asked.scope.unwrap_or_default()) // default: no scope is approved as ""
            });
        Ok(if standing { Decision::Approve } else { decided })
    }

    /// Draft -11 §Resource-Initiated Interaction: a resource token with an `interaction`
    /// claim makes `request` wait for the resource's own flow (an https URL, else the
    /// resource token is invalid). Whether it does.
    fn resource_flow(
        &self,
        rt: &aauth_tokens::ResourceClaims,
        request: &mut PendingRequest,
    ) -> Result<bool, PsError> {
        let (
            Some(i),
            PendingRequest::AuthToken {
                resource_interaction,
                ..
            },
        ) = (&rt.interaction, request)
        else {
            return Ok(false);
        };
        let url = aauth_metadata::HttpsUrl::parse(&i.url)
            .map_err(|e| PsError::InvalidResourceToken(format!("interaction.url: {}", e.reason)))?;
        if url.path_and_query().contains('?') || i.code.is_empty() || i.code.len() > 64 {
            return Err(PsError::InvalidResourceToken(
                "interaction: a URL without a query, and a code of at most 64 bytes".to_owned(),
            ));
        }
        *resource_interaction = Some(Box::new(crate::pending::ResourceInteraction::new(
            url.as_str().to_owned(),
            i.code.clone(),
            self.random_token()?,
        )));
        Ok(true)
    }

    /// `action: updated_request` at a pending auth-token request (draft -11 §7.5.2.2,
    /// PS-30): a new resource token for the same resource, person, key, mission and
    /// tenant, with the presented token it was obtained with; the person is shown the
    /// new request (a revision: approving what they saw before is refused).
    pub(super) async fn update_request(
        &self,
        p: &mut Pending,
        body: &[u8],
        now: UnixTime,
    ) -> Result<(), PsError> {
        #[derive(Deserialize)]
        struct Update {
            resource_token: Option<String>,
            presented_token: Option<String>,
            justification: Option<String>,
        }
        let u: Update = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let token = u.resource_token.ok_or_else(|| {
            PsError::InvalidRequest("an updated request carries a resource_token".to_owned())
        })?;
        let presented = u.presented_token.ok_or_else(|| {
            PsError::InvalidRequest("presented_token is required (PS-30)".to_owned())
        })?;
        let PendingRequest::AuthToken {
            resource,
            sub,
            mission_s256,
            tenant,
            upstream_jti,
            ..
        } = &p.request
        else {
            return Err(PsError::InvalidRequest(
                "only an auth-token request can be updated".to_owned(),
            ));
        };
        let acting = Acting {
            key: PublicKey::from_jwk(&p.key).map_err(|e| {
                aauth_metadata::serve::InternalError::unreadable("stored agent key", e)
            })?,
            agent: p.agent.clone(),
            exp: p.agent_exp,
            ends: None,
        };
        let rt = self.resource_token(&token, &acting, now).await?;
        // Who issues stays who it was: this server (three-party) or the same Access Server
        // (four-party); an update cannot switch the request to another issuer.
        let issuer = match &p.request {
            PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } => &f.access_server,
            _ => &self.id,
        };
        if rt.iss != *resource
            || rt.aud != *issuer
            || rt.sub != *sub
            || rt.mission_s256 != *mission_s256
            || rt.tenant != *tenant
        {
            return Err(PsError::InvalidResourceToken(
                "an updated request keeps the original's resource, audience, person, mission and tenant"
                    .to_owned(),
            ));
        }
        let held = self.presented(&presented, &rt, now).await?;
        if p.account.as_ref().is_some_and(|a| *a != held.account) {
            return Err(PsError::InvalidPresentedToken(
                "the presented token is another person's".to_owned(),
            ));
        }
        // A chained request stays under its upstream token's mission.
        let asker = if upstream_jti.is_some() {
            Asker::Chained
        } else {
            Asker::Owner(&p.agent.0, &p.agent.1)
        };
        self.mission_check(
            rt.mission_s256.as_deref(),
            asker,
            "updated_request",
            Check {
                now: now.as_secs(),
                resource: &rt.iss,
                scope: Some(rt.scope.as_deref().unwrap_or_default()), // default: no scope is the empty scope
                subagent: acting.key.thumbprint().as_str() != p.jkt,
                offer: rt.budget.as_ref(),
                consumed: rt.budget_consumed.as_deref().unwrap_or_default(), // default: no consumption reported
            },
            now,
        )
        .await?;
        p.request = updated_auth_request(&p.request, rt, held.exp, token, presented);
        p.justification = u
            .justification
            .map(|j| j.chars().take(4000).collect::<String>())
            .filter(|j| !j.trim().is_empty());
        p.revision += 1;
        Ok(())
    }

    /// The mission's spending ledger (when the request names a mission) and the budget an
    /// auth token may be granted now: the resource's consumption reports taken, then at
    /// most what remains (draft-hardt-aauth-budgets, the PS's decision). Nothing is issued
    /// under a mission that ended since the request was made (a deferred request approved
    /// after the person's Terminate, or past its expiry). No lock is held while the token
    /// is then made (signed here, or asked of an Access Server): the grant is written
    /// afterwards ([`PersonServer::record_grant`]).
    async fn ledger_grant(
        &self,
        mission_s256: Option<&str>,
        spend: &Spend<'_>,
        now: UnixTime,
    ) -> Result<(Option<Mission>, Option<aauth_tokens::Budget>), PsError> {
        let Some(m) = (match mission_s256 {
            Some(s) => self.store.mission(s).await?,
            None => None,
        }) else {
            return Ok((None, spend.offer.cloned()));
        };
        let m = self.expire(m, now).await?;
        if let Some(reason) = m.terminated {
            return Err(PsError::MissionTerminated(reason.as_str()));
        }
        // A mission is its person's: not spent by a token issued for another.
        if m.account != spend.account {
            return Err(PsError::InvalidRequest(
                "mission_s256 names no mission of this person".to_owned(),
            ));
        }
        // Nothing made (nor asked of an Access Server) past the grant budget.
        if m.grants_spent() {
            return Err(PsError::Violation(
                crate::mission::violation::BUDGET_EXHAUSTED,
            ));
        }
        // The reports counted, not yet recorded (`record_grant` records them).
        let granted = m
            .allocate(spend.offer, spend.consumed, spend.resource)
            .map_err(PsError::Violation)?;
        Ok((Some(m), granted))
    }

    /// Writes token `jti`'s grant into the ledger as it is now (made again if another
    /// request changed it since it was read), and counts it against the mission's grant
    /// budget: a grant that no longer fits (spent meanwhile) is refused, and the token
    /// made for it is never delivered (its record revoked). Written only once the token
    /// is recorded and not refused, so that a refused issuance spends nothing.
    async fn record_grant(
        &self,
        m: Mission,
        spend: &Spend<'_>,
        jti: &str,
        granted: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let resource = spend.resource;
        self.commit_mission(m, |m| {
            if m.grants_spent() {
                return Err(PsError::Violation(
                    crate::mission::violation::BUDGET_EXHAUSTED,
                ));
            }
            m.grants = m.grants.saturating_add(1);
            m.record_consumption(spend.offer, spend.consumed, resource);
            if let Some(b) = granted {
                let fits = m
                    .allocate(Some(b), &[], resource)
                    .map_err(PsError::Violation)?;
                if fits.as_ref().map(|f| f.amount) != Some(b.amount) {
                    return Err(PsError::Violation(
                        crate::mission::violation::BUDGET_EXHAUSTED,
                    ));
                }
                m.record_allocation(jti, b.amount, resource);
                m.log(
                    now.as_secs(),
                    "budget",
                    Some(resource),
                    "permit",
                    Some(format!("granted {b}; spent {} so far", m.spent())),
                );
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    /// [`PersonServer::record_grant`] for the recorded token `minted`; a grant that no
    /// longer fits (spent meanwhile) withdraws the token: revoked, never delivered.
    async fn spend_grant(
        &self,
        m: Mission,
        spend: &Spend<'_>,
        minted: &aauth_tokens::Minted,
        granted: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let Err(e) = self.record_grant(m, spend, &minted.jti, granted, now).await else {
            return Ok(());
        };
        self.withdraw_issued(
            ("auth", &minted.jti, minted.exp),
            spend.account,
            "its mission no longer allowed it as it was issued",
            now,
        )
        .await?;
        Err(e)
    }

    pub(super) async fn mint_auth(
        &self,
        request: &PendingRequest,
        holder: Holder<'_>,
        agent: &AgentId,
        key: &PublicKey,
        agent_exp: u64,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let PendingRequest::AuthToken {
            resource,
            sub,
            scope,
            mission_s256,
            presented_jti,
            presented_exp,
            budget,
            budget_consumed,
            four_party,
            chain,
            ..
        } = request
        else {
            return Err(
                aauth_metadata::serve::InternalError::Invariant("an auth-token request").into(),
            );
        };
        let account = holder.account;
        match holder.disabled {
            Some(true) => return Err(account_disabled()),
            Some(false) => {}
            None => self.account_active(account).await?,
        }
        let spend = Spend {
            offer: budget.as_ref(),
            consumed: budget_consumed,
            resource,
            account,
        };
        let (ledger, granted) = self
            .ledger_grant(mission_s256.as_deref(), &spend, now)
            .await?;
        let cap = agent_exp.min(*presented_exp);
        let (minted, granted) = if let Some(fp) = four_party {
            // Four-party: the resource's Access Server issues, within what the PS allows.
            let request = Federated {
                fp,
                resource,
                sub,
                account,
                scope: scope.as_deref(),
                key,
                cap,
                allowed: granted.as_ref(),
            };
            let f = self.federated(&request, now).await?;
            self.unclaimed_jti(&f.0, now).await?;
            self.store
                .record_presentation(presented_jti, &fp.access_server, *presented_exp)
                .await?;
            (f.0, f.1)
        } else {
            let minted = self.sign_auth(request, key, cap, granted.as_ref(), now)?;
            (minted, granted)
        };
        let issuer = if four_party.is_some() {
            " (issued by the Access Server)"
        } else {
            ""
        };
        // The record, its chain and its audit event: one step.
        let event = AuditEvent::new(
            now.as_secs(),
            AuditAction::Issued,
            format!(
                "auth token {} scope {:?}{issuer}",
                minted.jti,
                scope.as_deref().unwrap_or_default() // default: no scope asked
            ),
        )
        .account(account)
        .agent(agent.as_str())
        .resource(resource.as_str())
        .scope(scope.as_deref());
        self.record_issued(
            Issuance::new(
                TokenRecord::Auth(AuthTokenRecord {
                    jti: minted.jti.clone(),
                    aud: resource.clone(),
                    sub: sub.clone(),
                    account: account.to_owned(),
                    presented_jti: presented_jti.clone(),
                    exp: minted.exp,
                }),
                chain.to_vec(),
                event,
            ),
            account,
            now,
        )
        .await?;
        // Spent from the mission only once the token is recorded and not refused (its
        // account disabled as it was issued): a refused issuance spends nothing.
        if let Some(m) = ledger {
            self.spend_grant(m, &spend, &minted, granted.as_ref(), now)
                .await?;
        }
        Ok(serde_json::json!({ "auth_token": minted.token, "expires_in": minted.expires_in(now) }))
    }

    /// Signs a three-party auth token for `request`, expiring by `cap`, with the budget
    /// `granted`.
    fn sign_auth(
        &self,
        request: &PendingRequest,
        key: &PublicKey,
        cap: u64,
        granted: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<aauth_tokens::Minted, PsError> {
        let PendingRequest::AuthToken {
            resource,
            sub,
            scope,
            account_claim,
            mission_s256,
            tenant,
            ..
        } = request
        else {
            return Err(
                aauth_metadata::serve::InternalError::Invariant("an auth-token request").into(),
            );
        };
        let mut builder = AuthTokenBuilder::new(
            AuthIssuer::PersonServer,
            self.id.clone(),
            resource.clone(),
            self.id.clone(),
            sub.clone(),
            key,
        )
        .lifetime(Duration::from_secs(self.auth_lifetime))
        .not_after(UnixTime(cap));
        if let Some(s) = scope {
            builder = builder.scope(s.clone());
        }
        if let Some(a) = account_claim {
            builder = builder.account(a.clone());
        }
        if let Some(m) = mission_s256 {
            builder = builder.mission_s256(m.clone());
        }
        if let Some(t) = tenant {
            builder = builder.tenant(t.clone());
        }
        if let Some(b) = granted {
            builder = builder.budget(b.clone());
        }
        let minted = builder
            .sign(
                self.signer.as_ref(),
                &self.kid,
                now,
                &mut self.random.clone(),
            )
            .map_err(|e| aauth_metadata::serve::InternalError::produce("auth token", e))?;
        metrics::counter!(aauth_metadata::metric::TOKENS_ISSUED, "type" => "auth").increment(1);
        Ok(minted)
    }
}

/// What a person token is minted from.
pub(super) struct PersonTokenGrant<'a> {
    /// Call chaining: the resources upstream of this request (recorded with the token).
    pub(super) chain: &'a [ServerId],
    /// The resource (`aud`).
    pub(super) resource: &'a ServerId,
    /// The person's account.
    pub(super) account: &'a str,
    /// The key the token binds (`cnf.jwk`).
    pub(super) key: &'a PublicKey,
    /// The agent (provider, identifier) it is issued to.
    pub(super) agent: (&'a ServerId, &'a AgentId),
    /// The latest `exp` it may have.
    pub(super) cap: u64,
    /// The mission it is issued under.
    pub(super) mission: Option<&'a str>,
}

/// The auth-token request `old` becomes with an update's resource token `rt` and the
/// presented token (its text and `exp`): the chain, the four-party leg and the resource's
/// own flow carry over.
fn updated_auth_request(
    old: &PendingRequest,
    rt: aauth_tokens::ResourceClaims,
    presented_exp: u64,
    token: String,
    presented: String,
) -> PendingRequest {
    let (chain, upstream_jti) = match old {
        PendingRequest::AuthToken {
            chain,
            upstream_jti,
            ..
        } => (chain.clone(), upstream_jti.clone()),
        _ => (Vec::new(), None),
    };
    PendingRequest::AuthToken {
        chain,
        upstream_jti,
        resource: rt.iss,
        sub: rt.sub,
        scope: rt.scope,
        account_claim: rt.account,
        mission_s256: rt.mission_s256,
        tenant: rt.tenant,
        presented_jti: rt.presented_jti,
        resource_token_jti: Some(rt.jti.into()),
        // An update keeps the resource's flow (and how far the person got in it).
        resource_interaction: match old {
            PendingRequest::AuthToken {
                resource_interaction,
                ..
            } => resource_interaction.clone(),
            _ => None,
        },
        presented_exp,
        four_party: match old {
            PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } => Some(Box::new(crate::pending::FourParty {
                resource_token: token,
                presented_token: presented,
                ..(**f).clone()
            })),
            _ => None,
        },
        budget: rt.budget,
        budget_consumed: rt.budget_consumed.unwrap_or_default(), // default: no consumption reported
    }
}

/// The person an auth token is minted for: their account and, when the request's
/// records told it already, whether it is disabled (else the minting asks).
#[derive(Debug, Clone, Copy)]
pub(super) struct Holder<'a> {
    pub(super) account: &'a str,
    pub(super) disabled: Option<bool>,
}

impl<'a> Holder<'a> {
    /// `account`, its standing not yet known.
    pub(super) fn of(account: &'a str) -> Self {
        Self {
            account,
            disabled: None,
        }
    }
}

/// The refusal of a disabled account.
pub(super) fn account_disabled() -> PsError {
    PsError::Denied("the person's account is disabled".to_owned())
}

/// What an auth token's request asks of a mission's budget: the resource's offer, its
/// consumption reports, and the resource.
struct Spend<'a> {
    offer: Option<&'a aauth_tokens::Budget>,
    consumed: &'a [aauth_tokens::Consumption],
    resource: &'a ServerId,
    /// The person the token is issued for: the mission must be theirs.
    account: &'a str,
}
