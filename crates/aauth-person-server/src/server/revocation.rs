//! `POST /revocation`: revocations received from agent providers and resources, checked against who may revoke what, recorded until the longest lifetime such a token can have.

use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_signing::{KeyIdentity, VerifyError};
use aauth_tokens::{ServerId, TokenType};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};
use serde::Deserialize;

use crate::PsError;
use aauth_metadata::serve::problem_response;

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
    /// done (idempotent; unknown tokens are recorded too).
    pub(super) async fn revocation(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        if parts.method != Method::POST {
            return PsError::InvalidRequest("POST".to_owned()).into_http_response();
        }
        let verified = match self.revocation_verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(VerifyError::SignerNotAdmitted { .. }) => return unsupported(),
            Err(error) => {
                return error
                    .into_http_response(self.revocation_verifier.policy())
                    .map(Bytes::from);
            }
        };
        let Some(revoker) = self.revoker(&verified.identity) else {
            return unsupported();
        };
        let done = match RevocationBody::read(body) {
            Ok(b) => match revoker {
                Revoker::Resource(resource) => self.revoke_resource_token(&resource, &b, now).await,
                Revoker::Provider(provider) => self.revoke_agent_token(&provider, &b, now).await,
            },
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => {
                let mut r = http::Response::new(Bytes::new());
                r.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                );
                r
            }
            Err(e) => e.into_http_response(),
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
        Ok(self
            .store
            .revoke(
                &resource_revocation_key(resource, &b.jti),
                revocation_exp(b.exp, TokenType::Resource, now),
                now,
            )
            .await?)
    }

    /// Records the revocation of `provider`'s agent token and cascades: every person and
    /// auth token issued to that agent is revoked, here and (through the notifier) at
    /// their resources and the Access Servers they were presented to.
    async fn revoke_agent_token(
        &self,
        provider: &ServerId,
        b: &RevocationBody,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let key = format!("agent {} {}", provider.as_str(), b.jti);
        self.store
            .revoke(&key, revocation_exp(b.exp, TokenType::Agent, now), now)
            .await?;
        let Some(agent) = self.store.agent_of_token(provider, &b.jti).await? else {
            return Ok(());
        };
        for (jti, aud, exp) in self.store.tokens_of_agent(provider, &agent).await? {
            self.store.revoke(&jti, exp, now).await?;
            // The resource's outcome is not reported to the provider (draft -11,
            // "Revocation"); a failed leg is the resource's to catch up on (tokens expire
            // within the hour).
            if let Some(n) = &self.notifier {
                // Only the issuer revokes a token at the resource (draft -11 §Revocation;
                // checklist PS-113): an auth token an Access Server issued is revoked
                // there, by revoking at that Access Server the person token it was
                // issued against (below, for that person token).
                if !self.issued_by_an_access_server(&jti, now).await? {
                    let _outcome = n.notify(&aud, &jti, exp).await;
                }
                // Four-party: where it was presented, the Access Server revokes what it
                // issued against it (PS-113).
                for access in self.store.presentations(&jti).await? {
                    let _outcome = n.notify_access_server(&access, &jti, exp).await;
                }
            }
        }
        Ok(())
    }
}

impl PersonServer {
    /// Whether `jti` is an auth token an Access Server issued, relayed here: one obtained
    /// by presenting a token this server presented to an Access Server.
    async fn issued_by_an_access_server(&self, jti: &str, now: UnixTime) -> Result<bool, PsError> {
        let Some(record) = self.store.auth_token(jti, now).await? else {
            return Ok(false);
        };
        Ok(!self
            .store
            .presentations(&record.presented_jti)
            .await?
            .is_empty())
    }
}

/// `403 unsupported_iss`: a signer this server takes no revocations from.
fn unsupported() -> http::Response<Bytes> {
    problem_response(
        StatusCode::FORBIDDEN,
        &serde_json::json!({ "error": "unsupported_iss", "detail": "this Person Server takes revocations from the agent providers it knows" }),
    )
}
