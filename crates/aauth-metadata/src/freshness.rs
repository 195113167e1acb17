//! How long a fetched document may be used: `Cache-Control: max-age` (RFC 9111 §5.2.2.1),
//! else `Expires`, clamped to configured bounds; and how long a server asks to be left
//! alone: `Retry-After` ([`retry_after`]).

use aauth_keys::time::UnixTime;

/// What the response's caching headers ask for, before clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// A lifetime in seconds.
    MaxAge(u64),
    /// `no-store` or `no-cache`: revalidate as soon as the fetch floor allows.
    NoStore,
    /// No usable header: the configured default applies.
    Unspecified,
}

/// Reads `Cache-Control`, then `Expires` (relative to `now`; a date in the past means
/// stale at once). Unparseable values count as absent.
///
/// ```
/// use aauth_metadata::freshness::{freshness, Freshness};
/// use aauth_keys::time::UnixTime;
/// assert_eq!(freshness(Some("public, max-age=300"), None, UnixTime(0)), Freshness::MaxAge(300));
/// assert_eq!(freshness(Some("no-store"), None, UnixTime(0)), Freshness::NoStore);
/// assert_eq!(
///     freshness(None, Some("Sun, 06 Nov 1994 08:49:37 GMT"), UnixTime(784_111_717)),
///     Freshness::MaxAge(60),
/// );
/// ```
#[must_use]
pub fn freshness(cache_control: Option<&str>, expires: Option<&str>, now: UnixTime) -> Freshness {
    if let Some(cc) = cache_control {
        let mut max_age = None;
        for directive in cc.split(',') {
            let d = directive.trim();
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            let name = name.trim().to_ascii_lowercase();
            match name.as_str() {
                "no-store" | "no-cache" => return Freshness::NoStore,
                "max-age" if max_age.is_none() => {
                    let v = value.trim().trim_matches('"');
                    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                        // RFC 9111: a value too large is treated as 2^31.
                        max_age = Some(v.parse::<u64>().unwrap_or(1 << 31));
                    }
                }
                _ => {}
            }
        }
        if let Some(age) = max_age {
            return Freshness::MaxAge(age);
        }
    }
    if let Some(at) = expires.and_then(|e| httpdate::parse_http_date(e.trim()).ok()) {
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        return Freshness::MaxAge(at.saturating_sub(now.as_secs()));
    }
    Freshness::Unspecified
}

/// A `Retry-After` value (RFC 9110 §10.2.3) as seconds from `now`: delta-seconds, or an
/// HTTP-date (0 once it has passed). `None` when it is neither, so that the caller's own
/// backoff applies.
///
/// ```
/// use aauth_metadata::freshness::retry_after;
/// use aauth_keys::time::UnixTime;
/// assert_eq!(retry_after(" 7 ", UnixTime(0)), Some(7));
/// assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", UnixTime(784_111_717)), Some(60));
/// assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", UnixTime(784_111_800)), Some(0));
/// assert_eq!(retry_after("soon", UnixTime(0)), None);
/// assert_eq!(retry_after("-1", UnixTime(0)), None);
/// ```
#[must_use]
pub fn retry_after(value: &str, now: UnixTime) -> Option<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Digits too many for a u64 are a very long wait, not none.
        return Some(v.parse().unwrap_or(u64::MAX));
    }
    let at = httpdate::parse_http_date(v)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Some(at.saturating_sub(now.as_secs()))
}
