//! Demo 2 (phase 2): agent identity. An agent provider issues its agent an agent token;
//! the resource, in agent-token mode, discovers the provider's keys over HTTPS
//! (`/.well-known/aauth-agent.json` → `jwks_uri` → JWKS), verifies the token and the
//! request signature, and names the agent. Over real TLS in the demo world.

use std::collections::BTreeMap;
use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_keys::{Algorithm, JwkSet, PrivateKey};
use aauth_metadata::{AgentProviderMetadata, CacheConfig, HttpsUrl, KeyCache, MetadataDocument};
use aauth_resource::{AAuthLayer, Access, Resource, RoutePolicy};
use aauth_signing::sign_request;
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId};

use crate::Transcript;
use crate::d01_pseudonymous::{Hello, exchange, expect, layered, unsigned};
use crate::world::{World, documents};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A token shortened, with its decoded header and claims.
fn token_lines(token: &str) -> Vec<String> {
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

        // The agent provider: a signing key published in its JWKS, and its metadata.
        let provider_id = ServerId::parse("https://agent.example").map_err(e)?;
        let provider_key = PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?;
        let mut jwk = provider_key.public_key().to_jwk();
        jwk.kid = Some("key-1".to_owned());
        let metadata = AgentProviderMetadata::new(provider_id.clone(), HttpsUrl::parse("https://agent.example/jwks.json").map_err(e)?);
        world
            .serve(
                &provider_id,
                documents(BTreeMap::from([
                    (format!("/.well-known/{}", AgentProviderMetadata::DWK), metadata.to_json()),
                    ("/jwks.json".to_owned(), JwkSet::from_jwks(&[jwk]).to_json()),
                ])),
            )
            .await
            .map_err(e)?;
        t.step(
            "agent provider",
            "serves https://agent.example/.well-known/aauth-agent.json and its JWKS (key-1)",
            vec![metadata.to_json()],
        );

        // The resource discovers issuer keys through the cache, over the world.
        let keys = Arc::new(KeyCache::new(Arc::new(world.fetcher()), Arc::clone(&clock), CacheConfig::default()));
        let resource = Resource::new(ServerId::parse("https://resource.example").map_err(e)?, keys.clone());
        let route = AAuthLayer::new(resource.route(RoutePolicy::new(Access::AgentToken)), Arc::clone(&clock));
        world
            .serve_async(&ServerId::parse("https://resource.example").map_err(e)?, layered(route, Hello))
            .await
            .map_err(e)?;
        t.step("resource", "serves /data in agent-token mode, keys discovered from each token's iss", vec![]);

        // The provider issues the agent its token, bound to the agent's key.
        let agent_key = PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?;
        let token = AgentTokenBuilder::new(
            provider_id.clone(),
            AgentId::parse("aauth:assistant@agent.example").map_err(e)?,
            agent_key.public_key(),
        )
        .sign(&provider_key, "key-1", clock.now(), &mut OsRandom)
        .map_err(e)?
        .token;
        t.step("agent provider", "issues aauth:assistant@agent.example an agent token bound to its key (cnf.jwk)", token_lines(&token));


        let req = unsigned("GET", "https://resource.example/data")?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 401, "aauth-requirement", "requirement=agent-token")?;
        exchange(&mut t, "agent", "asks without a signature: told to present an agent token", req, &resp);

        let mut req = unsigned("GET", "https://resource.example/data")?;
        sign_request(&mut req, &agent_key, &Scheme::jwt(token.clone()), clock.now()).map_err(e)?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 200, "content-type", "application/json")?;
        let body: serde_json::Value = serde_json::from_slice(resp.body()).map_err(e)?;
        if body["agent"] != "aauth:assistant@agent.example" {
            return Err(format!("the resource did not name the agent: {body}"));
        }
        let s = keys.stats();
        exchange(
            &mut t,
            "agent",
            &format!("signs with sig=jwt + its agent token: admitted and named (the resource fetched metadata and JWKS once: {} fetch)", s.fetches),
            req,
            &resp,
        );

        let mut req = unsigned("GET", "https://resource.example/data")?;
        sign_request(&mut req, &agent_key, &Scheme::jwt(token.clone()), clock.now()).map_err(e)?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 200, "content-type", "application/json")?;
        let s2 = keys.stats();
        if s2.fetches != s.fetches {
            return Err(format!("the second request fetched keys again: {s2:?}"));
        }
        t.step(
            "agent",
            format!(
                "signs again with the same token: admitted; the resource verified the token once and checks only this request's signature now (still {} fetch)",
                s2.fetches
            ),
            vec![],
        );

        // A token signed by a key the provider never published.
        let rogue = PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map_err(e)?;
        let forged = AgentTokenBuilder::new(
            provider_id,
            AgentId::parse("aauth:assistant@agent.example").map_err(e)?,
            agent_key.public_key(),
        )
        .sign(&rogue, "key-2", clock.now(), &mut OsRandom)
        .map_err(e)?
        .token;
        let mut req = unsigned("GET", "https://resource.example/data")?;
        sign_request(&mut req, &agent_key, &Scheme::jwt(forged), clock.now()).map_err(e)?;
        let resp = world.send(req.clone()).await?;
        expect(&resp, 401, "signature-error", "error=unknown_key")?;
        exchange(&mut t, "attacker", "presents a token signed by an unpublished key-2: unknown_key, no extra fetch inside the minute", req, &resp);
        Ok(t)
    })
}
