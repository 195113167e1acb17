//! The Person Server's adversarial cases of the security catalogue (P3, P7, M1, M5, M6/T7,
//! M10): each refused with its exact answer, and each refusal leaves everything the
//! Person Server holds exactly as it was (the in-memory store's whole state, compared
//! before and after).

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_person_server::{AlwaysAsk, INTERACT_PATH, MISSION_PATH, PERSON_TOKEN_PATH, s256};
use aauth_tokens::{AgentId, AgentTokenBuilder, PersonClaims};
use http::StatusCode;

use crate::consent::{AskForAccess, Browser, code_of, header_of, poll};
use crate::{AUTH_TOKEN_PATH, NOW, World, agent_token, id, world, world_with};

async fn with_pages(mut w: World) -> World {
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    w.ps.set_password("alice", "alice's password")
        .await
        .unwrap();
    w.ps.set_password("mallory", "mallory's password")
        .await
        .unwrap();
    w.ps.set_password("eve", "eve's password").await.unwrap();
    w
}

/// A second agent of the same provider, with its own key.
fn helper() -> (PrivateKey, String) {
    let key = PrivateKey::ed25519_from_seed(&[77; 32]);
    let token = {
        let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
        agent_token(&provider, "aauth:helper@agent.example", &key, 1800)
    };
    (key, token)
}

/// alice's agent asks for an auth token she must approve: the pending URL and its code.
async fn deferred_auth_token(w: &World) -> (String, String) {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let (s, headers, json) = w
        .post_full(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": rt, "presented_token": person, "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    (header_of(&headers, "location"), code_of(&headers))
}

#[tokio::test]
async fn p3_a_poll_by_another_key_is_answered_as_an_unknown_request() {
    let w = with_pages(world_with(Some(Arc::new(AskForAccess)))).await;
    let (location, _) = deferred_auth_token(&w).await;
    let (other_key, other_token) = helper();
    // The helper's token is recorded once, on its first request; from then on its
    // requests write nothing.
    let _ = poll(
        &w,
        "GET",
        "/pending/warm-up",
        &other_key,
        &other_token,
        None,
        NOW,
    )
    .await;

    let before = w.state();
    let unknown = "/pending/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for method in ["GET", "DELETE"] {
        let mut theirs = poll(&w, method, &location, &other_key, &other_token, None, NOW).await;
        let mut none = poll(&w, method, unknown, &other_key, &other_token, None, NOW).await;
        theirs.1.remove("date");
        none.1.remove("date");
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{method}: {}", theirs.2);
        assert_eq!(theirs, none, "{method}: identical to an unknown request");
    }
    let theirs = w
        .post_as(
            &location,
            &serde_json::json!({"action": "clarification_response", "clarification_response": "me"}),
            &other_key,
            &other_token,
        )
        .await;
    let none = w
        .post_as(
            unknown,
            &serde_json::json!({"action": "clarification_response", "clarification_response": "me"}),
            &other_key,
            &other_token,
        )
        .await;
    assert_eq!(theirs.0, StatusCode::NOT_FOUND);
    assert_eq!(theirs, none, "POST: identical to an unknown request");
    assert_eq!(w.state(), before, "nothing changed");

    // The agent that asked still polls its request.
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
}

