//! A Person Server on PostgreSQL (`store = "postgres://…"`), as a deployment with several
//! instances runs it: the schema migrated by `aauth admin migrate` (once), two
//! `aauth serve person-server` processes over one database, the agent served by either,
//! and the operator's view of both instances' records in one place.

use std::time::Duration;

use aauth_test_support::services::PgSchema;

use crate::serve::{Flow, Served, fetch_args, flow, get};
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
        stdout(&migrated).contains("person-server schema: 1 migration applied"),
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
        let args = fetch_args(&dir, [provider.addr, ps.addr, resource]);
        let dir2 = dir.clone();
        let o = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            aauth(&dir2, &args)
        })
        .await
        .unwrap();
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
    with("postgres://aauth:hunter2@db.internal/aauth", "");
    let shown = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", crate::stderr(&shown));
    let shown = stdout(&shown);
    assert!(
        shown.contains("postgres://aauth:<redacted>@db.internal/aauth")
            && !shown.contains("hunter2"),
        "{shown}"
    );

    with(
        "postgres://db.internal/aauth",
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
        "postgres://db.internal/aauth",
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
