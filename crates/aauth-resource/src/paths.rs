//! Request paths as a reverse proxy in front of another server must compare them: in the
//! form that server will read them ([`match_form`]), and refusing those it could read as
//! another path ([`ambiguous_path`]). The protecting proxy (`aauth serve
//! resource-proxy`) chooses a route, and with it the access mode and scope, by these;
//! an embedder routing requests to [`crate::Route`]s can do the same.
//!
//! ```
//! use aauth_resource::paths::{ambiguous_path, match_form};
//! assert_eq!(match_form("/v1/models%3agenerate", false), "/v1/models:generate");
//! assert_eq!(match_form("/Caf%c3%a9", true), "/caf%C3%A9".to_ascii_lowercase());
//! assert!(ambiguous_path("/public/..;/admin"));
//! assert!(ambiguous_path("/%61dmin"));
//! assert!(!ambiguous_path("/files/a%20b"));
//! ```

/// `path` in the form routes are matched in: every escape of a printable ASCII character
/// but `/`, `\` and `%` decoded (a path with one is [`ambiguous_path`]), every
/// other escape with upper-case hex digits, a character beyond ASCII (a pattern's)
/// escaped as its UTF-8 bytes; with `fold_case`, ASCII letters in lower case.
///
/// An upstream decodes `%3A` to `:` and `%40` to `@`: a route for `/v1/models:generate`
/// must cover `/v1/models%3Agenerate` too, or a weaker route after it would.
#[must_use]
pub fn match_form(path: &str, fold_case: bool) -> std::borrow::Cow<'_, str> {
    // Most paths are already in the form: nothing escaped, nothing to fold.
    if path.is_ascii()
        && !path.contains('%')
        && !(fold_case && path.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return std::borrow::Cow::Borrowed(path);
    }
    std::borrow::Cow::Owned(owned_form(path, fold_case))
}

/// [`match_form`] of a path that needs changing.
fn owned_form(path: &str, fold_case: bool) -> String {
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut push = |c: char| out.push(if fold_case { c.to_ascii_lowercase() } else { c });
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let escaped = (c == b'%')
            .then(|| Some(hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(byte) if (0x20..0x7f).contains(&byte) && !matches!(byte, b'/' | b'\\' | b'%') => {
                push(char::from(byte));
                i += 3;
            }
            Some(byte) => {
                for d in format!("%{byte:02X}").chars() {
                    push(d);
                }
                i += 3;
            }
            None if c.is_ascii() => {
                push(char::from(c));
                i += 1;
            }
            None => {
                // A character beyond ASCII (only a configured pattern has one: a request's
                // path is ASCII), as the escapes of its UTF-8 bytes.
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                for byte in &b[i..i + len] {
                    for d in format!("%{byte:02X}").chars() {
                        push(d);
                    }
                }
                i += len;
            }
        }
    }
    out
}

/// Whether a server behind could read `path` as a different path than a route table does:
/// a `.` or `..` segment, an empty segment, a backslash, a percent-encoded dot, slash or
/// backslash, an escaped unreserved character, an escape escaped again (`%2561`), or a
/// `;` (path parameters, which Java servlet containers strip: `/public/..;/admin` is
/// their `/admin`). Such requests are refused (`400`) rather than matched.
#[must_use]
pub fn ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains(['\\', ';'])
        || ["%2e", "%2f", "%5c", "%3b"].iter().any(|e| lower.contains(e))
        || path.split('/').any(|s| s == "." || s == "..")
        // An empty segment, which many upstreams merge (`//admin` as `/admin`).
        || path.contains("//")
        || !canonical_escapes(path)
        || double_escaped(&lower)
}

/// Whether `lower` (a path in lower case) holds an escaped `%` that starts another
/// escape (`%2561` for `%61`): a chain of servers that decodes twice (a proxy that
/// rewrites the path, then the application) reads `/%2561dmin` as `/admin`.
fn double_escaped(lower: &str) -> bool {
    lower.match_indices("%25").any(|(i, _)| {
        lower
            .get(i + 3..i + 5)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Whether every `%` in `path` starts an escape of a byte that must be escaped: an
/// escaped unreserved character (`%61` for `a`, RFC 3986 §2.3), which an upstream
/// decodes, would let `/%61dmin` pass a route for `/admin` unmatched; a `%` not followed
/// by two hex digits is no escape at all.
fn canonical_escapes(path: &str) -> bool {
    let b = path.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return false;
            };
            let byte = hi * 16 + lo;
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{ambiguous_path, match_form};

    #[test]
    fn escapes_that_change_a_paths_structure_stay_escaped() {
        assert_eq!(match_form("/a%2fb%5C%25", false), "/a%2Fb%5C%25");
        assert_eq!(match_form("/a%0a%zz%4", false), "/a%0A%zz%4");
        assert_eq!(match_form("/é", false), "/%C3%A9");
        assert!(ambiguous_path("/a%3Bb"));
        assert!(ambiguous_path("//admin"));
        // Escaped twice: read as `/admin` and `..` by a chain that decodes twice.
        assert!(ambiguous_path("/%2561dmin/x"));
        assert!(ambiguous_path("/a/%252e%252e/b"));
        assert!(!ambiguous_path("/100%25"));
        assert!(!ambiguous_path("/a%25zz"));
    }
}
