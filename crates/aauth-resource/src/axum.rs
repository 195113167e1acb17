//! axum extractors (feature `axum`, on by default): the verified caller, straight into a
//! handler's arguments. The route must sit behind [`crate::AAuthLayer`].
//!
//! ```
//! use aauth_resource::{Admitted, Agent};
//! async fn data(Agent(agent): Agent) -> String {
//!     format!("hello {agent}")
//! }
//! async fn open(admitted: Admitted) -> String {
//!     format!("{:?}", admitted.pseudonym())
//! }
//! let _app: axum::Router = axum::Router::new()
//!     .route("/data", axum::routing::get(data))
//!     .route("/open", axum::routing::get(open));
//! ```

use aauth_tokens::AgentId;
use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::{Admitted, Refusal};

/// The verified agent of an agent-token route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent(pub AgentId);

/// Why an extractor found no admitted caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotAdmitted {
    /// The route is not behind [`crate::AAuthLayer`]: a configuration error (`500`).
    NoLayer,
    /// The caller was admitted but is not an agent (for example a pseudonymous key):
    /// `403`.
    NotAnAgent,
}

impl IntoResponse for NotAdmitted {
    fn into_response(self) -> Response {
        match self {
            Self::NoLayer => {
                let body = serde_json::json!({
                    "type": "about:blank",
                    "status": 500,
                    "title": "AAuth is not configured for this route",
                    "detail": "the handler asks for the verified caller but no AAuthLayer ran",
                })
                .to_string();
                let mut resp = Response::new(Body::from(body));
                *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/problem+json"),
                );
                resp
            }
            Self::NotAnAgent => Refusal::Forbidden {
                detail: "this resource serves agents identified by an agent token".to_owned(),
            }
            .into_response(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.into_http_response().map(Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admitted {
    type Rejection = NotAdmitted;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotAdmitted> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(NotAdmitted::NoLayer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Agent {
    type Rejection = NotAdmitted;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotAdmitted> {
        let admitted = parts
            .extensions
            .get::<Admitted>()
            .ok_or(NotAdmitted::NoLayer)?;
        admitted
            .agent()
            .cloned()
            .map(Self)
            .ok_or(NotAdmitted::NotAnAgent)
    }
}
