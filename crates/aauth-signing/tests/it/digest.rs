//! Content-Digest (security catalogue §2.7 D1–D4).

use aauth_headers::ErrorCode;
use aauth_signing::{SignOptions, VerifyError};

use crate::common::*;

fn post(body: &[u8]) -> (http::request::Parts, Vec<u8>) {
    let (p, b) = signed(
        "POST",
        "https://ps.example/token",
        body,
        &SignOptions::default(),
    );
    (as_server(p), b)
}

#[test]
fn d1_a_changed_body_is_refused() {
    let (p, b) = post(br#"{"resource_token":"x"}"#);
    verify(&p, &b).unwrap();
    for i in 0..b.len() {
        let mut changed = b.clone();
        changed[i] ^= 1;
        let e = verify(&p, &changed).unwrap_err();
        assert!(
            matches!(e, VerifyError::DigestMismatch { alg: "sha-256" }),
            "byte {i}: {e:?}"
        );
        assert_eq!(e.code(), Some(ErrorCode::InvalidSignature));
    }
}

#[test]
fn d2_only_unchecked_algorithms_is_invalid_input() {
    let (mut p, b) = post(b"{}");
    // The signature covers content-digest, so replacing it also breaks the signature; the
    // digest is checked after the signature, so forge a signer-side header instead.
    let (mut c, _) = signed_with(
        "POST",
        "https://ps.example/token",
        &[
            ("content-type", "application/json"),
            ("content-digest", "md5=:AAAA:"),
        ],
        b"{}",
        &SignOptions::default()
            .digest(aauth_signing::DigestMode::Never)
            .with("content-digest")
            .with("content-type"),
    );
    c = as_server(c);
    let e = verify(&c, &b).unwrap_err();
    assert!(matches!(e, VerifyError::DigestUnsupported { .. }), "{e:?}");
    assert_eq!(e.code(), Some(ErrorCode::InvalidInput));
    // And a tampered digest header on a signed request fails the signature first.
    set(&mut p, "content-digest", "md5=:AAAA:");
    assert!(matches!(verify(&p, &b), Err(VerifyError::BadSignature)));
}

#[test]
fn d3_every_listed_digest_must_match() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let body = b"{\"a\":1}";
    let good256 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body));
    let good512 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(body));
    let wrong512 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(b"other"));
    let opts = SignOptions::default()
        .digest(aauth_signing::DigestMode::Never)
        .with("content-digest")
        .with("content-type");
    let ok = format!("sha-256=:{good256}:, sha-512=:{good512}:");
    let (c, _) = signed_with(
        "POST",
        "https://ps.example/t",
        &[
            ("content-type", "application/json"),
            ("content-digest", &ok),
        ],
        body,
        &opts,
    );
    verify(&as_server(c), body).unwrap();
    let bad = format!("sha-256=:{good256}:, sha-512=:{wrong512}:");
    let (c, _) = signed_with(
        "POST",
        "https://ps.example/t",
        &[
            ("content-type", "application/json"),
            ("content-digest", &bad),
        ],
        body,
        &opts,
    );
    let e = verify(&as_server(c), body).unwrap_err();
    assert!(
        matches!(e, VerifyError::DigestMismatch { alg: "sha-512" }),
        "{e:?}"
    );
}

#[test]
fn d4_empty_and_non_empty_bodies_do_not_swap() {
    let (p, _) = post(b"x");
    assert!(matches!(
        verify(&p, b""),
        Err(VerifyError::DigestMismatch { .. })
    ));
    let (p, _) = signed(
        "POST",
        "https://resource.example/t",
        b"",
        &SignOptions::default().digest(aauth_signing::DigestMode::Always),
    );
    let p = as_server(p);
    assert!(matches!(
        verify(&p, b"x"),
        Err(VerifyError::MissingComponents { .. }) | Err(VerifyError::DigestMismatch { .. })
    ));
}

/// Catalogue D3: with two covered `Content-Digest` field lines only the first was once checked,
/// while the signature covered both. Every line is read; a member repeated across lines
/// is a duplicate and refused.
#[test]
fn d3_every_content_digest_field_line_is_checked() {
    let body = br#"{"a":1}"#;
    let good = aauth_signing::content_digest(body);
    let sign_lines = |lines: &[&str]| {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(lines.iter().map(|l| ("content-digest", *l)));
        let (p, b) = signed_with(
            "POST",
            "https://ps.example/token",
            &headers,
            body,
            &SignOptions::default()
                .digest(aauth_signing::DigestMode::Never)
                .with("content-digest")
                .with("content-type"),
        );
        (as_server(p), b)
    };
    // A correct sha-256 line, then a sha-512 line that matches nothing.
    let wrong_512 = format!("sha-512=:{}:", base64_std(&[0u8; 64]));
    let (p, b) = sign_lines(&[&good, &wrong_512]);
    assert_eq!(p.headers.get_all("content-digest").iter().count(), 2);
    assert_eq!(
        verify(&p, &b).unwrap_err(),
        VerifyError::DigestMismatch { alg: "sha-512" }
    );
    // The wrong line first: refused as well.
    let (p, b) = sign_lines(&[&wrong_512, &good]);
    assert!(matches!(
        verify(&p, &b),
        Err(VerifyError::DigestMismatch { .. })
    ));
    // sha-256 on both lines, one of them wrong: a duplicate member, refused.
    let wrong_256 = format!("sha-256=:{}:", base64_std(&[0u8; 32]));
    let (p, b) = sign_lines(&[&good, &wrong_256]);
    assert!(matches!(verify(&p, &b), Err(VerifyError::Header(_))));
    // Two lines that both match: accepted.
    let right_512 = {
        use sha2::Digest as _;
        format!("sha-512=:{}:", base64_std(&sha2::Sha512::digest(body)))
    };
    let (p, b) = sign_lines(&[&good, &right_512]);
    verify(&p, &b).unwrap();
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
