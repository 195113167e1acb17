//! Minting AAuth tokens: builders that refuse a token missing a required claim or past its
//! lifetime cap.
//!
//! Caps: agent tokens 24 h, person and auth tokens 1 h, resource tokens 5 min (draft -11
//! §5.3, §6.7.1, §7.1.2, §9.4.1). Every builder also takes `not_after` bounds for the caps
//! that depend on other tokens (the agent token presented, the mission's `expires_at`, an
//! upstream token): the token's `exp` is the earliest of them.

use aauth_keys::rand::{RandomSource, random_id};
use aauth_keys::time::UnixTime;
use aauth_keys::{PublicKey, Signer};
use serde::Serialize;

use crate::claims::{
    AgentClaims, AuthClaims, Confirmation, InteractionClaim, PersonClaims, ResourceClaims,
    TokenType,
};
use crate::{AgentId, ServerId, TokenError, jws};

/// The longest agent token lifetime minted (draft -11 §5.3: SHOULD NOT exceed 24 h).
pub const AGENT_TOKEN_MAX_LIFETIME: u64 = 24 * 3600;
/// The longest person token lifetime (MUST NOT exceed 1 h).
pub const PERSON_TOKEN_MAX_LIFETIME: u64 = 3600;
/// The longest auth token lifetime (MUST NOT exceed 1 h).
pub const AUTH_TOKEN_MAX_LIFETIME: u64 = 3600;
/// The longest resource token lifetime (SHOULD NOT exceed 5 min).
pub const RESOURCE_TOKEN_MAX_LIFETIME: u64 = 300;

/// A freshly minted token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Minted {
    /// The compact JWS.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`.
    pub exp: u64,
}

impl Minted {
    /// A token minted elsewhere (an Access Server's, verified by the caller), with its
    /// `jti` and `exp`.
    #[must_use]
    pub fn from_parts(token: String, jti: String, exp: u64) -> Self {
        Self { token, jti, exp }
    }

    /// Seconds from `now` until expiry, for `expires_in`.
    #[must_use]
    pub fn expires_in(&self, now: UnixTime) -> u64 {
        self.exp.saturating_sub(now.as_secs())
    }
}

/// Lifetime, `not_after` bounds and `jti` shared by every builder.
#[derive(Debug, Clone)]
struct Timing {
    lifetime: u64,
    not_after: Option<u64>,
    jti: Option<String>,
}

impl Timing {
    fn new(lifetime: u64) -> Self {
        Self {
            lifetime,
            not_after: None,
            jti: None,
        }
    }

    fn bound(&mut self, at: u64) {
        self.not_after = Some(self.not_after.map_or(at, |n| n.min(at)));
    }

    /// `(iat, exp, jti)`, refusing a lifetime over `cap` or one already cut to nothing.
    fn resolve(
        &self,
        cap: u64,
        now: UnixTime,
        rng: &mut dyn RandomSource,
    ) -> Result<(u64, u64, String), TokenError> {
        if self.lifetime == 0 || self.lifetime > cap {
            return Err(TokenError::Mint {
                reason: format!("lifetime must be 1..={cap} seconds, not {}", self.lifetime),
            });
        }
        let iat = now.as_secs();
        let mut exp = iat.saturating_add(self.lifetime);
        if let Some(n) = self.not_after {
            exp = exp.min(n);
        }
        if exp <= iat {
            return Err(TokenError::Mint {
                reason: "a not_after bound (agent token, mission or upstream token) has passed"
                    .to_owned(),
            });
        }
        let jti = match &self.jti {
            Some(j) if !j.is_empty() && j.len() <= 256 => j.clone(),
            Some(_) => {
                return Err(TokenError::Mint {
                    reason: "jti must be 1-256 bytes".to_owned(),
                });
            }
            None => random_id(rng, 16).map_err(|e| TokenError::Mint {
                reason: format!("no jti: {e}"),
            })?,
        };
        Ok((iat, exp, jti))
    }
}

