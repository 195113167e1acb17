//! The consent pages: a person signs in (argon2 password hashes, a session cookie, CSRF
//! tokens on every form), sees what the resource asserts (its identifier, the scope the
//! resource token asks for) apart from what the agent asserts (its identifier), and grants
//! or denies. Everything shown is escaped: nothing the agent or resource sends is markup.
//! The markup is in [`view`], every text in the catalogue ([`text`]).

use aauth_keys::rand::RandomSource;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

pub(crate) mod dashboard;
pub(crate) mod describe;
pub(crate) mod text;
pub(crate) mod view;

/// The session cookie (`__Host-`: Secure, Path=/, no Domain).
pub(crate) const SESSION_COOKIE: &str = "__Host-aauth-session";
/// The login form's double-submit CSRF cookie.
pub(crate) const CSRF_COOKIE: &str = "__Host-aauth-csrf";
/// Wrong codes a session may enter before it is refused.
pub(crate) const MAX_BAD_CODES: u32 = 5;
/// The cookie that marks a browser that signed in to an account since its password was
/// last set (counted apart from the account's sign-in throttle, under a count of the
/// account's known browsers).
pub(crate) const DEVICE_COOKIE: &str = "__Host-aauth-device";
/// How long a device cookie is kept: 90 days.
pub(crate) const DEVICE_COOKIE_AGE: u64 = 90 * 24 * 3600;
/// The longest account name and password a sign-in form may carry.
pub(crate) const MAX_ACCOUNT_LEN: usize = 256;
/// See [`MAX_ACCOUNT_LEN`]: 1 KiB (argon2 hashes any length, but nobody types more).
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;
/// Wrong codes one request may see before it fails terminally.
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// The password hash of an account that has no password (it signs in through its
/// OpenID Provider): not a PHC string, so no password ever matches it.
pub(crate) const NO_PASSWORD: &str = "!none";

/// The store key of a session cookie: its SHA-256 (a leaked store holds no cookies).
pub(crate) fn session_key(cookie: &str) -> String {
    aauth_keys::digest::s256(cookie.as_bytes())
}

/// Decodes `application/x-www-form-urlencoded` (also a query string) into pairs;
/// undecodable pairs are dropped.
pub(crate) fn form(input: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s.get(i + 1..i + 3)?;
                    let hex = std::str::from_utf8(hex).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    input
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k = decode(it.next()?)?;
            let v = decode(it.next().unwrap_or_default())?; // default: a name without `=` has an empty value
            Some((k, v))
        })
        .collect()
}

/// The first value of `name` in `pairs`.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The value of cookie `name` in the request's `Cookie` fields.
pub(crate) fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value for a `__Host-` cookie.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .ok()
}

/// A `Set-Cookie` value for a `__Host-` cookie that the browser also sends on a
/// cross-site top-level navigation to this server (`SameSite=Lax`): only for what a
/// provider's redirect back must carry.
#[cfg(feature = "oidc")]
pub(crate) fn set_lax_cookie(name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .ok()
}

/// A `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::new());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

/// `s` percent-encoded as a query value (RFC 3986 unreserved characters kept).
pub(crate) fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

pub use aauth_metadata::callback::allowed as callback_allowed;
pub(crate) use aauth_metadata::callback::{csp_origin as callback_origin, with_error};

/// Hashes `password` with argon2id (the crate's default parameters) and a random salt.
pub(crate) fn hash_password(
    password: &str,
    random: &mut dyn RandomSource,
) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    random.fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc`.
pub(crate) fn check_password(phc: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to check against when the account does not exist, so that a wrong account
/// costs the same time as a wrong password.
pub(crate) fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3S7LtpBvmD+WQi2VF6ztfPuJrCZ8xkMoMsaWWCd2BN0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_html_escapes() {
        let f = form(b"code=ABCD-1234&csrf=a%2Fb&username=al+ice&bad=%zz&empty=");
        assert_eq!(field(&f, "code"), Some("ABCD-1234"));
        assert_eq!(field(&f, "csrf"), Some("a/b"));
        assert_eq!(field(&f, "username"), Some("al ice"));
        assert_eq!(field(&f, "bad"), None);
        assert_eq!(field(&f, "empty"), Some(""));
    }

    #[test]
    fn passwords_hash_and_check() {
        let h =
            hash_password("correct horse", &mut aauth_keys::rand::OsRandom).expect("hashing works");
        assert!(h.starts_with("$argon2id$"));
        assert!(check_password(&h, "correct horse"));
        assert!(!check_password(&h, "wrong"));
        assert!(!check_password("not a hash", "x"));
        assert!(!check_password(dummy_hash(), "anything"));
    }

    #[test]
    fn a_callbacks_origin_is_a_policy_source_or_nothing() {
        for (cb, origin) in [
            (
                "https://agent.example/callback?flow=7",
                Some("https://agent.example"),
            ),
            (
                "https://agent.example:8443",
                Some("https://agent.example:8443"),
            ),
            ("http://localhost:8080/cb", Some("http://localhost:8080")),
            ("http://127.0.0.1?x=1", Some("http://127.0.0.1")),
            // No form in the policy's grammar, or not a callback at all.
            ("http://[::1]:9/", None),
            ("https://agent.example;script-src/x", None),
            ("https://a..example/", None),
            ("https://agent.example:/", None),
            ("javascript:alert(1)", None),
            ("https:///cb", None),
        ] {
            assert_eq!(callback_origin(cb), origin, "{cb}");
        }
    }
}
