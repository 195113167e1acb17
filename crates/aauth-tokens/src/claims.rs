//! The claim sets of the AAuth tokens (draft -11 §5, §6.7, §7.1, §9.4), read strictly.

use aauth_keys::{Jwk, base64url};
use serde::{Deserialize, Serialize};

use crate::json::{Object, ObjectError};
use crate::{AgentId, ServerId, TokenError};

/// The AAuth token types, told apart only by `typ` (draft -11 §11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `aa-agent+jwt`, from an agent provider.
    Agent,
    /// `aa-person+jwt`, from a Person Server.
    Person,
    /// `aa-resource+jwt`, from a resource.
    Resource,
    /// `aa-auth+jwt`, from a Person Server (three-party) or an Access Server (four-party).
    Auth,
}

impl TokenType {
    /// The `typ` header value.
    #[must_use]
    pub const fn typ(self) -> &'static str {
        match self {
            Self::Agent => "aa-agent+jwt",
            Self::Person => "aa-person+jwt",
            Self::Resource => "aa-resource+jwt",
            Self::Auth => "aa-auth+jwt",
        }
    }

    /// The `dwk` value(s) this token type's issuer uses.
    #[must_use]
    pub const fn dwk_description(self) -> &'static str {
        match self {
            Self::Agent => "aauth-agent.json",
            Self::Person => "aauth-person.json",
            Self::Resource => "aauth-resource.json",
            Self::Auth => "aauth-person.json or aauth-access.json",
        }
    }

    fn accepts_dwk(self, dwk: &str) -> bool {
        match self {
            Self::Agent => dwk == "aauth-agent.json",
            Self::Person => dwk == "aauth-person.json",
            Self::Resource => dwk == "aauth-resource.json",
            Self::Auth => dwk == "aauth-person.json" || dwk == "aauth-access.json",
        }
    }

    /// Whether a `typ` header value names this type. Media types compare
    /// case-insensitively and `application/` may be omitted (RFC 7515 §4.1.9), so
    /// `application/aa-agent+jwt` and `AA-AGENT+JWT` both name the agent token; nothing
    /// else does.
    ///
    /// ```
    /// use aauth_tokens::TokenType;
    /// assert!(TokenType::Agent.matches_typ("aa-agent+jwt"));
    /// assert!(TokenType::Agent.matches_typ("application/aa-agent+jwt"));
    /// assert!(!TokenType::Agent.matches_typ("aa-auth+jwt"));
    /// assert!(!TokenType::Agent.matches_typ("JWT"));
    /// ```
    #[must_use]
    pub fn matches_typ(self, typ: &str) -> bool {
        // `get` rather than indexing: byte 12 may fall inside a multi-byte character.
        let bare = match (typ.get(..12), typ.get(12..)) {
            (Some(prefix), Some(rest))
                if !rest.is_empty() && prefix.eq_ignore_ascii_case("application/") =>
            {
                rest
            }
            _ => typ,
        };
        bare.eq_ignore_ascii_case(self.typ())
    }

    /// The type a `typ` value names, if any.
    #[must_use]
    pub fn from_typ(typ: &str) -> Option<Self> {
        [Self::Agent, Self::Person, Self::Resource, Self::Auth]
            .into_iter()
            .find(|t| t.matches_typ(typ))
    }

    /// The lifetime cap `exp - iat` a verifier enforces: one hour for person and auth
    /// tokens (draft -11, "Person Token Structure" and "Auth Token Structure": a MUST);
    /// 24 hours for agent tokens ("Agent Token Structure": they SHOULD NOT live longer,
    /// and a token that claims ten years is refused rather than trusted for ten years);
    /// one hour for resource tokens, twelve times the five minutes "Resource Token
    /// Structure" recommends, so that a Person Server's retention of person-token records
    /// (beyond `exp` by the longest resource-token lifetime it accepts) is bounded.
    ///
    /// ```
    /// use aauth_tokens::TokenType;
    /// assert_eq!(TokenType::Agent.verify_lifetime_cap(), 24 * 3600);
    /// assert_eq!(TokenType::Auth.verify_lifetime_cap(), 3600);
    /// ```
    #[must_use]
    pub const fn verify_lifetime_cap(self) -> u64 {
        match self {
            Self::Person | Self::Auth | Self::Resource => 3600,
            Self::Agent => 24 * 3600,
        }
    }
}

