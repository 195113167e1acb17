//! Identifiers (draft -11 §11.1, §5.2): server identifiers and agent identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifierError {
    /// Not a server identifier: `https`, lowercase host only (A-labels), no port, path,
    /// query, fragment, userinfo or trailing slash.
    #[error("{value:?} is not a server identifier: {reason}")]
    NotServerId {
        /// The refused value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Not an agent identifier `aauth:local@domain`.
    #[error("{value:?} is not an agent identifier: {reason}")]
    NotAgentId {
        /// The refused value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

/// Checks a DNS host name in the form server identifiers require: lowercase LDH labels of
/// 1–63 characters, no leading or trailing hyphen, at most 253 characters.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty host");
    }
    if host.len() > 253 {
        return Err("host longer than 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("label starts or ends with a hyphen");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("host must be lowercase ASCII letters, digits, hyphens and dots");
        }
    }
    Ok(())
}

/// A server identifier: the `issuer` of a metadata document and the `iss` of the tokens it
/// mints (draft -11 §11.1.1). Compared by exact string equality.
///
/// ```
/// use aauth_tokens::ServerId;
/// assert!(ServerId::parse("https://agent.example").is_ok());
/// assert!(ServerId::parse("https://xn--nxasmq6b.example").is_ok());
/// for bad in ["http://agent.example", "https://Agent.Example", "https://agent.example:8443",
///             "https://agent.example/v1", "https://agent.example/", "https://user@agent.example"] {
///     assert!(ServerId::parse(bad).is_err(), "{bad}");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(String);

impl ServerId {
    /// Validates a server identifier.
    ///
    /// # Errors
    ///
    /// [`IdentifierError::NotServerId`] naming the rule that failed.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        let fail = |reason| IdentifierError::NotServerId {
            value: value.to_owned(),
            reason,
        };
        let host = value
            .strip_prefix("https://")
            .ok_or_else(|| fail("scheme must be https"))?;
        if let Some(c) = host
            .chars()
            .find(|c| matches!(c, '/' | '?' | '#' | '@' | ':'))
        {
            return Err(fail(match c {
                '/' => "must not have a path or trailing slash",
                '?' => "must not have a query",
                '#' => "must not have a fragment",
                '@' => "must not have userinfo",
                _ => "must not have a port",
            }));
        }
        check_host(host).map_err(fail)?;
        Ok(Self(value.to_owned()))
    }

    /// The identifier.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host name.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.0["https://".len()..]
    }

    /// `{self}/.well-known/{document}`.
    #[must_use]
    pub fn well_known(&self, document: &str) -> String {
        format!("{}/.well-known/{document}", self.0)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ServerId {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, IdentifierError> {
        Self::parse(s)
    }
}

impl Serialize for ServerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// An agent identifier `aauth:local@domain` (draft -11 §5.2). `local` may hold
/// `A-Z a-z 0-9 - _ + .`; `+` separates a sub-agent's discriminator from its parent's
/// local part (one level only). Compared exactly, never case-folded.
///
/// Parties must not make decisions from the shape of `local`; the `parent_agent` claim is
/// what marks a sub-agent.
///
/// ```
/// use aauth_tokens::AgentId;
/// let id = AgentId::parse("aauth:planner.7f3c+search1@vendor.example")?;
/// assert_eq!(id.local(), "planner.7f3c+search1");
/// assert_eq!(id.domain(), "vendor.example");
/// assert!(AgentId::parse("aauth:Agent@agent.example").is_ok()); // upper case allowed
/// assert!(AgentId::parse("aauth:+worker@agent.example").is_err());
/// # Ok::<(), aauth_tokens::IdentifierError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId {
    value: String,
    at: usize,
}

impl AgentId {
    /// Validates an agent identifier.
    ///
    /// # Errors
    ///
    /// [`IdentifierError::NotAgentId`] naming the rule that failed.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        let fail = |reason| IdentifierError::NotAgentId {
            value: value.to_owned(),
            reason,
        };
        let rest = value
            .strip_prefix("aauth:")
            .ok_or_else(|| fail("must start with aauth:"))?;
        let (local, domain) = rest.split_once('@').ok_or_else(|| fail("no @"))?;
        if local.is_empty() {
            return Err(fail("empty local part"));
        }
        if local.len() > 255 {
            return Err(fail("local part longer than 255 characters"));
        }
        if !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
        {
            return Err(fail("local part holds a character outside A-Za-z0-9-_+."));
        }
        match local.matches('+').count() {
            0 => {}
            1 if !local.starts_with('+') && !local.ends_with('+') => {}
            1 => return Err(fail("+ must separate a non-empty parent and discriminator")),
            _ => return Err(fail("sub-agents are one level deep: at most one +")),
        }
        check_host(domain).map_err(fail)?;
        Ok(Self {
            value: value.to_owned(),
            at: "aauth:".len() + local.len(),
        })
    }

    /// The identifier.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The local part.
    #[must_use]
    pub fn local(&self) -> &str {
        &self.value["aauth:".len()..self.at]
    }

    /// The domain (the agent provider's host).
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.value[self.at + 1..]
    }

    /// Whether `self` is named as a sub-agent of `parent`
    /// (`<parent local>+<discriminator>@<same domain>`). For issuers checking what they
    /// mint; verifiers rely on the `parent_agent` claim instead.
    #[must_use]
    pub fn is_named_subagent_of(&self, parent: &Self) -> bool {
        self.domain() == parent.domain()
            && self
                .local()
                .strip_prefix(parent.local())
                .and_then(|d| d.strip_prefix('+'))
                .is_some_and(|d| !d.is_empty())
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl FromStr for AgentId {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, IdentifierError> {
        Self::parse(s)
    }
}

impl Serialize for AgentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}
