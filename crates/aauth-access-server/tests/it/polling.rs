//! The Person Server's polls of a waiting request: a failure of this server's while the
//! request is decided again leaves it for the retry.

use aauth_access_server::MemoryStore;

use super::flaky::Flaky;
use super::*;

impl World {
    /// A token request the policy defers (asked as ps.example): its pending URL and id.
    async fn deferred(&self, request: &serde_json::Value) -> (String, String) {
        let (s, h, json) = self
            .post_path(AUTH_TOKEN_PATH, request, "https://ps.example", &self.ps)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{json}");
        let location = h["location"].to_str().unwrap().to_owned();
        let id = location
            .trim_start_matches(aauth_access_server::PENDING_PATH)
            .to_owned();
        (location, id)
    }
}

#[tokio::test]
async fn a_store_failure_while_deciding_again_leaves_the_request_for_the_retry() {
    let store = Arc::new(Flaky::new(Arc::new(MemoryStore::default())));
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(ApproverFirst))
        .store(store.clone());
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, id) = w.deferred(&request).await;
    assert!(w.server.decide_approval(&id, true, NOW).await.unwrap());

    // The poll takes the approved request; the store fails while it is decided.
    store.fail_next_standing();
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        ),
        "{json}"
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);
    // The retry finds it, approval and all, and gets the token.
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string());
    assert_eq!(w.server.issued().await.unwrap(), 1);
}
