//! Sign and verify through the public API: schemes, token types, labels, algorithms.

use std::sync::Arc;

use aauth_headers::{ErrorCode, Scheme};
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{Algorithm, PrivateKey, Signer};
use aauth_signing::{
    AuthoritySource, BodyCoverage, DigestMode, JwtResolver, KeyIdentity, LabelSelection,
    RevocationList, SchemeResolver, SignOptions, SigningKey, UriScheme, Verifier, VerifyError,
    prepare, sign, sign_request,
};
use aauth_tokens::{
    AuthIssuer, AuthTokenBuilder, PersonTokenBuilder, ServerId, StaticIssuerKeys, TokenType,
};
use async_trait::async_trait;

use crate::common::*;

#[test]
fn get_and_post_round_trip() {
    let (p, b) = signed(
        "GET",
        "https://resource.example/api/documents?page=2",
        b"",
        &SignOptions::default(),
    );
    assert_eq!(
        header(&p, "signature-input"),
        r#"sig=("@method" "@authority" "@path" "signature-key");created=1800000000"#
    );
    assert!(!p.headers.contains_key("content-digest"));
    let v = verify(&as_server(p), &b).unwrap();
    assert_eq!(v.label, "sig");
    assert_eq!(&v.key, agent_key().public_key());
    match &v.identity {
        KeyIdentity::Token(t) => assert_eq!(t.token_type(), TokenType::Agent),
        other => panic!("{other:?}"),
    }
    let (p, b) = signed(
        "POST",
        "https://ps.example/token",
        br#"{"resource_token":"x"}"#,
        &SignOptions::default(),
    );
    assert!(
        header(&p, "signature-input")
            .contains(r#""content-type" "content-digest" "signature-key""#)
    );
    verify(&as_server(p), &b).unwrap();
}

#[test]
fn sign_request_helper_and_the_alg_parameter_is_never_sent() {
    let mut req = http::Request::get("https://resource.example/x")
        .body(Vec::new())
        .unwrap();
    sign_request(&mut req, &agent_key(), &Scheme::jwt(agent_token()), NOW).unwrap();
    let input = req.headers()["signature-input"].to_str().unwrap();
    assert!(!input.contains("alg="), "{input}");
    assert!(!input.contains("keyid="), "{input}");
    assert!(req.headers()["signature-key"].is_sensitive());
    let (parts, body) = req.into_parts();
    verify(&as_server(parts), &body).unwrap();
}

#[test]
fn es256_agent_keys_sign_and_verify() {
    let key = PrivateKey::es256_from_scalar(&[11; 32]).unwrap();
    let (mut parts, ()) = http::Request::get("https://resource.example/x")
        .body(())
        .unwrap()
        .into_parts();
    let scheme = Scheme::jwt(agent_token_for(key.public_key()));
    sign(
        &mut parts,
        b"",
        &[SigningKey::new("sig", &key, &scheme)],
        &SignOptions::default(),
        NOW,
    )
    .unwrap();
    let v = verify(&as_server(parts.clone()), b"").unwrap();
    assert_eq!(v.key.algorithm(), Algorithm::Es256);
    // A verifier that accepts only Ed25519 refuses, naming what it accepts.
    let policy = policy().accept_algorithms(&[Algorithm::Ed25519]);
    let e = verify_with(policy.clone(), &as_server(parts), b"").unwrap_err();
    assert!(
        matches!(e, VerifyError::AlgorithmNotAccepted { .. }),
        "{e:?}"
    );
    assert_eq!(e.code(), Some(ErrorCode::UnsupportedAlgorithm));
    let h = e.response_headers(&policy);
    assert!(
        h.iter()
            .any(|(n, v)| n == "accept-signature-alg" && v == "Ed25519"),
        "{h:?}"
    );
}

#[test]
fn person_and_auth_tokens_with_audience() {
    let ps_key = PrivateKey::ed25519_from_seed(&[3; 32]);
    let ps = ServerId::parse("https://ps.example").unwrap();
    let resource = ServerId::parse("https://resource.example").unwrap();
    let issuers =
        StaticIssuerKeys::new().with(&ps, "aauth-person.json", "k1", ps_key.public_key().clone());
    let person = PersonTokenBuilder::new(
        ps.clone(),
        resource.clone(),
        "p-1",
        agent_key().public_key(),
    )
    .sign(&ps_key, "k1", NOW, &mut OsRandom)
    .unwrap();
    let auth = AuthTokenBuilder::new(
        AuthIssuer::PersonServer,
        ps.clone(),
        resource.clone(),
        ps,
        "p-1",
        agent_key().public_key(),
    )
    .sign(&ps_key, "k1", NOW, &mut OsRandom)
    .unwrap();
    let resolver = |accepted: &[TokenType], aud: Option<ServerId>| {
        let mut r = JwtResolver::new(Arc::new(issuers.clone()), accepted);
        if let Some(a) = aud {
            r = r.audience(a);
        }
        Verifier::new(policy(), Arc::new(SchemeResolver::new().jwt(r)))
    };
    for token in [&person.token, &auth.token] {
        let (mut parts, ()) = http::Request::get("https://resource.example/data")
            .body(())
            .unwrap()
            .into_parts();
        let scheme = Scheme::jwt(token.clone());
        sign(
            &mut parts,
            b"",
            &[SigningKey::new("sig", &agent_key(), &scheme)],
            &SignOptions::default(),
            NOW,
        )
        .unwrap();
        let parts = as_server(parts);
        let ok = resolver(
            &[TokenType::Person, TokenType::Auth],
            Some(resource.clone()),
        );
        block(ok.verify(&parts, b"", NOW)).unwrap();
        // An agent-token-only endpoint refuses both (typ first): invalid_jwt.
        let agent_only = resolver(&[TokenType::Agent], Some(resource.clone()));
        let e = block(agent_only.verify(&parts, b"", NOW)).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidJwt), "{e:?}");
        // Another resource's verifier: wrong audience.
        let other = resolver(
            &[TokenType::Person, TokenType::Auth],
            Some(ServerId::parse("https://other.example").unwrap()),
        );
        let e = block(other.verify(&parts, b"", NOW)).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::Token(aauth_tokens::TokenError::WrongAudience { .. })
            ),
            "{e:?}"
        );
    }
}

