//! The bounds a served role keeps that its configuration sets: the bytes of request
//! bodies its endpoints hold at once (`max_buffered_body_bytes`, `503` past it) and a
//! Person Server's requests waiting for a person from agents nobody there is bound to
//! (`[person_server] max_pending_per_provider`, `max_pending_total`, `429` past them).
//! Shown by `aauth config check` with their defaults, refused at 0 naming the key.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aauth_demos::world::World;

use crate::serve::{
    AgentProcess, Flow, Served, fetch_through, flow, key_file, person_server_config,
    plain_provider, provider_config,
};
use crate::{aauth, assert_fails, scratch, stdout};

/// `aauth config check` shows each bound with its default, and the value set; 0 (or a
/// budget below the largest body a role reads) is refused naming the key and its line, or
/// the variable that set it.
#[test]
fn config_check_shows_the_bounds_and_refuses_zero() {
    let dir = scratch("bounds-check");
    let world = World::new().unwrap();
    let provider = provider_config(&world, &dir);
    let ps = person_server_config(&world, &dir, &[]);
    let check =
        |config: &std::path::Path| aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    let o = check(&provider);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(
        stdout(&o).contains("max_buffered_body_bytes = 67108864"),
        "{}",
        stdout(&o)
    );
    let o = check(&ps);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    for shown in [
        "max_buffered_body_bytes = 67108864",
        "max_pending_per_provider = 256",
        "max_pending_total = 10000",
    ] {
        assert!(stdout(&o).contains(shown), "{shown} not in {}", stdout(&o));
    }

    let provider_text = std::fs::read_to_string(&provider).unwrap();
    let ps_text = std::fs::read_to_string(&ps).unwrap();
    let with = |path: &std::path::Path, text: String| {
        std::fs::write(path, text).unwrap();
        check(path)
    };
    // Values set are shown as set.
    let in_section =
        |lines: &str| ps_text.replace("[person_server]\n", &format!("[person_server]\n{lines}"));
    let o = with(
        &ps,
        format!(
            "max_buffered_body_bytes = 100000\n{}",
            in_section("max_pending_per_provider = 5\nmax_pending_total = 50\n")
        ),
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    for shown in [
        "max_buffered_body_bytes = 100000",
        "max_pending_per_provider = 5",
        "max_pending_total = 50",
    ] {
        assert!(stdout(&o).contains(shown), "{shown} not in {}", stdout(&o));
    }
    // Refused, each with its key and line.
    for (top, section, key) in [
        (
            "max_buffered_body_bytes = 0\n",
            "",
            "max_buffered_body_bytes",
        ),
        (
            "max_buffered_body_bytes = 65535\n",
            "",
            "max_buffered_body_bytes",
        ),
        (
            "",
            "max_pending_per_provider = 0\n",
            "person_server.max_pending_per_provider",
        ),
        (
            "",
            "max_pending_total = 0\n",
            "person_server.max_pending_total",
        ),
    ] {
        let text = format!("{top}{}", in_section(section));
        let set = if top.is_empty() { section } else { top };
        let line = 1 + text.lines().position(|l| l == set.trim_end()).unwrap();
        let o = with(&ps, text);
        assert_fails(&o, 2, &format!("{key}: "));
        assert!(
            crate::stderr(&o).contains(&format!(".toml, line {line}:")),
            "{}",
            crate::stderr(&o)
        );
        assert!(
            crate::stderr(&o).contains("at least"),
            "{}",
            crate::stderr(&o)
        );
    }
    // From the environment (no line), and at start.
    std::fs::write(&ps, &ps_text).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_aauth"))
        .args(["config", "check", ps.to_str().unwrap()])
        .current_dir(&dir)
        .env("AAUTH_PERSON_SERVER__MAX_PENDING_TOTAL", "0")
        .output()
        .unwrap();
    assert_fails(&o, 2, "person_server.max_pending_total: 0: at least 1");
    std::fs::write(
        &provider,
        format!("max_buffered_body_bytes = 0\n{provider_text}"),
    )
    .unwrap();
    let o = aauth(
        &dir,
        &[
            "serve",
            "agent-provider",
            "--config",
            provider.to_str().unwrap(),
        ],
    );
    assert_fails(&o, 2, "max_buffered_body_bytes: ");
}

/// A request's first line of answer, its body sent whole with its head (the request
/// closes the connection), and its `Retry-After`, if any.
fn answer(addr: SocketAddr, path: &str, bytes: usize) -> (String, Option<String>) {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = head(path, bytes);
    request.extend_from_slice(b"connection: close\r\n\r\n");
    request.extend(std::iter::repeat_n(b'x', bytes));
    // A server answering early may close before all is written: the answer still counts.
    let _ = conn.write_all(&request);
    let mut read = Vec::new();
    let _ = conn.read_to_end(&mut read);
    let read = String::from_utf8_lossy(&read);
    let status = read.lines().next().unwrap_or_default().to_owned();
    let retry = read.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after: ")
            .map(str::to_owned)
    });
    (status, retry)
}

