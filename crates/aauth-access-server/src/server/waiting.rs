//! The waiting request: a token request the policy deferred to a step (the Person
//! Server's claims, the person, an approver, an answer, a payment), kept in the store at
//! its pending URL until the step is done; and what the Person Server is told while it
//! waits (`202` with `AAuth-Requirement`, or `402`).

use aauth_keys::time::UnixTime;
use aauth_metadata::serve::json_response;
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::{AccessServer, Answer, INTERACT_PATH, PENDING_PATH, Refusal};
use crate::store::{Awaiting, WaitingCaps, WaitingCreated, WaitingPut, WaitingRecord};
use crate::{AsError, TokenParameter};

/// How long a waiting request is kept for its next step, in seconds.
const WAITING_LIFETIME: u64 = 600;

/// How many presentations of an interaction code by accounts other than its owner end
/// the interaction (the Person Server's consent page allows as many).
pub(super) const MAX_CODE_ATTEMPTS: u32 = 5;

/// How many times a revocation reads a waiting request again when another step was
/// written over it between its read and its mark.
const MARK_ATTEMPTS: usize = 8;

/// How many fresh pending ids (and interaction codes) a new waiting request is tried
/// under before its creation fails, and how many interaction codes a request put back
/// for its next step is: a collision is rare (a code has 40 bits), several in a row mean
/// the random source repeats itself.
const CREATE_ATTEMPTS: usize = 4;

/// What a waiting request waits for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Step {
    /// The Person Server's claims (`POST` to the pending URL).
    Claims(Vec<String>),
    /// The person, on the interaction page: its code, the binding it makes, the account
    /// it is for, and whether the person approved.
    Interaction {
        code: String,
        /// The binding it makes: (resource, `sub`) for the request's Person Server.
        resource: String,
        sub: String,
        done: bool,
        /// The account signed in here that first opened its code: only it may go on with
        /// the code (draft -11 §Interaction Code Format: single use), anyone else's
        /// presentation a wrong code's.
        #[serde(default)]
        account: Option<String>,
        /// How many times another account presented its code: at
        /// [`MAX_CODE_ATTEMPTS`] the interaction ends ([`Step::CodeFailed`]).
        #[serde(default)]
        attempts: u32,
    },
    /// Refused on the person's behalf (they said no on the interaction page, or their
    /// Person Server is bound here to another account): the next poll ends it `denied`
    /// with this reason.
    Refused(String),
    /// An approval out of band: `None` while undecided, then the decision.
    Approval(Option<bool>),
    /// An answer to a question (`POST` with `action`).
    Clarification {
        question: String,
        options: Vec<String>,
    },
    /// A payment (`402`), confirmed out of band.
    Payment { challenge: String },
    /// Its resource token was revoked (AS-42): the next poll ends it `403 revoked`
    /// (draft -11 §11.9.4 Polling Error Codes).
    Revoked,
    /// Its interaction code was presented by other accounts [`MAX_CODE_ATTEMPTS`] times
    /// (draft -11 §Interaction Code Format, rate-limiting: after a small number of failed
    /// attempts the interaction is terminally failed): the next poll ends it `410
    /// invalid_code`.
    CodeFailed,
    /// Answered terminally: only the record of its end, which a late poll is answered
    /// `410` from ([`AccessServer::close`]).
    Answered,
    /// Ended by its expiry while it waited for the person: answered `410` as
    /// [`Step::Answered`] is, and its code kept, so that the person presenting it is
    /// told it expired (draft -11 §Interaction Code Format), as long as the record is
    /// kept.
    Expired {
        /// The interaction code.
        code: String,
        /// The account that opened it first, if one had.
        account: Option<String>,
        /// Its agent's provider, if known: the person presenting the code is sent back
        /// to the agent's admitted `callback` with `interaction_expired`.
        #[serde(default)]
        provider: Option<String>,
    },
}

/// What became of a request taken to be decided again and put back for its next step
/// ([`AccessServer::put_next`]).
pub(super) enum PutBack {
    /// Stored at its next step: the record as written.
    Next(WaitingRecord),
    /// Its next step could not be stored (no interaction code of its own was found for
    /// it): back as it was taken.
    AsItWas,
    /// Ended: its resource token was revoked meanwhile (AS-42).
    Ended,
    /// No longer this caller's to write (its lease ran out and another poll took it, or
    /// it was written meanwhile): nothing written, what is there stands.
    Lost,
}

