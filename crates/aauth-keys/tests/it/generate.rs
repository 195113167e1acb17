//! Key generation from an injected random source (catalogue X9), signing and
//! verification, and secrets kept out of `Debug`.

use aauth_keys::rand::{OsRandom, RandomError, RandomSource};
use aauth_keys::{Algorithm, KeyError, PrivateKey, Signer};

struct Failing;
impl RandomSource for Failing {
    fn fill(&mut self, _dest: &mut [u8]) -> Result<(), RandomError> {
        Err(RandomError {
            reason: "no entropy".into(),
        })
    }
}

struct Zeros;
impl RandomSource for Zeros {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        dest.fill(0);
        Ok(())
    }
}

#[test]
fn generation_fails_closed() {
    for alg in Algorithm::ALL {
        assert!(
            matches!(
                PrivateKey::generate(alg, &mut Failing),
                Err(KeyError::Random(_))
            ),
            "{alg}"
        );
        assert!(
            matches!(
                PrivateKey::generate(alg, &mut Zeros),
                Err(KeyError::Random(_))
            ),
            "{alg}"
        );
    }
}

#[test]
fn generated_keys_sign_and_every_flipped_byte_fails() {
    for alg in Algorithm::ALL {
        let k = PrivateKey::generate(alg, &mut OsRandom).unwrap();
        assert_eq!(k.algorithm(), alg);
        let other = PrivateKey::generate(alg, &mut OsRandom).unwrap();
        assert_ne!(k.public_key(), other.public_key());
        let msg = b"\"@method\": GET\n\"@authority\": resource.example";
        let sig = k.sign(msg).unwrap();
        assert_eq!(sig.len(), 64);
        k.public_key().verify(msg, &sig).unwrap();
        assert!(other.public_key().verify(msg, &sig).is_err());
        for i in 0..sig.len() {
            let mut bad = sig.clone();
            bad[i] ^= 1;
            assert!(
                k.public_key().verify(msg, &bad).is_err(),
                "{alg} sig byte {i}"
            );
        }
        for i in 0..msg.len() {
            let mut bad = msg.to_vec();
            bad[i] ^= 1;
            assert!(
                k.public_key().verify(&bad, &sig).is_err(),
                "{alg} msg byte {i}"
            );
        }
    }
}

#[test]
fn debug_never_prints_secrets() {
    for k in [
        PrivateKey::ed25519_from_seed(&[0xAB; 32]),
        PrivateKey::es256_from_scalar(&[0xAB; 32]).unwrap(),
    ] {
        let jwk = k.to_private_jwk();
        let d = jwk.d.clone().unwrap();
        let shown = format!("{k:?} {jwk:?} {:?}", *jwk);
        assert!(!shown.contains(&d), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        // The public half is printable.
        assert!(format!("{:?}", k.public_key()).contains(k.public_key().thumbprint().as_str()));
    }
}

#[test]
fn random_ids_are_base64url_and_distinct() {
    let a = aauth_keys::rand::random_id(&mut OsRandom, 16).unwrap();
    let b = aauth_keys::rand::random_id(&mut OsRandom, 16).unwrap();
    assert_eq!(a.len(), 22);
    assert_ne!(a, b);
    assert!(aauth_keys::rand::random_id(&mut Failing, 16).is_err());
}
