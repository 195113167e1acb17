//! Opaque access tokens, checked by token introspection (RFC 7662) and cached.
//!
//! The resource authenticates to the authorization server's introspection endpoint as a
//! client (the same [`ClientAuth`] as the token source) and posts the token. An answer is
//! kept, under the SHA-256 of the token (never the token itself), until the token's `exp`
//! or the configured maximum (60 s by default), whichever comes first: a revoked token is
//! honoured for at most that long. `active: false` is kept for the same maximum, so a
//! flood of bad tokens costs one request each per maximum, not one per use. The table is
//! bounded (10 000 entries by default; the entry that ends soonest goes first). An
//! endpoint that cannot be reached is a `503`: verification fails closed, never admits.
//!
//! An active answer must name the resource in `aud` (when the policy's audience is set,
//! as it is for JWTs) and the configured issuer in `iss` if it says one; it must carry
//! `exp`.
//!
//! With `private_key_jwt`, the assertion's `aud` is the authorization server's issuer
//! by default (RFC 7523 §3 names the server's identity; OpenID Connect Core §9 the token
//! endpoint; the introspection endpoint is named by neither):
//! [`Introspection::assertion_audience`] chooses the issuer, the introspection endpoint,
//! or any other value a server requires (its token endpoint, say).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use aauth_keys::digest;
use aauth_keys::rand::SharedRandom;
use aauth_keys::time::{Clock, UnixTime};
use aauth_metadata::{HttpsUrl, Transport};
use aauth_tokens::json::{Object, RawValue, value};

use crate::claims::read_claims;
use crate::client::{authenticated_post, json_string};
use crate::{AccessTokenClaims, ClientAuth, OAuthError, VerifyAccessToken};

/// The default cap on how long an answer is kept, in seconds.
pub const DEFAULT_INTROSPECTION_TTL: u64 = 60;
/// The default bound on the answers kept.
pub const DEFAULT_INTROSPECTION_ENTRIES: usize = 10_000;

type Answer = Result<AccessTokenClaims, OAuthError>;

struct Entry {
    answer: Answer,
    until: u64,
}

/// The `aud` of a `private_key_jwt` client assertion at the introspection endpoint.
///
/// ```
/// use aauth_oauth::AssertionAudience;
/// assert_eq!(AssertionAudience::default(), AssertionAudience::Issuer);
/// assert_eq!("endpoint".parse(), Ok(AssertionAudience::Endpoint));
/// assert_eq!(
///     "https://as.example/token".parse(),
///     Ok(AssertionAudience::Value("https://as.example/token".to_owned())),
/// );
/// assert!("".parse::<AssertionAudience>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AssertionAudience {
    /// The authorization server's issuer identifier (the default): the server's identity
    /// RFC 7523 §3 asks for, and what many servers require.
    #[default]
    Issuer,
    /// The URL the assertion is posted to: the introspection endpoint.
    Endpoint,
    /// This value exactly (the server's token endpoint URL, which OpenID Connect Core §9
    /// names, or whatever the server documents).
    Value(String),
}

impl std::str::FromStr for AssertionAudience {
    type Err = &'static str;

    /// `issuer`, `endpoint`, or any other non-empty value taken as it is.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("an assertion audience cannot be empty"),
            "issuer" => Ok(Self::Issuer),
            "endpoint" => Ok(Self::Endpoint),
            other => Ok(Self::Value(other.to_owned())),
        }
    }
}

/// Checks opaque tokens at an introspection endpoint, with a cache. Cheap to share.
pub struct Introspection {
    endpoint: HttpsUrl,
    auth: ClientAuth,
    issuer: String,
    audience: String,
    assertion_audience: AssertionAudience,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    random: SharedRandom,
    max_ttl: u64,
    max_entries: usize,
    cache: Mutex<BTreeMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("audience", &self.audience)
            .field("assertion_audience", &self.assertion_audience)
            .field("max_ttl", &self.max_ttl)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

impl Introspection {
    /// Tokens of `issuer` for `audience`, checked at `endpoint` as the client `auth`,
    /// through `transport` (the egress-guarded HTTPS client), timed by `clock`.
    #[must_use]
    pub fn new(
        endpoint: HttpsUrl,
        auth: ClientAuth,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            endpoint,
            auth,
            issuer: issuer.into(),
            audience: audience.into(),
            assertion_audience: AssertionAudience::default(),
            transport,
            clock,
            random: SharedRandom::default(),
            max_ttl: DEFAULT_INTROSPECTION_TTL,
            max_entries: DEFAULT_INTROSPECTION_ENTRIES,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The `aud` of the client assertion when the resource authenticates with
    /// `private_key_jwt` (default [`AssertionAudience::Issuer`]).
    #[must_use]
    pub fn assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.assertion_audience = audience;
        self
    }

    /// The value [`Introspection::assertion_audience`] puts in a client assertion's `aud`.
    #[must_use]
    pub fn assertion_aud(&self) -> &str {
        match &self.assertion_audience {
            AssertionAudience::Issuer => &self.issuer,
            AssertionAudience::Endpoint => self.endpoint.as_str(),
            AssertionAudience::Value(v) => v,
        }
    }

    /// How long an answer may be kept at most, in seconds (0: never kept).
    #[must_use]
    pub fn max_ttl(mut self, seconds: u64) -> Self {
        self.max_ttl = seconds;
        self
    }

