#![allow(
    clippy::unwrap_used,
    clippy::panic,
    missing_docs,
    reason = "a test binary"
)]

//! Independent oracles: `httpsig-hyper` (another RFC 9421 implementation) verifies the
//! plain-component signatures we make, and `josekit` (another JOSE implementation) verifies
//! the ES256 tokens we mint. Each oracle is also shown to reject a tampered input, so a
//! pass is not vacuous.

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{PrivateKey, PublicKey};
use aauth_signing::{SignOptions, SigningKey, sign};
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId};
use bytes::Bytes;
use http_body_util::Full;
use httpsig_hyper::MessageSignatureReqSync as _;
use httpsig_hyper::prelude::{AlgorithmName, PublicKey as OraclePublicKey};

const NOW: UnixTime = UnixTime(1_800_000_000);

fn token_for(provider: &PrivateKey, key: &PublicKey) -> String {
    AgentTokenBuilder::new(
        ServerId::parse("https://agent.example").unwrap(),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        key,
    )
    .sign(provider, "k1", NOW, &mut OsRandom)
    .unwrap()
    .token
}

/// A request signed by us, with an absolute URI (httpsig-hyper reads `@authority` from the
/// URI, so it can only check client-side requests).
fn signed(
    key: &PrivateKey,
    method: &str,
    url: &str,
    body: &[u8],
    options: &SignOptions,
) -> http::Request<Full<Bytes>> {
    let (mut parts, ()) = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let scheme = Scheme::jwt(token_for(
        &PrivateKey::ed25519_from_seed(&[1; 32]),
        key.public_key(),
    ));
    sign(
        &mut parts,
        body,
        &[SigningKey::new("sig", key, &scheme)],
        options,
        NOW,
    )
    .unwrap();
    http::Request::from_parts(parts, Full::new(Bytes::copy_from_slice(body)))
}

fn oracle_key(key: &PublicKey) -> OraclePublicKey {
    match key.algorithm() {
        aauth_keys::Algorithm::Ed25519 => {
            OraclePublicKey::from_bytes(&AlgorithmName::Ed25519, key.as_bytes()).unwrap()
        }
        _ => OraclePublicKey::from_bytes(&AlgorithmName::EcdsaP256Sha256, key.as_bytes()).unwrap(),
    }
}

#[test]
fn httpsig_verifies_our_signatures() {
    for key in [
        PrivateKey::ed25519_from_seed(&[5; 32]),
        PrivateKey::es256_from_scalar(&[6; 32]).unwrap(),
    ] {
        let oracle = oracle_key(key.public_key());
        for (method, url, body) in [
            ("GET", "https://resource.example/api/documents", &b""[..]),
            (
                "POST",
                "https://ps.example/token",
                &br#"{"resource_token":"x"}"#[..],
            ),
            ("GET", "https://resource.example:8443/a/b", &b""[..]),
        ] {
            let req = signed(
                &key,
                method,
                url,
                body,
                &SignOptions::default().with_query(),
            );
            let label = req
                .verify_message_signature_sync(&oracle, None)
                .unwrap_or_else(|e| panic!("{:?} {method} {url}: {e}", key.algorithm()));
            assert_eq!(label, "sig");
        }
        // Tampered: the oracle refuses too.
        let mut req = signed(
            &key,
            "GET",
            "https://resource.example/api/documents",
            b"",
            &SignOptions::default(),
        );
        *req.uri_mut() = "https://resource.example/api/admin".parse().unwrap();
        assert!(req.verify_message_signature_sync(&oracle, None).is_err());
    }
}

#[test]
fn httpsig_checks_our_content_digest() {
    use httpsig_hyper::RequestContentDigest as _;
    let key = PrivateKey::ed25519_from_seed(&[5; 32]);
    let body = br#"{"description":"Sydney"}"#;
    let req = signed(
        &key,
        "POST",
        "https://ps.example/mission",
        body,
        &SignOptions::default(),
    );
    futures_executor::block_on(req.verify_content_digest()).unwrap();
    let (parts, _) = signed(
        &key,
        "POST",
        "https://ps.example/mission",
        body,
        &SignOptions::default(),
    )
    .into_parts();
    let changed = http::Request::from_parts(parts, Full::new(Bytes::from_static(b"{}")));
    assert!(futures_executor::block_on(changed.verify_content_digest()).is_err());
}

#[test]
fn josekit_verifies_our_es256_tokens() {
    let provider = PrivateKey::es256_from_scalar(&[7; 32]).unwrap();
    let agent = PrivateKey::ed25519_from_seed(&[8; 32]);
    let token = token_for(&provider, agent.public_key());
    let jwk =
        josekit::jwk::Jwk::from_bytes(provider.public_key().to_jwk().to_json().as_bytes()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (payload, header) = josekit::jws::deserialize_compact(&token, &verifier).unwrap();
    assert_eq!(header.algorithm(), Some("ES256"));
    assert_eq!(header.token_type(), Some("aa-agent+jwt"));
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["sub"], "aauth:assistant@agent.example");
    // A token signed by another key: refused by the oracle.
    let other = token_for(
        &PrivateKey::es256_from_scalar(&[9; 32]).unwrap(),
        agent.public_key(),
    );
    assert!(josekit::jws::deserialize_compact(&other, &verifier).is_err());
}

/// Evidence for docs/decisions/0001: josekit cannot read the fully-specified `Ed25519`
/// JWS algorithm AAuth requires. If this starts failing, josekit changed: revisit the
/// decision.
#[test]
fn evidence_josekit_refuses_alg_ed25519() {
    let provider = PrivateKey::ed25519_from_seed(&[7; 32]);
    let token = token_for(
        &provider,
        PrivateKey::ed25519_from_seed(&[8; 32]).public_key(),
    );
    let mut jwk_json = provider.public_key().to_jwk();
    let with_alg = josekit::jwk::Jwk::from_bytes(jwk_json.to_json().as_bytes()).unwrap();
    // The JWK as AAuth publishes it (alg Ed25519) is refused by josekit's EdDSA verifier…
    assert!(josekit::jws::EdDSA.verifier_from_jwk(&with_alg).is_err());
    // …and without alg, the verifier refuses the token's header alg Ed25519.
    jwk_json.alg = None;
    let without_alg = josekit::jwk::Jwk::from_bytes(jwk_json.to_json().as_bytes()).unwrap();
    let verifier = josekit::jws::EdDSA.verifier_from_jwk(&without_alg).unwrap();
    assert!(josekit::jws::deserialize_compact(&token, &verifier).is_err());
}

/// Evidence for docs/decisions/0001: httpsig-hyper derives `@authority` from the request
/// URI, which a server sees in origin form, so a valid request fails server-side until the
/// URI is rewritten to absolute form.
#[test]
fn evidence_httpsig_hyper_takes_authority_from_the_uri() {
    let key = PrivateKey::ed25519_from_seed(&[5; 32]);
    let oracle = oracle_key(key.public_key());
    let req = signed(
        &key,
        "GET",
        "https://resource.example/api/documents",
        b"",
        &SignOptions::default(),
    );
    let (mut parts, body) = req.into_parts();
    parts.uri = "/api/documents".parse().unwrap();
    parts
        .headers
        .insert("host", "resource.example".parse().unwrap());
    let server_side = http::Request::from_parts(parts, body);
    assert!(
        server_side
            .verify_message_signature_sync(&oracle, None)
            .is_err()
    );
}
