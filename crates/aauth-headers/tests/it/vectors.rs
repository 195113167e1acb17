//! aauth-go's Signature-Key, Signature-Error and AAuth-Requirement vectors.

use aauth_headers::{
    AAuthRequirement, ErrorCode, MemberError, Requirement, Scheme, SignatureErrorHeader,
    SignatureKey,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/aauth-go/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The Signature-Error an AAuth verifier (accepting only `jwt`) answers for label `sig`.
fn aauth_outcome(header: &str) -> Result<SignatureKey, &'static str> {
    let sk = SignatureKey::parse(header).map_err(|_| "invalid_signature")?;
    let Some(m) = sk.get("sig") else {
        return Err("invalid_signature");
    };
    match m.scheme_name.as_deref() {
        None => return Err("invalid_signature"),
        Some("jwt") => {}
        Some(_) => return Err("unsupported_scheme"),
    }
    match &m.scheme {
        Ok(Scheme::Jwt { .. }) => Ok(sk),
        _ => Err("invalid_signature"),
    }
}

#[test]
fn signature_key_cases() {
    let v = load("signature-key.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for c in cases {
        let header = c["header"].as_str().unwrap();
        let outcome = aauth_outcome(header);
        match c["error"].as_str() {
            None => {
                let sk = outcome.unwrap_or_else(|e| panic!("{header}: {e}"));
                let m = sk.get("sig").unwrap();
                assert_eq!(m.scheme_name.as_deref(), c["scheme"].as_str());
                let Ok(Scheme::Jwt { jwt, .. }) = &m.scheme else {
                    panic!("{header}")
                };
                assert_eq!(jwt, c["params"]["jwt"].as_str().unwrap());
            }
            Some(e) => assert_eq!(outcome.err(), Some(e), "{header}"),
        }
        // The scheme and parameters the vector names, for every member that parses.
        if let (Some(scheme), Ok(sk)) = (c["scheme"].as_str(), SignatureKey::parse(header)) {
            let m = sk.get("sig").unwrap();
            assert_eq!(m.scheme_name.as_deref(), Some(scheme), "{header}");
            let params = c["params"].as_object().unwrap();
            match &m.scheme {
                Ok(Scheme::JwksUri { id, dwk, kid }) => {
                    assert_eq!(
                        (id.as_str(), dwk.as_str(), kid.as_str()),
                        (
                            params["id"].as_str().unwrap(),
                            params["dwk"].as_str().unwrap(),
                            params["kid"].as_str().unwrap()
                        )
                    );
                }
                Ok(Scheme::Hwk(h)) => {
                    assert_eq!(h.kty.as_deref(), params["kty"].as_str());
                    assert_eq!(h.crv.as_deref(), params["crv"].as_str());
                    assert_eq!(h.x.as_deref(), params["x"].as_str());
                    assert_eq!(h.alg.as_deref(), params["alg"].as_str());
                }
                Ok(Scheme::Unknown { name }) => assert_eq!(name, scheme),
                Ok(Scheme::Jwt { jwt, .. }) => assert_eq!(jwt, params["jwt"].as_str().unwrap()),
                Err(MemberError::MissingParameter { name: "jwt" }) => {
                    assert!(params.is_empty(), "{header}");
                }
                other => panic!("{header}: {other:?}"),
            }
        }
    }
}

#[test]
fn signature_error_cases() {
    let v = load("signature-error.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for c in cases {
        let header = c["header"].as_str().unwrap();
        let parsed =
            SignatureErrorHeader::parse(header).unwrap_or_else(|e| panic!("{header}: {e}"));
        assert_eq!(parsed.code.as_str(), c["code"].as_str().unwrap());
        assert!(
            !matches!(parsed.code, ErrorCode::Other(_)),
            "{header}: a registered code"
        );
        let want: Option<Vec<String>> = c["required_input"]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect());
        assert_eq!(parsed.required_input, want, "{header}");
        // Our serialization parses back to the same value; canonical ones are byte-equal.
        let ours = parsed.serialize().unwrap();
        assert_eq!(SignatureErrorHeader::parse(&ours).unwrap(), parsed);
        if c["canonical"] == true && c.get("params").is_none() {
            assert_eq!(ours, header, "canonical form");
        }
    }
}

#[test]
fn requirement_cases() {
    let v = load("requirement.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let header = c["header"].as_str().unwrap();
        let r = AAuthRequirement::parse(header).unwrap_or_else(|e| panic!("{header}: {e}"));
        let p = &c["parsed"];
        let want = match p["Requirement"].as_str().unwrap() {
            "agent-token" => Requirement::AgentToken,
            "auth-token" => Requirement::AuthToken {
                resource_token: p["ResourceToken"].as_str().unwrap().into(),
            },
            "interaction" => Requirement::Interaction {
                url: p["URL"].as_str().unwrap().into(),
                code: p["Code"].as_str().unwrap().into(),
            },
            other => panic!("unexpected {other}"),
        };
        assert_eq!(r.requirement, want, "{header}");
        // aauth-go writes "; " between parameters, RFC 9651 serialization writes ";": compare values.
        let ours = r.serialize().unwrap();
        assert_eq!(AAuthRequirement::parse(&ours).unwrap(), r);
        if c["canonical"] == true {
            assert_eq!(ours.replace(';', "; "), header, "{header}");
        }
    }
}
