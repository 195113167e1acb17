//! Signing a person in with their OpenID Provider (OpenID Connect Core 1.0, the
//! authorization code flow with PKCE): the relying party's side, sans web framework.
//!
//! [`OidcClient::start`] gives the authorization URL to send the browser to and the
//! [`PendingSignIn`] to keep (in a cookie-bound store) until it comes back:
//! `response_type=code`, a fresh `state` and `nonce`, and a PKCE S256 challenge (RFC
//! 7636). [`OidcClient::finish`] takes the callback's query and that pending sign-in:
//! `state` must match; an `error` from the provider is typed; the code is exchanged at the
//! token endpoint with the verifier (the client authenticated as configured); the ID token
//! is checked as Core §3.1.3.7 says, cheap checks first: a compact JWS, `alg` decided by
//! the provider's key (`none`/HMAC never), `typ` absent or `JWT`, `iss` the provider's,
//! `aud` the client and no other audience (`azp`, when present, the client),
//! `exp` not passed, `iat` not ahead and not older than the maximum age, `nonce` the
//! pending one, then the signature with the provider's key from its JWKS (the workspace's
//! key cache). The person is then `(iss, sub)`, never `email`.

use std::sync::Arc;

use aauth_keys::rand::{SharedRandom, random_id};
use aauth_keys::time::{Clock, UnixTime};
use aauth_keys::{base64url, digest};
use aauth_metadata::{CacheConfig, Fetch, HttpsUrl, KeyCache, KeySource, Transport};
use aauth_tokens::json::{Object, string_value, u64_value, value};

use crate::client::{authenticated_post, refusal};
use crate::jwt::split;
use crate::verifier::verify_signature;
use crate::{ClientAuth, ClientError, IssuerKey, JwsAlgorithm, OAuthError};

/// The oldest ID token accepted, from its `iat` (seconds).
pub const ID_TOKEN_MAX_AGE: u64 = 600;
/// The clock leeway on `exp` and `iat` (seconds).
pub const ID_TOKEN_LEEWAY: u64 = 60;

/// An OpenID Provider, as its discovery document describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcProvider {
    /// `issuer`, exactly as the provider's ID tokens carry it.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: HttpsUrl,
    /// `token_endpoint`.
    pub token_endpoint: HttpsUrl,
    /// `jwks_uri`.
    pub jwks_uri: HttpsUrl,
}

impl OidcProvider {
    /// Reads `{issuer}/.well-known/openid-configuration` (Discovery §4): its `issuer`
    /// must equal `issuer`, its endpoints be `https` URLs.
    ///
    /// # Errors
    ///
    /// [`OAuthError::Unavailable`] when it cannot be fetched or read.
    pub async fn discover(fetch: &dyn Fetch, issuer: &str) -> Result<Self, OAuthError> {
        let unavailable = |reason: String| OAuthError::Unavailable { reason };
        let url = HttpsUrl::endpoint(&format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))
        .map_err(|e| unavailable(e.to_string()))?;
        let doc = fetch
            .get(&url)
            .await
            .map_err(|e| unavailable(format!("{url}: {e}")))?;
        if doc.status != 200 {
            return Err(unavailable(format!("{url}: status {}", doc.status)));
        }
        Self::parse(&doc.body, issuer).map_err(|e| unavailable(format!("{url}: {e}")))
    }

    /// Reads a discovery document fetched for `issuer`.
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn parse(body: &[u8], issuer: &str) -> Result<Self, String> {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_owned())?;
        let o = Object::parse(text).map_err(|e| e.to_string())?;
        let get = |name: &str| -> Result<String, String> {
            o.get(name)
                .ok_or_else(|| format!("{name} is absent"))
                .and_then(|raw| string_value(raw).map_err(|e| format!("{name}: {e}")))
                .map(std::borrow::Cow::into_owned)
        };
        let found = get("issuer")?;
        if found != issuer {
            return Err(format!("issuer {found:?} is not {issuer:?}"));
        }
        let url = |name: &str| -> Result<HttpsUrl, String> {
            let v = get(name)?;
            HttpsUrl::parse(&v).map_err(|e| format!("{name}: {e}"))
        };
        Ok(Self {
            issuer: found,
            authorization_endpoint: url("authorization_endpoint")?,
            token_endpoint: url("token_endpoint")?,
            jwks_uri: url("jwks_uri")?,
        })
    }
}