#[tokio::test]
async fn p7_wrong_codes_are_limited_per_session_and_another_persons_tries_end_the_request() {
    let w = with_pages(world_with(Some(Arc::new(AskForAccess)))).await;
    let (location, code) = deferred_auth_token(&w).await;
    let id = location.trim_start_matches("/pending/").to_owned();
    let pending = w.ps.store().pending(&id).await.unwrap();

    // Five wrong codes in one session, then the right one: refused (429), and the
    // request, which no wrong code names, is untouched.
    let mut guesser = Browser::default();
    let page = guesser
        .sign_in(&w, "ZZZZ-ZZZZ", "mallory", "mallory's password")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    for guess in [
        "ZZZZ-ZZZZ",
        "ZZZZ-ZZZY",
        "ZZZZ-ZZZX",
        "ZZZZ-ZZZW",
        "ZZZZ-ZZZV",
    ] {
        let page = guesser
            .go(&w, "GET", &format!("{INTERACT_PATH}?code={guess}"), &[])
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{guess}");
    }
    let page = guesser
        .go(&w, "GET", &format!("{INTERACT_PATH}?code={code}"), &[])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!page.html.contains("resource.example"));
    assert_eq!(w.ps.store().pending(&id).await.unwrap(), pending);

    // A new session does not start the count afresh (before, each session had its
    // own): the account's sixth wrong code blocks it, and then the right code opens
    // nothing for it.
    let mut again = Browser::default();
    let page = again
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    let right = header_of(&page.headers, "location");
    let page = again
        .go(&w, "GET", &format!("{INTERACT_PATH}?code=ZZZZ-ZZZT"), &[])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let page = again.go(&w, "GET", &right, &[]).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        header_of(&page.headers, "retry-after")
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(!page.html.contains("resource.example"));
    assert_eq!(w.ps.store().pending(&id).await.unwrap(), pending);

    // Another person holding the right code: five tries end the request.
    let mut eve = Browser::default();
    let page = eve.sign_in(&w, &code, "eve", "eve's password").await;
    let back = header_of(&page.headers, "location");
    for _ in 0..5 {
        let page = eve.go(&w, "GET", &back, &[]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        assert!(!page.html.contains("resource.example"));
    }
    // alice's right code now opens nothing, and the agent learns the request ended.
    let mut alice = Browser::default();
    let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
    let page = alice
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code"))
    );
}

#[tokio::test]
async fn p7_a_used_code_opens_nothing_and_issues_nothing_again() {
    let w = with_pages(world_with(Some(Arc::new(AskForAccess)))).await;
    let (location, code) = deferred_auth_token(&w).await;
    crate::consent::approve(&w, &code, "alice", "alice's password").await;
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string());

    let before = w.state();
    let mut alice = Browser::default();
    let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
    let page = alice
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code"))
    );
    // Signing in made a session; nothing else changed: no token recorded again.
    let strip_sessions = |s: &str| {
        let start = s.find("sessions:").unwrap();
        let end = s[start..].find("missions:").unwrap() + start;
        format!("{}{}", &s[..start], &s[end..])
    };
    assert_eq!(strip_sessions(&w.state()), strip_sessions(&before));
}

