//! `POST /revocation`: revocations received from agent providers and resources, checked
//! against who may revoke what, recorded until the longest lifetime such a token can have.
//! An agent token's cascade ([`AgentCascade`]) runs while the request is held; one that
//! outlasts the hold is answered `202`, and the provider polls `GET /revocation/{id}`
//! (PS-111; the pending revocations are `aauth_metadata::cascade::Cascades`, in this
//! process's memory).

use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_signing::{KeyIdentity, VerifyError};
use aauth_tokens::{ServerId, TokenType};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};
use serde::Deserialize;

use crate::PsError;
use crate::audit::{AuditAction, AuditEvent};
use crate::store::PsStore;
use aauth_metadata::cascade::{CascadeError, caller_of};
use aauth_metadata::serve::{InternalError, problem_response};

use super::PersonServer;

/// Who may send this server a revocation: a listed agent provider (for its agent
/// tokens), or any resource (for resource tokens it issued: keyed by its own identifier,
/// so it can revoke nothing else).
pub(super) fn revokers(
    providers: std::collections::BTreeSet<String>,
) -> Arc<dyn aauth_signing::SignerGate> {
    aauth_signing::jwks_uri_signers(move |id, dwk| {
        (dwk == "aauth-agent.json" && providers.contains(id)) || dwk == "aauth-resource.json"
    })
}

/// How long a revocation received for a token of type `ty` is kept: until its `exp`, but
/// never past the longest lifetime such a token can have from `now` (a verifier refuses
/// longer ones), so an `exp` far in the future (or `u64::MAX`) neither overflows nor
/// keeps a record forever.
pub(super) fn revocation_exp(exp: u64, ty: TokenType, now: UnixTime) -> u64 {
    exp.min(now.as_secs().saturating_add(ty.verify_lifetime_cap()))
}

/// The revocation record of resource token `jti` issued by `resource` (keyed by
/// `(iss, jti)`, apart from agent tokens and this server's own tokens).
pub(super) fn resource_revocation_key(resource: &ServerId, jti: &str) -> String {
    format!("resource {} {jti}", resource.as_str())
}

/// The body of a revocation: `{"jti": "…", "exp": N}`.
#[derive(Deserialize)]
struct RevocationBody {
    jti: String,
    exp: u64,
}

impl RevocationBody {
    /// Reads `body`; a `jti` must be 1 to 256 bytes.
    fn read(body: &[u8]) -> Result<Self, PsError> {
        match serde_json::from_slice::<Self>(body) {
            Ok(b) if !b.jti.is_empty() && b.jti.len() <= 256 => Ok(b),
            _ => Err(PsError::InvalidRequest(
                "the body is {\"jti\": \"…\", \"exp\": N}".to_owned(),
            )),
        }
    }
}

/// Who revokes: an agent provider this server takes revocations from, or a resource.
enum Revoker {
    Provider(ServerId),
    Resource(ServerId),
}

impl PersonServer {
    /// `revocation_endpoint`: an agent provider revokes one of its agent tokens; the
    /// token is refused from now on, and every person and auth token issued to that agent
    /// is revoked with it. A resource revokes a resource token it issued. `200` once
    /// done (idempotent; unknown tokens are recorded too); `202` with a pending URL when
    /// an agent token's cascade outlasts the hold (PS-111, [`PersonServer::revocation_hold`]).
    pub(super) async fn revocation(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        if parts.method != Method::POST {
            return PsError::InvalidRequest("POST".to_owned()).into_http_response();
        }
        let (revoker, caller) = match self.revoking_signer(parts, body, now).await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let done = match RevocationBody::read(body) {
            Ok(b) => match revoker {
                Revoker::Resource(resource) => self
                    .revoke_resource_token(&resource, &b, now)
                    .await
                    .map(|()| revoked()),
                Revoker::Provider(provider) => {
                    self.revoke_agent_token(provider, b, &caller, &parts.headers, now)
                        .await
                }
            },
            Err(e) => Err(e),
        };
        done.unwrap_or_else(PsError::into_http_response)
    }

    /// `GET /revocation/{id}`: the agent provider polls its cascade that outlasted its
    /// request (signed under the same identity as the revocation): `202` while it runs,
    /// then the empty `200`. Anyone else, or an id not here, gets the same `404`.
    pub(super) async fn revocation_poll(
        &self,
        id: &str,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        self.revocations
            .poll_signed(&self.revocation_verifier, id, parts, body, now)
            .await
    }

    /// The verified signer of a revocation (a signature covering `body`) and who may
    /// poll its cascade; `403 unsupported_iss` for a signer this server takes no
    /// revocations from, or the signature check's own answer.
    async fn revoking_signer(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<(Revoker, String), http::Response<Bytes>> {
        let verified = match self.revocation_verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(VerifyError::SignerNotAdmitted { .. }) => return Err(unsupported()),
            Err(error) => {
                return Err(error
                    .into_http_response(self.revocation_verifier.policy())
                    .map(Bytes::from));
            }
        };
        match (
            self.revoker(&verified.identity),
            caller_of(&verified.identity),
        ) {
            (Some(revoker), Some(caller)) => Ok((revoker, caller)),
            _ => Err(unsupported()),
        }
    }

