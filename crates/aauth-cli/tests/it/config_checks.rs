//! The configuration values that would weaken a service without a word: refused at
//! start and by `aauth config check`, each naming its key (a remote PostgreSQL without
//! `sslmode`, a `/0` trusted proxy, a timeout no clock can add, a file of trusted keys
//! others can write), or said aloud (`consent = "auto-approve"`).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use aauth_demos::world::World;

use crate::serve::{Served, person_server_config, provider_config};
use crate::{aauth, assert_fails, scratch, stdout};

/// `aauth config check CONFIG` and `aauth serve ROLE --config CONFIG` in `dir`; a
/// service that starts after all is stopped after 30 seconds (its exit then no code).
fn both(dir: &Path, role: &str, config: &Path) -> [Output; 2] {
    let config = config.to_str().unwrap();
    [
        aauth(dir, &["config", "check", config]),
        serve_briefly(dir, role, config),
    ]
}

fn serve_briefly(dir: &Path, role: &str, config: &str) -> Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args(["serve", role, "--config", config])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// `config` with `from` replaced by `to` (which must be there).
fn edit(config: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(config, text.replace(from, to)).unwrap();
}

#[test]
fn a_remote_postgres_without_sslmode_is_refused() {
    let dir = scratch("checks-sslmode");
    let world = World::new().unwrap();
    let config = person_server_config(&world, &dir, &[]);
    let mut store = "store = \"sqlite:ps.sqlite\"".to_owned();
    let mut with = |url: &str| {
        let next = format!("store = \"{url}\"");
        edit(&config, &store, &next);
        store = next;
        aauth(&dir, &["config", "check", config.to_str().unwrap()])
    };
    for refused in [
        "postgres://aauth:hunter2@db.internal:5432/aauth",
        "postgres://aauth@db.internal/aauth?sslmode=prefer",
        "postgresql://aauth@10.0.0.5/aauth",
        // One host of several is remote; a loopback name with a remote address.
        "postgres://aauth@127.0.0.1,db.internal/aauth",
        "postgres://aauth@localhost/aauth?hostaddr=10.0.0.5",
    ] {
        let o = with(refused);
        assert_fails(&o, 2, "store: ");
        let said = crate::stderr(&o);
        assert!(said.contains("sslmode=require"), "{refused}: {said}");
        assert!(said.contains(".toml, line "), "the line named: {said}");
        assert!(!said.contains("hunter2"), "{said}");
    }
    for taken in [
        "postgres://aauth@db.internal/aauth?sslmode=require",
        "postgres://aauth@db.internal/aauth?sslmode=disable",
        "postgres://postgres@127.0.0.1:5432/test",
        "postgres://aauth@localhost/aauth",
        "postgres://aauth@[::1]:5432/aauth",
        "postgres://aauth@%2Fvar%2Frun%2Fpostgresql/aauth",
    ] {
        let o = with(taken);
        assert!(o.status.success(), "{taken}: {}", crate::stderr(&o));
    }
    // At start too, and from the environment.
    with("postgres://aauth@db.internal/aauth");
    let [_, served] = both(&dir, "person-server", &config);
    assert_fails(&served, 2, "store: ");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args(["config", "check", config.to_str().unwrap()])
        .current_dir(&dir)
        .env("AAUTH_STORE", "postgres://aauth@db.example/aauth")
        .output()
        .unwrap();
    assert_fails(&o, 2, "sslmode=require");
}

