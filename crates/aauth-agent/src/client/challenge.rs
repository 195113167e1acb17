//! Answering a `401`: the requirement it carries, or the signature error (a fresh token,
//! a corrected clock, the components the resource requires).

use super::*;

/// The Person Server's auth-token errors the agent recovers from by itself (checklist
/// AG-61): a presented token that expired or was revoked (a fresh person token, then a
/// fresh resource token), a resource token that expired or was revoked (a fresh one), and
/// an Access Server that could not be reached (once more, after a pause).
const RECOVERABLE: [&str; 5] = [
    "expired_presented_token",
    "revoked_presented_token",
    "expired_resource_token",
    "revoked_resource_token",
    "as_unreachable",
];

/// The most seconds a server's `Date` may move this agent's `created` back (AG-60).
pub(super) const MAX_SKEW_CORRECTION: u64 = 300;

/// The servers whose clock corrections are kept at once.
const MAX_SKEW_SERVERS: usize = 1024;

/// The servers whose required components are kept at once.
const MAX_REQUIRING_SERVERS: usize = 1024;

/// How long the agent waits before asking again after `as_unreachable`.
const AS_UNREACHABLE_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

impl AAuthClient {
    /// Prepares the retry after a recoverable refusal (`RECOVERABLE`): the presented
    /// token is forgotten (so the resource is called with a fresh one and answers with a
    /// fresh resource token), or the agent pauses before asking again.
    async fn recover(
        &self,
        resource: &ServerId,
        presented: &Credential,
        error: &str,
        call: &mut Call,
    ) {
        match error {
            "expired_presented_token" | "revoked_presented_token" => {
                call.obtained = None;
                call.refused = Some(Arc::clone(&presented.token));
                self.config
                    .cache
                    .forget(resource, self.mission(), presented.kind);
                if presented.kind == TokenKind::Auth {
                    // A step-up presented the auth token: start again from the person.
                    self.config
                        .cache
                        .forget(resource, self.mission(), TokenKind::Person);
                }
            }
            "as_unreachable" => tokio::time::sleep(AS_UNREACHABLE_PAUSE).await,
            // The resource issues a fresh resource token on the next call.
            _ => {}
        }
    }

    /// Acts on a `401`: `true` when it was answered and the request should be retried,
    /// `false` when it carries neither a requirement nor a signature error.
    pub(super) async fn answer_401(
        &self,
        resp: &http::Response<Bytes>,
        resource: &ServerId,
        cred: &Credential,
        call: &mut Call,
    ) -> Result<bool, AgentError> {
        if let Some(requirement) = requirement(resp)? {
            self.answer_requirement(resp, requirement, resource, cred, call)
                .await?;
            return Ok(true);
        }
        match signature_error_header(resp) {
            Some(error) => {
                self.answer_signature_error(resp, error, resource, cred, call)
                    .await
            }
            None => Ok(false),
        }
    }

