//! Missions: proposal and approval (s256 over the exact bytes), mission_s256 through the
//! token chain, the power-of-attorney constraints with their stable violation codes,
//! update, completion, termination, and the identical not-found answer.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_person_server::{
    ConsentKind, ConsentPolicy, ConsentRequest, Constraints, Decision, MISSION_PATH,
    PERSON_TOKEN_PATH, Proposal, TerminationReason, s256,
};
use aauth_tokens::{AuthClaims, PersonClaims, ResourceTokenBuilder};
use http::StatusCode;

use crate::consent::AskForAccess;
use crate::{AUTH_TOKEN_PATH, NOW, World, id, world};

fn terms(max_grants: Option<u32>, valid_for: u64) -> Arc<aauth_person_server::MissionTerms> {
    Arc::new(move |p: &Proposal, now: u64| {
        let mut c = Constraints::default();
        c.valid_until = Some(now + valid_for);
        c.resources = Some(p.resources.clone());
        c.tools = Some(p.tools.iter().map(|t| t.name.clone()).collect());
        c.max_grants = max_grants;
        c
    })
}

async fn mission_world(max_grants: Option<u32>, valid_for: u64) -> World {
    let mut w = world();
    w.ps = w.ps.mission_terms(terms(max_grants, valid_for));
    w.bind("aauth:assistant@agent.example", "alice").await;
    w
}

fn proposal() -> serde_json::Value {
    serde_json::json!({
        "description": "Book the team offsite: <b>flights</b> and a venue.",
        "tools": [{"name": "read", "description": "read availability"}],
        "resources": ["https://resource.example"],
    })
}

/// Proposes and returns (s256, the decoded blob, the approval JSON).
async fn approve(w: &World) -> (String, serde_json::Value, serde_json::Value) {
    let (s, json) = w.post(MISSION_PATH, proposal()).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let blob = aauth_keys::base64url::decode(json["mission"].as_str().unwrap()).unwrap();
    let digest = json["s256"].as_str().unwrap().to_owned();
    assert_eq!(
        s256(&blob),
        digest,
        "s256 covers exactly the bytes returned"
    );
    (digest, serde_json::from_slice(&blob).unwrap(), json)
}

fn resource_token(w: &World, pc: &PersonClaims, scope: &str) -> String {
    ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        scope,
    )
    .mission_s256(pc.mission_s256.clone().unwrap())
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token
}

#[tokio::test]
async fn an_approved_mission_pins_its_bytes_and_carries_through_the_tokens() {
    let w = mission_world(None, 3600).await;
    let (digest, blob, approval) = approve(&w).await;
    assert_eq!(blob["agent"], "aauth:assistant@agent.example");
    assert_eq!(
        blob["description"],
        "Book the team offsite: <b>flights</b> and a venue."
    );
    assert_eq!(
        blob["approved_resources"],
        serde_json::json!(["https://resource.example"])
    );
    assert!(blob["approved_at"].as_str().unwrap().ends_with('Z'));
    assert!(blob["expires_at"].is_string());
    assert_eq!(
        blob["aauth-rs:constraints"]["tools"],
        serde_json::json!(["read"])
    );
    assert!(
        blob.get("approver").is_none(),
        "published -11 removed approver"
    );

    // A person token per approved resource, under the mission, capped by it.
    let pt = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap();
    let pc: PersonClaims = w.read(pt, "https://resource.example");
    assert_eq!(pc.mission_s256.as_deref(), Some(digest.as_str()));
    assert!(pc.exp <= NOW.as_secs() + 3600);

    // The chain: resource token → auth token keep mission_s256.
    let rt = resource_token(&w, &pc, "read");
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": pt}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let ac: AuthClaims = w.read(
        json["auth_token"].as_str().unwrap(),
        "https://resource.example",
    );
    assert_eq!(ac.mission_s256.as_deref(), Some(digest.as_str()));

    // The mission URL serves the approved bytes to its agent.
    let (s, headers, body) = w
        .get_path(
            &format!("{MISSION_PATH}/{digest}"),
            &w.agent,
            &w.agent_token,
        )
        .await;
    assert_eq!(
        (
            s,
            crate::consent::header_of(&headers, "content-type").as_str()
        ),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(s256(&body), digest);
}

