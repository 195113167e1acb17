//! Signing in on the consent pages with an OpenID Provider (the `oidc` feature): an
//! organisation's people sign in with the provider it already runs, and this server keeps
//! no password for them.
//!
//! The sign-in page offers each configured provider beside (or instead of) the password
//! form. `GET /interact/oidc?provider=…&code=…` starts the authorization code flow with
//! PKCE (`aauth_oauth::OidcClient`): the `state`, `nonce` and code verifier go into a
//! cookie sealed with AES-256-GCM under a key derived from this server's secret (so any
//! instance can finish what another started, and nothing is stored for a sign-in that is
//! never finished), `SameSite=Lax` because the provider's redirect back is a cross-site
//! navigation. `GET /interact/oidc/callback` opens that cookie, lets the client check the
//! callback and the ID token (OpenID Connect Core §3.1.3.7), and finds the account linked
//! to the person's `(iss, sub)`, never their email address. A person the provider vouches
//! for but nobody linked gets an account of their own on first sign-in
//! ([`NewAccounts::Create`], named `{provider}:{sub}`), or is refused
//! ([`NewAccounts::LinkedOnly`]; link them with [`PersonServer::link_account`]). Every
//! failure is a page that says which step failed, starts no session and clears the
//! cookie; failures count against the client in the sign-in throttle.
//!
//! The session then starts as after a password: a `__Host-` session cookie
//! (`SameSite=Strict`), so the way back to the request is a page that refreshes to it (a
//! redirect would still be part of the provider's cross-site navigation, and the browser
//! would not send a strict cookie on it).

use std::sync::Arc;

use aauth_metadata::Fetch;
use aauth_metadata::throttle::ThrottleKey;
use aauth_oauth::{ClientError, OAuthError, OidcClient, PendingSignIn, SignInError, SignedIn};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::PsError;
use crate::audit::{AuditAction, AuditEvent};
use crate::web;

use super::consent::PageRequest;
use super::{OIDC_CALLBACK_PATH, PersonServer};
use crate::web::text::Text;
use crate::web::view;

/// The sealed cookie that carries a sign-in from its start to the provider's callback.
const OIDC_COOKIE: &str = "__Host-aauth-oidc";

/// How long a person has at their provider (seconds).
const SIGN_IN_WINDOW: u64 = 600;

/// The longest provider id.
const MAX_PROVIDER_ID: usize = 32;

/// What the sign-in pages need of a relying party (an [`OidcClient`] of any fetcher).
#[async_trait::async_trait]
trait RelyingParty: Send + Sync {
    fn issuer(&self) -> &str;
    fn redirect_uri(&self) -> &str;
    fn start(&self) -> Result<(String, PendingSignIn), SignInError>;
    async fn finish(&self, pending: &PendingSignIn, query: &str) -> Result<SignedIn, SignInError>;
}

#[async_trait::async_trait]
impl<F: Fetch + 'static> RelyingParty for OidcClient<F> {
    fn issuer(&self) -> &str {
        &self.provider().issuer
    }

    fn redirect_uri(&self) -> &str {
        Self::redirect_uri(self)
    }

    fn start(&self) -> Result<(String, PendingSignIn), SignInError> {
        Self::start(self)
    }

    async fn finish(&self, pending: &PendingSignIn, query: &str) -> Result<SignedIn, SignInError> {
        Self::finish(self, pending, query).await
    }
}

/// Who may sign in through a provider without an account linked beforehand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NewAccounts {
    /// Anyone the provider vouches for: on their first sign-in they get an account of
    /// their own, `{provider id}:{sub}`, linked to their `(iss, sub)` (the default: the
    /// provider is the organisation's, and it decides who its people are).
    #[default]
    Create,
    /// Only people linked to an account beforehand ([`PersonServer::link_account`]).
    LinkedOnly,
}

/// An OpenID Provider offered on the sign-in page.
///
/// ```no_run
/// # fn f<F: aauth_metadata::Fetch>(ps: aauth_person_server::PersonServer,
/// #     client: aauth_oauth::OidcClient<F>)
/// #     -> Result<(), Box<dyn std::error::Error>> {
/// use aauth_person_server::{NewAccounts, SignInProvider};
/// // `client`'s redirect URI is `https://ps.example/interact/oidc/callback`.
/// let ps = ps.sign_in_with(
///     SignInProvider::new("corp", "Example Corp", client).new_accounts(NewAccounts::LinkedOnly),
/// )?;
/// # Ok(()) }
/// ```
pub struct SignInProvider {
    id: String,
    label: String,
    client: Arc<dyn RelyingParty>,
    new_accounts: NewAccounts,
}

