//! Draft -11 §User Interaction, at the Access Server's interaction page: an agent's
//! `callback` (`{url}?code={code}&callback={callback}`) is where the person's browser goes
//! once they decide, with `error=access_denied` on a denial (§Interaction Callback
//! Errors), if the provider of the agent's token publishes it as its `callback_endpoint`.
//! Any other callback is never followed (no open redirect): the page ends with its own
//! completion page, as without a callback.

use super::*;

/// The agent provider's metadata, as a fetcher would return it: its agents' callback is
/// `https://agent.example/callback`; no other party publishes a document.
struct ProviderMetadata;

#[async_trait::async_trait]
impl aauth_metadata::Fetch for ProviderMetadata {
    async fn get(
        &self,
        url: &aauth_metadata::HttpsUrl,
    ) -> Result<aauth_metadata::Fetched, aauth_metadata::FetchError> {
        Ok(match url.as_str() {
            "https://agent.example/.well-known/aauth-agent.json" => aauth_metadata::Fetched::ok(
                r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json","callback_endpoint":"https://agent.example/callback"}"#,
            ),
            _ => aauth_metadata::Fetched::status(404),
        })
    }
}

const GOOD: &str = "https://agent.example/callback?flow=7";
const PAGE_POLICY: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `s` percent-encoded as a query value.
fn escaped(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A world whose policy asks the person to bind their Person Server first, reading the
/// agent provider's metadata when `metadata`, and a token request of its agent.
fn callback_world(metadata: bool, life: u64) -> (World, serde_json::Value) {
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst));
    if metadata {
        w.server = w.server.metadata(Arc::new(ProviderMetadata));
    }
    let t = w.tokens(life);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    (w, request)
}

impl World {
    /// alice's browser at `at`, signed in here, on this server's own page.
    async fn alice_at(
        &self,
        method: &str,
        target: &str,
        form: &str,
        at: UnixTime,
    ) -> (StatusCode, http::HeaderMap, String) {
        let headers = [
            ("cookie", "as-session=alice"),
            ("origin", "https://as.example"),
        ];
        self.page_with_at(method, target, form, &headers, at).await
    }

    /// alice opens `code`'s page with `callback`, then decides `decision` with it: the
    /// page and the decision's answer.
    async fn decide_with_callback(
        &self,
        code: &str,
        callback: &str,
        decision: &str,
    ) -> (
        (StatusCode, http::HeaderMap, String),
        (StatusCode, http::HeaderMap, String),
    ) {
        let cb = escaped(callback);
        let shown = self
            .alice_at(
                "GET",
                &format!("/interact?code={code}&callback={cb}"),
                "",
                NOW,
            )
            .await;
        let form = format!("code={code}&decision={decision}&callback={cb}");
        let answer = self.alice_at("POST", "/interact", &form, NOW).await;
        (shown, answer)
    }
}