/// The `cnf` claim (RFC 7800) with the key the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Confirmation {
    /// The confirmation key.
    pub jwk: Jwk,
}

impl Confirmation {
    /// Binds to `jwk`.
    #[must_use]
    pub fn new(jwk: Jwk) -> Self {
        Self { jwk }
    }
}

/// The `interaction` claim of a resource token: the resource's own user flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InteractionClaim {
    /// The resource's interaction URL.
    pub url: String,
    /// The interaction code.
    pub code: String,
}

/// Claims of an agent token (`aa-agent+jwt`, draft -11 §5.3). A sub-agent token carries
/// `parent_agent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AgentClaims {
    /// The agent provider.
    pub iss: ServerId,
    /// `aauth-agent.json`.
    pub dwk: String,
    /// The agent identifier, stable across key rotation.
    pub sub: AgentId,
    /// Token identifier.
    pub jti: String,
    /// The agent's signing key.
    pub cnf: Confirmation,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
    /// The agent's Person Server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ps: Option<ServerId>,
    /// The parent agent, for a sub-agent token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_agent: Option<AgentId>,
}

/// Claims of a person token (`aa-person+jwt`, draft -11 §7.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PersonClaims {
    /// The Person Server.
    pub iss: ServerId,
    /// `aauth-person.json`.
    pub dwk: String,
    /// The one resource this token is for.
    pub aud: ServerId,
    /// The person's directed identifier at that resource.
    pub sub: String,
    /// Token identifier.
    pub jti: String,
    /// The agent's signing key.
    pub cnf: Confirmation,
    /// Issued at.
    pub iat: u64,
    /// Expiry (at most one hour after `iat`).
    pub exp: u64,
    /// The mission this token was issued under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mission_s256: Option<String>,
    /// Organization context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Claims of a resource token (`aa-resource+jwt`, draft -11 §6.7.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResourceClaims {
    /// The resource.
    pub iss: ServerId,
    /// `aauth-resource.json`.
    pub dwk: String,
    /// The Person Server (three-party) or the resource's Access Server (four-party).
    pub aud: ServerId,
    /// Token identifier.
    pub jti: String,
    /// The person's Person Server: the verified person token's `iss`, or auth token's `ps`.
    pub ps: ServerId,
    /// The person's directed identifier, copied from the presented token.
    pub sub: String,
    /// The `jti` of the person or auth token presented on the request (read from the
    /// pre-rename `person_token_jti` only under
    /// [`Validation::accept_person_token_jti`](crate::Validation::accept_person_token_jti)).
    pub presented_jti: String,
    /// RFC 7638 SHA-256 thumbprint of the agent's signing key.
    pub agent_jkt: String,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
    /// The requested scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The account requested at the authorization endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Copied unchanged from the presented token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mission_s256: Option<String>,
    /// Copied from the presented token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A login hint for the Person Server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    /// The resource's own interaction, when it needs one first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction: Option<InteractionClaim>,
    /// The most the resource will have granted (draft-hardt-aauth-budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::Budget>,
    /// What recent grants actually consumed, most recent first (at most 20), in
    /// `budget`'s denomination; only with `budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_consumed: Option<Vec<crate::Consumption>>,
}

/// Claims of an auth token (`aa-auth+jwt`, draft -11 §9.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuthClaims {
    /// The Person Server (three-party) or Access Server (four-party).
    pub iss: ServerId,
    /// `aauth-person.json` or `aauth-access.json`.
    pub dwk: String,
    /// The resource.
    pub aud: ServerId,
    /// Token identifier.
    pub jti: String,
    /// The person's Person Server.
    pub ps: ServerId,
    /// The person's directed identifier at the resource.
    pub sub: String,
    /// The agent's (or sub-agent's) signing key.
    pub cnf: Confirmation,
    /// Issued at.
    pub iat: u64,
    /// Expiry (at most one hour after `iat`).
    pub exp: u64,
    /// The granted scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The mission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mission_s256: Option<String>,
    /// Organization context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The granted budget (draft-hardt-aauth-budgets): authoritative, never more than
    /// the resource token offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::Budget>,
}

