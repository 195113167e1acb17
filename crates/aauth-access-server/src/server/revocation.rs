//! `POST /revocation` (AS-40…43): revocations received, and the cascade sent on. A
//! Person Server revokes a person token it presented here: nothing more is issued
//! against it, and every auth token issued against it is revoked at its resource
//! ([`AccessServer::revoke_at`], signed as this Access Server). A resource revokes a
//! resource token naming this server: it is refused from then on, and a request waiting
//! on it ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_metadata::ResourceMetadata;
use aauth_metadata::outbound::{Revoker as RevocationSender, ServerSigner};
use aauth_metadata::serve::json_response;
use aauth_signing::KeyIdentity;
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;

use super::waiting::{Step, Waiting};
use super::{AccessServer, Answer, Refusal};
use crate::AsError;

/// The longest `jti` taken in a revocation.
const MAX_JTI_LEN: usize = 256;

/// How long a revocation record need live at most: person and resource tokens live at
/// most an hour.
const MAX_REVOKED_TOKEN_LIFETIME: u64 = 3600;

/// A revocation request's body.
#[derive(Deserialize)]
struct Revoke {
    jti: String,
    exp: u64,
}

/// Who revoked: the verified signer, by the document it signs under.
enum Revoker {
    /// A Person Server this server admits (`dwk: aauth-person.json`), revoking a person
    /// token.
    PersonServer(ServerId),
    /// A resource (`dwk: aauth-resource.json`), revoking a resource token.
    Resource(ServerId),
}

/// The `403 unsupported_iss` of a signer this server takes no revocations from.
fn unsupported() -> Refusal {
    Refusal::answered(json_response(
        StatusCode::FORBIDDEN,
        &serde_json::json!({ "error": "unsupported_iss", "detail": "this Access Server takes revocations from the Person Servers it trusts and from resources" }),
    ))
}

impl AccessServer {
    /// `revocation_endpoint` (AS-40…43): a trusted Person Server revokes a person token it
    /// presented here, and every auth token issued against it is revoked at its resource
    /// (`200` with a `downstream` outcome per resource); a resource revokes a resource token
    /// naming this server. Records are kept by `(issuer, jti)` until `exp` plus skew.
    pub(super) async fn revocation(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Answer {
        let revoker = self.revoker(parts, body, now).await?;
        let r = match serde_json::from_slice::<Revoke>(body) {
            Ok(r) if !r.jti.is_empty() && r.jti.len() <= MAX_JTI_LEN => r,
            _ => {
                return Err(Refusal::Error(AsError::InvalidRequest(
                    "the body is {\"jti\": \"…\", \"exp\": N}".to_owned(),
                )));
            }
        };
        // Person and resource tokens live at most an hour: a record need not outlive
        // that, whatever `exp` says (u64::MAX included).
        let exp = r
            .exp
            .min(now.as_secs().saturating_add(MAX_REVOKED_TOKEN_LIFETIME));
        let issuer = match &revoker {
            Revoker::PersonServer(id) | Revoker::Resource(id) => id,
        };
        self.store.revoke(issuer.as_str(), &r.jti, exp, now).await?;
        match revoker {
            Revoker::Resource(resource) => {
                self.end_waiting_on(&resource, &r.jti, now).await?;
                Ok(json_response(StatusCode::OK, &serde_json::json!({})))
            }
            Revoker::PersonServer(ps) => self.cascade(&ps, &r.jti, now).await,
        }
    }

    /// AS-40: the verified signer of a revocation (a signature covering `body`), if it
    /// is one this server takes revocations from (`403 unsupported_iss` otherwise).
    async fn revoker(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Result<Revoker, Refusal> {
        let verified = match self.verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(aauth_signing::VerifyError::SignerNotAdmitted { .. }) => return Err(unsupported()),
            Err(error) => {
                return Err(Refusal::answered(
                    error
                        .into_http_response(self.verifier.policy())
                        .map(Bytes::from),
                ));
            }
        };
        match &verified.identity {
            KeyIdentity::JwksUri { id, dwk, .. } => match (ServerId::parse(id), dwk.as_str()) {
                (Ok(ps), "aauth-person.json") if self.admits(&ps) => Ok(Revoker::PersonServer(ps)),
                (Ok(rs), "aauth-resource.json") => Ok(Revoker::Resource(rs)),
                _ => Err(unsupported()),
            },
            _ => Err(unsupported()),
        }
    }

    /// AS-42: a pending request started for resource token `jti` of `resource` ends (its
    /// next poll is answered `revoked_resource_token`).
    async fn end_waiting_on(
        &self,
        resource: &ServerId,
        jti: &str,
        now: UnixTime,
    ) -> Result<(), AsError> {
        for record in self.store.waiting_with(resource.as_str(), jti).await? {
            let id = record.id.clone();
            let mut w = Waiting::from_record(record)?;
            w.step = Step::Revoked;
            self.put_waiting(id, w, now).await?;
        }
        Ok(())
    }

    /// AS-41: the cascade of `ps`'s revocation of person token `jti`: every auth token
    /// issued against it, revoked at its resource; `200` with one `downstream` entry per
    /// resource (its `error` when any of its revocations failed).
    async fn cascade(&self, ps: &ServerId, jti: &str, now: UnixTime) -> Answer {
        let cascade = self.store.issued_against(ps, jti, now).await?;
        let mut outcomes: BTreeMap<String, Option<&'static str>> = BTreeMap::new();
        for issued in cascade {
            let outcome = self
                .revoke_at(&issued.aud, &issued.jti, issued.exp, now)
                .await;
            let entry = outcomes
                .entry(issued.aud.as_str().to_owned())
                .or_insert(None);
            if outcome.is_some() {
                *entry = outcome;
            }
        }
        let downstream: Vec<serde_json::Value> = outcomes
            .into_iter()
            .map(|(recipient, error)| match error {
                Some(e) => serde_json::json!({ "recipient": recipient, "error": e }),
                None => serde_json::json!({ "recipient": recipient }),
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "downstream": downstream }),
        ))
    }

    /// Revokes auth token `jti` at `resource`; `None` when done, else the draft's error.
    async fn revoke_at(
        &self,
        resource: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Option<&'static str> {
        let Some(transport) = &self.notifier else {
            return Some("revocation_unsupported");
        };
        // AS-43: signed as this Access Server (`jwks_uri`, `dwk: aauth-access.json`),
        // covering the body.
        let signer = ServerSigner::new(
            self.id.clone(),
            "aauth-access.json",
            Arc::clone(&self.signer),
            &self.kid,
        )
        .random(self.random.clone());
        RevocationSender::new(signer, Arc::clone(transport))
            .revoke::<ResourceMetadata>(resource, jti, exp, now)
            .await
            .err()
            .map(|e| e.code())
    }
}
