//! The optional request parameters (PS-10): `prompt` honoured, `justification`,
//! `platform` and `device` shown to the person apart and escaped, sizes checked; and the
//! distinct-resources limit per agent (PS-13).

use std::sync::Arc;
use std::time::Duration;

use aauth_person_server::{AlwaysAsk, PERSON_TOKEN_PATH};
use http::StatusCode;

use crate::consent::{Browser, code_of, header_of};
use crate::{NOW, world, world_with};

#[tokio::test]
async fn prompt_consent_asks_even_an_approving_policy_and_prompt_none_never_asks() {
    let mut w = world();
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    w.ps.set_password("alice", "alice's password")
        .await
        .unwrap();
    w.bind("aauth:assistant@agent.example", "alice").await;
    // The default policy approves a bound agent at once; prompt=consent asks alice.
    let (s, headers, json) = w
        .post_full(
            PERSON_TOKEN_PATH,
            serde_json::json!({
                "resource": "https://resource.example",
                "capabilities": ["interaction"],
                "prompt": "consent",
                "justification": "To read <i>your</i> calendar.",
                "platform": "linux",
                "device": "Chrome <on> Linux",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let code = code_of(&headers);
    let mut alice = Browser::default();
    let page = alice.sign_in(&w, &code, "alice", "alice's password").await;
    let page = alice
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    let agent_part = page.html.split("<section class=\"agent\"").nth(1).unwrap();
    assert!(
        agent_part.contains("To read &lt;i&gt;your&lt;/i&gt; calendar.")
            && agent_part.contains("runs on <bdi>linux, Chrome &lt;on&gt; Linux</bdi>"),
        "{}",
        page.html
    );
    let resource_part = page.html.split("<section class=\"agent\"").next().unwrap();
    assert!(!resource_part.contains("calendar."));

    // prompt=none where the person would be asked: user_unreachable, nothing deferred.
    let w = world_with(Some(Arc::new(AlwaysAsk)));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, json) = w
        .post(PERSON_TOKEN_PATH, serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"], "prompt": "none"}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("user_unreachable"))
    );
    // prompt=none where no one need be asked: issued.
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "prompt": "none"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn malformed_hints_are_refused_and_change_nothing() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let _ = w.person_token("https://resource.example").await;
    let before = w.state();
    for (what, extra) in [
        ("unknown prompt", serde_json::json!({"prompt": "maybe"})),
        (
            "none with another",
            serde_json::json!({"prompt": "none consent"}),
        ),
        (
            "device too long",
            serde_json::json!({"device": "x".repeat(65)}),
        ),
        (
            "device with a control character",
            serde_json::json!({"device": "a\u{7}b"}),
        ),
        (
            "platform too long",
            serde_json::json!({"platform": "p".repeat(65)}),
        ),
        (
            "login_hint too long",
            serde_json::json!({"login_hint": "h".repeat(257)}),
        ),
        (
            "justification too large",
            serde_json::json!({"justification": "j".repeat(16 * 1024 + 1)}),
        ),
    ] {
        let mut body = serde_json::json!({"resource": "https://resource.example"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, json) = w.post(PERSON_TOKEN_PATH, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: nothing changed");
    }
    // Well-formed hints the Person Server does not use are accepted.
    let (s, json) = w
        .post(PERSON_TOKEN_PATH, serde_json::json!({"resource": "https://resource.example", "login_hint": "alice@example.com", "tenant": "acme", "domain_hint": "example.com"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn an_agent_asking_for_too_many_distinct_resources_is_rate_limited() {
    let mut w = world();
    w.ps =
        w.ps.distinct_resources_per_agent(2, Duration::from_secs(3600));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let ask = |r: &str| serde_json::json!({ "resource": r });
    assert_eq!(
        w.post(PERSON_TOKEN_PATH, ask("https://resource.example"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        w.post(PERSON_TOKEN_PATH, ask("https://other.example"))
            .await
            .0,
        StatusCode::OK
    );
    let before = w.state();
    let (s, headers, json) = w
        .post_full(PERSON_TOKEN_PATH, ask("https://third.example"))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert_eq!(header_of(&headers, "retry-after"), "3600");
    assert_eq!(w.state(), before, "nothing issued");
    // Resources already asked for stay available.
    assert_eq!(
        w.post(PERSON_TOKEN_PATH, ask("https://resource.example"))
            .await
            .0,
        StatusCode::OK
    );
    // Another agent has its own count.
    let key = aauth_keys::PrivateKey::ed25519_from_seed(&[78; 32]);
    let token = crate::agent_token(&w.provider, "aauth:helper@agent.example", &key, 1800);
    w.bind("aauth:helper@agent.example", "alice").await;
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &ask("https://third.example"),
            &key,
            &token,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    // After the window, a new resource is admitted.
    let later = NOW.plus(3601);
    let later_token = crate::agent_token_at(&w.provider, &w.agent, later);
    let (s, json) = w
        .post_at(
            PERSON_TOKEN_PATH,
            &ask("https://third.example"),
            &w.agent,
            &later_token,
            later,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}