#[tokio::test]
async fn the_proposals_lists_are_a_record_not_a_limit() {
    // Draft -11 §Mission Approval: nothing enforces `approved_tools`, and
    // `approved_resources` "is not a limit". With the default terms (no power of attorney
    // set by the person) the draft's own kind of mission works beyond its lists.
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (digest, blob, approval) = approve(&w).await;
    assert_eq!(
        blob["approved_resources"],
        serde_json::json!(["https://resource.example"])
    );
    assert_eq!(blob["approved_tools"][0]["name"], "read");
    assert!(approval["person_tokens"]["https://resource.example"].is_string());
    // Another resource, during the mission: subject to the PS's policy, logged.
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://other.example", "mission_s256": digest}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let other: PersonClaims = w.read(
        json["person_token"].as_str().unwrap(),
        "https://other.example",
    );
    assert_eq!(other.mission_s256.as_deref(), Some(digest.as_str()));
    // A scope that names no tool: scopes are the resource's vocabulary, not tool names.
    let pt = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap();
    let pc: PersonClaims = w.read(pt, "https://resource.example");
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": resource_token(&w, &pc, "calendar.write"), "presented_token": pt}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let m = w.ps.store().mission(&digest).await.unwrap().unwrap();
    assert!(
        m.log_entries()
            .iter()
            .any(|e| e.event == "person_token" && e.decision == "permit"),
        "the access beyond the list is in the mission log"
    );
}

#[tokio::test]
async fn constraints_deny_with_stable_codes_and_every_decision_is_logged() {
    let w = mission_world(Some(1), 3600).await;
    let (digest, _, approval) = approve(&w).await;
    // A resource outside the mission.
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://other.example", "mission_s256": digest}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str(), json["violation"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("denied"),
            Some("resource_not_approved")
        )
    );
    let pt = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap();
    let pc: PersonClaims = w.read(pt, "https://resource.example");
    // A scope beyond the approved tools.
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": resource_token(&w, &pc, "read write"), "presented_token": pt}))
        .await;
    assert_eq!(
        (s, json["violation"].as_str()),
        (StatusCode::FORBIDDEN, Some("tool_not_approved"))
    );
    // The grant budget: one auth token, then exhausted.
    let (s, _) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": resource_token(&w, &pc, "read"), "presented_token": pt}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": resource_token(&w, &pc, "read"), "presented_token": pt}))
        .await;
    assert_eq!(
        (s, json["violation"].as_str()),
        (StatusCode::FORBIDDEN, Some("budget_exhausted"))
    );
    // The log, in order, with each decision.
    let m = w.ps.store().mission(&digest).await.unwrap().unwrap();
    let log: Vec<(String, String, Option<String>)> = m
        .log_entries()
        .iter()
        .map(|e| (e.event.clone(), e.decision.clone(), e.detail.clone()))
        .collect();
    assert_eq!(
        log,
        [
            ("proposal".to_owned(), "permit".to_owned(), None),
            (
                "person_token".to_owned(),
                "deny".to_owned(),
                Some("resource_not_approved".to_owned())
            ),
            (
                "auth_token".to_owned(),
                "deny".to_owned(),
                Some("tool_not_approved".to_owned())
            ),
            ("auth_token".to_owned(), "permit".to_owned(), None),
            (
                "auth_token".to_owned(),
                "deny".to_owned(),
                Some("budget_exhausted".to_owned())
            ),
        ]
    );
    assert_eq!(m.grants, 1);
}

