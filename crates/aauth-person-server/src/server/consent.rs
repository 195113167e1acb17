//! The person's pages: `GET`/`POST /interact` (the interaction code, the consent page, approve and deny, clarification) and sign-in (`/interact/login`), with their sessions, CSRF tokens, throttles and device cookies.

use std::sync::Arc;

use aauth_keys::base64url;
use aauth_keys::time::UnixTime;
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};

use crate::PsError;
use crate::pending::{Pending, PendingRequest, PendingState};
use aauth_metadata::throttle::{ClientAddr, Receipt, ThrottleKey};

use super::resource_flow::RESOURCE_CALLBACK_PATH;
use super::{INTERACT_PATH, LOGIN_PATH, LOGOUT_PATH, PersonServer, subtle_eq};
use crate::web;
use crate::web::dashboard;
use crate::web::describe::Shown;
use crate::web::text::Text;
use crate::web::view::{self, SignInForm};

impl PersonServer {
    /// Sets `account`'s password (hashed with argon2id; the hash is what is stored),
    /// creating the account if it is new. Replacing the password of an account that
    /// exists ends its sessions, as [`Admin::reset_password`](crate::Admin::reset_password)
    /// does: whoever signed in with the old one (or with its OpenID Provider) signs in
    /// again.
    ///
    /// # Errors
    ///
    /// [`PsError::Internal`] when hashing fails, [`PsError::Store`] when the store does.
    pub async fn set_password(&self, account: &str, password: &str) -> Result<(), PsError> {
        let phc = web::hash_password(password, &mut self.random.clone())
            .map_err(|e| aauth_metadata::serve::InternalError::produce("password hash", e))?;
        let existed = self.store.password_hash(account).await?.is_some();
        self.store.set_password_hash(account, &phc).await?;
        if existed {
            self.store.drop_sessions(account).await?;
        }
        Ok(())
    }

    /// Creates `account` without a password, enabled: it signs in only as the person
    /// linked to it at an OpenID Provider. `false` (nothing changed) when it exists.
    ///
    /// # Errors
    ///
    /// [`PsError::Store`].
    pub async fn create_account_without_password(&self, account: &str) -> Result<bool, PsError> {
        Ok(self.store.create_account(account, web::NO_PASSWORD).await?)
    }

    /// Makes `account`'s password the one an operator's configuration declares (created
    /// if the account is new): `Some` password, or `None` for an account that signs in
    /// only as the person linked to it at an OpenID Provider (no password opens it, and
    /// one it had is removed). A password replaced or removed ends the account's
    /// sessions, as a reset does; the password already stored changes nothing (its hash,
    /// and the browsers known by it, are kept). `true` when it changed.
    ///
    /// # Errors
    ///
    /// [`PsError::Internal`] when hashing fails, [`PsError::Store`] when the store does.
    pub async fn declare_password(
        &self,
        account: &str,
        password: Option<&str>,
    ) -> Result<bool, PsError> {
        let stored = self.store.password_hash(account).await?;
        let unchanged = match (stored.as_deref(), password) {
            (Some(phc), Some(given)) => phc.starts_with('$') && web::check_password(phc, given),
            (Some(phc), None) => phc == web::NO_PASSWORD,
            (None, _) => false,
        };
        if unchanged {
            return Ok(false);
        }
        match password {
            // Ends the sessions of an account that existed.
            Some(given) => self.set_password(account, given).await?,
            None => {
                self.store
                    .set_password_hash(account, web::NO_PASSWORD)
                    .await?;
                if stored.is_some() {
                    self.store.drop_sessions(account).await?;
                }
            }
        }
        Ok(true)
    }

    /// `callback`, if the agent provider `provider` publishes it as its agents'.
    pub(super) async fn callback_for(
        &self,
        provider: &ServerId,
        callback: Option<&str>,
    ) -> Option<String> {
        let fetch = self.metadata.as_ref()?;
        let callback = callback.filter(|c| !c.is_empty())?;
        let doc = aauth_metadata::discover::<aauth_metadata::AgentProviderMetadata>(
            fetch.as_ref(),
            provider,
        )
        .await
        .ok()?;
        web::callback_allowed(&doc, callback).then(|| callback.to_owned())
    }

    /// PS-12: the metadata of the resource a person or auth token is asked for, to show
    /// the person its `name`, `description` and `access_mode`. `None` without a
    /// [`PersonServer::metadata`] fetcher, for other requests, and when the document
    /// cannot be read (the page then names the resource by its identifier alone).
    pub(super) async fn describe_resource(&self, p: &Pending, now: UnixTime) -> Option<Arc<Shown>> {
        let fetch = self.metadata.as_ref()?;
        let (PendingRequest::PersonToken { resource, .. }
        | PendingRequest::AuthToken { resource, .. }) = &p.request
        else {
            return None;
        };
        self.described
            .get(fetch.as_ref(), resource, now.as_secs())
            .await
    }

    /// A device cookie for `account`, whose stored password hash is `phc`: a random id and
    /// its MAC under this server's secret (nothing stored; it proves only that this
    /// browser signed in to `account` since its password was last set).
    pub(super) fn new_device(&self, account: &str, phc: Option<&str>) -> Option<String> {
        let id = self.random_token().ok()?;
        let tag = self.device_tag(account, phc, &id);
        Some(format!("{id}.{tag}"))
    }

