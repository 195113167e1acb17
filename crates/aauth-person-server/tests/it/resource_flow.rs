//! The return from a resource's own flow (`/interact/resource/{code}/{flow}`) names a
//! request by its interaction code: it tells no code apart (every failure is one answer,
//! the flow value checked before anything about the request), guesses on it are
//! throttled as the consent page's are, and the person really returning is not counted.

use std::sync::Arc;

use aauth_person_server::PERSON_TOKEN_PATH;
use aauth_person_server::dangerous::AutoApprove;
use aauth_test_support::request::header;
use http::StatusCode;

use crate::consent::{
    Browser, Page, callback_path, code_of, consenting_world, poll, resource_flow_request,
};
use crate::{NOW, World};

/// A flow value of the right form that is no request's.
const WRONG_FLOW: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Alice signed in on her request's code and shown the resource's interstitial: her
/// browser, and the path of this server's callback the interstitial gives the resource.
async fn alice_at_the_interstitial(w: &World, code: &str) -> (Browser, String) {
    let mut b = Browser::default();
    let signed_in = b.sign_in(w, code, "alice", "correct horse battery").await;
    let first = b.follow(w, &signed_in).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.html);
    let path = callback_path(&first.html);
    assert!(path.starts_with("/interact/resource/"), "{path}");
    (b, path)
}

/// A browser signed in as `account` (on the code of a request it may not see).
async fn signed_in(w: &World, code: &str, account: &str, password: &str) -> Browser {
    let mut b = Browser::default();
    let page = b.sign_in(w, code, account, password).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    b
}

/// Status, headers and body: the whole response.
fn whole(p: &Page) -> (StatusCode, Vec<(String, Vec<u8>)>, &str) {
    let headers = p
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    (p.status, headers, p.html.as_str())
}

/// The finding: a live code with a wrong flow value was "Nothing waits for this." while a
/// wrong code was "This request is over, or not yours.", so that a signed-in guesser told
/// live codes (of agents bound to nobody, then claimed on /interact) apart. Now a wrong
/// code, a live code of an unbound agent's request, another person's request with a
/// wrong flow or even its right one, and a request that is over all get one answer.
#[tokio::test]
async fn every_failed_return_is_the_same_answer_whatever_the_code() {
    let w = consenting_world(Some(Arc::new(AutoApprove))).await;
    // A request of an agent bound to nobody (made before alice's request binds it).
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (s, headers, json) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let unbound = code_of(&headers);
    let (_, hers) = resource_flow_request(&w).await;
    let (_, her_path) = alice_at_the_interstitial(&w, &hers).await;
    let her_flow = her_path.rsplit('/').next().unwrap().to_owned();

    let mut mallory = signed_in(&w, &unbound, "mallory", "mallory's password").await;
    let wrong_code = mallory
        .go(
            &w,
            "GET",
            &format!("/interact/resource/ZZZZ-ZZZZ/{WRONG_FLOW}"),
            &[],
        )
        .await;
    assert_eq!(
        wrong_code.status,
        StatusCode::NOT_FOUND,
        "{}",
        wrong_code.html
    );
    for (what, path) in [
        (
            "a live unbound code",
            format!("/interact/resource/{unbound}/{WRONG_FLOW}"),
        ),
        (
            "another person's code",
            format!("/interact/resource/{hers}/{WRONG_FLOW}"),
        ),
        (
            "another person's code and flow",
            format!("/interact/resource/{hers}/{her_flow}"),
        ),
        (
            "a code without a flow",
            format!("/interact/resource/{unbound}"),
        ),
    ] {
        let page = mallory.go(&w, "GET", &path, &[]).await;
        assert_eq!(whole(&page), whole(&wrong_code), "{what}");
    }
    // Nothing of alice's request moved: she returns as before.
    let mut alice = signed_in(&w, &hers, "alice", "correct horse battery").await;
    let back = alice.go(&w, "GET", &her_path, &[]).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.html);
    // Her own code with a wrong flow, and her own request once over: the same answer.
    let page = alice
        .go(
            &w,
            "GET",
            &format!("/interact/resource/{hers}/{WRONG_FLOW}"),
            &[],
        )
        .await;
    assert_eq!(whole(&page), whole(&wrong_code), "her code, a wrong flow");
    let ended = alice
        .go(&w, "GET", &format!("{her_path}?error=access_denied"), &[])
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.html);
    let over = alice.go(&w, "GET", &her_path, &[]).await;
    assert_eq!(whole(&over), whole(&wrong_code), "her request, over");
}

/// Guesses here count as the consent page's do: five wrong ones a session, then the
/// session is refused; across sessions the account is blocked after its free failures,
/// and then even the right code and flow wait until the block ends. The person returning
/// with the right code and flow, however often, is never counted.
#[tokio::test]
async fn guesses_at_the_return_are_throttled_and_the_real_return_is_not_counted() {
    let w = consenting_world(Some(Arc::new(AutoApprove))).await;
    let (location, code) = resource_flow_request(&w).await;
    let (mut b, path) = alice_at_the_interstitial(&w, &code).await;
    // The real return, again and again: not a guess.
    for n in 0..8 {
        let back = b.go(&w, "GET", &path, &[]).await;
        assert_eq!(
            back.status,
            StatusCode::SEE_OTHER,
            "return {n}: {}",
            back.html
        );
    }
    let wrong = format!("/interact/resource/{code}/{WRONG_FLOW}");
    for n in 0..5 {
        let page = b.go(&w, "GET", &wrong, &[]).await;
        assert_eq!(
            page.status,
            StatusCode::NOT_FOUND,
            "guess {n}: {}",
            page.html
        );
    }
    // The session's five are spent: even the right return is refused.
    let refused = b.go(&w, "GET", &path, &[]).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.html
    );
    // Another session of the account: its sixth failure starts a block...
    let mut again = signed_in(&w, &code, "alice", "correct horse battery").await;
    let page = again.go(&w, "GET", &wrong, &[]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.html);
    // ...during which the right code and flow are refused, with the wait.
    let blocked = again.go(&w, "GET", &path, &[]).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.html
    );
    let wait: u64 = header(&blocked.headers, "retry-after").parse().unwrap();
    assert!(wait > 0, "{wait}");
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED, "still waiting: {json}");
    // The block over, the person's return goes through, and her consent after it.
    let back = again.go_at(&w, "GET", &path, &[], NOW.plus(wait)).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.html);
    let consent = again
        .go_at(
            &w,
            "GET",
            &header(&back.headers, "location"),
            &[],
            NOW.plus(wait),
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    assert!(consent.html.contains("decision"), "{}", consent.html);
}
