//! `PublicKey::verify` for Ed25519 has exactly the acceptance set of ed25519-dalek's
//! `verify_strict` (decision 0004), checked differentially: honest signatures, forged
//! small-order R (which the non-strict equation accepts), R shifted by torsion points,
//! non-canonical s, and arbitrary bytes.

use aauth_keys::{PrivateKey, PublicKey};
use curve25519_dalek::constants::{ED25519_BASEPOINT_TABLE, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use proptest::prelude::*;
use sha2::{Digest, Sha512};

/// ℓ, the prime order of the base point, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Ours and dalek's `verify_strict` agree on (key bytes, message, signature bytes).
fn agree(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let theirs = VerifyingKey::from_bytes(key)
        .is_ok_and(|k| k.verify_strict(msg, &Signature::from_bytes(sig)).is_ok());
    let ours = PublicKey::ed25519_from_bytes(key).is_ok_and(|k| k.verify(msg, sig).is_ok());
    assert_eq!(ours, theirs, "key {key:02x?} sig {sig:02x?}");
    ours
}

fn secret_scalar(seed: &[u8; 32]) -> Scalar {
    let h = Sha512::digest(seed);
    let mut lower = [0u8; 32];
    lower.copy_from_slice(&h[..32]);
    Scalar::from_bytes_mod_order(clamp_integer(lower))
}

/// A signature with R = `r_point` that satisfies the non-strict equation: s = r + k·a
/// where R = [r]B + T for a torsion point T the equation cannot see... here r = 0, so R is
/// a small-order point and only the strict check refuses it.
fn forged_small_order_r(seed: &[u8; 32], r_enc: [u8; 32], msg: &[u8]) -> [u8; 64] {
    let a = secret_scalar(seed);
    let public = (&a * ED25519_BASEPOINT_TABLE).compress().to_bytes();
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r_enc)
            .chain_update(public)
            .chain_update(msg),
    );
    let s = k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_enc);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

#[test]
fn the_small_order_table_is_the_eight_torsion_subgroup() {
    let mut from_dalek: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|t| t.compress().to_bytes())
        .collect();
    from_dalek.sort_unstable();
    from_dalek.dedup();
    assert_eq!(from_dalek.len(), 8);
    for enc in &from_dalek {
        assert!(aauth_keys::is_small_order_encoding(enc), "{enc:02x?}");
        assert!(
            CompressedEdwardsY(*enc)
                .decompress()
                .is_some_and(|p| p.is_small_order())
        );
    }
    let mut table_hits = 0;
    for b in 0..=255u8 {
        let mut enc = [b; 32];
        enc[31] &= 0x7f;
        table_hits += usize::from(aauth_keys::is_small_order_encoding(&enc));
    }
    assert_eq!(
        table_hits, 1,
        "only [0; 32] among the repeated-byte encodings"
    );
}

#[test]
fn a_forged_signature_with_small_order_r_is_refused_like_verify_strict() {
    let seed = [7u8; 32];
    let key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let msg = b"transfer all the money";
    for t in EIGHT_TORSION {
        let r = t.compress().to_bytes();
        let sig = forged_small_order_r(&seed, r, msg);
        // The plain equation accepts the identity forgery; strict verification must not.
        if r == EIGHT_TORSION[0].compress().to_bytes() {
            let plain = VerifyingKey::from_bytes(&key).unwrap();
            assert!(
                ed25519_dalek::Verifier::verify(&plain, msg, &Signature::from_bytes(&sig)).is_ok(),
                "the forgery must pass the non-strict equation, or this test proves nothing"
            );
        }
        assert!(!agree(&key, msg, &sig), "R = {r:02x?} accepted");
    }
}

#[test]
fn honest_signatures_and_their_malleations() {
    let sk = SigningKey::from_bytes(&[9u8; 32]);
    let key = sk.verifying_key().to_bytes();
    let msg = b"GET /api/documents";
    let sig = sk.sign(msg).to_bytes();
    assert!(agree(&key, msg, &sig));
    // R + T for every non-trivial torsion point T: the equation no longer holds.
    let r = CompressedEdwardsY(sig[..32].try_into().unwrap())
        .decompress()
        .unwrap();
    for t in &EIGHT_TORSION[1..] {
        let mut m = sig;
        m[..32].copy_from_slice((r + t).compress().as_bytes());
        assert!(!agree(&key, msg, &m));
    }
    // s + ℓ: the same scalar, non-canonical.
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        s_plus_l[i] = v as u8;
        carry = v >> 8;
    }
    let mut m = sig;
    m[32..].copy_from_slice(&s_plus_l);
    assert!(!agree(&key, msg, &m));
    // A key with a torsion component (mixed order): importable, and both refuse the
    // honest signature of the prime-order key.
    let a = CompressedEdwardsY(key).decompress().unwrap();
    let mixed = (a + EIGHT_TORSION[1]).compress().to_bytes();
    assert!(PublicKey::ed25519_from_bytes(&mixed).is_ok());
    assert!(!agree(&mixed, msg, &sig));
}