/// The claims every verification step needs, whatever the token type.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct Common<'a> {
    pub(crate) iss: &'a ServerId,
    pub(crate) dwk: &'a str,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    pub(crate) aud: Option<&'a ServerId>,
    pub(crate) cnf: Option<&'a Jwk>,
}

/// An unparsed claim set, readable only by this crate.
#[derive(Debug)]
pub struct RawClaims<'a> {
    object: Object<'a>,
    /// Compatibility: a resource token's `presented_jti` may be read from the pre-rename
    /// `person_token_jti` ([`crate::Validation::accept_person_token_jti`]).
    person_token_jti: bool,
}

impl std::fmt::Debug for Object<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Object")
    }
}

impl<'a> RawClaims<'a> {
    pub(crate) fn parse(json: &'a str) -> Result<Self, TokenError> {
        Object::parse(json)
            .map(|object| Self {
                object,
                person_token_jti: false,
            })
            .map_err(|e| TokenError::ClaimSet {
                reason: match e {
                    ObjectError::NotAnObject(r) => r,
                    ObjectError::Duplicate(name) => format!("claim {name} appears twice"),
                },
            })
    }

    fn opt<T: Deserialize<'a>>(&self, claim: &'static str) -> Result<Option<T>, TokenError> {
        self.object
            .opt(claim)
            .map_err(|reason| TokenError::Claim { claim, reason })
    }

    /// The `budget` claim, checked.
    fn budget(&self) -> Result<Option<crate::Budget>, TokenError> {
        let b: Option<crate::Budget> = self.opt("budget")?;
        if let Some(b) = &b {
            b.check().map_err(|e| TokenError::Claim {
                claim: "budget",
                reason: e.0.to_owned(),
            })?;
        }
        Ok(b)
    }

    fn req<T: Deserialize<'a>>(&self, claim: &'static str) -> Result<T, TokenError> {
        self.opt(claim)?.ok_or(TokenError::Claim {
            claim,
            reason: "is missing".to_owned(),
        })
    }

    fn str(&self, claim: &'static str) -> Result<Option<std::borrow::Cow<'a, str>>, TokenError> {
        self.object
            .string(claim)
            .map_err(|reason| TokenError::Claim { claim, reason })
    }

    fn text(&self, claim: &'static str, max: usize) -> Result<Option<String>, TokenError> {
        let v: Option<String> = self.str(claim)?.map(std::borrow::Cow::into_owned);
        if let Some(s) = &v
            && (s.is_empty() || s.len() > max)
        {
            return Err(TokenError::Claim {
                claim,
                reason: format!("must be 1-{max} bytes"),
            });
        }
        Ok(v)
    }

    fn req_text(&self, claim: &'static str, max: usize) -> Result<String, TokenError> {
        self.text(claim, max)?.ok_or(TokenError::Claim {
            claim,
            reason: "is missing".to_owned(),
        })
    }

    /// Reads `presented_jti` from the pre-rename `person_token_jti` when it is absent.
    pub(crate) fn accepting_person_token_jti(mut self, on: bool) -> Self {
        self.person_token_jti = on;
        self
    }

    /// A resource token's `presented_jti` (draft -11 §6.7.1). Under the compatibility
    /// option, a token with no `presented_jti` is read through `person_token_jti`, the
    /// claim's name before -11 renamed it; a token carrying both with different values
    /// names two tokens and is refused.
    fn presented_jti(&self) -> Result<String, TokenError> {
        let presented = self.text("presented_jti", JTI_MAX)?;
        if !self.person_token_jti {
            return presented.ok_or(TokenError::Claim {
                claim: "presented_jti",
                reason: "is missing".to_owned(),
            });
        }
        match (presented, self.text("person_token_jti", JTI_MAX)?) {
            (Some(p), Some(old)) if p != old => Err(TokenError::Claim {
                claim: "person_token_jti",
                reason: "differs from presented_jti".to_owned(),
            }),
            (Some(jti), _) | (None, Some(jti)) => Ok(jti),
            (None, None) => Err(TokenError::Claim {
                claim: "presented_jti",
                reason: "is missing (and so is the pre-rename person_token_jti)".to_owned(),
            }),
        }
    }

    fn server_id(&self, claim: &'static str) -> Result<Option<ServerId>, TokenError> {
        let Some(s) = self.str(claim)? else {
            return Ok(None);
        };
        ServerId::parse(&s)
            .map(Some)
            .map_err(|e| TokenError::Claim {
                claim,
                reason: e.to_string(),
            })
    }

    fn req_server_id(&self, claim: &'static str) -> Result<ServerId, TokenError> {
        self.server_id(claim)?.ok_or(TokenError::Claim {
            claim,
            reason: "is missing".to_owned(),
        })
    }

    fn agent_id(&self, claim: &'static str) -> Result<Option<AgentId>, TokenError> {
        let Some(s) = self.str(claim)? else {
            return Ok(None);
        };
        AgentId::parse(&s).map(Some).map_err(|e| TokenError::Claim {
            claim,
            reason: e.to_string(),
        })
    }

    /// A NumericDate: a non-negative JSON integer (strings, floats, null are refused).
    fn time(&self, claim: &'static str) -> Result<u64, TokenError> {
        self.object
            .u64(claim)
            .map_err(|reason| TokenError::Claim { claim, reason })?
            .ok_or(TokenError::Claim {
                claim,
                reason: "is missing".to_owned(),
            })
    }

    /// `aud` as a single server identifier: a string, or an array holding exactly one.
    fn audience(&self) -> Result<ServerId, TokenError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Aud {
            One(String),
            Many(Vec<String>),
        }
        let one = match self.req::<Aud>("aud")? {
            Aud::One(s) => s,
            Aud::Many(mut v) if v.len() == 1 => v.remove(0),
            Aud::Many(_) => {
                return Err(TokenError::Claim {
                    claim: "aud",
                    reason: "must name exactly one audience".to_owned(),
                });
            }
        };
        ServerId::parse(&one).map_err(|e| TokenError::Claim {
            claim: "aud",
            reason: e.to_string(),
        })
    }

    /// A base64url SHA-256 value (43 characters): `mission_s256`, `agent_jkt`.
    fn s256(&self, claim: &'static str) -> Result<Option<String>, TokenError> {
        let v: Option<String> = self.str(claim)?.map(std::borrow::Cow::into_owned);
        if let Some(s) = &v
            && base64url::decode_array::<32>(s).is_err()
        {
            return Err(TokenError::Claim {
                claim,
                reason: "must be a base64url SHA-256 value".to_owned(),
            });
        }
        Ok(v)
    }

    /// `cnf.jwk`, structurally complete (K2): `kty` and the members that type requires,
    /// checked before any key decoding.
    fn cnf(&self) -> Result<Confirmation, TokenError> {
        let bad = |reason: &str| TokenError::Claim {
            claim: "cnf",
            reason: reason.to_owned(),
        };
        #[derive(Deserialize)]
        struct Cnf {
            jwk: Option<Jwk>,
        }
        let raw = self.object.get("cnf").ok_or_else(|| bad("is missing"))?;
        // One typed pass: serde refuses a repeated `jwk` and repeated JWK members.
        let cnf: Cnf =
            serde_json::from_str(raw.get()).map_err(|e| bad(&format!("is malformed: {e}")))?;
        let jwk = cnf.jwk.ok_or_else(|| bad("has no jwk"))?;
        let needs: &[(&str, bool)] = match jwk.kty.as_str() {
            "OKP" => &[("crv", jwk.crv.is_some()), ("x", jwk.x.is_some())],
            "EC" => &[
                ("crv", jwk.crv.is_some()),
                ("x", jwk.x.is_some()),
                ("y", jwk.y.is_some()),
            ],
            "RSA" => &[("n", jwk.n.is_some()), ("e", jwk.e.is_some())],
            _ => &[],
        };
        if let Some((m, _)) = needs.iter().find(|(_, present)| !present) {
            return Err(bad(&format!("jwk lacks {m}")));
        }
        Ok(Confirmation { jwk })
    }

    pub(crate) fn req_string(&self, claim: &'static str) -> Result<String, TokenError> {
        self.req(claim)
    }

    pub(crate) fn opt_string(&self, claim: &'static str) -> Result<Option<String>, TokenError> {
        self.opt(claim)
    }

    pub(crate) fn time_claim(&self, claim: &'static str) -> Result<u64, TokenError> {
        self.time(claim)
    }

    /// `nbf`, when present: a NumericDate like `exp` (RFC 7519 §4.1.5: a token must not
    /// be accepted before it). No AAuth token needs it; one that carries it is held to it.
    pub(crate) fn not_before(&self) -> Result<Option<u64>, TokenError> {
        self.object.u64("nbf").map_err(|reason| TokenError::Claim {
            claim: "nbf",
            reason,
        })
    }

    pub(crate) fn cnf_claim(&self) -> Result<Confirmation, TokenError> {
        self.cnf()
    }

    fn forbid(&self, claim: &'static str) -> Result<(), TokenError> {
        if self.object.has(claim) {
            return Err(TokenError::ForbiddenClaim { claim });
        }
        Ok(())
    }

    fn dwk(&self, ty: TokenType) -> Result<String, TokenError> {
        let dwk = self
            .str("dwk")?
            .ok_or(TokenError::Claim {
                claim: "dwk",
                reason: "is missing".to_owned(),
            })?
            .into_owned();
        if !ty.accepts_dwk(&dwk) {
            return Err(TokenError::WrongDwk {
                expected: ty.dwk_description(),
                found: dwk,
            });
        }
        Ok(dwk)
    }
}

