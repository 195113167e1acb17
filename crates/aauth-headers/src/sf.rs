//! A thin layer over `sfv`: parse a Structured Field into a borrowed tree (so callers can
//! apply stricter rules than RFC 9651, such as refusing duplicate keys), and serialize the
//! few bare-item types AAuth headers use.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::convert::Infallible;

use base64::Engine as _;
use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, InnerListVisitor, ItemVisitor, ListVisitor, ParameterVisitor,
};
use sfv::{BareItemFromInput, GenericBareItem, KeyRef, Parser};

/// A bare item borrowed from the input where possible.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bare<'a> {
    Integer(i64),
    Decimal(sfv::Decimal),
    String(Cow<'a, str>),
    Bytes(Vec<u8>),
    Bool(bool),
    Token(&'a str),
    Date(i64),
    Display(Cow<'a, str>),
}

impl Bare<'_> {
    pub(crate) const fn type_name(&self) -> &'static str {
        match self {
            Self::Integer(_) => "Integer",
            Self::Decimal(_) => "Decimal",
            Self::String(_) => "String",
            Self::Bytes(_) => "Byte Sequence",
            Self::Bool(_) => "Boolean",
            Self::Token(_) => "Token",
            Self::Date(_) => "Date",
            Self::Display(_) => "Display String",
        }
    }
}

pub(crate) type Params<'a> = Vec<(&'a str, Bare<'a>)>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item<'a> {
    pub(crate) bare: Bare<'a>,
    pub(crate) params: Params<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry<'a> {
    Item(Item<'a>),
    Inner {
        items: Vec<Item<'a>>,
        params: Params<'a>,
    },
}

/// What went wrong below the header's own rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SfError {
    /// RFC 9651 syntax error, as reported by `sfv`.
    Syntax(String),
    /// A dictionary key appears twice.
    DuplicateKey(String),
    /// A parameter key appears twice on one item or inner list.
    DuplicateParameter(String),
}

fn conv(b: BareItemFromInput<'_>) -> Bare<'_> {
    match b {
        GenericBareItem::Integer(i) => Bare::Integer(i64::from(i)),
        GenericBareItem::Decimal(d) => Bare::Decimal(d),
        GenericBareItem::String(s) => Bare::String(match s {
            Cow::Borrowed(r) => Cow::Borrowed(r.as_str()),
            Cow::Owned(o) => Cow::Owned(o.into()),
        }),
        GenericBareItem::ByteSequence(v) => Bare::Bytes(v),
        GenericBareItem::Boolean(b) => Bare::Bool(b),
        GenericBareItem::Token(t) => Bare::Token(t.as_str()),
        GenericBareItem::Date(d) => Bare::Date(i64::from(d.unix_seconds())),
        GenericBareItem::DisplayString(s) => Bare::Display(s),
    }
}

enum Sink<'s, 'de> {
    Dict(&'s mut Vec<(&'de str, Entry<'de>)>, &'de str),
    List(&'s mut Vec<Entry<'de>>),
}

impl<'de> Sink<'_, 'de> {
    fn push(self, entry: Entry<'de>) {
        match self {
            Self::Dict(v, k) => v.push((k, entry)),
            Self::List(v) => v.push(entry),
        }
    }
}

struct EntrySlot<'s, 'de>(Sink<'s, 'de>);

enum ItemDest<'s, 'de> {
    Entry(Sink<'s, 'de>),
    Inner(&'s mut Vec<Item<'de>>),
}

struct ItemSlot<'s, 'de>(ItemDest<'s, 'de>);

struct InnerSlot<'s, 'de> {
    sink: Sink<'s, 'de>,
    items: Vec<Item<'de>>,
}

enum Pending<'s, 'de> {
    Item(ItemDest<'s, 'de>, Bare<'de>),
    Inner(Sink<'s, 'de>, Vec<Item<'de>>),
}

struct ParamCollector<'s, 'de> {
    pending: Pending<'s, 'de>,
    params: Params<'de>,
}

impl<'de> ParameterVisitor<'de> for ParamCollector<'_, 'de> {
    type Out = ();
    type Error = Infallible;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Infallible> {
        self.params.push((key.as_str(), conv(value)));
        Ok(())
    }

    fn finish(self) -> Result<(), Infallible> {
        match self.pending {
            Pending::Item(ItemDest::Entry(sink), bare) => sink.push(Entry::Item(Item {
                bare,
                params: self.params,
            })),
            Pending::Item(ItemDest::Inner(items), bare) => items.push(Item {
                bare,
                params: self.params,
            }),
            Pending::Inner(sink, items) => sink.push(Entry::Inner {
                items,
                params: self.params,
            }),
        }
        Ok(())
    }
}

impl<'de> ItemVisitor<'de> for ItemSlot<'_, 'de> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        bare_item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = ()>, Infallible> {
        Ok(ParamCollector {
            pending: Pending::Item(self.0, conv(bare_item)),
            params: Vec::new(),
        })
    }
}

impl<'de> InnerListVisitor<'de> for InnerSlot<'_, 'de> {
    type Error = Infallible;

    fn item(&mut self) -> Result<impl ItemVisitor<'de>, Infallible> {
        Ok(ItemSlot(ItemDest::Inner(&mut self.items)))
    }

    fn finish(self) -> Result<impl ParameterVisitor<'de>, Infallible> {
        Ok(ParamCollector {
            pending: Pending::Inner(self.sink, self.items),
            params: Vec::new(),
        })
    }
}

impl<'de> EntryVisitor<'de> for EntrySlot<'_, 'de> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Infallible> {
        Ok(ItemSlot(ItemDest::Entry(self.0)))
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Infallible> {
        Ok(InnerSlot {
            sink: self.0,
            items: Vec::new(),
        })
    }
}