/// What a write of a taken request back came to ([`AccessServer::put_drawing_again`]).
enum Put {
    /// Written, not taken any more: the record as written.
    Stored(WaitingRecord),
    /// Not written: each interaction code drawn was another request's.
    NoCode,
    /// Not written: no longer taken as it was taken ([`WaitingPut::NoLongerTaken`]).
    Lost,
}

/// What earlier steps of a request gave, carried to the next decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Given {
    pub(super) claims: Option<serde_json::Map<String, serde_json::Value>>,
    pub(super) clarification: Option<String>,
    pub(super) rounds: u8,
    pub(super) approved: bool,
}

/// A token request waiting for the Person Server, the person, an approver or a payment;
/// every step of one request keeps the same pending URL.
#[derive(Debug, Clone)]
pub(super) struct Waiting {
    /// The Person Server that asked (only it may poll or answer).
    pub(super) ps: ServerId,
    /// The request: its known members as read and written again
    /// ([`super::checks::TokenRequest::canonical`]), not the bytes that came (or as an
    /// `updated_request` replaced it).
    pub(super) body: Vec<u8>,
    /// Until when the answer is taken.
    pub(super) expires: u64,
    pub(super) step: Step,
    /// The resource token's `(iss, jti)`, so that its revocation ends the request.
    pub(super) rt: (String, String),
    pub(super) given: Given,
}

impl Step {
    /// The terminal answer of a request that ended at this step (`None` while it goes
    /// on): every place that answers a poll, an answer or a revocation reads it here.
    pub(super) fn verdict(&self) -> Option<AsError> {
        match self {
            Self::Revoked => Some(AsError::Revoked(TokenParameter::Resource)),
            Self::Refused(reason) => Some(AsError::Denied(reason.clone())),
            Self::Approval(Some(false)) => Some(AsError::Denied("the approver refused".to_owned())),
            Self::CodeFailed => Some(AsError::InteractionFailed),
            Self::Answered | Self::Expired { .. } => Some(AsError::RequestEnded),
            Self::Claims(_)
            | Self::Interaction { .. }
            | Self::Approval(None | Some(true))
            | Self::Clarification { .. }
            | Self::Payment { .. } => None,
        }
    }

    /// Whether only the record of the request's end is left (its answer was given).
    pub(super) fn closed(&self) -> bool {
        matches!(self, Self::Answered | Self::Expired { .. })
    }

    /// Draws a fresh interaction code in place of its own, for a step waiting for the
    /// person (whose code is another request's); any other step is left as it is.
    fn redraw_code(&mut self, server: &AccessServer) -> Result<(), AsError> {
        if let Self::Interaction { code, .. } = self {
            *code = server.random_code()?;
        }
        Ok(())
    }

    /// What the store indexes the request under.
    fn awaiting(&self) -> Awaiting {
        match self {
            Self::Claims(_) => Awaiting::Claims,
            Self::Interaction { .. } => Awaiting::Interaction,
            Self::Approval(_) => Awaiting::Approval,
            Self::Clarification { .. } => Awaiting::Clarification,
            Self::Payment { .. } => Awaiting::Payment,
            Self::Revoked | Self::Refused(_) | Self::CodeFailed => Awaiting::Ended,
            Self::Answered | Self::Expired { .. } => Awaiting::Answered,
        }
    }
}

/// The server's state for a waiting request, as the store keeps it (`data`).
#[derive(Serialize, Deserialize)]
struct WaitingData {
    body: String,
    step: Step,
    given: Given,
}

impl Waiting {
    /// The store's record of it, at pending id `id`.
    pub(super) fn into_record(self, id: String) -> Result<WaitingRecord, AsError> {
        let code = match &self.step {
            Step::Interaction {
                code, done: false, ..
            }
            | Step::Expired { code, .. } => Some(code.clone()),
            _ => None,
        };
        let awaiting = self.step.awaiting();
        let body = String::from_utf8(self.body).map_err(|e| {
            aauth_metadata::serve::InternalError::produce(
                "waiting record (the body is not UTF-8)",
                e,
            )
        })?;
        let data = serde_json::to_string(&WaitingData {
            body,
            step: self.step,
            given: self.given,
        })
        .map_err(|e| aauth_metadata::serve::InternalError::produce("waiting record", e))?;
        Ok(WaitingRecord {
            id,
            ps: self.ps,
            expires: self.expires,
            resource_token: self.rt,
            code,
            awaiting,
            data,
            taken_until: None,
        })
    }

