//! Demo 2 (phase 2): agent identity. The agent provider (`aauth_agent::AgentProvider`)
//! issues its enrolled agent an agent token over HTTPS; the agent's signing client
//! (`aauth_agent::AAuthClient`) fetches it by itself and signs every request with it; the
//! resource, in agent-token mode, discovers the provider's keys over HTTPS
//! (`/.well-known/aauth-agent.json` → `jwks_uri` → JWKS), verifies the token and the
//! request signature, and names the agent. Over real TLS in the demo world.

use std::sync::Arc;

use aauth_agent::{AAuthClient, Agent, AgentProvider, HttpTokenSource};
use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_keys::{Algorithm, PrivateKey};
use aauth_metadata::{CacheConfig, KeyCache};
use aauth_resource::{AAuthLayer, Access, Resource, RoutePolicy};
use aauth_signing::sign_request;
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId};
use bytes::Bytes;

use crate::Transcript;
use crate::d01_pseudonymous::{HELLO, exchange, expect, layered, unsigned};
use crate::world::provider_handler;
use crate::world::{Recorder, Request, Response, World};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A token shortened, with its decoded header and claims.
pub(crate) fn token_lines(token: &str) -> Vec<String> {
    let mut out = vec![format!(
        "token: {}…{} ({} bytes)",
        &token[..24.min(token.len())],
        &token[token.len().saturating_sub(12)..],
        token.len()
    )];
    for (i, part) in token.split('.').take(2).enumerate() {
        let decoded = aauth_keys::base64url::decode(part)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        out.push(format!(
            "{}: {}",
            if i == 0 { "header" } else { "claims" },
            decoded.unwrap_or_default()
        ));
    }
    out
}

/// Records what the agent's client sent since the last step.
pub(crate) fn client_exchanges(
    t: &mut Transcript,
    recorder: &Recorder,
    summaries: &[&str],
) -> Result<(), String> {
    show_exchanges(t, recorder.take(), summaries)
}

/// Records `seen` in the transcript, one summary per exchange.
pub(crate) fn show_exchanges(
    t: &mut Transcript,
    seen: Vec<(Request, Response)>,
    summaries: &[&str],
) -> Result<(), String> {
    if seen.len() != summaries.len() {
        return Err(format!(
            "expected {} exchanges, the client made {}: {:?}",
            summaries.len(),
            seen.len(),
            seen.iter()
                .map(|(q, r)| format!("{} {} → {}", q.method(), q.uri(), r.status()))
                .collect::<Vec<_>>()
        ));
    }
    for ((req, resp), summary) in seen.into_iter().zip(summaries) {
        exchange(t, "agent", summary, req, &resp);
    }
    Ok(())
}

