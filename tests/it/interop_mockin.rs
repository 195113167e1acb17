//! Live interop with Hellō's `@hellocoop/mockin` 2.0.0 (npm), the TypeScript reference's
//! mock Person Server, run as a real process on loopback (`tests/interop/mockin/run.mjs`,
//! which starts mockin's own server entry point and exits when the test that started it
//! ends).
//!
//! mockin serves plain HTTP on `127.0.0.1:{port}`; our agent speaks only HTTPS to server
//! identifiers without a port. So mockin runs with `ISSUER=https://ps.example`, and the
//! demo world serves `ps.example` over its TLS with a handler that forwards each request,
//! unchanged (the `Host` field included, so `@authority` is what the agent signed), to
//! mockin's socket: a TLS-terminating shim, nothing else. Our agent (aauth-agent's
//! `AAuthClient` with `HttpPersonServer`) and our resource talk to mockin through it.
//!
//! mockin fetches agent and resource metadata with Node's `fetch`, which cannot resolve
//! the world's names; its mock API's `trusted_servers` takes the documents instead, and
//! we give it, byte for byte, the metadata documents and JWKS our provider and resource
//! publish (fetched from them over the world's TLS).
//!
//! What is checked:
//!
//! - **metadata**: mockin's `aauth-person.json` and JWKS parse with `aauth_metadata`;
//! - **person tokens**: our agent obtains a person token from mockin and our resource
//!   admits it (the resource discovers mockin's key through its metadata);
//! - **deferred consent**: mockin defers the person token (`202`, `requirement=interaction`
//!   or `approval`, through its mock API `PUT /mock/aauth`); our agent polls, the person's
//!   visit to mockin's consent URL approves, the token arrives;
//! - **auth tokens**: pinned departure: mockin reads the pre-rename resource-token claim
//!   `person_token_jti` (-11 §6.7.1 Resource Token Structure: `presented_jti`) and refuses
//!   our strict resource token with `400 invalid_resource_token`
//!   (`departure_*`, which fails, saying so, the day mockin changes);
//! - **with the compatibility profile** (`Compatibility::person_token_jti`, opt-in; our
//!   resource then writes `person_token_jti` beside `presented_jti`): auth tokens end to
//!   end, clarification (mockin asks only at its auth token endpoint), and deferred consent
//!   at the auth token endpoint (`compat_*`).
//!
//! Without Node or the installed package the tests print a loud `!!! SKIPPED` line and
//! return, unless `CI` is set or `AAUTH_REQUIRE_INTEROP=1` (as `.ci/run` does): then they
//! fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_agent::{
    AAuthClient, Agent, AgentProvider, HttpPersonServer, HttpTokenSource, PollPolicy,
};
use aauth_demos::world::{AsyncHandler, Recorder, Request, Response, World, provider_handler};
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_keys::{Algorithm, JwkSet, PrivateKey};
use aauth_metadata::{
    AccessMode, CacheConfig, HttpsUrl, KeyCache, MetadataDocument, PersonServerMetadata, Published,
    ResourceMetadata,
};
use aauth_resource::{Access, Compatibility, Resource, ResourceTokens, RoutePolicy};
use aauth_tokens::{AgentId, ServerId};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::node_peer::{NodePackage, NodePeer, forward};

// ---------------------------------------------------------------------------------------
// The peer process
// ---------------------------------------------------------------------------------------

/// The package `tests/interop/mockin/package.json` pins; a different install fails.
pub(crate) const MOCKIN: NodePackage = NodePackage {
    dir: "mockin",
    package: "@hellocoop/mockin",
    version: "2.0.0",
};
const MOCKIN_VERSION: &str = MOCKIN.version;

const PS: &str = "https://ps.example";
const RESOURCE: &str = "https://resource.example";
const PROVIDER: &str = "https://agent.example";

/// A running mockin (`tests/it/node_peer.rs` runs the process and its shim).
struct Mockin {
    peer: NodePeer,
    port: u16,
}

impl Mockin {
    /// Starts mockin with `ISSUER=https://ps.example` and waits until it answers its
    /// metadata. mockin prints `Mock server listening on http://127.0.0.1:{port}`
    /// (src/server.js).
    async fn start() -> Self {
        let peer = NodePeer::start(
            MOCKIN,
            &[("ISSUER", PS)],
            "Mock server listening on http://127.0.0.1:",
            "ps.example",
            "/.well-known/aauth-person.json",
        )
        .await;
        let port = peer.port;
        Self { peer, port }
    }

