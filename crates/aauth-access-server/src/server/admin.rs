//! The out-of-band API for the steps no HTTP endpoint here completes: an approver's
//! decision ([`crate::AccessDecision::RequireApproval`]) and a payment's confirmation
//! ([`crate::AccessDecision::RequirePayment`]). Each changes the waiting request, which
//! is decided again at the Person Server's next poll.

use aauth_keys::time::UnixTime;
use aauth_metadata::audit::{AuditAction, AuditEvent};
use aauth_tokens::ServerId;

use super::AccessServer;
use super::waiting::{Step, Waiting};
use crate::AsError;
use crate::store::{Awaiting, StoreError};

impl AccessServer {
    /// The requests waiting for an approval out of band (their pending ids).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn awaiting_approval(&self, now: UnixTime) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .waiting_on(Awaiting::Approval, now)
            .await?
            .into_iter()
            .filter(|r| {
                Waiting::from_record(r.clone())
                    .is_ok_and(|w| matches!(w.step, Step::Approval(None)))
            })
            .map(|r| r.id)
            .collect())
    }

    /// Approves (or refuses) the waiting request `id`; `Ok(false)` when there is none
    /// awaiting approval.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails (or holds a record it cannot read).
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let unreadable = |e: AsError| StoreError::unreadable("access-server", "waiting request", e);
        let Some(record) = self.store.waiting(id, now).await? else {
            return Ok(false);
        };
        let read = record.data.clone();
        let mut w = Waiting::from_record(record).map_err(unreadable)?;
        if !matches!(w.step, Step::Approval(None)) {
            return Ok(false);
        }
        w.step = Step::Approval(Some(approve));
        let ps = record_ps(&w);
        let record = w.into_record(id.to_owned()).map_err(unreadable)?;
        // Over the request as read only: one decided meanwhile is not brought back, and
        // of two decisions at once one is taken.
        if !self.store.replace_waiting(record, &read, now).await? {
            return Ok(false);
        }
        let (action, word) = if approve {
            (AuditAction::Approved, "approved")
        } else {
            (AuditAction::Denied, "refused")
        };
        self.store
            .record_event(
                AuditEvent::new(
                    now.as_secs(),
                    action,
                    format!("the administrator {word} waiting request {id} of {ps}"),
                )
                .request(id),
            )
            .await?;
        Ok(true)
    }

    /// The requests waiting for a payment: their pending ids and Person Servers.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn awaiting_payment(
        &self,
        now: UnixTime,
    ) -> Result<Vec<(String, ServerId)>, StoreError> {
        Ok(self
            .store
            .waiting_on(Awaiting::Payment, now)
            .await?
            .into_iter()
            .map(|r| (r.id, r.ps))
            .collect())
    }

    /// Confirms the payment the waiting request `id` asked for (say, on the payment
    /// processor's notice): its Person Server is billed here from now on, and the
    /// request is decided again at its next poll. `Ok(false)` when `id` awaits no payment.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn confirm_payment(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        match self.store.waiting(id, now).await? {
            Some(r) if r.awaiting == Awaiting::Payment => {
                self.store.bill(&r.ps).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The Person Server a waiting request came from, for its audit event.
fn record_ps(w: &Waiting) -> String {
    w.ps.as_str().to_owned()
}