    /// Who signed: a provider this server takes revocations from, or any resource.
    fn revoker(&self, identity: &KeyIdentity) -> Option<Revoker> {
        match identity {
            KeyIdentity::JwksUri { id, dwk, .. } if dwk == "aauth-agent.json" => {
                ServerId::parse(id)
                    .ok()
                    .filter(|p| self.revoking_providers.contains(p))
                    .map(Revoker::Provider)
            }
            // A resource revokes a resource token it issued for this Person Server
            // (PS-112): recorded even if never seen here.
            KeyIdentity::JwksUri { id, dwk, .. } if dwk == "aauth-resource.json" => {
                ServerId::parse(id).ok().map(Revoker::Resource)
            }
            _ => None,
        }
    }

    /// Records the revocation of `resource`'s resource token.
    async fn revoke_resource_token(
        &self,
        resource: &ServerId,
        b: &RevocationBody,
        now: UnixTime,
    ) -> Result<(), PsError> {
        self.store
            .revoke(
                &resource_revocation_key(resource, &b.jti),
                revocation_exp(b.exp, TokenType::Resource, now),
                now,
            )
            .await?;
        self.log_event(
            AuditEvent::new(
                now.as_secs(),
                AuditAction::Revoked,
                format!("resource token {} revoked by its resource", b.jti),
            )
            .resource(resource.as_str()),
        )
        .await
    }

    /// Records the revocation of `provider`'s agent token (refused from now on) and of
    /// every person and auth token issued to that agent ([`AgentCascade::revoke_here`],
    /// before the request is held), then sends those on ([`AgentCascade::run`]) for as
    /// long as the request is held: the empty `200` when it is done by then, else `202`
    /// with the pending URL `caller` polls.
    async fn revoke_agent_token(
        &self,
        provider: ServerId,
        b: RevocationBody,
        caller: &str,
        headers: &http::HeaderMap,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        let key = format!("agent {} {}", provider.as_str(), b.jti);
        self.store
            .revoke(&key, revocation_exp(b.exp, TokenType::Agent, now), now)
            .await?;
        let cascade = AgentCascade::revoke_here(
            Arc::clone(&self.store),
            self.notifier.clone(),
            &provider,
            &b.jti,
            now,
        )
        .await?;
        let run = Box::pin(async move {
            cascade
                .run(now)
                .await
                .map_or_else(PsError::into_http_response, |()| revoked())
        });
        self.revocations
            .run(caller, headers, &self.random, run)
            .await
            .map_err(|e| match e {
                CascadeError::Busy { retry_after } => PsError::RateLimited {
                    reason: "too many revocation cascades are running".to_owned(),
                    retry_after,
                },
                other => InternalError::produce("a pending revocation", other).into(),
            })
    }
}

/// The cascade of an agent token's revocation (PS-111): every person and auth token
/// issued to that agent is revoked here at once, in the request
/// ([`AgentCascade::revoke_here`]), then at their resources and the Access Servers they
/// were presented to, through the notifier ([`AgentCascade::run`], owning what it needs
/// so that it can go on after the request is answered). A cascade cut short (the process
/// stopping, a request dropped) leaves no token live here; the provider's resend
/// (revocation is idempotent) sends every notice again, as the agent's tokens are still
/// on record.
struct AgentCascade {
    store: Arc<dyn PsStore>,
    notifier: Option<Arc<dyn crate::RevocationNotifier>>,
    /// The tokens issued to the agent, revoked here.
    tokens: Vec<crate::outbound::IssuedToken>,
}

impl AgentCascade {
    /// Revokes here (at `now`) every person and auth token issued to the agent whose
    /// token `jti` `provider` revoked, and records that in the audit log: the cascade
    /// that sends them on. None when this server never saw that agent token.
    async fn revoke_here(
        store: Arc<dyn PsStore>,
        notifier: Option<Arc<dyn crate::RevocationNotifier>>,
        provider: &ServerId,
        jti: &str,
        now: UnixTime,
    ) -> Result<Self, PsError> {
        let tokens = match store.agent_of_token(provider, jti).await? {
            Some(agent) => {
                let tokens = store.tokens_of_agent(provider, &agent).await?;
                crate::outbound::revoke_here(store.as_ref(), &tokens, now).await?;
                let mut e = AuditEvent::new(
                    now.as_secs(),
                    AuditAction::Revoked,
                    format!(
                        "agent token {jti} revoked by its provider {}; {} token(s) issued to it revoked",
                        provider.as_str(),
                        tokens.len()
                    ),
                )
                .agent(agent.as_str());
                if let Some(account) = store.binding(provider, &agent).await? {
                    e = e.account(account);
                }
                store.record_event(e).await?;
                tokens
            }
            None => Vec::new(),
        };
        Ok(Self {
            store,
            notifier,
            tokens,
        })
    }

    /// Sends the revocations on (signed at the time each is sent; the records at `now`).
    async fn run(self, now: UnixTime) -> Result<(), PsError> {
        crate::outbound::notify_revoked(
            self.store.as_ref(),
            self.notifier.as_deref(),
            &self.tokens,
            now,
        )
        .await?;
        Ok(())
    }
}

/// The answer to a revocation done: an empty `200` (no downstream report to the agent
/// provider, PS-111).
fn revoked() -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::new());
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

/// `403 unsupported_iss`: a signer this server takes no revocations from.
fn unsupported() -> http::Response<Bytes> {
    problem_response(
        StatusCode::FORBIDDEN,
        &serde_json::json!({ "error": "unsupported_iss", "detail": "this Person Server takes revocations from the agent providers it knows" }),
    )
}
