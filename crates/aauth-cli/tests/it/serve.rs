//! `aauth serve`: each role started as a real process on loopback with a config file,
//! reached over TLS with the demo world's CA; its health, its logs, its shutdown.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aauth_demos::world::{Request, World};
use aauth_keys::PrivateKey;

use crate::{aauth, assert_fails, scratch, stdout};

/// A running `aauth serve`, killed when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `aauth serve ROLE --config CONFIG` in `dir` and waits for its "serving" line.
    pub(crate) fn start(dir: &Path, role: &str, config: &Path) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
            .args(["serve", role, "--config"])
            .arg(config)
            .current_dir(dir)
            .env("AAUTH_LOG__FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aauth serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "serving"
                {
                    let _ = tx.send(v["listen"].as_str().unwrap_or_default().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let listen = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no serving line; log: {:?}", log.lock().unwrap()));
        Self {
            child,
            addr: listen.parse().unwrap(),
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM; the exit status, or `None` if it did not exit within `within`.
    pub(crate) fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// A private key file (0600) in `dir`, and the key.
pub(crate) fn key_file(dir: &Path, name: &str, seed: u8) -> (PathBuf, PrivateKey) {
    let key = PrivateKey::ed25519_from_seed(&[seed; 32]);
    let mut jwk = key.to_private_jwk();
    jwk.kid = Some(format!("{name}-1"));
    let path = dir.join(format!("{name}.jwk"));
    std::fs::write(&path, jwk.to_json()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (path, key)
}

/// A secret file (a password, a shared secret, a TLS key) with mode 0600, as `aauth`
/// requires of it.
pub(crate) fn secret_file(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
    let path = path.as_ref();
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// The TLS files for `host` from the world's CA.
pub(crate) fn tls_files(world: &World, dir: &Path, host: &str) -> String {
    let (cert, key) = world.issue_pem(host).unwrap();
    std::fs::write(dir.join(format!("{host}.crt")), cert).unwrap();
    secret_file(dir.join(format!("{host}.key")), key);
    format!("[tls]\ncert_file = \"{host}.crt\"\nkey_file = \"{host}.key\"\n")
}

/// An agent provider's configuration in `dir`, enrolling the assistant (seed 0x22).
pub(crate) fn provider_config(world: &World, dir: &Path) -> PathBuf {
    key_file(dir, "provider", 0x11);
    let assistant = PrivateKey::ed25519_from_seed(&[0x22; 32]);
    std::fs::write(
        dir.join("assistant.jwk"),
        assistant.public_key().to_jwk().to_json(),
    )
    .unwrap();
    let config = format!(
        "id = \"https://agent.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"provider.jwk\"\nshutdown_deadline_secs = 2\n{}\n[agent_provider]\n[[agent_provider.agents]]\nagent = \"aauth:assistant@agent.example\"\npublic_key_file = \"assistant.jwk\"\nperson_server = \"https://ps.example\"\n",
        tls_files(world, dir, "agent.example")
    );
    let path = dir.join("provider.toml");
    std::fs::write(&path, config).unwrap();
    path
}

pub(crate) async fn get(
    world: &World,
    url: &str,
    headers: &[(&str, &str)],
) -> aauth_demos::world::Response {
    let mut req = Request::new(Vec::new());
    *req.uri_mut() = url.parse().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    world.send(req).await.unwrap()
}

#[tokio::test]
async fn an_agent_provider_serves_its_documents_health_and_tokens_over_tls() {
    let dir = scratch("serve-provider");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let served = Served::start(&dir, "agent-provider", &config);
    world.alias("agent.example", served.addr);

    let doc = get(
        &world,
        "https://agent.example/.well-known/aauth-agent.json",
        &[],
    )
    .await;
    assert_eq!(doc.status(), 200);
    let doc: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    assert_eq!(doc["issuer"], "https://agent.example");
    let jwks = get(&world, "https://agent.example/jwks.json", &[]).await;
    assert!(String::from_utf8_lossy(jwks.body()).contains("provider-1"));
    for path in ["/healthz", "/readyz"] {
        let r = get(&world, &format!("https://agent.example{path}"), &[]).await;
        assert_eq!(r.status(), 200, "{path}");
    }

    // The provider issues the enrolled assistant its token: `aauth fetch` gets one (and
    // signs its GET of the provider's own metadata with it).
    let (assistant, _) = key_file(&dir, "me", 0x22);
    std::fs::write(dir.join("ca.pem"), world.ca_pem()).unwrap();
    let connect = format!(
        "agent.example:443:{}:{}",
        served.addr.ip(),
        served.addr.port()
    );
    let dir2 = dir.clone();
    let o = tokio::task::spawn_blocking(move || {
        aauth(
            &dir2,
            &[
                "fetch",
                "https://agent.example/.well-known/aauth-agent.json",
                "--agent",
                "aauth:assistant@agent.example",
                "--key",
                assistant.to_str().unwrap(),
                "--provider",
                "https://agent.example",
                "--ca-file",
                "ca.pem",
                "--connect-to",
                &connect,
                "-v",
            ],
        )
    })
    .await
    .unwrap();
    let err = crate::stderr(&o);
    assert!(o.status.success(), "{err}\n{}", served.log());
    assert!(
        err.contains("> POST https://agent.example/agent-token"),
        "{err}"
    );
    assert!(
        stdout(&o).contains("\"issuer\":\"https://agent.example\""),
        "{}",
        stdout(&o)
    );
}

#[tokio::test]
async fn each_request_is_logged_with_its_id_and_code_and_never_a_credential() {
    let dir = scratch("serve-logs");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let served = Served::start(&dir, "agent-provider", &config);
    world.alias("agent.example", served.addr);

    // A token request whose Signature-Key carries a token-looking value and a bogus
    // signature: refused, and logged without either.
    let secretish = "eyJhbGciOiJFZERTQSJ9.c2VjcmV0LWNsYWltcw.c2lnbmF0dXJl";
    let mut req = Request::new(b"{}".to_vec());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = "https://agent.example/agent-token".parse().unwrap();
    for (k, v) in [
        ("x-request-id", "trace-me-42"),
        ("content-type", "application/json"),
        ("signature-input", "sig=(\"@method\");created=1"),
        ("signature", "sig=:AAAA:"),
        ("signature-key", &format!("sig=jwt;jwt=\"{secretish}\"")),
    ] {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let r = world.send(req).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    // A request without an id gets one.
    let r = get(&world, "https://agent.example/healthz", &[]).await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated.len() >= 16, "{generated}");

    std::thread::sleep(Duration::from_millis(200));
    let log = served.log();
    let refused = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["request_id"] == "trace-me-42" || v["span"]["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("no line for the request id:\n{log}"));
    assert_eq!(refused["status"], 401, "{refused}");
    assert!(
        refused["signature_error"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{refused}"
    );
    assert!(log.contains(&generated), "{log}");
    for secret in [secretish, "c2VjcmV0LWNsYWltcw", "AAAA"] {
        assert!(!log.contains(secret), "{secret} leaked into:\n{log}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_service_within_its_deadline() {
    let dir = scratch("serve-term");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let mut served = Served::start(&dir, "agent-provider", &config);
    world.alias("agent.example", served.addr);
    assert_eq!(
        get(&world, "https://agent.example/healthz", &[])
            .await
            .status(),
        200
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = served.terminate(Duration::from_secs(5));
        (status, served.log())
    })
    .await
    .unwrap();
    let (status, log) = status;
    let status = status.unwrap_or_else(|| panic!("still running after SIGTERM:\n{log}"));
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
}

#[test]
fn config_check_prints_the_effective_configuration_and_names_mistakes() {
    let dir = scratch("config-check");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let shown = stdout(&o);
    assert!(shown.contains("id = \"https://agent.example\""), "{shown}");
    assert!(shown.contains("provider.jwk"), "{shown}");

    // A variable that is not text is none of the configuration's business, unless it is
    // one of its own; neither is a panic.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let not_text = std::ffi::OsStr::from_bytes(b"\xff\xfe");
        let with = |name: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
                .args(["config", "check", config.to_str().unwrap()])
                .current_dir(&dir)
                .env(name, not_text)
                .output()
                .unwrap()
        };
        let o = with("SOMEONE_ELSES");
        assert!(o.status.success(), "{}", crate::stderr(&o));
        assert_fails(&with("AAUTH_LOG__LEVEL"), 2, "AAUTH_LOG__LEVEL");
    }

    // A wrong type, named with its line; a missing key file; a key others can read.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        text.replace(
            "shutdown_deadline_secs = 2",
            "shutdown_deadline_secs = \"2\"",
        ),
    )
    .unwrap();
    assert_fails(&aauth(&dir, &["config", "check", "bad.toml"]), 3, "line 4");
    std::fs::write(
        dir.join("nokey.toml"),
        text.replace("provider.jwk", "missing.jwk"),
    )
    .unwrap();
    // Named as the service's key, with the command that makes one; at start too.
    let o = aauth(&dir, &["config", "check", "nokey.toml"]);
    assert_fails(&o, 3, "signing_key_file: ");
    assert!(
        crate::stderr(&o).contains("missing.jwk") && crate::stderr(&o).contains("aauth keygen"),
        "{}",
        crate::stderr(&o)
    );
    let o = aauth(&dir, &["serve", "agent-provider", "--config", "nokey.toml"]);
    assert_fails(&o, 3, "signing_key_file: ");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("provider.jwk"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_fails(
            &aauth(&dir, &["config", "check", "provider.toml"]),
            3,
            "chmod 600",
        );
        let o = aauth(
            &dir,
            &["serve", "agent-provider", "--config", "provider.toml"],
        );
        assert_fails(&o, 3, "chmod 600");
    }
}

/// A secret file a configuration names (the directed-identifier secret, a person's
/// password, the TLS key) that others can read is refused, as a private key file is: by
/// `config check` and at start, naming the file and the fix.
#[cfg(unix)]
#[test]
fn secret_files_others_can_read_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("serve-secret-modes");
    let world = World::new().unwrap();
    let path = person_server_config(&world, &dir, &[]);
    let config = path.to_str().unwrap();
    let o = aauth(&dir, &["config", "check", config]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let mode = |file: &str, mode: u32| {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for file in ["directed.secret", "alice.password", "ps.example.key"] {
        mode(file, 0o644);
        for o in [
            aauth(&dir, &["config", "check", config]),
            aauth(&dir, &["serve", "person-server", "--config", config]),
        ] {
            assert_fails(&o, 3, "chmod 600");
            assert!(crate::stderr(&o).contains(file), "{}", crate::stderr(&o));
        }
        mode(file, 0o600);
    }
    // On PostgreSQL (not reached by the check), its password file too.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "store = \"sqlite:ps.sqlite\"",
        "store = \"postgres://aauth@127.0.0.1:9/aauth\"",
    ) + "[postgres]\npassword_file = \"db.password\"\n";
    std::fs::write(&path, text).unwrap();
    secret_file(dir.join("db.password"), "pw\n");
    let o = aauth(&dir, &["config", "check", config]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    mode("db.password", 0o644);
    let o = aauth(&dir, &["config", "check", config]);
    assert_fails(&o, 3, "chmod 600");
    assert!(
        crate::stderr(&o).contains("db.password"),
        "{}",
        crate::stderr(&o)
    );
}

/// A build without the `otel` feature refuses `[otel]`, saying how to get one.
#[cfg(not(feature = "otel"))]
#[test]
fn an_otel_section_needs_the_otel_build() {
    let dir = scratch("otel-absent");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[otel]\n")).unwrap();
    for args in [
        &["config", "check", "provider.toml"][..],
        &["serve", "agent-provider", "--config", "provider.toml"],
    ] {
        let o = aauth(&dir, args);
        assert_fails(&o, 2, "otel: this aauth was built without OpenTelemetry");
        assert!(
            crate::stderr(&o).contains("--features otel"),
            "{}",
            crate::stderr(&o)
        );
    }
}

/// A Person Server's configuration in `dir`: auto-approving, alice with the assistant
/// bound, reaching the provider and the resource at `reach`.
pub(crate) fn person_server_config(
    world: &World,
    dir: &Path,
    reach: &[(&str, SocketAddr)],
) -> PathBuf {
    key_file(dir, "ps", 0x33);
    secret_file(dir.join("directed.secret"), "7f".repeat(32));
    secret_file(dir.join("alice.password"), "correct horse battery staple\n");
    std::fs::write(dir.join("ca.pem"), world.ca_pem()).unwrap();
    let connect_to: Vec<String> = reach
        .iter()
        .map(|(name, a)| format!("\"{name}:443:{}:{}\"", a.ip(), a.port()))
        .collect();
    let config = format!(
        "id = \"https://ps.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"ps.jwk\"\nstore = \"sqlite:ps.sqlite\"\nshutdown_deadline_secs = 2\n{}\n[egress]\nca_files = [\"ca.pem\"]\nconnect_to = [{}]\n\n[person_server]\ndirected_secret_file = \"directed.secret\"\nconsent = \"auto-approve\"\n[[person_server.accounts]]\nname = \"alice\"\npassword_file = \"alice.password\"\nagents = [\"aauth:assistant@agent.example\"]\n",
        tls_files(world, dir, "ps.example"),
        connect_to.join(", ")
    );
    let path = dir.join("ps.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The parties of a three-party flow: the agent provider served, the resource in this
/// process, and the Person Server's configuration (reaching both), changed by `edit`.
pub(crate) struct Flow {
    pub(crate) world: World,
    pub(crate) provider: Served,
    pub(crate) resource: SocketAddr,
    pub(crate) ps_config: PathBuf,
}

pub(crate) async fn flow(dir: &Path, edit: impl Fn(String) -> String) -> Flow {
    let world = World::new().unwrap();
    let provider = Served::start(dir, "agent-provider", &provider_config(&world, dir));
    world.alias("agent.example", provider.addr);
    aauth_demos::process::serve_resource_for(&world)
        .await
        .unwrap();
    let resource = world.names()["resource.example"];
    let ps_config = person_server_config(
        &world,
        dir,
        &[
            ("agent.example", provider.addr),
            ("resource.example", resource),
        ],
    );
    let text = std::fs::read_to_string(&ps_config).unwrap();
    std::fs::write(&ps_config, edit(text)).unwrap();
    Flow {
        world,
        provider,
        resource,
        ps_config,
    }
}

/// `aauth fetch` of the resource as the assistant (its key written to `dir`), reaching
/// the provider, the Person Server and the resource at `addrs` (in that order).
pub(crate) fn fetch_args(dir: &Path, addrs: [SocketAddr; 3]) -> Vec<String> {
    let (assistant, _) = key_file(dir, "me", 0x22);
    let mut args: Vec<String> = [
        "fetch",
        "https://resource.example/calendar/today",
        "--agent",
        "aauth:assistant@agent.example",
        "--key",
        assistant.to_str().unwrap(),
        "--provider",
        "https://agent.example",
        "--ca-file",
        "ca.pem",
    ]
    .map(str::to_owned)
    .to_vec();
    for (name, addr) in ["agent.example", "ps.example", "resource.example"]
        .into_iter()
        .zip(addrs)
    {
        args.push("--connect-to".to_owned());
        args.push(format!("{name}:443:{}:{}", addr.ip(), addr.port()));
    }
    args
}

/// `aauth fetch` of the resource as the assistant (see [`fetch_args`]), run off the
/// async runtime: its output.
pub(crate) async fn fetch_through(dir: &Path, addrs: [SocketAddr; 3]) -> std::process::Output {
    let (dir, args) = (dir.to_owned(), fetch_args(dir, addrs));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aauth(&dir, &args)
    })
    .await
    .unwrap()
}

/// Three-party access with the agent provider and the Person Server as `aauth serve`
/// processes, the resource in this process, and the agent `aauth fetch`: the person
/// token, the resource's challenge and the auth token all cross process boundaries.
#[tokio::test]
async fn a_three_party_flow_runs_against_served_processes() {
    let dir = scratch("serve-flow");
    // With Prometheus metrics on their own port.
    let metrics = free_port();
    let Flow {
        world,
        provider,
        resource,
        ps_config,
    } = flow(&dir, |text| {
        text.replace(
            "[egress]",
            &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[egress]"),
        )
    })
    .await;
    let ps = Served::start(&dir, "person-server", &ps_config);
    world.alias("ps.example", ps.addr);
    let ready = get(&world, "https://ps.example/readyz", &[]).await;
    assert_eq!(
        ready.status(),
        200,
        "{}",
        String::from_utf8_lossy(ready.body())
    );

    let o = fetch_through(&dir, [provider.addr, ps.addr, resource]).await;
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}\nPS log:\n{}",
        crate::stderr(&o),
        ps.log()
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["message"], "Access granted", "{out}");
    assert_eq!(json["person"]["iss"], "https://ps.example", "{out}");

    // The Person Server logged the person-token and auth-token requests it answered,
    // and no token.
    std::thread::sleep(Duration::from_millis(200));
    let log = ps.log();
    let answered: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["message"] == "answered" && v["status"] == 200)
        .collect();
    assert!(answered.len() >= 2, "{log}");
    assert!(!log.contains("eyJ"), "a token in the log:\n{log}");

    // A path nothing serves is counted, but not by a label of the client's choosing.
    let junk = get(&world, "https://ps.example/made-up-route-17", &[]).await;
    assert_eq!(junk.status(), 404);

    // The metrics moved: one person token, one auth token, the token endpoints' requests,
    // the keys fetched (the provider's and the resource's).
    let scraped = scrape(metrics);
    assert!(!scraped.contains("made-up-route"), "{scraped}");
    assert!(
        scraped.contains("route=\"other\",status=\"404\""),
        "{scraped}"
    );
    for needle in [
        "aauth_tokens_issued_total{type=\"person\"} 1",
        "aauth_tokens_issued_total{type=\"auth\"} 1",
        "aauth_http_requests_total{role=\"person-server\"",
        "aauth_http_request_duration_seconds",
        "aauth_store_call_duration_seconds_count{store=\"person-server sqlite\"}",
    ] {
        assert!(scraped.contains(needle), "{needle} not in:\n{scraped}");
    }
    let fetches: f64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("aauth_key_cache_fetches "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no key-cache fetches in:\n{scraped}"));
    assert!(fetches >= 2.0, "{scraped}");

    // The operator, beside the running server, on its store: the two tokens and their
    // audit events, then the agent revoked (its tokens with it).
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--config", ps_config.to_str().unwrap()];
        all.extend_from_slice(args);
        aauth(&dir, &all)
    };
    let listed = admin(&["tokens", "list", "--json"]);
    assert!(listed.status.success(), "{}", crate::stderr(&listed));
    let tokens: Vec<serde_json::Value> = stdout(&listed)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = tokens.iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["person", "auth"], "{tokens:?}");
    assert!(
        tokens
            .iter()
            .all(|t| t["revoked"] == false && t["account"] == "alice")
    );
    let audit = admin(&[
        "audit",
        "--agent",
        "aauth:assistant@agent.example",
        "--since",
        "1h",
    ]);
    let audit = stdout(&audit);
    assert_eq!(audit.matches("\tissued\t").count(), 2, "{audit}");
    assert!(audit.contains("https://resource.example"), "{audit}");
    assert!(!audit.contains("eyJ"), "a token in the audit log:\n{audit}");
    // Disabling alice revokes the tokens she holds (told to their resource, which the
    // command reaches as the Person Server does).
    let disabled = admin(&["accounts", "disable", "alice"]);
    assert!(
        stdout(&disabled)
            .contains("account alice disabled; its sessions ended; 2 token(s) revoked"),
        "{}{}",
        stdout(&disabled),
        crate::stderr(&disabled)
    );
    let listed = stdout(&admin(&["tokens", "list"]));
    assert_eq!(listed.matches("\trevoked").count(), 2, "{listed}");
    let revoked = admin(&["agents", "revoke", "aauth:assistant@agent.example"]);
    assert!(
        stdout(&revoked).contains("2 token(s) revoked"),
        "{}{}",
        stdout(&revoked),
        crate::stderr(&revoked)
    );
    // Revoked, but the configuration binds it at every start: said, and not 0.
    assert_eq!(revoked.status.code(), Some(2));
    assert!(
        crate::stderr(&revoked).contains("declared in the configuration"),
        "{}",
        crate::stderr(&revoked)
    );
    let listed = stdout(&admin(&["tokens", "list"]));
    assert_eq!(listed.matches("\trevoked").count(), 2, "{listed}");
    assert!(
        stdout(&admin(&["agents", "list"])).is_empty(),
        "the binding is gone"
    );
}

/// `GET /metrics` on loopback `port` (plain HTTP/1.1), the response.
pub(crate) fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: metrics\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// An Access Server as a process: its metadata, JWKS and readiness (SQLite store).
#[tokio::test]
async fn an_access_server_serves_its_metadata_and_is_ready() {
    let dir = scratch("serve-as");
    let world = World::new().unwrap();
    key_file(&dir, "as", 0x44);
    let config = format!(
        "id = \"https://as.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"as.jwk\"\nstore = \"sqlite:as.sqlite\"\n{}\n[access_server]\ntrusted_person_servers = [\"https://ps.example\"]\n",
        tls_files(&world, &dir, "as.example")
    );
    std::fs::write(dir.join("as.toml"), config).unwrap();
    let served = Served::start(&dir, "access-server", &dir.join("as.toml"));
    world.alias("as.example", served.addr);
    let doc = get(
        &world,
        "https://as.example/.well-known/aauth-access.json",
        &[],
    )
    .await;
    assert_eq!(doc.status(), 200);
    let doc: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    assert_eq!(doc["issuer"], "https://as.example");
    assert!(doc["auth_token_endpoint"].as_str().is_some(), "{doc}");
    assert_eq!(
        get(&world, "https://as.example/readyz", &[]).await.status(),
        200
    );
    assert!(
        dir.join("as.sqlite").exists(),
        "the store is the configured file"
    );

    // A configuration without its role's section is refused at start, naming it.
    std::fs::write(
        dir.join("bare.toml"),
        "id = \"https://as.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"as.jwk\"\n",
    )
    .unwrap();
    let dir2 = dir.clone();
    let o = tokio::task::spawn_blocking(move || {
        aauth(&dir2, &["serve", "access-server", "--config", "bare.toml"])
    })
    .await
    .unwrap();
    assert_fails(&o, 2, "[access_server]");
}

/// A free loopback port (bound, then released for the process to take).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SIGTERM while the agent's poll is held: the Person Server answers it at once and exits
/// within its deadline; restarted on the same SQLite file and port, it has the pending
/// request, the person approves there, and the agent, which kept polling through the
/// outage, gets its tokens and its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_server_restarted_mid_poll_loses_nothing() {
    let dir = scratch("serve-restart");
    // Ask the person; a fixed port, so that the restarted process is where the agent
    // polls.
    let port = free_port();
    let Flow {
        world,
        provider,
        resource,
        ps_config: config,
    } = flow(&dir, |text| {
        text.replace("consent = \"auto-approve\"", "consent = \"ask\"")
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            )
            .replace("shutdown_deadline_secs = 2", "shutdown_deadline_secs = 8")
    })
    .await;
    let mut ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);

    // The agent, in its own process; its approval prompts come on standard error.
    let agent = AgentProcess::start(&dir, [provider.addr, ps.addr, resource]);
    let next_prompt = |what: &str| agent.next_prompt(what);

    // The first approval is asked; the agent's poll is held at the Person Server.
    let (url, code) = next_prompt("first");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = ps.terminate(Duration::from_secs(10));
        let log = ps.log();
        drop(ps);
        (status, log)
    })
    .await
    .unwrap();
    let status = status.unwrap_or_else(|| panic!("still running:\n{log}"));
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the held poll was answered at once, not at the deadline: {:?}\n{log}",
        started.elapsed()
    );

    // Back on the same file and port: the pending request is there.
    let ps = Served::start(&dir, "person-server", &config);
    assert_eq!(ps.addr.port(), port);
    aauth_demos::process::approve(&world, &url, &code, "alice", "correct horse battery staple")
        .await
        .unwrap_or_else(|e| panic!("{e}\nPS log:\n{}", ps.log()));
    // Then the auth token's approval, on the restarted process.
    let (url, code) = next_prompt("second");
    aauth_demos::process::approve(&world, &url, &code, "alice", "correct horse battery staple")
        .await
        .unwrap_or_else(|e| panic!("{e}\nPS log:\n{}", ps.log()));

    agent.granted(&ps).await;
}

