//! The four AAuth metadata documents (draft -11 §Metadata Documents), validated on parse.
//!
//! Every document is read through one private wire struct holding every member any of
//! them defines, so a duplicated member is refused whatever the document, members this
//! version does not know are ignored, and each type then takes and checks its own.
//!
//! Strict where the flow depends on it, lenient elsewhere: `issuer`, `jwks_uri` and the
//! required endpoints must be right or the document is refused; an optional member that
//! is present but invalid (of the wrong JSON type, an empty array, a URL this profile
//! does not take, a `signature_window` out of range) is left out and reported in
//! [`CommonMetadata::ignored`], so that one odd presentational member never makes a
//! server's keys undiscoverable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aauth_tokens::ServerId;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::HttpsUrl;

/// The largest metadata document accepted, in bytes.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// Why a metadata document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Not a JSON object of the expected shape (including a duplicated member or a
    /// member of the wrong JSON type).
    #[error("metadata is not valid JSON for this document: {reason}")]
    Malformed {
        /// The parser's message.
        reason: String,
    },
    /// The document is larger than [`MAX_DOCUMENT_LEN`].
    #[error("metadata document is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// No `issuer` member (`issuer_missing`).
    #[error("metadata has no issuer member")]
    IssuerMissing,
    /// `issuer` is not the identifier the document was fetched for (`issuer_mismatch`).
    #[error("metadata issuer {found:?} is not {expected:?}")]
    IssuerMismatch {
        /// The identifier the document was fetched for.
        expected: String,
        /// The `issuer` it holds.
        found: String,
    },
    /// A required member is absent.
    #[error("metadata member {member} is required")]
    Missing {
        /// The member.
        member: &'static str,
    },
    /// A member's value breaks a rule.
    #[error("metadata member {member} is invalid: {reason}")]
    Invalid {
        /// The member.
        member: &'static str,
        /// The rule.
        reason: String,
    },
}

impl MetadataError {
    /// The error code a verifier reports for this failure: `issuer_missing`,
    /// `issuer_mismatch`, or `invalid_metadata`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::IssuerMissing => "issuer_missing",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            _ => "invalid_metadata",
        }
    }
}

/// Every member of every document. Private: each document type takes its own.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accept_signature_algs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logo_dark_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    documentation_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy_uri: Option<String>,
    // agent provider
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callback_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    localhost_callback_allowed: Option<bool>,
    // person server and access server
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    person_token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mission_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permission_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interaction_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mission_control_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scopes_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claims_supported: Option<Vec<String>>,
    // resource
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope_descriptions: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    additional_signature_components: Option<Vec<String>>,
    /// Optional members left out, and why.
    #[serde(skip)]
    ignored: Vec<IgnoredMember>,
}

/// The members whose JSON type is checked strictly: a document without them, or with
/// them of the wrong type, is refused (every other member is optional).
const STRICT: [&str; 4] = [
    "issuer",
    "jwks_uri",
    "auth_token_endpoint",
    "person_token_endpoint",
];

/// Every member this version knows (the fields of [`Wire`]): a duplicate of one of them
/// is refused; members it does not know are ignored, duplicated or not.
const KNOWN: [&str; 28] = [
    "issuer",
    "jwks_uri",
    "accept_signature_algs",
    "name",
    "description",
    "logo_uri",
    "logo_dark_uri",
    "documentation_uri",
    "tos_uri",
    "policy_uri",
    "callback_endpoint",
    "event_endpoint",
    "localhost_callback_allowed",
    "auth_token_endpoint",
    "person_token_endpoint",
    "mission_endpoint",
    "permission_endpoint",
    "audit_endpoint",
    "interaction_endpoint",
    "mission_control_endpoint",
    "revocation_endpoint",
    "scopes_supported",
    "claims_supported",
    "access_mode",
    "authorization_endpoint",
    "scope_descriptions",
    "signature_window",
    "additional_signature_components",
];

/// An optional member that was present but invalid: left out of the document and
/// reported here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IgnoredMember {
    /// The member's name.
    pub member: String,
    /// Why it was left out.
    pub reason: String,
}

