//! Demo 13: OAuth beside AAuth. One route of `https://resource.example` admits an AAuth
//! agent (its agent token), an OAuth client with a Bearer JWT access token (RFC 9068), and
//! one whose token is bound to its key (DPoP, RFC 9449); every `401` tells either kind of
//! client what to do (`AAuth-Requirement` and `WWW-Authenticate`, draft -11: "a response
//! MAY include both"). The authorization server `https://as.example` is a small one made
//! for the demo (client credentials, `at+jwt` tokens signed ES256); the clients are
//! `aauth_oauth::ClientCredentials`. Over real TLS in the demo world.
//!
//! Then a person signs in at their Person Server through the organisation's OpenID
//! Provider, the same `as.example` (authorization code with PKCE, `state` and `nonce`,
//! the ID token checked; the person is the account linked to `(iss, sub)`), and approves
//! an agent's request on the consent page: the agent's call goes through. Against a real
//! provider, mockin, in headless Chromium, that is `tests/it/interop_mockin_oidc.rs`.

use std::sync::Arc;

use aauth_agent::{AAuthClient, Agent, AgentProvider, HttpTokenSource};
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_keys::{Algorithm, Jwk, PrivateKey, Signer as _, Thumbprint, ThumbprintHash, base64url};
use aauth_metadata::{CacheConfig, HttpsUrl, KeyCache};
use aauth_oauth::{
    AccessTokenPolicy, AccessTokenVerifier, ClientAuth, ClientConfig, ClientCredentials, DpopCheck,
    Issuer, OidcClient, OidcProvider,
};
use aauth_person_server::{NewAccounts, SignInProvider};
use aauth_resource::{
    AAuthLayer, Access, MemoryReplayStore, OAuthAccess, Principal, Resource, RoutePolicy,
};
use aauth_tokens::{AgentId, ServerId};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::Transcript;
use crate::d01_pseudonymous::{Answers, exchange, layered, unsigned};
use crate::d04_consent::{Browser, page_lines, read_and_approve};
use crate::world::{AsyncHandler, Request, Response, World, provider_handler};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const AS: &str = "https://as.example";
const RESOURCE: &str = "https://resource.example";
const CLIENT_SECRET: &str = "demo-client-secret";

/// The handler's answer: who it served, whichever protocol admitted them.
fn who(req: &http::Request<Full<Bytes>>) -> Value {
    match Principal::from_extensions(req.extensions()) {
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
    }
}

/// The demo's authorization server, which is also the organisation's OpenID Provider:
/// metadata (RFC 8414 and OpenID Connect discovery), JWKS, an authorization endpoint
/// for the Person Server's sign-in (the person is signed in there already: it answers at
/// once with a code), and a token endpoint for client credentials (`at+jwt` tokens,
/// bound to the proof's key when the request carries a DPoP proof) and for codes (ID
/// tokens, after the PKCE check).
struct DemoAs {
    key: Arc<PrivateKey>,
    /// Code → the `nonce` and PKCE challenge it was asked with.
    codes: std::sync::Mutex<std::collections::BTreeMap<String, (String, String)>>,
}

