//! `POST /auth-token` (AS-10…21): a Person Server's token request, from its signature to
//! the auth token. [`AccessServer::issue`] runs the steps in order: read the request,
//! check its tokens ([`super::checks`]), ask the store what it knows, ask the policy
//! ([`super::decide`]), then mint and record the auth token. A request the policy defers
//! waits at a pending URL ([`super::waiting`]).

use aauth_metadata::audit::{AuditAction, AuditEvent};
use std::time::Duration;

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AuthIssuer, AuthTokenBuilder, Budget, Minted, ResourceClaims, ServerId};
use http::request::Parts;

use super::checks::TokenRequest;
use super::decide::Decided;
use super::waiting::{Asked, Given, Outcome};
use super::{AccessServer, Answer};
use crate::store::{IssuedRecord, Standing, StandingQuery};
use crate::{AccessRequest, AsError};

/// What an auth token is issued against (AS-44), for the revocation cascade (AS-41):
/// the person token its Person Server revokes here. For a four-party step-up that
/// presents an auth token this server issued, it is the person token that one was
/// issued against (its issuance record's), so that revoking the person token reaches
/// every token stepped up from it, however many steps down.
struct Against {
    /// The person token's `jti` (as its Person Server revokes it here).
    person_jti: String,
    /// The `jti` of this server's auth token presented for a step-up (its cascade
    /// records it revoked here).
    stepped_from: Option<String>,
}

/// What an auth token is minted from, once every check and the policy have passed.
struct Grant<'a> {
    /// The Person Server that asked.
    ps: &'a ServerId,
    /// The verified resource token.
    rt: &'a ResourceClaims,
    /// What it is issued against.
    against: &'a Against,
    /// The key the token is bound to (the agent's or the sub-agent's).
    key: &'a PublicKey,
    /// The agent the token is for (its agent token's `sub`).
    agent: &'a str,
    /// The scope granted.
    scope: Option<String>,
    /// The Person Server's budget ceiling, if it sent one.
    budget: Option<&'a Budget>,
    /// The earliest `exp` of every token the request came with (AS-21).
    not_after: u64,
}

