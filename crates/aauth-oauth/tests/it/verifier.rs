//! The verifier: discovery of each issuer's keys, the key cache, fail-closed outcomes.

use std::sync::Arc;

use aauth_keys::time::{FixedClock, UnixTime};
use aauth_metadata::{CacheConfig, Fetched, HttpsUrl};
use aauth_oauth::{
    AccessTokenPolicy, AccessTokenVerifier, AlgorithmRefusal, HmacAlgorithm, Issuer, OAuthError,
    SharedSecret,
};
use serde_json::json;

use crate::support::{
    AUDIENCE, Docs, HS_ISSUER, HS_SECRET, ISSUER, NOW, Signer, claims, ec_jwk, header, mint,
    rs256_token, rsa, rsa_jwk, rsa_other,
};

fn verifier(docs: &Arc<Docs>, clock: &Arc<FixedClock>) -> AccessTokenVerifier<Docs> {
    AccessTokenVerifier::new(
        AccessTokenPolicy::new(AUDIENCE),
        [Issuer::discover(ISSUER).unwrap()],
        Arc::clone(docs),
        clock.clone(),
        CacheConfig::default(),
    )
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(UnixTime(NOW)))
}

#[tokio::test]
async fn discovers_the_issuer_then_serves_from_the_cache() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None), ec_jwk("es")]);
    let v = verifier(&docs, &clock());
    let c = v.verify_bearer(&rs256_token()).await.unwrap();
    assert_eq!(c.scopes().collect::<Vec<_>>(), ["read", "write"]);
    assert_eq!(docs.fetched(), 2, "metadata, then JWKS");
    let es = mint(&header("ES256", "es"), &claims(), Signer::Es256);
    v.verify_bearer(&es).await.unwrap();
    v.verify_bearer(&rs256_token()).await.unwrap();
    assert_eq!(
        docs.fetched(),
        2,
        "both keys from one JWKS, metadata read once"
    );
}

#[tokio::test]
async fn falls_back_to_openid_configuration() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    docs.remove("https://as.example/.well-known/oauth-authorization-server");
    docs.put(
        "https://as.example/.well-known/openid-configuration",
        Fetched::ok(
            json!({"issuer": ISSUER, "jwks_uri": "https://keys.as.example/certs"}).to_string(),
        ),
    );
    let jwks = json!({"keys": [serde_json::from_str::<serde_json::Value>(&rsa_jwk(rsa(), "rs", None).to_json()).unwrap()]});
    docs.put(
        "https://keys.as.example/certs",
        Fetched::ok(jwks.to_string()),
    );
    verifier(&docs, &clock())
        .verify_bearer(&rs256_token())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_issuer_with_a_path_is_discovered_by_both_rules() {
    let iss = "https://as.example/realms/a";
    let docs = Arc::new(Docs::default());
    docs.put(
        "https://as.example/.well-known/oauth-authorization-server/realms/a",
        Fetched::ok(
            json!({"issuer": iss, "jwks_uri": "https://as.example/realms/a/jwks"}).to_string(),
        ),
    );
    let jwks = json!({"keys": [serde_json::from_str::<serde_json::Value>(&rsa_jwk(rsa(), "rs", None).to_json()).unwrap()]});
    docs.put(
        "https://as.example/realms/a/jwks",
        Fetched::ok(jwks.to_string()),
    );
    let v = AccessTokenVerifier::new(
        AccessTokenPolicy::new(AUDIENCE),
        [Issuer::discover(iss).unwrap()],
        Arc::clone(&docs),
        clock(),
        CacheConfig::default(),
    );
    let mut c = claims();
    c["iss"] = json!(iss);
    v.verify_bearer(&mint(&header("RS256", "rs"), &c, Signer::Rs256(rsa())))
        .await
        .unwrap();
    // The OpenID form, `{issuer}/.well-known/openid-configuration`, when RFC 8414's is absent.
    docs.remove("https://as.example/.well-known/oauth-authorization-server/realms/a");
    docs.put(
        "https://as.example/realms/a/.well-known/openid-configuration",
        Fetched::ok(
            json!({"issuer": iss, "jwks_uri": "https://as.example/realms/a/jwks"}).to_string(),
        ),
    );
    let fresh = AccessTokenVerifier::new(
        AccessTokenPolicy::new(AUDIENCE),
        [Issuer::discover(iss).unwrap()],
        Arc::clone(&docs),
        clock(),
        CacheConfig::default(),
    );
    fresh
        .verify_bearer(&mint(&header("RS256", "rs"), &c, Signer::Rs256(rsa())))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_from_an_untrusted_issuer_costs_no_fetch() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    let token = mint(&header("RS256", "rs"), &c, Signer::Rs256(rsa()));
    let e = verifier(&docs, &clock())
        .verify_bearer(&token)
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::UnknownIssuer { .. }));
    assert_eq!(docs.fetched(), 0);
}

