//! Verifying a signed request (draft -11 §11.3.4), as a sans-IO pair ([`prepare`], then
//! [`Prepared::finish`] with the resolved key) or in one call ([`Verifier::verify`]).

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::{
    ErrorCode, MemberError, Scheme, SignatureInput, SignatureKey, SignatureParams, Signatures,
    combined_value,
};
use aauth_keys::time::UnixTime;
use aauth_keys::{Algorithm, PublicKey};
use http::request::Parts;
use sha2::{Digest as _, Sha256};

use crate::base;
use crate::components::{AuthoritySource, Message};
use crate::replay::ReplayGuard;
use crate::replay::{ReplayStore, RevocationReplayStore};
use crate::resolve::{KeyIdentity, KeyResolver, ResolveContext, ResolvedKey, RevocationList};
use crate::{VerifyError, digest};

/// The `created` window a verifier allows unless told otherwise: 60 seconds either way
/// (draft -11 §Verifying a Request: "The default window is 60 seconds").
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// The settings of a [`VerifyPolicy`] that weaken it, reached by
/// [`VerifyPolicy::dangerous`].
#[derive(Debug)]
pub struct DangerousVerifyPolicy<'a>(&'a mut VerifyPolicy);

impl DangerousVerifyPolicy<'_> {
    /// Sets the `created` window to `window` (whole seconds), wider than the default if
    /// asked: for agents with poor clocks (draft -11 §Resource Metadata says such a
    /// resource MAY advertise a larger `signature_window`). Replayed requests stay
    /// acceptable for as long; the replay guard keeps entries as long.
    pub fn widen_window(&mut self, window: Duration) -> &mut Self {
        self.0.window = window.as_secs();
        self
    }
}

/// The components every AAuth request signature covers (draft -11 §11.3.3).
pub const REQUIRED_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "signature-key"];

/// Whether requests with a body must cover `content-digest` and `content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyCoverage {
    /// Required on any request with a non-empty body (every Person Server and Access Server
    /// endpoint, draft -11 §11.3.3; the default).
    Required,
    /// Not required (a resource that does not list them in
    /// `additional_signature_components`). A `Content-Digest` that is present is still
    /// checked against the body.
    Optional,
}

/// How the label to verify is chosen when a request carries several signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelSelection {
    /// The only label; with several, the only one whose `Signature-Key` scheme is accepted
    /// (none: `unsupported_scheme`, as for one label). Never "whichever verifies".
    Auto,
    /// Exactly this label.
    Named(String),
}

/// What a verifier requires. [`VerifyPolicy::new`] gives the AAuth profile for a server
/// that answers to `authority`: the four mandatory components, body coverage, a 60-second
/// window, the `jwt` scheme, `Ed25519` and `ES256`, at most four labels. There is no
/// `Default`: whose requests a verifier accepts is never left to the request's `Host`.
///
/// ```
/// use aauth_signing::{AuthoritySource, VerifyPolicy};
/// use aauth_tokens::ServerId;
/// use std::time::Duration;
/// let policy = VerifyPolicy::for_server(&ServerId::parse("https://resource.example")?)
///     .narrow_window(Duration::from_secs(30))
///     .require("@query");
/// assert_eq!(policy.window(), Duration::from_secs(30));
/// assert!(policy.authority_source().accepts("resource.example"));
///
/// // Wider than the default only through the door that says so.
/// let mut lenient = policy.clone().narrow_window(Duration::from_secs(600));
/// assert_eq!(lenient.window(), Duration::from_secs(30));
/// lenient.dangerous().widen_window(Duration::from_secs(600));
/// assert_eq!(lenient.window(), Duration::from_secs(600));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyPolicy {
    /// Components every signature must cover (the four mandatory ones plus extras, such as
    /// a resource's `additional_signature_components`).
    pub required_components: Vec<String>,
    /// Body coverage.
    pub body_coverage: BodyCoverage,
    /// The `created` window in seconds, both ways ([`VerifyPolicy::window`]; narrowed by
    /// [`VerifyPolicy::narrow_window`], widened only through [`VerifyPolicy::dangerous`]).
    pub(crate) window: u64,
    /// Accepted `Signature-Key` schemes, in preference order (sent in
    /// `Accept-Signature-Scheme`).
    pub accepted_schemes: Vec<String>,
    /// Accepted algorithms, exactly (sent in `Accept-Signature-Alg`).
    pub accepted_algorithms: Vec<Algorithm>,
    /// Label choice.
    pub label: LabelSelection,
    /// The most labels a request may carry.
    pub max_labels: usize,
    /// Where `@authority` comes from and which authorities are this server's
    /// ([`VerifyPolicy::authority_source`]).
    pub(crate) authority: AuthoritySource,
    /// The size limit for each signature field.
    pub max_field_bytes: usize,
}

