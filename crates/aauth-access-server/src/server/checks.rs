//! The checks of the tokens in a token request (AS-11…14): the body's required tokens,
//! the resources this server governs, the agent (or sub-agent) token, the resource
//! token, the presented token and any upstream token. Each check names the token it
//! refused in its error (`invalid_resource_token`, `invalid_presented_token`, …); a
//! token whose issuer's keys are unavailable is this server's failure (`500`).

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_tokens::{
    AgentClaims, AuthClaims, Budget, PersonClaims, ResolveError, ResourceClaims, ServerId,
    TokenError, TokenType, Unverified, Validation, Verified, verify,
};
use serde::{Deserialize, Serialize};

use super::AccessServer;
use crate::AsError;

/// The body of a token request (AS-11), as sent.
#[derive(Deserialize)]
struct Body {
    resource_token: Option<String>,
    agent_token: Option<String>,
    presented_token: Option<String>,
    #[serde(default)]
    subagent_token: Option<String>,
    #[serde(default)]
    upstream_token: Option<String>,
    #[serde(default)]
    budget: Option<Budget>,
}

/// A token request with every required token present (AS-11); serialised, its canonical
/// form ([`TokenRequest::canonical`]).
#[derive(Serialize)]
pub(super) struct TokenRequest {
    pub(super) resource_token: String,
    pub(super) agent_token: String,
    pub(super) presented_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) subagent_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) upstream_token: Option<String>,
    /// The Person Server's budget ceiling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) budget: Option<Budget>,
}

impl TokenRequest {
    /// Reads a token request's body: `invalid_request` for a body that is not one, one
    /// without `resource_token`, `agent_token` or `presented_token`, or one whose budget
    /// breaks the rules of a budget ([`Budget::check`]).
    pub(super) fn parse(body: &[u8]) -> Result<Self, AsError> {
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| AsError::InvalidRequest(format!("body: {e}")))?;
        let missing = |what: &str| AsError::InvalidRequest(format!("{what} is required"));
        if let Some(budget) = &b.budget {
            budget
                .check()
                .map_err(|e| AsError::InvalidRequest(e.to_string()))?;
        }
        Ok(Self {
            resource_token: b.resource_token.ok_or_else(|| missing("resource_token"))?,
            agent_token: b.agent_token.ok_or_else(|| missing("agent_token"))?,
            presented_token: b
                .presented_token
                .ok_or_else(|| missing("presented_token"))?,
            subagent_token: b.subagent_token,
            upstream_token: b.upstream_token,
            budget: b.budget,
        })
    }

    /// The request as a waiting request keeps it: its known members only, written again
    /// (what [`TokenRequest::parse`] reads back as this request). Members this server
    /// does not read, and the bytes around the members, are not kept: a body padded to
    /// the server's limit costs its store no more than the tokens it carries, each one
    /// verified by then and at most `MAX_TOKEN_BYTES`. Nothing verifies the stored body
    /// against a signature or a digest (the Person Server's signature covered the body
    /// as sent, and was verified when it came): it is only read again, by `parse` and by
    /// an `updated_request`, which rewrites its tokens.
    pub(super) fn canonical(&self) -> Result<Vec<u8>, AsError> {
        serde_json::to_vec(self).map_err(|e| {
            aauth_metadata::serve::InternalError::produce("waiting request body", e).into()
        })
    }
}

/// The verified agent a request is for (AS-11, AS-13).
pub(super) struct CheckedAgent {
    /// The agent token's claims (the parent's, for a sub-agent).
    pub(super) claims: AgentClaims,
    /// The key the auth token is bound to: the sub-agent's when there is one, else the
    /// agent's.
    pub(super) key: PublicKey,
    /// The earliest `exp` of the agent and sub-agent tokens.
    pub(super) not_after: u64,
}

/// A verified presented token, as the token request needs it.
pub(super) struct Presented {
    /// Its `exp`.
    pub(super) exp: u64,
    /// Whether it is an auth token this server issued (a four-party step-up): its `jti`
    /// is the resource token's `presented_jti`.
    pub(super) own: bool,
}