#[test]
fn several_labels_are_signed_over_the_complete_signature_key() {
    let k1 = agent_key();
    let k2 = PrivateKey::ed25519_from_seed(&[12; 32]);
    let s1 = Scheme::jwt(agent_token());
    let mut hwk = aauth_headers::Hwk::default();
    hwk.kty = Some("OKP".into());
    hwk.crv = Some("Ed25519".into());
    hwk.x = Some(aauth_keys::base64url::encode(k2.public_key().as_bytes()));
    hwk.alg = Some("Ed25519".into());
    let s2 = Scheme::Hwk(hwk);
    let (mut parts, ()) = http::Request::get("https://resource.example/x")
        .body(())
        .unwrap()
        .into_parts();
    sign(
        &mut parts,
        b"",
        &[
            SigningKey::new("sig", &k1, &s1),
            SigningKey::new("pseudo", &k2, &s2),
        ],
        &SignOptions::default(),
        NOW,
    )
    .unwrap();
    let sk = header(&parts, "signature-key");
    assert!(
        sk.starts_with("sig=jwt;jwt=") && sk.contains(", pseudo=hwk;kty=\"OKP\""),
        "{sk}"
    );
    let parts = as_server(parts);
    // Auto picks the only label with an accepted scheme (jwt).
    let v = verify(&parts, b"").unwrap();
    assert_eq!(v.label, "sig");
    // Accepting both schemes, Auto refuses to guess; a named label decides.
    let both = Verifier::new(
        policy().accept_schemes(&["jwt", "hwk"]),
        Arc::new(resolver().hwk()),
    );
    let e = block(both.verify(&parts, b"", NOW)).unwrap_err();
    assert!(matches!(e, VerifyError::NoLabel { .. }), "{e:?}");
    let named = Verifier::new(
        policy()
            .accept_schemes(&["jwt", "hwk"])
            .label(LabelSelection::Named("pseudo".into())),
        Arc::new(resolver().hwk()),
    );
    let v = block(named.verify(&parts, b"", NOW)).unwrap();
    assert_eq!(v.label, "pseudo");
    assert!(matches!(v.identity, KeyIdentity::Pseudonym { .. }));
    assert_eq!(&v.key, k2.public_key());
}

