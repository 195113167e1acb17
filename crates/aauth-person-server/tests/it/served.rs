//! The Person Server mounted on an axum `Router` through `EndpointService`: the same
//! answers as `handle`, the body bound enforced before the server sees it, and the
//! application's own routes left alone.

use super::*;
use aauth_metadata::serve::EndpointService;
use aauth_signing::sign_request_unique;
use aauth_test_support::time::fixed_clock;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

async fn call(app: &mut axum::Router, req: http::Request<Full<Bytes>>) -> (StatusCode, Vec<u8>) {
    let resp = Service::call(app, req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// A request as it arrives at the server: origin-form path, `Host` header.
fn arriving(req: http::Request<Vec<u8>>) -> http::Request<Full<Bytes>> {
    request::to_server(req).map(|b| Full::new(Bytes::from(b)))
}

#[tokio::test]
async fn the_person_server_serves_from_an_axum_router() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let World {
        ps,
        agent,
        agent_token,
        ..
    } = w;
    let clock: Arc<dyn aauth_keys::time::Clock> = fixed_clock();
    let mut app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .fallback_service(EndpointService::new(Arc::new(ps), clock).body_limit(4096));

    let (s, body) = call(
        &mut app,
        arriving(
            http::Request::get("https://ps.example/.well-known/aauth-person.json")
                .body(Vec::new())
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["issuer"], "https://ps.example");

    // A signed person-token request through the router gets its token.
    let mut req = http::Request::post(format!("https://ps.example{PERSON_TOKEN_PATH}"))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({ "resource": "https://resource.example" })
                .to_string()
                .into_bytes(),
        )
        .unwrap();
    sign_request_unique(
        &mut req,
        &agent,
        &Scheme::jwt(agent_token.clone()),
        NOW,
        &mut OsRandom,
    )
    .unwrap();
    let (s, body) = call(&mut app, arriving(req)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["person_token"]
            .as_str()
            .is_some_and(|t| t.contains('.'))
    );

    // The same request unsigned: the server's own 401.
    let req = http::Request::post(format!("https://ps.example{PERSON_TOKEN_PATH}"))
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .unwrap();
    assert_eq!(
        call(&mut app, arriving(req)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A body over the bound never reaches the server: 413 with a problem body.
    let req = http::Request::post(format!("https://ps.example{PERSON_TOKEN_PATH}"))
        .header("content-type", "application/json")
        .body(vec![b' '; 5000])
        .unwrap();
    let (s, body) = call(&mut app, arriving(req)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("invalid_request"));

    // A path the Person Server does not serve: 404; the application's route: its own.
    let get = |p: &str| {
        arriving(
            http::Request::get(format!("https://ps.example{p}"))
                .body(Vec::new())
                .unwrap(),
        )
    };
    assert_eq!(
        call(&mut app, get("/nowhere")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&mut app, get("/health")).await,
        (StatusCode::OK, b"ok".to_vec())
    );
}
