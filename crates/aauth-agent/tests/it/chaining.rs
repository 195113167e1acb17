//! Call chaining (draft -11 §7.1, §10.1): an intermediary's client asks its Person Server
//! with the upstream token, names no mission of its own, and holds the person token it
//! gets to the upstream token's mission.

use std::sync::{Arc, Mutex};

use aauth_agent::{
    AAuthClient, AgentError, HttpPersonServer, PersonServerClient, PersonTokenRequest, TokenKind,
    UpstreamRelay,
};
use aauth_keys::rand::OsRandom;
use aauth_keys::{PrivateKey, PublicKey};
use aauth_resource::{Access, RoutePolicy};
use aauth_tokens::PersonTokenBuilder;
use bytes::Bytes;
use http::{Request, StatusCode};

use crate::support::{NOW, Parties, get, id, parties, response};

const METADATA: &str = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/jwks.json","person_token_endpoint":"https://ps.example/person","auth_token_endpoint":"https://ps.example/token"}"#;

/// Missions (`mission_s256`): the upstream token's, another, the intermediary's own.
const M_UP: &str = "daKIwNaJjF97BUWQhFl4qCo615_M49Q_9op1AeWpHuk";
const M_OTHER: &str = "2SmKENGwc1g33EvYXaxkGw887yekfl1TpU8vP1svz_o";
const M_OWN: &str = "Wzl1ZRw8q5LQRMCW3DChwtlSVJdFdHLeSMUeyzY9H0o";

/// The bodies posted to the Person Server.
type Posted = Arc<Mutex<Vec<serde_json::Value>>>;

/// Signs person tokens as ps.example, bound to the agent's key.
#[derive(Clone)]
struct Issuer {
    ps_key: Arc<PrivateKey>,
    agent: PublicKey,
}

impl Issuer {
    fn of(w: &Parties) -> Self {
        Self {
            ps_key: w.ps_key.clone(),
            agent: w.agent_key.public_key().clone(),
        }
    }

    /// A person token for `aud`, under `mission`.
    fn token(&self, aud: &str, mission: Option<&str>) -> String {
        let mut b =
            PersonTokenBuilder::new(id("https://ps.example"), id(aud), "person-1", &self.agent);
        if let Some(m) = mission {
            b = b.mission_s256(m);
        }
        b.sign(self.ps_key.as_ref(), "ps-1", NOW, &mut OsRandom)
            .unwrap()
            .token
    }
}

/// The upstream token: a person token the intermediary was called with, under `mission`.
fn upstream(w: &Parties, mission: Option<&str>) -> String {
    Issuer::of(w).token("https://agent.example", mission)
}

