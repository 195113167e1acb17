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

    // Nothing has run with this configuration: the audit log is not there to read (and
    // is not created empty by asking).
    assert_fails(&admin(&["audit"]), 2, "no such file");
    assert!(!dir.join("ps.sqlite").exists());

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
    assert_eq!(
        stdout(&disabled),
        "account bob disabled; its sessions ended; 0 token(s) revoked\n"
    );
    assert!(stdout(&admin(&["accounts", "list"])).contains("bob\tdisabled"));
    assert_fails(
        &admin(&["accounts", "disable", "nobody"]),
        2,
        "no account \"nobody\"",
    );
    crate::serve::secret_file(dir.join("new.password"), "a new one\n");
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
    assert_fails(&admin(&["audit", "--limit", "0"]), 2, "--limit");

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

    // A stale temporary file from an interrupted rotation, a link to somewhere else: the
    // new private key is neither written through it nor left in a readable file.
    #[cfg(unix)]
    {
        std::fs::write(dir.join("elsewhere.txt"), "untouched").unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere.txt"), dir.join("provider.jwk.tmp"))
            .unwrap();
    }
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
    #[cfg(unix)]
    assert_eq!(
        std::fs::read_to_string(dir.join("elsewhere.txt")).unwrap(),
        "untouched"
    );
    assert!(
        stdout(&rotated).contains("replaces provider-1"),
        "{}",
        stdout(&rotated)
    );
    #[cfg(unix)]
    assert_eq!(mode_of(&dir.join("provider.jwk")), 0o600);
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

/// With several instances a rotation is two steps: `keys prepare` publishes the next key
/// (served at once by an instance started after it) while the old one still signs; `keys
/// rotate` then signs with exactly that key. An overlap under two hours (a token's
/// lifetime and the JWKS cache time, the restart on top) is refused without `--force`.
#[tokio::test]
async fn a_prepared_key_is_published_before_it_signs() {
    let dir = scratch("admin-prepare");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let config = config.to_str().unwrap();
    let keys = |args: &[&str]| admin_keys(&dir, config, args);
    let prepared = keys(&["prepare"]);
    assert!(prepared.status.success(), "{}", crate::stderr(&prepared));
    let listed = stdout(&keys(&["list"]));
    let next = listed
        .lines()
        .find_map(|l| l.strip_prefix("next      "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no next key in {listed}"))
        .to_owned();
    assert!(listed.starts_with("signing   provider-1"), "{listed}");
    assert_fails(&keys(&["prepare"]), 2, "prepared key already");
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&dir.join("provider.jwk.next")), 0o600);
    }

    // Served now: the old key signs, the next one is published beside it.
    let provider = Served::start(&dir, "agent-provider", std::path::Path::new(config));
    world.alias("agent.example", provider.addr);
    let jwks = get(&world, "https://agent.example/jwks.json", &[]).await;
    let set = JwkSet::from_json(jwks.body()).unwrap();
    assert_eq!(set.kids(), ["provider-1", next.as_str()]);
    drop(provider);

    assert_fails(&keys(&["rotate", "--overlap", "30m"]), 2, "--force");
    let short = keys(&["rotate", "--overlap", "1h"]);
    assert_fails(&short, 2, "--force");
    assert!(
        crate::stderr(&short).contains("until it restarts"),
        "{}",
        crate::stderr(&short)
    );
    assert!(dir.join("provider.jwk.next").exists(), "nothing rotated");
    let rotated = keys(&["rotate", "--overlap", "2h"]);
    assert!(rotated.status.success(), "{}", crate::stderr(&rotated));
    assert!(
        stdout(&rotated).contains("the prepared key"),
        "{}",
        stdout(&rotated)
    );
    let listed = stdout(&keys(&["list"]));
    assert!(listed.starts_with(&format!("signing   {next}")), "{listed}");
    assert!(!listed.contains("next "), "{listed}");
    assert!(listed.contains("retiring  provider-1"), "{listed}");
    assert!(!dir.join("provider.jwk.next").exists());
    // A short overlap, when the operator insists.
    let forced = keys(&["rotate", "--overlap", "30m", "--force"]);
    assert!(forced.status.success(), "{}", crate::stderr(&forced));
    assert!(stdout(&forced).contains("a new key"), "{}", stdout(&forced));
}

