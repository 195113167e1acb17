//! The governance endpoints: `POST /permission`, `POST /audit` and `POST /interaction`, each signed by an agent acting in a mission.

use aauth_keys::time::UnixTime;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use crate::PsError;
use crate::pending::PendingRequest;
use crate::policy::{ConsentKind, ConsentRequest, Decision};
use aauth_metadata::serve::json_response;

use super::defer::Deferral;
use super::defer::Hints;
use super::verify::AgentRequest;
use super::{MAX_PROPOSAL_TEXT, Outcome, PersonServer};

/// The longest action an agent may name at `/permission` and `/audit` (a tool name or
/// the like; kept in the mission's log and shown to the person).
const MAX_ACTION: usize = 256;

/// `invalid_request` unless `text` (the member `name`) is at most `max` bytes.
pub(super) fn at_most(name: &str, text: Option<&str>, max: usize) -> Result<(), PsError> {
    if text.is_some_and(|t| t.len() > max) {
        return Err(PsError::InvalidRequest(format!(
            "{name} is at most {max} bytes"
        )));
    }
    Ok(())
}

impl PersonServer {
    /// `permission_endpoint` (draft -11 §Permission Endpoint): an action outside any
    /// resource. Granted when the mission pre-approved the tool or the policy approves;
    /// denied with a reason; or deferred to the person.
    pub(super) async fn permission(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            action: String,
            description: Option<String>,
            mission_s256: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        if b.action.trim().is_empty() {
            return Err(PsError::InvalidRequest("action is required".to_owned()));
        }
        // Kept in the mission's log and, when the person is asked, with the request.
        at_most("action", Some(&b.action), MAX_ACTION)?;
        at_most("description", b.description.as_deref(), MAX_PROPOSAL_TEXT)?;
        let owner = (&r.agent.claims.iss, &r.agent.claims.sub);
        let mission = match &b.mission_s256 {
            Some(s) => Some(self.active_mission(s, owner, now).await?),
            None => None,
        };
        let pre_approved = match &mission {
            Some(m) => m.approved_tools()?.contains(&b.action),
            None => false,
        };
        let account = match &mission {
            Some(m) => Some(m.account.clone()),
            None => self.binding_of(r).await?,
        };
        let decision = if pre_approved {
            Decision::Approve
        } else {
            self.decide(
                &ConsentRequest {
                    account: account.as_deref().unwrap_or_default(), // default: an unbound agent has no account yet; the policy is told it is unbound
                    provider: owner.0,
                    agent: owner.1,
                    resource: &self.id,
                    scope: Some(&b.action),
                    kind: ConsentKind::Permission,
                    chained: false,
                },
                account.is_some(),
            )
        };
        if let Some(m) = mission {
            let verdict = match &decision {
                Decision::Approve => "permit",
                Decision::Deny(_) => "deny",
                Decision::AskPerson => "ask",
            };
            // A full log refuses the request before anything is decided or deferred.
            self.commit_mission(m, |m| {
                m.log_agent(
                    now.as_secs(),
                    "permission",
                    None,
                    verdict,
                    Some(b.action.clone()),
                )
                .map_err(PsError::from)
            })
            .await?;
        }
        match decision {
            Decision::Approve => Ok(Outcome::Issued(
                serde_json::json!({ "permission": "granted" }),
            )),
            Decision::Deny(reason) => Ok(Outcome::Issued(
                serde_json::json!({ "permission": "denied", "reason": reason }),
            )),
            Decision::AskPerson => {
                let acting = self.acting(r, None, now).await?;
                self.defer(
                    Deferral {
                        agent: r,
                        acting: &acting,
                        account,
                        request: PendingRequest::Permission {
                            action: b.action,
                            description: b.description,
                            mission_s256: b.mission_s256,
                        },
                        capabilities: &b.capabilities,
                        hints: &Hints::default(),
                    },
                    now,
                )
                .await
            }
        }
    }

    /// `audit_endpoint`: a record of an action performed, in the mission's log; `201`.
    pub(super) async fn audit(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            mission_s256: Option<String>,
            action: Option<String>,
            description: Option<String>,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let (Some(s256), Some(action)) =
            (b.mission_s256, b.action.filter(|a| !a.trim().is_empty()))
        else {
            return Err(PsError::InvalidRequest(
                "mission_s256 and action are required".to_owned(),
            ));
        };
        at_most("action", Some(&action), MAX_ACTION)?;
        let m = self
            .active_mission(&s256, (&r.agent.claims.iss, &r.agent.claims.sub), now)
            .await?;
        let detail = match b.description {
            Some(d) => format!("{action}: {}", d.chars().take(2000).collect::<String>()),
            None => action,
        };
        // The log is the mission's record, rewritten with it: bounded, and the agent's
        // own entries stop first (`429`).
        self.commit_mission(m, |m| {
            m.log_agent(now.as_secs(), "audit", None, "record", Some(detail.clone()))
                .map_err(PsError::from)
        })
        .await?;
        let mut resp = http::Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::CREATED;
        Ok(Outcome::Respond(resp))
    }

    /// `interaction_endpoint`: a `question` goes to the person through the consent pages
    /// (deferred, answered with `{"answer"}`); `interaction` and `payment` relays have no
    /// channel here (`424 interaction_unavailable`: the agent directs the person itself).
    pub(super) async fn interaction_request(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            #[serde(rename = "type")]
            kind: Option<String>,
            question: Option<String>,
            mission_s256: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        if let Some(s) = &b.mission_s256 {
            self.active_mission(s, (&r.agent.claims.iss, &r.agent.claims.sub), now)
                .await?;
        }
        match b.kind.as_deref() {
            Some("question") => {
                let question = b
                    .question
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| PsError::InvalidRequest("question is required".to_owned()))?;
                // Kept with the deferred request until it is answered or expires.
                at_most("question", Some(&question), MAX_PROPOSAL_TEXT)?;
                let account = self.binding_of(r).await?;
                let acting = self.acting(r, None, now).await?;
                self.defer(
                    Deferral {
                        agent: r,
                        acting: &acting,
                        account,
                        request: PendingRequest::Question {
                            question,
                            mission_s256: b.mission_s256,
                        },
                        capabilities: &b.capabilities,
                        hints: &Hints::default(),
                    },
                    now,
                )
                .await
            }
            Some("interaction" | "payment") => {
                let mut resp = json_response(
                    StatusCode::FAILED_DEPENDENCY,
                    &serde_json::json!({
                        "error": "interaction_unavailable",
                        "detail": "this Person Server has no channel to relay this to the person; direct them to the url yourself",
                    }),
                );
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                Ok(Outcome::Respond(resp))
            }
            _ => Err(PsError::InvalidRequest(
                "type must be interaction, payment or question".to_owned(),
            )),
        }
    }
}
