//! Demo 13: OAuth beside AAuth. One route of `https://resource.example` admits an AAuth
//! agent (its agent token), an OAuth client with a Bearer JWT access token (RFC 9068), and
//! one whose token is bound to its key (DPoP, RFC 9449); every `401` tells either kind of
//! client what to do (`AAuth-Requirement` and `WWW-Authenticate`, draft -11: "a response
//! MAY include both"). The authorization server `https://as.example` is a small one made
//! for the demo (client credentials, `at+jwt` tokens signed ES256); the clients are
//! `aauth_oauth::ClientCredentials`. Over real TLS in the demo world.
//!
//! A person signing in at a Person Server through their OpenID Provider is shown live
//! against mockin by the interop tests (`tests/it/interop_mockin_oidc.rs`); the Person
//! Server's pages do not offer it yet.

use std::sync::Arc;

use aauth_agent::{AAuthClient, Agent, AgentProvider, HttpTokenSource};
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_keys::{Algorithm, Jwk, PrivateKey, Signer as _, Thumbprint, ThumbprintHash, base64url};
use aauth_metadata::{CacheConfig, HttpsUrl, KeyCache};
use aauth_oauth::{
    AccessTokenPolicy, AccessTokenVerifier, ClientAuth, ClientConfig, ClientCredentials, DpopCheck,
    Issuer,
};
use aauth_resource::{
    AAuthLayer, Access, MemoryReplayStore, OAuthAccess, Principal, Resource, RoutePolicy,
};
use aauth_tokens::{AgentId, ServerId};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use tower_service::Service;

use crate::Transcript;
use crate::d01_pseudonymous::{exchange, layered, unsigned};
use crate::world::{AsyncHandler, Request, Response, World, provider_handler};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const AS: &str = "https://as.example";
const RESOURCE: &str = "https://resource.example";
const CLIENT_SECRET: &str = "demo-client-secret";

/// The handler: says who it served, whichever protocol admitted them.
#[derive(Clone)]
struct Who;

impl Service<http::Request<Full<Bytes>>> for Who {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let who = match Principal::from_extensions(req.extensions()) {
            Some(Principal::AAuth(a)) => {
                json!({"protocol": "AAuth", "agent": a.agent().map(AgentId::as_str)})
            }
            Some(Principal::OAuth(c)) => json!({
                "protocol": "OAuth",
                "client_id": c.0.client_id(),
                "scope": c.0.scope(),
                "bound_to_key": c.0.jkt().is_some(),
            }),
            _ => json!({}),
        };
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from(
            who.to_string(),
        )))))
    }
}

/// The demo's authorization server: metadata, JWKS, and a token endpoint for the client
/// credentials grant that signs `at+jwt` tokens, bound to the proof's key when the request
/// carries a DPoP proof.
fn authorization_server(key: Arc<PrivateKey>) -> AsyncHandler {
    Arc::new(move |req: Request| {
        let key = Arc::clone(&key);
        Box::pin(async move {
            as_answer(&key, &req).unwrap_or_else(|(status, body)| json_response(status, &body))
        })
    })
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut r = http::Response::new(body.to_string().into_bytes());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn as_answer(key: &PrivateKey, req: &Request) -> Result<Response, (u16, Value)> {
    match req.uri().path() {
        "/.well-known/oauth-authorization-server" => Ok(json_response(
            200,
            &json!({"issuer": AS, "jwks_uri": format!("{AS}/jwks"), "token_endpoint": format!("{AS}/token")}),
        )),
        "/jwks" => {
            let jwk: Value =
                serde_json::from_str(&key.public_key().to_jwk().with_kid("as-1").to_json())
                    .map_err(|e| (500, json!({"error": e.to_string()})))?;
            Ok(json_response(200, &json!({"keys": [jwk]})))
        }
        "/token" => issue(key, req).map(|t| json_response(200, &t)),
        _ => Err((404, json!({"error": "not_found"}))),
    }
}

/// The token endpoint: `client_secret_basic` for the one demo client.
fn issue(key: &PrivateKey, req: &Request) -> Result<Value, (u16, Value)> {
    let expected = format!(
        "Basic {}",
        base64_std(format!("demo-client:{CLIENT_SECRET}").as_bytes())
    );
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return Err((401, json!({"error": "invalid_client"})));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(req.body()).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("grant_type").as_deref() != Some("client_credentials") {
        return Err((400, json!({"error": "unsupported_grant_type"})));
    }
    let now = SystemClock.now().as_secs();
    let mut claims = json!({
        "iss": AS, "sub": "demo-client", "client_id": "demo-client",
        "aud": get("resource").unwrap_or_else(|| RESOURCE.to_owned()),
        "scope": get("scope").unwrap_or_default(),
        "iat": now, "exp": now + 300, "jti": format!("at-{now}-{}", form.len()),
    });
    // A DPoP proof binds the token to its key (a demo server: the proof's own checks are
    // the resource's business in this demo).
    let bound = req
        .headers()
        .get("dpop")
        .and_then(|p| proof_jkt(p.to_str().ok()?));
    if let Some(jkt) = &bound {
        claims["cnf"] = json!({"jkt": jkt});
    }
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "as-1"});
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = key
        .sign(input.as_bytes())
        .map_err(|e| (500, json!({"error": e.to_string()})))?;
    Ok(json!({
        "access_token": format!("{input}.{}", base64url::encode(&sig)),
        "token_type": if bound.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": 300,
        "scope": claims["scope"],
    }))
}