impl std::fmt::Debug for SignInProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInProvider")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("issuer", &self.client.issuer())
            .field("new_accounts", &self.new_accounts)
            .finish_non_exhaustive()
    }
}

impl SignInProvider {
    /// The provider `client` signs people in at, named `id` in links and account names
    /// (1 to 32 of `a-z`, `0-9`, `-`) and shown to people as `label`; new people get an
    /// account ([`NewAccounts::Create`]).
    #[must_use]
    pub fn new<F: Fetch + 'static>(
        id: impl Into<String>,
        label: impl Into<String>,
        client: OidcClient<F>,
    ) -> Self {
        Self {
            id: id.into(),
            label: label.into(),
            client: Arc::new(client),
            new_accounts: NewAccounts::default(),
        }
    }

    /// Who may sign in without an account linked beforehand.
    #[must_use]
    pub fn new_accounts(mut self, new_accounts: NewAccounts) -> Self {
        self.new_accounts = new_accounts;
        self
    }

    /// Whether `id` may name a provider: 1 to 32 of `a-z`, `0-9`, `-` (it appears in
    /// links and in the names of the accounts made for the provider's people).
    ///
    /// # Errors
    ///
    /// [`SignInSetupError::Id`].
    pub fn check_id(id: &str) -> Result<(), SignInSetupError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_PROVIDER_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(SignInSetupError::Id(id.to_owned()))
        }
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The provider's `issuer`.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.client.issuer()
    }
}

/// Why a provider cannot be offered ([`PersonServer::sign_in_with`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignInSetupError {
    /// The id is not 1 to 32 of `a-z`, `0-9`, `-`.
    #[error("{0:?} is not a provider id (1 to {MAX_PROVIDER_ID} of a-z, 0-9, -)")]
    Id(String),
    /// Another provider has the id, or the issuer.
    #[error("provider {0:?} is configured twice (by id or by issuer)")]
    Duplicate(String),
    /// The client's redirect URI is not this server's callback.
    #[error("provider {id:?}: the client's redirect URI is {found:?}, not {expected:?}")]
    RedirectUri {
        /// The provider.
        id: String,
        /// This server's callback.
        expected: String,
        /// The client's.
        found: String,
    },
}

/// What the sealed cookie carries.
#[derive(serde::Serialize, serde::Deserialize)]
struct InFlight {
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    code: String,
    callback: Option<String>,
    expires: u64,
}

impl PersonServer {
    /// Offers `provider` on the sign-in page. Its client's redirect URI must be this
    /// server's [`OIDC_CALLBACK_PATH`]. Serve the consent pages too
    /// ([`PersonServer::consent_pages`]).
    ///
    /// # Errors
    ///
    /// [`SignInSetupError`] for a bad or repeated id, a repeated issuer, or another
    /// redirect URI.
    pub fn sign_in_with(mut self, provider: SignInProvider) -> Result<Self, SignInSetupError> {
        let id = &provider.id;
        SignInProvider::check_id(id)?;
        if self
            .providers
            .iter()
            .any(|p| p.id == *id || p.issuer() == provider.issuer())
        {
            return Err(SignInSetupError::Duplicate(id.clone()));
        }
        let expected = format!("{}{OIDC_CALLBACK_PATH}", self.id.as_str());
        if provider.client.redirect_uri() != expected {
            return Err(SignInSetupError::RedirectUri {
                id: id.clone(),
                expected,
                found: provider.client.redirect_uri().to_owned(),
            });
        }
        self.providers.push(provider);
        Ok(self)
    }

    /// Links the person `subject` at the provider `issuer` to `account` (which
    /// need not exist yet), so that they sign in as it. `false` when that person is
    /// linked already: nothing changed.
    ///
    /// # Errors
    ///
    /// [`PsError::Store`].
    pub async fn link_account(
        &self,
        issuer: &str,
        subject: &str,
        account: &str,
    ) -> Result<bool, PsError> {
        Ok(self.store.link_account(issuer, subject, account).await?)
    }

    /// The providers the sign-in page offers: `(id, label)`.
    pub(super) fn sign_in_choices(&self) -> Vec<(&str, &str)> {
        self.providers
            .iter()
            .map(|p| (p.id.as_str(), p.label.as_str()))
            .collect()
    }

