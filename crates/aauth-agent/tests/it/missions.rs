//! The mission an auth token carries (draft -11 §9.4.1: `mission_s256` copied from the
//! resource token, which copied it from the person token presented): the client takes
//! an auth token only when it carries the mission the client acts under (the one it asked
//! its person tokens under, or on a chained call the upstream token's), and absent only
//! when that is absent. Another mission, none, or one where none was asked is refused
//! before the token is cached or presented.

use std::sync::Arc;

use aauth_agent::{
    AAuthClient, Agent, AgentError, AuthTokenRequest, PersonServerClient, PersonTokenRequest,
    TokenKind,
};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_tokens::PersonTokenBuilder;
use async_trait::async_trait;
use http::StatusCode;

use crate::support::{NOW, Parties, StandInPs, auth_route, get, id, parties};

/// Missions (`mission_s256`): the one the client asks under, another, an upstream token's.
const M_ASKED: &str = "Wzl1ZRw8q5LQRMCW3DChwtlSVJdFdHLeSMUeyzY9H0o";
const M_OTHER: &str = "2SmKENGwc1g33EvYXaxkGw887yekfl1TpU8vP1svz_o";
const M_UP: &str = "daKIwNaJjF97BUWQhFl4qCo615_M49Q_9op1AeWpHuk";

/// The stand-in Person Server, with the auth tokens it returns re-signed (as ps.example)
/// carrying `auth_mission` in place of the mission their resource token gave them; on a
/// chained call (`upstream`) its person tokens carry `M_UP`, as a Person Server copies the
/// upstream token's mission.
struct Restamping {
    inner: Arc<StandInPs>,
    ps_key: Arc<PrivateKey>,
    auth_mission: Option<&'static str>,
    upstream: Option<String>,
}

#[async_trait]
impl PersonServerClient for Restamping {
    async fn person_token(
        &self,
        agent: &Agent,
        req: PersonTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        let mission = if self.upstream.is_some() {
            Some(M_UP)
        } else {
            req.mission_s256
        };
        self.inner
            .person_token(agent, PersonTokenRequest::new(req.resource, mission))
            .await
    }

    async fn auth_token(
        &self,
        agent: &Agent,
        req: AuthTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        let token = self.inner.auth_token(agent, req).await?;
        let payload = token.split('.').nth(1).unwrap();
        let mut claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&aauth_keys::base64url::decode(payload).unwrap()).unwrap();
        match self.auth_mission {
            Some(m) => claims.insert("mission_s256".to_owned(), m.into()),
            None => claims.remove("mission_s256"),
        };
        let json = serde_json::Value::Object(claims).to_string();
        Ok(
            aauth_tokens::jws::sign(self.ps_key.as_ref(), "ps-1", "aa-auth+jwt", json.as_bytes())
                .unwrap(),
        )
    }

    fn upstream_token(&self) -> Option<&str> {
        self.upstream.as_deref()
    }
}

/// A client for `w` under `asked` (if any), its Person Server [`Restamping`] auth tokens
/// with `auth_mission`; chained with an upstream token under `M_UP` if `chained`.
fn client(
    w: &Parties,
    asked: Option<&str>,
    auth_mission: Option<&'static str>,
    chained: bool,
) -> AAuthClient {
    let upstream = chained.then(|| {
        PersonTokenBuilder::new(
            id("https://ps.example"),
            id("https://agent.example"),
            "person-1",
            w.agent_key.public_key(),
        )
        .mission_s256(M_UP)
        .sign(w.ps_key.as_ref(), "ps-1", NOW, &mut OsRandom)
        .unwrap()
        .token
    });
    let ps = Arc::new(Restamping {
        inner: w.ps(),
        ps_key: w.ps_key.clone(),
        auth_mission,
        upstream,
    });
    let mut b = AAuthClient::builder(w.agent())
        .clock(w.clock.clone())
        .person_server(ps, w.keys());
    if let Some(m) = asked {
        b = b.mission(m);
    }
    b.build(w.net.clone())
}

#[tokio::test]
async fn an_auth_token_under_another_mission_than_the_clients_is_refused() {
    for (asked, issued, chained, why) in [
        (
            Some(M_ASKED),
            Some(M_OTHER),
            false,
            "names another mission than the mission asked for",
        ),
        // The mission stripped.
        (
            Some(M_ASKED),
            None,
            false,
            "names no mission, not the mission asked for",
        ),
        (
            None,
            Some(M_OTHER),
            false,
            "names a mission, and none was asked for",
        ),
        // Chained: the client's own mission is not the one its tokens carry.
        (
            Some(M_ASKED),
            Some(M_ASKED),
            true,
            "names another mission than the upstream token's mission",
        ),
        (
            None,
            None,
            true,
            "names no mission, not the upstream token's mission",
        ),
    ] {
        let case = format!("{asked:?} {issued:?} chained: {chained}");
        let w = parties();
        let who = w.serve(auth_route("read"));
        let client = client(&w, asked, issued, chained);
        match client.send(get("/doc")).await {
            Err(AgentError::TokenCheck {
                token: "auth",
                check: "mission_s256",
                reason,
            }) => assert_eq!(reason, why, "{case}"),
            other => panic!("{case}: {other:?}"),
        }
        assert_eq!(who.calls(), 0, "{case}");
        assert!(
            !w.net.typs().contains(&"aa-auth+jwt".to_owned()),
            "{case}: the auth token went out"
        );
        let jkt = w.agent_key.public_key().thumbprint().as_str().to_owned();
        let resource = id("https://resource.example");
        for m in [asked, issued, Some(M_UP), None] {
            assert!(
                client
                    .cache()
                    .get(&resource, m, TokenKind::Auth, &jkt, NOW)
                    .is_none(),
                "{case}: cached under {m:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_auth_token_under_the_clients_mission_is_taken_and_cached_under_it() {
    for (asked, issued, chained, cached_under) in [
        (Some(M_ASKED), Some(M_ASKED), false, Some(M_ASKED)),
        (None, None, false, None),
        (Some(M_ASKED), Some(M_UP), true, Some(M_UP)),
    ] {
        let case = format!("{asked:?} {issued:?} chained: {chained}");
        let w = parties();
        let who = w.serve(auth_route("read"));
        let client = client(&w, asked, issued, chained);
        let resp = client.send(get("/doc")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{case}");
        assert_eq!(who.calls(), 1, "{case}");
        assert_eq!(
            w.net.typs(),
            ["aa-agent+jwt", "aa-person+jwt", "aa-auth+jwt"],
            "{case}"
        );
        let jkt = w.agent_key.public_key().thumbprint().as_str().to_owned();
        let cached = client
            .cache()
            .get(
                &id("https://resource.example"),
                cached_under,
                TokenKind::Auth,
                &jkt,
                NOW,
            )
            .expect("cached under the mission");
        assert_eq!(cached.kind, TokenKind::Auth, "{case}");
    }
}