/// `aauth fetch` in its own process, its approval prompts read from standard error.
pub(crate) struct AgentProcess {
    child: Child,
    prompts: std::sync::mpsc::Receiver<(String, String)>,
    stderr: Arc<Mutex<String>>,
}

impl AgentProcess {
    /// Starts the assistant's `aauth fetch` (see `fetch_args`) in `dir`.
    pub(crate) fn start(dir: &Path, addrs: [SocketAddr; 3]) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
            .args(fetch_args(dir, addrs))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, prompts) = std::sync::mpsc::channel::<(String, String)>();
        let stderr = Arc::new(Mutex::new(String::new()));
        let lines = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("aauth: your approval is needed: open ") {
                    let url = rest.split(' ').next().unwrap_or_default().to_owned();
                    let code = url.rsplit("code=").next().unwrap_or_default().to_owned();
                    let _ = tx.send((url, code));
                }
                lines.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Self {
            child,
            prompts,
            stderr,
        }
    }

    /// The next interaction link and its code.
    pub(crate) fn next_prompt(&self, what: &str) -> (String, String) {
        self.prompts
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no {what} prompt; agent: {}", self.stderr.lock().unwrap()))
    }

    /// Stops the agent (it would otherwise poll on after the test).
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the agent to finish, and asserts it got through.
    pub(crate) async fn granted(self, ps: &Served) {
        let Self { child, stderr, .. } = self;
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{out}\nagent:\n{}\nPS log:\n{}",
            stderr.lock().unwrap(),
            ps.log()
        );
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["message"], "Access granted", "{out}");
    }
}