impl IgnoredMember {
    fn new(member: &str, reason: impl Into<String>) -> Self {
        Self {
            member: member.chars().take(100).collect(),
            reason: reason.into(),
        }
    }
}

/// The members of a JSON object in document order, duplicates kept (so that they can be
/// refused: a member given twice is read differently by different parsers).
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Each)
    }
}

impl Wire {
    fn parse(json: &[u8]) -> Result<Self, MetadataError> {
        if json.len() > MAX_DOCUMENT_LEN {
            return Err(MetadataError::TooLarge {
                limit: MAX_DOCUMENT_LEN,
            });
        }
        // serde's derive would also read a JSON array positionally; a document is an object.
        if json.trim_ascii_start().first() != Some(&b'{') {
            return Err(MetadataError::Malformed {
                reason: "a metadata document must be a JSON object".to_owned(),
            });
        }
        let malformed = |e: serde_json::Error| MetadataError::Malformed {
            reason: e.to_string(),
        };
        let Members(members) = serde_json::from_slice(json).map_err(malformed)?;
        let mut seen = BTreeSet::new();
        let mut kept = serde_json::Map::new();
        let mut ignored = Vec::new();
        for (name, value) in members {
            if !KNOWN.contains(&name.as_str()) {
                continue;
            }
            if !seen.insert(name.clone()) {
                return Err(MetadataError::Malformed {
                    reason: format!(
                        "duplicate member {:?}",
                        name.chars().take(100).collect::<String>()
                    ),
                });
            }
            if !STRICT.contains(&name.as_str()) {
                // Read alone: a member of the wrong type is left out, not fatal.
                let alone = serde_json::Value::Object(serde_json::Map::from_iter([(
                    name.clone(),
                    value.clone(),
                )]));
                if let Err(e) = serde_json::from_value::<Self>(alone) {
                    ignored.push(IgnoredMember::new(&name, e.to_string()));
                    continue;
                }
            }
            kept.insert(name, value);
        }
        let mut w: Self =
            serde_json::from_value(serde_json::Value::Object(kept)).map_err(malformed)?;
        w.ignored = ignored;
        Ok(w)
    }

    fn issuer(&self, expected: Option<&ServerId>) -> Result<ServerId, MetadataError> {
        let found = self.issuer.as_deref().ok_or(MetadataError::IssuerMissing)?;
        if let Some(expected) = expected
            && found != expected.as_str()
        {
            return Err(MetadataError::IssuerMismatch {
                expected: expected.as_str().to_owned(),
                found: found.chars().take(200).collect(),
            });
        }
        ServerId::parse(found).map_err(|e| MetadataError::Invalid {
            member: "issuer",
            reason: e.to_string(),
        })
    }
}

fn url(member: &'static str, v: Option<&String>) -> Result<Option<HttpsUrl>, MetadataError> {
    v.map(|s| HttpsUrl::parse(s))
        .transpose()
        .map_err(|e| MetadataError::Invalid {
            member,
            reason: e.reason.to_owned(),
        })
}

fn endpoint(member: &'static str, v: Option<&String>) -> Result<Option<HttpsUrl>, MetadataError> {
    v.map(|s| HttpsUrl::endpoint(s))
        .transpose()
        .map_err(|e| MetadataError::Invalid {
            member,
            reason: e.reason.to_owned(),
        })
}

fn required_endpoint(member: &'static str, v: Option<&String>) -> Result<HttpsUrl, MetadataError> {
    required(member, endpoint(member, v)?)
}

fn required<T>(member: &'static str, v: Option<T>) -> Result<T, MetadataError> {
    v.ok_or(MetadataError::Missing { member })
}

