//! What one server sends another, signed as itself (draft -11 §Keying Material: the
//! `jwks_uri` scheme, `id` its issuer, `dwk` its metadata document), and the revocation
//! requests every role sends (draft -11 §Revocation): the recipient's
//! `revocation_endpoint` discovered from its metadata, `{jti, exp}` posted with the body
//! covered, a `202` followed to the end of the recipient's cascade.
//!
//! The Person Server revokes at resources and Access Servers, the Access Server at
//! resources, the agent provider at Person Servers (checklist AP-07), and a resource its
//! resource tokens at Person Servers and Access Servers (checklist RS-62): each with a
//! [`Revoker`] signing as itself.
//!
//! ```no_run
//! # async fn demo(transport: std::sync::Arc<dyn aauth_metadata::Transport>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use aauth_keys::PrivateKey;
//! use aauth_metadata::PersonServerMetadata;
//! use aauth_metadata::outbound::{Revoker, ServerSigner};
//! use aauth_tokens::ServerId;
//!
//! let provider = ServerSigner::new(
//!     ServerId::parse("https://agent.example")?,
//!     "aauth-agent.json",
//!     Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
//!     "key-1",
//! );
//! let revoker = Revoker::new(provider, transport);
//! let now = aauth_keys::time::UnixTime(1_800_000_000);
//! revoker
//!     .revoke::<PersonServerMetadata>(&ServerId::parse("https://ps.example")?, "jti-1", 1_800_003_600, now)
//!     .await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::Scheme;
use aauth_keys::Signer;
use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_signing::{SignOptions, SigningKey, sign};
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::{
    AccessServerMetadata, HttpsUrl, MetadataDocument, PersonServerMetadata, ResourceMetadata,
    Transport,
};

/// A server signing its own requests: its identifier, the metadata document that
/// publishes its keys (`aauth-person.json`, `aauth-access.json`, `aauth-agent.json` or
/// `aauth-resource.json`), its key and `kid`, and where request nonces come from.
#[derive(Clone)]
pub struct ServerSigner {
    id: ServerId,
    dwk: &'static str,
    signer: Arc<dyn Signer>,
    kid: String,
    random: SharedRandom,
}

impl std::fmt::Debug for ServerSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSigner")
            .field("id", &self.id)
            .field("dwk", &self.dwk)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ServerSigner {
    /// Server `id`, whose keys are in its document `dwk`, signing with `signer` as `kid`.
    #[must_use]
    pub fn new(id: ServerId, dwk: &'static str, signer: Arc<dyn Signer>, kid: &str) -> Self {
        Self {
            id,
            dwk,
            signer,
            kid: kid.to_owned(),
            random: SharedRandom::default(),
        }
    }

    /// Draws request nonces from `random` (the OS CSPRNG by default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// The signing server.
    #[must_use]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// `method` on `url`, with `body` as JSON if given, signed at `now` as this server
    /// (`sig=jwks_uri;id;dwk;kid`): the JSON body's `content-type` and `content-digest`
    /// covered, and a nonce on every state-changing request (two meant as two are never
    /// taken for a replay of one).
    ///
    /// # Errors
    ///
    /// A description of what could not be built or signed.
    pub fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        now: UnixTime,
    ) -> Result<http::Request<Bytes>, String> {
        let mut builder = http::Request::builder().method(method).uri(url);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let body = Bytes::from(body.map(ToString::to_string).unwrap_or_default()); // default: a request without a body sends an empty one
        let (mut parts, ()) = builder.body(()).map_err(|e| e.to_string())?.into_parts();
        let scheme = Scheme::JwksUri {
            id: self.id.as_str().to_owned(),
            dwk: self.dwk.to_owned(),
            kid: self.kid.clone(),
        };
        let options = SignOptions::default()
            .unique_for(&parts.method, &mut self.random.clone())
            .map_err(|e| e.to_string())?;
        sign(
            &mut parts,
            &body,
            &[SigningKey::new("sig", self.signer.as_ref(), &scheme)],
            &options,
            now,
        )
        .map_err(|e| e.to_string())?;
        Ok(http::Request::from_parts(parts, body))
    }
}

