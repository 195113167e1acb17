//! `GET`/`POST /interact`: the person's page. A policy that asks for the person
//! ([`crate::AccessDecision::RequireInteraction`]) sends them here with a single-use code;
//! signed in here ([`AccessServer::people_authenticator`]), they see what their Person
//! Server asks for and may approve it, which binds that Person Server here for them, or
//! deny it, which ends the request `denied`. The first account to open a code owns it:
//! anyone else presenting it is refused as for a wrong code, and after
//! [`MAX_CODE_ATTEMPTS`] such presentations the interaction ends (the Person Server's next
//! poll gets `410 invalid_code`). Wrong codes are throttled per account and per client,
//! each code counted before its lookup and a right one's count given back; a code whose
//! request expired is answered `408` (draft -11 §Interaction Code Format). An agent's
//! `callback` in the link, admitted as its provider's ([`super::callback`]), is where the
//! person's browser goes once they decide (draft -11 §User Interaction).

use aauth_keys::time::UnixTime;
use aauth_metadata::code;
use aauth_metadata::throttle::{ClientAddr, ThrottleKey};
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::callback::{agent_provider, back_to_agent, callback_origin, onward, with_error};
use super::waiting::{MAX_CODE_ATTEMPTS, Step, Waiting};
use super::{AccessServer, Answer, INTERACT_PATH, Refusal};
use crate::AsError;
use crate::store::BindError;

/// The pages' `Content-Security-Policy` (a consent page whose form may lead to the
/// agent's callback also names its origin in `form-action`, [`form_may_lead_to`]): no
/// `<base>` either, so that no injected one can redirect the page's relative form action.
const PAGE_POLICY: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages' `Referrer-Policy`, the Person Server's: the page's address carries the
/// interaction code, which no other site is sent (the agent's callback, the login of a
/// deployment's SSO). `same-origin`, not `no-referrer`: under `no-referrer` a browser
/// sends the page's own forms with `Origin: null`, which the origin check
/// ([`AccessServer::same_origin`]) refuses where `Sec-Fetch-Site` is not sent.
const REFERRER_POLICY: &str = "same-origin";

/// `h` with the headers every answer of these pages carries, the HTML ones and the
/// redirects back to the agent: never cached, no referrer to another site, its type
/// never sniffed.
pub(super) fn page_headers(h: &mut http::HeaderMap) {
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static(REFERRER_POLICY),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// What the page says when the person denied the request.
const DENIED: &str = "<p>Denied. You can return to your agent.</p>";

impl AccessServer {
    /// A single-use interaction code: eight Crockford symbols from the server's random
    /// source, normalized (the form stored and looked up).
    pub(super) fn random_code(&self) -> Result<String, AsError> {
        Ok(code::new_code(&mut self.random.clone())
            .map_err(|e| aauth_metadata::serve::InternalError::produce("interaction code", e))?)
    }
}

/// What the person decided, with a `POST` of the page's form.
#[derive(Clone, Copy)]
enum Decision {
    /// Approve: bind their Person Server here.
    Grant,
    /// Deny: the request ends `denied`.
    Deny,
}

/// What the person sent: the code (from the query of a `GET`, the form of a `POST`),
/// the agent's `callback` if it gave one (draft -11 §User Interaction; checked before it
/// is followed), and, for a `POST`, their decision (none: the page again).
struct Form {
    code: Option<String>,
    callback: Option<String>,
    decision: Option<Decision>,
}

impl Form {
    /// Reads a `GET`'s query (`post` false) or a `POST`'s form, percent-decoded.
    fn read(post: bool, parts: &Parts, body: &[u8]) -> Self {
        let src = if post {
            body
        } else {
            parts.uri.query().unwrap_or_default().as_bytes() // default: no query, no fields
        };
        let pairs: Vec<(String, String)> = form_urlencoded::parse(src).into_owned().collect();
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Self {
            code: field("code"),
            callback: field("callback").filter(|c| !c.is_empty()),
            decision: match field("decision").as_deref() {
                Some("grant") if post => Some(Decision::Grant),
                Some("deny") if post => Some(Decision::Deny),
                _ => None,
            },
        }
    }
}

/// An open interaction: a waiting request whose person has not yet decided.
struct Open {
    /// Its pending id.
    id: String,
    waiting: Waiting,
    /// Its record's data as read: a decision is written only over that.
    read: String,
    /// The binding it makes: the resource and the person's `sub` there.
    resource: String,
    sub: String,
}

/// What an interaction code opens.
enum Opened {
    /// An open interaction: the account's own, or nobody's until now.
    Open(Box<Open>),
    /// An interaction whose request expired before the person decided, and its agent's
    /// provider when known (for the agent's `callback`).
    Expired(Option<ServerId>),
    /// Nothing: a wrong code, a used one, or another account's.
    Nothing,
}

/// `s` escaped for HTML text and attribute values.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An HTML page of this server's: never cached, never framed, its forms posted only
/// here, its address (and code) never sent to another site, its type never sniffed.
pub(super) fn page(status: StatusCode, html: String) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Access Server</title></head><body>{html}</body></html>"
    )));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    page_headers(h);
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_POLICY),
    );
    r
}