/// Phase 4 against processes: the Person Server asks, and the person decides in headless
/// Chromium (signing in, reading what the resource and the agent say, approving), twice
/// (the person token, then the auth token); the waiting `aauth fetch` gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_decides_in_chromium_against_served_processes() {
    use aauth_demos::browser::{WebDriver, approve_in_browser, chromium_flags, find_browser};
    let (browser, driver) = match find_browser() {
        Ok(found) => found,
        Err(why) => {
            assert!(
                std::env::var("AAUTH_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "the browser test is required here but cannot run: {why}"
            );
            eprintln!("\n!!! SKIPPED the consent page against served processes: {why}\n");
            return;
        }
    };
    let dir = scratch("serve-chromium");
    let metrics = free_port();
    let Flow {
        world,
        provider,
        resource,
        ps_config,
    } = flow(&dir, |text| {
        text.replace("consent = \"auto-approve\"", "consent = \"ask\"")
            .replace(
                "[egress]",
                &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[egress]"),
            )
    })
    .await;
    let ps = Served::start(&dir, "person-server", &ps_config);
    world.alias("ps.example", ps.addr);
    let agent = AgentProcess::start(&dir, [provider.addr, ps.addr, resource]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser");
    for (round, shot) in ["person-token", "auth-token"].into_iter().enumerate() {
        let (url, _) = agent.next_prompt(shot);
        assert!(
            url.starts_with("https://ps.example/interact?code="),
            "{url}"
        );
        // A fresh browser each time: the person signs in again.
        let wd = WebDriver::start(&browser, &driver, &chromium_flags(&world))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let seen = approve_in_browser(
            &wd,
            &url,
            ("alice", "correct horse battery staple"),
            &shots,
            &format!("served-consent-{shot}"),
        )
        .await;
        wd.quit().await;
        let seen = seen.unwrap_or_else(|e| panic!("round {round}: {e}\nPS log:\n{}", ps.log()));
        assert!(
            seen.resource_section.contains("https://resource.example"),
            "{}",
            seen.resource_section
        );
        assert!(
            seen.agent_section.contains("aauth:assistant@agent.example"),
            "{}",
            seen.agent_section
        );
        assert!(seen.done_page.contains("Approved"), "{}", seen.done_page);
    }
    agent.granted(&ps).await;
    // Both decisions are in the audit log, as the person's.
    let audit = aauth(
        &dir,
        &[
            "admin",
            "--config",
            ps_config.to_str().unwrap(),
            "audit",
            "--action",
            "approved",
        ],
    );
    let audit = stdout(&audit);
    assert_eq!(
        audit.matches("approved by the person").count(),
        2,
        "{audit}"
    );
    // Two deferred requests, both created and delivered.
    let scraped = scrape(metrics);
    for needle in [
        "aauth_pending_requests_total{state=\"created\"} 2",
        "aauth_pending_requests_total{state=\"delivered\"} 2",
    ] {
        assert!(scraped.contains(needle), "{needle} not in:\n{scraped}");
    }
}

/// The configurations in `examples/` (those docs/deploy.md walks through) pass `aauth
/// config check` once the keys and certificates the walkthrough makes are there.
#[test]
fn the_example_configurations_check() {
    let dir = scratch("examples");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let world = World::new().unwrap();
    for dir_name in ["keys", "tls", "data"] {
        std::fs::create_dir_all(dir.join(dir_name)).unwrap();
    }
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    for name in ["provider", "ps", "as", "api", "assistant"] {
        let o = aauth(
            &dir,
            &[
                "keygen",
                "--out",
                &format!("keys/{name}.jwk"),
                "--public",
                &format!("keys/{name}.jwks"),
            ],
        );
        assert!(o.status.success(), "{}", crate::stderr(&o));
    }
    secret_file(dir.join("keys/directed.secret"), "ab".repeat(32));
    secret_file(
        dir.join("keys/alice.password"),
        "correct horse battery staple\n",
    );
    std::fs::write(dir.join("tls/ca.crt"), world.ca_pem()).unwrap();
    for host in [
        "agent.localhost",
        "ps.localhost",
        "api.localhost",
        "as.localhost",
    ] {
        let (cert, key) = world.issue_pem(host).unwrap();
        std::fs::write(dir.join(format!("tls/{host}.crt")), cert).unwrap();
        secret_file(dir.join(format!("tls/{host}.key")), key);
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let o = aauth(&dir, &["config", "check", path.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "{}: {}",
                path.display(),
                crate::stderr(&o)
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} example configurations");
}

/// `aauth agent enroll` gets the assistant's token from a served provider and writes it
/// (0600); `aauth token verify` checks it against the provider's published keys, and
/// `aauth fetch --agent-token` signs with it.
#[tokio::test]
async fn enroll_then_verify_then_fetch_with_the_token_file() {
    let dir = scratch("serve-enroll");
    let world = World::new().unwrap();
    let provider = Served::start(&dir, "agent-provider", &provider_config(&world, &dir));
    world.alias("agent.example", provider.addr);
    let (assistant, _) = key_file(&dir, "me", 0x22);
    std::fs::write(dir.join("ca.pem"), world.ca_pem()).unwrap();
    let connect = format!(
        "agent.example:443:{}:{}",
        provider.addr.ip(),
        provider.addr.port()
    );
    let net = ["--ca-file", "ca.pem", "--connect-to", &connect].map(str::to_owned);
    let run = |args: Vec<String>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            aauth(&dir, &args)
        })
    };
    let mut enroll: Vec<String> = [
        "agent",
        "enroll",
        "--agent",
        "aauth:assistant@agent.example",
        "--key",
        assistant.to_str().unwrap(),
        "--provider",
        "https://agent.example",
        "--out",
        "agent.token",
    ]
    .map(str::to_owned)
    .to_vec();
    enroll.extend(net.iter().cloned());
    let o = run(enroll).await.unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        crate::stderr(&o),
        provider.log()
    );
    let token = std::fs::read_to_string(dir.join("agent.token")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("agent.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let mut verify: Vec<String> = vec![
        "token".into(),
        "verify".into(),
        token.clone(),
        "--issuer".into(),
        "https://agent.example".into(),
    ];
    verify.extend(net.iter().cloned());
    let o = run(verify).await.unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), crate::stderr(&o));
    assert!(
        stdout(&o).contains("agent token (aa-agent+jwt)"),
        "{}",
        stdout(&o)
    );

    let mut fetch: Vec<String> = [
        "fetch",
        "https://agent.example/.well-known/aauth-agent.json",
        "--agent",
        "aauth:assistant@agent.example",
        "--key",
        assistant.to_str().unwrap(),
        "--agent-token",
        "agent.token",
        "-v",
    ]
    .map(str::to_owned)
    .to_vec();
    fetch.extend(net.iter().cloned());
    let o = run(fetch).await.unwrap();
    let err = crate::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("/agent-token"),
        "the token file was used, not the provider: {err}"
    );
}

