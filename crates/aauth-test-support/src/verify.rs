//! The verifying side of the fixtures: issuer keys that trust the provider, and a
//! verifier of requests signed under agent tokens.

use std::sync::Arc;

use aauth_keys::PublicKey;
use aauth_signing::{JwtResolver, SchemeResolver, Verifier, VerifyPolicy};
use aauth_tokens::{IssuerKeyResolver, StaticIssuerKeys, TokenType};

use crate::id;
use crate::tokens::PROVIDER;

/// Issuer keys that know [`PROVIDER`]'s agent-token signing key `key` as `kid`.
#[must_use]
pub fn provider_keys(key: &PublicKey, kid: &str) -> StaticIssuerKeys {
    StaticIssuerKeys::new().with(&id(PROVIDER), "aauth-agent.json", kid, key.clone())
}

/// The `jwt` scheme accepting agent tokens whose issuers' keys come from `issuers`.
#[must_use]
pub fn agent_token_resolver(issuers: Arc<dyn IssuerKeyResolver>) -> SchemeResolver {
    SchemeResolver::new().jwt(JwtResolver::new(issuers, &[TokenType::Agent]))
}

/// A verifier under `policy` of requests signed under agent tokens whose issuers' keys
/// come from `issuers`.
#[must_use]
pub fn agent_verifier(policy: VerifyPolicy, issuers: Arc<dyn IssuerKeyResolver>) -> Verifier {
    Verifier::new(policy, Arc::new(agent_token_resolver(issuers)))
}

/// Issuer keys from rows of `(issuer, dwk, kid, key)`: each issuer's `dwk` document
/// publishes `key` as `kid`.
///
/// # Panics
///
/// If an issuer is not a valid server identifier.
#[must_use]
pub fn issuer_keys(rows: &[(&str, &str, &str, &PublicKey)]) -> StaticIssuerKeys {
    rows.iter()
        .fold(StaticIssuerKeys::new(), |keys, &(iss, dwk, kid, key)| {
            keys.with(&id(iss), dwk, kid, key.clone())
        })
}
