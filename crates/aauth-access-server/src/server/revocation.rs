//! `POST /revocation` (AS-40…43): revocations received, and the cascade sent on. A
//! Person Server revokes a person token it presented here: nothing more is issued
//! against it, and every auth token issued against it is revoked at its resource
//! ([`PersonTokenCascade`], signed as this Access Server); a cascade that outlasts the
//! request's hold is answered `202`, and the Person Server polls `GET /revocation/{id}`
//! for the `downstream` report (AS-41; the pending revocations are
//! `aauth_metadata::cascade::Cascades`, in this process's memory). A resource revokes a
//! resource token naming this server: it is refused from then on, and a request waiting
//! on it ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_metadata::ResourceMetadata;
use aauth_metadata::cascade::{CascadeError, caller_of};
use aauth_metadata::outbound::{RevocationError, Revoker as RevocationSender, ServerSigner};
use aauth_metadata::serve::{InternalError, json_response};
use aauth_signing::KeyIdentity;
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;

use super::{AccessServer, Answer, Refusal};
use crate::AsError;
use crate::store::AsStore;

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
        &serde_json::json!({ "error": "unsupported_iss", "detail": "this Access Server takes revocations from the Person Servers it trusts and from the resources it serves" }),
    ))
}

impl AccessServer {
    /// `revocation_endpoint` (AS-40…43): a trusted Person Server revokes a person token it
    /// presented here, and every auth token issued against it is revoked at its resource
    /// (`200` with a `downstream` outcome per resource, or `202` with a pending URL when
    /// the cascade outlasts the hold: [`AccessServer::revocation_hold`]); a resource
    /// revokes a resource token naming this server. Records are kept by `(issuer, jti)`
    /// until `exp` plus skew.
    pub(super) async fn revocation(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Answer {
        let (revoker, caller) = self.revoker(parts, body, now).await?;
        if let Revoker::PersonServer(ps) = &revoker {
            self.count_person_server(parts, ps, false).await?;
        }
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
            Revoker::PersonServer(ps) => {
                self.cascade(ps, r.jti, &caller, &parts.headers, now).await
            }
        }
    }

    /// `GET /revocation/{id}`: the Person Server polls its cascade that outlasted its
    /// request (signed under the same identity as the revocation): `202` while it runs,
    /// then the `200` with its `downstream` report. Anyone else, or an id not here, gets
    /// the same `404`.
    pub(super) async fn revocation_poll(
        &self,
        id: &str,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        self.revocations
            .poll_signed(&self.verifier, id, parts, body, now)
            .await
    }

