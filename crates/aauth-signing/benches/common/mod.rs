//! The fixture both benchmarks measure: an agent with its agent token, the provider's key
//! as the verifier knows it, and `GET https://resource.example/api/documents` as the
//! client builds it and as the server sees it.

use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys};
use http::request::Parts;

pub(crate) const NOW: UnixTime = UnixTime(1_800_000_000);

/// The provider's key, the agent's key, the agent token, and the issuer keys.
pub(crate) fn setup() -> (PrivateKey, PrivateKey, String, StaticIssuerKeys) {
    let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
    let agent = PrivateKey::ed25519_from_seed(&[2; 32]);
    let iss = ServerId::parse("https://agent.example").unwrap();
    let token = AgentTokenBuilder::new(
        iss.clone(),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent.public_key(),
    )
    .person_server(ServerId::parse("https://ps.example").unwrap())
    .sign(&provider, "key-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let keys = StaticIssuerKeys::new().with(
        &iss,
        "aauth-agent.json",
        "key-1",
        provider.public_key().clone(),
    );
    (provider, agent, token, keys)
}

/// The request as the client builds it.
pub(crate) fn client_request() -> Parts {
    http::Request::get("https://resource.example/api/documents")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// The request as the server sees it: origin-form URI and a `Host` header.
pub(crate) fn server_view(mut p: Parts) -> Parts {
    p.uri = "/api/documents".parse().unwrap();
    p.headers
        .insert("host", "resource.example".parse().unwrap());
    p
}
