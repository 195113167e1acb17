//! The compatibility profile ([`Compatibility`]): each departure for agents and resources
//! that lag -11 (the TypeScript reference's) refused when strict, the default, and taken
//! with its member on, with every check -11 makes still made.

use aauth_person_server::{Compatibility, INTERACT_PATH, PERSON_TOKEN_PATH, PersonTokenRecord};
use aauth_test_support::request::header;
use aauth_test_support::tokens::person_token_jti_only;
use aauth_tokens::{AgentId, AuthClaims, PersonClaims};
use http::StatusCode;

use crate::consent::{Browser, consenting_world, poll};
use crate::{AUTH_TOKEN_PATH, NOW, World, id, world};

/// A world whose Person Server runs with `compat`.
fn world_in(compat: Compatibility) -> World {
    let mut w = world();
    w.ps = w.ps.compatibility(compat);
    w
}

/// A person token for resource.example (alice's) and its claims.
async fn person(w: &World) -> (String, PersonClaims) {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc = w.read(&person, "https://resource.example");
    (person, pc)
}

/// `(status, error)` of an auth-token request with `body`.
async fn ask(w: &World, body: serde_json::Value) -> (StatusCode, Option<String>) {
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    (s, json["error"].as_str().map(str::to_owned))
}

/// A resource token naming the presented token only by `person_token_jti`, as the
/// TypeScript reference resource writes it: refused strict, taken with
/// `person_token_jti`; one naming two different tokens is refused either way.
#[tokio::test]
async fn a_resource_token_with_only_person_token_jti() {
    for on in [false, true] {
        let w = world_in(Compatibility::strict().person_token_jti(on));
        let (person, pc) = person(&w).await;
        let old = person_token_jti_only(&w.resource_token(&pc.jti, &pc.sub, |b| b), &w.rs, "rs-1");
        let (s, json) = w
            .post(
                AUTH_TOKEN_PATH,
                serde_json::json!({"resource_token": old, "presented_token": person}),
            )
            .await;
        if on {
            assert_eq!(s, StatusCode::OK, "{json}");
            let ac: AuthClaims = w.read(
                json["auth_token"].as_str().unwrap(),
                "https://resource.example",
            );
            assert_eq!(ac.sub, pc.sub);
        } else {
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_resource_token")),
                "strict -11: {json}"
            );
        }
        // The old name must still name the token presented (PS-31).
        let other =
            person_token_jti_only(&w.resource_token("pt-other", &pc.sub, |b| b), &w.rs, "rs-1");
        assert_eq!(
            ask(
                &w,
                serde_json::json!({"resource_token": other, "presented_token": person})
            )
            .await,
            (
                StatusCode::BAD_REQUEST,
                Some("invalid_resource_token".to_owned())
            )
        );
        // Both names, naming two tokens: refused.
        let both = w.resource_token(&pc.jti, &pc.sub, |b| b.also_person_token_jti());
        let payload = both.split('.').nth(1).unwrap();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&aauth_keys::base64url::decode(payload).unwrap()).unwrap();
        claims["person_token_jti"] = "pt-other".into();
        let two = aauth_tokens::jws::sign(
            &w.rs,
            "rs-1",
            "aa-resource+jwt",
            claims.to_string().as_bytes(),
        )
        .unwrap();
        let (s, json) = w
            .post(
                AUTH_TOKEN_PATH,
                serde_json::json!({"resource_token": two, "presented_token": person}),
            )
            .await;
        if on {
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_resource_token")),
                "{json}"
            );
            assert!(
                json["detail"]
                    .as_str()
                    .unwrap()
                    .contains("person_token_jti"),
                "{json}"
            );
        } else {
            // Strict -11 reads presented_jti only; the unknown claim is ignored.
            assert_eq!(s, StatusCode::OK, "{json}");
        }
    }
}

/// An auth-token request without `presented_token`, as the TypeScript reference agent
/// sends it: refused strict (PS-30); with `missing_presented_token`, served from the
/// record of the person token the resource token names, as if it had been presented.
#[tokio::test]
async fn no_presented_token_is_served_from_records_only_under_the_profile() {
    for on in [false, true] {
        let w = world_in(Compatibility::strict().missing_presented_token(on));
        let (_, pc) = person(&w).await;
        let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
        let before = w.state();
        let (s, json) = w
            .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": rt}))
            .await;
        if !on {
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "strict -11: {json}"
            );
            assert!(json["detail"].as_str().unwrap().contains("presented_token"));
            assert_eq!(w.state(), before, "the refusal changed nothing");
            continue;
        }
        assert_eq!(s, StatusCode::OK, "{json}");
        let ac: AuthClaims = w.read(
            json["auth_token"].as_str().unwrap(),
            "https://resource.example",
        );
        assert_eq!(
            (ac.sub.as_str(), ac.scope.as_deref()),
            (pc.sub.as_str(), Some("read"))
        );
        assert!(ac.exp <= pc.exp, "capped by the person token on record");
        assert_eq!(ac.cnf.jwk.x, w.agent.public_key().to_jwk().x);
    }
}

