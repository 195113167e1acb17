//! The Access Server's other deferred steps: clarification (answered, re-asked, capped,
//! or met by an updated request, AS-16), payment (`402`, confirmed out of band, then the
//! Person Server is billed) composed with claims on one pending URL, and a pending
//! request ended by its resource token's revocation (AS-42).

use super::*;

const CHALLENGE: &str =
    r#"Payment id="x7Tg2pLq", method="stripe", request="eyJhbW91bnQiOiIxMDAwIn0""#;

impl World {
    async fn post_ps(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        self.post_path(path, body, "https://ps.example", &self.ps)
            .await
    }

    /// A resource token with `scope` for `sub`.
    fn resource_token_for(&self, t: &Tokens, sub: &str, scope: &str) -> String {
        ResourceTokenBuilder::new(
            id("https://resource.example"),
            id("https://as.example"),
            id("https://ps.example"),
            sub,
            t.person_jti.clone(),
            self.agent.public_key(),
            scope,
        )
        .sign(&self.rs, "rs-1", NOW, &mut OsRandom)
        .unwrap()
        .token
    }
}

fn scope_of(token: &str) -> Option<String> {
    Unverified::<AuthClaims>::decode(
        token,
        &Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .scope
    .clone()
}

/// Asks what the access is for; grants read access for travel, asks again otherwise.
struct AskPurpose;
impl AccessPolicy for AskPurpose {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        match r.clarification {
            Some("travel") => AccessDecision::GrantScope("calendar.read".to_owned()),
            _ => AccessDecision::RequireClarification {
                question: "What is the **purpose** of this access?".to_owned(),
                options: vec!["travel".to_owned(), "other".to_owned()],
            },
        }
    }
}

/// Every byte the same value: a random source a test can predict.
struct Constant(u8);

impl aauth_keys::rand::RandomSource for Constant {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), aauth_keys::rand::RandomError> {
        dest.fill(self.0);
        Ok(())
    }
}

#[tokio::test]
async fn a_pending_url_comes_from_the_servers_random_source() {
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(AskPurpose))
        .random(aauth_keys::rand::SharedRandom::new(Constant(7)));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, h, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = aauth_keys::base64url::encode(&[7; 16]);
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/pending/{id}")),
        "{:?}",
        h["location"]
    );
}

/// Each draw one value (every byte of it), the next draw the next value; the test sets
/// where the draws go on from (drawing again what was drawn before).
struct Rewinding(Arc<std::sync::atomic::AtomicU8>);

impl aauth_keys::rand::RandomSource for Rewinding {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), aauth_keys::rand::RandomError> {
        dest.fill(self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        Ok(())
    }
}

#[tokio::test]
async fn a_pending_id_or_code_already_taken_is_drawn_again() {
    let mut w = world();
    let draws = Arc::new(std::sync::atomic::AtomicU8::new(1));
    w.server = w
        .server
        .policy(Arc::new(BindFirst))
        .random(aauth_keys::rand::SharedRandom::new(Rewinding(Arc::clone(
            &draws,
        ))));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (first, first_code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    // The next request draws the first one's code and pending id again: both are drawn
    // once more, and it waits at a URL of its own, with a code of its own.
    draws.store(1, std::sync::atomic::Ordering::SeqCst);
    let (second, second_code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    assert_ne!(first, second);
    assert_ne!(first_code, second_code);
    for (location, code) in [(&first, &first_code), (&second, &second_code)] {
        let (s, json) = w.get_path(location, "https://ps.example", &w.ps).await;
        assert_eq!(
            (s, json["status"].as_str()),
            (StatusCode::ACCEPTED, Some("interacting")),
            "{location}"
        );
        let (s, html) = w.page("GET", &format!("/interact?code={code}"), "").await;
        assert_eq!(s, StatusCode::OK, "{code}: {html}");
    }

    // A source that repeats itself whatever is drawn: a few attempts, then a server
    // error (its cause, in the log, names the attempts).
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(AskPurpose))
        .random(aauth_keys::rand::SharedRandom::new(Constant(9)));
    let (s, _, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, json) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error")),
        "{json}"
    );
    assert!(
        json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("waiting request")),
        "{json}"
    );
}

