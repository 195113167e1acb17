//! What the operator does to a Person Server's records ([`Admin`]): accounts created,
//! disabled, enabled and reset; bound agents listed and revoked; issued tokens listed and
//! revoked; the audit log read. Every change is itself an audit event. It works on the
//! store the running server uses (the same SQLite file, say), so the operator needs no
//! endpoint of the server; revocations are sent on to resources and Access Servers with
//! the notifier the server uses ([`Admin::notifier`]).

use std::fmt;
use std::sync::Arc;

use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AgentId, ServerId};

use crate::StoreError;
use crate::audit::{AuditAction, AuditEvent, AuditPage, AuditQuery};
use crate::outbound::{
    IssuedToken, RevocationNotifier, revoke_all, revoke_with_obtained, unbind_and_revoke,
};
use crate::store::{AccountRecord, AuthTokenRecord, Binding, PersonTokenRecord, PsStore};

/// The longest account name (bytes).
const MAX_ACCOUNT: usize = 128;

/// What an [`Admin`] operation refused, or the store's failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdminError {
    /// An account name that is empty, longer than 128 bytes, or holds a control character
    /// or surrounding white space.
    InvalidAccount(String),
    /// An empty password.
    EmptyPassword,
    /// Creating an account that exists.
    AccountExists(String),
    /// No such account.
    NoSuchAccount(String),
    /// The agent is not bound to any account.
    NotBound(String),
    /// No person or auth token with this `jti` is on record (never issued here, or its
    /// record expired).
    NoSuchToken(String),
    /// Hashing the password failed.
    Hash(String),
    /// The store failed.
    Store(StoreError),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidAccount(a) => write!(
                f,
                "{a:?} is not an account name (1 to {MAX_ACCOUNT} bytes, no control characters, no surrounding spaces)"
            ),
            Self::EmptyPassword => f.write_str("the password is empty"),
            Self::AccountExists(a) => write!(f, "the account {a:?} exists"),
            Self::NoSuchAccount(a) => write!(f, "there is no account {a:?}"),
            Self::NotBound(a) => write!(f, "the agent {a} is not bound to any account"),
            Self::NoSuchToken(j) => write!(
                f,
                "no person or auth token {j:?} is on record (never issued here, or expired)"
            ),
            Self::Hash(e) => write!(f, "hashing the password: {e}"),
            Self::Store(e) => write!(f, "the store: {e}"),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The tokens on record ([`Admin::tokens`]), each with whether it is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TokenListing {
    /// Person tokens, oldest expiry first.
    pub person: Vec<(PersonTokenRecord, bool)>,
    /// Auth tokens, oldest expiry first.
    pub auth: Vec<(AuthTokenRecord, bool)>,
}

/// The operator's view of a Person Server's store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_keys::time::UnixTime;
/// use aauth_person_server::{Admin, AuditAction, AuditQuery, MemoryStore, PsStore};
///
/// let store: Arc<dyn PsStore> = Arc::new(MemoryStore::default());
/// let admin = Admin::new(Arc::clone(&store));
/// let now = UnixTime(1_800_000_000);
/// admin.create_account("alice", "correct horse", now).await?;
/// assert!(admin.create_account("alice", "again", now).await.is_err());
/// admin.set_disabled("alice", true, now).await?;
/// assert!(store.account_disabled("alice").await?);
/// let log = admin.audit(&AuditQuery::default().action(AuditAction::Account)).await?;
/// assert_eq!(log.events.len(), 2);
/// assert_eq!(log.events[0].detail, "disabled");
/// assert_eq!(log.next, None, "one page holds them all");
/// # Ok(())
/// # }
/// ```
pub struct Admin {
    store: Arc<dyn PsStore>,
    notifier: Option<Arc<dyn RevocationNotifier>>,
    random: SharedRandom,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("notifies", &self.notifier.is_some())
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The operator of `store`. Revocations are recorded only, until a notifier is set.
    #[must_use]
    pub fn new(store: Arc<dyn PsStore>) -> Self {
        Self {
            store,
            notifier: None,
            random: SharedRandom::default(),
        }
    }

