//! The OAuth fallback answers an API's refusals of its token as `BearerLayer` does: a
//! token refused as `invalid_token` is dropped and the request sent once more with a new
//! one; a DPoP proof refused for want of the API's nonce (`use_dpop_nonce`) goes once
//! more with the nonce the API gave.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aauth_keys::PrivateKey;
use http::StatusCode;

use crate::support::{get, id, parties, response};

fn tokens(
    w: &crate::support::Parties,
    dpop: Option<Arc<PrivateKey>>,
) -> Arc<aauth_oauth::ClientCredentials> {
    let mut config = aauth_oauth::ClientConfig::new(
        aauth_metadata::HttpsUrl::parse("https://as.example/token").unwrap(),
        aauth_oauth::ClientAuth::SecretBasic {
            client_id: "svc".to_owned(),
            secret: "pw".to_owned(),
        },
    );
    if let Some(key) = dpop {
        config = config.dpop(key);
    }
    Arc::new(aauth_oauth::ClientCredentials::new(
        config,
        w.net.clone(),
        w.clock.clone(),
    ))
}

/// An authorization server issuing `tok-1`, `tok-2`, … of `token_type`.
fn issuing(w: &crate::support::Parties, token_type: &'static str) -> Arc<AtomicUsize> {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&issued);
    w.net.host(
        "as.example",
        Arc::new(move |_| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                let body = format!(
                    r#"{{"access_token":"tok-{n}","token_type":"{token_type}","expires_in":300}}"#
                );
                response(200, &[], &body)
            })
        }),
    );
    issued
}

fn to_the_api(w: &crate::support::Parties) -> Vec<aauth_test_support::net::Seen> {
    w.net
        .seen()
        .into_iter()
        .filter(|s| s.header("host") == "resource.example")
        .collect()
}

#[tokio::test]
async fn a_fallback_token_refused_as_invalid_is_dropped_and_the_request_sent_once_more() {
    let w = parties();
    let issued = issuing(&w, "Bearer");
    // The API takes only `tok-2`: `tok-1` was revoked.
    w.net.host(
        "resource.example",
        Arc::new(|req| {
            Box::pin(async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                match auth.as_str() {
                    "Bearer tok-2" => response(200, &[], "hello client"),
                    a if a.starts_with("Bearer ") => response(
                        401,
                        &[("www-authenticate", r#"Bearer error="invalid_token""#)],
                        "",
                    ),
                    _ => response(401, &[("www-authenticate", r#"Bearer realm="api""#)], ""),
                }
            })
        }),
    );
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .oauth_fallback(tokens(&w, None), [id("https://resource.example")])
        .build(w.net.clone());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = to_the_api(&w);
    let auth: Vec<_> = seen.iter().map(|s| s.header("authorization")).collect();
    assert_eq!(auth[1..], ["Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    // The new token is the one kept.
    client.send(get("/data")).await.unwrap();
    assert_eq!(
        to_the_api(&w).last().unwrap().header("authorization"),
        "Bearer tok-2"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

/// The `nonce` claim of a DPoP proof.
fn proof_nonce(proof: &str) -> Option<String> {
    let payload = proof.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&aauth_keys::base64url::decode(payload).ok()?).ok()?;
    claims["nonce"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_fallback_proof_without_the_apis_nonce_goes_once_more_with_it() {
    let w = parties();
    issuing(&w, "DPoP");
    // The API wants `api-nonce-1` in every proof.
    w.net.host(
        "resource.example",
        Arc::new(|req| {
            Box::pin(async move {
                let Some(proof) = req.headers().get("dpop").and_then(|v| v.to_str().ok()) else {
                    return response(
                        401,
                        &[(
                            "www-authenticate",
                            r#"Bearer realm="api", DPoP algs="EdDSA""#,
                        )],
                        "",
                    );
                };
                if proof_nonce(proof).as_deref() == Some("api-nonce-1") {
                    return response(200, &[], "hello bound client");
                }
                response(
                    401,
                    &[
                        (
                            "www-authenticate",
                            r#"DPoP error="use_dpop_nonce", algs="EdDSA""#,
                        ),
                        ("dpop-nonce", "api-nonce-1"),
                    ],
                    "",
                )
            })
        }),
    );
    let key = Arc::new(PrivateKey::ed25519_from_seed(&[7; 32]));
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .oauth_fallback(tokens(&w, Some(key)), [id("https://resource.example")])
        .build(w.net.clone());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "hello bound client");
    let nonces: Vec<_> = to_the_api(&w)
        .iter()
        .skip(1)
        .map(|s| proof_nonce(&s.header("dpop")))
        .collect();
    assert_eq!(nonces, [None, Some("api-nonce-1".to_owned())]);
}
