//! Each ready demo runs and its transcript shows what the draft requires.

use aauth_demos::{DEMOS, Status};

fn run(n: u8) -> aauth_demos::Transcript {
    let d = DEMOS.iter().find(|d| d.number == n).unwrap();
    match d.status {
        Status::Ready(f) => f().unwrap_or_else(|e| panic!("demo {n}: {e}")),
        _ => panic!("demo {n} is not ready"),
    }
}

#[test]
fn d00_core() {
    let t = run(0);
    let text = t.render();
    assert_eq!(t.steps.len(), 12, "{text}");
    assert!(
        text.contains("verifies the signature and the agent token: aauth:assistant@agent.example")
    );
    assert!(text.contains(r#"signature-input: sig=("@method" "@authority" "@path" "signature-key");created=1800000000"#), "{text}");
    assert!(
        text.contains(r#""content-type" "content-digest" "signature-key""#),
        "{text}"
    );
    // The six refusals, with the draft's codes and headers.
    let refusals: Vec<&aauth_demos::Step> = t
        .steps
        .iter()
        .filter(|s| {
            s.detail
                .first()
                .is_some_and(|d| d.starts_with("HTTP/1.1 401"))
        })
        .collect();
    assert_eq!(refusals.len(), 6, "{text}");
    let codes: Vec<&str> = refusals.iter().map(|s| s.detail[1].as_str()).collect();
    assert_eq!(
        codes,
        [
            "signature-error: error=invalid_signature",
            "signature-error: error=invalid_signature",
            "signature-error: error=clock_skew",
            "signature-error: error=invalid_signature",
            r#"signature-error: error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "content-digest" "content-type")"#,
            "signature-error: error=unsupported_scheme",
        ],
        "{text}"
    );
    assert_eq!(refusals[5].detail[2], "accept-signature-scheme: jwt");
    assert!(
        refusals[3].detail[2].contains("Content-Digest sha-256 does not match"),
        "{text}"
    );
}

#[test]
fn registry_numbers_run_0_to_12() {
    let numbers: Vec<u8> = DEMOS.iter().map(|d| d.number).collect();
    assert_eq!(numbers, (0..=12).collect::<Vec<_>>());
    // Each phase demo not yet implemented says what it waits for.
    for d in &DEMOS[1..] {
        match d.status {
            Status::Pending { needs } => assert!(!needs.is_empty()),
            Status::Ready(_) => {}
            _ => panic!("unknown status"),
        }
    }
}

#[test]
fn d01_pseudonymous() {
    let t = run(1);
    let text = t.render();
    assert_eq!(t.steps.len(), 7, "{text}");
    // The unsigned request to an agent-token route, as -11 names it.
    assert!(
        text.contains("GET https://resource.example/agents\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "HTTP/1.1 401 Unauthorized\n      aauth-requirement: requirement=agent-token"
        ),
        "{text}"
    );
    // Pseudonymous access names the key's thumbprint, GET and POST.
    assert!(
        text.contains(r#"signature-key: sig=hwk;kty="OKP";crv="Ed25519";x=""#),
        "{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(
        text.contains(r#""scheme":"hwk""#) && text.contains(r#""method":"POST""#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"("@method" "@authority" "@path" "content-type" "content-digest" "signature-key")"#
        ),
        "{text}"
    );
    // hwk where an agent token is required.
    assert!(
        text.contains(
            "signature-error: error=unsupported_scheme\n      accept-signature-scheme: jwt"
        ),
        "{text}"
    );
}

#[test]
fn d02_agent_identity() {
    let t = run(2);
    let text = t.render();
    assert_eq!(t.steps.len(), 7, "{text}");
    // The provider's document and the token's decoded claims are shown.
    assert!(
        text.contains(
            r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"header: {"alg":"Ed25519","kid":"key-1","typ":"aa-agent+jwt"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""sub":"aauth:assistant@agent.example""#)
            && text.contains(r#""cnf":{"jwk":"#),
        "{text}"
    );
    // Unsigned → agent-token requirement; signed → admitted and named, one discovery fetch.
    assert!(
        text.contains("aauth-requirement: requirement=agent-token"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"body: {"agent":"aauth:assistant@agent.example","message":"Access granted"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("(the resource fetched metadata and JWKS once: 1 fetch)"),
        "{text}"
    );
    assert!(
        text.contains(
            "verified the token once and checks only this request's signature now (still 1 fetch)"
        ),
        "{text}"
    );
    // An unpublished key: unknown_key.
    assert!(
        text.contains("signature-error: error=unknown_key"),
        "{text}"
    );
}