fn strings(
    member: &'static str,
    v: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, MetadataError> {
    if let Some(list) = &v {
        if list.is_empty() {
            return Err(MetadataError::Invalid {
                member,
                reason: "must not be an empty array".to_owned(),
            });
        }
        if list.iter().any(String::is_empty) {
            return Err(MetadataError::Invalid {
                member,
                reason: "must not contain an empty string".to_owned(),
            });
        }
    }
    Ok(v)
}

/// An optional member's checked value: `None`, reported in `ignored`, when the check
/// refused it.
fn lenient<T>(
    ignored: &mut Vec<IgnoredMember>,
    member: &'static str,
    checked: Result<Option<T>, MetadataError>,
) -> Option<T> {
    checked.unwrap_or_else(|e| {
        ignored.push(IgnoredMember::new(member, e.to_string()));
        None
    })
}

/// An optional URL member: `None`, reported in `ignored`, when it is not one.
fn optional_url(
    ignored: &mut Vec<IgnoredMember>,
    member: &'static str,
    v: Option<&String>,
) -> Option<HttpsUrl> {
    lenient(ignored, member, url(member, v))
}

/// An optional endpoint member: `None`, reported in `ignored`, when it is not one.
fn optional_endpoint(
    ignored: &mut Vec<IgnoredMember>,
    member: &'static str,
    v: Option<&String>,
) -> Option<HttpsUrl> {
    lenient(ignored, member, endpoint(member, v))
}

/// An optional list of strings: `None`, reported in `ignored`, when it breaks a rule.
fn optional_strings(
    ignored: &mut Vec<IgnoredMember>,
    member: &'static str,
    v: Option<Vec<String>>,
) -> Option<Vec<String>> {
    lenient(ignored, member, strings(member, v))
}

fn s(v: Option<&HttpsUrl>) -> Option<String> {
    v.map(|u| u.as_str().to_owned())
}

/// The members every metadata document has.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommonMetadata {
    /// The server identifier; equal, byte for byte, to the identifier the document was
    /// fetched for.
    pub issuer: ServerId,
    /// Where the server's signing keys are published.
    pub jwks_uri: Option<HttpsUrl>,
    /// Exactly the signature algorithms the server accepts, if it says.
    pub accept_signature_algs: Option<Vec<String>>,
    /// Display name.
    pub name: Option<String>,
    /// Description (Markdown; sanitize before rendering).
    pub description: Option<String>,
    /// Logo.
    pub logo_uri: Option<HttpsUrl>,
    /// Logo for dark backgrounds.
    pub logo_dark_uri: Option<HttpsUrl>,
    /// Human documentation.
    pub documentation_uri: Option<HttpsUrl>,
    /// Terms of service.
    pub tos_uri: Option<HttpsUrl>,
    /// Privacy policy.
    pub policy_uri: Option<HttpsUrl>,
    /// Optional members that were present but invalid, left out of this document (empty
    /// for a document built here, and never written out).
    pub ignored: Vec<IgnoredMember>,
}

