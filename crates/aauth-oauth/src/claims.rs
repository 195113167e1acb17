//! The claims of an access token, read in one pass and kept in one buffer.
//!
//! Every string claim is a span of the decoded claims text (values with JSON escapes,
//! rare, are unescaped and appended to it), so a verified token costs one buffer, not one
//! allocation per claim: verification sits on every request of a route.

use std::borrow::Cow;
use std::fmt;

use aauth_keys::time::UnixTime;
use aauth_tokens::json::{Object, ObjectError, RawValue, string_value, u64_value, value};

use crate::OAuthError;

/// Where a string lives in [`AccessTokenClaims::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// A string claim while the claims text is still borrowed.
enum Val {
    At(Span),
    Own(String),
}

/// The claims of a verified access token that a handler may act on.
///
/// ```
/// # use aauth_oauth::{AccessToken, AccessTokenPolicy, OAuthError};
/// # use aauth_keys::time::UnixTime;
/// // (Obtained from `AccessTokenVerifier::verify_bearer` in a real resource.)
/// # fn show(claims: &aauth_oauth::AccessTokenClaims) -> Result<(), OAuthError> {
/// claims.require_scopes(["read"])?;
/// let who = claims.subject().unwrap_or("(no subject)");
/// let client = claims.client_id();
/// # let _ = (who, client); Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    text: String,
    issuer: Span,
    subject: Option<Span>,
    client_id: Option<Span>,
    audience: Vec<Span>,
    scope: Option<Span>,
    jti: Option<Span>,
    jkt: Option<Span>,
    /// `cnf` names a confirmation method other than `jkt` (an mTLS certificate's
    /// `x5t#S256`, a `jwk`, …): the token is sender-constrained in a way not checked here.
    bound_otherwise: bool,
    expires_at: UnixTime,
    issued_at: Option<UnixTime>,
}

impl AccessTokenClaims {
    fn get(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or_default() // default: spans come from this text's own parse
    }