/// What a presented token says, whichever kind it is.
struct PresentedClaims {
    /// Whether it comes from (or was issued for) the calling Person Server.
    issuer_ok: bool,
    /// Whether this server issued it (an auth token).
    own: bool,
    jti: String,
    sub: String,
    mission_s256: Option<String>,
    tenant: Option<String>,
    key: Option<PublicKey>,
    exp: u64,
}

/// The refusals a token failure gets other than `invalid_*` (and `expired_*`, which each
/// caller maps): a token that could not be checked because its issuer's keys are
/// unavailable is this server's failure (`500`, the Person Server reports
/// `as_unreachable`); a future `iat` is `clock_skew`.
fn distinct_refusal(e: &TokenError) -> Option<AsError> {
    match e {
        TokenError::KeyResolution(ResolveError::Unavailable { reason }) => Some(
            aauth_metadata::serve::InternalError::KeysUnavailable {
                whose: "issuer's",
                reason: reason.clone(),
            }
            .into(),
        ),
        // Draft -11 §Token Verification (upgrade checklist AS): a future `iat` MAY be
        // refused with `clock_skew`; a fresh token from the same issuer would have the
        // same skew, so the caller is told so rather than `invalid_*`.
        TokenError::IssuedInFuture { iat, now } => Some(AsError::ClockSkew {
            iat: *iat,
            now: *now,
        }),
        _ => None,
    }
}

/// The `typ` a compact JWS declares, unverified (it only chooses how to verify).
fn declared_typ(token: &str) -> Option<String> {
    aauth_tokens::jws::CompactJws::parse(token)
        .ok()
        .and_then(|j| j.header.typ)
}

impl AccessServer {
    /// Whether this server serves `resource`: every resource, unless it names the ones it
    /// governs ([`AccessServer::governed`]).
    pub(super) fn serves(&self, resource: &ServerId) -> bool {
        self.governs.as_ref().is_none_or(|g| g.contains(resource))
    }

    /// Only the resources this server governs (when it says which), decided before any
    /// key is fetched for anyone: the resource token's issuer, unverified, only chooses
    /// whether to go on (the token is verified by [`AccessServer::check_resource_token`]).
    pub(super) fn check_governed(
        &self,
        resource_token: &str,
        now: UnixTime,
    ) -> Result<(), AsError> {
        if self.governs.is_none() {
            return Ok(());
        }
        let iss = Unverified::<ResourceClaims>::decode(resource_token, &Validation::new(now))
            .map(|u| u.unverified_claims().iss.clone())
            .map_err(|e| match e {
                TokenError::Expired { .. } => AsError::ExpiredResourceToken,
                other => distinct_refusal(&other)
                    .unwrap_or_else(|| AsError::InvalidResourceToken(other.to_string())),
            })?;
        if self.serves(&iss) {
            Ok(())
        } else {
            Err(AsError::InvalidResourceToken(
                "this Access Server does not serve that resource".to_owned(),
            ))
        }
    }

    /// The agent (AS-11), or the sub-agent it asks for (AS-13): the agent token is never
    /// a sub-agent's, and a sub-agent token names the agent as its `parent_agent`, from
    /// the same provider.
    pub(super) async fn check_agent(
        &self,
        request: &TokenRequest,
        now: UnixTime,
    ) -> Result<CheckedAgent, AsError> {
        let agent: Verified<AgentClaims> = verify(
            &request.agent_token,
            &Validation::new(now),
            self.issuer_keys.as_ref(),
        )
        .await
        .map_err(|e| match e {
            TokenError::Expired { .. } => AsError::ExpiredAgentToken,
            other => distinct_refusal(&other)
                .unwrap_or_else(|| AsError::InvalidAgentToken(other.to_string())),
        })?;
        if agent.claims.parent_agent.is_some() {
            return Err(AsError::InvalidAgentToken(
                "agent_token is the parent's for a sub-agent, never a sub-agent's".to_owned(),
            ));
        }
        let mut not_after = agent.claims.exp;
        let key: PublicKey = match &request.subagent_token {
            Some(t) => {
                let sub: Verified<AgentClaims> =
                    verify(t, &Validation::new(now), self.issuer_keys.as_ref())
                        .await
                        .map_err(|e| match e {
                            TokenError::Expired { .. } => AsError::ExpiredSubagentToken,
                            other => distinct_refusal(&other).unwrap_or_else(|| {
                                AsError::InvalidSubagentToken(other.to_string())
                            }),
                        })?;
                if sub.claims.parent_agent.as_ref() != Some(&agent.claims.sub)
                    || sub.claims.iss != agent.claims.iss
                {
                    return Err(AsError::InvalidSubagentToken(
                        "its parent_agent and iss must be the agent's".to_owned(),
                    ));
                }
                not_after = not_after.min(sub.claims.exp);
                sub.cnf_key
                    .ok_or_else(|| AsError::InvalidSubagentToken("no cnf".to_owned()))?
            }
            None => agent
                .cnf_key
                .clone()
                .ok_or_else(|| AsError::InvalidAgentToken("no cnf".to_owned()))?,
        };
        Ok(CheckedAgent {
            claims: agent.claims,
            key,
            not_after,
        })
    }

