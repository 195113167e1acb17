//! An agent calling an API that AAuth protects: its key from a JWK file, its agent token
//! from its provider, and every challenge the API answers with (a person token, an auth
//! token from the person's Person Server, a session) answered by the client itself.
//!
//! ```sh
//! cargo run -p aauth-agent --example call_api -- \
//!     aauth:assistant@agent.example https://agent.example agent.jwk https://resource.example/hello
//! ```
//!
//! The provider must have the agent enrolled with this key (`aauth agent enroll`, or the
//! provider's own enrolment). Nothing here is specific to one API: the same client calls
//! any resource.

#![allow(
    clippy::print_stdout,
    reason = "an example prints what the API answered"
)]

use std::sync::Arc;

use aauth_agent::{AAuthClient, Agent, HttpTokenSource, HttpsClient};
use aauth_keys::PrivateKey;
use aauth_metadata::HttpsTransport;
use aauth_tokens::{AgentId, ServerId};
use bytes::Bytes;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [agent, provider, key_file, url] = args.as_slice() else {
        return Err("usage: call_api AGENT_ID PROVIDER KEY_FILE URL".into());
    };
    let key = PrivateKey::from_jwk_json(&std::fs::read_to_string(key_file)?)?;
    // One HTTPS client for everything the agent reaches: public addresses only, no
    // redirects followed, a deadline and a response cap.
    let transport = Arc::new(HttpsClient::new(HttpsTransport::with_webpki_roots()));
    let agent = Arc::new(Agent::new(
        AgentId::parse(agent)?,
        Arc::new(key),
        Arc::new(HttpTokenSource::new(
            ServerId::parse(provider)?,
            transport.clone(),
        )),
    ));
    let client = AAuthClient::builder(agent).build(transport);
    let response = client
        .send(http::Request::get(url.as_str()).body(Bytes::new())?)
        .await?;
    println!("{}", response.status());
    println!("{}", String::from_utf8_lossy(response.body()));
    Ok(())
}