/// Runs the demo.
///
/// # Errors
///
/// A description of the first step that did not behave as the drafts require.
pub(crate) fn run() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let world = World::new().map_err(e)?;

        // The agent provider: its signing key published in its JWKS, its metadata, and
        // the agent it has enrolled (identifier and key).
        let provider_id = ServerId::parse("https://agent.example").map_err(e)?;
        let provider_key = Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?);
        let provider = Arc::new(AgentProvider::new(provider_id.clone(), provider_key, "key-1").map_err(e)?);
        let agent_id = AgentId::parse("aauth:assistant@agent.example").map_err(e)?;
        let agent_key = Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?);
        provider.enroll(&agent_id, agent_key.public_key(), None).map_err(e)?;
        world
            .serve_async(&provider_id, provider_handler(Arc::clone(&provider), Arc::clone(&clock)))
            .await
            .map_err(e)?;
        let metadata = provider
            .published()
            .respond(&http::Method::GET, "/.well-known/aauth-agent.json")
            .map(|r| String::from_utf8_lossy(r.body()).into_owned())
            .unwrap_or_default();
        t.step(
            "agent provider",
            "serves https://agent.example/.well-known/aauth-agent.json and its JWKS (key-1); has enrolled aauth:assistant@agent.example with the agent's public key",
            vec![metadata],
        );

        // The resource discovers issuer keys through the cache, over the world.
        let keys = Arc::new(KeyCache::new(Arc::new(world.fetcher()), Arc::clone(&clock), CacheConfig::default()));
        let resource = Resource::new(ServerId::parse("https://resource.example").map_err(e)?, keys.clone());
        let route = AAuthLayer::new(resource.route(RoutePolicy::new(Access::AgentToken)), Arc::clone(&clock));
        world
            .serve_async(&ServerId::parse("https://resource.example").map_err(e)?, layered(route, HELLO))
            .await
            .map_err(e)?;
        t.step("resource", "serves /data in agent-token mode, keys discovered from each token's iss", vec![]);

        let req = unsigned("GET", "https://resource.example/data")?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 401, "aauth-requirement", "requirement=agent-token")?;
        exchange(&mut t, "agent", "asks without a signature: told to present an agent token", req, &resp);

        // The agent's signing client: it gets its token from the provider by itself.
        let recorder = world.agent_transport();
        let source = Arc::new(HttpTokenSource::new(provider_id.clone(), recorder.clone()));
        let agent = Arc::new(Agent::new(agent_id.clone(), agent_key.clone(), source));
        let client = AAuthClient::builder(Arc::clone(&agent))
            .clock(Arc::clone(&clock))
            .build(recorder.clone());
        let get = || {
            http::Request::get("https://resource.example/data")
                .body(Bytes::new())
                .map_err(e)
        };
        let resp = client.send(get()?).await.map_err(e)?;
        let body: serde_json::Value = serde_json::from_slice(resp.body()).map_err(e)?;
        if resp.status() != 200 || body["agent"] != "aauth:assistant@agent.example" {
            return Err(format!("the resource did not admit and name the agent: {} {body}", resp.status()));
        }
        let s = keys.stats();
        let token = agent.token(clock.now()).await.map_err(e)?.token.clone();
        client_exchanges(
            &mut t,
            &recorder,
            &[
                "its client asks the provider for an agent token, signed with the enrolled key (sig=hwk)",
                &format!("its client signs the call with sig=jwt + the agent token: admitted and named (the resource fetched metadata and JWKS once: {} fetch)", s.fetches),
            ],
        )?;
        t.step("agent provider", "the token it issued (cnf.jwk binds the agent's key)", token_lines(&token));

        let resp = client.send(get()?).await.map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the second request was refused: {}", resp.status()));
        }
        let s2 = keys.stats();
        if s2.fetches != s.fetches || agent.refreshes() != 1 {
            return Err(format!("the second request fetched again: keys {s2:?}, agent tokens {}", agent.refreshes()));
        }
        client_exchanges(
            &mut t,
            &recorder,
            &[&format!(
                "calls again: the cached agent token, no provider call; the resource verified the token once and checks only this request's signature now (still {} fetch)",
                s2.fetches
            )],
        )?;

        // A key the provider never enrolled gets nothing.
        let stranger_key = Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?);
        let stranger = Agent::new(
            agent_id.clone(),
            stranger_key,
            Arc::new(HttpTokenSource::new(provider_id.clone(), recorder.clone())),
        );
        match stranger.token(clock.now()).await {
            Err(aauth_agent::AgentError::Provider { status, error }) if status == 403 && error == "unauthorized_agent" => {}
            other => return Err(format!("an unenrolled key was not refused: {other:?}")),
        }
        client_exchanges(&mut t, &recorder, &["an unenrolled key asks for aauth:assistant's token: 403 unauthorized_agent, nothing minted"])?;

        // A token signed by a key the provider never published.
        let rogue = PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?;
        let forged = AgentTokenBuilder::new(provider_id, agent_id, agent_key.public_key())
            .sign(&rogue, "key-2", clock.now(), &mut OsRandom)
            .map_err(e)?
            .token;
        let mut req = unsigned("GET", "https://resource.example/data")?;
        sign_request(&mut req, agent_key.as_ref(), &Scheme::jwt(forged), clock.now()).map_err(e)?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 401, "signature-error", "error=unknown_key")?;
        exchange(&mut t, "attacker", "presents a token signed by an unpublished key-2: unknown_key, no extra fetch inside the minute", req, &resp);
        Ok(t)
    })
}