impl VerifyPolicy {
    /// The AAuth profile for a server that answers to `authority`.
    #[must_use]
    pub fn new(authority: AuthoritySource) -> Self {
        Self {
            required_components: REQUIRED_COMPONENTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            body_coverage: BodyCoverage::Required,
            window: DEFAULT_WINDOW.as_secs(),
            accepted_schemes: vec!["jwt".to_owned()],
            accepted_algorithms: Algorithm::ALL.to_vec(),
            label: LabelSelection::Auto,
            max_labels: 4,
            authority,
            max_field_bytes: aauth_headers::DEFAULT_MAX_FIELD_BYTES,
        }
    }

    /// The AAuth profile for the server `id` (its host, under `https`).
    #[must_use]
    pub fn for_server(id: &aauth_tokens::ServerId) -> Self {
        Self::new(AuthoritySource::server(id))
    }

    /// Also requires `component` to be covered.
    #[must_use]
    pub fn require(mut self, component: &str) -> Self {
        if !self.required_components.iter().any(|c| c == component) {
            self.required_components.push(component.to_owned());
        }
        self
    }

    /// Sets body coverage.
    #[must_use]
    pub fn body_coverage(mut self, coverage: BodyCoverage) -> Self {
        self.body_coverage = coverage;
        self
    }

    /// Narrows the `created` window to `window` (whole seconds; a high-security server's
    /// choice, draft -11 §Resource Metadata `signature_window`). It never widens: a value
    /// above the current window leaves it as it is. A wider window lets a captured request
    /// be replayed for longer, and is set through [`VerifyPolicy::dangerous`].
    #[must_use]
    pub fn narrow_window(mut self, window: Duration) -> Self {
        self.window = self.window.min(window.as_secs());
        self
    }

    /// The `created` window, both ways (default [`DEFAULT_WINDOW`]).
    #[must_use]
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window)
    }

    /// Where `@authority` comes from and which authorities are this server's.
    #[must_use]
    pub fn authority_source(&self) -> &AuthoritySource {
        &self.authority
    }

    /// The settings that weaken the profile, behind a name that says so (as rustls's
    /// `dangerous()`).
    pub fn dangerous(&mut self) -> DangerousVerifyPolicy<'_> {
        DangerousVerifyPolicy(self)
    }

    /// Sets the accepted schemes.
    #[must_use]
    pub fn accept_schemes(mut self, schemes: &[&str]) -> Self {
        self.accepted_schemes = schemes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Sets the accepted algorithms.
    #[must_use]
    pub fn accept_algorithms(mut self, algs: &[Algorithm]) -> Self {
        self.accepted_algorithms = algs.to_vec();
        self
    }

    /// Sets the label choice.
    #[must_use]
    pub fn label(mut self, label: LabelSelection) -> Self {
        self.label = label;
        self
    }

    /// Sets where `@authority` comes from.
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.authority = source;
        self
    }

    fn required_for(&self, has_body: bool) -> Vec<String> {
        let mut req = self.required_components.clone();
        if has_body && self.body_coverage == BodyCoverage::Required {
            for c in ["content-digest", "content-type"] {
                if !req.iter().any(|r| r == c) {
                    req.push(c.to_owned());
                }
            }
        }
        req
    }
}

/// A request whose signature verified.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedRequest {
    /// The label verified.
    pub label: String,
    /// The key that verified it.
    pub key: PublicKey,
    /// Who the key belongs to (for the `jwt` scheme, the verified token).
    pub identity: KeyIdentity,
    /// The signature parameters.
    pub params: SignatureParams,
    /// The signature base that verified.
    pub signature_base: String,
}

impl VerifiedRequest {
    /// SHA-256 over the key's thumbprint and the signature base: the key for a replay
    /// cache. Never the signature bytes, which ES256 (r, n−s) and lenient base64 let an
    /// attacker re-encode (security catalogue R3, R4). Computed on demand, so requests that
    /// need no replay check do not pay for it.
    #[must_use]
    pub fn replay_key(&self) -> [u8; 32] {
        self.replay_key_of(self.key.thumbprint().as_str())
    }

    /// [`VerifiedRequest::replay_key`] with the key's thumbprint already at hand.
    pub(crate) fn replay_key_of(&self, thumbprint: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(thumbprint.as_bytes());
        h.update(b"\n");
        h.update(self.signature_base.as_bytes());
        h.finalize().into()
    }
}

/// A request checked up to key resolution (headers, label, coverage, `created`, scheme,
/// signature base), waiting for the key.
#[derive(Debug)]
pub struct Prepared<'r> {
    label: String,
    params: SignatureParams,
    signature: Vec<u8>,
    scheme: Scheme,
    base: String,
    digest: Option<String>,
    body: &'r [u8],
    required: Vec<String>,
    accepted_algorithms: Vec<Algorithm>,
}

