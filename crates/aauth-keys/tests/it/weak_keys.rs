//! Weak and invalid public keys are refused at import (security catalogue X2, X6), so no
//! signature is ever checked against them.

use aauth_keys::{KeyError, PrivateKey, PublicKey, Signer, base64url};
use curve25519_dalek::constants::{ED25519_BASEPOINT_COMPRESSED, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;

use crate::common::{ec, okp};

/// p = 2^255 - 19, little-endian.
const P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

fn refused(enc: &[u8; 32]) -> KeyError {
    let via_jwk = PublicKey::from_jwk(&okp(enc)).expect_err("must be refused");
    let via_bytes = PublicKey::ed25519_from_bytes(enc).expect_err("must be refused");
    assert_eq!(via_jwk, via_bytes);
    via_jwk
}

#[test]
fn the_eight_small_order_points_are_weak() {
    for (i, t) in EIGHT_TORSION.iter().enumerate() {
        let enc = t.compress().to_bytes();
        assert_eq!(
            refused(&enc),
            KeyError::WeakKey,
            "torsion point {i}: {enc:02x?}"
        );
    }
    // The identity, the key of the RUSTSEC-2026-0240 universal forgery.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(refused(&identity), KeyError::WeakKey);
}

#[test]
fn non_canonical_encodings_are_invalid() {
    // y + p for every y < 19 (the only values with a second encoding below 2^255), with
    // both sign bits: never accepted, whether or not y is on the curve.
    for y in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut enc = P;
            enc[0] += y;
            enc[31] |= sign;
            assert_eq!(
                refused(&enc),
                KeyError::InvalidPoint,
                "y = p + {y}, sign {sign:#x}"
            );
        }
    }
    // x = 0 with the sign bit set: y = 1 (identity) and y = p - 1 (order 2).
    let mut neg_zero = [0u8; 32];
    neg_zero[0] = 1;
    neg_zero[31] = 0x80;
    assert!(matches!(
        refused(&neg_zero),
        KeyError::WeakKey | KeyError::InvalidPoint
    ));
    let mut minus_one = P;
    minus_one[0] = 0xec;
    minus_one[31] |= 0x80;
    assert!(matches!(
        refused(&minus_one),
        KeyError::WeakKey | KeyError::InvalidPoint
    ));
}

#[test]
fn points_off_the_curve_are_invalid() {
    // Find y values whose x² is not a square: no point has them.
    let mut found = 0;
    for y in 2u8..64 {
        let mut enc = [0u8; 32];
        enc[0] = y;
        if CompressedEdwardsY(enc).decompress().is_none() {
            assert_eq!(refused(&enc), KeyError::InvalidPoint, "y = {y}");
            found += 1;
        }
    }
    assert!(
        found > 10,
        "expected many off-curve y values, found {found}"
    );
}

#[test]
fn the_identity_key_forgery_never_verifies() {
    // R = B, S = 1 verifies for every message under the identity key in backends without
    // key checks; here the key cannot even be imported.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(ED25519_BASEPOINT_COMPRESSED.as_bytes());
    sig[32] = 1;
    assert!(PublicKey::ed25519_from_bytes(&identity).is_err());
    // And a good key never verifies that signature.
    let good = PrivateKey::ed25519_from_seed(&[3; 32]);
    assert!(good.public_key().verify(b"any message", &sig).is_err());
}

#[test]
fn valid_ed25519_keys_import() {
    let k = PrivateKey::ed25519_from_seed(&[4; 32]);
    let bytes: [u8; 32] = k.public_key().as_bytes().try_into().unwrap();
    let back = PublicKey::ed25519_from_bytes(&bytes).unwrap();
    assert_eq!(&back, k.public_key());
    let sig = k.sign(b"m").unwrap();
    back.verify(b"m", &sig).unwrap();
}

#[test]
fn invalid_p256_points_are_refused() {
    let k = PrivateKey::es256_from_scalar(&[5; 32]).unwrap();
    let point = k.public_key().as_bytes().to_vec();
    let (x, y) = (&point[1..33], &point[33..]);
    PublicKey::from_jwk(&ec(x, y)).unwrap();
    // y + 1: off the curve.
    let mut y1 = y.to_vec();
    let mut i = 31;
    loop {
        y1[i] = y1[i].wrapping_add(1);
        if y1[i] != 0 || i == 0 {
            break;
        }
        i -= 1;
    }
    assert_eq!(
        PublicKey::from_jwk(&ec(x, &y1)).unwrap_err(),
        KeyError::InvalidPoint
    );
    // The point at infinity has no affine encoding; (0, 0) is not on the curve.
    assert_eq!(
        PublicKey::from_jwk(&ec(&[0; 32], &[0; 32])).unwrap_err(),
        KeyError::InvalidPoint
    );
    // x ≥ p.
    let p256_p: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(
                &"ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
                    [i * 2..i * 2 + 2],
                16,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(
        PublicKey::from_jwk(&ec(&p256_p, y)).unwrap_err(),
        KeyError::InvalidPoint
    );
    // Coordinates of the wrong length (RFC 7518 §6.2.1.2 requires 32 bytes).
    for (xl, yl) in [(&x[1..], y), (x, &y[1..])] {
        assert!(matches!(
            PublicKey::from_jwk(&ec(xl, yl)).unwrap_err(),
            KeyError::BadEncoding {
                expected_len: 32,
                ..
            }
        ));
    }
    let mut long = vec![0u8];
    long.extend_from_slice(x);
    assert!(matches!(
        PublicKey::from_jwk(&ec(&long, y)).unwrap_err(),
        KeyError::BadEncoding { member: "x", .. }
    ));
    // P-384 curve name with ES256.
    let mut jwk = ec(x, y);
    jwk.crv = Some("P-384".into());
    assert!(matches!(
        PublicKey::from_jwk(&jwk).unwrap_err(),
        KeyError::CurveMismatch { .. }
    ));
    // A compressed point in x with no y.
    let mut jwk = ec(x, y);
    jwk.y = None;
    assert_eq!(
        PublicKey::from_jwk(&jwk).unwrap_err(),
        KeyError::MissingMember { member: "y" }
    );
    let _ = base64url::encode(b"");
}
