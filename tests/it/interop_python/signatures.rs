//! Signatures both ways, and signature bases built on both sides.

use super::*;

#[test]
fn python_verifies_requests_we_sign() {
    if !peer_available() {
        return;
    }
    let now = now();
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for c in &cases() {
        let parts = we_sign(c, now);
        let mut headers = headers_of(&parts);
        let server = server_parts(c.method, c.url, &headers);
        let policy = our_verifier(c.url, c.role, &[TokenType::Agent])
            .policy()
            .clone();
        ours.push(our_base(
            &server,
            c.body.unwrap_or_default().as_bytes(),
            &policy,
        ));
        let sig = headers["signature"].as_str().unwrap().to_owned();
        headers.insert("signature".into(), to_peer_encoding(&sig).into());
        let request = json!({
            "name": c.name, "method": c.method, "url": c.url, "headers": headers, "body": c.body,
        });
        // A tampered copy: the peer must refuse it, or its "ok" means nothing.
        let mut tampered = request.clone();
        tampered["name"] = format!("{} (tampered)", c.name).into();
        tampered["url"] = format!("{}x", c.url.split('?').next().unwrap()).into();
        requests.extend([request, tampered]);
    }
    let out = run_peer(
        "verify",
        &json!({ "issuers": issuers_for_peer(), "cases": requests }),
    );
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), cases().len() * 2);
    for ((c, pair), base) in cases().iter().zip(results.chunks(2)).zip(&ours) {
        assert_eq!(
            pair[0]["ok"], true,
            "{}: the peer refused: {}",
            c.name, pair[0]
        );
        assert_eq!(
            pair[0]["base"].as_str(),
            Some(base.as_str()),
            "{}: signature bases differ",
            c.name
        );
        assert_eq!(
            pair[1]["ok"], false,
            "{} tampered must fail: {}",
            c.name, pair[1]
        );
    }
    // The peer looked the agent token's key up where -11 says: the provider's JWKS by
    // (iss, dwk, kid).
    assert!(
        out["fetched"].as_array().unwrap().contains(&json!([
            PROVIDER,
            "aauth-agent.json",
            "provider-1"
        ])),
        "{}",
        out["fetched"]
    );
}

#[test]
fn we_verify_requests_python_signs() {
    if !peer_available() {
        return;
    }
    let now = now();
    let p = provider();
    let requests: Vec<Value> = cases()
        .iter()
        .map(|c| {
            let mut headers = serde_json::Map::new();
            if let Some(ct) = c.content_type {
                headers.insert("Content-Type".into(), ct.into());
            }
            // The peer mints the agent token too: the request is the peer's, end to end.
            json!({
                "name": c.name, "method": c.method, "url": c.url, "headers": headers,
                "body": c.body, "role": c.role,
                "private_jwk": private_jwk(&agent_key(c.alg)),
                "agent_token": {
                    "private_jwk": private_jwk(&p.key), "kid": p.kid, "iss": PROVIDER,
                    "sub": AGENT, "ps": PS,
                },
            })
        })
        .collect();
    let out = run_peer("sign", &json!({ "cases": requests }));
    let signed = out["cases"].as_array().unwrap();
    assert_eq!(signed.len(), cases().len());
    for (c, s) in cases().iter().zip(signed) {
        assert_eq!(s["ok"], true, "{}: the peer could not sign: {s}", c.name);
        let mut headers = s["headers"].as_object().unwrap().clone();
        let sig = headers["signature"].as_str().unwrap().to_owned();
        headers.insert("signature".into(), from_peer_encoding(&sig, c.alg).into());
        let parts = server_parts(c.method, c.url, &headers);
        let body = c.body.unwrap_or_default().as_bytes();
        let verifier = our_verifier(c.url, c.role, &[TokenType::Agent]);
        assert_eq!(
            s["base"].as_str(),
            Some(our_base(&parts, body, verifier.policy()).as_str()),
            "{}: signature bases differ",
            c.name
        );
        let v = block(verifier.verify(&parts, body, now))
            .unwrap_or_else(|e| panic!("{}: {e} ({s})", c.name));
        assert_eq!(&v.key, agent_key(c.alg).public_key(), "{}", c.name);
        // Covered as -11 §11.3.3 says: the body toward the Person Server only.
        let input = headers["signature-input"].as_str().unwrap();
        assert_eq!(
            input.contains("\"content-digest\""),
            c.role == "ps",
            "{}: {input}",
            c.name
        );
        let mut moved = parts.clone();
        moved.uri = "/tampered".parse().unwrap();
        assert!(
            block(verifier.verify(&moved, body, now)).is_err(),
            "{}: a tampered request verified",
            c.name
        );
    }
}