fn field<'a>(
    parts: &'a Parts,
    name: &'static str,
    limit: usize,
) -> Result<std::borrow::Cow<'a, str>, VerifyError> {
    combined_value(&parts.headers, name, limit)
        .map_err(VerifyError::Header)?
        .ok_or(VerifyError::MissingHeader { name })
}

/// Checks everything that needs no key, in the draft's order: the three headers present,
/// a label chosen, the required components covered, `created` in the window, the scheme
/// accepted; then builds the signature base.
///
/// # Errors
///
/// The first failing check as a [`VerifyError`].
pub fn prepare<'r>(
    parts: &'r Parts,
    body: &'r [u8],
    policy: &VerifyPolicy,
    now: UnixTime,
) -> Result<Prepared<'r>, VerifyError> {
    prepare_with(parts, body, !body.is_empty(), policy, now)
}

/// [`prepare`], with the coverage a body needs required when `has_body` (a body not yet
/// read is then `&[]`).
fn prepare_with<'r>(
    parts: &'r Parts,
    body: &'r [u8],
    has_body: bool,
    policy: &VerifyPolicy,
    now: UnixTime,
) -> Result<Prepared<'r>, VerifyError> {
    let limit = policy.max_field_bytes;
    let input = field(parts, "signature-input", limit)?;
    let sigs = field(parts, "signature", limit)?;
    let keys = field(parts, "signature-key", limit)?;
    let input = SignatureInput::parse_with_limit(&input, limit).map_err(VerifyError::Header)?;
    let sigs = Signatures::parse_with_limit(&sigs, limit).map_err(VerifyError::Header)?;
    let keys = SignatureKey::parse_with_limit(&keys, limit).map_err(VerifyError::Header)?;

    let count = input.members().len();
    if count > policy.max_labels {
        return Err(VerifyError::TooManyLabels {
            count,
            max: policy.max_labels,
        });
    }
    let index = select_label(&input, &keys, policy)?;
    let member = input.into_members().swap_remove(index);
    let label = member.label;
    let params = member.params.map_err(|reason| VerifyError::BadMember {
        field: "Signature-Input",
        label: label.clone(),
        reason,
    })?;
    let signature = match sigs.get(&label) {
        None => {
            return Err(VerifyError::NoLabel {
                reason: "Signature has no member for the label",
            });
        }
        Some(Err(reason)) => {
            return Err(VerifyError::BadMember {
                field: "Signature",
                label,
                reason: reason.clone(),
            });
        }
        Some(Ok(bytes)) => bytes.to_vec(),
    };

    // Step 2: coverage.
    let required = policy.required_for(has_body);
    if required.iter().any(|r| !params.covers(r)) {
        return Err(VerifyError::MissingComponents { required });
    }

    // Step 3: created (and expires).
    check_created(&params, policy, now)?;

    // Step 4: the scheme.
    let scheme = accepted_scheme(keys, &label, policy)?;

    // The signature base, from the server's view of the request.
    let msg = Message::server(&parts.method, &parts.uri, &parts.headers, &policy.authority)?;
    let base = base::build(&msg, &params)?;
    // Every field line, joined as the signature base joins them: a second line is read
    // (and its members checked), never skipped. A member repeated across lines is a
    // duplicate key and refused.
    let digest = combined_value(&parts.headers, "content-digest", limit)
        .map_err(VerifyError::Header)?
        .map(std::borrow::Cow::into_owned);
    Ok(Prepared {
        label,
        params,
        signature,
        scheme,
        base,
        digest,
        body,
        required,
        accepted_algorithms: policy.accepted_algorithms.clone(),
    })
}

/// Step 3: `created` within the policy's window of `now`, and `expires` (if any) not
/// passed.
fn check_created(
    params: &SignatureParams,
    policy: &VerifyPolicy,
    now: UnixTime,
) -> Result<(), VerifyError> {
    let created = params.created().ok_or(VerifyError::CreatedMissing)?;
    let now_i = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let window = i64::try_from(policy.window).unwrap_or(i64::MAX);
    if created < now_i.saturating_sub(window) {
        return Err(VerifyError::CreatedTooOld {
            created,
            now: now.as_secs(),
            window: policy.window,
        });
    }
    if created > now_i.saturating_add(window) {
        return Err(VerifyError::CreatedInFuture {
            created,
            now: now.as_secs(),
            window: policy.window,
        });
    }
    if let Some(expires) = params.expires()
        && (expires <= now_i || expires < created)
    {
        return Err(VerifyError::Expired { expires });
    }

    Ok(())
}

