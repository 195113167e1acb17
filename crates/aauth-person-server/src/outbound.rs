//! What the Person Server sends to other servers, signed as itself under the `jwks_uri`
//! scheme (`dwk="aauth-person.json"`): revocation notices to resources and Access Servers
//! ([`RevocationNotifier`], [`HttpRevocationNotifier`]), and the requests of four-party
//! federation (`signed_post`, `signed_get`). Revocations this server *receives* are
//! `server/revocation.rs`.

use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::rand::SharedRandom;
use aauth_tokens::ServerId;
use async_trait::async_trait;

/// Tells a resource that a token this Person Server issued for it is revoked.
#[async_trait]
pub trait RevocationNotifier: Send + Sync {
    /// Revokes token `jti` (expiring at `exp`) at `resource`.
    ///
    /// # Errors
    ///
    /// A description of the failed leg (`revocation_unsupported` or
    /// `revocation_unavailable` in the draft's terms).
    async fn notify(&self, resource: &ServerId, jti: &str, exp: u64) -> Result<(), String>;

    /// Revokes person token `jti` at Access Server `access_server`, which it was
    /// presented to (four-party, PS-113: the Access Server then revokes its own auth
    /// tokens at their resources). By default, `revocation_unsupported`.
    ///
    /// # Errors
    ///
    /// As [`RevocationNotifier::notify`].
    async fn notify_access_server(
        &self,
        access_server: &ServerId,
        jti: &str,
        exp: u64,
    ) -> Result<(), String> {
        let _ = (access_server, jti, exp);
        Err("revocation_unsupported".to_owned())
    }
}

/// Revocations sent over HTTP (through the agent crate's transport): the resource's
/// `revocation_endpoint` from its metadata, a `POST {"jti", "exp"}` signed by this Person
/// Server under `sig=jwks_uri;id;dwk="aauth-person.json";kid`, covering the body.
pub struct HttpRevocationNotifier {
    ps: ServerId,
    signer: Arc<dyn aauth_keys::Signer>,
    kid: String,
    transport: Arc<dyn aauth_metadata::Transport>,
    clock: Arc<dyn aauth_keys::time::Clock>,
    random: SharedRandom,
}

impl std::fmt::Debug for HttpRevocationNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRevocationNotifier")
            .field("ps", &self.ps)
            .finish_non_exhaustive()
    }
}

impl HttpRevocationNotifier {
    /// Signs as Person Server `ps` with `signer` under `kid`, sends through `transport`.
    #[must_use]
    pub fn new(
        ps: ServerId,
        signer: Arc<dyn aauth_keys::Signer>,
        kid: &str,
        transport: Arc<dyn aauth_metadata::Transport>,
        clock: Arc<dyn aauth_keys::time::Clock>,
    ) -> Self {
        Self {
            ps,
            signer,
            kid: kid.to_owned(),
            transport,
            clock,
            random: SharedRandom::default(),
        }
    }

    /// Draws request nonces from `random` (the OS CSPRNG by default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }
}

#[async_trait]
impl RevocationNotifier for HttpRevocationNotifier {
    async fn notify(&self, resource: &ServerId, jti: &str, exp: u64) -> Result<(), String> {
        let endpoint = self
            .revocation_endpoint::<aauth_metadata::ResourceMetadata>(resource, |d| {
                d.revocation_endpoint.clone()
            })
            .await?;
        self.post(&endpoint, jti, exp).await
    }

    async fn notify_access_server(
        &self,
        access_server: &ServerId,
        jti: &str,
        exp: u64,
    ) -> Result<(), String> {
        let endpoint = self
            .revocation_endpoint::<aauth_metadata::AccessServerMetadata>(access_server, |d| {
                d.revocation_endpoint.clone()
            })
            .await?;
        self.post(&endpoint, jti, exp).await
    }
}