const JTI_MAX: usize = 256;
const TEXT_MAX: usize = 1024;

/// A claim set of one AAuth token type. Implemented by the four claim structs of this
/// crate; the reading method takes a type only this crate can build.
pub trait TokenClaims: Sized + Send + Sync + std::fmt::Debug {
    /// The token type.
    const TYPE: TokenType;

    /// Reads and validates the claim set (types, identifiers, required and forbidden
    /// claims, `dwk`).
    ///
    /// # Errors
    ///
    /// The [`TokenError`] naming the claim and the check.
    #[doc(hidden)]
    fn read(raw: &RawClaims<'_>) -> Result<Self, TokenError>;

    #[doc(hidden)]
    fn common(&self) -> Common<'_>;
}

impl TokenClaims for AgentClaims {
    const TYPE: TokenType = TokenType::Agent;

    fn read(raw: &RawClaims<'_>) -> Result<Self, TokenError> {
        let iss = raw.req_server_id("iss")?;
        // The identifier's domain is its provider's (draft -11, "Agent Identifiers"): a provider that
        // names another provider's agent (or parent agent) speaks for no one.
        let of_issuer = |claim: &'static str, agent: AgentId| {
            if agent.domain() == iss.host() {
                Ok(agent)
            } else {
                Err(TokenError::AgentOfAnotherIssuer {
                    claim,
                    agent: agent.as_str().to_owned(),
                    iss: iss.as_str().to_owned(),
                })
            }
        };
        let sub = of_issuer(
            "sub",
            raw.agent_id("sub")?.ok_or(TokenError::Claim {
                claim: "sub",
                reason: "is missing".to_owned(),
            })?,
        )?;
        let parent_agent = match raw.agent_id("parent_agent")? {
            Some(parent) => Some(of_issuer("parent_agent", parent)?),
            None => None,
        };
        Ok(Self {
            dwk: raw.dwk(Self::TYPE)?,
            sub,
            jti: raw.req_text("jti", JTI_MAX)?,
            cnf: raw.cnf()?,
            iat: raw.time("iat")?,
            exp: raw.time("exp")?,
            ps: raw.server_id("ps")?,
            parent_agent,
            iss,
        })
    }

