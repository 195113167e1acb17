//! A session token the resource refuses is dropped: a `403` `invalid_session` to a request
//! that carried it (what `aauth-resource`'s gate answers for a session it does not know)
//! has the agent forget the session and send the request once more without it, and later
//! calls go without it. Any other `403` is the answer, the session kept.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};

use crate::support::{get, id, parties, response};

/// The refusal `aauth-resource`'s gate gives a session it does not know.
const UNKNOWN_SESSION: &str = r#"{"type":"about:blank","status":403,"title":"Session refused","error":"invalid_session","detail":"unknown or expired session token"}"#;

/// Another refusal of a request that carried the session: the route's scope, or the
/// application's own.
const NOT_THIS_ROUTE: &str = r#"{"type":"about:blank","status":403,"title":"Forbidden","error":"forbidden","detail":"the session was not granted this route's scope"}"#;

/// A resource that issued session `c2Vzc2lvbi0x` at `/login` and no longer knows it:
/// a request carrying it is refused; one without it gets `without`.
fn forgetful(without: (u16, &'static str)) -> crate::support::Handler {
    Arc::new(move |req: Request<Bytes>| {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let resp = if req.uri().path() == "/login" {
            response(200, &[("aauth-access", "c2Vzc2lvbi0x")], "")
        } else if auth == "AAuth c2Vzc2lvbi0x" {
            response(
                403,
                &[("content-type", "application/problem+json")],
                UNKNOWN_SESSION,
            )
        } else {
            response(without.0, &[], without.1)
        };
        Box::pin(async move { resp })
    })
}

#[tokio::test]
async fn a_refused_session_is_dropped_and_the_request_sent_once_more_without_it() {
    let w = parties();
    w.net
        .host("resource.example", forgetful((200, "public data")));
    let client = w.client(None);
    client.send(get("/login")).await.unwrap();
    let resource = id("https://resource.example");
    assert!(client.cache().session(&resource).is_some());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "public data");
    assert!(client.cache().session(&resource).is_none());
    client.send(get("/data")).await.unwrap();
    let auth: Vec<_> = w
        .net
        .seen()
        .iter()
        .map(|s| s.header("authorization"))
        .collect();
    assert_eq!(auth, ["", "AAuth c2Vzc2lvbi0x", "", ""]);
}

#[tokio::test]
async fn a_refusal_without_the_session_is_the_answer() {
    let w = parties();
    let required = r#"{"error":"forbidden","detail":"a session token is required (Authorization: AAuth); obtain one from the resource"}"#;
    w.net.host("resource.example", forgetful((403, required)));
    let client = w.client(None);
    client.send(get("/login")).await.unwrap();
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.body(),
        required,
        "the answer to the request without it"
    );
    assert_eq!(w.net.seen().len(), 3, "sent once more, not again");
    assert!(
        client
            .cache()
            .session(&id("https://resource.example"))
            .is_none()
    );
}

#[tokio::test]
async fn any_other_refusal_of_a_request_with_the_session_keeps_it_and_is_not_sent_again() {
    let w = parties();
    w.net.host(
        "resource.example",
        Arc::new(|req: Request<Bytes>| {
            let resp = if req.uri().path() == "/login" {
                response(200, &[("aauth-access", "c2Vzc2lvbi0x")], "")
            } else {
                response(
                    403,
                    &[("content-type", "application/problem+json")],
                    NOT_THIS_ROUTE,
                )
            };
            Box::pin(async move { resp })
        }),
    );
    let client = w.client(None);
    client.send(get("/login")).await.unwrap();
    let resp = client.send(get("/admin")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.body(), NOT_THIS_ROUTE);
    assert_eq!(w.net.seen().len(), 2, "not sent again");
    assert!(
        client
            .cache()
            .session(&id("https://resource.example"))
            .is_some(),
        "the session is kept"
    );
}
