//! The key cache's costs (`docs/performance.md`, issue 3): a warm hit, and a token
//! verification through the cache beside the same verification with the key in hand.
//!
//! `cargo bench -p aauth-metadata --bench cache` runs criterion for absolute times, then a
//! paired ratio (baseline, subject, baseline per round; median over rounds). Under
//! `cargo test` it does nothing. `AAUTH_PROFILE=static|cache|hit|none` runs one path 2000
//! times for instruction counts under callgrind.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "a benchmark that prints its report"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aauth_keys::rand::OsRandom;
use aauth_keys::time::{FixedClock, UnixTime};
use aauth_keys::{Jwk, JwkSet, PrivateKey};
use aauth_metadata::{CacheConfig, Fetch, FetchError, Fetched, HttpsUrl, KeyCache};
use aauth_tokens::{
    AgentClaims, AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys, Validation, verify,
};
use async_trait::async_trait;
use criterion::Criterion;
use futures_util::FutureExt;

const NOW: UnixTime = UnixTime(1_800_000_000);

struct Docs {
    jwks: String,
}

#[async_trait]
impl Fetch for Docs {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        Ok(Fetched::ok(match url.path_and_query() {
            "/.well-known/aauth-agent.json" => {
                r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json"}"#
                    .to_owned()
            }
            _ => self.jwks.clone(),
        }))
    }
}

struct Fixture {
    iss: ServerId,
    cache: KeyCache<Docs>,
    fixed: StaticIssuerKeys,
    token: String,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
    let agent = PrivateKey::ed25519_from_seed(&[2; 32]);
    let iss = ServerId::parse("https://agent.example").unwrap();
    // A realistic set: the signing key among a few others.
    let mut keys: Vec<Jwk> = (10..14)
        .map(|s| {
            let mut j = PrivateKey::ed25519_from_seed(&[s; 32])
                .public_key()
                .to_jwk();
            j.kid = Some(format!("old-{s}"));
            j
        })
        .collect();
    let mut j = provider.public_key().to_jwk();
    j.kid = Some("k1".to_owned());
    keys.push(j);
    let cache = KeyCache::new(
        Arc::new(Docs {
            jwks: JwkSet::from_jwks(&keys).to_json(),
        }),
        Arc::new(FixedClock::new(NOW)),
        CacheConfig::default(),
    );
    rt.block_on(cache.issuer_key(&iss, "aauth-agent.json", "k1"))
        .unwrap();
    let fixed = StaticIssuerKeys::new().with(
        &iss,
        "aauth-agent.json",
        "k1",
        provider.public_key().clone(),
    );
    let token = AgentTokenBuilder::new(
        iss.clone(),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent.public_key(),
    )
    .sign(&provider, "k1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    Fixture {
        iss,
        cache,
        fixed,
        token,
    }
}

fn hit(f: &Fixture) {
    let k = f
        .cache
        .issuer_key(&f.iss, "aauth-agent.json", "k1")
        .now_or_never()
        .unwrap()
        .unwrap();
    black_box(k);
}

fn verify_with(f: &Fixture, resolver: &dyn aauth_tokens::IssuerKeyResolver) {
    let v = Validation::new(NOW);
    let t = verify::<AgentClaims>(black_box(&f.token), &v, resolver)
        .now_or_never()
        .unwrap()
        .unwrap();
    black_box(t);
}

fn time(n: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = fixture(&rt);
    if let Ok(p) = std::env::var("AAUTH_PROFILE") {
        for _ in 0..2000 {
            match p.as_str() {
                "hit" => hit(&f),
                "static" => verify_with(&f, &f.fixed),
                "cache" => verify_with(&f, &f.cache),
                _ => {} // "none": the fixture alone, to subtract
            }
        }
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    c.bench_function("cache/hit", |b| b.iter(|| hit(&f)));
    c.bench_function("verify_agent_token/key_in_hand", |b| {
        b.iter(|| verify_with(&f, &f.fixed));
    });
    c.bench_function("verify_agent_token/through_cache", |b| {
        b.iter(|| verify_with(&f, &f.cache));
    });
    c.final_summary();

    // Paired ratio: through the cache over key in hand.
    let n = 2000;
    let mut ratios = Vec::new();
    for _ in 0..31 {
        let b1 = time(n, &mut || verify_with(&f, &f.fixed));
        let s = time(n, &mut || verify_with(&f, &f.cache));
        let b2 = time(n, &mut || verify_with(&f, &f.fixed));
        ratios.push(s / ((b1 + b2) / 2.0));
    }
    let hit_ns = time(1_000_000, &mut || hit(&f)) * 1e9;
    println!(
        "\npaired: verify through cache / key in hand = {:.3} (median of 31 rounds; target <= 1.05)\nhit: {hit_ns:.0} ns (target < 1000)",
        median(&mut ratios)
    );
}
