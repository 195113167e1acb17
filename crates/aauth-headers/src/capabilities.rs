//! `AAuth-Capabilities` (draft -11 §11.7): what an agent can handle.

use crate::sf::{self, Bare, Entry};
use crate::{DEFAULT_MAX_FIELD_BYTES, ParseError, check_len};

const FIELD: &str = "AAuth-Capabilities";

/// A capability value (draft -11 §11.7 registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `interaction`: the agent can send a user to an interaction URL.
    Interaction,
    /// `clarification`: the agent can answer clarification questions.
    Clarification,
    /// `payment`: the agent can pay.
    Payment,
}

impl Capability {
    /// The registered token.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Interaction => "interaction",
            Self::Clarification => "clarification",
            Self::Payment => "payment",
        }
    }

    /// The capability named by `token`, if known.
    #[must_use]
    pub fn from_token(token: &str) -> Option<Self> {
        match token {
            "interaction" => Some(Self::Interaction),
            "clarification" => Some(Self::Clarification),
            "payment" => Some(Self::Payment),
            _ => None,
        }
    }
}

/// A parsed `AAuth-Capabilities` field. Unknown values and parameters are ignored; an
/// absent header means no capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AAuthCapabilities(pub Vec<Capability>);

impl AAuthCapabilities {
    /// Parses the list.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the value is too long or not a List.
    ///
    /// ```
    /// use aauth_headers::{AAuthCapabilities, Capability};
    /// let c = AAuthCapabilities::parse("interaction, teleport, clarification")?;
    /// assert_eq!(c.0, [Capability::Interaction, Capability::Clarification]);
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        check_len(FIELD, value, DEFAULT_MAX_FIELD_BYTES)?;
        let list = sf::parse_list(value).map_err(|e| ParseError::from_sf(FIELD, e))?;
        let mut caps = Vec::new();
        for e in list {
            if let Entry::Item(sf::Item {
                bare: Bare::Token(t),
                ..
            }) = e
                && let Some(c) = Capability::from_token(t)
                && !caps.contains(&c)
            {
                caps.push(c);
            }
        }
        Ok(Self(caps))
    }

    /// Whether `cap` is present.
    #[must_use]
    pub fn has(&self, cap: Capability) -> bool {
        self.0.contains(&cap)
    }

    /// Serializes the list.
    #[must_use]
    pub fn serialize(&self) -> String {
        self.0
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
