//! A resource behind axum: `GET /hello` admits agents that sign with an agent token (their
//! provider's keys discovered over HTTPS, through the egress guard and the key cache), and
//! the handler receives the verified agent; anything else gets the draft's challenge.
//!
//! ```sh
//! cargo run -p aauth-resource --features axum --example axum_resource -- \
//!     https://resource.example 127.0.0.1:8080
//! ```
//!
//! It serves plain HTTP on the address given, for a TLS-terminating proxy that answers as
//! the resource's identifier (agents sign for `resource.example`, and the resource admits
//! only requests addressed to its own host). `aauth fetch https://resource.example/hello`
//! (the `aauth` command) calls it as an agent.

#![allow(
    clippy::print_stdout,
    reason = "an example tells its user where it listens"
)]

use std::sync::Arc;

use aauth_keys::time::SystemClock;
use aauth_metadata::{CacheConfig, EgressPolicy, HttpsTransport, KeyCache, https_fetcher};
use aauth_resource::{AAuthLayer, Access, CallingAgent, Resource, RoutePolicy};
use aauth_tokens::ServerId;

async fn hello(CallingAgent(agent): CallingAgent) -> String {
    format!("hello, {agent}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let id = args
        .next()
        .unwrap_or_else(|| "https://resource.example".to_owned());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let id = ServerId::parse(&id)?;

    // Agent providers' keys: discovered over HTTPS (public addresses only), cached.
    let clock = Arc::new(SystemClock);
    let fetch = https_fetcher(
        EgressPolicy::new(),
        HttpsTransport::with_webpki_roots(),
        clock.clone(),
    );
    let keys = Arc::new(KeyCache::new(
        Arc::new(fetch),
        clock.clone(),
        CacheConfig::default(),
    ));
    let resource = Resource::new(id, keys);

    let app = axum::Router::new()
        .route("/hello", axum::routing::get(hello))
        .layer(AAuthLayer::new(
            resource.route(RoutePolicy::new(Access::AgentToken)),
            clock,
        ));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("serving on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