/// Wants the person's email, then the person (their Person Server approved here once).
struct EmailThenBind;
impl AccessPolicy for EmailThenBind {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.claims.is_none() {
            AccessDecision::RequireClaims(vec!["email".to_owned()])
        } else if r.bound {
            AccessDecision::Grant
        } else {
            AccessDecision::RequireInteraction
        }
    }
}

/// The interaction code of a `202` for the person.
fn code_for_the_person(h: &http::HeaderMap) -> String {
    let requirement = h["aauth-requirement"].to_str().unwrap();
    assert!(
        requirement.starts_with("requirement=interaction;"),
        "{requirement}"
    );
    requirement
        .split("code=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_owned()
}

/// A request put back for its next step, the person's, under an interaction code drawn
/// for it then: a code another waiting request already holds is drawn again, never
/// taken from that request (each code leads to its own request). With a random source
/// that repeats itself, after a few attempts the request goes back as it was, never
/// lost (`503`: poll again), and the other request is still reachable by its code.
#[tokio::test]
async fn a_code_drawn_for_a_later_step_already_taken_is_drawn_again() {
    let mut w = world();
    let draws = Arc::new(std::sync::atomic::AtomicU8::new(1));
    w.server =
        w.server
            .policy(Arc::new(EmailThenBind))
            .random(aauth_keys::rand::SharedRandom::new(Rewinding(Arc::clone(
                &draws,
            ))));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let claims = serde_json::json!({"email": "alice@example.com"});
    let deferred = |h: http::HeaderMap| {
        assert_eq!(h["aauth-requirement"], "requirement=claims");
        h["location"].to_str().unwrap().to_owned()
    };
    // The first request waits for the person under the code drawn as its claims came.
    let first = deferred(w.post_ps(AUTH_TOKEN_PATH, &request).await.1);
    let drawn_at = draws.load(std::sync::atomic::Ordering::SeqCst);
    let (s, h, json) = w.post_ps(&first, &claims).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let first_code = code_for_the_person(&h);
    // The second request's code is drawn as the first's was: drawn once more.
    let second = deferred(w.post_ps(AUTH_TOKEN_PATH, &request).await.1);
    draws.store(drawn_at, std::sync::atomic::Ordering::SeqCst);
    let (s, h, json) = w.post_ps(&second, &claims).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(h["location"].to_str().unwrap(), second);
    let second_code = code_for_the_person(&h);
    assert_ne!(first_code, second_code, "a code of its own");
    // Each code leads to its own request: the person refuses the first and approves the
    // second.
    let (s, html) = w
        .page(
            "POST",
            "/interact",
            &format!("code={first_code}&decision=deny"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let (s, json) = w.get_path(&second, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting")),
        "{json}"
    );
    let (s, html) = w
        .page(
            "POST",
            "/interact",
            &format!("code={second_code}&decision=grant"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let (s, json) = w.get_path(&first, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    let (s, json) = w.get_path(&second, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");

    // A source that draws the held code whatever is drawn: a few attempts, then the
    // request is put back as it was (waiting for its claims), and told to try again; the
    // request holding the code is left as it was. (A world where the person is not bound
    // yet.)
    let mut w = world();
    w.server =
        w.server
            .policy(Arc::new(EmailThenBind))
            .random(aauth_keys::rand::SharedRandom::new(Rewinding(Arc::clone(
                &draws,
            ))));
    let held = deferred(w.post_ps(AUTH_TOKEN_PATH, &request).await.1);
    let drawn_at = draws.load(std::sync::atomic::Ordering::SeqCst);
    let (s, h, _) = w.post_ps(&held, &claims).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let held_code = code_for_the_person(&h);
    let repeating = deferred(w.post_ps(AUTH_TOKEN_PATH, &request).await.1);
    w.server = w
        .server
        .random(aauth_keys::rand::SharedRandom::new(Constant(drawn_at)));
    let (s, h, json) = w.post_ps(&repeating, &claims).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        ),
        "{json}"
    );
    assert!(h.contains_key("retry-after"), "{h:?}");
    assert!(
        json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("interaction code")),
        "{json}"
    );
    let (s, html) = w
        .page("GET", &format!("/interact?code={held_code}"), "")
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let (s, json) = w.get_path(&held, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting")),
        "{json}"
    );
    // The repeating request still waits for its claims; sent again once the source
    // draws afresh, they take it to the person, under a code of its own.
    let (s, h, json) = w.get_full(&repeating).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(h["aauth-requirement"], "requirement=claims");
    w.server = w
        .server
        .random(aauth_keys::rand::SharedRandom::new(Rewinding(Arc::new(
            std::sync::atomic::AtomicU8::new(drawn_at.wrapping_add(100)),
        ))));
    let (s, h, json) = w.post_ps(&repeating, &claims).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_ne!(code_for_the_person(&h), held_code);
}

#[tokio::test]
async fn a_clarification_is_answered_at_the_pending_url_and_decides_the_grant() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(AskPurpose));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, h, json) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(h["aauth-requirement"], "requirement=clarification");
    assert_eq!(
        (json["clarification"].as_str(), &json["options"]),
        (
            Some("What is the **purpose** of this access?"),
            &serde_json::json!(["travel", "other"])
        )
    );
    let location = h["location"].to_str().unwrap().to_owned();

    // A poll before the answer: the same question.
    let (s, h2, json) = w.get_full(&location).await;
    assert_eq!(
        (s, &h2["aauth-requirement"]),
        (StatusCode::ACCEPTED, &h["aauth-requirement"])
    );
    assert!(json["clarification"].is_string());

    // Malformed answers change nothing.
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"action": "nope"}),
        serde_json::json!({"action": "clarification_response", "clarification_response": "  "}),
        serde_json::json!({"action": "clarification_response"}),
        serde_json::json!({"action": "updated_request", "resource_token": "x"}),
    ] {
        let (s, _, json) = w.post_ps(&location, &bad).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}"
        );
    }

    // An answer the policy cannot use: asked again, at the same URL.
    let (s, h2, _) = w
        .post_ps(&location, &serde_json::json!({"action": "clarification_response", "clarification_response": "other"}))
        .await;
    assert_eq!((s, &h2["location"]), (StatusCode::ACCEPTED, &h["location"]));
    assert_eq!(w.server.issued().await.unwrap(), 0);

    let (s, _, json) = w
        .post_ps(&location, &serde_json::json!({"action": "clarification_response", "clarification_response": "travel"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        scope_of(json["auth_token"].as_str().unwrap()).as_deref(),
        Some("calendar.read")
    );
    let (s, _, _) = w.get_full(&location).await;
    assert_eq!(s, StatusCode::GONE, "answered once");

    // Five rounds without a decision end the request.
    let (_, h, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    let location = h["location"].to_str().unwrap().to_owned();
    for round in 1..=5 {
        let (s, _, json) = w
            .post_ps(&location, &serde_json::json!({"action": "clarification_response", "clarification_response": "other"}))
            .await;
        if round < 5 {
            assert_eq!(s, StatusCode::ACCEPTED, "round {round}: {json}");
        } else {
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::FORBIDDEN, Some("denied")),
                "{json}"
            );
        }
    }
    assert_eq!(w.get_full(&location).await.0, StatusCode::GONE);
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

/// Offers read access only: a request for more is asked to narrow.
struct ReadOnly;
impl AccessPolicy for ReadOnly {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.scope.is_some_and(|s| s.contains("calendar.write")) {
            AccessDecision::RequireClarification {
                question: "Write access is not offered here. Ask for `calendar.read`?".to_owned(),
                options: Vec::new(),
            }
        } else {
            AccessDecision::Grant
        }
    }
}