fn sign_claims<C: Serialize>(
    signer: &dyn Signer,
    kid: &str,
    ty: TokenType,
    claims: &C,
) -> Result<String, TokenError> {
    if kid.is_empty() {
        return Err(TokenError::Mint {
            reason: "kid must not be empty".to_owned(),
        });
    }
    let payload = serde_json::to_vec(claims).map_err(|e| TokenError::Mint {
        reason: e.to_string(),
    })?;
    jws::sign(signer, kid, ty.typ(), &payload)
}

macro_rules! timing_methods {
    () => {
        /// Sets the lifetime (whole seconds; capped by the token type).
        #[must_use]
        pub fn lifetime(mut self, lifetime: std::time::Duration) -> Self {
            self.timing.lifetime = lifetime.as_secs();
            self
        }

        /// Bounds `exp` at `at` (an agent token's, a mission's or an upstream token's expiry).
        #[must_use]
        pub fn not_after(mut self, at: aauth_keys::time::UnixTime) -> Self {
            self.timing.bound(at.as_secs());
            self
        }

        /// Uses this `jti` instead of a random one.
        #[must_use]
        pub fn jti(mut self, jti: impl Into<String>) -> Self {
            self.timing.jti = Some(jti.into());
            self
        }
    };
}

/// Mints agent tokens (`aa-agent+jwt`) and sub-agent tokens.
///
/// ```
/// use aauth_keys::{PrivateKey, Signer, rand::OsRandom, time::UnixTime};
/// use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId};
/// let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
/// let agent = PrivateKey::ed25519_from_seed(&[2; 32]);
/// let minted = AgentTokenBuilder::new(
///         ServerId::parse("https://agent.example")?,
///         AgentId::parse("aauth:assistant@agent.example")?,
///         agent.public_key(),
///     )
///     .person_server(ServerId::parse("https://ps.example")?)
///     .sign(&provider, "key-1", UnixTime(1_800_000_000), &mut OsRandom)?;
/// assert_eq!(minted.exp, 1_800_003_600);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AgentTokenBuilder {
    iss: ServerId,
    sub: AgentId,
    cnf: PublicKey,
    ps: Option<ServerId>,
    parent_agent: Option<AgentId>,
    timing: Timing,
}

impl AgentTokenBuilder {
    /// An agent token for `sub`, bound to `key`, lasting one hour by default.
    #[must_use]
    pub fn new(iss: ServerId, sub: AgentId, key: &PublicKey) -> Self {
        Self {
            iss,
            sub,
            cnf: key.clone(),
            ps: None,
            parent_agent: None,
            timing: Timing::new(3600),
        }
    }

    /// Names the agent's Person Server.
    #[must_use]
    pub fn person_server(mut self, ps: ServerId) -> Self {
        self.ps = Some(ps);
        self
    }

    /// Makes this a sub-agent token of `parent` (whose token the same provider issued).
    #[must_use]
    pub fn parent_agent(mut self, parent: AgentId) -> Self {
        self.parent_agent = Some(parent);
        self
    }

    timing_methods!();

