//! Revocations reach every token they should: an upstream token its Person Server
//! revoked here is refused.

use super::*;

/// A person token of ps.example for the intermediary (the agent token's `iss`).
fn upstream_for_the_intermediary(w: &World) -> aauth_tokens::Minted {
    PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://agent.example"),
        "alice-at-intermediary",
        &PrivateKey::ed25519_from_seed(&[9; 32]).public_key().clone(),
    )
    .lifetime(Duration::from_secs(600))
    .sign(&w.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap()
}

/// AS-14: `revoked_upstream_token`.
#[tokio::test]
async fn an_upstream_token_its_person_server_revoked_here_is_refused() {
    let w = world();
    let t = w.tokens(3000);
    let upstream = upstream_for_the_intermediary(&w);
    let ask = || serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person, "upstream_token": upstream.token});
    let (s, json) = w.ask(&ask()).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let (s, json) = w
        .revoke(
            &upstream.jti,
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let (s, json) = w.ask(&ask()).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_upstream_token")),
        "{json}"
    );
    assert_eq!(w.server.issued().await.unwrap(), 1, "nothing more issued");
}