/// `r`, a page whose form may be answered with a redirect to the agent's callback at
/// `origin` ([`callback_origin`]), with that origin also allowed in `form-action`:
/// browsers apply `form-action` to the redirects that follow a form's submission, so
/// under `'self'` alone the decision is saved but the browser never reaches the agent.
fn form_may_lead_to(mut r: http::Response<Bytes>, origin: &str) -> http::Response<Bytes> {
    let policy = PAGE_POLICY.replacen(
        "form-action 'self'",
        &format!("form-action 'self' {origin}"),
        1,
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        r.headers_mut().insert("content-security-policy", v);
    }
    r
}

/// The page for a code that opens nothing (`404`): wrong, used, malformed, or another
/// account's.
fn no_request() -> http::Response<Bytes> {
    page(
        StatusCode::NOT_FOUND,
        "<p>This code matches no open request.</p>".to_owned(),
    )
}

/// The page for a code whose request expired before the person came (`408`, draft -11
/// §Interaction Code Format: `expired`): the agent may start a fresh request.
fn expired() -> http::Response<Bytes> {
    page(StatusCode::REQUEST_TIMEOUT, EXPIRED.to_owned())
}

/// What the page says of a request that expired before the person came.
const EXPIRED: &str =
    "<p>This request expired before it was decided. Ask your agent to start again.</p>";

/// The page for a decision that came too late (`409`): the request changed or ended
/// while the person was reading it.
fn changed() -> http::Response<Bytes> {
    page(
        StatusCode::CONFLICT,
        "<p>This request changed or ended while you were reading it.</p>".to_owned(),
    )
}

/// The page for a code refused unlooked-up (`429`): too many wrong ones, `wait` seconds
/// left.
fn too_many(wait: u64) -> http::Response<Bytes> {
    let mut r = page(
        StatusCode::TOO_MANY_REQUESTS,
        format!("<p>Too many wrong codes. Try again in {wait} seconds.</p>"),
    );
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
    r
}

/// The throttle's keys for wrong codes: the account, and the client when known.
fn throttle_keys(account: &str, parts: &Parts) -> Vec<ThrottleKey> {
    let mut keys = vec![ThrottleKey::new("code/account", account)];
    keys.extend(
        parts
            .extensions
            .get::<ClientAddr>()
            .map(|c| ThrottleKey::client("code/client", *c)),
    );
    keys
}

