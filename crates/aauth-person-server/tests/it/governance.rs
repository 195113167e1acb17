//! Governance endpoints: permission (granted, denied, deferred to the person), audit
//! (201, in the mission log), interaction (a question answered by the person; relays this
//! server cannot make are 424).

use std::sync::Arc;
use std::time::Duration;

use aauth_person_server::{
    AUDIT_PATH, ConsentKind, ConsentPolicy, ConsentRequest, Decision, INTERACT_PATH,
    INTERACTION_PATH, MISSION_PATH, PERMISSION_PATH,
};
use http::StatusCode;

use crate::consent::{code_of, header_of, poll};
use crate::{NOW, world};

/// Grants reading, denies deleting, asks about everything else.
struct Actions;
impl ConsentPolicy for Actions {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        match (r.kind, r.scope) {
            (ConsentKind::Permission, Some("ReadFile")) => Decision::Approve,
            (ConsentKind::Permission, Some("DeleteFile")) => {
                Decision::Deny("never delete".to_owned())
            }
            (ConsentKind::Permission | ConsentKind::AuthToken, _) => Decision::AskPerson,
            _ => Decision::Approve,
        }
    }
}

async fn governed() -> crate::World {
    let mut w = world();
    w.ps =
        w.ps.policy(Arc::new(Actions))
            .consent_pages(Duration::from_secs(600));
    w.ps.set_password("alice", "pw").await.unwrap();
    w.bind("aauth:assistant@agent.example", "alice").await;
    w
}