/// `keys rotate --help` says what the overlap must cover and where the floor is.
#[test]
fn rotate_help_names_the_overlap_floor() {
    let dir = scratch("admin-rotate-help");
    let help = aauth(&dir, &["admin", "keys", "rotate", "--help"]);
    assert!(help.status.success(), "{}", crate::stderr(&help));
    let help = stdout(&help);
    assert!(
        help.contains("under two hours is refused without `--force`"),
        "{help}"
    );
    assert!(help.contains("until then"), "{help}");
}

/// One change of the keys at a time: while another holds `<signing_key_file>.lock`,
/// `prepare` and `rotate` fail at once, naming the lock, and write nothing.
#[test]
fn a_key_change_is_refused_while_another_holds_the_lock() {
    let dir = scratch("admin-lock");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let config = config.to_str().unwrap();
    let keys = |args: &[&str]| admin_keys(&dir, config, args);
    let key = std::fs::read(dir.join("provider.jwk")).unwrap();
    let held = std::fs::File::create(dir.join("provider.jwk.lock")).unwrap();
    held.lock().unwrap();
    assert_fails(
        &keys(&["rotate", "--overlap", "2h"]),
        3,
        "provider.jwk.lock: locked by another",
    );
    assert_fails(&keys(&["prepare"]), 3, "provider.jwk.lock");
    assert_eq!(std::fs::read(dir.join("provider.jwk")).unwrap(), key);
    assert!(!dir.join("provider.jwk.retiring.json").exists());
    assert!(!dir.join("provider.jwk.next").exists());
    drop(held);
    let rotated = keys(&["rotate", "--overlap", "2h"]);
    assert!(rotated.status.success(), "{}", crate::stderr(&rotated));
}

/// The lock file is readable by everyone whatever the umask of whoever made it first: one
/// made by `sudo` under root's `077` would otherwise keep the service's own user from ever
/// changing its keys again.
#[cfg(unix)]
#[test]
fn the_key_lock_is_readable_by_all_whatever_the_umask() {
    let dir = scratch("admin-lock-umask");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let prepared = std::process::Command::new("sh")
        .args(["-c", "umask 077 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_aauth"))
        .args([
            "admin",
            "--config",
            config.to_str().unwrap(),
            "keys",
            "prepare",
        ])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(prepared.status.success(), "{}", crate::stderr(&prepared));
    assert_eq!(mode_of(&dir.join("provider.jwk.lock")), 0o644);
}

/// The permission bits of `path`.
#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `aauth admin --config CONFIG keys ARGS…` in `dir`.
fn admin_keys(dir: &std::path::Path, config: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["admin", "--config", config, "keys"];
    all.extend_from_slice(args);
    aauth(dir, &all)
}

/// Whether this test runs as root (it can then give files other owners, and run `aauth`
/// as another user).
#[cfg(unix)]
fn root(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join("uid-probe");
    std::fs::write(&probe, "").unwrap();
    std::fs::metadata(&probe).unwrap().uid() == 0
}

