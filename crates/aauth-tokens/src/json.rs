//! A strict reader for the JSON objects of JOSE headers and JWT claim sets.
//!
//! Members are collected borrowed and unparsed; a member name that appears twice makes the
//! object malformed (RFC 7519 §4 lets parsers keep the last one, which is how two parsers
//! come to disagree). Each member the caller reads is then parsed into its own type, so an
//! error names the member: `exp` sent as a string is "claim exp: expected an integer",
//! never "absent".
//!
//! Public so that crates reading other JWTs (OAuth access tokens, DPoP proofs) read them
//! by the same rules.
//!
//! ```
//! use aauth_tokens::json::{Object, ObjectError};
//! let claims = Object::parse(r#"{"iss":"https://as.example","exp":1800000000}"#).unwrap();
//! assert_eq!(claims.string("iss").unwrap().as_deref(), Some("https://as.example"));
//! assert_eq!(claims.u64("exp").unwrap(), Some(1_800_000_000));
//! assert!(claims.u64("iss").is_err()); // a string is not a NumericDate
//! assert_eq!(
//!     Object::parse(r#"{"aud":"a","aud":"b"}"#).err(),
//!     Some(ObjectError::Duplicate("aud".to_owned())),
//! );
//! ```

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
/// A member's unparsed JSON value (serde_json's).
pub use serde_json::value::RawValue;

/// A JSON object's members, in order, unparsed.
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// Not a JSON object (or not JSON).
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    /// A member name appears twice.
    #[error("member {0} appears twice")]
    Duplicate(String),
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The deepest nesting accepted in a header or claim set. AAuth tokens nest three levels
/// (`cnf.jwk` members); serde_json would skip deeper unknown members without limit.
pub const MAX_DEPTH: usize = 16;