    /// The waiting request a store's record holds.
    pub(super) fn from_record(r: WaitingRecord) -> Result<Self, AsError> {
        let d: WaitingData = serde_json::from_str(&r.data).map_err(|e| {
            aauth_metadata::serve::InternalError::unreadable("stored waiting request", e)
        })?;
        Ok(Self {
            ps: r.ps,
            body: d.body.into_bytes(),
            expires: r.expires,
            step: d.step,
            rt: r.resource_token,
            given: d.given,
        })
    }
}

/// What a token request comes to.
pub(super) enum Outcome {
    /// The auth token (`200`): the answer, and the token's `jti` and `exp` (to record
    /// it revoked should it not be delivered).
    Issued {
        json: serde_json::Value,
        jti: String,
        exp: u64,
    },
    /// A step first, for the resource token `(iss, jti)`, of the request `body` (its
    /// canonical form, what the waiting request keeps).
    Deferred(Step, (String, String), Vec<u8>),
}

/// A token request being answered: who asked, what they sent, and what its earlier
/// steps gave.
pub(super) struct Asked<'a> {
    /// The Person Server that asked.
    pub(super) ps: &'a ServerId,
    /// The request's body (as an `updated_request` may have replaced it).
    pub(super) body: &'a [u8],
    /// What earlier steps gave.
    pub(super) given: Given,
    /// Whether it is the request as first sent (its agent is counted against the rate
    /// limits by agent), not one decided again after a step.
    pub(super) first: bool,
}

/// The `Location`, `Retry-After` and `AAuth-Requirement` of a `202`.
fn pending_headers(
    r: &mut http::Response<Bytes>,
    id: &str,
    retry: &'static str,
    requirement: HeaderValue,
) {
    still_pending(r, id, retry);
    r.headers_mut().insert("aauth-requirement", requirement);
}

/// The `202` of a request taken to be decided by another poll (or whose taker failed,
/// until its lease runs out, [`crate::TAKE_LEASE`]): still pending, poll again shortly.
/// Never a `404`, which would end the Person Server's request: the next poll gets what
/// the taker left (the next step, or `410` once it was answered).
pub(super) fn poll_again(id: &str) -> http::Response<Bytes> {
    let mut r = json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "status": "pending" }),
    );
    still_pending(&mut r, id, "1");
    r
}

/// The `Location` (REQUIRED on every `202`, draft -11 §Pending Response) and
/// `Retry-After` of a request still waiting at `id`.
pub(super) fn still_pending(r: &mut http::Response<Bytes>, id: &str, retry: &'static str) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{id}")) {
        h.insert(http::header::LOCATION, v);
    }
    h.insert(http::header::RETRY_AFTER, HeaderValue::from_static(retry));
}

impl AccessServer {
    /// Whether waiting request `id` reads back closed as answered and taken by no one:
    /// what only the close of its decided token writes (`false` when it cannot be read).
    async fn closed_as_answered(&self, id: &str, now: UnixTime) -> bool {
        match self.store.waiting_kept(id, now).await {
            Ok(Some(r)) if r.taken_until.is_none() => {
                Waiting::from_record(r).is_ok_and(|w| matches!(w.step, Step::Answered))
            }
            _ => false,
        }
    }