/// Step 4: the `Signature-Key` member of `label`, its scheme one the policy accepts.
fn accepted_scheme(
    keys: SignatureKey,
    label: &str,
    policy: &VerifyPolicy,
) -> Result<Scheme, VerifyError> {
    let Some(km) = keys.into_members().into_iter().find(|m| m.label == label) else {
        return Err(VerifyError::NoKeyMember {
            label: label.to_owned(),
        });
    };
    let Some(scheme_name) = km.scheme_name.as_deref() else {
        return Err(VerifyError::BadKeyMember {
            label: label.to_owned(),
            reason: km.scheme.err().unwrap_or(MemberError::WrongType {
                expected: "Token",
                found: "other",
            }),
            code: ErrorCode::InvalidSignature,
        });
    };
    if !policy.accepted_schemes.iter().any(|s| s == scheme_name) {
        return Err(VerifyError::UnsupportedScheme {
            scheme: Some(scheme_name.to_owned()),
        });
    }
    km.scheme.map_err(|reason| VerifyError::BadKeyMember {
        label: label.to_owned(),
        reason,
        code: match scheme_name {
            "hwk" | "jwks_uri" | "jwks" | "x509" => ErrorCode::InvalidKey,
            _ => ErrorCode::InvalidSignature,
        },
    })
}

/// The index in `Signature-Input` of the label to verify.
fn select_label(
    input: &SignatureInput,
    keys: &SignatureKey,
    policy: &VerifyPolicy,
) -> Result<usize, VerifyError> {
    match &policy.label {
        LabelSelection::Named(l) => {
            input
                .members()
                .iter()
                .position(|m| &m.label == l)
                .ok_or(VerifyError::NoLabel {
                    reason: "the required label is absent",
                })
        }
        LabelSelection::Auto => match input.members() {
            [] => Err(VerifyError::NoLabel {
                reason: "Signature-Input is empty",
            }),
            [_] => Ok(0),
            many => {
                let scheme_of =
                    |label: &str| keys.get(label).and_then(|k| k.scheme_name.as_deref());
                let mut acceptable = many.iter().enumerate().filter(|(_, m)| {
                    scheme_of(&m.label)
                        .is_some_and(|s| policy.accepted_schemes.iter().any(|a| a == s))
                });
                match (acceptable.next(), acceptable.next()) {
                    (Some((i, _)), None) => Ok(i),
                    // As for a single label (-09 §4.9): schemes, none accepted, are
                    // `unsupported_scheme`, naming the first. Labels with no scheme at
                    // all are not a scheme to name.
                    (None, _) => match many.iter().find_map(|m| scheme_of(&m.label)) {
                        Some(scheme) => Err(VerifyError::UnsupportedScheme {
                            scheme: Some(scheme.to_owned()),
                        }),
                        None => Err(VerifyError::NoLabel {
                            reason: "no signature has a Signature-Key scheme",
                        }),
                    },
                    (Some(_), Some(_)) => Err(VerifyError::NoLabel {
                        reason: "several signatures use accepted schemes; name the label",
                    }),
                }
            }
        },
    }
}

impl Prepared<'_> {
    /// The label being verified.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The selected `Signature-Key` scheme, to resolve.
    #[must_use]
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The signature base that will be verified.
    #[must_use]
    pub fn signature_base(&self) -> &str {
        &self.base
    }

    /// Verifies the signature with the resolved key: algorithm accepted (and a `jkt-jwt`
    /// enclave key's), `keyid` consistent, signature valid, then `Content-Digest` (if
    /// present) equal to the body.
    ///
    /// # Errors
    ///
    /// [`VerifyError::AlgorithmNotAccepted`],
    /// [`VerifyError::EnclaveAlgorithmNotAccepted`], [`VerifyError::KeyIdMismatch`],
    /// [`VerifyError::BadSignature`], [`VerifyError::DigestMismatch`],
    /// [`VerifyError::DigestUnsupported`].
    pub fn finish(self, resolved: ResolvedKey) -> Result<VerifiedRequest, VerifyError> {
        let body = self.body;
        let (verified, digest, required) = self.signature_only(resolved)?;
        if let Some(d) = &digest {
            digest::check(d, body, &required)?;
        }
        Ok(verified)
    }

    /// [`Prepared::finish`] without the `Content-Digest` check: the request, its
    /// `Content-Digest` value to check against the body, and the components required.
    fn signature_only(
        self,
        resolved: ResolvedKey,
    ) -> Result<(VerifiedRequest, Option<String>, Vec<String>), VerifyError> {
        let alg = resolved.key.algorithm();
        if !self.accepted_algorithms.contains(&alg) {
            return Err(VerifyError::AlgorithmNotAccepted {
                alg: alg.as_str().to_owned(),
            });
        }
        // A `jkt-jwt` carries a second key, the enclave key that signed the delegation
        // (its header `jwk`): held to the same list (Signature-Key -09 §3.5, §3.3: a key
        // whose `alg` the verifier's policy declines is `unsupported_algorithm`). The
        // resolver checked it only against what this library can verify.
        if let KeyIdentity::JktJwt(delegation) = &resolved.identity {
            let enclave = delegation.enclave_key.algorithm();
            if !self.accepted_algorithms.contains(&enclave) {
                return Err(VerifyError::EnclaveAlgorithmNotAccepted {
                    alg: enclave.as_str().to_owned(),
                });
            }
        }
        if let Some(keyid) = self.params.keyid()
            && keyid != resolved.key.thumbprint().as_str()
            && resolved.kid.as_deref() != Some(keyid)
        {
            return Err(VerifyError::KeyIdMismatch);
        }
        resolved
            .key
            .verify(self.base.as_bytes(), &self.signature)
            .map_err(|_| VerifyError::BadSignature)?;
        let verified = VerifiedRequest {
            label: self.label,
            key: resolved.key,
            identity: resolved.identity,
            params: self.params,
            signature_base: self.base,
        };
        Ok((verified, self.digest, self.required))
    }
}

