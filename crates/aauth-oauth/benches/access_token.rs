//! What verifying an OAuth access token costs beyond its signature (`docs/performance.md`,
//! issue 15): a warm `AccessTokenVerifier::verify_bearer` (parse, claims, issuer, cache
//! hit, signature) beside the raw signature verification with the key in hand, for RS256
//! and ES256 tokens shaped like oidc-provider's.
//!
//! `cargo bench -p aauth-oauth --bench access_token` runs criterion for absolute times,
//! then a paired ratio per algorithm (baseline, subject, baseline per round; median over
//! rounds). Under `cargo test` it does nothing.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "a benchmark that prints its report"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aauth_keys::time::{FixedClock, UnixTime};
use aauth_keys::{Jwk, PrivateKey, Signer as _, base64url};
use aauth_metadata::{CacheConfig, Fetch, FetchError, Fetched, HttpsUrl};
use aauth_oauth::{AccessTokenPolicy, AccessTokenVerifier, Issuer, IssuerKey, JwsAlgorithm};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use criterion::Criterion;
use futures_util::FutureExt as _;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://op.example";
const AUDIENCE: &str = "https://api.example";

struct Docs {
    jwks: String,
}

#[async_trait::async_trait]
impl Fetch for Docs {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        Ok(Fetched::ok(match url.path_and_query() {
            "/.well-known/oauth-authorization-server" => {
                json!({"issuer": ISSUER, "jwks_uri": "https://op.example/jwks"}).to_string()
            }
            _ => self.jwks.clone(),
        }))
    }
}

/// A token endpoint that always issues a five-minute token.
struct TokenEndpoint;

