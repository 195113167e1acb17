//! Tokens both ways: agent, person, auth (Person Server and Access Server) and resource.

use super::*;

/// A `mission_s256` (43 base64url characters).
const MISSION: &str = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";

#[test]
fn python_verifies_tokens_we_mint() {
    if !peer_available() {
        return;
    }
    let now = now();
    let key = agent_key(Algorithm::Ed25519);
    let agent_jwk = jwk_value(&public_jwk(key.public_key(), None));
    let (ps, asrv, res) = (ps(), access_server(), resource());
    let agent = our_agent_token(&key, now);
    let person = PersonTokenBuilder::new(id(PS), id(RESOURCE), PERSON, key.public_key())
        .mission_s256(MISSION)
        .tenant("acme")
        .sign(&ps.key, ps.kid, now, &mut OsRandom)
        .unwrap();
    let auth_ps = AuthTokenBuilder::new(
        AuthIssuer::PersonServer,
        id(PS),
        id(RESOURCE),
        id(PS),
        PERSON,
        key.public_key(),
    )
    .scope("data.read")
    .sign(&ps.key, ps.kid, now, &mut OsRandom)
    .unwrap();
    let auth_as = AuthTokenBuilder::new(
        AuthIssuer::AccessServer,
        id(AS),
        id(RESOURCE),
        id(PS),
        PERSON,
        key.public_key(),
    )
    .scope("data.read")
    .account("acct-9")
    .sign(&asrv.key, asrv.kid, now, &mut OsRandom)
    .unwrap();
    // A resource token for a person token without a mission (the peer asks a mission
    // checker about any mission-bearing resource token it verifies as the Person Server).
    let plain_person = PersonTokenBuilder::new(id(PS), id(RESOURCE), PERSON, key.public_key())
        .sign(&ps.key, ps.kid, now, &mut OsRandom)
        .unwrap();
    let resource_token = ResourceTokenBuilder::new(
        id(RESOURCE),
        id(PS),
        id(PS),
        PERSON,
        plain_person.jti.clone(),
        key.public_key(),
        "data.read",
    )
    .sign(&res.key, res.kid, now, &mut OsRandom)
    .unwrap();
    // Signed by a key the issuer does not publish under that kid.
    let forged = PersonTokenBuilder::new(id(PS), id(RESOURCE), PERSON, key.public_key())
        .sign(&res.key, ps.kid, now, &mut OsRandom)
        .unwrap();
    let thumbprint = key.public_key().thumbprint().as_str().to_owned();
    let tokens = json!([
        {"name": "agent", "kind": "agent", "token": agent},
        {"name": "person", "kind": "person", "token": person.token, "expected_aud": RESOURCE,
         "request_signing_jwk": agent_jwk},
        {"name": "auth (Person Server)", "kind": "auth", "token": auth_ps.token,
         "expected_aud": RESOURCE, "request_signing_jwk": agent_jwk},
        {"name": "auth (Access Server)", "kind": "auth", "token": auth_as.token,
         "expected_aud": RESOURCE, "request_signing_jwk": agent_jwk},
        {"name": "resource", "kind": "resource", "token": resource_token.token,
         "presented_token": plain_person.token, "expected_aud": PS, "expected_ps": PS,
         "expected_agent_jkt": thumbprint},
        {"name": "person for another resource", "kind": "person", "token": person.token,
         "expected_aud": "https://other.example"},
        {"name": "forged person", "kind": "person", "token": forged.token,
         "expected_aud": RESOURCE},
    ]);
    let out = run_peer(
        "tokens-verify",
        &json!({ "issuers": issuers_for_peer(), "tokens": tokens }),
    );
    let r = |i: usize| &out["results"][i];
    for i in 0..5 {
        assert_eq!(r(i)["ok"], true, "{}", r(i));
    }
    assert_eq!(r(0)["claims"]["sub"], AGENT);
    assert_eq!(r(0)["claims"]["ps"], PS);
    assert_eq!(r(0)["header"]["typ"], "aa-agent+jwt");
    assert_eq!(r(0)["header"]["alg"], "Ed25519");
    assert_eq!(r(1)["claims"]["jti"], person.jti.as_str());
    assert_eq!(r(1)["claims"]["mission_s256"], MISSION);
    assert_eq!(r(1)["claims"]["tenant"], "acme");
    assert_eq!(r(2)["claims"]["dwk"], "aauth-person.json");
    assert_eq!(r(3)["claims"]["dwk"], "aauth-access.json");
    assert_eq!(r(3)["claims"]["account"], "acct-9");
    assert_eq!(r(4)["claims"]["presented_jti"], plain_person.jti.as_str());
    assert_eq!(r(4)["claims"]["agent_jkt"], thumbprint.as_str());
    assert_eq!(r(5)["ok"], false, "{}", r(5));
    assert_eq!(r(6)["ok"], false, "{}", r(6));
    assert_eq!(r(6)["error_code"], "invalid_jwt", "{}", r(6));
    let fetched = out["fetched"].as_array().unwrap();
    for p in parties() {
        assert!(
            fetched.contains(&json!([p.iss, p.dwk, p.kid])),
            "the peer never asked for {}'s key: {fetched:?}",
            p.iss
        );
    }
}

