//! Agent-token revocation from the agent provider, and its cascade to every person and
//! auth token issued to that agent.

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_person_server::{AUTH_TOKEN_PATH, PERSON_TOKEN_PATH, REVOCATION_PATH};
use aauth_tokens::{AgentClaims, PersonClaims, ResourceTokenBuilder, Unverified, Validation};
use http::StatusCode;

use crate::{NOW, World, id, world, world_with};

/// A revocation request signed under `sig=jwks_uri` as `signer_id` with `dwk`.
pub(crate) async fn revoke(
    w: &World,
    body: &serde_json::Value,
    key: &PrivateKey,
    signer_id: &str,
    dwk: &str,
) -> (StatusCode, serde_json::Value) {
    revoke_kid(w, body, key, signer_id, dwk, "key-1").await
}

/// `revoke` under key id `kid`.
async fn revoke_kid(
    w: &World,
    body: &serde_json::Value,
    key: &PrivateKey,
    signer_id: &str,
    dwk: &str,
    kid: &str,
) -> (StatusCode, serde_json::Value) {
    let scheme = Scheme::JwksUri {
        id: signer_id.to_owned(),
        dwk: dwk.to_owned(),
        kid: kid.to_owned(),
    };
    let (parts, body) = crate::arriving("POST", REVOCATION_PATH, Some(body), key, &scheme, NOW);
    let resp = w.ps.handle(&parts, &body, NOW).await.unwrap();
    (
        resp.status(),
        serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null),
    )
}

pub(crate) fn jti_of(agent_token: &str) -> String {
    Unverified::<AgentClaims>::decode(agent_token, &Validation::new(NOW))
        .unwrap()
        .unverified_claims()
        .jti
        .clone()
}

