//! Verifying a signed request by hand, without a framework: an agent signs a request with
//! its agent token (`Signature-Key: sig=jwt`), the request arrives as a server sees it
//! (origin-form path, `Host`), and the verifier checks the signature, the token, the
//! `created` window and the covered components, then refuses the same request a second
//! time.
//!
//! ```sh
//! cargo run -p aauth-signing --example verify_by_hand
//! ```

#![allow(clippy::print_stdout, reason = "an example shows what was checked")]

use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_signing::{
    JwtResolver, ReplayGuard, SchemeResolver, Verifier, VerifyPolicy, sign_request,
};
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys, TokenType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = UnixTime(1_800_000_000);
    // The agent's provider, and the agent token it issued for the agent's key.
    let provider_key = PrivateKey::ed25519_from_seed(&[1; 32]);
    let provider = ServerId::parse("https://agent.example")?;
    let agent_key = PrivateKey::ed25519_from_seed(&[2; 32]);
    let agent_token = AgentTokenBuilder::new(
        provider.clone(),
        AgentId::parse("aauth:assistant@agent.example")?,
        agent_key.public_key(),
    )
    .sign(&provider_key, "key-1", now, &mut OsRandom)?;

    // The agent signs.
    let mut request = http::Request::post("https://resource.example/api/documents")
        .header("content-type", "application/json")
        .body(br#"{"title":"notes"}"#.to_vec())?;
    sign_request(
        &mut request,
        &agent_key,
        &Scheme::jwt(agent_token.token),
        now,
    )?;
    for name in ["content-digest", "signature-input", "signature"] {
        if let Some(v) = request.headers().get(name) {
            println!("{name}: {}", v.to_str()?);
        }
    }

    // The resource sees an origin-form URI and a Host header.
    let (mut parts, body) = request.into_parts();
    parts.uri = "/api/documents".parse()?;
    parts.headers.insert("host", "resource.example".parse()?);

    // Keys: the provider's (a KeyCache discovers them over HTTPS in production).
    let issuers = StaticIssuerKeys::new().with(
        &provider,
        "aauth-agent.json",
        "key-1",
        provider_key.public_key().clone(),
    );
    let resolver =
        SchemeResolver::new().jwt(JwtResolver::new(Arc::new(issuers), &[TokenType::Agent]));
    let resource = ServerId::parse("https://resource.example")?;
    let verifier = Verifier::new(VerifyPolicy::for_server(&resource), Arc::new(resolver))
        .replay(ReplayGuard::in_memory());

    let verified = futures_executor::block_on(verifier.verify(&parts, &body, now))?;
    println!(
        "verified: key {} (label {})",
        verified.key.thumbprint(),
        verified.label
    );
    // The same request again is a replay.
    match futures_executor::block_on(verifier.verify(&parts, &body, now)) {
        Err(e) => println!("again: refused, {e} ({})", e.status()),
        Ok(_) => return Err("a replayed request was admitted".into()),
    }
    Ok(())
}
