//! Property tests for every parser: no panic on arbitrary input; generated values round-trip.

use aauth_headers::{
    AAuthCapabilities, AAuthRequirement, AcceptSignatureAlg, AcceptSignatureScheme,
    AuthorizationAAuth, Component, ComponentParam, ContentDigest, DigestAlgorithm, Hwk, Prefer,
    Requirement, Scheme, SessionToken, SigParam, SignatureErrorHeader, SignatureInput,
    SignatureKey, SignatureParams, Signatures,
};
use proptest::prelude::*;

fn sf_string() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn key() -> impl Strategy<Value = String> {
    "[a-z*][a-z0-9_.*-]{0,10}"
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,15}",
        Just("@method".to_owned()),
        Just("@authority".to_owned()),
        Just("@path".to_owned()),
        Just("@query".to_owned()),
    ]
}

fn component() -> impl Strategy<Value = Component> {
    (
        field_name(),
        proptest::option::of(sf_string()),
        any::<bool>(),
    )
        .prop_map(|(name, key, sf)| {
            let mut c = Component::new(name);
            if let Some(k) = key {
                c.params.push(ComponentParam::Key(k));
            }
            if sf {
                c.params.push(ComponentParam::Sf);
            }
            c
        })
}

fn params() -> impl Strategy<Value = SignatureParams> {
    (
        proptest::collection::vec(component(), 0..6),
        0i64..=999_999_999_999,
        proptest::option::of(sf_string()),
        proptest::option::of(0i64..=999_999_999_999),
    )
        .prop_map(|(mut comps, created, keyid, expires)| {
            comps.dedup();
            let mut seen: Vec<Component> = Vec::new();
            comps.retain(|c| {
                if seen.contains(c) {
                    false
                } else {
                    seen.push(c.clone());
                    true
                }
            });
            let mut p = SignatureParams::new(comps, created);
            if let Some(k) = keyid {
                p.params.push(SigParam::KeyId(k));
            }
            if let Some(e) = expires {
                p.params.push(SigParam::Expires(e));
            }
            p
        })
}

