//! `Signature-Input` (RFC 9421 §4.1): the covered components and signature parameters of
//! each signature, by label.

use std::fmt;

use crate::sf::{self, Bare, Entry, Item};
use crate::{DEFAULT_MAX_FIELD_BYTES, MemberError, ParseError, SerializeError, check_len};

const FIELD: &str = "Signature-Input";

/// A parsed `Signature-Input` field.
///
/// Each member is validated on its own; an invalid member for a label the verifier does
/// not select does not make the field unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInput {
    members: Vec<SignatureInputMember>,
}

/// One labelled member of `Signature-Input`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureInputMember {
    /// The signature label.
    pub label: String,
    /// The member's signature parameters, or why they are unusable.
    pub params: Result<SignatureParams, MemberError>,
}

/// The signature parameters of one signature: its covered components, in order, and its
/// parameters, in order (RFC 9421 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureParams {
    /// The covered components, in signing order.
    pub components: Vec<Component>,
    /// The signature parameters, in the order they were written.
    pub params: Vec<SigParam>,
}

/// A signature parameter (RFC 9421 §2.3). Unknown parameters make the member unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigParam {
    /// `created`: creation time, seconds since the epoch.
    Created(i64),
    /// `expires`: expiry time, seconds since the epoch.
    Expires(i64),
    /// `nonce`.
    Nonce(String),
    /// `alg`: never sent by AAuth signers and ignored by verifiers (Signature-Key -09 §7.4).
    Alg(String),
    /// `keyid`.
    KeyId(String),
    /// `tag`.
    Tag(String),
}

/// A covered component identifier (RFC 9421 §2): a lowercase field name or a derived
/// component name starting with `@`, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Component {
    /// `@method`, `@authority`, `content-digest`, …
    pub name: String,
    /// Component parameters, in order.
    pub params: Vec<ComponentParam>,
}

/// A component parameter (RFC 9421 §2.1, §2.2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ComponentParam {
    /// `sf`: strict structured-field serialization.
    Sf,
    /// `key`: one dictionary member.
    Key(String),
    /// `bs`: byte-sequence wrapping.
    Bs,
    /// `req`: from the related request.
    Req,
    /// `tr`: from the trailers.
    Tr,
    /// `name`: the query parameter of `@query-param`.
    Name(String),
}

impl Component {
    /// A component with no parameters. `name` is used as given; [`SignatureParams::serialize`]
    /// refuses names that are not valid.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    fn write(&self, out: &mut String) -> Result<(), SerializeError> {
        sf::write_string(out, &self.name)?;
        for p in &self.params {
            match p {
                ComponentParam::Sf => out.push_str(";sf"),
                ComponentParam::Bs => out.push_str(";bs"),
                ComponentParam::Req => out.push_str(";req"),
                ComponentParam::Tr => out.push_str(";tr"),
                ComponentParam::Key(k) => sf::write_param_string(out, "key", k)?,
                ComponentParam::Name(n) => sf::write_param_string(out, "name", n)?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        match self.write(&mut s) {
            Ok(()) => f.write_str(&s),
            Err(_) => write!(f, "{:?}", self.name),
        }
    }
}

impl SignatureParams {
    /// Parameters covering `components`, created at `created`.
    #[must_use]
    pub fn new(components: Vec<Component>, created: i64) -> Self {
        Self {
            components,
            params: vec![SigParam::Created(created)],
        }
    }

    /// The `created` parameter.
    #[must_use]
    pub fn created(&self) -> Option<i64> {
        self.params.iter().find_map(|p| match p {
            SigParam::Created(v) => Some(*v),
            _ => None,
        })
    }

    /// The `expires` parameter.
    #[must_use]
    pub fn expires(&self) -> Option<i64> {
        self.params.iter().find_map(|p| match p {
            SigParam::Expires(v) => Some(*v),
            _ => None,
        })
    }

