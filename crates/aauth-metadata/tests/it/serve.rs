//! `EndpointService` reading bodies: one buffer whatever the framing, each frame let go
//! as it is copied, the bodies held at once bounded by a `BodyBudget` (`503` past it,
//! the bytes given back once answered).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aauth_keys::time::{FixedClock, UnixTime};
use aauth_metadata::budget::BodyBudget;
use aauth_metadata::serve::{Endpoint, EndpointService, Routed};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tower_service::Service;

/// Answers `/echo` with the body's length and its bytes; waits for `gate` first when
/// given one.
struct Echo {
    gate: Option<Arc<tokio::sync::Notify>>,
    entered: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Endpoint for Echo {
    async fn respond(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        _: UnixTime,
    ) -> Option<http::Response<Bytes>> {
        if parts.uri.path() != "/echo" {
            return None;
        }
        self.entered.notify_one();
        if let Some(gate) = &self.gate {
            gate.notified().await;
        }
        let mut answer = format!("{} ", body.len()).into_bytes();
        answer.extend_from_slice(body);
        Some(http::Response::new(Bytes::from(answer)))
    }
}

fn service(
    gate: Option<Arc<tokio::sync::Notify>>,
) -> (EndpointService<Echo>, Arc<tokio::sync::Notify>) {
    let entered = Arc::new(tokio::sync::Notify::new());
    let echo = Echo {
        gate,
        entered: Arc::clone(&entered),
    };
    let svc = EndpointService::new(Arc::new(echo), Arc::new(FixedClock::new(UnixTime(0))));
    (svc, entered)
}

/// One byte of a body, counted while it is alive.
struct Tracked(Arc<AtomicUsize>);

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        b"x"
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type Frames = StreamBody<
    futures_util::stream::Iter<
        std::iter::Map<std::ops::Range<usize>, Box<dyn FnMut(usize) -> FrameResult + Send>>,
    >,
>;
type FrameResult = Result<Frame<Bytes>, std::io::Error>;

/// A body of `n` one-byte frames with no length announced (HTTP/1.1 chunks, HTTP/2
/// `DATA` frames), and the most frames alive at once when each next one was made.
fn one_byte_frames(n: usize) -> (Frames, Arc<AtomicUsize>) {
    let live = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (l, m) = (Arc::clone(&live), Arc::clone(&most));
    let make: Box<dyn FnMut(usize) -> FrameResult + Send> = Box::new(move |_| {
        let alive = l.fetch_add(1, Ordering::SeqCst);
        m.fetch_max(alive, Ordering::SeqCst);
        Ok(Frame::data(Bytes::from_owner(Tracked(Arc::clone(&l)))))
    });
    (
        StreamBody::new(futures_util::stream::iter((0..n).map(make))),
        most,
    )
}

async fn text(resp: http::Response<Full<Bytes>>) -> String {
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// 4096 one-byte frames are answered as the body they make; no frame is kept once its
/// byte is copied (a list of frames cost ~32 bytes of bookkeeping per byte, and pinned
/// each frame's share of the connection's receive buffer).
#[tokio::test]
async fn a_body_in_one_byte_frames_is_read_into_one_buffer_letting_each_frame_go() {
    let (mut svc, _) = service(None);
    let (body, most) = one_byte_frames(4096);
    let req = http::Request::post("/echo").body(body).unwrap();
    let resp = svc.call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.extensions().get::<Routed>().is_some(),
        "the role's own answer"
    );
    assert_eq!(text(resp).await, format!("4096 {}", "x".repeat(4096)));
    assert!(
        most.load(Ordering::SeqCst) <= 1,
        "{} frames alive at once",
        most.load(Ordering::SeqCst)
    );
}

/// Past the budget, `503` with `Retry-After: 1`, the endpoint never asked; the bytes
/// taken are given back, and a body within it is then read.
#[tokio::test]
async fn a_body_past_the_budget_is_refused_503_and_gives_its_bytes_back() {
    let budget = BodyBudget::new(1024);
    let (svc, _) = service(None);
    let mut svc = svc.body_budget(budget.clone());
    let (body, _) = one_byte_frames(1025);
    let resp = svc
        .call(http::Request::post("/echo").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.extensions().get::<Routed>().is_none());
    assert!(text(resp).await.contains("temporarily_unavailable"));
    assert_eq!(budget.available(), 1024, "given back");
    // A body of announced length takes its length, no more.
    let body = Full::new(Bytes::from(vec![b'y'; 1024]));
    let resp = svc
        .call(http::Request::post("/echo").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(budget.available(), 1024, "given back once answered");
    // Growing by doubling, 1000 one-byte frames take 1024.
    let (body, _) = one_byte_frames(1000);
    let resp = svc
        .call(http::Request::post("/echo").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(budget.available(), 1024);
}

/// Bodies held at once share the budget: while one is being answered, another that
/// would take the rest past it is refused; once the first is answered it is read.
#[tokio::test]
async fn bodies_held_at_once_share_one_budget() {
    let budget = BodyBudget::new(1000);
    let gate = Arc::new(tokio::sync::Notify::new());
    let (svc, entered) = service(Some(Arc::clone(&gate)));
    let svc = svc.body_budget(budget.clone());
    let mut first = svc.clone();
    let held = tokio::spawn(async move {
        let body = Full::new(Bytes::from(vec![b'a'; 600]));
        first
            .call(http::Request::post("/echo").body(body).unwrap())
            .await
            .unwrap()
    });
    entered.notified().await;
    assert_eq!(
        budget.available(),
        400,
        "the first body's 600 are held while it is answered"
    );
    let mut second = svc.clone();
    let body = Full::new(Bytes::from(vec![b'b'; 600]));
    let resp = second
        .call(http::Request::post("/echo").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    gate.notify_one();
    assert_eq!(held.await.unwrap().status(), 200);
    assert_eq!(budget.available(), 1000);
    // Now it fits (the endpoint waits for the gate again: let it through).
    let mut third = svc.clone();
    let body = Full::new(Bytes::from(vec![b'c'; 600]));
    let answer = tokio::spawn(async move {
        third
            .call(http::Request::post("/echo").body(body).unwrap())
            .await
            .unwrap()
    });
    entered.notified().await;
    gate.notify_one();
    assert_eq!(answer.await.unwrap().status(), 200);
}

/// The body limit still holds, announced or not: `413`, nothing held after.
#[tokio::test]
async fn a_body_past_the_limit_is_413_announced_or_not() {
    let budget = BodyBudget::new(1 << 20);
    let (svc, _) = service(None);
    let mut svc = svc.body_limit(100).body_budget(budget.clone());
    let announced = Full::new(Bytes::from(vec![b'z'; 101]));
    let resp = svc
        .call(http::Request::post("/echo").body(announced).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let (frames, _) = one_byte_frames(101);
    let resp = svc
        .call(http::Request::post("/echo").body(frames).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let (frames, _) = one_byte_frames(100);
    let resp = svc
        .call(http::Request::post("/echo").body(frames).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(budget.available(), 1 << 20);
    // A path the endpoint does not serve: `404`, not marked as a route's answer.
    let resp = svc
        .call(
            http::Request::get("/nothing")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.extensions().get::<Routed>().is_none());
}
