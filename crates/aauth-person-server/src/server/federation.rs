//! Four-party access: asking an Access Server for an auth token on the agent's behalf, following its pending URL, relaying its questions and interaction, and parking the agent at this server's pending URL meanwhile.

use std::sync::OnceLock;

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AuthClaims, ServerId, Validation, verify};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use aauth_headers::Requirement;
use aauth_metadata::HttpsUrl;

use crate::PsError;
use crate::pending::{Pending, PendingRequest, PendingState};
use aauth_metadata::serve::json_response;

use super::access_reply::AccessReply;
use super::defer::Deferral;
use super::poll::PollError;
use super::{Outcome, PENDING_PATH, PersonServer};

/// How long a payment ([`crate::PaymentSettler::settle`]) may take before it is given up
/// and reported as failed: five minutes, far past any exchange's deadline, so that a
/// settler that never answers does not keep its task for ever.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

impl PersonServer {
    /// Four-party, when the Access Server needs the person (`requirement=interaction`:
    /// the agent gets the Access Server's link unchanged), an approval, a payment's
    /// confirmation, or an answer to its question (passed to the agent as this server's
    /// `requirement=clarification`): the agent polls this server's pending URL, whose
    /// polls poll (or answer) the Access Server's.
    pub(super) async fn defer_to_access_server(
        &self,
        d: Deferral<'_>,
        (location, requirement, question): (String, String, Option<String>),
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        let capabilities = d.capabilities;
        if requirement.starts_with("requirement=interaction")
            && !capabilities.iter().any(|c| c == "interaction")
        {
            return Err(PsError::UserUnreachable(
                "the Access Server needs the person and the agent declared no interaction capability"
                    .to_owned(),
            ));
        }
        if question.is_some()
            && !capabilities
                .iter()
                .any(|c| c == "clarification" || c == "interaction")
        {
            return Err(PsError::UserUnreachable(
                "the Access Server asks a question and the agent declared neither the clarification nor the interaction capability"
                    .to_owned(),
            ));
        }
        let mut p = self.pending_for(d, now)?;
        let resp = self.park_at_access_server(&mut p, location, &requirement, question)?;
        self.create_pending(p, now).await?;
        Ok(Outcome::Respond(resp))
    }

    /// Marks `p` as waiting at the Access Server's `location` (with its question for the
    /// agent, if any) and gives the agent's `202`; not stored.
    pub(super) fn park_at_access_server(
        &self,
        p: &mut Pending,
        location: String,
        requirement: &str,
        question: Option<String>,
    ) -> Result<http::Response<Bytes>, PsError> {
        // Who answers the Access Server's question: the agent, if it can (its answer
        // comes back through the chat); else the person, on the consent page (the agent
        // is given this server's interaction link and code).
        if question.is_some() && !p.clarification && !self.interaction {
            return Err(PsError::UserUnreachable(
                "the Access Server asks a question and neither the agent (no clarification capability) nor the person (no consent pages) can answer it"
                    .to_owned(),
            ));
        }
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &mut p.request
        {
            f.access_server_pending = Some(location);
            f.access_server_question = question.clone().map(|q| (q, None));
        }
        Ok(match question {
            Some(_) => self.pending_response(p, StatusCode::ACCEPTED, "pending", 0),
            None => Self::access_server_pending_response(p, requirement),
        })
    }