#[tokio::test]
async fn permission_is_granted_denied_or_asked_and_logged_in_the_mission() {
    let w = governed().await;
    let (s, mission) = w
        .post(
            MISSION_PATH,
            serde_json::json!({"description": "tidy my files", "tools": [{"name": "MoveFile"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let m = mission["s256"].as_str().unwrap().to_owned();

    let ask = |action: &str| serde_json::json!({"action": action, "mission_s256": m, "capabilities": ["interaction"], "description": "why <b>"});
    let (s, json) = w.post(PERMISSION_PATH, ask("MoveFile")).await;
    assert_eq!(
        (s, json["permission"].as_str()),
        (StatusCode::OK, Some("granted")),
        "pre-approved tool"
    );
    let (s, json) = w.post(PERMISSION_PATH, ask("ReadFile")).await;
    assert_eq!(
        (s, json["permission"].as_str()),
        (StatusCode::OK, Some("granted"))
    );
    let (s, json) = w.post(PERMISSION_PATH, ask("DeleteFile")).await;
    assert_eq!(
        (s, json["permission"].as_str(), json["reason"].as_str()),
        (StatusCode::OK, Some("denied"), Some("never delete"))
    );

    // Deferred: the person grants on the consent page.
    let (s, headers, _) = w.post_full(PERMISSION_PATH, ask("SendEmail")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header_of(&headers, "location");
    crate::consent::approve(&w, &code_of(&headers), "alice", "pw").await;
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["permission"].as_str()),
        (StatusCode::OK, Some("granted"))
    );

    let (s, json) = w
        .post(
            PERMISSION_PATH,
            serde_json::json!({"description": "no action"}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    let log: Vec<(String, String)> =
        w.ps.store()
            .mission(&m)
            .await
            .unwrap()
            .unwrap()
            .log_entries()
            .iter()
            .filter(|e| e.event == "permission")
            .map(|e| (e.decision.clone(), e.detail.clone().unwrap_or_default()))
            .collect();
    assert_eq!(
        log,
        [
            ("permit".to_owned(), "MoveFile".to_owned()),
            ("permit".to_owned(), "ReadFile".to_owned()),
            ("deny".to_owned(), "DeleteFile".to_owned()),
            ("ask".to_owned(), "SendEmail".to_owned()),
        ]
    );
}

#[tokio::test]
async fn audit_records_need_an_active_mission() {
    let w = governed().await;
    let (_, mission) = w
        .post(MISSION_PATH, serde_json::json!({"description": "research"}))
        .await;
    let m = mission["s256"].as_str().unwrap().to_owned();
    let (s, _, _) = w
        .post_full(AUDIT_PATH, serde_json::json!({"mission_s256": m, "action": "WebSearch", "description": "flights", "result": {"n": 12}}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, json) = w
        .post(AUDIT_PATH, serde_json::json!({"action": "WebSearch"}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let entry =
        w.ps.store()
            .mission(&m)
            .await
            .unwrap()
            .unwrap()
            .log_entries()
            .last()
            .cloned()
            .unwrap();
    assert_eq!(
        (entry.event.as_str(), entry.detail.as_deref()),
        ("audit", Some("WebSearch: flights"))
    );
    w.ps.terminate_mission(&m, aauth_person_server::TerminationReason::Revoked, NOW)
        .await
        .unwrap();
    let (s, json) = w
        .post(
            AUDIT_PATH,
            serde_json::json!({"mission_s256": m, "action": "WebSearch"}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("mission_terminated"))
    );
}

#[tokio::test]
async fn a_question_is_answered_by_the_person_and_relays_are_unavailable() {
    let w = governed().await;
    let (s, headers, _) = w
        .post_full(INTERACTION_PATH, serde_json::json!({"type": "question", "question": "Refundable or cheapest?", "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header_of(&headers, "location");
    let code = code_of(&headers);
    // The person reads the question and answers it.
    let mut b = crate::consent::Browser::default();
    let page = b.sign_in(&w, &code, "alice", "pw").await;
    let q = b
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    assert!(
        q.html.contains("Refundable or cheapest?") && q.html.contains("Your answer"),
        "{}",
        q.html
    );
    let csrf = q.hidden("csrf");
    let done = b
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("decision", "answer"),
                ("answer", "Refundable, please."),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["answer"].as_str()),
        (StatusCode::OK, Some("Refundable, please."))
    );

    let (s, json) = w
        .post(INTERACTION_PATH, serde_json::json!({"type": "interaction", "url": "https://booking.example/confirm", "code": "X7K2-M9P4"}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (
            StatusCode::FAILED_DEPENDENCY,
            Some("interaction_unavailable")
        )
    );
    let (s, _) = w
        .post(INTERACTION_PATH, serde_json::json!({"type": "completion"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// A question is answered, never approved: its page draws no approve or deny button, an
/// approval posted anyway is refused (400) with the request unchanged, and a question a
/// server approved before (stored so) ends at the next poll instead of failing at each.
#[tokio::test]
async fn a_question_cannot_be_approved() {
    let w = governed().await;
    let (s, headers, _) = w
        .post_full(INTERACTION_PATH, serde_json::json!({"type": "question", "question": "Window or aisle?", "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header_of(&headers, "location");
    let code = code_of(&headers);
    let mut b = crate::consent::Browser::default();
    let page = b.sign_in(&w, &code, "alice", "pw").await;
    let q = b
        .go(&w, "GET", &header_of(&page.headers, "location"), &[])
        .await;
    assert!(q.html.contains("Your answer"), "{}", q.html);
    for button in [
        "value=\"grant\"",
        "value=\"grant-mission\"",
        "value=\"deny\"",
    ] {
        assert!(!q.html.contains(button), "{button}: {}", q.html);
    }
    let csrf = q.hidden("csrf");
    let id = location.trim_start_matches("/pending/");
    let before = w.ps.store().pending(id).await.unwrap().unwrap();
    for decision in ["grant", "grant-mission"] {
        let refused = b
            .go(
                &w,
                "POST",
                INTERACT_PATH,
                &[("code", &code), ("csrf", &csrf), ("decision", decision)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
        assert!(
            refused.html.contains("answered, not approved"),
            "{}",
            refused.html
        );
    }
    assert_eq!(
        w.ps.store().pending(id).await.unwrap(),
        Some(before),
        "the request is as it was"
    );
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting"))
    );
    let done = b
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("decision", "answer"),
                ("answer", "Window."),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["answer"].as_str()),
        (StatusCode::OK, Some("Window."))
    );

    // Approved by an earlier server: one server_error, then the request has ended.
    let (_, headers, _) = w
        .post_full(INTERACTION_PATH, serde_json::json!({"type": "question", "question": "Tea?", "capabilities": ["interaction"]}))
        .await;
    let location = header_of(&headers, "location");
    let id = location.trim_start_matches("/pending/");
    let mut p = w.ps.store().pending(id).await.unwrap().unwrap();
    p.state = aauth_person_server::PendingState::Approved {
        account: "alice".to_owned(),
    };
    assert!(w.ps.store().update_pending(&mut p).await.unwrap());
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
    );
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code"))
    );
}