#[tokio::test]
async fn update_completion_and_termination_are_final() {
    let w = mission_world(None, 3600).await;
    let (digest, _, _) = approve(&w).await;
    let url = format!("{MISSION_PATH}/{digest}");
    for body in [
        serde_json::json!({}),
        serde_json::json!({"action": "dance"}),
    ] {
        let (s, json) = w.post_path(&url, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request"))
        );
    }
    let (s, json) = w
        .post_path(
            &url,
            serde_json::json!({"action": "update", "description": "Also a dinner."}),
        )
        .await;
    assert_eq!(
        (s, json["s256"].as_str()),
        (StatusCode::OK, Some(s256(b"Also a dinner.").as_str()))
    );
    let (s, json) = w
        .post_path(
            &url,
            serde_json::json!({"action": "completion", "summary": "Booked."}),
        )
        .await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    // Terminated is final, and every token request under it says why.
    let (s, json) = w
        .post_path(
            &url,
            serde_json::json!({"action": "update", "description": "more"}),
        )
        .await;
    assert_eq!(
        (
            s,
            json["error"].as_str(),
            json["termination_reason"].as_str()
        ),
        (
            StatusCode::FORBIDDEN,
            Some("mission_terminated"),
            Some("completed")
        )
    );
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "mission_s256": digest}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str(), json["mission_status"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("mission_terminated"),
            Some("terminated")
        )
    );

    // The same proposal again within the same second is the same mission (the same
    // bytes): it stays completed, it is not approved afresh.
    let (s, json) = w.post(MISSION_PATH, proposal()).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("mission_terminated")),
        "{json}"
    );

    // A revoked mission (the person's decision, through the API).
    let mut another = proposal();
    another["description"] = "Plan the spring offsite.".into();
    let (s, json) = w.post(MISSION_PATH, another).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let other = json["s256"].as_str().unwrap().to_owned();
    w.ps.terminate_mission(&other, TerminationReason::Revoked, NOW)
        .await
        .unwrap();
    let (_, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "mission_s256": other}),
        )
        .await;
    assert_eq!(json["termination_reason"], "revoked");

    // The audit log: each change of both missions, newest first, and the token requests
    // refused under a terminated mission with their code.
    use aauth_person_server::PsStore as _;
    let store = w.mem.as_ref().expect("the world's store is in memory");
    let changes: Vec<String> = store
        .audit(
            &aauth_person_server::AuditQuery::default()
                .action(aauth_person_server::AuditAction::Mission),
        )
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| {
            assert_eq!(e.account.as_deref(), Some("alice"));
            assert_eq!(e.agent.as_deref(), Some("aauth:assistant@agent.example"));
            e.detail
        })
        .collect();
    assert_eq!(
        changes,
        [
            format!("mission {other} terminated: revoked"),
            format!("mission {other} approved by the person"),
            format!("mission {digest} completed by its agent"),
            format!(
                "mission {digest} updated (new description {})",
                s256(b"Also a dinner.")
            ),
            format!("mission {digest} approved by the person"),
        ]
    );
    let refused = store
        .audit(
            &aauth_person_server::AuditQuery::default()
                .action(aauth_person_server::AuditAction::Refused),
        )
        .await
        .unwrap()
        .events;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().all(|e| e
            .detail
            .starts_with("mission_terminated: person token refused")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_expired_mission_and_one_that_is_not_yours_look_like_what_they_are() {
    let w = mission_world(None, 100).await;
    let (digest, _, _) = approve(&w).await;
    // Another agent of the same provider: the mission is not found, exactly as an unknown one.
    let other_key = PrivateKey::ed25519_from_seed(&[45; 32]);
    let other = crate::agent_token(&w.provider, "aauth:helper@agent.example", &other_key, 600);
    let theirs = w
        .get_path(&format!("{MISSION_PATH}/{digest}"), &other_key, &other)
        .await;
    let unknown = w
        .get_path(
            &format!("{MISSION_PATH}/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            &other_key,
            &other,
        )
        .await;
    assert_eq!(theirs.0, StatusCode::NOT_FOUND);
    assert_eq!(
        (theirs.0, &theirs.2),
        (unknown.0, &unknown.2),
        "identical answers"
    );
    assert_eq!(theirs.1, unknown.1);

    // Draft -11 §Mission Endpoint Errors: a `{mission_s256}` that is no SHA-256 digest in
    // unpadded base64url is malformed, `400 invalid_request`, whatever is stored.
    for malformed in [
        "abc",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
        // Non-zero unused bits: not the one encoding of any digest.
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
    ] {
        let (s, _, body) = w
            .get_path(
                &format!("{MISSION_PATH}/{malformed}"),
                &w.agent,
                &w.agent_token,
            )
            .await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{malformed}: {json}"
        );
        let (s, json) = w
            .post_path(
                &format!("{MISSION_PATH}/{malformed}"),
                serde_json::json!({"action": "completion", "summary": "done"}),
            )
            .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{malformed}: {json}"
        );
    }

    // Past expires_at: terminated, expired.
    let late = aauth_keys::time::UnixTime(NOW.as_secs() + 200);
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let body = serde_json::json!({"resource": "https://resource.example", "mission_s256": digest});
    let (s, json) = w
        .post_at(PERSON_TOKEN_PATH, &body, &w.agent, &late_token, late)
        .await;
    assert_eq!(
        (s, json["termination_reason"].as_str()),
        (StatusCode::FORBIDDEN, Some("expired"))
    );
}