/// What a request's head says of its body, for [`Verifier::verify_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyHint {
    /// No body (a `Content-Length` of 0, or the stream already ended).
    Empty,
    /// A body of at least one byte (a `Content-Length` above 0).
    NonEmpty,
    /// Not known until it is read (chunked, or HTTP/2 without `Content-Length`).
    Unknown,
}

impl BodyHint {
    /// The hint from a body's size as its framing gives it: `exact` when known, else
    /// `lower`, the least it can be.
    ///
    /// ```
    /// use aauth_signing::BodyHint;
    /// assert_eq!(BodyHint::from_size(Some(0), 0), BodyHint::Empty);
    /// assert_eq!(BodyHint::from_size(Some(12), 12), BodyHint::NonEmpty);
    /// assert_eq!(BodyHint::from_size(None, 0), BodyHint::Unknown);
    /// ```
    #[must_use]
    pub fn from_size(exact: Option<u64>, lower: u64) -> Self {
        match exact {
            Some(0) => Self::Empty,
            Some(_) => Self::NonEmpty,
            None if lower > 0 => Self::NonEmpty,
            None => Self::Unknown,
        }
    }
}

/// A request whose head verified ([`Verifier::verify_head`]) and whose body, coverage of
/// it, revocation and replay are still to check ([`Verifier::verify_body`]).
#[derive(Debug)]
#[must_use = "the request is not verified until its body is"]
pub struct HeadVerified {
    verified: VerifiedRequest,
    digest: Option<String>,
    /// Whether the coverage a body needs was checked with the head.
    body_covered: bool,
}

impl HeadVerified {
    /// The request as far as it verified: the key and who holds it are known, but a
    /// revoked token or a replay is not yet refused.
    #[must_use]
    pub fn request(&self) -> &VerifiedRequest {
        &self.verified
    }
}

/// Decides, from the `Signature-Key` member alone and before any key is looked up,
/// whether a verifier resolves that signer at all: a server that takes requests only from
/// the parties it trusts says so here, so that a stranger's request costs no fetch of the
/// stranger's keys.
///
/// ```
/// use aauth_headers::Scheme;
/// use aauth_signing::{SignerGate, VerifyError};
/// let only_ps = |s: &Scheme| match s {
///     Scheme::JwksUri { id, .. } if id == "https://ps.example" => Ok(()),
///     other => Err(VerifyError::SignerNotAdmitted { signer: other.name().to_owned() }),
/// };
/// let jwks_uri = |id: &str| Scheme::JwksUri { id: id.into(), dwk: "aauth-person.json".into(), kid: "k".into() };
/// assert!(only_ps.check(&jwks_uri("https://ps.example")).is_ok());
/// assert!(only_ps.check(&jwks_uri("https://evil.example")).is_err());
/// ```
pub trait SignerGate: Send + Sync {
    /// `Ok` to go on and resolve the key; an error refuses the request as it stands.
    ///
    /// # Errors
    ///
    /// The refusal, usually [`VerifyError::SignerNotAdmitted`].
    fn check(&self, scheme: &Scheme) -> Result<(), VerifyError>;
}

impl<F> SignerGate for F
where
    F: Fn(&Scheme) -> Result<(), VerifyError> + Send + Sync,
{
    fn check(&self, scheme: &Scheme) -> Result<(), VerifyError> {
        self(scheme)
    }
}