    /// AS-40: the verified signer of a revocation (a signature covering `body`), if it
    /// is one this server takes revocations from (`403 unsupported_iss` otherwise), and
    /// who may poll its cascade.
    async fn revoker(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<(Revoker, String), Refusal> {
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
        let caller = caller_of(&verified.identity).ok_or_else(unsupported)?;
        let revoker = match &verified.identity {
            KeyIdentity::JwksUri { id, dwk, .. } => match (ServerId::parse(id), dwk.as_str()) {
                (Ok(ps), "aauth-person.json") if self.admits(&ps) => Revoker::PersonServer(ps),
                // Only the resources this server serves, when it says which
                // ([`AccessServer::governed`]): no one else's records are kept here.
                (Ok(rs), "aauth-resource.json") if self.serves(&rs) => Revoker::Resource(rs),
                _ => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        };
        Ok((revoker, caller))
    }

    /// AS-42: a pending request started for resource token `jti` of `resource` ends (its
    /// next poll is answered `revoked_resource_token`). Each is marked over the record as
    /// read ([`AccessServer::end_revoked`]); one taken to be decided meanwhile is marked
    /// by its taker when it puts it back ([`AccessServer::put_back`]).
    async fn end_waiting_on(
        &self,
        resource: &ServerId,
        jti: &str,
        now: UnixTime,
    ) -> Result<(), AsError> {
        for record in self.store.waiting_with(resource.as_str(), jti).await? {
            self.end_revoked(record, now).await?;
        }
        Ok(())
    }

    /// AS-41: runs the cascade of `ps`'s revocation of person token `jti`
    /// ([`PersonTokenCascade`]) for as long as the request is held: its `200` with the
    /// `downstream` report when it is done by then, else `202` with the pending URL
    /// `caller` polls.
    async fn cascade(
        &self,
        ps: ServerId,
        jti: String,
        caller: &str,
        headers: &http::HeaderMap,
        now: UnixTime,
    ) -> Answer {
        let cascade = PersonTokenCascade {
            store: Arc::clone(&self.store),
            issuer: self.id.clone(),
            sender: self.resource_revoker(),
            ps,
            jti,
        };
        let run = Box::pin(async move {
            cascade
                .run(now)
                .await
                .unwrap_or_else(Refusal::into_http_response)
        });
        self.revocations
            .run(caller, headers, &self.random, run)
            .await
            .map_err(|e| match e {
                CascadeError::Busy { retry_after } => Refusal::Error(AsError::RateLimited {
                    reason: "too many revocation cascades are running".to_owned(),
                    retry_after,
                }),
                other => InternalError::produce("a pending revocation", other).into(),
            })
    }

    /// Revocations sent to resources, signed as this Access Server (AS-43: `jwks_uri`,
    /// `dwk: aauth-access.json`, covering the body); `None` without a transport.
    fn resource_revoker(&self) -> Option<RevocationSender> {
        let transport = self.notifier.as_ref()?;
        let signer = ServerSigner::new(
            self.id.clone(),
            "aauth-access.json",
            Arc::clone(&self.signer),
            &self.kid,
        )
        .random(self.random.clone());
        Some(RevocationSender::new(signer, Arc::clone(transport)))
    }
}

/// The cascade of a person token's revocation (AS-41), owning what it needs so that it
/// can go on after the request is answered: every auth token issued against it (those
/// stepped up from its auth tokens included: they are recorded against it), revoked
/// here and at its resource.
struct PersonTokenCascade {
    store: Arc<dyn AsStore>,
    /// This Access Server: the issuer its auth tokens are recorded revoked under.
    issuer: ServerId,
    /// `None`: no transport to resources (every outcome `revocation_unsupported`).
    sender: Option<RevocationSender>,
    ps: ServerId,
    jti: String,
}

impl PersonTokenCascade {
    /// Runs the cascade of a revocation received at `now`: `200` with one `downstream`
    /// entry per resource (its `error` when any of its revocations failed).
    async fn run(self, now: UnixTime) -> Answer {
        let cascade = self.store.issued_against(&self.ps, &self.jti, now).await?;
        // Revoked here first: none of them is taken for a step-up from now on.
        for issued in &cascade {
            self.store
                .revoke(self.issuer.as_str(), &issued.jti, issued.exp, now)
                .await?;
        }
        // Each revocation is signed at the time it is sent: `now` plus the time the
        // cascade has taken so far.
        let started = std::time::Instant::now();
        let mut outcomes: BTreeMap<String, Option<&'static str>> = BTreeMap::new();
        for issued in cascade {
            let at = now.plus(started.elapsed().as_secs());
            let outcome = self
                .revoke_at(&issued.aud, &issued.jti, issued.exp, at)
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

    /// Revokes auth token `jti` at `resource`; `None` when done, else its `downstream`
    /// error ([`downstream_error`]).
    async fn revoke_at(
        &self,
        resource: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Option<&'static str> {
        let Some(sender) = &self.sender else {
            return Some("revocation_unsupported");
        };
        sender
            .revoke::<ResourceMetadata>(resource, jti, exp, now)
            .await
            .err()
            .map(|e| downstream_error(&e))
    }
}

/// The `downstream` error of a revocation its resource did not take (draft -11
/// §11.12.3 Revocation Response, AS-41: only `revocation_unsupported` or
/// `revocation_unavailable`). The [`RevocationError`] already says which: unsupported
/// when the resource's metadata names no `revocation_endpoint` or the endpoint answered
/// `403 unsupported_iss`; every other failure (metadata unreadable, a `401` refusing
/// this server's signature, another `403`, a `429 rate_limited`, a `5xx`, no answer) is
/// one a later attempt may get past, `revocation_unavailable` (the Person Server
/// resends, which re-attempts it).
fn downstream_error(e: &RevocationError) -> &'static str {
    match e {
        RevocationError::Unsupported(_) => "revocation_unsupported",
        _ => "revocation_unavailable",
    }
}