    /// Signs the token.
    ///
    /// # Errors
    ///
    /// [`TokenError::Mint`] for a lifetime over 24 h, a sub-agent whose identifier is not
    /// `<parent local>+<discriminator>@<parent domain>`, or an agent domain other than the
    /// issuer's host; [`TokenError::Sign`] when signing fails.
    pub fn sign(
        self,
        signer: &dyn Signer,
        kid: &str,
        now: UnixTime,
        rng: &mut dyn RandomSource,
    ) -> Result<Minted, TokenError> {
        if self.sub.domain() != self.iss.host() {
            return Err(TokenError::Mint {
                reason: "the agent identifier's domain must be the provider's host".to_owned(),
            });
        }
        if let Some(parent) = &self.parent_agent
            && !self.sub.is_named_subagent_of(parent)
        {
            return Err(TokenError::Mint {
                reason: "a sub-agent is named <parent local>+<discriminator>@<parent domain>"
                    .to_owned(),
            });
        }
        let (iat, exp, jti) = self.timing.resolve(AGENT_TOKEN_MAX_LIFETIME, now, rng)?;
        let claims = AgentClaims {
            iss: self.iss,
            dwk: "aauth-agent.json".to_owned(),
            sub: self.sub,
            jti: jti.clone(),
            cnf: Confirmation::new(self.cnf.to_jwk()),
            iat,
            exp,
            ps: self.ps,
            parent_agent: self.parent_agent,
        };
        Ok(Minted {
            token: sign_claims(signer, kid, TokenType::Agent, &claims)?,
            jti,
            exp,
        })
    }
}

/// Mints person tokens (`aa-person+jwt`).
#[derive(Debug, Clone)]
pub struct PersonTokenBuilder {
    iss: ServerId,
    aud: ServerId,
    sub: String,
    cnf: PublicKey,
    mission_s256: Option<String>,
    tenant: Option<String>,
    timing: Timing,
}

impl PersonTokenBuilder {
    /// A person token from Person Server `iss` for resource `aud`, naming the person by the
    /// directed identifier `sub`, bound to the agent's `key`. One hour by default.
    #[must_use]
    pub fn new(iss: ServerId, aud: ServerId, sub: impl Into<String>, key: &PublicKey) -> Self {
        Self {
            iss,
            aud,
            sub: sub.into(),
            cnf: key.clone(),
            mission_s256: None,
            tenant: None,
            timing: Timing::new(PERSON_TOKEN_MAX_LIFETIME),
        }
    }

    /// The mission the token is issued under.
    #[must_use]
    pub fn mission_s256(mut self, s256: impl Into<String>) -> Self {
        self.mission_s256 = Some(s256.into());
        self
    }

    /// Organization context.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    timing_methods!();

    /// Signs the token.
    ///
    /// # Errors
    ///
    /// [`TokenError::Mint`] for an empty `sub`, a lifetime over one hour or a passed
    /// bound; [`TokenError::Sign`] when signing fails.
    pub fn sign(
        self,
        signer: &dyn Signer,
        kid: &str,
        now: UnixTime,
        rng: &mut dyn RandomSource,
    ) -> Result<Minted, TokenError> {
        require_nonempty("sub", &self.sub)?;
        let (iat, exp, jti) = self.timing.resolve(PERSON_TOKEN_MAX_LIFETIME, now, rng)?;
        let claims = PersonClaims {
            iss: self.iss,
            dwk: "aauth-person.json".to_owned(),
            aud: self.aud,
            sub: self.sub,
            jti: jti.clone(),
            cnf: Confirmation::new(self.cnf.to_jwk()),
            iat,
            exp,
            mission_s256: self.mission_s256,
            tenant: self.tenant,
        };
        Ok(Minted {
            token: sign_claims(signer, kid, TokenType::Person, &claims)?,
            jti,
            exp,
        })
    }
}

/// Mints resource tokens (`aa-resource+jwt`).
#[derive(Debug, Clone)]
pub struct ResourceTokenBuilder {
    claims: ResourceClaims,
    timing: Timing,
    person_token_jti: bool,
}