#[tokio::test]
async fn an_updated_request_replaces_the_resource_token_only_for_the_same_person() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ReadOnly));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, h, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = h["location"].to_str().unwrap().to_owned();

    // AS-16: a resource token for another person (or another Person Server) is refused,
    // and the request still waits.
    let other = w.resource_token_for(&t, "bob-at-resource", "calendar.read");
    let (s, _, json) = w
        .post_ps(&location, &serde_json::json!({"action": "updated_request", "resource_token": other, "presented_token": t.person}))
        .await;
    assert_eq!(json["error"], "invalid_resource_token", "{s} {json}");
    assert!(json["detail"].as_str().unwrap().contains("sub"), "{json}");
    let (s, _, json) = w.get_full(&location).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 0);

    // The same person, narrower: verified as any request and granted.
    let narrower = w.resource_token_for(&t, "alice-at-resource", "calendar.read");
    let (s, _, json) = w
        .post_ps(&location, &serde_json::json!({"action": "updated_request", "resource_token": narrower, "presented_token": t.person}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        scope_of(json["auth_token"].as_str().unwrap()).as_deref(),
        Some("calendar.read")
    );
}

/// Bills each Person Server once, then wants the person's email.
struct PayThenEmail;
impl AccessPolicy for PayThenEmail {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if !r.billed {
            AccessDecision::RequirePayment(CHALLENGE.to_owned())
        } else if r.claims.is_none() {
            AccessDecision::RequireClaims(vec!["email".to_owned()])
        } else {
            AccessDecision::Grant
        }
    }
}