    /// The answer to a token request: the token, or the step it waits for at its pending
    /// URL (kept for ten minutes; `reuse`, the waiting request taken to be decided again:
    /// a request's later steps keep its URL, and its token ends it).
    pub(super) async fn respond(
        &self,
        outcome: Outcome,
        asked: Asked<'_>,
        reuse: Option<&WaitingRecord>,
        now: UnixTime,
    ) -> Answer {
        match outcome {
            Outcome::Issued { json, jti, exp } => {
                let Some(r) = reuse else {
                    return Ok(json_response(StatusCode::OK, &json));
                };
                // Decided again: the token is delivered only once the request is closed
                // under this taker's lease. Otherwise (the store failed, or the lease ran
                // out and another poll took the request) the request stays to be decided
                // again, and would issue another token: this one is recorded revoked,
                // never handed out, so that one token at most is live. The Person Server
                // polls again (`202`, or `503` for the store's failure).
                let closed = match self.close_taken(r, now).await {
                    // A failure may come after the write committed (a connection lost
                    // after its `COMMIT`): read back, a request closed as answered with
                    // no lease was closed by this taker, and its token goes out.
                    Err(_) if self.closed_as_answered(&r.id, now).await => Ok(true),
                    closed => closed,
                };
                if matches!(closed, Ok(true)) {
                    return Ok(json_response(StatusCode::OK, &json));
                }
                self.store.revoke(self.id.as_str(), &jti, exp, now).await?;
                match closed {
                    Err(e) => Err(Refusal::Error(e)),
                    Ok(_) => Ok(poll_again(&r.id)),
                }
            }
            Outcome::Deferred(step, rt, body) => {
                let waiting = Waiting {
                    ps: asked.ps.clone(),
                    body,
                    expires: now.as_secs().saturating_add(WAITING_LIFETIME),
                    step,
                    rt: rt.clone(),
                    given: asked.given,
                };
                let Some(r) = reuse else {
                    let (id, step) = self.create_waiting(waiting, now).await?;
                    // A revocation recorded after this request's check looked for waiting
                    // requests before this one was written: look for it after writing,
                    // as `put_back` does, so one of the two always sees the other.
                    // A first request is the token endpoint's: its own code.
                    if self.store.is_revoked(&rt.0, &rt.1, now).await? {
                        let revoked = AsError::RevokedResourceToken;
                        return self.end_waiting(&id, asked.ps, &rt, revoked, now).await;
                    }
                    return Ok(self.step_response(&id, &step));
                };
                // Taken to be decided again: put back for its next step, unless its
                // resource token was revoked meanwhile; answered with the step as put
                // back (its interaction code, drawn again if it was another request's).
                // Ended so, it answers the poll (or answer) of its pending URL: `403
                // revoked` (draft -11 §11.9.4 Polling Error Codes).
                let next = waiting.into_record(r.id.clone())?;
                match self.put_next(next, r, now).await? {
                    PutBack::Next(put) => {
                        Ok(self.step_response(&r.id, &Waiting::from_record(put)?.step))
                    }
                    // Kept as it was taken: the Person Server polls again (`503`), and
                    // that poll decides it again.
                    PutBack::AsItWas => Err(AsError::Unavailable(format!(
                        "no interaction code of its own was found for the request's next step in {CREATE_ATTEMPTS} draws; it waits as it was"
                    ))
                    .into()),
                    PutBack::Ended => {
                        let revoked = AsError::Revoked(TokenParameter::Resource);
                        self.end_waiting(&r.id, asked.ps, &rt, revoked, now).await
                    }
                    // Another's now: the Person Server polls again, and gets what is there.
                    PutBack::Lost => Ok(poll_again(&r.id)),
                }
            }
        }
    }

    /// Ends waiting request `id` (of `ps`, for resource token `rt`), answered
    /// terminally: in its place, the record of its end ([`Step::Answered`], expiring
    /// now, kept [`crate::WAITING_KEPT`] for the late polls it answers `410`).
    pub(super) async fn close(
        &self,
        id: &str,
        ps: &ServerId,
        rt: &(String, String),
        now: UnixTime,
    ) -> Result<(), AsError> {
        self.close_as(id, ps, rt, Step::Answered, None, now).await?;
        Ok(())
    }

    /// [`AccessServer::close`] for request `taken`, taken by this caller to be decided
    /// again: written only under its lease (one taken again since, its lease having run
    /// out, or written meanwhile, is left as it is: `false`).
    async fn close_taken(&self, taken: &WaitingRecord, now: UnixTime) -> Result<bool, AsError> {
        let (id, ps, rt) = (&taken.id, &taken.ps, &taken.resource_token);
        self.close_as(id, ps, rt, Step::Answered, Some(taken), now)
            .await
    }

    /// [`AccessServer::close`] for a request that expired (`w`): one still waiting for
    /// the person keeps its code ([`Step::Expired`]).
    pub(super) async fn close_expired(
        &self,
        id: &str,
        w: &Waiting,
        now: UnixTime,
    ) -> Result<(), AsError> {
        let end = match &w.step {
            Step::Interaction {
                code,
                done: false,
                account,
                ..
            } => Step::Expired {
                code: code.clone(),
                account: account.clone(),
                provider: super::callback::agent_provider(&w.body).map(|p| p.as_str().to_owned()),
            },
            _ => Step::Answered,
        };
        self.close_as(id, &w.ps, &w.rt, end, None, now).await?;
        Ok(())
    }