    /// A plain-HTTP request to mockin's own socket (its mock API; the metadata while it
    /// starts).
    async fn plain(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, format!("127.0.0.1:{}", self.port));
        let body = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                v.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        forward(self.port, req.body(body).map_err(|e| e.to_string())?, None).await
    }

    /// `PUT /mock/aauth`: switches mockin's simulated behaviour; returns the new config.
    async fn mock(&self, patch: &Value) -> Value {
        let r = self
            .plain(http::Method::PUT, "/mock/aauth", Some(patch))
            .await
            .expect("mockin's mock API answers");
        assert_eq!(r.status(), 200, "PUT /mock/aauth {patch}");
        serde_json::from_slice(r.body()).expect("the mock config is JSON")
    }
}

// ---------------------------------------------------------------------------------------
// Our parties around mockin
// ---------------------------------------------------------------------------------------

fn sid(s: &str) -> ServerId {
    ServerId::parse(s).expect("a server identifier")
}

fn key() -> Arc<PrivateKey> {
    Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).expect("a key"))
}

/// The world: our provider (`agent.example`, the assistant enrolled for `ps.example`),
/// our resource (`resource.example`, one route with `access`), and mockin behind the shim
/// as `ps.example`; mockin trusts the documents our provider and resource publish.
struct Setup {
    world: Arc<World>,
    mockin: Mockin,
    clock: Arc<dyn Clock>,
    agent_id: AgentId,
    agent_key: Arc<PrivateKey>,
}

async fn setup(access: Access) -> Setup {
    setup_with(access, Compatibility::strict()).await
}

/// As [`setup`], our resource minting under `compat`.
async fn setup_with(access: Access, compat: Compatibility) -> Setup {
    let mockin = Mockin::start().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let world = World::new().expect("the world");

    let provider =
        Arc::new(AgentProvider::new(sid(PROVIDER), key(), "key-1").expect("the provider"));
    let agent_id = AgentId::parse("aauth:assistant@agent.example").expect("an agent id");
    let agent_key = key();
    provider
        .enroll(&agent_id, agent_key.public_key(), Some(&sid(PS)))
        .expect("enrolled");
    world
        .serve_async(
            provider.id(),
            provider_handler(Arc::clone(&provider), Arc::clone(&clock)),
        )
        .await
        .expect("the provider is served");

    world
        .serve_async(&sid(PS), mockin.peer.shim(false))
        .await
        .expect("the shim is served");

    // The resource: its documents published; the route verifies against keys discovered
    // over the world's TLS (mockin's, through the shim).
    let rs_key = key();
    let mut doc = ResourceMetadata::new(sid(RESOURCE));
    doc.common.jwks_uri = Some(HttpsUrl::parse("https://resource.example/jwks.json").expect("url"));
    doc.access_mode = Some(AccessMode::AuthToken);
    let mut jwk = rs_key.public_key().to_jwk();
    jwk.kid = Some("rs-1".to_owned());
    let published = Published::new(&doc).jwks("/jwks.json", &JwkSet::from_jwks(&[jwk]));
    let rs_keys = Arc::new(KeyCache::new(
        Arc::new(world.fetcher_allowing(&["agent.example", "ps.example"])),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let resource = Resource::new(sid(RESOURCE), rs_keys).resource_tokens(
        ResourceTokens::new(Arc::clone(&rs_key) as Arc<dyn aauth_keys::Signer>, "rs-1")
            .compatibility(compat),
    );
    let mut policy = RoutePolicy::new(access);
    if access == Access::AuthToken {
        policy = policy.scope("files.read");
    }
    let route = resource.route(policy);
    let c = Arc::clone(&clock);
    let handler: AsyncHandler = Arc::new(move |req: Request| {
        if let Some(doc) = published.respond(req.method(), req.uri().path()) {
            let doc = doc.map(|b| b.to_vec());
            return Box::pin(async move { doc });
        }
        let (route, c) = (route.clone(), Arc::clone(&c));
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            match route.check(&parts, &body, c.now()).await {
                Ok(admitted) => {
                    let who = json!({
                        "person": admitted.person().map(|(iss, sub)| json!({ "iss": iss.as_str(), "sub": sub })),
                        "scope": admitted.scope(),
                    });
                    http::Response::new(who.to_string().into_bytes())
                }
                Err(refusal) => refusal.into_http_response().map(|b| b.to_vec()),
            }
        })
    });
    world
        .serve_async(&sid(RESOURCE), handler)
        .await
        .expect("the resource is served");

    // mockin trusts exactly what our provider and resource publish.
    let mut trusted = serde_json::Map::new();
    for (server, dwk) in [
        (PROVIDER, "aauth-agent.json"),
        (RESOURCE, "aauth-resource.json"),
    ] {
        let metadata = get_json(&world, &format!("{server}/.well-known/{dwk}")).await;
        let jwks_uri = metadata["jwks_uri"]
            .as_str()
            .expect("a jwks_uri")
            .to_owned();
        let jwks = get_json(&world, &jwks_uri).await;
        trusted.insert(
            server.to_owned(),
            json!({ "metadata": metadata, "jwks": jwks }),
        );
    }
    let config = mockin.mock(&json!({ "trusted_servers": trusted })).await;
    assert!(config["trusted_servers"][PROVIDER]["jwks"]["keys"].is_array());

    Setup {
        world: Arc::new(world),
        mockin,
        clock,
        agent_id,
        agent_key,
    }
}