impl CommonMetadata {
    /// Says that the server's verifier accepts exactly `algs` (`accept_signature_algs`,
    /// draft -11 §Common Metadata: the out-of-band twin of `Accept-Signature-Alg`).
    ///
    /// ```
    /// use aauth_keys::Algorithm;
    /// use aauth_metadata::CommonMetadata;
    /// use aauth_tokens::ServerId;
    /// let mut c = CommonMetadata::new(ServerId::parse("https://ps.example")?, None);
    /// c.accepts(&Algorithm::ALL);
    /// assert_eq!(c.accept_signature_algs.as_deref(), Some(&["Ed25519".to_owned(), "ES256".to_owned()][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accepts(&mut self, algs: &[aauth_keys::Algorithm]) {
        self.accept_signature_algs = Some(algs.iter().map(|a| a.as_str().to_owned()).collect());
    }

    /// Common members for `issuer`, with `jwks_uri`.
    #[must_use]
    pub fn new(issuer: ServerId, jwks_uri: Option<HttpsUrl>) -> Self {
        Self {
            issuer,
            jwks_uri,
            accept_signature_algs: None,
            name: None,
            description: None,
            logo_uri: None,
            logo_dark_uri: None,
            documentation_uri: None,
            tos_uri: None,
            policy_uri: None,
            ignored: Vec::new(),
        }
    }

    /// As [`Self::take`], for the documents whose `jwks_uri` is required.
    fn take_with_keys(w: &mut Wire, expected: Option<&ServerId>) -> Result<Self, MetadataError> {
        let common = Self::take(w, expected)?;
        required("jwks_uri", common.jwks_uri.as_ref())?;
        Ok(common)
    }

    fn take(w: &mut Wire, expected: Option<&ServerId>) -> Result<Self, MetadataError> {
        let issuer = w.issuer(expected)?;
        let jwks_uri = url("jwks_uri", w.jwks_uri.as_ref())?;
        let i = &mut w.ignored;
        let accept_signature_algs =
            optional_strings(i, "accept_signature_algs", w.accept_signature_algs.take());
        let logo_uri = optional_url(i, "logo_uri", w.logo_uri.as_ref());
        let logo_dark_uri = optional_url(i, "logo_dark_uri", w.logo_dark_uri.as_ref());
        let documentation_uri = optional_url(i, "documentation_uri", w.documentation_uri.as_ref());
        let tos_uri = optional_url(i, "tos_uri", w.tos_uri.as_ref());
        let policy_uri = optional_url(i, "policy_uri", w.policy_uri.as_ref());
        Ok(Self {
            issuer,
            jwks_uri,
            accept_signature_algs,
            name: w.name.take(),
            description: w.description.take(),
            logo_uri,
            logo_dark_uri,
            documentation_uri,
            tos_uri,
            policy_uri,
            // The document's own members are checked after these; `finish` adds theirs.
            ignored: Vec::new(),
        })
    }

    fn put(&self, w: &mut Wire) {
        w.issuer = Some(self.issuer.as_str().to_owned());
        w.jwks_uri = s(self.jwks_uri.as_ref());
        w.accept_signature_algs
            .clone_from(&self.accept_signature_algs);
        w.name.clone_from(&self.name);
        w.description.clone_from(&self.description);
        w.logo_uri = s(self.logo_uri.as_ref());
        w.logo_dark_uri = s(self.logo_dark_uri.as_ref());
        w.documentation_uri = s(self.documentation_uri.as_ref());
        w.tos_uri = s(self.tos_uri.as_ref());
        w.policy_uri = s(self.policy_uri.as_ref());
    }
}

mod sealed {
    #[expect(
        unnameable_types,
        reason = "the sealed-trait pattern: implementable only here"
    )]
    pub trait Sealed {}
}

/// A metadata document type: its well-known name, parse with validation, and serialization
/// for serving.
pub trait MetadataDocument: sealed::Sealed + Sized + Clone + fmt::Debug + Send + Sync {
    /// The `dwk` value naming this document: `{issuer}/.well-known/{DWK}`.
    const DWK: &'static str;

    /// Parses and validates a document, without the `issuer` comparison.
    ///
    /// # Errors
    ///
    /// [`MetadataError`].
    fn parse(json: &[u8]) -> Result<Self, MetadataError>;

    /// Parses a document fetched for `expected`: `issuer` must be present
    /// ([`MetadataError::IssuerMissing`]) and equal to `expected` byte for byte
    /// ([`MetadataError::IssuerMismatch`]), checked before anything else.
    ///
    /// # Errors
    ///
    /// [`MetadataError`].
    fn parse_for(json: &[u8], expected: &ServerId) -> Result<Self, MetadataError>;

    /// The members every document has.
    fn common(&self) -> &CommonMetadata;

    /// The document as JSON, for serving.
    fn to_json(&self) -> String;
}

macro_rules! document {
    ($t:ty, $dwk:literal) => {
        impl sealed::Sealed for $t {}
        impl MetadataDocument for $t {
            const DWK: &'static str = $dwk;

            fn parse(json: &[u8]) -> Result<Self, MetadataError> {
                Self::from_wire(Wire::parse(json)?, None)
            }

            fn parse_for(json: &[u8], expected: &ServerId) -> Result<Self, MetadataError> {
                Self::from_wire(Wire::parse(json)?, Some(expected))
            }

            fn common(&self) -> &CommonMetadata {
                &self.common
            }

            fn to_json(&self) -> String {
                let mut w = Wire::default();
                self.common.put(&mut w);
                self.put(&mut w);
                serde_json::to_string(&w).unwrap_or_default()
            }
        }
    };
}

