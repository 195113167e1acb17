//! The configuration's loading, overriding and checks, tested.

use super::*;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aauth-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("service.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const MINIMAL: &str =
    "id = \"https://ps.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"k.jwk\"\n";

#[test]
fn defaults_and_paths_relative_to_the_file() {
    let p = write("defaults", MINIMAL);
    let c = load(&p, []).unwrap();
    assert_eq!(c.store, "memory");
    assert_eq!(c.shutdown_deadline_secs, 10);
    assert_eq!(c.log.format, LogFormat::Pretty);
    assert_eq!(c.log.level, "info", "an absent [log] is an empty one");
    assert_eq!(c.signing_key_file, p.parent().unwrap().join("k.jwk"));
}

#[test]
fn the_environment_overrides_nested_keys_with_types() {
    let p = write("env", MINIMAL);
    let env = [
        ("AAUTH_LOG__FORMAT".to_owned(), "json".to_owned()),
        ("AAUTH_SHUTDOWN_DEADLINE_SECS".to_owned(), "3".to_owned()),
        (
            "AAUTH_STORE".to_owned(),
            "sqlite:/var/lib/ps.sqlite".to_owned(),
        ),
        ("PATH".to_owned(), "/bin".to_owned()),
        // Not configuration: another tool's variables with the same prefix.
        (
            "AAUTH_PROFILE".to_owned(),
            "/home/me/.config/aauth".to_owned(),
        ),
        ("AAUTH_POSTGRES_URL".to_owned(), "postgres://x".to_owned()),
    ];
    let c = load(&p, env).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.shutdown_deadline_secs, 3);
    assert_eq!(c.store, "sqlite:/var/lib/ps.sqlite");
}

#[test]
fn mistakes_name_their_key_and_line() {
    let p = write(
        "typo",
        &format!("{MINIMAL}\nshutdown_deadline_secs = \"soon\"\n"),
    );
    let e = load(&p, []).unwrap_err().to_string();
    assert!(
        e.contains("line 5") && e.contains("shutdown_deadline_secs"),
        "{e}"
    );
    let p = write("unknown", &format!("{MINIMAL}lisen = \"x\"\n"));
    let e = load(&p, []).unwrap_err().to_string();
    assert!(e.contains("lisen") && e.contains("line 4"), "{e}");
    let p = write("env-bad", MINIMAL);
    let env = [("AAUTH_LISTEN".to_owned(), "nowhere".to_owned())];
    let e = load(&p, env).unwrap_err().to_string();
    assert!(e.contains("AAUTH_LISTEN"), "{e}");
    // The line is named, not shown: a misspelt key's value may be a secret.
    let p = write(
        "secret",
        &format!("{MINIMAL}directed_secrt = \"c0ffee-secret\"\n"),
    );
    let e = load(&p, []).unwrap_err().to_string();
    assert!(e.contains("directed_secrt") && e.contains("line 4"), "{e}");
    assert!(!e.contains("c0ffee"), "{e}");
}