    /// Puts the record of request `id`'s end, `step`, in its place: over the request as
    /// `taken` by this caller only, when it is (no longer taken so: nothing written, and
    /// `false`).
    async fn close_as(
        &self,
        id: &str,
        ps: &ServerId,
        rt: &(String, String),
        step: Step,
        taken: Option<&WaitingRecord>,
        now: UnixTime,
    ) -> Result<bool, AsError> {
        let ended = |step| {
            Waiting {
                ps: ps.clone(),
                body: Vec::new(),
                expires: now.as_secs(),
                step,
                rt: rt.clone(),
                given: Given::default(),
            }
            .into_record(id.to_owned())
        };
        let put = |record| async move {
            match taken {
                Some(taken) => self.store.put_taken(record, taken).await,
                None => self.store.put_waiting(record, now).await,
            }
        };
        match put(ended(step)?).await? {
            WaitingPut::Stored => return Ok(true),
            WaitingPut::NoLongerTaken => return Ok(false),
            WaitingPut::CodeTaken => {}
        }
        // An expired request's code, another request's since (its record was dropped
        // meanwhile, and the code drawn again): its end is kept without the code, never
        // over the other's.
        match put(ended(Step::Answered)?).await? {
            WaitingPut::Stored => Ok(true),
            WaitingPut::NoLongerTaken => Ok(false),
            WaitingPut::CodeTaken => Err(aauth_metadata::serve::InternalError::produce(
                "the record of a waiting request's end",
                "the store found an interaction code in a record without one",
            )
            .into()),
        }
    }

    /// Ends waiting request `id` ([`AccessServer::close`]), answering `then` (or the
    /// store's failure).
    pub(super) async fn end_waiting(
        &self,
        id: &str,
        ps: &ServerId,
        rt: &(String, String),
        then: AsError,
        now: UnixTime,
    ) -> Answer {
        self.close(id, ps, rt, now).await?;
        Err(Refusal::Error(then))
    }

    /// Ends request `taken`, taken by this caller to be decided again
    /// ([`AccessServer::close_taken`]), answering `then` (or the store's failure). One no
    /// longer taken so (the lease ran out and another poll took it) is that poll's to
    /// decide: nothing written, and the Person Server polls again (`202`), never told of
    /// an end that did not happen.
    pub(super) async fn end_taken(
        &self,
        taken: &WaitingRecord,
        then: AsError,
        now: UnixTime,
    ) -> Answer {
        if !self.close_taken(taken, now).await? {
            return Ok(poll_again(&taken.id));
        }
        Err(Refusal::Error(then))
    }

    /// Stores a new waiting request within its Person Server's share and, for a Person
    /// Server not trusted ahead, within the total kept here, under a fresh pending id:
    /// that id and the step (with the interaction code it was stored under). An id or
    /// interaction code already another request's ([`WaitingCreated::Taken`]: a code has
    /// 40 bits) is drawn again, with the code, up to [`CREATE_ATTEMPTS`] times.
    async fn create_waiting(
        &self,
        mut w: Waiting,
        now: UnixTime,
    ) -> Result<(String, Step), AsError> {
        let total = (!self.trusted.contains(&w.ps)).then_some(self.max_waiting_total);
        let caps = WaitingCaps::new(self.max_waiting, total);
        for attempt in 0..CREATE_ATTEMPTS {
            if attempt > 0 {
                w.step.redraw_code(self)?;
            }
            let id = self.random_id()?;
            let reason = match self
                .store
                .create_waiting(w.clone().into_record(id.clone())?, caps, now)
                .await?
            {
                WaitingCreated::Created => return Ok((id, w.step)),
                WaitingCreated::Taken => continue,
                WaitingCreated::PersonServerFull => format!(
                    "this Person Server already has {} requests waiting here",
                    self.max_waiting
                ),
                WaitingCreated::Full => format!(
                    "this Access Server already keeps {} waiting requests",
                    self.max_waiting_total
                ),
            };
            return Err(AsError::RateLimited {
                reason,
                // A share frees up at the latest when its oldest request expires; the
                // total as requests end or expire, each kept a while for its late polls.
                retry_after: WAITING_LIFETIME,
            });
        }
        Err(aauth_metadata::serve::InternalError::produce(
            "waiting request",
            format!(
                "its pending id or interaction code was another request's under each of {CREATE_ATTEMPTS} attempts"
            ),
        )
        .into())
    }