/// A [`SignerGate`] for servers whose callers sign under the `jwks_uri` scheme: a signer
/// is admitted when `admit(id, dwk)` says so; any other scheme, and any other signer, is
/// [`VerifyError::SignerNotAdmitted`] (naming the signer, cut to 200 characters).
///
/// ```
/// use aauth_headers::Scheme;
/// use aauth_signing::{SignerGate, jwks_uri_signers};
/// let gate = jwks_uri_signers(|id, dwk| id == "https://ps.example" && dwk == "aauth-person.json");
/// let jwks_uri = |id: &str| Scheme::JwksUri { id: id.into(), dwk: "aauth-person.json".into(), kid: "k".into() };
/// assert!(gate.check(&jwks_uri("https://ps.example")).is_ok());
/// assert!(gate.check(&jwks_uri("https://evil.example")).is_err());
/// ```
pub fn jwks_uri_signers(
    admit: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
) -> Arc<dyn SignerGate> {
    Arc::new(move |scheme: &Scheme| match scheme {
        Scheme::JwksUri { id, dwk, .. } if admit(id, dwk) => Ok(()),
        Scheme::JwksUri { id, .. } => Err(VerifyError::SignerNotAdmitted {
            signer: id.chars().take(200).collect(),
        }),
        other => Err(VerifyError::SignerNotAdmitted {
            signer: other.name().to_owned(),
        }),
    })
}

/// A verifier: a policy, a key resolver, and optionally a gate on signers, a revocation
/// list and a replay check.
#[derive(Clone)]
pub struct Verifier {
    policy: VerifyPolicy,
    resolver: Arc<dyn KeyResolver>,
    gate: Option<Arc<dyn SignerGate>>,
    revocations: Option<Arc<dyn RevocationList>>,
    replay: Option<ReplayGuard>,
    /// Set only with `revocations` and `replay` both over it
    /// ([`Verifier::revocations_and_replay`]); setting either alone clears it.
    joint: Option<Arc<dyn RevocationReplayStore>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .field("revocations", &self.revocations.is_some())
            .field("replay", &self.replay)
            .field("joint", &self.joint.is_some())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with `policy`, resolving keys through `resolver`.
    #[must_use]
    pub fn new(policy: VerifyPolicy, resolver: Arc<dyn KeyResolver>) -> Self {
        Self {
            policy,
            resolver,
            gate: None,
            revocations: None,
            replay: None,
            joint: None,
        }
    }