async fn get_json(world: &World, url: &str) -> Value {
    let r = world
        .send(http::Request::get(url).body(Vec::new()).expect("a request"))
        .await
        .expect("the world answers");
    assert_eq!(r.status(), 200, "GET {url}");
    serde_json::from_slice(r.body()).expect("JSON")
}

impl Setup {
    fn agent(&self, recorder: &Arc<Recorder>) -> Arc<Agent> {
        Arc::new(Agent::new(
            self.agent_id.clone(),
            Arc::clone(&self.agent_key) as Arc<dyn aauth_keys::Signer>,
            Arc::new(HttpTokenSource::new(sid(PROVIDER), recorder.clone())),
        ))
    }

    /// Our agent's client with mockin as its Person Server (`ps` customised by `ps`).
    fn client(
        &self,
        recorder: &Arc<Recorder>,
        ps: impl FnOnce(HttpPersonServer) -> HttpPersonServer,
    ) -> AAuthClient {
        let keys = Arc::new(KeyCache::new(
            Arc::new(self.world.fetcher()),
            Arc::clone(&self.clock),
            CacheConfig::default(),
        ));
        let poll = PollPolicy::default().deadline(Duration::from_secs(60));
        let ps = ps(HttpPersonServer::new(sid(PS), recorder.clone())
            .clock(Arc::clone(&self.clock))
            .poll_policy(poll));
        AAuthClient::builder(self.agent(recorder))
            .clock(Arc::clone(&self.clock))
            .person_server(Arc::new(ps), keys)
            .build(recorder.clone())
    }
}

fn get(path: &str) -> http::Request<Bytes> {
    http::Request::get(format!("{RESOURCE}{path}"))
        .body(Bytes::new())
        .expect("a request")
}

/// The claims of a compact JWT (not verified: what was on the wire).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&aauth_keys::base64url::decode(payload).expect("base64url"))
        .expect("JSON claims")
}

fn header(jwt: &str) -> Value {
    let h = jwt.split('.').next().expect("a JWS");
    serde_json::from_slice(&aauth_keys::base64url::decode(h).expect("base64url"))
        .expect("a JSON header")
}