/// What the relying party keeps between [`OidcClient::start`] and [`OidcClient::finish`]
/// (bound to the browser that started, e.g. by a cookie). Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    /// `state`, echoed by the provider.
    pub state: String,
    /// `nonce`, which the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn").finish_non_exhaustive()
    }
}

/// Who signed in: the verified ID token's claims that identify the person.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedIn {
    /// `iss`.
    pub issuer: String,
    /// `sub`: with `iss`, the person's identity at the provider (link accounts by the
    /// pair, never by `email`).
    pub subject: String,
    /// `email`, if released (informational).
    pub email: Option<String>,
    /// `name`, if released (informational).
    pub name: Option<String>,
}

/// Why a sign-in did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    /// The callback's `state` is not the pending one (or absent): a forged or crossed
    /// callback.
    #[error("the callback's state is not this browser's sign-in")]
    State,
    /// The provider answered the authorization request with an error.
    #[error("the provider refused: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider {
        /// `error` (`access_denied`, …).
        error: String,
        /// `error_description`.
        description: Option<String>,
    },
    /// The callback has no `code`.
    #[error("the callback carries no code")]
    NoCode,
    /// The code could not be exchanged.
    #[error("token request: {0}")]
    Token(ClientError),
    /// The ID token was refused.
    #[error("ID token: {0}")]
    IdToken(OAuthError),
}

impl SignInError {
    /// A stable code for logs and for the page shown to the person.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::State => "state_mismatch",
            Self::Provider { error, .. } => error,
            Self::NoCode => "invalid_callback",
            Self::Token(e) => e.code(),
            Self::IdToken(_) => "invalid_id_token",
        }
    }
}

/// A relying party at one OpenID Provider.
pub struct OidcClient<F> {
    provider: OidcProvider,
    auth: ClientAuth,
    redirect_uri: String,
    scope: String,
    keys: KeyCache<F, IssuerKey>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    random: SharedRandom,
}