    /// A `401` with `AAuth-Requirement`: the token it asks for, obtained or chosen.
    pub(super) async fn answer_requirement(
        &self,
        resp: &http::Response<Bytes>,
        requirement: Requirement,
        resource: &ServerId,
        cred: &Credential,
        call: &mut Call,
    ) -> Result<(), AgentError> {
        match requirement {
            Requirement::AgentToken => {
                once(&mut call.answered, "agent-token")?;
                if cred.kind == TokenKind::Agent {
                    return Err(AgentError::Unsatisfiable {
                        requirement: "agent-token".to_owned(),
                        reason: "the agent token was presented".to_owned(),
                    });
                }
                // This route wants the agent token; the cached tokens stay for the
                // routes that want them.
                call.agent_only = true;
            }
            Requirement::PersonToken => {
                once(&mut call.answered, "person-token")?;
                // The token presented is not what this route takes: not presented again
                // in this call. Refused as revoked or expired (a `Signature-Error` beside
                // the requirement, RS-43), it is dropped with the person token it came
                // from (AG-60: a fresh person token); otherwise it is kept for the routes
                // that take it, and a person token already held is presented next.
                let refused = signature_error_header(resp).is_some();
                if refused && cred.kind == TokenKind::Auth {
                    for kind in [TokenKind::Auth, TokenKind::Person] {
                        self.config.cache.forget(resource, self.mission(), kind);
                    }
                }
                let held = match cred.kind {
                    TokenKind::Auth if !refused => self.config.cache.get(
                        resource,
                        self.mission(),
                        TokenKind::Person,
                        &self.jkt(),
                        self.now(),
                    ),
                    _ => None,
                };
                if cred.kind != TokenKind::Agent {
                    call.refused = Some(Arc::clone(&cred.token));
                }
                call.obtained = match held {
                    Some(person) => Some(person),
                    None => Some(self.obtain_person(resource).await?),
                };
            }
            Requirement::AuthToken { resource_token } => {
                once(&mut call.answered, "auth-token")?;
                match self.obtain_auth(resource, cred, &resource_token).await {
                    Ok(token) => call.obtained = Some(token),
                    Err(AgentError::PersonServer { error, .. })
                        if RECOVERABLE.contains(&error.as_str()) =>
                    {
                        // AG-61, once per call: then the challenge may come again.
                        once(&mut call.answered, "auth-token recovery")?;
                        call.answered.remove("auth-token");
                        call.answered.remove("person-token");
                        self.recover(resource, cred, &error, call).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            other => {
                return Err(AgentError::Unsatisfiable {
                    requirement: format!("{other:?}"),
                    reason: "not a requirement a 401 carries".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// A `401` with `Signature-Error` alone: `true` when the agent can sign again
    /// differently (more components, a fresh token, a corrected clock).
    pub(super) async fn answer_signature_error(
        &self,
        resp: &http::Response<Bytes>,
        error: SignatureErrorHeader,
        resource: &ServerId,
        cred: &Credential,
        call: &mut Call,
    ) -> Result<bool, AgentError> {
        match error.code {
            // Draft -11 §Covered Components: a resource may require more than the profile;
            // the agent learns it here and signs again, once, covering it from now on.
            ErrorCode::InvalidInput => {
                once(&mut call.answered, "invalid_input")?;
                let asked = error.required_input.unwrap_or_default(); // default: none named, nothing to add
                if self.require(resource, &asked) {
                    Ok(true)
                } else {
                    Err(AgentError::SignatureRefused {
                        code: ErrorCode::InvalidInput.as_str().to_owned(),
                    })
                }
            }
            ErrorCode::RevokedJwt | ErrorCode::ExpiredJwt => {
                once(&mut call.answered, "refresh")?;
                match cred.kind {
                    TokenKind::Agent => {
                        self.config.agent.refresh(self.now(), &cred.token).await?;
                    }
                    kind => {
                        call.obtained = None;
                        call.refused = Some(Arc::clone(&cred.token));
                        // AG-60: a revoked auth token calls for a fresh person token.
                        self.config.cache.forget(resource, self.mission(), kind);
                        if kind == TokenKind::Auth {
                            self.config
                                .cache
                                .forget(resource, self.mission(), TokenKind::Person);
                        }
                    }
                }
                Ok(true)
            }
            ErrorCode::ClockSkew => {
                once(&mut call.answered, "clock_skew")?;
                if self.correct_skew(resp, resource) {
                    Ok(true)
                } else {
                    Err(AgentError::ClockSkew)
                }
            }
            other => Err(AgentError::SignatureRefused {
                code: other.as_str().to_owned(),
            }),
        }
    }

    /// AG-60 `clock_skew`: when the response's `Date` shows this agent's clock ahead of
    /// `resource`'s, later requests to that resource (and only to it) are dated by its
    /// clock; when it no longer does, the correction is dropped. At most
    /// [`MAX_SKEW_CORRECTION`] is corrected: a server claiming a date further back is
    /// wrong or hostile, and the agent's clock is not moved for it. A token whose `iat`
    /// is ahead cannot be corrected this way (a fresh one has the same skew).
    pub(super) fn correct_skew(&self, resp: &http::Response<Bytes>, resource: &ServerId) -> bool {
        let Some(server) = resp
            .headers()
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        else {
            return false;
        };
        let ours = self.config.clock.now().as_secs();
        let ahead = ours.saturating_sub(server.as_secs());
        if ahead > MAX_SKEW_CORRECTION {
            return false;
        }
        let mut map = self
            .config
            .ahead_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.get(resource).copied().unwrap_or(0) == ahead {
            // Nothing to correct (or corrected already): the refusal stands.
            return false;
        }
        if ahead == 0 {
            map.remove(resource);
        } else {
            if map.len() >= MAX_SKEW_SERVERS && !map.contains_key(resource) {
                // Bounded: many servers' corrections are measured again when needed.
                map.clear();
            }
            map.insert(resource.clone(), ahead);
        }
        true
    }

    /// The components `resource` asked to be covered.
    pub(super) fn required_by(&self, resource: &ServerId) -> Vec<String> {
        self.config
            .required_input
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource)
            .cloned()
            .unwrap_or_default() // default: a resource that asked nothing needs nothing more
    }

    /// Remembers that `resource` requires `components` (at most 16, each at most 64
    /// bytes: a resource cannot grow this without bound); whether any was new. The
    /// profile's components are covered always, and `content-type` and `content-digest`
    /// whenever a request has a body, so they are not remembered: a later request without
    /// a body cannot cover them, and a list that names them again needs nothing new. A
    /// resource is entered only when something is learnt for it, and at most
    /// [`MAX_REQUIRING_SERVERS`] are kept (past it the table starts again: each resource
    /// asks again when it needs to).
    pub(super) fn require(&self, resource: &ServerId, components: &[String]) -> bool {
        let mut map = self
            .config
            .required_input
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut known = map.get(resource).cloned().unwrap_or_default(); // default: nothing learnt yet
        let before = known.len();
        let always = |c: &str| {
            aauth_signing::REQUIRED_COMPONENTS.contains(&c)
                || c == "content-type"
                || c == "content-digest"
        };
        for c in components {
            if known.len() < 16 && c.len() <= 64 && !known.contains(c) && !always(c) {
                known.push(c.clone());
            }
        }
        if known.len() == before {
            return false;
        }
        if map.len() >= MAX_REQUIRING_SERVERS && !map.contains_key(resource) {
            // Bounded, as the clock corrections are.
            map.clear();
        }
        map.insert(resource.clone(), known);
        true
    }
}

/// Marks `what` answered in this call; answering it twice is
/// [`AgentError::Unsatisfiable`] (the server asked again after it was answered).
fn once(answered: &mut BTreeSet<&'static str>, what: &'static str) -> Result<(), AgentError> {
    if answered.insert(what) {
        Ok(())
    } else {
        Err(AgentError::Unsatisfiable {
            requirement: what.to_owned(),
            reason: "asked again after it was answered".to_owned(),
        })
    }
}

#[cfg(feature = "oauth")]
impl AAuthClient {
    /// A `401` that offers only OAuth (`WWW-Authenticate: Bearer`, no `AAuth-Requirement`)
    /// from one of the fallback's APIs: the request again, unsigned, with the fallback's
    /// token (and again as `aauth_oauth::Presenter` says, at most twice more); `None`
    /// when there is no fallback, `resource` is not one of its APIs, or the resource
    /// offers something else.
    pub(super) async fn bearer_fallback(
        &self,
        resource: &ServerId,
        parts: &Parts,
        body: &Bytes,
        resp: &http::Response<Bytes>,
    ) -> Result<Option<http::Response<Bytes>>, AgentError> {
        let Some((tokens, apis)) = &self.config.oauth else {
            return Ok(None);
        };
        if !apis.contains(resource) {
            return Ok(None);
        }
        let bearer_only = !resp.headers().contains_key(names::AAUTH_REQUIREMENT)
            && resp
                .headers()
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .any(|v| {
                    v.as_bytes()
                        .get(..6)
                        .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
                });
        if !bearer_only {
            return Ok(None);
        }
        // As `BearerLayer` does: the API's `DPoP-Nonce` learned, the request sent once
        // more with it on `use_dpop_nonce`, and once more with a new token on
        // `invalid_token` (the refused one dropped).
        let mut presenter = aauth_oauth::Presenter::new(Arc::clone(tokens));
        loop {
            let mut req = http::Request::from_parts(clone_parts(parts), body.clone());
            presenter
                .present(&mut req)
                .await
                .map_err(|e| AgentError::OAuth {
                    code: e.code().to_owned(),
                    reason: e.to_string(),
                })?;
            let resp = self.transport.send(req).await?;
            if !presenter.again(&resp) {
                return Ok(Some(resp));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aauth_keys::PrivateKey;
    use aauth_tokens::{AgentId, ServerId};
    use async_trait::async_trait;
    use bytes::Bytes;

    use super::MAX_REQUIRING_SERVERS;
    use crate::{AAuthClient, Agent, AgentProvider, Transport, TransportError};

    /// A transport that reaches nothing (the tests here send nothing).
    struct Nowhere;

    #[async_trait]
    impl Transport for Nowhere {
        async fn send(
            &self,
            _: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, TransportError> {
            Err(TransportError::new("nowhere"))
        }
    }

    fn client() -> AAuthClient {
        let provider = Arc::new(
            AgentProvider::new(
                ServerId::parse("https://agent.example").unwrap(),
                Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
                "key-1",
            )
            .unwrap(),
        );
        let id = AgentId::parse("aauth:assistant@agent.example").unwrap();
        let key = Arc::new(PrivateKey::ed25519_from_seed(&[2; 32]));
        provider.enroll(&id, key.public_key(), None).unwrap();
        AAuthClient::builder(Arc::new(Agent::new(id, key, provider))).build(Arc::new(Nowhere))
    }

    fn server(i: usize) -> ServerId {
        ServerId::parse(&format!("https://r{i}.example")).unwrap()
    }

    fn servers_kept(client: &AAuthClient) -> usize {
        client.config.required_input.lock().unwrap().len()
    }

    #[test]
    fn only_resources_that_taught_something_are_kept_and_at_most_the_bound() {
        let c = client();
        // `invalid_input` naming nothing new: nothing to remember, no entry.
        let nothing = ["content-digest".to_owned(), "@method".to_owned()];
        for i in 0..2 * MAX_REQUIRING_SERVERS {
            assert!(!c.require(&server(i), &nothing));
            assert!(!c.require(&server(i), &[]));
        }
        assert_eq!(servers_kept(&c), 0);
        let custom = ["x-tenant".to_owned()];
        for i in 0..2 * MAX_REQUIRING_SERVERS {
            assert!(c.require(&server(i), &custom));
            assert!(servers_kept(&c) <= MAX_REQUIRING_SERVERS);
        }
        // The latest is still known, and nothing new for it is nothing new.
        let last = server(2 * MAX_REQUIRING_SERVERS - 1);
        assert_eq!(c.required_by(&last), custom);
        assert!(!c.require(&last, &custom));
    }
}
