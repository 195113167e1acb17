//! Who is asking: the agent's signature under its agent token (or a sub-agent's under its parent's), the upstream token of call chaining, and the tokens an agent presents (resource tokens, this server's own person and auth tokens).

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_signing::{KeyIdentity, VerifyError};
use aauth_tokens::{
    AgentClaims, AuthClaims, BoundToken, PersonClaims, ResourceClaims, ServerId, TokenError,
    TokenType, Unverified, Validation, Verified, verify,
};
use bytes::Bytes;
use http::request::Parts;

use crate::IssuedToken;
use crate::PsError;

use super::PersonServer;

/// The Access Server metadata document an Access Server's tokens name as `dwk`.
const AS_DOCUMENT: &str = "aauth-access.json";

/// Why an auth token handed back was refused.
pub(super) enum ReturnedToken {
    /// A check of the token itself failed.
    Token(TokenError),
    /// It verifies, but is not one this Person Server issued or relayed.
    Foreign(&'static str),
    /// The store could not answer.
    Store(aauth_metadata::store::StoreError),
}
use super::revocation::resource_revocation_key;

/// What a verified upstream token (call chaining) establishes.
pub(super) struct Upstream {
    /// Its `jti` (its revocation key here).
    pub(super) jti: String,
    /// The person it names (from this server's record).
    pub(super) account: String,
    /// Its expiry: nothing issued from it outlives it.
    pub(super) exp: u64,
    /// Its mission, carried downstream.
    pub(super) mission_s256: Option<String>,
    /// The intermediaries of the call chain so far, first to last (the last is the one
    /// asking now).
    pub(super) chain: Vec<ServerId>,
}

/// Who a token is issued to: the signing agent, or the sub-agent its `subagent_token`
/// names (draft -11 §10.2: the parent asks on the sub-agent's behalf).
pub(super) struct Acting {
    /// The key the token binds.
    pub(super) key: PublicKey,
    /// The agent (provider, identifier).
    pub(super) agent: (ServerId, aauth_tokens::AgentId),
    /// The latest the token may expire: the agent token's, and the sub-agent token's.
    pub(super) exp: u64,
    /// Call chaining: the upstream token's `exp`. A request deferred for the person
    /// ends (`expired`) when it passes (PS-64).
    pub(super) ends: Option<u64>,
}

/// A request verified as coming from an agent (not a sub-agent), with its token.
pub(super) struct AgentRequest {
    pub(super) key: PublicKey,
    pub(super) agent: Verified<AgentClaims>,
    /// The agent token as sent (forwarded to an Access Server in four-party access).
    pub(super) token: String,
}

/// What the presented token establishes.
pub(super) struct PresentedGrant {
    pub(super) account: String,
    pub(super) exp: u64,
    /// Whether the account is disabled, when the records were asked already (else the
    /// issuance asks).
    pub(super) account_disabled: Option<bool>,
}

/// A presented token whose own checks passed ([`PersonServer::presented_checked`]),
/// waiting for the records.
pub(super) struct Presented {
    jti: String,
    is_person: bool,
    exp: u64,
}

impl Presented {
    /// The grant, from what the records say of it (PS-32: on record, unrevoked).
    pub(super) fn grant(
        self,
        issued: IssuedToken,
        account_disabled: Option<bool>,
    ) -> Result<PresentedGrant, PsError> {
        let account = match issued {
            IssuedToken::Known { account, .. } => account,
            IssuedToken::Revoked => return Err(PsError::RevokedPresentedToken),
            // -11 (upgrade checklist PS-31) has no code of its own for this: a token this
            // server has no record of is not one it presented (the editor's copy after -11
            // adds `unknown_person_token`).
            _ => {
                return Err(PsError::InvalidPresentedToken(format!(
                    "no record of this {} token",
                    if self.is_person { "person" } else { "auth" }
                )));
            }
        };
        Ok(PresentedGrant {
            account,
            exp: self.exp,
            account_disabled,
        })
    }
}

impl PersonServer {
    /// The request's signature under its agent token (`401` + `Signature-Error`
    /// otherwise), then the agent's rate limits (`429`, see
    /// [`PersonServer::rate_limits`]); a sub-agent may not sign here (its parent asks on
    /// its behalf).
    pub(super) async fn verify_agent(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<AgentRequest, http::Response<Bytes>> {
        let verified = match self.agents.verify(parts, body, now).await {
            Ok(v) => v,
            Err(error) => {
                return Err(error
                    .into_http_response(self.agents.policy())
                    .map(Bytes::from));
            }
        };
        let agent = match verified.identity {
            KeyIdentity::Token(t) => match *t {
                BoundToken::Agent(a) => a,
                _ => {
                    return Err(
                        PsError::InvalidRequest("sign with your agent token".to_owned())
                            .into_http_response(),
                    );
                }
            },
            _ => {
                return Err(
                    PsError::InvalidRequest("sign with your agent token".to_owned())
                        .into_http_response(),
                );
            }
        };
        // Counted by the agent now that its signature and token verified, before anything
        // is read or written for it.
        if let Some(refused) = self.agent_over_limit(parts, &agent.claims.sub).await {
            return Err(refused);
        }
        // Revoked by its provider? If not, its agent is recorded (for a later cascade).
        let revoked_key = format!("agent {} {}", agent.claims.iss.as_str(), agent.claims.jti);
        match self
            .store
            .see_agent_token(
                (&agent.claims.iss, &agent.claims.jti),
                &agent.claims.sub,
                agent.claims.exp,
                &revoked_key,
                now,
            )
            .await
        {
            Ok(false) => {}
            Ok(true) => {
                return Err(VerifyError::Revoked {
                    token_type: TokenType::Agent,
                }
                .into_http_response(self.agents.policy())
                .map(Bytes::from));
            }
            Err(e) => return Err(PsError::from(e).into_http_response()),
        }
        if agent.claims.parent_agent.is_some() {
            return Err(PsError::InvalidSubagentToken(
                "a sub-agent's request is made by its parent, with subagent_token".to_owned(),
            )
            .into_http_response());
        }
        // The token the signature verified under, as sent.
        let token = parts
            .headers
            .get(aauth_headers::names::SIGNATURE_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| aauth_headers::SignatureKey::parse(v).ok())
            .and_then(|k| match k.get(&verified.label).map(|m| &m.scheme) {
                Some(Ok(aauth_headers::Scheme::Jwt { jwt, .. })) => Some(jwt.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                PsError::from(aauth_metadata::serve::InternalError::Invariant(
                    "the verified agent token is in Signature-Key",
                ))
                .into_http_response()
            })?;
        Ok(AgentRequest {
            key: verified.key,
            agent,
            token,
        })
    }

    /// The answer to a request `agent` signed (verified) that is over a rule counted by
    /// agent ([`PersonServer::rate_limits`]), or `None` to go on: `429 rate_limited`, or
    /// `429 slow_down` for a poll of a pending URL (draft -11 §11.9.4, Polling Error
    /// Codes), with `Retry-After`; `503` when the limiter cannot answer.
    async fn agent_over_limit(
        &self,
        parts: &Parts,
        agent: &aauth_tokens::AgentId,
    ) -> Option<http::Response<Bytes>> {
        use aauth_metadata::rate::{SignedBy, limited_response, slow_down_response};
        let path = parts.uri.path();
        let refused = self
            .rate_limits
            .as_ref()?
            .check_signed(path, SignedBy::Agent(agent.as_str()))
            .await
            .err()?;
        let polling = parts.method == http::Method::GET && path.starts_with(super::PENDING_PATH);
        Some(if polling {
            slow_down_response(&refused)
        } else {
            limited_response(&refused)
        })
    }

    /// The acting party: the signer, or the sub-agent of a `subagent_token` whose
    /// `parent_agent` is the signer and whose `iss` is the signer's provider.
    pub(super) async fn acting(
        &self,
        r: &AgentRequest,
        subagent_token: Option<&str>,
        now: UnixTime,
    ) -> Result<Acting, PsError> {
        let Some(token) = subagent_token else {
            return Ok(Acting {
                key: r.key.clone(),
                agent: (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()),
                exp: r.agent.claims.exp,
                ends: None,
            });
        };
        let st = verify::<AgentClaims>(token, &Validation::new(now), self.issuer_keys.as_ref())
            .await
            .map_err(|e| match e {
                TokenError::Expired { .. } => PsError::ExpiredSubagentToken,
                TokenError::IssuedInFuture { iat, now } => PsError::ClockSkew { iat, now },
                TokenError::KeyResolution(aauth_tokens::ResolveError::Unavailable { reason }) => {
                    aauth_metadata::serve::InternalError::KeysUnavailable {
                        whose: "agent provider's",
                        reason,
                    }
                    .into()
                }
                other => PsError::InvalidSubagentToken(other.to_string()),
            })?;
        if st.claims.iss != r.agent.claims.iss {
            return Err(PsError::InvalidSubagentToken(
                "its iss is not the signer's agent provider".to_owned(),
            ));
        }
        if st.claims.parent_agent.as_ref() != Some(&r.agent.claims.sub) {
            return Err(PsError::InvalidSubagentToken(
                "its parent_agent is not the agent that signed this request".to_owned(),
            ));
        }
        // Revoked by its provider? A sub-agent token is checked (and recorded, for a later
        // cascade) exactly as the signer's own agent token is.
        let revoked_key = format!("agent {} {}", st.claims.iss.as_str(), st.claims.jti);
        match self
            .store
            .see_agent_token(
                (&st.claims.iss, &st.claims.jti),
                &st.claims.sub,
                st.claims.exp,
                &revoked_key,
                now,
            )
            .await
        {
            Ok(false) => {}
            Ok(true) => return Err(PsError::RevokedSubagentToken),
            Err(e) => return Err(PsError::from(e)),
        }
        let key = st
            .cnf_key
            .ok_or_else(|| PsError::InvalidSubagentToken("it binds no key".to_owned()))?;
        Ok(Acting {
            key,
            agent: (st.claims.iss, st.claims.sub),
            exp: st.claims.exp.min(r.agent.claims.exp),
            ends: None,
        })
    }

    pub(super) async fn binding_of(&self, r: &AgentRequest) -> Result<Option<String>, PsError> {
        self.store
            .binding(&r.agent.claims.iss, &r.agent.claims.sub)
            .await
            .map_err(PsError::from)
    }

    /// An `upstream_token` (call chaining, PS-61): a person or auth token this Person
    /// Server issued, for the intermediary `intermediary` (its `aud` is the `iss` of the
    /// intermediary's agent token), unexpired, unrevoked, on record; `cnf` is not compared
    /// with the signing key. An auth token may also be one an Access Server issued to this
    /// Person Server ([`PersonServer::returned_auth_token`]).
    pub(super) async fn upstream(
        &self,
        token: &str,
        intermediary: &ServerId,
        now: UnixTime,
    ) -> Result<Upstream, PsError> {
        let v = Validation::new(now).audience(intermediary);
        let own = self.signer.public_key();
        let map = |e: TokenError| match e {
            TokenError::Expired { .. } => PsError::ExpiredUpstreamToken,
            TokenError::IssuedInFuture { iat, now } => PsError::ClockSkew { iat, now },
            other => PsError::InvalidUpstreamToken(other.to_string()),
        };
        let typ = aauth_tokens::jws::CompactJws::parse(token)
            .ok()
            .and_then(|j| j.header.typ);
        let (jti, sub, mission_s256, exp, person) = match typ {
            Some(t) if TokenType::Person.matches_typ(&t) => {
                let c = Unverified::<PersonClaims>::decode(token, &v)
                    .and_then(|u| u.finish(own, &v))
                    .map_err(map)?
                    .claims;
                if c.iss != self.id {
                    return Err(PsError::InvalidUpstreamToken(
                        "a person token from another Person Server".to_owned(),
                    ));
                }
                (c.jti, c.sub, c.mission_s256, c.exp, true)
            }
            Some(t) if TokenType::Auth.matches_typ(&t) => {
                let c = self
                    .returned_auth_token(token, &v, now)
                    .await
                    .map_err(|r| match r {
                        ReturnedToken::Token(e) => map(e),
                        ReturnedToken::Foreign(why) => {
                            PsError::InvalidUpstreamToken(why.to_owned())
                        }
                        ReturnedToken::Store(e) => PsError::from(e),
                    })?;
                (c.jti, c.sub, c.mission_s256, c.exp, false)
            }
            _ => {
                return Err(PsError::InvalidUpstreamToken(
                    "upstream_token must be a person token or an auth token".to_owned(),
                ));
            }
        };
        let (aud, rec_sub, account) = match self.issued(&jti, person, now).await? {
            IssuedToken::Known { aud, sub, account } => (aud, sub, account),
            IssuedToken::Revoked => return Err(PsError::RevokedUpstreamToken),
            _ => {
                return Err(PsError::InvalidUpstreamToken(
                    "no record of this token".to_owned(),
                ));
            }
        };
        if aud != *intermediary || rec_sub != sub {
            return Err(PsError::InvalidUpstreamToken(
                "the token differs from this Person Server's record of it".to_owned(),
            ));
        }
        // M8: the chain so far, this intermediary last; never deeper than allowed.
        let mut chain = self.store.chain(&jti).await?;
        chain.push(intermediary.clone());
        if chain.len() > self.max_chain {
            return Err(PsError::InvalidUpstreamToken(format!(
                "the call chain would be deeper than {} intermediaries",
                self.max_chain
            )));
        }
        Ok(Upstream {
            jti,
            account,
            exp,
            mission_s256,
            chain,
        })
    }

    /// The call chain a downstream request for `resource` continues: `upstream`'s, unless
    /// `resource` is already in it (a cycle, M8).
    pub(super) fn chain_to(
        upstream: Option<&Upstream>,
        resource: &ServerId,
    ) -> Result<Vec<ServerId>, PsError> {
        let chain = upstream.map(|u| u.chain.clone()).unwrap_or_default(); // default: no upstream, no chain
        if chain.contains(resource) {
            return Err(PsError::InvalidUpstreamToken(format!(
                "the call chain returns to {resource}"
            )));
        }
        Ok(chain)
    }

    /// The resource token (PS-31): verified under its resource's published key, `aud` is
    /// this Person Server (three-party), `agent_jkt` is the signing key (or the
    /// sub-agent's), `ps` is this Person Server, and not revoked.
    pub(super) async fn resource_token(
        &self,
        token: &str,
        acting: &Acting,
        now: UnixTime,
    ) -> Result<ResourceClaims, PsError> {
        let rt = self.resource_token_claims(token, acting, now).await?;
        self.resource_token_unrevoked(&rt, now).await?;
        Ok(rt)
    }

    /// `revoked_resource_token` for a resource token its resource revoked.
    pub(super) async fn resource_token_unrevoked(
        &self,
        rt: &ResourceClaims,
        now: UnixTime,
    ) -> Result<(), PsError> {
        if self
            .store
            .is_revoked(&resource_revocation_key(&rt.iss, &rt.jti), now)
            .await?
        {
            return Err(PsError::RevokedResourceToken);
        }
        Ok(())
    }

    /// The presented token ([`PersonServer::presented`]) and the resource token's
    /// revocation, asking the records once ([`PsStore::standing`](crate::PsStore::standing):
    /// both revocations, the presented token's record and its account's standing). A
    /// revoked resource token is said first, as [`PersonServer::resource_token`] would.
    pub(super) async fn presented_standing(
        &self,
        token: &str,
        rt: &ResourceClaims,
        now: UnixTime,
    ) -> Result<PresentedGrant, PsError> {
        let checked = match self.presented_checked(token, rt, now).await {
            Ok(c) => c,
            Err(e) => {
                self.resource_token_unrevoked(rt, now).await?;
                return Err(e);
            }
        };
        let standing = self
            .store
            .standing(
                &resource_revocation_key(&rt.iss, &rt.jti),
                &checked.jti,
                checked.is_person,
                now,
            )
            .await?;
        if standing.resource_token_revoked {
            return Err(PsError::RevokedResourceToken);
        }
        checked.grant(standing.presented, Some(standing.account_disabled))
    }

    /// [`PersonServer::resource_token`]'s checks but the revocation (which the caller asks
    /// the records with its other questions).
    pub(super) async fn resource_token_claims(
        &self,
        token: &str,
        acting: &Acting,
        now: UnixTime,
    ) -> Result<ResourceClaims, PsError> {
        let v = Validation::new(now)
            .accept_person_token_jti(self.compatibility.reads_person_token_jti());
        let first =
            verify::<ResourceClaims>(token, &v.audience(&self.id), self.issuer_keys.as_ref()).await;
        // Four-party: the resource names its Access Server as `aud` (with `ps` = us).
        let first = match first {
            Err(TokenError::WrongAudience { found, .. }) if self.federation.is_some() => {
                match ServerId::parse(&found) {
                    Ok(access) => {
                        verify::<ResourceClaims>(
                            token,
                            &v.audience(&access),
                            self.issuer_keys.as_ref(),
                        )
                        .await
                    }
                    Err(e) => Err(TokenError::Claim {
                        claim: "aud",
                        reason: e.to_string(),
                    }),
                }
            }
            other => other,
        };
        let rt = first
            .map_err(|e| match e {
                TokenError::Expired { .. } => PsError::ExpiredResourceToken,
                TokenError::IssuedInFuture { iat, now } => PsError::ClockSkew { iat, now },
                TokenError::KeyResolution(aauth_tokens::ResolveError::Unavailable { reason }) => {
                    aauth_metadata::serve::InternalError::KeysUnavailable {
                        whose: "resource's",
                        reason,
                    }
                    .into()
                }
                other => PsError::InvalidResourceToken(other.to_string()),
            })?
            .claims;
        if rt.agent_jkt != acting.key.thumbprint().as_str() {
            return Err(PsError::InvalidResourceToken(
                "agent_jkt is not the key of the agent (or sub-agent) asking".to_owned(),
            ));
        }
        if rt.ps != self.id {
            return Err(PsError::InvalidResourceToken(format!(
                "ps names {}, not this Person Server",
                rt.ps
            )));
        }
        Ok(rt)
    }

    /// The presented token (PS-31, PS-32): a person token this Person Server issued, or an
    /// auth token it issued or relayed from an Access Server (a four-party step-up), for
    /// the resource that issued the resource token (`aud` = its `iss`), bound
    /// to `agent_jkt`, named by `presented_jti`, for the same person, mission and tenant;
    /// recorded, unrevoked, unexpired.
    pub(super) async fn presented(
        &self,
        token: &str,
        rt: &ResourceClaims,
        now: UnixTime,
    ) -> Result<PresentedGrant, PsError> {
        let checked = self.presented_checked(token, rt, now).await?;
        let issued = self.issued(&checked.jti, checked.is_person, now).await?;
        checked.grant(issued, None)
    }

    /// [`PersonServer::presented`]'s checks of the token itself, before the records.
    pub(super) async fn presented_checked(
        &self,
        token: &str,
        rt: &ResourceClaims,
        now: UnixTime,
    ) -> Result<Presented, PsError> {
        let v = Validation::new(now).audience(&rt.iss);
        let own = self.signer.public_key();
        let map = |e: TokenError| match e {
            TokenError::Expired { .. } => PsError::ExpiredPresentedToken,
            TokenError::IssuedInFuture { iat, now } => PsError::ClockSkew { iat, now },
            other => PsError::InvalidPresentedToken(other.to_string()),
        };
        let is_person = aauth_tokens::jws::CompactJws::parse(token)
            .ok()
            .and_then(|j| j.header.typ)
            .is_some_and(|t| TokenType::Person.matches_typ(&t));
        let (iss_or_ps, sub, jti, mission, tenant, cnf, exp) = if is_person {
            let p: Verified<PersonClaims> = Unverified::decode(token, &v)
                .and_then(|u| u.finish(own, &v))
                .map_err(map)?;
            let c = p.claims;
            (
                c.iss,
                c.sub,
                c.jti,
                c.mission_s256,
                c.tenant,
                c.cnf.jwk,
                c.exp,
            )
        } else {
            let c = self
                .returned_auth_token(token, &v, now)
                .await
                .map_err(|r| match r {
                    ReturnedToken::Token(e) => map(e),
                    ReturnedToken::Foreign(why) => PsError::InvalidPresentedToken(why.to_owned()),
                    ReturnedToken::Store(e) => PsError::from(e),
                })?;
            (
                c.ps,
                c.sub,
                c.jti,
                c.mission_s256,
                c.tenant,
                c.cnf.jwk,
                c.exp,
            )
        };
        let bound = PublicKey::from_jwk(&cnf)
            .map_err(|e| PsError::InvalidPresentedToken(format!("cnf: {e}")))?;
        if bound.thumbprint().as_str() != rt.agent_jkt {
            return Err(PsError::InvalidPresentedToken(
                "cnf.jwk is not the key the resource token names".to_owned(),
            ));
        }
        let mismatch = |what: &str| {
            Err(PsError::InvalidResourceToken(format!(
                "{what} differs from the presented token's"
            )))
        };
        if jti != rt.presented_jti {
            return mismatch("presented_jti");
        }
        if iss_or_ps != rt.ps {
            return mismatch("ps");
        }
        if sub != rt.sub {
            return mismatch("sub");
        }
        if mission != rt.mission_s256 {
            return mismatch("mission_s256");
        }
        if tenant != rt.tenant {
            return mismatch("tenant");
        }
        Ok(Presented {
            jti,
            is_person,
            exp,
        })
    }

    /// Compatibility ([`Compatibility::missing_presented_token`](crate::Compatibility)):
    /// an auth-token request that carries no `presented_token` (PS-30) is served from
    /// this server's record of the person token the resource token names, held to what
    /// [`PersonServer::presented`] checks of a presented one: issued here (to the agent or
    /// sub-agent `acting`, for the resource that issued `rt`), the same person, mission
    /// and tenant (this server's person tokens carry none), not revoked (PS-32), not
    /// expired. The key binding is the resource's: it verified the person token under the
    /// key its `agent_jkt` names, which is the one asking now (checked in
    /// [`PersonServer::resource_token`]). Three-party only: an Access Server is forwarded
    /// the token itself (PS-52).
    pub(super) async fn presented_on_record(
        &self,
        rt: &ResourceClaims,
        acting: &Acting,
        now: UnixTime,
    ) -> Result<PresentedGrant, PsError> {
        if rt.aud != self.id {
            return Err(PsError::InvalidRequest(
                "presented_token is required (PS-30): it is forwarded to the Access Server"
                    .to_owned(),
            ));
        }
        if self.store.is_revoked(&rt.presented_jti, now).await? {
            return Err(PsError::RevokedPresentedToken);
        }
        let record = self
            .store
            .person_token(&rt.presented_jti, now)
            .await?
            .ok_or_else(|| {
                PsError::InvalidRequest(
                    "presented_token is required (PS-30): presented_jti names no person token on record here"
                        .to_owned(),
                )
            })?;
        if now.as_secs() >= record.exp {
            return Err(PsError::ExpiredPresentedToken);
        }
        if record.agent != acting.agent {
            return Err(PsError::InvalidPresentedToken(
                "the person token presented_jti names was issued to another agent".to_owned(),
            ));
        }
        if record.aud != rt.iss {
            return Err(PsError::InvalidPresentedToken(
                "the person token presented_jti names is for another resource".to_owned(),
            ));
        }
        let differs = [
            ("sub", record.sub != rt.sub),
            ("mission_s256", record.mission_s256 != rt.mission_s256),
            ("tenant", rt.tenant.is_some()),
        ];
        if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
            return Err(PsError::InvalidResourceToken(format!(
                "{what} differs from the presented token's"
            )));
        }
        Ok(PresentedGrant {
            account: record.account,
            exp: record.exp,
            account_disabled: None,
        })
    }

    /// An auth token handed back to this Person Server (a `presented_token`, an
    /// `upstream_token`), verified for `v`: one it issued itself, or, with four-party
    /// federation, one an Access Server issued to it (draft -11 §Auth Token Verification;
    /// upgrade checklist PS-31, PS-61: "you or an AS you presented a person token to").
    /// An Access Server's token must name this server as `ps`, be on record as relayed
    /// here, and come from the Access Server its person token was presented to.
    async fn returned_auth_token(
        &self,
        token: &str,
        v: &Validation<'_>,
        now: UnixTime,
    ) -> Result<AuthClaims, ReturnedToken> {
        let u = Unverified::<AuthClaims>::decode(token, v).map_err(ReturnedToken::Token)?;
        let (iss, dwk) = {
            let c = u.unverified_claims();
            (c.iss.clone(), c.dwk.clone())
        };
        if iss == self.id {
            let c = u
                .finish(self.signer.public_key(), v)
                .map_err(ReturnedToken::Token)?
                .claims;
            return if c.ps == self.id {
                Ok(c)
            } else {
                Err(ReturnedToken::Foreign("it names another Person Server"))
            };
        }
        if self.federation.is_none() {
            return Err(ReturnedToken::Foreign(
                "an auth token from another issuer (this Person Server does not federate)",
            ));
        }
        if dwk != AS_DOCUMENT {
            return Err(ReturnedToken::Foreign(
                "an auth token from another issuer that is not an Access Server",
            ));
        }
        let c = verify::<AuthClaims>(token, v, self.issuer_keys.as_ref())
            .await
            .map_err(ReturnedToken::Token)?
            .claims;
        if c.ps != self.id {
            return Err(ReturnedToken::Foreign(
                "an Access Server's auth token for another Person Server",
            ));
        }
        let relayed = self
            .store
            .auth_token(&c.jti, now)
            .await
            .map_err(ReturnedToken::Store)?
            .ok_or(ReturnedToken::Foreign(
                "an Access Server's auth token this Person Server never relayed",
            ))?;
        let presented_to = self
            .store
            .presentations(&relayed.presented_jti)
            .await
            .map_err(ReturnedToken::Store)?;
        if !presented_to.contains(&c.iss) {
            return Err(ReturnedToken::Foreign(
                "an auth token from an Access Server this Person Server never asked",
            ));
        }
        Ok(c)
    }

    /// What the store knows of a person (`person`) or auth token this server issued.
    pub(super) async fn issued(
        &self,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<IssuedToken, PsError> {
        self.store
            .issued(jti, person, now)
            .await
            .map_err(PsError::from)
    }
}