/// With TLS terminated here, the Person Server knows each client's address: one client
/// guessing passwords across accounts is throttled by its address (behind a terminating
/// proxy it would not be: there every client shares the proxy's address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_person_server_throttles_one_client_guessing_across_accounts() {
    let dir = scratch("serve-client-throttle");
    let Flow {
        world,
        provider,
        resource,
        ps_config: config,
    } = flow(&dir, |text| {
        text.replace("consent = \"auto-approve\"", "consent = \"ask\"")
    })
    .await;
    let ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);
    let agent = AgentProcess::start(&dir, [provider.addr, ps.addr, resource]);
    let (url, code) = agent.next_prompt("first");
    for account in ["a1", "a2", "a3", "a4", "a5", "a6"] {
        let status = aauth_demos::process::sign_in(&world, &url, &code, account, "guess")
            .await
            .unwrap();
        assert_eq!(status, 401, "{account}\n{}", ps.log());
    }
    let status = aauth_demos::process::sign_in(&world, &url, &code, "a7", "guess")
        .await
        .unwrap();
    assert_eq!(
        status,
        429,
        "the seventh account from one address\n{}",
        ps.log()
    );
    agent.stop();
}

/// A Person Server process (in `scratch(name)`, aliased as `ps.example`) whose
/// configuration `edit` rewrote.
fn ps_edited(world: &World, name: &str, edit: impl Fn(String) -> String) -> Served {
    let dir = scratch(name);
    let config = person_server_config(world, &dir, &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, edit(text)).unwrap();
    let ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);
    ps
}