/// An agent provider's document, `/.well-known/aauth-agent.json`.
///
/// ```
/// use aauth_metadata::{AgentProviderMetadata, MetadataDocument};
/// use aauth_tokens::ServerId;
/// let id = ServerId::parse("https://agent.example").unwrap();
/// let doc = AgentProviderMetadata::parse_for(
///     br#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json"}"#,
///     &id,
/// ).unwrap();
/// assert!(!doc.localhost_callback_allowed);
/// let other = ServerId::parse("https://evil.example").unwrap();
/// let err = AgentProviderMetadata::parse_for(doc.to_json().as_bytes(), &other).unwrap_err();
/// assert_eq!(err.code(), "issuer_mismatch");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentProviderMetadata {
    /// Common members; `jwks_uri` is required.
    pub common: CommonMetadata,
    /// Where the agent receives interaction callbacks.
    pub callback_endpoint: Option<HttpsUrl>,
    /// Where the provider receives events (AAuth Events).
    pub event_endpoint: Option<HttpsUrl>,
    /// Whether a localhost `callback` is permitted (default `false`).
    pub localhost_callback_allowed: bool,
}

impl AgentProviderMetadata {
    /// A document for `issuer` publishing keys at `jwks_uri`.
    #[must_use]
    pub fn new(issuer: ServerId, jwks_uri: HttpsUrl) -> Self {
        Self {
            common: CommonMetadata::new(issuer, Some(jwks_uri)),
            callback_endpoint: None,
            event_endpoint: None,
            localhost_callback_allowed: false,
        }
    }

    fn from_wire(mut w: Wire, expected: Option<&ServerId>) -> Result<Self, MetadataError> {
        let common = CommonMetadata::take_with_keys(&mut w, expected)?;
        let mut doc = Self {
            callback_endpoint: optional_endpoint(
                &mut w.ignored,
                "callback_endpoint",
                w.callback_endpoint.as_ref(),
            ),
            event_endpoint: optional_endpoint(
                &mut w.ignored,
                "event_endpoint",
                w.event_endpoint.as_ref(),
            ),
            localhost_callback_allowed: w.localhost_callback_allowed.unwrap_or(false),
            common,
        };
        doc.common.ignored = std::mem::take(&mut w.ignored);
        Ok(doc)
    }

    fn put(&self, w: &mut Wire) {
        w.callback_endpoint = s(self.callback_endpoint.as_ref());
        w.event_endpoint = s(self.event_endpoint.as_ref());
        w.localhost_callback_allowed = self.localhost_callback_allowed.then_some(true);
    }
}
document!(AgentProviderMetadata, "aauth-agent.json");

/// A Person Server's document, `/.well-known/aauth-person.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersonServerMetadata {
    /// Common members; `jwks_uri` is required.
    pub common: CommonMetadata,
    /// Where agents (and resources, for call chaining) obtain auth tokens.
    pub auth_token_endpoint: HttpsUrl,
    /// Where agents obtain person tokens.
    pub person_token_endpoint: HttpsUrl,
    /// Mission proposals.
    pub mission_endpoint: Option<HttpsUrl>,
    /// Permission requests.
    pub permission_endpoint: Option<HttpsUrl>,
    /// Audit records.
    pub audit_endpoint: Option<HttpsUrl>,
    /// User interaction.
    pub interaction_endpoint: Option<HttpsUrl>,
    /// Mission control (list, suspend, complete).
    pub mission_control_endpoint: Option<HttpsUrl>,
    /// Token revocation.
    pub revocation_endpoint: Option<HttpsUrl>,
    /// Scopes the server understands (recommended).
    pub scopes_supported: Option<Vec<String>>,
    /// Identity claims the server can release (recommended).
    pub claims_supported: Option<Vec<String>>,
}

