//! axum extractors (feature `axum`, on by default): the verified caller, straight into a
//! handler's arguments. The route must sit behind [`crate::AAuthLayer`].
//!
//! ```
//! use aauth_resource::{Admitted, CallingAgent};
//! async fn data(CallingAgent(agent): CallingAgent) -> String {
//!     format!("hello {agent}")
//! }
//! async fn open(admitted: Admitted) -> String {
//!     format!("{:?}", admitted.pseudonym())
//! }
//! async fn me(person: aauth_resource::Person) -> String {
//!     format!("{} at {}", person.sub, person.iss.as_str())
//! }
//! async fn doc(aauth_resource::Authorization(auth): aauth_resource::Authorization) -> String {
//!     format!("scope {:?}", auth.scope)
//! }
//! let _app: axum::Router = axum::Router::new()
//!     .route("/data", axum::routing::get(data))
//!     .route("/open", axum::routing::get(open))
//!     .route("/me", axum::routing::get(me))
//!     .route("/doc", axum::routing::get(doc));
//! ```

use aauth_tokens::{AgentId, AuthClaims, BoundToken, ServerId};
use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::{Admitted, Refusal};

/// The verified agent of an agent-token route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallingAgent(pub AgentId);

/// The verified person of a person-token or auth-token route: the pair `(iss, sub)` of
/// the person or auth token (never compare `sub` across issuers).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Person {
    /// The token's issuer (a Person Server, or the resource's Access Server).
    pub iss: ServerId,
    /// The person's directed identifier at this resource.
    pub sub: String,
    /// The mission the token was issued under.
    pub mission_s256: Option<String>,
}

/// The verified authorization of an auth-token route: the auth token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization(pub AuthClaims);

/// Why an extractor found no admitted caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotAdmitted {
    /// The route is not behind [`crate::AAuthLayer`]: a configuration error (`500`).
    NoLayer,
    /// The caller was admitted but is not an agent (for example a pseudonymous key):
    /// `403`.
    NotAnAgent,
    /// The caller was admitted without a person or auth token: `403`.
    NoPerson,
    /// The caller was admitted without an auth token: `403`.
    NoAuthorization,
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
            Self::NoPerson => Refusal::Forbidden {
                detail: "this resource serves a person identified by a person or auth token"
                    .to_owned(),
            }
            .into_response(),
            Self::NoAuthorization => Refusal::Forbidden {
                detail: "this resource requires an auth token".to_owned(),
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

impl<S: Send + Sync> FromRequestParts<S> for crate::Principal {
    type Rejection = NotAdmitted;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotAdmitted> {
        Self::from_extensions(&parts.extensions).ok_or(NotAdmitted::NoLayer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallingAgent {
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

impl<S: Send + Sync> FromRequestParts<S> for Person {
    type Rejection = NotAdmitted;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotAdmitted> {
        let admitted = parts
            .extensions
            .get::<Admitted>()
            .ok_or(NotAdmitted::NoLayer)?;
        let (iss, sub) = admitted.person().ok_or(NotAdmitted::NoPerson)?;
        Ok(Self {
            iss: iss.clone(),
            sub: sub.to_owned(),
            mission_s256: admitted.mission_s256().map(str::to_owned),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authorization {
    type Rejection = NotAdmitted;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotAdmitted> {
        let admitted = parts
            .extensions
            .get::<Admitted>()
            .ok_or(NotAdmitted::NoLayer)?;
        match admitted.token() {
            Some(BoundToken::Auth(a)) => Ok(Self(a.claims.clone())),
            _ => Err(NotAdmitted::NoAuthorization),
        }
    }
}
