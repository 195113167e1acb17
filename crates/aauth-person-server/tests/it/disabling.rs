//! The operator disables an account while a token is issued in its name: the issuance
//! passed its check of the account, and the disabling (mark, then read the records to
//! revoke) runs to its end before the token is recorded. The token is never delivered,
//! and it is revoked, in every store.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use aauth_person_server::{
    Admin, AuditAction, AuditQuery, Issuance, MemoryStore, PERSON_TOKEN_PATH, PsStore, SqliteStore,
    TokenRecord,
};
use aauth_tokens::PersonClaims;
use async_trait::async_trait;
use http::StatusCode;

use crate::racing::{Hooked, Hooks};
use crate::{AUTH_TOKEN_PATH, NOW, World, world_over};

/// Hooks whose next issuance (while `armed`) waits for the operator to disable the
/// account it is in the name of, and only then is recorded: the interleaving the race
/// takes.
struct DisabledBeforeRecord {
    armed: AtomicBool,
    /// How many tokens the disabling revoked, once it ran.
    revoked: Mutex<Option<usize>>,
}

impl DisabledBeforeRecord {
    fn over(inner: Arc<dyn PsStore>) -> Hooked<Self> {
        Hooked {
            inner,
            hooks: Self {
                armed: AtomicBool::new(false),
                revoked: Mutex::new(None),
            },
        }
    }
}

#[async_trait]
impl Hooks for DisabledBeforeRecord {
    async fn recording(&self, inner: &Arc<dyn PsStore>, issuance: &Issuance) {
        if self.armed.swap(false, Ordering::SeqCst) {
            let account = match &issuance.token {
                TokenRecord::Person(r) => r.account.clone(),
                TokenRecord::Auth(r) => r.account.clone(),
                _ => panic!("a token record of a kind this test does not know"),
            };
            let revoked = Admin::new(Arc::clone(inner))
                .set_disabled(&account, true, NOW)
                .await
                .unwrap();
            *self.revoked.lock().unwrap() = Some(revoked);
        }
    }
}

/// `body` posted to `path` while `hook` is armed: refused (`403 denied`, no token). How
/// many tokens the disabling it waited for revoked.
async fn raced(
    w: &World,
    hook: &DisabledBeforeRecord,
    path: &str,
    body: serde_json::Value,
) -> Option<usize> {
    hook.armed.store(true, Ordering::SeqCst);
    let (s, json) = w.post(path, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{path}: {json}"
    );
    assert!(json.get("person_token").is_none() && json.get("auth_token").is_none());
    *hook.revoked.lock().unwrap()
}

/// A person token, then an auth token, each checked against alice's account just before
/// the operator disables it and recorded just after the disabling read her records: each
/// request is refused (`403 denied`), its token revoked and the revocation audited.
async fn issued_as_the_account_is_disabled(store: Arc<dyn PsStore>) {
    let hooked = Arc::new(DisabledBeforeRecord::over(Arc::clone(&store)));
    let hook = &hooked.hooks;
    let w = world_over(Arc::clone(&hooked) as Arc<dyn PsStore>, None);
    let admin = Admin::new(Arc::clone(&store));
    assert!(store.create_account("alice", "$phc").await.unwrap());
    w.bind("aauth:assistant@agent.example", "alice").await;
    let resource = "https://resource.example";

    let ask = serde_json::json!({ "resource": resource });
    let revoked = raced(&w, hook, PERSON_TOKEN_PATH, ask).await;
    assert_eq!(revoked, Some(0), "the disabling found nothing on record");
    let tokens = admin.tokens(Some("alice"), NOW).await.unwrap();
    assert_eq!(tokens.person.len(), 1, "{tokens:?}");
    assert!(tokens.person[0].1, "revoked: {tokens:?}");

    // Enabled again, a person token; then an auth token races the next disabling.
    admin.set_disabled("alice", false, NOW).await.unwrap();
    let person = w.person_token(resource).await;
    let pc: PersonClaims = w.read(&person, resource);
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let ask = serde_json::json!({ "resource_token": rt, "presented_token": person });
    let revoked = raced(&w, hook, AUTH_TOKEN_PATH, ask).await;
    assert_eq!(
        revoked,
        Some(2),
        "the disabling revoked both person tokens, not the auth token, not yet on record"
    );
    let tokens = admin.tokens(Some("alice"), NOW).await.unwrap();
    assert_eq!(tokens.auth.len(), 1, "{tokens:?}");
    assert!(tokens.auth[0].1, "revoked: {tokens:?}");

    let revoked: Vec<String> = admin
        .audit(&AuditQuery::default().action(AuditAction::Revoked))
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.detail)
        .filter(|d| d.ends_with("revoked: the account was disabled as it was issued"))
        .collect();
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert!(
        revoked.iter().any(|d| d.starts_with("auth token ")),
        "{revoked:?}"
    );
    assert!(
        revoked.iter().any(|d| d.starts_with("person token ")),
        "{revoked:?}"
    );
}

#[tokio::test]
async fn an_issuance_racing_the_disabling_of_its_account_is_revoked_in_memory() {
    issued_as_the_account_is_disabled(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn an_issuance_racing_the_disabling_of_its_account_is_revoked_in_sqlite() {
    issued_as_the_account_is_disabled(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn an_issuance_racing_the_disabling_of_its_account_is_revoked_in_postgres() {
    let Some(db) = crate::postgres::Db::new("issuance_racing_the_disabling") else {
        return;
    };
    issued_as_the_account_is_disabled(db.store().await).await;
    db.drop_schema().await;
}
