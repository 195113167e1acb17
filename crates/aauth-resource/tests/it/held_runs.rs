//! What a held call's run leaves behind: whatever ends it (its response, a failure of
//! the service behind the layer, a poll dropped while it ran) is its result, kept and
//! replayed to the auth token that ran it, never a second run (draft -11 §8.2: a repeat
//! is answered from the stored result); and a result is kept only up to a cap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use aauth_headers::Scheme;
use aauth_resource::{
    AAuthLayer, DEFAULT_MAX_HELD_RESULT, DeferredAuth, HeldStore, MemoryHeldStore, RedisHeldStore,
};
use aauth_test_support::time::fixed_clock;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::modes::{Modes, modes};
use crate::shared::redis;
use crate::{header, signed};

/// What the service behind the layer does when a held call runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    /// Fails (an upstream that could not be reached).
    Fail,
    /// Answers, and its body breaks while it is read.
    BreakBody,
    /// Never answers (the poll is dropped while it runs).
    Hang,
    /// Answers `200` with a body of this many bytes.
    Answer(usize),
    /// Answers `200` with a body of this many bytes once the test releases it
    /// ([`Inner::release`]).
    AnswerWhenReleased(usize),
}

/// A service behind the layer doing its `act`, counting its calls.
#[derive(Clone)]
pub(crate) struct Inner {
    act: Act,
    calls: Arc<AtomicUsize>,
    started: Arc<tokio::sync::Notify>,
    released: Arc<tokio::sync::Notify>,
}

impl Inner {
    pub(crate) fn new(act: Act) -> Self {
        Self {
            act,
            calls: Arc::default(),
            started: Arc::default(),
            released: Arc::default(),
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Until a call has started (one that hangs or waits to be released).
    pub(crate) async fn started(&self) {
        self.started.notified().await;
    }

    /// Lets a call waiting to be released answer.
    pub(crate) fn release(&self) {
        self.released.notify_one();
    }
}

/// A response body that is whole, or breaks when read.
pub(crate) enum Flaky {
    Whole(Full<Bytes>),
    Broken,
}

impl From<Bytes> for Flaky {
    fn from(b: Bytes) -> Self {
        Self::Whole(Full::new(b))
    }
}

impl http_body::Body for Flaky {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Self::Whole(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Self::Broken => Poll::Ready(Some(Err(std::io::Error::other("the upstream went away")))),
        }
    }
}

impl Service<Request<Full<Bytes>>> for Inner {
    type Response = Response<Flaky>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Flaky>, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (act, started) = (self.act, Arc::clone(&self.started));
        let released = Arc::clone(&self.released);
        Box::pin(async move {
            match act {
                Act::Fail => Err(std::io::Error::other("the upstream refused the connection")),
                Act::BreakBody => Ok(Response::new(Flaky::Broken)),
                Act::Hang => {
                    started.notify_one();
                    std::future::pending().await
                }
                Act::Answer(n) => Ok(Response::new(Flaky::from(Bytes::from(vec![b'r'; n])))),
                Act::AnswerWhenReleased(n) => {
                    started.notify_one();
                    released.notified().await;
                    Ok(Response::new(Flaky::from(Bytes::from(vec![b'r'; n]))))
                }
            }
        })
    }
}

pub(crate) type Svc = aauth_resource::AAuthService<Inner>;

/// A deferring layer over `store` in front of `inner`, with `tune` applied to the
/// deferral settings.
pub(crate) fn service(
    m: &Modes,
    store: Arc<dyn HeldStore>,
    inner: &Inner,
    tune: impl FnOnce(DeferredAuth) -> DeferredAuth,
) -> Svc {
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    AAuthLayer::new(
        resource.route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        fixed_clock(),
    )
    .defer_auth_token(tune(DeferredAuth::new(store, "/aauth/pending/")))
    .layer(inner.clone())
}

pub(crate) async fn send(svc: &mut Svc, req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let resp = svc.call(req).await.unwrap();
    let (p, b) = resp.into_parts();
    let b = b.collect().await.unwrap().to_bytes();
    (p.status, String::from_utf8_lossy(&b).into_owned())
}

/// Holds a POST through `svc` and answers its pending URL and the auth token to poll it
/// with.
pub(crate) async fn held(m: &Modes, svc: &mut Svc) -> (String, Scheme) {
    let person = Scheme::jwt(m.person_token().token);
    let resp = svc
        .call(signed("POST", "/doc", b"{}", &m.w.agent, &person))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(resp.headers(), "location");
    (location, Scheme::jwt(m.auth_token("write").token))
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["error"].as_str().unwrap_or_default().to_owned()
}

