//! The bound on waiting requests across Person Servers: an Access Server that admits
//! unknown Person Servers (each a domain, so cheap) and defers them for the person keeps
//! at most `max_waiting_total` waiting requests in all, whichever Person Servers asked,
//! in every store, counted with the insert as one step; a refused request changes
//! nothing; the Person Servers trusted ahead are not shut out by the flood. And what a
//! waiting request keeps of its body is the request, not the bytes that came.

use aauth_access_server::{
    AsStore, Awaiting, MemoryStore, PENDING_PATH, PgStore, SqliteStore, WAITING_KEPT, WaitingCaps,
    WaitingCreated, WaitingPut, WaitingRecord,
};
use aauth_keys::PublicKey;
use aauth_test_support::services::PgSchema;
use aauth_tokens::{IssuerKeyResolver, KeyRequest, ResolveError};

use super::*;

/// The total of the contract below.
const TOTAL: usize = 12;

/// A waiting request of Person Server `ps`, id `id`, its code `CODE-{id}`.
fn waiting(ps: &str, id: &str, expires: u64) -> WaitingRecord {
    WaitingRecord::new(
        id.to_owned(),
        aauth_test_support::id(ps),
        expires,
        ("https://resource.example".to_owned(), format!("rt-{id}")),
        Some(format!("CODE-{id}")),
        Awaiting::Interaction,
        format!("{{\"n\":\"{id}\"}}"),
    )
}

/// Whether the store holds nothing of request `id` (by id, by code, by resource token).
async fn nothing_of(s: &dyn AsStore, id: &str, now: UnixTime) -> bool {
    s.waiting_kept(id, now).await.unwrap().is_none()
        && s.waiting_by_code(&format!("CODE-{id}"), now)
            .await
            .unwrap()
            .is_none()
        && s.waiting_with("https://resource.example", &format!("rt-{id}"))
            .await
            .unwrap()
            .is_empty()
}

/// The total's contract, every store the same. `snapshot`: the whole state, where the
/// store can show it (the memory store's `Debug`).
async fn total_contract(s: &dyn AsStore, snapshot: &dyn Fn() -> Option<String>) {
    let now = NOW.as_secs();
    let caps = WaitingCaps::new(64, Some(TOTAL));
    // One request from each of TOTAL Person Servers fills the total across them.
    for n in 0..TOTAL {
        let r = waiting(
            &format!("https://ps{n}.example"),
            &format!("w{n}"),
            now + 600,
        );
        assert_eq!(
            s.create_waiting(r, caps, NOW).await.unwrap(),
            WaitingCreated::Created,
            "{n}"
        );
    }
    // Fresh Person Servers, each with nothing waiting, and one already there far under
    // its own share: all refused, and nothing of them stored.
    let before = snapshot();
    for (ps, id) in [
        ("https://ps100.example", "x0"),
        ("https://ps101.example", "x1"),
        ("https://ps0.example", "x2"),
    ] {
        assert_eq!(
            s.create_waiting(waiting(ps, id, now + 600), caps, NOW)
                .await
                .unwrap(),
            WaitingCreated::Full,
            "{id}"
        );
        assert!(nothing_of(s, id, NOW).await, "{id}");
    }
    assert_eq!(snapshot(), before, "a refused request changes nothing");
    // A Person Server's own share is still the first bound.
    assert_eq!(
        s.create_waiting(
            waiting("https://ps0.example", "x3", now + 600),
            WaitingCaps::new(1, Some(TOTAL)),
            NOW
        )
        .await
        .unwrap(),
        WaitingCreated::PersonServerFull
    );
    assert!(nothing_of(s, "x3", NOW).await);
    // A request the total does not bound (a trusted Person Server's) is stored, and
    // counts towards it.
    assert_eq!(
        s.create_waiting(
            waiting("https://trusted.example", "t0", now + 600),
            WaitingCaps::new(64, None),
            NOW
        )
        .await
        .unwrap(),
        WaitingCreated::Created
    );
    // Two requests end early: the records of their ends (expiring now) are kept for
    // their late polls, and count while they are.
    for n in [0, 1] {
        assert_eq!(
            s.put_waiting(
                waiting(&format!("https://ps{n}.example"), &format!("w{n}"), now),
                NOW,
            )
            .await
            .unwrap(),
            WaitingPut::Stored
        );
    }
    let soon = NOW.plus(1);
    assert_eq!(
        s.create_waiting(
            waiting("https://ps102.example", "x4", soon.as_secs() + 600),
            caps,
            soon
        )
        .await
        .unwrap(),
        WaitingCreated::Full,
        "expired requests still kept count"
    );
    assert!(nothing_of(s, "x4", soon).await);
    // Once no longer kept, they make room for as many (13 kept less the two).
    let later = NOW.plus(WAITING_KEPT);
    assert!(s.waiting_kept("w0", later).await.unwrap().is_none());
    let fresh = |n: usize| {
        waiting(
            &format!("https://ps{}.example", 200 + n),
            &format!("y{n}"),
            later.as_secs() + 600,
        )
    };
    assert_eq!(
        s.create_waiting(fresh(0), caps, later).await.unwrap(),
        WaitingCreated::Created
    );
    assert_eq!(
        s.create_waiting(fresh(1), caps, later).await.unwrap(),
        WaitingCreated::Full
    );
    assert!(nothing_of(s, "y1", later).await);
    // An id or a code already there: taken, not stored twice.
    let mut again = fresh(2);
    again.id = "y0".to_owned();
    assert_eq!(
        s.create_waiting(again, WaitingCaps::new(64, None), later)
            .await
            .unwrap(),
        WaitingCreated::Taken
    );
    let mut code_again = fresh(3);
    code_again.code = Some("CODE-y0".to_owned());
    assert_eq!(
        s.create_waiting(code_again, WaitingCaps::new(64, None), later)
            .await
            .unwrap(),
        WaitingCreated::Taken,
        "a code already there"
    );
    assert!(nothing_of(s, "y3", later).await);
}