#[cfg(unix)]
fn owner(path: &std::path::Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// `sudo aauth admin … keys rotate` on a service running as its own user: every key file
/// written keeps the signing key's owner, so the service reads it at its next start.
/// (Needs root; skipped otherwise.)
#[cfg(unix)]
#[test]
fn keys_written_as_root_keep_the_services_owner() {
    let dir = scratch("admin-owner");
    if !root(&dir) {
        eprintln!("skipped: giving a file another owner needs root");
        return;
    }
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let config = config.to_str().unwrap();
    let keys = |args: &[&str]| admin_keys(&dir, config, args);
    let service = (4242, 4243);
    std::os::unix::fs::chown(dir.join("provider.jwk"), Some(service.0), Some(service.1)).unwrap();
    let prepared = keys(&["prepare"]);
    assert!(prepared.status.success(), "{}", crate::stderr(&prepared));
    assert_eq!(owner(&dir.join("provider.jwk.next")), service);
    assert_eq!(owner(&dir.join("provider.jwk.retiring.json")), service);
    let rotated = keys(&["rotate", "--overlap", "2h"]);
    assert!(rotated.status.success(), "{}", crate::stderr(&rotated));
    assert_eq!(owner(&dir.join("provider.jwk")), service);
    assert_eq!(owner(&dir.join("provider.jwk.retiring.json")), service);
    assert_eq!(mode_of(&dir.join("provider.jwk")), 0o600);
}

/// A user who may not give the new key file the old one's owner (here: its group, one the
/// user is not in) is refused before anything is replaced, told whom to run as. (Needs
/// root, to run `aauth` as another user; skipped otherwise.)
#[cfg(unix)]
#[test]
fn a_key_whose_owner_cannot_be_kept_is_not_replaced() {
    use std::os::unix::process::CommandExt;
    let dir = scratch("admin-owner-refused");
    if !root(&dir) {
        eprintln!("skipped: running aauth as another user needs root");
        return;
    }
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let user = (4242, 4242);
    std::os::unix::fs::chown(&dir, Some(user.0), Some(user.1)).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(user.0), Some(user.1)).unwrap();
    }
    // The service's group, which the operator is not in.
    std::os::unix::fs::chown(dir.join("provider.jwk"), None, Some(4243)).unwrap();
    let key = std::fs::read(dir.join("provider.jwk")).unwrap();
    let as_user = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
            .args(["admin", "--config", config.to_str().unwrap(), "keys"])
            .args(args)
            .current_dir(&dir)
            .uid(user.0)
            .gid(user.1)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    for args in [&["rotate", "--overlap", "2h"][..], &["prepare"]] {
        let refused = as_user(args);
        assert_fails(&refused, 3, "must be owned as");
        let err = crate::stderr(&refused);
        assert!(
            err.contains("provider.jwk is (uid 4242, gid 4243)")
                && err.contains("nothing was replaced"),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.join("provider.jwk")).unwrap(), key);
        assert!(!dir.join("provider.jwk.retiring.json").exists());
        assert!(!dir.join("provider.jwk.next").exists());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}

