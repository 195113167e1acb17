//! Four-party access: asking an Access Server for an auth token on the agent's behalf, following its pending URL, relaying its questions and interaction, and parking the agent at this server's pending URL meanwhile.

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AuthClaims, ServerId, Validation, verify};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::PsError;
use crate::pending::{Pending, PendingRequest, PendingState};
use aauth_metadata::serve::json_response;

use super::defer::Hints;
use super::poll::PollError;
use super::verify::{Acting, AgentRequest};
use super::{Outcome, PENDING_PATH, PersonServer};

impl PersonServer {
    /// Four-party, when the Access Server needs the person (`requirement=interaction`:
    /// the agent gets the Access Server's link unchanged), an approval, a payment's
    /// confirmation, or an answer to its question (passed to the agent as this server's
    /// `requirement=clarification`): the agent polls this server's pending URL, whose
    /// polls poll (or answer) the Access Server's.
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    pub(super) async fn defer_to_access_server(
        &self,
        r: &AgentRequest,
        acting: &Acting,
        account: String,
        request: PendingRequest,
        (location, requirement, question): (String, String, Option<String>),
        capabilities: &[String],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
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
        let mut p = Self::pending_for(
            r,
            acting,
            Some(account),
            request,
            capabilities,
            &Hints::default(),
            now,
            self.pending_ttl,
        )?;
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
            f.as_pending = Some(location);
            f.as_question = question.clone().map(|q| (q, None));
        }
        Ok(match question {
            Some(_) => self.pending_response(p, StatusCode::ACCEPTED, "pending", 0),
            None => Self::as_pending_response(p, requirement),
        })
    }

    /// The `202` while the Access Server has the request: its requirement (if the agent
    /// has anything to do), our URL.
    pub(super) fn as_pending_response(p: &Pending, requirement: &str) -> http::Response<Bytes> {
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
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    pub(super) async fn federated(
        &self,
        fp: &crate::pending::FourParty,
        person: (&ServerId, &str, &str),
        scope: Option<&str>,
        key: &PublicKey,
        cap: u64,
        allowed: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        tokio::time::timeout(
            self.federation_timeout,
            self.federated_exchange(fp, person, scope, key, cap, allowed, now),
        )
        .await
        .map_err(|_| {
            PsError::AsUnreachable(format!(
                "no answer within {} ms",
                self.federation_timeout.as_millis()
            ))
        })?
    }

    /// [`PersonServer::federated`] without its deadline.
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    pub(super) async fn federated_exchange(
        &self,
        fp: &crate::pending::FourParty,
        (resource, sub, account): (&ServerId, &str, &str),
        scope: Option<&str>,
        key: &PublicKey,
        cap: u64,
        allowed: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        let transport = self
            .federation
            .as_ref()
            .ok_or_else(|| PsError::AsUnreachable("no federation configured".to_owned()))?;
        let unreachable = |what: String| PsError::AsUnreachable(what);
        let sign = (self.signer.as_ref(), self.kid.as_str());
        // Already waiting at the Access Server: forward the agent's answer to its
        // question, or poll.
        if let Some(location) = &fp.as_pending {
            let resp = match fp.as_question.as_ref().and_then(|(_, a)| a.as_ref()) {
                Some(answer) => {
                    crate::revocation::signed_post(
                        transport.as_ref(),
                        &self.id,
                        sign.0,
                        sign.1,
                        now,
                        location,
                        &serde_json::json!({
                            "action": "clarification_response",
                            "clarification_response": answer,
                        }),
                    )
                    .await
                }
                None => {
                    crate::revocation::signed_get(
                        transport.as_ref(),
                        &self.id,
                        sign.0,
                        sign.1,
                        now,
                        location,
                    )
                    .await
                }
            }
            .map_err(unreachable)?;
            let resp = self
                .follow(resp, fp, account, Some(location.clone()), now)
                .await?;
            return self
                .as_answer(resp, fp, (resource, sub), scope, key, cap, allowed, now)
                .await;
        }
        let doc: aauth_metadata::AccessServerMetadata = {
            let url = format!(
                "{}/.well-known/{}",
                fp.access_server.as_str(),
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
                &fp.access_server,
            )
            .map_err(|e| unreachable(format!("metadata: {e}")))?
        };
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
        if let Some(b) = allowed {
            body["budget"] = serde_json::to_value(b).map_err(|e| PsError::Server(e.to_string()))?;
        }
        let resp = crate::revocation::signed_post(
            transport.as_ref(),
            &self.id,
            sign.0,
            sign.1,
            now,
            doc.auth_token_endpoint.as_str(),
            &body,
        )
        .await
        .map_err(unreachable)?;
        let resp = self.follow(resp, fp, account, None, now).await?;
        self.as_answer(resp, fp, (resource, sub), scope, key, cap, allowed, now)
            .await
    }

    /// Follows the Access Server's deferred answers (draft -11 §AS Response) until one
    /// is final: claims this server answers itself; a `402` paid through the
    /// [`crate::PaymentSettler`] (or relayed as a refusal without one) and then polled;
    /// a clarification passed to the agent, and an interaction or approval the agent
    /// waits for, as [`PsError::AsInteraction`] (this server's pending URL then polls
    /// the Access Server's). `waiting` is the Access Server's pending URL when this is a
    /// poll of it: a `202` or `402` without anything new is then [`PsError::AsPending`].
    pub(super) async fn follow(
        &self,
        mut resp: http::Response<Bytes>,
        fp: &crate::pending::FourParty,
        account: &str,
        waiting: Option<String>,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        let unreachable = |what: String| PsError::AsUnreachable(what);
        let Some(transport) = self.federation.as_ref() else {
            return Err(unreachable("no federation configured".to_owned()));
        };
        let mut polling = waiting.is_some();
        // Steps compose (payment, then interaction, then claims…): a few per exchange.
        for _ in 0..4 {
            let status = resp.status();
            if status != StatusCode::ACCEPTED && status != StatusCode::PAYMENT_REQUIRED {
                return Ok(resp);
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            // On the Access Server's own origin only; a poll may omit it.
            let location = header("location");
            let target = if location.starts_with('/') && !location.starts_with("//") {
                format!("{}{location}", fp.access_server.as_str())
            } else if location.starts_with(&format!("{}/", fp.access_server.as_str())) {
                location
            } else if let Some(w) = waiting.as_ref().filter(|_| location.is_empty()) {
                w.clone()
            } else {
                return Err(unreachable(
                    "a deferred answer without a Location on the Access Server".to_owned(),
                ));
            };
            let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
            if status == StatusCode::PAYMENT_REQUIRED {
                if polling {
                    // Paid; the Access Server has not confirmed it yet.
                    return Err(if waiting.is_some() {
                        PsError::AsPending
                    } else {
                        PsError::AsInteraction {
                            location: target,
                            requirement: String::new(),
                            question: None,
                        }
                    });
                }
                let Some(settler) = self.payments.as_ref() else {
                    return Err(PsError::AsRefused {
                        status: 402,
                        error: "payment_required".to_owned(),
                        detail:
                            "the Access Server requires payment and this Person Server settles none"
                                .to_owned(),
                    });
                };
                settler
                    .settle(&fp.access_server, &header("www-authenticate"))
                    .await
                    .map_err(|why| PsError::AsRefused {
                        status: 402,
                        error: "payment_required".to_owned(),
                        detail: why.chars().take(500).collect(),
                    })?;
                polling = true;
                resp = crate::revocation::signed_get(
                    transport.as_ref(),
                    &self.id,
                    self.signer.as_ref(),
                    &self.kid,
                    now,
                    &target,
                )
                .await
                .map_err(unreachable)?;
                continue;
            }
            let requirement = header("aauth-requirement");
            if requirement.starts_with("requirement=clarification") {
                let question = json["clarification"]
                    .as_str()
                    .filter(|q| !q.trim().is_empty() && q.len() <= 4000)
                    .ok_or_else(|| unreachable("a clarification without a question".to_owned()))?;
                // This server answers what it knows; the rest goes to the agent.
                if let Some(answer) = self
                    .as_questions
                    .as_ref()
                    .and_then(|q| q.answer(account, &fp.access_server, question))
                    .filter(|a| !a.trim().is_empty())
                {
                    resp = crate::revocation::signed_post(
                        transport.as_ref(),
                        &self.id,
                        self.signer.as_ref(),
                        &self.kid,
                        now,
                        &target,
                        &serde_json::json!({
                            "action": "clarification_response",
                            "clarification_response": answer,
                        }),
                    )
                    .await
                    .map_err(unreachable)?;
                    continue;
                }
                return Err(PsError::AsInteraction {
                    location: target,
                    requirement,
                    question: Some(question.to_owned()),
                });
            }
            if requirement.starts_with("requirement=interaction")
                || requirement.starts_with("requirement=approval")
            {
                // The person must go to the Access Server (the agent is given its link),
                // or someone approves out of band (the agent waits): either way the
                // agent polls this server, which polls the Access Server.
                return Err(PsError::AsInteraction {
                    location: target,
                    requirement,
                    question: None,
                });
            }
            if !requirement.starts_with("requirement=claims") {
                if waiting.is_some() {
                    // Still with the person or the approver.
                    return Err(PsError::AsPending);
                }
                return Err(unreachable(format!(
                    "the Access Server's {requirement:?} is not relayed by this Person Server"
                )));
            }
            let names: Vec<String> = json["required_claims"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .filter(|n| n != "sub")
                        .collect()
                })
                .unwrap_or_default();
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
                .unwrap_or_default();
            claims.remove("sub");
            resp = crate::revocation::signed_post(
                transport.as_ref(),
                &self.id,
                self.signer.as_ref(),
                &self.kid,
                now,
                &target,
                &serde_json::Value::Object(claims),
            )
            .await
            .map_err(unreachable)?;
        }
        Err(unreachable(
            "the Access Server asked for more steps than this Person Server follows".to_owned(),
        ))
    }

    /// The Access Server's final answer: relayed refusal, or its token checked (PS-53).
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    pub(super) async fn as_answer(
        &self,
        resp: http::Response<Bytes>,
        fp: &crate::pending::FourParty,
        (resource, sub): (&ServerId, &str),
        scope: Option<&str>,
        key: &PublicKey,
        cap: u64,
        allowed: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        let unreachable = |what: String| PsError::AsUnreachable(what);
        let status = resp.status();
        let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        if status.is_client_error() {
            // PS-54: the Access Server's terminal refusal, relayed.
            return Err(PsError::AsRefused {
                status: status.as_u16(),
                error: json["error"]
                    .as_str()
                    .filter(|e| !e.is_empty() && e.len() <= 64)
                    .unwrap_or("denied")
                    .to_owned(),
                detail: json["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        if status != StatusCode::OK {
            return Err(unreachable(format!("the Access Server answered {status}")));
        }
        let token = json["auth_token"]
            .as_str()
            .ok_or_else(|| unreachable("no auth_token in the answer".to_owned()))?;
        // PS-53: never hand the agent a token that fails these.
        let v = Validation::new(now).audience(resource);
        let t = verify::<AuthClaims>(token, &v, self.issuer_keys.as_ref())
            .await
            .map_err(|e| unreachable(format!("its auth token: {e}")))?;
        let c = &t.claims;
        let within = |granted: Option<&str>| {
            let offered: std::collections::BTreeSet<&str> =
                scope.unwrap_or_default().split(' ').collect();
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
                    Ok(()) => e.into_response(),
                    Err(se) => se.into_response(),
                };
            }
        };
        p.state = PendingState::Pending;
        match self.save(&mut p).await {
            Ok(()) => resp,
            Err(e) => e.into_response(),
        }
    }

    /// A poll of a request the Access Server holds: ask it; its token (checked), its
    /// refusal (relayed, the request ended), or still `202`.
    pub(super) async fn poll_access_server(
        &self,
        mut p: Pending,
        now: UnixTime,
    ) -> http::Response<Bytes> {
        if now.as_secs() >= p.expires {
            p.state = PendingState::Done;
            return match self.save(&mut p).await {
                Ok(()) => PollError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "expired",
                    "the person did not answer in time",
                )
                .response(),
                Err(e) => e.into_response(),
            };
        }
        let key = match PublicKey::from_jwk(&p.key) {
            Ok(k) => k,
            Err(e) => return PsError::Server(e.to_string()).into_response(),
        };
        let Some(account) = p.account.clone() else {
            return PsError::Server("a four-party request without its person".to_owned())
                .into_response();
        };
        // The Access Server's question: forwarded once the agent (at this pending URL) or
        // the person (on the consent page) answered it here.
        let mut forwarding = false;
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &p.request
            && let Some((_, answer)) = &f.as_question
        {
            if answer.is_none() {
                return self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1);
            }
            forwarding = true;
        }
        let outcome = self
            .mint_auth(&p.request, &account, &key, p.agent_exp, now)
            .await;
        if forwarding
            && let PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } = &mut p.request
        {
            f.as_question = None;
        }
        match outcome {
            Ok(json) => {
                p.state = PendingState::Done;
                match self.save(&mut p).await {
                    Ok(()) => json_response(StatusCode::OK, &json),
                    Err(e) => e.into_response(),
                }
            }
            // Something new for the agent (a link, a question): tell it.
            Err(PsError::AsInteraction {
                location,
                requirement,
                question,
            }) if question.is_some() || !requirement.is_empty() => {
                self.wait_for_access_server(p, location, &requirement, question)
                    .await
            }
            Err(PsError::AsPending | PsError::AsInteraction { .. }) => {
                if forwarding && let Err(e) = self.save(&mut p).await {
                    return e.into_response();
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
                    Ok(()) => e.into_response(),
                    Err(se) => se.into_response(),
                }
            }
        }
    }
}