#[test]
fn jkt_jwt_scheme_when_accepted() {
    let enclave = PrivateKey::es256_from_scalar(&[13; 32]).unwrap();
    let eph = agent_key();
    let header =
        serde_json::json!({"alg":"ES256","typ":"jkt-s256+jwt","jwk":enclave.public_key().to_jwk()});
    let payload = serde_json::json!({
        "iss": format!("urn:jkt:sha-256:{}", enclave.public_key().thumbprint()),
        "iat": NOW.0, "exp": NOW.0 + 600, "cnf": {"jwk": eph.public_key().to_jwk()},
    });
    let input = format!(
        "{}.{}",
        aauth_keys::base64url::encode(header.to_string().as_bytes()),
        aauth_keys::base64url::encode(payload.to_string().as_bytes())
    );
    let jwt = format!(
        "{input}.{}",
        aauth_keys::base64url::encode(&enclave.sign(input.as_bytes()).unwrap())
    );
    let scheme = Scheme::JktJwt { jwt, cache: false };
    let (mut parts, ()) = http::Request::get("https://resource.example/x")
        .body(())
        .unwrap()
        .into_parts();
    sign(
        &mut parts,
        b"",
        &[SigningKey::new("sig", &eph, &scheme)],
        &SignOptions::default(),
        NOW,
    )
    .unwrap();
    let parts = as_server(parts);
    // Default AAuth policy: unsupported_scheme, with Accept-Signature-Scheme: jwt.
    let e = verify(&parts, b"").unwrap_err();
    assert!(matches!(e, VerifyError::UnsupportedScheme { .. }), "{e:?}");
    let h = e.response_headers(&policy());
    assert!(
        h.iter()
            .any(|(n, v)| n == "accept-signature-scheme" && v == "jwt"),
        "{h:?}"
    );
    let v = Verifier::new(
        policy().accept_schemes(&["jkt-jwt"]),
        Arc::new(SchemeResolver::new().jkt_jwt()),
    );
    let out = block(v.verify(&parts, b"", NOW)).unwrap();
    assert!(matches!(out.identity, KeyIdentity::JktJwt(_)));
}

#[test]
fn authorization_is_covered_when_a_session_token_is_sent() {
    let (p, b) = signed_with(
        "GET",
        "https://resource.example/data",
        &[("authorization", "AAuth c2Vzc2lvbg")],
        b"",
        &SignOptions::default(),
    );
    assert!(header(&p, "signature-input").contains("\"authorization\""));
    let policy = policy().require("authorization");
    let mut server = as_server(p);
    verify_with(policy.clone(), &server, &b).unwrap();
    set(&mut server, "authorization", "AAuth b3RoZXI");
    assert!(matches!(
        verify_with(policy, &server, &b),
        Err(VerifyError::BadSignature)
    ));
}

#[test]
fn query_is_covered_on_request() {
    let (p, b) = signed(
        "GET",
        "https://resource.example/data?a=1",
        b"",
        &SignOptions::default().with_query(),
    );
    assert!(header(&p, "signature-input").contains("\"@query\""));
    let mut server = as_server(p);
    verify_with(policy().require("@query"), &server, &b).unwrap();
    server.uri = "/data?a=2".parse().unwrap();
    assert!(matches!(
        verify(&server, &b),
        Err(VerifyError::BadSignature)
    ));
}

/// A caller that repeats a resource's whole `required_input` list names the profile's
/// components again; each is still covered once (RFC 9421 §2.5), and the verifier accepts.
#[test]
fn components_named_again_are_covered_once() {
    let options = [
        "@method",
        "@authority",
        "@path",
        "signature-key",
        "@target-uri",
    ]
    .iter()
    .fold(SignOptions::default(), |o, c| o.with(c));
    let (p, b) = signed("GET", "https://resource.example/data", b"", &options);
    let input = header(&p, "signature-input");
    for c in ["\"@method\"", "\"signature-key\"", "\"@target-uri\""] {
        assert_eq!(input.matches(c).count(), 1, "{c} in {input}");
    }
    verify_with(policy().require("@target-uri"), &as_server(p), &b).unwrap();
}