    /// The `202` while the Access Server has the request: its requirement (if the agent
    /// has anything to do), our URL.
    pub(super) fn access_server_pending_response(
        p: &Pending,
        requirement: &str,
    ) -> http::Response<Bytes> {
        let mut r = json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "status": "pending" }),
        );
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{}", p.id)) {
            h.insert(http::header::LOCATION, v);
        }
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        if let Ok(v) = HeaderValue::from_str(requirement)
            && !requirement.is_empty()
        {
            h.insert("aauth-requirement", v);
        }
        r
    }

    /// Asks the resource's Access Server for the auth token (PS-50…54) and verifies what
    /// it returns: `iss` the Access Server, `aud` the resource, `cnf` the agent's key,
    /// `sub` the directed identifier, `scope` within the resource token's, `exp` within
    /// `cap`, a budget within what the PS allowed. Returns the token and its budget.
    ///
    /// Once this exchange paid the Access Server's `402`, whatever then keeps it from a
    /// token or a terminal refusal (the payment still being made or confirmed, a busy,
    /// failing, unreachable or silent Access Server, a token that fails its checks, a
    /// `400 clock_skew` that passes with time) leaves this server waiting at the Access
    /// Server's pending URL ([`PsError::AccessServerInteraction`] with nothing for the
    /// agent to do): the agent's next poll polls that URL, never asks again, and never
    /// pays again (the [`crate::PaymentSettler`] settles once per `402`). A payment that
    /// fails within the exchange's deadline ends the request (its `402` relayed); one that
    /// fails after it is reported as this server's failure, and the request waits at the
    /// pending URL until the Access Server answers it (its `402` while unpaid, then its
    /// own expiry).
    pub(super) async fn federated(
        &self,
        f: &Federated<'_>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        // Set as the payment starts, so that it outlives the exchange cut short by the
        // deadline (while the settler works, or after).
        let paid = OnceLock::new();
        let answer = match tokio::time::timeout(
            self.federation_timeout,
            self.federated_exchange(f, &paid, now),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_) => Err(self.silent(f)),
        };
        match (answer, paid.get()) {
            (Err(e), Some(pending))
                if super::poll::passing_refusal(&e)
                    || !matches!(
                        e,
                        PsError::AccessServerRefused { .. }
                            | PsError::AccessServerInteraction { .. }
                    ) =>
            {
                if !matches!(e, PsError::AccessServerPending) {
                    aauth_metadata::serve::report_failure(&e);
                }
                Err(waiting_at(pending))
            }
            (answer, _) => answer,
        }
    }

    /// An exchange with `f`'s Access Server that got no answer within the deadline.
    fn silent(&self, f: &Federated<'_>) -> PsError {
        let silent = PsError::AccessServerUnreachable(format!(
            "no answer within {} ms",
            self.federation_timeout.as_millis()
        ));
        // A poll of a request the Access Server holds that goes unanswered is asked again
        // at the agent's next poll, as one that cannot connect is (`federated_exchange`):
        // an approval given there is not lost.
        let polling = f.fp.access_server_pending.is_some()
            && f.fp
                .access_server_question
                .as_ref()
                .and_then(|(_, a)| a.as_ref())
                .is_none();
        if polling {
            aauth_metadata::serve::report_failure(&silent);
            PsError::AccessServerPending
        } else {
            silent
        }
    }

    /// [`PersonServer::federated`] without its deadline.
    async fn federated_exchange(
        &self,
        f: &Federated<'_>,
        paid: &OnceLock<HttpsUrl>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        let transport = self.federation_transport()?;
        // Already waiting at the Access Server: forward the agent's answer to its
        // question, or poll.
        let (resp, waiting) = match &f.fp.access_server_pending {
            Some(location) => {
                let url = HttpsUrl::parse(location).map_err(|e| {
                    PsError::AccessServerUnreachable(format!("the stored pending URL: {e}"))
                })?;
                let resp = match f
                    .fp
                    .access_server_question
                    .as_ref()
                    .and_then(|(_, a)| a.as_ref())
                {
                    Some(answer) => {
                        self.post_to_access_server(transport, &url, &clarification(answer), now)
                            .await?
                    }
                    // A poll the Access Server cannot take now (unreachable) is
                    // asked again at the agent's next poll: the request waits there,
                    // and an approval already given there is not lost. The operator
                    // still hears why.
                    None => self
                        .get_from_access_server(transport, &url, now)
                        .await
                        .map_err(|e| {
                            aauth_metadata::serve::report_failure(&e);
                            PsError::AccessServerPending
                        })?,
                };
                (resp, Some(url))
            }
            None => (self.ask_access_server(transport, f, now).await?, None),
        };
        let token = self
            .follow(resp, f.fp, f.account, waiting.as_ref(), paid, now)
            .await?;
        self.check_access_server_token(&token, f, now).await
    }

    /// The transport to Access Servers.
    fn federation_transport(&self) -> Result<&dyn aauth_metadata::Transport, PsError> {
        self.federation
            .as_deref()
            .ok_or_else(|| PsError::AccessServerUnreachable("no federation configured".to_owned()))
    }

    /// The first request: the Access Server's metadata, then a signed `POST` of the
    /// tokens to its `auth_token_endpoint`.
    async fn ask_access_server(
        &self,
        transport: &dyn aauth_metadata::Transport,
        f: &Federated<'_>,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        let unreachable = |what: String| PsError::AccessServerUnreachable(what);
        let doc: aauth_metadata::AccessServerMetadata = {
            let url = format!(
                "{}/.well-known/{}",
                f.fp.access_server.as_str(),
                <aauth_metadata::AccessServerMetadata as aauth_metadata::MetadataDocument>::DWK
            );
            let req = http::Request::get(url)
                .body(Bytes::new())
                .map_err(|e| unreachable(e.to_string()))?;
            let resp = transport
                .send(req)
                .await
                .map_err(|e| unreachable(format!("metadata: {e}")))?;
            if resp.status() != StatusCode::OK {
                return Err(unreachable(format!("metadata: {}", resp.status())));
            }
            <aauth_metadata::AccessServerMetadata as aauth_metadata::MetadataDocument>::parse_for(
                resp.body(),
                &f.fp.access_server,
            )
            .map_err(|e| unreachable(format!("metadata: {e}")))?
        };
        let fp = f.fp;
        let mut body = serde_json::json!({
            "resource_token": fp.resource_token,
            "agent_token": fp.agent_token,
            "presented_token": fp.presented_token,
        });
        if let Some(t) = &fp.subagent_token {
            body["subagent_token"] = t.clone().into();
        }
        if let Some(t) = &fp.upstream_token {
            body["upstream_token"] = t.clone().into();
        }
        if let Some(b) = f.allowed {
            body["budget"] = serde_json::to_value(b)
                .map_err(|e| aauth_metadata::serve::InternalError::produce("budget member", e))?;
        }
        self.post_to_access_server(transport, &doc.auth_token_endpoint, &body, now)
            .await
    }

    /// A signed `POST` of `body` to the Access Server.
    async fn post_to_access_server(
        &self,
        transport: &dyn aauth_metadata::Transport,
        url: &HttpsUrl,
        body: &serde_json::Value,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        crate::outbound::signed_post(transport, &self.server_signer(), now, url.as_str(), body)
            .await
            .map_err(PsError::AccessServerUnreachable)
    }

    /// A signed `GET` of the Access Server's pending URL.
    async fn get_from_access_server(
        &self,
        transport: &dyn aauth_metadata::Transport,
        url: &HttpsUrl,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        crate::outbound::signed_get(transport, &self.server_signer(), now, url.as_str())
            .await
            .map_err(PsError::AccessServerUnreachable)
    }

    /// Follows the Access Server's deferred answers (draft -11, "Deferred Responses")
    /// until one is final, and returns its auth token (unchecked): claims this server
    /// answers itself; a `402` paid through the [`crate::PaymentSettler`] (or relayed as
    /// a refusal without one) and then polled; a clarification this server cannot answer
    /// passed to the agent, and an interaction or approval the agent waits for, as
    /// [`PsError::AccessServerInteraction`] (this server's pending URL then polls the Access
    /// Server's). `waiting` is the Access Server's pending URL when this is a poll of it;
    /// `paid` is set to the pending URL of a `402` once it is paid.
    async fn follow(
        &self,
        mut resp: http::Response<Bytes>,
        fp: &crate::pending::FourParty,
        account: &str,
        waiting: Option<&HttpsUrl>,
        paid: &OnceLock<HttpsUrl>,
        now: UnixTime,
    ) -> Result<String, PsError> {
        let transport = self.federation_transport()?;
        // The pending URL `resp` answers a poll of, if it does: the one waited at, or,
        // once a payment is made, the one polled for its confirmation (whose `408` or
        // `410` is then the Access Server's final answer, not an unknown status).
        let mut polled = waiting.cloned();
        // Steps compose (payment, then interaction, then claims…): a few per exchange.
        for _ in 0..4 {
            let (pending, raw, requirement, body) =
                match AccessReply::read(&resp, &fp.access_server, polled.as_ref())? {
                    AccessReply::Token { auth_token } => return Ok(auth_token),
                    // A refusal (relayed), or a busy or failing Access Server.
                    other @ (AccessReply::Refused { .. }
                    | AccessReply::Busy { .. }
                    | AccessReply::Unexpected(_)) => {
                        return Err(other.into_error(polled.is_some()));
                    }
                    AccessReply::Payment { pending, challenge } => {
                        if polled.is_some() {
                            // Paid; the Access Server has not confirmed it yet.
                            return Err(if waiting.is_some() {
                                PsError::AccessServerPending
                            } else {
                                waiting_at(&pending)
                            });
                        }
                        // Recorded as paid before the payment starts: an exchange cut
                        // short while the settler works (the deadline) leaves this
                        // server waiting at the pending URL, never asking (and paying)
                        // afresh. At most one `402` is paid in an exchange (the next is
                        // answered above), so this is the first and only setting.
                        let _ = paid.set(pending.clone());
                        self.settle(fp, &challenge).await?;
                        resp = self
                            .get_from_access_server(transport, &pending, now)
                            .await?;
                        polled = Some(pending);
                        continue;
                    }
                    AccessReply::Deferred {
                        pending,
                        raw_requirement,
                        requirement,
                        body,
                    } => (pending, raw_requirement, requirement, body),
                };
            let body = match requirement {
                Some(Requirement::Clarification) => {
                    // default: read() refused a clarification without its question
                    let question = body.clarification.unwrap_or_default(); // default: AccessReply::read refused a clarification without its question
                    // This server answers what it knows; the rest goes to the agent.
                    match self.answer_for_person(account, fp, &question) {
                        Some(answer) => clarification(&answer),
                        None => {
                            return Err(PsError::AccessServerInteraction {
                                location: pending.to_string(),
                                requirement: raw,
                                question: Some(question),
                            });
                        }
                    }
                }
                // The person must go to the Access Server (the agent is given its link),
                // or someone approves out of band (the agent waits): either way the agent
                // polls this server, which polls the Access Server.
                Some(Requirement::Interaction { .. } | Requirement::Approval) => {
                    return Err(PsError::AccessServerInteraction {
                        location: pending.to_string(),
                        requirement: raw,
                        question: None,
                    });
                }
                Some(Requirement::Claims) => self.claims_for(account, fp, &body.required_claims),
                // Still with the person or the approver.
                _ if waiting.is_some() => return Err(PsError::AccessServerPending),
                // Paid in this exchange: the Access Server is confirming the payment (or
                // another poll of it is deciding the request). Ordinary deferred polling:
                // this server waits at its pending URL.
                _ if polled.is_some() => return Err(waiting_at(&pending)),
                _ => {
                    return Err(PsError::AccessServerUnreachable(format!(
                        "the Access Server's {raw:?} is not relayed by this Person Server"
                    )));
                }
            };
            resp = self
                .post_to_access_server(transport, &pending, &body, now)
                .await?;
        }
        Err(PsError::AccessServerUnreachable(
            "the Access Server asked for more steps than this Person Server follows".to_owned(),
        ))
    }

    /// Pays what the Access Server's `402` asks, through the payment settler.
    ///
    /// The payment runs as a task of its own, outside the exchange's deadline: an exchange
    /// cut short (the deadline, the agent's request gone) never cuts a payment short
    /// midway, whose outcome would then be unknown; this server waits at the pending URL
    /// meanwhile (`paid`), where the Access Server confirms it. A failure nobody awaits
    /// any more is still reported. A settler that has not answered within
    /// [`SETTLE_LIMIT`] is given up (reported as failed), so that its task ends.
    async fn settle(&self, fp: &crate::pending::FourParty, challenge: &str) -> Result<(), PsError> {
        let refused = |detail: String| PsError::AccessServerRefused {
            status: 402,
            error: "payment_required".to_owned(),
            detail,
        };
        let Some(settler) = self.payments.clone() else {
            return Err(refused(
                "the Access Server requires payment and this Person Server settles none".to_owned(),
            ));
        };
        let (access_server, challenge) = (fp.access_server.clone(), challenge.to_owned());
        let (tell, told) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let settled = match tokio::time::timeout(
                SETTLE_LIMIT,
                settler.settle(&access_server, &challenge),
            )
            .await
            {
                Ok(settled) => settled.map_err(|why| refused(why.chars().take(500).collect())),
                Err(_) => Err(refused(format!(
                    "the payment settler did not answer within {} s",
                    SETTLE_LIMIT.as_secs()
                ))),
            };
            if let Err(Err(e)) = tell.send(settled) {
                aauth_metadata::serve::report_failure(&e);
            }
        });
        told.await.map_err(|_| {
            refused("the payment settler stopped without an answer (it panicked)".to_owned())
        })?
    }

    /// This server's answer to the Access Server's question about the person, if it has
    /// one.
    fn answer_for_person(
        &self,
        account: &str,
        fp: &crate::pending::FourParty,
        question: &str,
    ) -> Option<String> {
        self.access_server_questions
            .as_ref()
            .and_then(|q| q.answer(account, &fp.access_server, question))
            .filter(|a| !a.trim().is_empty())
    }

    /// The claims the Access Server asks for, as far as this server releases them (never
    /// `sub`: the Access Server has the directed one).
    fn claims_for(
        &self,
        account: &str,
        fp: &crate::pending::FourParty,
        required: &[String],
    ) -> serde_json::Value {
        let names: Vec<String> = required.iter().filter(|n| *n != "sub").cloned().collect();
        let mut claims = self
            .claims
            .as_ref()
            .map(|c| {
                c.claims(&crate::ClaimsRequest::new(
                    account,
                    &names,
                    &fp.access_server,
                ))
            })
            .unwrap_or_default(); // default: without a claims source, no claims are released
        claims.remove("sub");
        serde_json::Value::Object(claims)
    }

    /// The Access Server's auth token, checked before the agent sees it (PS-53).
    async fn check_access_server_token(
        &self,
        token: &str,
        f: &Federated<'_>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        let unreachable = |what: String| PsError::AccessServerUnreachable(what);
        let (fp, resource, sub, scope, key, cap, allowed) =
            (f.fp, f.resource, f.sub, f.scope, f.key, f.cap, f.allowed);
        // PS-53: never hand the agent a token that fails these.
        let v = Validation::new(now).audience(resource);
        let t = verify::<AuthClaims>(token, &v, self.issuer_keys.as_ref())
            .await
            .map_err(|e| unreachable(format!("its auth token: {e}")))?;
        let c = &t.claims;
        let within = |granted: Option<&str>| {
            let offered: std::collections::BTreeSet<&str> =
                scope.unwrap_or_default().split(' ').collect(); // default: no scope offered is the empty scope
            granted.is_none_or(|g| g.split(' ').all(|v| offered.contains(v)))
        };
        let bad =
            if c.dwk != "aauth-access.json" {
                Some("dwk is not an Access Server's document")
            } else if c.iss != fp.access_server {
                Some("iss is not the Access Server")
            } else if c.ps != self.id {
                Some("ps is not this Person Server")
            } else if t
                .cnf_key
                .as_ref()
                .is_none_or(|k| k.thumbprint() != key.thumbprint())
            {
                Some("cnf.jwk is not the agent's key")
            } else if c.sub != sub {
                Some("sub is not the person's directed identifier")
            } else if !within(c.scope.as_deref()) {
                Some("scope is broader than the resource token's")
            } else if c.exp > cap {
                Some("exp is later than the presented token allows")
            } else if c.budget.as_ref().is_some_and(|b| {
                allowed.is_none_or(|a| !a.same_denomination(b) || b.amount > a.amount)
            }) {
                Some("budget exceeds what this Person Server allowed")
            } else {
                None
            };
        if let Some(why) = bad {
            return Err(unreachable(format!("its auth token: {why}")));
        }
        let budget = c.budget.clone();
        Ok((
            aauth_tokens::Minted::from_parts(token.to_owned(), c.jti.clone(), c.exp),
            budget,
        ))
    }

    /// An Access Server's auth token is recorded under the `jti` it chose, beside this
    /// server's own tokens (and revoked by it): one whose `jti` is already on record (a
    /// token this server issued and sent it, a revoked one, another Access Server's) is
    /// refused, never written over that record.
    pub(super) async fn unclaimed_jti(
        &self,
        minted: &aauth_tokens::Minted,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let jti = minted.jti.as_str();
        let taken = self.store.is_revoked(jti, now).await?
            || self.store.person_token(jti, now).await?.is_some()
            || self.store.auth_token(jti, now).await?.is_some();
        if taken {
            return Err(PsError::AccessServerUnreachable(
                "its auth token: its jti is on record for another token".to_owned(),
            ));
        }
        Ok(())
    }

    /// Switches an approved four-party request to waiting for the Access Server, and
    /// tells the agent what it needs (a link for the person, a question, or nothing).
    pub(super) async fn wait_for_access_server(
        &self,
        mut p: Pending,
        location: String,
        requirement: &str,
        question: Option<String>,
    ) -> http::Response<Bytes> {
        let resp = match self.park_at_access_server(&mut p, location, requirement, question) {
            Ok(r) => r,
            Err(e) => {
                p.state = PendingState::Done;
                return match self.save(&mut p).await {
                    Ok(()) => e.into_http_response(),
                    Err(se) => se.into_http_response(),
                };
            }
        };
        p.state = PendingState::Pending;
        match self.save(&mut p).await {
            Ok(()) => resp,
            Err(e) => e.into_http_response(),
        }
    }

    /// A request the Access Server holds, ended here before it is asked again: its
    /// presented token expired, the request expired, or a token it depends on revoked
    /// meanwhile (whatever the Access Server would now issue). `None` when it goes on.
    async fn ended_here(&self, p: &mut Pending, now: UnixTime) -> Option<http::Response<Bytes>> {
        let (outcome, answer, ended) = if p.presented_expired(now.as_secs()) {
            // PS-32: an expired presented token is never sent on (nor is the Access
            // Server polled for what it would issue with it).
            (
                "expired",
                PsError::ExpiredPresentedToken.into_http_response(),
                PendingState::Expired,
            )
        } else if now.as_secs() >= p.expires {
            (
                "expired",
                PollError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "expired",
                    "the person did not answer in time",
                )
                .response(),
                PendingState::Expired,
            )
        } else {
            match self.revoked_dependency(p, now).await {
                Ok(None) => return None,
                Ok(Some(which)) => (
                    "revoked",
                    PollError::new(StatusCode::FORBIDDEN, "revoked", which).response(),
                    PendingState::Done,
                ),
                Err(e) => return Some(e.into_http_response()),
            }
        };
        p.state = ended;
        Some(match self.save(p).await {
            Ok(()) => {
                super::defer::count_pending(outcome);
                answer
            }
            Err(e) => e.into_http_response(),
        })
    }

    /// A poll of a request the Access Server holds: ask it; its token (checked), its
    /// refusal (relayed, the request ended), or still `202`.
    pub(super) async fn poll_access_server(
        &self,
        mut p: Pending,
        now: UnixTime,
    ) -> http::Response<Bytes> {
        if let Some(ended) = self.ended_here(&mut p, now).await {
            return ended;
        }
        let key = match PublicKey::from_jwk(&p.key) {
            Ok(k) => k,
            Err(e) => {
                return PsError::from(aauth_metadata::serve::InternalError::unreadable(
                    "stored agent key",
                    e,
                ))
                .into_http_response();
            }
        };
        let Some(account) = p.account.clone() else {
            return PsError::from(aauth_metadata::serve::InternalError::Invariant(
                "a four-party request has its person",
            ))
            .into_http_response();
        };
        // The Access Server's question: forwarded once the agent (at this pending URL) or
        // the person (on the consent page) answered it here.
        let mut forwarding = false;
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &p.request
            && let Some((_, answer)) = &f.access_server_question
        {
            if answer.is_none() {
                return self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1);
            }
            forwarding = true;
        }
        let outcome = self
            .mint_auth(
                &p.request,
                super::tokens::Holder::of(&account),
                p.issued_to(),
                &key,
                p.agent_exp,
                now,
            )
            .await;
        if forwarding
            && let PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } = &mut p.request
        {
            f.access_server_question = None;
        }
        match outcome {
            Ok(json) => {
                p.state = PendingState::Done;
                match self.save(&mut p).await {
                    Ok(()) => {
                        super::defer::count_pending("delivered");
                        json_response(StatusCode::OK, &json)
                    }
                    Err(e) => e.into_http_response(),
                }
            }
            // Something new for the agent (a link, a question): tell it.
            Err(PsError::AccessServerInteraction {
                location,
                requirement,
                question,
            }) if question.is_some() || !requirement.is_empty() => {
                self.wait_for_access_server(p, location, &requirement, question)
                    .await
            }
            Err(PsError::AccessServerPending | PsError::AccessServerInteraction { .. }) => {
                if forwarding && let Err(e) = self.save(&mut p).await {
                    return e.into_http_response();
                }
                let mut r = json_response(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "status": "interacting" }),
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{}", p.id)) {
                    r.headers_mut().insert(http::header::LOCATION, v);
                }
                r
            }
            Err(e) => {
                p.state = PendingState::Done;
                match self.save(&mut p).await {
                    Ok(()) => {
                        super::defer::count_pending("failed");
                        e.into_http_response()
                    }
                    Err(se) => se.into_http_response(),
                }
            }
        }
    }
}

