//! Parse errors.

/// Why a field value was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The value is longer than the limit; it was not parsed.
    #[error("{field} value of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The field name.
        field: &'static str,
        /// The value's length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The value holds bytes outside visible ASCII.
    #[error("{field} is not visible ASCII")]
    NotAscii {
        /// The field name.
        field: &'static str,
    },
    /// A field that may appear once appeared on several lines.
    #[error("{field} appears on more than one field line")]
    MultipleLines {
        /// The field name.
        field: &'static str,
    },
    /// Not a valid Structured Field of the field's type.
    #[error("{field} is not a valid structured field: {detail}")]
    Syntax {
        /// The field name.
        field: &'static str,
        /// What the parser reported.
        detail: String,
    },
    /// A dictionary key appears twice (refused, unlike RFC 9651's last-one-wins).
    #[error("{field} has more than one member named {key}")]
    DuplicateMember {
        /// The field name.
        field: &'static str,
        /// The repeated key.
        key: String,
    },
    /// A parameter appears twice on one item (refused, unlike RFC 9651's last-one-wins).
    #[error("{field} repeats the parameter {key}")]
    DuplicateParameter {
        /// The field name.
        field: &'static str,
        /// The repeated key.
        key: String,
    },
    /// A member the field requires is absent.
    #[error("{field} lacks the required member {member}")]
    MissingMember {
        /// The field name.
        field: &'static str,
        /// The member name.
        member: &'static str,
    },
    /// A member has the wrong type or an invalid value.
    #[error("{field} member {member} is invalid: {reason}")]
    InvalidMember {
        /// The field name.
        field: &'static str,
        /// The member name.
        member: String,
        /// What is wrong.
        reason: String,
    },
}

impl ParseError {
    pub(crate) fn from_sf(field: &'static str, e: crate::sf::SfError) -> Self {
        match e {
            crate::sf::SfError::Syntax(detail) => Self::Syntax { field, detail },
            crate::sf::SfError::DuplicateKey(key) => Self::DuplicateMember { field, key },
            crate::sf::SfError::DuplicateParameter(key) => Self::DuplicateParameter { field, key },
        }
    }
}

/// Why one member of a multi-signature field (`Signature-Input`, `Signature`,
/// `Signature-Key`) is unusable.
///
/// These are kept per member so that a verifier can ignore members for labels it does not
/// verify (Signature-Key -09 §3.1) and still refuse the one it selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// The member has the wrong structured type (for example an Item where an Inner List
    /// is required).
    #[error("member is a {found}, expected {expected}")]
    WrongType {
        /// The required type.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A parameter the member requires is absent.
    #[error("required parameter {name} is missing")]
    MissingParameter {
        /// The parameter name.
        name: &'static str,
    },
    /// A parameter has the wrong type.
    #[error("parameter {name} is a {found}, expected {expected}")]
    ParameterType {
        /// The parameter name.
        name: String,
        /// The required type.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A parameter's value is well-formed but not one the verifier accepts (a `jwks_uri`
    /// `dwk` that names no AAuth metadata document).
    #[error("parameter {name} {reason}")]
    ParameterValue {
        /// The parameter name.
        name: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// A parameter the member may not carry (unknown signature parameter, `kid` on `hwk`, …).
    #[error("parameter {name} is not allowed here")]
    UnexpectedParameter {
        /// The parameter name.
        name: String,
    },
    /// A covered component identifier is invalid (uppercase field name, listed twice,
    /// `@signature-params`, an unknown component parameter, …).
    #[error("component {component} is invalid: {reason}")]
    InvalidComponent {
        /// The component as written.
        component: String,
        /// What is wrong.
        reason: &'static str,
    },
}