impl<F> std::fmt::Debug for OidcClient<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("provider", &self.provider)
            .field("auth", &self.auth)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl<F: Fetch> OidcClient<F> {
    /// The client `auth` at `provider`, called back at `redirect_uri`, asking for
    /// `openid email profile`; the provider's keys fetched through `fetch`, the token
    /// request sent through `transport`.
    #[must_use]
    pub fn new(
        provider: OidcProvider,
        auth: ClientAuth,
        redirect_uri: impl Into<String>,
        fetch: Arc<F>,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            provider,
            auth,
            redirect_uri: redirect_uri.into(),
            scope: "openid email profile".to_owned(),
            keys: KeyCache::of_keys(fetch, Arc::clone(&clock), CacheConfig::default()),
            transport,
            clock,
            random: SharedRandom::default(),
        }
    }

    /// Asks for `scope` instead (it must include `openid`).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The provider.
    #[must_use]
    pub fn provider(&self) -> &OidcProvider {
        &self.provider
    }

    /// Where the provider sends the browser back (`redirect_uri`).
    #[must_use]
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The authorization URL to send the browser to, and what to keep until it returns.
    ///
    /// # Errors
    ///
    /// [`SignInError::Token`] when no randomness could be had.
    pub fn start(&self) -> Result<(String, PendingSignIn), SignInError> {
        let mut random = self.random.clone();
        let mut draw = |n| {
            random_id(&mut random, n).map_err(|e| {
                SignInError::Token(ClientError::Request {
                    reason: e.to_string(),
                })
            })
        };
        let pending = PendingSignIn {
            state: draw(16)?,
            nonce: draw(16)?,
            verifier: draw(32)?,
        };
        let challenge = base64url::encode(&digest::sha256(pending.verifier.as_bytes()));
        let client_id = self.auth.client_id();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let endpoint = self.provider.authorization_endpoint.as_str();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok((format!("{endpoint}{sep}{query}"), pending))
    }

    /// Completes the sign-in from the callback's `query` (without `?`).
    ///
    /// # Errors
    ///
    /// [`SignInError`] naming the step that failed; nothing is signed in.
    pub async fn finish(
        &self,
        pending: &PendingSignIn,
        query: &str,
    ) -> Result<SignedIn, SignInError> {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |name: &str| {
            let mut found = params.iter().filter(|(k, _)| k == name);
            match (found.next(), found.next()) {
                (Some((_, v)), None) => Some(v.clone()),
                _ => None,
            }
        };
        // The state first: an error or a code for another browser's sign-in is not
        // this one's to report.
        // Compared in constant time, as every secret is here.
        let state = get("state").unwrap_or_default(); // default: an absent state matches no pending one
        if !same(&state, &pending.state) {
            return Err(SignInError::State);
        }
        if let Some(error) = get("error") {
            return Err(SignInError::Provider {
                error,
                description: get("error_description"),
            });
        }
        let code = get("code").ok_or(SignInError::NoCode)?;
        let id_token = self.exchange(&code, pending).await?;
        self.verify_id_token(&id_token, &pending.nonce)
            .await
            .map_err(SignInError::IdToken)
    }

    /// The code for the token response's `id_token`.
    async fn exchange(&self, code: &str, pending: &PendingSignIn) -> Result<String, SignInError> {
        let req = self.token_request(code, pending)?;
        let resp = self.transport.send(req).await.map_err(|e| {
            SignInError::Token(ClientError::Unavailable {
                reason: e.to_string(),
            })
        })?;
        let bad = |reason: String| SignInError::Token(ClientError::Response { reason });
        if resp.status() != http::StatusCode::OK {
            return Err(SignInError::Token(refusal(
                resp.status().as_u16(),
                resp.body(),
            )));
        }
        let text = std::str::from_utf8(resp.body()).map_err(|_| bad("not UTF-8".to_owned()))?;
        let o = Object::parse(text).map_err(|e| bad(e.to_string()))?;
        o.get("id_token")
            .ok_or_else(|| bad("id_token is absent".to_owned()))
            .and_then(|raw| string_value(raw).map_err(|e| bad(format!("id_token: {e}"))))
            .map(std::borrow::Cow::into_owned)
    }

    /// The token request (built outside the async path: the form serializer is not
    /// `Send`).
    fn token_request(
        &self,
        code: &str,
        pending: &PendingSignIn,
    ) -> Result<http::Request<bytes::Bytes>, SignInError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("code_verifier", &pending.verifier);
        authenticated_post(
            &self.provider.token_endpoint,
            self.provider.token_endpoint.as_str(),
            &self.auth,
            form,
            &self.random,
            self.clock.now(),
        )
        .map_err(SignInError::Token)
    }

    /// Core §3.1.3.7, cheap checks first, then the signature.
    async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<SignedIn, OAuthError> {
        let (signing_input, header, payload, signature) = split(token)?;
        let (alg, kid) = id_token_header(&header)?;
        let signed_in = check_id_claims(
            &payload,
            &self.provider.issuer,
            self.auth.client_id(),
            nonce,
            self.clock.now(),
        )?;
        let source = KeySource::Jwks(self.provider.jwks_uri.clone());
        verify_signature(&self.keys, &source, kid.as_deref(), alg, |key| {
            key.verify(alg, signing_input.as_bytes(), &signature)
                .is_ok()
        })
        .await?;
        Ok(signed_in)
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// `alg` (the key decides later) and `kid` of an ID token (optional, RFC 7515 §4.1.4:
/// without it, the provider's one key for `alg` verifies it); key-naming headers refused;
/// an explicit `typ` other than `JWT` refused (RFC 8725 §3.11: an access token, a DPoP
/// proof or a logout token of the same provider is not an ID token).
fn id_token_header(json: &str) -> Result<(JwsAlgorithm, Option<String>), OAuthError> {
    let header = |reason: String| OAuthError::Header { reason };
    let h = Object::parse(json).map_err(|e| header(e.to_string()))?;
    for name in ["crit", "jku", "x5u", "jwk", "zip", "b64"] {
        if h.has(name) {
            return Err(header(format!("{name} is not accepted in an ID token")));
        }
    }
    let text = |name: &str| -> Result<Option<String>, OAuthError> {
        h.get(name)
            .map(|raw| string_value(raw).map(std::borrow::Cow::into_owned))
            .transpose()
            .map_err(|e| header(format!("{name}: {e}")))
    };
    let alg = text("alg")?.ok_or_else(|| header("alg is absent".to_owned()))?;
    let alg =
        JwsAlgorithm::parse(&alg).map_err(|refusal| OAuthError::Algorithm { alg, refusal })?;
    if let Some(typ) = text("typ")?
        && !(typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("application/jwt"))
    {
        return Err(OAuthError::Type { typ: Some(typ) });
    }
    Ok((alg, text("kid")?))
}

/// The claims' checks (Core §3.1.3.7 steps 2-5, 9-11).
fn check_id_claims(
    json: &str,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: UnixTime,
) -> Result<SignedIn, OAuthError> {
    let claim = |claim: &'static str, reason: String| OAuthError::Claim { claim, reason };
    let c = Object::parse(json).map_err(|e| claim("(claims)", e.to_string()))?;
    let text = |name: &'static str| -> Result<Option<String>, OAuthError> {
        c.get(name)
            .map(|raw| string_value(raw).map(std::borrow::Cow::into_owned))
            .transpose()
            .map_err(|e| claim(name, e))
    };
    let number = |name: &'static str| -> Result<Option<u64>, OAuthError> {
        c.get(name)
            .map(u64_value)
            .transpose()
            .map_err(|e| claim(name, e))
    };
    let iss = text("iss")?.ok_or_else(|| claim("iss", "absent".to_owned()))?;
    if iss != issuer {
        return Err(OAuthError::UnknownIssuer { iss });
    }
    let aud: Vec<String> = match c.get("aud") {
        None => return Err(claim("aud", "absent".to_owned())),
        Some(raw) if raw.get().starts_with('[') => {
            value::<Vec<String>>(raw).map_err(|e| claim("aud", e))?
        }
        Some(raw) => vec![string_value(raw).map_err(|e| claim("aud", e))?.into_owned()],
    };
    // Step 3: this client among the audiences, and no other audience (none is trusted
    // beside it).
    if !aud.iter().any(|a| a == client_id) || aud.iter().any(|a| a != client_id) {
        return Err(OAuthError::Audience {
            expected: client_id.to_owned(),
            found: aud,
        });
    }
    let azp = text("azp")?;
    if (aud.len() > 1 || azp.is_some()) && azp.as_deref() != Some(client_id) {
        return Err(claim("azp", format!("{azp:?} is not this client")));
    }
    let t = now.as_secs();
    let exp = number("exp")?.ok_or_else(|| claim("exp", "absent".to_owned()))?;
    if exp.saturating_add(ID_TOKEN_LEEWAY) <= t {
        return Err(OAuthError::Expired { exp, now: t });
    }
    let iat = number("iat")?.ok_or_else(|| claim("iat", "absent".to_owned()))?;
    if iat > t.saturating_add(ID_TOKEN_LEEWAY) {
        return Err(OAuthError::NotYetValid {
            not_before: iat,
            now: t,
        });
    }
    if iat.saturating_add(ID_TOKEN_MAX_AGE) < t {
        return Err(claim(
            "iat",
            format!(
                "issued {} s ago, more than the {ID_TOKEN_MAX_AGE} s accepted",
                t - iat
            ),
        ));
    }
    if !text("nonce")?.is_some_and(|n| same(&n, nonce)) {
        return Err(claim("nonce", "not this sign-in's".to_owned()));
    }
    let subject = text("sub")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| claim("sub", "absent".to_owned()))?;
    Ok(SignedIn {
        issuer: iss,
        subject,
        email: text("email")?,
        name: text("name")?,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation is a failed test"
)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut c = serde_json::json!({
            "iss": "https://op.example", "aud": "ps", "sub": "p-1", "nonce": "n",
            "iat": NOW - 5, "exp": NOW + 300, "email": "a@example.com",
        });
        edit(&mut c);
        c.to_string()
    }

    fn check(json: &str) -> Result<SignedIn, OAuthError> {
        check_id_claims(json, "https://op.example", "ps", "n", UnixTime(NOW))
    }

    #[test]
    fn a_good_id_token_names_the_person_by_iss_and_sub() {
        let who = check(&claims(|_| {})).unwrap();
        assert_eq!(
            (who.issuer.as_str(), who.subject.as_str()),
            ("https://op.example", "p-1")
        );
        assert_eq!(who.email.as_deref(), Some("a@example.com"));
    }

    #[test]
    fn another_audience_is_never_trusted_and_azp_must_be_this_client() {
        // Core §3.1.3.7 step 3: an audience beside this client is one it does not trust,
        // with or without azp naming it.
        for azp in [None, Some("ps")] {
            let two = claims(|c| {
                c["aud"] = serde_json::json!(["ps", "other"]);
                if let Some(azp) = azp {
                    c["azp"] = serde_json::json!(azp);
                }
            });
            assert!(matches!(check(&two), Err(OAuthError::Audience { .. })));
        }
        let as_array = claims(|c| c["aud"] = serde_json::json!(["ps"]));
        check(&as_array).unwrap();
        let with_azp = claims(|c| c["azp"] = serde_json::json!("ps"));
        check(&with_azp).unwrap();
        let foreign_azp = claims(|c| c["azp"] = serde_json::json!("other"));
        assert!(matches!(
            check(&foreign_azp),
            Err(OAuthError::Claim { claim: "azp", .. })
        ));
    }

    #[test]
    fn issuer_audience_times_nonce_and_subject_are_checked() {
        let cases = [
            ("iss", serde_json::json!({"iss": "https://evil.example"})),
            ("aud", serde_json::json!({"aud": "other"})),
            ("exp", serde_json::json!({"exp": NOW - 61})),
            ("iat ahead", serde_json::json!({"iat": NOW + 120})),
            (
                "iat old",
                serde_json::json!({"iat": NOW - ID_TOKEN_MAX_AGE - 1}),
            ),
            ("nonce", serde_json::json!({"nonce": "m"})),
            ("sub", serde_json::json!({"sub": ""})),
        ];
        for (what, change) in cases {
            let json = claims(|c| {
                for (k, v) in change.as_object().unwrap() {
                    c[k] = v.clone();
                }
            });
            assert!(check(&json).is_err(), "{what}");
        }
        let missing_nonce = claims(|c| {
            c.as_object_mut().unwrap().remove("nonce");
        });
        assert!(check(&missing_nonce).is_err());
    }

    #[test]
    fn an_id_token_header_may_omit_kid() {
        // RFC 7515 §4.1.4: kid is optional; the provider's sole key for alg verifies it.
        assert_eq!(
            id_token_header(r#"{"alg":"RS256"}"#).unwrap(),
            (JwsAlgorithm::Rs256, None)
        );
        assert_eq!(
            id_token_header(r#"{"alg":"ES256","kid":"k"}"#).unwrap(),
            (JwsAlgorithm::Es256, Some("k".to_owned()))
        );
        assert!(matches!(
            id_token_header(r#"{"alg":"HS256"}"#),
            Err(OAuthError::Algorithm { .. })
        ));
    }

    #[test]
    fn discovery_documents_must_name_their_issuer() {
        let doc = serde_json::json!({
            "issuer": "https://op.example",
            "authorization_endpoint": "https://op.example/authorize",
            "token_endpoint": "https://op.example/token",
            "jwks_uri": "https://op.example/jwks",
        })
        .to_string();
        OidcProvider::parse(doc.as_bytes(), "https://op.example").unwrap();
        assert!(OidcProvider::parse(doc.as_bytes(), "https://other.example").is_err());
        let http = doc.replace("https://op.example/token", "http://op.example/token");
        assert!(OidcProvider::parse(http.as_bytes(), "https://op.example").is_err());
    }
}