    /// Puts back request `taken`, taken by this caller to be decided again, as it was
    /// (its lease cleared: [`AsStore::put_taken`](crate::AsStore::put_taken)), then ends
    /// it if its resource token was revoked meanwhile (AS-42). While it was taken, a
    /// revocation found it taken and left it to its taker
    /// ([`AccessServer::end_revoked`]), and nothing else writes a taken request; the
    /// revocation is recorded before it looks for requests, and this looks for the
    /// revocation after writing: a revocation that found it taken looked before this
    /// write (its lease lasting, a revocation's mark does not land on it; a lease is
    /// cleared only by this write, or by `put_waiting` from [`AccessServer::end_waiting`]
    /// and [`AccessServer::close_expired`], which write over a request read with its
    /// verdict, or expired: one no poll decides, an expired one never taken; harmless
    /// here), so this sees it; one that looks after finds it written back and marks it
    /// itself. The mark is never lost, and
    /// never written over (this writes only under this take's lease). Should the lease
    /// run out first (this taker failed), the request is as it was taken, and the poll
    /// that takes it again decides it against the revocations.
    ///
    /// A request is taken to be decided again only at a step that holds no interaction
    /// code (claims, an answer, an approval, a payment, the person's yes: a code is held
    /// only while the person is awaited), so as it was it finds no code another's: the
    /// draws are for a record read in a race with another decision of it.
    pub(super) async fn put_back(
        &self,
        taken: WaitingRecord,
        now: UnixTime,
    ) -> Result<PutBack, AsError> {
        match self.put_drawing_again(taken.clone(), &taken).await? {
            Put::Stored(record) => Ok(match self.unless_revoked(record, now).await? {
                Some(_) => PutBack::AsItWas,
                None => PutBack::Ended,
            }),
            Put::Lost => Ok(PutBack::Lost),
            Put::NoCode => Err(aauth_metadata::serve::InternalError::produce(
                "waiting request",
                format!(
                    "its interaction code was another request's under each of {CREATE_ATTEMPTS} attempts"
                ),
            )
            .into()),
        }
    }

    /// Puts back request `taken` (taken from the store to be decided again) at its next
    /// step, `next` ([`AccessServer::put_back`]). Should no interaction code of its own
    /// be drawn for `next` (each of [`CREATE_ATTEMPTS`] draws another request's: the
    /// random source repeats itself), `taken` goes back as it was, never lost: the
    /// request waits, and a later poll decides it again.
    async fn put_next(
        &self,
        next: WaitingRecord,
        taken: &WaitingRecord,
        now: UnixTime,
    ) -> Result<PutBack, AsError> {
        match self.put_drawing_again(next, taken).await? {
            Put::Stored(put) => Ok(match self.unless_revoked(put, now).await? {
                Some(put) => PutBack::Next(put),
                None => PutBack::Ended,
            }),
            Put::Lost => Ok(PutBack::Lost),
            Put::NoCode => self.put_back(taken.clone(), now).await,
        }
    }

