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
struct Served {
    child: Child,
    addr: SocketAddr,
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
    fn start(dir: &Path, role: &str, config: &Path) -> Self {
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

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM; the exit status, or `None` if it did not exit within `within`.
    fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
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
fn key_file(dir: &Path, name: &str, seed: u8) -> (PathBuf, PrivateKey) {
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

/// The TLS files for `host` from the world's CA.
fn tls_files(world: &World, dir: &Path, host: &str) -> String {
    let (cert, key) = world.issue_pem(host).unwrap();
    std::fs::write(dir.join(format!("{host}.crt")), cert).unwrap();
    std::fs::write(dir.join(format!("{host}.key")), key).unwrap();
    format!("[tls]\ncert_file = \"{host}.crt\"\nkey_file = \"{host}.key\"\n")
}

/// An agent provider's configuration in `dir`, enrolling the assistant (seed 0x22).
fn provider_config(world: &World, dir: &Path) -> PathBuf {
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

async fn get(world: &World, url: &str, headers: &[(&str, &str)]) -> aauth_demos::world::Response {
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
    assert_fails(
        &aauth(&dir, &["config", "check", "nokey.toml"]),
        3,
        "missing.jwk",
    );
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
