//! `GET`/`POST /pending/{id}`: the Person Server that asked polls its waiting request,
//! or answers it (the claims asked for, a clarification, an updated request, AS-16).
//! Only that Person Server sees it (anyone else gets `404`, as for no request at all).
//! Once its step is done the request is decided again ([`AccessServer::decide_again`]):
//! the auth token, a refusal, or a further step at the same URL.

use aauth_keys::time::UnixTime;
use aauth_metadata::serve::json_response;
use aauth_tokens::ServerId;
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;

use super::waiting::{Asked, Given, Step, Waiting, poll_again};
use super::{AccessServer, Answer, Refusal};
use crate::AsError;

/// The longest `clarification_response` taken, in bytes.
const MAX_CLARIFICATION_LEN: usize = 4000;

/// The Person Server's answer to a clarification (AS-16).
#[derive(Deserialize)]
struct Action {
    action: Option<String>,
    clarification_response: Option<String>,
    resource_token: Option<String>,
    presented_token: Option<String>,
}

/// A refusal of the Person Server's answer (or poll) as malformed (`invalid_request`),
/// naming what was expected.
fn invalid(why: &str) -> AsError {
    AsError::InvalidRequest(why.to_owned())
}

impl AccessServer {
    /// The Person Server polls a waiting request (`GET` on its pending URL, signed by the
    /// Person Server that asked; anyone else gets `404`): the same answer until its step
    /// is done, then the request is decided again (and may take a further step at the
    /// same URL).
    pub(super) async fn poll_waiting(&self, id: &str, parts: &Parts, now: UnixTime) -> Answer {
        let ps = self.calling_ps(parts, &[], now).await?;
        self.count_person_server(parts, &ps, true).await?;
        let (w, read) = self.waiting_for(id, &ps, now).await?;
        let mut given = w.given.clone();
        // Ended at its step (closed ones were answered by `waiting_for`): told once.
        if let Some(verdict) = w.step.verdict() {
            return self.end_waiting(id, &w.ps, &w.rt, verdict, now).await;
        }
        match &w.step {
            // Still waiting for the claims or an answer: the same `202` (draft -11: a
            // `202` goes on polling; anything else would end the Person Server's).
            Step::Claims(_) | Step::Clarification { .. } => {
                return Ok(self.step_response(id, &w.step));
            }
            Step::Interaction { done: false, .. } | Step::Approval(None) => {
                let mut r = json_response(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "status": "interacting" }),
                );
                super::waiting::still_pending(&mut r, id, "1");
                return Ok(r);
            }
            Step::Payment { .. } => {
                if !self.store.is_billed(&ps).await? {
                    return Ok(self.step_response(id, &w.step));
                }
            }
            Step::Approval(Some(true)) => given.approved = true,
            Step::Interaction { done: true, .. } => {}
            // Answered by `verdict` above.
            Step::Revoked
            | Step::Approval(Some(false))
            | Step::Refused(_)
            | Step::CodeFailed
            | Step::Answered
            | Step::Expired { .. } => {}
        }
        let again = Again {
            id,
            read: &read,
            updated: false,
        };
        let asked = Asked {
            ps: &ps,
            body: &w.body,
            given,
            first: false,
        };
        self.decide_again(again, asked, now).await
    }

    /// The Person Server answers a waiting request (`POST` to its pending URL, signed by
    /// the Person Server that asked; anyone else gets `404`): the claims asked for, or,
    /// for a clarification, `action` = `clarification_response` | `updated_request`
    /// (AS-16). The request is decided again at once.
    pub(super) async fn answer(
        &self,
        id: &str,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Answer {
        let ps = self.calling_ps(parts, body, now).await?;
        self.count_person_server(parts, &ps, false).await?;
        let (w, read) = self.waiting_for(id, &ps, now).await?;
        if let Some(verdict) = w.step.verdict() {
            return self.end_waiting(id, &w.ps, &w.rt, verdict, now).await;
        }
        let mut given = w.given.clone();
        let (request, updated) = match &w.step {
            Step::Claims(_) => {
                given.claims = Some(claims_given(body)?);
                (w.body.clone(), false)
            }
            Step::Clarification { .. } => {
                let updated = clarified(&w.body, body, &mut given)?;
                given.rounds = given.rounds.saturating_add(1);
                match updated {
                    Some(request) => (request, true),
                    None => (w.body.clone(), false),
                }
            }
            _ => return Err(invalid("this request takes polls, not answers").into()),
        };
        let again = Again {
            id,
            read: &read,
            updated,
        };
        let asked = Asked {
            ps: &ps,
            body: &request,
            given,
            first: false,
        };
        self.decide_again(again, asked, now).await
    }

    /// The waiting request `id`, if `ps` asked for it (`404` otherwise, the same as for
    /// none) and it goes on: one taken to be decided is answered `202` (poll again), one
    /// that ended `410`, and one that expired `408 expired` (draft -11 §Polling Error
    /// Codes), that once (it ends). With the request, its record's `data` as read (what
    /// [`AccessServer::decide_again`] decides from, and checks the taken record against).
    async fn waiting_for(
        &self,
        id: &str,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<(Waiting, String), Refusal> {
        let (w, read) = match self.store.waiting_kept(id, now).await? {
            // Taken by another poll to be decided (or by one that failed, until its lease
            // runs out): still pending, its taker writes what became of it.
            Some(r) if r.ps == *ps && r.taken_at(now) => {
                return Err(Refusal::Answered(Box::new(poll_again(id))));
            }
            Some(r) if r.ps == *ps => {
                let read = r.data.clone();
                (Waiting::from_record(r)?, read)
            }
            _ => return Err(Refusal::NotFound),
        };
        if w.step.closed() {
            return Err(AsError::RequestEnded.into());
        }
        if w.expires <= now.as_secs() {
            self.close_expired(id, &w, now).await?;
            return Err(AsError::RequestExpired.into());
        }
        Ok((w, read))
    }

    /// Decides waiting request `id` again with what its steps gave; ends it on a verdict
    /// ([`AsError::ends_request`]), told in the polling codes ([`AsError::polled`]). The
    /// request is taken from the store first (one step: of two concurrent polls, one
    /// decides it and the other is told to poll again), so one completed step issues one
    /// token; taken, it stays in the store under a lease ([`crate::TAKE_LEASE`]) until it
    /// is written back for a further step, as it was on a failure of this server's (its
    /// store's included), or ended. A failure to write it back leaves it taken, decided
    /// again by the first poll after the lease runs out. The body and what was given
    /// (`asked`) come from the record as read (`again.read`) before the take: one taken
    /// otherwise (another poll moved it on in between) goes back as taken, and the Person
    /// Server polls again, its next poll answered from what is there.
    async fn decide_again(&self, again: Again<'_>, asked: Asked<'_>, now: UnixTime) -> Answer {
        let Again { id, read, updated } = again;
        let taken = match self.store.take_waiting(id, now).await? {
            Some(r) if r.ps == *asked.ps => r,
            Some(r) => {
                // Not this caller's (checked before; a race with nothing): put it back.
                self.put_back(r, now).await?;
                return Err(Refusal::NotFound);
            }
            // It was there a moment ago (`waiting_for`): another poll of it took it, and
            // is deciding it now.
            None => return Ok(poll_again(id)),
        };
        if taken.data != read {
            // Moved on between the read and the take: decided from what was read, it
            // would be decided from a step no longer its own. Back as it was taken.
            self.put_back(taken, now).await?;
            return Ok(poll_again(id));
        }
        match self.issue(&asked, now).await {
            Ok(outcome) => self.respond(outcome, asked, Some(&taken), now).await,
            // The tokens an updated request brought, refused: that answer is bad input,
            // refused with the token endpoint's code (it sent them as a token request
            // does), and the request goes back as it was, still waiting for an answer.
            Err(e) if updated && refuses_updated_tokens(&e) => {
                self.put_back(taken, now).await?;
                Err(Refusal::Error(e))
            }
            // Answered at the pending URL: a token the request depends on, revoked or
            // expired meanwhile, is `403 revoked` or `408 expired` here (draft -11
            // §11.9.4 Polling Error Codes), not the token endpoint's code.
            Err(e) if e.ends_request() => self.end_taken(&taken, e.polled(), now).await,
            // This server's failure (its store's included, `503` for one that may pass):
            // the request goes back as it was, for the Person Server's retry.
            Err(e) => {
                self.put_back(taken, now).await?;
                Err(Refusal::Error(e.polled()))
            }
        }
    }
}

/// Which waiting request is decided again ([`AccessServer::decide_again`]), and as what
/// it was read.
struct Again<'a> {
    /// Its pending id.
    id: &'a str,
    /// Its record's `data` as read before the take.
    read: &'a str,
    /// Whether the body carries the resource and presented tokens of the Person Server's
    /// `updated_request` (AS-16), whose refusal refuses that answer alone.
    updated: bool,
}

