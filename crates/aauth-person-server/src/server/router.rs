//! The route table: which endpoint owns a path, and the one dispatch every request goes
//! through (published documents first, then the endpoint; every endpoint an agent signs
//! for is verified before it runs).

use aauth_keys::time::UnixTime;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};

use super::{
    AUDIT_PATH, AUTH_TOKEN_PATH, INTERACT_PATH, INTERACTION_PATH, LOGIN_PATH, MISSION_PATH,
    Outcome, PENDING_PATH, PERMISSION_PATH, PERSON_TOKEN_PATH, PersonServer, REVOCATION_PATH,
    REVOCATION_PENDING_PATH,
};
use crate::PsError;
use aauth_metadata::serve::json_response;

/// An endpoint of the Person Server (its published documents are answered before
/// routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route<'a> {
    /// An endpoint an agent signs for: verified before it runs.
    Signed(Signed<'a>),
    /// `/pending/{id}` ([`poll`](super::poll)): verified there (the agent, or the
    /// sub-agent, that made the request).
    Pending {
        /// The pending request's id.
        id: &'a str,
    },
    /// `POST /revocation` ([`revocation`](super::revocation)): signed by a provider or a
    /// resource, verified there.
    Revocation,
    /// `GET /revocation/{id}` ([`revocation`](super::revocation)): the agent provider
    /// polls a cascade that outlasted its request; verified there.
    RevocationPoll {
        /// The pending revocation's id.
        id: &'a str,
    },
    /// `/interact` and `/interact/login`, the person's pages ([`consent`](super::consent));
    /// routed only when the server has them.
    Pages,
    /// `/admin/audit`: an operator reads the audit log
    /// ([`aauth_metadata::audit::operator`]); `404` unless the server has operators.
    OperatorAudit,
}

/// An endpoint an agent signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signed<'a> {
    /// `POST /person-token` ([`tokens`](super::tokens)).
    PersonToken,
    /// `POST /auth-token` ([`tokens`](super::tokens)).
    AuthToken,
    /// `POST /permission` ([`governance`](super::governance)).
    Permission,
    /// `POST /audit` ([`governance`](super::governance)).
    Audit,
    /// `POST /interaction` ([`governance`](super::governance)).
    Interaction,
    /// `POST /mission`, a proposal ([`missions`](super::missions)).
    Missions,
    /// `/mission/{s256}`, one mission ([`missions`](super::missions)).
    Mission {
        /// The mission's `s256`.
        s256: &'a str,
    },
}

impl<'a> Route<'a> {
    /// The endpoint that owns `path`; `None` for a path that is not this server's.
    pub(super) fn of(path: &'a str, pages: bool) -> Option<Self> {
        Some(match path {
            PERSON_TOKEN_PATH => Self::Signed(Signed::PersonToken),
            AUTH_TOKEN_PATH => Self::Signed(Signed::AuthToken),
            PERMISSION_PATH => Self::Signed(Signed::Permission),
            AUDIT_PATH => Self::Signed(Signed::Audit),
            INTERACTION_PATH => Self::Signed(Signed::Interaction),
            MISSION_PATH => Self::Signed(Signed::Missions),
            REVOCATION_PATH => Self::Revocation,
            aauth_metadata::audit::operator::OPERATOR_AUDIT_PATH => Self::OperatorAudit,
            INTERACT_PATH
            | LOGIN_PATH
            | super::LOGOUT_PATH
            | super::OIDC_START_PATH
            | super::OIDC_CALLBACK_PATH
            | crate::web::view::STYLE_PATH
                if pages =>
            {
                Self::Pages
            }
            p if pages && p.starts_with(super::resource_flow::RESOURCE_CALLBACK_PATH) => {
                Self::Pages
            }
            crate::web::dashboard::ACCOUNT_PATH
            | crate::web::dashboard::AUDIT_CSV_PATH
            | crate::web::dashboard::AUDIT_JSON_PATH
                if pages =>
            {
                Self::Pages
            }
            _ => {
                if let Some(s256) = path.strip_prefix("/mission/") {
                    Self::Signed(Signed::Mission { s256 })
                } else if let Some(id) = path.strip_prefix(REVOCATION_PENDING_PATH) {
                    Self::RevocationPoll { id }
                } else {
                    Self::Pending {
                        id: path.strip_prefix(PENDING_PATH)?,
                    }
                }
            }
        })
    }
}

impl Outcome {
    /// The response for an endpoint's result.
    fn respond(result: Result<Self, PsError>) -> http::Response<Bytes> {
        match result {
            Ok(Self::Issued(json)) => json_response(StatusCode::OK, &json),
            Ok(Self::Respond(r)) => r,
            Err(e) => e.into_http_response(),
        }
    }
}

/// `405` naming the one method a token endpoint takes.
fn post_only() -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::new());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    r
}

