//! Authorization up front (draft -11 §Authorization Endpoint Responses): the resource's
//! `authorization_endpoint`, and the two answers it may give.

use super::*;

impl AAuthClient {
    /// Asks `resource` for access up front (draft -11 §8.1, phase 10): discovers its
    /// `authorization_endpoint`, posts `{"scope", "account"?}` signed with a person token
    /// (obtained from the Person Server if none is cached), checks the resource token it
    /// answers (AG-22), exchanges it for an auth token and caches that, so the calls that
    /// follow go out with it at once. A `401` is answered as [`AAuthClient::send`] answers
    /// one (AG-60): a new person token only for `revoked_jwt`, `expired_jwt` or
    /// `requirement=person-token`.
    ///
    /// # Errors
    ///
    /// [`AgentError::Refused`] with the resource's error (`invalid_scope`,
    /// `invalid_account`, …), [`AgentError::NotAServer`] when the resource declares no
    /// authorization endpoint, or as the steps it takes.
    pub async fn authorize(
        &self,
        resource: &ServerId,
        scope: &str,
        account: Option<&str>,
    ) -> Result<(), AgentError> {
        let endpoint = self.authorization_endpoint(resource).await?;
        let mut body = serde_json::json!({ "scope": scope });
        if let Some(a) = account {
            body["account"] = a.into();
        }
        let body = Bytes::from(body.to_string());
        let (parts, ()) = http::Request::post(endpoint.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(())
            .map_err(AgentError::transport)?
            .into_parts();
        let mut call = Call::default();
        for _ in 0..self.config.max_rounds {
            let cred = self.authorizing_credential(resource, &mut call).await?;
            let resp = self.send_signed(&parts, &body, &cred, resource).await?;
            match resp.status() {
                StatusCode::OK => return self.authorized(resource, &cred, &resp).await,
                // Agents MUST handle a 202 whatever the request (draft -11 §Deferred
                // Responses): the resource may ask the person first.
                StatusCode::ACCEPTED => {
                    let done = self.deferred(&parts, resource, resp, call).await?;
                    return self.authorized(resource, &cred, &done).await;
                }
                StatusCode::UNAUTHORIZED
                    if self
                        .answer_authorization_401(&resp, resource, &cred, &mut call)
                        .await? => {}
                s => {
                    return Err(AgentError::Refused {
                        status: s,
                        error: problem_error(resp.body()),
                    });
                }
            }
        }
        Err(AgentError::TooManyRounds {
            rounds: self.config.max_rounds,
        })
    }

    /// The person token an authorization request is signed with: the one this call
    /// obtained (presented even inside the refresh margin), a cached one the resource has
    /// not refused, or a new one from the Person Server.
    async fn authorizing_credential(
        &self,
        resource: &ServerId,
        call: &mut Call,
    ) -> Result<Credential, AgentError> {
        let jkt = self.jkt();
        let now = self.now();
        let usable = |t: &CachedToken| call.refused.as_deref() != Some(&*t.token);
        let held = call
            .obtained
            .clone()
            .filter(|t| t.kind == TokenKind::Person && t.jkt == jkt && t.exp > now.as_secs())
            .or_else(|| {
                self.config
                    .cache
                    .get(resource, self.mission(), TokenKind::Person, &jkt, now)
            })
            .filter(usable);
        let person = match held {
            Some(t) => t,
            None => {
                let t = self.obtain_person(resource).await?;
                call.obtained = Some(t.clone());
                t
            }
        };
        Ok(Credential {
            kind: TokenKind::Person,
            token: Arc::clone(&person.token),
            held: Some(person),
        })
    }

    /// A `401` from the authorization endpoint, answered as [`AAuthClient::send`] answers
    /// one (AG-60): `Signature-Error` read first (`clock_skew` corrected from `Date` with
    /// the same person token, `invalid_input` learnt, `revoked_jwt`/`expired_jwt` a fresh
    /// person token), `requirement=person-token` a fresh person token; `true` when the
    /// request should be sent again. Any other requirement is not one this endpoint makes.
    async fn answer_authorization_401(
        &self,
        resp: &http::Response<Bytes>,
        resource: &ServerId,
        cred: &Credential,
        call: &mut Call,
    ) -> Result<bool, AgentError> {
        if matches!(requirement(resp)?, Some(r) if !matches!(r, Requirement::PersonToken)) {
            return Ok(false);
        }
        self.answer_401(resp, resource, cred, call).await
    }

    /// The end of an authorization request (draft -11 §Authorization Endpoint Responses):
    /// a resource token, exchanged for an auth token; or `{"status": "authorized"}`, the
    /// resource having authorized the agent itself (a session it grants in `AAuth-Access`
    /// is already cached by [`AAuthClient::send_signed`]).
    async fn authorized(
        &self,
        resource: &ServerId,
        cred: &Credential,
        resp: &http::Response<Bytes>,
    ) -> Result<(), AgentError> {
        if resp.status() != StatusCode::OK {
            return Err(AgentError::Refused {
                status: resp.status(),
                error: problem_error(resp.body()),
            });
        }
        #[derive(Deserialize)]
        struct Answer {
            resource_token: Option<String>,
            status: Option<String>,
        }
        let unreadable = |why: String| AgentError::Refused {
            status: resp.status(),
            error: format!("unreadable answer: {why}"),
        };
        let answer: Answer =
            serde_json::from_slice(resp.body()).map_err(|e| unreadable(e.to_string()))?;
        match (answer.resource_token, answer.status.as_deref()) {
            (Some(rt), _) => self.obtain_auth(resource, cred, &rt).await.map(drop),
            (None, Some("authorized")) => Ok(()),
            _ => Err(unreadable(
                "neither a resource_token nor status \"authorized\"".to_owned(),
            )),
        }
    }

    /// The resource's `authorization_endpoint`, from its metadata document.
    async fn authorization_endpoint(&self, resource: &ServerId) -> Result<String, AgentError> {
        self.resource_metadata(resource)
            .await?
            .authorization_endpoint
            .map(|u| u.as_str().to_owned())
            .ok_or_else(|| AgentError::NotAServer {
                uri: resource.as_str().to_owned(),
                reason: "it declares no authorization_endpoint".to_owned(),
            })
    }

    /// `resource`'s metadata document, its `issuer` checked.
    async fn resource_metadata(
        &self,
        resource: &ServerId,
    ) -> Result<aauth_metadata::ResourceMetadata, AgentError> {
        use aauth_metadata::MetadataDocument;
        let url = format!(
            "{}/.well-known/{}",
            resource.as_str(),
            aauth_metadata::ResourceMetadata::DWK
        );
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(AgentError::transport)?;
        let resp = self.transport.send(req).await?;
        let not_declared = |reason: String| AgentError::NotAServer {
            uri: resource.as_str().to_owned(),
            reason,
        };
        if resp.status() != StatusCode::OK {
            return Err(not_declared(format!(
                "its metadata answered {}",
                resp.status()
            )));
        }
        aauth_metadata::ResourceMetadata::parse_for(resp.body(), resource)
            .map_err(|e| not_declared(format!("metadata: {e}")))
    }

    /// The resource a page links to with `rel="aauth-resource"` (checklist AG-03: a `Link`
    /// header field or an HTML `<link>`), and its metadata document, its `issuer` checked.
    /// Only a link to `{server identifier}/.well-known/aauth-resource.json` is followed.
    /// The checklist asks the agent to record where it found the link: that is `page`,
    /// which the caller holds.
    ///
    /// # Errors
    ///
    /// [`AgentError::NotAServer`] when the page names no resource, or as the fetches.
    pub async fn resource_linked_from(
        &self,
        page: &str,
    ) -> Result<(ServerId, aauth_metadata::ResourceMetadata), AgentError> {
        let req = http::Request::get(page)
            .header(http::header::ACCEPT, "text/html")
            .body(Bytes::new())
            .map_err(AgentError::transport)?;
        let resp = self.transport.send(req).await?;
        let from_header = resp
            .headers()
            .get_all(http::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(aauth_metadata::link::from_link_header);
        let resource = from_header
            .or_else(|| {
                std::str::from_utf8(resp.body())
                    .ok()
                    .and_then(aauth_metadata::link::from_html)
            })
            .ok_or_else(|| AgentError::NotAServer {
                uri: page.chars().take(200).collect(),
                reason: "the page names no aauth-resource metadata document".to_owned(),
            })?;
        let doc = self.resource_metadata(&resource).await?;
        Ok((resource, doc))
    }
}