/// The SHA-256 thumbprint of a DPoP proof's `jwk`.
fn proof_jkt(proof: &str) -> Option<String> {
    let header = base64url::decode(proof.split('.').next()?).ok()?;
    let v: Value = serde_json::from_slice(&header).ok()?;
    let jwk = Jwk::from_json(&v.get("jwk")?.to_string()).ok()?;
    Thumbprint::of_jwk(&jwk, ThumbprintHash::Sha256)
        .ok()
        .map(|t| t.as_str().to_owned())
}

fn base64_std(bytes: &[u8]) -> String {
    let url = base64url::encode(bytes).replace('-', "+").replace('_', "/");
    let pad = (4 - url.len() % 4) % 4;
    format!("{url}{}", "=".repeat(pad))
}

fn oauth_client(world: &World, dpop: Option<Arc<PrivateKey>>) -> Result<ClientCredentials, String> {
    let mut config = ClientConfig::new(
        HttpsUrl::parse(&format!("{AS}/token")).map_err(e)?,
        ClientAuth::SecretBasic {
            client_id: "demo-client".to_owned(),
            secret: CLIENT_SECRET.to_owned(),
        },
    )
    .scope("files.read")
    .resource(RESOURCE);
    if let Some(key) = dpop {
        config = config.dpop(key);
    }
    Ok(ClientCredentials::new(
        config,
        world.agent_transport_allowing(&["as.example"]),
        Arc::new(SystemClock),
    ))
}