/// The head of a `POST` to `path` announcing a body of `bytes`, but for its last line.
fn head(path: &str, bytes: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {bytes}\r\n"
    )
    .into_bytes()
}

/// `f` again until it says yes, for at most 10 seconds.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `served`, whose `max_buffered_body_bytes` is 65536: one request to `path` whose head
/// announces a 64 KiB body (that does not come) holds the whole budget, so a small body
/// meanwhile is answered `503` with `Retry-After: 1`, and answered by the endpoint once
/// that request is gone.
fn refuses_past_its_budget(served: &Served, path: &str) {
    let hold = || {
        let mut holding = std::net::TcpStream::connect(served.addr).unwrap();
        let mut held = head(path, 65536);
        held.extend_from_slice(b"\r\n");
        holding.write_all(&held).unwrap();
        holding.set_nonblocking(true).unwrap();
        holding
    };
    let mut holding = hold();
    let mut last = (String::new(), None);
    let refused = eventually(|| {
        // A probe read before the holder's head took part of the budget first, and the
        // holder was answered (`503`) instead: it holds again.
        let mut byte = [0u8; 1];
        if !matches!(holding.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        {
            holding = hold();
        }
        last = answer(served.addr, path, 100);
        last.0.starts_with("HTTP/1.1 503")
    });
    assert!(refused, "{path}: {last:?}\n{}", served.log());
    assert_eq!(last.1.as_deref(), Some("1"), "{last:?}");
    drop(holding);
    let answered = eventually(|| {
        last = answer(served.addr, path, 100);
        !last.0.is_empty() && !last.0.starts_with("HTTP/1.1 503")
    });
    assert!(answered, "{path}: {last:?}\n{}", served.log());
}

/// `max_buffered_body_bytes` bounds a role's bodies…
#[test]
fn a_role_past_its_body_budget_answers_503() {
    let world = World::new().unwrap();
    let top = "max_buffered_body_bytes = 65536";
    let served = plain_provider(&world, "bounds-budget", top);
    refuses_past_its_budget(&served, "/agent-token");
}

/// …and a resource proxy's own endpoints (its revocation endpoint here), whatever its
/// routes' budget (`[resource_proxy] max_buffered_body_bytes`, left at 64 MiB).
#[test]
fn a_resource_proxy_past_its_own_body_budget_answers_503() {
    let dir = scratch("bounds-proxy-budget");
    key_file(&dir, "proxy", 0x55);
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        "max_buffered_body_bytes = 65536\nid = \"https://resource.example\"\n\
         listen = \"127.0.0.1:0\"\nsigning_key_file = \"proxy.jwk\"\n\
         shutdown_deadline_secs = 2\n[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n\
         revoking_issuers = [\"https://ps.example\"]\n[[resource_proxy.routes]]\n\
         path = \"/agent/*\"\naccess = \"agent-token\"\n",
    )
    .unwrap();
    let served = Served::start(&dir, "resource-proxy", &config);
    refuses_past_its_budget(&served, "/aauth/revoke");
}

/// With `max_pending_per_provider = 1`, an agent no person is bound to waits for the
/// person (its approval link printed); a second request of its provider's agents while it
/// waits is refused `429`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_server_past_its_per_provider_bound_answers_429() {
    let dir = scratch("bounds-pending");
    let Flow {
        world,
        provider,
        resource,
        ps_config,
    } = flow(&dir, |text| {
        text.replace("consent = \"auto-approve\"", "consent = \"ask\"")
            .replace("agents = [\"aauth:assistant@agent.example\"]\n", "")
            .replace(
                "[person_server]\n",
                "[person_server]\nmax_pending_per_provider = 1\n",
            )
    })
    .await;
    let ps = Served::start(&dir, "person-server", &ps_config);
    world.alias("ps.example", ps.addr);
    let addrs = [provider.addr, ps.addr, resource];
    let waiting = AgentProcess::start(&dir, addrs);
    let _ = waiting.next_prompt("first");
    let o = fetch_through(&dir, addrs).await;
    let said = crate::stderr(&o);
    waiting.stop();
    assert!(!o.status.success(), "{}\n{said}", stdout(&o));
    assert!(
        said.contains("429") || said.contains("rate_limited"),
        "{said}\nPS log:\n{}",
        ps.log()
    );
    assert!(ps.log().contains("\"status\":429"), "{}", ps.log());
}