impl HttpRevocationNotifier {
    /// `server`'s `revocation_endpoint`, from its metadata document `D`.
    async fn revocation_endpoint<D: aauth_metadata::MetadataDocument>(
        &self,
        server: &ServerId,
        endpoint: impl Fn(&D) -> Option<aauth_metadata::HttpsUrl>,
    ) -> Result<aauth_metadata::HttpsUrl, String> {
        let url = format!("{}/.well-known/{}", server.as_str(), D::DWK);
        let req = http::Request::get(url)
            .body(bytes::Bytes::new())
            .map_err(|e| e.to_string())?;
        let resp = self
            .transport
            .send(req)
            .await
            .map_err(|e| format!("revocation_unavailable: {e}"))?;
        let doc = D::parse_for(resp.body(), server)
            .map_err(|e| format!("revocation_unavailable: metadata: {e}"))?;
        endpoint(&doc).ok_or_else(|| "revocation_unsupported".to_owned())
    }

    /// `{jti, exp}` to `endpoint`, signed as this Person Server.
    async fn post(
        &self,
        endpoint: &aauth_metadata::HttpsUrl,
        jti: &str,
        exp: u64,
    ) -> Result<(), String> {
        let signer = ServerSigner {
            ps: &self.ps,
            signer: self.signer.as_ref(),
            kid: &self.kid,
            random: &self.random,
        };
        let resp = signed_post(
            self.transport.as_ref(),
            &signer,
            self.clock.now(),
            endpoint.as_str(),
            &serde_json::json!({ "jti": jti, "exp": exp }),
        )
        .await
        .map_err(|e| format!("revocation_unavailable: {e}"))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            403 => Err("revocation_unsupported".to_owned()),
            s => Err(format!("revocation_unavailable: {s}")),
        }
    }
}

/// Who signs a server-to-server request: this Person Server, under `kid`, drawing its
/// nonces from `random`.
pub(crate) struct ServerSigner<'a> {
    /// This Person Server.
    pub(crate) ps: &'a ServerId,
    /// Its signing key.
    pub(crate) signer: &'a dyn aauth_keys::Signer,
    /// The key's `kid`.
    pub(crate) kid: &'a str,
    /// Where nonces come from.
    pub(crate) random: &'a SharedRandom,
}

/// A `POST` of `body` as JSON to `url`, signed by the Person Server as a server
/// (`sig=jwks_uri;id;dwk="aauth-person.json";kid`), covering `content-type` and
/// `content-digest` (PS-51), sent through `transport`.
pub(crate) async fn signed_post(
    transport: &dyn aauth_metadata::Transport,
    signer: &ServerSigner<'_>,
    now: aauth_keys::time::UnixTime,
    url: &str,
    body: &serde_json::Value,
) -> Result<http::Response<bytes::Bytes>, String> {
    signed(transport, signer, now, http::Method::POST, url, Some(body)).await
}

/// A `GET` of `url` signed by the Person Server as a server (a poll of an Access
/// Server's pending URL), sent through `transport`.
pub(crate) async fn signed_get(
    transport: &dyn aauth_metadata::Transport,
    signer: &ServerSigner<'_>,
    now: aauth_keys::time::UnixTime,
    url: &str,
) -> Result<http::Response<bytes::Bytes>, String> {
    signed(transport, signer, now, http::Method::GET, url, None).await
}

/// A request signed by the Person Server as a server, its JSON body (if any) covered.
async fn signed(
    transport: &dyn aauth_metadata::Transport,
    signer: &ServerSigner<'_>,
    now: aauth_keys::time::UnixTime,
    method: http::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<http::Response<bytes::Bytes>, String> {
    let mut builder = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default(); // default: a request without a body sends an empty one
    let (mut parts, ()) = builder.body(()).map_err(|e| e.to_string())?.into_parts();
    let scheme = Scheme::JwksUri {
        id: signer.ps.as_str().to_owned(),
        dwk: "aauth-person.json".to_owned(),
        kid: signer.kid.to_owned(),
    };
    // A nonce on every state-changing request: two that are meant as two are never
    // mistaken for a replay of one.
    let options = aauth_signing::SignOptions::default()
        .unique_for(&parts.method, &mut signer.random.clone())
        .map_err(|e| e.to_string())?;
    aauth_signing::sign(
        &mut parts,
        &body,
        &[aauth_signing::SigningKey::new(
            "sig",
            signer.signer,
            &scheme,
        )],
        &options,
        now,
    )
    .map_err(|e| e.to_string())?;
    transport
        .send(http::Request::from_parts(parts, bytes::Bytes::from(body)))
        .await
        .map_err(|e| e.to_string())
}
