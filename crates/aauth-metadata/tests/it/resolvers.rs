//! The `jwks_uri` and `jwks` schemes end to end: a request signed under each, verified by
//! `aauth-signing`'s verifier with keys discovered through the cache.

use std::sync::Arc;

use aauth_headers::{ErrorCode, Scheme};
use aauth_keys::time::{FixedClock, UnixTime};
use aauth_metadata::{CacheConfig, DiscoveryResolver, FetchError, Fetched, KeyCache};
use aauth_signing::{
    KeyIdentity, SchemeResolver, Verifier, VerifyError, VerifyPolicy, sign_request,
};
use http::StatusCode;

use crate::support::{Behaviour, FakeFetch, jwks, key};

const T0: u64 = 1_800_000_000;
const META: &str = "https://as.example/.well-known/aauth-access.json";
const JWKS: &str = "https://as.example/jwks.json";

fn access_metadata(issuer: &str) -> String {
    format!(
        r#"{{"issuer":"{issuer}","jwks_uri":"{JWKS}","auth_token_endpoint":"https://as.example/token"}}"#
    )
}

fn fake() -> Arc<FakeFetch> {
    let f = Arc::new(FakeFetch::default());
    f.set(
        META,
        Behaviour::Answer(Fetched::ok(access_metadata("https://as.example"))),
    );
    f.set(JWKS, Behaviour::Answer(Fetched::ok(jwks(&[(1, "k1")]))));
    f
}

fn verifier(fetch: &Arc<FakeFetch>, allow: Option<&[&str]>) -> Verifier {
    let cache = KeyCache::new(
        Arc::clone(fetch),
        Arc::new(FixedClock::new(UnixTime(T0))),
        CacheConfig::default(),
    );
    let mut r = DiscoveryResolver::new(cache);
    if let Some(a) = allow {
        r = r.allow_signers(a.iter().copied());
    }
    Verifier::new(
        VerifyPolicy::default().accept_schemes(&["jwks_uri", "jwks"]),
        Arc::new(r.register(SchemeResolver::new())),
    )
}

fn jwks_uri(id: &str, kid: &str) -> Scheme {
    Scheme::JwksUri {
        id: id.to_owned(),
        dwk: "aauth-access.json".to_owned(),
        kid: kid.to_owned(),
    }
}

async fn check(
    v: &Verifier,
    signer_seed: u8,
    scheme: &Scheme,
) -> Result<aauth_signing::VerifiedRequest, VerifyError> {
    let mut req = http::Request::post("https://ps.example/token")
        .header("host", "ps.example")
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .unwrap();
    sign_request(&mut req, &key(signer_seed), scheme, UnixTime(T0)).unwrap();
    let (parts, body) = req.into_parts();
    let mut parts = parts;
    parts.uri = "/token".parse().unwrap(); // as the server sees it
    v.verify(&parts, &body, UnixTime(T0)).await
}

#[tokio::test]
async fn a_request_signed_under_jwks_uri_verifies_with_the_discovered_key() {
    let f = fake();
    let v = verifier(&f, None);
    let ok = check(&v, 1, &jwks_uri("https://as.example", "k1"))
        .await
        .unwrap();
    assert_eq!(&ok.key, key(1).public_key());
    match ok.identity {
        KeyIdentity::JwksUri { id, dwk, kid } => {
            assert_eq!(
                (id.as_str(), dwk.as_str(), kid.as_str()),
                ("https://as.example", "aauth-access.json", "k1")
            );
        }
        other => panic!("{other:?}"),
    }
    // Signed by another key under the same kid: a bad signature, not a key error.
    let err = check(&v, 2, &jwks_uri("https://as.example", "k1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidSignature));
    assert_eq!(f.calls(JWKS), 1);
}

#[tokio::test]
async fn discovery_failures_map_to_their_signature_error_codes() {
    let f = fake();
    let v = verifier(&f, None);
    let err = check(&v, 1, &jwks_uri("https://as.example", "k9"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        (Some(ErrorCode::UnknownKey), StatusCode::UNAUTHORIZED)
    );

    let f = fake();
    f.set(
        META,
        Behaviour::Answer(Fetched::ok(access_metadata("https://evil.example"))),
    );
    let err = check(
        &verifier(&f, None),
        1,
        &jwks_uri("https://as.example", "k1"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::IssuerMismatch));

    let f = fake();
    f.set(
        META,
        Behaviour::Answer(Fetched::ok(format!(r#"{{"jwks_uri":"{JWKS}"}}"#))),
    );
    let err = check(
        &verifier(&f, None),
        1,
        &jwks_uri("https://as.example", "k1"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::IssuerMissing));

    // The signer's server is down and nothing is cached: a 503, not a verdict.
    let f = fake();
    f.set(
        META,
        Behaviour::Fail(FetchError::Transport("connection refused".to_owned())),
    );
    let err = check(
        &verifier(&f, None),
        1,
        &jwks_uri("https://as.example", "k1"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        (None, StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn signers_outside_the_allow_list_are_refused_without_a_fetch() {
    let f = fake();
    let v = verifier(&f, Some(&["https://ps.example"]));
    let err = check(&v, 1, &jwks_uri("https://as.example", "k1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidKey));
    // Not a server identifier at all.
    let v = verifier(&f, None);
    let err = check(&v, 1, &jwks_uri("http://as.example", "k1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidKey));
    assert_eq!(f.total(), 0);
}

#[tokio::test]
async fn the_jwks_scheme_fetches_the_url_directly() {
    let f = fake();
    let v = verifier(&f, None);
    let scheme = Scheme::Jwks {
        url: JWKS.to_owned(),
        kid: "k1".to_owned(),
    };
    let ok = check(&v, 1, &scheme).await.unwrap();
    assert!(matches!(ok.identity, KeyIdentity::Jwks { ref url, .. } if url == JWKS));
    assert_eq!((f.calls(META), f.calls(JWKS)), (0, 1));
    let bad = Scheme::Jwks {
        url: "http://as.example/jwks.json".to_owned(),
        kid: "k1".to_owned(),
    };
    assert_eq!(
        check(&v, 1, &bad).await.unwrap_err().code(),
        Some(ErrorCode::InvalidKey)
    );
}