#[tokio::test]
async fn payment_then_claims_on_one_pending_url_and_the_person_server_stays_billed() {
    let mut w = world();
    w.server = w
        .server
        .trusted([id("https://ps2.example")])
        .policy(Arc::new(PayThenEmail));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, h, json) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{json}");
    assert_eq!(h[http::header::WWW_AUTHENTICATE], CHALLENGE);
    let location = h["location"].to_str().unwrap().to_owned();
    let id = location
        .trim_start_matches(aauth_access_server::PENDING_PATH)
        .to_owned();
    assert_eq!(
        w.server.awaiting_payment(NOW).await.unwrap(),
        vec![(id.clone(), super::id("https://ps.example"))]
    );

    // Not settled yet: the poll answers 402 again; claims cannot be posted.
    let (s, h2, _) = w.get_full(&location).await;
    assert_eq!(
        (s, &h2["location"]),
        (StatusCode::PAYMENT_REQUIRED, &h["location"])
    );
    let (s, _, _) = w
        .post_ps(
            &location,
            &serde_json::json!({"email": "alice@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    assert!(!w.server.confirm_payment("unknown", NOW).await.unwrap());
    assert!(w.server.confirm_payment(&id, NOW).await.unwrap());
    // Paid: the same URL now asks for claims, then issues.
    let (s, h2, json) = w.get_full(&location).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(
        (&h2["aauth-requirement"], &h2["location"]),
        (
            &http::HeaderValue::from_static("requirement=claims"),
            &h["location"]
        )
    );
    let (s, _, json) = w
        .post_ps(
            &location,
            &serde_json::json!({"email": "alice@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(w.server.awaiting_payment(NOW).await.unwrap().is_empty());

    // Billed from now on: the next request goes straight to claims; another Person
    // Server is billed on its own.
    let (s, h, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(
        (s, &h["aauth-requirement"]),
        (
            StatusCode::ACCEPTED,
            &http::HeaderValue::from_static("requirement=claims")
        )
    );
    let (s, _, json) = w
        .post_path(
            AUTH_TOKEN_PATH,
            &ps2_request(&w, &t),
            "https://ps2.example",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

#[tokio::test]
async fn revoking_the_resource_token_ends_the_request_waiting_on_it() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ApproverFirst));
    let t = w.tokens(600);
    let rt = w.resource_token(&t, |b| b);
    let request = serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person});
    let (s, h, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = h["location"].to_str().unwrap().to_owned();
    let pending = location
        .trim_start_matches(aauth_access_server::PENDING_PATH)
        .to_owned();

    assert_eq!(w.revoke_resource_token(&rt).await, StatusCode::OK);
    // The approver can no longer approve it; the Person Server's poll ends it: `403
    // revoked`, naming the token (draft -11 §11.9.4 Polling Error Codes), not the token
    // endpoint's `revoked_resource_token`.
    assert!(!w.server.decide_approval(&pending, true, NOW).await.unwrap());
    let (s, _, json) = w.get_full(&location).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked")),
        "{json}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("resource_token"),
        "{json}"
    );
    assert_eq!(w.get_full(&location).await.0, StatusCode::GONE);
    assert_eq!(w.server.issued().await.unwrap(), 0);
    // The token endpoint keeps its own code for the revoked resource token.
    let (s, _, json) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_resource_token")),
        "{json}"
    );
}

/// Draft -11 §11.9.4 Polling Error Codes: the person token a waiting request was made
/// with, revoked by its Person Server while the request waits (AS-41), ends it at the
/// next poll that decides it again `403 revoked`, naming `presented_token`; the token
/// endpoint answers a new request with it `revoked_presented_token`.
#[tokio::test]
async fn revoking_the_person_token_ends_the_request_waiting_on_it_revoked() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ApproverFirst));
    let t = w.tokens(600);
    let rt = w.resource_token(&t, |b| b);
    let request = serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person});
    let (s, h, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = h["location"].to_str().unwrap().to_owned();
    let pending = location
        .trim_start_matches(aauth_access_server::PENDING_PATH)
        .to_owned();

    let (s, _) = w
        .revoke(
            &t.person_jti,
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(w.server.decide_approval(&pending, true, NOW).await.unwrap());
    let (s, _, json) = w.get_full(&location).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked")),
        "{json}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("presented_token"),
        "{json}"
    );
    assert_eq!(w.get_full(&location).await.0, StatusCode::GONE);
    assert_eq!(w.server.issued().await.unwrap(), 0);
    let (s, _, json) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_presented_token")),
        "{json}"
    );
}

