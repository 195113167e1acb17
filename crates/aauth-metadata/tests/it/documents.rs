use aauth_metadata::{
    AccessMode, AccessServerMetadata, AgentProviderMetadata, HttpsUrl, KeyDiscovery,
    MAX_DOCUMENT_LEN, MetadataDocument, MetadataError, PersonServerMetadata, ResourceMetadata,
};
use aauth_test_support::id;
use aauth_tokens::ServerId;
use proptest::prelude::*;

/// The Person Server example of draft -11 §Metadata Documents.
const PS_EXAMPLE: &str = r#"{"issuer":"https://ps.example","auth_token_endpoint":"https://ps.example/token",
 "person_token_endpoint":"https://ps.example/person","mission_endpoint":"https://ps.example/mission",
 "permission_endpoint":"https://ps.example/permission","audit_endpoint":"https://ps.example/audit",
 "interaction_endpoint":"https://ps.example/interaction","mission_control_endpoint":"https://ps.example/mission-control",
 "jwks_uri":"https://ps.example/.well-known/jwks.json"}"#;

#[test]
fn the_drafts_person_server_example_parses_and_round_trips() {
    let ps =
        PersonServerMetadata::parse_for(PS_EXAMPLE.as_bytes(), &id("https://ps.example")).unwrap();
    assert_eq!(ps.auth_token_endpoint.as_str(), "https://ps.example/token");
    assert_eq!(
        ps.person_token_endpoint.as_str(),
        "https://ps.example/person"
    );
    assert_eq!(
        ps.mission_control_endpoint.as_ref().map(HttpsUrl::as_str),
        Some("https://ps.example/mission-control")
    );
    assert_eq!(ps.revocation_endpoint, None);
    let again = PersonServerMetadata::parse(ps.to_json().as_bytes()).unwrap();
    assert_eq!(again, ps);
    assert_eq!(PersonServerMetadata::DWK, "aauth-person.json");
}

