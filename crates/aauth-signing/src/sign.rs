//! Signing a request under the AAuth profile (draft -11 §11.3.3).

use aauth_headers::{
    Component, Scheme, SigParam, SignatureInput, SignatureKey, SignatureParams, Signatures, names,
};
use aauth_keys::Signer;
use aauth_keys::rand::{RandomSource, random_id};
use aauth_keys::time::UnixTime;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::components::Message;
use crate::{SignError, base, content_digest};

/// One signature to add: its label, the key that signs, and what `Signature-Key` says
/// about the key (for an AAuth agent, `Scheme::Jwt` with its token).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SigningKey<'a> {
    /// The label (`sig` for a single signature).
    pub label: &'a str,
    /// The key.
    pub signer: &'a dyn Signer,
    /// The `Signature-Key` member.
    pub scheme: &'a Scheme,
}

impl<'a> SigningKey<'a> {
    /// A signature labelled `label`.
    #[must_use]
    pub fn new(label: &'a str, signer: &'a dyn Signer, scheme: &'a Scheme) -> Self {
        Self {
            label,
            signer,
            scheme,
        }
    }
}

/// When to add `Content-Digest` and cover it with `content-type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestMode {
    /// When the body is not empty (the default; required at every Person Server and Access
    /// Server endpoint).
    #[default]
    WhenBody,
    /// Always, even for an empty body.
    Always,
    /// Never.
    Never,
}

/// Signing options. The defaults cover `@method @authority @path`, `authorization` when the
/// request carries one (a session token, draft -11 §5.5), `content-type` and
/// `content-digest` when it has a body, then `signature-key`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SignOptions {
    /// An explicit component list, in order, replacing the default one. It must include
    /// `@method`, `@authority`, `@path` and `signature-key`.
    pub components: Option<Vec<Component>>,
    /// Also cover `@query`.
    pub query: bool,
    /// Further components to cover (for example a resource's
    /// `additional_signature_components`).
    pub extra: Vec<Component>,
    /// `Content-Digest` handling.
    pub digest: DigestMode,
    /// An `expires` this many seconds after `created`.
    pub expires_in: Option<u64>,
    /// A `tag` parameter.
    pub tag: Option<String>,
    /// A `nonce` parameter (RFC 9421 §2.3): set by [`SignOptions::unique_for`].
    pub nonce: Option<String>,
}

impl SignOptions {
    /// Covers exactly `components`, in order.
    #[must_use]
    pub fn components(mut self, components: &[&str]) -> Self {
        self.components = Some(components.iter().map(|c| Component::new(*c)).collect());
        self
    }

    /// Also covers `@query`.
    #[must_use]
    pub fn with_query(mut self) -> Self {
        self.query = true;
        self
    }

    /// Also covers `component`.
    #[must_use]
    pub fn with(mut self, component: &str) -> Self {
        self.extra.push(Component::new(component));
        self
    }

    /// Sets the digest mode.
    #[must_use]
    pub fn digest(mut self, mode: DigestMode) -> Self {
        self.digest = mode;
        self
    }

