//! What one client may hold of a served process's connections: its share of
//! `max_connections` (`max_connections_per_client`), and the metrics listener's own cap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use aauth_demos::world::World;

use crate::scratch;
use crate::serve::{Served, free_port, provider_config, scrape};

/// An agent provider over plain HTTP with `top` before its configuration and metrics on
/// `metrics`.
fn provider(world: &World, name: &str, top: &str, metrics: u16) -> Served {
    let dir = scratch(name);
    let config = provider_config(world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    let plain: Vec<&str> = text
        .lines()
        .filter(|l| {
            !(l.starts_with("[tls]") || l.starts_with("cert_file") || l.starts_with("key_file"))
        })
        .collect();
    std::fs::write(
        &config,
        format!(
            "{top}\n{}\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
            plain.join("\n")
        ),
    )
    .unwrap();
    Served::start(&dir, "agent-provider", &config)
}

/// A connection to `to` from the loopback address `from` (any of 127.0.0.0/8 on Linux).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let stream = socket.connect(to).await.unwrap().into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// `GET /healthz` on `s`: what came back before the server closed the connection (an
/// empty answer when it closed it unanswered, or reset it).
fn healthz(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ =
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: agent.example\r\nconnection: close\r\n\r\n");
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Past `max_connections_per_client`, a client's next connection is closed at once (and
/// counted), while another client, a trusted proxy, and the same client once one of its
/// connections closed are served.
#[test]
fn one_client_cannot_hold_every_connection() {
    let world = World::new().unwrap();
    let metrics = free_port();
    let served = provider(
        &world,
        "connections-per-client",
        "max_connections_per_client = 2\ntrusted_proxies = [\"127.0.0.3\"]",
        metrics,
    );
    let to = served.addr;
    // Two held open, saying nothing: the client's share.
    let first = connect_from("127.0.0.1", to);
    let _second = connect_from("127.0.0.1", to);
    let started = Instant::now();
    let third = healthz(connect_from("127.0.0.1", to));
    assert!(third.is_empty(), "{third}\n{}", served.log());
    assert!(started.elapsed() < Duration::from_secs(5), "not at once");
    // Another address has its own share.
    let other = healthz(connect_from("127.0.0.2", to));
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // A trusted proxy has none.
    let _held: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.3", to)).collect();
    let proxied = healthz(connect_from("127.0.0.3", to));
    assert!(proxied.starts_with("HTTP/1.1 200"), "{proxied}");
    // A connection closed gives its place back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let answer = healthz(connect_from("127.0.0.1", to));
        if !answer.is_empty() || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        again.starts_with("HTTP/1.1 200"),
        "{again}\n{}",
        served.log()
    );
    let text = scrape(metrics);
    let refused = text
        .lines()
        .find(|l| l.starts_with("aauth_connections_refused_total{reason=\"client_share\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    let count: f64 = refused.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{refused}");
}

/// `max_connections_per_client = 0` is refused, naming it.
#[test]
fn a_share_of_no_connection_is_refused() {
    let dir = scratch("connections-per-client-zero");
    let world = World::new().unwrap();
    let config = provider_config(&world, &dir);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("max_connections_per_client = 0\n{text}")).unwrap();
    let o = crate::aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    crate::assert_fails(&o, 2, "max_connections_per_client: 0");
}

/// The metrics listener serves a few connections at once, each closed when its request's
/// head does not come within `header_timeout_secs`: stalled connections up to its cap
/// hold a scrape back only until they are dropped, and one under the cap is answered.
#[test]
fn the_metrics_listener_is_capped_and_drops_stalled_connections() {
    let world = World::new().unwrap();
    let metrics = free_port();
    let _served = provider(
        &world,
        "connections-metrics",
        "header_timeout_secs = 1",
        metrics,
    );
    assert!(scrape(metrics).contains("# TYPE"));
    // Under the cap: answered at once.
    let stalled: Vec<TcpStream> = (0..7)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: m").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    scrape(metrics);
    assert!(started.elapsed() < Duration::from_millis(900));
    // At the cap: the scrape waits for a stalled connection to be dropped.
    let mut full = stalled;
    full.push(TcpStream::connect(("127.0.0.1", metrics)).unwrap());
    let started = Instant::now();
    scrape(metrics);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    for mut s in full {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let closed = s.read_to_end(&mut rest);
        assert!(
            closed.as_ref().map_or_else(
                |e| e.kind() == std::io::ErrorKind::ConnectionReset,
                |_| true
            ),
            "{closed:?}"
        );
    }
}
