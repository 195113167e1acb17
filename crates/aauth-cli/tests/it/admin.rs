//! `aauth admin`: accounts and the audit log on a Person Server's store, signing-key
//! rotation with the old key published beside the new one, and the mistakes an operator
//! makes, each one clear line.

use aauth_demos::world::World;
use aauth_keys::JwkSet;

use crate::serve::{Served, get, key_file, person_server_config, provider_config};
use crate::{aauth, aauth_with_input, assert_fails, scratch, stdout};

#[test]
fn accounts_are_created_disabled_and_audited() {
    let dir = scratch("admin-accounts");
    let world = World::new().unwrap();
    let config = person_server_config(&world, &dir, &[]);
    let config = config.to_str().unwrap();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--config", config];
        all.extend_from_slice(args);
        aauth(&dir, &all)
    };

    let created = aauth_with_input(
        &dir,
        &["admin", "--config", config, "accounts", "create", "bob"],
        "bob's password\n",
    );
    assert!(created.status.success(), "{}", crate::stderr(&created));
    assert_fails(
        &aauth_with_input(
            &dir,
            &["admin", "--config", config, "accounts", "create", "bob"],
            "again\n",
        ),
        2,
        "the account \"bob\" exists",
    );
    assert_fails(
        &aauth_with_input(
            &dir,
            &["admin", "--config", config, "accounts", "create", "carol"],
            "\n",
        ),
        2,
        "the password is empty",
    );
    let disabled = admin(&["accounts", "disable", "bob"]);
    assert!(disabled.status.success(), "{}", crate::stderr(&disabled));
    assert!(stdout(&admin(&["accounts", "list"])).contains("bob\tdisabled"));
    assert_fails(
        &admin(&["accounts", "disable", "nobody"]),
        2,
        "no account \"nobody\"",
    );
    std::fs::write(dir.join("new.password"), "a new one\n").unwrap();
    let reset = admin(&[
        "accounts",
        "reset",
        "bob",
        "--password-file",
        "new.password",
    ]);
    assert!(reset.status.success(), "{}", crate::stderr(&reset));
    // An account the configuration declares has its password from there.
    assert_fails(
        &admin(&[
            "accounts",
            "reset",
            "alice",
            "--password-file",
            "new.password",
        ]),
        2,
        "declared in the configuration",
    );

    let log = stdout(&admin(&["audit", "--action", "account", "--since", "1d"]));
    let details: Vec<&str> = log
        .lines()
        .map(|l| l.rsplit('\t').next().unwrap())
        .collect();
    assert_eq!(details, ["password reset", "disabled", "created"], "{log}");
    let json = stdout(&admin(&[
        "audit",
        "--account",
        "bob",
        "--limit",
        "1",
        "--json",
    ]));
    let first: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(first["action"], "account");
    assert_eq!(first["detail"], "password reset");
    assert!(
        stdout(&admin(&["audit", "--until", "2000-01-01"])).is_empty(),
        "nothing before 2000"
    );
    assert_fails(
        &admin(&["audit", "--action", "rejected"]),
        2,
        "not an audit action",
    );
    assert_fails(&admin(&["audit", "--since", "last week"]), 2, "--since");

    // Only a revocation reaches out: without the configured CA file, the accounts are
    // still listed, and the revocation names the key to fix.
    std::fs::remove_file(dir.join("ca.pem")).unwrap();
    assert!(admin(&["accounts", "list"]).status.success());
    assert_fails(
        &admin(&["agents", "revoke", "aauth:assistant@agent.example"]),
        2,
        "egress.ca_files",
    );

    // Mistakes in the command itself.
    assert_fails(&aauth(&dir, &["admin", "accounts", "list"]), 2, "--config");
    let memory = std::fs::read_to_string(config)
        .unwrap()
        .replace("store = \"sqlite:ps.sqlite\"", "store = \"memory\"");
    std::fs::write(dir.join("memory.toml"), memory).unwrap();
    assert_fails(
        &aauth(
            &dir,
            &["admin", "--config", "memory.toml", "accounts", "list"],
        ),
        2,
        "in memory",
    );
    let provider = provider_config(&world, &dir);
    assert_fails(
        &aauth(
            &dir,
            &[
                "admin",
                "--config",
                provider.to_str().unwrap(),
                "accounts",
                "list",
            ],
        ),
        2,
        "no [person_server] section",
    );
}

/// A rotation: the new key signs from the next start, the old one is published beside
/// it until the overlap ends; the key file stays private.
#[tokio::test]
async fn a_rotated_key_is_published_beside_the_new_one() {
    let dir = scratch("admin-rotate");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let config = config.to_str().unwrap();
    let listed = stdout(&aauth(&dir, &["admin", "--config", config, "keys", "list"]));
    assert_eq!(listed.trim(), "signing   provider-1");
    assert_fails(
        &aauth(
            &dir,
            &[
                "admin",
                "--config",
                config,
                "keys",
                "rotate",
                "--overlap",
                "5x",
            ],
        ),
        2,
        "the unit must be s, m, h or d",
    );

    let rotated = aauth(
        &dir,
        &[
            "admin",
            "--config",
            config,
            "keys",
            "rotate",
            "--overlap",
            "2h",
        ],
    );
    assert!(rotated.status.success(), "{}", crate::stderr(&rotated));
    assert!(
        stdout(&rotated).contains("replaces provider-1"),
        "{}",
        stdout(&rotated)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("provider.jwk"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let listed = stdout(&aauth(&dir, &["admin", "--config", config, "keys", "list"]));
    let new_kid = listed
        .lines()
        .next()
        .unwrap()
        .strip_prefix("signing   ")
        .unwrap()
        .to_owned();
    assert_ne!(new_kid, "provider-1");
    assert!(
        listed.contains("retiring  provider-1  published until"),
        "{listed}"
    );
    let retiring = std::fs::read_to_string(dir.join("provider.jwk.retiring.json")).unwrap();
    assert!(
        !retiring.contains("\"d\""),
        "no private material: {retiring}"
    );

    let provider = Served::start(&dir, "agent-provider", dir.join("provider.toml").as_path());
    world.alias("agent.example", provider.addr);
    let jwks = get(&world, "https://agent.example/jwks.json", &[]).await;
    assert_eq!(jwks.status(), 200);
    let set = JwkSet::from_json(jwks.body()).unwrap();
    assert_eq!(set.kids(), [new_kid.as_str(), "provider-1"]);
    let (_, old) = key_file(&scratch("admin-rotate-old"), "old", 0x11);
    assert_eq!(
        set.find("provider-1").unwrap(),
        *old.public_key(),
        "the old key, as it was"
    );

    // A retiring-keys file that is not one is refused at start and by config check.
    std::fs::write(dir.join("provider.jwk.retiring.json"), "{\"retiring\": 3}").unwrap();
    assert_fails(
        &aauth(&dir, &["config", "check", config]),
        2,
        "provider.jwk.retiring.json",
    );
}