#[test]
fn every_document_round_trips_through_its_json() {
    let mut ap = AgentProviderMetadata::new(
        id("https://agent.example"),
        HttpsUrl::parse("https://agent.example/jwks.json").unwrap(),
    );
    ap.callback_endpoint = Some(HttpsUrl::endpoint("https://agent.example/callback").unwrap());
    ap.localhost_callback_allowed = true;
    ap.common.name = Some("Agent".to_owned());
    assert_eq!(
        AgentProviderMetadata::parse(ap.to_json().as_bytes()).unwrap(),
        ap
    );

    let mut asm = AccessServerMetadata::new(
        id("https://as.example"),
        HttpsUrl::parse("https://as.example/jwks.json").unwrap(),
        HttpsUrl::endpoint("https://as.example/token").unwrap(),
    );
    asm.revocation_endpoint = Some(HttpsUrl::endpoint("https://as.example/revoke").unwrap());
    assert_eq!(
        AccessServerMetadata::parse(asm.to_json().as_bytes()).unwrap(),
        asm
    );

    let mut rs = ResourceMetadata::new(id("https://resource.example"));
    rs.access_mode = Some(AccessMode::AuthToken);
    rs.signature_window = 30;
    rs.additional_signature_components = vec!["content-type".to_owned(), "@query".to_owned()];
    rs.scope_descriptions = Some([("read".to_owned(), "Read *documents*".to_owned())].into());
    assert_eq!(
        ResourceMetadata::parse(rs.to_json().as_bytes()).unwrap(),
        rs
    );
    assert!(rs.to_json().contains(r#""access_mode":"auth-token""#));
}

#[test]
fn issuer_is_checked_first_and_byte_for_byte() {
    let expected = id("https://ps.example");
    // Missing issuer, even in an otherwise broken document.
    let err = PersonServerMetadata::parse_for(br#"{"jwks_uri":"x"}"#, &expected).unwrap_err();
    assert_eq!(err, MetadataError::IssuerMissing);
    assert_eq!(err.code(), "issuer_missing");
    for found in [
        "https://ps.example/",
        "https://PS.example",
        "https://ps.example:443",
        "http://ps.example",
        "https://evil.example",
        "https://ps.example.evil.example",
    ] {
        let doc = PS_EXAMPLE.replacen("https://ps.example\"", &format!("{found}\""), 1);
        let err = PersonServerMetadata::parse_for(doc.as_bytes(), &expected).unwrap_err();
        assert_eq!(
            err,
            MetadataError::IssuerMismatch {
                expected: "https://ps.example".to_owned(),
                found: found.to_owned()
            },
            "{found}"
        );
        assert_eq!(err.code(), "issuer_mismatch");
    }
}

#[test]
fn required_members_are_enforced_per_document() {
    let cases: &[(&str, &str, &str)] = &[
        ("ap", r#"{"issuer":"https://agent.example"}"#, "jwks_uri"),
        (
            "ps",
            r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/j","auth_token_endpoint":"https://ps.example/t"}"#,
            "person_token_endpoint",
        ),
        (
            "ps",
            r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/j","person_token_endpoint":"https://ps.example/p"}"#,
            "auth_token_endpoint",
        ),
        (
            "as",
            r#"{"issuer":"https://as.example","jwks_uri":"https://as.example/j"}"#,
            "auth_token_endpoint",
        ),
    ];
    for &(kind, json, member) in cases {
        let err = match kind {
            "ap" => AgentProviderMetadata::parse(json.as_bytes()).unwrap_err(),
            "ps" => PersonServerMetadata::parse(json.as_bytes()).unwrap_err(),
            _ => AccessServerMetadata::parse(json.as_bytes()).unwrap_err(),
        };
        assert_eq!(err, MetadataError::Missing { member }, "{json}");
    }
    // A resource need not publish keys.
    assert!(ResourceMetadata::parse(br#"{"issuer":"https://resource.example"}"#).is_ok());
}

#[test]
fn bad_members_are_refused_with_their_name() {
    // What the flow depends on is strict: the document is refused.
    let cases: &[(&str, &str)] = &[
        (
            r#"{"issuer":"https://resource.example","jwks_uri":"http://resource.example/jwks.json"}"#,
            "jwks_uri",
        ),
        (r#"{"issuer":"https://resource.example/"}"#, "issuer"),
    ];
    for &(json, member) in cases {
        match ResourceMetadata::parse(json.as_bytes()) {
            Err(MetadataError::Invalid { member: m, .. }) => assert_eq!(m, member, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
    let ps = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/j","person_token_endpoint":"https://ps.example/p","auth_token_endpoint":"http://ps.example/a"}"#;
    assert!(matches!(
        PersonServerMetadata::parse(ps.as_bytes()),
        Err(MetadataError::Invalid {
            member: "auth_token_endpoint",
            ..
        })
    ));
}

#[test]
fn a_bad_optional_member_is_left_out_and_reported() {
    // Draft -11 leaves these optional: one odd value must not make the server (and its
    // keys) undiscoverable. Each is dropped, named in `ignored`, and the rest stands.
    let base =
        r#""issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json""#;
    let cases: &[(&str, &str)] = &[
        (
            r#""authorization_endpoint":"https://resource.example/authorize?x=1""#,
            "authorization_endpoint",
        ),
        (
            r#""authorization_endpoint":"http://resource.example/authorize""#,
            "authorization_endpoint",
        ),
        (
            r#""revocation_endpoint":"https://resource.example/r#f""#,
            "revocation_endpoint",
        ),
        (r#""logo_uri":"javascript:alert(1)""#, "logo_uri"),
        (r#""logo_uri":"https://[2001:db8::1]/logo.png""#, "logo_uri"),
        (r#""signature_window":0"#, "signature_window"),
        (r#""signature_window":86400"#, "signature_window"),
        (r#""signature_window":"60""#, "signature_window"),
        (r#""signature_window":-1"#, "signature_window"),
        (r#""signature_window":1.5"#, "signature_window"),
        (r#""access_mode":7"#, "access_mode"),
        (
            r#""additional_signature_components":["Content-Type"]"#,
            "additional_signature_components",
        ),
        (r#""accept_signature_algs":[]"#, "accept_signature_algs"),
        (r#""scope_descriptions":["read"]"#, "scope_descriptions"),
    ];
    for &(member_json, member) in cases {
        let json = format!("{{{base},{member_json}}}");
        let doc =
            ResourceMetadata::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
        let ignored: Vec<&str> = doc
            .common
            .ignored
            .iter()
            .map(|i| i.member.as_str())
            .collect();
        assert_eq!(ignored, [member], "{json}");
        assert_eq!(doc.signature_window, 60, "{json}");
        assert!(doc.authorization_endpoint.is_none() && doc.common.logo_uri.is_none());
        assert!(
            doc.common.jwks_uri.is_some(),
            "the keys are still discoverable"
        );
        // And key discovery reads the same document.
        assert!(
            KeyDiscovery::parse_for(
                "aauth-resource.json",
                json.as_bytes(),
                &ServerId::parse("https://resource.example").unwrap()
            )
            .is_ok(),
            "{json}"
        );
    }
    // An agent provider's boolean of the wrong type.
    let ap = AgentProviderMetadata::parse(
        br#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/j","localhost_callback_allowed":"true"}"#,
    )
    .unwrap();
    assert!(!ap.localhost_callback_allowed);
    assert_eq!(ap.common.ignored[0].member, "localhost_callback_allowed");
}

#[test]
fn json_shape_errors_are_malformed() {
    for json in [
        // A duplicated member, known to this version (optional ones too).
        r#"{"issuer":"https://resource.example","issuer":"https://evil.example"}"#,
        r#"{"issuer":"https://resource.example","logo_uri":"https://a.example/l","logo_uri":"https://b.example/l"}"#,
        // A strict member of the wrong JSON type.
        r#"{"issuer":["https://resource.example"]}"#,
        r#"["https://resource.example"]"#,
        "",
        "{",
    ] {
        let err = ResourceMetadata::parse(json.as_bytes()).expect_err(json);
        assert!(
            matches!(err, MetadataError::Malformed { .. }),
            "{json}: {err:?}"
        );
        assert_eq!(err.code(), "invalid_metadata");
    }
    let big = format!(
        r#"{{"issuer":"https://resource.example","description":"{}"}}"#,
        "x".repeat(MAX_DOCUMENT_LEN)
    );
    assert_eq!(
        ResourceMetadata::parse(big.as_bytes()).unwrap_err(),
        MetadataError::TooLarge {
            limit: MAX_DOCUMENT_LEN
        }
    );
}

#[test]
fn unknown_members_and_removed_ones_are_ignored() {
    let json = r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/j",
        "login_endpoint":"https://agent.example/login","future_member":{"a":[1,2]},"x":"x","x":"y"}"#;
    let ap = AgentProviderMetadata::parse(json.as_bytes()).unwrap();
    assert!(!ap.to_json().contains("login_endpoint"));
}

#[test]
fn access_modes_known_and_unknown() {
    for (v, m) in [
        ("agent-token", Some(AccessMode::AgentToken)),
        ("person-token", Some(AccessMode::PersonToken)),
        ("session-token", Some(AccessMode::SessionToken)),
        ("auth-token", Some(AccessMode::AuthToken)),
        ("aauth-access-token", None),
        ("per-call", None),
        ("", None),
    ] {
        let json = format!(r#"{{"issuer":"https://resource.example","access_mode":"{v}"}}"#);
        assert_eq!(
            ResourceMetadata::parse(json.as_bytes())
                .unwrap()
                .access_mode,
            m,
            "{v}"
        );
    }
}

#[test]
fn key_discovery_reads_any_document() {
    let iss = id("https://as.example");
    let d = KeyDiscovery::parse_for(
        "custom-signer.json",
        br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/k"}"#,
        &iss,
    )
    .unwrap();
    assert_eq!(d.jwks_uri.as_str(), "https://as.example/k");
    // A known document is fully validated: the AS document needs auth_token_endpoint.
    let err = KeyDiscovery::parse_for(
        "aauth-access.json",
        br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/k"}"#,
        &iss,
    )
    .unwrap_err();
    assert_eq!(
        err,
        MetadataError::Missing {
            member: "auth_token_endpoint"
        }
    );
    let err =
        KeyDiscovery::parse_for("x.json", br#"{"issuer":"https://as.example"}"#, &iss).unwrap_err();
    assert_eq!(err, MetadataError::Missing { member: "jwks_uri" });
}

proptest! {
    /// The `aauth-resource` link readers: any input, no panic; whatever they name is a
    /// server identifier whose metadata URL is the one form a link may take.
    #[test]
    fn resource_links_never_panic_and_name_only_identifiers(
        text in "(<link |<|>|rel=|\"|'|aauth-resource|https://a\\.example/\\.well-known/aauth-resource\\.json| |,|;|[a-zA-Z=:/.\\-]){0,40}"
    ) {
        for found in [aauth_metadata::link::from_link_header(&text), aauth_metadata::link::from_html(&text)]
            .into_iter()
            .flatten()
        {
            let target = aauth_metadata::link::target_of(&found).unwrap();
            prop_assert_eq!(
                target.as_str(),
                format!("{}/.well-known/aauth-resource.json", found.as_str())
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let iss = id("https://ps.example");
        let _ = PersonServerMetadata::parse_for(&bytes, &iss);
        let _ = AgentProviderMetadata::parse(&bytes);
        let _ = AccessServerMetadata::parse(&bytes);
        let _ = ResourceMetadata::parse(&bytes);
        let _ = KeyDiscovery::parse_for("x.json", &bytes, &iss);
    }

    #[test]
    fn mutated_examples_never_panic(at in 0usize..PS_EXAMPLE.len(), byte in any::<u8>()) {
        let mut doc = PS_EXAMPLE.as_bytes().to_vec();
        doc[at] = byte;
        let _ = PersonServerMetadata::parse_for(&doc, &id("https://ps.example"));
    }

    #[test]
    fn generated_resource_documents_round_trip(
        host in "[a-z]{1,10}\\.example",
        window in 1u64..=3600,
        mode in proptest::option::of(0usize..4),
        components in proptest::collection::vec("@?[a-z][a-z0-9-]{0,12}", 0..4),
        name in proptest::option::of("\\PC{0,20}"),
    ) {
        let mut rs = ResourceMetadata::new(id(&format!("https://{host}")));
        rs.signature_window = window;
        rs.access_mode = mode.map(|i| [AccessMode::AgentToken, AccessMode::PersonToken,
            AccessMode::SessionToken, AccessMode::AuthToken][i]);
        rs.additional_signature_components = components;
        rs.common.name = name;
        rs.authorization_endpoint = Some(HttpsUrl::endpoint(&format!("https://{host}/authorize")).unwrap());
        let back = ResourceMetadata::parse_for(rs.to_json().as_bytes(), &rs.common.issuer).unwrap();
        prop_assert_eq!(back, rs);
    }
}

/// aauth-go's metadata vectors (MIT; `tests/data/README.md`): the agent provider and
/// resource documents parse for their issuer and serialize back to the same members. The
/// Person Server case predates -11 (`token_endpoint`, no `person_token_endpoint`) and is
/// refused for the member -11 requires.
#[test]
fn aauth_go_metadata_vectors() {
    let text = include_str!("../data/aauth-go-metadata.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let doc = case["document"].as_str().unwrap();
        let json = case["json"].to_string();
        let issuer = id(case["json"]["issuer"].as_str().unwrap());
        let back: serde_json::Value = match doc {
            "aauth-agent.json" => serde_json::from_str(
                &AgentProviderMetadata::parse_for(json.as_bytes(), &issuer)
                    .unwrap()
                    .to_json(),
            )
            .unwrap(),
            "aauth-resource.json" => {
                let rs = ResourceMetadata::parse_for(json.as_bytes(), &issuer).unwrap();
                assert_eq!(rs.access_mode, Some(AccessMode::AuthToken));
                serde_json::from_str(&rs.to_json()).unwrap()
            }
            "aauth-person.json" => {
                assert_eq!(
                    PersonServerMetadata::parse_for(json.as_bytes(), &issuer).unwrap_err(),
                    MetadataError::Missing {
                        member: "auth_token_endpoint"
                    }
                );
                continue;
            }
            other => panic!("unexpected document {other}"),
        };
        assert_eq!(back, case["json"], "{doc}");
    }
}

#[test]
fn published_documents_round_trip_through_discovery() {
    use aauth_metadata::{KeyDiscovery, PUBLISHED_CACHE_CONTROL, Published, ResourceMetadata};
    let issuer = ServerId::parse("https://resource.example").unwrap();
    let mut doc = ResourceMetadata::new(issuer.clone());
    doc.common.jwks_uri = Some(HttpsUrl::parse("https://resource.example/jwks.json").unwrap());
    doc.access_mode = Some(AccessMode::AuthToken);
    let key = aauth_keys::PrivateKey::ed25519_from_seed(&[4; 32]);
    let mut jwk = key.public_key().to_jwk();
    jwk.kid = Some("rs-1".to_owned());
    let published = Published::new(&doc).jwks("/jwks.json", &aauth_keys::JwkSet::from_jwks(&[jwk]));
    assert_eq!(
        published.paths().collect::<Vec<_>>(),
        ["/.well-known/aauth-resource.json", "/jwks.json"]
    );

    let get = published
        .respond(&http::Method::GET, "/.well-known/aauth-resource.json")
        .unwrap();
    assert_eq!(get.headers()["content-type"], "application/json");
    assert_eq!(get.headers()["cache-control"], PUBLISHED_CACHE_CONTROL);
    // What is served is what a verifier's discovery accepts for that issuer.
    let parsed = ResourceMetadata::parse_for(get.body(), &issuer).unwrap();
    assert_eq!(parsed, doc);
    let d = KeyDiscovery::parse_for("aauth-resource.json", get.body(), &issuer).unwrap();
    assert_eq!(d.jwks_uri.as_str(), "https://resource.example/jwks.json");
    let jwks = published.respond(&http::Method::GET, "/jwks.json").unwrap();
    assert_eq!(
        aauth_keys::JwkSet::from_json(jwks.body()).unwrap().kids(),
        ["rs-1"]
    );

    let head = published
        .respond(&http::Method::HEAD, "/jwks.json")
        .unwrap();
    assert!(head.body().is_empty());
    assert_eq!(
        head.headers()["content-length"],
        jwks.body().len().to_string()
    );
    let post = published
        .respond(&http::Method::POST, "/jwks.json")
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert!(
        published
            .respond(&http::Method::GET, "/jwks.json/")
            .is_none()
    );
}