/// What a four-party token request asks the Access Server for, and what its answer must
/// satisfy.
pub(super) struct Federated<'a> {
    /// The request's four-party state.
    pub(super) fp: &'a crate::pending::FourParty,
    /// The resource (`aud`).
    pub(super) resource: &'a ServerId,
    /// The person's directed identifier at the resource.
    pub(super) sub: &'a str,
    /// The person's account here.
    pub(super) account: &'a str,
    /// The resource token's scope.
    pub(super) scope: Option<&'a str>,
    /// The agent's key (`cnf.jwk`).
    pub(super) key: &'a PublicKey,
    /// The latest `exp` the token may have.
    pub(super) cap: u64,
    /// The budget this server allows.
    pub(super) allowed: Option<&'a aauth_tokens::Budget>,
}

/// Waiting at the Access Server's pending URL `pending` with nothing for the agent to do
/// (a payment being confirmed): this server's pending URL then polls it.
fn waiting_at(pending: &HttpsUrl) -> PsError {
    PsError::AccessServerInteraction {
        location: pending.to_string(),
        requirement: String::new(),
        question: None,
    }
}

/// The body that answers a clarification.
fn clarification(answer: &str) -> serde_json::Value {
    serde_json::json!({
        "action": "clarification_response",
        "clarification_response": answer,
    })
}