/// The agent is unlinked from alice and linked to bob: alice's mission is not bob's, so
/// no token is issued for bob under it (nor spent from her ledger).
#[tokio::test]
async fn a_mission_stays_its_persons_when_the_agent_changes_hands() {
    let w = mission_world(None, 3600).await;
    let (digest, _, _) = approve(&w).await;
    let body = serde_json::json!({"resource": "https://resource.example", "mission_s256": digest});
    let (s, json) = w.post(PERSON_TOKEN_PATH, body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    w.bind("aauth:assistant@agent.example", "bob").await;
    let (s, json) = w.post(PERSON_TOKEN_PATH, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{json}"
    );
}

/// Completion the person must accept.
struct ReviewCompletion;
impl ConsentPolicy for ReviewCompletion {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        match r.kind {
            ConsentKind::Completion => Decision::AskPerson,
            _ => Decision::Approve,
        }
    }
}

#[tokio::test]
async fn the_person_accepts_a_completion_on_the_consent_page() {
    let mut w = mission_world(None, 3600).await;
    w.ps =
        w.ps.policy(Arc::new(ReviewCompletion))
            .consent_pages(Duration::from_secs(600));
    w.ps.set_password("alice", "pw").await.unwrap();
    let (digest, _, _) = approve(&w).await;
    let (s, headers, _) = w
        .post_full(&format!("{MISSION_PATH}/{digest}"), serde_json::json!({"action": "completion", "summary": "All <i>booked</i>.", "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = crate::consent::header_of(&headers, "location");
    let code = crate::consent::code_of(&headers);
    crate::consent::approve(&w, &code, "alice", "pw").await;
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{json}"
    );
    let m = w.ps.store().mission(&digest).await.unwrap().unwrap();
    assert_eq!(m.terminated, Some(TerminationReason::Completed));
}

#[tokio::test]
async fn a_mission_budget_is_a_ledger_granted_down_to_what_remains() {
    let mut w = world();
    w.ps = w.ps.mission_terms(Arc::new(|p: &Proposal, now: u64| {
        let mut c = Constraints::default();
        c.valid_until = Some(now + 3600);
        c.resources = Some(p.resources.clone());
        c.budget = Some(aauth_tokens::Budget::new(1000, "USD", 2).unwrap());
        c
    }));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (digest, blob, approval) = approve(&w).await;
    assert_eq!(
        blob["aauth-rs:constraints"]["budget"],
        serde_json::json!({"amount": 1000, "unit": "USD", "decimals": 2}),
        "the ceiling is pinned by the mission's s256"
    );
    let pt = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap()
        .to_owned();
    let pc: PersonClaims = w.read(&pt, "https://resource.example");
    let usd = |amount| aauth_tokens::Budget::new(amount, "USD", 2).unwrap();
    let ask = |offer: aauth_tokens::Budget, consumed: Vec<aauth_tokens::Consumption>| {
        let rt = ResourceTokenBuilder::new(
            id("https://resource.example"),
            id("https://ps.example"),
            id("https://ps.example"),
            pc.sub.clone(),
            pc.jti.clone(),
            w.agent.public_key(),
            "read",
        )
        .mission_s256(digest.clone())
        .budget(offer, consumed)
        .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
        .unwrap()
        .token;
        serde_json::json!({"resource_token": rt, "presented_token": pt})
    };
    let granted = |json: &serde_json::Value| {
        let ac: AuthClaims = w.read(
            json["auth_token"].as_str().unwrap(),
            "https://resource.example",
        );
        (ac.jti, ac.budget)
    };

    // The whole offer fits: granted as offered.
    let (s, json) = w.post(AUTH_TOKEN_PATH, ask(usd(600), vec![])).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let (first, b) = granted(&json);
    assert_eq!(b, Some(usd(600)));
    // Only 4.00 remain: the offer is lowered.
    let (s, json) = w.post(AUTH_TOKEN_PATH, ask(usd(600), vec![])).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(granted(&json).1, Some(usd(400)));
    // The resource reports the first grant consumed 1.00: 5.00 are free again.
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            ask(usd(600), vec![aauth_tokens::Consumption::new(&first, 100)]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(granted(&json).1, Some(usd(500)));
    let m = w.ps.store().mission(&digest).await.unwrap().unwrap();
    assert_eq!(m.spent(), 1000);
    assert_eq!(m.ledger.len(), 3);

    // Spent: refused with a stable code, and no grant is counted or recorded.
    let grants = m.grants;
    let (s, json) = w.post(AUTH_TOKEN_PATH, ask(usd(1), vec![])).await;
    assert_eq!(
        (s, json["violation"].as_str()),
        (StatusCode::FORBIDDEN, Some("budget_exhausted")),
        "{json}"
    );
    let m = w.ps.store().mission(&digest).await.unwrap().unwrap();
    assert_eq!((m.grants, m.ledger.len()), (grants, 3));
    // Another denomination is not this budget.
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            ask(aauth_tokens::Budget::new(1, "EUR", 2).unwrap(), vec![]),
        )
        .await;
    assert_eq!(
        (s, json["violation"].as_str()),
        (StatusCode::FORBIDDEN, Some("budget_unit_mismatch"))
    );
    // A resource that meters nothing gets no budget claim (only the resource
    // denominates).
    let rt = resource_token(&w, &pc, "read");
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": pt}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(granted(&json).1, None);
}

/// A consumption report counts only from the resource its grant was for, and never
/// lowers an earlier report: a resource an agent controls cannot "report" another
/// resource's grants unspent and free the mission's budget again.
#[test]
fn only_the_granting_resource_reports_consumption_and_reports_never_shrink() {
    let usd = |amount| aauth_tokens::Budget::new(amount, "USD", 2).unwrap();
    let mut c = Constraints::default();
    c.budget = Some(usd(1000));
    let mut m = aauth_person_server::Mission::new(
        br#"{"agent":"aauth:assistant@agent.example","description":"d"}"#.to_vec(),
        (
            id("https://agent.example"),
            aauth_tokens::AgentId::parse("aauth:assistant@agent.example").unwrap(),
        ),
        "alice",
        c,
    );
    let (shop, evil) = (id("https://resource.example"), id("https://other.example"));
    m.record_allocation("at-shop", 1000, &shop);
    assert_eq!(m.spent(), 1000);
    let zero = [aauth_tokens::Consumption::new("at-shop", 0)];
    // Another resource reports the shop's grant as unspent: ignored, nothing freed.
    m.record_consumption(Some(&usd(1)), &zero, &evil);
    assert_eq!(m.spent(), 1000);
    assert_eq!(
        m.allocate(Some(&usd(1)), &zero, &evil),
        Err(aauth_person_server::violation::BUDGET_EXHAUSTED)
    );
    // The shop itself reports 3.00 consumed: 7.00 are free.
    m.record_consumption(
        Some(&usd(1)),
        &[aauth_tokens::Consumption::new("at-shop", 300)],
        &shop,
    );
    assert_eq!(m.spent(), 300);
    // A later, lower report of the same grant does not shrink it.
    m.record_consumption(Some(&usd(1)), &zero, &shop);
    assert_eq!(m.spent(), 300);
    assert_eq!(
        m.allocate(Some(&usd(900)), &zero, &shop),
        Ok(Some(usd(700)))
    );
}

/// The consent page for a token asked under a mission shows the mission: its description
/// (the agent's words, escaped), what its constraints allow, and its budget spent and
/// left; a mission that is not the signed-in person's is not shown.
#[tokio::test]
async fn the_consent_page_shows_the_mission_its_budget_and_what_it_allows() {
    let mut w = world();
    w.ps =
        w.ps.mission_terms(Arc::new(|p: &Proposal, now: u64| {
            let mut c = Constraints::default();
            c.valid_until = Some(now + 3600);
            c.resources = Some(p.resources.clone());
            c.tools = Some(p.tools.iter().map(|t| t.name.clone()).collect());
            c.max_grants = Some(3);
            c.budget = Some(aauth_tokens::Budget::new(1000, "USD", 2).unwrap());
            c
        }))
        .policy(Arc::new(AskForAccess))
        .consent_pages(Duration::from_secs(600));
    w.ps.set_password("alice", "pw").await.unwrap();
    w.ps.set_password("bob", "pw").await.unwrap();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (digest, _, approval) = approve(&w).await;
    let pt = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap();
    let pc: PersonClaims = w.read(pt, "https://resource.example");
    let rt = resource_token(&w, &pc, "read");
    let (s, headers, _) = w
        .post_full(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": pt, "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let code = crate::consent::code_of(&headers);
    let mut b = crate::consent::Browser::default();
    let signed_in = b.sign_in(&w, &code, "alice", "pw").await;
    let page = b
        .go(
            &w,
            "GET",
            &crate::consent::header_of(&signed_in.headers, "location"),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let mission = page
        .html
        .split("<section class=\"mission\"")
        .nth(1)
        .and_then(|m| m.split("</section>").next())
        .unwrap_or_else(|| panic!("no mission section: {}", page.html));
    let grants = w.ps.store().mission(&digest).await.unwrap().unwrap().grants;
    for shown in [
        "<bdi>Book the team offsite: &lt;b&gt;flights&lt;/b&gt; and a venue.</bdi>",
        "Budget: 0.00 USD spent of 10.00 USD, 10.00 USD left.",
        "only the resources: https://resource.example",
        "only the tools: read",
        &format!("{grants} of 3 tokens used"),
    ] {
        assert!(mission.contains(shown), "{shown}: {mission}");
    }
    assert!(!mission.contains("<b>flights</b>"));
    // The mission is alice's: another person who got hold of the agent's code sees the
    // request refused, and never the mission.
    let mut bob = crate::consent::Browser::default();
    let signed_in = bob.sign_in(&w, &code, "bob", "pw").await;
    let page = bob
        .go(
            &w,
            "GET",
            &crate::consent::header_of(&signed_in.headers, "location"),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.html.contains("offsite"), "{}", page.html);
}

/// Asks for auth tokens, approves the rest, and never lets an answer stand for the
/// mission.
struct AskEachTime;
impl ConsentPolicy for AskEachTime {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        AskForAccess.decide(r)
    }
    fn mission_wide(&self, _: &ConsentRequest<'_>) -> bool {
        false
    }
}

/// "Approve for this mission": the person's answer stands for the same agent, resource
/// and scope under the same active mission (not for another scope, not when the agent
/// asks with prompt=consent, not once the mission ends); "approve once" and a policy that
/// does not allow it leave nothing standing.
#[tokio::test]
async fn approving_for_the_mission_lets_the_same_access_through_until_it_ends() {
    async fn setup(policy: Arc<dyn ConsentPolicy>) -> (World, String, String, PersonClaims) {
        let mut w = world();
        w.ps =
            w.ps.mission_terms(Arc::new(|p: &Proposal, now: u64| {
                let mut c = Constraints::default();
                c.valid_until = Some(now + 3600);
                c.resources = Some(p.resources.clone());
                c
            }))
            .policy(policy)
            .consent_pages(Duration::from_secs(600));
        w.ps.set_password("alice", "pw").await.unwrap();
        w.bind("aauth:assistant@agent.example", "alice").await;
        let (digest, _, approval) = approve(&w).await;
        let pt = approval["person_tokens"]["https://resource.example"]
            .as_str()
            .unwrap()
            .to_owned();
        let pc: PersonClaims = w.read(&pt, "https://resource.example");
        (w, digest, pt, pc)
    }
    async fn ask(
        w: &World,
        pt: &str,
        pc: &PersonClaims,
        scope: &str,
        prompt: Option<&str>,
    ) -> (StatusCode, http::HeaderMap) {
        let mut body = serde_json::json!({"resource_token": resource_token(w, pc, scope), "presented_token": pt, "capabilities": ["interaction"]});
        if let Some(p) = prompt {
            body["prompt"] = p.into();
        }
        let (s, headers, _) = w.post_full(AUTH_TOKEN_PATH, body).await;
        (s, headers)
    }
    async fn answer(w: &World, headers: &http::HeaderMap, decision: &str) -> crate::consent::Page {
        let code = crate::consent::code_of(headers);
        let mut b = crate::consent::Browser::default();
        let signed_in = b.sign_in(w, &code, "alice", "pw").await;
        let page = b
            .go(
                w,
                "GET",
                &crate::consent::header_of(&signed_in.headers, "location"),
                &[],
            )
            .await;
        let form = [
            ("code", page.hidden("code")),
            ("csrf", page.hidden("csrf")),
            ("revision", page.hidden("revision")),
            ("decision", decision.to_owned()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let done = b
            .go(w, "POST", aauth_person_server::INTERACT_PATH, &form)
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.html);
        page
    }

    let (w, digest, pt, pc) = setup(Arc::new(AskForAccess)).await;
    let (s, headers) = ask(&w, &pt, &pc, "read", None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let page = answer(&w, &headers, "grant-mission").await;
    assert!(
        page.html.contains(">Approve once</button>")
            && page
                .html
                .contains("value=\"grant-mission\">Approve for this mission</button>"),
        "{}",
        page.html
    );
    let m = w.ps.store().mission(&digest).await.unwrap().unwrap();
    assert_eq!(m.approvals.len(), 1, "{m:?}");
    assert!(m.approved_for("https://resource.example", "read"));
    assert!(
        m.log_entries()
            .iter()
            .any(|e| e.event == "approved_for_mission")
    );
    // The same access again: issued without asking.
    let (s, _) = ask(&w, &pt, &pc, "read", None).await;
    assert_eq!(s, StatusCode::OK);
    // Another scope, or the agent asking for the person's consent: asked.
    assert_eq!(
        ask(&w, &pt, &pc, "read write", None).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        ask(&w, &pt, &pc, "read", Some("consent")).await.0,
        StatusCode::ACCEPTED
    );
    // The mission ends: nothing stands any more.
    w.ps.terminate_mission(&digest, TerminationReason::Revoked, NOW)
        .await
        .unwrap();
    let (s, _) = ask(&w, &pt, &pc, "read", None).await;
    assert_ne!(s, StatusCode::OK);

    // Approve once: nothing stands.
    let (w, digest, pt, pc) = setup(Arc::new(AskForAccess)).await;
    let (_, headers) = ask(&w, &pt, &pc, "read", None).await;
    answer(&w, &headers, "grant").await;
    assert!(
        w.ps.store()
            .mission(&digest)
            .await
            .unwrap()
            .unwrap()
            .approvals
            .is_empty()
    );
    assert_eq!(
        ask(&w, &pt, &pc, "read", None).await.0,
        StatusCode::ACCEPTED
    );

    // A policy that does not allow it: one button, and a forged grant-mission is a grant
    // once.
    let (w, digest, pt, pc) = setup(Arc::new(AskEachTime)).await;
    let (_, headers) = ask(&w, &pt, &pc, "read", None).await;
    let page = answer(&w, &headers, "grant-mission").await;
    assert!(!page.html.contains("grant-mission"), "{}", page.html);
    assert!(
        w.ps.store()
            .mission(&digest)
            .await
            .unwrap()
            .unwrap()
            .approvals
            .is_empty()
    );
    assert_eq!(
        ask(&w, &pt, &pc, "read", None).await.0,
        StatusCode::ACCEPTED
    );

    // Asked, then the mission ends while the person decides, then they approve: nothing
    // is issued under the ended mission, and the request is over (draft -11:
    // mission_terminated).
    let (w, digest, pt, pc) = setup(Arc::new(AskForAccess)).await;
    let (_, headers) = ask(&w, &pt, &pc, "read", None).await;
    let location = crate::consent::header_of(&headers, "location");
    w.ps.terminate_mission(&digest, TerminationReason::Revoked, NOW)
        .await
        .unwrap();
    answer(&w, &headers, "grant").await;
    let poll = || crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW);
    let (s, _, json) = poll().await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("mission_terminated")),
        "{json}"
    );
    assert_eq!(poll().await.0, StatusCode::GONE, "the request is over");
}

/// A mission's grant budget counts the auth tokens issued under it: a request the person
/// denies, or that ends unanswered, spends none; approved requests past the budget get
/// no token, however many were waiting at once.
#[tokio::test]
async fn only_issued_tokens_count_against_the_grant_budget() {
    use crate::consent::{Browser, code_of, consenting_world, decide, poll};
    let mut w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.ps = w.ps.mission_terms(terms(Some(1), 3600));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (digest, _, approval) = approve(&w).await;
    let pt = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap()
        .to_owned();
    let pc: PersonClaims = w.read(&pt, "https://resource.example");
    let ask = || async {
        let (s, headers, json) = w
            .post_full(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": resource_token(&w, &pc, "read"), "presented_token": pt, "capabilities": ["interaction"]}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{json}");
        (
            crate::consent::header_of(&headers, "location"),
            code_of(&headers),
        )
    };
    let grants = || async { w.ps.store().mission(&digest).await.unwrap().unwrap().grants };

    // Denied by the person: nothing spent.
    let (location, code) = ask().await;
    let mut b = Browser::default();
    let page = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let consent = b
        .go(
            &w,
            "GET",
            &crate::consent::header_of(&page.headers, "location"),
            &[],
        )
        .await;
    decide(&mut b, &w, &code, &consent.hidden("csrf"), "deny").await;
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
    assert_eq!(grants().await, 0, "a denied request spends no grant");

    // Never answered: nothing spent.
    let (location, _) = ask().await;
    let late = NOW.plus(601);
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let (s, _, json) = poll(&w, "GET", &location, &w.agent, &late_token, None, late).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("expired"))
    );
    assert_eq!(grants().await, 0, "an expired request spends no grant");

    // Two waiting at once, both approved: the first issued is the one grant.
    let (first, first_code) = ask().await;
    let (second, second_code) = ask().await;
    crate::consent::approve(&w, &first_code, "alice", "correct horse battery").await;
    crate::consent::approve(&w, &second_code, "alice", "correct horse battery").await;
    let (s, _, json) = poll(&w, "GET", &first, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(grants().await, 1);
    let (s, _, json) = poll(&w, "GET", &second, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["violation"].as_str()),
        (StatusCode::FORBIDDEN, Some("budget_exhausted")),
        "{json}"
    );
    assert_eq!(grants().await, 1);
    // That verdict ends the request: it does not stand approved until it expires.
    let (s, _, json) = poll(&w, "GET", &second, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::GONE, "{json}");
    assert_eq!(grants().await, 1);
}
