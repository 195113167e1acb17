//! Call chaining at the Person Server (PS-60…63): an intermediary, a resource that is its
//! own agent provider, asks for the person its upstream token names; downstream tokens
//! never outlive the upstream one; no binding is used or made; every failed check has its
//! code and changes nothing.

use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_person_server::{
    AUTH_TOKEN_PATH, Constraints, MISSION_PATH, PERSON_TOKEN_PATH, Proposal,
};
use aauth_tokens::{AgentId, AgentTokenBuilder, AuthClaims, PersonClaims};
use http::StatusCode;

use crate::{NOW, World, id, resource_token_builder, world, world_with};

/// The intermediary's key and its agent token (issued by resource.example itself).
pub(crate) fn intermediary(w: &World, at: UnixTime) -> (PrivateKey, String) {
    let key = PrivateKey::ed25519_from_seed(&[88; 32]);
    let token = AgentTokenBuilder::new(
        id("https://resource.example"),
        AgentId::parse("aauth:calendar@resource.example").unwrap(),
        key.public_key(),
    )
    .lifetime(Duration::from_secs(3600))
    .sign(&w.rs, "rs-agents", at.minus(5), &mut OsRandom)
    .unwrap()
    .token;
    (key, token)
}

/// alice's auth token at resource.example (the upstream), and its claims.
async fn upstream(w: &World) -> (String, AuthClaims) {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let token = json["auth_token"].as_str().unwrap().to_owned();
    let claims = w.read(&token, "https://resource.example");
    (token, claims)
}

