//! The operator disables an account while a token is issued in its name: the issuance
//! passed its check of the account, and the disabling (mark, then read the records to
//! revoke) runs to its end before the token is recorded. The token is never delivered,
//! and it is revoked, in every store; it spends nothing of the mission it was asked under.
//! Likewise a token whose mission's last grant another request spends as it is recorded.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use aauth_person_server::{
    Admin, AuditAction, AuditQuery, Constraints, Issuance, MISSION_PATH, MemoryStore,
    PERSON_TOKEN_PATH, Proposal, PsStore, SqliteStore, TokenRecord,
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

/// A world over `hooked` (`store` with hooks) whose missions allow one grant and a
/// budget of 10.00 USD: alice's account, her agent bound, and a mission approved. Its
/// s256 and the person token under it.
async fn one_grant_mission<H: Hooks + 'static>(
    store: &Arc<dyn PsStore>,
    hooked: &Arc<Hooked<H>>,
) -> (World, String, String) {
    let mut w = world_over(Arc::clone(hooked) as Arc<dyn PsStore>, None);
    w.ps = w.ps.mission_terms(Arc::new(|p: &Proposal, now: u64| {
        let mut c = Constraints::default();
        c.valid_until = Some(now + 3600);
        c.resources = Some(p.resources.clone());
        c.max_grants = Some(1);
        c.budget = Some(usd(1000));
        c
    }));
    assert!(store.create_account("alice", "$phc").await.unwrap());
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, approval) = w
        .post(
            MISSION_PATH,
            serde_json::json!({"description": "Book the offsite.", "resources": ["https://resource.example"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{approval}");
    let digest = approval["s256"].as_str().unwrap().to_owned();
    let person = approval["person_tokens"]["https://resource.example"]
        .as_str()
        .unwrap()
        .to_owned();
    (w, digest, person)
}

fn usd(amount: u64) -> aauth_tokens::Budget {
    aauth_tokens::Budget::new(amount, "USD", 2).unwrap()
}

/// An auth-token request under mission `digest` offering 6.00 USD, presenting `person`.
fn under_mission(w: &World, digest: &str, person: &str) -> serde_json::Value {
    let pc: PersonClaims = w.read(person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| {
        b.mission_s256(digest.to_owned()).budget(usd(600), vec![])
    });
    serde_json::json!({ "resource_token": rt, "presented_token": person })
}

/// An auth token under a mission (one grant, a budget) races the disabling of alice's
/// account: refused and revoked, it spends nothing of the mission, whose one grant and
/// whole budget go to the next token once she is enabled again.
async fn a_refused_issuance_spends_nothing_of_its_mission(store: Arc<dyn PsStore>) {
    let hooked = Arc::new(DisabledBeforeRecord::over(Arc::clone(&store)));
    let (w, digest, person) = one_grant_mission(&store, &hooked).await;
    raced(
        &w,
        &hooked.hooks,
        AUTH_TOKEN_PATH,
        under_mission(&w, &digest, &person),
    )
    .await;
    let m = store.mission(&digest).await.unwrap().unwrap();
    assert_eq!(
        (m.grants, m.ledger.len(), m.spent()),
        (0, 0, 0),
        "the refused token spent nothing: {:?}",
        m.ledger
    );

    Admin::new(Arc::clone(&store))
        .set_disabled("alice", false, NOW)
        .await
        .unwrap();
    // The disabling revoked her person tokens: a new one under the mission.
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "mission_s256": digest}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let ask = under_mission(&w, &digest, json["person_token"].as_str().unwrap());
    let (s, json) = w.post(AUTH_TOKEN_PATH, ask).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the mission's one grant is still there: {json}"
    );
    let m = store.mission(&digest).await.unwrap().unwrap();
    assert_eq!((m.grants, m.spent()), (1, 600));
}

/// Hooks whose next issuance (while `mission` is set) finds that mission's one grant
/// spent by another request just before it is recorded.
#[derive(Default)]
struct GrantSpentBeforeRecord {
    mission: Mutex<Option<String>>,
}

#[async_trait]
impl Hooks for GrantSpentBeforeRecord {
    async fn recording(&self, inner: &Arc<dyn PsStore>, _: &Issuance) {
        let armed = self.mission.lock().unwrap().take();
        if let Some(s256) = armed {
            let mut m = inner.mission(&s256).await.unwrap().unwrap();
            m.grants += 1;
            assert!(
                inner.replace_mission(&m).await.unwrap(),
                "the grant is spent"
            );
        }
    }
}

/// The mission's last grant is spent by another request while an auth token under it is
/// issued: the token, recorded by then, is revoked (audited) and never delivered, and the
/// mission counts only the other request's grant.
async fn a_token_whose_grant_was_spent_meanwhile_is_withdrawn(store: Arc<dyn PsStore>) {
    let hooked = Arc::new(Hooked {
        inner: Arc::clone(&store),
        hooks: GrantSpentBeforeRecord::default(),
    });
    let (w, digest, person) = one_grant_mission(&store, &hooked).await;
    *hooked.hooks.mission.lock().unwrap() = Some(digest.clone());
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, under_mission(&w, &digest, &person))
        .await;
    assert_eq!(
        (s, json["violation"].as_str()),
        (StatusCode::FORBIDDEN, Some("budget_exhausted")),
        "{json}"
    );
    assert!(json.get("auth_token").is_none());
    let m = store.mission(&digest).await.unwrap().unwrap();
    assert_eq!((m.grants, m.ledger.len()), (1, 0), "{:?}", m.ledger);
    let tokens = Admin::new(Arc::clone(&store))
        .tokens(Some("alice"), NOW)
        .await
        .unwrap();
    assert_eq!(tokens.auth.len(), 1, "{tokens:?}");
    assert!(tokens.auth[0].1, "revoked: {tokens:?}");
    let withdrawn = Admin::new(Arc::clone(&store))
        .audit(&AuditQuery::default().action(AuditAction::Revoked))
        .await
        .unwrap()
        .events
        .into_iter()
        .filter(|e| {
            e.detail
                .ends_with("revoked: its mission no longer allowed it as it was issued")
        })
        .count();
    assert_eq!(withdrawn, 1);
}

#[tokio::test]
async fn a_token_whose_grant_was_spent_meanwhile_is_withdrawn_in_memory() {
    a_token_whose_grant_was_spent_meanwhile_is_withdrawn(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn a_token_whose_grant_was_spent_meanwhile_is_withdrawn_in_sqlite() {
    a_token_whose_grant_was_spent_meanwhile_is_withdrawn(Arc::new(
        SqliteStore::in_memory().unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn a_token_whose_grant_was_spent_meanwhile_is_withdrawn_in_postgres() {
    let Some(db) = crate::postgres::Db::new("grant_spent_meanwhile") else {
        return;
    };
    a_token_whose_grant_was_spent_meanwhile_is_withdrawn(db.store().await).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn a_refused_issuance_spends_nothing_of_its_mission_in_memory() {
    a_refused_issuance_spends_nothing_of_its_mission(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn a_refused_issuance_spends_nothing_of_its_mission_in_sqlite() {
    a_refused_issuance_spends_nothing_of_its_mission(Arc::new(SqliteStore::in_memory().unwrap()))
        .await;
}

#[tokio::test]
async fn a_refused_issuance_spends_nothing_of_its_mission_in_postgres() {
    let Some(db) = crate::postgres::Db::new("refused_issuance_spends_nothing") else {
        return;
    };
    a_refused_issuance_spends_nothing_of_its_mission(db.store().await).await;
    db.drop_schema().await;
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