#[test]
fn the_private_key_signatures_verify() {
    let k = PrivateKey::ed25519_from_seed(&[3; 32]);
    let sig = aauth_keys::Signer::sign(&k, b"m").unwrap();
    let sig: [u8; 64] = sig.as_slice().try_into().unwrap();
    assert!(agree(
        k.public_key().as_bytes().try_into().unwrap(),
        b"m",
        &sig
    ));
}

proptest! {
    #[test]
    fn arbitrary_signatures_agree(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..64),
                                  sig in proptest::collection::vec(any::<u8>(), 64..=64), flip in 0usize..512) {
        let sk = SigningKey::from_bytes(&seed);
        let key = sk.verifying_key().to_bytes();
        let random: [u8; 64] = sig.try_into().unwrap();
        prop_assert!(!agree(&key, &msg, &random) || sk.sign(&msg).to_bytes() == random);
        // One bit flipped in an honest signature.
        let mut honest = sk.sign(&msg).to_bytes();
        prop_assert!(agree(&key, &msg, &honest));
        honest[flip / 8] ^= 1 << (flip % 8);
        let _ = agree(&key, &msg, &honest);
    }

    #[test]
    fn arbitrary_keys_agree(key in any::<[u8; 32]>(), sig in any::<[u8; 32]>(), s in any::<[u8; 32]>()) {
        let mut full = [0u8; 64];
        full[..32].copy_from_slice(&sig);
        full[32..].copy_from_slice(&s);
        let _ = agree(&key, b"message", &full);
    }
}

/// The import's small-order test by table agrees with ed25519-dalek's `is_weak` on every
/// encoding that decodes (and y < p, which import checks first).
#[test]
fn weak_key_table_agrees_with_is_weak_on_torsion_and_sign_flips() {
    for t in EIGHT_TORSION {
        for flip in [0u8, 0x80] {
            let mut enc = t.compress().to_bytes();
            enc[31] ^= flip;
            let dalek_weak = VerifyingKey::from_bytes(&enc).map(|k| k.is_weak());
            let ours = PublicKey::ed25519_from_bytes(&enc);
            match dalek_weak {
                Ok(true) => assert_eq!(
                    ours.unwrap_err(),
                    aauth_keys::KeyError::WeakKey,
                    "{enc:02x?}"
                ),
                Ok(false) => assert!(ours.is_ok(), "{enc:02x?}"),
                Err(_) => assert!(ours.is_err(), "{enc:02x?}"),
            }
        }
    }
}

proptest! {
    #[test]
    fn weak_key_table_agrees_with_is_weak(mut enc in any::<[u8; 32]>(), t in 0usize..8, shift in any::<bool>()) {
        // Half the cases: the point plus a torsion point (mixed order, or small order when
        // the point itself is).
        if shift && let Some(p) = CompressedEdwardsY(enc).decompress() {
            enc = (p + EIGHT_TORSION[t]).compress().to_bytes();
        }
        let dalek = VerifyingKey::from_bytes(&enc).map(|k| k.is_weak());
        match (dalek, PublicKey::ed25519_from_bytes(&enc)) {
            (Ok(true), Err(e)) => prop_assert_eq!(e, aauth_keys::KeyError::WeakKey),
            (Ok(false), r) => prop_assert!(r.is_ok() || y_at_least_p(&enc), "{:02x?}", enc),
            (Err(_), r) => prop_assert!(r.is_err()),
            (Ok(true), Ok(_)) => prop_assert!(false, "weak key imported: {:02x?}", enc),
        }
    }
}

/// y ≥ p = 2^255 - 19 (a non-canonical encoding, refused at import before anything else).
fn y_at_least_p(enc: &[u8; 32]) -> bool {
    let mut y = *enc;
    y[31] &= 0x7f;
    // Compare little-endian y with p from the top byte down.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for i in (0..32).rev() {
        if y[i] != p[i] {
            return y[i] > p[i];
        }
    }
    true
}