/// Why a revocation did not complete, in the draft's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The recipient takes no revocations from this server: it declares no
    /// `revocation_endpoint`, or answered `403 unsupported_iss`.
    #[error("revocation_unsupported: {0}")]
    Unsupported(String),
    /// The recipient could not be reached, did not finish, or refused otherwise (a
    /// transport failure, its metadata unreadable, a `5xx`, a `401` or another `403`
    /// refusing this server's request, a cascade still pending after the last poll).
    /// Resending is safe.
    #[error("revocation_unavailable: {0}")]
    Unavailable(String),
    /// `429 rate_limited`: try again after `retry_after` seconds (when it says).
    #[error("rate_limited")]
    RateLimited {
        /// The recipient's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
}

impl RevocationError {
    /// The draft's code: `revocation_unsupported`, `revocation_unavailable`,
    /// `rate_limited`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "revocation_unsupported",
            Self::Unavailable(_) => "revocation_unavailable",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

/// A metadata document that may name a `revocation_endpoint`.
pub trait RevocationRecipient: MetadataDocument {
    /// Its `revocation_endpoint`.
    fn revocation_endpoint(&self) -> Option<&HttpsUrl>;
}

impl RevocationRecipient for PersonServerMetadata {
    fn revocation_endpoint(&self) -> Option<&HttpsUrl> {
        self.revocation_endpoint.as_ref()
    }
}

impl RevocationRecipient for AccessServerMetadata {
    fn revocation_endpoint(&self) -> Option<&HttpsUrl> {
        self.revocation_endpoint.as_ref()
    }
}

impl RevocationRecipient for ResourceMetadata {
    fn revocation_endpoint(&self) -> Option<&HttpsUrl> {
        self.revocation_endpoint.as_ref()
    }
}

/// The polls of a `202` answer, at most: with the longest `Retry-After` honoured (30 s),
/// about five minutes.
pub const DEFAULT_MAX_POLLS: u32 = 10;

/// Sends revocations signed as one server.
#[derive(Clone)]
pub struct Revoker {
    signer: ServerSigner,
    transport: Arc<dyn Transport>,
    max_polls: u32,
}

impl std::fmt::Debug for Revoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revoker")
            .field("signer", &self.signer)
            .field("max_polls", &self.max_polls)
            .finish_non_exhaustive()
    }
}

impl Revoker {
    /// Revocations signed by `signer`, sent through `transport`.
    #[must_use]
    pub fn new(signer: ServerSigner, transport: Arc<dyn Transport>) -> Self {
        Self {
            signer,
            transport,
            max_polls: DEFAULT_MAX_POLLS,
        }
    }

    /// Polls a `202` at most `polls` times (default [`DEFAULT_MAX_POLLS`]).
    #[must_use]
    pub fn max_polls(mut self, polls: u32) -> Self {
        self.max_polls = polls;
        self
    }

    /// The signing server.
    #[must_use]
    pub fn signer(&self) -> &ServerSigner {
        &self.signer
    }

