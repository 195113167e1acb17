//! The Person Server's polls of a waiting request: answered with the draft's polling
//! codes (`408 expired` once it expired, `410` once it ended, the same `202` while it
//! waits for claims), and a failure of this server's while the request is decided again
//! leaves it for the retry.

use aauth_access_server::{AsStore, Awaiting, MemoryStore, PENDING_PATH};
use aauth_headers::Scheme;

use super::flaky::Flaky;
use super::*;

impl World {
    /// A token request the policy defers (asked as ps.example): its pending URL and id.
    pub(crate) async fn deferred(&self, request: &serde_json::Value) -> (String, String) {
        let (s, h, json) = self
            .post_path(AUTH_TOKEN_PATH, request, "https://ps.example", &self.ps)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{json}");
        let location = h["location"].to_str().unwrap().to_owned();
        let id = location.trim_start_matches(PENDING_PATH).to_owned();
        (location, id)
    }

    /// A `GET` of `path` signed as ps.example at `at`, answered at `at`.
    pub(crate) async fn get_at(&self, path: &str, at: UnixTime) -> (StatusCode, serde_json::Value) {
        let (status, _, json) = self.poll_at(path, at).await;
        (status, json)
    }

    /// As [`World::get_at`], with the response headers.
    pub(crate) async fn poll_at(
        &self,
        path: &str,
        at: UnixTime,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let req = request::json("GET", &format!("https://as.example{path}"), None);
        let scheme = Scheme::JwksUri {
            id: "https://ps.example".to_owned(),
            dwk: "aauth-person.json".to_owned(),
            kid: "ps-1".to_owned(),
        };
        let (parts, body) = request::signed_unique(req, &self.ps, &scheme, at).into_parts();
        let resp = served(self.server.handle(&parts, &body, at).await);
        (
            resp.status(),
            resp.headers().clone(),
            serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// Draft -11 §Polling Error Codes: a request polled after it expired is `408 expired`
/// (the Person Server may start afresh), then `410` as any ended one; one answered
/// (its token, a denial) is `410` from then on.
#[tokio::test]
async fn an_expired_or_answered_request_is_told_so_not_404() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ApproverFirst));
    let t = w.tokens(3000);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});

    // Nobody approves it within its ten minutes.
    let (location, _) = w.deferred(&request).await;
    let late = NOW.plus(601);
    let (s, json) = w.get_at(&location, late).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("expired")),
        "{json}"
    );
    let (s, json) = w.get_at(&location, late.plus(1)).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code")),
        "{json}"
    );

    // Approved and delivered: its pending URL is gone.
    let (location, id) = w.deferred(&request).await;
    assert!(w.server.decide_approval(&id, true, NOW).await.unwrap());
    assert_eq!(
        w.get_path(&location, "https://ps.example", &w.ps).await.0,
        StatusCode::OK
    );
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code")),
        "{json}"
    );
    // Refused: told once, then gone.
    let (location, id) = w.deferred(&request).await;
    assert!(w.server.decide_approval(&id, false, NOW).await.unwrap());
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
    let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::GONE);
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

/// A request that expired while it waited for the person keeps its code in the record
/// of its end (the person presenting it late is told it expired). Should that code be
/// another request's by then (the record holding it dropped meanwhile, the code drawn
/// again), the end is kept without it, never over the other's: the poll is `408
/// expired` all the same, then `410`.
#[tokio::test]
async fn an_expired_requests_code_drawn_again_meanwhile_is_not_kept() {
    let store = Arc::new(Flaky::new(Arc::new(MemoryStore::default())));
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst)).store(store.clone());
    let t = w.tokens(3000);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, _) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let id = location.trim_start_matches(PENDING_PATH);
    store.code_next_elsewhere();
    let late = NOW.plus(601);
    let (s, json) = w.get_at(&location, late).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("expired")),
        "{json}"
    );
    let ended = store.waiting_kept(id, late).await.unwrap().unwrap();
    assert_eq!((ended.awaiting, ended.code), (Awaiting::Answered, None));
    let (s, json) = w.get_at(&location, late.plus(1)).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code")),
        "{json}"
    );
}