    /// The MAC of device `id` for `account`, over the account's stored password hash
    /// (none: an account that does not exist): a reset, a new password, or one removed
    /// changes the hash, and every browser known by the old one is forgotten.
    pub(super) fn device_tag(&self, account: &str, phc: Option<&str>, id: &str) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.directed);
        let generation = phc.unwrap_or_default(); // default: no account, no password: the same empty generation
        for part in ["aauth-device", account, generation, id] {
            ctx.update(part.as_bytes());
            ctx.update(&[0]);
        }
        base64url::encode(ctx.sign().as_ref())
    }

    /// Whether `cookie` is a device cookie this server issued for `account` while its
    /// stored password hash was `phc` (the one stored now).
    pub(super) fn device_is_known(&self, account: &str, phc: Option<&str>, cookie: &str) -> bool {
        cookie.split_once('.').is_some_and(|(id, tag)| {
            bool::from(subtle_eq(
                self.device_tag(account, phc, id).as_bytes(),
                tag.as_bytes(),
            ))
        })
    }

    /// The person's pages: `GET /interact` (a request by its code), `POST /interact`
    /// (the person's decision) and `POST /interact/login` (sign-in).
    pub(super) async fn web(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        if parts.method == Method::GET && parts.uri.path() == view::STYLE_PATH {
            return view::stylesheet();
        }
        if parts.method == Method::POST && !self.same_origin(&parts.headers) {
            return self.message(StatusCode::FORBIDDEN, Text::CrossSite);
        }
        let page = match self.page_request(parts, body, now).await {
            Ok(page) => page,
            Err(e) => return self.failed(e),
        };
        match self.disabled_session(&page).await {
            Ok(None) => {}
            Ok(Some(refused)) => return refused,
            Err(e) => return self.failed(e),
        }
        let answered = match (parts.method.clone(), parts.uri.path()) {
            (Method::GET, INTERACT_PATH) => self.show_request(page).await,
            (Method::POST, LOGIN_PATH) => self.sign_in(page).await,
            (Method::POST, LOGOUT_PATH) => self.sign_out(&page).await,
            #[cfg(feature = "oidc")]
            (Method::GET, super::OIDC_START_PATH) => self.start_oidc(&page),
            #[cfg(feature = "oidc")]
            (Method::GET, super::OIDC_CALLBACK_PATH) => self.finish_oidc(&page).await,
            (Method::POST, INTERACT_PATH) => self.decide_request(page).await,
            (Method::GET, dashboard::ACCOUNT_PATH) => self.account_page(&page).await,
            (Method::POST, dashboard::ACCOUNT_PATH) => self.account_change(&page).await,
            (Method::GET, dashboard::AUDIT_CSV_PATH) => self.audit_export(&page, true).await,
            (Method::GET, dashboard::AUDIT_JSON_PATH) => self.audit_export(&page, false).await,
            (Method::GET, path) if path.starts_with(RESOURCE_CALLBACK_PATH) => {
                self.resource_callback(&page).await
            }
            _ => Ok(self.message(StatusCode::METHOD_NOT_ALLOWED, Text::NotHere)),
        };
        answered.unwrap_or_else(|e| self.failed(e))
    }

    /// The refusal of a page that acts as a signed-in person whose account is disabled
    /// (`None`: not signed in, enabled, or a page that needs no session: signing in or
    /// out). Checked on every such page, decisions and account changes included, not
    /// only at sign-in: an account disabled while a session lasted (one started in the
    /// same instant as the operator's change, or disabled in the store directly) decides
    /// nothing more. The account's sessions end with the refusal.
    async fn disabled_session(
        &self,
        page: &PageRequest<'_>,
    ) -> Result<Option<http::Response<Bytes>>, PsError> {
        let path = page.parts.uri.path();
        let Some(s) = page.session.as_ref() else {
            return Ok(None);
        };
        if path == LOGIN_PATH
            || path == LOGOUT_PATH
            || path.starts_with(super::OIDC_START_PATH)
            || !self.store.account_disabled(&s.account).await?
        {
            return Ok(None);
        }
        self.store.drop_sessions(&s.account).await?;
        let mut r = self.message(StatusCode::FORBIDDEN, Text::AccountDisabled);
        if let Some(v) = web::set_cookie(web::SESSION_COOKIE, "", 0) {
            r.headers_mut().append(http::header::SET_COOKIE, v);
        }
        Ok(Some(r))
    }

    /// Whether a form post comes from this server's own pages: its `Origin`, when the
    /// browser sends one, is this server's (never `null`, never another site's); without
    /// one, `Sec-Fetch-Site`, when sent, says same-origin. A browser that sends neither is
    /// judged by the CSRF token alone, which every form also carries.
    fn same_origin(&self, headers: &http::HeaderMap) -> bool {
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            return origin
                .to_str()
                .is_ok_and(|o| o.eq_ignore_ascii_case(self.id.as_str()));
        }
        headers
            .get("sec-fetch-site")
            .is_none_or(|v| v.as_bytes() == b"same-origin")
    }

    /// What every page reads first: the query, the form, the session.
    async fn page_request<'a>(
        &self,
        parts: &'a Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<PageRequest<'a>, PsError> {
        let query = web::form(parts.uri.query().unwrap_or_default().as_bytes()); // default: no query is an empty one
        let session_cookie = web::cookie(&parts.headers, web::SESSION_COOKIE);
        let session = match &session_cookie {
            Some(c) => self.store.session(&web::session_key(c), now).await?,
            None => None,
        };
        Ok(PageRequest {
            parts,
            query,
            posted: web::form(body),
            session_cookie,
            session,
            client: parts.extensions.get::<ClientAddr>().copied(),
            now,
        })
    }

    /// `GET /interact?code=…`: the sign-in form, or the request the code names.
    async fn show_request(&self, page: PageRequest<'_>) -> Result<http::Response<Bytes>, PsError> {
        let code = web::field(&page.query, "code").unwrap_or_default(); // default: no code matches nothing
        let code = code.to_owned();
        let Some(s) = page.session.clone() else {
            // Sign in first; the login form is protected by a double-submit token.
            let csrf = self.random_token()?;
            let mut r = self.page(
                StatusCode::OK,
                Text::SignInTitle,
                &view::login_form(
                    &self.messages,
                    &SignInForm {
                        code: &code,
                        csrf: &csrf,
                        callback: web::field(&page.query, "callback"),
                        providers: &self.sign_in_choices(),
                        passwords: self.passwords,
                    },
                    None,
                ),
            );
            if let Some(v) = web::set_cookie(web::CSRF_COOKIE, &csrf, 600) {
                r.headers_mut().append(http::header::SET_COOKIE, v);
            }
            return Ok(r);
        };
        if code.is_empty() {
            // Signed in, but no request named: nothing to count as a wrong guess.
            let body = maud::html! {
                (view::signed_in_as(&self.messages, &s, ""))
                p { (self.messages.text(Text::OpenTheLink)) }
                p { (view::link(&self.messages, dashboard::ACCOUNT_PATH, Text::YourAccount)) }
            };
            return Ok(self.page(StatusCode::OK, Text::PersonServer, &body));
        }
        if s.bad_codes >= web::MAX_BAD_CODES {
            return Ok(self.message(StatusCode::TOO_MANY_REQUESTS, Text::TooManyCodes));
        }
        let receipt = match self.code_attempt(&page, &s.account).await? {
            Ok(receipt) => receipt,
            Err(refused) => return Ok(refused),
        };
        let found = self.pending_by_code(&code).await?;
        let now = page.now.as_secs();
        // The person came too late: back to the agent, if it gave a callback; else told
        // so (draft -11 §Interaction Code Format, lifetime: the code of a request that
        // expired fails `expired`, `408`; a real code come too late is no guess).
        let callback = web::field(&page.query, "callback");
        if let Some(p) = found.as_ref().filter(|p| expired_for(p, now, &s.account)) {
            self.throttle.refund(receipt, page.now).await?;
            if let Some(cb) = self.callback_for(&p.agent.0, callback).await {
                // A page that refreshes, not a redirect: this page is often the end of
                // the sign-in form's redirects, which that form's policy keeps on this
                // server (`form-action 'self'`).
                let target = web::with_error(&cb, "interaction_expired");
                return Ok(view::onward(&self.messages, Text::NoSuchCode, &target));
            }
            return Ok(self.message(StatusCode::REQUEST_TIMEOUT, Text::NoSuchCode));
        }
        let Some(mut p) = found.filter(|p| answerable(p, now)) else {
            self.wrong_code(&page).await?;
            return Ok(self.no_such_code());
        };
        if claim(&mut p, &s.account) == Claim::NotTheirs {
            self.not_theirs(&mut p).await?;
            return Ok(self.no_such_code());
        }
        // The person's own request: no wrong guess.
        self.throttle.refund(receipt, page.now).await?;
        // The resource's own flow comes first, when its resource token asks for one.
        if let Some(interstitial) = self.resource_interstitial(&mut p).await? {
            return Ok(interstitial);
        }
        p.state = PendingState::Interacting;
        let callback = self.callback_for(&p.agent.0, callback).await;
        let shown = self.describe_resource(&p, page.now).await;
        let mission = self.mission_shown(&p, &s.account).await?;
        let mission_wide = self.mission_wide(&p, &s.account, mission.as_ref());
        let body = maud::html! {
            (view::signed_in_as(&self.messages, &s, &aauth_metadata::code::display(&p.code)))
            (self.consent_page(&p, shown.as_deref(), (mission.as_ref(), mission_wide), &s.csrf, callback.as_deref()))
        };
        self.save(&mut p).await?;
        let r = self.page(StatusCode::OK, Text::ConsentTitle, &body);
        // The form's answer may be a redirect to the agent's callback: allowed.
        Ok(match callback.as_deref().and_then(web::callback_origin) {
            Some(origin) => view::form_may_lead_to(r, origin),
            None => r,
        })
    }

    /// `POST /interact/login`: checks the password (throttled, hashed off the request
    /// threads) and starts a session.
    async fn sign_in(&self, page: PageRequest<'_>) -> Result<http::Response<Bytes>, PsError> {
        if !self.passwords {
            return Ok(self.message(StatusCode::NOT_FOUND, Text::PasswordsOff));
        }
        let csrf_cookie = web::cookie(&page.parts.headers, web::CSRF_COOKIE);
        let (Some(csrf), Some(form_csrf)) = (csrf_cookie, web::field(&page.posted, "csrf")) else {
            return Ok(self.form_expired());
        };
        if !bool::from(subtle_eq(csrf.as_bytes(), form_csrf.as_bytes())) {
            return Ok(self.form_expired());
        }
        // A missing field is an empty one: no account is named "", and the password
        // check fails for it.
        let field = |name| web::field(&page.posted, name).unwrap_or_default(); // default: see above
        let (code, account, password) = (field("code"), field("username"), field("password"));
        if account.len() > web::MAX_ACCOUNT_LEN || password.len() > web::MAX_PASSWORD_LEN {
            return Ok(self.message(StatusCode::BAD_REQUEST, Text::TooLong));
        }
        // Guesses are throttled per client and per account, refused before any hash is
        // computed. A browser that signed in to this account since its password was last
        // set (its device cookie) counts against the account's known browsers instead of
        // the account's own count, so guessing from elsewhere never locks the person out
        // of their own browser, and guessing from a known browser is limited too.
        let device = web::cookie(&page.parts.headers, web::DEVICE_COOKIE);
        // The hash is read here only for a browser that shows a device cookie.
        let stored = match &device {
            Some(_) => Some(self.store.password_hash(account).await?),
            None => None,
        };
        let known_device = device.as_deref().is_some_and(|d| {
            self.device_is_known(account, stored.as_ref().and_then(Option::as_deref), d)
        });
        let mut keys: Vec<ThrottleKey> = page
            .client
            .map(|c| ThrottleKey::client("password/client", c))
            .into_iter()
            .collect();
        let account_key = if known_device {
            ThrottleKey::new("password/known-device", account)
        } else {
            ThrottleKey::new("password/account", account)
        };
        keys.push(account_key);
        if let Some(wait) = self.throttle.blocked(&keys, page.now).await? {
            return Ok(self.too_many(wait, Text::WaitFailedSignIns));
        }
        let Some(permit) = self.hashing_permit().await else {
            let mut r = self.message(StatusCode::SERVICE_UNAVAILABLE, Text::BusyHashing);
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(r);
        };
        // Counted as a failure before the hash is checked, in one step with the check
        // (given back below if it matches): of guesses sent at once, no more are checked
        // than the throttle lets through one after another.
        let receipt = match self.throttle.attempt(&keys, page.now).await?.into_receipt() {
            Ok(receipt) => receipt,
            Err(wait) => return Ok(self.too_many(wait, Text::WaitFailedSignIns)),
        };
        let phc = match stored {
            Some(phc) => phc,
            None => self.store.password_hash(account).await?,
        };
        if !self.password_matches(permit, phc, password).await {
            return Ok(self.page(
                StatusCode::UNAUTHORIZED,
                Text::SignInTitle,
                &view::login_form(
                    &self.messages,
                    &SignInForm {
                        code,
                        csrf: &csrf,
                        callback: web::field(&page.posted, "callback"),
                        providers: &self.sign_in_choices(),
                        passwords: self.passwords,
                    },
                    Some(Text::WrongPassword),
                ),
            ));
        }
        // The right password gives its own count back and clears the account's; the
        // client's earlier failures stay counted (they may be guesses at other accounts:
        // signing in to one's own account must not reset them).
        self.throttle.refund(receipt, page.now).await?;
        self.throttle.succeeded(&[account_key]).await?;
        // Said only to whoever knows the password: a disabled account is no oracle.
        if self.store.account_disabled(account).await? {
            return Ok(self.message(StatusCode::FORBIDDEN, Text::AccountDisabled));
        }
        self.start_session(&page, account, code).await
    }

    /// `POST /interact/logout`: ends the session whose CSRF token the form carries, and
    /// offers the request's link again (for another person to sign in).
    async fn sign_out(&self, page: &PageRequest<'_>) -> Result<http::Response<Bytes>, PsError> {
        let (Some(s), Some(cookie)) = (page.session.as_ref(), page.session_cookie.as_ref()) else {
            return Ok(self.message(StatusCode::UNAUTHORIZED, Text::NotSignedIn));
        };
        let form_csrf = web::field(&page.posted, "csrf").unwrap_or_default(); // default: no token fails the comparison
        if !bool::from(subtle_eq(s.csrf.as_bytes(), form_csrf.as_bytes())) {
            return Ok(self.form_expired());
        }
        let code: String = web::field(&page.posted, "code")
            .unwrap_or_default() // default: no request to go back to
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(9)
            .collect();
        let mut ended = s.clone();
        ended.expires = page.now.as_secs();
        self.store
            .put_session(&web::session_key(cookie), ended)
            .await?;
        // "Not you?": the request this page showed goes back to nobody's, for its person
        // (after the session has ended: a store that fails here does not keep anyone
        // signed in).
        self.release_claim(&code, &s.account, page.now).await?;
        let body = maud::html! {
            p { (self.messages.text(Text::SignedOut)) }
            @if !code.is_empty() {
                p { (view::link(&self.messages, &format!("{INTERACT_PATH}?code={code}"), Text::SignInAgain)) }
            }
        };
        let mut r = self.page(StatusCode::OK, Text::SignedOutTitle, &body);
        if let Some(v) = web::set_cookie(web::SESSION_COOKIE, "", 0) {
            r.headers_mut().append(http::header::SET_COOKIE, v);
        }
        Ok(r)
    }

    /// Gives back the request `code` names, if `account` claimed it by opening its link
    /// ([`Pending::viewer`]) and it is still open, undecided and unexpired: whoever
    /// signs out of it ("not you?") was not its person, and the one who is may then open
    /// it (rather than being refused as a wrong attempt). A request whose resource's own
    /// flow the account went through stays theirs: that flow's result is not the next
    /// person's. Written with the request's compare-and-set, read again when another
    /// writer was first.
    async fn release_claim(&self, code: &str, account: &str, now: UnixTime) -> Result<(), PsError> {
        let mut tries = 0;
        loop {
            let Some(mut p) = self.pending_by_code(code).await? else {
                return Ok(());
            };
            let resource_flow_done = matches!(
                &p.request,
                PendingRequest::AuthToken { resource_interaction: Some(f), .. } if f.done
            );
            if p.account.is_some()
                || p.viewer.as_deref() != Some(account)
                || !answerable(&p, now.as_secs())
                || resource_flow_done
            {
                return Ok(());
            }
            p.viewer = None;
            match self.save(&mut p).await {
                Err(PsError::Conflict(_)) if tries < 3 => tries += 1,
                done => return done,
            }
        }
    }

    /// One of the few password hashes computed at once ([`Self::password_matches`]),
    /// waited for at most two seconds (`None`: too busy).
    async fn hashing_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            Arc::clone(&self.hashing).acquire_owned(),
        )
        .await
        .ok()?
        .ok()
    }

    /// Whether `password` matches an account's stored hash `phc` (`None`: no such
    /// account): the same work whether or not the account exists, computed under
    /// `permit` ([`Self::hashing_permit`]: a bounded number at a time), off the threads
    /// that answer requests.
    async fn password_matches(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        phc: Option<String>,
        password: &str,
    ) -> bool {
        // An account without a password (`web::NO_PASSWORD`, or anything else that is not
        // a PHC string) costs the same work as an account that does not exist, and
        // matches nothing.
        let phc = phc.filter(|p| p.starts_with('$'));
        let exists = phc.is_some();
        let (stored, given) = (
            phc.unwrap_or_else(|| web::dummy_hash().to_owned()),
            password.to_owned(),
        );
        let checked = tokio::task::spawn_blocking(move || {
            let ok = web::check_password(&stored, &given);
            drop(permit);
            ok
        })
        .await;
        matches!(checked, Ok(true)) && exists
    }

    /// A new session for `account`, and the way back to the request `code` names.
    async fn start_session(
        &self,
        page: &PageRequest<'_>,
        account: &str,
        code: &str,
    ) -> Result<http::Response<Bytes>, PsError> {
        let callback = web::field(&page.posted, "callback");
        let (target, cookies) = self.new_session(account, code, callback, page.now).await?;
        let mut r = web::see_other(&target);
        for c in cookies {
            r.headers_mut().append(http::header::SET_COOKIE, c);
        }
        Ok(r)
    }

    /// Starts a session for `account`: the way back to the request `code` names (with
    /// the agent's `callback`), and the cookies to set (the session's, and the device
    /// cookie that marks this browser as known for the account).
    pub(super) async fn new_session(
        &self,
        account: &str,
        code: &str,
        callback: Option<&str>,
        now: UnixTime,
    ) -> Result<(String, Vec<HeaderValue>), PsError> {
        let cookie = self.random_token()?;
        let csrf = self.random_token()?;
        let session = crate::pending::WebSession {
            account: account.to_owned(),
            csrf,
            expires: now.as_secs().saturating_add(3600),
            bad_codes: 0,
        };
        self.store
            .put_session(&web::session_key(&cookie), session)
            .await?;
        let phc = self.store.password_hash(account).await?;
        let cookies = self.session_cookies(account, phc.as_deref(), &cookie);
        // Signed in from a request's link: back to it; from nowhere: to the dashboard.
        let code: String = code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(9)
            .collect();
        if code.is_empty() {
            return Ok((dashboard::ACCOUNT_PATH.to_owned(), cookies));
        }
        let mut target = String::from(INTERACT_PATH);
        target.push_str("?code=");
        target.push_str(&code);
        if let Some(cb) = callback.filter(|c| !c.is_empty()) {
            target.push_str("&callback=");
            target.push_str(&web::query_escape(cb));
        }
        Ok((target, cookies))
    }

    /// The cookies a new session sets: the session's, and the device cookie that marks
    /// this browser as known for `account` while its stored password hash is `phc` (see
    /// the throttle in `sign_in`).
    fn session_cookies(&self, account: &str, phc: Option<&str>, cookie: &str) -> Vec<HeaderValue> {
        let mut cookies: Vec<HeaderValue> = web::set_cookie(web::SESSION_COOKIE, cookie, 3600)
            .into_iter()
            .collect();
        cookies.extend(
            self.new_device(account, phc)
                .and_then(|d| web::set_cookie(web::DEVICE_COOKIE, &d, web::DEVICE_COOKIE_AGE)),
        );
        cookies
    }

    /// Counts the code the person presents as a wrong guess against the account and the
    /// client before it is looked up, in one step with the check
    /// ([`Throttle::attempt`](aauth_metadata::throttle::Throttle::attempt)): of codes sent
    /// at once, no more are looked up than the throttle lets through one after another.
    /// `Ok(receipt)`: look the code up; a wrong one stays counted, and one that proves the
    /// person's own (or theirs, come too late) gives the receipt back
    /// ([`Throttle::refund`](aauth_metadata::throttle::Throttle::refund)), which leaves
    /// the keys as if it had never been counted. `Err(page)`: the keys are blocked, and
    /// the page says for how long.
    pub(super) async fn code_attempt(
        &self,
        page: &PageRequest<'_>,
        account: &str,
    ) -> Result<Result<Receipt, http::Response<Bytes>>, PsError> {
        let keys = page.code_keys(account);
        let attempt = self.throttle.attempt(&keys, page.now).await?;
        Ok(attempt
            .into_receipt()
            .map_err(|wait| self.too_many(wait, Text::WaitWrongCodes)))
    }

    /// A code that names no request the person may answer (none, or one answered,
    /// expired or failed): counted against the account and the client (by the attempt
    /// that looked it up), and against the session (refused past
    /// [`web::MAX_BAD_CODES`]).
    pub(super) async fn wrong_code(&self, page: &PageRequest<'_>) -> Result<(), PsError> {
        if let Some(c) = &page.session_cookie {
            self.store
                .count_bad_code(&web::session_key(c), page.now)
                .await?;
        }
        Ok(())
    }

    /// Another person's request presented (its code is someone else's): counted against
    /// the account and the client (by the attempt that looked it up), and against the
    /// request, which ends after [`web::MAX_ATTEMPTS`] such tries (the agent's next poll
    /// gets 410 invalid_code).
    async fn not_theirs(&self, p: &mut Pending) -> Result<(), PsError> {
        p.attempts = p.attempts.saturating_add(1);
        let ends = p.attempts >= web::MAX_ATTEMPTS;
        if ends {
            p.state = PendingState::Done;
        }
        self.save(p).await?;
        if ends {
            super::defer::count_pending("failed");
        }
        Ok(())
    }

    /// The pending request an interaction code names, if the code is well-formed.
    pub(super) async fn pending_by_code(&self, code: &str) -> Result<Option<Pending>, PsError> {
        match aauth_metadata::code::normalize(code) {
            Some(c) => Ok(self.store.pending_by_code(&c).await?),
            None => Ok(None),
        }
    }

    /// `POST /interact`: the person's decision on the request the form's code names.
    async fn decide_request(
        &self,
        page: PageRequest<'_>,
    ) -> Result<http::Response<Bytes>, PsError> {
        let Some(s) = page.session.as_ref() else {
            return Ok(self.message(StatusCode::UNAUTHORIZED, Text::SignInFirst));
        };
        let form_csrf = web::field(&page.posted, "csrf").unwrap_or_default(); // default: no token fails the comparison
        if !bool::from(subtle_eq(s.csrf.as_bytes(), form_csrf.as_bytes())) {
            return Ok(self.form_expired());
        }
        // The form names its request by code: a decision is a guess like any other (a
        // matching code would approve someone else's request and bind its agent here),
        // throttled and counted as the page's lookups are, whatever it failed on.
        if s.bad_codes >= web::MAX_BAD_CODES {
            return Ok(self.message(StatusCode::TOO_MANY_REQUESTS, Text::TooManyCodes));
        }
        let receipt = match self.code_attempt(&page, &s.account).await? {
            Ok(receipt) => receipt,
            Err(refused) => return Ok(refused),
        };
        let code = web::field(&page.posted, "code").unwrap_or_default(); // default: no code matches nothing
        let found = self.pending_by_code(code).await?;
        if found
            .as_ref()
            .is_some_and(|p| expired_for(p, page.now.as_secs(), &s.account))
        {
            self.throttle.refund(receipt, page.now).await?;
            return Ok(self.message(StatusCode::REQUEST_TIMEOUT, Text::NoSuchCode));
        }
        let Some(mut p) = found.filter(|p| answerable(p, page.now.as_secs())) else {
            self.wrong_code(&page).await?;
            return Ok(self.message(StatusCode::GONE, Text::AlreadyAnswered));
        };
        let claimed = claim(&mut p, &s.account);
        if claimed != Claim::NotTheirs {
            // The person's own request: no wrong guess.
            self.throttle.refund(receipt, page.now).await?;
        }
        match claimed {
            Claim::NotTheirs => {
                self.not_theirs(&mut p).await?;
                return Ok(self.message(StatusCode::GONE, Text::AlreadyAnswered));
            }
            // Recorded before anything is decided (an approval binds the agent): of two
            // people posting at once, the second is told the request changed.
            Claim::Claimed => self.save(&mut p).await?,
            Claim::Theirs => {}
        }
        let decision = web::field(&page.posted, "decision");
        // A grant waits for the resource's own flow, which the consent page sends the
        // person through first: a form posted before it is done approves nothing.
        if matches!(decision, Some("grant" | "grant-mission"))
            && let Some(mut first) = self.resource_interstitial(&mut p).await?
        {
            *first.status_mut() = StatusCode::CONFLICT;
            return Ok(first);
        }
        match decision {
            Some("ask") => self.ask_agent(&page, &mut p).await,
            Some("answer") => self.answer_question(&page, &mut p).await,
            Some("grant-mission") => self.grant_for_mission(&page, &mut p, &s.account).await,
            decision => {
                let grant = decision == Some("grant");
                self.grant_or_deny(&page, &mut p, grant, &s.account).await
            }
        }
    }

    /// The person asks the agent a clarification question.
    async fn ask_agent(
        &self,
        page: &PageRequest<'_>,
        p: &mut Pending,
    ) -> Result<http::Response<Bytes>, PsError> {
        let question = web::field(&page.posted, "question").unwrap_or_default(); // default: no question is an empty one, refused below
        let question = question.trim();
        if !p.clarification
            || p.open_question().is_some()
            || p.chat.len() >= crate::pending::MAX_CLARIFICATIONS
            || question.is_empty()
        {
            return Ok(self.message(StatusCode::BAD_REQUEST, Text::CannotAsk));
        }
        p.chat.push(crate::pending::ChatTurn::new(
            question.chars().take(2000).collect::<String>(),
        ));
        let code = aauth_metadata::code::display(&p.code);
        self.save(p).await?;
        let m = &self.messages;
        let reload = view::link(
            m,
            &format!("{INTERACT_PATH}?code={code}"),
            Text::ReloadRequest,
        );
        let body = maud::html! { p { (m.markup(Text::QuestionSent, &[("link", reload)])) } };
        Ok(self.page(StatusCode::OK, Text::QuestionSentTitle, &body))
    }

    /// The person answers a question: an Access Server's (four-party), or an agent's
    /// (`POST /interaction`).
    async fn answer_question(
        &self,
        page: &PageRequest<'_>,
        p: &mut Pending,
    ) -> Result<http::Response<Bytes>, PsError> {
        let given = web::field(&page.posted, "answer").unwrap_or_default(); // default: no answer is an empty one, refused below
        let given = given.trim();
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &mut p.request
            && let Some((_, answer @ None)) = f.access_server_question.as_mut()
        {
            if given.is_empty() {
                return Ok(self.message(StatusCode::BAD_REQUEST, Text::WriteAnswer));
            }
            *answer = Some(given.chars().take(4000).collect());
            self.save(p).await?;
            return Ok(self.message(StatusCode::OK, Text::AnsweredForAccessServer));
        }
        if !matches!(p.request, PendingRequest::Question { .. }) || given.is_empty() {
            return Ok(self.message(StatusCode::BAD_REQUEST, Text::NothingToAnswer));
        }
        p.state = PendingState::Answered {
            answer: given.chars().take(4000).collect(),
        };
        let provider = p.agent.0.clone();
        self.save(p).await?;
        if let Some(cb) = self
            .callback_for(&provider, web::field(&page.posted, "callback"))
            .await
        {
            return Ok(self.back_to_agent(&cb, Text::AnsweredReturn));
        }
        Ok(self.message(StatusCode::OK, Text::AnsweredReturn))
    }

    /// The person grants `p` for the rest of its mission: granted as once, and the
    /// mission remembers the resource and scope (when it may: see
    /// [`PersonServer::mission_wide`]; otherwise this is a grant once).
    async fn grant_for_mission(
        &self,
        page: &PageRequest<'_>,
        p: &mut Pending,
        account: &str,
    ) -> Result<http::Response<Bytes>, PsError> {
        let mission = self.mission_shown(p, account).await?;
        let standing = match &p.request {
            PendingRequest::AuthToken {
                resource,
                scope,
                mission_s256: Some(s256),
                ..
            } if self.mission_wide(p, account, mission.as_ref()) => {
                // No scope is approved as "" (and asked as "", see `approved_for_mission`).
                let scope = scope.clone().unwrap_or_default(); // default: see above
                Some((resource.clone(), scope, s256.clone()))
            }
            _ => None,
        };
        let answered = self.grant_or_deny(page, p, true, account).await?;
        let granted = answered.status().is_success() || answered.status().is_redirection();
        if let Some((resource, scope, s256)) = standing.filter(|_| granted)
            && let Some(m) = self.store.owned_mission(&s256, &p.agent).await?
            && m.account == account
        {
            let now = page.now.as_secs();
            match self
                .commit_mission(m, |m| {
                    m.approve_for_mission(&resource, &scope, now);
                    Ok(())
                })
                .await
            {
                // Ended meanwhile: the approval once stands, nothing for the mission.
                Ok(_) | Err(PsError::MissionTerminated(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(answered)
    }

    /// The mission `p` is asked under, as the page shows it to `account`: `Unknown` for a
    /// mission this server does not hold for that person (another's is never shown).
    async fn mission_shown(
        &self,
        p: &Pending,
        account: &str,
    ) -> Result<Option<view::MissionShown>, PsError> {
        let (PendingRequest::PersonToken { mission_s256, .. }
        | PendingRequest::AuthToken { mission_s256, .. }
        | PendingRequest::Permission { mission_s256, .. }
        | PendingRequest::Question { mission_s256, .. }) = &p.request
        else {
            return Ok(None);
        };
        let Some(s256) = mission_s256 else {
            return Ok(None);
        };
        let found = self.store.owned_mission(s256, &p.agent).await?;
        Ok(Some(match found.filter(|m| m.account == account) {
            Some(m) => view::MissionShown::of(&self.messages, &m),
            None => view::MissionShown::Unknown,
        }))
    }

    /// Whether `account` may approve `p` for the rest of its mission: an auth token asked
    /// under an active mission of theirs, and the policy allowing it.
    fn mission_wide(
        &self,
        p: &Pending,
        account: &str,
        mission: Option<&view::MissionShown>,
    ) -> bool {
        let PendingRequest::AuthToken {
            resource,
            scope,
            upstream_jti,
            ..
        } = &p.request
        else {
            return false;
        };
        matches!(
            mission,
            Some(view::MissionShown::Known { ended: false, .. })
        ) && self.policy.mission_wide(&crate::ConsentRequest {
            account,
            provider: &p.agent.0,
            agent: &p.agent.1,
            resource,
            scope: scope.as_deref(),
            kind: crate::ConsentKind::AuthToken,
            chained: upstream_jti.is_some(),
        })
    }

    /// The consent page's body for `p` (see [`view::consent`]).
    fn consent_page(
        &self,
        p: &Pending,
        shown: Option<&Shown>,
        (mission, mission_wide): (Option<&view::MissionShown>, bool),
        csrf: &str,
        callback: Option<&str>,
    ) -> maud::Markup {
        view::consent(
            &self.messages,
            &view::Consent {
                ps: self.id.as_str(),
                pending: p,
                shown,
                mission,
                csrf,
                callback,
                mission_wide,
                lasts: match &p.request {
                    PendingRequest::PersonToken { .. } => Some(self.person_lifetime),
                    PendingRequest::AuthToken { .. } => Some(self.auth_lifetime),
                    _ => None,
                },
            },
        )
    }

    /// A page of this server's, in its language.
    pub(super) fn page(
        &self,
        status: StatusCode,
        title: Text,
        body: &maud::Markup,
    ) -> http::Response<Bytes> {
        view::page(&self.messages, status, title, body)
    }

    /// A page that says one thing.
    pub(super) fn message(&self, status: StatusCode, text: Text) -> http::Response<Bytes> {
        view::message(&self.messages, status, text)
    }

    /// A page's error: a pending request another writer changed first (the agent updated
    /// it, another tab answered) tells the person to look again, nothing written; any
    /// other is the error's own response.
    fn failed(&self, e: PsError) -> http::Response<Bytes> {
        if let PsError::Conflict(_) = e {
            return self.message(StatusCode::CONFLICT, Text::RequestChanged);
        }
        // The error's own status and `Retry-After`, on a page the person can read.
        let answer = e.into_http_response();
        let status = answer.status();
        let said = self
            .messages
            .fill(Text::ServerTrouble, &[("status", status.as_str())]);
        let mut page = self.page(
            status,
            Text::PersonServer,
            &maud::html! { p role="alert" { (said) } },
        );
        if let Some(v) = answer.headers().get(http::header::RETRY_AFTER) {
            page.headers_mut()
                .insert(http::header::RETRY_AFTER, v.clone());
        }
        page
    }

    /// `429` with `Retry-After`, saying `text` (which has a `{seconds}`).
    pub(super) fn too_many(&self, wait: u64, text: Text) -> http::Response<Bytes> {
        let seconds = wait.to_string();
        let body = maud::html! { p { (self.messages.fill(text, &[("seconds", &seconds)])) } };
        let mut r = self.page(StatusCode::TOO_MANY_REQUESTS, Text::PersonServer, &body);
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
        r
    }

    /// The same answer for a wrong code and for another person's request.
    fn no_such_code(&self) -> http::Response<Bytes> {
        self.message(StatusCode::NOT_FOUND, Text::NoSuchCode)
    }

    /// A form whose CSRF token does not match.
    fn form_expired(&self) -> http::Response<Bytes> {
        self.message(StatusCode::FORBIDDEN, Text::FormExpired)
    }
}

#[cfg(not(feature = "oidc"))]
impl PersonServer {
    /// The providers the sign-in page offers: none without the `oidc` feature.
    fn sign_in_choices(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }
}

/// Whether `p` expired before it was decided, as `account` may be told: still open past
/// its time, or ended by a poll that said it expired ([`PendingState::Expired`]); asked
/// of them or of nobody in particular.
fn expired_for(p: &Pending, now: u64, account: &str) -> bool {
    let expired = (p.is_open() && now >= p.expires) || p.state == PendingState::Expired;
    expired && p.person().is_none_or(|a| a == account)
}

/// Whether the person may still answer `p` at `now` (seconds): open, unexpired, and not
/// failed by wrong attempts.
fn answerable(p: &Pending, now: u64) -> bool {
    p.is_open() && now < p.expires && p.attempts < web::MAX_ATTEMPTS
}

/// Whether `account` may answer `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// It is theirs: asked of them, or its code first presented by them.
    Theirs,
    /// It was nobody's and is now theirs ([`Pending::viewer`] set; written with the
    /// request's next compare-and-set, so of two people presenting the code at once one
    /// is recorded and the other is told the request changed).
    Claimed,
    /// It is another person's.
    NotTheirs,
}

/// Whether `account` may answer `p`, recording them as its person when it had none.
fn claim(p: &mut Pending, account: &str) -> Claim {
    match p.person() {
        Some(person) if person == account => Claim::Theirs,
        Some(_) => Claim::NotTheirs,
        None => {
            p.viewer = Some(account.to_owned());
            Claim::Claimed
        }
    }
}

/// What a page request carries, read once.
pub(super) struct PageRequest<'a> {
    pub(super) parts: &'a Parts,
    pub(super) query: Vec<(String, String)>,
    pub(super) posted: Vec<(String, String)>,
    session_cookie: Option<String>,
    pub(super) session: Option<crate::pending::WebSession>,
    pub(super) client: Option<ClientAddr>,
    pub(super) now: UnixTime,
}

impl PageRequest<'_> {
    /// Guessing a code is throttled per account and per client (each wrong code counts
    /// against both, and a blocked one is refused before any lookup); guessing a
    /// request's code from another account also ends that request (`attempts`).
    fn code_keys(&self, account: &str) -> Vec<ThrottleKey> {
        let mut keys = vec![ThrottleKey::new("code/account", account)];
        keys.extend(self.client.map(|c| ThrottleKey::client("code/client", c)));
        keys
    }
}
