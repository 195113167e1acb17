//! Vectors: aauth-go signed requests, the TypeScript reference's requests (both ways), and
//! RFC 9421 Appendix B.2.6.

use std::sync::Arc;

use aauth_headers::{Component, Scheme, SignatureParams};
use aauth_keys::time::UnixTime;
use aauth_keys::{PrivateKey, Signer, base64url};
use aauth_signing::{
    AuthoritySource, BodyCoverage, ComponentError, SignOptions, SigningKey, Verifier, VerifyError,
    VerifyPolicy, View, sign, signature_base,
};
use http::request::Parts;
use serde_json::Value;

use crate::common::{FixedKey, as_server, block, header};

fn load(path: &str) -> Value {
    let path = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Builds the request a vector describes, as a client would send it.
fn request(method: &str, url: &str, headers: &serde_json::Map<String, Value>) -> Parts {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str().unwrap());
    }
    b.body(()).unwrap().into_parts().0
}

/// The policy of the server a vector's request was signed for (the host of its URL).
fn server_policy(url: &str) -> VerifyPolicy {
    let uri: http::Uri = url.parse().unwrap();
    VerifyPolicy::new(AuthoritySource::names([uri.authority().unwrap().as_str()]).unwrap())
}

fn verify_fixed(
    policy: VerifyPolicy,
    key: Option<aauth_keys::PublicKey>,
    parts: &Parts,
    body: &[u8],
    now: UnixTime,
) -> Result<(), VerifyError> {
    let v = Verifier::new(policy, Arc::new(FixedKey(key)));
    block(v.verify(parts, body, now)).map(|_| ())
}

#[test]
fn aauth_go_http_signatures() {
    let v = load("aauth-go/http-signature.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let key = PrivateKey::from_jwk_json(&c["signing_key"].to_string()).unwrap();
        let req = &c["request"];
        let tamper = &c["tamper"];
        let pick = |field: &str| match tamper.get(field).and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ => req[field].as_str().unwrap_or_default().to_owned(),
        };
        let mut headers = req["headers"].as_object().unwrap().clone();
        if let Some(h) = tamper.get("headers").and_then(Value::as_object) {
            headers.extend(h.clone());
        }
        for (k, v) in c["signed"].as_object().unwrap() {
            headers.insert(k.clone(), v.clone());
        }
        let parts = as_server(request(&pick("method"), &pick("url"), &headers));
        let body = pick("body");
        let created: i64 = header(&parts, "signature-input")
            .split("created=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let now = UnixTime(u64::try_from(created).unwrap() + 5);
        // The POST vectors cover content-digest but not content-type.
        let own = server_policy(req["url"].as_str().unwrap());
        let relaxed = own.clone().body_coverage(BodyCoverage::Optional);
        let result = verify_fixed(
            relaxed,
            Some(key.public_key().clone()),
            &parts,
            body.as_bytes(),
            now,
        );
        if tamper.is_null() {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            if !body.is_empty() {
                let strict = verify_fixed(
                    own,
                    Some(key.public_key().clone()),
                    &parts,
                    body.as_bytes(),
                    now,
                );
                match strict {
                    Err(VerifyError::MissingComponents { required }) => {
                        assert!(required.contains(&"content-type".to_owned()), "{name}");
                    }
                    other => panic!("{name}: {other:?}"),
                }
            }
        } else {
            match result {
                Err(
                    VerifyError::BadSignature
                    | VerifyError::DigestMismatch { .. }
                    | VerifyError::Component(ComponentError::WrongAuthority { .. }),
                ) => {}
                other => panic!("{name}: tampering must fail, got {other:?}"),
            }
        }
    }
}