impl ResourceTokenBuilder {
    /// A resource token from resource `iss` for `aud` (the Person Server in three-party
    /// mode, the resource's Access Server in four-party mode). `ps`, `sub` and
    /// `presented_jti` come from the person or auth token verified on the request;
    /// `agent_jkt` is the thumbprint of the key that signed it. Five minutes by default.
    #[must_use]
    pub fn new(
        iss: ServerId,
        aud: ServerId,
        ps: ServerId,
        sub: impl Into<String>,
        presented_jti: impl Into<String>,
        agent_key: &PublicKey,
        scope: impl Into<String>,
    ) -> Self {
        Self {
            claims: ResourceClaims {
                iss,
                dwk: "aauth-resource.json".to_owned(),
                aud,
                jti: String::new(),
                ps,
                sub: sub.into(),
                presented_jti: presented_jti.into(),
                agent_jkt: agent_key.thumbprint().as_str().to_owned(),
                iat: 0,
                exp: 0,
                scope: Some(scope.into()),
                account: None,
                mission_s256: None,
                tenant: None,
                login_hint: None,
                interaction: None,
                budget: None,
                budget_consumed: None,
            },
            timing: Timing::new(RESOURCE_TOKEN_MAX_LIFETIME),
            person_token_jti: false,
        }
    }

    /// Compatibility, off by default: also writes `presented_jti`'s value under
    /// `person_token_jti`, the claim's name before draft -11 renamed it (-11 §6.7.1).
    /// Person Servers that lag -11 (`@hellocoop/mockin` 2.0.0, the TypeScript reference)
    /// read only the old name and refuse a token without it (`invalid_resource_token`);
    /// a -11 Person Server ignores the extra claim. `presented_jti` is always written.
    #[must_use]
    pub fn also_person_token_jti(mut self) -> Self {
        self.person_token_jti = true;
        self
    }

    /// The account the agent asked for.
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.claims.account = Some(account.into());
        self
    }

    /// The mission of the presented token (required when it had one).
    #[must_use]
    pub fn mission_s256(mut self, s256: impl Into<String>) -> Self {
        self.claims.mission_s256 = Some(s256.into());
        self
    }

    /// The most the resource will have granted, and what recent grants consumed (at
    /// most 20 records, most recent first; in `budget`'s denomination).
    #[must_use]
    pub fn budget(mut self, budget: crate::Budget, consumed: Vec<crate::Consumption>) -> Self {
        self.claims.budget = Some(budget);
        self.claims.budget_consumed = (!consumed.is_empty()).then_some(consumed);
        self
    }

    /// The tenant of the presented token.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.claims.tenant = Some(tenant.into());
        self
    }

    /// A login hint for the Person Server.
    #[must_use]
    pub fn login_hint(mut self, hint: impl Into<String>) -> Self {
        self.claims.login_hint = Some(hint.into());
        self
    }

    /// The resource's own interaction.
    #[must_use]
    pub fn interaction(mut self, url: impl Into<String>, code: impl Into<String>) -> Self {
        self.claims.interaction = Some(InteractionClaim {
            url: url.into(),
            code: code.into(),
        });
        self
    }

    timing_methods!();

    /// Signs the token.
    ///
    /// # Errors
    ///
    /// [`TokenError::Mint`] for an empty `sub`, `presented_jti` or `scope`, a lifetime
    /// over five minutes or a passed bound; [`TokenError::Sign`].
    pub fn sign(
        mut self,
        signer: &dyn Signer,
        kid: &str,
        now: UnixTime,
        rng: &mut dyn RandomSource,
    ) -> Result<Minted, TokenError> {
        require_nonempty("sub", &self.claims.sub)?;
        require_nonempty("presented_jti", &self.claims.presented_jti)?;
        require_nonempty("scope", self.claims.scope.as_deref().unwrap_or_default())?;
        let (iat, exp, jti) = self.timing.resolve(RESOURCE_TOKEN_MAX_LIFETIME, now, rng)?;
        self.claims.iat = iat;
        self.claims.exp = exp;
        self.claims.jti.clone_from(&jti);
        let token = if self.person_token_jti {
            let mut claims = serde_json::to_value(&self.claims).map_err(|e| TokenError::Mint {
                reason: e.to_string(),
            })?;
            if let Some(map) = claims.as_object_mut() {
                map.insert(
                    "person_token_jti".to_owned(),
                    serde_json::Value::String(self.claims.presented_jti.clone()),
                );
            }
            sign_claims(signer, kid, TokenType::Resource, &claims)?
        } else {
            sign_claims(signer, kid, TokenType::Resource, &self.claims)?
        };
        Ok(Minted { token, jti, exp })
    }
}

