//! Resource tokens (`aa-resource+jwt`, draft -11 §6.7): minted only from a person or auth
//! token verified on the same request, never from an agent token alone (RS-30).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{PublicKey, Signer};
#[cfg(feature = "revocation-sender")]
use aauth_metadata::outbound::{RevocationError, Revoker, ServerSigner};
#[cfg(feature = "revocation-sender")]
use aauth_metadata::{
    AccessServerMetadata, MetadataDocument, PersonServerMetadata, ResourceMetadata,
};
#[cfg(feature = "revocation-sender")]
use aauth_tokens::ResourceClaims;
use aauth_tokens::{AuthClaims, PersonClaims, ResourceTokenBuilder, ServerId};
use serde::Deserialize;

use crate::Refusal;

/// Decides whether the person `(iss, sub)` holds `account` (the authorization endpoint's
/// `account` parameter).
pub type AccountCheck = dyn Fn(&ServerId, &str, &str) -> bool + Send + Sync;

/// Who the resource knows an authorization is for, from the person `(ps, sub)` and the
/// `account` asked for (if any): the resource token's `login_hint` (draft -11 §Resource
/// Token Structure; OpenID Connect Core §3.1.2.1), or `None`. The Person Server may ignore
/// it: check the auth token's claims, never assume the hint was honoured.
pub type LoginHint = dyn Fn(&ServerId, &str, Option<&str>) -> Option<String> + Send + Sync;

/// How a resource mints resource tokens: its signing key (published in its JWKS under
/// `kid`), its Access Server if it has one (four-party: the tokens' `aud`), the scopes it
/// knows, and the lifetime (five minutes by default, the draft's cap).
///
/// ```
/// use std::sync::Arc;
/// use aauth_keys::PrivateKey;
/// use aauth_resource::ResourceTokens;
/// let tokens = ResourceTokens::new(Arc::new(PrivateKey::ed25519_from_seed(&[3; 32])), "key-1")
///     .scopes(["calendar.read", "calendar.write"])
///     .lifetime(std::time::Duration::from_secs(120));
/// # drop(tokens);
/// ```
#[derive(Clone)]
pub struct ResourceTokens {
    signer: Arc<dyn Signer>,
    kid: String,
    pub(crate) access_server: Option<ServerId>,
    pub(crate) person_servers: Option<BTreeSet<ServerId>>,
    scopes: Option<BTreeSet<String>>,
    accounts: Option<Arc<AccountCheck>>,
    login_hints: Option<Arc<LoginHint>>,
    lifetime: u64,
    random: SharedRandom,
    compatibility: Compatibility,
}

/// Opt-in departures from draft -11 for peers that lag it. The default is strict -11 (every
/// member off); each member is one documented departure, for the peers named.
///
/// ```
/// use aauth_resource::Compatibility;
/// assert_eq!(Compatibility::default(), Compatibility::strict());
/// assert!(Compatibility::strict().person_token_jti(true).writes_person_token_jti());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compatibility {
    person_token_jti: bool,
}

impl Compatibility {
    /// Strict draft -11: nothing is emitted that -11 does not define.
    #[must_use]
    pub const fn strict() -> Self {
        Self {
            person_token_jti: false,
        }
    }

    /// Resource tokens also carry `person_token_jti` (the value of `presented_jti`, which
    /// is always written): the claim's name before -11 renamed it (§6.7.1). For Person
    /// Servers that read only the old name and otherwise refuse the token with
    /// `invalid_resource_token`: `@hellocoop/mockin` 2.0.0 and the TypeScript reference
    /// (`tests/interop/mockin/README.md`). A -11 Person Server ignores the extra claim.
    #[must_use]
    pub const fn person_token_jti(mut self, on: bool) -> Self {
        self.person_token_jti = on;
        self
    }

    /// Whether resource tokens also carry `person_token_jti`.
    #[must_use]
    pub const fn writes_person_token_jti(&self) -> bool {
        self.person_token_jti
    }
}

impl std::fmt::Debug for ResourceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceTokens")
            .field("kid", &self.kid)
            .field("access_server", &self.access_server)
            .field("person_servers", &self.person_servers)
            .field("scopes", &self.scopes)
            .field("lifetime", &self.lifetime)
            .field("compatibility", &self.compatibility)
            .finish_non_exhaustive()
    }
}

impl ResourceTokens {
    /// Signs with `signer` under `kid`; three-party (`aud` = the person's Person Server);
    /// any scope; five-minute tokens.
    #[must_use]
    pub fn new(signer: Arc<dyn Signer>, kid: &str) -> Self {
        Self {
            signer,
            kid: kid.to_owned(),
            access_server: None,
            person_servers: None,
            scopes: None,
            accounts: None,
            login_hints: None,
            lifetime: aauth_tokens::RESOURCE_TOKEN_MAX_LIFETIME,
            random: SharedRandom::default(),
            compatibility: Compatibility::strict(),
        }
    }

