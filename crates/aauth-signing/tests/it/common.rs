//! Fixtures: keys, tokens, a verifier, and the server's view of a signed request.

use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::{Jwk, PrivateKey, PublicKey, base64url};
use aauth_signing::{
    AuthoritySource, KeyIdentity, KeyResolver, ResolveContext, ResolvedKey, SchemeResolver,
    SignOptions, SigningKey, VerifiedRequest, Verifier, VerifyError, VerifyPolicy, sign,
};
use aauth_tokens::StaticIssuerKeys;
use async_trait::async_trait;
use http::request::Parts;

pub use aauth_test_support::request::as_server;
use aauth_test_support::verify::{agent_token_resolver, agent_verifier, provider_keys};
pub use aauth_test_support::{NOW, id as sid};

pub fn provider_key() -> PrivateKey {
    aauth_test_support::key(1)
}

pub fn agent_key() -> PrivateKey {
    aauth_test_support::key(2)
}

pub fn issuers() -> StaticIssuerKeys {
    provider_keys(provider_key().public_key(), "k1")
}

pub fn agent_token_for(key: &PublicKey) -> String {
    aauth_test_support::tokens::assistant(key)
        .sign(&provider_key(), "k1", NOW, &mut OsRandom)
        .unwrap()
        .token
}

pub fn agent_token() -> String {
    agent_token_for(agent_key().public_key())
}

pub fn resolver() -> SchemeResolver {
    agent_token_resolver(Arc::new(issuers()))
}

pub fn verifier(policy: VerifyPolicy) -> Verifier {
    agent_verifier(policy, Arc::new(issuers()))
}

pub fn block<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// A client request (absolute URI), signed by the agent with its agent token.
pub fn signed(method: &str, url: &str, body: &[u8], options: &SignOptions) -> (Parts, Vec<u8>) {
    signed_with(
        method,
        url,
        &[("content-type", "application/json")],
        body,
        options,
    )
}

pub fn signed_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    options: &SignOptions,
) -> (Parts, Vec<u8>) {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (mut parts, ()) = b.body(()).unwrap().into_parts();
    let key = agent_key();
    let scheme = Scheme::jwt(agent_token());
    sign(
        &mut parts,
        body,
        &[SigningKey::new("sig", &key, &scheme)],
        options,
        NOW,
    )
    .unwrap();
    (parts, body.to_vec())
}

/// The hosts these tests sign for, as one server's names (the authority tests use their
/// own policies).
pub const HOSTS: [&str; 6] = [
    "api.example",
    "api.example:8443",
    "resource.example",
    "ps.example",
    "r.example",
    "agent.example",
];

/// The AAuth profile for a server answering to [`HOSTS`].
pub fn policy() -> VerifyPolicy {
    VerifyPolicy::new(AuthoritySource::names(HOSTS).unwrap())
}

pub fn verify(parts: &Parts, body: &[u8]) -> Result<VerifiedRequest, VerifyError> {
    verify_with(policy(), parts, body)
}

pub fn verify_with(
    policy: VerifyPolicy,
    parts: &Parts,
    body: &[u8],
) -> Result<VerifiedRequest, VerifyError> {
    block(verifier(policy).verify(parts, body, NOW))
}

pub fn set(parts: &mut Parts, name: &'static str, value: &str) {
    parts.headers.insert(name, value.parse().unwrap());
}

pub fn header(parts: &Parts, name: &str) -> String {
    parts.headers[name].to_str().unwrap().to_owned()
}

/// Test-only resolver: the key is the unverified `cnf.jwk` of the `jwt` member, or a fixed
/// key. For vectors whose JWTs are placeholders.
#[derive(Debug, Clone)]
pub struct FixedKey(pub Option<PublicKey>);

#[async_trait]
impl KeyResolver for FixedKey {
    async fn resolve(
        &self,
        scheme: &Scheme,
        _ctx: &ResolveContext<'_>,
    ) -> Result<ResolvedKey, VerifyError> {
        if let Some(k) = &self.0 {
            return Ok(ResolvedKey::new(
                k.clone(),
                KeyIdentity::Other {
                    scheme: scheme.name().to_owned(),
                    id: "fixed".to_owned(),
                },
            ));
        }
        let Scheme::Jwt { jwt, .. } = scheme else {
            return Err(VerifyError::UnsupportedScheme { scheme: None });
        };
        let payload = jwt.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64url::decode(payload).unwrap()).unwrap();
        let key = PublicKey::from_jwk(&Jwk::from_value(&claims["cnf"]["jwk"]).unwrap()).unwrap();
        Ok(ResolvedKey::new(
            key,
            KeyIdentity::Other {
                scheme: "jwt".to_owned(),
                id: "cnf".to_owned(),
            },
        ))
    }
}