#[test]
fn configured_authority_and_http_scheme() {
    // Behind a proxy: the verifier pins its external authority.
    let (p, b) = signed(
        "GET",
        "https://api.example/data",
        b"",
        &SignOptions::default(),
    );
    let mut server = as_server(p);
    set(&mut server, "host", "internal:8080");
    assert!(matches!(
        verify(&server, &b),
        Err(VerifyError::Component(
            aauth_signing::ComponentError::WrongAuthority { .. }
        ))
    ));
    let fixed = policy().authority(
        aauth_signing::dangerous::fixed_authority("api.example", UriScheme::Https).unwrap(),
    );
    verify_with(fixed, &server, &b).unwrap();
    // Plain http on port 80 normalizes like https on 443.
    let (p, b) = signed(
        "GET",
        "http://api.example:80/data",
        b"",
        &SignOptions::default(),
    );
    let mut server = as_server(p);
    set(&mut server, "host", "api.example");
    let http_policy = policy()
        .authority(AuthoritySource::names_with_scheme(["api.example"], UriScheme::Http).unwrap());
    verify_with(http_policy, &server, &b).unwrap();
}

struct Revoked(Result<bool, String>);

#[async_trait]
impl RevocationList for Revoked {
    async fn is_revoked(&self, iss: &ServerId, jti: &str) -> Result<bool, String> {
        assert_eq!(iss.as_str(), "https://agent.example");
        assert!(!jti.is_empty());
        self.0.clone()
    }
}

#[test]
fn revoked_tokens_and_an_unavailable_store() {
    let (p, b) = signed(
        "GET",
        "https://resource.example/x",
        b"",
        &SignOptions::default(),
    );
    let server = as_server(p);
    let v = verifier(policy()).revocations(Arc::new(Revoked(Ok(true))));
    let e = block(v.verify(&server, &b, NOW)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RevokedJwt));
    assert_eq!(e.status(), 401);
    let v = verifier(policy()).revocations(Arc::new(Revoked(Err("redis down".into()))));
    let e = block(v.verify(&server, &b, NOW)).unwrap_err();
    assert_eq!(e.code(), None);
    assert_eq!(e.status(), 503);
    assert!(e.response_headers(&policy()).is_empty());
    let v = verifier(policy()).revocations(Arc::new(Revoked(Ok(false))));
    block(v.verify(&server, &b, NOW)).unwrap();
}

#[test]
fn token_failures_map_to_their_signature_error_codes() {
    // Expired agent token: expired_jwt.
    let (p, b) = signed(
        "GET",
        "https://resource.example/x",
        b"",
        &SignOptions::default(),
    );
    let server = as_server(p);
    let later = UnixTime(NOW.0 + 3600);
    // Re-sign at `later` with the old token so `created` is fresh but the token expired.
    let mut parts = server.clone();
    let mut client = http::Request::get("https://resource.example/x")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let scheme = Scheme::jwt(agent_token());
    sign(
        &mut client,
        b"",
        &[SigningKey::new("sig", &agent_key(), &scheme)],
        &SignOptions::default(),
        later,
    )
    .unwrap();
    parts.headers = as_server(client).headers;
    let e = block(verifier(policy()).verify(&parts, &b, later)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ExpiredJwt), "{e:?}");
    // Unknown kid: unknown_key; untrusted issuer: invalid_jwt.
    let other_issuers = StaticIssuerKeys::new().with(
        &ServerId::parse("https://agent.example").unwrap(),
        "aauth-agent.json",
        "k2",
        provider_key().public_key().clone(),
    );
    let v = Verifier::new(
        policy(),
        Arc::new(SchemeResolver::new().jwt(JwtResolver::new(
            Arc::new(other_issuers),
            &[TokenType::Agent],
        ))),
    );
    let e = block(v.verify(&server, &b, NOW)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownKey), "{e:?}");
    let v = Verifier::new(
        policy(),
        Arc::new(SchemeResolver::new().jwt(JwtResolver::new(
            Arc::new(StaticIssuerKeys::new()),
            &[TokenType::Agent],
        ))),
    );
    let e = block(v.verify(&server, &b, NOW)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidJwt), "{e:?}");
    // A problem body names the code in its type.
    let body: serde_json::Value = serde_json::from_str(&e.problem_json()).unwrap();
    assert_eq!(body["type"], "urn:ietf:params:sig-error:invalid_jwt");
    assert_eq!(body["status"], 401);
}