fn authorization_server(key: Arc<PrivateKey>) -> AsyncHandler {
    let state = Arc::new(DemoAs {
        key,
        codes: std::sync::Mutex::default(),
    });
    Arc::new(move |req: Request| {
        let state = Arc::clone(&state);
        Box::pin(async move {
            as_answer(&state, &req).unwrap_or_else(|(status, body)| json_response(status, &body))
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

fn as_answer(state: &DemoAs, req: &Request) -> Result<Response, (u16, Value)> {
    let key = state.key.as_ref();
    match req.uri().path() {
        "/.well-known/oauth-authorization-server" => Ok(json_response(
            200,
            &json!({"issuer": AS, "jwks_uri": format!("{AS}/jwks"), "token_endpoint": format!("{AS}/token")}),
        )),
        "/.well-known/openid-configuration" => Ok(json_response(
            200,
            &json!({
                "issuer": AS, "jwks_uri": format!("{AS}/jwks"), "token_endpoint": format!("{AS}/token"),
                "authorization_endpoint": format!("{AS}/authorize"),
                "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
            }),
        )),
        "/jwks" => {
            let jwk: Value =
                serde_json::from_str(&key.public_key().to_jwk().with_kid("as-1").to_json())
                    .map_err(|e| (500, json!({"error": e.to_string()})))?;
            Ok(json_response(200, &json!({"keys": [jwk]})))
        }
        "/authorize" => authorize(state, req),
        "/token" => {
            let form: Vec<(String, String)> =
                form_urlencoded::parse(req.body()).into_owned().collect();
            if form
                .iter()
                .any(|(k, v)| k == "grant_type" && v == "authorization_code")
            {
                id_token(state, req, &form).map(|t| json_response(200, &t))
            } else {
                issue(key, req).map(|t| json_response(200, &t))
            }
        }
        _ => Err((404, json!({"error": "not_found"}))),
    }
}

/// The Person Server's client at the provider.
const PS_CLIENT: &str = "demo-ps";
const PS_CLIENT_SECRET: &str = "demo-ps-secret";
const PS_CALLBACK: &str = "https://ps.example/interact/oidc/callback";
/// Who the person is at the provider.
const PERSON_SUB: &str = "alice-7c1f";

/// `GET /authorize`: the person is signed in at the provider already; back to the Person
/// Server with a code (OpenID Connect Core §3.1.2.5), `state` echoed.
fn authorize(state: &DemoAs, req: &Request) -> Result<Response, (u16, Value)> {
    let q: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("client_id").as_deref() != Some(PS_CLIENT)
        || get("redirect_uri").as_deref() != Some(PS_CALLBACK)
        || get("response_type").as_deref() != Some("code")
        || get("code_challenge_method").as_deref() != Some("S256")
    {
        return Err((400, json!({"error": "invalid_request"})));
    }
    let (nonce, challenge) = (
        get("nonce").unwrap_or_default(),
        get("code_challenge").unwrap_or_default(),
    );
    let mut codes = state
        .codes
        .lock()
        .map_err(|_| (500, json!({"error": "server_error"})))?;
    let code = format!("code-{}", codes.len() + 1);
    codes.insert(code.clone(), (nonce, challenge));
    let start = format!("{PS_CALLBACK}?");
    let location = form_urlencoded::Serializer::for_suffix(start.clone(), start.len())
        .append_pair("code", &code)
        .append_pair("state", &get("state").unwrap_or_default())
        .finish();
    let mut r = http::Response::new(Vec::new());
    *r.status_mut() = http::StatusCode::FOUND;
    r.headers_mut().insert(
        http::header::LOCATION,
        http::HeaderValue::from_str(&location)
            .map_err(|e| (500, json!({"error": e.to_string()})))?,
    );
    Ok(r)
}

/// The token endpoint for a code: the Person Server's client (`client_secret_basic`),
/// the PKCE verifier against the challenge, then an ID token (ES256) with the nonce.
fn id_token(
    state: &DemoAs,
    req: &Request,
    form: &[(String, String)],
) -> Result<Value, (u16, Value)> {
    let expected = format!(
        "Basic {}",
        crate::world::base64_std(format!("{PS_CLIENT}:{PS_CLIENT_SECRET}").as_bytes())
    );
    if req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_none_or(|v| v.as_bytes() != expected.as_bytes())
    {
        return Err((401, json!({"error": "invalid_client"})));
    }
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (nonce, challenge) = state
        .codes
        .lock()
        .map_err(|_| (500, json!({"error": "server_error"})))?
        .remove(&get("code"))
        .ok_or((400, json!({"error": "invalid_grant"})))?;
    if base64url::encode(&aauth_keys::digest::sha256(get("code_verifier").as_bytes())) != challenge
    {
        return Err((
            400,
            json!({"error": "invalid_grant", "error_description": "PKCE verifier"}),
        ));
    }
    let now = SystemClock.now().as_secs();
    let claims = json!({
        "iss": AS, "aud": PS_CLIENT, "sub": PERSON_SUB, "nonce": nonce,
        "iat": now, "exp": now + 300, "email": "alice@corp.example",
    });
    Ok(
        json!({"access_token": "opaque", "token_type": "Bearer", "id_token": sign(&state.key, "JWT", &claims)?}),
    )
}

/// A compact JWS of `claims` under the provider's key.
fn sign(key: &PrivateKey, typ: &str, claims: &Value) -> Result<String, (u16, Value)> {
    let header = json!({"alg": "ES256", "typ": typ, "kid": "as-1"});
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = key
        .sign(input.as_bytes())
        .map_err(|e| (500, json!({"error": e.to_string()})))?;
    Ok(format!("{input}.{}", base64url::encode(&sig)))
}

/// The token endpoint: `client_secret_basic` for the one demo client.
fn issue(key: &PrivateKey, req: &Request) -> Result<Value, (u16, Value)> {
    let expected = format!(
        "Basic {}",
        crate::world::base64_std(format!("demo-client:{CLIENT_SECRET}").as_bytes())
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
    Ok(json!({
        "access_token": sign(key, "at+jwt", &claims)?,
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
            .serve_async(&ServerId::parse(AS).map_err(e)?, authorization_server(Arc::clone(&as_key)))
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
            .serve_async(&ServerId::parse(RESOURCE).map_err(e)?, layered(route, Answers(who)))
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

        person_signs_in(&mut t, as_key).await?;
        Ok(t)
    })
}

/// The person signs in at their Person Server through the organisation's provider (the
/// same `as.example`) and approves an agent's request: in a world of its own, with the
/// shared demo parties.
async fn person_signs_in(t: &mut Transcript, as_key: Arc<PrivateKey>) -> Result<(), String> {
    let world = World::new().map_err(e)?;
    world
        .serve_async(
            &ServerId::parse(AS).map_err(e)?,
            authorization_server(as_key),
        )
        .await
        .map_err(e)?;
    let fetch = Arc::new(world.fetcher_allowing(&["as.example"]));
    let provider = OidcProvider::discover(fetch.as_ref(), AS)
        .await
        .map_err(e)?;
    let client = OidcClient::new(
        provider,
        ClientAuth::SecretBasic {
            client_id: PS_CLIENT.to_owned(),
            secret: PS_CLIENT_SECRET.to_owned(),
        },
        PS_CALLBACK,
        fetch,
        world.agent_transport_allowing(&["as.example"]),
        Arc::new(SystemClock),
    );
    let p = crate::parties::parties_in(
        world,
        crate::parties::Options::consenting(),
        Some(SignInProvider::new("corp", "Example Corp", client).new_accounts(NewAccounts::Create)),
    )
    .await?;
    t.step(
        "Person Server",
        "https://ps.example offers sign-in with Example Corp (as.example, discovered by OpenID Connect discovery); its client redirects to /interact/oidc/callback",
        vec![],
    );
    let (call, interaction) = crate::browser::waiting_call(&p).await?;
    t.step(
        "agent",
        "calls resource.example; its Person Server needs the person: an interaction code for them",
        vec![format!("{}?code={}", interaction.url, interaction.code)],
    );

    let mut browser = Browser {
        world: &p.world,
        cookies: Vec::new(),
    };
    let (req, login) = browser
        .go(
            "GET",
            &format!("{}?code={}", interaction.url, interaction.code),
            &[],
        )
        .await?;
    let html = String::from_utf8_lossy(login.body()).into_owned();
    let link = html
        .split("data-provider=\"corp\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or("the sign-in page offers no provider")?
        .replace("&amp;", "&");
    t.step(
        "person",
        "opens the link: the sign-in page offers Example Corp",
        page_lines(&req, &login),
    );
    let (req, started) = browser
        .go("GET", &format!("https://ps.example{link}"), &[])
        .await?;
    let to_provider = header(&started, "location")?;
    if started.status() != 303 || !to_provider.starts_with("https://as.example/authorize?") {
        return Err(format!(
            "the sign-in did not go to the provider: {} {to_provider}",
            started.status()
        ));
    }
    t.step(
        "person",
        "chooses Example Corp: off to the provider with state, nonce and a PKCE challenge (kept in a sealed SameSite=Lax cookie)",
        page_lines(&req, &started),
    );
    let (req, answered) = browser.go("GET", &to_provider, &[]).await?;
    let back = header(&answered, "location")?;
    t.step(
        "provider",
        "knows the person already: back to the Person Server with a code",
        page_lines(&req, &answered),
    );
    let (req, signed_in) = browser.go("GET", &back, &[]).await?;
    let refresh = header(&signed_in, "refresh")?;
    let target = refresh
        .strip_prefix("0; url=")
        .ok_or("no way back to the request")?
        .to_owned();
    if signed_in.status() != 200
        || !browser
            .cookies
            .iter()
            .any(|(k, _)| k == "__Host-aauth-session")
    {
        return Err(format!(
            "the sign-in failed: {}",
            String::from_utf8_lossy(signed_in.body())
        ));
    }
    t.step(
        "Person Server",
        "exchanges the code (with the PKCE verifier), checks the ID token (signature, iss, aud, nonce, times): the person is the account linked to (iss, sub), made on this first sign-in",
        page_lines(&req, &signed_in),
    );
    let (req, done) = read_and_approve(
        t,
        &mut browser,
        &interaction.code,
        &target,
        "reads the request on the consent page",
    )
    .await?;
    let bound =
        p.ps.store()
            .binding(p.provider.id(), &p.agent_id)
            .await
            .map_err(e)?;
    if bound.as_deref() != Some("corp:alice-7c1f") {
        return Err(format!(
            "the agent is bound to {bound:?}, not to the account linked to the person at the provider"
        ));
    }
    t.step("person", "approves: the agent is now bound to corp:alice-7c1f, the account linked to (https://as.example, alice-7c1f)", page_lines(&req, &done));
    let resp = tokio::time::timeout(std::time::Duration::from_secs(60), call)
        .await
        .map_err(|_| "the agent's call did not finish after the approval")?
        .map_err(e)??;
    let body = String::from_utf8_lossy(resp.body()).into_owned();
    if resp.status() != 200 {
        return Err(format!(
            "the agent's call failed after the approval: {} {body}",
            resp.status()
        ));
    }
    t.step(
        "agent",
        "its call goes through with the person's authorization",
        vec![body],
    );
    Ok(())
}

fn header(resp: &Response, name: &str) -> Result<String, String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} in a {} answer", resp.status()))
}