    fn common(&self) -> Common<'_> {
        Common {
            iss: &self.iss,
            dwk: &self.dwk,
            iat: self.iat,
            exp: self.exp,
            aud: None,
            cnf: Some(&self.cnf.jwk),
        }
    }
}

impl TokenClaims for PersonClaims {
    const TYPE: TokenType = TokenType::Person;

    fn read(raw: &RawClaims<'_>) -> Result<Self, TokenError> {
        raw.forbid("scope")?;
        raw.forbid("account")?;
        Ok(Self {
            iss: raw.req_server_id("iss")?,
            dwk: raw.dwk(Self::TYPE)?,
            aud: raw.audience()?,
            sub: raw.req_text("sub", TEXT_MAX)?,
            jti: raw.req_text("jti", JTI_MAX)?,
            cnf: raw.cnf()?,
            iat: raw.time("iat")?,
            exp: raw.time("exp")?,
            mission_s256: raw.s256("mission_s256")?,
            tenant: raw.text("tenant", TEXT_MAX)?,
        })
    }

    fn common(&self) -> Common<'_> {
        Common {
            iss: &self.iss,
            dwk: &self.dwk,
            iat: self.iat,
            exp: self.exp,
            aud: Some(&self.aud),
            cnf: Some(&self.cnf.jwk),
        }
    }
}