/// `[rate_limit]`: past a rule's burst a request is answered `429` with `Retry-After`
/// before the role sees it; paths no rule names are not counted.
#[tokio::test]
async fn configured_rate_limits_answer_429_with_retry_after() {
    let world = World::new().unwrap();
    let ps = ps_edited(&world, "serve-rate-limit", |text| {
        format!(
            "{text}\n[rate_limit]\n[[rate_limit.rules]]\nscope = \"client\"\npath = \"/.well-known/\"\nrequests = 2\nper_secs = 60\n"
        )
    });
    let doc = "https://ps.example/.well-known/aauth-person.json";
    for _ in 0..2 {
        assert_eq!(get(&world, doc, &[]).await.status(), 200);
    }
    let refused = get(&world, doc, &[]).await;
    assert_eq!(refused.status(), 429, "{}", ps.log());
    assert_eq!(refused.headers()["retry-after"], "30");
    let json: serde_json::Value = serde_json::from_slice(refused.body()).unwrap();
    assert_eq!(json["error"], "rate_limited");
    // Another path is not counted.
    assert_eq!(
        get(&world, "https://ps.example/healthz", &[])
            .await
            .status(),
        200
    );
}

/// A rule over every path leaves the health endpoints alone: an instance flooded (or
/// whose limiter is down) is not reported unhealthy for it.
#[tokio::test]
async fn rate_limits_never_answer_for_the_health_endpoints() {
    let world = World::new().unwrap();
    let ps = ps_edited(&world, "serve-rate-limit-health", |text| {
        format!(
            "{text}\n[rate_limit]\n[[rate_limit.rules]]\nscope = \"endpoint\"\npath = \"/\"\nrequests = 1\nper_secs = 60\n"
        )
    });
    let doc = "https://ps.example/.well-known/aauth-person.json";
    assert_eq!(get(&world, doc, &[]).await.status(), 200);
    assert_eq!(get(&world, doc, &[]).await.status(), 429, "{}", ps.log());
    for path in ["/healthz", "/readyz", "/healthz"] {
        let url = format!("https://ps.example{path}");
        assert_eq!(get(&world, &url, &[]).await.status(), 200, "{path}");
    }
}

