use aauth_metadata::HttpsUrl;
use aauth_tokens::ServerId;
use proptest::prelude::*;

#[test]
fn accepted_urls_and_their_parts() {
    let u = HttpsUrl::parse("https://agent.example/.well-known/jwks.json?v=2").unwrap();
    assert_eq!(u.host(), "agent.example");
    assert_eq!(u.port(), 443);
    assert_eq!(u.origin(), "https://agent.example");
    assert_eq!(u.path_and_query(), "/.well-known/jwks.json?v=2");
    let bare = HttpsUrl::parse("https://agent.example").unwrap();
    assert_eq!(bare.path_and_query(), "/");
    let port = HttpsUrl::endpoint("https://ps.example:8443/token").unwrap();
    assert_eq!((port.host(), port.port()), ("ps.example", 8443));
    assert!(!port.same_origin(&HttpsUrl::parse("https://ps.example/x").unwrap()));
    assert!(port.same_origin(&HttpsUrl::parse("https://ps.example:8443/x").unwrap()));
}

#[test]
fn refused_urls_name_the_rule() {
    let cases: &[(&str, bool, &str)] = &[
        (
            "http://agent.example/jwks.json",
            true,
            "scheme must be https",
        ),
        ("HTTPS://agent.example/", true, "scheme must be https"),
        (
            "https://agent.example/jwks.json#k",
            true,
            "must not have a fragment",
        ),
        (
            "https://agent.example/token?x=1",
            false,
            "an endpoint must not have a query",
        ),
        (
            "https://user@agent.example/",
            true,
            "must not have userinfo",
        ),
        ("https://agent.example:0/", true, "port must be 1 to 65535"),
        (
            "https://agent.example:65536/",
            true,
            "port must be 1 to 65535",
        ),
        ("https://agent.example:/", true, "port must be 1 to 65535"),
        (
            "https://Agent.Example/",
            true,
            "host must be lowercase ASCII letters, digits, hyphens and dots",
        ),
        ("https:///jwks.json", true, "empty host"),
        (
            "https://[::1]/jwks.json",
            true,
            "IPv6 literals are not accepted",
        ),
        ("https://agent.example/a b", true, "contains a space"),
        (
            "https://agent.example/../etc",
            true,
            "path must not contain .. segments",
        ),
        (
            "https://agent.example/\u{e9}",
            true,
            "contains a character that must be percent-encoded",
        ),
    ];
    for &(value, query_ok, reason) in cases {
        let r = if query_ok {
            HttpsUrl::parse(value)
        } else {
            HttpsUrl::endpoint(value)
        };
        assert_eq!(r.map_err(|e| e.reason), Err(reason), "{value}");
    }
    let long = format!("https://agent.example/{}", "a".repeat(2100));
    assert_eq!(
        HttpsUrl::parse(&long).unwrap_err().reason,
        "longer than 2048 bytes"
    );
}

#[test]
fn well_known_document_names_are_plain_file_names() {
    let id = ServerId::parse("https://ps.example").unwrap();
    assert_eq!(
        HttpsUrl::well_known(&id, "aauth-person.json")
            .unwrap()
            .as_str(),
        "https://ps.example/.well-known/aauth-person.json"
    );
    for bad in ["", "../x", "a/b", "A.json", "x?y", "x#y", "..", "."] {
        assert!(HttpsUrl::well_known(&id, bad).is_err(), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn parsing_never_panics_and_keeps_the_string(s in "\\PC{0,80}") {
        if let Ok(u) = HttpsUrl::parse(&s) {
            prop_assert_eq!(u.as_str(), s.as_str());
            prop_assert!(u.as_str().starts_with("https://"));
            prop_assert!(u.origin().len() <= u.as_str().len());
        }
        let _ = HttpsUrl::endpoint(&s);
    }

    #[test]
    fn generated_urls_parse_to_their_parts(
        host in "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z]{2,6}){1,2}",
        port in proptest::option::of(1u16..),
        path in "(/[a-zA-Z0-9_~-][a-zA-Z0-9._~-]{0,7}){0,3}",
    ) {
        let authority = port.map_or_else(|| host.clone(), |p| format!("{host}:{p}"));
        let s = format!("https://{authority}{path}");
        let u = HttpsUrl::endpoint(&s).unwrap();
        prop_assert_eq!(u.host(), host.as_str());
        prop_assert_eq!(u.port(), port.unwrap_or(443));
        prop_assert_eq!(u.origin(), format!("https://{authority}"));
    }
}

proptest! {
    /// A password, however written, never survives redaction: in the URL's user
    /// information, as a query parameter, or in libpq's `key = value` form, quoted or not.
    #[test]
    fn a_store_urls_password_never_survives_redaction(
        password in "[A-Za-z0-9!#$%()*+,.;<>?^_`{|}~' \\\\-]{6,24}",
        spaced in any::<bool>(),
    ) {
        use aauth_metadata::store::redact_url;
        let marked = format!("Zq{password}Zq");
        let quoted = marked.replace('\\', "\\\\").replace('\'', "\\'");
        let eq = if spaced { " = " } else { "=" };
        let plain: String = marked.chars().filter(|c| !c.is_whitespace() && *c != '\'' && *c != '\\').collect();
        for shown in [
            redact_url(&format!("host=h password{eq}'{quoted}' dbname=d")),
            redact_url(&format!("host=h password{eq}{plain} dbname=d")),
            redact_url(&format!("postgres://u@h/db?sslmode=require&password={}", form(&plain))),
            redact_url(&format!("postgres://u:{}@h/db", form(&plain))),
        ] {
            prop_assert!(!shown.contains("Zq"), "{}", shown);
        }
    }
}

/// `s` percent-encoded but for unreserved characters.
fn form(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
