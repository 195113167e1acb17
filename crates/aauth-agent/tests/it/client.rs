//! The signing client against real resource routes: each challenge answered by itself,
//! each token checked before it is used.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use aauth_agent::{AgentError, TokenKind};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_resource::{Access, RoutePolicy};
use aauth_tokens::ResourceTokenBuilder;
use bytes::Bytes;
use http::StatusCode;

use crate::support::{Fault, NOW, auth_route, get, id, parties, response, scripted};

#[tokio::test]
async fn agent_token_mode_signs_with_the_agent_token_and_declares_capabilities() {
    let w = parties();
    let who = w.serve(RoutePolicy::new(Access::AgentToken));
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .on_interaction(|_| {})
        .build(w.net.clone());
    let resp = client.send(get("/data?page=2")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "agent aauth:assistant@agent.example");
    let seen = w.net.seen();
    assert_eq!(w.net.typs(), ["aa-agent+jwt"]);
    assert_eq!(seen[0].header("aauth-capabilities"), "interaction");
    assert!(
        seen[0].header("signature-input").contains("\"@query\""),
        "the query is covered"
    );
    assert_eq!(who.calls(), 1);
}

/// Checklist AG-61: the Person Server's recoverable refusals are recovered from, once:
/// a presented token that expired or was revoked means a fresh person token and a fresh
/// resource token; a revoked resource token a fresh one; `as_unreachable` a pause and
/// one more try.
#[tokio::test(start_paused = true)]
async fn the_agent_recovers_from_the_person_servers_recoverable_refusals() {
    for (code, fresh_person) in [
        ("expired_presented_token", true),
        ("revoked_presented_token", true),
        ("revoked_resource_token", false),
        ("as_unreachable", false),
    ] {
        let w = parties();
        let who = w.serve(auth_route("read"));
        let ps = w.ps();
        *ps.fault.lock().unwrap() = Some(Fault::AuthRefusedOnce(code));
        let client = w.client(Some(ps.clone()));
        let resp = client.send(get("/doc")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{code}");
        assert_eq!(who.calls(), 1, "{code}");
        assert_eq!(
            (
                ps.person_calls.load(Ordering::SeqCst),
                ps.auth_calls.load(Ordering::SeqCst)
            ),
            (if fresh_person { 2 } else { 1 }, 2),
            "{code}"
        );
    }
    // Refused again after the recovery: surfaced, not looped.
    let w = parties();
    let _who = w.serve(auth_route("read"));
    let ps = w.ps();
    *ps.fault.lock().unwrap() = Some(Fault::AuthRefused("revoked_resource_token"));
    let client = w.client(Some(ps.clone()));
    assert!(client.send(get("/doc")).await.is_err());
    assert_eq!(
        ps.auth_calls.load(Ordering::SeqCst),
        2,
        "one recovery, no more"
    );
    // A refusal that is not recoverable is surfaced at once.
    let w = parties();
    let _who = w.serve(auth_route("read"));
    let ps = w.ps();
    *ps.fault.lock().unwrap() = Some(Fault::AuthRefusedOnce("invalid_resource_token"));
    let client = w.client(Some(ps.clone()));
    assert!(matches!(
        client.send(get("/doc")).await,
        Err(AgentError::PersonServer { ref error, .. }) if error == "invalid_resource_token"
    ));
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_three_party_flow_completes_by_itself_and_is_cached() {
    let w = parties();
    let who = w.serve(auth_route("read"));
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));

    let resp = client.send(get("/doc")).await.unwrap();
    assert_eq!(
        (resp.status(), resp.body().as_ref()),
        (
            StatusCode::OK,
            b"person https://ps.example person-1".as_ref()
        )
    );
    // agent token → 401 person-token; person token → 401 auth-token; auth token → 200.
    assert_eq!(
        w.net.typs(),
        ["aa-agent+jwt", "aa-person+jwt", "aa-auth+jwt"]
    );
    assert_eq!(
        w.net.seen()[0].header("aauth-capabilities"),
        "",
        "no hooks, no capabilities"
    );
    assert_eq!(
        (
            ps.person_calls.load(Ordering::SeqCst),
            ps.auth_calls.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    // AG-21: the presented token is the person token the resource token names.
    let (_, presented, _) = ps.last_auth_request.lock().unwrap().clone().unwrap();
    let person = client
        .cache()
        .get(
            &id("https://resource.example"),
            None,
            TokenKind::Person,
            w.agent_key.public_key().thumbprint().as_str(),
            NOW,
        )
        .unwrap();
    assert_eq!(presented, person.token.as_ref());

    // The next request goes straight out with the cached auth token.
    let resp = client.send(get("/doc")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(w.net.typs().len(), 4);
    assert_eq!(w.net.typs()[3], "aa-auth+jwt");
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 1);
    assert_eq!(who.calls(), 2);

    // Rotating the key drops every token bound to the old one.
    client.rotate(Arc::new(PrivateKey::ed25519_from_seed(&[20; 32])));
    w.provider
        .enroll(
            &w.agent_id,
            PrivateKey::ed25519_from_seed(&[20; 32]).public_key(),
            Some(&id("https://ps.example")),
        )
        .unwrap();
    let resp = client.send(get("/doc")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        &w.net.typs()[4..],
        ["aa-agent+jwt", "aa-person+jwt", "aa-auth+jwt"]
    );
    assert_eq!(ps.person_calls.load(Ordering::SeqCst), 2);
}

/// The compatibility profile (off by default): a resource that lags -11, as the
/// TypeScript reference's does, names the presented token in its resource tokens only by
/// `person_token_jti`. Strict, the agent refuses such a token (AG-22) and never takes it
/// to its Person Server; with `Compatibility::person_token_jti` on, it reads the old claim,
/// checks it against the person token it presented, and the flow completes.
#[tokio::test]
async fn a_resource_token_naming_only_person_token_jti_is_taken_only_under_the_profile() {
    let w = parties();
    let who = w.serve_lagging(auth_route("read"));
    let ps = w.ps();

    let strict = w.client(Some(ps.clone()));
    match strict.send(get("/doc")).await {
        Err(AgentError::TokenCheck {
            token: "resource",
            check: "format",
            reason,
        }) => assert!(reason.contains("presented_jti"), "{reason}"),
        other => panic!("strict -11 must refuse the resource token: {other:?}"),
    }
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 0);
    assert_eq!(who.calls(), 0);

    let compat = w.client_with(
        Some(ps.clone()),
        aauth_agent::Compatibility::strict().person_token_jti(true),
    );
    let resp = compat.send(get("/doc")).await.unwrap();
    assert_eq!(
        (resp.status(), resp.body().as_ref()),
        (
            StatusCode::OK,
            b"person https://ps.example person-1".as_ref()
        )
    );
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 1);
    // What went to the Person Server is the lagging token itself, with the person token
    // it names.
    let (rt, presented, _) = ps.last_auth_request.lock().unwrap().clone().unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &aauth_keys::base64url::decode(rt.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    let person: serde_json::Value = serde_json::from_slice(
        &aauth_keys::base64url::decode(presented.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert!(claims.get("presented_jti").is_none(), "{claims}");
    assert_eq!(claims["person_token_jti"], person["jti"]);
}

/// Under the profile a lagging resource token is still checked as any other (AG-22): one
/// whose `person_token_jti` names another token than the one presented is refused.
#[tokio::test]
async fn under_the_profile_person_token_jti_must_name_the_token_presented() {
    let w = parties();
    let ps = w.ps();
    let rs_key = w.rs_key.clone();
    let agent_key = w.agent_key.public_key().clone();
    w.net.host(
        "resource.example",
        Arc::new(move |req: http::Request<Bytes>| {
            let rs_key = rs_key.clone();
            let agent_key = agent_key.clone();
            Box::pin(async move {
                let sk = req.headers()["signature-key"].to_str().unwrap().to_owned();
                let token = sk
                    .split("jwt=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                let claims: serde_json::Value = serde_json::from_slice(
                    &aauth_keys::base64url::decode(token.split('.').nth(1).unwrap()).unwrap(),
                )
                .unwrap();
                if claims["dwk"] == "aauth-agent.json" {
                    return response(
                        401,
                        &[("aauth-requirement", "requirement=person-token")],
                        "",
                    );
                }
                let rt = ResourceTokenBuilder::new(
                    id("https://resource.example"),
                    id("https://ps.example"),
                    id("https://ps.example"),
                    "person-1",
                    "not-the-jti",
                    &agent_key,
                    "read",
                )
                .sign(rs_key.as_ref(), "rs-1", NOW, &mut OsRandom)
                .unwrap()
                .token;
                let old =
                    aauth_test_support::tokens::person_token_jti_only(&rt, rs_key.as_ref(), "rs-1");
                response(
                    401,
                    &[(
                        "aauth-requirement",
                        &format!("requirement=auth-token; resource-token=\"{old}\""),
                    )],
                    "",
                )
            })
        }),
    );
    let client = w.client_with(
        Some(ps.clone()),
        aauth_agent::Compatibility::strict().person_token_jti(true),
    );
    match client.send(get("/doc")).await {
        Err(AgentError::TokenCheck {
            token: "resource",
            check: "presented_jti",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_a_person_server_a_person_token_challenge_is_a_typed_error() {
    let w = parties();
    let who = w.serve(RoutePolicy::new(Access::PersonToken));
    let client = w.client(None);
    match client.send(get("/me")).await {
        Err(AgentError::NoPersonServer { requirement }) => assert_eq!(requirement, "person-token"),
        other => panic!("{other:?}"),
    }
    assert_eq!(who.calls(), 0);
}

#[tokio::test]
async fn tokens_that_fail_the_agents_checks_are_never_used() {
    for (fault, token, check) in [
        (Fault::AuthForeignKey, "auth", "cnf"),
        (Fault::AuthOtherSub, "auth", "sub"),
        (Fault::PersonWrongAud, "person", "verification"),
    ] {
        let w = parties();
        let who = w.serve(auth_route("read"));
        let ps = w.ps();
        *ps.fault.lock().unwrap() = Some(fault);
        let client = w.client(Some(ps.clone()));
        match client.send(get("/doc")).await {
            Err(AgentError::TokenCheck {
                token: t, check: c, ..
            }) => {
                assert_eq!((t, c), (token, check), "{fault:?}");
            }
            other => panic!("{fault:?}: {other:?}"),
        }
        assert_eq!(who.calls(), 0);
        assert!(
            !w.net.typs().contains(&"aa-auth+jwt".to_owned()),
            "{fault:?}: a bad token went out"
        );
    }
}

/// AG-22: a resource token that does not match the request is not taken to the PS.
#[tokio::test]
async fn a_resource_token_failing_ag22_is_not_taken_to_the_person_server() {
    #[derive(Clone, Copy, Debug)]
    enum Bad {
        PresentedJti,
        AgentJkt,
        Signature,
        Issuer,
    }
    let w = parties();
    let ps = w.ps();
    let client = w.client(Some(ps.clone()));
    for (bad, check) in [
        (Bad::PresentedJti, "presented_jti"),
        (Bad::AgentJkt, "agent_jkt"),
        (Bad::Signature, "signature"),
        // Refused on its claim, before any key is fetched for the issuer it names.
        (Bad::Issuer, "iss"),
    ] {
        let rs_key = w.rs_key.clone();
        let agent_key = w.agent_key.public_key().clone();
        // The resource answers the agent token with person-token, and the person token
        // with a resource token spoiled by `bad`.
        w.net.host(
            "resource.example",
            Arc::new(move |req: http::Request<Bytes>| {
                let rs_key = rs_key.clone();
                let agent_key = agent_key.clone();
                Box::pin(async move {
                    let sk = req.headers()["signature-key"].to_str().unwrap().to_owned();
                    let token = sk
                        .split("jwt=\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap()
                        .to_owned();
                    let claims: serde_json::Value = serde_json::from_slice(
                        &aauth_keys::base64url::decode(token.split('.').nth(1).unwrap()).unwrap(),
                    )
                    .unwrap();
                    if claims["dwk"] == "aauth-agent.json" {
                        return response(
                            401,
                            &[("aauth-requirement", "requirement=person-token")],
                            "",
                        );
                    }
                    let stranger = PrivateKey::ed25519_from_seed(&[90; 32]);
                    let jti = match bad {
                        Bad::PresentedJti => "not-the-jti",
                        _ => claims["jti"].as_str().unwrap(),
                    };
                    let key = match bad {
                        Bad::AgentJkt => stranger.public_key(),
                        _ => &agent_key,
                    };
                    let iss = match bad {
                        // Signed by the resource's key but claiming another issuer.
                        Bad::Issuer => "https://other.example",
                        _ => "https://resource.example",
                    };
                    let signer: &PrivateKey = match bad {
                        Bad::Signature => &stranger,
                        _ => &rs_key,
                    };
                    let rt = ResourceTokenBuilder::new(
                        id(iss),
                        id("https://ps.example"),
                        id("https://ps.example"),
                        "person-1",
                        jti,
                        key,
                        "read",
                    )
                    .sign(signer, "rs-1", NOW, &mut OsRandom)
                    .unwrap()
                    .token;
                    response(
                        401,
                        &[(
                            "aauth-requirement",
                            &format!("requirement=auth-token; resource-token=\"{rt}\""),
                        )],
                        "",
                    )
                })
            }),
        );
        match client.send(get("/doc")).await {
            Err(AgentError::TokenCheck {
                token: "resource",
                check: c,
                ..
            }) => assert_eq!(c, check, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
        client.cache().clear();
    }
    assert_eq!(ps.auth_calls.load(Ordering::SeqCst), 0);
}

/// Draft -11 §Covered Components: a resource that needs more than the profile says so
/// with `invalid_input` and `required_input`; the agent signs again, once, covering it, and
/// covers it on every later request to that resource.
#[tokio::test]
async fn invalid_input_is_answered_by_covering_what_the_resource_requires() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![
            response(
                401,
                &[(
                    "signature-error",
                    r#"error=invalid_input, required_input=("@method" "@authority" "@path" "@target-uri" "signature-key")"#,
                )],
                "",
            ),
            response(200, &[], "ok"),
            response(200, &[], "again"),
        ]),
    );
    let client = w.client(None);
    assert_eq!(client.send(get("/x")).await.unwrap().body(), "ok");
    let seen = w.net.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        !seen[0]
            .header("signature-input")
            .contains("\"@target-uri\"")
    );
    assert!(
        seen[1]
            .header("signature-input")
            .contains("\"@target-uri\""),
        "{}",
        seen[1].header("signature-input")
    );
    // Remembered for the resource: covered at once next time.
    assert_eq!(client.send(get("/y")).await.unwrap().body(), "again");
    assert!(
        w.net.seen()[2]
            .header("signature-input")
            .contains("\"@target-uri\"")
    );

    // Asked again after it was covered: surfaced, not looped.
    w.net.host(
        "resource.example",
        scripted(vec![response(
            401,
            &[(
                "signature-error",
                r#"error=invalid_input, required_input=("@target-uri")"#,
            )],
            "",
        )]),
    );
    assert!(client.send(get("/z")).await.is_err());
}

#[tokio::test]
async fn signature_errors_refresh_once_or_correct_the_clock_once() {
    let w = parties();
    // revoked_jwt on the agent token: a new agent token, then success.
    w.net.host(
        "resource.example",
        scripted(vec![
            response(401, &[("signature-error", "error=revoked_jwt")], ""),
            response(200, &[], "ok"),
        ]),
    );
    let client = w.client(None);
    assert_eq!(
        client.send(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(client.agent().refreshes(), 2);
    let typs = w.net.typs();
    let seen = w.net.seen();
    assert_eq!(typs, ["aa-agent+jwt", "aa-agent+jwt"]);
    assert_ne!(
        seen[0].header("signature-key"),
        seen[1].header("signature-key"),
        "a new token"
    );

    // Refused again: surfaced, not looped.
    w.net.host(
        "resource.example",
        scripted(vec![response(
            401,
            &[("signature-error", "error=revoked_jwt")],
            "",
        )]),
    );
    assert!(matches!(
        client.send(get("/x")).await,
        Err(AgentError::Unsatisfiable { .. })
    ));

    // clock_skew with a Date 30 s behind: the retry is dated by the server's clock.
    let behind =
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW.0 - 30));
    w.net.host(
        "resource.example",
        scripted(vec![
            response(
                401,
                &[("signature-error", "error=clock_skew"), ("date", &behind)],
                "",
            ),
            response(200, &[], "ok"),
        ]),
    );
    let n = w.net.seen().len();
    assert_eq!(
        client.send(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    let retry = &w.net.seen()[n + 1];
    assert!(
        retry
            .header("signature-input")
            .ends_with(&format!("created={}", NOW.0 - 30))
    );
    // Without a usable Date it is surfaced.
    w.net.host(
        "resource.example",
        scripted(vec![response(
            401,
            &[("signature-error", "error=clock_skew")],
            "",
        )]),
    );
    assert!(matches!(
        client.send(get("/x")).await,
        Err(AgentError::ClockSkew)
    ));
    // Codes the agent cannot repair are surfaced with the code.
    w.net.host(
        "resource.example",
        scripted(vec![response(
            401,
            &[("signature-error", "error=unknown_key")],
            "",
        )]),
    );
    match client.send(get("/x")).await {
        Err(AgentError::SignatureRefused { code }) => assert_eq!(code, "unknown_key"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_session_token_is_kept_and_presented_covered_by_the_signature() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![response(200, &[("aauth-access", "c2Vzc2lvbi0x")], "")]),
    );
    let client = w.client(None);
    client.send(get("/login")).await.unwrap();
    client.send(get("/data")).await.unwrap();
    let seen = w.net.seen();
    assert_eq!(seen[0].header("authorization"), "");
    assert_eq!(seen[1].header("authorization"), "AAuth c2Vzc2lvbi0x");
    assert!(
        seen[1]
            .header("signature-input")
            .contains("\"authorization\"")
    );
}

#[tokio::test]
async fn requests_to_non_server_uris_are_refused_before_sending() {
    let w = parties();
    let client = w.client(None);
    for uri in [
        "http://resource.example/x",
        "https://resource.example:8443/x",
    ] {
        let req = http::Request::get(uri).body(Bytes::new()).unwrap();
        assert!(
            matches!(client.send(req).await, Err(AgentError::NotAServer { .. })),
            "{uri}"
        );
    }
    assert!(w.net.seen().is_empty());
}

/// A "random" source that fills every buffer with one byte.
struct Constant(u8);

impl aauth_keys::rand::RandomSource for Constant {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), aauth_keys::rand::RandomError> {
        dest.fill(self.0);
        Ok(())
    }
}

#[tokio::test]
async fn a_state_changing_requests_nonce_comes_from_the_injected_source() {
    let w = parties();
    w.serve(RoutePolicy::new(Access::AgentToken));
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .random(aauth_keys::rand::SharedRandom::new(Constant(5)))
        .build(w.net.clone());
    let post = http::Request::post("https://resource.example/data")
        .header("content-type", "application/json")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    assert_eq!(client.send(post).await.unwrap().status(), StatusCode::OK);
    // 16 bytes of 0x05, base64url.
    assert!(
        w.net.seen()[0]
            .header("signature-input")
            .contains(r#"nonce="BQUFBQUFBQUFBQUFBQUFBQ""#),
        "{}",
        w.net.seen()[0].header("signature-input")
    );
}

/// Checklist AG-03: a page names its resource with `rel="aauth-resource"` (a `Link` field
/// or an HTML `<link>`); the agent follows only a link of the metadata document's form,
/// and checks the document's `issuer`.
#[tokio::test]
async fn the_agent_follows_an_aauth_resource_link_and_nothing_else() {
    let w = parties();
    let metadata = r#"{"issuer":"https://resource.example","authorization_endpoint":"https://resource.example/authorize"}"#;
    let link =
        r#"<https://resource.example/.well-known/aauth-resource.json>; rel="aauth-resource""#;
    w.net.host(
        "docs.example",
        scripted(vec![
            response(200, &[("link", link)], "docs"),
            response(
                200,
                &[],
                r#"<html><head><link rel="aauth-resource" href="https://resource.example/.well-known/aauth-resource.json"></head></html>"#,
            ),
            response(
                200,
                &[(
                    "link",
                    r#"<https://evil.example/steal>; rel="aauth-resource""#,
                )],
                "",
            ),
        ]),
    );
    w.net.host(
        "resource.example",
        scripted(vec![
            response(200, &[], metadata),
            response(200, &[], metadata),
        ]),
    );
    let client = w.client(None);
    for _ in 0..2 {
        let (id, doc) = client
            .resource_linked_from("https://docs.example/api")
            .await
            .unwrap();
        assert_eq!(id.as_str(), "https://resource.example");
        assert!(doc.authorization_endpoint.is_some());
    }
    assert!(matches!(
        client
            .resource_linked_from("https://docs.example/api")
            .await,
        Err(AgentError::NotAServer { .. })
    ));
    assert!(
        w.net.seen().iter().all(|s| s.path != "/steal"),
        "a link of another form is never fetched"
    );
}

/// An API that has not moved to AAuth: `401 WWW-Authenticate: Bearer` unless it sees its
/// token; and an authorization server issuing that token.
fn bearer_only_api(w: &crate::support::Parties) {
    w.net.host(
        "resource.example",
        Arc::new(|req| {
            Box::pin(async move {
                let ok = req
                    .headers()
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer tok-1");
                if ok {
                    return http::Response::new(Bytes::from_static(b"hello client"));
                }
                let mut r = http::Response::new(Bytes::new());
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                r.headers_mut().insert(
                    "www-authenticate",
                    http::HeaderValue::from_static(r#"Bearer realm="api""#),
                );
                r
            })
        }),
    );
    w.net.host(
        "as.example",
        Arc::new(|_| {
            Box::pin(async move {
                http::Response::new(Bytes::from_static(
                    br#"{"access_token":"tok-1","token_type":"Bearer","expires_in":300}"#,
                ))
            })
        }),
    );
}

fn fallback_tokens(w: &crate::support::Parties) -> Arc<aauth_oauth::ClientCredentials> {
    Arc::new(aauth_oauth::ClientCredentials::new(
        aauth_oauth::ClientConfig::new(
            aauth_metadata::HttpsUrl::parse("https://as.example/token").unwrap(),
            aauth_oauth::ClientAuth::SecretBasic {
                client_id: "svc".to_owned(),
                secret: "pw".to_owned(),
            },
        ),
        w.net.clone(),
        w.clock.clone(),
    ))
}

#[tokio::test]
async fn an_api_that_offers_only_bearer_gets_the_fallbacks_token() {
    let w = parties();
    bearer_only_api(&w);
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .oauth_fallback(fallback_tokens(&w), [id("https://resource.example")])
        .build(w.net.clone());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "hello client");
    let seen: Vec<_> = w
        .net
        .seen()
        .into_iter()
        .filter(|s| s.header("host") == "resource.example")
        .collect();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].header("signature-input").is_empty(), "AAuth first");
    assert_eq!(seen[1].header("authorization"), "Bearer tok-1");
    assert!(
        seen[1].headers.get("signature-input").is_none(),
        "then the token alone"
    );
}

#[tokio::test]
async fn without_a_fallback_or_with_an_aauth_requirement_nothing_falls_back() {
    let w = parties();
    bearer_only_api(&w);
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .build(w.net.clone());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "answered as it is");
    // A route that offers AAuth (and Bearer): the agent answers AAuth, never the token.
    let w = parties();
    let who = w.serve(RoutePolicy::new(Access::AgentToken));
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .oauth_fallback(fallback_tokens(&w), [id("https://resource.example")])
        .build(w.net.clone());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(who.calls(), 1);
    assert!(
        w.net
            .seen()
            .iter()
            .all(|s| s.header("host") != "as.example")
    );
}

/// The fallback's token is for the APIs named with it: another server answering `401
/// WWW-Authenticate: Bearer` (a page the agent was pointed at) gets its `401` back and
/// never the token, which it could replay at the API.
#[tokio::test]
async fn a_bearer_challenge_from_a_server_the_fallback_is_not_for_gets_no_token() {
    let w = parties();
    bearer_only_api(&w);
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .oauth_fallback(fallback_tokens(&w), [id("https://api.example")])
        .build(w.net.clone());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let seen = w.net.seen();
    assert!(seen.iter().all(|s| s.header("host") != "as.example"));
    assert!(
        seen.iter()
            .all(|s| !s.header("authorization").contains("tok-1"))
    );
}

/// A DPoP-bound token (RFC 9449 §7.1) goes out as `Authorization: DPoP` with a proof for
/// the request, never as a bearer token.
#[tokio::test]
async fn a_dpop_bound_fallback_token_goes_with_its_proof() {
    let w = parties();
    w.net.host(
        "resource.example",
        Arc::new(|req| {
            Box::pin(async move {
                let dpop = req
                    .headers()
                    .get("authorization")
                    .is_some_and(|v| v == "DPoP tok-2")
                    && req.headers().contains_key("dpop");
                let mut r = http::Response::new(Bytes::from_static(b"hello bound client"));
                if !dpop {
                    *r.status_mut() = StatusCode::UNAUTHORIZED;
                    r.headers_mut().insert(
                        "www-authenticate",
                        http::HeaderValue::from_static(r#"Bearer realm="api", DPoP algs="EdDSA""#),
                    );
                }
                r
            })
        }),
    );
    w.net.host(
        "as.example",
        Arc::new(|_| {
            Box::pin(async move {
                http::Response::new(Bytes::from_static(
                    br#"{"access_token":"tok-2","token_type":"DPoP","expires_in":300}"#,
                ))
            })
        }),
    );
    let tokens = Arc::new(aauth_oauth::ClientCredentials::new(
        aauth_oauth::ClientConfig::new(
            aauth_metadata::HttpsUrl::parse("https://as.example/token").unwrap(),
            aauth_oauth::ClientAuth::SecretBasic {
                client_id: "svc".to_owned(),
                secret: "pw".to_owned(),
            },
        )
        .dpop(Arc::new(PrivateKey::ed25519_from_seed(&[7; 32]))),
        w.net.clone(),
        w.clock.clone(),
    ));
    let client = aauth_agent::AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .oauth_fallback(tokens, [id("https://resource.example")])
        .build(w.net.clone());
    let resp = client.send(get("/data")).await.unwrap();
    assert_eq!(resp.body(), "hello bound client");
}

/// Draft -11 §AAuth-Access: a response carrying more than one credential is rejected;
/// neither session token is kept.
#[tokio::test]
async fn a_response_with_two_session_tokens_leaves_none() {
    let w = parties();
    w.net.host(
        "resource.example",
        scripted(vec![
            response(
                200,
                &[
                    ("aauth-access", "c2Vzc2lvbi0x"),
                    ("aauth-access", "c2Vzc2lvbi0y"),
                ],
                "",
            ),
            response(200, &[], ""),
        ]),
    );
    let client = w.client(None);
    client.send(get("/login")).await.unwrap();
    assert!(
        client
            .cache()
            .session(&id("https://resource.example"))
            .is_none()
    );
    client.send(get("/data")).await.unwrap();
    assert_eq!(w.net.seen()[1].header("authorization"), "");
}

/// A host name in capitals names the same server (RFC 3986 §3.2.2).
#[tokio::test]
async fn a_host_in_capitals_is_the_same_server() {
    let w = parties();
    w.net
        .host("resource.example", scripted(vec![response(200, &[], "ok")]));
    let client = w.client(None);
    let req = http::Request::get("https://Resource.EXAMPLE/x")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(client.send(req).await.unwrap().body(), "ok");
}