/// An agent provider over plain HTTP (what a stalled client meets is then the server's
/// own timeouts, not the TLS handshake's), with `top` before its configuration.
pub(crate) fn plain_provider(world: &World, name: &str, top: &str) -> Served {
    let dir = scratch(name);
    let config = provider_config(world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    let plain: Vec<&str> = text
        .lines()
        .filter(|l| {
            !(l.starts_with("[tls]") || l.starts_with("cert_file") || l.starts_with("key_file"))
        })
        .collect();
    std::fs::write(&config, format!("{top}\n{}\n", plain.join("\n"))).unwrap();
    Served::start(&dir, "agent-provider", &config)
}

/// A request body sent slowly (a byte now and then keeps no connection open) is cut
/// off after `body_timeout_secs` of its head: `408`, and the connection is free again.
#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    use std::io::{Read, Write};
    let world = World::new().unwrap();
    // One connection at a time: the quick request below is served only once the slow
    // one's connection is free.
    let served = plain_provider(
        &world,
        "serve-slow-body",
        "max_connections = 1\nbody_timeout_secs = 1",
    );
    let started = Instant::now();
    let mut slow = std::net::TcpStream::connect(served.addr).unwrap();
    slow.write_all(
        b"POST /agent-token HTTP/1.1\r\nhost: agent.example\r\nupgrade: websocket\r\nconnection: upgrade\r\ncontent-length: 100\r\n\r\n{",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // A byte every 300 ms: never idle for long, never done.
    while started.elapsed() < Duration::from_secs(15) {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let _ = slow.write_all(b" ");
            }
            Err(e) => panic!("{e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer}\n{}",
        served.log()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // A body sent at once is not affected.
    let mut quick = std::net::TcpStream::connect(served.addr).unwrap();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: agent.example\r\nconnection: close\r\n\r\n")
        .unwrap();
    quick
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut ok = String::new();
    quick.read_to_string(&mut ok).unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

/// A client that opens a connection and never finishes a request's head is dropped after
/// `header_timeout_secs`; past `max_connections`, a new connection waits (in the kernel's
/// queue) until one closes, and is then served.
#[test]
fn stalled_clients_are_dropped_and_connections_are_bounded() {
    use std::io::{Read, Write};
    let world = World::new().unwrap();
    let served = plain_provider(
        &world,
        "serve-stalled-clients",
        "max_connections = 1\nheader_timeout_secs = 1",
    );
    let started = Instant::now();
    let mut stalled = std::net::TcpStream::connect(served.addr).unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a")
        .unwrap();
    // The one connection allowed is taken: a second waits, answered once the first is dropped.
    let mut waiting = std::net::TcpStream::connect(served.addr).unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: agent.example\r\nconnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        served.log()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}: not held back"
    );
    // The stalled one was closed by the server.
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    // Closed by the server (end of stream, or a reset), not the read timing out.
    assert!(
        closed.as_ref().map_or_else(
            |e| e.kind() == std::io::ErrorKind::ConnectionReset,
            |_| true
        ),
        "{closed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "the stalled request was served"
    );
}

/// Behind a proxy named in `trusted_proxies`, a `client` rule counts each client its
/// `X-Forwarded-For` names, not the proxy; from a peer not named, what the client wrote
/// there is not believed.
#[tokio::test]
async fn behind_a_trusted_proxy_rate_limits_count_the_forwarded_client() {
    let world = World::new().unwrap();
    let rule = "[rate_limit]\n[[rate_limit.rules]]\nscope = \"client\"\npath = \"/.well-known/\"\nrequests = 2\nper_secs = 60\n";
    let ps = ps_edited(&world, "serve-rate-limit-trusted", |text| {
        format!("trusted_proxies = [\"127.0.0.0/8\"]\n{text}\n{rule}")
    });
    let doc = "https://ps.example/.well-known/aauth-person.json";
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..2 {
        assert_eq!(get(&world, doc, &from("203.0.113.1")).await.status(), 200);
    }
    let refused = get(&world, doc, &from("203.0.113.1")).await;
    assert_eq!(refused.status(), 429, "{}", ps.log());
    // Another client behind the same proxy has its own count.
    assert_eq!(get(&world, doc, &from("203.0.113.2")).await.status(), 200);

    // Not named: the forwarded address is the client's word, and the peer is counted.
    let ps = ps_edited(&world, "serve-rate-limit-untrusted", |text| {
        format!("{text}\n{rule}")
    });
    for ip in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(get(&world, doc, &from(ip)).await.status(), 200);
    }
    let refused = get(&world, doc, &from("203.0.113.3")).await;
    assert_eq!(refused.status(), 429, "{}", ps.log());
}