#[tokio::test]
async fn the_in_memory_store_bounds_its_waiting_requests_in_all() {
    let store = Arc::new(MemoryStore::default());
    let seen = Arc::clone(&store);
    total_contract(store.as_ref(), &move || Some(format!("{seen:?}"))).await;
}

#[tokio::test]
async fn the_sqlite_store_bounds_its_waiting_requests_in_all() {
    total_contract(&SqliteStore::in_memory().unwrap(), &|| None).await;
}

#[tokio::test]
async fn the_postgres_store_bounds_its_waiting_requests_in_all() {
    let Some(db) = PgSchema::new("the_postgres_store_bounds_its_waiting_requests_in_all") else {
        return;
    };
    total_contract(&PgStore::connect(&db.options).await.unwrap(), &|| None).await;
    db.drop_schema().await;
}

/// Two instances over one database, creates from many Person Servers racing on both:
/// the total holds exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_total_holds_across_instances() {
    let Some(db) = PgSchema::new("the_total_holds_across_instances") else {
        return;
    };
    let a = Arc::new(PgStore::connect(&db.options).await.unwrap());
    let b = Arc::new(PgStore::connect(&db.options).await.unwrap());
    let creates: Vec<_> = (0..24)
        .map(|n| {
            let s = if n % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let r = waiting(
                &format!("https://ps{n}.example"),
                &format!("c{n}"),
                NOW.as_secs() + 600,
            );
            tokio::spawn(async move {
                s.create_waiting(r, WaitingCaps::new(64, Some(5)), NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for c in creates {
        match c.await.unwrap() {
            WaitingCreated::Created => created += 1,
            other => assert_eq!(other, WaitingCreated::Full),
        }
    }
    assert_eq!(created, 5);
    db.drop_schema().await;
}

/// Resolves every `https://ps….example` Person Server to the world's Person Server key
/// (a wildcard domain: a fresh Person Server identity costs the attacker nothing), and
/// everything else as the world does.
struct AnyPersonServer(Arc<dyn IssuerKeyResolver>, PublicKey);

#[async_trait::async_trait]
impl IssuerKeyResolver for AnyPersonServer {
    async fn resolve(&self, req: &KeyRequest<'_>) -> Result<PublicKey, ResolveError> {
        let host = req.iss.as_str().trim_start_matches("https://");
        if req.dwk == "aauth-person.json" && host.starts_with("ps") && host.ends_with(".example") {
            return Ok(self.1.clone());
        }
        self.0.resolve(req).await
    }
}

/// A token request from Person Server `ps` (its person token, and the resource token
/// naming it).
fn request_from(w: &World, t: &Tokens, ps: &str) -> serde_json::Value {
    let person = PersonTokenBuilder::new(
        id(ps),
        id("https://resource.example"),
        "alice-at-resource",
        w.agent.public_key(),
    )
    .sign(&w.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id(ps),
        "alice-at-resource",
        person.jti.clone(),
        w.agent.public_key(),
        "calendar.read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": person.token})
}

/// The attack, at the server: Person Servers admitted unknown, each deferred for the
/// person, many of them. At most `max_waiting_total` wait; past it each is refused as a
/// Person Server past its own share is (`429`, `Retry-After`), and nothing is stored;
/// the Person Server trusted ahead still gets its requests deferred. `snapshot`: the
/// store's whole state, where it can show it.
async fn many_person_servers_fill_at_most_the_total(
    store: Arc<dyn AsStore>,
    snapshot: &dyn Fn() -> Option<String>,
) {
    let ps_key = PrivateKey::ed25519_from_seed(&[1; 32]).public_key().clone();
    let mut w = world_with_keys(move |k| Arc::new(AnyPersonServer(k, ps_key)));
    w.server = w
        .server
        .admit_unknown_person_servers()
        .policy(Arc::new(BindFirst))
        .max_waiting_total(5)
        .store(Arc::clone(&store));
    let t = w.tokens(600);
    for n in 0..5 {
        let ps = format!("https://ps{n}.example");
        let (s, h, json) = w
            .post_path(AUTH_TOKEN_PATH, &request_from(&w, &t, &ps), &ps, &w.ps)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{n}: {json}");
        assert!(h["location"].to_str().unwrap().starts_with(PENDING_PATH));
    }
    let waiting = store.waiting_on(Awaiting::Interaction, NOW).await.unwrap();
    let before = snapshot();
    for n in 5..9 {
        let ps = format!("https://ps{n}.example");
        let (s, h, json) = w
            .post_path(AUTH_TOKEN_PATH, &request_from(&w, &t, &ps), &ps, &w.ps)
            .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
            "{n}: {json}"
        );
        assert_eq!(h["retry-after"], "600");
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .contains("5 waiting requests")
        );
    }
    assert_eq!(
        store.waiting_on(Awaiting::Interaction, NOW).await.unwrap(),
        waiting,
        "the refused requests left nothing"
    );
    assert_eq!(snapshot(), before, "nor anything else in the store");
    // The Person Server trusted ahead is held to its own share only.
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, _, json) = w
        .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(
        store
            .waiting_on(Awaiting::Interaction, NOW)
            .await
            .unwrap()
            .len(),
        6
    );
}