#[test]
fn a_key_the_file_lacks_may_come_from_the_environment() {
    let without_id: String = MINIMAL
        .lines()
        .filter(|l| !l.starts_with("id "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without_id, MINIMAL);
    let p = write("no-id", &without_id);
    let e = load(&p, []).unwrap_err().to_string();
    assert!(e.contains("missing field `id`"), "{e}");
    let env = [("AAUTH_ID".to_owned(), "https://ps.example".to_owned())];
    assert_eq!(load(&p, env).unwrap().id, "https://ps.example");
}

#[test]
fn every_top_level_key_is_one_the_environment_may_override() {
    let p = write(
        "full",
        &format!(
            "{MINIMAL}[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n[metrics]\nlisten = \"127.0.0.1:1\"\n\
             [otel]\n[person_server]\n[access_server]\ntrusted_person_servers = []\n[agent_provider]\n\
             [resource_proxy]\nupstream = \"http://127.0.0.1:1\"\nroutes = []\n"
        ),
    );
    let shown: toml::Table = toml::from_str(&redacted(&load(&p, []).unwrap()).unwrap()).unwrap();
    for key in shown.keys() {
        assert!(
            TOP_LEVEL.contains(&key.as_str()),
            "{key} is missing from TOP_LEVEL"
        );
    }
}

#[test]
fn a_resource_proxy_section_reads_with_its_defaults() {
    let p = write(
        "proxy",
        &format!(
            "{MINIMAL}[resource_proxy]\nupstream = \"http://127.0.0.1:8080\"\n[resource_proxy.scope_descriptions]\n\"a.read\" = \"Read\"\n[[resource_proxy.routes]]\npath = \"/a/*\"\nmethods = [\"GET\"]\naccess = \"auth-token\"\nscope = \"a.read\"\n"
        ),
    );
    let c = load(&p, []).unwrap();
    let s = c.resource_proxy.unwrap();
    assert_eq!(
        (
            s.connect_timeout_secs,
            s.request_timeout_secs,
            s.tunnel_idle_timeout_secs
        ),
        (5, 30, 300)
    );
    assert_eq!(s.max_body_bytes, 1024 * 1024);
    assert!(!s.defer_auth_token && s.revoking_issuers.is_empty());
    assert_eq!(s.routes[0].access, ProxyAccess::AuthToken);
    assert_eq!(s.routes[0].methods, ["GET"]);
    assert_eq!(s.scope_descriptions["a.read"], "Read");
    let p = write(
        "proxy-typo",
        &format!("{MINIMAL}[resource_proxy]\nupstream = \"http://x\"\nroutes = []\ntimeout = 3\n"),
    );
    let e = load(&p, []).unwrap_err().to_string();
    assert!(e.contains("timeout") && e.contains("line 7"), "{e}");
}

#[test]
fn an_otel_section_reads_and_shows() {
    let p = write("otel-empty", &format!("{MINIMAL}[otel]\n"));
    let c = load(&p, []).unwrap();
    let o = c.otel.as_ref().unwrap();
    assert!(o.endpoint.is_none() && o.service_name.is_none());
    assert!(redacted(&c).unwrap().contains("[otel]"));
    // The environment makes the section, as it does every other.
    let p = write("otel-env", MINIMAL);
    let env = [(
        "AAUTH_OTEL__ENDPOINT".to_owned(),
        "http://127.0.0.1:4318/v1/traces".to_owned(),
    )];
    let c = load(&p, env).unwrap();
    assert_eq!(
        c.otel.unwrap().endpoint.as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    let p = write("otel-typo", &format!("{MINIMAL}[otel]\nendpiont = \"x\"\n"));
    let e = load(&p, []).unwrap_err().to_string();
    assert!(e.contains("endpiont") && e.contains("line 5"), "{e}");
}

#[test]
fn inline_secrets_are_redacted() {
    let p = write(
        "redact",
        &format!(
            "{MINIMAL}[person_server]\ndirected_secret = \"{}\"\n",
            "ab".repeat(32)
        ),
    );
    let shown = redacted(&load(&p, []).unwrap()).unwrap();
    assert!(
        shown.contains("<redacted>") && !shown.contains(&"ab".repeat(32)),
        "{shown}"
    );
}

#[test]
fn the_bounds_have_the_libraries_defaults_and_refuse_zero() {
    let p = write("bounds", &format!("{MINIMAL}[person_server]\n"));
    let c = load(&p, []).unwrap();
    let ps = c.person_server.as_ref().unwrap();
    assert_eq!(c.max_buffered_body_bytes, 64 * 1024 * 1024);
    assert_eq!(
        (ps.max_pending_per_provider, ps.max_pending_total),
        (256, 10_000)
    );
    let shown = redacted(&c).unwrap();
    assert!(shown.contains("max_pending_total = 10000"), "{shown}");
    let p = write(
        "bounds-zero",
        &format!("{MINIMAL}[person_server]\nmax_pending_per_provider = 0\n"),
    );
    let e = load(&p, []).unwrap_err().to_string();
    assert!(
        e.contains("person_server.max_pending_per_provider") && e.contains("line 5"),
        "{e}"
    );
}