/// Two agent providers sharing their replay cache in Redis (`store = "redis://…"`): a
/// signed agent-token request one accepted is refused by the other.
#[tokio::test]
async fn agent_providers_on_one_redis_refuse_a_request_replayed_to_the_other() {
    let Some(url) = aauth_test_support::services::redis_url(
        "agent_providers_on_one_redis_refuse_a_request_replayed_to_the_other",
    ) else {
        return;
    };
    let dir = scratch("serve-provider-redis");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:0\"\nstore = \"{url}\""),
        ),
    )
    .unwrap();
    let a = Served::start(&dir, "agent-provider", &config);
    let b = Served::start(&dir, "agent-provider", &config);
    let assistant = PrivateKey::ed25519_from_seed(&[0x22; 32]);
    let mut req = Request::new(br#"{"agent":"aauth:assistant@agent.example"}"#.to_vec());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = "https://agent.example/agent-token".parse().unwrap();
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let now = aauth_keys::time::Clock::now(&aauth_keys::time::SystemClock);
    aauth_signing::sign_request_unique(
        &mut req,
        &assistant,
        &aauth_signing::hwk_scheme(assistant.public_key()),
        now,
        &mut aauth_keys::rand::OsRandom,
    )
    .unwrap();
    world.alias("agent.example", a.addr);
    let first = world.send(req.clone()).await.unwrap();
    assert_eq!(first.status(), 200, "{}", a.log());
    world.alias("agent.example", b.addr);
    let again = world.send(req).await.unwrap();
    assert_eq!(
        again.status(),
        401,
        "a replay at the other instance\n{}",
        b.log()
    );

    // Anything but memory or Redis is refused, by name.
    std::fs::write(
        dir.join("sqlite.toml"),
        text.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nstore = \"sqlite:p.sqlite\"",
        ),
    )
    .unwrap();
    assert_fails(
        &aauth(
            &dir,
            &["serve", "agent-provider", "--config", "sqlite.toml"],
        ),
        2,
        "keeps only its replay cache",
    );
}