/// A Redis across the network over `redis://` (plain text) is refused, naming the key and
/// the line that sets it, unless the URL ends in `#insecure`; `rediss://` and a Redis on
/// loopback pass.
#[test]
fn a_remote_redis_over_plain_text_is_refused() {
    let dir = scratch("checks-redis");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    let lines = text.lines().count();
    let check = |top: &str, tail: &str| {
        std::fs::write(&config, format!("{top}\n{text}{tail}")).unwrap();
        aauth(&dir, &["config", "check", config.to_str().unwrap()])
    };
    let rate_limit = |url: &str| format!("[rate_limit]\nredis = \"{url}\"\n");
    for url in [
        "redis://:hunter2@cache.internal:6379/0",
        "redis://10.0.0.5",
        "redis://[2001:db8::5]:6379",
        // Not the marker: only the exact fragment chooses plain text.
        "redis://cache.internal#insecur",
    ] {
        let o = check(&format!("store = \"{url}\""), "");
        assert_fails(&o, 2, "store: ");
        let said = crate::stderr(&o);
        assert!(said.contains("provider.toml, line 1: "), "{said}");
        assert!(
            said.contains("rediss://") && said.contains("#insecure"),
            "{said}"
        );
        assert!(!said.contains("hunter2"), "{said}");
        let o = check("", &rate_limit(url));
        assert_fails(&o, 2, "rate_limit.redis: ");
        let line = format!("line {}: ", lines + 3);
        assert!(crate::stderr(&o).contains(&line), "{}", crate::stderr(&o));
    }
    for url in [
        "rediss://:hunter2@cache.internal:6379/0",
        "redis://cache.internal:6379/0#insecure",
        "redis://127.0.0.1:6379",
        "redis://localhost/1",
        "redis://[::1]:6379",
    ] {
        let o = check(&format!("store = \"{url}\""), "");
        assert!(o.status.success(), "{url}: {}", crate::stderr(&o));
        let o = check("", &rate_limit(url));
        assert!(o.status.success(), "{url}: {}", crate::stderr(&o));
    }
    // At start too, and from the environment (no line to name then).
    check("store = \"redis://cache.internal\"", "");
    let [_, served] = both(&dir, "agent-provider", &config);
    assert_fails(&served, 2, "store: ");
    check("", "");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args(["config", "check", config.to_str().unwrap()])
        .current_dir(&dir)
        .env("AAUTH_RATE_LIMIT__REDIS", "redis://cache.internal")
        .output()
        .unwrap();
    assert_fails(&o, 2, "rate_limit.redis: redis://cache.internal: ");
}

