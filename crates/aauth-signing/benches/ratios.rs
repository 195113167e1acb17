//! Paired ratio measurements behind the performance targets (`docs/performance.md`).
//!
//! The machines are noisy, so absolute times move by ±20 % between runs. Each round here
//! times the baseline, then the subject, then the baseline again (N iterations each) and
//! takes the subject over the mean of the two baselines; the report is the median over the
//! rounds. Drift during a round cancels; only the ratio is claimed.
//!
//! Run with `cargo bench -p aauth-signing --bench ratios` (or `cargo xtask bench`). Under
//! `cargo test` (no `--bench` argument) it does nothing. `AAUTH_PROFILE=<path>` runs one
//! path 200 times instead, for instruction counts under callgrind (see `docs/performance.md`).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "a benchmark that prints its report"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aauth_headers::Scheme;
use aauth_signing::{
    JwtResolver, KeyResolver, ResolveContext, SchemeResolver, SignOptions, SigningKey,
    VerifyPolicy, prepare, sign,
};
use aauth_tokens::{ServerId, TokenType};
use ed25519_dalek::Signer as _;

mod common;

use common::NOW;
const ROUNDS: usize = 31;

fn time(n: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() / n as f64
}

/// Median over rounds of subject / mean(baseline before, baseline after), and the median
/// absolute times.
fn paired(n: usize, baseline: &mut dyn FnMut(), subject: &mut dyn FnMut()) -> (f64, f64, f64) {
    for _ in 0..n {
        baseline();
        subject();
    }
    let mut ratios = Vec::with_capacity(ROUNDS);
    let mut bases = Vec::with_capacity(ROUNDS);
    let mut subs = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let b1 = time(n, baseline);
        let s = time(n, subject);
        let b2 = time(n, baseline);
        let b = (b1 + b2) / 2.0;
        ratios.push(s / b);
        bases.push(b);
        subs.push(s);
    }
    (
        median(&mut ratios),
        median(&mut bases) * 1e6,
        median(&mut subs) * 1e6,
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (_provider, agent, token, keys) = common::setup();
    let scheme = Scheme::jwt(token);
    let request = common::client_request;
    let mut signed = request();
    sign(
        &mut signed,
        b"",
        &[SigningKey::new("sig", &agent, &scheme)],
        &SignOptions::default(),
        NOW,
    )
    .unwrap();
    let signed = common::server_view(signed);
    let policy = VerifyPolicy::for_server(&ServerId::parse("https://resource.example").unwrap());
    let base = prepare(&signed, b"", &policy, NOW)
        .unwrap()
        .signature_base()
        .to_owned();
    let resolver = SchemeResolver::new().jwt(JwtResolver::new(Arc::new(keys), &[TokenType::Agent]));
    let cached =
        futures_executor::block_on(resolver.resolve(&scheme, &ResolveContext::new(NOW, "sig")))
            .unwrap();

    // The raw operations of the backend on exactly the two signatures a cold request
    // carries: the provider's over the agent token, the agent's over the signature base.
    let token_text = match &scheme {
        Scheme::Jwt { jwt, .. } => jwt.clone(),
        _ => unreachable!("a jwt scheme"),
    };
    let (jwt_input, jwt_sig_b64) = token_text.rsplit_once('.').unwrap();
    let jwt_sig =
        ed25519_dalek::Signature::from_slice(&aauth_keys::base64url::decode(jwt_sig_b64).unwrap())
            .unwrap();
    let provider_vk = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let vk = dalek.verifying_key();
    let raw_sig = dalek.sign(base.as_bytes());
    let mut raw_verify = || {
        vk.verify_strict(black_box(base.as_bytes()), &raw_sig)
            .unwrap();
    };
    // The backend's non-strict equation check (no small-order tests), for comparison.
    let mut two_plain_verifies = || {
        ed25519_dalek::Verifier::verify(&provider_vk, black_box(jwt_input.as_bytes()), &jwt_sig)
            .unwrap();
        ed25519_dalek::Verifier::verify(&vk, black_box(base.as_bytes()), &raw_sig).unwrap();
    };
    let mut two_raw_verifies = || {
        provider_vk
            .verify_strict(black_box(jwt_input.as_bytes()), &jwt_sig)
            .unwrap();
        vk.verify_strict(black_box(base.as_bytes()), &raw_sig)
            .unwrap();
    };
    // The crypto a cold request cannot avoid: the issuer key is cached (parsed once), the
    // confirmation key arrives in the request as 32 bytes and must be decoded.
    let pk_bytes = vk.to_bytes();
    let mut raw_cached_plus_from_bytes = || {
        provider_vk
            .verify_strict(black_box(jwt_input.as_bytes()), &jwt_sig)
            .unwrap();
        let k = ed25519_dalek::VerifyingKey::from_bytes(black_box(&pk_bytes)).unwrap();
        k.verify_strict(black_box(base.as_bytes()), &raw_sig)
            .unwrap();
    };
    // The backend's one-shot verification from key bytes, for both signatures (what
    // aws-lc-rs's `UnparsedPublicKey::verify` does, and what a verifier without a key cache
    // pays).
    let provider_bytes = provider_vk.to_bytes();
    let mut two_raw_verifies_from_bytes = || {
        let p = ed25519_dalek::VerifyingKey::from_bytes(black_box(&provider_bytes)).unwrap();
        p.verify_strict(black_box(jwt_input.as_bytes()), &jwt_sig)
            .unwrap();
        let k = ed25519_dalek::VerifyingKey::from_bytes(black_box(&pk_bytes)).unwrap();
        k.verify_strict(black_box(base.as_bytes()), &raw_sig)
            .unwrap();
    };
    let mut raw_sign = || {
        black_box(dalek.sign(black_box(base.as_bytes())));
    };
    let mut cold = || {
        let p = prepare(black_box(&signed), b"", &policy, NOW).unwrap();
        let r = futures_executor::block_on(
            resolver.resolve(p.scheme(), &ResolveContext::new(NOW, "sig")),
        )
        .unwrap();
        black_box(p.finish(r).unwrap());
    };
    let mut warm = || {
        let p = prepare(black_box(&signed), b"", &policy, NOW).unwrap();
        black_box(p.finish(cached.clone()).unwrap());
    };
    let mut sign_request = || {
        let mut p = request();
        sign(
            &mut p,
            b"",
            &[SigningKey::new("sig", &agent, &scheme)],
            &SignOptions::default(),
            NOW,
        )
        .unwrap();
        black_box(p);
    };

    // `AAUTH_PROFILE=cold|warm|sign`: run one path in a loop, for callgrind or perf.
    if let Ok(which) = std::env::var("AAUTH_PROFILE") {
        let f: &mut dyn FnMut() = match which.as_str() {
            "cold" => &mut cold,
            "raw2" => &mut two_raw_verifies,
            "raw2-plain" => &mut two_plain_verifies,
            "raw-mixed" => &mut raw_cached_plus_from_bytes,
            "raw2-bytes" => &mut two_raw_verifies_from_bytes,
            "raw1" => &mut raw_verify,
            "raw-sign" => &mut raw_sign,
            "warm" => &mut warm,
            _ => &mut sign_request,
        };
        for _ in 0..200 {
            f();
        }
        return;
    }

    let (cold_r, cold_b, cold_s) = paired(100, &mut two_raw_verifies, &mut cold);
    let (cold2_r, cold2_b, cold2_s) = paired(100, &mut raw_cached_plus_from_bytes, &mut cold);
    let (cold3_r, cold3_b, cold3_s) = paired(100, &mut two_raw_verifies_from_bytes, &mut cold);
    let (cold4_r, cold4_b, cold4_s) = paired(100, &mut two_plain_verifies, &mut cold);
    let (warm_r, warm_b, warm_s) = paired(200, &mut raw_verify, &mut warm);
    let (sign_r, sign_b, sign_s) = paired(200, &mut raw_sign, &mut sign_request);
    let sign_extra = sign_s - 1.10 * sign_b;

    println!(
        "| Measure | Baseline | Subject | Ratio (median of {ROUNDS} paired rounds) | Target | Met |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| cold verify (token + request signature) vs two raw verifies | {cold_b:.1} µs | {cold_s:.1} µs | {cold_r:.3} | ≤ 1.10 | {} |",
        if cold_r <= 1.10 { "yes" } else { "NO" }
    );
    println!(
        "| cold verify vs raw verify (cached key) + raw verify from key bytes | {cold2_b:.1} µs | {cold2_s:.1} µs | {cold2_r:.3} | ≤ 1.10 | {} |",
        if cold2_r <= 1.10 { "yes" } else { "NO" }
    );
    println!(
        "| cold verify vs two raw verifies from key bytes | {cold3_b:.1} µs | {cold3_s:.1} µs | {cold3_r:.3} | ≤ 1.10 | {} |",
        if cold3_r <= 1.10 { "yes" } else { "NO" }
    );
    println!(
        "| cold verify vs two non-strict raw verifies (no small-order checks) | {cold4_b:.1} µs | {cold4_s:.1} µs | {cold4_r:.3} | (context) | — |"
    );
    println!(
        "| warm verify (token cached) vs one raw verify | {warm_b:.1} µs | {warm_s:.1} µs | {warm_r:.3} | ≤ 1.15 | {} |",
        if warm_r <= 1.15 { "yes" } else { "NO" }
    );
    println!(
        "| signing vs one raw sign | {sign_b:.1} µs | {sign_s:.1} µs | {sign_r:.3} (sign − 1.10 × raw = {sign_extra:.1} µs) | ≤ 1.10 × raw + 5 µs | {} |",
        if sign_extra <= 5.0 { "yes" } else { "NO" }
    );
}