impl AccessServer {
    /// The person's page (`GET`, `{url}?code={code}`): what their Person Server asks for,
    /// with Approve and Deny buttons; the approval (`POST`, a same-origin form) binds that
    /// Person Server here for them, the denial ends the request `denied`. The person must
    /// be signed in here ([`AccessServer::people_authenticator`]; otherwise they are sent
    /// to its login first): the code alone, which the agent also holds, approves nothing,
    /// and the first account to open a code is the only one it opens for.
    pub(super) async fn interaction(
        &self,
        post: bool,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Answer {
        let form = Form::read(post, parts, body);
        // Draft -11 §Interaction Code Format: compared without hyphens, case folded, `I`/`L`
        // read as `1` and `O` as `0`; what cannot be a code opens nothing, unlooked-up.
        let Some(code) = form.code.as_deref().and_then(code::normalize) else {
            return Ok(no_request());
        };
        let Some(people) = self.people.as_ref() else {
            return Ok(no_request());
        };
        // A form posted from another site is not the person's decision (CSRF): browsers
        // say where a form came from.
        if post && !self.same_origin(parts) {
            return Ok(page(
                StatusCode::FORBIDDEN,
                "<p>This form must be sent from this Access Server's own page.</p>".to_owned(),
            ));
        }
        let Some(account) = people.account(parts, now).await else {
            return sign_in_first(people.as_ref(), post, &code, form.callback.as_deref());
        };
        // Codes are guessed one request at a time: throttled per account and per client
        // (each code that opens nothing counts against both; a blocked one is refused
        // before any lookup). Counted before the lookup, in one step with the check, so
        // that of codes sent at once no more are looked up than one after another; a code
        // that opens the account's request gives its count back, leaving the keys as if
        // it had never been counted.
        let keys = throttle_keys(&account, parts);
        let receipt = match self.throttle.attempt(&keys, now).await?.into_receipt() {
            Ok(receipt) => receipt,
            Err(wait) => return Ok(too_many(wait)),
        };
        let open = match self.open_for(&code, &account, now).await? {
            Opened::Open(open) => {
                self.throttle.refund(receipt, now).await?;
                *open
            }
            // Draft -11 §Interaction Code Format: once its request has expired, the
            // code fails with `expired` (a real code come too late is no guess); back to
            // the agent's callback, if admitted, with `interaction_expired` (§Interaction
            // Callback Errors), by a page that refreshes (this page may be the end of a
            // sign-in form's redirects, which that form's policy may hold).
            Opened::Expired(provider) => {
                self.throttle.refund(receipt, now).await?;
                let callback = form.callback.as_deref();
                return Ok(match self.callback_for(provider.as_ref(), callback).await {
                    Some(cb) => onward(&with_error(&cb, "interaction_expired"), EXPIRED),
                    None => expired(),
                });
            }
            // A code that opens nothing, or another account's: a wrong code either way
            // (counted by the attempt).
            Opened::Nothing => return Ok(no_request()),
        };
        // The agent's callback, followed only if its provider publishes it (never an
        // open redirect): after the decision, the person's browser goes there.
        let provider = agent_provider(&open.waiting.body);
        let callback = self
            .callback_for(provider.as_ref(), form.callback.as_deref())
            .await;
        match form.decision {
            Some(Decision::Grant) => self.approve(open, &account, callback, now).await,
            Some(Decision::Deny) => {
                let reason = "the person denied it at the Access Server";
                let back = callback.map(|cb| with_error(&cb, "access_denied"));
                self.refuse(open, reason, DENIED, back, now).await
            }
            None => Ok(consent_page(&account, &open, &code, callback.as_deref())),
        }
    }

    /// What the interaction `code` opens for `account`: one it opened first, or one
    /// nobody has opened yet, which becomes its own (the account recorded on the request
    /// by a conditional write over the record as read: of two accounts at once, one gets
    /// it). Another account's code opens nothing and counts as a failed attempt on its
    /// interaction, which ends at [`MAX_CODE_ATTEMPTS`].
    async fn open_for(&self, code: &str, account: &str, now: UnixTime) -> Result<Opened, Refusal> {
        // Twice at most: a write that lost to another's is read again, once.
        for _ in 0..2 {
            let mut open = match self.open_interaction(code, account, now).await? {
                Opened::Open(open) => *open,
                other => return Ok(other),
            };
            // (`open_interaction` opens only a step for the person.)
            let Step::Interaction {
                account: owner,
                attempts,
                ..
            } = &mut open.waiting.step
            else {
                return Ok(Opened::Nothing);
            };
            let claimed = match owner.as_deref() {
                Some(o) if o == account => return Ok(Opened::Open(Box::new(open))),
                Some(_) => {
                    *attempts = attempts.saturating_add(1);
                    if *attempts >= MAX_CODE_ATTEMPTS {
                        open.waiting.step = Step::CodeFailed;
                    }
                    false
                }
                None => {
                    *owner = Some(account.to_owned());
                    true
                }
            };
            let record = open.waiting.clone().into_record(open.id.clone())?;
            let written = record.data.clone();
            if self.store.replace_waiting(record, &open.read, now).await? {
                if !claimed {
                    return Ok(Opened::Nothing);
                }
                open.read = written;
                return Ok(Opened::Open(Box::new(open)));
            }
        }
        Ok(Opened::Nothing)
    }

    /// What the interaction `code` opens for `account`: a waiting request whose step is
    /// the person, not yet done; one that expired before the person came (kept a while,
    /// [`crate::WAITING_KEPT`]), if it was theirs or nobody's; or nothing.
    async fn open_interaction(
        &self,
        code: &str,
        account: &str,
        now: UnixTime,
    ) -> Result<Opened, Refusal> {
        let kept_since = now.minus(crate::WAITING_KEPT);
        let Some(record) = self.store.waiting_by_code(code, kept_since).await? else {
            return Ok(Opened::Nothing);
        };
        let (id, read, expired) = (
            record.id.clone(),
            record.data.clone(),
            record.expires <= now.as_secs(),
        );
        let waiting = Waiting::from_record(record)?;
        // An expired one is told so only to the account that opened it (or anyone, if
        // none had): to anyone else it is a wrong code like any other.
        let theirs = |owner: &Option<String>| owner.as_deref().is_none_or(|o| o == account);
        let (resource, sub, owner) = match &waiting.step {
            Step::Interaction {
                resource,
                sub,
                done: false,
                account: owner,
                ..
            } => (resource.clone(), sub.clone(), owner.clone()),
            Step::Expired {
                account: owner,
                provider,
                ..
            } if theirs(owner) => {
                let provider = provider.as_deref().and_then(|p| ServerId::parse(p).ok());
                return Ok(Opened::Expired(provider));
            }
            _ => return Ok(Opened::Nothing),
        };
        if expired {
            return Ok(if theirs(&owner) {
                Opened::Expired(agent_provider(&waiting.body))
            } else {
                Opened::Nothing
            });
        }
        Ok(Opened::Open(Box::new(Open {
            id,
            waiting,
            read,
            resource,
            sub,
        })))
    }

    /// The person approves: their Person Server is bound here for the resource and their
    /// `sub` there, under their `account`, and the request is decided again at its next
    /// poll. A person already bound here to another account is not bound again: the
    /// request is refused instead (`denied` at the next poll). Either way, back to the
    /// agent's (admitted) `callback` if it gave one, with `error=access_denied` for the
    /// refusal (draft -11 §Interaction Callback Errors). A binding this approval made is
    /// undone when the approval cannot be saved (the request was denied in another tab,
    /// taken by a poll, or changed meanwhile): no Person Server stays bound here without
    /// an approval. One that stood before it stays.
    async fn approve(
        &self,
        open: Open,
        account: &str,
        callback: Option<String>,
        now: UnixTime,
    ) -> Answer {
        let resource = ServerId::parse(&open.resource).map_err(|e| {
            aauth_metadata::serve::InternalError::unreadable("stored resource identifier", e)
        })?;
        let ps = open.waiting.ps.clone();
        // The request as approved, written once the binding is made.
        let mut approved = open.waiting.clone();
        if let Step::Interaction { done, .. } = &mut approved.step {
            *done = true;
        }
        let approved = approved.into_record(open.id.clone())?;
        // Bound to this account before: not this approval's to undo.
        let stood = self
            .store
            .bound_account(&ps, &resource, &open.sub)
            .await?
            .is_some_and(|a| a == account);
        match self.store.bind(&ps, &resource, &open.sub, account).await {
            Ok(()) => {}
            Err(BindError::BoundToAnotherAccount) => {
                let reason = "the person's Person Server is bound here to another account";
                let html = "<p>Your Person Server is already bound here to another account: this request is refused.</p>";
                if let Some(cb) = callback {
                    let back = Some(with_error(&cb, "access_denied"));
                    return self.refuse(open, reason, html, back, now).await;
                }
                return self
                    .refuse(open, reason, html, None, now)
                    .await
                    .map(|mut r| {
                        *r.status_mut() = StatusCode::CONFLICT;
                        r
                    });
            }
            Err(BindError::Store(e)) => return Err(e.into()),
        }
        // Over the request as read only: one decided meanwhile (denied, taken, issued) is
        // not brought back. The binding made for an approval not saved goes (only if
        // still this account's; another approval of the same person in the same instant
        // loses it too, and its request asks for the person again).
        let saved = self.store.replace_waiting(approved, &open.read, now).await;
        if !matches!(saved, Ok(true)) {
            let undone = if stood {
                Ok(false)
            } else {
                self.store
                    .unbind_if(&ps, &resource, &open.sub, account)
                    .await
            };
            saved?;
            undone?;
            return Ok(changed());
        }
        let html = "<p>Approved. You can return to your agent.</p>";
        Ok(match callback {
            Some(cb) => back_to_agent(&cb, html),
            None => page(StatusCode::OK, html.to_owned()),
        })
    }

    /// Refuses the request on the person's behalf (`reason`, the Person Server's next poll
    /// ends it `denied`), over the request as read only; the page says `html`, or the
    /// person's browser goes `back` to the agent's callback (its `error` added).
    async fn refuse(
        &self,
        open: Open,
        reason: &str,
        html: &str,
        back: Option<String>,
        now: UnixTime,
    ) -> Answer {
        let Open {
            id,
            mut waiting,
            read,
            ..
        } = open;
        waiting.step = Step::Refused(reason.to_owned());
        if !self
            .store
            .replace_waiting(waiting.into_record(id)?, &read, now)
            .await?
        {
            return Ok(changed());
        }
        Ok(match back {
            Some(target) => back_to_agent(&target, html),
            None => page(StatusCode::OK, html.to_owned()),
        })
    }

    /// Whether a form was posted from this server's own pages: `Sec-Fetch-Site:
    /// same-origin`, or an `Origin` that is this server's.
    fn same_origin(&self, parts: &Parts) -> bool {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        header("sec-fetch-site") == Some("same-origin")
            || header("origin").is_some_and(|o| o.trim_end_matches('/') == self.id.as_str())
    }
}

/// The page that asks the person signed in as `account` to approve their Person Server
/// (or deny its request); its form carries the agent's admitted `callback`, whose origin
/// its policy then lets the form's answer redirect to.
fn consent_page(
    account: &str,
    open: &Open,
    code: &str,
    callback: Option<&str>,
) -> http::Response<Bytes> {
    let hidden = callback.map_or_else(String::new, |cb| {
        format!(
            "<input type=\"hidden\" name=\"callback\" value=\"{}\">",
            esc(cb)
        )
    });
    let r = page(
        StatusCode::OK,
        format!(
            "<p>Signed in as {}.</p><h1>Allow your Person Server here?</h1><p>{} asks this Access Server for access to {} on your behalf.</p>\
             <form method=\"post\" action=\"{INTERACT_PATH}\"><input type=\"hidden\" name=\"code\" value=\"{}\">{hidden}\
             <button name=\"decision\" value=\"grant\">Approve</button> <button name=\"decision\" value=\"deny\">Deny</button></form>",
            esc(account),
            esc(open.waiting.ps.as_str()),
            esc(&open.resource),
            esc(code)
        ),
    );
    match callback.and_then(callback_origin) {
        Some(origin) => form_may_lead_to(r, origin),
        None => r,
    }
}

/// A person not signed in here: sent to the login, which brings them back to this page
/// with their `code` and the agent's `callback` (checked once they are back). A form's
/// answer goes on by a page that refreshes to the login, not a redirect: browsers hold
/// the redirect after a form to the page's `form-action 'self'`, and the deployment's
/// login may be elsewhere (an SSO).
fn sign_in_first(
    people: &dyn crate::PeopleAuthenticator,
    post: bool,
    code: &str,
    callback: Option<&str>,
) -> Answer {
    let mut back = format!("{INTERACT_PATH}?code={code}");
    if let Some(cb) = callback {
        back.push_str("&callback=");
        back.extend(form_urlencoded::byte_serialize(cb.as_bytes()));
    }
    let login = people.login_url(&back);
    let (status, header, value) = if post {
        (
            StatusCode::OK,
            http::header::REFRESH,
            format!("0; url={login}"),
        )
    } else {
        (StatusCode::SEE_OTHER, http::header::LOCATION, login.clone())
    };
    let v = HeaderValue::from_str(&value)
        .map_err(|e| aauth_metadata::serve::InternalError::produce("sign-in redirect", e))?;
    let mut r = page(
        status,
        format!("<p><a href=\"{}\">Sign in first.</a></p>", esc(&login)),
    );
    r.headers_mut().insert(header, v);
    Ok(r)
}
