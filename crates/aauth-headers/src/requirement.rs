//! `AAuth-Requirement` (draft -11 §11.6): what a server requires before it serves.

use crate::sf::{self, Bare, Entry, Params};
use crate::{DEFAULT_MAX_FIELD_BYTES, ParseError, SerializeError, check_len};

const FIELD: &str = "AAuth-Requirement";

/// A requirement value with its parameters (draft -11 §11.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// `agent-token` (401): present an AAuth agent token.
    AgentToken,
    /// `person-token` (401): obtain a person token for this resource. Takes no parameters.
    PersonToken,
    /// `auth-token` (401, 402 or 202): take the resource token to the Person Server.
    AuthToken {
        /// The `resource-token` parameter.
        resource_token: String,
    },
    /// `interaction` (202): send the user to `{url}?code={code}`.
    Interaction {
        /// The `url` parameter (https, no query or fragment).
        url: String,
        /// The `code` parameter.
        code: String,
    },
    /// `approval` (202): approval is being obtained out of band; poll.
    Approval,
    /// `clarification` (202): answer the question in the body.
    Clarification,
    /// `claims` (202, Access Server to Person Server): provide the claims in the body.
    Claims,
    /// A value this crate does not know; an agent must not treat it as satisfiable.
    Other {
        /// The requirement token.
        value: String,
    },
}

/// A parsed `AAuth-Requirement` field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AAuthRequirement {
    /// The requirement.
    pub requirement: Requirement,
}

impl AAuthRequirement {
    /// Wraps a requirement.
    #[must_use]
    pub fn new(requirement: Requirement) -> Self {
        Self { requirement }
    }

    /// Parses the field; unknown parameters and members are ignored.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when `requirement` is missing or not a Token, or a parameter the
    /// requirement needs (`resource-token`, `url`, `code`) is missing or not a String.
    ///
    /// ```
    /// use aauth_headers::{AAuthRequirement, Requirement};
    /// let r = AAuthRequirement::parse(r#"requirement=auth-token; resource-token="eyJ""#)?;
    /// assert_eq!(r.requirement, Requirement::AuthToken { resource_token: "eyJ".into() });
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        check_len(FIELD, value, DEFAULT_MAX_FIELD_BYTES)?;
        let dict = sf::parse_dictionary(value).map_err(|e| ParseError::from_sf(FIELD, e))?;
        let entry = dict
            .iter()
            .find(|(k, _)| *k == "requirement")
            .map(|(_, e)| e)
            .ok_or(ParseError::MissingMember {
                field: FIELD,
                member: "requirement",
            })?;
        let Entry::Item(sf::Item {
            bare: Bare::Token(t),
            params,
        }) = entry
        else {
            return Err(ParseError::InvalidMember {
                field: FIELD,
                member: "requirement".to_owned(),
                reason: "must be a Token".to_owned(),
            });
        };
        let requirement = match *t {
            "agent-token" => Requirement::AgentToken,
            "person-token" => Requirement::PersonToken,
            "auth-token" => Requirement::AuthToken {
                resource_token: string_param(params, "resource-token")?,
            },
            "interaction" => Requirement::Interaction {
                url: string_param(params, "url")?,
                code: string_param(params, "code")?,
            },
            "approval" => Requirement::Approval,
            "clarification" => Requirement::Clarification,
            "claims" => Requirement::Claims,
            other => Requirement::Other {
                value: other.to_owned(),
            },
        };
        Ok(Self { requirement })
    }

    /// Serializes the field in RFC 9651 form (no space after `;`).
    ///
    /// # Errors
    ///
    /// [`SerializeError`] when a parameter is not a valid String or an unknown value is not
    /// a Token.
    ///
    /// ```
    /// use aauth_headers::{AAuthRequirement, Requirement};
    /// let r = AAuthRequirement::new(Requirement::Interaction { url: "https://ps.example/i".into(), code: "A1B2-C3D4".into() });
    /// assert_eq!(r.serialize()?, r#"requirement=interaction;url="https://ps.example/i";code="A1B2-C3D4""#);
    /// # Ok::<(), aauth_headers::SerializeError>(())
    /// ```
    pub fn serialize(&self) -> Result<String, SerializeError> {
        let mut out = String::from("requirement=");
        match &self.requirement {
            Requirement::AgentToken => out.push_str("agent-token"),
            Requirement::PersonToken => out.push_str("person-token"),
            Requirement::AuthToken { resource_token } => {
                out.push_str("auth-token");
                sf::write_param_string(&mut out, "resource-token", resource_token)?;
            }
            Requirement::Interaction { url, code } => {
                out.push_str("interaction");
                sf::write_param_string(&mut out, "url", url)?;
                sf::write_param_string(&mut out, "code", code)?;
            }
            Requirement::Approval => out.push_str("approval"),
            Requirement::Clarification => out.push_str("clarification"),
            Requirement::Claims => out.push_str("claims"),
            Requirement::Other { value } => sf::write_token(&mut out, value)?,
        }
        Ok(out)
    }
}

fn string_param(params: &Params<'_>, name: &'static str) -> Result<String, ParseError> {
    match params.iter().find(|(k, _)| *k == name).map(|(_, v)| v) {
        Some(Bare::String(s)) => Ok(s.clone().into_owned()),
        Some(other) => Err(ParseError::InvalidMember {
            field: FIELD,
            member: name.to_owned(),
            reason: format!("is a {}, not a String", other.type_name()),
        }),
        None => Err(ParseError::MissingMember {
            field: FIELD,
            member: name,
        }),
    }
}