/// A Person Server at ps.example that answers person-token requests as the workspace's
/// does for call chaining (PS-60): a request naming `mission_s256` beside
/// `upstream_token` is rejected; any other gets a person token for the resource asked,
/// carrying `issued` as its mission.
fn chaining_ps(w: &Parties, issued: Option<&'static str>) -> Posted {
    let posted = Posted::default();
    let keep = posted.clone();
    let issuer = Issuer::of(w);
    w.net.host(
        "ps.example",
        Arc::new(move |req: Request<Bytes>| {
            let resp = if req.method() == http::Method::GET {
                response(200, &[], METADATA)
            } else {
                let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
                keep.lock().unwrap().push(body.clone());
                if body.get("upstream_token").is_some() && body.get("mission_s256").is_some() {
                    response(400, &[], r#"{"error":"invalid_request"}"#)
                } else {
                    let token = issuer.token(body["resource"].as_str().unwrap(), issued);
                    response(
                        200,
                        &[],
                        &serde_json::json!({ "person_token": token }).to_string(),
                    )
                }
            };
            Box::pin(async move { resp })
        }),
    );
    posted
}

/// The token types presented to resource.example, in order.
fn presented(w: &Parties) -> Vec<String> {
    w.net
        .seen()
        .iter()
        .filter(|s| s.header("host") == "resource.example")
        .map(|s| s.token_typ().unwrap_or_default())
        .collect()
}

fn relay(w: &Parties, upstream: &str) -> Arc<UpstreamRelay> {
    let ps = HttpPersonServer::new(id("https://ps.example"), w.net.clone()).clock(w.clock.clone());
    Arc::new(UpstreamRelay::new(Arc::new(ps), upstream))
}

/// The intermediary's client: asking through `relay` with `upstream`, under `own`
/// mission if set.
fn chained_client(w: &Parties, upstream: &str, own: Option<&str>) -> AAuthClient {
    let mut b = AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .person_server(relay(w, upstream), w.keys());
    if let Some(m) = own {
        b = b.mission(m);
    }
    b.build(w.net.clone())
}

/// Draft -11 §7.1: with `upstream_token` the Person Server issues under the upstream
/// token's mission. The client sends none of its own (whether or not it has one), takes
/// the person token carrying the upstream's mission, presents it, and caches it under
/// that mission.
#[tokio::test]
async fn a_chained_request_under_a_mission_gets_its_person_token_and_presents_it() {
    for own in [None, Some(M_OWN)] {
        let w = parties();
        let who = w.serve(RoutePolicy::new(Access::PersonToken));
        let posted = chaining_ps(&w, Some(M_UP));
        let up = upstream(&w, Some(M_UP));
        let client = chained_client(&w, &up, own);
        for _ in 0..2 {
            let resp = client.send(get("/calendar")).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{own:?}");
            assert_eq!(resp.body(), "person https://ps.example person-1");
        }
        assert_eq!(who.calls(), 2);
        let posted = posted.lock().unwrap();
        assert_eq!(posted.len(), 1, "{own:?}: asked once, then cached");
        assert_eq!(posted[0]["upstream_token"], up.as_str());
        assert!(posted[0].get("mission_s256").is_none(), "{own:?}");
        assert_eq!(
            presented(&w),
            ["aa-agent+jwt", "aa-person+jwt", "aa-person+jwt"],
            "{own:?}"
        );
        let jkt = w.agent_key.public_key().thumbprint().as_str().to_owned();
        let resource = id("https://resource.example");
        let cached = |m| {
            client
                .cache()
                .get(&resource, m, TokenKind::Person, &jkt, NOW)
                .is_some()
        };
        assert!(cached(Some(M_UP)), "cached under the upstream's mission");
        assert!(!cached(Some(M_OWN)) && !cached(None), "{own:?}");
    }
}

/// The person token of a chained call carries the upstream token's mission, absent
/// exactly when it is absent there; any other is refused and never presented.
#[tokio::test]
async fn a_chained_person_token_naming_another_mission_than_the_upstreams_is_refused() {
    for (upstream_mission, issued, own) in [
        (Some(M_UP), Some(M_OTHER), None),
        (Some(M_UP), Some(M_OWN), Some(M_OWN)),
        (Some(M_UP), None, None),
        (None, Some(M_OTHER), None),
        (None, Some(M_OWN), Some(M_OWN)),
    ] {
        let w = parties();
        w.serve(RoutePolicy::new(Access::PersonToken));
        chaining_ps(&w, issued);
        let up = upstream(&w, upstream_mission);
        let client = chained_client(&w, &up, own);
        let got = client.send(get("/calendar")).await;
        let case = format!("{upstream_mission:?} {issued:?} {own:?}");
        match got {
            Err(AgentError::TokenCheck {
                token: "person",
                check: "mission_s256",
                ..
            }) => {}
            other => panic!("{case}: {other:?}"),
        }
        assert_eq!(presented(&w), ["aa-agent+jwt"], "{case}: never presented");
    }
    // Absent upstream and downstream: taken.
    let w = parties();
    w.serve(RoutePolicy::new(Access::PersonToken));
    chaining_ps(&w, None);
    let up = upstream(&w, None);
    let client = chained_client(&w, &up, Some(M_OWN));
    assert_eq!(
        client.send(get("/calendar")).await.unwrap().status(),
        StatusCode::OK
    );
}

/// The relay itself never sends `mission_s256` beside `upstream_token`, whatever it is
/// asked for.
#[tokio::test]
async fn the_upstream_relay_sends_no_mission_beside_the_upstream_token() {
    let w = parties();
    let posted = chaining_ps(&w, Some(M_UP));
    let up = upstream(&w, Some(M_UP));
    let resource = id("https://resource.example");
    let token = relay(&w, &up)
        .person_token(&w.agent(), PersonTokenRequest::new(&resource, Some(M_OWN)))
        .await
        .unwrap();
    assert!(!token.is_empty());
    let posted = posted.lock().unwrap();
    assert_eq!(posted[0]["upstream_token"], up.as_str());
    assert!(posted[0].get("mission_s256").is_none());
}

/// An upstream token the client cannot read: nothing is asked of the Person Server.
#[tokio::test]
async fn an_unreadable_upstream_token_is_refused_before_the_person_server_is_asked() {
    let w = parties();
    w.serve(RoutePolicy::new(Access::PersonToken));
    let posted = chaining_ps(&w, None);
    let client = chained_client(&w, "not-a-token", None);
    assert!(matches!(
        client.send(get("/calendar")).await,
        Err(AgentError::TokenCheck {
            token: "upstream",
            ..
        })
    ));
    assert!(posted.lock().unwrap().is_empty());
}