#[tokio::test]
async fn an_intermediary_gets_tokens_for_the_upstream_person_capped_by_the_upstream() {
    let w = world();
    let (up, uc) = upstream(&w).await;
    let (ikey, itoken) = intermediary(&w, NOW);

    // A person token for the downstream resource, for alice, no later than upstream.
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://other.example", "upstream_token": up}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let person = json["person_token"].as_str().unwrap().to_owned();
    let pc: PersonClaims = w.read(&person, "https://other.example");
    assert_eq!(
        pc.sub,
        w.ps.directed_sub("alice", &id("https://other.example"))
    );
    assert_ne!(
        pc.sub, uc.sub,
        "the downstream sub is its own, never the upstream's"
    );
    assert!(pc.exp <= uc.exp);
    assert_eq!(pc.cnf.jwk, ikey.public_key().to_jwk());
    // PS-63: the intermediary is not bound to alice by this.
    assert_eq!(
        w.ps.store()
            .binding(
                &id("https://resource.example"),
                &AgentId::parse("aauth:calendar@resource.example").unwrap()
            )
            .await
            .unwrap(),
        None
    );

    // The downstream auth token, same person, capped by the upstream.
    let rt = w.resource_token_for("https://other.example", &pc, &ikey, "read");
    let (s, json) = w
        .post_as(
            AUTH_TOKEN_PATH,
            &serde_json::json!({"resource_token": rt, "presented_token": person, "upstream_token": up}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let ac: AuthClaims = w.read(
        json["auth_token"].as_str().unwrap(),
        "https://other.example",
    );
    assert_eq!(ac.sub, pc.sub);
    assert!(ac.exp <= uc.exp);
}

#[tokio::test]
async fn each_failed_upstream_check_has_its_code_and_changes_nothing() {
    let w = world();
    let (up, uc) = upstream(&w).await;
    let (ikey, itoken) = intermediary(&w, NOW);
    // A person token for other.example: not for the intermediary.
    let elsewhere = w.person_token("https://other.example").await;
    let rt_as_upstream = w.resource_token("x", "y", |b| b);
    // The intermediary's first request records its agent token.
    let _ = w
        .post_as(PERSON_TOKEN_PATH, &serde_json::json!({}), &ikey, &itoken)
        .await;
    let before = w.state();
    let ask = |upstream: &str| serde_json::json!({"resource": "https://other.example", "upstream_token": upstream});
    for (what, body, status, code) in [
        (
            "not for this intermediary",
            ask(&elsewhere),
            StatusCode::BAD_REQUEST,
            "invalid_upstream_token",
        ),
        (
            "not a person or auth token",
            ask(&rt_as_upstream),
            StatusCode::BAD_REQUEST,
            "invalid_upstream_token",
        ),
        (
            "garbage",
            ask("a.b.c"),
            StatusCode::BAD_REQUEST,
            "invalid_upstream_token",
        ),
        (
            "a mission of its own",
            serde_json::json!({"resource": "https://other.example", "upstream_token": up, "mission_s256": "abc"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ] {
        let (s, json) = w.post_as(PERSON_TOKEN_PATH, &body, &ikey, &itoken).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (status, Some(code)),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: nothing changed");
    }

    // Past the upstream's exp.
    let late = UnixTime(uc.exp + 1);
    let (lkey, ltoken) = intermediary(&w, late);
    let (s, json) = w
        .post_at(PERSON_TOKEN_PATH, &ask(&up), &lkey, &ltoken, late)
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expired_upstream_token")),
        "{json}"
    );

    // Revoked.
    w.ps.store().revoke(&uc.jti, uc.exp, NOW).await.unwrap();
    let before = w.state();
    let (s, json) = w
        .post_as(PERSON_TOKEN_PATH, &ask(&up), &ikey, &itoken)
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_upstream_token"))
    );
    assert_eq!(w.state(), before);
}

#[tokio::test]
async fn an_upstream_token_of_another_person_is_refused_and_issues_nothing() {
    let w = world();
    // alice's upstream, through her assistant.
    let (alice_up, _) = upstream(&w).await;
    // bob's upstream, through his own agent.
    let helper_key = PrivateKey::ed25519_from_seed(&[91; 32]);
    let helper = crate::agent_token(&w.provider, "aauth:helper@agent.example", &helper_key, 1800);
    w.bind("aauth:helper@agent.example", "bob").await;
    let bob_up = w
        .person_then_auth("https://resource.example", (&helper_key, &helper), None)
        .await;

    // The intermediary gets bob's downstream person token with bob's upstream…
    let (ikey, itoken) = intermediary(&w, NOW);
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://other.example", "upstream_token": bob_up}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let bob_down = json["person_token"].as_str().unwrap().to_owned();
    let dpc: PersonClaims = w.read(&bob_down, "https://other.example");
    let rt = w.resource_token_for("https://other.example", &dpc, &ikey, "read");
    // …and may not mix it with alice's upstream token.
    let before = w.state();
    let (s, json) = w
        .post_as(
            AUTH_TOKEN_PATH,
            &serde_json::json!({"resource_token": rt, "presented_token": bob_down, "upstream_token": alice_up}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_upstream_token")),
        "{json}"
    );
    assert_eq!(w.state(), before, "nothing issued");
}

/// `AutoApprove` approves the person's own agent at once but leaves a chained request
/// (an intermediary presenting the person's token as `upstream_token`) to the person: the
/// person token and the auth token it asks for wait for the person (`202`);
/// `AutoApproveChained` approves them.
#[tokio::test]
async fn auto_approve_leaves_chained_requests_to_the_person() {
    use aauth_person_server::dangerous::{AutoApprove, AutoApproveChained};
    let mut w = world_with(Some(std::sync::Arc::new(AutoApprove)));
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    // The person's own agent: approved at once (`upstream` checks the `200`).
    let (up, _) = upstream(&w).await;
    let (ikey, itoken) = intermediary(&w, NOW);
    // Left to the person: `202 pending`, and no `token`.
    let waits = |s: StatusCode, json: &serde_json::Value, token: &str| {
        assert_eq!(
            (s, json["status"].as_str()),
            (StatusCode::ACCEPTED, Some("pending")),
            "{json}"
        );
        assert!(json[token].is_null(), "{json}");
    };
    let ask_person = serde_json::json!({"resource": "https://other.example", "upstream_token": up, "capabilities": ["interaction"]});
    let (s, json) = w
        .post_as(PERSON_TOKEN_PATH, &ask_person, &ikey, &itoken)
        .await;
    waits(s, &json, "person_token");

    w.ps = w.ps.policy(std::sync::Arc::new(AutoApproveChained));
    let (s, json) = w
        .post_as(PERSON_TOKEN_PATH, &ask_person, &ikey, &itoken)
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let person = json["person_token"].as_str().unwrap().to_owned();
    let pc: PersonClaims = w.read(&person, "https://other.example");
    let rt = w.resource_token_for("https://other.example", &pc, &ikey, "read");
    let ask_auth = serde_json::json!({"resource_token": rt, "presented_token": person, "upstream_token": up, "capabilities": ["interaction"]});

    w.ps = w.ps.policy(std::sync::Arc::new(AutoApprove));
    let (s, json) = w.post_as(AUTH_TOKEN_PATH, &ask_auth, &ikey, &itoken).await;
    waits(s, &json, "auth_token");
    w.ps = w.ps.policy(std::sync::Arc::new(AutoApproveChained));
    let (s, json) = w.post_as(AUTH_TOKEN_PATH, &ask_auth, &ikey, &itoken).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string());
}

/// Approves everything but asks the person about the downstream resource.
struct AskDownstream;
impl aauth_person_server::ConsentPolicy for AskDownstream {
    fn decide(&self, r: &aauth_person_server::ConsentRequest<'_>) -> aauth_person_server::Decision {
        if r.resource.as_str() == "https://other.example" {
            aauth_person_server::Decision::AskPerson
        } else {
            aauth_person_server::Decision::Approve
        }
    }
}

impl World {
    /// A signed request at time `at`: status, `Location`, body.
    async fn call_at(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        (key, token): (&PrivateKey, &str),
        at: UnixTime,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let resp = self.respond(method, path, body, (key, token), at).await;
        (
            resp.status(),
            resp.headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// The intermediary asks for a person token at other.example under its upstream token,
/// `before_exp` seconds before the upstream token's `exp`; the person is asked. The world,
/// the upstream token's claims, the intermediary's key and token, the pending URL.
async fn waiting_downstream(before_exp: u64) -> (World, AuthClaims, PrivateKey, String, String) {
    let mut w = world_with(Some(std::sync::Arc::new(AskDownstream)));
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    let (up, uc) = upstream(&w).await;
    let (ikey, itoken) = intermediary(&w, NOW);
    let (s, location, json) = w
        .call_at(
            "POST",
            PERSON_TOKEN_PATH,
            Some(&serde_json::json!({"resource": "https://other.example", "upstream_token": up, "capabilities": ["interaction"]})),
            (&ikey, itoken.as_str()),
            UnixTime(uc.exp - before_exp),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    (w, uc, ikey, itoken, location.unwrap())
}

#[tokio::test]
async fn a_downstream_request_waiting_for_the_person_ends_with_its_upstream_token() {
    // PS-64: asked 100 s before the upstream token expires (well within the pending
    // request's own lifetime), the request waits for the person...
    let (w, uc, ikey, itoken, location) = waiting_downstream(100).await;
    let as_intermediary = (&ikey, itoken.as_str());
    let (s, _, json) = w
        .call_at(
            "GET",
            &location,
            None,
            as_intermediary,
            UnixTime(uc.exp - 1),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    // ...and ends, `expired`, when the upstream token does.
    let (s, _, json) = w
        .call_at("GET", &location, None, as_intermediary, UnixTime(uc.exp))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("expired")),
        "{json}"
    );
    let (s, _, _) = w
        .call_at(
            "GET",
            &location,
            None,
            as_intermediary,
            UnixTime(uc.exp + 1),
        )
        .await;
    assert_eq!(s, StatusCode::GONE, "ended once");
}

/// A downstream request waiting for the person ends, `revoked`, when its upstream token
/// is revoked meanwhile: nothing is issued from a revoked upstream.
#[tokio::test]
async fn a_downstream_request_waiting_for_the_person_ends_when_its_upstream_is_revoked() {
    let (w, uc, ikey, itoken, location) = waiting_downstream(100).await;
    let as_intermediary = (&ikey, itoken.as_str());
    let now = UnixTime(uc.exp - 100);
    w.ps.store().revoke(&uc.jti, uc.exp, now).await.unwrap();
    let (s, _, json) = w
        .call_at("GET", &location, None, as_intermediary, now)
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked")),
        "{json}"
    );
    let (s, _, _) = w
        .call_at("GET", &location, None, as_intermediary, now)
        .await;
    assert_eq!(s, StatusCode::GONE, "ended once");
}

/// other.example's own agent (a second intermediary), its token issued by other.example.
fn second_intermediary(w: &World) -> (PrivateKey, String) {
    let key = PrivateKey::ed25519_from_seed(&[89; 32]);
    let token = AgentTokenBuilder::new(
        id("https://other.example"),
        AgentId::parse("aauth:planner@other.example").unwrap(),
        key.public_key(),
    )
    .lifetime(Duration::from_secs(3600))
    .sign(&w.rs, "rs-agents", NOW.minus(5), &mut OsRandom)
    .unwrap()
    .token;
    (key, token)
}

impl World {
    /// A person token for `resource` and then an auth token there, asked by `key` under
    /// `token` (with `upstream` in call chaining): the auth token.
    async fn person_then_auth(
        &self,
        resource: &str,
        (key, token): (&PrivateKey, &str),
        upstream: Option<&str>,
    ) -> String {
        let mut ask = serde_json::json!({ "resource": resource });
        if let Some(up) = upstream {
            ask["upstream_token"] = up.into();
        }
        let (s, json) = self.post_as(PERSON_TOKEN_PATH, &ask, key, token).await;
        assert_eq!(s, StatusCode::OK, "{json}");
        let person = json["person_token"].as_str().unwrap().to_owned();
        let pc: PersonClaims = self.read(&person, resource);
        let rt = self.resource_token_for(resource, &pc, key, "read");
        let mut ask = serde_json::json!({ "resource_token": rt, "presented_token": person });
        if let Some(up) = upstream {
            ask["upstream_token"] = up.into();
        }
        let (s, json) = self.post_as(AUTH_TOKEN_PATH, &ask, key, token).await;
        assert_eq!(s, StatusCode::OK, "{json}");
        json["auth_token"].as_str().unwrap().to_owned()
    }
}

/// Hop 1: resource.example's agent gets alice's auth token at other.example, with
/// `up` as its upstream token.
async fn first_hop(w: &World, up: &str) -> String {
    let (ikey, itoken) = intermediary(w, NOW);
    w.person_then_auth("https://other.example", (&ikey, &itoken), Some(up))
        .await
}

impl World {
    /// A request by `key`/`token` that records its agent token and nothing else (an
    /// unbound agent asking without an upstream token is refused), so that the state
    /// compared around a refusal is the same whether or not the agent was seen before.
    async fn seen(&self, key: &PrivateKey, token: &str) {
        let (s, _) = self
            .post_as(
                PERSON_TOKEN_PATH,
                &serde_json::json!({"resource": "https://third.example"}),
                key,
                token,
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn call_chains_never_return_to_a_resource_they_passed_and_stay_shallow() {
    let w = world();
    let (up, _) = upstream(&w).await;
    let (ikey, itoken) = intermediary(&w, NOW);
    let refused = |json: &serde_json::Value, why: &str| {
        assert_eq!(json["error"], "invalid_upstream_token", "{json}");
        assert!(json["detail"].as_str().unwrap().contains(why), "{json}");
    };

    // A -> A: resource.example asking for itself with its own upstream token.
    w.seen(&ikey, &itoken).await;
    let before = w.state();
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://resource.example", "upstream_token": up}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    refused(&json, "returns to https://resource.example");
    assert_eq!(w.state(), before, "nothing issued or recorded");

    // A -> B -> A: other.example's agent, upstream from hop 1, back to resource.example.
    let hop1 = first_hop(&w, &up).await;
    let (okey, otoken) = second_intermediary(&w);
    w.seen(&okey, &otoken).await;
    let before = w.state();
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://resource.example", "upstream_token": hop1}),
            &okey,
            &otoken,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    refused(&json, "returns to https://resource.example");
    assert_eq!(w.state(), before);

    // A -> B -> C is two intermediaries: within the default depth...
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://third.example", "upstream_token": hop1}),
            &okey,
            &otoken,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");

    // ...and past a limit of one.
    let mut w = world();
    w.ps = w.ps.max_chain_depth(1);
    let (up, _) = upstream(&w).await;
    let hop1 = first_hop(&w, &up).await;
    w.seen(&okey, &otoken).await;
    let before = w.state();
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://third.example", "upstream_token": hop1}),
            &okey,
            &otoken,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    refused(&json, "deeper than 1");
    assert_eq!(w.state(), before);
}

/// A chained request is held to its upstream token's mission as a request of the
/// mission's own agent is: its resources, its tools and its grant budget (draft -11
/// §Call Chaining: the PS evaluates the downstream request against the mission context).
#[tokio::test]
async fn a_chained_request_is_held_to_the_missions_limits() {
    let mut w = world();
    w.ps =
        w.ps.mission_terms(std::sync::Arc::new(|p: &Proposal, now: u64| {
            let mut c = Constraints::default();
            c.valid_until = Some(now + 3600);
            c.resources = Some(p.resources.clone());
            c.tools = Some(vec!["read".to_owned()]);
            c.max_grants = Some(2);
            c
        }));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, approval) = w
        .post_path(
            MISSION_PATH,
            serde_json::json!({
                "description": "Plan the offsite.",
                "resources": ["https://resource.example", "https://other.example"],
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{approval}");
    let digest = approval["s256"].as_str().unwrap().to_owned();
    // The upstream: alice's auth token at resource.example under the mission (grant 1).
    let person = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap();
    let pc: PersonClaims = w.read(person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b.mission_s256(digest.clone()));
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let up = json["auth_token"].as_str().unwrap().to_owned();
    let (ikey, itoken) = intermediary(&w, NOW);
    let refused = |s: StatusCode, json: &serde_json::Value, code: &str| {
        assert_eq!(
            (s, json["error"].as_str(), json["violation"].as_str()),
            (StatusCode::FORBIDDEN, Some("denied"), Some(code)),
            "{json}"
        );
    };

    // A resource outside the mission: refused as the mission's own agent would be.
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://third.example", "upstream_token": up}),
            &ikey,
            &itoken,
        )
        .await;
    refused(s, &json, "resource_not_approved");

    // A resource within it: issued under the mission.
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://other.example", "upstream_token": up}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let down = json["person_token"].as_str().unwrap().to_owned();
    let dc: PersonClaims = w.read(&down, "https://other.example");
    assert_eq!(dc.mission_s256.as_deref(), Some(digest.as_str()));
    let ask = |scope: &str| {
        let rt = w.sign_resource_token(
            resource_token_builder("https://other.example", &dc, &ikey, scope)
                .mission_s256(digest.clone()),
            NOW,
        );
        serde_json::json!({"resource_token": rt, "presented_token": down, "upstream_token": up})
    };
    // A tool outside the mission.
    let (s, json) = w
        .post_as(AUTH_TOKEN_PATH, &ask("read write"), &ikey, &itoken)
        .await;
    refused(s, &json, "tool_not_approved");
    // Within it: issued, and counted against the mission's grants (grant 2)...
    let (s, json) = w
        .post_as(AUTH_TOKEN_PATH, &ask("read"), &ikey, &itoken)
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let m = w.ps.store().mission(&digest).await.unwrap().unwrap();
    assert_eq!(m.grants, 2, "the chained grant is counted");
    // ...so that the budget is spent for the chain as for the agent.
    let (s, json) = w
        .post_as(AUTH_TOKEN_PATH, &ask("read"), &ikey, &itoken)
        .await;
    refused(s, &json, "budget_exhausted");
    assert_eq!(
        w.ps.store().mission(&digest).await.unwrap().unwrap().grants,
        2
    );
}
