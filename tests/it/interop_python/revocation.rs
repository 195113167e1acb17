//! Revocation requests both ways: our Person Server's notice to the peer's endpoint, the
//! peer's signed request to ours.

use super::metadata::our_documents;
use super::*;

/// The network our Person Server's revocation notifier sees: the resource's metadata, and
/// a revocation endpoint that keeps what it is sent.
#[derive(Debug, Default)]
struct Capture {
    posted: Mutex<Vec<http::Request<bytes::Bytes>>>,
}

#[async_trait::async_trait]
impl aauth_metadata::Transport for Capture {
    async fn send(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, aauth_metadata::TransportError> {
        if req.method() == http::Method::GET {
            assert_eq!(
                req.uri(),
                "https://resource.example/.well-known/aauth-resource.json"
            );
            let doc = our_documents()[3].2.clone();
            return Ok(http::Response::new(bytes::Bytes::from(doc)));
        }
        self.posted.lock().unwrap().push(req);
        Ok(http::Response::new(bytes::Bytes::new()))
    }
}

#[test]
fn python_records_a_revocation_our_person_server_sends() {
    if !peer_available() {
        return;
    }
    let ps = ps();
    let capture = Arc::new(Capture::default());
    let notifier = HttpRevocationNotifier::new(
        id(PS),
        Arc::new(ps.key),
        ps.kid,
        capture.clone(),
        Arc::new(SystemClock),
    );
    let exp = now().as_secs() + 600;
    block(notifier.notify(&id(RESOURCE), "auth-jti-1", exp)).unwrap();
    let req = capture
        .posted
        .lock()
        .unwrap()
        .pop()
        .expect("a revocation was posted");
    assert_eq!(req.uri(), "https://resource.example/revoke");
    let body = String::from_utf8(req.body().to_vec()).unwrap();
    eprintln!("our Person Server's revocation body: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"jti": "auth-jti-1", "exp": exp})
    );
    let headers = headers_of(&req.into_parts().0);
    let mut adapted = headers.clone();
    let sig = headers["signature"].as_str().unwrap();
    adapted.insert("signature".into(), to_peer_encoding(sig).into());
    let request = |name: &str, headers: &serde_json::Map<String, Value>| {
        json!({
            "name": name, "method": "POST", "url": "https://resource.example/revoke",
            "headers": headers, "body": body,
        })
    };
    let out = run_peer(
        "revocation-receive",
        &json!({
            "issuers": issuers_for_peer(), "resource": RESOURCE, "allowed_issuers": [PS],
            "requests": [request("as sent", &headers), request("in the peer's encoding", &adapted)],
        }),
    );
    let [raw, ok] = [&out["results"][0], &out["results"][1]];
    // As sent, the peer cannot read our RFC 8941 signature (departure 2).
    assert_eq!(raw["status"], 401, "{raw}");
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["revoked"], json!([[PS, "auth-jti-1"]]), "{ok}");
    assert!(
        out["fetched"]
            .as_array()
            .unwrap()
            .contains(&json!([PS, "aauth-person.json", "ps-1"])),
        "{}",
        out["fetched"]
    );
}

/// Our resource's revocation endpoint, trusting the Person Server, and its list.
fn our_revocation_endpoint() -> (RevocationEndpoint, Arc<MemoryRevocationList>) {
    let list = Arc::new(MemoryRevocationList::new(60, 100));
    let resolver = IssuerJwksUriResolver::new(Arc::new(our_issuer_keys()));
    let endpoint = RevocationEndpoint::new(
        &id(RESOURCE),
        Arc::new(resolver),
        [&id(PS)],
        Arc::clone(&list) as Arc<dyn aauth_resource::RevocationStore>,
    );
    (endpoint, list)
}

#[test]
fn we_record_a_revocation_python_signs() {
    if !peer_available() {
        return;
    }
    let ps = ps();
    let exp = now().as_secs() + 600;
    let out = run_peer(
        "revocation-sign",
        &json!({ "requests": [{
            "name": "revoke", "endpoint": "https://resource.example/revoke",
            "jti": "auth-jti-2", "exp": exp, "private_jwk": private_jwk(&ps.key),
            "issuer": PS, "kid": ps.kid, "dwk": ps.dwk,
        }]}),
    );
    let signed = &out["requests"][0];
    assert_eq!(signed["ok"], true, "{signed}");
    let body = signed["body"].as_str().unwrap();
    eprintln!("aauth {AAUTH_VERSION}'s revocation body: {body}");
    // The same members as ours (in another order: JSON members are unordered).
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"jti": "auth-jti-2", "exp": exp})
    );
    let headers = signed["headers"].as_object().unwrap();
    assert!(
        headers["signature-input"]
            .as_str()
            .unwrap()
            .contains(r#""content-digest" "content-type""#),
        "the body is covered: {headers:?}"
    );
    let now = now();
    let handle = |headers: &serde_json::Map<String, Value>| {
        // A fresh endpoint each time: the second request would otherwise be a replay.
        let (endpoint, list) = our_revocation_endpoint();
        let parts = server_parts("POST", "https://resource.example/revoke", headers);
        let resp = block(endpoint.handle(&parts, body.as_bytes(), now));
        let revoked = block(list.is_revoked(&id(PS), "auth-jti-2")).unwrap();
        (resp, revoked)
    };
    let mut adapted = headers.clone();
    let sig = headers["signature"].as_str().unwrap();
    adapted.insert(
        "signature".into(),
        from_peer_encoding(sig, Algorithm::Ed25519).into(),
    );
    let (resp, revoked) = handle(&adapted);
    assert_eq!(resp.status(), 200, "{resp:?}");
    assert!(revoked);
    // As the peer sends it, our endpoint cannot read a signature with '-' or '_', outside
    // RFC 8941's alphabet (departure 1). One without them (about one in fifteen) reads as
    // standard base64 short of its padding, which RFC 8941 §4.2.7 tells parsers to accept.
    let (raw, revoked) = handle(headers);
    let (_, value) = split_signature(sig);
    if value.contains(['-', '_']) {
        assert_eq!(raw.status(), 401, "{raw:?}");
        assert!(!revoked);
    } else {
        assert_eq!(raw.status(), 200, "{raw:?}");
    }
}
