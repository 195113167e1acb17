//! How the client answers challenges across calls: what one resource asks for does not
//! break its other routes or other resources, and a token just obtained is used.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aauth_agent::AgentError;
use aauth_headers::SignatureInput;
use bytes::Bytes;
use http::{Request, StatusCode};

use crate::support::{Fault, NOW, auth_route, get, parties, response, scripted};

/// A resource that repeats the profile's components in `required_input` (as the
/// Signature-Key draft's example does) gets each covered once; the body components it
/// names are covered on requests with a body and never demanded of one without.
#[tokio::test]
async fn required_input_naming_the_profile_and_the_body_is_covered_once_and_per_request() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![
            response(
                401,
                &[(
                    "signature-error",
                    r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "content-type" "content-digest" "@target-uri")"#,
                )],
                "",
            ),
            response(200, &[], "posted"),
            response(200, &[], "read"),
        ]),
    );
    let client = w.client(None);
    let post = Request::post("https://resource.example/items")
        .header("content-type", "application/json")
        .body(Bytes::from_static(b"{\"a\":1}"))
        .unwrap();
    assert_eq!(client.send(post).await.unwrap().body(), "posted");
    let retry = w.net.seen()[1].header("signature-input");
    let parsed = SignatureInput::parse(&retry).expect("no component twice");
    let params = parsed.get("sig").unwrap().params.as_ref().unwrap();
    for c in [
        "signature-key",
        "content-digest",
        "content-type",
        "@target-uri",
    ] {
        assert!(params.covers(c), "{c} in {retry}");
    }
    // A later GET has no body: it goes out, covering what it can.
    assert_eq!(client.send(get("/items")).await.unwrap().body(), "read");
    let get_input = w.net.seen()[2].header("signature-input");
    assert!(SignatureInput::parse(&get_input).is_ok(), "{get_input}");
    assert!(get_input.contains("\"@target-uri\""));
    assert!(!get_input.contains("content-digest"));
}

/// AG-60: a `clock_skew` correction is kept for the server that asked for it, bounded,
/// and dropped when the server no longer sees a skew; a server claiming a date far in
/// the past moves nothing.
#[tokio::test]
async fn a_clock_correction_is_per_server_and_bounded() {
    let w = parties();
    let date =
        |secs: u64| httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs));
    let far_back = date(631_152_000); // 1990
    w.net.host(
        "resource.example",
        scripted(vec![
            response(
                401,
                &[("signature-error", "error=clock_skew"), ("date", &far_back)],
                "",
            ),
            response(200, &[], "ok"),
        ]),
    );
    let client = w.client(None);
    assert!(matches!(
        client.send(get("/x")).await,
        Err(AgentError::ClockSkew)
    ));
    assert_eq!(
        client.send(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    let created = |i: usize| {
        let input = w.net.seen()[i].header("signature-input");
        assert!(input.ends_with(&format!("created={}", NOW.0)), "{input}");
    };
    created(1);

    // Thirty seconds behind at resource.example: corrected there only.
    let behind = date(NOW.0 - 30);
    w.net.host(
        "resource.example",
        scripted(vec![
            response(
                401,
                &[("signature-error", "error=clock_skew"), ("date", &behind)],
                "",
            ),
            response(200, &[], "ok"),
            response(
                401,
                &[
                    ("signature-error", "error=clock_skew"),
                    ("date", &date(NOW.0)),
                ],
                "",
            ),
            response(200, &[], "ok"),
        ]),
    );
    w.net
        .host("other.example", scripted(vec![response(200, &[], "other")]));
    assert_eq!(
        client.send(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    let to_resource = w.net.seen()[3].header("signature-input");
    assert!(to_resource.ends_with(&format!("created={}", NOW.0 - 30)));
    let other = Request::get("https://other.example/y")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(client.send(other).await.unwrap().body(), "other");
    created(4);
    // The server's clock caught up: the correction goes.
    assert_eq!(
        client.send(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    created(6);
}

/// An agent-token route of a resource whose other routes gave the agent an auth token:
/// the agent token is presented there, and the auth token stays for the routes that take
/// it (no Person Server call, no consent again).
#[tokio::test]
async fn an_agent_token_route_keeps_the_tokens_of_the_other_routes() {
    let w = parties();
    let who = w.serve_public_and_private();
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));
    for path in ["/private", "/public", "/private", "/public"] {
        let resp = client.send(get(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(who.calls(), 4);
    assert_eq!(
        (
            ps.person_calls.load(Ordering::SeqCst),
            ps.auth_calls.load(Ordering::SeqCst)
        ),
        (1, 1),
        "the auth token was obtained once and kept"
    );
    // The last /private went straight out with the auth token.
    let typs = w.net.typs();
    assert_eq!(
        &typs[typs.len() - 3..],
        ["aa-auth+jwt", "aa-auth+jwt", "aa-agent+jwt"]
    );
}

/// A token that arrives inside the refresh margin (its lifetime capped by the tokens it
/// derives from) is still presented in the call that obtained it, where the cache would
/// pass it over and the resource's second `auth-token` challenge end the call.
#[tokio::test]
async fn a_token_obtained_inside_the_refresh_margin_is_presented() {
    let w = parties();
    let who = w.serve(auth_route("read"));
    let ps = w.ps();
    *ps.fault.lock().unwrap() = Some(Fault::AuthShortLived);
    let client = w.client(Some(ps.clone()));
    let resp = client.send(get("/doc")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(who.calls(), 1);
    assert_eq!(w.net.typs().last().map(String::as_str), Some("aa-auth+jwt"));
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 1);
}

/// AG-70 top down: before the Person Server is asked for a token that the agent token's
/// `exp` caps, an agent token with less than twice the margin left is refreshed.
#[tokio::test]
async fn the_agent_token_is_refreshed_before_a_person_token_is_asked_for() {
    let w = parties();
    w.serve_public_and_private();
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));
    client.send(get("/public")).await.unwrap();
    assert_eq!(client.agent().refreshes(), 1);
    // 500 s left: fresh for a request (more than the 300 s margin), too short to cap a
    // person token.
    w.clock.advance(Duration::from_secs(3600 - 500));
    client.send(get("/public")).await.unwrap();
    assert_eq!(client.agent().refreshes(), 1, "still fresh for a request");
    let resp = client.send(get("/private")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(client.agent().refreshes(), 2);
    assert_eq!(ps.person_calls.load(Ordering::SeqCst), 1);
}
