//! Resource-initiated interaction (draft -11 §Resource-Initiated Interaction): a resource
//! token with an `interaction` claim needs the resource's own flow (typically an OAuth
//! authorization at a third party) before this server asks the person. The person, on
//! the consent page, is first shown an interstitial that sends them to
//! `{interaction.url}?code={interaction.code}&callback={this server's per-flow URL}`; the
//! resource redirects back there when its flow ends, successfully (then this server's
//! consent follows) or with `?error=` (draft -11 §Interaction Callback Errors: the
//! request ends with the mapped polling error).

use bytes::Bytes;
use http::StatusCode;

use crate::PsError;
use crate::pending::{Pending, PendingRequest, PendingState};
use crate::web;

use super::consent::PageRequest;
use super::{INTERACT_PATH, PersonServer, subtle_eq};
use crate::web::text::Text;
use crate::web::view::{self, Said};

/// Where the resource sends the person back: `{RESOURCE_CALLBACK_PATH}{code}/{flow}`
/// (no query of its own, so the resource's `?error=` appends cleanly).
pub(super) const RESOURCE_CALLBACK_PATH: &str = "/interact/resource/";

/// The query member that marks a callback this server loaded again itself.
const RESUMED: &str = "resumed";

/// A page that loads `page`'s address again, with [`RESUMED`] added (see
/// `resource_callback`).
fn resume_here(ps: &PersonServer, page: &PageRequest<'_>) -> http::Response<Bytes> {
    let path = page.parts.uri.path();
    let target = match page.parts.uri.query().filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}&{RESUMED}=1"),
        None => format!("{path}?{RESUMED}=1"),
    };
    let body = maud::html! { p { (view::link(&ps.messages, &target, Text::Continue)) } };
    let mut r = ps.page(StatusCode::OK, Text::BackFromResource, &body);
    if let Ok(v) = http::HeaderValue::from_str(&format!("0; url={target}")) {
        r.headers_mut().insert("refresh", v);
    }
    r
}

impl PersonServer {
    /// The interstitial for `p` while its resource's own flow is not done (`None` once it
    /// is, or when there is none): what the resource asks, and the link that starts it.
    pub(super) async fn resource_interstitial(
        &self,
        p: &mut Pending,
    ) -> Result<Option<http::Response<Bytes>>, PsError> {
        let PendingRequest::AuthToken {
            resource,
            resource_interaction: Some(flow),
            ..
        } = &p.request
        else {
            return Ok(None);
        };
        if flow.done {
            return Ok(None);
        }
        let callback = format!(
            "{}{RESOURCE_CALLBACK_PATH}{}/{}",
            self.id.as_str(),
            p.code,
            flow.flow
        );
        let target = format!(
            "{}?code={}&callback={}",
            flow.url,
            web::query_escape(&flow.code),
            web::query_escape(&callback)
        );
        let m = &self.messages;
        let body = maud::html! {
            p { (m.markup(Text::ResourceFirst, &[("resource", maud::html! { (Said(resource.as_str())) })])) }
            p { a.button.primary href=(target) { (m.text(Text::ContinueToResource)) } }
        };
        p.state = PendingState::Interacting;
        self.save(p).await?;
        Ok(Some(self.page(
            StatusCode::OK,
            Text::ResourceFirstTitle,
            &body,
        )))
    }

    /// `GET {RESOURCE_CALLBACK_PATH}{code}/{flow}[?error=…]`: the resource's flow ended.
    /// Only the signed-in person whose request it is, with the flow's own value, moves it
    /// on: to this server's consent page, or to the polling error the callback's `error`
    /// maps to (`access_denied` → `denied`, `user_abandoned` → `abandoned`,
    /// `interaction_expired` → `expired`, anything else → `server_error`).
    ///
    /// The address names a request by its interaction code, so each load is a guess at a
    /// code, throttled and counted as the consent page's lookups are (per account, per
    /// client, per session). The random flow value is compared, in constant time, before
    /// anything depends on the request: every failure (no such code, another flow, another
    /// person's request, one over or expired) is the same answer
    /// (`not_waiting`). Only the right code and flow together, on a
    /// request that is not another person's, give the attempt back: a person returning
    /// from the resource is not guessing.
    pub(super) async fn resource_callback(
        &self,
        page: &PageRequest<'_>,
    ) -> Result<http::Response<Bytes>, PsError> {
        let tail = page
            .parts
            .uri
            .path()
            .strip_prefix(RESOURCE_CALLBACK_PATH)
            .unwrap_or_default(); // default: the router sends only this prefix here
        // The resource's redirect here is a cross-site navigation, on which the browser
        // does not send the `SameSite=Strict` session cookie: once, a page of this server
        // loads the same address again (a same-site navigation, which carries it).
        if page.session.is_none() && web::field(&page.query, RESUMED).is_none() {
            return Ok(resume_here(self, page));
        }
        let Some(session) = page.session.as_ref() else {
            return Ok(self.message(StatusCode::UNAUTHORIZED, Text::SignInThenFollow));
        };
        if session.bad_codes >= web::MAX_BAD_CODES {
            return Ok(self.message(StatusCode::TOO_MANY_REQUESTS, Text::TooManyCodes));
        }
        let receipt = match self.code_attempt(page, &session.account).await? {
            Ok(receipt) => receipt,
            Err(refused) => return Ok(refused),
        };
        // No `/`: an empty flow value, which no request's matches.
        let (code, flow) = tail.split_once('/').unwrap_or((tail, ""));
        let found = self.pending_by_code(code).await?;
        let Some(mut p) = found
            .filter(|p| flow_matches(p, flow) && p.person().is_none_or(|a| a == session.account))
        else {
            self.wrong_code(page).await?;
            return Ok(self.not_waiting());
        };
        // The person's own return from the resource: no wrong guess.
        self.throttle.refund(receipt, page.now).await?;
        if !p.is_open() || page.now.as_secs() >= p.expires {
            return Ok(self.not_waiting());
        }
        let PendingRequest::AuthToken {
            resource_interaction: Some(expected),
            ..
        } = &mut p.request
        else {
            return Ok(self.not_waiting()); // none: `flow_matches` found one
        };
        let code = p.code.clone();
        match web::field(&page.query, "error") {
            None => {
                expected.done = true;
                self.save(&mut p).await?;
                Ok(web::see_other(&format!("{INTERACT_PATH}?code={code}")))
            }
            Some(error) => {
                p.state = match error {
                    "access_denied" => PendingState::Denied,
                    "user_abandoned" => PendingState::Ended {
                        error: "abandoned".to_owned(),
                    },
                    "interaction_expired" => PendingState::Ended {
                        error: "expired".to_owned(),
                    },
                    _ => PendingState::Ended {
                        error: "server_error".to_owned(),
                    },
                };
                self.save(&mut p).await?;
                Ok(self.message(StatusCode::OK, Text::ResourceStepFailed))
            }
        }
    }

    /// The one answer to a resource callback that moves nothing, whatever it failed on.
    fn not_waiting(&self) -> http::Response<Bytes> {
        self.message(StatusCode::NOT_FOUND, Text::OverOrNotYours)
    }
}

/// Whether `flow` is the value of the resource flow `p` waits on, compared in constant
/// time (false when `p` has none).
fn flow_matches(p: &Pending, flow: &str) -> bool {
    let expected = match &p.request {
        PendingRequest::AuthToken {
            resource_interaction: Some(i),
            ..
        } => i.flow.as_str(),
        _ => "",
    };
    !expected.is_empty() && bool::from(subtle_eq(expected.as_bytes(), flow.as_bytes()))
}