impl TokenClaims for ResourceClaims {
    const TYPE: TokenType = TokenType::Resource;

    fn read(raw: &RawClaims<'_>) -> Result<Self, TokenError> {
        Ok(Self {
            iss: raw.req_server_id("iss")?,
            dwk: raw.dwk(Self::TYPE)?,
            aud: raw.audience()?,
            jti: raw.req_text("jti", JTI_MAX)?,
            ps: raw.req_server_id("ps")?,
            sub: raw.req_text("sub", TEXT_MAX)?,
            presented_jti: raw.presented_jti()?,
            agent_jkt: raw.s256("agent_jkt")?.ok_or(TokenError::Claim {
                claim: "agent_jkt",
                reason: "is missing".to_owned(),
            })?,
            iat: raw.time("iat")?,
            exp: raw.time("exp")?,
            scope: raw.text("scope", TEXT_MAX)?,
            account: raw.text("account", TEXT_MAX)?,
            mission_s256: raw.s256("mission_s256")?,
            tenant: raw.text("tenant", TEXT_MAX)?,
            login_hint: raw.text("login_hint", TEXT_MAX)?,
            interaction: raw.opt("interaction")?,
            budget: raw.budget()?,
            budget_consumed: {
                let records: Option<Vec<crate::Consumption>> = raw.opt("budget_consumed")?;
                if records.as_ref().is_some_and(|r| {
                    r.len() > 20 || r.iter().any(|c| c.jti.is_empty() || c.jti.len() > JTI_MAX)
                }) {
                    return Err(TokenError::Claim {
                        claim: "budget_consumed",
                        reason: "at most 20 records, each naming a jti".to_owned(),
                    });
                }
                if records.is_some() && raw.budget()?.is_none() {
                    return Err(TokenError::Claim {
                        claim: "budget_consumed",
                        reason: "is only allowed with budget".to_owned(),
                    });
                }
                records
            },
        })
    }

    fn common(&self) -> Common<'_> {
        Common {
            iss: &self.iss,
            dwk: &self.dwk,
            iat: self.iat,
            exp: self.exp,
            aud: Some(&self.aud),
            cnf: None,
        }
    }
}

impl TokenClaims for AuthClaims {
    const TYPE: TokenType = TokenType::Auth;

    fn read(raw: &RawClaims<'_>) -> Result<Self, TokenError> {
        Ok(Self {
            iss: raw.req_server_id("iss")?,
            dwk: raw.dwk(Self::TYPE)?,
            aud: raw.audience()?,
            jti: raw.req_text("jti", JTI_MAX)?,
            ps: raw.req_server_id("ps")?,
            sub: raw.req_text("sub", TEXT_MAX)?,
            cnf: raw.cnf()?,
            iat: raw.time("iat")?,
            exp: raw.time("exp")?,
            scope: raw.text("scope", TEXT_MAX)?,
            account: raw.text("account", TEXT_MAX)?,
            mission_s256: raw.s256("mission_s256")?,
            tenant: raw.text("tenant", TEXT_MAX)?,
            budget: raw.budget()?,
        })
    }

    fn common(&self) -> Common<'_> {
        Common {
            iss: &self.iss,
            dwk: &self.dwk,
            iat: self.iat,
            exp: self.exp,
            aud: Some(&self.aud),
            cnf: Some(&self.cnf.jwk),
        }
    }
}