/// A world where alice's assistant has an approved mission; its digest.
async fn with_mission(w: &World) -> String {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, json) = w
        .post(
            MISSION_PATH,
            serde_json::json!({
                "description": "Plan the offsite.",
                "tools": [{"name": "read", "description": "read availability"}],
                "resources": ["https://resource.example"],
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    json["s256"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn m1_an_unknown_or_anothers_mission_digest_is_refused() {
    let w = world();
    let theirs = {
        let digest = with_mission(&w).await;
        // The helper's own approved mission.
        let (key, token) = helper();
        w.bind("aauth:helper@agent.example", "alice").await;
        let (s, json) = w
            .post_as(
                MISSION_PATH,
                &serde_json::json!({"description": "Sort the inbox.", "resources": ["https://resource.example"]}),
                &key,
                &token,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{json}");
        assert_ne!(json["s256"].as_str().unwrap(), digest);
        json["s256"].as_str().unwrap().to_owned()
    };
    let before = w.state();
    for (what, digest) in [
        ("unknown", s256(b"never proposed")),
        ("another agent's", theirs),
    ] {
        let (s, json) = w
            .post(
                PERSON_TOKEN_PATH,
                serde_json::json!({"resource": "https://resource.example", "mission_s256": digest}),
            )
            .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: nothing changed");
    }
}

#[tokio::test]
async fn m5_a_resource_token_that_drops_the_mission_is_refused_and_grants_nothing() {
    let w = world();
    let digest = with_mission(&w).await;
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "mission_s256": digest}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let person = json["person_token"].as_str().unwrap().to_owned();
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    assert_eq!(pc.mission_s256.as_deref(), Some(digest.as_str()));

    let before = w.state();
    let grants = w.ps.store().mission(&digest).await.unwrap().unwrap().grants;
    for (what, rt) in [
        ("mission dropped", w.resource_token(&pc.jti, &pc.sub, |b| b)),
        (
            "another mission",
            w.resource_token(&pc.jti, &pc.sub, |b| b.mission_s256(s256(b"other"))),
        ),
        (
            "tenant added",
            w.resource_token(&pc.jti, &pc.sub, |b| {
                b.mission_s256(digest.clone()).tenant("acme")
            }),
        ),
    ] {
        let (s, json) = w
            .post(
                AUTH_TOKEN_PATH,
                serde_json::json!({"resource_token": rt, "presented_token": person}),
            )
            .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_resource_token")),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: nothing changed");
    }
    assert_eq!(
        w.ps.store().mission(&digest).await.unwrap().unwrap().grants,
        grants
    );
}

#[tokio::test]
async fn t7_another_agent_cannot_present_the_assistants_person_token() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    w.bind("aauth:helper@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let (key, token) = helper();
    // The helper's first request records its token; the theft below must change nothing.
    let _ = w
        .post_as(PERSON_TOKEN_PATH, &serde_json::json!({}), &key, &token)
        .await;
    // A resource token naming the helper's key, with the assistant's person token.
    let rt = w.resource_token_for("https://resource.example", &pc, &key, "read");
    let before = w.state();
    let (s, json) = w
        .post_as(
            AUTH_TOKEN_PATH,
            &serde_json::json!({"resource_token": rt, "presented_token": person}),
            &key,
            &token,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_presented_token")),
        "{json}"
    );
    assert_eq!(w.state(), before, "nothing changed");
}

#[tokio::test]
async fn m10_a_sub_agent_cannot_ask_for_itself_and_nothing_is_deferred() {
    let w = with_pages(world_with(Some(Arc::new(AlwaysAsk)))).await;
    w.bind("aauth:assistant@agent.example", "alice").await;
    let sub_key = PrivateKey::ed25519_from_seed(&[31; 32]);
    let sub_token = AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse("aauth:assistant+search@agent.example").unwrap(),
        sub_key.public_key(),
    )
    .parent_agent(AgentId::parse("aauth:assistant@agent.example").unwrap())
    .lifetime(Duration::from_secs(600))
    .sign(
        &PrivateKey::ed25519_from_seed(&[1; 32]),
        "key-1",
        NOW.minus(20),
        &mut OsRandom,
    )
    .unwrap()
    .token;
    // Recorded on first sight (for revocation), refused all the same.
    let _ = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({}),
            &sub_key,
            &sub_token,
        )
        .await;
    let before = w.state();
    for body in [
        serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]}),
        serde_json::json!({"resource": "https://resource.example", "subagent_token": sub_token, "capabilities": ["interaction"]}),
    ] {
        let (s, json) = w
            .post_as(PERSON_TOKEN_PATH, &body, &sub_key, &sub_token)
            .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_subagent_token")),
            "{json}"
        );
        assert_eq!(w.state(), before, "no pending request, nothing changed");
    }
}

/// An unbound agent sends one request's code to alice and another's to mallory: the first
/// approval binds it; the second person is told so, approves nothing, and never takes the
/// agent (nor, with it, the first person's tokens and dashboard row).
#[tokio::test]
async fn an_unbound_agents_second_approver_does_not_take_it_over() {
    let w = with_pages(world()).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (s, h1, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, h2, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (first, second) = (code_of(&h1), code_of(&h2));

    let decide = |code: String, account: &'static str, password: &'static str| {
        let w = &w;
        async move {
            let mut b = Browser::default();
            let page = b.sign_in(w, &code, account, password).await;
            assert_eq!(page.status, StatusCode::SEE_OTHER);
            let consent = b
                .go(w, "GET", &header_of(&page.headers, "location"), &[])
                .await;
            assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
            let csrf = consent.hidden("csrf");
            crate::consent::decide(&mut b, w, &code, &csrf, "grant").await
        }
    };
    let done = decide(first, "alice", "alice's password").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    let refused = decide(second, "mallory", "mallory's password").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    assert!(
        refused.html.contains("linked to another person"),
        "{}",
        refused.html
    );
    let provider = id("https://agent.example");
    let agent = AgentId::parse("aauth:assistant@agent.example").unwrap();
    assert_eq!(
        w.ps.store()
            .binding(&provider, &agent)
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    // The second request is still waiting (opened, so "interacting"), approved by nobody.
    let (s, _, json) = poll(
        &w,
        "GET",
        &header_of(&h2, "location"),
        &w.agent,
        &w.agent_token,
        None,
        NOW,
    )
    .await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting")),
        "{json}"
    );
}