/// Whether `e` refuses the resource token or presented token of an `updated_request`
/// (AS-16: the pair is verified as a token request's), rather than the tokens the
/// request came with (the agent's, sub-agent's and upstream tokens it keeps) or the
/// request itself.
fn refuses_updated_tokens(e: &AsError) -> bool {
    matches!(
        e,
        AsError::InvalidResourceToken(_)
            | AsError::ExpiredResourceToken
            | AsError::RevokedResourceToken
            | AsError::InvalidPresentedToken(_)
            | AsError::ExpiredPresentedToken
            | AsError::RevokedPresentedToken
            | AsError::ClockSkew { .. }
    )
}

/// The claims the Person Server sent: a JSON object, without `sub` (the person is `ps`
/// and `sub` of the tokens: a `sub` here is not theirs to set).
fn claims_given(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, AsError> {
    let Ok(serde_json::Value::Object(mut claims)) = serde_json::from_slice(body) else {
        return Err(invalid("the claims are a JSON object"));
    };
    claims.remove("sub");
    Ok(claims)
}

/// The Person Server's answer to a clarification: its answer (kept in `given`; `None`,
/// the request is decided again as it is), or an updated request (AS-16, which clears
/// an earlier answer and an earlier approval), the request to decide again.
fn clarified(original: &[u8], body: &[u8], given: &mut Given) -> Result<Option<Vec<u8>>, AsError> {
    let a = serde_json::from_slice::<Action>(body)
        .map_err(|_| invalid("the body is a JSON object with an action"))?;
    match a.action.as_deref() {
        Some("clarification_response") => {
            let answer = a
                .clarification_response
                .filter(|t| !t.trim().is_empty() && t.len() <= MAX_CLARIFICATION_LEN)
                .ok_or_else(|| {
                    invalid(
                        "clarification_response must be a non-empty string of at most 4000 bytes",
                    )
                })?;
            given.clarification = Some(answer);
            Ok(None)
        }
        Some("updated_request") => {
            let (Some(rt), Some(pt)) = (a.resource_token, a.presented_token) else {
                return Err(invalid(
                    "updated_request carries resource_token and presented_token",
                ));
            };
            let request = updated(original, &rt, &pt)?;
            // An approval was of the request as it was: the updated one (another scope,
            // perhaps wider) is approved afresh if the policy asks for approval.
            given.clarification = None;
            given.approved = false;
            Ok(Some(request))
        }
        Some(_) => Err(invalid("unknown action")),
        None => Err(invalid("the body must name an action")),
    }
}

/// AS-16: the request with an updated resource token and presented token, whose
/// resource token matches the original's `iss`, `ps`, `sub`, `agent_jkt`,
/// `mission_s256` and `tenant` (the pair is then verified as any request's).
fn updated(original: &[u8], rt: &str, pt: &str) -> Result<Vec<u8>, AsError> {
    let claims = |t: &str| {
        aauth_tokens::jws::CompactJws::parse(t)
            .ok()
            .and_then(|j| serde_json::from_slice::<serde_json::Value>(&j.payload).ok())
    };
    let mut body: serde_json::Value = serde_json::from_slice(original)
        .map_err(|e| aauth_metadata::serve::InternalError::unreadable("waiting request", e))?;
    let old = body["resource_token"]
        .as_str()
        .and_then(claims)
        .ok_or_else(|| {
            aauth_metadata::serve::InternalError::unreadable(
                "waiting request's resource token",
                "not a JWS",
            )
        })?;
    let new = claims(rt).ok_or_else(|| {
        AsError::InvalidResourceToken("the updated resource token is not a JWS".to_owned())
    })?;
    for claim in ["iss", "ps", "sub", "agent_jkt", "mission_s256", "tenant"] {
        if old.get(claim) != new.get(claim) {
            return Err(AsError::InvalidResourceToken(format!(
                "the updated resource token's {claim} differs from the original's"
            )));
        }
    }
    body["resource_token"] = rt.into();
    body["presented_token"] = pt.into();
    Ok(body.to_string().into_bytes())
}
