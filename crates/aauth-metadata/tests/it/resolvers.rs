//! The `jwks_uri` and `jwks` schemes end to end: a request signed under each, verified by
//! `aauth-signing`'s verifier with keys discovered through the cache.

use std::sync::Arc;

use aauth_headers::{ErrorCode, Scheme};
use aauth_keys::time::{FixedClock, UnixTime};
use aauth_metadata::{CacheConfig, DiscoveryResolver, FetchError, Fetched, KeyCache};
use aauth_signing::{
    KeyIdentity, SchemeResolver, Verifier, VerifyError, VerifyPolicy, sign_request,
};
use aauth_tokens::ServerId;
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
        VerifyPolicy::for_server(&ServerId::parse("https://ps.example").unwrap())
            .accept_schemes(&["jwks_uri", "jwks", "self-jwt"]),
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

/// `dwk` is the caller's: without a check, any signer could make the verifier fetch
/// `{id}/.well-known/{anything}` from any host. Only the four AAuth documents are
/// fetched; anything else is `invalid_key` (for `jwks_uri`) or `invalid_jwt` (a
/// `self-jwt` claim), with nothing fetched.
#[tokio::test]
async fn only_the_aauth_documents_are_fetched_for_a_caller_chosen_dwk() {
    let f = fake();
    let v = verifier(&f, None);
    for dwk in [
        "openid-configuration",
        "oauth-authorization-server",
        "security.txt",
        "aauth-access.json/../../admin",
        "aauth-access.jsonx",
    ] {
        let scheme = Scheme::JwksUri {
            id: "https://victim.example".to_owned(),
            dwk: dwk.to_owned(),
            kid: "k1".to_owned(),
        };
        let err = check(&v, 1, &scheme).await.unwrap_err();
        assert!(
            matches!(
                &err,
                VerifyError::BadKeyMember {
                    reason: aauth_headers::MemberError::ParameterValue { name: "dwk", .. },
                    ..
                }
            ),
            "{dwk}: {err:?}"
        );
        assert_eq!(err.code(), Some(ErrorCode::InvalidKey), "{dwk}");
        let claims = format!(
            r#"{{"iss":"https://victim.example","dwk":"{dwk}","exp":{}}}"#,
            T0 + 300
        );
        let err = check(&v, 1, &self_jwt(1, &claims)).await.unwrap_err();
        assert!(
            matches!(
                &err,
                VerifyError::Token(aauth_tokens::TokenError::WrongDwk { found, .. }) if found == dwk
            ),
            "{dwk}: {err:?}"
        );
        assert_eq!(err.code(), Some(ErrorCode::InvalidJwt), "{dwk}");
    }
    assert_eq!(f.total(), 0, "a document was fetched");
    // The AAuth documents are fetched (here, the Access Server's).
    check(&v, 1, &jwks_uri("https://as.example", "k1"))
        .await
        .unwrap();
    assert_eq!((f.calls(META), f.calls(JWKS)), (1, 1));
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

fn self_jwt(signer_seed: u8, claims: &str) -> Scheme {
    Scheme::SelfJwt {
        jwt: aauth_tokens::jws::sign(&key(signer_seed), "k1", "aa-event+jwt", claims.as_bytes())
            .unwrap(),
    }
}

#[tokio::test]
async fn self_jwt_binds_the_request_to_the_issuers_published_key() {
    let f = fake();
    let v = verifier(&f, None);
    let exp = T0 + 300;
    let good = format!(
        r#"{{"iss":"https://as.example","dwk":"aauth-access.json","exp":{exp},"event":"x"}}"#
    );
    let ok = check(&v, 1, &self_jwt(1, &good)).await.unwrap();
    assert_eq!(&ok.key, key(1).public_key());
    assert!(
        matches!(ok.identity, KeyIdentity::JwksUri { ref id, .. } if id == "https://as.example")
    );

    // The JWT signed by a key the issuer does not publish under k1.
    let err = check(&v, 2, &self_jwt(2, &good)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidJwt));
    // cnf is forbidden: the JWT's signer is the request's signer.
    let with_cnf = format!(
        r#"{{"iss":"https://as.example","dwk":"aauth-access.json","exp":{exp},"cnf":{{}}}}"#
    );
    assert_eq!(
        check(&v, 1, &self_jwt(1, &with_cnf))
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::InvalidJwt)
    );
    // exp has no tolerance.
    let expired = format!(r#"{{"iss":"https://as.example","dwk":"aauth-access.json","exp":{T0}}}"#);
    assert_eq!(
        check(&v, 1, &self_jwt(1, &expired))
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::ExpiredJwt)
    );
    // Required claims, typed.
    for bad in [
        format!(r#"{{"dwk":"aauth-access.json","exp":{exp}}}"#),
        format!(r#"{{"iss":"https://as.example","exp":{exp}}}"#),
        r#"{"iss":"https://as.example","dwk":"aauth-access.json"}"#.to_owned(),
        format!(r#"{{"iss":"https://as.example","dwk":"aauth-access.json","exp":"{exp}"}}"#),
        format!(
            r#"{{"iss":"https://as.example","iss":"https://evil.example","dwk":"aauth-access.json","exp":{exp}}}"#
        ),
        format!(r#"["https://as.example","aauth-access.json",{exp}]"#),
    ] {
        assert_eq!(
            check(&v, 1, &self_jwt(1, &bad)).await.unwrap_err().code(),
            Some(ErrorCode::InvalidJwt),
            "{bad}"
        );
    }
    // An issuer whose metadata names someone else.
    f.set(
        META,
        Behaviour::Answer(Fetched::ok(access_metadata("https://evil.example"))),
    );
    let v = verifier(&f, None);
    assert_eq!(
        check(&v, 1, &self_jwt(1, &good)).await.unwrap_err().code(),
        Some(ErrorCode::IssuerMismatch)
    );
}

#[tokio::test]
async fn x509_stays_unsupported() {
    let f = fake();
    let v = verifier_accepting(&f, &["x509"]);
    let scheme = Scheme::X509 {
        x5u: "https://as.example/chain.pem".to_owned(),
        x5t: vec![0; 32],
    };
    let err = check(&v, 1, &scheme).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnsupportedScheme));
    assert_eq!(f.total(), 0);
}

fn verifier_accepting(fetch: &Arc<FakeFetch>, schemes: &[&str]) -> Verifier {
    let cache = KeyCache::new(
        Arc::clone(fetch),
        Arc::new(FixedClock::new(UnixTime(T0))),
        CacheConfig::default(),
    );
    Verifier::new(
        VerifyPolicy::for_server(&ServerId::parse("https://ps.example").unwrap())
            .accept_schemes(schemes),
        Arc::new(DiscoveryResolver::new(cache).register(SchemeResolver::new())),
    )
}