impl PersonServerMetadata {
    /// A document for `issuer` with its two required endpoints.
    #[must_use]
    pub fn new(
        issuer: ServerId,
        jwks_uri: HttpsUrl,
        auth_token_endpoint: HttpsUrl,
        person_token_endpoint: HttpsUrl,
    ) -> Self {
        Self {
            common: CommonMetadata::new(issuer, Some(jwks_uri)),
            auth_token_endpoint,
            person_token_endpoint,
            mission_endpoint: None,
            permission_endpoint: None,
            audit_endpoint: None,
            interaction_endpoint: None,
            mission_control_endpoint: None,
            revocation_endpoint: None,
            scopes_supported: None,
            claims_supported: None,
        }
    }

    fn from_wire(mut w: Wire, expected: Option<&ServerId>) -> Result<Self, MetadataError> {
        let common = CommonMetadata::take_with_keys(&mut w, expected)?;
        let mut doc = Self {
            auth_token_endpoint: required_endpoint(
                "auth_token_endpoint",
                w.auth_token_endpoint.as_ref(),
            )?,
            person_token_endpoint: required_endpoint(
                "person_token_endpoint",
                w.person_token_endpoint.as_ref(),
            )?,
            mission_endpoint: optional_endpoint(
                &mut w.ignored,
                "mission_endpoint",
                w.mission_endpoint.as_ref(),
            ),
            permission_endpoint: optional_endpoint(
                &mut w.ignored,
                "permission_endpoint",
                w.permission_endpoint.as_ref(),
            ),
            audit_endpoint: optional_endpoint(
                &mut w.ignored,
                "audit_endpoint",
                w.audit_endpoint.as_ref(),
            ),
            interaction_endpoint: optional_endpoint(
                &mut w.ignored,
                "interaction_endpoint",
                w.interaction_endpoint.as_ref(),
            ),
            mission_control_endpoint: optional_endpoint(
                &mut w.ignored,
                "mission_control_endpoint",
                w.mission_control_endpoint.as_ref(),
            ),
            revocation_endpoint: optional_endpoint(
                &mut w.ignored,
                "revocation_endpoint",
                w.revocation_endpoint.as_ref(),
            ),
            scopes_supported: optional_strings(
                &mut w.ignored,
                "scopes_supported",
                w.scopes_supported.take(),
            ),
            claims_supported: optional_strings(
                &mut w.ignored,
                "claims_supported",
                w.claims_supported.take(),
            ),
            common,
        };
        doc.common.ignored = std::mem::take(&mut w.ignored);
        Ok(doc)
    }

    fn put(&self, w: &mut Wire) {
        w.auth_token_endpoint = s(Some(&self.auth_token_endpoint));
        w.person_token_endpoint = s(Some(&self.person_token_endpoint));
        w.mission_endpoint = s(self.mission_endpoint.as_ref());
        w.permission_endpoint = s(self.permission_endpoint.as_ref());
        w.audit_endpoint = s(self.audit_endpoint.as_ref());
        w.interaction_endpoint = s(self.interaction_endpoint.as_ref());
        w.mission_control_endpoint = s(self.mission_control_endpoint.as_ref());
        w.revocation_endpoint = s(self.revocation_endpoint.as_ref());
        w.scopes_supported.clone_from(&self.scopes_supported);
        w.claims_supported.clone_from(&self.claims_supported);
    }
}
document!(PersonServerMetadata, "aauth-person.json");

/// An Access Server's document, `/.well-known/aauth-access.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessServerMetadata {
    /// Common members; `jwks_uri` is required.
    pub common: CommonMetadata,
    /// Where Person Servers obtain auth tokens.
    pub auth_token_endpoint: HttpsUrl,
    /// Token revocation.
    pub revocation_endpoint: Option<HttpsUrl>,
}

