//! The person's page at the Access Server: the first account to open a code owns it
//! (anyone else presenting it is refused as for a wrong code), the person may deny the
//! request, and a person bound here to one account is never rebound to another. Codes
//! are counted before their lookup: codes sent at once are looked up no more than one
//! after another, and a right code leaves no count of its own behind.

use aauth_access_server::{AsStore, MemoryStore};
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{MemoryThrottle, RedisThrottle, Throttle, ThrottlePolicy};
use aauth_test_support::services::{redis_url, unique_name};

use super::flaky::Flaky;
use super::*;

impl World {
    /// `account`'s browser, signed in here, on this server's own page.
    async fn page_as(
        &self,
        account: &str,
        method: &str,
        target: &str,
        form: &str,
    ) -> (StatusCode, String) {
        self.page_as_at(account, method, target, form, NOW).await
    }

    /// [`World::page_as`] at time `at`.
    async fn page_as_at(
        &self,
        account: &str,
        method: &str,
        target: &str,
        form: &str,
        at: UnixTime,
    ) -> (StatusCode, String) {
        let cookie = format!("as-session={account}");
        let (s, _, html) = self
            .page_with_at(
                method,
                target,
                form,
                &[("cookie", &cookie), ("origin", "https://as.example")],
                at,
            )
            .await;
        (s, html)
    }
}

/// A world whose policy asks the person to bind their Person Server here first, and a
/// token request of its agent (its tokens living `life` seconds).
fn binding_world(life: u64) -> (World, serde_json::Value) {
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst));
    let t = w.tokens(life);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    (w, request)
}

/// Draft -11 §Interaction Code Format: a code is single-use; once alice opened hers,
/// bob presenting it (he holds it too: the agent showed it, or he was sent the link) is
/// refused as a wrong code and binds nothing; a few such presentations leave the
/// request hers.
#[tokio::test]
async fn the_first_account_to_open_a_code_owns_it() {
    let (w, request) = binding_world(600);
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (s, html) = w
        .page_as("alice", "GET", &format!("/interact?code={code}"), "")
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");

    let grant = format!("code={code}&decision=grant");
    assert_eq!(
        w.page_as("bob", "POST", "/interact", &grant).await.0,
        StatusCode::NOT_FOUND,
        "bob's approval binds nothing"
    );
    for _ in 0..3 {
        let (s, html) = w
            .page_as("bob", "GET", &format!("/interact?code={code}"), "")
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(!html.contains("resource.example"), "{html}");
    }
    let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::ACCEPTED, "still waiting for alice");

    // alice's code stays hers: she reopens it and approves.
    let (s, _) = w
        .page_as("alice", "GET", &format!("/interact?code={code}"), "")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        w.page_as("alice", "POST", "/interact", &grant).await.0,
        StatusCode::OK
    );
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// Draft -11 §Interaction Code Format (rate-limiting): after a small number of failed
/// attempts the interaction is terminally failed. Five presentations of alice's code by
/// other accounts end it: the Person Server's next poll is `410 invalid_code`, the code
/// opens nothing for alice either, and each presentation counted against bob too.
#[tokio::test]
async fn an_interaction_presented_by_others_five_times_ends() {
    let (w, request) = binding_world(600);
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let page = format!("/interact?code={code}");
    assert_eq!(w.page_as("alice", "GET", &page, "").await.0, StatusCode::OK);
    for account in ["bob", "bob", "carol", "bob", "carol"] {
        assert_eq!(
            w.page_as(account, "GET", &page, "").await.0,
            StatusCode::NOT_FOUND
        );
    }
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code")),
        "{json}"
    );
    assert_eq!(
        w.page_as("alice", "GET", &page, "").await.0,
        StatusCode::NOT_FOUND,
        "ended: the code opens nothing"
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);

    // Another request's code, after bob's three wrong ones here and three more (past
    // the throttle's five free failures): he is throttled, before any lookup.
    let (_, other) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    for _ in 0..3 {
        w.page_as("bob", "GET", "/interact?code=ZZZZZZZZ", "").await;
    }
    assert_eq!(
        w.page_as("bob", "GET", &format!("/interact?code={other}"), "")
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Draft -11 §Interaction Code Format (lifetime): once the pending request has expired,
/// presenting its code fails with `expired`: a `408` page, not "no such request", even
/// after the Person Server's poll has ended the request; to another account than the
/// one that opened it, it is a wrong code like any other.
#[tokio::test]
async fn a_code_whose_request_expired_says_so() {
    let (w, request) = binding_world(3000);
    for polled in [false, true] {
        let (location, code) = w
            .deferred_for_the_person(&request, "https://ps.example")
            .await;
        let page = format!("/interact?code={code}");
        assert_eq!(w.page_as("alice", "GET", &page, "").await.0, StatusCode::OK);
        let late = NOW.plus(601);
        if polled {
            let (s, json) = w.get_at(&location, late).await;
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::REQUEST_TIMEOUT, Some("expired")),
                "{json}"
            );
        }
        let (s, html) = w.page_as_at("alice", "GET", &page, "", late.plus(1)).await;
        assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "polled: {polled}: {html}");
        assert!(html.contains("expired"), "{html}");
        let (s, _) = w.page_as_at("bob", "GET", &page, "", late.plus(1)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "not bob's: polled: {polled}");
    }
    // A wrong code at the same time is still "no request".
    let (s, _) = w
        .page_as_at("alice", "GET", "/interact?code=ZZZZZZZZ", "", NOW.plus(601))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The page offers a Deny beside Approve; denying ends the request `denied` at the
