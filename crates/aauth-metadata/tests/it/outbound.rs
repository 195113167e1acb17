//! Revocations one server sends another: the endpoint from the recipient's metadata, the
//! request signed as the sender with its body covered, a `202` followed, and each refusal
//! in the draft's terms.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aauth_keys::PrivateKey;
use aauth_keys::time::UnixTime;
use aauth_metadata::outbound::{RevocationError, Revoker, ServerSigner};
use aauth_metadata::{PersonServerMetadata, ResourceMetadata, Transport, TransportError};
use aauth_test_support::id;
use async_trait::async_trait;
use bytes::Bytes;

/// Answers from a script, in order, and records what was sent.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<http::Response<Bytes>>>,
    seen: Mutex<Vec<http::Request<Bytes>>>,
}

#[async_trait]
impl Transport for Scripted {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        self.seen.lock().unwrap().push(req);
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| TransportError::new("no more answers"))
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Bytes> {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from(body.to_owned())).unwrap()
}

const PS_DOC: &str = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","auth_token_endpoint":"https://ps.example/auth-token","person_token_endpoint":"https://ps.example/person-token","revocation_endpoint":"https://ps.example/revoke"}"#;

fn revoker(script: Vec<http::Response<Bytes>>) -> (Revoker, Arc<Scripted>) {
    let transport = Arc::new(Scripted {
        answers: Mutex::new(script.into()),
        seen: Mutex::default(),
    });
    let signer = ServerSigner::new(
        id("https://agent.example"),
        "aauth-agent.json",
        Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
        "key-1",
    );
    (
        Revoker::new(signer, Arc::clone(&transport) as Arc<dyn Transport>),
        transport,
    )
}

fn header(r: &http::Request<Bytes>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_revocation_is_signed_as_the_sender_with_its_body_covered() {
    let (r, t) = revoker(vec![answer(200, &[], PS_DOC), answer(200, &[], "")]);
    let out = r
        .revoke::<PersonServerMetadata>(&id("https://ps.example"), "jti-1", 1_800_003_600, NOW)
        .await
        .unwrap();
    assert_eq!(out, None);
    let seen = t.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].uri().to_string(),
        "https://ps.example/.well-known/aauth-person.json"
    );
    let post = &seen[1];
    assert_eq!(post.method(), http::Method::POST);
    assert_eq!(post.uri().to_string(), "https://ps.example/revoke");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(post.body()).unwrap(),
        serde_json::json!({"jti": "jti-1", "exp": 1_800_003_600})
    );
    assert_eq!(
        header(post, "signature-key"),
        r#"sig=jwks_uri;id="https://agent.example";dwk="aauth-agent.json";kid="key-1""#
    );
    let input = header(post, "signature-input");
    assert!(
        input.contains("\"content-type\"") && input.contains("\"content-digest\""),
        "{input}"
    );
    assert!(
        input.contains(";nonce="),
        "a state-changing request is unique: {input}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_202_is_followed_to_the_end_of_the_cascade() {
    let (r, t) = revoker(vec![
        answer(200, &[], PS_DOC),
        answer(
            202,
            &[("location", "/revoke/pending/7"), ("retry-after", "2")],
            "",
        ),
        answer(202, &[("location", "/revoke/pending/7")], ""),
        answer(
            200,
            &[],
            r#"{"downstream":[{"recipient":"https://resource.example"}]}"#,
        ),
    ]);
    let out = r
        .revoke::<PersonServerMetadata>(&id("https://ps.example"), "jti-1", 1_800_003_600, NOW)
        .await
        .unwrap();
    assert_eq!(
        out.unwrap()["downstream"][0]["recipient"],
        "https://resource.example"
    );
    let seen = t.seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for poll in &seen[2..] {
        assert_eq!(poll.method(), http::Method::GET);
        assert_eq!(
            poll.uri().to_string(),
            "https://ps.example/revoke/pending/7"
        );
        assert!(header(poll, "signature-key").starts_with("sig=jwks_uri"));
    }
}

#[tokio::test(start_paused = true)]
async fn each_refusal_has_its_code() {
    let no_endpoint = r#"{"issuer":"https://resource.example"}"#;
    let cases: Vec<(Vec<http::Response<Bytes>>, &str)> = vec![
        (
            vec![answer(200, &[], no_endpoint)],
            "revocation_unsupported",
        ),
        (vec![answer(404, &[], "")], "revocation_unavailable"),
        (vec![], "revocation_unavailable"),
        (
            vec![
                answer(200, &[], RS_DOC),
                answer(403, &[], r#"{"error":"unsupported_iss"}"#),
            ],
            "revocation_unsupported",
        ),
        (
            vec![answer(200, &[], RS_DOC), answer(500, &[], "")],
            "revocation_unavailable",
        ),
        // A `403` that is not `unsupported_iss` refused this request (a signer it does
        // not take yet, a key it could not fetch): not "takes none from here".
        (
            vec![
                answer(200, &[], RS_DOC),
                answer(403, &[], r#"{"error":"denied"}"#),
            ],
            "revocation_unavailable",
        ),
        (
            vec![answer(200, &[], RS_DOC), answer(403, &[], "")],
            "revocation_unavailable",
        ),
        (
            vec![answer(200, &[], RS_DOC), answer(401, &[], "")],
            "revocation_unavailable",
        ),
        (
            vec![
                answer(200, &[], RS_DOC),
                answer(202, &[("location", "https://evil.example/p")], ""),
            ],
            "revocation_unavailable",
        ),
        (
            vec![
                answer(200, &[], RS_DOC),
                answer(202, &[("location", "/p")], ""),
                answer(202, &[("location", "/p")], ""),
                answer(202, &[("location", "/p")], ""),
            ],
            "revocation_unavailable",
        ),
    ];
    for (script, code) in cases {
        let (r, _) = revoker(script);
        let err = r
            .max_polls(2)
            .revoke::<ResourceMetadata>(&id("https://resource.example"), "j", 1_800_000_600, NOW)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    }
    let (r, _) = revoker(vec![
        answer(200, &[], RS_DOC),
        answer(429, &[("retry-after", "5")], r#"{"error":"rate_limited"}"#),
    ]);
    assert_eq!(
        r.revoke::<ResourceMetadata>(&id("https://resource.example"), "j", 1_800_000_600, NOW)
            .await,
        Err(RevocationError::RateLimited {
            retry_after: Some(5)
        })
    );
    // An HTTP-date is the seconds until it.
    let date =
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW.0 + 90));
    let (r, _) = revoker(vec![
        answer(200, &[], RS_DOC),
        answer(
            429,
            &[("retry-after", &date)],
            r#"{"error":"rate_limited"}"#,
        ),
    ]);
    assert_eq!(
        r.revoke::<ResourceMetadata>(&id("https://resource.example"), "j", 1_800_000_600, NOW)
            .await,
        Err(RevocationError::RateLimited {
            retry_after: Some(90)
        })
    );
}

const NOW: UnixTime = UnixTime(1_800_000_000);

const RS_DOC: &str = r#"{"issuer":"https://resource.example","revocation_endpoint":"https://resource.example/revoke"}"#;