fn header(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_admitted_callback_is_where_the_approval_goes() {
    let (w, request) = callback_world(true, 600);
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let ((s, h, html), (answer, ah, _)) = w.decide_with_callback(&code, GOOD, "grant").await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(
        html.contains(
            r#"<input type="hidden" name="callback" value="https://agent.example/callback?flow=7">"#
        ),
        "{html}"
    );
    // The form's answer may redirect to the callback's origin.
    assert_eq!(
        header(&h, "content-security-policy"),
        "default-src 'none'; form-action 'self' https://agent.example; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    assert_eq!(answer, StatusCode::SEE_OTHER);
    assert_eq!(header(&ah, "location"), GOOD);
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn a_denial_goes_back_to_the_callback_with_access_denied() {
    let (w, request) = callback_world(true, 600);
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (_, (answer, ah, _)) = w.decide_with_callback(&code, GOOD, "deny").await;
    assert_eq!(answer, StatusCode::SEE_OTHER);
    assert_eq!(
        header(&ah, "location"),
        "https://agent.example/callback?flow=7&error=access_denied"
    );
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
}

/// A callback its agent's provider does not publish is never followed, nor carried in
/// the form, nor allowed by the page's policy; nor is any callback without a way to read
/// the provider's metadata. The decision stands all the same.
#[tokio::test]
async fn a_callback_that_fails_the_check_is_never_followed() {
    let refused = [
        "https://evil.example/callback",
        "https://agent.example/elsewhere",
        "https://agent.example.evil/callback",
        "https://agent.example@evil.example/callback",
        "https://agent.example/callback#fragment",
        "http://localhost:8080/callback",
        "javascript:alert(1)",
    ];
    let (w, request) = callback_world(true, 600);
    for callback in refused {
        let (location, code) = w
            .deferred_for_the_person(&request, "https://ps.example")
            .await;
        let ((s, h, html), (answer, ah, body)) =
            w.decide_with_callback(&code, callback, "deny").await;
        assert_eq!(s, StatusCode::OK, "{callback}: {html}");
        assert!(!html.contains(r#"name="callback""#), "{callback}: {html}");
        assert_eq!(header(&h, "content-security-policy"), PAGE_POLICY);
        assert_eq!(answer, StatusCode::OK, "{callback}: {body}");
        assert!(ah.get("location").is_none(), "{callback}");
        assert!(ah.get("refresh").is_none(), "{callback}");
        assert!(body.contains("Denied"), "{body}");
        let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{callback}");
    }
    // An approval with one: the completion page, and the request granted.
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (_, (answer, ah, body)) = w.decide_with_callback(&code, refused[0], "grant").await;
    assert_eq!(answer, StatusCode::OK, "{body}");
    assert!(ah.get("location").is_none());
    assert_eq!(
        w.get_path(&location, "https://ps.example", &w.ps).await.0,
        StatusCode::OK
    );

    // Without a metadata fetcher, even the provider's own callback is not followed.
    let (w, request) = callback_world(false, 600);
    let (_, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let ((_, _, html), (answer, ah, _)) = w.decide_with_callback(&code, GOOD, "grant").await;
    assert!(!html.contains(r#"name="callback""#), "{html}");
    assert_eq!(answer, StatusCode::OK);
    assert!(ah.get("location").is_none());
}

/// A person not signed in yet is sent to the login with the callback in the way back,
/// so that it survives the sign-in (it is checked once they are back).
#[tokio::test]
async fn the_callback_survives_the_sign_in() {
    let (w, request) = callback_world(true, 600);
    let (_, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let target = format!("/interact?code={code}&callback={}", escaped(GOOD));
    let (s, h, _) = w.page_with("GET", &target, "", &[]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        header(&h, "location"),
        format!(
            "https://login.as.example/?return_to=/interact?code={code}&callback=https%3A%2F%2Fagent.example%2Fcallback%3Fflow%3D7"
        )
    );
}

/// Draft -11 §Interaction Callback Errors: a code whose request expired before the
/// person decided sends them back to the agent's callback with `interaction_expired`
/// (by a page that refreshes to it), whether or not the Person Server's poll has ended
/// the request; without a callback, the `408` page as before.
#[tokio::test]
async fn an_expired_interaction_goes_back_with_interaction_expired() {
    let (w, request) = callback_world(true, 3000);
    for polled in [false, true] {
        let (location, code) = w
            .deferred_for_the_person(&request, "https://ps.example")
            .await;
        let page = format!("/interact?code={code}");
        assert_eq!(w.alice_at("GET", &page, "", NOW).await.0, StatusCode::OK);
        let late = NOW.plus(601);
        if polled {
            let (s, json) = w.get_at(&location, late).await;
            assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "{json}");
        }
        let with_callback = format!("{page}&callback={}", escaped(GOOD));
        let (s, h, html) = w.alice_at("GET", &with_callback, "", late.plus(1)).await;
        assert_eq!(s, StatusCode::OK, "polled: {polled}: {html}");
        assert_eq!(
            header(&h, "refresh"),
            "0; url=https://agent.example/callback?flow=7&error=interaction_expired",
            "polled: {polled}"
        );
        let (s, h, _) = w.alice_at("GET", &page, "", late.plus(1)).await;
        assert_eq!(s, StatusCode::REQUEST_TIMEOUT);
        assert!(h.get("refresh").is_none());
    }
}

/// Every answer of the interaction page, HTML or a redirect back to the agent, carries
/// the Person Server's hardening: `Referrer-Policy: same-origin` (the page's address,
/// with its code, is sent to no other site), `X-Content-Type-Options: nosniff`, and, on
/// the pages, a policy with `base-uri 'none'`, also where `form-action` names the
/// agent's callback.
#[tokio::test]
async fn every_answer_of_the_page_is_hardened() {
    let (w, request) = callback_world(true, 600);
    let (_, first) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (_, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let ((s, consent, _), (answer, redirect, _)) =
        w.decide_with_callback(&first, GOOD, "grant").await;
    assert_eq!((s, answer), (StatusCode::OK, StatusCode::SEE_OTHER));
    let (s, plain, _) = w
        .alice_at("GET", &format!("/interact?code={code}"), "", NOW)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, wrong, _) = w.alice_at("GET", "/interact?code=ZZZZZZZZ", "", NOW).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, sign_in, _) = w
        .page_with("GET", &format!("/interact?code={code}"), "", &[])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, done, _) = w
        .alice_at(
            "POST",
            "/interact",
            &format!("code={code}&decision=deny"),
            NOW,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for (what, h) in [
        ("consent page with a callback", &consent),
        ("back to the agent", &redirect),
        ("consent page", &plain),
        ("wrong code", &wrong),
        ("sign in first", &sign_in),
        ("denied", &done),
    ] {
        assert_eq!(header(h, "referrer-policy"), "same-origin", "{what}");
        assert_eq!(header(h, "x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header(h, "cache-control"), "no-store", "{what}");
        if what != "back to the agent" {
            assert!(
                header(h, "content-security-policy").ends_with("; base-uri 'none'"),
                "{what}"
            );
            assert_eq!(header(h, "x-frame-options"), "DENY", "{what}");
        }
    }
    assert_eq!(header(&plain, "content-security-policy"), PAGE_POLICY);
}