    /// `iss`.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.get(self.issuer)
    }

    /// `sub`: the resource owner, or the client itself in a client-credentials grant.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.map(|s| self.get(s))
    }

    /// `client_id`.
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.map(|s| self.get(s))
    }

    /// `aud`: one value, or the values of the array.
    pub fn audience(&self) -> impl Iterator<Item = &str> {
        self.audience.iter().map(|&s| self.get(s))
    }

    /// `scope` as sent: space-separated scope tokens (RFC 9068 §2.2.3; the `scp` array
    /// some servers send instead, joined with spaces); empty when the token has none.
    #[must_use]
    pub fn scope(&self) -> &str {
        self.scope.map_or("", |s| self.get(s))
    }

    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope().split(' ').filter(|s| !s.is_empty())
    }

    /// `jti`.
    #[must_use]
    pub fn jti(&self) -> Option<&str> {
        self.jti.map(|s| self.get(s))
    }

    /// `cnf.jkt`: the token is bound to this key (RFC 9449 §6.1) and valid only with a
    /// DPoP proof by it.
    #[must_use]
    pub fn jkt(&self) -> Option<&str> {
        self.jkt.map(|s| self.get(s))
    }

    /// Whether `cnf` binds the token by another method than `jkt` (RFC 8705's
    /// `x5t#S256` for mTLS, a `jwk`, …, RFC 7800): such a token is valid only where that
    /// binding is checked, so it is refused as a bearer token.
    #[must_use]
    pub fn bound_otherwise(&self) -> bool {
        self.bound_otherwise
    }

    /// `exp`.
    #[must_use]
    pub fn expires_at(&self) -> UnixTime {
        self.expires_at
    }

    /// `iat`.
    #[must_use]
    pub fn issued_at(&self) -> Option<UnixTime> {
        self.issued_at
    }

    /// Whether the token grants `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// Checks that every one of `required` was granted.
    ///
    /// # Errors
    ///
    /// [`OAuthError::InsufficientScope`] naming the first missing one.
    pub fn require_scopes<'s>(
        &self,
        required: impl IntoIterator<Item = &'s str>,
    ) -> Result<(), OAuthError> {
        match required.into_iter().find(|s| !self.has_scope(s)) {
            Some(missing) => Err(OAuthError::InsufficientScope {
                missing: missing.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for AccessTokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenClaims")
            .field("issuer", &self.issuer())
            .field("subject", &self.subject())
            .field("client_id", &self.client_id())
            .field("audience", &self.audience().collect::<Vec<_>>())
            .field("scope", &self.scope())
            .field("jti", &self.jti())
            .field("jkt", &self.jkt())
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

fn claim_error(claim: &'static str) -> impl Fn(String) -> OAuthError {
    move |reason| OAuthError::Claim { claim, reason }
}

/// Where `s` lies inside `base`, if it is a slice of it.
fn span_in(base: &str, s: &str) -> Option<Span> {
    let start = (s.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(s.len())?;
    base.get(start..end)
        .is_some_and(|t| t.as_ptr() == s.as_ptr())
        .then_some(Span { start, end })
}

fn string_val(base: &str, raw: &RawValue, claim: &'static str) -> Result<Val, OAuthError> {
    Ok(match string_value(raw).map_err(claim_error(claim))? {
        Cow::Borrowed(s) => span_in(base, s).map_or_else(|| Val::Own(s.to_owned()), Val::At),
        Cow::Owned(s) => Val::Own(s),
    })
}

fn place(text: &mut String, v: Val) -> Span {
    match v {
        Val::At(span) => span,
        Val::Own(s) => {
            let start = text.len();
            text.push_str(&s);
            Span {
                start,
                end: text.len(),
            }
        }
    }
}

/// The string claims while the text is borrowed.
#[derive(Default)]
struct Found {
    iss: Option<Val>,
    sub: Option<Val>,
    client_id: Option<Val>,
    jti: Option<Val>,
    aud: Option<Vec<Val>>,
    scope: Option<Val>,
    jkt: Option<Val>,
    bound_otherwise: bool,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
}

/// Reads the claims in one pass over their members; returns them and `nbf` (checked, not
/// shown to handlers).
pub(crate) fn read_claims(
    mut text: String,
) -> Result<(AccessTokenClaims, Option<u64>), OAuthError> {
    let found = find(&text)?;
    let issuer = found
        .iss
        .ok_or_else(|| claim_error("iss")("absent".to_owned()))?;
    let exp = found
        .exp
        .ok_or_else(|| claim_error("exp")("absent: an access token must expire".to_owned()))?;
    let aud = found
        .aud
        .ok_or_else(|| claim_error("aud")("absent".to_owned()))?;
    let issuer = place(&mut text, issuer);
    let audience = aud.into_iter().map(|v| place(&mut text, v)).collect();
    let mut opt = |v: Option<Val>| v.map(|v| place(&mut text, v));
    let (subject, client_id, scope, jti, jkt) = (
        opt(found.sub),
        opt(found.client_id),
        opt(found.scope),
        opt(found.jti),
        opt(found.jkt),
    );
    let claims = AccessTokenClaims {
        text,
        issuer,
        subject,
        client_id,
        audience,
        scope,
        jti,
        jkt,
        bound_otherwise: found.bound_otherwise,
        expires_at: UnixTime(exp),
        issued_at: found.iat.map(UnixTime),
    };
    Ok((claims, found.nbf))
}

fn find(text: &str) -> Result<Found, OAuthError> {
    let c = Object::parse(text).map_err(|e| OAuthError::Claim {
        claim: "(claims)",
        reason: e.to_string(),
    })?;
    let mut f = Found::default();
    let mut scp = None;
    for (name, raw) in c.members() {
        match name {
            "iss" => f.iss = Some(string_val(text, raw, "iss")?),
            "sub" => f.sub = Some(string_val(text, raw, "sub")?),
            "client_id" => f.client_id = Some(string_val(text, raw, "client_id")?),
            "jti" => f.jti = Some(string_val(text, raw, "jti")?),
            "exp" => f.exp = Some(u64_value(raw).map_err(claim_error("exp"))?),
            "nbf" => f.nbf = Some(u64_value(raw).map_err(claim_error("nbf"))?),
            "iat" => f.iat = Some(u64_value(raw).map_err(claim_error("iat"))?),
            "aud" if raw.get().starts_with('[') => {
                let items = value::<Vec<&RawValue>>(raw).map_err(claim_error("aud"))?;
                f.aud = Some(
                    items
                        .into_iter()
                        .map(|r| string_val(text, r, "aud"))
                        .collect::<Result<_, _>>()?,
                );
            }
            "aud" => f.aud = Some(vec![string_val(text, raw, "aud")?]),
            "scope" => f.scope = Some(string_val(text, raw, "scope")?),
            "scp" => scp = Some(value::<Vec<String>>(raw).map_err(claim_error("scp"))?),
            "cnf" => {
                let cnf = Object::parse(raw.get())
                    .map_err(|e: ObjectError| claim_error("cnf")(e.to_string()))?;
                for (method, value) in cnf.members() {
                    if method == "jkt" {
                        f.jkt = Some(string_val(text, value, "cnf")?);
                    } else {
                        f.bound_otherwise = true;
                    }
                }
            }
            _ => {}
        }
    }
    if f.scope.is_none()
        && let Some(scp) = scp
    {
        f.scope = Some(Val::Own(scp.join(" ")));
    }
    Ok(f)
}
