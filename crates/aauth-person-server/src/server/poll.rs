//! `GET`/`POST /pending/{id}`: the agent's polls (long-polled with `Prefer: wait`), clarification answers and updated requests, and delivering the token once.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use bytes::Bytes;
use http::{Method, StatusCode, request::Parts};
use serde::Deserialize;

use crate::PsError;
use crate::changes::PendingChanges;
use crate::mission::{Mission, Proposal};
use crate::pending::{Pending, PendingRequest, PendingState};
use aauth_metadata::serve::{json_response, problem_response};

use super::PersonServer;
use super::tokens::PersonTokenGrant;

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
        problem_response(
            self.status,
            &serde_json::json!({ "error": self.error, "detail": self.detail }),
        )
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
        // A poll subscribes before the read, so that no change after it is missed.
        let changes = (parts.method == Method::GET).then(|| self.store.pending_changes(id));
        let p = match self.store.pending(id).await {
            Ok(Some(p))
                if p.jkt == r.key.thumbprint().as_str()
                    && p.agent == (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()) =>
            {
                p
            }
            Ok(_) => return not_found(),
            Err(e) => return PsError::from(e).into_http_response(),
        };
        let answered = match parts.method {
            Method::DELETE => self.cancel(p).await,
            Method::POST => self.pending_action(p, body, now).await,
            Method::GET => {
                // Four-party, the Access Server has the person: its answer is ours.
                if let PendingRequest::AuthToken {
                    four_party: Some(f),
                    ..
                } = &p.request
                    && f.access_server_pending.is_some()
                    && p.is_open()
                {
                    return self.poll_access_server(p, now).await;
                }
                match self.long_poll(p, parts, now, changes).await {
                    Ok(Some((p, now))) => self.poll_answer(p, now).await,
                    Ok(None) => Ok(not_found()),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(not_found()),
        };
        answered.unwrap_or_else(PsError::into_http_response)
    }

    /// `DELETE`: the agent withdraws its request.
    async fn cancel(&self, mut p: Pending) -> Result<http::Response<Bytes>, PsError> {
        p.state = PendingState::Done;
        self.save(&mut p).await?;
        super::defer::count_pending("cancelled");
        let mut r = http::Response::new(Bytes::new());
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }

    /// `POST` with an `action`: a clarification response, or an updated request.
    async fn pending_action(
        &self,
        mut p: Pending,
        body: &[u8],
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        #[derive(Deserialize)]
        struct Action {
            action: Option<String>,
            clarification_response: Option<String>,
        }
        // A body that is not an action object names no action (refused below).
        let action = serde_json::from_slice::<Action>(body).ok();
        // Compatibility: an answer posted without `action` (-11 §7.5.2.1 requires it).
        let implied = self.compatibility.accepts_clarification_without_action()
            && action
                .as_ref()
                .is_some_and(|a| a.action.is_none() && a.clarification_response.is_some());
        let named = if implied {
            Some("clarification_response")
        } else {
            action.as_ref().and_then(|a| a.action.as_deref())
        };
        let detail = match named {
            None => "the body must name an action",
            Some("clarification_response") => {
                if let Some(ended) = ended_for_the_agent(&p, now) {
                    return Ok(ended);
                }
                let answer = action
                    .and_then(|a| a.clarification_response)
                    .filter(|a| !a.trim().is_empty());
                return self.clarification_response(p, answer).await;
            }
            Some("updated_request") => {
                if let Some(ended) = ended_for_the_agent(&p, now) {
                    return Ok(ended);
                }
                self.update_request(&mut p, body, now).await?;
                self.save(&mut p).await?;
                let state = if p.state == PendingState::Interacting {
                    "interacting"
                } else {
                    "pending"
                };
                return Ok(self.pending_response(&p, StatusCode::ACCEPTED, state, 0));
            }
            Some(_) => "unknown action",
        };
        Err(PsError::InvalidRequest(detail.to_owned()))
    }

    /// The agent's answer to a question: the Access Server's (four-party, forwarded at
    /// the next poll), or the person's.
    async fn clarification_response(
        &self,
        mut p: Pending,
        answer: Option<String>,
    ) -> Result<http::Response<Bytes>, PsError> {
        if p.clarification
            && let PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } = &mut p.request
            && let Some((_, slot @ None)) = f.access_server_question.as_mut()
        {
            let Some(answer) = answer else {
                return Err(PsError::InvalidRequest(
                    "clarification_response must be a non-empty string".to_owned(),
                ));
            };
            *slot = Some(answer.chars().take(4000).collect());
            self.save(&mut p).await?;
            return Ok(self.pending_response(&p, StatusCode::ACCEPTED, "pending", 0));
        }
        let detail = match (answer, p.chat.last_mut()) {
            (Some(answer), Some(turn)) if turn.answer.is_none() => {
                turn.answer = Some(answer.chars().take(4000).collect());
                self.save(&mut p).await?;
                return Ok(self.pending_response(&p, StatusCode::ACCEPTED, "interacting", 0));
            }
            (None, _) => "clarification_response must be a non-empty string",
            _ => "no clarification is waiting for an answer",
        };
        Err(PsError::InvalidRequest(detail.to_owned()))
    }

    /// Long-polls (`Prefer: wait=N`, at most 30 s) while the request is waiting for the
    /// person: woken by the store's notification of a change, it re-reads the request and
    /// judges its expiry at the time it woke. Answers the request as it stands and that
    /// time; `None` when the request has gone.
    async fn long_poll(
        &self,
        mut p: Pending,
        parts: &Parts,
        started: UnixTime,
        changes: Option<PendingChanges>,
    ) -> Result<Option<(Pending, UnixTime)>, PsError> {
        let mut changes = changes.unwrap_or_else(PendingChanges::polling);
        let wait = parts
            .headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| aauth_headers::Prefer::parse(v).ok())
            .and_then(|p| p.wait)
            .map_or(0, |w| w.min(30));
        // Bounded: at most `DEFAULT_LONG_POLLS` held at once (past that a poll is answered
        // at once).
        let mut stopping = self.stopping.subscribe();
        // Nothing is held once the service is shutting down.
        let held = if wait > 0 && !*stopping.borrow_and_update() {
            Arc::clone(&self.long_polls).try_acquire_owned().ok()
        } else {
            None
        };
        let wait = if held.is_some() { wait } else { 0 };
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs(wait);
        // The time now: the request's time plus what the wait has taken so far.
        let now = || UnixTime(started.as_secs().saturating_add(start.elapsed().as_secs()));
        while p.is_open()
            && !(p.clarification && p.open_question().is_some())
            && now().as_secs() < p.expires
            && tokio::time::Instant::now() < deadline
        {
            // Wakes on a change, or at the deadline or the request's expiry, whichever
            // comes first.
            let expiry = start + Duration::from_secs(p.expires.saturating_sub(started.as_secs()));
            let stop = tokio::select! {
                _ = tokio::time::timeout_at(deadline.min(expiry), changes.changed()) => false,
                _ = stopping.changed() => true,
            };
            match self.store.pending(&p.id).await? {
                Some(q) => p = q,
                None => return Ok(None),
            }
            if stop {
                break;
            }
        }
        Ok(Some((p, now())))
    }

    /// Ends the request (a compare-and-set: of two concurrent polls one ends the request
    /// and answers; the other is told it changed, `409`, and its next poll gets `410`).
    /// `outcome` names how it ended, for `aauth_pending_requests_total`.
    async fn end(&self, p: Pending, outcome: &'static str) -> Result<(), PsError> {
        self.end_as(p, PendingState::Done, outcome).await
    }

    /// [`PersonServer::end`] in `state`: [`PendingState::Done`], or for a request the person
    /// did not answer in time, [`PendingState::Expired`] (its code then says so).
    async fn end_as(
        &self,
        mut p: Pending,
        state: PendingState,
        outcome: &'static str,
    ) -> Result<(), PsError> {
        p.state = state;
        self.save(&mut p).await?;
        super::defer::count_pending(outcome);
        Ok(())
    }

    /// The answer to a poll, from the request's state at `now`.
    async fn poll_answer(
        &self,
        p: Pending,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        let ended = |status, error, detail| PollError::new(status, error, detail).response();
        if !matches!(p.state, PendingState::Done | PendingState::Expired)
            && let Some(which) = self.revoked_dependency(&p, now).await?
        {
            self.end(p, "revoked").await?;
            return Ok(ended(StatusCode::FORBIDDEN, "revoked", which));
        }
        Ok(match p.state.clone() {
            PendingState::Done | PendingState::Expired => gone(),
            PendingState::Denied if matches!(p.request, PendingRequest::Permission { .. }) => {
                self.end(p, "denied").await?;
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "permission": "denied", "reason": "The person denied it." }),
                )
            }
            PendingState::Answered { answer } => {
                // An answer, as an approval, is not delivered in a disabled account's name.
                if let Some(person) = p.person() {
                    self.account_active(person).await?;
                }
                self.end(p, "answered").await?;
                json_response(StatusCode::OK, &serde_json::json!({ "answer": answer }))
            }
            PendingState::Denied => {
                self.end(p, "denied").await?;
                ended(
                    StatusCode::FORBIDDEN,
                    "denied",
                    "the person denied the request",
                )
            }
            // The resource's own interaction came back with an error (draft -11
            // §Interaction Callback Errors, mapped to polling errors).
            PendingState::Ended { error } => {
                self.end(p, "failed").await?;
                let detail = "the resource's own interaction did not complete";
                match error.as_str() {
                    "abandoned" => ended(StatusCode::FORBIDDEN, "abandoned", detail),
                    "expired" => ended(StatusCode::REQUEST_TIMEOUT, "expired", detail),
                    _ => ended(StatusCode::INTERNAL_SERVER_ERROR, "server_error", detail),
                }
            }
            // PS-32: the presented token expired while the person decided, or since they
            // approved. Nothing is issued with it, nor is it sent to an Access Server: the
            // request ends, refused as the token endpoint refuses an expired one. (Before
            // the agent token's expiry, which caps it and often ends with it, so that the
            // answer names the token; never into another poll's delivery.)
            _ if p.presented_expired(now.as_secs())
                && !matches!(p.state, PendingState::Delivering { since, .. }
                    if now.as_secs() < since.saturating_add(crate::pending::DELIVERY_LEASE)) =>
            {
                self.end_as(p, PendingState::Expired, "expired").await?;
                return Err(PsError::ExpiredPresentedToken);
            }
            // Approved, but what the token would be capped by (the agent token, or the
            // upstream token of a chained request: PS-64) has expired: nothing to issue.
            PendingState::Approved { .. } | PendingState::Delivering { .. }
                if now.as_secs() >= p.agent_exp =>
            {
                self.end(p, "expired").await?;
                ended(
                    StatusCode::REQUEST_TIMEOUT,
                    "expired",
                    "the token this request depends on has expired",
                )
            }
            // A question approved rather than answered (by a server that still allowed
            // it): nothing to deliver, so it ends once instead of failing at every poll.
            PendingState::Approved { .. } | PendingState::Delivering { .. }
                if matches!(p.request, PendingRequest::Question { .. }) =>
            {
                self.end(p, "failed").await?;
                ended(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "a question is answered, not approved",
                )
            }
            // Another poll holds the delivery: wait for it (it ends the request, or gives
            // the approval back if minting failed).
            PendingState::Delivering { since, .. }
                if now.as_secs() < since.saturating_add(crate::pending::DELIVERY_LEASE) =>
            {
                self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1)
            }
            PendingState::Approved { account } | PendingState::Delivering { account, .. } => {
                return self.deliver(p, account, now).await;
            }
            _ if now.as_secs() >= p.expires => {
                self.end_as(p, PendingState::Expired, "expired").await?;
                not_answered_in_time()
            }
            PendingState::Interacting => {
                self.pending_response(&p, StatusCode::ACCEPTED, "interacting", 5)
            }
            _ => self.pending_response(&p, StatusCode::ACCEPTED, "pending", 5),
        })
    }

    /// Which token the request depends on was revoked, if one was (draft -11 §Polling
    /// Errors `revoked`; checklist PS-112): the upstream token of a chained request, the
    /// resource token (revoked by its resource) or the presented token.
    pub(super) async fn revoked_dependency(
        &self,
        p: &Pending,
        now: UnixTime,
    ) -> Result<Option<&'static str>, PsError> {
        let upstream = match &p.request {
            PendingRequest::PersonToken { upstream_jti, .. }
            | PendingRequest::AuthToken { upstream_jti, .. } => upstream_jti.as_deref(),
            _ => None,
        };
        if let Some(jti) = upstream
            && self.store.is_revoked(jti, now).await?
        {
            return Ok(Some("the upstream token was revoked"));
        }
        let PendingRequest::AuthToken {
            resource,
            resource_token_jti,
            presented_jti,
            ..
        } = &p.request
        else {
            return Ok(None);
        };
        if let Some(rt) = resource_token_jti
            && self
                .store
                .is_revoked(
                    &super::revocation::resource_revocation_key(resource, rt),
                    now,
                )
                .await?
        {
            return Ok(Some("the resource revoked the resource token"));
        }
        if self.store.is_revoked(presented_jti, now).await? {
            return Ok(Some("the presented token was revoked"));
        }
        Ok(None)
    }

    /// One approval, one token: claims the delivery first (compare-and-set), so that of
    /// concurrent polls exactly one mints; a claim whose server stopped mid-way is taken
    /// over once its lease has run out.
    async fn deliver(
        &self,
        mut p: Pending,
        account: String,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        // The person's account was disabled since they approved: nothing is delivered in
        // its name, of any kind (a token, a mission, a permission, a completion), as no
        // token is minted for it; the approval stands, refused at each poll.
        self.account_active(&account).await?;
        // The agent was unlinked from the person since they approved: nothing is
        // delivered in their name (the unlinking ends its requests; this catches one
        // approved at the same moment).
        if !self.still_linked(&p, &account).await? {
            self.end(p, "denied").await?;
            return Ok(PollError::new(
                StatusCode::FORBIDDEN,
                "denied",
                "the agent is no longer linked to the person who approved",
            )
            .response());
        }
        p.state = PendingState::Delivering {
            account: account.clone(),
            since: now.as_secs(),
        };
        if !self.store.update_pending(&mut p).await? {
            return Ok(self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1));
        }
        match self.approved(&p, &account, now).await {
            // Delivered only once the request is recorded as ended: if that cannot be
            // written, the token is withheld (the claim's lease runs out and a later poll
            // mints anew), never delivered twice.
            Ok(json) => {
                self.end(p, "delivered").await?;
                Ok(json_response(StatusCode::OK, &json))
            }
            // Its mission ended while the person was deciding, or no longer allows what
            // was approved (its grant budget spent by another request meanwhile, its time
            // up): nothing is issued under it, now or at a later poll, so the request
            // ends with the verdict rather than standing approved until it expires
            // (draft -11: mission_terminated, and the mission's violations).
            // Or it names another person's mission: never delivered, whoever polls.
            // Or the resource's Access Server refused for good (`403 denied`, `revoked`,
            // a `400` token-endpoint error, a polling error of its own: PS-54 relays its
            // status and `error`): asked again it would answer the same, and the agent,
            // told only at this poll, would never learn it while each of its polls asked
            // again. Only what may pass (its `5xx`, a `429`, no answer, a `clock_skew`)
            // leaves the approval standing for the next poll.
            Err(
                e @ (PsError::MissionTerminated(_)
                | PsError::Violation(_)
                | PsError::InvalidRequest(_)
                | PsError::AccessServerRefused { .. }),
            ) if !passing_refusal(&e) => {
                self.end(p, "failed").await?;
                Err(e)
            }
            // Approved here; the Access Server needs the person too.
            Err(PsError::AccessServerInteraction {
                location,
                requirement,
                question,
            }) => Ok(self
                .wait_for_access_server(p, location, &requirement, question)
                .await),
            // Nothing was delivered: the approval stands for the next poll.
            Err(e) => {
                p.state = PendingState::Approved { account };
                self.save(&mut p).await?;
                Err(e)
            }
        }
    }

    /// Whether an approval of `p` by `account` still stands: the agent is still bound to
    /// them, for every request made in its binding's name (all but a chained one, whose
    /// person is its upstream token's).
    pub(super) async fn still_linked(&self, p: &Pending, account: &str) -> Result<bool, PsError> {
        if p.chained() {
            return Ok(true);
        }
        let bound = self.store.binding(&p.agent.0, &p.agent.1).await?;
        Ok(bound.as_deref() == Some(account))
    }

    /// Whether mission `m`'s agent is still linked to the mission's person: an agent
    /// unlinked from them no longer acts in their missions.
    pub(super) async fn linked_to_mission(&self, m: &Mission) -> Result<bool, PsError> {
        let bound = self.store.binding(&m.agent.0, &m.agent.1).await?;
        Ok(bound.as_deref() == Some(m.account.as_str()))
    }

    /// What the person approved, made: the token, the mission, the permission, the
    /// completion.
    async fn approved(
        &self,
        p: &Pending,
        account: &str,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let key = PublicKey::from_jwk(&p.key)
            .map_err(|e| aauth_metadata::serve::InternalError::unreadable("stored agent key", e))?;
        let agent = (&p.agent.0, p.issued_to());
        match &p.request {
            PendingRequest::PersonToken {
                resource,
                mission_s256,
                chain,
                ..
            } => {
                // The mission may have ended (terminated, expired) since the request; and
                // it is its person's: never delivered to another who approved (the agent
                // unlinked from the mission's person when it asked).
                let mission = self.mission_active(mission_s256.as_deref(), now).await?;
                if mission.is_some_and(|m| m.account != account) {
                    return Err(PsError::InvalidRequest(
                        "mission_s256 names no mission of this person".to_owned(),
                    ));
                }
                self.mint_person_for(
                    &p.agent.1,
                    PersonTokenGrant {
                        chain,
                        resource,
                        account,
                        key: &key,
                        agent,
                        cap: p.agent_exp,
                        mission: mission_s256.as_deref(),
                    },
                    now,
                )
                .await
            }
            PendingRequest::Mission { proposal } => {
                let prop =
                    serde_json::from_slice::<Proposal>(proposal.as_bytes()).map_err(|e| {
                        aauth_metadata::serve::InternalError::unreadable(
                            "stored mission proposal",
                            e,
                        )
                    })?;
                self.approve_mission(&prop, account, &key, agent, p.agent_exp, now)
                    .await
            }
            PendingRequest::Permission { .. } => Ok(serde_json::json!({ "permission": "granted" })),
            PendingRequest::Question { .. } => {
                Err(aauth_metadata::serve::InternalError::Invariant(
                    "a question is answered, not approved",
                )
                .into())
            }
            PendingRequest::Completion { s256, summary } => {
                let m = self
                    .store
                    .mission(s256)
                    .await?
                    .ok_or(PsError::MissionNotFound)?;
                self.complete(m, summary, now).await?;
                Ok(serde_json::json!({ "status": "completed" }))
            }
            other => {
                self.mint_auth(
                    other,
                    super::tokens::Holder::of(account),
                    p.issued_to(),
                    &key,
                    p.agent_exp,
                    now,
                )
                .await
            }
        }
    }
}