/// Who issues an auth token, which decides its `dwk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthIssuer {
    /// A Person Server in three-party mode (`dwk: aauth-person.json`).
    PersonServer,
    /// An Access Server (`dwk: aauth-access.json`).
    AccessServer,
}

/// Mints auth tokens (`aa-auth+jwt`).
#[derive(Debug, Clone)]
pub struct AuthTokenBuilder {
    issuer: AuthIssuer,
    claims: AuthClaims,
    timing: Timing,
}

impl AuthTokenBuilder {
    /// An auth token from `iss` for resource `aud`, for the person `sub` of Person Server
    /// `ps`, bound to the agent's (or sub-agent's) `key`. One hour by default.
    #[must_use]
    pub fn new(
        issuer: AuthIssuer,
        iss: ServerId,
        aud: ServerId,
        ps: ServerId,
        sub: impl Into<String>,
        key: &PublicKey,
    ) -> Self {
        Self {
            issuer,
            claims: AuthClaims {
                iss,
                dwk: match issuer {
                    AuthIssuer::PersonServer => "aauth-person.json",
                    AuthIssuer::AccessServer => "aauth-access.json",
                }
                .to_owned(),
                aud,
                jti: String::new(),
                ps,
                sub: sub.into(),
                cnf: Confirmation::new(key.to_jwk()),
                iat: 0,
                exp: 0,
                scope: None,
                account: None,
                mission_s256: None,
                tenant: None,
                budget: None,
            },
            timing: Timing::new(AUTH_TOKEN_MAX_LIFETIME),
        }
    }

    /// The granted scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.claims.scope = Some(scope.into());
        self
    }

    /// The account.
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.claims.account = Some(account.into());
        self
    }

    /// The mission.
    #[must_use]
    pub fn mission_s256(mut self, s256: impl Into<String>) -> Self {
        self.claims.mission_s256 = Some(s256.into());
        self
    }

    /// The granted budget (never more than the resource token offered).
    #[must_use]
    pub fn budget(mut self, budget: crate::Budget) -> Self {
        self.claims.budget = Some(budget);
        self
    }

    /// Organization context.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.claims.tenant = Some(tenant.into());
        self
    }

    timing_methods!();

    /// Signs the token.
    ///
    /// # Errors
    ///
    /// [`TokenError::Mint`] for an empty `sub`, a Person Server issuer whose `iss` is not
    /// `ps`, a lifetime over one hour or a passed bound; [`TokenError::Sign`].
    pub fn sign(
        mut self,
        signer: &dyn Signer,
        kid: &str,
        now: UnixTime,
        rng: &mut dyn RandomSource,
    ) -> Result<Minted, TokenError> {
        require_nonempty("sub", &self.claims.sub)?;
        if self.issuer == AuthIssuer::PersonServer && self.claims.iss != self.claims.ps {
            return Err(TokenError::Mint {
                reason: "a Person Server's auth token has ps = iss".to_owned(),
            });
        }
        let (iat, exp, jti) = self.timing.resolve(AUTH_TOKEN_MAX_LIFETIME, now, rng)?;
        self.claims.iat = iat;
        self.claims.exp = exp;
        self.claims.jti.clone_from(&jti);
        Ok(Minted {
            token: sign_claims(signer, kid, TokenType::Auth, &self.claims)?,
            jti,
            exp,
        })
    }
}

fn require_nonempty(claim: &str, v: &str) -> Result<(), TokenError> {
    if v.is_empty() {
        return Err(TokenError::Mint {
            reason: format!("{claim} must not be empty"),
        });
    }
    Ok(())
}
