//! The replay check (security catalogue R1–R10): a
//! state-changing request is accepted once within its window, recorded only after
//! everything else verified, each signer within its share, and a store that cannot answer
//! refuses.

use std::sync::Arc;

use aauth_headers::{ErrorCode, Scheme};
use aauth_keys::PrivateKey;
use aauth_keys::time::UnixTime;
use aauth_signing::{
    MemoryReplayStore, ReplayGuard, ReplayScope, ReplayStore, ReplayStoreError, ReplayUse,
    RevocationList, SignOptions, SigningKey, Verifier, VerifyError, sign,
};
use aauth_tokens::ServerId;
use async_trait::async_trait;
use http::request::Parts;
use proptest::prelude::*;

use crate::common::*;

fn guarded(store: Arc<dyn ReplayStore>) -> Verifier {
    verifier(policy()).replay(ReplayGuard::new(store))
}

fn post(body: &[u8]) -> (Parts, Vec<u8>) {
    let (p, b) = signed(
        "POST",
        "https://ps.example/audit",
        body,
        &SignOptions::default(),
    );
    (as_server(p), b)
}

/// A POST signed by `key` (with its own agent token).
fn post_by(key: &PrivateKey, body: &[u8]) -> (Parts, Vec<u8>) {
    post_at(key, body, NOW)
}

/// [`post_by`], signed at `at`.
fn post_at(key: &PrivateKey, body: &[u8], at: UnixTime) -> (Parts, Vec<u8>) {
    let (mut parts, ()) = http::Request::post("https://ps.example/audit")
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let scheme = Scheme::jwt(agent_token_for(key.public_key()));
    sign(
        &mut parts,
        body,
        &[SigningKey::new("sig", key, &scheme)],
        &SignOptions::default(),
        at,
    )
    .unwrap();
    (as_server(parts), body.to_vec())
}

