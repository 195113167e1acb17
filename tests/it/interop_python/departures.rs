//! The peer's departures, pinned (`tests/interop/python/README.md`): each test asserts the
//! departure is still there, and fails, saying so, the day the peer changes.

use super::*;

/// The message a pinned departure fails with, the day the peer changes.
fn fixed(what: &str) -> String {
    format!(
        "DEPARTURE FIXED? aauth-signing {AAUTH_SIGNING_VERSION} no longer {what}: \
         update tests/interop/python/README.md and this test"
    )
}

/// The peer's agent signs `GET url` with `alg`; its `Signature` field and base.
fn peer_signs(name: &str, url: &str, alg: Algorithm) -> (String, String, Value) {
    let jwt = our_agent_token(&agent_key(alg), now());
    let out = run_peer(
        "sign",
        &json!({ "cases": [{
            "name": name, "method": "GET", "url": url, "headers": {}, "body": null,
            "private_jwk": private_jwk(&agent_key(alg)), "jwt": jwt,
        }]}),
    );
    let s = out["cases"][0].clone();
    assert_eq!(s["ok"], true, "{s}");
    (
        s["headers"]["signature"].as_str().unwrap().to_owned(),
        s["base"].as_str().unwrap().to_owned(),
        s,
    )
}

/// Departure 1: RFC 8941 §3.3.5 serializes a Byte Sequence in standard base64 (RFC 4648
/// §4) with padding; the peer writes URL-safe base64 (§5) without padding.
#[test]
fn departure_python_writes_signature_in_url_safe_base64_without_padding() {
    if !peer_available() {
        return;
    }
    let mut url_safe_seen = false;
    for i in 0..8 {
        let url = format!("https://resource.example/doc/{i}");
        let (field, _, s) = peer_signs("Ed25519", &url, Algorithm::Ed25519);
        let (_, value) = split_signature(&field);
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .unwrap_or_else(|_| panic!("{}", fixed("writes URL-safe base64")));
        assert_eq!(bytes.len(), 64, "an Ed25519 signature");
        // Standard base64 of 64 bytes is 88 characters ending in "=="; the peer's is 86.
        assert_eq!(value.len(), 86, "{}: {field}", fixed("omits the padding"));
        assert_ne!(value, STANDARD.encode(&bytes), "{}", fixed("departs"));
        if i == 0 {
            eprintln!(
                "aauth-signing {AAUTH_SIGNING_VERSION} writes Signature: {field}\n  RFC 8941 would write: sig=:{}:",
                STANDARD.encode(&bytes)
            );
        }
        if value.contains(['-', '_']) {
            url_safe_seen = true;
            // Those characters are outside RFC 8941's alphabet: our verifier refuses the
            // field before any key is looked up, and accepts the same bytes re-encoded.
            let mut headers = s["headers"].as_object().unwrap().clone();
            let parts = server_parts("GET", &url, &headers);
            let verifier = our_verifier(&url, "resource", &[TokenType::Agent]);
            let refused = block(verifier.verify(&parts, b"", now()));
            assert!(
                matches!(refused, Err(VerifyError::Header(_))),
                "{refused:?}"
            );
            headers.insert(
                "signature".into(),
                from_peer_encoding(&field, Algorithm::Ed25519).into(),
            );
            let parts = server_parts("GET", &url, &headers);
            block(verifier.verify(&parts, b"", now())).unwrap();
        }
    }
    // Eight signatures without one '-' or '_' happen once in 10^9 runs.
    assert!(url_safe_seen, "{}", fixed("uses the URL-safe alphabet"));
}

/// Departure 2: the peer's verifier reads only its own encoding, so a signature
/// serialized as RFC 8941 §3.3.5 says (standard base64, padded) is refused, whatever it
/// signs; the same bytes in the peer's encoding verify.
#[test]
fn departure_python_verifier_accepts_only_its_own_encoding() {
    if !peer_available() {
        return;
    }
    let now = now();
    let mut requests = Vec::new();
    for c in cases().iter().filter(|c| c.body.is_none()) {
        let headers = headers_of(&we_sign(c, now));
        let mut adapted = headers.clone();
        let sig = headers["signature"].as_str().unwrap();
        assert!(sig.ends_with("=:"), "ours is padded: {sig}");
        adapted.insert("signature".into(), to_peer_encoding(sig).into());
        for (name, h) in [("RFC 8941", headers), ("peer's encoding", adapted)] {
            requests.push(json!({
                "name": format!("{}: {name}", c.name), "method": c.method, "url": c.url,
                "headers": h, "body": null,
            }));
        }
    }
    let out = run_peer(
        "verify",
        &json!({ "issuers": issuers_for_peer(), "cases": requests }),
    );
    for pair in out["results"].as_array().unwrap().chunks(2) {
        assert_eq!(
            pair[0]["ok"],
            false,
            "{}: {}",
            fixed("refuses RFC 8941 base64"),
            pair[0]
        );
        assert!(
            pair[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("Invalid Signature format")),
            "{}: {}",
            fixed("fails on the field's format"),
            pair[0]
        );
        assert_eq!(pair[1]["ok"], true, "{}", pair[1]);
    }
}