    /// The `keyid` parameter.
    #[must_use]
    pub fn keyid(&self) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            SigParam::KeyId(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The `tag` parameter.
    #[must_use]
    pub fn tag(&self) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            SigParam::Tag(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The `nonce` parameter.
    #[must_use]
    pub fn nonce(&self) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            SigParam::Nonce(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Whether `name` (without parameters) is among the covered components.
    #[must_use]
    pub fn covers(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|c| c.name == name && c.params.is_empty())
    }

    /// The value of the `@signature-params` line and of the `Signature-Input` member: the
    /// inner list of components with its parameters (RFC 9421 §2.3).
    ///
    /// # Errors
    ///
    /// [`SerializeError`] when a component name or string parameter is not a valid
    /// structured-field String, or an integer is out of range.
    ///
    /// ```
    /// use aauth_headers::{Component, SignatureParams};
    /// let p = SignatureParams::new(vec![Component::new("@method"), Component::new("@path")], 1618884473);
    /// assert_eq!(p.serialize()?, r#"("@method" "@path");created=1618884473"#);
    /// # Ok::<(), aauth_headers::SerializeError>(())
    /// ```
    pub fn serialize(&self) -> Result<String, SerializeError> {
        let mut out = String::with_capacity(128);
        self.write(&mut out)?;
        Ok(out)
    }

    pub(crate) fn write(&self, out: &mut String) -> Result<(), SerializeError> {
        out.push('(');
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            c.write(out)?;
        }
        out.push(')');
        for p in &self.params {
            match p {
                SigParam::Created(v) => {
                    out.push_str(";created=");
                    sf::write_integer(out, *v)?;
                }
                SigParam::Expires(v) => {
                    out.push_str(";expires=");
                    sf::write_integer(out, *v)?;
                }
                SigParam::Nonce(v) => sf::write_param_string(out, "nonce", v)?,
                SigParam::Alg(v) => sf::write_param_string(out, "alg", v)?,
                SigParam::KeyId(v) => sf::write_param_string(out, "keyid", v)?,
                SigParam::Tag(v) => sf::write_param_string(out, "tag", v)?,
            }
        }
        Ok(())
    }

    fn from_entry(entry: &Entry<'_>) -> Result<Self, MemberError> {
        let Entry::Inner { items, params } = entry else {
            let Entry::Item(item) = entry else {
                return Err(MemberError::WrongType {
                    expected: "Inner List",
                    found: "unknown",
                });
            };
            return Err(MemberError::WrongType {
                expected: "Inner List",
                found: item.bare.type_name(),
            });
        };
        let mut components: Vec<Component> = Vec::with_capacity(items.len());
        for item in items {
            let c = component_from_item(item)?;
            if components.contains(&c) {
                return Err(MemberError::InvalidComponent {
                    component: c.to_string(),
                    reason: "listed more than once",
                });
            }
            components.push(c);
        }
        let mut out = Vec::with_capacity(params.len());
        for (k, v) in params {
            let int = |v: &Bare<'_>| match v {
                Bare::Integer(i) => Ok(*i),
                other => Err(MemberError::ParameterType {
                    name: (*k).to_owned(),
                    expected: "Integer",
                    found: other.type_name(),
                }),
            };
            let string = |v: &Bare<'_>| match v {
                Bare::String(s) => Ok(s.clone().into_owned()),
                other => Err(MemberError::ParameterType {
                    name: (*k).to_owned(),
                    expected: "String",
                    found: other.type_name(),
                }),
            };
            out.push(match *k {
                "created" => SigParam::Created(int(v)?),
                "expires" => SigParam::Expires(int(v)?),
                "nonce" => SigParam::Nonce(string(v)?),
                "alg" => SigParam::Alg(string(v)?),
                "keyid" => SigParam::KeyId(string(v)?),
                "tag" => SigParam::Tag(string(v)?),
                other => {
                    return Err(MemberError::UnexpectedParameter {
                        name: other.to_owned(),
                    });
                }
            });
        }
        Ok(Self {
            components,
            params: out,
        })
    }
}