#[test]
fn r1_a_replayed_post_is_refused_once_accepted() {
    let v = guarded(Arc::new(MemoryReplayStore::default()));
    let (p, b) = post(br#"{"event":"booked"}"#);
    block(v.verify(&p, &b, NOW)).unwrap();
    let e = block(v.verify(&p, &b, NOW.plus(5))).unwrap_err();
    assert_eq!(e, VerifyError::Replayed);
    assert_eq!(e.code(), Some(ErrorCode::InvalidSignature));
    assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
    // Another body is another request (its content-digest, so its base, differs).
    let (p2, b2) = post(br#"{"event":"cancelled"}"#);
    block(v.verify(&p2, &b2, NOW)).unwrap();
    // In the window's last second the signature is still fresh, and still a replay.
    assert_eq!(
        block(v.verify(&p, &b, NOW.plus(60))).unwrap_err(),
        VerifyError::Replayed
    );
    // Once the window has closed, the signature itself is too old.
    assert!(matches!(
        block(v.verify(&p, &b, NOW.plus(61))),
        Err(VerifyError::CreatedTooOld { .. })
    ));
}

#[test]
fn r1_safe_methods_are_not_recorded_unless_asked() {
    let (p, b) = signed(
        "GET",
        "https://ps.example/data",
        b"",
        &SignOptions::default(),
    );
    let p = as_server(p);
    let v = guarded(Arc::new(MemoryReplayStore::default()));
    block(v.verify(&p, &b, NOW)).unwrap();
    block(v.verify(&p, &b, NOW)).unwrap();
    let all = verifier(policy())
        .replay(ReplayGuard::new(Arc::new(MemoryReplayStore::default())).scope(ReplayScope::All));
    block(all.verify(&p, &b, NOW)).unwrap();
    assert_eq!(
        block(all.verify(&p, &b, NOW)).unwrap_err(),
        VerifyError::Replayed
    );
}

#[test]
fn r6_a_forged_copy_does_not_burn_the_genuine_request() {
    let store = Arc::new(MemoryReplayStore::default());
    let v = guarded(store.clone());
    let (p, b) = post(br#"{"n":1}"#);
    // The same headers with another body: the digest fails, nothing is recorded.
    assert!(matches!(
        block(v.verify(&p, br#"{"n":2}"#, NOW)),
        Err(VerifyError::DigestMismatch { .. })
    ));
    // A broken signature: nothing recorded.
    let mut forged = p.clone();
    set(&mut forged, "signature", "sig=:AAAA:");
    assert!(block(v.verify(&forged, &b, NOW)).is_err());
    assert!(store.is_empty());
    block(v.verify(&p, &b, NOW)).unwrap();
    assert_eq!(store.len(), 1);
}

struct AllRevoked;

#[async_trait]
impl RevocationList for AllRevoked {
    async fn is_revoked(&self, _iss: &ServerId, _jti: &str) -> Result<bool, String> {
        Ok(true)
    }
}

#[test]
fn r6_a_request_under_a_revoked_token_is_not_recorded() {
    let store = Arc::new(MemoryReplayStore::default());
    let v = guarded(store.clone()).revocations(Arc::new(AllRevoked));
    let (p, b) = post(b"{}");
    assert_eq!(
        block(v.verify(&p, &b, NOW)).unwrap_err(),
        VerifyError::Revoked {
            token_type: aauth_tokens::TokenType::Agent
        }
    );
    assert!(store.is_empty());
}

struct Down;

#[async_trait]
impl ReplayStore for Down {
    async fn first_use(
        &self,
        _entry: &ReplayUse<'_>,
        _now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        Err(ReplayStoreError::Unavailable {
            reason: "redis timed out".into(),
        })
    }
}

#[test]
fn r10_a_store_that_cannot_answer_or_is_full_refuses_with_503() {
    let (p, b) = post(b"{}");
    let e = block(guarded(Arc::new(Down)).verify(&p, &b, NOW)).unwrap_err();
    assert!(matches!(e, VerifyError::Unavailable { .. }), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let r = e.into_http_response(&policy());
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers().get("signature-error").is_none());
    // Full: two distinct signers fill a store of two; a third is refused, not admitted.
    let full = guarded(Arc::new(MemoryReplayStore::new(2)));
    for seed in [21u8, 22] {
        let (p, b) = post_by(&PrivateKey::ed25519_from_seed(&[seed; 32]), b"{}");
        block(full.verify(&p, &b, NOW)).unwrap();
    }
    let (p, b) = post_by(&PrivateKey::ed25519_from_seed(&[23; 32]), b"{}");
    let e = block(full.verify(&p, &b, NOW)).unwrap_err();
    assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE, "{e:?}");
}

/// Catalogue R9: one agent once filled the resource's replay store and locked every other
/// writer out. Each signer has a share; past it, only that signer is refused, with 429.
#[test]
fn r9_one_signer_cannot_fill_the_store() {
    let store = Arc::new(MemoryReplayStore::new(100).share(3));
    let v = guarded(store.clone());
    let greedy = PrivateKey::ed25519_from_seed(&[31; 32]);
    for i in 0..3 {
        let (p, b) = post_by(&greedy, format!("{{\"n\":{i}}}").as_bytes());
        block(v.verify(&p, &b, NOW)).unwrap();
    }
    let (p, b) = post_by(&greedy, b"{\"n\":3}");
    let e = block(v.verify(&p, &b, NOW)).unwrap_err();
    assert_eq!(e, VerifyError::ReplayShareExceeded { share: 3 });
    assert_eq!(e.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(e.code(), None, "not a verdict on the signature");
    let r = e.into_http_response(&policy());
    assert_eq!(r.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
    let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
    assert_eq!(
        body["error"], "rate_limited",
        "draft -11: every error body names it"
    );
    // Everyone else is unaffected.
    let (p, b) = post_by(&PrivateKey::ed25519_from_seed(&[32; 32]), b"{}");
    block(v.verify(&p, &b, NOW)).unwrap();
    assert_eq!(store.len(), 4);
    // Later, the greedy signer's old entries have left the window: it may write again.
    let later = NOW.plus(200);
    let (p, b) = post_at(&greedy, b"{\"n\":4}", later);
    block(v.verify(&p, &b, later)).unwrap();
}

/// One agent provider can mint tokens for any number of keys, each with its own share:
/// their entries together once filled the store and every signer got 503 until they
/// expired. An issuer's keys together hold at most the issuer's share (429 for them);
/// another issuer's signers still get through.
#[test]
fn r9_one_issuer_minting_many_keys_cannot_fill_the_store() {
    let other_provider = PrivateKey::ed25519_from_seed(&[41; 32]);
    let keys = issuers().with(
        &sid("https://other.example"),
        "aauth-agent.json",
        "o1",
        other_provider.public_key().clone(),
    );
    let store = Arc::new(MemoryReplayStore::new(100).share(3).issuer_share(4));
    let v = aauth_test_support::verify::agent_verifier(policy(), Arc::new(keys))
        .replay(ReplayGuard::new(store.clone()));
    for seed in 50..54u8 {
        let (p, b) = post_by(&PrivateKey::ed25519_from_seed(&[seed; 32]), b"{}");
        block(v.verify(&p, &b, NOW)).unwrap();
    }
    // A fifth fresh key of the same provider: within its own share, past its issuer's.
    let (p, b) = post_by(&PrivateKey::ed25519_from_seed(&[54; 32]), b"{}");
    let e = block(v.verify(&p, &b, NOW)).unwrap_err();
    assert_eq!(e, VerifyError::IssuerReplayShareExceeded { share: 4 });
    assert_eq!(e.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(e.code(), None, "not a verdict on the signature");
    // Another provider's agent is unaffected.
    let key = PrivateKey::ed25519_from_seed(&[60; 32]);
    let token = aauth_tokens::AgentTokenBuilder::new(
        sid("https://other.example"),
        aauth_tokens::AgentId::parse("aauth:bot@other.example").unwrap(),
        key.public_key(),
    )
    .sign(&other_provider, "o1", NOW, &mut aauth_keys::rand::OsRandom)
    .unwrap()
    .token;
    let (mut parts, ()) = http::Request::post("https://ps.example/audit")
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let scheme = Scheme::jwt(token);
    sign(
        &mut parts,
        b"{}",
        &[SigningKey::new("sig", &key, &scheme)],
        &SignOptions::default(),
        NOW,
    )
    .unwrap();
    block(v.verify(&as_server(parts), b"{}", NOW)).unwrap();
    assert_eq!(store.len(), 5);
}

/// A Person Server vouches for the keys of all its people's agents: a person's keys
/// count in that person's share (`iss` and `sub`), so one person's agents filling theirs
/// leave the other people of the same Person Server unaffected.
#[test]
fn r9_a_persons_agents_share_their_persons_share_not_their_person_servers() {
    let ps_key = PrivateKey::ed25519_from_seed(&[43; 32]);
    let ps = sid("https://ps.example");
    let resource = sid("https://resource.example");
    let keys = aauth_tokens::StaticIssuerKeys::new().with(
        &ps,
        "aauth-person.json",
        "p1",
        ps_key.public_key().clone(),
    );
    let store = Arc::new(MemoryReplayStore::new(100).share(3).issuer_share(4));
    let resolver =
        aauth_signing::JwtResolver::new(Arc::new(keys), &[aauth_tokens::TokenType::Person])
            .audience(resource.clone());
    let v = Verifier::new(
        policy(),
        Arc::new(aauth_signing::SchemeResolver::new().jwt(resolver)),
    )
    .replay(ReplayGuard::new(store.clone()));
    let post = |seed: u8, sub: &str| {
        let key = PrivateKey::ed25519_from_seed(&[seed; 32]);
        let token = aauth_tokens::PersonTokenBuilder::new(
            ps.clone(),
            resource.clone(),
            sub,
            key.public_key(),
        )
        .sign(&ps_key, "p1", NOW, &mut aauth_keys::rand::OsRandom)
        .unwrap()
        .token;
        let (mut parts, ()) = http::Request::post("https://resource.example/items")
            .header("content-type", "application/json")
            .body(())
            .unwrap()
            .into_parts();
        sign(
            &mut parts,
            b"{}",
            &[SigningKey::new("sig", &key, &Scheme::jwt(token))],
            &SignOptions::default(),
            NOW,
        )
        .unwrap();
        block(v.verify(&as_server(parts), b"{}", NOW))
    };
    // Alice's four agents fill her share; a fifth of hers is refused.
    for seed in 70..74u8 {
        post(seed, "alice").unwrap();
    }
    assert_eq!(
        post(74, "alice").unwrap_err(),
        VerifyError::IssuerReplayShareExceeded { share: 4 }
    );
    // Bob, at the same Person Server, is not.
    post(80, "bob").unwrap();
    assert_eq!(store.len(), 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The memory store against a naive model: a key is admitted exactly when no live
    /// entry holds it and both bounds allow, whatever the order of uses and clocks.
    #[test]
    fn memory_store_matches_a_model(
        ops in proptest::collection::vec((0u8..4, 0u8..12, 0u64..200, 0u64..40), 1..120),
        max in 1usize..10,
        share in 1usize..6,
    ) {
        let store = MemoryReplayStore::new(max).share(share);
        let share = share.min(max);
        // key -> (until, signer)
        let mut model: Vec<([u8; 32], u64, u8)> = Vec::new();
        let mut now = 0u64;
        for (signer, key, life, step) in ops {
            now += step;
            let until = now + life;
            model.retain(|(_, u, _)| *u > now);
            let k = [key; 32];
            let name = format!("signer-{signer}");
            let got = futures_executor::block_on(
                store.first_use(&ReplayUse::new(&name, k, UnixTime(until)), UnixTime(now)),
            );
            let expected = if model.iter().any(|(mk, _, _)| *mk == k) {
                Ok(false)
            } else if model.len() >= max {
                Err(ReplayStoreError::Full { live: max })
            } else if model.iter().filter(|(_, _, s)| *s == signer).count() >= share {
                Err(ReplayStoreError::SignerOverShare { share })
            } else {
                model.push((k, until, signer));
                Ok(true)
            };
            prop_assert_eq!(got, expected);
            prop_assert_eq!(store.len(), model.len());
        }
    }
}