fn scheme() -> impl Strategy<Value = Scheme> {
    let s = sf_string;
    prop_oneof![
        (s(), any::<bool>()).prop_map(|(jwt, cache)| Scheme::Jwt { jwt, cache }),
        (s(), any::<bool>()).prop_map(|(jwt, cache)| Scheme::JktJwt { jwt, cache }),
        (s(), s(), s()).prop_map(|(id, dwk, kid)| Scheme::JwksUri { id, dwk, kid }),
        (s(), s()).prop_map(|(url, kid)| Scheme::Jwks { url, kid }),
        s().prop_map(|jwt| Scheme::SelfJwt { jwt }),
        (s(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(x5u, x5t)| Scheme::X509 { x5u, x5t }),
        s().prop_map(|cid| Scheme::Cached { cid }),
        (
            proptest::option::of(s()),
            proptest::option::of(s()),
            proptest::option::of(s())
        )
            .prop_map(|(kty, x, alg)| {
                let mut h = Hwk::default();
                h.kty = kty;
                h.x = x;
                h.alg = alg;
                Scheme::Hwk(h)
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_parser_panics(s in "\\PC{0,300}") {
        let _ = SignatureInput::parse(&s);
        let _ = Signatures::parse(&s);
        let _ = SignatureKey::parse(&s);
        let _ = SignatureErrorHeader::parse(&s);
        let _ = AcceptSignatureScheme::parse(&s);
        let _ = AcceptSignatureAlg::parse(&s);
        let _ = AAuthRequirement::parse(&s);
        let _ = AAuthCapabilities::parse(&s);
        let _ = SessionToken::parse_aauth_access(&s);
        let _ = AuthorizationAAuth::parse(&s);
        let _ = ContentDigest::parse(&s);
        let _ = Prefer::parse(&s);
    }

    #[test]
    fn no_parser_panics_on_sf_shaped_input(s in "[a-z0-9=;,()\" :*@.?-]{0,200}") {
        let _ = SignatureInput::parse(&s);
        let _ = SignatureKey::parse(&s);
        let _ = AAuthRequirement::parse(&s);
        let _ = ContentDigest::parse(&s);
    }

    #[test]
    fn signature_input_round_trips(labelled in proptest::collection::btree_map(key(), params(), 1..4)) {
        let v = SignatureInput::serialize(labelled.iter().map(|(l, p)| (l.as_str(), p))).unwrap();
        let parsed = SignatureInput::parse(&v).unwrap();
        for (l, p) in &labelled {
            prop_assert_eq!(parsed.get(l).unwrap().params.as_ref().unwrap(), p);
        }
    }

    #[test]
    fn signature_key_round_trips(labelled in proptest::collection::btree_map(key(), scheme(), 1..4)) {
        let v = SignatureKey::serialize(labelled.iter().map(|(l, s)| (l.as_str(), s))).unwrap();
        let parsed = SignatureKey::parse(&v).unwrap();
        for (l, s) in &labelled {
            prop_assert_eq!(parsed.get(l).unwrap().scheme.as_ref().unwrap(), s);
        }
    }

    #[test]
    fn signatures_and_digests_round_trip(labelled in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 0..96), 1..4)) {
        let v = Signatures::serialize(labelled.iter().map(|(l, b)| (l.as_str(), b.as_slice()))).unwrap();
        let parsed = Signatures::parse(&v).unwrap();
        for (l, b) in &labelled {
            prop_assert_eq!(parsed.get(l).unwrap().unwrap(), b.as_slice());
        }
        let d = ContentDigest(labelled.values().take(1).map(|b| (DigestAlgorithm::Sha256, b.clone())).collect());
        prop_assert_eq!(ContentDigest::parse(&d.serialize().unwrap()).unwrap(), d);
    }

    #[test]
    fn requirement_and_error_round_trip(token in sf_string(), url in sf_string(), code in sf_string(), req in proptest::collection::vec(sf_string(), 0..5)) {
        for r in [Requirement::AuthToken { resource_token: token }, Requirement::Interaction { url, code }] {
            let h = AAuthRequirement::new(r);
            prop_assert_eq!(AAuthRequirement::parse(&h.serialize().unwrap()).unwrap(), h);
        }
        let e = SignatureErrorHeader::invalid_input(req);
        prop_assert_eq!(SignatureErrorHeader::parse(&e.serialize().unwrap()).unwrap(), e);
    }

    #[test]
    fn token68_round_trips(t in "[A-Za-z0-9._~+/-]{1,40}=?=?") {
        let a = AuthorizationAAuth(SessionToken::new(t.clone()).unwrap());
        prop_assert_eq!(AuthorizationAAuth::parse(&a.serialize()).unwrap(), a);
        let parsed = SessionToken::parse_aauth_access(&t).unwrap();
        prop_assert_eq!(parsed.secret(), t.as_str());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The `label=jwt;jwt="…"` fast path of `SignatureKey::parse` gives what the general
    /// structured-field parser gives, on inputs near that form (other labels, characters,
    /// quotes, parameters, spaces) and on the exact form.
    #[test]
    fn signature_key_fast_path_agrees_with_the_general_parser(
        label in "[a-z*][a-z0-9_.*-]{0,6}|[A-Z0-9][a-z]{0,3}|",
        scheme in "jwt|JWT|jwt |hwk|jwt;cache|jwt;jwt",
        jwt in "[A-Za-z0-9_.-]{0,40}|[A-Za-z0-9_.\\\\\" ;=-]{0,12}",
        tail in "|\"|;cache|;cache=?1|, a=b| |\\t",
    ) {
        for v in [
            format!("{label}={scheme};jwt=\"{jwt}\"{tail}"),
            format!("{label}=jwt;jwt=\"{jwt}\""),
            format!(" {label}=jwt;jwt=\"{jwt}\""),
        ] {
            let fast = SignatureKey::parse(&v);
            let general = SignatureKey::parse_general(&v);
            prop_assert_eq!(fast.is_ok(), general.is_ok(), "{}", v);
            if let (Ok(a), Ok(b)) = (fast, general) {
                prop_assert_eq!(a, b, "{}", v);
            }
        }
    }
}
