//! The person's decision on a request (`POST /interact`, approve or deny): the agent's
//! binding an approval makes (undone when the approval cannot be saved), the audit
//! event, and the way back to the agent's callback.

use bytes::Bytes;
use http::StatusCode;

use super::PersonServer;
use super::consent::PageRequest;
use crate::PsError;
use crate::audit::{AuditAction, AuditEvent};
use crate::pending::{Pending, PendingRequest, PendingState};
use crate::web;
use crate::web::text::Text;
use crate::web::view;

impl PersonServer {
    /// The person grants (binding the agent to them if it was not) or denies. A binding
    /// made for the grant is undone when the grant cannot be saved (the agent changed
    /// its request at the same moment): no agent stays linked without an approval.
    pub(super) async fn grant_or_deny(
        &self,
        page: &PageRequest<'_>,
        p: &mut Pending,
        grant: bool,
        account: &str,
    ) -> Result<http::Response<Bytes>, PsError> {
        // A question has no token or permission to approve: approving it would leave a
        // request no poll can deliver. Refused, nothing changed.
        if grant && matches!(p.request, PendingRequest::Question { .. }) {
            return Ok(self.message(StatusCode::BAD_REQUEST, Text::QuestionNotApproved));
        }
        // A form without a revision is of the request as first asked.
        let revision = web::field(&page.posted, "revision").map_or(Some(0), |r| r.parse().ok());
        if grant && revision != Some(p.revision) {
            return Ok(self.message(StatusCode::CONFLICT, Text::ChangedWhileReading));
        }
        let mut bound_here = false;
        if grant {
            match self.approval_binding(p, account).await? {
                ApprovalBinding::Refused(r) => return Ok(r),
                ApprovalBinding::Made => bound_here = true,
                ApprovalBinding::Stands => {}
            }
            p.state = PendingState::Approved {
                account: account.to_owned(),
            };
        } else {
            p.state = PendingState::Denied;
        }
        if let Err(e) = self.save(p).await {
            if bound_here {
                self.undo_binding(p, account).await?;
            }
            return Err(e);
        }
        self.audit_decision(page, p, grant, account).await?;
        // Back to the agent, if it asked (draft -11: access_denied on a denial).
        if let Some(cb) = self
            .callback_for(&p.agent.0, web::field(&page.posted, "callback"))
            .await
        {
            return Ok(if grant {
                self.back_to_agent(&cb, Text::ApprovedReturn)
            } else {
                self.back_to_agent(&web::with_error(&cb, "access_denied"), Text::DeniedTold)
            });
        }
        Ok(self.message(
            StatusCode::OK,
            if grant {
                Text::ApprovedReturn
            } else {
                Text::DeniedTold
            },
        ))
    }

    /// The agent's binding, for `account`'s approval of `p`: made now (the agent was
    /// unbound when it asked and still is), standing (bound to them), or a refusal.
    async fn approval_binding(
        &self,
        p: &mut Pending,
        account: &str,
    ) -> Result<ApprovalBinding, PsError> {
        if p.account.is_none() {
            // An agent unbound when it asked is bound by the first person who approves;
            // a request it made before that, approved by someone else, is not theirs to
            // grant (nor to take the agent, its tokens and its dashboard row with it).
            let linked_elsewhere = || {
                ApprovalBinding::Refused(self.message(StatusCode::CONFLICT, Text::LinkedElsewhere))
            };
            return Ok(match self.store.binding(&p.agent.0, &p.agent.1).await? {
                Some(bound) if bound == account => ApprovalBinding::Stands,
                Some(_) => linked_elsewhere(),
                None => {
                    let bound = self
                        .store
                        .bind_if_unbound(&p.agent.0, &p.agent.1, account)
                        .await?;
                    if bound == account {
                        ApprovalBinding::Made
                    } else {
                        linked_elsewhere()
                    }
                }
            });
        }
        // An agent bound to the person when it asked, and unlinked since: its request
        // ends, nothing approved (the unlinking ended it too, unless it raced).
        if !self.still_linked(p, account).await? {
            p.state = PendingState::Denied;
            self.save(p).await?;
            return Ok(ApprovalBinding::Refused(
                self.message(StatusCode::CONFLICT, Text::NoLongerLinked),
            ));
        }
        Ok(ApprovalBinding::Stands)
    }

    /// Removes the binding of `p`'s agent to `account` that its approval made, when the
    /// approval itself could not be saved (still bound to them: nobody else's binding is
    /// removed). A binding another approval of the same person made in the same instant
    /// goes too; the agent then asks for the person again.
    async fn undo_binding(&self, p: &Pending, account: &str) -> Result<(), PsError> {
        let (provider, agent) = (&p.agent.0, &p.agent.1);
        if self.store.binding(provider, agent).await?.as_deref() == Some(account) {
            self.store.unbind(provider, agent).await?;
        }
        Ok(())
    }

    /// The audit event of the person's decision on `p`, in the catalogue's English,
    /// whatever the pages speak.
    async fn audit_decision(
        &self,
        page: &PageRequest<'_>,
        p: &Pending,
        grant: bool,
        account: &str,
    ) -> Result<(), PsError> {
        let (resource, what, _) = view::what_is_asked(web::text::english(), self.id.as_str(), p);
        let resource = resource.to_owned();
        let (action, verb) = if grant {
            (AuditAction::Approved, "approved")
        } else {
            (AuditAction::Denied, "denied")
        };
        let mut event = AuditEvent::new(
            page.now.as_secs(),
            action,
            format!("{verb} by the person: {what}"),
        )
        .account(account)
        .agent(p.agent.1.as_str())
        .resource(resource)
        .request(p.id.as_str());
        if let PendingRequest::AuthToken {
            scope: Some(scope), ..
        } = &p.request
        {
            event = event.scope(scope.as_str());
        }
        self.log_event(event).await
    }

    /// The answer of a decision that goes back to the agent's (admitted) `callback`: a
    /// redirect, which the consent page's policy lets through
    /// ([`view::form_may_lead_to`]); a page saying `said` that refreshes to it when that
    /// policy could not name the callback's origin.
    pub(super) fn back_to_agent(&self, callback: &str, said: Text) -> http::Response<Bytes> {
        if web::callback_origin(callback).is_some() {
            web::see_other(callback)
        } else {
            view::onward(&self.messages, said, callback)
        }
    }
}

/// What an approval does to its agent's binding ([`PersonServer::approval_binding`]).
enum ApprovalBinding {
    /// The agent was unbound and is now bound to the approving person (undone if the
    /// approval is not saved).
    Made,
    /// The agent is bound to the approving person already (or the request is chained).
    Stands,
    /// The approval is refused, with this page.
    Refused(http::Response<Bytes>),
}