    /// `record`, just written back, unless its resource token was revoked meanwhile: then
    /// marked so ([`AccessServer::end_revoked`]), and `None`.
    async fn unless_revoked(
        &self,
        record: WaitingRecord,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, AsError> {
        let (iss, jti) = &record.resource_token;
        if !self.store.is_revoked(iss, jti, now).await? {
            return Ok(Some(record));
        }
        self.end_revoked(record, now).await?;
        Ok(None)
    }

    /// Writes `record` in place of request `taken`, while it is taken as this caller took
    /// it. An interaction code another request holds ([`WaitingPut::CodeTaken`]: one
    /// freshly drawn for its next step, or its own, drawn by a request created while it
    /// was taken) is drawn again, up to [`CREATE_ATTEMPTS`] times, never written over the
    /// other's: the record as written, or nothing written when every draw was another's,
    /// or when the request is no longer taken so.
    async fn put_drawing_again(
        &self,
        mut record: WaitingRecord,
        taken: &WaitingRecord,
    ) -> Result<Put, AsError> {
        for attempt in 0..CREATE_ATTEMPTS {
            if attempt > 0 {
                let id = record.id.clone();
                let mut w = Waiting::from_record(record)?;
                w.step.redraw_code(self)?;
                record = w.into_record(id)?;
            }
            match self.store.put_taken(record.clone(), taken).await? {
                WaitingPut::Stored => return Ok(Put::Stored(record)),
                WaitingPut::NoLongerTaken => return Ok(Put::Lost),
                WaitingPut::CodeTaken => {}
            }
        }
        Ok(Put::NoCode)
    }

    /// AS-42: marks waiting request `record` (as read) ended, its resource token revoked,
    /// over that record only (one conditional write): a request taken and decided
    /// meanwhile is never brought back, and one given another step meanwhile (an
    /// approval, the person's yes) is read again and marked over that. One taken to be
    /// decided (its lease lasting) is left to its taker, which looks for the revocation
    /// after it writes the request back ([`AccessServer::put_back`]), and whose decision
    /// checks the resource token against the revocations should its lease run out first.
    pub(super) async fn end_revoked(
        &self,
        mut record: WaitingRecord,
        now: UnixTime,
    ) -> Result<(), AsError> {
        for _ in 0..MARK_ATTEMPTS {
            let (id, read) = (record.id.clone(), record.data.clone());
            if record.taken_at(now) {
                return Ok(());
            }
            let mut w = Waiting::from_record(record)?;
            // One already ended keeps its verdict: a denial, or a failed interaction,
            // is not turned into `revoked` by a later revocation.
            if w.step.verdict().is_some() {
                return Ok(());
            }
            w.step = Step::Revoked;
            if self
                .store
                .replace_waiting(w.into_record(id.clone())?, &read, now)
                .await?
            {
                return Ok(());
            }
            match self.store.waiting(&id, now).await? {
                Some(again) => record = again,
                // Decided, or expired (one taken meanwhile is left to its taker, above).
                None => return Ok(()),
            }
        }
        Err(aauth_metadata::serve::InternalError::produce(
            "the revocation mark of a waiting request",
            format!("it changed under each of {MARK_ATTEMPTS} attempts"),
        )
        .into())
    }

    /// What the Person Server is told while a request waits for `step`.
    pub(super) fn step_response(&self, id: &str, step: &Step) -> http::Response<Bytes> {
        let pending = serde_json::json!({ "status": "pending" });
        let (status, json, retry, requirement) = match step {
            Step::Claims(names) => (
                StatusCode::ACCEPTED,
                serde_json::json!({ "status": "pending", "required_claims": names }),
                "0",
                HeaderValue::from_static("requirement=claims"),
            ),
            // (A step is answered here only as it starts; a poll of an interaction the
            // person has not finished gets `interacting` from `poll_waiting`.)
            Step::Interaction { code, .. } => match HeaderValue::from_str(&format!(
                "requirement=interaction;url=\"{}{INTERACT_PATH}\";code=\"{code}\"",
                self.id.as_str()
            )) {
                Ok(v) => (StatusCode::ACCEPTED, pending, "1", v),
                Err(e) => {
                    return AsError::from(aauth_metadata::serve::InternalError::produce(
                        "interaction requirement",
                        e,
                    ))
                    .into_http_response();
                }
            },
            Step::Approval(_) => (
                StatusCode::ACCEPTED,
                pending,
                "1",
                HeaderValue::from_static("requirement=approval"),
            ),
            Step::Clarification { question, options } => (
                StatusCode::ACCEPTED,
                serde_json::json!({ "status": "pending", "clarification": question, "options": options }),
                "0",
                HeaderValue::from_static("requirement=clarification"),
            ),
            Step::Payment { challenge } => return payment_required(id, challenge),
            Step::Revoked
            | Step::Refused(_)
            | Step::CodeFailed
            | Step::Answered
            | Step::Expired { .. } => {
                return step
                    .verdict()
                    .unwrap_or(AsError::RequestEnded)
                    .into_http_response();
            }
        };
        let mut r = json_response(status, &json);
        pending_headers(&mut r, id, retry, requirement);
        r
    }
}

/// The `402` of a request waiting for payment: its pending URL and the policy's
/// `WWW-Authenticate` challenge.
fn payment_required(id: &str, challenge: &str) -> http::Response<Bytes> {
    let mut r = json_response(
        StatusCode::PAYMENT_REQUIRED,
        &serde_json::json!({ "status": "pending", "error": "payment_required" }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{id}")) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    match HeaderValue::from_str(challenge) {
        Ok(v) => {
            r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        Err(e) => {
            return AsError::from(aauth_metadata::serve::InternalError::produce(
                "payment challenge",
                e,
            ))
            .into_http_response();
        }
    }
    r
}
