//! Four-party step-up: the Person Server presents an auth token this Access Server
//! issued (AS-12) to get another for the same person, and this server still knows it
//! after rotating its key.

use aauth_access_server::AsStore;
use aauth_metadata::RetiringKey;

use super::*;

impl World {
    /// A step-up request: a resource token whose `presented_jti` is auth token `auth`'s
    /// (`auth_jti`), with that token presented.
    fn step_up(&self, t: &Tokens, auth: &str, auth_jti: &str) -> serde_json::Value {
        let rt = ResourceTokenBuilder::new(
            id("https://resource.example"),
            id("https://as.example"),
            id("https://ps.example"),
            "alice-at-resource",
            auth_jti.to_owned(),
            self.agent.public_key(),
            "calendar.read",
        )
        .sign(&self.rs, "rs-1", NOW, &mut OsRandom)
        .unwrap()
        .token;
        serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": auth})
    }

    /// The world's Access Server after a key rotation: it signs with a new key (`as-2`),
    /// over `store`, and publishes its old one (`as-1`) until `until`.
    fn rotated(&mut self, store: Arc<dyn AsStore>, until: u64) {
        let mut old = self.as_key.public_key().to_jwk();
        old.kid = Some("as-1".to_owned());
        self.server = AccessServer::new(
            id("https://as.example"),
            Arc::new(PrivateKey::ed25519_from_seed(&[55; 32])),
            "as-2",
            Arc::new(world_issuer_keys(&self.ps, &self.rs, &self.provider)),
        )
        .unwrap()
        .trusted([id("https://ps.example")])
        .store(store)
        .retiring_keys(&[RetiringKey::new(old, until)]);
    }
}

/// The `jti` of auth token `token`.
pub(crate) fn auth_jti(token: &str) -> String {
    Unverified::<AuthClaims>::decode(
        token,
        &Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .jti
    .clone()
}

#[tokio::test]
async fn after_a_key_rotation_its_own_auth_tokens_still_step_up_while_it_publishes_the_old_key() {
    let store: Arc<dyn AsStore> = Arc::new(aauth_access_server::MemoryStore::default());
    let mut w = world();
    w.server = w.server.store(Arc::clone(&store));
    let t = w.tokens(600);
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let a1 = json["auth_token"].as_str().unwrap().to_owned();
    let step_up = w.step_up(&t, &a1, &auth_jti(&a1));

    // Rotated: the token signed under as-1 is still this server's while as-1 is published.
    w.rotated(Arc::clone(&store), NOW.as_secs() + 3600);
    let (s, json) = w.ask(&step_up).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let a2 = json["auth_token"].as_str().unwrap();
    let header = aauth_tokens::jws::CompactJws::parse(a2).unwrap().header;
    assert_eq!(
        header.kid.as_deref(),
        Some("as-2"),
        "signed with the new key"
    );

    // Once as-1 is no longer published, what it signed is no longer taken.
    w.rotated(Arc::clone(&store), NOW.as_secs());
    let (s, json) = w.ask(&w.step_up(&t, &a1, &auth_jti(&a1))).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_presented_token")),
        "{json}"
    );
}

/// AS-41 down a step-up chain: tokens stepped up from this server's auth tokens are
/// issued against the person token those were, so its revocation reaches them all; each
/// is recorded revoked here, and none is taken for a step-up again.
#[tokio::test]
async fn revoking_the_person_token_reaches_every_token_stepped_up_from_it() {
    let resources = Arc::new(Resources::default());
    let store = Arc::new(aauth_access_server::MemoryStore::default());
    let mut w = world();
    w.server = w
        .server
        .store(store.clone())
        .revocation_transport(resources.clone());
    let t = w.tokens(600);
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let a1 = json["auth_token"].as_str().unwrap().to_owned();
    // A step-up from a1, then one from that (a2).
    let (s, json) = w.ask(&w.step_up(&t, &a1, &auth_jti(&a1))).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let a2 = json["auth_token"].as_str().unwrap().to_owned();
    let (s, json) = w.ask(&w.step_up(&t, &a2, &auth_jti(&a2))).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let a3 = json["auth_token"].as_str().unwrap().to_owned();

    let (s, json) = w
        .revoke(
            &t.person_jti,
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let mut got: Vec<String> = resources
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(jti, signed)| {
            assert!(signed);
            jti.clone()
        })
        .collect();
    got.sort();
    let mut all = vec![auth_jti(&a1), auth_jti(&a2), auth_jti(&a3)];
    all.sort();
    assert_eq!(got, all, "every token down the chain, at its resource");
    for jti in &all {
        assert!(
            store
                .is_revoked("https://as.example", jti, NOW)
                .await
                .unwrap(),
            "{jti} is revoked here"
        );
    }
    for presented in [&a1, &a3] {
        let (s, json) = w.ask(&w.step_up(&t, presented, &auth_jti(presented))).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("revoked_presented_token")),
            "{json}"
        );
    }
    assert_eq!(w.server.issued().await.unwrap(), 3);
}

/// One of this server's auth tokens it holds no issuance record of (a store that lost
/// it): what it was issued against is unknown, so nothing is issued on it.
#[tokio::test]
async fn an_own_auth_token_without_its_issuance_record_steps_up_to_nothing() {
    let w = world();
    let t = w.tokens(600);
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let a1 = json["auth_token"].as_str().unwrap().to_owned();
    let mut w = w;
    w.server = w
        .server
        .store(Arc::new(aauth_access_server::MemoryStore::default()));
    let (s, json) = w.ask(&w.step_up(&t, &a1, &auth_jti(&a1))).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_presented_token")),
        "{json}"
    );
}
