//! Deferred token requests and the consent pages, driven as a person would: sign in,
//! read, approve or deny; the agent polls its pending URL.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_person_server::{
    ConsentKind, ConsentPolicy, ConsentRequest, Decision, INTERACT_PATH, LOGIN_PATH, LOGOUT_PATH,
    PERSON_TOKEN_PATH,
};
use aauth_test_support::request::{self, header};
use aauth_tokens::PersonClaims;
use http::StatusCode;

use crate::{AUTH_TOKEN_PATH, NOW, World, id, resource_token_builder, world_with};

/// Asks the person for auth tokens, approves person tokens.
pub(crate) struct AskForAccess;
impl ConsentPolicy for AskForAccess {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        match r.kind {
            ConsentKind::AuthToken => Decision::AskPerson,
            _ => Decision::Approve,
        }
    }
}

/// A browser: cookies kept between pages, and the address it connects from (what the
/// server's adapter would put in the request, when it knows it).
#[derive(Default)]
pub(crate) struct Browser {
    cookies: Vec<(String, String)>,
    pub(crate) client: Option<aauth_metadata::throttle::ClientAddr>,
    /// The `Origin` its posts carry (none: a browser that sends none).
    pub(crate) origin: Option<String>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) html: String,
}

impl Page {
    /// The value of the hidden input `name`.
    pub(crate) fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        self.html
            .split(&needle)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Browser {
    /// A browser connecting from `addr`.
    pub(crate) fn from(addr: std::net::IpAddr) -> Self {
        Self {
            cookies: Vec::new(),
            client: Some(aauth_metadata::throttle::ClientAddr(addr)),
            origin: None,
        }
    }

    /// The value of cookie `name`, if the browser holds it.
    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets cookie `name` as an attacker with the browser in hand would.
    pub(crate) fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(k, _)| k != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    /// The session cookie gone (it lasts an hour), the rest kept.
    pub(crate) fn forget_session(&mut self) {
        self.cookies.retain(|(k, _)| k != "__Host-aauth-session");
    }

    pub(crate) async fn go(
        &mut self,
        w: &World,
        method: &str,
        target: &str,
        form: &[(&str, &str)],
    ) -> Page {
        self.go_at(w, method, target, form, NOW).await
    }

    /// `go` at another time.
    pub(crate) async fn go_at(
        &mut self,
        w: &World,
        method: &str,
        target: &str,
        form: &[(&str, &str)],
        at: aauth_keys::time::UnixTime,
    ) -> Page {
        let body: String = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.replace('%', "%25")
                        .replace('&', "%26")
                        .replace('=', "%3D")
                        .replace(' ', "+")
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut b = http::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "ps.example");
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            b = b.header("cookie", c.join("; "));
        }
        if method == "POST" {
            b = b.header("content-type", "application/x-www-form-urlencoded");
            if let Some(o) = &self.origin {
                b = b.header("origin", o);
            }
        }
        let (mut parts, body) = b.body(body.into_bytes()).unwrap().into_parts();
        if let Some(c) = self.client {
            parts.extensions.insert(c);
        }
        let resp = w.ps.handle(&parts, &body, at).await.unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            // Strict, but for the sign-in cookie a provider's redirect back must carry.
            let same_site = if v.starts_with("__Host-aauth-oidc=") {
                "SameSite=Lax"
            } else {
                "SameSite=Strict"
            };
            assert!(
                v.starts_with("__Host-")
                    && v.contains("Path=/;")
                    && v.contains("Secure")
                    && v.contains("HttpOnly")
                    && v.contains(same_site),
                "{v}"
            );
            let (k, rest) = v.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap().to_owned();
            self.cookies.retain(|(n, _)| n != k);
            if !v.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), value));
            }
        }
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            html: String::from_utf8_lossy(resp.body()).into_owned(),
        }
    }

    /// Signs in as `account` from the page the code opens.
    pub(crate) async fn sign_in(
        &mut self,
        w: &World,
        code: &str,
        account: &str,
        password: &str,
    ) -> Page {
        let login = self
            .go(w, "GET", &format!("{INTERACT_PATH}?code={code}"), &[])
            .await;
        assert_eq!(login.status, StatusCode::OK);
        assert!(login.html.contains("Sign in"), "{}", login.html);
        let csrf = login.hidden("csrf");
        self.go(
            w,
            "POST",
            LOGIN_PATH,
            &[
                ("code", code),
                ("csrf", &csrf),
                ("username", account),
                ("password", password),
            ],
        )
        .await
    }

    /// Follows the redirect (`303`) that `from` is.
    pub(crate) async fn follow(&mut self, w: &World, from: &Page) -> Page {
        assert_eq!(from.status, StatusCode::SEE_OTHER, "{}", from.html);
        self.go(w, "GET", &header(&from.headers, "location"), &[])
            .await
    }
}

/// The path of this server's per-flow callback in `html` (a page, or its link to the
/// resource's own flow).
pub(crate) fn callback_path(html: &str) -> String {
    html.split("callback=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("%3A", ":")
        .replace("%2F", "/")
        .strip_prefix("https://ps.example")
        .unwrap()
        .to_owned()
}

/// A signed poll (or cancel) of the pending URL `path` by `key` under `token`.
pub(crate) async fn poll(
    w: &World,
    method: &str,
    path: &str,
    key: &PrivateKey,
    token: &str,
    prefer: Option<&str>,
    at: aauth_keys::time::UnixTime,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("https://ps.example{path}"));
    if let Some(p) = prefer {
        b = b.header("prefer", p);
    }
    let req = b.body(Vec::new()).unwrap();
    let (parts, body) =
        request::signed_unique(req, key, &aauth_headers::Scheme::jwt(token.to_owned()), at)
            .into_parts();
    let resp = w.ps.handle(&parts, &body, at).await.unwrap();
    let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (resp.status(), resp.headers().clone(), json)
}