    /// The departures from -11 to make for peers that lag it ([`Compatibility`]); strict
    /// -11 unless set.
    #[must_use]
    pub fn compatibility(mut self, compatibility: Compatibility) -> Self {
        self.compatibility = compatibility;
        self
    }

    /// Four-party: the resource's Access Server, the `aud` of its resource tokens and the
    /// only issuer whose auth tokens it honours.
    #[must_use]
    pub fn access_server(mut self, id: ServerId) -> Self {
        self.access_server = Some(id);
        self
    }

    /// The Person Servers whose word this resource takes (draft -11: a resource applies
    /// its own policy to who vouches for a person): person tokens, and three-party auth
    /// tokens, are honoured only from these; any other is refused (`403`). Without it,
    /// any Person Server is taken, which in three-party mode lets whoever runs one grant
    /// its own tokens any scope here.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use aauth_keys::PrivateKey;
    /// use aauth_resource::ResourceTokens;
    /// use aauth_tokens::ServerId;
    /// let tokens = ResourceTokens::new(Arc::new(PrivateKey::ed25519_from_seed(&[3; 32])), "key-1")
    ///     .person_servers([ServerId::parse("https://ps.example")?]);
    /// # drop(tokens);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn person_servers<I: IntoIterator<Item = ServerId>>(mut self, ids: I) -> Self {
        self.person_servers = Some(ids.into_iter().collect());
        self
    }

    /// The scope values the authorization endpoint accepts (`invalid_scope` otherwise).
    #[must_use]
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// How the authorization endpoint checks an `account` (`invalid_account` when `check`
    /// says no). Without one, any `account` is refused: a resource that has no accounts
    /// cannot honour one.
    #[must_use]
    pub fn accounts(mut self, check: Arc<AccountCheck>) -> Self {
        self.accounts = Some(check);
        self
    }

    /// Where the resource tokens' `login_hint` comes from (none by default; see
    /// [`LoginHint`]).
    #[must_use]
    pub fn login_hints(mut self, hints: Arc<LoginHint>) -> Self {
        self.login_hints = Some(hints);
        self
    }

    /// Revocations signed as resource `resource` with this signer
    /// (`sig=jwks_uri;dwk="aauth-resource.json"`), sent through `transport`: see
    /// [`ResourceTokens::revoke`]. (The `revocation-sender` feature.)
    #[cfg(feature = "revocation-sender")]
    #[must_use]
    pub fn revoker(
        &self,
        resource: &ServerId,
        transport: Arc<dyn aauth_metadata::Transport>,
    ) -> Revoker {
        let signer = ServerSigner::new(
            resource.clone(),
            ResourceMetadata::DWK,
            Arc::clone(&self.signer),
            &self.kid,
        )
        .random(self.random.clone());
        Revoker::new(signer, transport)
    }

    /// Revokes a resource token this resource issued (checklist RS-62): at its `aud` (the
    /// Person Server, three-party; the Access Server, four-party) and, in four-party, at
    /// its `ps` as well, so that neither issues an auth token for it.
    ///
    /// # Errors
    ///
    /// The first leg's [`RevocationError`] (both legs are tried).
    #[cfg(feature = "revocation-sender")]
    pub async fn revoke(
        &self,
        revoker: &Revoker,
        token: &ResourceClaims,
        now: UnixTime,
    ) -> Result<(), RevocationError> {
        let at_ps = revoker.revoke::<PersonServerMetadata>(&token.ps, &token.jti, token.exp, now);
        if token.aud == token.ps {
            return at_ps.await.map(drop);
        }
        let at_access_server = revoker
            .revoke::<AccessServerMetadata>(&token.aud, &token.jti, token.exp, now)
            .await;
        at_access_server.and(at_ps.await).map(drop)
    }

    /// The lifetime (whole seconds, at most 300).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime
            .as_secs()
            .min(aauth_tokens::RESOURCE_TOKEN_MAX_LIFETIME);
        self
    }

    /// Where the tokens' `jti` values come from (the operating system's CSPRNG by
    /// default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    pub(crate) fn check_scope(&self, scope: &str) -> Result<(), Refusal> {
        let mut values = scope.split(' ').peekable();
        if values.peek().is_none() || scope.split(' ').any(str::is_empty) {
            return Err(Refusal::Invalid {
                error: "invalid_scope",
                detail: "scope must be space-separated values".to_owned(),
            });
        }
        if let Some(known) = &self.scopes
            && let Some(unknown) = values.find(|v| !known.contains(*v))
        {
            return Err(Refusal::Invalid {
                error: "invalid_scope",
                detail: format!(
                    "unknown scope {:?}",
                    unknown.chars().take(64).collect::<String>()
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn holds_account(&self, iss: &ServerId, sub: &str, account: &str) -> bool {
        self.accounts.as_ref().is_some_and(|c| c(iss, sub, account))
    }

    /// Mints a resource token for `scope` from the verified token `basis`, bound to the
    /// agent `key` that signed the request.
    pub(crate) fn mint(
        &self,
        resource: &ServerId,
        basis: &Basis<'_>,
        scope: &str,
        account: Option<&str>,
        key: &PublicKey,
        now: UnixTime,
    ) -> Result<String, Refusal> {
        let aud = self
            .access_server
            .clone()
            .unwrap_or_else(|| basis.ps.clone());
        let mut b = ResourceTokenBuilder::new(
            resource.clone(),
            aud,
            basis.ps.clone(),
            basis.sub,
            basis.jti,
            key,
            scope,
        )
        .lifetime(Duration::from_secs(self.lifetime))
        // Never outlive the token it derives from: the Person Server would refuse it.
        .not_after(UnixTime(basis.exp));
        if let Some(m) = basis.mission_s256 {
            b = b.mission_s256(m);
        }
        if let Some(t) = basis.tenant {
            b = b.tenant(t);
        }
        if let Some(a) = account {
            b = b.account(a);
        }
        if self.compatibility.writes_person_token_jti() {
            b = b.also_person_token_jti();
        }
        if let Some(hint) = self
            .login_hints
            .as_ref()
            .and_then(|f| f(basis.ps, basis.sub, account))
        {
            b = b.login_hint(hint);
        }
        b.sign(
            self.signer.as_ref(),
            &self.kid,
            now,
            &mut self.random.clone(),
        )
        .map(|m| m.token)
        .map_err(|e| Refusal::Misconfigured {
            detail: format!("cannot mint a resource token: {e}"),
        })
    }
}

/// The verified token a resource token derives from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Basis<'a> {
    ps: &'a ServerId,
    sub: &'a str,
    jti: &'a str,
    exp: u64,
    mission_s256: Option<&'a str>,
    tenant: Option<&'a str>,
}

impl<'a> Basis<'a> {
    /// A person token: `ps` is its issuer.
    pub(crate) fn person(c: &'a PersonClaims) -> Self {
        Self {
            ps: &c.iss,
            sub: &c.sub,
            jti: &c.jti,
            exp: c.exp,
            mission_s256: c.mission_s256.as_deref(),
            tenant: c.tenant.as_deref(),
        }
    }

    /// An auth token (step-up): `ps` is its `ps` claim.
    pub(crate) fn auth(c: &'a AuthClaims) -> Self {
        Self {
            ps: &c.ps,
            sub: &c.sub,
            jti: &c.jti,
            exp: c.exp,
            mission_s256: c.mission_s256.as_deref(),
            tenant: c.tenant.as_deref(),
        }
    }
}

/// Whether `granted` (space-separated) includes every value of `required`.
pub(crate) fn scope_covers(granted: &str, required: &str) -> bool {
    let granted: BTreeSet<&str> = granted.split(' ').filter(|v| !v.is_empty()).collect();
    required
        .split(' ')
        .filter(|v| !v.is_empty())
        .all(|v| granted.contains(v))
}

/// The authorization endpoint's body.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizationRequest {
    pub(crate) scope: String,
    #[serde(default)]
    pub(crate) account: Option<String>,
}

/// The longest `scope` and `account` the authorization endpoint reads, in bytes: what a
/// token's claims may carry (the tokens crate refuses longer text claims), so a resource
/// token the endpoint mints is one its Person Server or Access Server can read.
pub const MAX_AUTHORIZATION_PARAM: usize = 1024;

impl AuthorizationRequest {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let req: Self = serde_json::from_slice(body).map_err(|e| Refusal::Invalid {
            error: "invalid_request",
            detail: format!("the body is not {{\"scope\", \"account\"?}}: {e}"),
        })?;
        for (name, value) in [
            ("scope", Some(&req.scope)),
            ("account", req.account.as_ref()),
        ] {
            if value.is_some_and(|v| v.len() > MAX_AUTHORIZATION_PARAM) {
                return Err(Refusal::Invalid {
                    error: "invalid_request",
                    detail: format!("{name} is longer than {MAX_AUTHORIZATION_PARAM} bytes"),
                });
            }
        }
        Ok(req)
    }
}
