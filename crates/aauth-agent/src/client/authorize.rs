//! Authorization up front (draft -11 §Authorization Endpoint Responses): the resource's
//! `authorization_endpoint`, and the two answers it may give.

use super::*;

impl AAuthClient {
    /// Asks `resource` for access up front (draft -11 §8.1, phase 10): discovers its
    /// `authorization_endpoint`, posts `{"scope", "account"?}` signed with a person token
    /// (obtained from the Person Server if none is cached), checks the resource token it
    /// answers (AG-22), exchanges it for an auth token and caches that, so the calls that
    /// follow go out with it at once.
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
        let mut refreshed = false;
        loop {
            let jkt = self.jkt();
            let now = self.now();
            let cached =
                self.config
                    .cache
                    .get(resource, self.mission(), TokenKind::Person, &jkt, now);
            // A token just obtained is presented even inside the refresh margin.
            let person = match cached {
                Some(t) => t,
                None => self.obtain_person(resource).await?,
            };
            let cred = Credential {
                kind: TokenKind::Person,
                token: Arc::clone(&person.token),
                held: Some(person),
            };
            let resp = self.send_signed(&parts, &body, &cred, resource).await?;
            match resp.status() {
                StatusCode::OK => return self.authorized(resource, &cred, &resp).await,
                // Agents MUST handle a 202 whatever the request (draft -11 §Deferred
                // Responses): the resource may ask the person first.
                StatusCode::ACCEPTED => {
                    let done = self
                        .deferred(&parts, resource, resp, Call::default())
                        .await?;
                    return self.authorized(resource, &cred, &done).await;
                }
                // The person token was refused (revoked, expired): one fresh one.
                StatusCode::UNAUTHORIZED if !refreshed => {
                    refreshed = true;
                    self.config
                        .cache
                        .forget(resource, self.mission(), TokenKind::Person);
                }
                s => {
                    return Err(AgentError::Refused {
                        status: s,
                        error: problem_error(resp.body()),
                    });
                }
            }
        }
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
