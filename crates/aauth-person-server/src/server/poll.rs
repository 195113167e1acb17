//! `GET`/`POST /pending/{id}`: the agent's polls (long-polled with `Prefer: wait`), clarification answers and updated requests, and delivering the token once.

use std::sync::Arc;

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};
use serde::Deserialize;

use crate::PsError;
use crate::mission::Proposal;
use crate::pending::{Pending, PendingRequest, PendingState};
use aauth_metadata::serve::json_response;

use super::PersonServer;

/// A polling error (draft -11 §9): `denied`, `expired`, `invalid_code`.
pub(super) struct PollError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) detail: &'static str,
}

impl PollError {
    pub(super) fn new(status: StatusCode, error: &'static str, detail: &'static str) -> Self {
        Self {
            status,
            error,
            detail,
        }
    }

    pub(super) fn response(self) -> http::Response<Bytes> {
        let mut r = json_response(
            self.status,
            &serde_json::json!({ "error": self.error, "detail": self.detail }),
        );
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

impl PersonServer {
    /// A pending URL: `GET` polls (signed by the key that made the request; anyone else
    /// gets `404`), `DELETE` cancels, `POST` takes an `action`.
    pub(super) async fn poll(
        &self,
        id: &str,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        let r = match self.verify_agent(parts, body, now).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let not_found = || {
            json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "not_found", "detail": "no such pending request" }),
            )
        };
        let mut p = match self.store.pending(id).await {
            Ok(Some(p))
                if p.jkt == r.key.thumbprint().as_str()
                    && p.agent == (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()) =>
            {
                p
            }
            Ok(_) => return not_found(),
            Err(e) => return PsError::from(e).into_response(),
        };
        let gone = || {
            PollError::new(StatusCode::GONE, "invalid_code", "this request has ended").response()
        };
        match parts.method {
            Method::DELETE => {
                p.state = PendingState::Done;
                return match self.save(&mut p).await {
                    Ok(()) => {
                        let mut r = http::Response::new(Bytes::new());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    }
                    Err(e) => e.into_response(),
                };
            }
            Method::POST => {
                #[derive(Deserialize)]
                struct Action {
                    action: Option<String>,
                    clarification_response: Option<String>,
                }
                let action = serde_json::from_slice::<Action>(body).ok();
                let detail = match action.as_ref().and_then(|a| a.action.as_deref()) {
                    None => "the body must name an action",
                    Some("clarification_response") => {
                        let answer = action
                            .and_then(|a| a.clarification_response)
                            .filter(|a| !a.trim().is_empty());
                        // The Access Server's question, passed to this agent: its answer is
                        // forwarded at the next poll.
                        if p.clarification
                            && let PendingRequest::AuthToken {
                                four_party: Some(f),
                                ..
                            } = &mut p.request
                            && let Some((_, slot @ None)) = f.as_question.as_mut()
                        {
                            let Some(answer) = answer else {
                                return PsError::InvalidRequest(
                                    "clarification_response must be a non-empty string".to_owned(),
                                )
                                .into_response();
                            };
                            *slot = Some(answer.chars().take(4000).collect());
                            return match self.save(&mut p).await {
                                Ok(()) => {
                                    self.pending_response(&p, StatusCode::ACCEPTED, "pending", 0)
                                }
                                Err(e) => e.into_response(),
                            };
                        }
                        match (answer, p.chat.last_mut()) {
                            (Some(answer), Some(turn)) if turn.answer.is_none() => {
                                turn.answer = Some(answer.chars().take(4000).collect());
                                return match self.save(&mut p).await {
                                    Ok(()) => self.pending_response(
                                        &p,
                                        StatusCode::ACCEPTED,
                                        "interacting",
                                        0,
                                    ),
                                    Err(e) => e.into_response(),
                                };
                            }
                            (None, _) => "clarification_response must be a non-empty string",
                            _ => "no clarification is waiting for an answer",
                        }
                    }
                    Some("updated_request") => {
                        if !matches!(p.state, PendingState::Pending | PendingState::Interacting) {
                            return gone();
                        }
                        return match self.update_request(&mut p, body, now).await {
                            Ok(()) => match self.save(&mut p).await {
                                Ok(()) => {
                                    let state = if p.state == PendingState::Interacting {
                                        "interacting"
                                    } else {
                                        "pending"
                                    };
                                    self.pending_response(&p, StatusCode::ACCEPTED, state, 0)
                                }
                                Err(e) => e.into_response(),
                            },
                            Err(e) => e.into_response(),
                        };
                    }
                    Some(_) => "unknown action",
                };
                return PsError::InvalidRequest(detail.to_owned()).into_response();
            }
            Method::GET => {}
            _ => return not_found(),
        }
        // Four-party, the Access Server has the person: its answer is ours.
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &p.request
            && f.as_pending.is_some()
            && matches!(p.state, PendingState::Pending | PendingState::Interacting)
        {
            return self.poll_access_server(p, now).await;
        }
        // Long-poll (`Prefer: wait=N`, at most 30 s) while nothing changes.
        let wait = parts
            .headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| aauth_headers::Prefer::parse(v).ok())
            .and_then(|p| p.wait)
            .map_or(0, |w| w.min(30));
        // Bounded: at most `DEFAULT_LONG_POLLS` held at once (past that a poll is answered
        // at once), each re-reading the store less often the longer it waits.
        let held = if wait > 0 {
            Arc::clone(&self.long_polls).try_acquire_owned().ok()
        } else {
            None
        };
        let wait = if held.is_some() { wait } else { 0 };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
        let mut pause = std::time::Duration::from_millis(200);
        while matches!(p.state, PendingState::Pending | PendingState::Interacting)
            && !(p.clarification && p.open_question().is_some())
            && now.as_secs() < p.expires
            && tokio::time::Instant::now() < deadline
        {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
            match self.store.pending(id).await {
                Ok(Some(q)) => p = q,
                Ok(None) => return not_found(),
                Err(e) => return PsError::from(e).into_response(),
            }
        }
        // Every ending is a compare-and-set: of two concurrent polls one ends the request
        // and answers; the other is told it changed (`409`), and its next poll gets `410`.
        let ended = |mut p: Pending| async move {
            p.state = PendingState::Done;
            self.save(&mut p).await
        };
        match p.state.clone() {
            PendingState::Done => gone(),
            PendingState::Denied if matches!(p.request, PendingRequest::Permission { .. }) => {
                match ended(p).await {
                    Ok(()) => json_response(
                        StatusCode::OK,
                        &serde_json::json!({ "permission": "denied", "reason": "The person denied it." }),
                    ),
                    Err(e) => e.into_response(),
                }
            }
            PendingState::Answered { answer } => match ended(p).await {
                Ok(()) => json_response(StatusCode::OK, &serde_json::json!({ "answer": answer })),
                Err(e) => e.into_response(),
            },
            PendingState::Denied => match ended(p).await {
                Ok(()) => PollError::new(
                    StatusCode::FORBIDDEN,
                    "denied",
                    "the person denied the request",
                )
                .response(),
                Err(e) => e.into_response(),
            },
            // Approved, but what the token would be capped by (the agent token, or the
            // upstream token of a chained request: PS-64) has expired: nothing to issue.
            PendingState::Approved { .. } | PendingState::Delivering { .. }
                if now.as_secs() >= p.agent_exp =>
            {
                match ended(p).await {
                    Ok(()) => PollError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "expired",
                        "the token this request depends on has expired",
                    )
                    .response(),
                    Err(e) => e.into_response(),
                }
            }
            // Another poll holds the delivery: wait for it (it ends the request, or gives
            // the approval back if minting failed).
            PendingState::Delivering { since, .. }
                if now.as_secs() < since.saturating_add(crate::pending::DELIVERY_LEASE) =>
            {
                self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1)
            }
            PendingState::Approved { account } | PendingState::Delivering { account, .. } => {
                // One approval, one token: claim the delivery first (compare-and-set), so
                // that of concurrent polls exactly one mints; a claim whose server stopped
                // mid-way is taken over once its lease has run out.
                p.state = PendingState::Delivering {
                    account: account.clone(),
                    since: now.as_secs(),
                };
                match self.store.update_pending(&mut p).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1);
                    }
                    Err(e) => return PsError::from(e).into_response(),
                }
                let key = match PublicKey::from_jwk(&p.key) {
                    Ok(k) => k,
                    Err(e) => return PsError::Server(e.to_string()).into_response(),
                };
                let minted = match &p.request {
                    PendingRequest::PersonToken {
                        resource,
                        mission_s256,
                        chain,
                    } => {
                        let agent = (p.agent.0.clone(), p.agent.1.clone());
                        self.mint_person_in(
                            chain,
                            resource,
                            &account,
                            &key,
                            (&agent.0, &agent.1),
                            p.agent_exp,
                            mission_s256.as_deref(),
                            now,
                        )
                        .await
                    }
                    PendingRequest::Mission { proposal } => {
                        match serde_json::from_slice::<Proposal>(proposal.as_bytes()) {
                            Ok(prop) => {
                                let agent = (p.agent.0.clone(), p.agent.1.clone());
                                self.approve_mission(
                                    &prop,
                                    &account,
                                    &key,
                                    (&agent.0, &agent.1),
                                    p.agent_exp,
                                    now,
                                )
                                .await
                            }
                            Err(e) => Err(PsError::Server(e.to_string())),
                        }
                    }
                    PendingRequest::Permission { .. } => {
                        Ok(serde_json::json!({ "permission": "granted" }))
                    }
                    PendingRequest::Question { .. } => Err(PsError::Server(
                        "a question is answered, not approved".to_owned(),
                    )),
                    PendingRequest::Completion { s256, summary } => {
                        match self.store.mission(s256).await {
                            Ok(Some(m)) => self
                                .complete(m, summary, now)
                                .await
                                .map(|()| serde_json::json!({ "status": "completed" })),
                            Ok(None) => Err(PsError::MissionNotFound),
                            Err(e) => Err(PsError::from(e)),
                        }
                    }
                    other => {
                        self.mint_auth(other, &account, &key, p.agent_exp, now)
                            .await
                    }
                };
                match minted {
                    // Delivered only once the request is recorded as ended: if that cannot
                    // be written, the token is withheld (the claim's lease runs out and a
                    // later poll mints anew), never delivered twice.
                    Ok(json) => match ended(p).await {
                        Ok(()) => json_response(StatusCode::OK, &json),
                        Err(e) => e.into_response(),
                    },
                    // Approved here; the Access Server needs the person too.
                    Err(PsError::AsInteraction {
                        location,
                        requirement,
                        question,
                    }) => {
                        self.wait_for_access_server(p, location, &requirement, question)
                            .await
                    }
                    // Nothing was delivered: the approval stands for the next poll.
                    Err(e) => {
                        p.state = PendingState::Approved { account };
                        match self.save(&mut p).await {
                            Ok(()) => e.into_response(),
                            Err(se) => se.into_response(),
                        }
                    }
                }
            }
            _ if now.as_secs() >= p.expires => match ended(p).await {
                Ok(()) => PollError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "expired",
                    "the person did not answer in time",
                )
                .response(),
                Err(e) => e.into_response(),
            },
            PendingState::Interacting => {
                self.pending_response(&p, StatusCode::ACCEPTED, "interacting", 5)
            }
            _ => self.pending_response(&p, StatusCode::ACCEPTED, "pending", 5),
        }
    }
}
