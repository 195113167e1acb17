//! What a person's decision leaves behind, and who may still make one: the way back to the
//! agent's callback in a browser that applies `form-action` to a form's redirects, the
//! binding of an approval that could not be saved, a request opened by the wrong person
//! and given back when they sign out, an account disabled or its password replaced while
//! a session lasts, and nothing delivered in a disabled account's name.

use std::sync::Arc;
use std::time::Duration;

use aauth_person_server::{
    Admin, ConsentKind, ConsentPolicy, ConsentRequest, Decision, INTERACT_PATH, LOGOUT_PATH,
    MISSION_PATH, MemoryStore, PERMISSION_PATH, PERSON_TOKEN_PATH, PsStore,
};
use aauth_test_support::request::header;
use aauth_tokens::AgentId;
use http::StatusCode;

use crate::consent::{
    Browser, Page, approve, callback_world, code_of, consenting_world, decide,
    open_code_with_callback, open_with_callback, poll,
};
use crate::racing::ChangedOnBind;
use crate::{NOW, World, id};

/// The pages' policy with nothing allowed elsewhere.
const PLAIN_POLICY: &str = "default-src 'none'; style-src 'self'; img-src data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const AGENT: &str = "aauth:assistant@agent.example";

fn agent() -> AgentId {
    AgentId::parse(AGENT).unwrap()
}

/// A person-token request of the (unbound) agent that waits for a person: its pending
/// URL and code.
async fn ask_a_person(w: &World) -> (String, String) {
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (s, headers, json) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    (header(&headers, "location"), code_of(&headers))
}

/// `b` signs in as `account` and opens the request `code` names.
async fn open(w: &World, b: &mut Browser, code: &str, account: &str, password: &str) -> Page {
    let signed_in = b.sign_in(w, code, account, password).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.html
    );
    b.go(w, "GET", &header(&signed_in.headers, "location"), &[])
        .await
}