#[tokio::test]
async fn metadata_naming_another_issuer_is_refused_and_fails_closed() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    docs.put(
        "https://as.example/.well-known/oauth-authorization-server",
        Fetched::ok(
            json!({"issuer": "https://evil.example", "jwks_uri": "https://evil.example/jwks"})
                .to_string(),
        ),
    );
    let e = verifier(&docs, &clock())
        .verify_bearer(&rs256_token())
        .await
        .unwrap_err();
    assert!(
        matches!(e, OAuthError::Unavailable { ref reason } if reason.contains("evil")),
        "{e:?}"
    );
    assert_eq!(e.status(), 503);
}

#[tokio::test]
async fn an_unreachable_issuer_is_503_then_backs_off() {
    let docs = Arc::new(Docs::default());
    let clock = clock();
    let v = verifier(&docs, &clock);
    let e = v.verify_bearer(&rs256_token()).await.unwrap_err();
    assert_eq!(e.status(), 503, "{e:?}");
    let after_first = docs.fetched();
    assert_eq!(after_first, 2, "both metadata locations tried");
    let e = v.verify_bearer(&rs256_token()).await.unwrap_err();
    assert!(matches!(e, OAuthError::Unavailable { ref reason } if reason.contains("backing off")));
    assert_eq!(docs.fetched(), after_first, "no fetch while backing off");
    // The issuer comes back; after the backoff the next token is checked.
    let good = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    let v = verifier(&good, &clock);
    clock.advance(std::time::Duration::from_secs(61));
    v.verify_bearer(&rs256_token()).await.unwrap();
}

#[tokio::test]
async fn an_unknown_kid_is_401_and_a_rekeyed_issuer_is_followed() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    let clock = clock();
    let v = verifier(&docs, &clock);
    v.verify_bearer(&rs256_token()).await.unwrap();
    let new_kid = mint(
        &header("RS256", "rs2"),
        &claims(),
        Signer::Rs256(rsa_other()),
    );
    let e = v.verify_bearer(&new_kid).await.unwrap_err();
    assert!(
        matches!(e, OAuthError::Key { ref kid, .. } if kid == "rs2"),
        "{e:?}"
    );
    assert_eq!(e.status(), 401);
    // The issuer publishes the new key; once the one-minute floor allows, it is fetched.
    docs.set_keys(&[
        rsa_jwk(rsa(), "rs", None),
        rsa_jwk(rsa_other(), "rs2", None),
    ]);
    clock.advance(std::time::Duration::from_secs(61));
    v.verify_bearer(&new_kid).await.unwrap();
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_is_refetched_once() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    let clock = clock();
    let v = verifier(&docs, &clock);
    v.verify_bearer(&rs256_token()).await.unwrap();
    docs.set_keys(&[rsa_jwk(rsa_other(), "rs", None)]);
    clock.advance(std::time::Duration::from_secs(61));
    let rekeyed = mint(
        &header("RS256", "rs"),
        &claims(),
        Signer::Rs256(rsa_other()),
    );
    v.verify_bearer(&rekeyed).await.unwrap();
}

#[tokio::test]
async fn a_dpop_bound_token_is_not_a_bearer_token() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    let mut c = claims();
    c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let token = mint(&header("RS256", "rs"), &c, Signer::Rs256(rsa()));
    let v = verifier(&docs, &clock());
    assert!(matches!(
        v.verify_bearer(&token).await.unwrap_err(),
        OAuthError::Binding { .. }
    ));
    assert!(v.verify_token(&token).await.unwrap().jkt().is_some());
    // Bound to an mTLS certificate instead: not a bearer token here either.
    let mut c = claims();
    c["cnf"] = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"});
    let token = mint(&header("RS256", "rs"), &c, Signer::Rs256(rsa()));
    assert!(matches!(
        v.verify_bearer(&token).await.unwrap_err(),
        OAuthError::Binding { .. }
    ));
}