    /// AS-12: the resource token, for this Access Server, bound to `key` (the agent's or
    /// sub-agent's), naming the calling Person Server `ps`.
    pub(super) async fn check_resource_token(
        &self,
        token: &str,
        key: &PublicKey,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<ResourceClaims, AsError> {
        let rt = verify::<ResourceClaims>(
            token,
            &Validation::new(now).audience(&self.id),
            self.issuer_keys.as_ref(),
        )
        .await
        .map_err(|e| match e {
            TokenError::Expired { .. } => AsError::ExpiredResourceToken,
            other => distinct_refusal(&other)
                .unwrap_or_else(|| AsError::InvalidResourceToken(other.to_string())),
        })?
        .claims;
        if rt.agent_jkt != key.thumbprint().as_str() {
            return Err(AsError::InvalidResourceToken(
                "agent_jkt is not the agent's (or sub-agent's) key".to_owned(),
            ));
        }
        if rt.ps != *ps {
            return Err(AsError::InvalidResourceToken(
                "ps is not the Person Server asking".to_owned(),
            ));
        }
        Ok(rt)
    }

    /// Verifies an auth token with the key its issuer publishes, or with this server's
    /// own keys for the auth tokens it issued (a four-party step-up presents one): the
    /// key it signs with, or one it signed with before a rotation while it still
    /// publishes it ([`AccessServer::retiring_keys`]), by the token's `kid`.
    async fn verify_auth(
        &self,
        token: &str,
        v: &Validation<'_>,
    ) -> Result<Verified<AuthClaims>, TokenError> {
        let u = Unverified::<AuthClaims>::decode(token, v)?;
        if u.unverified_claims().iss != self.id {
            return verify(token, v, self.issuer_keys.as_ref()).await;
        }
        let kid = u.key_request().kid;
        let retiring = self.retiring.iter().find(|r| {
            kid != self.kid && r.jwk.kid.as_deref() == Some(kid) && v.now.as_secs() < r.until
        });
        match retiring {
            Some(r) => {
                let key = PublicKey::from_jwk(&r.jwk)
                    .map_err(|e| TokenError::KeyResolution(ResolveError::Key(e)))?;
                u.finish(&key, v)
            }
            None => u.finish(self.signer.public_key(), v),
        }
    }

    /// The presented token (AS-12): a person or auth token for the resource, bound to
    /// `agent_jkt`, named by `presented_jti`, from the calling PS, for the same person,
    /// mission and tenant.
    pub(super) async fn presented(
        &self,
        token: &str,
        rt: &ResourceClaims,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<Presented, AsError> {
        let p = self.presented_claims(token, rt, ps, now).await?;
        if !p.issuer_ok {
            return Err(AsError::InvalidPresentedToken(
                "not issued by (or for) the Person Server asking".to_owned(),
            ));
        }
        if p.key
            .is_none_or(|k| k.thumbprint().as_str() != rt.agent_jkt)
        {
            return Err(AsError::InvalidPresentedToken(
                "cnf.jwk is not the key the resource token names".to_owned(),
            ));
        }
        let mismatch = |what: &str| {
            AsError::InvalidResourceToken(format!("{what} differs from the presented token's"))
        };
        if p.jti != rt.presented_jti {
            return Err(mismatch("presented_jti"));
        }
        if p.sub != rt.sub {
            return Err(mismatch("sub"));
        }
        if p.mission_s256 != rt.mission_s256 {
            return Err(mismatch("mission_s256"));
        }
        if p.tenant != rt.tenant {
            return Err(mismatch("tenant"));
        }
        Ok(Presented {
            exp: p.exp,
            own: p.own,
        })
    }

    /// The presented token verified by its `typ`, for the resource (`aud` is the
    /// resource token's `iss`): a person token only from the calling PS (checked before
    /// its keys are fetched), or an auth token.
    async fn presented_claims(
        &self,
        token: &str,
        rt: &ResourceClaims,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<PresentedClaims, AsError> {
        let v = Validation::new(now).audience(&rt.iss);
        let map = |e: TokenError| match e {
            TokenError::Expired { .. } => AsError::ExpiredPresentedToken,
            other => distinct_refusal(&other)
                .unwrap_or_else(|| AsError::InvalidPresentedToken(other.to_string())),
        };
        match declared_typ(token) {
            Some(t) if TokenType::Person.matches_typ(&t) => {
                // Its issuer must be the caller: checked before its keys are fetched.
                let unverified = Unverified::<PersonClaims>::decode(token, &v).map_err(map)?;
                if unverified.unverified_claims().iss != *ps {
                    return Err(AsError::InvalidPresentedToken(
                        "not issued by the Person Server asking".to_owned(),
                    ));
                }
                let p = verify::<PersonClaims>(token, &v, self.issuer_keys.as_ref())
                    .await
                    .map_err(map)?;
                let c = p.claims;
                Ok(PresentedClaims {
                    issuer_ok: c.iss == *ps,
                    own: false,
                    jti: c.jti,
                    sub: c.sub,
                    mission_s256: c.mission_s256,
                    tenant: c.tenant,
                    key: p.cnf_key,
                    exp: c.exp,
                })
            }
            Some(t) if TokenType::Auth.matches_typ(&t) => {
                let a = self.verify_auth(token, &v).await.map_err(map)?;
                let c = a.claims;
                Ok(PresentedClaims {
                    issuer_ok: c.ps == *ps && (c.iss == *ps || c.iss == self.id),
                    own: c.iss == self.id,
                    jti: c.jti,
                    sub: c.sub,
                    mission_s256: c.mission_s256,
                    tenant: c.tenant,
                    key: a.cnf_key,
                    exp: c.exp,
                })
            }
            _ => Err(AsError::InvalidPresentedToken(
                "presented_token must be a person token or an auth token".to_owned(),
            )),
        }
    }

    /// An upstream token (AS-14): a person or auth token for the intermediary (`aud` is
    /// the `iss` of its agent token), from the calling PS, not revoked here (by its
    /// issuer: the Person Server, or this server's revocation cascade for its own auth
    /// tokens). Returns its `exp`.
    pub(super) async fn upstream(
        &self,
        token: &str,
        intermediary: &ServerId,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<u64, AsError> {
        let v = Validation::new(now).audience(intermediary);
        let map = |e: TokenError| match e {
            TokenError::Expired { .. } => AsError::ExpiredUpstreamToken,
            other => distinct_refusal(&other)
                .unwrap_or_else(|| AsError::InvalidUpstreamToken(other.to_string())),
        };
        let (from_ps, exp, iss, jti) = match declared_typ(token) {
            Some(t) if TokenType::Person.matches_typ(&t) => {
                let c = verify::<PersonClaims>(token, &v, self.issuer_keys.as_ref())
                    .await
                    .map_err(map)?
                    .claims;
                (c.iss == *ps, c.exp, c.iss, c.jti)
            }
            Some(t) if TokenType::Auth.matches_typ(&t) => {
                let c = self.verify_auth(token, &v).await.map_err(map)?.claims;
                (c.ps == *ps, c.exp, c.iss, c.jti)
            }
            _ => {
                return Err(AsError::InvalidUpstreamToken(
                    "upstream_token must be a person token or an auth token".to_owned(),
                ));
            }
        };
        if !from_ps {
            return Err(AsError::InvalidUpstreamToken(
                "not from the Person Server asking".to_owned(),
            ));
        }
        if self.store.is_revoked(iss.as_str(), &jti, now).await? {
            return Err(AsError::RevokedUpstreamToken);
        }
        Ok(exp)
    }
}