#[test]
fn python_resource_accepts_a_request_under_our_auth_token() {
    if !peer_available() {
        return;
    }
    let now = now();
    let key = agent_key(Algorithm::Ed25519);
    let ps = ps();
    let auth = AuthTokenBuilder::new(
        AuthIssuer::PersonServer,
        id(PS),
        id(RESOURCE),
        id(PS),
        PERSON,
        key.public_key(),
    )
    .scope("data.read data.write")
    .sign(&ps.key, ps.kid, now, &mut OsRandom)
    .unwrap()
    .token;
    let url = "https://resource.example/data";
    let (mut parts, ()) = http::Request::get(url).body(()).unwrap().into_parts();
    let scheme = Scheme::jwt(auth);
    sign(
        &mut parts,
        b"",
        &[SigningKey::new("sig", &key, &scheme)],
        &SignOptions::default(),
        now,
    )
    .unwrap();
    let mut headers = headers_of(&parts);
    let sig = headers["signature"].as_str().unwrap().to_owned();
    headers.insert("signature".into(), to_peer_encoding(&sig).into());
    let resource = |trusted: &[&str]| {
        json!({
            "resource_id": RESOURCE, "authorities": ["resource.example"],
            "trusted": trusted, "require": "auth",
        })
    };
    let request = |name: &str, trusted: &[&str]| {
        json!({
            "name": name, "method": "GET", "url": url, "headers": headers, "body": null,
            "resource": resource(trusted),
        })
    };
    let out = run_peer(
        "verify",
        &json!({
            "issuers": issuers_for_peer(),
            "cases": [request("trusted", &[PS]), request("untrusted PS", &[AS])],
        }),
    );
    let [trusted, untrusted] = [&out["results"][0], &out["results"][1]];
    assert_eq!(trusted["ok"], true, "{trusted}");
    assert_eq!(trusted["token_type"], "aa-auth+jwt");
    assert_eq!(trusted["user_sub"], PERSON);
    assert_eq!(trusted["scopes"], json!(["data.read", "data.write"]));
    assert_eq!(untrusted["ok"], false, "{untrusted}");
}

// Signature bases, built on both sides for fixed messages.

/// A message with explicit components and `created`, for both sides' base builders.
struct BaseCase {
    name: &'static str,
    method: &'static str,
    url: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    components: &'static [&'static str],
}

const SIG_KEY: &str =
    r#"sig=jwt;jwt="eyJhbGciOiJFZDI1NTE5IiwidHlwIjoiYWEtYWdlbnQrand0In0.e30.c2ln""#;

fn base_cases() -> Vec<BaseCase> {
    const MINIMAL: &[&str] = &["@method", "@authority", "@path", "signature-key"];
    vec![
        BaseCase {
            name: "GET",
            method: "GET",
            url: "https://resource.example/api/documents",
            headers: &[],
            body: None,
            components: MINIMAL,
        },
        BaseCase {
            name: "POST with body coverage",
            method: "POST",
            url: "https://ps.example/token",
            headers: &[("content-type", "application/json")],
            body: Some(r#"{"resource_token":"eyJ.x.y"}"#),
            components: &[
                "@method",
                "@authority",
                "@path",
                "content-type",
                "content-digest",
                "signature-key",
            ],
        },
        BaseCase {
            name: "@query",
            method: "GET",
            url: "https://resource.example/search?q=sydney&n=5",
            headers: &[],
            body: None,
            components: &["@method", "@authority", "@path", "@query", "signature-key"],
        },
        BaseCase {
            name: "session token (authorization)",
            method: "GET",
            url: "https://resource.example/api/documents",
            headers: &[("authorization", "AAuth c2Vzc2lvbi10b2tlbg")],
            body: None,
            components: &[
                "@method",
                "@authority",
                "@path",
                "authorization",
                "signature-key",
            ],
        },
        BaseCase {
            name: "non-default port and a resource's extra header",
            method: "DELETE",
            url: "https://resource.example:8443/trips/42",
            headers: &[("x-trip-version", "7")],
            body: None,
            components: &[
                "@method",
                "@authority",
                "@path",
                "x-trip-version",
                "signature-key",
            ],
        },
    ]
}

#[test]
fn signature_bases_agree_byte_for_byte() {
    if !peer_available() {
        return;
    }
    const CREATED: i64 = 1_800_000_000;
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for c in base_cases() {
        let mut headers: Vec<(String, String)> = c
            .headers
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if let Some(body) = c.body {
            headers.push(("content-digest".into(), content_digest(body.as_bytes())));
        }
        let mut b = http::Request::builder().method(c.method).uri(c.url);
        for (k, v) in &headers {
            b = b.header(k, v);
        }
        b = b.header("signature-key", SIG_KEY);
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let params = SignatureParams::new(
            c.components.iter().map(|n| Component::new(*n)).collect(),
            CREATED,
        );
        ours.push(signature_base(&parts, &params, View::Client).unwrap());
        let headers: serde_json::Map<String, Value> = headers
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
        requests.push(json!({
            "name": c.name, "method": c.method, "url": c.url, "headers": headers,
            "body": c.body, "signature_key": SIG_KEY, "components": c.components,
            "created": CREATED,
        }));
    }
    let out = run_peer("base", &json!({ "cases": requests }));
    for ((c, theirs), ours) in base_cases()
        .iter()
        .zip(out["cases"].as_array().unwrap())
        .zip(&ours)
    {
        assert_eq!(theirs["ok"], true, "{}: {theirs}", c.name);
        assert_eq!(
            theirs["base"].as_str().unwrap(),
            ours,
            "{}: the bases differ",
            c.name
        );
    }
}