impl PersonServer {
    /// Answers a request: the published documents, the two token endpoints, pending URLs
    /// and (when enabled) the consent pages; `None` for another path.
    pub async fn handle(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Option<http::Response<Bytes>> {
        let path = parts.uri.path();
        if let Some(resp) = self.published.respond_at(&parts.method, path, now) {
            return Some(resp);
        }
        let route = Route::of(path, self.interaction)?;
        Some(self.dispatch(route, parts, body, now).await)
    }

    /// Runs the endpoint `route` names.
    async fn dispatch(
        &self,
        route: Route<'_>,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        match route {
            Route::Signed(endpoint) => self.signed(endpoint, parts, body, now).await,
            Route::Pending { id } => self.poll(id, parts, body, now).await,
            Route::Revocation => self.revocation(parts, body, now).await,
            Route::RevocationPoll { id } => self.revocation_poll(id, parts, body, now).await,
            Route::Pages => self.web(parts, body, now).await,
            Route::OperatorAudit => match &self.operators {
                Some(ops) => {
                    ops.answer(&StoreAudit(self.store.as_ref()), parts, body, now)
                        .await
                }
                None => not_found(),
            },
        }
    }

    /// Checks the method, verifies the agent's request, then runs `endpoint`.
    async fn signed(
        &self,
        endpoint: Signed<'_>,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        let post = parts.method == Method::POST;
        match endpoint {
            Signed::PersonToken | Signed::AuthToken if !post => return post_only(),
            Signed::Permission | Signed::Audit | Signed::Interaction if !post => {
                return PsError::InvalidRequest("POST".to_owned()).into_http_response();
            }
            _ => {}
        }
        let request = match self.verify_agent(parts, body, now).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        Outcome::respond(match endpoint {
            Signed::PersonToken => {
                let r = self.person_token(&request, body, now).await;
                self.audit_refusal(&request, &r, "person token", now).await;
                r
            }
            Signed::AuthToken => {
                let r = self.auth_token(&request, body, now).await;
                self.audit_refusal(&request, &r, "auth token", now).await;
                r
            }
            Signed::Permission => self.permission(&request, body, now).await,
            Signed::Audit => self.audit(&request, body, now).await,
            Signed::Interaction => self.interaction_request(&request, body, now).await,
            Signed::Missions if post => self.propose(&request, body, now).await,
            Signed::Missions => Err(PsError::InvalidRequest(
                "POST a proposal to the mission endpoint".to_owned(),
            )),
            Signed::Mission { s256 } => {
                self.mission_url(&request, s256, &parts.method, body, now)
                    .await
            }
        })
    }
}

impl PersonServer {
    /// Records a token request refused (a verified agent's) in the audit log: its error
    /// code and reason. Not a policy's or a person's denial (recorded as `denied` where
    /// it is decided), a step that waits, a request over its rate limit (or its Access
    /// Server's) or at a mission whose log is full (a flood must not become a flood of
    /// writes), or a store that failed (it would not take the event either). A failure to
    /// record is reported; the refusal stands.
    async fn audit_refusal(
        &self,
        request: &super::verify::AgentRequest,
        result: &Result<Outcome, PsError>,
        asked: &str,
        now: UnixTime,
    ) {
        let Err(e) = result else {
            return;
        };
        if matches!(
            e,
            PsError::Store(_)
                | PsError::Denied(_)
                | PsError::RateLimited { .. }
                | PsError::AccessServerBusy { .. }
                | PsError::MissionLogFull(_)
                | PsError::AccessServerInteraction { .. }
                | PsError::AccessServerPending
        ) {
            return;
        }
        let mut reason = e.to_string();
        if reason.len() > 300 {
            let cut = (0..=300).rev().find(|i| reason.is_char_boundary(*i));
            reason.truncate(cut.unwrap_or(0));
        }
        let event = crate::AuditEvent::new(
            now.as_secs(),
            crate::AuditAction::Refused,
            format!("{}: {asked} refused: {reason}", e.code()),
        )
        .agent(request.agent.claims.sub.as_str());
        if let Err(failed) = self.log_event(event).await {
            aauth_metadata::serve::report_failure(&failed);
        }
    }
}

/// `404` for a path this server does not serve.
fn not_found() -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The store's audit log, as the operator endpoint reads it.
struct StoreAudit<'a>(&'a dyn crate::PsStore);

#[async_trait::async_trait]
impl aauth_metadata::audit::operator::AuditSource for StoreAudit<'_> {
    async fn audit_page(
        &self,
        q: &crate::AuditQuery,
    ) -> Result<crate::AuditPage, aauth_metadata::store::StoreError> {
        self.0.audit(q).await
    }
}

#[cfg(test)]
mod tests {
    use super::{Route, Signed};

    #[test]
    fn every_path_has_one_owner() {
        let pages = true;
        assert_eq!(
            Route::of("/person-token", pages),
            Some(Route::Signed(Signed::PersonToken))
        );
        assert_eq!(
            Route::of("/auth-token", pages),
            Some(Route::Signed(Signed::AuthToken))
        );
        assert_eq!(
            Route::of("/mission/abc", pages),
            Some(Route::Signed(Signed::Mission { s256: "abc" }))
        );
        assert_eq!(
            Route::of("/pending/p1", pages),
            Some(Route::Pending { id: "p1" })
        );
        assert_eq!(
            Route::of("/revocation/r1", pages),
            Some(Route::RevocationPoll { id: "r1" })
        );
        assert_eq!(Route::of("/revocation", pages), Some(Route::Revocation));
        assert_eq!(Route::of("/interact/login", pages), Some(Route::Pages));
        // Without its pages the server does not own them.
        assert_eq!(Route::of("/interact", false), None);
        assert_eq!(Route::of("/person-token/", pages), None);
        assert_eq!(Route::of("/", pages), None);
    }
}