#[tokio::test]
async fn a_configured_jwks_uri_skips_discovery() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    docs.remove("https://as.example/.well-known/oauth-authorization-server");
    let v = AccessTokenVerifier::new(
        AccessTokenPolicy::new(AUDIENCE),
        [
            Issuer::with_jwks_uri(ISSUER, HttpsUrl::parse("https://as.example/jwks").unwrap())
                .unwrap(),
        ],
        Arc::clone(&docs),
        clock(),
        CacheConfig::default(),
    );
    v.verify_bearer(&rs256_token()).await.unwrap();
    assert_eq!(docs.fetched(), 1);
}

#[test]
fn issuers_must_be_https_without_query() {
    assert!(Issuer::discover("http://as.example").is_err());
    assert!(Issuer::discover("https://as.example?x=1").is_err());
    assert!(Issuer::discover("https://as.example/realms/a").is_ok());
}

#[tokio::test]
async fn an_issuer_configured_with_a_secret_beside_one_with_keys() {
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
    let secret = SharedSecret::new(HmacAlgorithm::Hs256, HS_SECRET).unwrap();
    let v = AccessTokenVerifier::new(
        AccessTokenPolicy::new(AUDIENCE),
        [
            Issuer::discover(ISSUER).unwrap(),
            Issuer::with_shared_secret(HS_ISSUER, secret).unwrap(),
        ],
        Arc::clone(&docs),
        clock(),
        CacheConfig::default(),
    );
    let mut c = claims();
    c["iss"] = json!(HS_ISSUER);
    let hs = |claims: &serde_json::Value, secret: &'static [u8]| {
        mint(
            &json!({"alg": "HS256", "typ": "at+jwt"}),
            claims,
            Signer::Hmac(HmacAlgorithm::Hs256, secret),
        )
    };
    let got = v.verify_bearer(&hs(&c, HS_SECRET)).await.unwrap();
    assert_eq!(got.issuer(), HS_ISSUER);
    assert_eq!(
        docs.fetched(),
        0,
        "nothing is fetched for a secret's issuer"
    );
    assert_eq!(
        v.verify_bearer(&hs(&c, &[3; 32])).await.unwrap_err(),
        OAuthError::Signature
    );
    // The issuer with published keys: its own tokens pass, an HMAC token in its name
    // (signed with anything, its public key included) never does.
    v.verify_bearer(&rs256_token()).await.unwrap();
    assert_eq!(
        v.verify_bearer(&hs(&claims(), HS_SECRET))
            .await
            .unwrap_err(),
        OAuthError::Algorithm {
            alg: "HS256".to_owned(),
            refusal: AlgorithmRefusal::Forbidden
        }
    );
    // And the secret's issuer cannot be impersonated with a published key's algorithm.
    let rs_as_hs = mint(&header("RS256", "rs"), &c, Signer::Rs256(rsa()));
    assert_eq!(
        v.verify_bearer(&rs_as_hs).await.unwrap_err(),
        OAuthError::Algorithm {
            alg: "RS256".to_owned(),
            refusal: AlgorithmRefusal::NotTheIssuers
        }
    );
    // Expired is expired, whoever signed it.
    c["exp"] = json!(NOW - 3600);
    c["iat"] = json!(NOW - 7200);
    assert!(matches!(
        v.verify_bearer(&hs(&c, HS_SECRET)).await.unwrap_err(),
        OAuthError::Expired { .. }
    ));
    assert!(
        Issuer::with_shared_secret(
            "",
            SharedSecret::new(HmacAlgorithm::Hs256, HS_SECRET).unwrap()
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_secret_given_for_an_issuer_also_given_with_keys_is_never_used() {
    let hs = || {
        mint(
            &json!({"alg": "HS256", "typ": "at+jwt"}),
            &claims(),
            Signer::Hmac(HmacAlgorithm::Hs256, HS_SECRET),
        )
    };
    let secret = || {
        Issuer::with_shared_secret(
            ISSUER,
            SharedSecret::new(HmacAlgorithm::Hs256, HS_SECRET).unwrap(),
        )
        .unwrap()
    };
    // Either order: the entry with published keys counts, the secret is ignored.
    for issuers in [
        [Issuer::discover(ISSUER).unwrap(), secret()],
        [secret(), Issuer::discover(ISSUER).unwrap()],
    ] {
        let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None)]);
        let v = AccessTokenVerifier::new(
            AccessTokenPolicy::new(AUDIENCE),
            issuers,
            Arc::clone(&docs),
            clock(),
            CacheConfig::default(),
        );
        v.verify_bearer(&rs256_token()).await.unwrap();
        assert_eq!(
            v.verify_bearer(&hs()).await.unwrap_err(),
            OAuthError::Algorithm {
                alg: "HS256".to_owned(),
                refusal: AlgorithmRefusal::Forbidden
            }
        );
    }
}