/// Issuer keys that cannot be fetched for one issuer (its metadata host is down).
struct Down {
    inner: Arc<dyn aauth_tokens::IssuerKeyResolver>,
    issuer: &'static str,
}

#[async_trait::async_trait]
impl aauth_tokens::IssuerKeyResolver for Down {
    async fn resolve(
        &self,
        req: &aauth_tokens::KeyRequest<'_>,
    ) -> Result<aauth_keys::PublicKey, aauth_tokens::ResolveError> {
        if req.iss.as_str() == self.issuer {
            return Err(aauth_tokens::ResolveError::Unavailable {
                reason: "connection refused".to_owned(),
            });
        }
        self.inner.resolve(req).await
    }
}

#[tokio::test]
async fn unavailable_issuer_keys_are_this_servers_failure_not_the_callers() {
    for issuer in [
        "https://agent.example",
        "https://resource.example",
        "https://ps.example",
    ] {
        let w = world_with_keys(|inner| Arc::new(Down { inner, issuer }));
        let t = w.tokens(600);
        let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
        let (s, json) = w.ask(&request).await;
        if issuer == "https://ps.example" {
            // The Person Server's own signature cannot be checked: the verifier's 503.
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{issuer}: {json}");
        } else {
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error")),
                "{issuer}: {json}"
            );
        }
        assert_eq!(w.server.issued().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_person_server_cascades_only_what_was_issued_to_it() {
    let mut w = world();
    w.server = w.server.trusted([id("https://ps2.example")]);
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    assert_eq!(w.ask(&request).await.0, StatusCode::OK);
    // Another trusted Person Server names the same jti: it revokes its own token of that
    // name (if any), and reaches nothing issued to ps.example.
    let (s, json) = w
        .revoke(
            &t.person_jti,
            "https://ps2.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(
        (s, json),
        (StatusCode::OK, serde_json::json!({"downstream": []}))
    );
    // ps.example's own token is still honoured.
    assert_eq!(w.ask(&request).await.0, StatusCode::OK);
}

/// A request as Person Server ps2.example would send it: its person token for alice and
/// a resource token naming it.
fn ps2_request(w: &World, t: &Tokens) -> serde_json::Value {
    let p2 = PersonTokenBuilder::new(
        id("https://ps2.example"),
        id("https://resource.example"),
        "alice-at-resource",
        w.agent.public_key(),
    )
    .sign(&w.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let rt2 = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id("https://ps2.example"),
        "alice-at-resource",
        p2.jti.clone(),
        w.agent.public_key(),
        "calendar.read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    serde_json::json!({"resource_token": rt2, "agent_token": t.agent, "presented_token": p2.token})
}

#[tokio::test]
async fn an_unknown_person_server_is_trusted_once_the_person_binds_it_here() {
    // Only ps.example is trusted by configuration; ps2.example signs verifiably.
    let w = world();
    let t = w.tokens(600);
    let body = ps2_request(&w, &t);
    let (s, _, json) = w
        .post_path(AUTH_TOKEN_PATH, &body, "https://ps2.example", &w.ps)
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "refused unless unknown Person Servers are admitted: {json}"
    );

    // Admitted, the default policy still refuses what has no trust established.
    let mut w = world();
    w.server = w.server.admit_unknown_person_servers();
    let (s, _, json) = w
        .post_path(AUTH_TOKEN_PATH, &body, "https://ps2.example", &w.ps)
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
    assert!(
        json["detail"].as_str().unwrap().contains("no trust"),
        "{json}"
    );

    // Trust by interaction: the person approves ps2.example here once.
    w.server = w
        .server
        .policy(Arc::new(aauth_access_server::TrustByInteraction));
    let (location, code) = w
        .deferred_for_the_person(&body, "https://ps2.example")
        .await;
    let (s, html) = w.page("GET", &format!("/interact?code={code}"), "").await;
    assert!(
        s == StatusCode::OK && html.contains("https://ps2.example"),
        "{html}"
    );
    let (s, _) = w
        .page("POST", "/interact", &format!("code={code}&decision=grant"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, json) = w.get_path(&location, "https://ps2.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    // From now on, for alice at this resource, at once; the trusted one never asked.
    let (s, _, _) = w
        .post_path(
            AUTH_TOKEN_PATH,
            &ps2_request(&w, &t),
            "https://ps2.example",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    assert_eq!(w.ask(&request).await.0, StatusCode::OK);
    assert_eq!(w.server.issued().await.unwrap(), 3);
}

/// An approver's yes, then a question about what was read; grants once both are given.
struct ApprovedThenAsked;
impl AccessPolicy for ApprovedThenAsked {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if !r.approved {
            AccessDecision::RequireApproval
        } else if r.scope == Some("calendar.read") && r.clarification.is_none() {
            AccessDecision::RequireClarification {
                question: "Which calendar?".to_owned(),
                options: Vec::new(),
            }
        } else {
            AccessDecision::Grant
        }
    }
}

/// AS-16 with an approval: the approver approved `calendar.read`; the request updated to
/// a wider scope is not approved by that yes, and waits for the approver again.
#[tokio::test]
async fn an_approval_does_not_carry_over_to_an_updated_wider_request() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ApprovedThenAsked));
    let t = w.tokens(600);
    let read = w.resource_token_for(&t, "alice-at-resource", "calendar.read");
    let request = serde_json::json!({"resource_token": read, "agent_token": t.agent, "presented_token": t.person});
    let (s, h, _) = w.post_ps(AUTH_TOKEN_PATH, &request).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(h["aauth-requirement"], "requirement=approval");
    let location = h["location"].to_str().unwrap().to_owned();
    let id = location
        .trim_start_matches(aauth_access_server::PENDING_PATH)
        .to_owned();
    assert!(w.server.decide_approval(&id, true, NOW).await.unwrap());
    let (s, h, _) = w.get_full(&location).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(h["aauth-requirement"], "requirement=clarification");
    let wider = w.resource_token_for(&t, "alice-at-resource", "calendar.read calendar.write");
    let (s, h, json) = w
        .post_ps(&location, &serde_json::json!({"action": "updated_request", "resource_token": wider, "presented_token": t.person}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(
        h["aauth-requirement"], "requirement=approval",
        "asked again"
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);
}