impl AccessServerMetadata {
    /// A document for `issuer`.
    #[must_use]
    pub fn new(issuer: ServerId, jwks_uri: HttpsUrl, auth_token_endpoint: HttpsUrl) -> Self {
        Self {
            common: CommonMetadata::new(issuer, Some(jwks_uri)),
            auth_token_endpoint,
            revocation_endpoint: None,
        }
    }

    fn from_wire(mut w: Wire, expected: Option<&ServerId>) -> Result<Self, MetadataError> {
        let common = CommonMetadata::take_with_keys(&mut w, expected)?;
        let mut doc = Self {
            auth_token_endpoint: required_endpoint(
                "auth_token_endpoint",
                w.auth_token_endpoint.as_ref(),
            )?,
            revocation_endpoint: optional_endpoint(
                &mut w.ignored,
                "revocation_endpoint",
                w.revocation_endpoint.as_ref(),
            ),
            common,
        };
        doc.common.ignored = std::mem::take(&mut w.ignored);
        Ok(doc)
    }

    fn put(&self, w: &mut Wire) {
        w.auth_token_endpoint = s(Some(&self.auth_token_endpoint));
        w.revocation_endpoint = s(self.revocation_endpoint.as_ref());
    }
}
document!(AccessServerMetadata, "aauth-access.json");

/// How a resource says agents reach it (advisory; draft -11 §Access Modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[expect(clippy::enum_variant_names, reason = "the draft's names for the modes")]
pub enum AccessMode {
    /// `agent-token`: the agent token alone (the default).
    AgentToken,
    /// `person-token`: a person token.
    PersonToken,
    /// `session-token`: a session token from `AAuth-Access`.
    SessionToken,
    /// `auth-token`: an auth token from the Person Server.
    AuthToken,
}

impl AccessMode {
    /// The metadata value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentToken => "agent-token",
            Self::PersonToken => "person-token",
            Self::SessionToken => "session-token",
            Self::AuthToken => "auth-token",
        }
    }

    /// The mode a metadata value names; `None` for a value this version does not know,
    /// which the draft treats as no declaration.
    #[must_use]
    pub fn from_value(v: &str) -> Option<Self> {
        [
            Self::AgentToken,
            Self::PersonToken,
            Self::SessionToken,
            Self::AuthToken,
        ]
        .into_iter()
        .find(|m| m.as_str() == v)
    }
}

/// The default `signature_window`, in seconds.
pub const DEFAULT_SIGNATURE_WINDOW: u64 = 60;

/// A resource's document, `/.well-known/aauth-resource.json`.
///
/// ```
/// use aauth_metadata::{AccessMode, MetadataDocument, ResourceMetadata};
/// let doc = ResourceMetadata::parse(
///     br#"{"issuer":"https://resource.example","access_mode":"per-call"}"#,
/// ).unwrap();
/// assert_eq!(doc.access_mode, None); // an unknown mode is no declaration
/// assert_eq!(doc.signature_window, 60);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceMetadata {
    /// Common members; `jwks_uri` only if the resource issues resource tokens or makes
    /// signed calls.
    pub common: CommonMetadata,
    /// The declared access mode, if one this version knows was declared.
    pub access_mode: Option<AccessMode>,
    /// Where agents request authorization (resource tokens).
    pub authorization_endpoint: Option<HttpsUrl>,
    /// Scope → description (Markdown).
    pub scope_descriptions: Option<BTreeMap<String, String>>,
    /// The `created` window the resource enforces, in seconds (default 60).
    pub signature_window: u64,
    /// Components the resource requires beyond the mandatory ones.
    pub additional_signature_components: Vec<String>,
    /// Token revocation (recommended when person tokens are accepted).
    pub revocation_endpoint: Option<HttpsUrl>,
}

impl ResourceMetadata {
    /// A document for `issuer` with defaults.
    #[must_use]
    pub fn new(issuer: ServerId) -> Self {
        Self {
            common: CommonMetadata::new(issuer, None),
            access_mode: None,
            authorization_endpoint: None,
            scope_descriptions: None,
            signature_window: DEFAULT_SIGNATURE_WINDOW,
            additional_signature_components: Vec::new(),
            revocation_endpoint: None,
        }
    }