/// Whether `e` is an Access Server's refusal that passes with time: `400 clock_skew`, a
/// `created` or `iat` ahead of its clock (draft -11 §11.9.3, and §11.5.2: it MAY refuse
/// a future `iat` so; Signature-Key -09 §5.4.14: "A future iat or created becomes
/// acceptable with time"), which the same request asked again later gets past.
pub(super) fn passing_refusal(e: &PsError) -> bool {
    matches!(e, PsError::AccessServerRefused { error, .. } if error == "clock_skew")
}

/// What the agent's action on `p` (a clarification response, an updated request) is
/// answered when `p` can take none: `410` once it has ended; past its lifetime it has
/// ended too, whether or not a poll or the sweep has recorded that yet, and is answered
/// as a poll would be (draft -11 §9 `expired`, `408`), left as it is for that poll to
/// end. `None` while it is open.
fn ended_for_the_agent(p: &Pending, now: UnixTime) -> Option<http::Response<Bytes>> {
    if !p.is_open() {
        Some(gone())
    } else if now.as_secs() >= p.expires {
        Some(not_answered_in_time())
    } else {
        None
    }
}

/// `404` for a pending URL that is not the caller's (or not at all).
fn not_found() -> http::Response<Bytes> {
    json_response(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": "not_found", "detail": "no such pending request" }),
    )
}

/// `410 invalid_code`: the request has ended.
fn gone() -> http::Response<Bytes> {
    PollError::new(StatusCode::GONE, "invalid_code", "this request has ended").response()
}

/// `408 expired`: the request outlived its lifetime before the person answered.
fn not_answered_in_time() -> http::Response<Bytes> {
    PollError::new(
        StatusCode::REQUEST_TIMEOUT,
        "expired",
        "the person did not answer in time",
    )
    .response()
}
