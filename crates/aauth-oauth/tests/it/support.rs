//! A small authorization server for tests: RSA, P-256 and Ed25519 keys, tokens minted
//! with any header and claims, and an in-memory fetcher that serves its documents.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aauth_keys::Signer as _;
use aauth_keys::{Jwk, PrivateKey, base64url};
use aauth_metadata::{Fetch, FetchError, Fetched, HttpsUrl};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding};
use serde_json::{Value, json};

pub(crate) const ISSUER: &str = "https://as.example";
pub(crate) const AUDIENCE: &str = "https://api.example";
pub(crate) const NOW: u64 = 1_800_000_000;

/// One RSA key pair for the whole test binary (generation takes a while).
pub(crate) fn rsa() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
}

/// A second RSA key (a re-keyed issuer).
pub(crate) fn rsa_other() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey` DER.
fn n_e(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(d: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = d[0];
        let (len, skip) = if d[1] < 0x80 {
            (usize::from(d[1]), 2)
        } else {
            let k = usize::from(d[1] & 0x7f);
            (
                d[2..2 + k]
                    .iter()
                    .fold(0, |a, &b| (a << 8) | usize::from(b)),
                2 + k,
            )
        };
        (tag, &d[skip..skip + len], &d[skip + len..])
    }
    let (_, seq, _) = read(der);
    let (_, n, rest) = read(seq);
    let (_, e, _) = read(rest);
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|&&b| b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

pub(crate) fn rsa_jwk(key: &KeyPair, kid: &str, alg: Option<&str>) -> Jwk {
    let (n, e) = n_e(key.public_key().as_ref());
    let mut v = json!({"kty": "RSA", "n": base64url::encode(&n), "e": base64url::encode(&e), "kid": kid, "use": "sig"});
    if let Some(alg) = alg {
        v["alg"] = json!(alg);
    }
    Jwk::from_json(&v.to_string()).expect("RSA JWK")
}

pub(crate) fn ec_key() -> PrivateKey {
    PrivateKey::es256_from_scalar(&[9; 32]).expect("P-256 key")
}

pub(crate) fn ed_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[3; 32])
}

pub(crate) fn ec_jwk(kid: &str) -> Jwk {
    ec_key().public_key().to_jwk().with_kid(kid)
}

/// An Ed25519 JWK as authorization servers publish it: `alg` `EdDSA`.
pub(crate) fn ed_jwk(kid: &str) -> Jwk {
    let mut jwk = ed_key().public_key().to_jwk().with_kid(kid);
    jwk.alg = Some("EdDSA".to_owned());
    jwk
}

/// Who signs a minted token.
#[derive(Clone, Copy)]
pub(crate) enum Signer {
    Rs256(&'static KeyPair),
    Ps256(&'static KeyPair),
    Es256,
    EdDsa,
    /// No signature (an empty third segment).
    Unsigned,
    /// Arbitrary bytes.
    Garbage,
    /// HMAC under `alg` with these bytes as the secret, whatever their length.
    Hmac(aauth_oauth::HmacAlgorithm, &'static [u8]),
}

/// The secret `https://hs.example` signs with in the tests (HS256).
pub(crate) const HS_SECRET: &[u8; 32] = b"a secret of exactly 32 bytes!!!!";
/// An issuer that signs with [`HS_SECRET`].
pub(crate) const HS_ISSUER: &str = "https://hs.example";

fn hmac_sign(alg: aauth_oauth::HmacAlgorithm, secret: &[u8], input: &[u8]) -> Vec<u8> {
    use aauth_oauth::HmacAlgorithm as H;
    use aws_lc_rs::hmac;
    let backend = match alg {
        H::Hs256 => hmac::HMAC_SHA256,
        H::Hs384 => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA512,
    };
    hmac::sign(&hmac::Key::new(backend, secret), input)
        .as_ref()
        .to_vec()
}

fn rsa_sign(key: &KeyPair, enc: &'static dyn RsaEncoding, input: &[u8]) -> Vec<u8> {
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(enc, &SystemRandom::new(), input, &mut sig)
        .expect("RSA sign");
    sig
}

/// A compact JWS of `header` and `claims`, signed by `signer`.
pub(crate) fn mint(header: &Value, claims: &Value, signer: Signer) -> String {
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = match signer {
        Signer::Rs256(k) => rsa_sign(k, &RSA_PKCS1_SHA256, input.as_bytes()),
        Signer::Ps256(k) => rsa_sign(k, &RSA_PSS_SHA256, input.as_bytes()),
        Signer::Es256 => ec_key().sign(input.as_bytes()).expect("ES256 sign"),
        Signer::EdDsa => ed_key().sign(input.as_bytes()).expect("Ed25519 sign"),
        Signer::Unsigned => Vec::new(),
        Signer::Garbage => vec![7; 256],
        Signer::Hmac(alg, secret) => hmac_sign(alg, secret, input.as_bytes()),
    };
    format!("{input}.{}", base64url::encode(&sig))
}

/// `input` (header and payload segments) signed RS256 as a compact JWS.
pub(crate) fn sign_rs256(input: &str) -> String {
    let sig = rsa_sign(rsa(), &RSA_PKCS1_SHA256, input.as_bytes());
    format!("{input}.{}", base64url::encode(&sig))
}

/// The claims of a good token, to be varied.
pub(crate) fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "client-1",
        "client_id": "client-1",
        "aud": AUDIENCE,
        "scope": "read write",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "jti": "t-1",
    })
}

pub(crate) fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
}

/// A good RS256 token.
pub(crate) fn rs256_token() -> String {
    mint(&header("RS256", "rs"), &claims(), Signer::Rs256(rsa()))
}

/// Serves documents from a map and counts every fetch.
#[derive(Default)]
pub(crate) struct Docs {
    docs: Mutex<BTreeMap<String, Fetched>>,
    pub(crate) fetches: AtomicUsize,
}

impl Docs {
    pub(crate) fn put(&self, url: &str, doc: Fetched) {
        self.docs
            .lock()
            .expect("docs lock")
            .insert(url.to_owned(), doc);
    }

    pub(crate) fn remove(&self, url: &str) {
        self.docs.lock().expect("docs lock").remove(url);
    }

    pub(crate) fn fetched(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// An issuer at [`ISSUER`] with RFC 8414 metadata and a JWKS of `keys`.
    pub(crate) fn issuer(keys: &[Jwk]) -> Arc<Self> {
        let docs = Arc::new(Self::default());
        docs.put(
            "https://as.example/.well-known/oauth-authorization-server",
            Fetched::ok(
                json!({"issuer": ISSUER, "jwks_uri": "https://as.example/jwks", "token_endpoint": "https://as.example/token"})
                    .to_string(),
            ),
        );
        docs.set_keys(keys);
        docs
    }

    pub(crate) fn set_keys(&self, keys: &[Jwk]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::from_str(&k.to_json()).expect("JWK JSON"))
            .collect();
        self.put(
            "https://as.example/jwks",
            Fetched::ok(json!({ "keys": keys }).to_string()),
        );
    }
}

#[async_trait::async_trait]
impl Fetch for Docs {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let doc = self
            .docs
            .lock()
            .expect("docs lock")
            .get(url.as_str())
            .cloned();
        Ok(doc.unwrap_or_else(|| Fetched::status(404)))
    }
}