    /// Revokes token `jti` (expiring at `exp`) at `recipient`, whose document `D` names
    /// its `revocation_endpoint`, signing at `now` (and at `now` plus the time waited, for
    /// the polls of a `202`). The recipient's final answer body, when it has one (an Access
    /// Server's `downstream` report), is returned.
    ///
    /// # Errors
    ///
    /// [`RevocationError`].
    pub async fn revoke<D: RevocationRecipient>(
        &self,
        recipient: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<Option<serde_json::Value>, RevocationError> {
        let endpoint = self.endpoint::<D>(recipient).await?;
        self.revoke_at(&endpoint, jti, exp, now).await
    }

    /// As [`Revoker::revoke`], at a `revocation_endpoint` already discovered (with
    /// [`Revoker::endpoint`]): for sending again without discovering again.
    ///
    /// # Errors
    ///
    /// [`RevocationError`].
    pub async fn revoke_at(
        &self,
        endpoint: &HttpsUrl,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<Option<serde_json::Value>, RevocationError> {
        let started = tokio::time::Instant::now();
        let at = || now.plus(started.elapsed().as_secs());
        let body = serde_json::json!({ "jti": jti, "exp": exp });
        let mut resp = self
            .send(Method::POST, endpoint.as_str(), Some(&body), at())
            .await?;
        let mut polls = 0;
        while resp.status() == StatusCode::ACCEPTED {
            if polls >= self.max_polls {
                return Err(RevocationError::Unavailable(
                    "the recipient's cascade did not finish".to_owned(),
                ));
            }
            polls += 1;
            let pending = pending_url(&resp, endpoint)?;
            tokio::time::sleep(Duration::from_secs(
                retry_after(&resp, at()).unwrap_or(1).min(30),
            ))
            .await;
            resp = self.send(Method::GET, pending.as_str(), None, at()).await?;
        }
        let outcome = answer(&resp, at());
        // Said where the operator looks: a recipient that refuses leaves the token good
        // there until it expires (its own configuration may name who may revoke).
        #[cfg(feature = "ops")]
        if let Err(e) = &outcome {
            tracing::warn!(endpoint = %endpoint.as_str(), status = resp.status().as_u16(), error = %e, "a revocation was not taken");
        }
        outcome
    }

    /// `recipient`'s `revocation_endpoint`, from its metadata document `D` (its `issuer`
    /// checked).
    ///
    /// # Errors
    ///
    /// [`RevocationError::Unavailable`] when the document cannot be read,
    /// [`RevocationError::Unsupported`] when it names no endpoint.
    pub async fn endpoint<D: RevocationRecipient>(
        &self,
        recipient: &ServerId,
    ) -> Result<HttpsUrl, RevocationError> {
        let unavailable = |e: String| RevocationError::Unavailable(e);
        let req = http::Request::get(format!("{}/.well-known/{}", recipient.as_str(), D::DWK))
            .body(Bytes::new())
            .map_err(|e| unavailable(e.to_string()))?;
        let resp = self
            .transport
            .send(req)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if resp.status() != StatusCode::OK {
            return Err(unavailable(format!("metadata: {}", resp.status())));
        }
        let doc = D::parse_for(resp.body(), recipient)
            .map_err(|e| unavailable(format!("metadata: {e}")))?;
        doc.revocation_endpoint()
            .cloned()
            .ok_or_else(|| RevocationError::Unsupported("no revocation_endpoint".to_owned()))
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, RevocationError> {
        let req = self
            .signer
            .request(method, url, body, now)
            .map_err(RevocationError::Unavailable)?;
        self.transport
            .send(req)
            .await
            .map_err(|e| RevocationError::Unavailable(e.to_string()))
    }
}

/// The outcome of a final (non-`202`) answer.
fn answer(
    resp: &http::Response<Bytes>,
    now: UnixTime,
) -> Result<Option<serde_json::Value>, RevocationError> {
    match resp.status() {
        s if s.is_success() => Ok(serde_json::from_slice(resp.body()).ok()),
        // The revocation endpoint's only refusal that means "not from you" (draft -11
        // §Revocation): any other `403` refused this request, which a fix here (a key,
        // a clock, a configuration) may get past.
        StatusCode::FORBIDDEN if error_code(resp) == "unsupported_iss" => {
            Err(RevocationError::Unsupported("unsupported_iss".to_owned()))
        }
        StatusCode::TOO_MANY_REQUESTS => Err(RevocationError::RateLimited {
            retry_after: retry_after(resp, now),
        }),
        s => Err(RevocationError::Unavailable(format!(
            "{s}: {}",
            error_code(resp)
        ))),
    }
}

/// The `error` member of a problem body, or what there is.
fn error_code(resp: &http::Response<Bytes>) -> String {
    serde_json::from_slice::<serde_json::Value>(resp.body())
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| resp.status().to_string())
}

/// `Retry-After` in seconds: delta-seconds or an HTTP-date.
fn retry_after(resp: &http::Response<Bytes>, now: UnixTime) -> Option<u64> {
    resp.headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::freshness::retry_after(v, now))
}

/// The `Location` of a `202`, on the revocation endpoint's origin (an absolute path, or
/// an absolute URL of that origin; decision 0010).
fn pending_url(
    resp: &http::Response<Bytes>,
    endpoint: &HttpsUrl,
) -> Result<HttpsUrl, RevocationError> {
    let bad = |why: &str| RevocationError::Unavailable(format!("its 202: {why}"));
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("no Location"))?;
    let absolute = if location.starts_with('/') && !location.starts_with("//") {
        format!("{}{location}", endpoint.origin())
    } else {
        location.to_owned()
    };
    let url = HttpsUrl::parse(&absolute).map_err(|_| bad("Location is not an https URL"))?;
    if url.origin() == endpoint.origin() {
        Ok(url)
    } else {
        Err(bad("Location is on another origin"))
    }
}