/// `aauth admin audit --url`: the operator reads a served Person Server's log over HTTPS
/// with the key `[audit] operator_keys` lists, a page at a time or all of it as JSON
/// lines; another key is refused, and the server keeps the configured retention.
#[tokio::test]
async fn operators_read_a_served_log_over_https() {
    let dir = scratch("admin-audit-remote");
    let (_, ops) = key_file(&dir, "ops", 0x55);
    std::fs::write(dir.join("ops.pub.jwk"), ops.public_key().to_jwk().to_json()).unwrap();
    key_file(&dir, "stranger", 0x56);
    let crate::serve::Flow {
        world,
        provider,
        resource,
        ps_config,
    } = crate::serve::flow(&dir, |text| {
        text.replace(
            "[egress]",
            "[audit]\nretention_days = 30\noperator_keys = [\"ops.pub.jwk\"]\n\n[egress]",
        )
    })
    .await;
    let ps = Served::start(&dir, "person-server", &ps_config);
    world.alias("ps.example", ps.addr);
    let o = crate::serve::fetch_through(&dir, [provider.addr, ps.addr, resource]).await;
    assert!(o.status.success(), "{}\n{}", stdout(&o), crate::stderr(&o));
    assert!(
        stdout(&o).contains("Access granted"),
        "{}\n{}",
        stdout(&o),
        ps.log()
    );

    let remote = |key: &'static str, extra: &'static [&'static str]| {
        let dir = dir.clone();
        let reach = format!("ps.example:443:{}:{}", ps.addr.ip(), ps.addr.port());
        tokio::task::spawn_blocking(move || {
            let mut args = vec![
                "admin",
                "audit",
                "--url",
                "https://ps.example",
                "--key",
                key,
                "--ca-file",
                "ca.pem",
                "--connect-to",
                &reach,
                "--action",
                "issued",
                "--json",
            ];
            args.extend_from_slice(extra);
            aauth(&dir, &args)
        })
    };
    let first = remote("ops.jwk", &["--limit", "1"]).await.unwrap();
    assert!(first.status.success(), "{}", crate::stderr(&first));
    let line: serde_json::Value = serde_json::from_str(stdout(&first).trim()).unwrap();
    assert_eq!(line["action"], "issued");
    assert!(
        line["detail"].as_str().unwrap().starts_with("auth token "),
        "{line}"
    );
    assert_eq!(line["scope"], "calendar.read", "{line}");
    let more = crate::stderr(&first);
    let cursor = more
        .trim()
        .strip_prefix("more: --before ")
        .unwrap_or_else(|| panic!("no cursor in {more:?}"))
        .to_owned();
    assert!(cursor.parse::<u64>().is_ok(), "{cursor}");

    let all = remote("ops.jwk", &["--limit", "1", "--all"]).await.unwrap();
    let lines: Vec<serde_json::Value> = stdout(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let details: Vec<&str> = lines
        .iter()
        .map(|l| l["detail"].as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{details:?}");
    assert!(details[1].starts_with("person token "), "{details:?}");
    assert!(crate::stderr(&all).is_empty(), "no page left");

    let refused = remote("stranger.jwk", &[]).await.unwrap();
    assert_fails(&refused, 3, "403");

    // The same log from the store, as the configuration names it.
    let local = aauth(
        &dir,
        &[
            "admin",
            "--config",
            ps_config.to_str().unwrap(),
            "audit",
            "--action",
            "issued",
            "--json",
        ],
    );
    assert_eq!(
        stdout(&local).lines().count(),
        2,
        "{}",
        crate::stderr(&local)
    );
}

/// `aauth admin audit` on an Access Server's store, and a retention out of range refused
/// by its key.
#[test]
fn an_access_servers_log_is_read_from_its_store() {
    use aauth_access_server::AsStore;
    use aauth_metadata::audit::{AuditAction, AuditEvent};
    let dir = scratch("admin-audit-as");
    key_file(&dir, "as", 0x44);
    let config = "id = \"https://as.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"as.jwk\"\nstore = \"sqlite:as.sqlite\"\n[access_server]\ntrusted_person_servers = [\"https://ps.example\"]\n";
    std::fs::write(dir.join("as.toml"), config).unwrap();
    let store = aauth_access_server::SqliteStore::open(&dir.join("as.sqlite")).unwrap();
    let now = aauth_keys::time::Clock::now(&aauth_keys::time::SystemClock).as_secs();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            for (i, action) in [
                AuditAction::Issued,
                AuditAction::Refused,
                AuditAction::Issued,
            ]
            .into_iter()
            .enumerate()
            {
                let e = AuditEvent::new(now + i as u64, action, format!("event {i}"))
                    .resource("https://resource.example")
                    .scope("read");
                store.record_event(e).await.unwrap();
            }
        });
    drop(store);
    let o = aauth(
        &dir,
        &[
            "admin", "--config", "as.toml", "audit", "--action", "issued",
        ],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let out = stdout(&o);
    let details: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit('\t').next().unwrap())
        .collect();
    assert_eq!(details, ["event 2", "event 0"], "{out}");
    assert!(out.contains("\tread\t"), "the scope is shown: {out}");

    std::fs::write(
        dir.join("bad.toml"),
        format!("{config}[audit]\nretention_days = 0\n"),
    )
    .unwrap();
    assert_fails(
        &aauth(&dir, &["admin", "--config", "bad.toml", "audit"]),
        2,
        "audit.retention_days",
    );
}
