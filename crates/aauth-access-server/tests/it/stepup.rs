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