/// Person Server's next poll (then `410`), even when its resource token is revoked
/// before that poll, and binds nothing.
#[tokio::test]
async fn the_person_may_deny_the_request() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst));
    let t = w.tokens(600);
    let rt = w.resource_token(&t, |b| b);
    let request = serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person});
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (s, html) = w
        .page_as("alice", "GET", &format!("/interact?code={code}"), "")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(r#"<button name="decision" value="deny">"#),
        "{html}"
    );
    let (s, html) = w
        .page_as(
            "alice",
            "POST",
            "/interact",
            &format!("code={code}&decision=deny"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    // Used: the code opens nothing now.
    let (s, _) = w
        .page_as("alice", "GET", &format!("/interact?code={code}"), "")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The resource revoking its token meanwhile does not turn the denial into
    // `revoked`: the person's answer stands.
    assert_eq!(w.revoke_resource_token(&rt).await, StatusCode::OK);
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    assert_eq!(
        w.get_path(&location, "https://ps.example", &w.ps).await.0,
        StatusCode::GONE
    );
    // Nothing was bound: the next request (with a fresh resource token) asks for the
    // person again.
    let again = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    w.deferred_for_the_person(&again, "https://ps.example")
        .await;
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

/// Two requests for one person wait for them at once; alice approves one (binding her
/// Person Server here to her account), and bob opening the other's code cannot bind the
/// same person to his: refused, the binding stays alice's, and that request ends
/// `denied`.
#[tokio::test]
async fn a_person_bound_to_one_account_is_never_rebound_to_another() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (first, code1) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let request2 = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (second, code2) = w
        .deferred_for_the_person(&request2, "https://ps.example")
        .await;
    assert_eq!(
        w.page_as(
            "alice",
            "POST",
            "/interact",
            &format!("code={code1}&decision=grant")
        )
        .await
        .0,
        StatusCode::OK
    );
    let (s, html) = w
        .page_as(
            "bob",
            "POST",
            "/interact",
            &format!("code={code2}&decision=grant"),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("another account"), "{html}");
    let (s, json) = w.get_path(&second, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    let (s, json) = w.get_path(&first, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

/// Grants only a person bound here to one of the resource's own accounts (alice's):
/// asks for the person first, and refuses a binding any other account made.
struct OnlyAlicesAccount;
impl AccessPolicy for OnlyAlicesAccount {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        match r.bound_account {
            Some("alice") => AccessDecision::Grant,
            Some(other) => AccessDecision::Deny(format!("bound by {other}, not the person")),
            None => AccessDecision::RequireInteraction,
        }
    }
}

/// The policy sees which account bound the person, not only that one did: the operator
/// of the agent the code travelled through, signed in here, binds the person to their
/// own account, and the policy can refuse that.
#[tokio::test]
async fn the_policy_sees_the_account_the_person_is_bound_to() {
    for (account, expected) in [
        ("alice", StatusCode::OK),
        ("mallory", StatusCode::FORBIDDEN),
    ] {
        let mut w = world();
        w.server = w.server.policy(Arc::new(OnlyAlicesAccount));
        let t = w.tokens(600);
        let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
        let (location, code) = w
            .deferred_for_the_person(&request, "https://ps.example")
            .await;
        let (s, html) = w
            .page_as(
                account,
                "POST",
                "/interact",
                &format!("code={code}&decision=grant"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{account}: {html}");
        let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
        assert_eq!(s, expected, "{account}: {json}");
        if account == "mallory" {
            assert_eq!(
                json["detail"].as_str(),
                Some("denied: bound by mallory, not the person"),
                "{json}"
            );
        }
        // The next request of the same person is decided at once, the same way.
        let (s, json) = w.ask(&request).await;
        assert_eq!(s, expected, "{account}, again: {json}");
    }
}

/// The throttles a test runs over: in memory, and in Redis when there is one (under a
/// prefix of its own).
async fn throttles(test: &str) -> Vec<(&'static str, Arc<dyn Throttle>)> {
    let mut all: Vec<(&'static str, Arc<dyn Throttle>)> =
        vec![("memory", Arc::new(MemoryThrottle::default()))];
    if let Some(url) = redis_url(test) {
        let redis =
            Redis::connect(&RedisConfig::new(url).prefix(format!("{}:", unique_name("as"))))
                .await
                .unwrap();
        all.push((
            "redis",
            Arc::new(RedisThrottle::new(redis, ThrottlePolicy::default())),
        ));
    }
    all
}

/// [`binding_world`] over a store whose lookups by code can be slowed and are counted,
/// counting wrong codes in `throttle`.
fn binding_world_over(throttle: Arc<dyn Throttle>) -> (World, serde_json::Value, Arc<Flaky>) {
    let (mut w, request) = binding_world(600);
    let store = Arc::new(Flaky::new(Arc::new(MemoryStore::default())));
    w.server = w.server.store(store.clone()).throttle(throttle);
    (w, request, store)
}

/// Twenty wrong codes sent at once by one account while lookups take their time, as over
/// a network: no more are looked up than one after another would be (five free, and the
/// one that starts the block); the rest are refused before any lookup. With the
/// throttle in memory and in Redis.
#[tokio::test]
async fn codes_sent_at_once_are_looked_up_no_more_than_one_after_another() {
    for (what, throttle) in
        throttles("codes_sent_at_once_are_looked_up_no_more_than_one_after_another").await
    {
        let (w, _, store) = binding_world_over(throttle);
        let w = Arc::new(w);
        store.slow_lookups();
        let guesses: Vec<_> = (0..20)
            .map(|i| {
                let w = Arc::clone(&w);
                tokio::spawn(async move {
                    let page = format!("/interact?code=ZZZZZZ{i:02}");
                    w.page_as("mallory", "GET", &page, "").await.0
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for g in guesses {
            statuses.push(g.await.unwrap());
        }
        let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
        assert_eq!(count(StatusCode::NOT_FOUND), 6, "{what}: {statuses:?}");
        assert_eq!(
            count(StatusCode::TOO_MANY_REQUESTS),
            14,
            "{what}: {statuses:?}"
        );
        assert_eq!(store.lookups(), 6, "{what}: looked up");
    }
}

/// The regression that once reverted counting codes before their lookup: an account with
/// the free five wrong codes behind it opens its own request, approves it, and then opens
/// and approves another. Each right code is counted before its lookup, one past the free
/// failures, and given back: nothing it started refuses the next. The account's own count
/// is unchanged: its next wrong code is its sixth, and starts the block.
#[tokio::test]
async fn an_account_with_wrong_codes_behind_it_gets_its_own_requests() {
    for (what, throttle) in
        throttles("an_account_with_wrong_codes_behind_it_gets_its_own_requests").await
    {
        let (w, request, _) = binding_world_over(throttle);
        let first = w
            .deferred_for_the_person(&request, "https://ps.example")
            .await;
        let second = w
            .deferred_for_the_person(&request, "https://ps.example")
            .await;
        for i in 0..5 {
            let page = format!("/interact?code=ZZZZZZ{i:02}");
            let (s, _) = w.page_as("alice", "GET", &page, "").await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{what}: {i}");
        }
        for (location, code) in [first, second] {
            let (s, html) = w
                .page_as("alice", "GET", &format!("/interact?code={code}"), "")
                .await;
            assert_eq!(s, StatusCode::OK, "{what}: {html}");
            let grant = format!("code={code}&decision=grant");
            let (s, html) = w.page_as("alice", "POST", "/interact", &grant).await;
            assert_eq!(s, StatusCode::OK, "{what}: {html}");
            let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
            assert_eq!(s, StatusCode::OK, "{what}: {json}");
        }
        for (code, expected) in [
            ("ZZZZZZ05", StatusCode::NOT_FOUND),
            ("ZZZZZZ06", StatusCode::TOO_MANY_REQUESTS),
        ] {
            let (s, _) = w
                .page_as("alice", "GET", &format!("/interact?code={code}"), "")
                .await;
            assert_eq!(s, expected, "{what}: {code}");
        }
    }
}

/// The person's Person Server binding of the requests [`binding_world`] makes, as the
/// store holds it (the account it names, if any).
async fn binding(store: &Flaky) -> Option<String> {
    store
        .bound_account(
            &id("https://ps.example"),
            &id("https://resource.example"),
            "alice-at-resource",
        )
        .await
        .unwrap()
}

/// alice approves `code` while, between her approval's binding and its write of the
/// request, she denies it in another tab: the approval's answer (the denial's is `200`).
async fn approval_overtaken_by_a_denial(w: Arc<World>, store: &Flaky, code: &str) -> StatusCode {
    let hold = store.hold_next_bind();
    let approval = tokio::spawn({
        let w = Arc::clone(&w);
        let grant = format!("code={code}&decision=grant");
        async move { w.page_as("alice", "POST", "/interact", &grant).await }
    });
    hold.bound.notified().await;
    let deny = format!("code={code}&decision=deny");
    let (s, html) = w.page_as("alice", "POST", "/interact", &deny).await;
    assert_eq!(s, StatusCode::OK, "the denial lands: {html}");
    hold.release.notify_one();
    let (s, html) = approval.await.unwrap();
    assert!(html.contains("changed or ended"), "{html}");
    s
}

/// A token request of [`binding_world`]'s agent, with a fresh resource token.
fn fresh_request(w: &World) -> serde_json::Value {
    let t = w.tokens(600);
    serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person})
}

/// An approval whose write of the request loses to a denial from another tab (or a poll
/// taking the request, or the agent changing it) binds nothing: the binding it made is
/// undone, the request ends `denied`, and the person's next request asks for them
/// again.
#[tokio::test]
async fn an_approval_overtaken_by_a_denial_leaves_no_binding() {
    let (w, request, store) = binding_world_over(Arc::new(MemoryThrottle::default()));
    let w = Arc::new(w);
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (s, _) = w
        .page_as("alice", "GET", &format!("/interact?code={code}"), "")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        approval_overtaken_by_a_denial(Arc::clone(&w), &store, &code).await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        binding(&store).await,
        None,
        "no binding without an approval"
    );
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    w.deferred_for_the_person(&fresh_request(&w), "https://ps.example")
        .await;
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

/// The same race over a person bound here to alice before (by her approval of another
/// request that waited beside this one): that binding is not the lost approval's to
/// undo, and stays; the other request completes.
#[tokio::test]
async fn an_approval_overtaken_by_a_denial_keeps_the_binding_that_stood_before() {
    let (w, request, store) = binding_world_over(Arc::new(MemoryThrottle::default()));
    let w = Arc::new(w);
    let (first, code1) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (_, code2) = w
        .deferred_for_the_person(&fresh_request(&w), "https://ps.example")
        .await;
    let grant = format!("code={code1}&decision=grant");
    assert_eq!(
        w.page_as("alice", "POST", "/interact", &grant).await.0,
        StatusCode::OK
    );
    assert_eq!(binding(&store).await.as_deref(), Some("alice"));
    assert_eq!(
        approval_overtaken_by_a_denial(Arc::clone(&w), &store, &code2).await,
        StatusCode::CONFLICT
    );
    assert_eq!(binding(&store).await.as_deref(), Some("alice"), "kept");
    let (s, json) = w.get_path(&first, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}