/// A remote store's transport weakened on purpose passes, and is said aloud: by `config
/// check` first, as a TOML comment, and by the service as a warning when it starts. The
/// password is in neither.
#[test]
fn a_store_weakened_on_purpose_is_said_aloud() {
    let dir = scratch("checks-weakened-store");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    let check = |top: &str, tail: &str| {
        std::fs::write(&config, format!("{top}\n{text}{tail}")).unwrap();
        aauth(&dir, &["config", "check", config.to_str().unwrap()])
    };
    for (url, says) in [
        (
            "redis://:hunter2@cache.internal:6379/0#insecure",
            "plain text",
        ),
        (
            "rediss://:hunter2@cache.internal:6379/0#insecure",
            "certificate is not checked",
        ),
    ] {
        for (top, tail, key) in [
            (format!("store = \"{url}\""), String::new(), "store"),
            (
                String::new(),
                format!("[rate_limit]\nredis = \"{url}\"\n"),
                "rate_limit.redis",
            ),
        ] {
            let o = check(&top, &tail);
            assert!(o.status.success(), "{url}: {}", crate::stderr(&o));
            let shown = stdout(&o);
            let warning = shown
                .lines()
                .find(|l| l.starts_with(&format!("# WARNING: {key} = ")))
                .unwrap_or_else(|| panic!("{key}: no warning in {shown}"));
            assert!(warning.contains(says), "{warning}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
    // Said by the service too, when it starts, before it reaches the store (192.0.2.1, a
    // documentation address, answers nothing: the warning is read, then the process is
    // stopped).
    check(
        "store = \"rediss://:hunter2@192.0.2.1:6379/0#insecure\"",
        "",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args([
            "serve",
            "agent-provider",
            "--config",
            config.to_str().unwrap(),
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        let warned = line.contains("WARN") && line.contains("certificate is not checked");
        said.push(line);
        if warned {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let said = said.join("\n");
    assert!(said.contains("certificate is not checked"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
    // Checked, on loopback, or not marked: nothing said.
    for url in [
        "rediss://:hunter2@cache.internal:6379/0",
        "redis://127.0.0.1:6379#insecure",
        "redis://localhost/1",
    ] {
        let o = check(&format!("store = \"{url}\""), "");
        assert!(o.status.success(), "{url}: {}", crate::stderr(&o));
        assert!(!stdout(&o).contains("WARNING"), "{url}: {}", stdout(&o));
    }
}

#[test]
fn a_trusted_proxy_range_of_everyone_is_refused() {
    let dir = scratch("checks-trusted-proxies");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    for wide in ["0.0.0.0/0", "::/0", "0.0.0.0/1", "2000::/3"] {
        std::fs::write(&config, format!("trusted_proxies = [\"{wide}\"]\n{text}")).unwrap();
        for o in both(&dir, "agent-provider", &config) {
            assert_fails(&o, 2, "trusted_proxies: ");
            assert!(crate::stderr(&o).contains(wide), "{}", crate::stderr(&o));
        }
    }
    std::fs::write(
        &config,
        format!("trusted_proxies = [\"10.0.0.0/8\", \"fc00::/7\"]\n{text}"),
    )
    .unwrap();
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
}

#[test]
fn a_timeout_past_a_day_is_refused() {
    let dir = scratch("checks-timeouts");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    for key in [
        "header_timeout_secs",
        "body_timeout_secs",
        "shutdown_deadline_secs",
    ] {
        let huge = format!("{key} = 9223372036854775807\n");
        let t = text.replace("shutdown_deadline_secs = 2\n", "");
        std::fs::write(&config, format!("{huge}{t}")).unwrap();
        for o in both(&dir, "agent-provider", &config) {
            assert_fails(&o, 2, &format!("{key}: 9223372036854775807"));
        }
        std::fs::write(&config, format!("{key} = 86401\n{t}")).unwrap();
        assert_fails(
            &aauth(&dir, &["config", "check", config.to_str().unwrap()]),
            2,
            key,
        );
    }
    // A day is taken.
    std::fs::write(&config, format!("header_timeout_secs = 86400\n{text}")).unwrap();
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    // From the environment, and the resource proxy's.
    std::fs::write(&config, &text).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args(["config", "check", config.to_str().unwrap()])
        .current_dir(&dir)
        .env("AAUTH_HEADER_TIMEOUT_SECS", "9223372036854775807")
        .output()
        .unwrap();
    assert_fails(&o, 2, "header_timeout_secs");
    let proxy = "[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\ntunnel_idle_timeout_secs = 100000\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n";
    let head = text.split("[agent_provider]").next().unwrap();
    std::fs::write(&config, format!("{head}{proxy}")).unwrap();
    let [checked, served] = both(&dir, "resource-proxy", &config);
    assert_fails(&checked, 2, "resource_proxy.tunnel_idle_timeout_secs");
    assert_fails(&served, 2, "resource_proxy.tunnel_idle_timeout_secs");
}

#[cfg(unix)]
#[test]
fn files_of_trusted_keys_others_can_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("checks-writable");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    // The retiring keys a rotation wrote, published beside the signing key.
    let o = aauth(
        &dir,
        &[
            "admin",
            "--config",
            config.to_str().unwrap(),
            "keys",
            "prepare",
        ],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let mode = |file: &str, mode: u32| {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    std::fs::write(dir.join("extra-ca.pem"), world.ca_pem()).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[egress]\nca_files = [\"extra-ca.pem\"]\n"),
    )
    .unwrap();
    for (file, key) in [
        ("provider.jwk.retiring.json", "retiring_keys_file"),
        ("assistant.jwk", "agent_provider.agents.public_key_file"),
        ("extra-ca.pem", "egress.ca_files"),
    ] {
        for writable in [0o664, 0o646] {
            mode(file, writable);
            for o in both(&dir, "agent-provider", &config) {
                assert_fails(&o, 3, &format!("{key}: "));
                let said = crate::stderr(&o);
                assert!(said.contains(file) && said.contains("chmod go-w"), "{said}");
            }
        }
        // Readable by all is fine: these are public.
        mode(file, 0o644);
    }
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
}

#[test]
fn auto_approve_is_said_aloud() {
    let dir = scratch("checks-auto-approve");
    let world = World::new().unwrap();
    let config = person_server_config(&world, &dir, &[]);
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let shown = stdout(&o);
    assert!(
        shown.starts_with("# WARNING: person_server.consent = \"auto-approve\""),
        "{shown}"
    );
    // What it prints is still the configuration, as TOML.
    assert!(shown.parse::<toml::Table>().is_ok(), "{shown}");
    let served = Served::start(&dir, "person-server", &config);
    let log = served.log();
    assert!(
        log.lines().any(|l| l.contains("\"WARN\"")
            && l.contains("person_server.consent = \\\"auto-approve\\\"")),
        "{log}"
    );
    drop(served);
    // The name that says what it is, too; and "ask" says nothing.
    edit(&config, "\"auto-approve\"", "\"dangerous-auto-approve\"");
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("# WARNING: person_server.consent"),
        "{}",
        crate::stderr(&o)
    );
    edit(&config, "\"dangerous-auto-approve\"", "\"ask\"");
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(!stdout(&o).contains("WARNING"), "{}", stdout(&o));
}
