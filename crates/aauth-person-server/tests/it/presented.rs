//! A deferred auth-token request whose presented token expires while the person decides,
//! or after they approved (PS-32, PS-35): nothing is issued with it, and the request ends
//! with `expired_presented_token` instead of failing at every poll.

use std::sync::Arc;
use std::time::Duration;

use aauth_person_server::{INTERACT_PATH, LOGIN_PATH};
use http::StatusCode;

use crate::consent::{
    AskForAccess, approve, assert_error, consenting_world, deferred_for_alice, poll,
};
use crate::{NOW, World};

/// A world that asks alice for auth tokens, whose agent token (two hours) outlives the
/// person tokens it presents (one hour), and whose requests may wait two hours for her.
pub(crate) async fn outliving_world() -> World {
    let mut w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.agent_token =
        crate::agent_token(&w.provider, "aauth:assistant@agent.example", &w.agent, 7200);
    w.ps = w.ps.consent_pages(Duration::from_secs(7200));
    w
}

/// When the person token minted at [`NOW`] has expired.
pub(crate) fn past_the_person_token() -> aauth_keys::time::UnixTime {
    NOW.plus(aauth_tokens::PERSON_TOKEN_MAX_LIFETIME)
}

#[tokio::test]
async fn an_approval_is_not_delivered_past_the_presented_token() {
    let w = outliving_world().await;
    let (location, code) = deferred_for_alice(&w).await;
    approve(&w, &code, "alice", "correct horse battery").await;
    let before = w.state();
    // The agent polls once the person token has expired (its agent token still good).
    let late = past_the_person_token();
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_error(s, &json, StatusCode::BAD_REQUEST, "expired_presented_token");
    assert!(
        !w.state().contains("Auth(AuthTokenRecord"),
        "no auth token issued: {}",
        w.state()
    );
    assert_ne!(w.state(), before, "the request ended");
    // It ended: not refused again at every poll.
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_eq!(s, StatusCode::GONE, "{json}");
}

/// The agent token and the person token it capped end together (an hour each): the answer
/// names the presented token, as when the Access Server holds the request.
#[tokio::test]
async fn a_presented_token_ending_with_the_agent_token_is_named() {
    let mut w = outliving_world().await;
    w.agent_token = crate::agent_token(
        &w.provider,
        "aauth:assistant@agent.example",
        &w.agent,
        aauth_tokens::PERSON_TOKEN_MAX_LIFETIME,
    );
    let (location, code) = deferred_for_alice(&w).await;
    approve(&w, &code, "alice", "correct horse battery").await;
    let late = past_the_person_token();
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_error(s, &json, StatusCode::BAD_REQUEST, "expired_presented_token");
}

#[tokio::test]
async fn a_request_waits_for_the_person_no_longer_than_its_presented_token() {
    let w = outliving_world().await;
    let (location, code) = deferred_for_alice(&w).await;
    let late = past_the_person_token();
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    // Just before, it is still waiting.
    let (s, _, json) = poll(
        &w,
        "GET",
        &location,
        &w.agent,
        &late_token,
        None,
        late.minus(1),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    // The person, signing in then, can no longer approve it.
    let mut b = crate::consent::Browser::default();
    let login = b
        .go_at(
            &w,
            "GET",
            &format!("{INTERACT_PATH}?code={code}"),
            &[],
            late,
        )
        .await;
    let csrf = login.hidden("csrf");
    let form = [
        ("code", code.as_str()),
        ("csrf", &csrf),
        ("username", "alice"),
        ("password", "correct horse battery"),
    ];
    let signed_in = b.go_at(&w, "POST", LOGIN_PATH, &form, late).await;
    let shown = b
        .go_at(
            &w,
            "GET",
            &crate::consent::header_of(&signed_in.headers, "location"),
            &[],
            late,
        )
        .await;
    assert_eq!(shown.status, StatusCode::REQUEST_TIMEOUT, "{}", shown.html);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_error(s, &json, StatusCode::BAD_REQUEST, "expired_presented_token");
}