#[tokio::test]
async fn many_person_servers_fill_at_most_the_total_in_memory() {
    let store = Arc::new(MemoryStore::default());
    let seen = Arc::clone(&store);
    many_person_servers_fill_at_most_the_total(store, &move || Some(format!("{seen:?}"))).await;
}

#[tokio::test]
async fn many_person_servers_fill_at_most_the_total_in_sqlite() {
    many_person_servers_fill_at_most_the_total(
        Arc::new(SqliteStore::in_memory().unwrap()),
        &|| None,
    )
    .await;
}

#[tokio::test]
async fn many_person_servers_fill_at_most_the_total_in_postgres() {
    let Some(db) = PgSchema::new("many_person_servers_fill_at_most_the_total_in_postgres") else {
        return;
    };
    many_person_servers_fill_at_most_the_total(
        Arc::new(PgStore::connect(&db.options).await.unwrap()),
        &|| None,
    )
    .await;
    db.drop_schema().await;
}

/// A body padded with members the server does not read (up to the server's 64 KiB) is
/// kept as the request: its known members written again, the padding gone; the request
/// is decided from it after its step as from the body that came.
#[tokio::test]
async fn a_waiting_request_keeps_the_request_not_the_padding() {
    let store = Arc::new(MemoryStore::default());
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(ApproverFirst))
        .store(Arc::clone(&store) as Arc<dyn AsStore>);
    let t = w.tokens(600);
    let padding = "x".repeat(60 * 1024);
    let request = serde_json::json!({
        "padding": padding,
        "resource_token": w.resource_token(&t, |b| b),
        "more": {"nested": [padding.clone()]},
        "agent_token": t.agent,
        "presented_token": t.person,
    });
    let (s, h, json) = w
        .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let kept = store.waiting_on(Awaiting::Approval, NOW).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(!kept[0].data.contains("xxxx"), "the padding is not kept");
    assert!(
        kept[0].data.len() < 8 * 1024,
        "{} bytes kept",
        kept[0].data.len()
    );
    let location = h["location"].to_str().unwrap().to_owned();
    let pending_id = location.trim_start_matches(PENDING_PATH);
    assert!(
        w.server
            .decide_approval(pending_id, true, NOW)
            .await
            .unwrap()
    );
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string());
}

/// A budget ceiling that breaks a budget's rules (an over-long unit, kept with the
/// request otherwise) is refused as the request's fault.
#[tokio::test]
async fn a_budget_ceiling_that_is_no_budget_is_refused() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ApproverFirst));
    let t = w.tokens(600);
    let request = serde_json::json!({
        "resource_token": w.resource_token(&t, |b| b),
        "agent_token": t.agent,
        "presented_token": t.person,
        "budget": {"amount": 1, "unit": "U".repeat(40 * 1024), "decimals": 0},
    });
    let (s, json) = w.ask(&request).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{json}"
    );
    assert!(w.server.awaiting_approval(NOW).await.unwrap().is_empty());
}
