//! The fixtures' agent: `aauth:assistant@agent.example`, whose provider
//! `https://agent.example` signs its agent tokens.

use aauth_keys::PublicKey;
use aauth_tokens::AgentTokenBuilder;

use crate::{agent_id, id};

/// The agent provider every fixture names.
pub const PROVIDER: &str = "https://agent.example";

/// The fixtures' agent, at [`PROVIDER`].
pub const ASSISTANT: &str = "aauth:assistant@agent.example";

/// An agent token for [`ASSISTANT`] from [`PROVIDER`], bound to `key`; the caller adds
/// what else it needs and signs it.
#[must_use]
pub fn assistant(key: &PublicKey) -> AgentTokenBuilder {
    agent(ASSISTANT, key)
}

/// An agent token for `agent` (at [`PROVIDER`]) from [`PROVIDER`], bound to `key`.
///
/// # Panics
///
/// If `agent` is not a valid agent identifier.
#[must_use]
pub fn agent(agent: &str, key: &PublicKey) -> AgentTokenBuilder {
    AgentTokenBuilder::new(id(PROVIDER), agent_id(agent), key)
}

/// The resource token `token` as a resource that lags draft -11 writes it (the TypeScript
/// reference's `@aauth/resource`): the presented token named only by the pre-rename
/// `person_token_jti`, with `presented_jti`'s value, and re-signed by `key` under `kid`.
///
/// # Panics
///
/// If `token` is not a compact JWS with a JSON object payload carrying `presented_jti`,
/// or `key` cannot sign.
#[must_use]
pub fn person_token_jti_only(token: &str, key: &dyn aauth_keys::Signer, kid: &str) -> String {
    let payload = token.split('.').nth(1).expect("a compact JWS");
    let mut claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&aauth_keys::base64url::decode(payload).expect("base64url"))
            .expect("a claim set");
    let jti = claims
        .remove("presented_jti")
        .expect("the token names presented_jti");
    claims.insert("person_token_jti".to_owned(), jti);
    let json = serde_json::Value::Object(claims).to_string();
    aauth_tokens::jws::sign(key, kid, "aa-resource+jwt", json.as_bytes()).expect("signs")
}
