//! A Person Server on PostgreSQL (`store = "postgres://…"`), as a deployment with several
//! instances runs it: the schema migrated by `aauth admin migrate` (once), two
//! `aauth serve person-server` processes over one database, the agent served by either,
//! and the operator's view of both instances' records in one place.

use std::time::Duration;

use aauth_test_support::services::PgSchema;

use crate::serve::{AgentProcess, Flow, Served, fetch_through, flow, free_port, get};
use crate::{aauth, assert_fails, scratch, stdout};

/// `store` and `[postgres]` for the test's own schema.
fn on_postgres(text: &str, db: &PgSchema) -> String {
    let text = text.replace(
        "store = \"sqlite:ps.sqlite\"",
        &format!("store = \"{}\"", db.url()),
    );
    format!(
        "{text}\n[postgres]\nschema = \"{}\"\npool_size = 4\n",
        db.name()
    )
}

#[tokio::test]
async fn two_person_servers_share_one_database() {
    let Some(db) = PgSchema::new("two_person_servers_share_one_database") else {
        return;
    };
    let dir = scratch("postgres-two");
    let Flow {
        world,
        provider,
        resource,
        ps_config,
    } = flow(&dir, |text| on_postgres(&text, &db)).await;
    let config = ps_config.to_str().unwrap();

    // The operator migrates first; a second run finds nothing to do.
    let migrated = aauth(&dir, &["admin", "--config", config, "migrate"]);
    assert!(migrated.status.success(), "{}", crate::stderr(&migrated));
    assert!(
        stdout(&migrated).contains("person-server schema: 9 migrations applied"),
        "{}",
        stdout(&migrated)
    );
    assert!(
        stdout(&aauth(&dir, &["admin", "--config", config, "migrate"]))
            .contains("0 migrations applied")
    );

    // Two instances of one Person Server (one identity, one key, one database).
    let a = Served::start(&dir, "person-server", &ps_config);
    let b = Served::start(&dir, "person-server", &ps_config);
    for ps in [&a, &b] {
        world.alias("ps.example", ps.addr);
        let ready = get(&world, "https://ps.example/readyz", &[]).await;
        assert_eq!(
            ready.status(),
            200,
            "{}",
            String::from_utf8_lossy(ready.body())
        );
    }

    // The agent is served by A, then by B.
    for ps in [&a, &b] {
        let o = fetch_through(&dir, [provider.addr, ps.addr, resource]).await;
        assert!(
            o.status.success(),
            "{}\n{}\nPS log:\n{}",
            stdout(&o),
            crate::stderr(&o),
            ps.log()
        );
    }

    // Both instances' tokens and decisions are in the one database.
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--config", config];
        all.extend_from_slice(args);
        aauth(&dir, &all)
    };
    let listed = stdout(&admin(&["tokens", "list"]));
    assert_eq!(listed.lines().count(), 4, "{listed}");
    let audit = stdout(&admin(&["audit", "--since", "1h", "--action", "issued"]));
    assert_eq!(audit.lines().count(), 4, "{audit}");
    // A revocation made on the database is seen by both instances at once.
    let revoked = admin(&["agents", "revoke", "aauth:assistant@agent.example"]);
    assert!(
        stdout(&revoked).contains("4 token(s) revoked"),
        "{}{}",
        stdout(&revoked),
        crate::stderr(&revoked)
    );
    drop((a, b));
    db.drop_schema().await;
}

