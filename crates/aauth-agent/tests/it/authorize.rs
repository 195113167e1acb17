//! The authorization endpoint (draft -11 §Authorization Endpoint Responses): its `401`s
//! answered as any other resource's (AG-60).

use std::sync::atomic::Ordering;

use aauth_agent::AgentError;
use aauth_test_support::net::Seen;
use aauth_tokens::ServerId;

use crate::support::{NOW, parties, response, scripted};

const METADATA: &str = r#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json","authorization_endpoint":"https://resource.example/authorize"}"#;

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// A request's signature `created`.
fn created(seen: &Seen) -> u64 {
    let input = seen.header("signature-input");
    let after = input.split("created=").nth(1).unwrap();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// An authorization request whose first answer is a `401` with `header` (and a `Date`
/// 30 s behind the agent's clock), its second `{"status":"authorized"}`: how many person
/// tokens the agent obtained, and the requests it posted.
async fn answered(header: (&str, &str)) -> (usize, Vec<Seen>) {
    let w = parties();
    let behind = date(NOW.0 - 30);
    w.net.host(
        "resource.example",
        scripted(vec![
            response(200, &[], METADATA),
            response(401, &[header, ("date", &behind)], ""),
            response(200, &[], r#"{"status":"authorized"}"#),
        ]),
    );
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));
    let resource = ServerId::parse("https://resource.example").unwrap();
    client
        .authorize(&resource, "data.read", None)
        .await
        .unwrap();
    let posts = w
        .net
        .seen()
        .into_iter()
        .filter(|s| s.path == "/authorize")
        .collect();
    (ps.person_calls.load(Ordering::SeqCst), posts)
}

/// AG-60: `clock_skew` at the authorization endpoint corrects `created` from `Date` and
/// signs again with the same person token (a fresh one has the same skew).
#[tokio::test]
async fn a_clock_skew_at_the_authorization_endpoint_corrects_the_time_and_keeps_the_token() {
    let (obtained, posts) = answered(("signature-error", "error=clock_skew")).await;
    assert_eq!(obtained, 1, "no new person token");
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0].header("signature-key"),
        posts[1].header("signature-key")
    );
    assert_eq!(created(&posts[0]), NOW.0);
    assert_eq!(
        created(&posts[1]),
        NOW.0 - 30,
        "dated by the server's clock"
    );
}

/// `invalid_input` naming a component: signed again covering it, with the same person
/// token.
#[tokio::test]
async fn required_input_at_the_authorization_endpoint_is_covered_with_the_same_token() {
    let (obtained, posts) = answered((
        "signature-error",
        r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "@target-uri")"#,
    ))
    .await;
    assert_eq!(obtained, 1, "no new person token");
    assert_eq!(
        posts[0].header("signature-key"),
        posts[1].header("signature-key")
    );
    assert!(
        !posts[0]
            .header("signature-input")
            .contains("\"@target-uri\"")
    );
    assert!(
        posts[1]
            .header("signature-input")
            .contains("\"@target-uri\"")
    );
}

/// `revoked_jwt`/`expired_jwt` on the person token, or `requirement=person-token`: one
/// fresh person token.
#[tokio::test]
async fn a_refused_person_token_at_the_authorization_endpoint_is_replaced_once() {
    for header in [
        ("signature-error", "error=revoked_jwt"),
        ("signature-error", "error=expired_jwt"),
        ("aauth-requirement", "requirement=person-token"),
    ] {
        let (obtained, posts) = answered(header).await;
        assert_eq!(obtained, 2, "{header:?}");
        assert_ne!(
            posts[0].header("signature-key"),
            posts[1].header("signature-key"),
            "{header:?}"
        );
    }
}

/// A `401` carrying neither a signature error nor a person-token requirement, or
/// refusing again what was answered, is the resource's refusal.
#[tokio::test]
async fn other_401s_at_the_authorization_endpoint_are_refusals() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![
            response(200, &[], METADATA),
            response(401, &[], r#"{"error":"nope"}"#),
            response(200, &[], METADATA),
            response(401, &[("signature-error", "error=revoked_jwt")], ""),
            response(401, &[("signature-error", "error=revoked_jwt")], ""),
        ]),
    );
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));
    let resource = ServerId::parse("https://resource.example").unwrap();
    match client.authorize(&resource, "data.read", None).await {
        Err(AgentError::Refused { status, error }) => {
            assert_eq!((status.as_u16(), error.as_str()), (401, "nope"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ps.person_calls.load(Ordering::SeqCst), 1);
    assert!(matches!(
        client.authorize(&resource, "data.read", None).await,
        Err(AgentError::Unsatisfiable { .. })
    ));
    assert_eq!(ps.person_calls.load(Ordering::SeqCst), 2);
}