/// A poll of a request waiting for the Person Server's claims is the same `202` with
/// `requirement=claims`, not a refusal that would end the Person Server's polling.
#[tokio::test]
async fn a_poll_of_a_request_waiting_for_claims_is_asked_for_them_again() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(WantsEmail));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, _) = w.deferred(&request).await;
    let (s, h, json) = w.get_full(&location).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(h["aauth-requirement"], "requirement=claims");
    assert_eq!(h["location"].to_str().unwrap(), location);
    assert_eq!(json["required_claims"], serde_json::json!(["email"]));
    // Still answerable.
    let (s, _, json) = w
        .post_path(
            &location,
            &serde_json::json!({"email": "alice@example.com"}),
            "https://ps.example",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// A world over a [`Flaky`] store whose request was approved out of band: the next poll
/// of its pending URL (returned) decides it again.
async fn approved_over_a_flaky_store() -> (World, Arc<Flaky>, String) {
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
    (w, store, location)
}

#[tokio::test]
async fn a_store_failure_while_deciding_again_leaves_the_request_for_the_retry() {
    let (w, store, location) = approved_over_a_flaky_store().await;

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

/// Two polls of one request at once (two instances of the Person Server, or a retry
/// racing its original): the one that finds the request already taken by the other is
/// told it is still pending (`202`, poll again), never `404`, which would end the
/// Person Server's request.
#[tokio::test]
async fn a_poll_racing_another_is_told_to_poll_again() {
    let (w, store, location) = approved_over_a_flaky_store().await;

    store.take_next_elsewhere();
    let (s, h, json) = w.get_full(&location).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(h["location"], location.as_str());
    assert!(h.contains_key("retry-after"));
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

/// Wants an approval out of band, then the person (their Person Server approved here
/// once).
struct ApprovedThenThePerson;
impl AccessPolicy for ApprovedThenThePerson {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if !r.approved {
            AccessDecision::RequireApproval
        } else if r.bound {
            AccessDecision::Grant
        } else {
            AccessDecision::RequireInteraction
        }
    }
}

/// A request taken to be decided again whose next step (the person's) finds no
/// interaction code of its own, however many are drawn (each one another request's, as
/// a random source that repeats itself makes them): it is never lost. It goes back as it
/// was taken, and the Person Server is told to poll again (`503`, not the `500` that
/// ends its request); the store keeps it; a later poll decides it again and it waits for
/// the person under a code of its own.
async fn a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was(
    inner: Arc<dyn AsStore>,
) {
    let store = Arc::new(Flaky::new(inner));
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(ApprovedThenThePerson))
        .store(store.clone());
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, id) = w.deferred(&request).await;
    assert!(w.server.decide_approval(&id, true, NOW).await.unwrap());
    let approved = store.waiting(&id, NOW).await.unwrap().unwrap();

    store.codes_elsewhere(true);
    let (s, h, json) = w.get_full(&location).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        ),
        "{json}"
    );
    assert!(h.contains_key("retry-after"), "{h:?}");
    assert_eq!(
        store.waiting(&id, NOW).await.unwrap(),
        Some(approved),
        "kept as it was taken"
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);

    store.codes_elsewhere(false);
    let (s, h, json) = w.get_full(&location).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let requirement = h["aauth-requirement"].to_str().unwrap();
    assert!(
        requirement.starts_with("requirement=interaction;"),
        "{requirement}"
    );
    let waiting = store.waiting(&id, NOW).await.unwrap().unwrap();
    assert_eq!(waiting.awaiting, Awaiting::Interaction);
    assert!(
        requirement.contains(&format!("code=\"{}\"", waiting.code.unwrap())),
        "{requirement}"
    );
}

#[tokio::test]
async fn a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was_in_memory() {
    a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was(Arc::new(
        MemoryStore::default(),
    ))
    .await;
}

#[tokio::test]
async fn a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was_in_sqlite() {
    a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was(Arc::new(
        aauth_access_server::SqliteStore::in_memory().unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was_in_postgres() {
    let Some(db) = aauth_test_support::services::PgSchema::new(
        "a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was",
    ) else {
        return;
    };
    let store = aauth_access_server::PgStore::connect(&db.options)
        .await
        .unwrap();
    a_next_step_without_a_code_of_its_own_leaves_the_request_as_it_was(Arc::new(store)).await;
    db.drop_schema().await;
}