    /// How many answers are kept at most.
    #[must_use]
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries.max(1);
        self
    }

    /// How many answers are kept now.
    #[must_use]
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The token's claims if the server says it is active and it is for this resource.
    ///
    /// # Errors
    ///
    /// [`OAuthError::Claim`] or [`OAuthError::Audience`] for an inactive or foreign token
    /// (`401`); [`OAuthError::Unavailable`] when the endpoint cannot answer (`503`).
    pub async fn introspect(&self, token: &str) -> Answer {
        // No server is asked about a token no issuer would mint: the same bound as a
        // JWT's.
        if token.len() > crate::MAX_TOKEN_BYTES {
            return Err(OAuthError::Malformed {
                reason: "longer than accepted",
            });
        }
        let key = digest::sha256(token.as_bytes());
        let now = self.clock.now();
        if let Some(answer) = self.hit(&key, now) {
            return answer;
        }
        let answer = self.ask(token, now).await;
        if !matches!(answer, Err(OAuthError::Unavailable { .. })) {
            self.keep(key, &answer, now);
        }
        answer
    }

    fn hit(&self, key: &[u8; 32], now: UnixTime) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let e = cache.get(key)?;
        (now.as_secs() < e.until).then(|| e.answer.clone())
    }

    fn keep(&self, key: [u8; 32], answer: &Answer, now: UnixTime) {
        let cap = now.as_secs().saturating_add(self.max_ttl);
        let until = match answer {
            Ok(claims) => claims.expires_at().as_secs().min(cap),
            Err(_) => cap,
        };
        if until <= now.as_secs() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.max_entries && !cache.contains_key(&key) {
            cache.retain(|_, e| e.until > now.as_secs());
            // A refusal goes first, the one ending soonest: answers about tokens that
            // anyone can make up do not push out those about tokens that work.
            if cache.len() >= self.max_entries
                && let Some(victim) = cache
                    .iter()
                    .min_by_key(|(_, e)| (e.answer.is_ok(), e.until))
                    .map(|(k, _)| *k)
            {
                cache.remove(&victim);
            }
        }
        cache.insert(
            key,
            Entry {
                answer: answer.clone(),
                until,
            },
        );
    }

    /// The introspection request (built outside the async path: the form serializer is
    /// not `Send`).
    fn request(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<http::Request<bytes::Bytes>, OAuthError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        form.append_pair("token_type_hint", "access_token");
        authenticated_post(
            &self.endpoint,
            self.assertion_aud(),
            &self.auth,
            form,
            &self.random,
            now,
        )
        .map_err(|e| OAuthError::Unavailable {
            reason: e.to_string(),
        })
    }

    async fn ask(&self, token: &str, now: UnixTime) -> Answer {
        let unavailable = |reason: String| OAuthError::Unavailable { reason };
        let req = self.request(token, now)?;
        let resp = self
            .transport
            .send(req)
            .await
            .map_err(|e| unavailable(format!("introspection endpoint: {e}")))?;
        if resp.status() != http::StatusCode::OK {
            return Err(unavailable(format!(
                "introspection endpoint answered {}",
                resp.status()
            )));
        }
        self.read(resp.body(), now)
    }

    /// RFC 7662 §2.2.
    fn read(&self, body: &[u8], now: UnixTime) -> Answer {
        let unavailable = |reason: String| OAuthError::Unavailable {
            reason: format!("introspection response: {reason}"),
        };
        let text = std::str::from_utf8(body).map_err(|_| unavailable("not UTF-8".to_owned()))?;
        let o = Object::parse(text).map_err(|e| unavailable(e.to_string()))?;
        let active = o
            .get("active")
            .map(value::<bool>)
            .transpose()
            .map_err(|e| unavailable(format!("active: {e}")))?
            .ok_or_else(|| unavailable("active is absent".to_owned()))?;
        if !active {
            return Err(OAuthError::Claim {
                claim: "active",
                reason: "the authorization server says the token is not active".to_owned(),
            });
        }
        // The answer's members as claims: `iss` defaulting to the configured issuer and
        // checked against it, `aud`, `exp` required as for a JWT.
        let iss = match o.get("iss") {
            Some(raw) => value::<String>(raw).map_err(|e| unavailable(format!("iss: {e}")))?,
            None => self.issuer.clone(),
        };
        if iss != self.issuer {
            return Err(OAuthError::UnknownIssuer { iss });
        }
        let mut members: Vec<(&str, &RawValue)> =
            o.members().filter(|(n, _)| *n != "iss").collect();
        members.retain(|(n, _)| *n != "active");
        let mut json = format!("{{\"iss\":{}", json_string(&self.issuer));
        for (name, raw) in members {
            json.push(',');
            json.push_str(&json_string(name));
            json.push(':');
            json.push_str(raw.get());
        }
        json.push('}');
        let (claims, _) = read_claims(json)?;
        if claims.expires_at().as_secs() <= now.as_secs() {
            return Err(OAuthError::Expired {
                exp: claims.expires_at().as_secs(),
                now: now.as_secs(),
            });
        }
        if !claims.audience().any(|a| a == self.audience) {
            return Err(OAuthError::Audience {
                expected: self.audience.clone(),
                found: claims.audience().map(str::to_owned).collect(),
            });
        }
        Ok(claims)
    }
}

impl VerifyAccessToken for Introspection {
    fn verify_token<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'a>> {
        Box::pin(self.introspect(token))
    }
}