struct DictCollector<'de>(Vec<(&'de str, Entry<'de>)>);

impl<'de> DictionaryVisitor<'de> for &mut DictCollector<'de> {
    type Out = ();
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Infallible> {
        Ok(EntrySlot(Sink::Dict(&mut self.0, key.as_str())))
    }

    fn finish(self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct ListCollector<'de>(Vec<Entry<'de>>);

impl<'de> ListVisitor<'de> for &mut ListCollector<'de> {
    type Out = ();
    type Error = Infallible;

    fn entry(&mut self) -> Result<impl EntryVisitor<'de>, Infallible> {
        Ok(EntrySlot(Sink::List(&mut self.0)))
    }

    fn finish(self) -> Result<(), Infallible> {
        Ok(())
    }
}

fn first_duplicate<'a>(mut keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = BTreeSet::new();
    keys.find(|k| !seen.insert(*k))
}

fn check_params(params: &Params<'_>) -> Result<(), SfError> {
    match first_duplicate(params.iter().map(|(k, _)| *k)) {
        Some(k) => Err(SfError::DuplicateParameter(k.to_owned())),
        None => Ok(()),
    }
}

fn check_entry(entry: &Entry<'_>) -> Result<(), SfError> {
    match entry {
        Entry::Item(item) => check_params(&item.params),
        Entry::Inner { items, params } => {
            check_params(params)?;
            items.iter().try_for_each(|i| check_params(&i.params))
        }
    }
}

/// Parses a Dictionary, refusing duplicate keys and duplicate parameters (stricter than
/// RFC 9651, which lets the last one win, so that a proxy and a verifier cannot disagree).
pub(crate) fn parse_dictionary(input: &str) -> Result<Vec<(&str, Entry<'_>)>, SfError> {
    let mut out = DictCollector(Vec::new());
    Parser::new(input)
        .parse_dictionary_with_visitor(&mut out)
        .map_err(|e| SfError::Syntax(e.to_string()))?;
    if let Some(k) = first_duplicate(out.0.iter().map(|(k, _)| *k)) {
        return Err(SfError::DuplicateKey(k.to_owned()));
    }
    out.0.iter().try_for_each(|(_, e)| check_entry(e))?;
    Ok(out.0)
}

/// Parses a List, refusing duplicate parameters.
pub(crate) fn parse_list(input: &str) -> Result<Vec<Entry<'_>>, SfError> {
    let mut out = ListCollector(Vec::new());
    Parser::new(input)
        .parse_list_with_visitor(&mut out)
        .map_err(|e| SfError::Syntax(e.to_string()))?;
    out.0.iter().try_for_each(check_entry)?;
    Ok(out.0)
}

// ---- serialization -------------------------------------------------------------------

/// A value that cannot be written as the Structured Field type it has to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SerializeError {
    /// A String holds a character outside printable ASCII.
    #[error("{value:?} cannot be a structured-field String (printable ASCII only)")]
    BadString {
        /// The offending value.
        value: String,
    },
    /// A Token does not follow the token grammar.
    #[error("{value:?} is not a structured-field Token")]
    BadToken {
        /// The offending value.
        value: String,
    },
    /// A Key does not follow the key grammar (lowercase).
    #[error("{value:?} is not a structured-field Key")]
    BadKey {
        /// The offending value.
        value: String,
    },
    /// An Integer is outside ±999,999,999,999,999.
    #[error("{value} is outside the structured-field Integer range")]
    IntegerRange {
        /// The offending value.
        value: i64,
    },
    /// A value that is not a valid token68 (RFC 9110 §11.2).
    #[error("{value:?} is not a token68")]
    BadToken68 {
        /// The offending value.
        value: String,
    },
}

pub(crate) fn write_string(out: &mut String, s: &str) -> Result<(), SerializeError> {
    if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(SerializeError::BadString {
            value: s.to_owned(),
        });
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(())
}

const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

pub(crate) fn is_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'*')
        && b[1..]
            .iter()
            .all(|&c| is_tchar(c) || c == b':' || c == b'/')
}

pub(crate) fn is_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0] == b'*')
        && b[1..].iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'.' | b'*')
        })
}

pub(crate) fn write_token(out: &mut String, s: &str) -> Result<(), SerializeError> {
    if !is_token(s) {
        return Err(SerializeError::BadToken {
            value: s.to_owned(),
        });
    }
    out.push_str(s);
    Ok(())
}

pub(crate) fn write_key(out: &mut String, s: &str) -> Result<(), SerializeError> {
    if !is_key(s) {
        return Err(SerializeError::BadKey {
            value: s.to_owned(),
        });
    }
    out.push_str(s);
    Ok(())
}

pub(crate) fn write_integer(out: &mut String, v: i64) -> Result<(), SerializeError> {
    if !(-999_999_999_999_999..=999_999_999_999_999).contains(&v) {
        return Err(SerializeError::IntegerRange { value: v });
    }
    out.push_str(&v.to_string());
    Ok(())
}

pub(crate) fn write_bytes(out: &mut String, v: &[u8]) {
    out.push(':');
    base64::engine::general_purpose::STANDARD.encode_string(v, out);
    out.push(':');
}

/// Writes `;key=value` (or `;key` for boolean true).
pub(crate) fn write_param_bool(out: &mut String, key: &str, v: bool) -> Result<(), SerializeError> {
    out.push(';');
    write_key(out, key)?;
    if !v {
        out.push_str("=?0");
    }
    Ok(())
}

pub(crate) fn write_param_string(
    out: &mut String,
    key: &str,
    v: &str,
) -> Result<(), SerializeError> {
    out.push(';');
    write_key(out, key)?;
    out.push('=');
    write_string(out, v)
}