/// Departure 3: RFC 9421 §3.3.4 (`ecdsa-p256-sha256`) and the JOSE `ES256` that
/// Signature-Key -09 names encode the signature as the 64 bytes `r‖s`; the peer signs
/// ES256 request signatures in ASN.1 DER.
#[test]
fn departure_python_signs_es256_as_der() {
    if !peer_available() {
        return;
    }
    let url = "https://resource.example/api/documents";
    let (field, _, s) = peer_signs("ES256", url, Algorithm::Es256);
    let (_, value) = split_signature(&field);
    let bytes = URL_SAFE_NO_PAD.decode(value).unwrap();
    assert_eq!(
        bytes.first(),
        Some(&0x30),
        "{}: {bytes:02x?}",
        fixed("signs DER")
    );
    assert!(
        (8..=72).contains(&bytes.len()) && bytes.len() != 64,
        "{}: {} bytes",
        fixed("signs DER"),
        bytes.len()
    );
    let raw = der_to_raw(&bytes).expect("a DER ECDSA signature");
    eprintln!(
        "aauth-signing {AAUTH_SIGNING_VERSION} ES256 signature ({} bytes): {}",
        bytes.len(),
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    // Re-encoded as standard base64 but still DER, our verifier refuses it; as r‖s, it
    // verifies.
    let verifier = our_verifier(url, "resource", &[TokenType::Agent]);
    let mut headers = s["headers"].as_object().unwrap().clone();
    headers.insert(
        "signature".into(),
        format!("sig=:{}:", STANDARD.encode(&bytes)).into(),
    );
    let refused = block(verifier.verify(&server_parts("GET", url, &headers), b"", now()));
    assert!(
        matches!(refused, Err(VerifyError::BadSignature)),
        "{refused:?}"
    );
    headers.insert(
        "signature".into(),
        format!("sig=:{}:", STANDARD.encode(raw)).into(),
    );
    block(verifier.verify(&server_parts("GET", url, &headers), b"", now())).unwrap();
}

/// Departure 4: RFC 9421 §2.2.3 normalizes `@authority` (host lower-cased, the scheme's
/// default port dropped, RFC 9110 §4.2.3 and §7.2); the peer signs the URL's authority as
/// written, and its verifier rebuilds it the same way.
#[test]
fn departure_python_signs_authority_unnormalized() {
    if !peer_available() {
        return;
    }
    let written = "https://Resource.Example:443/api/documents";
    let (field, base, s) = peer_signs("authority", written, Algorithm::Ed25519);
    assert!(
        base.contains("\n\"@authority\": Resource.Example:443\n"),
        "{}: {base}",
        fixed("signs @authority as written")
    );
    eprintln!("aauth-signing {AAUTH_SIGNING_VERSION} signature base for {written}:\n{base}");
    // Our base for the same message says what RFC 9421 says.
    let (parts, ()) = http::Request::get(written).body(()).unwrap().into_parts();
    let mut headers = s["headers"].as_object().unwrap().clone();
    let sig_key = headers["signature-key"].as_str().unwrap().to_owned();
    let mut with_key = parts;
    with_key
        .headers
        .insert("signature-key", sig_key.parse().unwrap());
    let params = SignatureParams::new(
        ["@method", "@authority", "@path", "signature-key"]
            .iter()
            .map(|n| Component::new(*n))
            .collect(),
        0,
    );
    let ours = signature_base(&with_key, &params, View::Client).unwrap();
    assert!(
        ours.contains("\n\"@authority\": resource.example\n"),
        "{ours}"
    );
    // So a resource at resource.example refuses it, even in RFC 8941's encoding.
    headers.insert(
        "signature".into(),
        from_peer_encoding(&field, Algorithm::Ed25519).into(),
    );
    let url = "https://resource.example/api/documents";
    let verifier = our_verifier(url, "resource", &[TokenType::Agent]);
    let refused = block(verifier.verify(&server_parts("GET", url, &headers), b"", now()));
    assert!(
        matches!(refused, Err(VerifyError::BadSignature)),
        "{}: {refused:?}",
        fixed("breaks our verification")
    );
    // And the peer's verifier, given the same URL written the RFC's way, refuses what our
    // signer signed for the URL as first written.
    let c = case("authority", "GET", written);
    let mut ours = headers_of(&we_sign(&c, now()));
    let sig = ours["signature"].as_str().unwrap().to_owned();
    ours.insert("signature".into(), to_peer_encoding(&sig).into());
    let out = run_peer(
        "verify",
        &json!({ "issuers": issuers_for_peer(), "cases": [
            {"name": "as written", "method": "GET", "url": written, "headers": ours, "body": null},
            {"name": "normalized", "method": "GET", "url": url, "headers": ours, "body": null},
        ]}),
    );
    assert_eq!(
        out["results"][0]["ok"],
        false,
        "{}: {}",
        fixed("rebuilds @authority as written"),
        out["results"][0]
    );
    assert_eq!(out["results"][1]["ok"], true, "{}", out["results"][1]);
}