    /// The AES-256-GCM key that seals sign-in cookies, derived from this server's
    /// secret (every instance has the same).
    fn cookie_key(&self) -> Result<aws_lc_rs::aead::LessSafeKey, PsError> {
        let tag = aws_lc_rs::hmac::sign(&self.directed, b"aauth-oidc-sign-in-cookie");
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, tag.as_ref())
            .map(aws_lc_rs::aead::LessSafeKey::new)
            .map_err(|e| {
                aauth_metadata::serve::InternalError::produce("sign-in cookie key", e).into()
            })
    }

    fn seal(&self, flight: &InFlight) -> Result<String, PsError> {
        let internal = |what, e: String| -> PsError {
            aauth_metadata::serve::InternalError::produce(what, e).into()
        };
        let mut nonce = [0u8; 12];
        aauth_keys::rand::RandomSource::fill(&mut self.random.clone(), &mut nonce)
            .map_err(|e| internal("sign-in cookie nonce", e.to_string()))?;
        let mut data =
            serde_json::to_vec(flight).map_err(|e| internal("sign-in cookie", e.to_string()))?;
        self.cookie_key()?
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(OIDC_COOKIE.as_bytes()),
                &mut data,
            )
            .map_err(|e| internal("sign-in cookie", e.to_string()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(aauth_keys::base64url::encode(&sealed))
    }

    /// The sign-in a cookie carries, if this server sealed it and it has not expired.
    fn open(&self, cookie: &str, now: u64) -> Option<InFlight> {
        let mut sealed = aauth_keys::base64url::decode(cookie).ok()?;
        if sealed.len() < 12 + 16 {
            return None;
        }
        let data = sealed.split_off(12);
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&sealed).ok()?;
        let mut data = data;
        let plain = self
            .cookie_key()
            .ok()?
            .open_in_place(
                nonce,
                aws_lc_rs::aead::Aad::from(OIDC_COOKIE.as_bytes()),
                &mut data,
            )
            .ok()?;
        serde_json::from_slice::<InFlight>(plain)
            .ok()
            .filter(|f| now < f.expires)
    }

    /// `GET /interact/oidc?provider=…&code=…`: off to the provider.
    pub(super) fn start_oidc(
        &self,
        page: &PageRequest<'_>,
    ) -> Result<http::Response<Bytes>, PsError> {
        let field = |name| web::field(&page.query, name);
        let Some(provider) = field("provider").and_then(|id| self.provider(id)) else {
            return Ok(self.message(StatusCode::NOT_FOUND, Text::NoSuchProvider));
        };
        let (url, pending) = match provider.client.start() {
            Ok(started) => started,
            Err(e) => {
                return Err(
                    aauth_metadata::serve::InternalError::produce("sign-in start", e).into(),
                );
            }
        };
        let flight = InFlight {
            provider: provider.id.clone(),
            state: pending.state,
            nonce: pending.nonce,
            verifier: pending.verifier,
            code: field("code")
                .unwrap_or_default() // default: no code signs in and then shows no request
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(9)
                .collect(),
            callback: field("callback")
                .filter(|c| !c.is_empty() && c.len() <= 2048)
                .map(str::to_owned),
            expires: page.now.as_secs().saturating_add(SIGN_IN_WINDOW),
        };
        let mut r = web::see_other(&url);
        if let Some(v) = web::set_lax_cookie(OIDC_COOKIE, &self.seal(&flight)?, SIGN_IN_WINDOW) {
            r.headers_mut().append(http::header::SET_COOKIE, v);
        }
        Ok(r)
    }

    fn provider(&self, id: &str) -> Option<&SignInProvider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// `GET /interact/oidc/callback`: the provider's answer, checked; a session, or a
    /// page that says what failed.
    pub(super) async fn finish_oidc(
        &self,
        page: &PageRequest<'_>,
    ) -> Result<http::Response<Bytes>, PsError> {
        let keys: Vec<ThrottleKey> = page
            .client
            .map(|c| ThrottleKey::client("oidc/client", c))
            .into_iter()
            .collect();
        if let Some(wait) = self.throttle.blocked(&keys, page.now).await? {
            return Ok(cleared(self.too_many(wait, Text::WaitFailedSignIns)));
        }
        let flight = web::cookie(&page.parts.headers, OIDC_COOKIE)
            .and_then(|c| self.open(&c, page.now.as_secs()));
        let Some((flight, provider)) =
            flight.and_then(|f| self.provider(&f.provider).map(|p| (f, p)))
        else {
            self.throttle.failed(&keys, page.now).await?;
            return Ok(cleared(
                self.message(StatusCode::BAD_REQUEST, Text::SignInExpired),
            ));
        };
        let pending = PendingSignIn {
            state: flight.state.clone(),
            nonce: flight.nonce.clone(),
            verifier: flight.verifier.clone(),
        };
        let query = page.parts.uri.query().unwrap_or_default(); // default: no query is a callback without state, refused
        let who = match provider.client.finish(&pending, query).await {
            Ok(who) => who,
            Err(e) => {
                self.throttle.failed(&keys, page.now).await?;
                let (status, what) = refusal(&e);
                let m = &self.messages;
                let said = m.fill(
                    Text::SignInFailedWith,
                    &[
                        ("provider", &provider.label),
                        ("reason", m.text(what)),
                        // The provider's own `error`, when it said one: its words.
                        ("code", &view::visible(e.code())),
                    ],
                );
                let body = maud::html! { p role="alert" { (said) } };
                return Ok(cleared(self.page(status, Text::PersonServer, &body)));
            }
        };
        let Some(account) = self.account_for(provider, &who, page).await? else {
            let said = self
                .messages
                .fill(Text::NoLinkedAccount, &[("provider", &provider.label)]);
            let body = maud::html! { p { (said) } };
            return Ok(cleared(self.page(
                StatusCode::FORBIDDEN,
                Text::PersonServer,
                &body,
            )));
        };
        self.throttle.succeeded(&keys).await?;
        if self.store.account_disabled(&account).await? {
            return Ok(cleared(
                self.message(StatusCode::FORBIDDEN, Text::AccountDisabled),
            ));
        }
        let (target, cookies) = self
            .new_session(&account, &flight.code, flight.callback.as_deref(), page.now)
            .await?;
        // A page that moves on by itself: see the module's note on strict cookies.
        let m = &self.messages;
        let body = maud::html! {
            p {
                (m.markup(Text::SignedInWith, &[
                    ("provider", maud::html! { (provider.label) }),
                    ("link", view::link(m, &target, Text::ContinueToRequest)),
                ]))
            }
        };
        let mut r = self.page(StatusCode::OK, Text::SignedInTitle, &body);
        if let Ok(v) = HeaderValue::from_str(&format!("0; url={target}")) {
            r.headers_mut().insert("refresh", v);
        }
        for c in cookies {
            r.headers_mut().append(http::header::SET_COOKIE, c);
        }
        Ok(cleared(r))
    }

    /// The account `who` signs in as: the one linked to them, or (as the provider's
    /// policy says) a new one linked now. `None` when there is none they may use.
    async fn account_for(
        &self,
        provider: &SignInProvider,
        who: &SignedIn,
        page: &PageRequest<'_>,
    ) -> Result<Option<String>, PsError> {
        let (iss, sub) = (who.issuer.as_str(), who.subject.as_str());
        if let Some(account) = self.store.linked_account(iss, sub).await? {
            return Ok(Some(account));
        }
        if provider.new_accounts != NewAccounts::Create {
            return Ok(None);
        }
        let account = format!("{}:{sub}", provider.id);
        // An account of that name that is not this person's is never taken over: only
        // a link made here, or by the operator, names it.
        if self.create_account_without_password(&account).await? {
            let event = AuditEvent::new(
                page.now.as_secs(),
                AuditAction::Account,
                format!(
                    "created for the person {sub} at {iss} on their first sign-in with {}",
                    provider.id
                ),
            )
            .account(account.as_str());
            self.log_event(event).await?;
        } else {
            // The name is taken (by another person, or by this one signing in twice at
            // once, who is linked by now).
            return Ok(self.store.linked_account(iss, sub).await?);
        }
        self.store.link_account(iss, sub, &account).await?;
        Ok(self.store.linked_account(iss, sub).await?)
    }
}

/// The status and words for a sign-in that failed.
fn refusal(e: &SignInError) -> (StatusCode, Text) {
    match e {
        SignInError::State | SignInError::NoCode => {
            (StatusCode::BAD_REQUEST, Text::NotForThisBrowser)
        }
        SignInError::Provider { .. } => (StatusCode::FORBIDDEN, Text::ProviderRefused),
        SignInError::Token(ClientError::Unavailable { .. } | ClientError::CircuitOpen { .. })
        | SignInError::IdToken(OAuthError::Unavailable { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, Text::ProviderUnreachable)
        }
        SignInError::Token(_) => (StatusCode::BAD_GATEWAY, Text::ProviderNoExchange),
        _ => (StatusCode::UNAUTHORIZED, Text::IdentityUnverified),
    }
}

/// `r`, clearing the sign-in cookie: a sign-in's cookie is used once.
fn cleared(mut r: http::Response<Bytes>) -> http::Response<Bytes> {
    if let Some(v) = web::set_lax_cookie(OIDC_COOKIE, "", 0) {
        r.headers_mut().append(http::header::SET_COOKIE, v);
    }
    r
}
