//! Metadata documents both ways: the four kinds of draft -11.

use super::*;

/// The four documents, as our servers publish them, with every member the peer knows.
pub(super) fn our_documents() -> [(&'static str, &'static str, String); 4] {
    let mut agent =
        AgentProviderMetadata::new(id(PROVIDER), url("https://agent.example/jwks.json"));
    agent.common.name = Some("Trip Assistant".into());
    agent.common.description = Some("Plans *trips*".into());
    agent.callback_endpoint = Some(url("https://agent.example/callback"));
    agent.localhost_callback_allowed = true;
    agent.common.tos_uri = Some(url("https://agent.example/tos"));

    let mut person = PersonServerMetadata::new(
        id(PS),
        url("https://ps.example/jwks.json"),
        url("https://ps.example/token"),
        url("https://ps.example/person"),
    );
    person.mission_endpoint = Some(url("https://ps.example/mission"));
    person.interaction_endpoint = Some(url("https://ps.example/interact"));
    person.revocation_endpoint = Some(url("https://ps.example/revoke"));
    person.scopes_supported = Some(vec!["openid".into(), "email".into()]);
    person.common.accepts(&Algorithm::ALL);

    let mut access = AccessServerMetadata::new(
        id(AS),
        url("https://as.example/jwks.json"),
        url("https://as.example/token"),
    );
    access.revocation_endpoint = Some(url("https://as.example/revoke"));
    access.common.documentation_uri = Some(url("https://as.example/docs"));

    let mut res = ResourceMetadata::new(id(RESOURCE));
    res.common.jwks_uri = Some(url("https://resource.example/jwks.json"));
    res.common.name = Some("Trips API".into());
    res.access_mode = Some(AccessMode::AuthToken);
    res.authorization_endpoint = Some(url("https://resource.example/authorize"));
    res.scope_descriptions = Some([("data.read".to_owned(), "Read trips".to_owned())].into());
    res.signature_window = 30;
    res.additional_signature_components = vec!["content-digest".into(), "content-type".into()];
    res.revocation_endpoint = Some(url("https://resource.example/revoke"));
    [
        ("agent", PROVIDER, agent.to_json()),
        ("person", PS, person.to_json()),
        ("access", AS, access.to_json()),
        ("resource", RESOURCE, res.to_json()),
    ]
}

#[test]
fn python_accepts_metadata_we_publish() {
    if !peer_available() {
        return;
    }
    let mut documents = Vec::new();
    for (kind, issuer, doc) in our_documents() {
        documents.push(json!({"name": kind, "kind": kind, "issuer": issuer, "json": doc}));
        documents.push(json!({
            "name": format!("{kind} for another issuer"), "kind": kind,
            "issuer": "https://other.example", "json": doc,
        }));
    }
    let out = run_peer("metadata-check", &json!({ "documents": documents }));
    let results = out["results"].as_array().unwrap();
    for ((kind, _, doc), pair) in our_documents().iter().zip(results.chunks(2)) {
        assert_eq!(pair[0]["ok"], true, "{kind}: {}", pair[0]);
        assert_eq!(
            pair[0]["document"],
            serde_json::from_str::<Value>(doc).unwrap(),
            "{kind}"
        );
        assert_eq!(pair[1]["ok"], false, "{kind}: {}", pair[1]);
        assert_eq!(pair[1]["error_code"], "issuer_mismatch", "{kind}");
    }
}

#[test]
fn we_parse_metadata_python_generates() {
    if !peer_available() {
        return;
    }
    let documents = json!([
        {"name": "agent", "kind": "agent", "kwargs": {
            "agent_id": PROVIDER, "jwks_uri": "https://agent.example/jwks.json",
            "client_name": "Trip Assistant", "callback_endpoint": "https://agent.example/callback",
            "localhost_callback_allowed": true, "tos_uri": "https://agent.example/tos",
            "description": "Plans *trips*"}},
        {"name": "person", "kind": "person", "kwargs": {
            "person_server": PS, "auth_token_endpoint": "https://ps.example/token",
            "jwks_uri": "https://ps.example/jwks.json",
            "person_token_endpoint": "https://ps.example/person",
            "mission_endpoint": "https://ps.example/mission",
            "interaction_endpoint": "https://ps.example/interact",
            "revocation_endpoint": "https://ps.example/revoke",
            "scopes_supported": ["openid", "email"],
            "accept_signature_algs": ["Ed25519", "ES256"]}},
        {"name": "access", "kind": "access", "kwargs": {
            "auth_id": AS, "jwks_uri": "https://as.example/jwks.json",
            "auth_token_endpoint": "https://as.example/token",
            "revocation_endpoint": "https://as.example/revoke",
            "documentation_uri": "https://as.example/docs"}},
        {"name": "resource", "kind": "resource", "kwargs": {
            "resource_id": RESOURCE, "jwks_uri": "https://resource.example/jwks.json",
            "client_name": "Trips API", "access_mode": "auth-token",
            "authorization_endpoint": "https://resource.example/authorize",
            "scope_descriptions": {"data.read": "Read trips"},
            "additional_signature_components": ["content-digest", "content-type"],
            "signature_window": 30, "revocation_endpoint": "https://resource.example/revoke"}},
    ]);
    let out = run_peer("metadata-make", &json!({ "documents": documents }));
    let doc = |i: usize| {
        let d = &out["documents"][i];
        assert_eq!(d["ok"], true, "the peer could not generate: {d}");
        d["json"].as_str().unwrap().to_owned()
    };
    let (a, p, x, r) = (doc(0), doc(1), doc(2), doc(3));
    let agent = AgentProviderMetadata::parse_for(a.as_bytes(), &id(PROVIDER)).unwrap();
    assert_eq!(agent.common.name.as_deref(), Some("Trip Assistant"));
    assert!(agent.localhost_callback_allowed);
    assert_eq!(
        agent.callback_endpoint.as_ref().map(|u| u.as_str()),
        Some("https://agent.example/callback")
    );
    let person = PersonServerMetadata::parse_for(p.as_bytes(), &id(PS)).unwrap();
    assert_eq!(
        person.person_token_endpoint.as_str(),
        "https://ps.example/person"
    );
    assert_eq!(
        person.common.accept_signature_algs,
        Some(vec!["Ed25519".to_owned(), "ES256".to_owned()])
    );
    let access = AccessServerMetadata::parse_for(x.as_bytes(), &id(AS)).unwrap();
    assert_eq!(
        access.auth_token_endpoint.as_str(),
        "https://as.example/token"
    );
    let res = ResourceMetadata::parse_for(r.as_bytes(), &id(RESOURCE)).unwrap();
    assert_eq!(res.access_mode, Some(AccessMode::AuthToken));
    assert_eq!(res.signature_window, 30);
    assert_eq!(
        res.additional_signature_components,
        ["content-digest", "content-type"]
    );
    // Member for member, the peer's documents are the ones we publish for the same server.
    for ((kind, _, ours), theirs) in our_documents().iter().zip([&a, &p, &x, &r]) {
        assert_eq!(
            serde_json::from_str::<Value>(theirs).unwrap(),
            serde_json::from_str::<Value>(ours).unwrap(),
            "{kind}"
        );
    }
    // And our parser holds it to its issuer.
    let err =
        PersonServerMetadata::parse_for(p.as_bytes(), &id("https://other.example")).unwrap_err();
    assert_eq!(err.code(), "issuer_mismatch");
}