/// What an operator gets wrong, each one line naming the key; and the password never
/// shown.
#[test]
fn postgres_settings_are_checked_and_the_password_is_never_shown() {
    let dir = scratch("postgres-config");
    let world = aauth_demos::world::World::new().unwrap();
    let config = crate::serve::person_server_config(&world, &dir, &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    let with = |store: &str, section: &str| {
        let t = text.replace(
            "store = \"sqlite:ps.sqlite\"",
            &format!("store = \"{store}\""),
        ) + "\n"
            + section;
        std::fs::write(&config, t).unwrap();
    };
    with(
        "postgres://aauth:hunter2@db.internal/aauth?sslmode=require",
        "",
    );
    let shown = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", crate::stderr(&shown));
    let shown = stdout(&shown);
    assert!(
        shown.contains("postgres://aauth:<redacted>@db.internal/aauth")
            && !shown.contains("hunter2"),
        "{shown}"
    );

    with(
        "postgres://db.internal/aauth?sslmode=require",
        "[postgres]\nschema = \"Robert'); DROP TABLE x;--\"\n",
    );
    assert_fails(
        &aauth(
            &dir,
            &["admin", "--config", config.to_str().unwrap(), "migrate"],
        ),
        3,
        "not a plain identifier",
    );
    with(
        "postgres://db.internal/aauth?sslmode=require",
        "[postgres]\npassword_file = \"missing.password\"\n",
    );
    assert_fails(
        &aauth(
            &dir,
            &["admin", "--config", config.to_str().unwrap(), "migrate"],
        ),
        3,
        "missing.password",
    );
    with("sqlite:ps.sqlite", "");
    assert_fails(
        &aauth(
            &dir,
            &["admin", "--config", config.to_str().unwrap(), "migrate"],
        ),
        2,
        "SQLite files are migrated when opened",
    );
    // Unreachable (nothing listens on port 1): the error names the store, within the
    // connect timeout.
    with(
        "postgres://127.0.0.1:1/aauth?sslmode=disable&connect_timeout=2",
        "",
    );
    let started = std::time::Instant::now();
    let o = aauth(
        &dir,
        &["admin", "--config", config.to_str().unwrap(), "migrate"],
    );
    assert!(!o.status.success());
    let said = crate::stderr(&o);
    assert!(
        said.contains("(store)") && said.contains("error connecting to server"),
        "{said}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// SIGKILL while the agent's poll is held (no shutdown at all): restarted on the same
/// database and port, the Person Server has the pending request, the person approves
/// there, and the agent, which kept polling through the outage, gets its tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_server_killed_mid_poll_loses_nothing_on_postgres() {
    let Some(db) = PgSchema::new("a_person_server_killed_mid_poll_loses_nothing_on_postgres")
    else {
        return;
    };
    let dir = scratch("postgres-kill");
    let port = free_port();
    let Flow {
        world,
        provider,
        resource,
        ps_config: config,
    } = flow(&dir, |text| {
        on_postgres(&text, &db)
            .replace("consent = \"auto-approve\"", "consent = \"ask\"")
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            )
    })
    .await;
    let ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);
    let agent = AgentProcess::start(&dir, [provider.addr, ps.addr, resource]);
    let (url, code) = agent.next_prompt("first");
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(ps); // SIGKILL

    let ps = Served::start(&dir, "person-server", &config);
    assert_eq!(ps.addr.port(), port);
    aauth_demos::process::approve(&world, &url, &code, "alice", "correct horse battery staple")
        .await
        .unwrap_or_else(|e| panic!("{e}\nPS log:\n{}", ps.log()));
    let (url, code) = agent.next_prompt("second");
    aauth_demos::process::approve(&world, &url, &code, "alice", "correct horse battery staple")
        .await
        .unwrap_or_else(|e| panic!("{e}\nPS log:\n{}", ps.log()));
    agent.granted(&ps).await;
    drop(ps);
    db.drop_schema().await;
}

/// Agents keep asking while the Person Server is killed (SIGKILL) mid-issuance: every
/// token on record has its audit event and every `issued` event its token (an issuance is
/// one statement), and the restarted process serves the next agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_killed_midway_leaves_whole_records() {
    let Some(db) = PgSchema::new("issuance_killed_midway_leaves_whole_records") else {
        return;
    };
    let dir = scratch("postgres-kill-issuance");
    let port = free_port();
    let Flow {
        world,
        provider,
        resource,
        ps_config: config,
    } = flow(&dir, |text| {
        on_postgres(&text, &db).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
    })
    .await;
    let ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);
    let agents: Vec<_> = (0..6)
        .map(|_| {
            let dir = dir.clone();
            let addrs = [provider.addr, ps.addr, resource];
            tokio::spawn(async move { fetch_through(&dir, addrs).await })
        })
        .collect();
    // Kill it once tokens are being issued.
    let pg = db.pg();
    let started = std::time::Instant::now();
    loop {
        let n: i64 = pg
            .client()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM person_tokens", &[])
            .await
            .unwrap()
            .get(0);
        if n > 0 || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(ps); // SIGKILL
    for a in agents {
        let _ = a.await.unwrap(); // some got through, some were cut off
    }
    let c = pg.client().await.unwrap();
    let orphans: i64 = c
        .query_one(
            "SELECT
               (SELECT count(*) FROM person_tokens t WHERE NOT EXISTS
                  (SELECT 1 FROM audit a WHERE a.action = 'issued' AND a.detail = 'person token ' || t.jti))
             + (SELECT count(*) FROM auth_tokens t WHERE NOT EXISTS
                  (SELECT 1 FROM audit a WHERE a.action = 'issued' AND a.detail LIKE 'auth token ' || t.jti || ' %'))
             + (SELECT count(*) FROM audit a WHERE a.action = 'issued' AND NOT EXISTS
                  (SELECT 1 FROM person_tokens t WHERE a.detail = 'person token ' || t.jti)
                  AND NOT EXISTS
                  (SELECT 1 FROM auth_tokens t WHERE a.detail LIKE 'auth token ' || t.jti || ' %'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        orphans, 0,
        "a token without its audit event, or an event without its token"
    );
    let issued: i64 = c
        .query_one("SELECT count(*) FROM audit WHERE action = 'issued'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(issued > 0, "the kill came after some issuance");

    // The restarted process serves the next agent.
    let ps = Served::start(&dir, "person-server", &config);
    let o = fetch_through(&dir, [provider.addr, ps.addr, resource]).await;
    assert!(
        o.status.success(),
        "{}\n{}\nPS log:\n{}",
        stdout(&o),
        crate::stderr(&o),
        ps.log()
    );
    drop(ps);
    db.drop_schema().await;
}