    /// Sends revocations on to the tokens' resources and Access Servers through
    /// `notifier` (the Person Server's own, e.g. an
    /// [`HttpRevocationNotifier`](crate::HttpRevocationNotifier) signing as it).
    #[must_use]
    pub fn notifier(mut self, notifier: Arc<dyn RevocationNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Draws password salts from `random` (the OS CSPRNG by default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// Every account.
    ///
    /// # Errors
    ///
    /// [`AdminError::Store`].
    pub async fn accounts(&self) -> Result<Vec<AccountRecord>, AdminError> {
        Ok(self.store.accounts().await?)
    }

    /// Creates `account` with `password` (hashed with argon2id).
    ///
    /// # Errors
    ///
    /// [`AdminError::InvalidAccount`], [`AdminError::EmptyPassword`],
    /// [`AdminError::AccountExists`], [`AdminError::Hash`], [`AdminError::Store`].
    pub async fn create_account(
        &self,
        account: &str,
        password: &str,
        now: UnixTime,
    ) -> Result<(), AdminError> {
        check_account(account)?;
        let phc = self.hash(password)?;
        if !self.store.create_account(account, &phc).await? {
            return Err(AdminError::AccountExists(account.to_owned()));
        }
        self.log(account_event(now, account, "created")).await
    }

    /// Sets `account`'s password and ends its sessions.
    ///
    /// # Errors
    ///
    /// [`AdminError::NoSuchAccount`], [`AdminError::EmptyPassword`], [`AdminError::Hash`],
    /// [`AdminError::Store`].
    pub async fn reset_password(
        &self,
        account: &str,
        password: &str,
        now: UnixTime,
    ) -> Result<(), AdminError> {
        let phc = self.hash(password)?;
        if self.store.password_hash(account).await?.is_none() {
            return Err(AdminError::NoSuchAccount(account.to_owned()));
        }
        self.store.set_password_hash(account, &phc).await?;
        self.store.drop_sessions(account).await?;
        self.log(account_event(now, account, "password reset"))
            .await
    }

    /// Disables `account` (it signs in to nothing, is issued nothing, its sessions end,
    /// and every person and auth token on record in its name is revoked, here and then at
    /// its resources and Access Servers: how many) or enables it again (`0`; the tokens
    /// revoked stay revoked). Disabling an account disabled already revokes its tokens
    /// again (idempotent: the notices are sent again).
    ///
    /// # Errors
    ///
    /// [`AdminError::NoSuchAccount`], [`AdminError::Store`].
    pub async fn set_disabled(
        &self,
        account: &str,
        disabled: bool,
        now: UnixTime,
    ) -> Result<usize, AdminError> {
        if !self.store.set_account_disabled(account, disabled).await? {
            return Err(AdminError::NoSuchAccount(account.to_owned()));
        }
        if !disabled {
            self.log(account_event(now, account, "enabled")).await?;
            return Ok(0);
        }
        self.store.drop_sessions(account).await?;
        self.log(account_event(now, account, "disabled")).await?;
        // Read once the account is disabled: from then on no issuance in its name passes
        // its check (one checked just before may still be recorded after this read).
        let (person, auth) = self.store.issued_records(Some(account), now).await?;
        let tokens: Vec<IssuedToken> = person
            .into_iter()
            .map(|r| (r.jti, r.aud, r.exp))
            .chain(auth.into_iter().map(|r| (r.jti, r.aud, r.exp)))
            .collect();
        revoke_all(self.store.as_ref(), self.notifier.as_deref(), &tokens, now).await?;
        if !tokens.is_empty() {
            let e = AuditEvent::new(
                now.as_secs(),
                AuditAction::Revoked,
                format!(
                    "{} token(s) revoked: the account was disabled by the operator",
                    tokens.len()
                ),
            )
            .account(account);
            self.log(e).await?;
        }
        Ok(tokens.len())
    }

    /// The agents bound to `account` (to any account when `None`).
    ///
    /// # Errors
    ///
    /// [`AdminError::Store`].
    pub async fn agents(&self, account: Option<&str>) -> Result<Vec<Binding>, AdminError> {
        Ok(self.store.bindings(account).await?)
    }

    /// Revokes an agent: its binding is removed (a new token needs the person again) and
    /// every person and auth token issued to it is revoked, here and at their resources
    /// and Access Servers. Returns how many tokens were revoked.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotBound`] for an agent bound to no account, [`AdminError::Store`].
    pub async fn revoke_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        now: UnixTime,
    ) -> Result<usize, AdminError> {
        if self.store.binding(provider, agent).await?.is_none()
            && self
                .store
                .tokens_of_agent(provider, agent)
                .await?
                .is_empty()
        {
            return Err(AdminError::NotBound(agent.as_str().to_owned()));
        }
        let (account, revoked) = unbind_and_revoke(
            self.store.as_ref(),
            self.notifier.as_deref(),
            provider,
            agent,
            now,
        )
        .await?;
        let mut e = AuditEvent::new(
            now.as_secs(),
            AuditAction::Revoked,
            format!("agent unbound and {revoked} token(s) revoked by the operator"),
        )
        .agent(agent.as_str());
        if let Some(a) = account {
            e = e.account(a);
        }
        self.log(e).await?;
        Ok(revoked)
    }

    /// The person and auth tokens on record at `now` (of `account` when given).
    ///
    /// # Errors
    ///
    /// [`AdminError::Store`].
    pub async fn tokens(
        &self,
        account: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenListing, AdminError> {
        let (person, auth) = self.store.issued_records(account, now).await?;
        let mut listing = TokenListing::default();
        for r in person {
            let revoked = self.store.is_revoked(&r.jti, now).await?;
            listing.person.push((r, revoked));
        }
        for r in auth {
            let revoked = self.store.is_revoked(&r.jti, now).await?;
            listing.auth.push((r, revoked));
        }
        Ok(listing)
    }

    /// Revokes the person or auth token `jti`, here and where it is used; an auth token
    /// obtained with a person token goes with it when that person token is revoked.
    ///
    /// # Errors
    ///
    /// [`AdminError::NoSuchToken`], [`AdminError::Store`].
    pub async fn revoke_token(&self, jti: &str, now: UnixTime) -> Result<(), AdminError> {
        let (aud, exp, account, agent, kind) =
            if let Some(r) = self.store.person_token(jti, now).await? {
                (r.aud, r.exp, r.account, Some(r.agent.1), "person")
            } else if let Some(r) = self.store.auth_token(jti, now).await? {
                (r.aud, r.exp, r.account, None, "auth")
            } else {
                return Err(AdminError::NoSuchToken(jti.to_owned()));
            };
        revoke_with_obtained(
            self.store.as_ref(),
            self.notifier.as_deref(),
            (jti, &account),
            &aud,
            exp,
            now,
        )
        .await?;
        let mut e = AuditEvent::new(
            now.as_secs(),
            AuditAction::Revoked,
            format!("{kind} token {jti} revoked by the operator"),
        )
        .account(account)
        .resource(aud.as_str());
        if let Some(agent) = agent {
            e = e.agent(agent.as_str());
        }
        self.log(e).await
    }

    /// The page of audit events `q` selects, newest first; [`AuditPage::next`] is the
    /// next page's cursor ([`AuditQuery::before`]).
    ///
    /// # Errors
    ///
    /// [`AdminError::Store`].
    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, AdminError> {
        Ok(self.store.audit(q).await?)
    }

    fn hash(&self, password: &str) -> Result<String, AdminError> {
        if password.is_empty() {
            return Err(AdminError::EmptyPassword);
        }
        crate::web::hash_password(password, &mut self.random.clone()).map_err(AdminError::Hash)
    }

    async fn log(&self, e: AuditEvent) -> Result<(), AdminError> {
        Ok(self.store.record_event(e).await?)
    }
}

fn account_event(now: UnixTime, account: &str, what: &str) -> AuditEvent {
    AuditEvent::new(now.as_secs(), AuditAction::Account, what).account(account)
}

fn check_account(account: &str) -> Result<(), AdminError> {
    let ok = !account.is_empty()
        && account.len() <= MAX_ACCOUNT
        && account.trim() == account
        && !account.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(AdminError::InvalidAccount(account.to_owned()))
    }
}