#[test]
fn we_verify_tokens_python_mints() {
    if !peer_available() {
        return;
    }
    let now = now();
    let key = agent_key(Algorithm::Es256);
    let agent_jwk = jwk_value(&public_jwk(key.public_key(), None));
    let thumbprint = key.public_key().thumbprint().as_str().to_owned();
    let (prov, ps, asrv, res) = (provider(), ps(), access_server(), resource());
    let later = now.as_secs() + 3000;
    // The presented token of the peer's resource token is ours.
    let presented = PersonTokenBuilder::new(id(PS), id(RESOURCE), PERSON, key.public_key())
        .sign(&ps.key, ps.kid, now, &mut OsRandom)
        .unwrap();
    let requests = json!([
        {"name": "agent", "kind": "agent", "private_jwk": private_jwk(&prov.key),
         "kwargs": {"iss": PROVIDER, "sub": AGENT, "cnf_jwk": agent_jwk, "kid": prov.kid, "ps": PS}},
        {"name": "person", "kind": "person", "private_jwk": private_jwk(&ps.key),
         "kwargs": {"iss": PS, "aud": RESOURCE, "sub": PERSON, "cnf_jwk": agent_jwk,
                    "kid": ps.kid, "agent_exp": later, "tenant": "acme"}},
        {"name": "auth (Person Server)", "kind": "auth", "private_jwk": private_jwk(&ps.key),
         "kwargs": {"iss": PS, "aud": RESOURCE, "cnf_jwk": agent_jwk, "kid": ps.kid, "ps": PS,
                    "sub": PERSON, "agent_exp": later, "presented_exp": later,
                    "scope": "data.read", "dwk": "aauth-person.json"}},
        {"name": "auth (Access Server)", "kind": "auth", "private_jwk": private_jwk(&asrv.key),
         "kwargs": {"iss": AS, "aud": RESOURCE, "cnf_jwk": agent_jwk, "kid": asrv.kid, "ps": PS,
                    "sub": PERSON, "agent_exp": later, "presented_exp": later,
                    "scope": "data.read", "account": "acct-9"}},
        {"name": "resource", "kind": "resource", "private_jwk": private_jwk(&res.key),
         "kwargs": {"iss": RESOURCE, "aud": PS, "agent_jkt": thumbprint, "kid": res.kid,
                    "presented_token": presented.token, "scope": "data.read"}},
    ]);
    let out = run_peer(
        "tokens-mint",
        &json!({ "issuers": issuers_for_peer(), "requests": requests }),
    );
    let token = |i: usize| {
        let t = &out["tokens"][i];
        assert_eq!(t["ok"], true, "the peer could not mint: {t}");
        t["token"].as_str().unwrap().to_owned()
    };
    let keys = our_issuer_keys();
    let (resource_id, ps_id) = (id(RESOURCE), id(PS));
    let at_resource = Validation::new(now).audience(&resource_id);
    let at_ps = Validation::new(now).audience(&ps_id);

    let agent = block(verify::<AgentClaims>(
        &token(0),
        &Validation::new(now),
        &keys,
    ))
    .unwrap();
    assert_eq!(agent.claims.sub.as_str(), AGENT);
    assert_eq!(agent.claims.ps.as_ref(), Some(&ps_id));
    assert_eq!(agent.cnf_key.as_ref(), Some(key.public_key()));
    assert_eq!(agent.header.kid.as_deref(), Some(prov.kid));

    let person = block(verify::<PersonClaims>(&token(1), &at_resource, &keys)).unwrap();
    assert_eq!(person.claims.sub, PERSON);
    assert_eq!(person.claims.tenant.as_deref(), Some("acme"));
    assert!(person.claims.exp <= later, "bounded by the agent token");

    let auth = block(verify::<AuthClaims>(&token(2), &at_resource, &keys)).unwrap();
    assert_eq!(
        (auth.claims.dwk.as_str(), &auth.claims.ps),
        ("aauth-person.json", &ps_id)
    );
    assert_eq!(auth.claims.scope.as_deref(), Some("data.read"));
    assert_eq!(auth.cnf_key.as_ref(), Some(key.public_key()));

    let auth = block(verify::<AuthClaims>(&token(3), &at_resource, &keys)).unwrap();
    assert_eq!(auth.claims.iss, id(AS));
    assert_eq!(auth.claims.dwk, "aauth-access.json");
    assert_eq!(auth.claims.account.as_deref(), Some("acct-9"));

    let rt = block(verify::<ResourceClaims>(&token(4), &at_ps, &keys)).unwrap();
    assert_eq!(rt.claims.presented_jti, presented.jti);
    assert_eq!(rt.claims.agent_jkt, thumbprint);
    assert_eq!(
        (rt.claims.ps, rt.claims.sub.as_str()),
        (ps_id.clone(), PERSON)
    );

    // Our verifier is not lenient with them: a changed claim breaks the issuer's signature,
    // and a person token is not for the Person Server.
    let t = token(1);
    let (head, rest) = t.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sub"] = "someone-else".into();
    let forged = format!(
        "{head}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert!(block(verify::<PersonClaims>(&forged, &at_resource, &keys)).is_err());
    assert!(block(verify::<PersonClaims>(&t, &at_ps, &keys)).is_err());
}