/// `jwk` as some providers publish it: no `kid`.
fn kidless(mut jwk: aauth_keys::Jwk) -> aauth_keys::Jwk {
    jwk.kid = None;
    jwk
}

fn kidless_token(alg: &str, signer: Signer) -> String {
    mint(&json!({"alg": alg, "typ": "at+jwt"}), &claims(), signer)
}

#[tokio::test]
async fn a_token_without_kid_is_verified_with_the_issuers_one_key() {
    let docs = Docs::issuer(&[kidless(rsa_jwk(rsa(), "rs", None))]);
    let v = verifier(&docs, &clock());
    let c = v
        .verify_bearer(&kidless_token("RS256", Signer::Rs256(rsa())))
        .await
        .unwrap();
    assert_eq!(c.issuer(), ISSUER);
    // PS256 under the same RSA key: its family verifies both.
    v.verify_bearer(&kidless_token("PS256", Signer::Ps256(rsa())))
        .await
        .unwrap();
    // The one key fits, but another key's signature still does not verify.
    assert_eq!(
        v.verify_bearer(&kidless_token("RS256", Signer::Rs256(rsa_other())))
            .await
            .unwrap_err(),
        OAuthError::Signature
    );
    // A key published with a kid is a candidate too, and keys of other families are not:
    // an RSA key beside a P-256 one is still the one key for RS256.
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "rs", None), ec_jwk("es")]);
    let v = verifier(&docs, &clock());
    v.verify_bearer(&kidless_token("RS256", Signer::Rs256(rsa())))
        .await
        .unwrap();
    v.verify_bearer(&kidless_token("ES256", Signer::Es256))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_without_kid_is_refused_when_several_keys_fit() {
    let docs = Docs::issuer(&[
        kidless(rsa_jwk(rsa(), "a", None)),
        kidless(rsa_jwk(rsa_other(), "b", None)),
    ]);
    let v = verifier(&docs, &clock());
    let err = v
        .verify_bearer(&kidless_token("RS256", Signer::Rs256(rsa())))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        OAuthError::NoSoleKey {
            alg: "RS256".to_owned(),
            candidates: 2
        }
    );
    assert_eq!((err.status(), err.code()), (401, "invalid_token"));
    // Published with kids: a token without one is refused the same way, and one that
    // names its key is verified, as ever.
    let docs = Docs::issuer(&[rsa_jwk(rsa(), "a", None), rsa_jwk(rsa_other(), "b", None)]);
    let v = verifier(&docs, &clock());
    assert!(matches!(
        v.verify_bearer(&kidless_token("RS256", Signer::Rs256(rsa())))
            .await,
        Err(OAuthError::NoSoleKey { candidates: 2, .. })
    ));
    v.verify_bearer(&mint(
        &header("RS256", "b"),
        &claims(),
        Signer::Rs256(rsa_other()),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_token_without_kid_is_refused_when_its_alg_does_not_fit_the_one_key() {
    // One RSA key pinned to RS256: neither ES256 (another family), PS256 (not the
    // pinned alg) nor HMAC (never under published keys) picks it.
    let docs = Docs::issuer(&[kidless(rsa_jwk(rsa(), "rs", Some("RS256")))]);
    let v = verifier(&docs, &clock());
    for (alg, signer) in [("ES256", Signer::Es256), ("PS256", Signer::Ps256(rsa()))] {
        assert_eq!(
            v.verify_bearer(&kidless_token(alg, signer))
                .await
                .unwrap_err(),
            OAuthError::NoSoleKey {
                alg: alg.to_owned(),
                candidates: 0
            },
            "{alg}"
        );
    }
    let hmac = kidless_token("HS256", Signer::Hmac(HmacAlgorithm::Hs256, HS_SECRET));
    assert!(matches!(
        v.verify_bearer(&hmac).await,
        Err(OAuthError::Algorithm {
            refusal: AlgorithmRefusal::Forbidden,
            ..
        })
    ));
    // A member meant for encryption is no candidate either.
    let mut enc = kidless(rsa_jwk(rsa(), "rs", None));
    enc.use_ = Some("enc".to_owned());
    let docs = Docs::issuer(&[enc]);
    assert!(matches!(
        verifier(&docs, &clock())
            .verify_bearer(&kidless_token("RS256", Signer::Rs256(rsa())))
            .await,
        Err(OAuthError::NoSoleKey { candidates: 0, .. })
    ));
}