#[tokio::test]
async fn a_revoked_agent_token_is_refused_and_its_person_and_auth_tokens_with_it() {
    let mut w = world();
    w.ps = w.ps.revoking_providers([id("https://agent.example")]);
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let auth = json["auth_token"].as_str().unwrap().to_owned();
    let auth_jti = Unverified::<aauth_tokens::AuthClaims>::decode(
        &auth,
        &Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .jti
    .clone();

    // Refused: unsigned, another provider, the wrong document, a bad body.
    let body = serde_json::json!({"jti": jti_of(&w.agent_token), "exp": NOW.as_secs() + 1800});
    let stranger = PrivateKey::ed25519_from_seed(&[61; 32]);
    assert_eq!(
        revoke(
            &w,
            &body,
            &stranger,
            "https://agent.example",
            "aauth-agent.json"
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, json) = revoke(
        &w,
        &body,
        &w.provider,
        "https://agent.example",
        "aauth-person.json",
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unsupported_iss")),
        "a document no revoker publishes: refused before any key is fetched"
    );
    let (s, json) = revoke(
        &w,
        &serde_json::json!({"jti": ""}),
        &w.provider,
        "https://agent.example",
        "aauth-agent.json",
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert!(
        !w.ps.store().is_revoked(&pc.jti, NOW).await.unwrap(),
        "a refused request changes nothing"
    );

    // The provider revokes the agent token: 200, twice (idempotent).
    let (s, _) = revoke(
        &w,
        &body,
        &w.provider,
        "https://agent.example",
        "aauth-agent.json",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = revoke(
        &w,
        &body,
        &w.provider,
        "https://agent.example",
        "aauth-agent.json",
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // That agent token is refused…
    let (s, _) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // …at the auth-token endpoint too: said first (401), before the presented token's
    // own revocation (403).
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{json}");
    // …and the person and auth tokens issued to the agent are revoked with it, whatever
    // agent token is presented next.
    assert!(w.ps.store().is_revoked(&pc.jti, NOW).await.unwrap());
    assert!(w.ps.store().is_revoked(&auth_jti, NOW).await.unwrap());
    let fresh = crate::agent_token(&w.provider, "aauth:assistant@agent.example", &w.agent, 1800);
    let rt2 = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, json) = w
        .post_as(
            AUTH_TOKEN_PATH,
            &serde_json::json!({"resource_token": rt2, "presented_token": person}),
            &w.agent,
            &fresh,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_presented_token"))
    );
    // The binding is unchanged: a new person token with the fresh agent token works.
    let (s, _) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://resource.example"}),
            &w.agent,
            &fresh,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn revocations_from_providers_not_trusted_are_unsupported() {
    let w = world();
    let body = serde_json::json!({"jti": jti_of(&w.agent_token), "exp": NOW.as_secs() + 1800});
    let (s, json) = revoke(
        &w,
        &body,
        &w.provider,
        "https://agent.example",
        "aauth-agent.json",
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unsupported_iss"))
    );
    let (s, _) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
        .await;
    assert_ne!(s, StatusCode::UNAUTHORIZED, "nothing was revoked");
}

#[tokio::test]
async fn a_resource_revokes_a_resource_token_and_the_ps_refuses_it() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let minted = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap();
    let body = serde_json::json!({"jti": minted.jti, "exp": minted.exp});

    // Only the resource itself, proven by its published key, revokes its tokens.
    let stranger = PrivateKey::ed25519_from_seed(&[99; 32]);
    let (s, _) = revoke_kid(
        &w,
        &body,
        &stranger,
        "https://resource.example",
        "aauth-resource.json",
        "rs-1",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = revoke_kid(
        &w,
        &serde_json::json!({"jti": ""}),
        &w.rs,
        "https://resource.example",
        "aauth-resource.json",
        "rs-1",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": minted.token, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "not revoked yet: {json}");

    let (s, _) = revoke_kid(
        &w,
        &body,
        &w.rs,
        "https://resource.example",
        "aauth-resource.json",
        "rs-1",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": minted.token, "presented_token": person}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_resource_token"))
    );
    // Revoking again is fine (idempotent).
    let (s, _) = revoke_kid(
        &w,
        &body,
        &w.rs,
        "https://resource.example",
        "aauth-resource.json",
        "rs-1",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

/// Asks the person for access, never for identity.
struct AskForAccess;

impl aauth_person_server::ConsentPolicy for AskForAccess {
    fn decide(&self, r: &aauth_person_server::ConsentRequest<'_>) -> aauth_person_server::Decision {
        match r.kind {
            aauth_person_server::ConsentKind::AuthToken => aauth_person_server::Decision::AskPerson,
            _ => aauth_person_server::Decision::Approve,
        }
    }
}

/// Draft -11 §Polling Errors (checklist PS-112): a resource that revokes the resource
/// token a pending request was started for ends the request; the agent's poll gets
/// `403 revoked`, and nothing is issued after.
#[tokio::test]
async fn a_revoked_resource_token_ends_the_request_waiting_on_it() {
    let mut w = world_with(Some(std::sync::Arc::new(AskForAccess)));
    w.ps = w.ps.consent_pages(std::time::Duration::from_secs(600));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let minted = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap();
    let (s, headers, json) = w
        .post_full(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": minted.token, "presented_token": person, "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = crate::consent::header_of(&headers, "location");

    let (s, _) = revoke_kid(
        &w,
        &serde_json::json!({"jti": minted.jti, "exp": minted.exp}),
        &w.rs,
        "https://resource.example",
        "aauth-resource.json",
        "rs-1",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, json) = crate::consent::poll(
        &w,
        "GET",
        &location,
        &w.agent,
        &w.agent_token,
        None,
        NOW.plus(1),
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked")),
        "{json}"
    );
    assert!(json["detail"].as_str().unwrap().contains("resource token"));
    // Ended: the next poll finds nothing to wait for.
    let (s, _, _) = crate::consent::poll(
        &w,
        "GET",
        &location,
        &w.agent,
        &w.agent_token,
        None,
        NOW.plus(2),
    )
    .await;
    assert_eq!(s, StatusCode::GONE);
}