impl AccessServer {
    /// `auth_token_endpoint` (AS-10…21): the calling Person Server's request, answered
    /// with the auth token or the step it waits for.
    pub(super) async fn auth_token(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Answer {
        let ps = self.calling_ps(parts, body, now).await?;
        self.count_person_server(parts, &ps, false).await?;
        let asked = Asked {
            ps: &ps,
            body,
            given: Given::default(),
            first: true,
        };
        let outcome = match self.issue(&asked, now).await {
            Ok(o) => o,
            Err(e) => {
                self.audit_refusal(&ps, &e, now).await;
                return Err(e.into());
            }
        };
        self.respond(outcome, asked, None, now).await
    }

    /// Decides the token request `asked` (a first request, or one decided again with
    /// what its steps gave): every check of AS-11…14, the policy, then the auth token
    /// (AS-20, AS-21), or the step the policy asks for first.
    pub(super) async fn issue(&self, asked: &Asked<'_>, now: UnixTime) -> Result<Outcome, AsError> {
        let ps = asked.ps;
        let request = TokenRequest::parse(asked.body)?;
        self.check_governed(&request.resource_token, now)?;
        let agent = self.check_agent(&request, now).await?;
        let rt = self
            .check_resource_token(&request.resource_token, &agent.key, ps, now)
            .await?;
        // Counted by agent once the request is shown to be for it: its agent token alone
        // is no proof (every resource it calls sees that token), the resource token that
        // binds its key is.
        if asked.first {
            self.count_agent(&agent.claims.sub).await?;
        }
        let standing = self.standing(ps, &rt, now).await?;
        // AS-42: a resource token its resource revoked.
        if standing.resource_token_revoked {
            return Err(AsError::RevokedResourceToken);
        }
        let presented = self
            .presented(&request.presented_token, &rt, ps, now)
            .await?;
        let mut not_after = agent.not_after.min(presented.exp);
        // AS-41: never again against a person token its Person Server revoked here (the
        // presented token's `jti` is the resource token's `presented_jti`, checked above).
        if standing.presented_token_revoked {
            return Err(AsError::RevokedPresentedToken);
        }
        let against = self.against(&rt, ps, presented.own, now).await?;
        // AS-14: an upstream token (call chaining), for the intermediary, from this PS.
        if let Some(u) = &request.upstream_token {
            not_after = not_after.min(self.upstream(u, &agent.claims.iss, ps, now).await?);
        }
        let given = &asked.given;
        let decided = self.decide(
            &AccessRequest {
                ps,
                resource: &rt.iss,
                sub: &rt.sub,
                scope: rt.scope.as_deref(),
                agent: (&agent.claims.iss, &agent.claims.sub),
                mission_s256: rt.mission_s256.as_deref(),
                claims: given.claims.as_ref(),
                pre_established: self.trusted.contains(ps),
                bound: standing.bound_account.is_some(),
                bound_account: standing.bound_account.as_deref(),
                approved: given.approved,
                clarification: given.clarification.as_deref(),
                billed: standing.billed,
            },
            given.rounds,
        )?;
        let scope = match decided {
            Decided::Issue(scope) => scope,
            Decided::Wait(step) => {
                return Ok(Outcome::Deferred(
                    step,
                    (rt.iss.as_str().to_owned(), rt.jti.clone()),
                    request.canonical()?,
                ));
            }
        };
        let grant = Grant {
            ps,
            rt: &rt,
            against: &against,
            key: &agent.key,
            agent: agent.claims.sub.as_str(),
            scope,
            budget: request.budget.as_ref(),
            not_after,
        };
        let minted = self.mint(&grant, now)?;
        self.record(&grant, &minted, now).await?;
        // AS-41, AS-42: a revocation that came while this request was decided looked for
        // the tokens issued against it before this one was recorded. Looked for again now
        // that it is (the revocation is written before its cascade looks), one of the two
        // always sees the other: a token the cascade missed is never handed out, and is
        // recorded revoked here.
        if let Some(revoked) = self.revoked_now(ps, &rt, &against, now).await? {
            self.store
                .revoke(self.id.as_str(), &minted.jti, minted.exp, now)
                .await?;
            return Err(revoked);
        }
        Ok(Outcome::Issued {
            json: serde_json::json!({ "auth_token": minted.token, "expires_in": minted.expires_in(now) }),
            jti: minted.jti,
            exp: minted.exp,
        })
    }

    /// Counts a token request for `agent` (its agent token verified) against the rules
    /// by agent ([`AccessServer::rate_limits`]): over one, `rate_limited` (429, with
    /// `Retry-After`); a limiter that cannot answer is the store's failure (`503`).
    async fn count_agent(&self, agent: &aauth_tokens::AgentId) -> Result<(), AsError> {
        use aauth_metadata::rate::{Refused, SignedBy};
        match self
            .count(super::AUTH_TOKEN_PATH, SignedBy::Agent(agent.as_str()))
            .await
        {
            Ok(()) => Ok(()),
            Err(Refused::Unavailable(e)) => Err(AsError::Store(e)),
            Err(refused) => Err(AsError::RateLimited {
                reason: format!("agent {agent}: {refused}"),
                retry_after: refused.retry_after_secs(),
            }),
        }
    }

    /// What the store knows of this request, asked at once: revocations of its tokens,
    /// the person's binding, the Person Server's billing.
    async fn standing(
        &self,
        ps: &ServerId,
        rt: &ResourceClaims,
        now: UnixTime,
    ) -> Result<Standing, AsError> {
        let query = StandingQuery {
            ps,
            resource: &rt.iss,
            sub: &rt.sub,
            resource_token_jti: &rt.jti,
            presented_jti: &rt.presented_jti,
        };
        Ok(self.store.standing(&query, now).await?)
    }

    /// What the token for `rt` is issued against ([`Against`]): its presented token,
    /// or for one of this server's auth tokens (`own`), the person token that one was
    /// issued against, neither revoked here. A token of this server's it holds no record
    /// of (expired past its record, or a store that lost it) is refused: what it came
    /// from is unknown, and a token issued on it would escape the cascade.
    async fn against(
        &self,
        rt: &ResourceClaims,
        ps: &ServerId,
        own: bool,
        now: UnixTime,
    ) -> Result<Against, AsError> {
        if !own {
            return Ok(Against {
                person_jti: rt.presented_jti.clone(),
                stepped_from: None,
            });
        }
        let record = self
            .store
            .issued_record(&rt.presented_jti, now)
            .await?
            .filter(|r| r.ps == *ps)
            .ok_or_else(|| {
                AsError::InvalidPresentedToken(
                    "an auth token of this server's that it holds no issuance record of".to_owned(),
                )
            })?;
        let against = Against {
            person_jti: record.presented_jti,
            stepped_from: Some(rt.presented_jti.clone()),
        };
        match self.revoked_now(ps, rt, &against, now).await? {
            Some(revoked) => Err(revoked),
            None => Ok(against),
        }
    }

    /// The refusal of a token for `rt` issued `against` whose resource token (AS-42), or
    /// person token or auth token stepped up from (AS-41), is revoked by now (`None`
    /// when none is): the store's standing, asked for the person token.
    async fn revoked_now(
        &self,
        ps: &ServerId,
        rt: &ResourceClaims,
        against: &Against,
        now: UnixTime,
    ) -> Result<Option<AsError>, AsError> {
        let query = StandingQuery {
            ps,
            resource: &rt.iss,
            sub: &rt.sub,
            resource_token_jti: &rt.jti,
            presented_jti: &against.person_jti,
        };
        let standing = self.store.standing(&query, now).await?;
        if standing.resource_token_revoked {
            return Ok(Some(AsError::RevokedResourceToken));
        }
        let stepped_from_revoked = match &against.stepped_from {
            Some(jti) => self.store.is_revoked(self.id.as_str(), jti, now).await?,
            None => false,
        };
        Ok((standing.presented_token_revoked || stepped_from_revoked)
            .then_some(AsError::RevokedPresentedToken))
    }

    /// AS-20, AS-21: the auth token, capped by every token the request came with, its
    /// budget at most the resource's offer and the Person Server's ceiling.
    fn mint(&self, grant: &Grant<'_>, now: UnixTime) -> Result<Minted, AsError> {
        let rt = grant.rt;
        let mut builder = AuthTokenBuilder::new(
            AuthIssuer::AccessServer,
            self.id.clone(),
            rt.iss.clone(),
            grant.ps.clone(),
            rt.sub.clone(),
            grant.key,
        )
        .lifetime(Duration::from_secs(self.auth_lifetime))
        .not_after(UnixTime(grant.not_after));
        if let Some(s) = &grant.scope {
            builder = builder.scope(s.clone());
        }
        if let Some(a) = &rt.account {
            builder = builder.account(a.clone());
        }
        if let Some(m) = &rt.mission_s256 {
            builder = builder.mission_s256(m.clone());
        }
        if let Some(t) = &rt.tenant {
            builder = builder.tenant(t.clone());
        }
        // The resource denominates; the PS and then this server may only lower.
        if let Some(offer) = &rt.budget {
            let ceiling = grant
                .budget
                .filter(|c| c.same_denomination(offer))
                .map_or(offer.amount, |c| c.amount.min(offer.amount));
            builder = builder.budget(offer.with_amount(ceiling));
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

    /// AS-44: the issuance record, kept until `exp` plus skew, for the revocation
    /// cascade: against the person token ([`Against`]).
    async fn record(
        &self,
        grant: &Grant<'_>,
        minted: &Minted,
        now: UnixTime,
    ) -> Result<(), AsError> {
        let record = IssuedRecord::new(
            minted.jti.clone(),
            grant.ps.clone(),
            grant.against.person_jti.clone(),
            grant.rt.iss.clone(),
            minted.exp,
        );
        let scope = grant.scope.as_deref().unwrap_or_default(); // default: no scope granted
        let e = AuditEvent::new(
            now.as_secs(),
            AuditAction::Issued,
            format!("auth token {} scope {scope:?} to {}", minted.jti, grant.ps),
        )
        .account(grant.rt.sub.as_str())
        .agent(grant.agent)
        .resource(grant.rt.iss.as_str())
        .scope(grant.scope.as_deref());
        Ok(self.store.record_issuance(record, e, now).await?)
    }

    /// Records a refused token request in the audit log: its error code and reason. A
    /// failure to record is reported, and the refusal stands.
    async fn audit_refusal(&self, ps: &ServerId, refused: &AsError, now: UnixTime) {
        if matches!(refused, AsError::Store(_) | AsError::RateLimited { .. }) {
            // The store that failed would not take the event either; and a request over
            // its limit writes nothing (a flood must not become a flood of writes: the
            // limiter's metric counts them).
            return;
        }
        let e = AuditEvent::new(
            now.as_secs(),
            AuditAction::Refused,
            format!("{}: {refused} (asked by {ps})", refused.code()),
        );
        if let Err(failure) = self.store.record_event(e).await {
            aauth_metadata::serve::report_failure(&failure);
        }
    }
}
