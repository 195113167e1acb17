//! Every case of Wycheproof's `ed25519_test.json` and `ecdsa_secp256r1_sha256_p1363_test.json`
//! (C2SP/wycheproof @ dac1dd4), through our public API: the key imported as a JWK, then the
//! signature verified. A `valid` case must import and verify; an `invalid` one must fail at
//! import or at verification.

use aauth_keys::PublicKey;

use crate::common::{data, ec, hex, okp};

#[test]
fn ed25519_every_case() {
    let v = data("wycheproof/ed25519_test.json");
    let (mut total, mut valid, mut invalid) = (0, 0, 0);
    let mut failures = Vec::new();
    for g in v["testGroups"].as_array().unwrap() {
        let pk = hex(g["publicKey"]["pk"].as_str().unwrap());
        let key = PublicKey::from_jwk(&okp(&pk));
        for t in g["tests"].as_array().unwrap() {
            total += 1;
            let ok = match &key {
                Ok(k) => k
                    .verify(
                        &hex(t["msg"].as_str().unwrap()),
                        &hex(t["sig"].as_str().unwrap()),
                    )
                    .is_ok(),
                Err(_) => false,
            };
            match t["result"].as_str().unwrap() {
                "valid" => {
                    valid += 1;
                    if !ok {
                        failures.push(format!("tc {} {} must verify", t["tcId"], t["flags"]));
                    }
                }
                "invalid" => {
                    invalid += 1;
                    if ok {
                        failures.push(format!("tc {} {} must fail", t["tcId"], t["flags"]));
                    }
                }
                other => panic!("unexpected result {other}"),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!((total, valid, invalid), (151, 88, 63));
}

#[test]
fn p256_p1363_every_case() {
    let v = data("wycheproof/ecdsa_secp256r1_sha256_p1363_test.json");
    let (mut total, mut valid, mut invalid, mut refused_keys) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for g in v["testGroups"].as_array().unwrap() {
        let point = hex(g["publicKey"]["uncompressed"].as_str().unwrap());
        assert_eq!(point.len(), 65);
        let key = PublicKey::from_jwk(&ec(&point[1..33], &point[33..]));
        if key.is_err() {
            refused_keys += 1;
        }
        for t in g["tests"].as_array().unwrap() {
            total += 1;
            let ok = match &key {
                Ok(k) => k
                    .verify(
                        &hex(t["msg"].as_str().unwrap()),
                        &hex(t["sig"].as_str().unwrap()),
                    )
                    .is_ok(),
                Err(_) => false,
            };
            match t["result"].as_str().unwrap() {
                "valid" => {
                    valid += 1;
                    if !ok {
                        failures.push(format!("tc {} {} must verify", t["tcId"], t["flags"]));
                    }
                }
                "invalid" => {
                    invalid += 1;
                    if ok {
                        failures.push(format!("tc {} {} must fail", t["tcId"], t["flags"]));
                    }
                }
                other => panic!("unexpected result {other}"),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!((total, valid, invalid), (262, 173, 89));
    // Every group's key is a valid point; none is refused.
    assert_eq!(refused_keys, 0);
}

#[test]
fn es256_signature_twin_and_der_form() {
    use aauth_keys::{PrivateKey, Signer};
    let key = PrivateKey::es256_from_scalar(&[7; 32]).unwrap();
    let msg = b"twin";
    let sig = key.sign(msg).unwrap();
    key.public_key().verify(msg, &sig).unwrap();
    // (r, n - s) is also valid: ECDSA has no low-S rule (catalogue X7).
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let s = &sig[32..];
    let mut neg = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        neg[i] = (d + if d < 0 { 256 } else { 0 }) as u8;
    }
    let mut twin = sig[..32].to_vec();
    twin.extend_from_slice(&neg);
    assert_ne!(twin, sig);
    key.public_key().verify(msg, &twin).unwrap();
    // DER-encoded signatures are refused: only 64-byte r ‖ s.
    let mut der = vec![0x30, 0x44, 0x02, 0x20];
    der.extend_from_slice(&sig[..32]);
    der.extend_from_slice(&[0x02, 0x20]);
    der.extend_from_slice(&sig[32..]);
    assert!(key.public_key().verify(msg, &der).is_err());
    // Wrong lengths are refused for both algorithms.
    for len in [0, 63, 65, 72] {
        assert!(
            key.public_key().verify(msg, &vec![1u8; len]).is_err(),
            "{len}"
        );
    }
    let ed = PrivateKey::ed25519_from_seed(&[1; 32]);
    for len in [0, 63, 65, 128] {
        assert!(
            ed.public_key().verify(msg, &vec![1u8; len]).is_err(),
            "{len}"
        );
    }
}
