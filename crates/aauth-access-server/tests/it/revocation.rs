//! Revocations reach every token they should: an upstream token its Person Server
//! revoked here is refused, and a token issued while a revocation ran is never handed
//! out.

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

/// What another instance of the server takes while the policy decides.
enum Meanwhile {
    /// The resource revokes this resource token.
    ResourceToken(String),
    /// The Person Server revokes this person token.
    PersonToken(String),
}

/// Lets another instance of the server (over the same store) take a revocation while it
/// decides, once, then grants: the revocation's cascade looks for what was issued
/// before this request's token is recorded.
struct GrantsAfterARevocation {
    other: Arc<World>,
    meanwhile: std::sync::Mutex<Option<Meanwhile>>,
}

impl AccessPolicy for GrantsAfterARevocation {
    fn decide(&self, _: &AccessRequest<'_>) -> AccessDecision {
        if let Some(m) = self.meanwhile.lock().unwrap().take() {
            let other = Arc::clone(&self.other);
            let status = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    match m {
                        Meanwhile::ResourceToken(rt) => other.revoke_resource_token(&rt).await,
                        Meanwhile::PersonToken(jti) => {
                            other
                                .revoke(
                                    &jti,
                                    "https://ps.example",
                                    "aauth-person.json",
                                    "ps-1",
                                    &other.ps,
                                )
                                .await
                                .0
                        }
                    }
                })
            });
            assert_eq!(status, StatusCode::OK);
        }
        AccessDecision::Grant
    }
}

/// AS-41, AS-42 against an issuance in flight: the person token (or the resource token)
/// is revoked after the request's lookups and before its token is recorded. The token
/// is never handed out, and is recorded revoked here.
async fn a_revocation_while_deciding_reaches_the_token(
    store: Arc<dyn aauth_access_server::AsStore>,
    person_token: bool,
) {
    let mut other = world();
    other.server = other.server.store(Arc::clone(&store));
    let mut w = world();
    let t = w.tokens(600);
    let rt = w.resource_token(&t, |b| b);
    let meanwhile = if person_token {
        Meanwhile::PersonToken(t.person_jti.clone())
    } else {
        Meanwhile::ResourceToken(rt.clone())
    };
    w.server = w
        .server
        .store(Arc::clone(&store))
        .policy(Arc::new(GrantsAfterARevocation {
            other: Arc::new(other),
            meanwhile: std::sync::Mutex::new(Some(meanwhile)),
        }));
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person}))
        .await;
    let code = if person_token {
        "revoked_presented_token"
    } else {
        "revoked_resource_token"
    };
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some(code)),
        "{json}"
    );
    // The token minted was recorded (the cascade of a later revocation reaches it) and
    // is revoked here.
    let issued = store
        .issued_against(&id("https://ps.example"), &t.person_jti, NOW)
        .await
        .unwrap();
    assert_eq!(issued.len(), 1);
    assert!(
        store
            .is_revoked("https://as.example", &issued[0].jti, NOW)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_token_revoked_while_deciding_reaches_the_token_in_memory() {
    let store = Arc::new(aauth_access_server::MemoryStore::default());
    a_revocation_while_deciding_reaches_the_token(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_token_revoked_while_deciding_reaches_the_token_in_sqlite() {
    let store = Arc::new(aauth_access_server::SqliteStore::in_memory().unwrap());
    a_revocation_while_deciding_reaches_the_token(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_token_revoked_while_deciding_reaches_the_token_in_postgres() {
    let Some(db) = aauth_test_support::services::PgSchema::new(
        "a_person_token_revoked_while_deciding_reaches_the_token",
    ) else {
        return;
    };
    let store = aauth_access_server::PgStore::connect(&db.options)
        .await
        .unwrap();
    a_revocation_while_deciding_reaches_the_token(Arc::new(store), true).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_token_revoked_while_deciding_reaches_the_token() {
    let store = Arc::new(aauth_access_server::MemoryStore::default());
    a_revocation_while_deciding_reaches_the_token(store, false).await;
}