#[async_trait::async_trait]
impl aauth_metadata::Transport for TokenEndpoint {
    async fn send(
        &self,
        _: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, aauth_metadata::TransportError> {
        Ok(http::Response::new(bytes::Bytes::from_static(
            br#"{"access_token":"t","token_type":"Bearer","expires_in":300}"#,
        )))
    }
}

/// An introspection endpoint that says every token is active.
struct Introspector;

#[async_trait::async_trait]
impl aauth_metadata::Transport for Introspector {
    async fn send(
        &self,
        _: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, aauth_metadata::TransportError> {
        let body = json!({"active": true, "iss": ISSUER, "aud": AUDIENCE, "client_id": "svc",
            "scope": "read write", "exp": NOW + 3600, "iat": NOW - 5, "token_type": "Bearer"});
        Ok(http::Response::new(bytes::Bytes::from(body.to_string())))
    }
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey` DER with two-byte lengths (a 2048-bit key).
fn n_e(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    // SEQUENCE (82 LL LL) INTEGER n (82 LL LL, 00-led) INTEGER e (short)
    let n_len = usize::from(der[6]) << 8 | usize::from(der[7]);
    let n = &der[8..8 + n_len];
    let e = &der[8 + n_len + 2..];
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|&&b| b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

struct Token {
    token: String,
    alg: JwsAlgorithm,
    key: IssuerKey,
}

impl Token {
    fn input_and_signature(&self) -> (&str, Vec<u8>) {
        let (input, sig) = self.token.rsplit_once('.').unwrap();
        (input, base64url::decode(sig).unwrap())
    }
}

fn mint(alg: &str, kid: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
    let claims = json!({
        "jti": "NfpPps4QpGKaAsq0hWnhQyFHkCQoOZ9yCqGlKjUPjGp",
        "sub": "basic-client", "iat": NOW - 10, "exp": NOW + 300, "scope": "read write",
        "client_id": "basic-client", "iss": ISSUER, "aud": AUDIENCE,
    });
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", base64url::encode(&sig))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rsa = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let (n, e) = n_e(rsa.public_key().as_ref());
    let rsa_jwk = Jwk::from_json(
        &json!({"kty": "RSA", "kid": "rs", "n": base64url::encode(&n), "e": base64url::encode(&e)})
            .to_string(),
    )
    .unwrap();
    let ec = PrivateKey::es256_from_scalar(&[9; 32]).unwrap();
    let ec_jwk = ec.public_key().to_jwk().with_kid("es");
    let jwks = format!(r#"{{"keys":[{},{}]}}"#, rsa_jwk.to_json(), ec_jwk.to_json());

    let rs = Token {
        token: mint("RS256", "rs", &|m| {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), m, &mut sig)
                .unwrap();
            sig
        }),
        alg: JwsAlgorithm::Rs256,
        key: IssuerKey::from_jwk(&rsa_jwk).unwrap(),
    };
    let es = Token {
        token: mint("ES256", "es", &|m| ec.sign(m).unwrap()),
        alg: JwsAlgorithm::Es256,
        key: IssuerKey::from_jwk(&ec_jwk).unwrap(),
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verifier = AccessTokenVerifier::new(
        AccessTokenPolicy::new(AUDIENCE),
        [Issuer::discover(ISSUER).unwrap()],
        Arc::new(Docs { jwks }),
        Arc::new(FixedClock::new(UnixTime(NOW))),
        CacheConfig::default(),
    );
    // Warm: metadata and keys fetched once.
    for t in [&rs, &es] {
        rt.block_on(verifier.verify_bearer(&t.token)).unwrap();
    }
    let full = |t: &Token| {
        let claims = verifier
            .verify_bearer(black_box(&t.token))
            .now_or_never()
            .expect("a warm verification never waits")
            .unwrap();
        black_box(claims);
    };
    let raw = |t: &Token| {
        let (input, sig) = t.input_and_signature();
        t.key
            .verify(t.alg, black_box(input.as_bytes()), black_box(&sig))
            .unwrap();
    };

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for (name, t) in [("rs256", &rs), ("es256", &es)] {
        c.bench_function(&format!("{name}/signature_only"), |b| {
            b.iter(|| raw(t));
        });
        c.bench_function(&format!("{name}/verify_bearer_warm"), |b| {
            b.iter(|| full(t));
        });
    }
    let policy = AccessTokenPolicy::new(AUDIENCE);
    c.bench_function("rs256/parse_only", |b| {
        b.iter(|| {
            black_box(
                aauth_oauth::AccessToken::parse(
                    black_box(&rs.token),
                    &policy,
                    &|i| i == ISSUER,
                    UnixTime(NOW),
                )
                .unwrap(),
            )
        });
    });
    c.bench_function("cache/key_hit", |b| {
        let src =
            aauth_metadata::KeySource::Jwks(HttpsUrl::parse("https://op.example/jwks").unwrap());
        b.iter(|| {
            black_box(
                verifier
                    .keys()
                    .key(&src, "rs")
                    .now_or_never()
                    .unwrap()
                    .unwrap(),
            )
        });
    });
    // The client side: a cached client-credentials token (target < 1 µs).
    let tokens = rt.block_on(async {
        let t = aauth_oauth::ClientCredentials::new(
            aauth_oauth::ClientConfig::new(
                HttpsUrl::parse("https://op.example/token").unwrap(),
                aauth_oauth::ClientAuth::SecretBasic {
                    client_id: "svc".to_owned(),
                    secret: "s".to_owned(),
                },
            ),
            Arc::new(TokenEndpoint),
            Arc::new(FixedClock::new(UnixTime(NOW))),
        );
        t.token().await.unwrap();
        t
    });
    // Introspection: a kept answer (target < 2 µs).
    let introspection = aauth_oauth::Introspection::new(
        HttpsUrl::parse("https://op.example/introspect").unwrap(),
        aauth_oauth::ClientAuth::SecretBasic {
            client_id: "api".to_owned(),
            secret: "s".to_owned(),
        },
        ISSUER,
        AUDIENCE,
        Arc::new(Introspector),
        Arc::new(FixedClock::new(UnixTime(NOW))),
    );
    let opaque = "2YotnFZFEjr1zCsicMWpAA-opaque-access-token-value";
    rt.block_on(introspection.introspect(opaque)).unwrap();
    c.bench_function("introspection/cache_hit", |b| {
        b.iter(|| {
            black_box(
                introspection
                    .introspect(black_box(opaque))
                    .now_or_never()
                    .unwrap()
                    .unwrap(),
            )
        });
    });
    c.bench_function("client_credentials/cached_token", |b| {
        b.iter(|| black_box(tokens.token().now_or_never().unwrap().unwrap()));
    });
    c.final_summary();

    for (name, t) in [("RS256", &rs), ("ES256", &es)] {
        let n = 500;
        let mut ratios = Vec::new();
        for _ in 0..31 {
            let b1 = time(n, &mut || raw(t));
            let s = time(n, &mut || full(t));
            let b2 = time(n, &mut || raw(t));
            ratios.push(s / ((b1 + b2) / 2.0));
        }
        println!(
            "paired {name}: verify_bearer warm / signature only = {:.3} (median of 31 rounds; target <= 1.10)",
            median(&mut ratios)
        );
    }
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