#[test]
fn hellocoop_requests_verify() {
    let v = load("hellocoop/hellocoop.json");
    let created = v["created"].as_u64().unwrap();
    let cases = v["signed_by_hellocoop"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for c in cases {
        let parts = as_server(request(
            c["method"].as_str().unwrap(),
            c["url"].as_str().unwrap(),
            c["headers"].as_object().unwrap(),
        ));
        let body = c["body"].as_str().unwrap_or_default();
        verify_fixed(
            server_policy(c["url"].as_str().unwrap()),
            None,
            &parts,
            body.as_bytes(),
            UnixTime(created + 1),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", c["url"]));
        // One byte of body changed: refused.
        if !body.is_empty() {
            let changed = body.replace("Sydney", "Sydnex");
            let r = verify_fixed(
                server_policy(c["url"].as_str().unwrap()),
                None,
                &parts,
                changed.as_bytes(),
                UnixTime(created + 1),
            );
            assert!(
                matches!(r, Err(VerifyError::DigestMismatch { .. })),
                "{r:?}"
            );
        }
    }
}

/// With the reference's seed, `created` and component order, we produce its exact bytes;
/// and the requests we signed that it verified are reproduced exactly too.
#[test]
fn hellocoop_bytes_are_reproduced_exactly() {
    let v = load("hellocoop/hellocoop.json");
    let seed: [u8; 32] = base64url::decode(v["seed"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = PrivateKey::ed25519_from_seed(&seed);
    let scheme = Scheme::jwt(v["jwt"].as_str().unwrap());
    let created = UnixTime(v["created"].as_u64().unwrap());
    for set in ["signed_by_hellocoop", "signed_here_verified_by_hellocoop"] {
        for c in v[set].as_array().unwrap() {
            let want = c["headers"].as_object().unwrap();
            let input = want["signature-input"].as_str().unwrap();
            let list = &input[input.find('(').unwrap() + 1..input.find(')').unwrap()];
            let components: Vec<&str> = list.split(' ').map(|s| s.trim_matches('"')).collect();
            let mut headers = serde_json::Map::new();
            if let Some(ct) = c
                .get("content_type")
                .and_then(Value::as_str)
                .or_else(|| want.get("content-type").and_then(Value::as_str))
            {
                headers.insert("content-type".to_owned(), ct.into());
            }
            let mut parts = request(
                c["method"].as_str().unwrap(),
                c["url"].as_str().unwrap(),
                &headers,
            );
            let body = c["body"].as_str().unwrap_or_default();
            let options = SignOptions::default().components(&components);
            sign(
                &mut parts,
                body.as_bytes(),
                &[SigningKey::new("sig", &key, &scheme)],
                &options,
                created,
            )
            .unwrap();
            for name in [
                "signature",
                "signature-input",
                "signature-key",
                "content-digest",
            ] {
                match want.get(name) {
                    Some(w) => assert_eq!(
                        header(&parts, name),
                        w.as_str().unwrap(),
                        "{set} {}: {name}",
                        c["url"]
                    ),
                    None => assert!(
                        !parts.headers.contains_key(name),
                        "{set}: unexpected {name}"
                    ),
                }
            }
        }
    }
}

/// RFC 9421 B.2.6: the signature base, and the signature (Ed25519 is deterministic).
#[test]
fn rfc9421_b26_ed25519() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/rfc9421/rfc9421-appendix-b.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let d = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU";
    let x = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
    let sig =
        "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";
    // The values come from the copied RFC text; undo its RFC 8792 line wrapping first.
    let mut unwrapped = String::new();
    let mut joining = false;
    for line in text.lines() {
        let line = if joining { line.trim_start() } else { line };
        match line.strip_suffix('\\') {
            Some(head) => {
                unwrapped.push_str(head);
                joining = true;
            }
            None => {
                unwrapped.push_str(line);
                unwrapped.push('\n');
                joining = false;
            }
        }
    }
    assert!(unwrapped.contains(d) && unwrapped.contains(x));
    assert!(
        unwrapped.contains(&format!("Signature: sig-b26=:{sig}:")),
        "B.2.6 signature"
    );

    let key = PrivateKey::ed25519_from_seed(&base64url::decode(d).unwrap().try_into().unwrap());
    assert_eq!(base64url::encode(key.public_key().as_bytes()), x);
    let parts = http::Request::post("/foo?param=Value&Pet=dog")
        .header("host", "example.com")
        .header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("content-type", "application/json")
        .header("content-length", "18")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let mut params = SignatureParams::new(
        [
            "date",
            "@method",
            "@path",
            "@authority",
            "content-type",
            "content-length",
        ]
        .into_iter()
        .map(Component::new)
        .collect(),
        1_618_884_473,
    );
    params.params.push(aauth_headers::SigParam::KeyId(
        "test-key-ed25519".to_owned(),
    ));
    let base = signature_base(
        &parts,
        &params,
        View::Server(&AuthoritySource::names(["example.com"]).unwrap()),
    )
    .unwrap();
    assert_eq!(
        base,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\
         \"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \
         \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    let ours = key.sign(base.as_bytes()).unwrap();
    use base64::Engine as _;
    assert_eq!(base64::engine::general_purpose::STANDARD.encode(&ours), sig);
    key.public_key().verify(base.as_bytes(), &ours).unwrap();
}
