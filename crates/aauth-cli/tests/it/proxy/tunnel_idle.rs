//! `tunnel_idle_timeout_secs`: a WebSocket's tunnel where nothing passes either way for
//! that long is closed, both halves (the client and the upstream each see their end),
//! whether it was opened over HTTP/1.1 or HTTP/2; one that keeps sending more often stays
//! open past it.

use super::websocket_h2::{send_h2, websocket};
use super::*;

/// The idle time configured (`tunnel_idle_timeout_secs = 1`), less a margin for the
/// granularity of the proxy's timer.
const IDLE: Duration = Duration::from_millis(950);

/// A WebSocket through the proxy at `/agent/ws` (the upstream echoes), over HTTP/1.1.
async fn open_h1(s: &AgentSetup) -> TokioIo<hyper::upgrade::Upgraded> {
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let resp = signed_send(&s.world, s.proxy.addr, "/agent/ws", &ws).await;
    assert_eq!(resp.status(), 101, "{}", s.proxy.log());
    TokioIo::new(hyper::upgrade::on(resp).await.unwrap())
}

/// The same over HTTP/2 (an extended `CONNECT`).
async fn open_h2(s: &AgentSetup) -> TokioIo<hyper::upgrade::Upgraded> {
    let resp = send_h2(&s.world, s.proxy.addr, websocket("/agent/ws", true)).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", s.proxy.log());
    TokioIo::new(hyper::upgrade::on(resp).await.unwrap())
}

/// Sends `msg` through the tunnel and reads it echoed back: when it was sent.
async fn echo_through(io: &mut TokioIo<hyper::upgrade::Upgraded>, msg: &[u8]) -> Instant {
    let sent = Instant::now();
    io.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut back))
        .await
        .expect("the echo came back")
        .expect("the tunnel is open");
    assert_eq!(back, msg);
    sent
}

/// Waits for the tunnel to end (nothing arriving first): when it did.
async fn ended(io: &mut TokioIo<hyper::upgrade::Upgraded>, log: &dyn Fn() -> String) -> Instant {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the idle tunnel was kept open\n{}", log()));
    // The end of the stream, or (an HTTP/2 stream reset) an error: nothing read.
    assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
    Instant::now()
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_both_ways_and_a_busy_one_stays_open() {
    let s = AgentSetup::start_with("proxy-tunnel-idle", |text| {
        text.replace(
            "request_timeout_secs = 2\n",
            "request_timeout_secs = 2\ntunnel_idle_timeout_secs = 1\n",
        )
    })
    .await;
    let log = || s.proxy.log();
    // Each tunnel is held (returned) until the upstream has seen all three end: the end
    // it sees is the proxy's doing, not the client's.
    let idle = |over_h2: bool| {
        let (s, log) = (&s, &log);
        async move {
            let mut io = if over_h2 {
                open_h2(s).await
            } else {
                open_h1(s).await
            };
            let last = echo_through(&mut io, b"once").await;
            let closed = ended(&mut io, log).await;
            assert!(
                closed.duration_since(last) >= IDLE,
                "closed after {:?}",
                closed.duration_since(last)
            );
            io
        }
    };
    // Bytes every 300 ms for 2.5 s keep a tunnel with an idle time of 1 s open.
    let busy = async {
        let mut io = open_h1(&s).await;
        let opened = Instant::now();
        while opened.elapsed() < Duration::from_millis(2500) {
            echo_through(&mut io, b"ping").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let last = echo_through(&mut io, b"still open").await;
        let closed = ended(&mut io, &log).await;
        assert!(closed.duration_since(last) >= IDLE);
        io
    };
    let tunnels = tokio::join!(idle(false), idle(true), busy);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.seen.tunnels_ended.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the upstream saw {} of 3 tunnels end\n{}",
            s.seen.tunnels_ended.load(Ordering::SeqCst),
            s.proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tunnels);
}