/// Chrome and Safari apply `form-action` to the redirects that follow a form's
/// submission: the consent page's policy names the (admitted) callback's origin, so the
/// decision's `303` to the callback loads; a callback not admitted adds nothing.
#[tokio::test]
async fn the_consent_page_lets_its_form_lead_to_the_agents_callback() {
    let cb = "https://agent.example/callback?flow=7";
    let w = callback_world().await;
    let (page, mut b, code) = open_with_callback(&w, cb, NOW).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(
        header(&page.headers, "content-security-policy"),
        "default-src 'none'; style-src 'self'; img-src data:; \
         form-action 'self' https://agent.example; frame-ancestors 'none'; base-uri 'none'"
    );
    let done = crate::consent::decide_for(&mut b, &w, &code, &page, cb, "grant").await;
    assert_eq!(
        (done.status, header(&done.headers, "location").as_str()),
        (StatusCode::SEE_OTHER, cb)
    );

    // Not admitted, or none: the policy stays this server's alone.
    let w = callback_world().await;
    let (page, _, _) = open_with_callback(&w, "https://evil.example/callback", NOW).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(
        header(&page.headers, "content-security-policy"),
        PLAIN_POLICY
    );
    let w = callback_world().await;
    let (_, code) = crate::consent::deferred_for_alice(&w).await;
    let page = open(
        &w,
        &mut Browser::default(),
        &code,
        "alice",
        "correct horse battery",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(
        header(&page.headers, "content-security-policy"),
        PLAIN_POLICY
    );
}

/// The agent provider's metadata with loopback callbacks allowed; no resource metadata.
struct LoopbackProvider;
#[async_trait::async_trait]
impl aauth_metadata::Fetch for LoopbackProvider {
    async fn get(
        &self,
        url: &aauth_metadata::HttpsUrl,
    ) -> Result<aauth_metadata::Fetched, aauth_metadata::FetchError> {
        if url.as_str() == "https://agent.example/.well-known/aauth-agent.json" {
            return Ok(aauth_metadata::Fetched::ok(
                r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json","callback_endpoint":"https://agent.example/callback","localhost_callback_allowed":true}"#,
            ));
        }
        Err(aauth_metadata::FetchError::Status {
            status: 404,
            retry_after: None,
        })
    }
}

/// A loopback callback: named in the policy when it can be (`http://localhost:8080`);
/// an IPv6 literal, which the policy's grammar cannot name, is reached by a page that
/// refreshes to it (a navigation `form-action` does not govern), with a link.
#[tokio::test]
async fn a_callback_the_policy_cannot_name_is_reached_by_a_refresh() {
    let world = || async {
        let mut w = consenting_world(Some(Arc::new(crate::consent::AskForAccess))).await;
        w.ps = w.ps.metadata(Arc::new(LoopbackProvider));
        w
    };
    let w = world().await;
    let (page, _, _) = open_with_callback(&w, "http://localhost:8080/cb", NOW).await;
    assert!(
        header(&page.headers, "content-security-policy")
            .contains("form-action 'self' http://localhost:8080;"),
        "{:?}",
        page.headers
    );

    for decision in ["grant", "deny"] {
        let cb = "http://[::1]:9/cb";
        let w = world().await;
        let (page, mut b, code) = open_with_callback(&w, cb, NOW).await;
        assert_eq!(page.hidden("callback"), cb);
        assert_eq!(
            header(&page.headers, "content-security-policy"),
            PLAIN_POLICY
        );
        let done = crate::consent::decide_for(&mut b, &w, &code, &page, cb, decision).await;
        let target = if decision == "grant" {
            cb.to_owned()
        } else {
            format!("{cb}?error=access_denied")
        };
        assert_eq!(done.status, StatusCode::OK, "{}", done.html);
        assert_eq!(header(&done.headers, "refresh"), format!("0; url={target}"));
        assert!(
            done.html.contains(&format!("<a href=\"{target}\">")),
            "{}",
            done.html
        );
    }
}

/// An approval whose save fails (the agent changed its request in the same instant)
/// leaves the agent bound to nobody: the binding it made is undone. Read again and
/// approved, it binds.
#[tokio::test]
async fn an_approval_that_cannot_be_saved_binds_nothing() {
    let store = Arc::new(ChangedOnBind::over(Arc::new(MemoryStore::default()), true));
    let mut w = crate::world_over(Arc::clone(&store) as Arc<dyn PsStore>, None);
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    w.ps.set_password("alice", "pw").await.unwrap();
    let (location, code) = ask_a_person(&w).await;
    let mut b = Browser::default();
    let page = open(&w, &mut b, &code, "alice", "pw").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let csrf = page.hidden("csrf");

    let refused = decide(&mut b, &w, &code, &csrf, "grant").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    let provider = id("https://agent.example");
    assert_eq!(
        w.ps.store().binding(&provider, &agent()).await.unwrap(),
        None,
        "no agent stays linked without an approval"
    );
    let id = location.trim_start_matches("/pending/");
    let p = w.ps.store().pending(id).await.unwrap().unwrap();
    assert!(p.is_open(), "{:?}", p.state);

    let done = decide(&mut b, &w, &code, &csrf, "grant").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert_eq!(
        w.ps.store()
            .binding(&provider, &agent())
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// The CSRF token of `b`'s session (from the signed-in page without a code).
async fn session_csrf(w: &World, b: &mut Browser) -> String {
    let csrf = b.go(w, "GET", INTERACT_PATH, &[]).await.hidden("csrf");
    assert!(!csrf.is_empty());
    csrf
}

/// A request nobody was asked for is the first account's to open it; that account
/// signing out of it ("not you?") gives it back, so its person can open it (not a wrong
/// attempt). Another account signing out gives back nothing of someone else's.
#[tokio::test]
async fn signing_out_gives_back_a_request_opened_by_the_wrong_person() {
    let w = consenting_world(None).await;
    let (location, code) = ask_a_person(&w).await;
    let id = location.trim_start_matches("/pending/");
    let viewer_and_attempts = || async {
        let p = w.ps.store().pending(id).await.unwrap().unwrap();
        (p.viewer, p.attempts)
    };

    let mut mallory = Browser::default();
    let seen = open(&w, &mut mallory, &code, "mallory", "mallory's password").await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.html);
    let mut alice = Browser::default();
    let refused = open(&w, &mut alice, &code, "alice", "correct horse battery").await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(viewer_and_attempts().await, (Some("mallory".to_owned()), 1));

    // "Not you?" on the page mallory saw.
    let out = mallory
        .go(
            &w,
            "POST",
            LOGOUT_PATH,
            &[("csrf", &seen.hidden("csrf")), ("code", &code)],
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.html);
    assert_eq!(viewer_and_attempts().await, (None, 1));

    let page = alice
        .go(&w, "GET", &format!("{INTERACT_PATH}?code={code}"), &[])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(viewer_and_attempts().await, (Some("alice".to_owned()), 1));

    // mallory, signed in again, signs out naming alice's request: it stays alice's.
    let again = mallory
        .sign_in(&w, "", "mallory", "mallory's password")
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let csrf = session_csrf(&w, &mut mallory).await;
    let out = mallory
        .go(&w, "POST", LOGOUT_PATH, &[("csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.html);
    assert_eq!(viewer_and_attempts().await, (Some("alice".to_owned()), 1));

    let done = decide(&mut alice, &w, &code, &page.hidden("csrf"), "grant").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    // Decided: signing out gives nothing back.
    let out = alice
        .go(
            &w,
            "POST",
            LOGOUT_PATH,
            &[("csrf", &page.hidden("csrf")), ("code", &code)],
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.html);
    let p = w.ps.store().pending(id).await.unwrap().unwrap();
    assert_eq!(p.viewer.as_deref(), Some("alice"));
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// A session that outlived its account's disabling (one started in the same instant as
/// the operator's change, or an account disabled in the store) decides nothing and
/// changes nothing on the dashboard: `403`, the account's sessions ended.
#[tokio::test]
async fn a_disabled_accounts_session_decides_and_changes_nothing() {
    let provider = id("https://agent.example");
    for what in ["decide", "unlink"] {
        let w = consenting_world(None).await;
        let (location, code) = ask_a_person(&w).await;
        let mut b = Browser::default();
        let page = open(&w, &mut b, &code, "alice", "correct horse battery").await;
        let csrf = page.hidden("csrf");
        if what == "unlink" {
            w.bind(AGENT, "alice").await;
        }
        assert!(
            w.ps.store()
                .set_account_disabled("alice", true)
                .await
                .unwrap()
        );
        let refused = if what == "decide" {
            decide(&mut b, &w, &code, &csrf, "grant").await
        } else {
            let form = [
                ("csrf", csrf.as_str()),
                ("action", "revoke-agent"),
                ("provider", "https://agent.example"),
                ("agent", AGENT),
                ("confirm", "yes"),
            ];
            b.go(&w, "POST", "/account", &form).await
        };
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            refused.html
        );
        assert!(
            refused.html.contains("disabled"),
            "{what}: {}",
            refused.html
        );
        assert!(b.cookie("__Host-aauth-session").is_none(), "{what}");
        let bound = w.ps.store().binding(&provider, &agent()).await.unwrap();
        let p =
            w.ps.store()
                .pending(location.trim_start_matches("/pending/"))
                .await
                .unwrap()
                .unwrap();
        if what == "decide" {
            assert_eq!((bound, p.is_open()), (None, true), "nothing approved");
        } else {
            assert_eq!(bound.as_deref(), Some("alice"), "nothing unlinked");
        }
    }
}

/// Asks the person for missions, permissions and completions.
struct AskForGovernance;
impl ConsentPolicy for AskForGovernance {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        match r.kind {
            ConsentKind::Mission | ConsentKind::Permission | ConsentKind::Completion => {
                Decision::AskPerson
            }
            _ => Decision::Approve,
        }
    }
}

/// Approved by alice, then her account disabled: the poll is refused (`403 denied`), as
/// a token's would be; enabled again, the approval is delivered.
async fn delivered_only_while_enabled(
    w: &World,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let admin = Admin::new(Arc::clone(w.ps.store()));
    let (s, headers, json) = w.post_full(path, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{path}: {json}");
    let location = header(&headers, "location");
    approve(w, &code_of(&headers), "alice", "correct horse battery").await;
    admin.set_disabled("alice", true, NOW).await.unwrap();
    let (s, _, json) = poll(w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{path}: {json}"
    );
    admin.set_disabled("alice", false, NOW).await.unwrap();
    let (s, _, json) = poll(w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{path}: {json}");
    json
}

/// Nothing approved is delivered for a disabled account, whatever it is: a mission, a
/// permission, a completion (a token already was not).
#[tokio::test]
async fn nothing_approved_is_delivered_for_a_disabled_account() {
    let w = consenting_world(Some(Arc::new(AskForGovernance))).await;
    w.bind(AGENT, "alice").await;
    let mission = delivered_only_while_enabled(
        &w,
        MISSION_PATH,
        serde_json::json!({"description": "tidy my files", "capabilities": ["interaction"]}),
    )
    .await;
    let s256 = mission["s256"].as_str().unwrap().to_owned();
    let permission = delivered_only_while_enabled(
        &w,
        PERMISSION_PATH,
        serde_json::json!({"action": "MoveFile", "mission_s256": s256, "capabilities": ["interaction"]}),
    )
    .await;
    assert_eq!(permission["permission"], "granted");
    let completed = delivered_only_while_enabled(
        &w,
        &format!("{MISSION_PATH}/{s256}"),
        serde_json::json!({"action": "completion", "summary": "done", "capabilities": ["interaction"]}),
    )
    .await;
    assert_eq!(completed["status"], "completed");
}

/// `PersonServer::set_password` on an account that has a password ends its sessions, as
/// an operator's reset does; on a new account there is nothing to end.
#[tokio::test]
async fn a_new_password_ends_the_accounts_sessions() {
    let w = consenting_world(None).await;
    let (_, code) = ask_a_person(&w).await;
    let mut alice = Browser::default();
    let page = open(&w, &mut alice, &code, "alice", "correct horse battery").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let mut mallory = Browser::default();
    mallory
        .sign_in(&w, "", "mallory", "mallory's password")
        .await;

    w.ps.set_password("alice", "a new password").await.unwrap();
    w.ps.set_password("carol", "a first password")
        .await
        .unwrap();
    let after = alice
        .go(&w, "GET", &format!("{INTERACT_PATH}?code={code}"), &[])
        .await;
    assert!(after.html.contains("name=\"password\""), "{}", after.html);
    assert!(!after.html.contains("Signed in as"), "{}", after.html);
    let theirs = mallory.go(&w, "GET", INTERACT_PATH, &[]).await;
    assert!(
        theirs.html.contains("Signed in as"),
        "another account's session stays"
    );
    // The new password opens it.
    let page = open(&w, &mut alice, &code, "alice", "a new password").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
}

/// A person still deciding when the request expired, sent back by a page (not a
/// redirect the sign-in form's policy would stop); unchanged otherwise.
#[tokio::test]
async fn an_expired_request_goes_back_to_the_agent_by_a_refresh() {
    let w = callback_world().await;
    let (_, code) = crate::consent::deferred_for_alice(&w).await;
    let (page, _) =
        open_code_with_callback(&w, &code, "https://agent.example/callback", NOW.plus(601)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(
        header(&page.headers, "refresh"),
        "0; url=https://agent.example/callback?error=interaction_expired"
    );
    assert!(page.headers.get("location").is_none());
    assert!(
        page.html
            .contains("href=\"https://agent.example/callback?error=interaction_expired\""),
        "{}",
        page.html
    );
}
