//! The `aauth` command, run as a subprocess: what it prints, the files it writes, its exit
//! codes, and that bad input is one clear line, never a panic.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod admin;
mod bodies;
mod bounds;
mod config_checks;
mod connections;
mod fetch;
mod keys;
mod limits;
mod messages;
#[cfg(feature = "otel")]
mod otel;
mod postgres;
mod proxy;
mod serve;
mod token;

use std::path::{Path, PathBuf};
use std::process::Output;

/// Runs `aauth args…` in `dir` (standard input empty).
pub(crate) fn aauth(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the aauth binary runs")
}

/// Runs `aauth args…` with `input` on standard input.
pub(crate) fn aauth_with_input(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the aauth binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure: the exit code, one `aauth:` line naming `needle`, no panic.
#[track_caller]
pub(crate) fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// A fresh directory for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aauth-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn help_lists_the_commands_and_the_exit_codes() {
    let dir = scratch("help");
    let o = aauth(&dir, &["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for word in ["keygen", "jwk", "token", "completions", "Exit codes"] {
        assert!(out.contains(word), "{word}: {out}");
    }
    for sub in [
        &["keygen", "--help"][..],
        &["jwk", "thumbprint", "--help"],
        &["token", "decode", "--help"],
        &["token", "verify", "--help"],
    ] {
        let o = aauth(&dir, sub);
        assert!(o.status.success(), "{sub:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage: aauth"), "{sub:?}");
    }
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let dir = scratch("unknown-flag");
    let o = aauth(&dir, &["token", "decode", "--frobnicate", "x"]);
    assert_fails(&o, 2, "--frobnicate");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = scratch("completions");
    for shell in ["bash", "zsh", "fish"] {
        let o = aauth(&dir, &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(
            script.contains("aauth") && script.contains("keygen"),
            "{shell}"
        );
    }
}

/// An HTTP/2 client connection over TLS to `addr`, which answers as `name` under the
/// world's CA, and the task driving it (it ends with the connection).
pub(crate) async fn connect_h2<B>(
    world: &aauth_demos::world::World,
    addr: std::net::SocketAddr,
    name: &'static str,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
)
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(world.roots())
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name.try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}
