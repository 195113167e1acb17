//! What a served role holds of a client's requests: a body sent in one-byte HTTP/1.1
//! chunks or HTTP/2 `DATA` frames is answered as the same body sent at once; an HTTP/1.1
//! head is read up to 64 KiB (`431` past it); an HTTP/2 connection has at most 32
//! requests open at once.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aauth_demos::world::World;
use bytes::Bytes;
use http_body::Frame;

use crate::scratch;
use crate::serve::{Served, plain_provider, provider_config};

/// `request` written to `addr` over plain HTTP/1.1 (the request closes the connection):
/// the answer's status line.
fn status_of(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A server answering early may close before all is written: the answer still counts.
    let _ = conn.write_all(request);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

fn chunked(path: &str, bytes: usize) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: agent.example\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..bytes {
        r.extend_from_slice(b"1\r\nx\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

fn at_once(path: &str, bytes: usize) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: agent.example\r\ncontent-type: application/json\r\ncontent-length: {bytes}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', bytes));
    r
}

/// A body of 20 000 one-byte chunks gets the role's own answer, the one it gives the same
/// body sent at once; one past the 64 KiB limit in one-byte chunks is `413`.
#[test]
fn a_body_in_one_byte_chunks_is_answered_as_the_same_body_at_once() {
    let world = World::new().unwrap();
    let served = plain_provider(&world, "bodies-chunks", "");
    let whole = status_of(served.addr, &at_once("/agent-token", 20_000));
    let chunks = status_of(served.addr, &chunked("/agent-token", 20_000));
    assert_eq!(chunks, whole, "{}", served.log());
    assert!(!whole.contains(" 413") && !whole.contains(" 503") && !whole.is_empty());
    let past = status_of(served.addr, &chunked("/agent-token", 64 * 1024 + 1));
    assert!(past.starts_with("HTTP/1.1 413"), "{past}");
}

/// A request head of 40 KiB (tokens and signatures at their caps fit well within) is
/// read; one past 64 KiB is `431` (hyper's default read ~408 KiB of it).
#[test]
fn an_http1_head_is_read_up_to_64_kib() {
    let world = World::new().unwrap();
    let served = plain_provider(&world, "bodies-head", "");
    let head = |pad: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nhost: agent.example\r\nx-pad: {}\r\nconnection: close\r\n\r\n",
            "a".repeat(pad)
        )
        .into_bytes()
    };
    let fits = status_of(served.addr, &head(40 * 1024));
    assert!(fits.starts_with("HTTP/1.1 200"), "{fits}");
    let past = status_of(served.addr, &head(70 * 1024));
    assert!(past.starts_with("HTTP/1.1 431"), "{past}");
}

/// A body of `left` one-byte frames; then, if `release` is given, nothing more until it
/// fires.
struct Drip {
    left: usize,
    release: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl http_body::Body for Drip {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left > 0 {
            self.left -= 1;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))));
        }
        if let Some(release) = self.release.as_mut() {
            if Pin::new(release).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.release = None;
        }
        Poll::Ready(None)
    }
}

use std::future::Future as _;

fn post(body: Drip) -> http::Request<Drip> {
    http::Request::post("https://agent.example/agent-token")
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

fn get_health() -> http::Request<Drip> {
    http::Request::get("https://agent.example/healthz")
        .body(Drip {
            left: 0,
            release: None,
        })
        .unwrap()
}

fn tls_provider(world: &World, name: &str) -> Served {
    let dir = scratch(name);
    Served::start(&dir, "agent-provider", &provider_config(world, &dir))
}

/// 1000 one-byte `DATA` frames get the answer the same body gets in one; an HTTP/2
/// connection has at most 32 requests open at once: a 33rd waits until one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_small_frames_are_answered_and_streams_are_bounded() {
    let world = World::new().unwrap();
    let served = tls_provider(&world, "bodies-h2");
    let (mut sender, _conn) = crate::connect_h2::<Drip>(&world, served.addr, "agent.example").await;
    // The server's SETTINGS are in before anything is counted.
    let health = sender.send_request(get_health()).await.unwrap();
    assert_eq!(health.status(), 200);
    let frames = sender
        .send_request(post(Drip {
            left: 1_000,
            release: None,
        }))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", served.log()));
    let (release, stalled) = tokio::sync::oneshot::channel();
    let whole = sender.send_request(post(Drip {
        left: 1_000,
        release: Some(stalled),
    }));
    release.send(()).unwrap();
    let whole = whole.await.unwrap();
    assert_eq!(frames.status(), whole.status(), "{}", served.log());
    assert_ne!(frames.status(), 413);
    assert_ne!(frames.status(), 503);
    // 32 requests whose bodies do not end.
    let mut releases = Vec::new();
    let mut open = Vec::new();
    for _ in 0..32 {
        let (release, stalled) = tokio::sync::oneshot::channel();
        releases.push(release);
        sender.ready().await.unwrap();
        open.push(tokio::spawn(sender.send_request(post(Drip {
            left: 1,
            release: Some(stalled),
        }))));
    }
    let mut waiting = sender.clone();
    let late = tokio::spawn(async move {
        waiting.ready().await.unwrap();
        waiting.send_request(get_health()).await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !late.is_finished(),
        "a 33rd request was served with 32 open"
    );
    let first = releases.remove(0);
    first.send(()).unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(20), late)
        .await
        .expect("served once a stream ended")
        .unwrap()
        .unwrap();
    assert_eq!(answered.status(), 200);
    drop(releases);
    for o in open {
        o.abort();
    }
}