#[test]
fn sans_io_prepare_then_finish() {
    let (p, b) = signed(
        "POST",
        "https://ps.example/token",
        b"{}",
        &SignOptions::default(),
    );
    let server = as_server(p);
    let prepared = prepare(&server, &b, &policy(), NOW).unwrap();
    assert_eq!(prepared.label(), "sig");
    assert!(matches!(prepared.scheme(), Scheme::Jwt { .. }));
    assert!(
        prepared
            .signature_base()
            .starts_with("\"@method\": POST\n\"@authority\": ps.example\n\"@path\": /token\n")
    );
    let resolved = block(async {
        use aauth_signing::{KeyResolver, ResolveContext};
        resolver()
            .resolve(prepared.scheme(), &ResolveContext::new(NOW, "sig"))
            .await
    })
    .unwrap();
    let v = prepared.finish(resolved).unwrap();
    assert_ne!(v.replay_key(), [0; 32]);
    assert!(v.signature_base.ends_with(";created=1800000000"));
}

#[test]
fn digest_modes_and_sign_errors() {
    let (p, _) = signed(
        "POST",
        "https://ps.example/x",
        b"",
        &SignOptions::default().digest(DigestMode::Always),
    );
    assert_eq!(
        header(&p, "content-digest"),
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
    let (p, b) = signed(
        "POST",
        "https://resource.example/x",
        b"abc",
        &SignOptions::default().digest(DigestMode::Never),
    );
    assert!(!p.headers.contains_key("content-digest"));
    verify_with(
        policy().body_coverage(BodyCoverage::Optional),
        &as_server(p),
        &b,
    )
    .unwrap();
    let (mut parts, ()) = http::Request::get("https://r.example/")
        .body(())
        .unwrap()
        .into_parts();
    let scheme = Scheme::jwt("a.b.c");
    let key = agent_key();
    let e = sign(&mut parts, b"", &[], &SignOptions::default(), NOW).unwrap_err();
    assert!(matches!(e, aauth_signing::SignError::NoLabels));
    let e = sign(
        &mut parts,
        b"",
        &[SigningKey::new("sig", &key, &scheme)],
        &SignOptions::default().components(&["@method", "@authority", "@path"]),
        NOW,
    )
    .unwrap_err();
    assert!(
        matches!(e, aauth_signing::SignError::MissingRequiredComponent { ref component } if component == "signature-key")
    );
    let e = sign(
        &mut parts,
        b"",
        &[SigningKey::new("sig", &key, &scheme)],
        &SignOptions::default().with("x-missing"),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(e, aauth_signing::SignError::Component(_)), "{e:?}");
}

/// A signer gate decides before any key is resolved: a refused signer costs no lookup.
#[test]
fn a_signer_gate_refuses_before_any_key_is_resolved() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counting(AtomicUsize, SchemeResolver);
    #[async_trait]
    impl aauth_signing::KeyResolver for Counting {
        async fn resolve(
            &self,
            scheme: &Scheme,
            ctx: &aauth_signing::ResolveContext<'_>,
        ) -> Result<aauth_signing::ResolvedKey, VerifyError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.resolve(scheme, ctx).await
        }
    }
    let (p, b) = signed(
        "GET",
        "https://api.example/data",
        b"",
        &SignOptions::default(),
    );
    let p = as_server(p);
    let resolver = Arc::new(Counting(AtomicUsize::new(0), resolver()));
    let refuse = |s: &Scheme| {
        Err(VerifyError::SignerNotAdmitted {
            signer: s.name().to_owned(),
        })
    };
    let v = Verifier::new(policy(), resolver.clone()).gate(Arc::new(refuse));
    let e = block(v.verify(&p, &b, NOW)).unwrap_err();
    assert_eq!(
        e,
        VerifyError::SignerNotAdmitted {
            signer: "jwt".into()
        }
    );
    assert_eq!(e.status(), http::StatusCode::FORBIDDEN);
    assert_eq!(e.code(), None);
    assert!(e.response_headers(&policy()).is_empty());
    assert_eq!(resolver.0.load(Ordering::SeqCst), 0);
    let admit = |_: &Scheme| Ok(());
    let v = Verifier::new(policy(), resolver.clone()).gate(Arc::new(admit));
    block(v.verify(&p, &b, NOW)).unwrap();
    assert_eq!(resolver.0.load(Ordering::SeqCst), 1);
}