/// Refuses JSON nested deeper than `max` (arrays and objects), without parsing it.
fn check_depth(json: &str, max: usize) -> Result<(), ObjectError> {
    // Nesting never exceeds the number of `{` and `[` bytes (strings included): when that
    // is within bounds, which is every token's case, a count the compiler vectorises
    // settles it without the byte-by-byte walk below.
    if json.bytes().filter(|&b| b == b'{' || b == b'[').count() <= max {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ObjectError::NotAnObject(format!(
                        "nested deeper than {max} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl<'a> Object<'a> {
    /// Reads `json` as one object: at most [`MAX_DEPTH`] levels deep, no member twice.
    ///
    /// # Errors
    ///
    /// [`ObjectError`].
    pub fn parse(json: &'a str) -> Result<Self, ObjectError> {
        check_depth(json, MAX_DEPTH)?;
        let Members(members) = serde_json::from_str::<Members<'a>>(json)
            .map_err(|e| ObjectError::NotAnObject(e.to_string()))?;
        if let Some(name) = first_duplicate(&members) {
            return Err(ObjectError::Duplicate(name.to_owned()));
        }
        Ok(Self { members })
    }

    /// Member `name`, unparsed.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// Whether member `name` is present.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Parses member `name` as `T`; `Ok(None)` when absent. JSON `null` is a value of the
    /// wrong type, not absence.
    ///
    /// # Errors
    ///
    /// What serde_json reported, without its position.
    pub fn opt<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, String> {
        self.get(name).map(value::<T>).transpose()
    }
}

/// The first member name that appears twice. Claim sets are small, so pairwise comparison
/// without allocation is used up to 32 members, a set beyond.
fn first_duplicate<'m>(members: &'m [(Cow<'_, str>, &RawValue)]) -> Option<&'m str> {
    if members.len() <= 32 {
        // Claim names are short and often of one length (`iss`, `sub`, `aud`, `exp`, …):
        // the last byte tells most of them apart before a full comparison is needed.
        let same = |a: &str, b: &str| {
            a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
        };
        for (i, (a, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(b, _)| same(a, b)) {
                return Some(a);
            }
        }
        return None;
    }
    let mut seen = BTreeSet::new();
    members
        .iter()
        .map(|(k, _)| k.as_ref())
        .find(|k| !seen.insert(*k))
}

/// A JSON string with no escapes and no control characters, borrowed without copying;
/// `None` for anything else (the caller falls back to serde_json, which then parses escapes
/// or reports the type error).
fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.bytes().any(|b| b == b'\\' || b == b'"' || b < 0x20) {
        return None;
    }
    Some(inner)
}

/// A JSON integer in the only form JSON allows for a non-negative integer without a
/// fraction or exponent (digits, no leading zero), that fits a `u64`; `None` otherwise.
fn plain_u64(raw: &str) -> Option<u64> {
    let b = raw.as_bytes();
    if b.is_empty()
        || b.len() > 20
        || !b.iter().all(u8::is_ascii_digit)
        || (b.len() > 1 && b[0] == b'0')
    {
        return None;
    }
    raw.parse().ok()
}

impl<'a> Object<'a> {
    /// Member `name` as a string. The common case (no escapes) borrows from the input;
    /// the rest is parsed by serde_json with the same result.
    ///
    /// # Errors
    ///
    /// The member is not a string.
    pub fn string(&self, name: &str) -> Result<Option<Cow<'a, str>>, String> {
        self.get(name).map(string_value).transpose()
    }

    /// Member `name` as a non-negative integer (a NumericDate).
    ///
    /// # Errors
    ///
    /// The member is not a non-negative integer.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, String> {
        self.get(name).map(u64_value).transpose()
    }

    /// The members in document order, each name once ([`Object::parse`] refused repeats):
    /// for a reader that takes every member in one pass rather than looking each up.
    pub fn members(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.members.iter().map(|(k, v)| (k.as_ref(), *v))
    }
}

/// A member's value as a string. The common case (no escapes) borrows from the input; the
/// rest is parsed by serde_json with the same result.
///
/// # Errors
///
/// The value is not a string (`null` included).
pub fn string_value(raw: &RawValue) -> Result<Cow<'_, str>, String> {
    match plain_string(raw.get()) {
        Some(s) => Ok(Cow::Borrowed(s)),
        None => value::<String>(raw).map(Cow::Owned),
    }
}

/// A member's value as a non-negative integer (a NumericDate).
///
/// # Errors
///
/// The value is not a non-negative integer.
pub fn u64_value(raw: &RawValue) -> Result<u64, String> {
    match plain_u64(raw.get()) {
        Some(v) => Ok(v),
        None => value::<u64>(raw),
    }
}

/// A member's value parsed as `T`; `null` is a value of the wrong type.
///
/// # Errors
///
/// What serde_json reported, without its position.
pub fn value<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, String> {
    if raw.get() == "null" {
        return Err("is null".to_owned());
    }
    serde_json::from_str::<T>(raw.get()).map_err(|e| strip_position(&e.to_string()))
}

/// serde_json appends " at line 1 column N", meaningless for a member parsed on its own.
fn strip_position(msg: &str) -> String {
    msg.split(" at line ").next().unwrap_or(msg).to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Object;

    type Both = (Result<Option<String>, String>, Result<Option<u64>, String>);

    fn via_fast_path(value_json: &str) -> Option<Both> {
        let doc = format!(r#"{{"a":{value_json}}}"#);
        let obj = Object::parse(&doc).ok()?;
        Some((
            obj.string("a").map(|o| o.map(std::borrow::Cow::into_owned)),
            obj.u64("a"),
        ))
    }

    proptest! {
        /// The borrowed fast paths agree with serde_json on every scalar.
        #[test]
        fn fast_paths_agree_with_serde(text in prop_oneof![
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "[0-9]{0,22}",
            "\"[ -~]{0,20}\"",
            "\\PC{0,20}",
        ]) {
            if let Some((s, n)) = via_fast_path(&text) {
                let serde_s = serde_json::from_str::<String>(&text);
                prop_assert_eq!(s.is_ok(), serde_s.is_ok(), "{}", text);
                if let (Ok(Some(a)), Ok(b)) = (&s, &serde_s) {
                    prop_assert_eq!(a, b);
                }
                let serde_n = serde_json::from_str::<u64>(&text);
                prop_assert_eq!(n.is_ok(), serde_n.is_ok(), "{}", text);
                if let (Ok(Some(a)), Ok(b)) = (&n, &serde_n) {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn leading_zeros_exponents_and_escapes_take_the_serde_path() {
        let (_, n) = via_fast_path("007").unwrap_or((Ok(None), Ok(None)));
        assert!(n.is_err() || n == Ok(None));
        let (_, n) = via_fast_path("1e3").unwrap();
        assert!(n.is_err());
        let (s, _) = via_fast_path(r#""a\"b""#).unwrap();
        assert_eq!(s.unwrap().as_deref(), Some("a\"b"));
        let (s, _) = via_fast_path("null").unwrap();
        assert!(s.is_err());
    }
}