    /// Resolves only the signers `gate` admits, checked before any key is looked up.
    #[must_use]
    pub fn gate(mut self, gate: Arc<dyn SignerGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Refuses a request it already accepted ([`ReplayGuard`]): checked last, after the
    /// signature, the token and its revocation verified. Every role's verifier has one
    /// by default; a bare `Verifier` has none until given one.
    #[must_use]
    pub fn replay(mut self, guard: ReplayGuard) -> Self {
        self.replay = Some(guard);
        self.joint = None;
        self
    }

    /// Drops the replay check.
    #[must_use]
    pub fn without_replay(mut self) -> Self {
        self.replay = None;
        self.joint = None;
        self
    }

    /// Whether a replay check is configured.
    #[must_use]
    pub fn checks_replay(&self) -> bool {
        self.replay.is_some()
    }

    /// Refuses tokens in `Signature-Key` that `list` says are revoked (`revoked_jwt`).
    #[must_use]
    pub fn revocations(mut self, list: Arc<dyn RevocationList>) -> Self {
        self.revocations = Some(list);
        self.joint = None;
        self
    }

    /// Checks revocations against `store` and records state-changing requests in it
    /// ([`Verifier::revocations`] and [`Verifier::replay`] over one store), asking it
    /// both questions of a token-bearing state-changing request in one step
    /// ([`RevocationReplayStore::first_use_unrevoked`]): one round trip to a shared
    /// store instead of two. A request without a token, or a safe one, asks it one
    /// question as before. A later [`Verifier::revocations`] or [`Verifier::replay`]
    /// replaces its half and asks the two apart again.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use aauth_keys::time::UnixTime;
    /// use aauth_signing::{
    ///     MemoryReplayStore, ReplayStore, ReplayStoreError, ReplayUse, RevocationList,
    ///     RevocationReplayStore, SchemeResolver, Verifier, VerifyPolicy,
    /// };
    /// use aauth_tokens::ServerId;
    ///
    /// struct Both(MemoryReplayStore);
    /// #[async_trait::async_trait]
    /// impl RevocationList for Both {
    ///     async fn is_revoked(&self, _: &ServerId, _: &str) -> Result<bool, String> {
    ///         Ok(false)
    ///     }
    /// }
    /// #[async_trait::async_trait]
    /// impl ReplayStore for Both {
    ///     async fn first_use(&self, e: &ReplayUse<'_>, now: UnixTime) -> Result<bool, ReplayStoreError> {
    ///         self.0.first_use(e, now).await
    ///     }
    /// }
    /// impl RevocationReplayStore for Both {}
    ///
    /// let policy = VerifyPolicy::for_server(&ServerId::parse("https://resource.example").unwrap());
    /// let verifier = Verifier::new(policy, Arc::new(SchemeResolver::new().hwk()))
    ///     .revocations_and_replay(Arc::new(Both(MemoryReplayStore::new(1000))));
    /// assert!(verifier.checks_replay());
    /// ```
    #[must_use]
    pub fn revocations_and_replay(mut self, store: Arc<dyn RevocationReplayStore>) -> Self {
        self.revocations = Some(Arc::clone(&store) as Arc<dyn RevocationList>);
        self.replay = Some(ReplayGuard::new(Arc::clone(&store) as Arc<dyn ReplayStore>));
        self.joint = Some(store);
        self
    }

    /// The same verifier under `policy`.
    #[must_use]
    pub fn with_policy(mut self, policy: VerifyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The same verifier answering to `source` (other names, or behind a proxy).
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.policy = self.policy.authority(source);
        self
    }

    /// The policy (for the response headers of an error).
    #[must_use]
    pub fn policy(&self) -> &VerifyPolicy {
        &self.policy
    }

    /// Verifies a request: [`prepare`], the signer gate, resolve the key,
    /// [`Prepared::finish`], then the revocation check, then the replay check.
    ///
    /// # Errors
    ///
    /// The first failing check as a [`VerifyError`].
    pub async fn verify(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedRequest, VerifyError> {
        let prepared = prepare(parts, body, &self.policy, now)?;
        let resolved = self.resolve(&prepared, now).await?;
        let verified = prepared.finish(resolved)?;
        self.record(parts, verified, now).await
    }

    /// Verifies a request's head before its body is read: [`prepare`] (the coverage a
    /// body needs required when `body` says there is one), the signer gate, the key, the
    /// signature. What needs the body, and what records the request, waits for
    /// [`Verifier::verify_body`]: a server that must read a body whole to check its
    /// `Content-Digest` then reads only the bodies of requests whose signer it resolved
    /// and whose signature verified, and a stranger's cannot fill its memory.
    ///
    /// Both halves together check what [`Verifier::verify`] checks, in its order; a
    /// request refused by one is refused by the other with the same error, but for
    /// missing body coverage on a body the head did not announce
    /// ([`BodyHint::Unknown`]), which is refused after the signature instead of before.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use std::sync::Arc;
    /// use aauth_keys::{PrivateKey, time::UnixTime};
    /// use aauth_signing::{BodyHint, SchemeResolver, Verifier, VerifyPolicy, hwk_scheme, sign_request};
    /// use aauth_tokens::ServerId;
    ///
    /// let key = PrivateKey::ed25519_from_seed(&[7; 32]);
    /// let now = UnixTime(1_800_000_000);
    /// let body = br#"{"n":1}"#;
    /// let mut req = http::Request::post("https://resource.example/items")
    ///     .header("content-type", "application/json")
    ///     .body(body.to_vec())?;
    /// sign_request(&mut req, &key, &hwk_scheme(&key.public_key()), now)?;
    /// let (parts, body) = req.into_parts();
    ///
    /// let policy = VerifyPolicy::for_server(&ServerId::parse("https://resource.example")?)
    ///     .accept_schemes(&["hwk"]);
    /// let verifier = Verifier::new(policy, Arc::new(SchemeResolver::new().hwk()));
    /// let head = verifier.verify_head(&parts, BodyHint::NonEmpty, now).await?;
    /// // … only now read the body …
    /// let verified = verifier.verify_body(head, &parts, &body, now).await?;
    /// assert_eq!(verified.key.thumbprint(), key.public_key().thumbprint());
    /// // A body other than the one signed fails its digest.
    /// let head = verifier.verify_head(&parts, BodyHint::NonEmpty, now).await?;
    /// assert!(verifier.verify_body(head, &parts, b"{}", now).await.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The first failing check of the head as a [`VerifyError`].
    pub async fn verify_head(
        &self,
        parts: &Parts,
        body: BodyHint,
        now: UnixTime,
    ) -> Result<HeadVerified, VerifyError> {
        let announced = body == BodyHint::NonEmpty;
        let prepared = prepare_with(parts, &[], announced, &self.policy, now)?;
        let resolved = self.resolve(&prepared, now).await?;
        let (verified, digest, _) = prepared.signature_only(resolved)?;
        Ok(HeadVerified {
            verified,
            digest,
            body_covered: announced,
        })
    }

    /// Finishes what [`Verifier::verify_head`] began, with the body read: its coverage
    /// (when the head did not announce it), its `Content-Digest`, the `created` window
    /// again at `now` (the time the body was read), then the revocation check and the
    /// replay check, as [`Verifier::verify`] does. Give it the head of the same request,
    /// verified by this verifier.
    ///
    /// The `created` window is checked again on purpose. The replay store keeps a
    /// signature only as long as the window, so a captured request whose head is sent in
    /// time and whose body trickles in after the window has closed would otherwise be
    /// recorded afresh and admitted a second time. The price is paid by slow uploads: a
    /// body that has not arrived whole within the window of the signature's `created`
    /// ([`DEFAULT_WINDOW`], 60 s, less the client's clock skew) is refused after it was
    /// sent, with [`VerifyError::CreatedTooOld`] (`invalid_signature`). A resource whose
    /// clients upload more slowly widens the window of the routes that take those
    /// uploads ([`DangerousVerifyPolicy::widen_window`]; in aauth-resource,
    /// `RoutePolicy::dangerous().widen_window(..)`) and advertises it as its
    /// `signature_window`; a captured request then stays replayable, and its replay entry
    /// kept, for as long.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use aauth_keys::{PrivateKey, time::UnixTime};
    /// use aauth_signing::{BodyHint, SchemeResolver, Verifier, VerifyError, VerifyPolicy, hwk_scheme, sign_request};
    /// use aauth_tokens::ServerId;
    ///
    /// let key = PrivateKey::ed25519_from_seed(&[7; 32]);
    /// let signed = UnixTime(1_800_000_000);
    /// let mut req = http::Request::put("https://resource.example/upload")
    ///     .header("content-type", "application/octet-stream")
    ///     .body(vec![0u8; 1024])?;
    /// sign_request(&mut req, &key, &hwk_scheme(&key.public_key()), signed)?;
    /// let (parts, body) = req.into_parts();
    ///
    /// let mut policy = VerifyPolicy::for_server(&ServerId::parse("https://resource.example")?)
    ///     .accept_schemes(&["hwk"]);
    /// let verifier = Verifier::new(policy.clone(), Arc::new(SchemeResolver::new().hwk()));
    /// // The head in time, the body whole 90 s after `created`: past the 60 s window.
    /// let head = verifier.verify_head(&parts, BodyHint::NonEmpty, signed).await?;
    /// let late = UnixTime(signed.0 + 90);
    /// let e = verifier.verify_body(head, &parts, &body, late).await.unwrap_err();
    /// assert!(matches!(e, VerifyError::CreatedTooOld { .. }));
    ///
    /// // A route for slow uploads, with a window that covers them.
    /// policy.dangerous().widen_window(Duration::from_secs(300));
    /// let verifier = verifier.with_policy(policy);
    /// let head = verifier.verify_head(&parts, BodyHint::NonEmpty, signed).await?;
    /// verifier.verify_body(head, &parts, &body, late).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The first failing check as a [`VerifyError`].
    pub async fn verify_body(
        &self,
        head: HeadVerified,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedRequest, VerifyError> {
        let HeadVerified {
            verified,
            digest,
            body_covered,
        } = head;
        if !body.is_empty() && !body_covered {
            let required = self.policy.required_for(true);
            if required.iter().any(|r| !verified.params.covers(r)) {
                return Err(VerifyError::MissingComponents { required });
            }
        }
        if let Some(d) = &digest {
            digest::check(d, body, &self.policy.required_for(!body.is_empty()))?;
        }
        // The window again, at the time of the replay check: the replay store keeps a
        // signature only until its window closes, so one whose head came in time and
        // whose body came after that would otherwise be recorded afresh (a replay sent
        // slowly).
        check_created(&verified.params, &self.policy, now)?;
        self.record(parts, verified, now).await
    }

    /// The signer gate, then the key of a prepared request.
    async fn resolve(
        &self,
        prepared: &Prepared<'_>,
        now: UnixTime,
    ) -> Result<ResolvedKey, VerifyError> {
        if let Some(gate) = &self.gate {
            gate.check(prepared.scheme())?;
        }
        let ctx = ResolveContext::new(now, prepared.label());
        self.resolver.resolve(prepared.scheme(), &ctx).await
    }

    /// The revocation check, then the replay check, of a request whose signature (and
    /// body) verified.
    async fn record(
        &self,
        parts: &Parts,
        verified: VerifiedRequest,
        now: UnixTime,
    ) -> Result<VerifiedRequest, VerifyError> {
        let replayed = self.replay.as_ref().filter(|g| g.applies_to(&parts.method));
        if let (Some(joint), Some(_), KeyIdentity::Token(token)) =
            (&self.joint, replayed, &verified.identity)
        {
            // Both checks in one step (one round trip to a shared store).
            ReplayGuard::record_unrevoked(
                joint.as_ref(),
                token,
                &verified,
                self.policy.window,
                now,
            )
            .await?;
            return Ok(verified);
        }
        if let (Some(list), KeyIdentity::Token(token)) = (&self.revocations, &verified.identity) {
            let (iss, jti) = token.iss_jti();
            match list.is_revoked(iss, jti).await {
                Ok(false) => {}
                Ok(true) => {
                    return Err(VerifyError::Revoked {
                        token_type: token.token_type(),
                    });
                }
                Err(reason) => return Err(VerifyError::Unavailable { reason }),
            }
        }
        if let Some(guard) = &self.replay {
            guard
                .record(&parts.method, &verified, self.policy.window, now)
                .await?;
        }
        Ok(verified)
    }
}
