//! `Prefer` (RFC 7240), for its `wait` preference (§4.3).

use crate::{DEFAULT_MAX_FIELD_BYTES, ParseError, check_len};

/// The preferences AAuth uses from a `Prefer` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Prefer {
    /// `wait=N`: how many seconds the client is willing to wait for a response.
    pub wait: Option<u64>,
}

impl Prefer {
    /// `Prefer: wait=N`.
    #[must_use]
    pub fn wait(seconds: u64) -> Self {
        Self {
            wait: Some(seconds),
        }
    }

    /// Parses a `Prefer` value. Only the first `wait` counts (RFC 7240 §2); a `wait`
    /// whose value is not a delta-seconds is ignored, as are other preferences.
    ///
    /// # Errors
    ///
    /// [`ParseError::TooLarge`] only; malformed preferences are ignored as RFC 7240 asks.
    ///
    /// ```
    /// use aauth_headers::Prefer;
    /// assert_eq!(Prefer::parse("respond-async, wait=30")?.wait, Some(30));
    /// assert_eq!(Prefer::parse("Wait = \"5\"")?.wait, Some(5));
    /// assert_eq!(Prefer::parse("wait=soon")?.wait, None);
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        check_len("Prefer", value, DEFAULT_MAX_FIELD_BYTES)?;
        for pref in value.split(',') {
            let head = pref.split(';').next().unwrap_or_default();
            let (name, val) = match head.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (head.trim(), None),
            };
            if !name.eq_ignore_ascii_case("wait") {
                continue;
            }
            let v = val.map(|v| v.trim_matches('"'));
            let wait = v.and_then(|v| {
                if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
                    v.parse::<u64>().ok()
                } else {
                    None
                }
            });
            return Ok(Self { wait });
        }
        Ok(Self::default())
    }

    /// Serializes the preferences (`wait=N`), or `None` when there is nothing to send.
    #[must_use]
    pub fn serialize(&self) -> Option<String> {
        self.wait.map(|w| format!("wait={w}"))
    }
}