/// `[[person_server.sign_in]]`: the served Person Server discovers its OpenID Provider
/// through the egress guard at start and offers it on the sign-in page, which then has no
/// password form (`password_sign_in = false`); choosing it sends the browser to the
/// provider as its client, to be called back at `/interact/oidc/callback`. (The whole
/// sign-in is demo 13's, and `tests/it/interop_mockin_oidc.rs`'s in Chromium.) An
/// account that could never sign in, and a provider that cannot be discovered, stop the
/// start with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_person_server_offers_its_openid_provider() {
    let dir = scratch("serve-oidc");
    let world = World::new().unwrap();
    let discovery = serde_json::json!({
        "issuer": "https://login.example",
        "authorization_endpoint": "https://login.example/authorize",
        "token_endpoint": "https://login.example/token",
        "jwks_uri": "https://login.example/jwks",
    })
    .to_string();
    world
        .serve_async(
            &aauth_tokens::ServerId::parse("https://login.example").unwrap(),
            Arc::new(move |req: Request| {
                let found = req.uri().path() == "/.well-known/openid-configuration";
                let body = discovery.clone();
                Box::pin(async move {
                    let mut r =
                        http::Response::new(if found { body.into_bytes() } else { Vec::new() });
                    if !found {
                        *r.status_mut() = http::StatusCode::NOT_FOUND;
                    }
                    r
                })
            }),
        )
        .await
        .unwrap();
    let login = world.names()["login.example"];
    let config = person_server_config(&world, &dir, &[("login.example", login)]);
    secret_file(dir.join("oidc.secret"), "s3cret\n");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "consent = \"auto-approve\"\n",
        "consent = \"auto-approve\"\npassword_sign_in = false\n",
    ) + "oidc = [{ issuer = \"https://login.example\", subject = \"alice-1\" }]\n\
           [[person_server.sign_in]]\nid = \"corp\"\nlabel = \"Example Corp\"\n\
           issuer = \"https://login.example\"\nclient_id = \"aauth-ps\"\n\
           client_secret_file = \"oidc.secret\"\nnew_accounts = \"linked-only\"\n";
    std::fs::write(&config, &text).unwrap();

    let ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);
    let get = |path: &str| {
        http::Request::get(format!("https://ps.example{path}"))
            .body(Vec::new())
            .unwrap()
    };
    let page = world.send(get("/interact?code=ABCD-EFGH")).await.unwrap();
    let html = String::from_utf8_lossy(page.body());
    assert!(
        html.contains("Sign in with Example Corp"),
        "{html}\n{}",
        ps.log()
    );
    assert!(!html.contains("type=\"password\""), "{html}");
    let started = world
        .send(get("/interact/oidc?provider=corp&code=ABCD-EFGH"))
        .await
        .unwrap();
    assert_eq!(started.status(), 303, "{}", ps.log());
    let to = started.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("https://login.example/authorize?")
            && to.contains("client_id=aauth-ps")
            && to.contains("redirect_uri=https%3A%2F%2Fps.example%2Finteract%2Foidc%2Fcallback")
            && to.contains("code_challenge_method=S256"),
        "{to}"
    );
    let form = http::Request::post("https://ps.example/interact/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"code=ABCD-EFGH&csrf=x&username=alice&password=correct".to_vec())
        .unwrap();
    assert_eq!(world.send(form).await.unwrap().status(), 404);
    drop(ps);

    // Misconfigurations stop the start, each with its reason; those that need no network
    // are `aauth config check`'s too.
    for (broken, needle, offline) in [
        (
            text.replace("password_file = \"alice.password\"\n", "")
                .replace(
                    "oidc = [{ issuer = \"https://login.example\", subject = \"alice-1\" }]\n",
                    "",
                ),
            "neither a password_file nor an oidc link",
            true,
        ),
        (
            text.replace(
                "issuer = \"https://login.example\"\nclient_id",
                "issuer = \"https://gone.example\"\nclient_id",
            ),
            "discovery at https://gone.example",
            false,
        ),
        (
            text.replace("id = \"corp\"", "id = \"Corp!\""),
            "not a provider id",
            true,
        ),
        (
            text.replace(
                "new_accounts = \"linked-only\"\n",
                "new_accounts = \"linked-only\"\nscope = \"email\"\n",
            ),
            "lacks openid",
            true,
        ),
    ] {
        std::fs::write(dir.join("broken.toml"), broken).unwrap();
        let d = dir.clone();
        let (served, checked) = tokio::task::spawn_blocking(move || {
            (
                aauth(&d, &["serve", "person-server", "--config", "broken.toml"]),
                aauth(&d, &["config", "check", "broken.toml"]),
            )
        })
        .await
        .unwrap();
        assert_fails(&served, 2, needle);
        if offline {
            assert_fails(&checked, 2, needle);
        } else {
            assert!(checked.status.success(), "{}", crate::stderr(&checked));
        }
    }
}

/// A declared account whose `password_file` is taken out of the configuration (it keeps
/// its OpenID Provider link) is no longer opened by its old password once the server
/// starts again on the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_taken_out_of_the_config_opens_nothing_after_a_restart() {
    let dir = scratch("serve-password-removed");
    let world = World::new().unwrap();
    let config = person_server_config(&world, &dir, &[]);
    let url = "https://ps.example/interact?code=ABCD-EFGH";
    let ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);
    let status = aauth_demos::process::sign_in(
        &world,
        url,
        "ABCD-EFGH",
        "alice",
        "correct horse battery staple",
    )
    .await
    .unwrap();
    assert_eq!(status, 303, "{}", ps.log());
    drop(ps);

    let text = std::fs::read_to_string(&config).unwrap().replace(
        "password_file = \"alice.password\"\n",
        "oidc = [{ issuer = \"https://login.example\", subject = \"alice-1\" }]\n",
    );
    std::fs::write(&config, text).unwrap();
    let ps = Served::start(&dir, "person-server", &config);
    world.alias("ps.example", ps.addr);
    let status = aauth_demos::process::sign_in(
        &world,
        url,
        "ABCD-EFGH",
        "alice",
        "correct horse battery staple",
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "the old password opens nothing\n{}", ps.log());
}