fn component_from_item(item: &Item<'_>) -> Result<Component, MemberError> {
    let Bare::String(name) = &item.bare else {
        return Err(MemberError::InvalidComponent {
            component: format!("{:?}", item.bare),
            reason: "a component identifier must be a String",
        });
    };
    let name = name.as_ref();
    let invalid = |reason| MemberError::InvalidComponent {
        component: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if name == "@signature-params" {
        return Err(invalid("@signature-params cannot be covered"));
    }
    let body = name.strip_prefix('@').unwrap_or(name);
    let valid_chars = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        });
    if !valid_chars {
        return Err(invalid(
            "names must be lowercase field names or derived names",
        ));
    }
    let mut params = Vec::with_capacity(item.params.len());
    for (k, v) in &item.params {
        let flag = |p: ComponentParam| match v {
            Bare::Bool(true) => Ok(p),
            _ => Err(invalid("a flag parameter must be boolean true")),
        };
        let string = |f: fn(String) -> ComponentParam| match v {
            Bare::String(s) => Ok(f(s.clone().into_owned())),
            _ => Err(invalid("parameter value must be a String")),
        };
        params.push(match *k {
            "sf" => flag(ComponentParam::Sf)?,
            "bs" => flag(ComponentParam::Bs)?,
            "req" => flag(ComponentParam::Req)?,
            "tr" => flag(ComponentParam::Tr)?,
            "key" => string(ComponentParam::Key)?,
            "name" => string(ComponentParam::Name)?,
            _ => return Err(invalid("unknown component parameter")),
        });
    }
    Ok(Component {
        name: name.to_owned(),
        params,
    })
}

impl SignatureInput {
    /// Parses a `Signature-Input` value with the default size limit.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the value is too long, is not a Dictionary, or repeats a label
    /// or parameter. Problems inside one member are reported per member instead.
    ///
    /// ```
    /// use aauth_headers::SignatureInput;
    /// let si = SignatureInput::parse(r#"sig=("@method" "@authority" "@path" "signature-key");created=1791000000"#)?;
    /// let params = si.get("sig").unwrap().params.as_ref().unwrap();
    /// assert_eq!(params.created(), Some(1791000000));
    /// assert!(params.covers("signature-key"));
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        Self::parse_with_limit(value, DEFAULT_MAX_FIELD_BYTES)
    }

    /// Parses with an explicit size limit.
    ///
    /// # Errors
    ///
    /// As [`SignatureInput::parse`].
    pub fn parse_with_limit(value: &str, limit: usize) -> Result<Self, ParseError> {
        check_len(FIELD, value, limit)?;
        let dict = sf::parse_dictionary(value).map_err(|e| ParseError::from_sf(FIELD, e))?;
        let members = dict
            .iter()
            .map(|(label, entry)| SignatureInputMember {
                label: (*label).to_owned(),
                params: SignatureParams::from_entry(entry),
            })
            .collect();
        Ok(Self { members })
    }

    /// All members, in order.
    #[must_use]
    pub fn members(&self) -> &[SignatureInputMember] {
        &self.members
    }

    /// The members, by value.
    #[must_use]
    pub fn into_members(self) -> Vec<SignatureInputMember> {
        self.members
    }

    /// The member for `label`.
    #[must_use]
    pub fn get(&self, label: &str) -> Option<&SignatureInputMember> {
        self.members.iter().find(|m| m.label == label)
    }

    /// Serializes a `Signature-Input` value from labelled parameters.
    ///
    /// # Errors
    ///
    /// [`SerializeError`] for an invalid label or parameter.
    pub fn serialize<'a>(
        members: impl IntoIterator<Item = (&'a str, &'a SignatureParams)>,
    ) -> Result<String, SerializeError> {
        let mut out = String::with_capacity(128);
        for (i, (label, params)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            sf::write_key(&mut out, label)?;
            out.push('=');
            params.write(&mut out)?;
        }
        Ok(out)
    }
}