    /// Sends `nonce` as the signature's `nonce` parameter.
    #[must_use]
    pub fn nonce(mut self, nonce: impl Into<String>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// A random `nonce` when `method` changes state. Verifiers refuse a state-changing
    /// request whose signature base they already accepted (a replay); two requests a
    /// client means as two (the same body posted twice within one second) then differ in
    /// their nonce, and neither is mistaken for the other's replay. The AAuth profile
    /// defines no nonce check: the parameter only makes the base unique.
    ///
    /// # Errors
    ///
    /// [`SignError::Random`] when `rng` fails.
    ///
    /// ```
    /// use aauth_keys::rand::OsRandom;
    /// use aauth_signing::SignOptions;
    /// let post = SignOptions::default().unique_for(&http::Method::POST, &mut OsRandom)?;
    /// let get = SignOptions::default().unique_for(&http::Method::GET, &mut OsRandom)?;
    /// assert!(post.nonce.is_some() && get.nonce.is_none());
    /// # Ok::<(), aauth_signing::SignError>(())
    /// ```
    pub fn unique_for(
        mut self,
        method: &Method,
        rng: &mut dyn RandomSource,
    ) -> Result<Self, SignError> {
        if !method.is_safe() {
            self.nonce = Some(random_id(rng, 16)?);
        }
        Ok(self)
    }
}

fn header_value(field: &'static str, v: &str) -> Result<HeaderValue, SignError> {
    HeaderValue::from_str(v).map_err(|_| SignError::Serialize {
        field,
        source: aauth_headers::SerializeError::BadString {
            value: v.to_owned(),
        },
    })
}

/// Signs a request: adds `Content-Digest` (per [`DigestMode`]), then the complete
/// `Signature-Key`, then one signature per key in `keys`, each covering `signature-key`,
/// created at `created`. The `alg` parameter is never sent.
///
/// # Errors
///
/// [`SignError`] when no key is given, an explicit component list misses a mandatory
/// component, a component is absent, or a key cannot sign.
///
/// ```
/// use aauth_headers::Scheme;
/// use aauth_keys::{PrivateKey, time::UnixTime};
/// use aauth_signing::{SignOptions, SigningKey, sign};
///
/// let key = PrivateKey::ed25519_from_seed(&[9; 32]);
/// let scheme = Scheme::jwt("eyJhbGciOiJFZDI1NTE5In0.e30.c2ln");
/// let (mut parts, body) = http::Request::post("https://ps.example/token")
///     .header("content-type", "application/json")
///     .body(br#"{"resource_token":"x"}"#.to_vec())?
///     .into_parts();
/// sign(&mut parts, &body, &[SigningKey::new("sig", &key, &scheme)], &SignOptions::default(), UnixTime(1_800_000_000))?;
/// assert_eq!(
///     parts.headers["signature-input"],
///     r#"sig=("@method" "@authority" "@path" "content-type" "content-digest" "signature-key");created=1800000000"#,
/// );
/// assert!(parts.headers.contains_key("content-digest"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sign(
    parts: &mut Parts,
    body: &[u8],
    keys: &[SigningKey<'_>],
    options: &SignOptions,
    created: UnixTime,
) -> Result<(), SignError> {
    sign_message(
        &parts.method,
        &parts.uri,
        &mut parts.headers,
        body,
        keys,
        options,
        created,
    )
}

/// As [`sign`], over the pieces of a request.
///
/// # Errors
///
/// As [`sign`].
pub fn sign_message(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    keys: &[SigningKey<'_>],
    options: &SignOptions,
    created: UnixTime,
) -> Result<(), SignError> {
    if keys.is_empty() {
        return Err(SignError::NoLabels);
    }
    let digesting = match options.digest {
        DigestMode::WhenBody => !body.is_empty(),
        DigestMode::Always => true,
        DigestMode::Never => false,
    };
    if digesting {
        headers.insert(
            names::CONTENT_DIGEST,
            header_value("Content-Digest", &content_digest(body))?,
        );
    }
    let components = match &options.components {
        Some(list) => {
            for required in crate::REQUIRED_COMPONENTS {
                if !list
                    .iter()
                    .any(|c| c.name == required && c.params.is_empty())
                {
                    return Err(SignError::MissingRequiredComponent {
                        component: required.to_owned(),
                    });
                }
            }
            list.clone()
        }
        None => default_components(headers, options, digesting),
    };

    let sk_value =
        SignatureKey::serialize(keys.iter().map(|k| (k.label, k.scheme))).map_err(|source| {
            SignError::Serialize {
                field: "Signature-Key",
                source,
            }
        })?;
    let mut sk_header = header_value("Signature-Key", &sk_value)?;
    sk_header.set_sensitive(true);
    headers.insert(names::SIGNATURE_KEY, sk_header);

    let created_i = i64::try_from(created.as_secs()).unwrap_or(i64::MAX);
    let mut all_params = Vec::with_capacity(keys.len());
    let mut all_sigs = Vec::with_capacity(keys.len());
    {
        let msg = Message::client(method, uri, headers)?;
        for k in keys {
            let mut params = SignatureParams::new(components.clone(), created_i);
            if let Some(e) = options.expires_in {
                params.params.push(SigParam::Expires(
                    created_i.saturating_add(i64::try_from(e).unwrap_or(i64::MAX)),
                ));
            }
            if let Some(tag) = &options.tag {
                params.params.push(SigParam::Tag(tag.clone()));
            }
            if let Some(nonce) = &options.nonce {
                params.params.push(SigParam::Nonce(nonce.clone()));
            }
            let base = base::build(&msg, &params)?;
            all_sigs.push(k.signer.sign(base.as_bytes())?);
            all_params.push(params);
        }
    }
    let input = SignatureInput::serialize(keys.iter().map(|k| k.label).zip(all_params.iter()))
        .map_err(|source| SignError::Serialize {
            field: "Signature-Input",
            source,
        })?;
    let sigs = Signatures::serialize(
        keys.iter()
            .map(|k| k.label)
            .zip(all_sigs.iter().map(Vec::as_slice)),
    )
    .map_err(|source| SignError::Serialize {
        field: "Signature",
        source,
    })?;
    headers.insert(
        names::SIGNATURE_INPUT,
        header_value("Signature-Input", &input)?,
    );
    headers.insert(names::SIGNATURE, header_value("Signature", &sigs)?);
    Ok(())
}

fn default_components(
    headers: &HeaderMap,
    options: &SignOptions,
    digesting: bool,
) -> Vec<Component> {
    let mut c = vec![
        Component::new("@method"),
        Component::new("@authority"),
        Component::new("@path"),
    ];
    if options.query {
        c.push(Component::new("@query"));
    }
    if headers.contains_key(http::header::AUTHORIZATION) {
        c.push(Component::new("authorization"));
    }
    if digesting {
        if headers.contains_key(http::header::CONTENT_TYPE) {
            c.push(Component::new("content-type"));
        }
        c.push(Component::new("content-digest"));
    }
    let key = Component::new("signature-key");
    for e in &options.extra {
        // `signature-key` is covered once, last (RFC 9421 §2.5: no identifier twice).
        if !c.contains(e) && *e != key {
            c.push(e.clone());
        }
    }
    c.push(key);
    c
}

/// Signs `request` with one key under label `sig` and the default options.
///
/// The result is deterministic (with Ed25519): the same request signed twice in one
/// second is the same bytes, which a verifier's replay check refuses the second time.
/// A client sending a state-changing request uses [`sign_request_unique`].
///
/// # Errors
///
/// As [`sign`].
pub fn sign_request<B: AsRef<[u8]>>(
    request: &mut http::Request<B>,
    signer: &dyn Signer,
    scheme: &Scheme,
    created: UnixTime,
) -> Result<(), SignError> {
    sign_request_with(request, signer, scheme, &SignOptions::default(), created)
}

/// As [`sign_request`], with a random `nonce` when the method changes state
/// ([`SignOptions::unique_for`]): what a client sends, so that two requests it means as
/// two are never refused as one replayed.
///
/// # Errors
///
/// As [`sign`], and [`SignError::Random`].
pub fn sign_request_unique<B: AsRef<[u8]>>(
    request: &mut http::Request<B>,
    signer: &dyn Signer,
    scheme: &Scheme,
    created: UnixTime,
    rng: &mut dyn RandomSource,
) -> Result<(), SignError> {
    let options = SignOptions::default().unique_for(request.method(), rng)?;
    sign_request_with(request, signer, scheme, &options, created)
}

/// Signs `request` with one key under label `sig` and `options`.
///
/// # Errors
///
/// As [`sign`].
pub fn sign_request_with<B: AsRef<[u8]>>(
    request: &mut http::Request<B>,
    signer: &dyn Signer,
    scheme: &Scheme,
    options: &SignOptions,
    created: UnixTime,
) -> Result<(), SignError> {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let body = request.body().as_ref().to_vec();
    sign_message(
        &method,
        &uri,
        request.headers_mut(),
        &body,
        &[SigningKey::new("sig", signer, scheme)],
        options,
        created,
    )
}
