//! `travel.example`: a resource that is its own agent provider, the intermediary of the
//! call-chaining and interaction-chaining demos. Answering an agent that brings an auth
//! token for `trips.plan`, its planner (`aauth:planner@travel.example`) reads the person's
//! calendar at `resource.example`, asking the Person Server the incoming token names with
//! that token as `upstream_token`.
//!
//! When the downstream Person Server needs the person (interaction chaining, draft -11
//! §10.1.2), the planner answers its own caller with its own `202`: its own pending URL
//! and interaction code. The person lands on `travel.example/interact`, is sent on to the
//! Person Server's consent page with the downstream code, and approves there; the
//! planner's downstream poll completes, and the agent's poll of travel.example's pending
//! URL returns the trip.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aauth_agent::{
    AAuthClient, Agent, AgentProvider, HttpPersonServer, Interaction, LocalTokenSource, PollPolicy,
    UpstreamRelay,
};
use aauth_keys::JwkSet;
use aauth_keys::rand::OsRandom;
use aauth_keys::{Algorithm, PrivateKey};
use aauth_metadata::{AccessMode, CacheConfig, HttpsUrl, KeyCache, Published, ResourceMetadata};
use aauth_resource::{AAuthLayer, Access, Resource, ResourceTokens, RoutePolicy};
use aauth_tokens::{AgentId, ServerId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::parties::Parties;
use crate::world::{AsyncHandler, GuardedWorldFetch, Recorder, Request, Response};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A deferred trip: waiting for the downstream person, or done.
#[derive(Clone)]
enum Trip {
    Waiting,
    Done(u16, serde_json::Value),
}

/// What the intermediary keeps between requests.
#[derive(Default)]
struct State {
    /// Pending id → the trip.
    trips: BTreeMap<String, Trip>,
    /// Its own interaction code → where the person goes downstream.
    codes: BTreeMap<String, String>,
}

/// The planner behind travel.example's AAuth layer.
#[derive(Clone)]
struct Planner {
    agent: Arc<Agent>,
    ps: ServerId,
    keys: Arc<KeyCache<GuardedWorldFetch>>,
    transport: Arc<Recorder>,
    clock: Arc<dyn aauth_keys::time::Clock>,
    state: Arc<Mutex<State>>,
}

fn json(status: u16, body: &serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn random() -> String {
    let mut b = [0u8; 16];
    let _filled = aauth_keys::rand::RandomSource::fill(&mut OsRandom, &mut b);
    aauth_keys::base64url::encode(&b)
}

impl Planner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the calendar downstream as the planner, `upstream` as the upstream token;
    /// `on_interaction` hears if the Person Server must ask the person first.
    async fn read_calendar(
        &self,
        upstream: String,
        on_interaction: impl Fn(&Interaction) + Send + Sync + 'static,
    ) -> (u16, serde_json::Value) {
        let ps = HttpPersonServer::new(self.ps.clone(), self.transport.clone())
            .clock(Arc::clone(&self.clock))
            .poll_policy(
                PollPolicy::default()
                    .prefer_wait(Duration::from_secs(10))
                    .deadline(Duration::from_secs(120)),
            )
            .on_interaction(on_interaction);
        let client = AAuthClient::builder(Arc::clone(&self.agent))
            .clock(Arc::clone(&self.clock))
            .person_server(
                Arc::new(UpstreamRelay::new(Arc::new(ps), upstream)),
                self.keys.clone(),
            )
            .build(self.transport.clone());
        let downstream = match http::Request::get("https://resource.example/calendar/today")
            .body(Bytes::new())
        {
            Ok(r) => client.send(r).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match downstream {
            Ok(r) if r.status() == 200 => (
                200,
                serde_json::json!({
                    "message": "Trip planned around your calendar",
                    "calendar": serde_json::from_slice::<serde_json::Value>(r.body()).unwrap_or_default(),
                }),
            ),
            Ok(r) => (
                502,
                serde_json::json!({ "error": format!("the calendar answered {}", r.status()) }),
            ),
            Err(e) => (502, serde_json::json!({ "error": e })),
        }
    }
}

impl Service<http::Request<Full<Bytes>>> for Planner {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let me = self.clone();
        // The agent polls its pending trip (signed with the same auth token).
        if let Some(id) = req.uri().path().strip_prefix("/pending/") {
            let trip = me.lock().trips.get(id).cloned();
            let resp = match trip {
                Some(Trip::Waiting) => {
                    let mut r = json(202, &serde_json::json!({ "status": "interacting" }));
                    r.headers_mut().insert(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_static("1"),
                    );
                    if let Ok(v) = http::HeaderValue::from_str(&format!("/pending/{id}")) {
                        r.headers_mut().insert(http::header::LOCATION, v);
                    }
                    r
                }
                Some(Trip::Done(status, body)) => {
                    me.lock().trips.remove(id);
                    json(status, &body)
                }
                None => json(404, &serde_json::json!({ "error": "not_found" })),
            };
            return Box::pin(async move { Ok(resp) });
        }
        // The layer verified the agent's auth token: it is the upstream token.
        let upstream = req
            .headers()
            .get("signature-key")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("jwt=\"").nth(1))
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel::<Interaction>();
            let tx = Mutex::new(Some(tx));
            let worker = me.clone();
            let task = tokio::spawn(async move {
                worker
                    .read_calendar(upstream, move |i| {
                        if let Some(tx) = tx.lock().unwrap_or_else(PoisonError::into_inner).take() {
                            let _sent = tx.send(i.clone());
                        }
                    })
                    .await
            });
            let mut task = Box::pin(task);
            tokio::select! {
                done = &mut task => {
                    let (status, body) = done.unwrap_or((500, serde_json::json!({ "error": "the planner failed" })));
                    Ok(json(status, &body))
                }
                Ok(downstream) = rx => {
                    // Interaction chaining: our own pending URL and code; the person is
                    // sent on to the downstream consent page from ours.
                    // Its code as the draft's Interaction Code Format has it: Crockford
                    // base32, stored normalized, shown as XXXX-XXXX.
                    let Ok(code) = aauth_metadata::code::new_code(&mut OsRandom) else {
                        return Ok(json(500, &serde_json::json!({ "error": "no random source" })));
                    };
                    let id = random();
                    {
                        let mut s = me.lock();
                        s.trips.insert(id.clone(), Trip::Waiting);
                        s.codes.insert(code.clone(), format!("{}?code={}", downstream.url, downstream.code));
                    }
                    let state = Arc::clone(&me.state);
                    let pending = id.clone();
                    tokio::spawn(async move {
                        let (status, body) = task
                            .await
                            .unwrap_or((500, serde_json::json!({ "error": "the planner failed" })));
                        state
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .trips
                            .insert(pending, Trip::Done(status, body));
                    });
                    let mut r = json(202, &serde_json::json!({ "status": "pending" }));
                    let h = r.headers_mut();
                    if let Ok(v) = http::HeaderValue::from_str(&format!("/pending/{id}")) {
                        h.insert(http::header::LOCATION, v);
                    }
                    h.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                    if let Ok(v) = http::HeaderValue::from_str(&format!(
                        "requirement=interaction;url=\"https://travel.example/interact\";code=\"{}\"",
                        aauth_metadata::code::display(&code)
                    )) {
                        h.insert("aauth-requirement", v);
                    }
                    Ok(r)
                }
            }
        })
    }
}