/// Runs the demo.
///
/// # Errors
///
/// A description of the first step that did not behave as the drafts and RFCs require.
pub(crate) fn run() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let world = World::new().map_err(e)?;

        // The authorization server, and the agent provider with its enrolled agent.
        let as_key = Arc::new(PrivateKey::generate(Algorithm::Es256, &mut OsRandom).map_err(e)?);
        world
            .serve_async(&ServerId::parse(AS).map_err(e)?, authorization_server(as_key))
            .await
            .map_err(e)?;
        let provider_id = ServerId::parse("https://agent.example").map_err(e)?;
        let provider = Arc::new(
            AgentProvider::new(
                provider_id.clone(),
                Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?),
                "key-1",
            )
            .map_err(e)?,
        );
        let agent_id = AgentId::parse("aauth:assistant@agent.example").map_err(e)?;
        let agent_key = Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?);
        provider.enroll(&agent_id, agent_key.public_key(), None).map_err(e)?;
        world
            .serve_async(&provider_id, provider_handler(Arc::clone(&provider), Arc::clone(&clock)))
            .await
            .map_err(e)?;
        t.step(
            "authorization server",
            "https://as.example: RFC 8414 metadata, its JWKS, client credentials for demo-client (at+jwt, ES256; DPoP-bound on a proof)",
            vec![],
        );

        // The resource: one agent-token route that also takes OAuth tokens of as.example
        // granting files.read, Bearer or DPoP-bound.
        let keys = Arc::new(KeyCache::new(Arc::new(world.fetcher()), Arc::clone(&clock), CacheConfig::default()));
        let resource = Resource::new(ServerId::parse(RESOURCE).map_err(e)?, keys);
        let verifier = AccessTokenVerifier::new(
            AccessTokenPolicy::new(RESOURCE),
            [Issuer::discover(AS).map_err(e)?],
            Arc::new(world.fetcher()),
            Arc::clone(&clock),
            CacheConfig::default(),
        );
        let oauth = OAuthAccess::new(Arc::new(verifier))
            .require_scope("files.read")
            .realm("resource.example")
            .dpop(DpopCheck::new(RESOURCE, Arc::new(MemoryReplayStore::new(10_000))));
        let route = AAuthLayer::new(resource.route(RoutePolicy::new(Access::AgentToken)), Arc::clone(&clock)).oauth(oauth);
        world
            .serve_async(&ServerId::parse(RESOURCE).map_err(e)?, layered(route, Who))
            .await
            .map_err(e)?;
        t.step("resource", "serves /files in agent-token mode, and to OAuth clients of as.example with files.read", vec![]);

        // Nothing presented: both challenges.
        let req = unsigned("GET", "https://resource.example/files")?;
        let resp = world.send(req.clone()).await?;
        let challenges: Vec<&str> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let requirement = resp.headers().get("aauth-requirement").and_then(|v| v.to_str().ok());
        if resp.status() != 401
            || requirement != Some("requirement=agent-token")
            || !challenges.iter().any(|c| c.starts_with("Bearer "))
            || !challenges.iter().any(|c| c.starts_with("DPoP "))
        {
            return Err(format!("expected one 401 with both protocols' challenges, got {} {requirement:?} {challenges:?}", resp.status()));
        }
        let mut detail = vec![format!("HTTP/1.1 {}", resp.status())];
        detail.push(format!("aauth-requirement: {}", requirement.unwrap_or_default()));
        detail.extend(challenges.iter().map(|c| format!("www-authenticate: {c}")));
        t.step("anyone", "asks with nothing: one 401 tells an AAuth agent and an OAuth client what to do", detail);

        // The AAuth agent.
        let recorder = world.agent_transport();
        let source = Arc::new(HttpTokenSource::new(provider_id.clone(), recorder.clone()));
        let agent = Arc::new(Agent::new(agent_id, agent_key, source));
        let client = AAuthClient::builder(agent).clock(Arc::clone(&clock)).build(recorder);
        let resp = client
            .send(http::Request::get("https://resource.example/files").body(Bytes::new()).map_err(e)?)
            .await
            .map_err(e)?;
        let body = String::from_utf8_lossy(resp.body()).into_owned();
        if resp.status() != 200 || !body.contains("\"AAuth\"") {
            return Err(format!("the agent was not admitted: {} {body}", resp.status()));
        }
        t.step("agent", "signs with its agent token: admitted by AAuth", vec![body]);

        // The OAuth client with a Bearer token.
        let bearer = oauth_client(&world, None)?;
        let token = bearer.token().await.map_err(e)?;
        let req = http::Request::get("https://resource.example/files")
            .header("authorization", format!("Bearer {}", token.access_token))
            .body(Vec::new())
            .map_err(e)?;
        let resp = world.send(req.clone()).await?;
        if resp.status() != 200 || !String::from_utf8_lossy(resp.body()).contains("\"OAuth\"") {
            return Err(format!("the Bearer client was not admitted: {}", String::from_utf8_lossy(resp.body())));
        }
        exchange(&mut t, "OAuth client", "gets a token by client credentials, sends it as Bearer: admitted by OAuth", req, &resp);

        // The OAuth client whose token is bound to its key.
        let dpop_key = Arc::new(PrivateKey::generate(Algorithm::Es256, &mut OsRandom).map_err(e)?);
        let bound = oauth_client(&world, Some(dpop_key))?;
        let token = bound.token().await.map_err(e)?;
        let proof = bound
            .dpop_proof("GET", "https://resource.example/files", Some(&token.access_token))
            .map_err(e)?;
        let req = http::Request::get("https://resource.example/files")
            .header("authorization", format!("DPoP {}", token.access_token))
            .header("dpop", proof)
            .body(Vec::new())
            .map_err(e)?;
        let resp = world.send(req.clone()).await?;
        if resp.status() != 200 || !String::from_utf8_lossy(resp.body()).contains("\"bound_to_key\":true") {
            return Err(format!("the DPoP client was not admitted: {}", String::from_utf8_lossy(resp.body())));
        }
        exchange(&mut t, "DPoP client", "its token bound to its key, each request with a proof: admitted", req.clone(), &resp);

        // The same request again: the proof was used.
        let resp = world.send(req.clone()).await?;
        let refused = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|c| c.starts_with("DPoP") && c.contains("invalid_dpop_proof"));
        if resp.status() != 401 || !refused {
            return Err(format!("a replayed proof was not refused: {}", resp.status()));
        }
        exchange(&mut t, "attacker", "replays the DPoP request: the proof's jti was used, 401 invalid_dpop_proof", req, &resp);
        Ok(t)
    })
}
