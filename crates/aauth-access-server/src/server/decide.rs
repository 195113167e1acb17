//! The policy's decision on a verified token request, made safe: a granted scope is
//! never wider than the resource token's, a step asked for again once it was given is a
//! refusal (never a loop), and each step the policy asks for is checked before the
//! request waits for it.

use std::collections::BTreeSet;

use http::HeaderValue;

use super::AccessServer;
use super::waiting::Step;
use crate::{AccessDecision, AccessRequest, AsError};

/// The most clarification rounds one request may take.
const MAX_CLARIFICATION_ROUNDS: u8 = 5;

/// What the policy's decision comes to.
pub(super) enum Decided {
    /// Issue the auth token, with this scope.
    Issue(Option<String>),
    /// Wait for this step first.
    Wait(Step),
}

impl AccessServer {
    /// Asks the policy about `request` (after `rounds` clarification rounds) and reads
    /// its answer: a step asked for again once given is refused first.
    pub(super) fn decide(
        &self,
        request: &AccessRequest<'_>,
        rounds: u8,
    ) -> Result<Decided, AsError> {
        let decision = self.policy.decide(request);
        if let Some(refusal) = asked_again(&decision, request, rounds) {
            return Err(refusal);
        }
        let step = match decision {
            AccessDecision::Grant => return Ok(Decided::Issue(request.scope.map(str::to_owned))),
            AccessDecision::GrantScope(s) => {
                return within_offer(s, request.scope).map(Decided::Issue);
            }
            AccessDecision::Deny(reason) => return Err(AsError::Denied(reason)),
            AccessDecision::RequireApproval => Step::Approval(None),
            AccessDecision::RequireInteraction => self.interaction_step(request)?,
            AccessDecision::RequireClaims(names) => {
                // AS-17: never `sub`.
                Step::Claims(names.into_iter().filter(|n| n != "sub").collect())
            }
            AccessDecision::RequireClarification { question, options } => {
                Step::Clarification { question, options }
            }
            AccessDecision::RequirePayment(challenge) => payment_step(challenge)?,
        };
        Ok(Decided::Wait(step))
    }

    /// The person's step: a fresh interaction code for the binding of `request`'s
    /// resource and `sub`, only with a way to sign people in.
    fn interaction_step(&self, request: &AccessRequest<'_>) -> Result<Step, AsError> {
        if self.people.is_none() {
            return Err(aauth_metadata::serve::InternalError::Misconfigured(
                "the policy asks for the person, and this Access Server has no way to sign people in (people_authenticator)",
            )
            .into());
        }
        let code = self.random_code()?;
        Ok(Step::Interaction {
            code,
            resource: request.resource.as_str().to_owned(),
            sub: request.sub.to_owned(),
            done: false,
            account: None,
            attempts: 0,
        })
    }
}

/// The payment step, only for a `challenge` that is a header value (it is sent as
/// `WWW-Authenticate`).
fn payment_step(challenge: String) -> Result<Step, AsError> {
    if HeaderValue::from_str(&challenge).is_err() {
        return Err(aauth_metadata::serve::InternalError::Misconfigured(
            "the policy's payment challenge is not a header value",
        )
        .into());
    }
    Ok(Step::Payment { challenge })
}

/// A scope the policy granted instead of the resource token's: only within what the
/// resource token offered (else a policy bug would widen a grant: a server error).
fn within_offer(granted: String, offered: Option<&str>) -> Result<Option<String>, AsError> {
    let offered: BTreeSet<&str> = offered.unwrap_or_default().split(' ').collect(); // default: no scope offered is the empty scope
    if granted.split(' ').any(|v| !offered.contains(v)) {
        return Err(aauth_metadata::serve::InternalError::Misconfigured(
            "the policy granted a scope the resource token does not name",
        )
        .into());
    }
    Ok(Some(granted))
}

/// The refusal of a step asked for again once it was given: claims once provided, an
/// approval once approved, the person once bound, a payment once billed, or a
/// clarification past [`MAX_CLARIFICATION_ROUNDS`].
fn asked_again(
    decision: &AccessDecision,
    request: &AccessRequest<'_>,
    rounds: u8,
) -> Option<AsError> {
    let why = match decision {
        AccessDecision::RequireClaims(_) if request.claims.is_some() => {
            "the claims provided do not satisfy this Access Server's policy".to_owned()
        }
        AccessDecision::RequireApproval if request.approved => {
            "the policy still asks for approval after it was given".to_owned()
        }
        AccessDecision::RequireInteraction if request.bound => {
            "the policy still asks for the person after their approval".to_owned()
        }
        AccessDecision::RequirePayment(_) if request.billed => {
            "the policy still asks for payment from a billed Person Server".to_owned()
        }
        AccessDecision::RequireClarification { .. } if rounds >= MAX_CLARIFICATION_ROUNDS => {
            format!("no decision after {MAX_CLARIFICATION_ROUNDS} clarification rounds")
        }
        _ => return None,
    };
    Some(AsError::Denied(why))
}
