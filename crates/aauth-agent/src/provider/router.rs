//! The provider's route table and its one dispatch: the published documents, then the
//! two token endpoints, each verified by its own verifier before it runs.

use aauth_keys::time::UnixTime;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, request::Parts};

use super::{AGENT_TOKEN_PATH, AgentProvider, ProviderError, SUBAGENT_TOKEN_PATH};

/// The provider's endpoints (beside its published documents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// [`AGENT_TOKEN_PATH`]: signed with an enrolled key.
    AgentToken,
    /// [`SUBAGENT_TOKEN_PATH`]: signed under the parent's agent token.
    SubagentToken,
}

impl Route {
    /// The endpoint `path` names, if any.
    pub(super) fn of(path: &str) -> Option<Self> {
        match path {
            AGENT_TOKEN_PATH => Some(Self::AgentToken),
            SUBAGENT_TOKEN_PATH => Some(Self::SubagentToken),
            _ => None,
        }
    }
}

impl AgentProvider {
    /// Answers a request to the provider: its published documents, [`AGENT_TOKEN_PATH`]
    /// and [`SUBAGENT_TOKEN_PATH`]; `None` for any other path.
    pub async fn handle(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Option<Response<Bytes>> {
        let path = parts.uri.path();
        if let Some(resp) = self.published.respond_at(&parts.method, path, now) {
            return Some(resp);
        }
        let route = Route::of(path)?;
        if parts.method != Method::POST {
            let mut r = Response::new(Bytes::new());
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return Some(r);
        }
        Some(self.dispatch(route, parts, body, now).await)
    }

    /// Verifies the request as `route` requires, then runs the endpoint.
    async fn dispatch(
        &self,
        route: Route,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Response<Bytes> {
        let verifier = match route {
            Route::AgentToken => &self.enrolled_keys,
            Route::SubagentToken => &self.own_tokens,
        };
        let verified = match verifier.verify(parts, body, now).await {
            Ok(v) => v,
            // A key enrolled for no agent, refused before it was verified or recorded:
            // the same answer as a key not enrolled for the agent the body names.
            Err(aauth_signing::VerifyError::SignerNotAdmitted { signer }) => {
                return ProviderError::NotEnrolled { agent: signer }.into_http_response();
            }
            Err(error) => {
                return error.into_http_response(verifier.policy()).map(Bytes::from);
            }
        };
        let minted = match route {
            Route::AgentToken => self.token_request(&verified, body, now),
            Route::SubagentToken => self.subagent_request(&verified, body, now),
        };
        match minted {
            Ok(minted) => aauth_metadata::serve::json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "agent_token": minted.token,
                    "expires_in": minted.expires_in(now),
                }),
            ),
            Err(e) => e.into_http_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn each_path_names_its_endpoint() {
        assert_eq!(Route::of("/agent-token"), Some(Route::AgentToken));
        assert_eq!(Route::of("/subagent-token"), Some(Route::SubagentToken));
        for other in [
            "/",
            "/agent-token/",
            "/Agent-Token",
            "/jwks.json",
            "/subagent",
        ] {
            assert_eq!(Route::of(other), None, "{other}");
        }
    }
}
