//! A Person Server on SQLite, mounted on axum: its metadata, JWKS, token endpoints,
//! consent pages and the person's dashboard, with one account.
//!
//! ```sh
//! cargo run -p aauth-person-server --features sqlite --example sqlite_person_server -- \
//!     https://ps.example ps.sqlite 127.0.0.1:8443
//! ```
//!
//! It serves plain HTTP for a TLS-terminating proxy that answers as the identifier given;
//! the signing key and the directed-identifier secret are made fresh on every start here
//! (keep both in files in a deployment: `aauth serve person-server` does). Sign in at
//! `{id}/interact` as `alice` with the password `correct horse battery staple`.

#![allow(
    clippy::print_stdout,
    reason = "an example tells its user where it listens"
)]

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::rand::{OsRandom, RandomSource};
use aauth_keys::time::SystemClock;
use aauth_keys::{Algorithm, PrivateKey};
use aauth_metadata::serve::EndpointService;
use aauth_metadata::{CacheConfig, EgressPolicy, HttpsTransport, KeyCache, https_fetcher};
use aauth_person_server::{PersonServer, SqliteStore};
use aauth_tokens::ServerId;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let id = ServerId::parse(
        &args
            .next()
            .unwrap_or_else(|| "https://ps.example".to_owned()),
    )?;
    let file = args.next().unwrap_or_else(|| "ps.sqlite".to_owned());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8443".to_owned());

    let clock = Arc::new(SystemClock);
    // Agent providers' and resources' keys and metadata, over HTTPS (public addresses).
    let fetch = Arc::new(https_fetcher(
        EgressPolicy::new(),
        HttpsTransport::with_webpki_roots(),
        clock.clone(),
    ));
    let keys = Arc::new(KeyCache::new(
        fetch.clone(),
        clock.clone(),
        CacheConfig::default(),
    ));
    let store = Arc::new(SqliteStore::open(std::path::Path::new(&file))?);
    let mut secret = [0u8; 32];
    OsRandom.fill(&mut secret)?;
    let ps = PersonServer::new(
        id.clone(),
        Arc::new(PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom)?),
        "ps-1",
        keys,
        store,
        secret,
    )?
    .consent_pages(Duration::from_secs(600))
    .metadata(fetch);
    ps.set_password("alice", "correct horse battery staple")
        .await?;

    let app = axum::Router::new().fallback_service(EndpointService::new(Arc::new(ps), clock));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("{id} on http://{} (SQLite: {file})", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