/// A record of a person token `jti` for alice's agent, spoiled by `tweak`.
fn record(w: &World, jti: &str, tweak: impl FnOnce(&mut PersonTokenRecord)) -> PersonTokenRecord {
    let resource = id("https://resource.example");
    let mut r = PersonTokenRecord::new(
        jti,
        resource.clone(),
        w.ps.directed_sub("alice", &resource),
        "alice",
        (
            id("https://agent.example"),
            AgentId::parse("aauth:assistant@agent.example").unwrap(),
        ),
        NOW.0 + 600,
    );
    tweak(&mut r);
    r
}

/// Under the profile, the record is held to every check a presented person token is:
/// issued here, to this agent, for this resource, person, mission and no tenant, not
/// revoked, not expired; each failure with the code the presented token would get.
#[tokio::test]
async fn the_record_is_held_to_every_check_of_a_presented_token() {
    let w = world_in(Compatibility::strict().missing_presented_token(true));
    // A first request records the agent (its token seen), so that the refusals below
    // are seen to change nothing.
    person(&w).await;
    let sub = w.ps.directed_sub("alice", &id("https://resource.example"));
    let other_agent = AgentId::parse("aauth:other@agent.example").unwrap();
    let records = [
        record(&w, "pt-ok", |_| {}),
        record(&w, "pt-expired", |r| r.exp = NOW.0),
        record(&w, "pt-other-agent", |r| r.agent.1 = other_agent),
        record(&w, "pt-other-resource", |r| {
            r.aud = id("https://other.example");
        }),
        record(&w, "pt-mission", |r| r.mission_s256 = Some("m".to_owned())),
        record(&w, "pt-revoked", |_| {}),
    ];
    for r in records {
        w.ps.store().record_person_token(r).await.unwrap();
    }
    w.ps.store()
        .revoke("pt-revoked", NOW.0 + 600, NOW)
        .await
        .unwrap();
    let cases = [
        (
            "pt-expired",
            sub.as_str(),
            false,
            StatusCode::BAD_REQUEST,
            "expired_presented_token",
        ),
        (
            "pt-other-agent",
            &sub,
            false,
            StatusCode::BAD_REQUEST,
            "invalid_presented_token",
        ),
        (
            "pt-other-resource",
            &sub,
            false,
            StatusCode::BAD_REQUEST,
            "invalid_presented_token",
        ),
        (
            "pt-mission",
            &sub,
            false,
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "pt-revoked",
            &sub,
            false,
            StatusCode::FORBIDDEN,
            "revoked_presented_token",
        ),
        (
            "pt-never-issued",
            &sub,
            false,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "pt-ok",
            "someone-else",
            false,
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "pt-ok",
            &sub,
            true,
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
    ];
    for (jti, who, tenant, status, code) in cases {
        let rt = w.resource_token(jti, who, |b| if tenant { b.tenant("acme") } else { b });
        let before = w.state();
        assert_eq!(
            ask(&w, serde_json::json!({"resource_token": rt})).await,
            (status, Some(code.to_owned())),
            "{jti} {who} tenant={tenant}"
        );
        assert_eq!(w.state(), before, "{jti}: the refusal changed nothing");
    }
    // The same record, unspoiled, is served.
    let rt = w.resource_token("pt-ok", &sub, |b| b);
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": rt}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// Both departures of a TypeScript agent at a TypeScript resource at once: a resource
/// token with only `person_token_jti`, and no `presented_token`.
#[tokio::test]
async fn the_typescript_pair_together() {
    let w = world_in(
        Compatibility::strict()
            .person_token_jti(true)
            .missing_presented_token(true),
    );
    let (_, pc) = person(&w).await;
    let old = person_token_jti_only(&w.resource_token(&pc.jti, &pc.sub, |b| b), &w.rs, "rs-1");
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": old}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// A clarification answer posted without `action`, as the TypeScript reference agent
/// posts it: refused strict (-11 §7.5.2.1), taken as `action: clarification_response`
/// with `clarification_without_action`; a body with neither is refused either way.
#[tokio::test]
async fn a_clarification_answer_without_action() {
    let mut w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction", "clarification"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let location = header(&headers, "location");
    let code = crate::consent::code_of(&headers);
    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let target = header(&page.headers, "location");
    let consent = b.go(&w, "GET", &target, &[]).await;
    let csrf = consent.hidden("csrf");
    let fields = [
        ("code", code.as_str()),
        ("csrf", &csrf),
        ("decision", "ask"),
        ("question", "Which files?"),
    ];
    let sent = b.go(&w, "POST", INTERACT_PATH, &fields).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.html);

    let bare = serde_json::json!({"clarification_response": "Only the drafts."});
    let (s, json) = w.post_path(&location, bare.clone()).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "strict -11: {json}"
    );
    // Still waiting for an answer.
    let (s, h, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, header(&h, "aauth-requirement").as_str()),
        (StatusCode::ACCEPTED, "requirement=clarification")
    );
    assert_eq!(json["clarification"], "Which files?");

    w.ps =
        w.ps.compatibility(Compatibility::strict().clarification_without_action(true));
    let (s, json) = w.post_path(&location, serde_json::json!({})).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "no action and no answer: {json}"
    );
    let (s, json) = w.post_path(&location, bare).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let consent = b.go(&w, "GET", &target, &[]).await;
    assert!(
        consent
            .html
            .contains("The agent answered:</strong> <bdi>Only the drafts.</bdi>"),
        "{}",
        consent.html
    );
}