/// travel.example, served in `p`'s world.
pub(crate) struct Intermediary {
    /// What its planner sent downstream.
    pub(crate) downstream: Arc<Recorder>,
}

/// Serves travel.example in `p`'s world.
///
/// # Errors
///
/// What could not be set up.
pub(crate) async fn serve(p: &Parties) -> Result<Intermediary, String> {
    let travel = ServerId::parse("https://travel.example").map_err(e)?;
    let travel_key = Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?);
    // One key for both roles: the resource's and its agent provider's JWKS are the same.
    let provider = Arc::new(
        AgentProvider::new(
            travel.clone(),
            Arc::clone(&travel_key) as Arc<dyn aauth_keys::Signer>,
            "rs-1",
        )
        .map_err(e)?,
    );
    let planner_id = AgentId::parse("aauth:planner@travel.example").map_err(e)?;
    let planner_key = Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?);
    provider
        .enroll(&planner_id, planner_key.public_key(), None)
        .map_err(e)?;
    let downstream = p
        .world
        .agent_transport_allowing(&["ps.example", "resource.example"]);
    let keys = Arc::new(KeyCache::new(
        Arc::new(p.world.fetcher_allowing(&[
            "agent.example",
            "ps.example",
            "resource.example",
            "as.example",
        ])),
        Arc::clone(&p.clock),
        CacheConfig::default(),
    ));
    let state: Arc<Mutex<State>> = Arc::default();
    let planner = Planner {
        agent: Arc::new(Agent::new(
            planner_id,
            planner_key as Arc<dyn aauth_keys::Signer>,
            Arc::new(LocalTokenSource(Arc::clone(&provider))),
        )),
        ps: p.ps.id().clone(),
        keys: Arc::clone(&keys),
        transport: downstream.clone(),
        clock: Arc::clone(&p.clock),
        state: Arc::clone(&state),
    };
    let mut doc = ResourceMetadata::new(travel.clone());
    doc.common.jwks_uri = Some(HttpsUrl::parse("https://travel.example/jwks.json").map_err(e)?);
    doc.access_mode = Some(AccessMode::AuthToken);
    let mut jwk = travel_key.public_key().to_jwk();
    jwk.kid = Some("rs-1".to_owned());
    let published = Published::new(&doc).jwks("/jwks.json", &JwkSet::from_jwks(&[jwk]));
    let resource = Resource::new(travel.clone(), keys.clone())
        .resource_tokens(ResourceTokens::new(travel_key, "rs-1"));
    let layered = AAuthLayer::new(
        resource.route(RoutePolicy::new(Access::AuthToken).scope("trips.plan")),
        Arc::clone(&p.clock),
    )
    .layer(planner);
    let handler: AsyncHandler = Arc::new(move |req: Request| {
        if let Some(doc) = published
            .respond(req.method(), req.uri().path())
            .or_else(|| provider.published().respond(req.method(), req.uri().path()))
        {
            let doc = doc.map(|b| b.to_vec());
            return Box::pin(async move { doc });
        }
        // The person's landing page: on to the downstream consent page.
        if req.uri().path() == "/interact" {
            let code = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("code=")))
                .and_then(aauth_metadata::code::normalize);
            let target = code.and_then(|code| {
                state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .codes
                    .remove(&code)
            });
            let mut r = Response::new(Vec::new());
            match target {
                Some(t) => {
                    *r.status_mut() = http::StatusCode::SEE_OTHER;
                    if let Ok(v) = http::HeaderValue::from_str(&t) {
                        r.headers_mut().insert(http::header::LOCATION, v);
                    }
                }
                None => *r.status_mut() = http::StatusCode::NOT_FOUND,
            }
            return Box::pin(async move { r });
        }
        let mut svc = layered.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let resp = match svc
                .call(http::Request::from_parts(
                    parts,
                    Full::new(Bytes::from(body)),
                ))
                .await
            {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (parts, body) = resp.into_parts();
            let body = match body.collect().await {
                Ok(c) => c.to_bytes().to_vec(),
                Err(never) => match never {},
            };
            Response::from_parts(parts, body)
        })
    });
    p.world.serve_async(&travel, handler).await.map_err(e)?;
    Ok(Intermediary { downstream })
}