/// `jwks_uri`'s `dwk` is the caller's choice: a server that resolves it through
/// `IssuerJwksUriResolver` fetches only the four AAuth documents, never
/// `{id}/.well-known/{anything}`. Any other `dwk` is `invalid_key` with no lookup.
#[test]
fn jwks_uri_resolves_only_aauth_documents() {
    use std::sync::Mutex;
    /// Records every issuer-key lookup (what would be a metadata and JWKS fetch).
    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);
    #[async_trait]
    impl aauth_tokens::IssuerKeyResolver for Recording {
        async fn resolve(
            &self,
            req: &aauth_tokens::KeyRequest<'_>,
        ) -> Result<aauth_keys::PublicKey, aauth_tokens::ResolveError> {
            self.0.lock().unwrap().push(req.iss.well_known(req.dwk));
            Ok(provider_key().public_key().clone())
        }
    }
    let keys = Arc::new(Recording::default());
    let resolver = SchemeResolver::new().scheme(
        "jwks_uri",
        Arc::new(aauth_signing::IssuerJwksUriResolver::new(keys.clone())),
    );
    let v = Verifier::new(policy().accept_schemes(&["jwks_uri"]), Arc::new(resolver));
    let request = |dwk: &str| {
        let scheme = Scheme::JwksUri {
            id: "https://ps.example".into(),
            dwk: dwk.into(),
            kid: "k1".into(),
        };
        let (mut parts, ()) = http::Request::get("https://api.example/data")
            .body(())
            .unwrap()
            .into_parts();
        sign(
            &mut parts,
            b"",
            &[SigningKey::new("sig", &provider_key(), &scheme)],
            &SignOptions::default(),
            NOW,
        )
        .unwrap();
        as_server(parts)
    };
    for dwk in [
        "openid-configuration",
        "oauth-authorization-server",
        "aauth-person.json/../../admin",
        "aauth-person.jsonx",
        "AAUTH-PERSON.JSON",
        "",
    ] {
        let e = block(v.verify(&request(dwk), b"", NOW)).unwrap_err();
        assert!(
            matches!(
                &e,
                VerifyError::BadKeyMember {
                    label,
                    reason: aauth_headers::MemberError::ParameterValue { name: "dwk", .. },
                    ..
                } if label == "sig"
            ),
            "{dwk:?}: {e:?}"
        );
        assert_eq!(e.code(), Some(ErrorCode::InvalidKey), "{dwk:?}");
        assert_eq!(
            e.response_headers(&policy())[0].1,
            "error=invalid_key",
            "{dwk:?}"
        );
    }
    assert!(keys.0.lock().unwrap().is_empty(), "a lookup happened");
    for dwk in aauth_signing::AAUTH_DOCUMENTS {
        block(v.verify(&request(dwk), b"", NOW)).unwrap();
    }
    assert_eq!(
        keys.0.lock().unwrap().as_slice(),
        [
            "https://ps.example/.well-known/aauth-agent.json",
            "https://ps.example/.well-known/aauth-person.json",
            "https://ps.example/.well-known/aauth-access.json",
            "https://ps.example/.well-known/aauth-resource.json",
        ]
    );
}
