//! A peer that runs as a Node process on loopback (`tests/interop/{peer}/run.mjs`), and the
//! TLS-terminating shim that serves it under a world name.
//!
//! The process speaks plain HTTP on a port it picks (`PORT=0`) and prints; it is killed
//! and reaped when the [`NodePeer`] drops (also when a test panics), and `run.mjs` exits
//! by itself when its stdin, held here, closes, should this process die without
//! unwinding. Without Node or the installed package a test skips loudly, unless `CI` is
//! set or `AAUTH_REQUIRE_INTEROP=1`: then it fails.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aauth_demos::world::{AsyncHandler, Request, Response, http1_exchange};
use serde_json::Value;

/// Whether peers must run here: in CI (`CI` set) or under `AAUTH_REQUIRE_INTEROP=1`.
pub(crate) fn required() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    ci || std::env::var("AAUTH_REQUIRE_INTEROP").as_deref() == Ok("1")
}

/// A Node peer installed under `tests/interop/{dir}` from its lock file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodePackage {
    /// The directory under `tests/interop/`.
    pub dir: &'static str,
    /// The npm package whose version is pinned.
    pub package: &'static str,
    /// The version `package.json` pins; a different install fails.
    pub version: &'static str,
}

impl NodePackage {
    pub(crate) fn dir(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("interop")
            .join(self.dir)
    }

    /// Whether the peer can run; otherwise a loud skip (or a failure when required).
    pub(crate) fn available(&self) -> bool {
        let node = Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let installed = self
            .dir()
            .join("node_modules")
            .join(self.package)
            .join("package.json");
        let why = if !node {
            "node is not installed".to_owned()
        } else {
            match std::fs::read_to_string(installed) {
                Ok(text) => {
                    let version = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["version"].as_str().map(str::to_owned));
                    assert_eq!(
                        version.as_deref(),
                        Some(self.version),
                        "tests/interop/{}/node_modules holds another {} than the pinned one (run `cargo xtask ci interop-deps`)",
                        self.dir,
                        self.package
                    );
                    return true;
                }
                Err(_) => format!(
                    "tests/interop/{}/node_modules is missing (run `cargo xtask ci interop-deps`)",
                    self.dir
                ),
            }
        };
        assert!(
            !required(),
            "interop with {} is required here (CI or AAUTH_REQUIRE_INTEROP=1) but cannot run: {why}",
            self.package
        );
        // Straight to the process's stderr, past the test harness's capture: a skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED interop with {} {}: {why}. Nothing was checked against it.\n",
            self.package,
            self.version
        );
        false
    }
}

/// A running Node peer.
pub(crate) struct NodePeer {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl NodePeer {
    /// Starts `node run.mjs` in the package's directory with `env` and `PORT=0`; the port
    /// is read from the first log line that starts with `marker` (no port is picked here
    /// and raced for). Returns once `ready` answers `200` for a `GET` of `path` with
    /// `Host: host` (the peer's own name, as the shim will send it).
    pub(crate) async fn start(
        package: NodePackage,
        env: &[(&str, &str)],
        marker: &str,
        host: &str,
        path: &str,
    ) -> Self {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let log = std::env::temp_dir().join(format!(
            "aauth-{}-{}-{}.log",
            package.dir,
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let out = std::fs::File::create(&log).expect("the peer's log file");
        let err = out.try_clone().expect("the peer's log file");
        let mut cmd = Command::new("node");
        cmd.arg("run.mjs")
            .current_dir(package.dir())
            .env("PORT", "0")
            .env("IP", "127.0.0.1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("node starts");
        let mut peer = Self {
            child,
            port: 0,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if peer.port == 0 {
                peer.port = peer
                    .log_text()
                    .split(marker)
                    .nth(1)
                    .and_then(|rest| rest.lines().next())
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or(0);
            }
            if peer.port != 0 {
                let req = http::Request::builder()
                    .uri(path)
                    .header(http::header::HOST, host)
                    .header("x-forwarded-proto", "https")
                    .body(Vec::new())
                    .expect("a request");
                if forward(peer.port, req, None)
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    return peer;
                }
            }
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!(
                    "{} exited ({status}) before answering: {}",
                    package.package,
                    peer.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within 20 s: {}",
                package.package,
                peer.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process (as a server that goes down).
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the peer again after [`NodePeer::stop`], with `env`, on the port it had:
    /// the shim, which holds that port, reaches it again (a server that comes back).
    pub(crate) async fn restart(
        &mut self,
        package: NodePackage,
        env: &[(&str, &str)],
        marker: &str,
        host: &str,
        path: &str,
    ) {
        let port = self.port.to_string();
        let mut env = env.to_vec();
        env.push(("PORT", &port));
        *self = Self::start(package, &env, marker, host, path).await;
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The TLS shim: each request the world's TLS front receives for the peer's name,
    /// forwarded as it is (target, `Host` and body) to the peer's socket, with
    /// `X-Forwarded-Proto: https` added when `forwarded_proto` (for a server that builds
    /// its URLs from it).
    pub(crate) fn shim(&self, forwarded_proto: bool) -> AsyncHandler {
        let port = self.port;
        Arc::new(move |req: Request| {
            Box::pin(async move {
                let proto = forwarded_proto.then_some("https");
                forward(port, req, proto).await.unwrap_or_else(|e| {
                    let mut r = http::Response::new(format!("peer unreachable: {e}").into_bytes());
                    *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                    r
                })
            })
        })
    }
}

/// Sends `req` as it is (target and `Host` unchanged, `X-Forwarded-Proto` set when given)
/// over plain HTTP/1.1 to `127.0.0.1:{port}`.
pub(crate) async fn forward(
    port: u16,
    req: Request,
    forwarded_proto: Option<&str>,
) -> Result<Response, String> {
    let tcp = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|e| e.to_string())?;
    let (mut parts, body) = req.into_parts();
    if let Some(proto) = forwarded_proto {
        parts.headers.insert(
            "x-forwarded-proto",
            http::HeaderValue::from_str(proto).map_err(|e| e.to_string())?,
        );
    }
    http1_exchange(tcp, http::Request::from_parts(parts, body)).await
}