/// A call whose service fails, or whose response breaks while it is read, may have acted:
/// the failure is its result (`500 server_error`), replayed to every repeat, and it never runs again.
async fn a_failed_run_is_its_result(store: Arc<dyn HeldStore>, act: Act) {
    let m = modes();
    let inner = Inner::new(act);
    let mut svc = service(&m, store, &inner, |d| d);
    let (location, auth) = held(&m, &mut svc).await;
    for _ in 0..3 {
        let (s, body) = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &auth)).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{act:?}: {body}");
        assert_eq!(error_of(&body), "server_error");
        assert!(body.contains("not run again"), "{body}");
    }
    assert_eq!(inner.calls(), 1, "{act:?}: run again");
}

#[tokio::test]
async fn a_held_call_whose_service_fails_is_not_run_again_in_memory() {
    for act in [Act::Fail, Act::BreakBody] {
        a_failed_run_is_its_result(Arc::new(MemoryHeldStore::default()), act).await;
    }
}

#[tokio::test]
async fn a_held_call_whose_service_fails_is_not_run_again_in_redis() {
    let Some(r) = redis("a_held_call_whose_service_fails_is_not_run_again_in_redis").await else {
        return;
    };
    for act in [Act::Fail, Act::BreakBody] {
        let store = RedisHeldStore::new(r.with_prefix(&crate::shared::fresh_prefix()), 100);
        a_failed_run_is_its_result(Arc::new(store), act).await;
    }
}

/// A poll dropped while its call runs (its client went away) settles the record: the
/// next poll learns that the outcome is unknown (`500`), at once rather than when the
/// hold expires, and the call is not run again.
async fn a_dropped_poll_settles_its_run(store: Arc<dyn HeldStore>) {
    let m = modes();
    let inner = Inner::new(Act::Hang);
    let mut svc = service(&m, store, &inner, |d| d);
    let (location, auth) = held(&m, &mut svc).await;
    let poll = svc.call(signed("GET", &location, b"", &m.w.agent, &auth));
    tokio::select! {
        r = poll => panic!("the hanging call answered: {:?}", r.map(|r| r.status())),
        () = inner.started.notified() => {}
    }
    // The poll is dropped. A store settling in the background has a moment to.
    let mut answer = (StatusCode::ACCEPTED, String::new());
    for _ in 0..200 {
        answer = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &auth)).await;
        if answer.0 != StatusCode::ACCEPTED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (s, body) = answer;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(error_of(&body), "server_error");
    assert!(body.contains("not run again"), "{body}");
    let again = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &auth)).await;
    assert_eq!(again.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(inner.calls(), 1, "run again");
}

#[tokio::test]
async fn a_poll_dropped_while_its_call_runs_settles_it_in_memory() {
    a_dropped_poll_settles_its_run(Arc::new(MemoryHeldStore::default())).await;
}

#[tokio::test]
async fn a_poll_dropped_while_its_call_runs_settles_it_in_redis() {
    let Some(r) = redis("a_poll_dropped_while_its_call_runs_settles_it_in_redis").await else {
        return;
    };
    a_dropped_poll_settles_its_run(Arc::new(RedisHeldStore::new(r, 100))).await;
}

/// A result larger than the layer keeps (it would stay until the auth token's `exp`, up
/// to an hour) has a `500` saying so kept and replayed in its place; the call is not run
/// again. Up to the cap the result is kept whole.
async fn a_result_past_the_cap_is_not_kept(store: Arc<dyn HeldStore>, cap: Option<usize>) {
    let m = modes();
    let limit = cap.unwrap_or(DEFAULT_MAX_HELD_RESULT);
    for (size, kept) in [(limit, true), (limit + 1, false)] {
        let inner = Inner::new(Act::Answer(size));
        let mut svc = service(&m, Arc::clone(&store), &inner, |d| match cap {
            Some(cap) => d.max_held_result(cap),
            None => d,
        });
        let (location, auth) = held(&m, &mut svc).await;
        for _ in 0..2 {
            let (s, body) = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &auth)).await;
            if kept {
                assert_eq!((s, body.len()), (StatusCode::OK, size));
            } else {
                assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{size}");
                assert_eq!(error_of(&body), "server_error");
                assert!(
                    body.contains(&format!("larger than the {limit} bytes")),
                    "{body}"
                );
                assert!(body.contains("not run again"), "{body}");
            }
        }
        assert_eq!(inner.calls(), 1, "{size}: run again");
    }
}

#[tokio::test]
async fn a_held_result_past_the_default_cap_is_replaced_by_a_500() {
    let store = Arc::new(MemoryHeldStore::default());
    a_result_past_the_cap_is_not_kept(store.clone(), None).await;
    // What is kept is the small problem, not the megabyte.
    assert!(
        store.bytes() < DEFAULT_MAX_HELD_RESULT + 4096,
        "{}",
        store.bytes()
    );
}

#[tokio::test]
async fn a_held_result_past_a_configured_cap_is_replaced_by_a_500_in_redis() {
    let Some(r) = redis("a_held_result_past_a_configured_cap_is_replaced_by_a_500_in_redis").await
    else {
        return;
    };
    a_result_past_the_cap_is_not_kept(Arc::new(RedisHeldStore::new(r, 100)), Some(100)).await;
}