/// Asserts that an answer (its status `s`, its body `json`) is the error `error` with
/// `status`.
#[track_caller]
pub(crate) fn assert_error(
    s: StatusCode,
    json: &serde_json::Value,
    status: StatusCode,
    error: &str,
) {
    assert_eq!((s, json["error"].as_str()), (status, Some(error)), "{json}");
}

/// The code of an `AAuth-Requirement: requirement=interaction; url=…; code=…`.
pub(crate) fn code_of(h: &http::HeaderMap) -> String {
    let r = header(h, "aauth-requirement");
    assert!(r.starts_with("requirement=interaction"), "{r}");
    assert!(r.contains("url=\"https://ps.example/interact\""), "{r}");
    r.split("code=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

pub(crate) async fn consenting_world(policy: Option<Arc<dyn ConsentPolicy>>) -> World {
    let mut w = world_with(policy);
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    w.ps.set_password("alice", "correct horse battery")
        .await
        .unwrap();
    w.ps.set_password("mallory", "mallory's password")
        .await
        .unwrap();
    w
}

/// Not random at all: every byte `0x00`, then `0x01`, …
struct Counting(u8);

impl aauth_keys::rand::RandomSource for Counting {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), aauth_keys::rand::RandomError> {
        dest.fill(self.0);
        self.0 = self.0.wrapping_add(1);
        Ok(())
    }
}

#[tokio::test]
async fn identifiers_and_codes_come_from_the_servers_random_source() {
    let mut w = consenting_world(None).await;
    w.ps =
        w.ps.random(aauth_keys::rand::SharedRandom::new(Counting(0)));
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (status, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The pending id is the first draw (32 bytes of 0x00), the code the second (five
    // bytes of 0x01: forty bits, eight Crockford symbols).
    assert_eq!(
        header(&headers, "location"),
        format!("/pending/{}", aauth_keys::base64url::encode(&[0; 32]))
    );
    assert_eq!(code_of(&headers), "040G-2081");
}

#[tokio::test]
async fn an_unbound_agent_is_bound_by_the_person_on_the_consent_page() {
    let w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    // Without the interaction capability the person cannot be reached.
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("user_unreachable"))
    );

    let (status, headers, json) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(json, serde_json::json!({"status": "pending"}));
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert_eq!(header(&headers, "retry-after"), "0");
    let location = header(&headers, "location");
    assert!(
        location.starts_with("/pending/") && location.len() > 40,
        "{location}"
    );
    let code = code_of(&headers);
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");

    // Polls: the agent's own key only; pending until the person acts.
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
    let other = PrivateKey::ed25519_from_seed(&[44; 32]);
    let other_token = crate::agent_token(&w.provider, "aauth:assistant@agent.example", &other, 600);
    assert_eq!(
        poll(&w, "GET", &location, &other, &other_token, None, NOW)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        poll(&w, "DELETE", &location, &other, &other_token, None, NOW)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // The person: a wrong password, then the right one; the code typed in lower case.
    let mut browser = Browser::default();
    let denied = browser
        .sign_in(&w, &code.to_lowercase(), "alice", "wrong")
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let signed_in = browser
        .sign_in(&w, &code.to_lowercase(), "alice", "correct horse battery")
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let target = header(&signed_in.headers, "location");
    let consent = browser.go(&w, "GET", &target, &[]).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    assert!(
        consent.html.contains("aauth:assistant@agent.example")
            && consent.html.contains("https://resource.example")
    );
    assert!(consent.html.contains("not yet linked to your account"));
    assert_eq!(header(&consent.headers, "x-frame-options"), "DENY");
    assert!(header(&consent.headers, "content-security-policy").contains("frame-ancestors 'none'"));
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting"))
    );

    // A forged form (no CSRF token) changes nothing.
    let forged = browser
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[("code", &code), ("decision", "grant")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let (s, _, _) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED);

    let csrf = consent.hidden("csrf");
    let done = browser
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.html.contains("Approved"));

    // The next poll delivers the token, once.
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let c: PersonClaims = w.read(
        json["person_token"].as_str().unwrap(),
        "https://resource.example",
    );
    assert_eq!(
        c.sub,
        w.ps.directed_sub("alice", &id("https://resource.example"))
    );
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code"))
    );
    // The code is spent; the agent is now bound: the next person token needs nobody.
    let again = browser
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
        )
        .await;
    assert_eq!(again.status, StatusCode::GONE);
    let (s, _) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://other.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// The consent page says whom the person is signed in as, with "not you? sign out": the