/// The string member `member` of the JSON bodies answered to the agent, in order.
fn tokens_seen(seen: &[(Request, Response)], member: &str) -> Vec<String> {
    seen.iter()
        .filter_map(|(_, r)| {
            serde_json::from_slice::<Value>(r.body())
                .ok()?
                .get(member)?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Runs `test` against the live peer, if it can run (otherwise `NodePackage::available` has
/// failed the test under CI, or said loudly that it skipped).
fn live(test: impl Future<Output = ()>) {
    if MOCKIN.available() {
        runtime().block_on(test);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// mockin's Person Server metadata and JWKS, read through the shim as our agent reads
/// them, parse with `aauth_metadata` for `https://ps.example`.
#[test]
fn we_parse_mockins_metadata() {
    live(async {
        let s = setup(Access::PersonToken).await;
        let r = s
            .world
            .send(
                http::Request::get(format!("{PS}/.well-known/aauth-person.json"))
                    .body(Vec::new())
                    .expect("a request"),
            )
            .await
            .expect("the shim answers");
        assert_eq!(r.status(), 200);
        let doc = PersonServerMetadata::parse_for(r.body(), &sid(PS)).unwrap_or_else(|e| {
            panic!(
                "mockin's metadata does not parse: {e}: {}",
                String::from_utf8_lossy(r.body())
            )
        });
        assert_eq!(doc.common.issuer.as_str(), PS);
        assert_eq!(
            doc.person_token_endpoint.as_str(),
            "https://ps.example/aauth/token/person"
        );
        assert_eq!(
            doc.auth_token_endpoint.as_str(),
            "https://ps.example/aauth/token/auth"
        );
        // Refused for another issuer: the check is not vacuous.
        assert!(PersonServerMetadata::parse_for(r.body(), &sid("https://other.example")).is_err());

        let jwks_uri = doc
            .common
            .jwks_uri
            .as_ref()
            .expect("mockin publishes jwks_uri")
            .as_str()
            .to_owned();
        let jwks = get_json(&s.world, &jwks_uri).await;
        let set = JwkSet::from_json(jwks.to_string().as_bytes()).expect("mockin's JWKS parses");
        assert_eq!(set.len(), 1, "{jwks}");
        let kid = jwks["keys"][0]["kid"].as_str().expect("a kid");
        assert!(set.find(kid).is_ok(), "mockin's key is usable: {jwks}");
        assert_eq!(jwks["keys"][0]["alg"], "Ed25519");
    });
}

/// Our agent asks mockin for a person token for our resource (signed with the agent
/// token, the body covered); our resource discovers mockin's key and admits it.
#[test]
fn our_agent_gets_a_person_token_from_mockin_and_our_resource_admits_it() {
    live(async {
        let s = setup(Access::PersonToken).await;
        let recorder = s.world.agent_transport();
        let client = s.client(&recorder, |ps| ps);
        let resp = send_ok(&client, "/profile").await;
        let who: Value = serde_json::from_slice(resp.body()).expect("JSON");
        assert_eq!(who["person"]["iss"], PS, "{who}");

        let seen = recorder.take();
        let person = tokens_seen(&seen, "person_token");
        assert_eq!(person.len(), 1, "one person token from mockin");
        let c = claims(&person[0]);
        assert_eq!(header(&person[0])["typ"], "aa-person+jwt");
        assert_eq!(header(&person[0])["alg"], "Ed25519");
        assert_eq!(c["iss"], PS);
        assert_eq!(c["aud"], RESOURCE);
        assert_eq!(
            c["sub"], who["person"]["sub"],
            "the resource admitted mockin's subject"
        );
        assert_eq!(
            c["cnf"]["jwk"]["x"].as_str(),
            s.agent_key.public_key().to_jwk().x.as_deref(),
            "bound to our agent's key"
        );
        assert!(
            seen.iter()
                .any(|(q, r)| q.uri().path() == "/aauth/token/person" && r.status() == 200),
            "the person token came from mockin's person_token_endpoint"
        );
    });
}

/// mockin really verifies our agent token against the keys it is given for our provider:
/// with a JWKS holding another key under our provider's `kid`, the person-token request is
/// refused (`401 invalid_jwt`) and no token is issued. (The previous test is the same
/// request with the JWKS our provider publishes.)
#[test]
fn mockin_verifies_our_agent_token_against_the_keys_we_publish() {
    live(async {
        let s = setup(Access::PersonToken).await;
        let metadata = get_json(
            &s.world,
            &format!("{PROVIDER}/.well-known/aauth-agent.json"),
        )
        .await;
        let mut other = key().public_key().to_jwk();
        other.kid = Some("key-1".to_owned());
        let wrong: Value =
            serde_json::from_str(&JwkSet::from_jwks(&[other]).to_json()).expect("a JWKS");
        s.mockin
            .mock(&json!({ "trusted_servers": { PROVIDER: { "metadata": metadata, "jwks": wrong } } }))
            .await;
        let recorder = s.world.agent_transport();
        let client = s.client(&recorder, |ps| ps);
        let outcome = client.send(get("/profile")).await;
        assert!(
            outcome.as_ref().map_or(true, |r| r.status() != 200),
            "admitted without a person token mockin could verify"
        );
        let seen = recorder.take();
        let (_, answer) = seen
            .iter()
            .find(|(q, _)| q.uri().path() == "/aauth/token/person")
            .expect("the agent asked mockin for a person token");
        assert_eq!(answer.status(), 401);
        let problem: Value = serde_json::from_slice(answer.body()).expect("a problem body");
        assert_eq!(problem["error"], "invalid_jwt", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("agent_token signature")),
            "{problem}"
        );
        assert!(tokens_seen(&seen, "person_token").is_empty());
    });
}

/// What the person's browser does with an interaction: opens `{url}?code={code}` (mockin's
/// consent page, which approves) after a moment, so that the agent polls first.
fn consent_later(
    world: Arc<World>,
    visited: Arc<Mutex<Vec<String>>>,
) -> impl Fn(&aauth_agent::Interaction) + Send + Sync {
    let rt = tokio::runtime::Handle::current();
    move |i: &aauth_agent::Interaction| {
        let url = format!("{}?code={}", i.url, i.code);
        let (world, visited) = (Arc::clone(&world), Arc::clone(&visited));
        rt.spawn(async move {
            // After the agent's first poll, which comes no sooner than its minimum
            // interval: that poll finds the request still pending.
            let first_poll = PollPolicy::default().min_interval;
            tokio::time::sleep(Duration::from_secs(first_poll) + Duration::from_millis(500)).await;
            let r = world
                .send(
                    http::Request::get(url.as_str())
                        .body(Vec::new())
                        .expect("a request"),
                )
                .await
                .expect("mockin's consent page answers");
            assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(r.body()));
            visited.lock().expect("lock").push(url);
        });
    }
}

/// Deferred consent, driven through mockin's mock API (`person_requirement=interaction`,
/// `auto_approve=false`): mockin answers `202` with `requirement=interaction`; our agent
/// hands the URL and code to the person and polls; the pending request stays `202` until
/// the person opens mockin's consent URL; then the person token arrives and our resource
/// admits it.
#[test]
fn deferred_consent_at_mockin_interaction() {
    live(async {
        let s = setup(Access::PersonToken).await;
        let config = s
            .mockin
            .mock(&json!({ "person_requirement": "interaction", "auto_approve": false }))
            .await;
        assert_eq!(config["person_requirement"], "interaction");
        let visited = Arc::new(Mutex::new(Vec::new()));
        let recorder = s.world.agent_transport();
        let hook = consent_later(Arc::clone(&s.world), Arc::clone(&visited));
        let client = s.client(&recorder, |ps| ps.on_interaction(hook));
        let resp = send_ok(&client, "/profile").await;
        let who: Value = serde_json::from_slice(resp.body()).expect("JSON");
        assert_eq!(who["person"]["iss"], PS, "{who}");

        let visited = visited.lock().expect("lock").clone();
        assert_eq!(
            visited.len(),
            1,
            "the person visited mockin's consent page once"
        );
        assert!(
            visited[0].starts_with("https://ps.example/aauth/consent?code="),
            "{visited:?}"
        );
        let seen = recorder.take();
        let deferred = seen
            .iter()
            .find(|(q, _)| q.uri().path() == "/aauth/token/person")
            .expect("the person token request");
        assert_eq!(deferred.1.status(), 202);
        let requirement = deferred
            .1
            .headers()
            .get("aauth-requirement")
            .and_then(|v| v.to_str().ok())
            .expect("AAuth-Requirement");
        assert!(
            requirement.starts_with("requirement=interaction"),
            "{requirement}"
        );
        let polls: Vec<u16> = seen
            .iter()
            .filter(|(q, _)| q.uri().path().starts_with("/aauth/pending/"))
            .map(|(_, r)| r.status().as_u16())
            .collect();
        assert_eq!(
            polls.first(),
            Some(&202),
            "pending until the person consents: {polls:?}"
        );
        assert_eq!(polls.last(), Some(&200), "{polls:?}");
        assert_eq!(tokens_seen(&seen, "person_token").len(), 1);
    });
}

/// Deferred approval (`person_requirement=approval`): `202` with `requirement=approval`,
/// no interaction for the agent to drive; the next poll carries the person token.
#[test]
fn deferred_approval_at_mockin() {
    live(async {
        let s = setup(Access::PersonToken).await;
        s.mockin
            .mock(&json!({ "person_requirement": "approval" }))
            .await;
        let recorder = s.world.agent_transport();
        let client = s.client(&recorder, |ps| ps);
        send_ok(&client, "/profile").await;
        let seen = recorder.take();
        let deferred = seen
            .iter()
            .find(|(q, _)| q.uri().path() == "/aauth/token/person")
            .expect("the person token request");
        assert_eq!(deferred.1.status(), 202);
        assert_eq!(
            deferred
                .1
                .headers()
                .get("aauth-requirement")
                .and_then(|v| v.to_str().ok()),
            Some("requirement=approval")
        );
        assert!(
            seen.iter()
                .any(|(q, r)| q.uri().path().starts_with("/aauth/pending/") && r.status() == 200),
            "a poll carried the token"
        );
        assert_eq!(tokens_seen(&seen, "person_token").len(), 1);
    });
}

/// A departure of mockin 2.0.0, pinned: it reads the resource token's person-token
/// reference from the pre-rename claim `person_token_jti`; -11 (§6.7.1, the
/// REQUIRED `presented_jti`) renamed it. Our resource's resource token (strict -11) is
/// refused at mockin's auth token endpoint with `400 invalid_resource_token`, so no auth
/// token is issued. When mockin reads `presented_jti`, this test fails and says so.
#[test]
fn departure_mockin_reads_person_token_jti_not_presented_jti() {
    live(async {
        let s = setup(Access::AuthToken).await;
        let recorder = s.world.agent_transport();
        let client = s.client(&recorder, |ps| ps);
        let outcome = client.send(get("/files/report")).await;
        let seen = recorder.take();
        let resource_token = seen
            .iter()
            .find_map(|(_, r)| {
                let v = r.headers().get("aauth-requirement")?.to_str().ok()?;
                Some(
                    v.split("resource-token=\"")
                        .nth(1)?
                        .split('"')
                        .next()?
                        .to_owned(),
                )
            })
            .expect("our resource answered with a resource token");
        let rt = claims(&resource_token);
        assert!(rt["presented_jti"].is_string(), "strict -11: {rt}");
        assert!(rt.get("person_token_jti").is_none(), "strict -11: {rt}");
        let (_, answer) = seen
            .iter()
            .find(|(q, _)| q.uri().path() == "/aauth/token/auth")
            .expect("the agent asked mockin for an auth token");
        if answer.status() == 200 {
            panic!(
                "mockin {MOCKIN_VERSION} now issues an auth token for a -11 resource token (presented_jti): the departure is gone; make this a check in tests/it/interop_mockin.rs, xtask/src/interop.rs and tests/interop/mockin/README.md"
            );
        }
        assert_eq!(answer.status(), 400);
        let problem: Value = serde_json::from_slice(answer.body()).expect("a problem body");
        assert_eq!(problem["error"], "invalid_resource_token", "{problem}");
        assert_eq!(
            problem["detail"], "resource_token missing person_token_jti",
            "{problem}"
        );
        assert!(
            outcome.is_err(),
            "the agent could not get past the auth token"
        );
    });
}

// ---------------------------------------------------------------------------------------
// With the compatibility profile (opt-in): our resource also writes `person_token_jti`
// ---------------------------------------------------------------------------------------

fn compat() -> Compatibility {
    Compatibility::strict().person_token_jti(true)
}

/// The resource token in a `401 requirement=auth-token` answered to the agent.
fn resource_token_seen(seen: &[(Request, Response)]) -> String {
    seen.iter()
        .find_map(|(_, r)| {
            let v = r.headers().get("aauth-requirement")?.to_str().ok()?;
            Some(
                v.split("resource-token=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .to_owned(),
            )
        })
        .expect("our resource answered with a resource token")
}

/// The auth token flow end to end under the compatibility profile: our resource's
/// resource token carries `person_token_jti` beside `presented_jti`; mockin issues an auth
/// token for it; our agent checks it and our resource admits it with the scope.
#[test]
fn compat_our_agent_gets_an_auth_token_from_mockin_and_our_resource_admits_it() {
    live(async {
        let s = setup_with(Access::AuthToken, compat()).await;
        let recorder = s.world.agent_transport();
        let client = s.client(&recorder, |ps| ps);
        let resp = send_ok(&client, "/files/report").await;
        let who: Value = serde_json::from_slice(resp.body()).expect("JSON");
        assert_eq!(who["person"]["iss"], PS, "{who}");
        assert_eq!(who["scope"], "files.read", "{who}");

        let seen = recorder.take();
        let rt = claims(&resource_token_seen(&seen));
        assert_eq!(rt["person_token_jti"], rt["presented_jti"], "{rt}");
        let auth = tokens_seen(&seen, "auth_token");
        assert_eq!(auth.len(), 1, "one auth token from mockin");
        assert_eq!(header(&auth[0])["typ"], "aa-auth+jwt");
        let c = claims(&auth[0]);
        assert_eq!(c["iss"], PS);
        assert_eq!(c["ps"], PS);
        assert_eq!(c["aud"], RESOURCE);
        assert_eq!(c["scope"], "files.read");
        assert_eq!(c["sub"], rt["sub"], "the person the resource token named");
        assert_eq!(c["sub"], who["person"]["sub"]);
    });
}

/// Clarification (mockin's `requirement=clarification`, offered only at its auth token
/// endpoint): `202` with the person's question; our agent's hook answers it, POSTed to the
/// pending URL; mockin then issues the auth token on the next poll.
#[test]
fn compat_clarification_at_mockin() {
    live(async {
        let s = setup_with(Access::AuthToken, compat()).await;
        let question = "Which report, and why?";
        s.mockin
            .mock(&json!({ "requirement": "clarification", "clarification": question }))
            .await;
        let asked = Arc::new(Mutex::new(Vec::<String>::new()));
        let recorder = s.world.agent_transport();
        let a = Arc::clone(&asked);
        let client = s.client(&recorder, move |ps| {
            ps.on_clarification(move |q| {
                a.lock().expect("lock").push(q.to_owned());
                Some("The quarterly report, to summarise it for alice.".to_owned())
            })
        });
        send_ok(&client, "/files/report").await;
        assert_eq!(*asked.lock().expect("lock"), vec![question.to_owned()]);

        let seen = recorder.take();
        let (_, first) = seen
            .iter()
            .find(|(q, _)| q.uri().path() == "/aauth/token/auth")
            .expect("the auth token request");
        assert_eq!(first.status(), 202);
        assert_eq!(
            first
                .headers()
                .get("aauth-requirement")
                .and_then(|v| v.to_str().ok()),
            Some("requirement=clarification")
        );
        let (answer, accepted) = seen
            .iter()
            .find(|(q, _)| {
                q.method() == http::Method::POST && q.uri().path().starts_with("/aauth/pending/")
            })
            .expect("the answer was posted to the pending URL");
        let body: Value = serde_json::from_slice(answer.body()).expect("JSON");
        assert_eq!(
            body["clarification_response"],
            "The quarterly report, to summarise it for alice."
        );
        assert!(accepted.status().is_success(), "{}", accepted.status());
        assert_eq!(tokens_seen(&seen, "auth_token").len(), 1);
    });
}

/// Deferred consent at mockin's auth token endpoint (`requirement=interaction`,
/// `auto_approve=false`): pending until the person opens the consent URL, then the auth
/// token.
#[test]
fn compat_deferred_auth_token_consent_at_mockin() {
    live(async {
        let s = setup_with(Access::AuthToken, compat()).await;
        s.mockin
            .mock(&json!({ "requirement": "interaction", "auto_approve": false }))
            .await;
        let visited = Arc::new(Mutex::new(Vec::new()));
        let recorder = s.world.agent_transport();
        let hook = consent_later(Arc::clone(&s.world), Arc::clone(&visited));
        let client = s.client(&recorder, |ps| ps.on_interaction(hook));
        send_ok(&client, "/files/report").await;
        assert_eq!(visited.lock().expect("lock").len(), 1);
        let seen = recorder.take();
        let (_, first) = seen
            .iter()
            .find(|(q, _)| q.uri().path() == "/aauth/token/auth")
            .expect("the auth token request");
        assert_eq!(first.status(), 202);
        let polls: Vec<u16> = seen
            .iter()
            .filter(|(q, _)| q.uri().path().starts_with("/aauth/pending/"))
            .map(|(_, r)| r.status().as_u16())
            .collect();
        assert_eq!(polls.first(), Some(&202), "{polls:?}");
        assert_eq!(polls.last(), Some(&200), "{polls:?}");
        assert_eq!(tokens_seen(&seen, "auth_token").len(), 1);
    });
}

/// Sends `GET {path}` at the resource through `client` and asserts the final answer is
/// `200` (the body shown otherwise).
async fn send_ok(client: &AAuthClient, path: &str) -> http::Response<Bytes> {
    let resp = client.send(get(path)).await.expect("the call goes through");
    assert_eq!(
        resp.status(),
        200,
        "{:?}",
        String::from_utf8_lossy(resp.body())
    );
    resp
}
