//! The cost of AAuth request signing and verification against the raw Ed25519 operations
//! of the backend, measured in one run (`cargo xtask bench` prints the ratios).
//!
//! - `raw/sign`, `raw/verify`: ed25519-dalek over the same signature base.
//! - `request/sign`: sign a GET with an agent token (base, Signature-Key, headers).
//! - `request/verify_cold`: verify that request with the agent token not yet verified
//!   (token signature + request signature).
//! - `request/verify_warm`: verify it with the token already verified (the warm path a
//!   resource caches): one signature.
//! - `jwt/mint`, `jwt/verify`: an agent token.
//! - `headers/parse`: Signature-Input, Signature and Signature-Key of that request.
//! - `jwt/decode`, `key/import`: the non-crypto parts of token verification (diagnostic).

#![allow(missing_docs, clippy::unwrap_used, reason = "a benchmark")]

use std::hint::black_box;
use std::sync::Arc;

use aauth_headers::{Scheme, SignatureInput, SignatureKey, Signatures};
use aauth_keys::Signer;
use aauth_keys::rand::OsRandom;
use aauth_signing::{
    JwtResolver, KeyResolver, ResolveContext, SchemeResolver, SignOptions, SigningKey,
    VerifyPolicy, prepare, sign,
};
use aauth_tokens::{
    AgentClaims, AgentId, AgentTokenBuilder, ServerId, TokenType, Validation, verify,
};
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;

mod common;

use common::{NOW, client_request, server_view, setup};

fn bench(c: &mut Criterion) {
    let (provider, agent, token, keys) = setup();
    let scheme = Scheme::jwt(token.clone());
    let mut signed = client_request();
    sign(
        &mut signed,
        b"",
        &[SigningKey::new("sig", &agent, &scheme)],
        &SignOptions::default(),
        NOW,
    )
    .unwrap();
    let server = server_view(signed);
    let policy = VerifyPolicy::for_server(&ServerId::parse("https://resource.example").unwrap());
    let base = prepare(&server, b"", &policy, NOW)
        .unwrap()
        .signature_base()
        .to_owned();

    // The backend's raw operations over the same base.
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let vk = dalek.verifying_key();
    let sig = dalek.sign(base.as_bytes());
    c.bench_function("raw/sign", |b| {
        b.iter(|| dalek.sign(black_box(base.as_bytes())));
    });
    c.bench_function("raw/verify", |b| {
        b.iter(|| vk.verify_strict(black_box(base.as_bytes()), &sig).unwrap());
    });

    c.bench_function("request/sign", |b| {
        b.iter(|| {
            let mut p = client_request();
            sign(
                &mut p,
                b"",
                &[SigningKey::new("sig", &agent, &scheme)],
                &SignOptions::default(),
                NOW,
            )
            .unwrap();
            p
        });
    });

    let resolver = SchemeResolver::new().jwt(JwtResolver::new(
        Arc::new(keys.clone()),
        &[TokenType::Agent],
    ));
    c.bench_function("request/verify_cold", |b| {
        b.iter(|| {
            let prepared = prepare(black_box(&server), b"", &policy, NOW).unwrap();
            let resolved = futures_executor::block_on(
                resolver.resolve(prepared.scheme(), &ResolveContext::new(NOW, "sig")),
            )
            .unwrap();
            prepared.finish(resolved).unwrap()
        });
    });

    // Warm: the token was verified before; its resolution is cached by the caller.
    let cached =
        futures_executor::block_on(resolver.resolve(&scheme, &ResolveContext::new(NOW, "sig")))
            .unwrap();
    c.bench_function("request/verify_warm", |b| {
        b.iter(|| {
            let prepared = prepare(black_box(&server), b"", &policy, NOW).unwrap();
            prepared.finish(cached.clone()).unwrap()
        });
    });

    let iss = ServerId::parse("https://agent.example").unwrap();
    let sub = AgentId::parse("aauth:assistant@agent.example").unwrap();
    c.bench_function("jwt/mint", |b| {
        b.iter(|| {
            AgentTokenBuilder::new(iss.clone(), sub.clone(), agent.public_key())
                .jti("j")
                .sign(&provider, "key-1", NOW, &mut OsRandom)
                .unwrap()
        });
    });
    c.bench_function("jwt/verify", |b| {
        b.iter(|| {
            futures_executor::block_on(verify::<AgentClaims>(
                black_box(&token),
                &Validation::new(NOW),
                &keys,
            ))
            .unwrap()
        });
    });

    c.bench_function("jwt/decode", |b| {
        b.iter(|| {
            aauth_tokens::Unverified::<AgentClaims>::decode(
                black_box(&token),
                &Validation::new(NOW),
            )
            .unwrap()
        });
    });
    let jwk = agent.public_key().to_jwk();
    c.bench_function("key/import", |b| {
        b.iter(|| aauth_keys::PublicKey::from_jwk(black_box(&jwk)).unwrap());
    });

    let si = server.headers["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    let sg = server.headers["signature"].to_str().unwrap().to_owned();
    let sk = server.headers["signature-key"].to_str().unwrap().to_owned();
    c.bench_function("headers/parse", |b| {
        b.iter(|| {
            (
                SignatureInput::parse(black_box(&si)).unwrap(),
                Signatures::parse(black_box(&sg)).unwrap(),
                SignatureKey::parse(black_box(&sk)).unwrap(),
            )
        });
    });
    let _ = agent.sign(b"x");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