/// form (with the session's CSRF token) ends the session, and the request's link then
/// asks to sign in again. Without the token nothing ends. Signed in with no code, the page
/// says where to look, and counts no wrong guess.
#[tokio::test]
async fn a_person_sees_who_they_are_signed_in_as_and_signs_out() {
    let w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let code = code_of(&headers);
    let mut b = Browser::default();
    let signed_in = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let consent = b
        .go(&w, "GET", &header(&signed_in.headers, "location"), &[])
        .await;
    assert!(
        consent
            .html
            .contains("Signed in as <strong><bdi>alice</bdi></strong>")
            && consent.html.contains("Not you? Sign out"),
        "{}",
        consent.html
    );
    let csrf = consent.hidden("csrf");

    let forged = b
        .go(
            &w,
            "POST",
            LOGOUT_PATH,
            &[("csrf", "forged"), ("code", &code)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let still = b
        .go(&w, "GET", &format!("{INTERACT_PATH}?code={code}"), &[])
        .await;
    assert!(still.html.contains("Signed in as"), "{}", still.html);

    let bare = b.go(&w, "GET", INTERACT_PATH, &[]).await;
    assert_eq!(bare.status, StatusCode::OK);
    assert!(
        bare.html.contains("Open the link your agent gave you"),
        "{}",
        bare.html
    );

    let old = b.cookie("__Host-aauth-session").unwrap().to_owned();
    let out = b
        .go(&w, "POST", LOGOUT_PATH, &[("csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.html);
    assert!(out.html.contains("You are signed out"));
    assert!(
        out.html.contains(&format!("{INTERACT_PATH}?code={code}")),
        "{}",
        out.html
    );
    assert!(
        b.cookie("__Host-aauth-session").is_none(),
        "the cookie is cleared"
    );
    // The old cookie, kept by an attacker, no longer names a session.
    b.set_cookie("__Host-aauth-session", &old);
    let again = b
        .go(&w, "GET", &format!("{INTERACT_PATH}?code={code}"), &[])
        .await;
    assert!(again.html.contains("name=\"password\""), "{}", again.html);
    assert!(!again.html.contains("Signed in as"));
}

#[tokio::test]
async fn an_auth_token_the_person_denies_and_another_persons_code() {
    let w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    // A scope written to attack the consent page is shown as text.
    let rt = w.resource_token_for(
        "https://resource.example",
        &pc,
        &w.agent,
        "read <script>alert(1)</script>",
    );
    let (s, headers, _) = w
        .post_full(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": rt, "presented_token": person, "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&headers, "location");
    let code = code_of(&headers);

    // Another person signed in with this code sees nothing of it.
    let mut mallory = Browser::default();
    let page = mallory
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    let page = mallory
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.html.contains("resource.example"));

    let mut alice = Browser::default();
    let page = alice
        .sign_in(&w, &code, "alice", "correct horse battery")
        .await;
    let consent = alice
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    assert!(
        consent
            .html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        consent.html
    );
    assert!(!consent.html.contains("<script>"));
    let csrf = consent.hidden("csrf");
    alice
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[("code", &code), ("csrf", &csrf), ("decision", "deny")],
        )
        .await;
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
    assert_eq!(
        poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW)
            .await
            .0,
        StatusCode::GONE
    );
}

#[tokio::test]
async fn pending_requests_expire_cancel_and_refuse_unknown_actions() {
    let w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    let location = header(&headers, "location");
    // Past its lifetime: 408 expired, then 410.
    let late = NOW.plus(601);
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("expired"))
    );
    assert_eq!(
        poll(&w, "GET", &location, &w.agent, &late_token, None, late)
            .await
            .0,
        StatusCode::GONE
    );

    // Cancelled by the agent: 204, then 410; its code is dead on the consent page.
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    let location = header(&headers, "location");
    let code = code_of(&headers);
    assert_eq!(
        poll(&w, "DELETE", &location, &w.agent, &w.agent_token, None, NOW)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW)
            .await
            .0,
        StatusCode::GONE
    );
    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    assert_eq!(
        b.go(&w, "GET", &header(&page.headers, "location"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // POST needs a known action.
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let location = header(&headers, "location");
    for body in [
        serde_json::json!({}),
        serde_json::json!({"action": "dance"}),
    ] {
        let (s, json) = w.post_path(&location, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request"))
        );
    }
    // A session that keeps guessing codes is refused.
    for _ in 0..5 {
        b.go(&w, "GET", &format!("{INTERACT_PATH}?code=ZZZZ-ZZZZ"), &[])
            .await;
    }
    assert_eq!(
        b.go(&w, "GET", &format!("{INTERACT_PATH}?code=ZZZZ-ZZZZ"), &[])
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_long_polls_until_the_person_answers() {
    let w = Arc::new(consenting_world(None).await);
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let location = header(&headers, "location");
    let code = code_of(&headers);
    let started = tokio::time::Instant::now();
    // Nobody answers: the poll returns after the wait (capped at 30 s), still pending.
    let (s, _, _) = poll(
        &w,
        "GET",
        &location,
        &w.agent,
        &w.agent_token,
        Some("wait=60"),
        NOW,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(started.elapsed().as_secs(), 30);

    // The person answers during a long poll: it returns at once with the token.
    let w2 = Arc::clone(&w);
    let waiter = tokio::spawn(async move {
        let t0 = tokio::time::Instant::now();
        let r = poll(
            &w2,
            "GET",
            &location,
            &w2.agent,
            &w2.agent_token,
            Some("wait=20"),
            NOW,
        )
        .await;
        (r.0, t0.elapsed().as_secs())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let consent = b
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    let csrf = consent.hidden("csrf");
    b.go(
        &w,
        "POST",
        INTERACT_PATH,
        &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
    )
    .await;
    let (status, secs) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(secs < 5, "returned after {secs} s");
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_answers_within_5_ms_of_the_approval() {
    // With the clock paused, time moves only when every task sleeps: a poll woken by the
    // store's notification answers with no time passing, one that re-read on a timer
    // would answer a timer's period (at least 200 ms) after the approval.
    let w = Arc::new(consenting_world(None).await);
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let location = header(&headers, "location");
    let code = code_of(&headers);
    let w2 = Arc::clone(&w);
    let waiter = tokio::spawn(async move {
        let r = poll(
            &w2,
            "GET",
            &location,
            &w2.agent,
            &w2.agent_token,
            Some("wait=30"),
            NOW,
        )
        .await;
        (r.0, tokio::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let consent = b
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    let csrf = consent.hidden("csrf");
    let approving = tokio::time::Instant::now();
    b.go(
        &w,
        "POST",
        INTERACT_PATH,
        &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
    )
    .await;
    let (status, answered) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let after = answered.saturating_duration_since(approving);
    assert!(
        answered >= approving && after < Duration::from_millis(5),
        "answered {after:?} after the approval"
    );
}

/// Posts the person's `decision` on the request `code` names from the consent `page`
/// (its CSRF token), with the agent's `callback`.
pub(crate) async fn decide_for(
    b: &mut Browser,
    w: &World,
    code: &str,
    page: &Page,
    callback: &str,
    decision: &str,
) -> Page {
    let csrf = page.hidden("csrf");
    b.go(
        w,
        "POST",
        INTERACT_PATH,
        &[
            ("code", code),
            ("csrf", &csrf),
            ("callback", callback),
            ("decision", decision),
        ],
    )
    .await
}

/// A person signs in and approves the request behind `code`.
/// Posts the person's `decision` on the request `code` names, with the session's `csrf`.
pub(crate) async fn decide(
    b: &mut Browser,
    w: &World,
    code: &str,
    csrf: &str,
    decision: &str,
) -> Page {
    b.go(
        w,
        "POST",
        INTERACT_PATH,
        &[("code", code), ("csrf", csrf), ("decision", decision)],
    )
    .await
}

pub(crate) async fn approve(w: &World, code: &str, account: &str, password: &str) {
    let mut b = Browser::default();
    let page = b.sign_in(w, code, account, password).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let consent = b
        .go(w, "GET", &header(&page.headers, "location"), &[])
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    let csrf = consent.hidden("csrf");
    let done = decide(&mut b, w, code, &csrf, "grant").await;
    assert_eq!(done.status, StatusCode::OK);
}

#[tokio::test]
async fn the_person_asks_the_agent_answers_at_most_five_rounds() {
    let w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction", "clarification"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let location = header(&headers, "location");
    let code = code_of(&headers);
    // Nothing to answer yet.
    let (s, json) = w
        .post_path(&location, serde_json::json!({"action": "clarification_response", "clarification_response": "unasked"}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let target = header(&page.headers, "location");
    for round in 0..5 {
        let consent = b.go(&w, "GET", &target, &[]).await;
        assert!(
            consent
                .html
                .contains(&format!("{} of 5 questions left", 5 - round)),
            "{}",
            consent.html
        );
        let csrf = consent.hidden("csrf");
        let q = format!("Why <b>{round}</b>?");
        let sent = b
            .go(
                &w,
                "POST",
                INTERACT_PATH,
                &[
                    ("code", &code),
                    ("csrf", &csrf),
                    ("decision", "ask"),
                    ("question", &q),
                ],
            )
            .await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.html);
        // The agent's poll carries the question.
        let (s, h, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert_eq!(header(&h, "aauth-requirement"), "requirement=clarification");
        assert_eq!(json["clarification"], q);
        let (s, _) = w
            .post_path(&location, serde_json::json!({"action": "clarification_response", "clarification_response": format!("Because <i>{round}</i>.")}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let consent = b.go(&w, "GET", &target, &[]).await;
    assert!(
        consent
            .html
            .contains("The agent answered:</strong> <bdi>Because &lt;i&gt;4&lt;/i&gt;.</bdi>"),
        "{}",
        consent.html
    );
    assert!(consent.html.contains("Why &lt;b&gt;0&lt;/b&gt;?"));
    assert!(
        !consent.html.contains("questions left"),
        "the sixth question is not offered"
    );
    let csrf = consent.hidden("csrf");
    let sixth = b
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("decision", "ask"),
                ("question", "again?"),
            ],
        )
        .await;
    assert_eq!(sixth.status, StatusCode::BAD_REQUEST);
    b.go(
        &w,
        "POST",
        INTERACT_PATH,
        &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
    )
    .await;
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn no_questions_to_an_agent_without_the_clarification_capability() {
    let w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let code = code_of(&headers);
    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let consent = b
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    assert!(!consent.html.contains("Ask the agent"));
    let csrf = consent.hidden("csrf");
    let forced = b
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("decision", "ask"),
                ("question", "why?"),
            ],
        )
        .await;
    assert_eq!(forced.status, StatusCode::BAD_REQUEST);
}

/// A header's value, or empty.
pub(crate) fn header_of(h: &http::HeaderMap, name: &str) -> String {
    header(h, name)
}

#[tokio::test]
async fn an_updated_request_replaces_what_the_person_is_asked_and_a_stale_approval_is_refused() {
    let w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let scoped =
        |scope: &str| w.resource_token_for("https://resource.example", &pc, &w.agent, scope);
    let (s, headers, _) = w
        .post_full(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": scoped("read write"), "presented_token": person, "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&headers, "location");
    let code = code_of(&headers);

    // alice opens the request as first asked.
    let mut alice = Browser::default();
    let page = alice
        .sign_in(&w, &code, "alice", "correct horse battery")
        .await;
    let first = alice
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    assert!(first.html.contains("scope: read write"), "{}", first.html);
    assert_eq!(first.hidden("revision"), "0");

    // Refused updates change nothing.
    let before = w.state();
    let other_resource = w.resource_token_for("https://other.example", &pc, &w.agent, "read");
    for (what, body, code) in [
        (
            "no resource token",
            serde_json::json!({"action": "updated_request", "presented_token": person}),
            "invalid_request",
        ),
        (
            "no presented token (PS-30)",
            serde_json::json!({"action": "updated_request", "resource_token": scoped("read")}),
            "invalid_request",
        ),
        (
            "another resource",
            serde_json::json!({"action": "updated_request", "resource_token": other_resource, "presented_token": person}),
            "invalid_resource_token",
        ),
        (
            "another person",
            serde_json::json!({"action": "updated_request", "resource_token": w.resource_token(&pc.jti, "someone-else", |b| b), "presented_token": person}),
            "invalid_resource_token",
        ),
    ] {
        let (s, json) = w.post_path(&location, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: nothing changed");
    }

    // The agent narrows its request.
    let (s, json) = w
        .post_path(&location, serde_json::json!({"action": "updated_request", "resource_token": scoped("read"), "presented_token": person, "justification": "Only <b>read</b> access is needed."}))
        .await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting")),
        "{json}"
    );

    // Approving the page alice read before the change is refused; nothing is approved.
    let stale = alice
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &first.hidden("csrf")),
                ("revision", "0"),
                ("decision", "grant"),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting"))
    );

    // She reads the new request, with the agent's words apart and escaped, and approves.
    let page = alice
        .go(&w, "GET", &format!("{INTERACT_PATH}?code={code}"), &[])
        .await;
    assert!(page.html.contains("scope: read</p>"), "{}", page.html);
    assert!(page.html.contains("changed this request"));
    assert!(
        page.html
            .contains("Only &lt;b&gt;read&lt;/b&gt; access is needed.")
    );
    assert_eq!(page.hidden("revision"), "1");
    let done = alice
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &page.hidden("csrf")),
                ("revision", "1"),
                ("decision", "grant"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let ac: aauth_tokens::AuthClaims = w.read(
        json["auth_token"].as_str().unwrap(),
        "https://resource.example",
    );
    assert_eq!(ac.scope.as_deref(), Some("read"));

    // Once answered, there is nothing to update.
    let (s, json) = w
        .post_path(&location, serde_json::json!({"action": "updated_request", "resource_token": scoped("read"), "presented_token": person}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code"))
    );
}

/// An updated request to a request past its lifetime that no poll or sweep has ended yet
/// is answered as a poll then is, `408 expired` (draft -11 §Polling Error Codes), and
/// changes nothing: no new revision for the person, and the next poll ends it.
#[tokio::test]
async fn an_updated_request_after_the_request_expired_is_refused_expired() {
    let w = consenting_world(Some(Arc::new(AskForAccess))).await;
    let (location, _) = deferred_for_alice(&w).await;
    // Past the request's lifetime: an agent token, a person token and a resource token
    // all good then.
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let late = NOW.plus(601);
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let fresh = w.sign_resource_token(
        resource_token_builder("https://resource.example", &pc, &w.agent, "read"),
        late,
    );
    // The late agent token is recorded at its first use (an action refused for what it
    // names), so that the state compared below already holds it.
    let (s, _) = w
        .post_at(
            &location,
            &serde_json::json!({"action": "rewind"}),
            &w.agent,
            &late_token,
            late,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let before = w.state();
    let (s, json) = w
        .post_at(
            &location,
            &serde_json::json!({"action": "updated_request", "resource_token": fresh, "presented_token": person}),
            &w.agent,
            &late_token,
            late,
        )
        .await;
    assert_error(s, &json, StatusCode::REQUEST_TIMEOUT, "expired");
    assert_eq!(w.state(), before, "nothing changed");

    // The poll answers the same, and ends it.
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_error(s, &json, StatusCode::REQUEST_TIMEOUT, "expired");
    assert_eq!(
        poll(&w, "GET", &location, &w.agent, &late_token, None, late)
            .await
            .0,
        StatusCode::GONE
    );
}

/// The agent's answer to the person's question, posted after the request's lifetime
/// (no poll or sweep has ended it yet), is answered as a poll then is, `408 expired`,
/// and saves nothing; once the request has ended, `410`.
#[tokio::test]
async fn a_clarification_answered_after_the_request_expired_is_refused_expired() {
    let w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction", "clarification"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let (location, code) = (header(&headers, "location"), code_of(&headers));
    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let consent = b
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    let asked = b
        .go(
            &w,
            "POST",
            INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &consent.hidden("csrf")),
                ("decision", "ask"),
                ("question", "Which flights?"),
            ],
        )
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.html);
    let late = NOW.plus(601);
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    // The late agent token is recorded at its first use (an action refused for what it
    // names), so that the state compared below already holds it.
    let (s, _) = w
        .post_at(
            &location,
            &serde_json::json!({"action": "rewind"}),
            &w.agent,
            &late_token,
            late,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let answer = serde_json::json!({"action": "clarification_response", "clarification_response": "The cheapest."});
    let before = w.state();
    let (s, json) = w
        .post_at(&location, &answer, &w.agent, &late_token, late)
        .await;
    assert_error(s, &json, StatusCode::REQUEST_TIMEOUT, "expired");
    assert_eq!(w.state(), before, "nothing saved");

    // The poll answers the same, and ends it; an answer after that is `410`.
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_error(s, &json, StatusCode::REQUEST_TIMEOUT, "expired");
    let before = w.state();
    let (s, json) = w
        .post_at(&location, &answer, &w.agent, &late_token, late)
        .await;
    assert_error(s, &json, StatusCode::GONE, "invalid_code");
    assert_eq!(w.state(), before, "nothing saved");
}

/// The agent provider's metadata, as a fetcher would return it.
struct ProviderMetadata;
#[async_trait::async_trait]
impl aauth_metadata::Fetch for ProviderMetadata {
    async fn get(
        &self,
        url: &aauth_metadata::HttpsUrl,
    ) -> Result<aauth_metadata::Fetched, aauth_metadata::FetchError> {
        match url.as_str() {
            "https://agent.example/.well-known/aauth-agent.json" => {
                Ok(aauth_metadata::Fetched::ok(
                    r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json","callback_endpoint":"https://agent.example/callback"}"#,
                ))
            }
            "https://resource.example/.well-known/aauth-resource.json" => {
                Ok(aauth_metadata::Fetched::ok(
                    r#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json","name":"Acme <Files>","description":"Stores your <b>files</b>.","access_mode":"auth-token","scope_descriptions":{"read":"Read <your> files"},"tos_uri":"https://resource.example/tos","policy_uri":"https://resource.example/privacy?x=1&y=2"}"#,
                ))
            }
            other => panic!("an unexpected fetch: {other}"),
        }
    }
}

/// A deferred auth token; the person opens its link with `callback` and signs in.
/// Returns the consent page, the browser, and the code.
pub(crate) async fn open_with_callback(
    w: &World,
    callback: &str,
    at: aauth_keys::time::UnixTime,
) -> (Page, Browser, String) {
    let (_, code) = deferred_for_alice(w).await;
    let (page, b) = open_code_with_callback(w, &code, callback, at).await;
    (page, b, code)
}

/// An auth-token request of alice's bound agent that waits for her: its pending URL
/// and interaction code.
pub(crate) async fn deferred_for_alice(w: &World) -> (String, String) {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let (s, headers, _) = w
        .post_full(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": rt, "presented_token": person, "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    (header(&headers, "location"), code_of(&headers))
}

/// alice signs in at `at` and opens `code`, with `callback` in the link.
pub(crate) async fn open_code_with_callback(
    w: &World,
    code: &str,
    callback: &str,
    at: aauth_keys::time::UnixTime,
) -> (Page, Browser) {
    let mut b = Browser::default();
    let escaped: String = callback
        .bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                char::from(c).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect();
    let login = b
        .go_at(
            w,
            "GET",
            &format!("{INTERACT_PATH}?code={code}&callback={escaped}"),
            &[],
            at,
        )
        .await;
    assert!(login.html.contains("Sign in"));
    let signed_in = b
        .go_at(
            w,
            "POST",
            LOGIN_PATH,
            &[
                ("code", code),
                ("csrf", &login.hidden("csrf")),
                ("callback", &login.hidden("callback")),
                ("username", "alice"),
                ("password", "correct horse battery"),
            ],
            at,
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let back = header(&signed_in.headers, "location");
    assert!(
        back.contains("&callback="),
        "the callback survives sign-in: {back}"
    );
    let page = b.go_at(w, "GET", &back, &[], at).await;
    (page, b)
}

pub(crate) async fn callback_world() -> World {
    let mut w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.ps = w.ps.metadata(Arc::new(ProviderMetadata));
    w
}

/// PS-12: with a metadata fetcher, the consent page for an auth token shows the
/// resource's own `name`, `description` and `access_mode`, each scope asked for with the
/// description the resource publishes, and its terms and privacy policy, escaped; without
/// one it names the resource by its identifier alone.
#[tokio::test]
async fn the_consent_page_describes_the_resource_from_its_metadata() {
    let w = callback_world().await;
    let (page, _, _) = open_with_callback(&w, "https://agent.example/callback", NOW).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(
        page.html
            .contains("<strong><bdi>Acme &lt;Files&gt;</bdi></strong>"),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("Stores your &lt;b&gt;files&lt;/b&gt;."),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("<code>auth-token</code>"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("<b>files</b>"), "{}", page.html);
    // What is asked, in the resource's own words for each scope; its terms and policy.
    assert!(
        page.html
            .contains("<li><code><bdi>read</bdi></code>: <bdi>Read &lt;your&gt; files</bdi></li>"),
        "{}",
        page.html
    );
    assert!(
        page.html.contains(r#"<a href="https://resource.example/tos" rel="noopener noreferrer">Terms of service</a>"#)
            && page.html.contains(r#"href="https://resource.example/privacy?x=1&amp;y=2""#),
        "{}",
        page.html
    );

    let w = consenting_world(Some(Arc::new(AskForAccess))).await;
    let (page, _, _) = open_with_callback(&w, "https://agent.example/callback", NOW).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(
        page.html.contains("https://resource.example"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("Acme"), "{}", page.html);
    assert!(!page.html.contains("resource-access-mode"), "{}", page.html);
}

/// A resource whose metadata cannot be read is shown by its identifier: the page still
/// serves, and the person can still decide.
#[tokio::test]
async fn a_resource_without_metadata_is_shown_by_its_identifier() {
    struct Nothing;
    #[async_trait::async_trait]
    impl aauth_metadata::Fetch for Nothing {
        async fn get(
            &self,
            url: &aauth_metadata::HttpsUrl,
        ) -> Result<aauth_metadata::Fetched, aauth_metadata::FetchError> {
            assert!(url.as_str().ends_with(".json"), "{url:?}");
            Err(aauth_metadata::FetchError::Status {
                status: 404,
                retry_after: None,
            })
        }
    }
    let mut w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.ps = w.ps.metadata(Arc::new(Nothing));
    let (page, _, _) = open_with_callback(&w, "https://agent.example/callback", NOW).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(
        page.html.contains("https://resource.example"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("resource-name"), "{}", page.html);
    // No callback either: the provider's metadata was not readable.
    assert_eq!(page.hidden("callback"), "");
}

#[tokio::test]
async fn the_browser_goes_back_to_the_agents_callback_with_the_drafts_error_values() {
    let cb = "https://agent.example/callback?flow=7";
    // Approved: back to the callback as given.
    let w = callback_world().await;
    let (page, mut b, code) = open_with_callback(&w, cb, NOW).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(page.hidden("callback"), cb);
    let done = decide_for(&mut b, &w, &code, &page, cb, "grant").await;
    assert_eq!(
        (done.status, header(&done.headers, "location").as_str()),
        (StatusCode::SEE_OTHER, cb)
    );

    // Denied: error=access_denied.
    let w = callback_world().await;
    let (page, mut b, code) = open_with_callback(&w, cb, NOW).await;
    let done = decide_for(&mut b, &w, &code, &page, cb, "deny").await;
    assert_eq!(
        (done.status, header(&done.headers, "location").as_str()),
        (
            StatusCode::SEE_OTHER,
            "https://agent.example/callback?flow=7&error=access_denied"
        )
    );

    // Too late: error=interaction_expired, by a page that refreshes to it (the sign-in
    // form's redirects, which end here, may not leave this server).
    let w = callback_world().await;
    let (page, _, _) =
        open_with_callback(&w, "https://agent.example/callback", NOW.plus(601)).await;
    assert_eq!(
        (page.status, header(&page.headers, "refresh").as_str()),
        (
            StatusCode::OK,
            "0; url=https://agent.example/callback?error=interaction_expired"
        )
    );
    // Too late without a callback to go back to: the code fails `expired` (408, draft
    // -11 §Interaction Code Format), not "no such request"; also after the agent's poll
    // was told the request expired (and ended it).
    for polled in [false, true] {
        let w = callback_world().await;
        let (location, code) = deferred_for_alice(&w).await;
        if polled {
            let late = NOW.plus(601);
            let (s, _, json) =
                poll(&w, "GET", &location, &w.agent, &w.agent_token, None, late).await;
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::REQUEST_TIMEOUT, Some("expired"))
            );
            let (s, _, _) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, late).await;
            assert_eq!(s, StatusCode::GONE);
        }
        let (page, _) =
            open_code_with_callback(&w, &code, "https://evil.example/callback", NOW.plus(602))
                .await;
        assert_eq!(page.status, StatusCode::REQUEST_TIMEOUT, "polled: {polled}");
    }

    // A URL the provider does not publish is never a redirect target.
    for evil in [
        "https://evil.example/callback",
        "https://agent.example/callback/../evil",
        "http://localhost:8080/cb",
    ] {
        let w = callback_world().await;
        let (page, mut b, code) = open_with_callback(&w, evil, NOW).await;
        assert_eq!(page.status, StatusCode::OK, "{evil}");
        assert!(page.hidden("callback").is_empty(), "{evil}");
        let done = decide_for(&mut b, &w, &code, &page, evil, "deny").await;
        assert_eq!(done.status, StatusCode::OK, "{evil}");
        assert!(done.headers.get("location").is_none(), "{evil}");
    }
}

mod callback_urls {
    use aauth_metadata::{AgentProviderMetadata, MetadataDocument};
    use aauth_person_server::callback_allowed;
    use proptest::prelude::*;

    fn doc(localhost: bool) -> AgentProviderMetadata {
        let json = format!(
            r#"{{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json","callback_endpoint":"https://agent.example/callback","localhost_callback_allowed":{localhost}}}"#
        );
        AgentProviderMetadata::parse_for(
            json.as_bytes(),
            &aauth_tokens::ServerId::parse("https://agent.example").unwrap(),
        )
        .unwrap()
    }

    /// What an admitted callback must look like: the endpoint (a query at most added), or
    /// a loopback http URL; never a fragment, user information or a character a
    /// `Location` field could not carry.
    fn shape_ok(cb: &str, localhost: bool) -> bool {
        let safe =
            cb.bytes().all(|b| b.is_ascii_graphic()) && !cb.contains(['#', '"', '<', '>', '\\']);
        let endpoint = cb == "https://agent.example/callback"
            || cb.starts_with("https://agent.example/callback?");
        let loopback = localhost
            && ["http://localhost", "http://127.0.0.1", "http://[::1]"]
                .iter()
                .any(|h| {
                    cb.strip_prefix(h)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/', '?']))
                });
        safe && (endpoint || loopback)
    }

    proptest! {
        #[test]
        fn only_the_published_endpoint_or_loopback_is_admitted(
            localhost in any::<bool>(),
            cb in prop_oneof![
                any::<String>(),
                "(https|http)://(agent\\.example|localhost|127\\.0\\.0\\.1|\\[::1\\]|evil\\.example|agent\\.example@evil\\.example)(:[0-9]{0,6})?(/callback|/callbackx|/|/callback/\\.\\.)?(\\?[a-z=&#@/]{0,8})?(#x)?",
            ],
        ) {
            let d = doc(localhost);
            if callback_allowed(&d, &cb) {
                prop_assert!(shape_ok(&cb, localhost), "admitted {cb:?}");
            }
        }
    }

    #[test]
    fn the_loopback_forms() {
        let (on, off) = (doc(true), doc(false));
        for ok in [
            "http://localhost:8080/cb",
            "http://127.0.0.1/cb?x=1",
            "http://[::1]:9/",
        ] {
            assert!(callback_allowed(&on, ok), "{ok}");
            assert!(!callback_allowed(&off, ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/",
            "http://localhost@evil.example/",
            "http://localhost:/",
            "http://localhost:123456/",
            "http://[::1]x/",
        ] {
            assert!(!callback_allowed(&on, bad), "{bad}");
        }
    }
}

/// A resource token whose resource needs its own flow first (an `interaction` claim).
pub(crate) async fn resource_flow_request(w: &World) -> (String, String) {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = w.sign_resource_token(
        resource_token_builder("https://resource.example", &pc, &w.agent, "read")
            .interaction("https://resource.example/oauth/start", "RSRC-0001"),
        NOW,
    );
    // Even a policy that would approve at once asks the person: the resource's flow
    // needs them (draft -11 §Resource-Initiated Interaction).
    let (s, headers, json) = w
        .post_full(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person, "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    (header(&headers, "location"), code_of(&headers))
}

#[tokio::test]
async fn a_resource_that_needs_its_own_flow_gets_the_person_there_first() {
    let w = consenting_world(Some(Arc::new(aauth_person_server::dangerous::AutoApprove))).await;
    let (location, code) = resource_flow_request(&w).await;
    let mut b = Browser::default();
    // The interstitial: the resource first, with this server's per-flow callback.
    let signed_in = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let first = b.follow(&w, &signed_in).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.html);
    let link = first
        .html
        .split("<a class=\"button primary\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        link.starts_with("https://resource.example/oauth/start?code=RSRC-0001&callback=https%3A%2F%2Fps.example%2Finteract%2Fresource%2F"),
        "{link}"
    );
    assert!(
        !first.html.contains("decision"),
        "no consent before the resource's flow"
    );
    // Nor a grant posted around it (the session's CSRF token taken from the dashboard).
    let account = b.go(&w, "GET", "/account", &[]).await;
    let csrf = account.hidden("csrf");
    assert!(!csrf.is_empty(), "{}", account.html);
    let early = decide(&mut b, &w, &code, &csrf, "grant").await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.html);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED, "still waiting: {json}");
    let callback_path = callback_path(&link);
    // A callback with another flow value moves nothing.
    let forged = format!("{}x", callback_path);
    assert_eq!(
        b.go(&w, "GET", &forged, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // The resource's flow succeeded: back here. The resource's redirect is a cross-site
    // navigation, on which a browser sends no SameSite=Strict session cookie: the page
    // loads itself again, same-site, and then the session is there.
    let session = b.cookie("__Host-aauth-session").unwrap().to_owned();
    b.forget_session();
    let arrived = b.go(&w, "GET", &callback_path, &[]).await;
    assert_eq!(arrived.status, StatusCode::OK, "{}", arrived.html);
    let again = header(&arrived.headers, "refresh");
    let again = again.strip_prefix("0; url=").unwrap().to_owned();
    assert_eq!(again, format!("{callback_path}?resumed=1"));
    let mut stranger = Browser::default();
    assert_eq!(
        stranger.go(&w, "GET", &again, &[]).await.status,
        StatusCode::UNAUTHORIZED,
        "once only: without a session the second load is refused"
    );
    b.set_cookie("__Host-aauth-session", &session);
    let back = b.go(&w, "GET", &again, &[]).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let consent = b
        .go(&w, "GET", &header(&back.headers, "location"), &[])
        .await;
    assert_eq!(consent.status, StatusCode::OK);
    let csrf = consent.hidden("csrf");
    assert!(!csrf.is_empty(), "{}", consent.html);
    let done = decide(&mut b, &w, &code, &csrf, "grant").await;
    assert_eq!(done.status, StatusCode::OK);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string());
}

#[tokio::test]
async fn a_resource_flow_that_fails_ends_the_request_with_the_mapped_error() {
    for (callback_error, status, polling_error) in [
        ("access_denied", StatusCode::FORBIDDEN, "denied"),
        ("user_abandoned", StatusCode::FORBIDDEN, "abandoned"),
        (
            "interaction_expired",
            StatusCode::REQUEST_TIMEOUT,
            "expired",
        ),
        (
            "temporarily_unavailable",
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
        ),
    ] {
        let w = consenting_world(Some(Arc::new(aauth_person_server::dangerous::AutoApprove))).await;
        let (location, code) = resource_flow_request(&w).await;
        let mut b = Browser::default();
        let signed_in = b.sign_in(&w, &code, "alice", "correct horse battery").await;
        let first = b
            .go(&w, "GET", &header(&signed_in.headers, "location"), &[])
            .await;
        let callback = first
            .html
            .split("callback=")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .replace("%3A", ":")
            .replace("%2F", "/");
        let path = callback.strip_prefix("https://ps.example").unwrap();
        let ended = b
            .go(&w, "GET", &format!("{path}?error={callback_error}"), &[])
            .await;
        assert_eq!(ended.status, StatusCode::OK);
        let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (status, Some(polling_error)),
            "{callback_error}: {json}"
        );
    }
}

/// The code of a request from an agent bound to nobody is the first signed-in person's
/// to present it (draft -11: a code is single-use): another account presenting it, on
/// the page or in a decision, is refused as a wrong attempt and takes nothing; the agent
/// is bound to the first person only once they approve.
#[tokio::test]
async fn an_unbound_agents_code_is_the_first_persons_to_open_it() {
    let w = consenting_world(None).await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (_, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    let location = header(&headers, "location");
    let code = code_of(&headers);
    let pending_id = location.trim_start_matches("/pending/");
    let provider = id("https://agent.example");
    let agent = aauth_tokens::AgentId::parse("aauth:assistant@agent.example").unwrap();

    let mut alice = Browser::default();
    let page = alice
        .sign_in(&w, &code, "alice", "correct horse battery")
        .await;
    let target = header(&page.headers, "location");
    let consent = alice.go(&w, "GET", &target, &[]).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    let csrf = consent.hidden("csrf");

    // Mallory, with the same code: nothing shown, nothing decided, nothing bound.
    let mut mallory = Browser::default();
    let page = mallory
        .sign_in(&w, &code, "mallory", "mallory's password")
        .await;
    let seen = mallory
        .go(&w, "GET", &header(&page.headers, "location"), &[])
        .await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND, "{}", seen.html);
    assert!(!seen.html.contains("resource.example"), "{}", seen.html);
    let hers = mallory
        .go(&w, "GET", INTERACT_PATH, &[])
        .await
        .hidden("csrf");
    assert!(!hers.is_empty());
    for decision in ["grant", "deny"] {
        let posted = mallory
            .go(
                &w,
                "POST",
                INTERACT_PATH,
                &[("code", &code), ("csrf", &hers), ("decision", decision)],
            )
            .await;
        assert_eq!(
            posted.status,
            StatusCode::GONE,
            "{decision}: {}",
            posted.html
        );
    }
    assert_eq!(w.ps.store().binding(&provider, &agent).await.unwrap(), None);
    let p = w.ps.store().pending(pending_id).await.unwrap().unwrap();
    assert_eq!(
        (p.state, p.viewer.as_deref(), p.attempts),
        (
            aauth_person_server::PendingState::Interacting,
            Some("alice"),
            3
        ),
        "each of mallory's tries is a wrong attempt against the request"
    );

    // alice approves: the agent is hers, and the token too.
    let done = decide(&mut alice, &w, &code, &csrf, "grant").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert_eq!(
        w.ps.store()
            .binding(&provider, &agent)
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let c: PersonClaims = w.read(
        json["person_token"].as_str().unwrap(),
        "https://resource.example",
    );
    assert_eq!(
        c.sub,
        w.ps.directed_sub("alice", &id("https://resource.example"))
    );
}