    fn from_wire(mut w: Wire, expected: Option<&ServerId>) -> Result<Self, MetadataError> {
        let common = CommonMetadata::take(&mut w, expected)?;
        let signature_window = match w.signature_window {
            Some(v) if v == 0 || v > 3600 => {
                w.ignored.push(IgnoredMember::new(
                    "signature_window",
                    "must be 1 to 3600 seconds",
                ));
                DEFAULT_SIGNATURE_WINDOW
            }
            v => v.unwrap_or(DEFAULT_SIGNATURE_WINDOW),
        };
        let mut components = w.additional_signature_components.take().unwrap_or_default(); // default: none declared
        if let Some(bad) = components.iter().find(|c| !is_component(c)) {
            w.ignored.push(IgnoredMember::new(
                "additional_signature_components",
                format!(
                    "{:?} is not a component identifier",
                    bad.chars().take(100).collect::<String>()
                ),
            ));
            components.clear();
        }
        let mut doc = Self {
            access_mode: w.access_mode.as_deref().and_then(AccessMode::from_value),
            authorization_endpoint: optional_endpoint(
                &mut w.ignored,
                "authorization_endpoint",
                w.authorization_endpoint.as_ref(),
            ),
            scope_descriptions: w.scope_descriptions.take(),
            signature_window,
            additional_signature_components: components,
            revocation_endpoint: optional_endpoint(
                &mut w.ignored,
                "revocation_endpoint",
                w.revocation_endpoint.as_ref(),
            ),
            common,
        };
        doc.common.ignored = std::mem::take(&mut w.ignored);
        Ok(doc)
    }

    fn put(&self, w: &mut Wire) {
        w.access_mode = self.access_mode.map(|m| m.as_str().to_owned());
        w.authorization_endpoint = s(self.authorization_endpoint.as_ref());
        w.scope_descriptions.clone_from(&self.scope_descriptions);
        w.signature_window =
            (self.signature_window != DEFAULT_SIGNATURE_WINDOW).then_some(self.signature_window);
        w.additional_signature_components = (!self.additional_signature_components.is_empty())
            .then(|| self.additional_signature_components.clone());
        w.revocation_endpoint = s(self.revocation_endpoint.as_ref());
    }
}
document!(ResourceMetadata, "aauth-resource.json");

/// A component identifier as RFC 9421 names them: a lowercase field name or a derived
/// component (`@…`).
fn is_component(c: &str) -> bool {
    let name = c.strip_prefix('@').unwrap_or(c);
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// What key discovery needs from any metadata document: `issuer` (checked) and `jwks_uri`.
/// Documents of the four AAuth kinds are fully validated; another `dwk` (the `jwks_uri`
/// scheme allows any) is read for these two members only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyDiscovery {
    /// The checked issuer.
    pub issuer: ServerId,
    /// Where its keys are.
    pub jwks_uri: HttpsUrl,
}

impl KeyDiscovery {
    /// Reads `issuer` and `jwks_uri` from the document `dwk` fetched for `expected`.
    ///
    /// # Errors
    ///
    /// [`MetadataError`]; [`MetadataError::Missing`] when there is no `jwks_uri`.
    pub fn parse_for(dwk: &str, json: &[u8], expected: &ServerId) -> Result<Self, MetadataError> {
        let common = match dwk {
            AgentProviderMetadata::DWK => AgentProviderMetadata::parse_for(json, expected)?.common,
            PersonServerMetadata::DWK => PersonServerMetadata::parse_for(json, expected)?.common,
            AccessServerMetadata::DWK => AccessServerMetadata::parse_for(json, expected)?.common,
            ResourceMetadata::DWK => ResourceMetadata::parse_for(json, expected)?.common,
            _ => {
                let mut w = Wire::parse(json)?;
                CommonMetadata::take(&mut w, Some(expected))?
            }
        };
        Ok(Self {
            issuer: common.issuer,
            jwks_uri: required("jwks_uri", common.jwks_uri)?,
        })
    }
}
