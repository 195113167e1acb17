//! Minting and verifying each token type; type confusion (T2–T4); lifetime caps (C7).

use std::time::Duration;

use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{PrivateKey, Signer};
use aauth_tokens::{
    AgentClaims, AgentId, AgentTokenBuilder, AuthClaims, AuthIssuer, AuthTokenBuilder, BoundToken,
    PersonClaims, PersonTokenBuilder, ResourceClaims, ResourceTokenBuilder, TokenError, TokenType,
    Unverified, Validation, verify, verify_bound,
};

use crate::common::{
    NOW, agent_key, agent_token, block, forge, issuers, provider_key, ps_key, sid,
};

const MISSION: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn person_token() -> aauth_tokens::Minted {
    PersonTokenBuilder::new(
        sid("https://ps.example"),
        sid("https://resource.example"),
        "person-123",
        agent_key().public_key(),
    )
    .mission_s256(MISSION)
    .tenant("acme")
    .sign(&ps_key(), "k1", NOW, &mut OsRandom)
    .unwrap()
}

fn auth_token(issuer: AuthIssuer) -> aauth_tokens::Minted {
    let iss = match issuer {
        AuthIssuer::PersonServer => sid("https://ps.example"),
        _ => sid("https://as.example"),
    };
    AuthTokenBuilder::new(
        issuer,
        iss,
        sid("https://resource.example"),
        sid("https://ps.example"),
        "person-123",
        agent_key().public_key(),
    )
    .scope("data.read")
    .mission_s256(MISSION)
    .sign(&ps_key(), "k1", NOW, &mut OsRandom)
    .unwrap()
}

#[test]
fn agent_token_round_trip() {
    let m = agent_token();
    let v = block(verify::<AgentClaims>(
        &m.token,
        &Validation::new(NOW),
        &issuers(),
    ))
    .unwrap();
    assert_eq!(v.claims.jti, m.jti);
    assert_eq!(v.claims.exp, NOW.0 + 3600);
    assert_eq!(v.claims.dwk, "aauth-agent.json");
    assert_eq!(v.claims.ps.as_ref().unwrap().as_str(), "https://ps.example");
    assert_eq!(v.cnf_key.as_ref(), Some(agent_key().public_key()));
    assert_eq!(v.header.typ.as_deref(), Some("aa-agent+jwt"));
    assert_eq!(v.header.kid.as_deref(), Some("k1"));
}

#[test]
fn person_token_round_trip_and_audience() {
    let m = person_token();
    let res = sid("https://resource.example");
    let v = block(verify::<PersonClaims>(
        &m.token,
        &Validation::new(NOW).audience(&res),
        &issuers(),
    ))
    .unwrap();
    assert_eq!(v.claims.sub, "person-123");
    assert_eq!(v.claims.mission_s256.as_deref(), Some(MISSION));
    assert_eq!(v.claims.tenant.as_deref(), Some("acme"));
    // No audience configured: refused, never accepted by default.
    let e = block(verify::<PersonClaims>(
        &m.token,
        &Validation::new(NOW),
        &issuers(),
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::WrongAudience { .. }), "{e:?}");
}

#[test]
fn auth_tokens_from_person_and_access_servers() {
    let res = sid("https://resource.example");
    for issuer in [AuthIssuer::PersonServer, AuthIssuer::AccessServer] {
        let m = auth_token(issuer);
        let v = block(verify::<AuthClaims>(
            &m.token,
            &Validation::new(NOW).audience(&res),
            &issuers(),
        ))
        .unwrap();
        assert_eq!(v.claims.ps.as_str(), "https://ps.example");
        assert_eq!(v.claims.scope.as_deref(), Some("data.read"));
        assert_eq!(
            v.claims.dwk,
            match issuer {
                AuthIssuer::PersonServer => "aauth-person.json",
                _ => "aauth-access.json",
            }
        );
    }
}

/// The compatibility option `also_person_token_jti` (off by default): with it, the
/// pre-rename claim carries `presented_jti`'s value beside it, and the token still
/// verifies as a -11 resource token; without it, no such claim is written.
#[test]
fn resource_token_person_token_jti_only_when_asked() {
    let payload = |token: &str| -> serde_json::Value {
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&aauth_keys::base64url::decode(p).unwrap()).unwrap()
    };
    let build = || {
        ResourceTokenBuilder::new(
            sid("https://resource.example"),
            sid("https://ps.example"),
            sid("https://ps.example"),
            "person-123",
            "pt-1",
            agent_key().public_key(),
            "data.read",
        )
    };
    let strict = build().sign(&ps_key(), "k1", NOW, &mut OsRandom).unwrap();
    let c = payload(&strict.token);
    assert_eq!(c["presented_jti"], "pt-1");
    assert!(c.get("person_token_jti").is_none(), "{c}");

    let compat = build()
        .also_person_token_jti()
        .sign(&ps_key(), "k1", NOW, &mut OsRandom)
        .unwrap();
    let c = payload(&compat.token);
    assert_eq!(c["presented_jti"], "pt-1");
    assert_eq!(c["person_token_jti"], "pt-1");
    assert_eq!(c["jti"], compat.jti.as_str());
    let ps = sid("https://ps.example");
    let v = block(verify::<ResourceClaims>(
        &compat.token,
        &Validation::new(NOW).audience(&ps),
        &issuers(),
    ))
    .unwrap();
    assert_eq!(v.claims.presented_jti, "pt-1");
}

/// A resource token as the TypeScript reference resource writes it: the person-token
/// reference under the pre-rename `person_token_jti` only.
fn resource_payload(presented: Option<&str>, old: Option<&str>) -> String {
    let mut c = serde_json::json!({
        "iss": "https://resource.example", "dwk": "aauth-resource.json",
        "aud": "https://ps.example", "jti": "rt-1", "ps": "https://ps.example",
        "sub": "person-123", "agent_jkt": agent_key().public_key().thumbprint().as_str(),
        "scope": "data.read", "iat": NOW.0, "exp": NOW.0 + 300,
    });
    if let Some(p) = presented {
        c["presented_jti"] = p.into();
    }
    if let Some(o) = old {
        c["person_token_jti"] = o.into();
    }
    forge(
        r#"{"alg":"Ed25519","kid":"k1","typ":"aa-resource+jwt"}"#,
        &c.to_string(),
        &ps_key(),
    )
}

/// The compatibility option `accept_person_token_jti` (off by default): strict -11 refuses
/// a resource token that names the presented token only by `person_token_jti`; with the
/// option it reads that value as `presented_jti`. A token naming two different tokens is
/// refused, and one naming none still is.
#[test]
fn resource_token_person_token_jti_read_only_when_accepted() {
    let ps = sid("https://ps.example");
    let strict = Validation::new(NOW).audience(&ps);
    let compat = Validation::new(NOW)
        .audience(&ps)
        .accept_person_token_jti(true);
    let check = |token: &str, v: &Validation<'_>| {
        block(verify::<ResourceClaims>(token, v, &issuers())).map(|t| t.claims.presented_jti)
    };
    let old_only = resource_payload(None, Some("pt-1"));
    assert!(
        matches!(
            check(&old_only, &strict),
            Err(TokenError::Claim {
                claim: "presented_jti",
                ..
            })
        ),
        "strict -11 must refuse a token without presented_jti"
    );
    assert_eq!(check(&old_only, &compat).as_deref(), Ok("pt-1"));
    // The unverified decoder reads it the same way.
    let u = Unverified::<ResourceClaims>::decode(&old_only, &compat).unwrap();
    assert_eq!(u.unverified_claims().presented_jti, "pt-1");
    assert!(Unverified::<ResourceClaims>::decode(&old_only, &strict).is_err());

    let both_same = resource_payload(Some("pt-1"), Some("pt-1"));
    assert_eq!(check(&both_same, &compat).as_deref(), Ok("pt-1"));
    assert_eq!(check(&both_same, &strict).as_deref(), Ok("pt-1"));

    let both_differ = resource_payload(Some("pt-1"), Some("pt-2"));
    assert!(
        matches!(
            check(&both_differ, &compat),
            Err(TokenError::Claim {
                claim: "person_token_jti",
                ..
            })
        ),
        "two references to two tokens must be refused"
    );
    // Strict -11 does not read the old claim at all: presented_jti is what counts.
    assert_eq!(check(&both_differ, &strict).as_deref(), Ok("pt-1"));

    let neither = resource_payload(None, None);
    assert!(check(&neither, &compat).is_err());
    // An empty or non-string old claim is as malformed as an empty presented_jti.
    assert!(check(&resource_payload(None, Some("")), &compat).is_err());
}

#[test]
fn resource_token_round_trip() {
    let m = ResourceTokenBuilder::new(
        sid("https://resource.example"),
        sid("https://ps.example"),
        sid("https://ps.example"),
        "person-123",
        "pt-1",
        agent_key().public_key(),
        "data.read data.write",
    )
    .mission_s256(MISSION)
    .login_hint("alice@example.com")
    .interaction("https://resource.example/interact", "ABCD2345")
    .sign(&ps_key(), "k1", NOW, &mut OsRandom)
    .unwrap();
    assert_eq!(m.exp, NOW.0 + 300);
    let ps = sid("https://ps.example");
    let v = block(verify::<ResourceClaims>(
        &m.token,
        &Validation::new(NOW).audience(&ps),
        &issuers(),
    ))
    .unwrap();
    assert_eq!(
        v.claims.agent_jkt,
        agent_key().public_key().thumbprint().as_str()
    );
    assert_eq!(v.claims.presented_jti, "pt-1");
    assert_eq!(v.claims.login_hint.as_deref(), Some("alice@example.com"));
    assert_eq!(v.claims.interaction.as_ref().unwrap().code, "ABCD2345");
    assert!(v.cnf_key.is_none());
    // Replayed to the wrong AS/PS (T6).
    let other = sid("https://as-b.example");
    let e = block(verify::<ResourceClaims>(
        &m.token,
        &Validation::new(NOW).audience(&other),
        &issuers(),
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::WrongAudience { .. }), "{e:?}");
}

#[test]
fn t2_t3_t4_only_typ_tells_tokens_apart() {
    let res = sid("https://resource.example");
    let v = Validation::new(NOW).audience(&res);
    // T3: a person token where an auth token is required.
    let e = block(verify::<AuthClaims>(&person_token().token, &v, &issuers())).unwrap_err();
    assert!(
        matches!(
            e,
            TokenError::WrongType {
                expected: "aa-auth+jwt",
                ..
            }
        ),
        "{e:?}"
    );
    // T2: an auth token where an agent token is required.
    let e = block(verify::<AgentClaims>(
        &auth_token(AuthIssuer::PersonServer).token,
        &v,
        &issuers(),
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::WrongType { .. }), "{e:?}");
    // T4: a resource token is never a Signature-Key token.
    let rt = ResourceTokenBuilder::new(
        sid("https://resource.example"),
        sid("https://ps.example"),
        sid("https://ps.example"),
        "p",
        "j",
        agent_key().public_key(),
        "s",
    )
    .sign(&ps_key(), "k1", NOW, &mut OsRandom)
    .unwrap();
    let all = [
        TokenType::Agent,
        TokenType::Person,
        TokenType::Auth,
        TokenType::Resource,
    ];
    let e = block(verify_bound(&rt.token, &all, &v, &issuers())).unwrap_err();
    assert!(matches!(e, TokenError::WrongType { .. }), "{e:?}");
}

#[test]
fn verify_bound_dispatches_on_typ() {
    let res = sid("https://resource.example");
    let v = Validation::new(NOW).audience(&res);
    let all = [TokenType::Agent, TokenType::Person, TokenType::Auth];
    let a = block(verify_bound(&agent_token().token, &all, &v, &issuers())).unwrap();
    assert!(matches!(a, BoundToken::Agent(_)));
    assert_eq!(a.cnf_key(), Some(agent_key().public_key()));
    let p = block(verify_bound(&person_token().token, &all, &v, &issuers())).unwrap();
    assert!(matches!(p, BoundToken::Person(_)));
    assert_eq!(p.iss_jti().0.as_str(), "https://ps.example");
    let t = block(verify_bound(
        &auth_token(AuthIssuer::AccessServer).token,
        &all,
        &v,
        &issuers(),
    ))
    .unwrap();
    assert_eq!(t.token_type(), TokenType::Auth);
    // Restricting the accepted set refuses the others.
    let e = block(verify_bound(
        &person_token().token,
        &[TokenType::Agent],
        &v,
        &issuers(),
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::WrongType { .. }), "{e:?}");
}

#[test]
fn c7_verifiers_enforce_one_hour_for_person_and_auth_tokens() {
    let payload = |life: u64| {
        serde_json::json!({
            "iss": "https://ps.example", "dwk": "aauth-person.json", "aud": "https://resource.example",
            "sub": "p", "jti": "j", "cnf": {"jwk": agent_key().public_key().to_jwk()},
            "iat": NOW.0, "exp": NOW.0 + life,
        })
        .to_string()
    };
    let header = r#"{"alg":"Ed25519","kid":"k1","typ":"aa-person+jwt"}"#;
    let res = sid("https://resource.example");
    let v = Validation::new(NOW).audience(&res);
    block(verify::<PersonClaims>(
        &forge(header, &payload(3600), &ps_key()),
        &v,
        &issuers(),
    ))
    .unwrap();
    let e = block(verify::<PersonClaims>(
        &forge(header, &payload(3601), &ps_key()),
        &v,
        &issuers(),
    ))
    .unwrap_err();
    assert!(
        matches!(
            e,
            TokenError::LifetimeTooLong {
                lifetime: 3601,
                cap: 3600
            }
        ),
        "{e:?}"
    );
}

#[test]
fn c7_issuers_never_mint_over_the_cap() {
    let err = |r: Result<aauth_tokens::Minted, TokenError>| match r {
        Err(TokenError::Mint { .. }) => {}
        other => panic!("{other:?}"),
    };
    let a = || {
        AgentTokenBuilder::new(
            sid("https://agent.example"),
            AgentId::parse("aauth:assistant@agent.example").unwrap(),
            agent_key().public_key(),
        )
    };
    err(a()
        .lifetime(Duration::from_secs(86_401))
        .sign(&provider_key(), "k1", NOW, &mut OsRandom));
    err(a()
        .lifetime(Duration::from_secs(0))
        .sign(&provider_key(), "k1", NOW, &mut OsRandom));
    assert_eq!(
        a().lifetime(Duration::from_secs(86_400))
            .sign(&provider_key(), "k1", NOW, &mut OsRandom)
            .unwrap()
            .exp,
        NOW.0 + 86_400
    );
    let p = || {
        PersonTokenBuilder::new(
            sid("https://ps.example"),
            sid("https://resource.example"),
            "p",
            agent_key().public_key(),
        )
    };
    err(p()
        .lifetime(Duration::from_secs(3601))
        .sign(&ps_key(), "k1", NOW, &mut OsRandom));
    // Capped by the agent token and the mission: the earliest bound wins.
    let m = p()
        .not_after(UnixTime(NOW.0 + 600))
        .not_after(UnixTime(NOW.0 + 900))
        .sign(&ps_key(), "k1", NOW, &mut OsRandom)
        .unwrap();
    assert_eq!(m.exp, NOW.0 + 600);
    assert_eq!(m.expires_in(NOW), 600);
    // A bound that has passed: nothing is minted.
    err(p()
        .not_after(UnixTime(NOW.0))
        .sign(&ps_key(), "k1", NOW, &mut OsRandom));
    let r = || {
        ResourceTokenBuilder::new(
            sid("https://resource.example"),
            sid("https://ps.example"),
            sid("https://ps.example"),
            "p",
            "j",
            agent_key().public_key(),
            "s",
        )
    };
    err(r()
        .lifetime(Duration::from_secs(301))
        .sign(&ps_key(), "k1", NOW, &mut OsRandom));
    let t = || {
        AuthTokenBuilder::new(
            AuthIssuer::AccessServer,
            sid("https://as.example"),
            sid("https://resource.example"),
            sid("https://ps.example"),
            "p",
            agent_key().public_key(),
        )
    };
    err(t()
        .lifetime(Duration::from_secs(3601))
        .sign(&ps_key(), "k1", NOW, &mut OsRandom));
    err(t().jti("").sign(&ps_key(), "k1", NOW, &mut OsRandom));
    err(t().sign(&ps_key(), "", NOW, &mut OsRandom));
}

#[test]
fn builders_refuse_tokens_missing_required_content() {
    let err = |r: Result<aauth_tokens::Minted, TokenError>, what: &str| match r {
        Err(TokenError::Mint { reason }) => assert!(reason.contains(what), "{reason}"),
        other => panic!("{other:?}"),
    };
    err(
        PersonTokenBuilder::new(
            sid("https://ps.example"),
            sid("https://resource.example"),
            "",
            agent_key().public_key(),
        )
        .sign(&ps_key(), "k1", NOW, &mut OsRandom),
        "sub",
    );
    err(
        ResourceTokenBuilder::new(
            sid("https://resource.example"),
            sid("https://ps.example"),
            sid("https://ps.example"),
            "p",
            "",
            agent_key().public_key(),
            "s",
        )
        .sign(&ps_key(), "k1", NOW, &mut OsRandom),
        "presented_jti",
    );
    err(
        ResourceTokenBuilder::new(
            sid("https://resource.example"),
            sid("https://ps.example"),
            sid("https://ps.example"),
            "p",
            "j",
            agent_key().public_key(),
            "",
        )
        .sign(&ps_key(), "k1", NOW, &mut OsRandom),
        "scope",
    );
    // A Person Server's auth token names itself as ps.
    err(
        AuthTokenBuilder::new(
            AuthIssuer::PersonServer,
            sid("https://ps.example"),
            sid("https://resource.example"),
            sid("https://other-ps.example"),
            "p",
            agent_key().public_key(),
        )
        .sign(&ps_key(), "k1", NOW, &mut OsRandom),
        "ps = iss",
    );
}

#[test]
fn subagent_tokens_are_named_under_their_parent_and_provider() {
    let parent = AgentId::parse("aauth:planner.7f3c@agent.example").unwrap();
    let mint = |sub: &str| {
        AgentTokenBuilder::new(
            sid("https://agent.example"),
            AgentId::parse(sub).unwrap(),
            agent_key().public_key(),
        )
        .parent_agent(parent.clone())
        .sign(&provider_key(), "k1", NOW, &mut OsRandom)
    };
    let m = mint("aauth:planner.7f3c+search1@agent.example").unwrap();
    let v = block(verify::<AgentClaims>(
        &m.token,
        &Validation::new(NOW),
        &issuers(),
    ))
    .unwrap();
    assert_eq!(v.claims.parent_agent.as_ref(), Some(&parent));
    assert!(matches!(
        mint("aauth:other+search1@agent.example"),
        Err(TokenError::Mint { .. })
    ));
    assert!(matches!(
        mint("aauth:planner.7f3c+search1@other.example"),
        Err(TokenError::Mint { .. })
    ));
    // The agent's domain is the provider's host.
    let r = AgentTokenBuilder::new(
        sid("https://agent.example"),
        AgentId::parse("aauth:a@elsewhere.example").unwrap(),
        agent_key().public_key(),
    )
    .sign(&provider_key(), "k1", NOW, &mut OsRandom);
    assert!(matches!(r, Err(TokenError::Mint { .. })), "{r:?}");
}

#[test]
fn sans_io_decode_then_finish() {
    let m = agent_token();
    let v = Validation::new(NOW);
    let u = Unverified::<AgentClaims>::decode(&m.token, &v).unwrap();
    let req = u.key_request();
    assert_eq!(req.iss.as_str(), "https://agent.example");
    assert_eq!(req.dwk, "aauth-agent.json");
    assert_eq!(req.kid, "k1");
    assert_eq!(u.unverified_claims().jti, m.jti);
    // Finishing with the wrong key fails; with the right one succeeds.
    let wrong = PrivateKey::ed25519_from_seed(&[77; 32]);
    let u2 = Unverified::<AgentClaims>::decode(&m.token, &v).unwrap();
    assert!(matches!(
        u2.finish(wrong.public_key(), &v),
        Err(TokenError::BadSignature)
    ));
    let t = u.finish(provider_key().public_key(), &v).unwrap();
    assert_eq!(t.claims.jti, m.jti);
    let _ = provider_key().sign(b"x").unwrap();
}

#[test]
fn tokens_expire_exactly_at_exp() {
    let m = agent_token();
    let at = UnixTime(m.exp);
    let e = block(verify::<AgentClaims>(
        &m.token,
        &Validation::new(at),
        &issuers(),
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::Expired { .. }));
    block(verify::<AgentClaims>(
        &m.token,
        &Validation::new(UnixTime(m.exp - 1)),
        &issuers(),
    ))
    .unwrap();
}

/// Found by the `agent_token` fuzz target: a `typ` whose 12th byte falls inside a
/// multi-byte character made the `application/` prefix check slice mid-character and
/// panic. Every such value must simply not name a token type.
#[test]
fn typ_with_multibyte_character_at_the_prefix_boundary_is_not_a_panic() {
    use aauth_tokens::TokenType;
    for typ in [
        "aa-resource\u{62a}wt", // the fuzzer's input: U+062A spans bytes 11..13
        "applicatio\u{e9}/aa-agent+jwt",
        "\u{1f600}\u{1f600}\u{1f600}x",
        "application/",
        "application/\u{e9}",
    ] {
        for t in [
            TokenType::Agent,
            TokenType::Person,
            TokenType::Resource,
            TokenType::Auth,
        ] {
            assert!(!t.matches_typ(typ), "{typ:?}");
        }
        assert_eq!(TokenType::from_typ(typ), None, "{typ:?}");
    }
    assert!(TokenType::Resource.matches_typ("APPLICATION/aa-resource+jwt"));
}

/// A provider once signed, under its own key, a token naming another provider's agent,
/// and a resource admitted it as that agent (catalogue A-series: identity spoofing). The identifier's domain is its provider's.
#[test]
fn a_provider_speaks_only_for_its_own_agents() {
    let travel = PrivateKey::ed25519_from_seed(&[9; 32]);
    let keys = issuers().with(
        &sid("https://travel.example"),
        "aauth-agent.json",
        "k1",
        travel.public_key().clone(),
    );
    let forged = |claims: serde_json::Value| {
        forge(crate::common::AGENT_HEADER, &claims.to_string(), &travel)
    };
    let mut p = crate::common::agent_payload();
    p["iss"] = "https://travel.example".into();
    // The issue's token: travel.example names agent.example's assistant.
    let counting = crate::common::Counting::new(keys.clone());
    let e = block(verify::<AgentClaims>(
        &forged(p.clone()),
        &Validation::new(NOW),
        &counting,
    ))
    .unwrap_err();
    assert_eq!(
        e,
        TokenError::AgentOfAnotherIssuer {
            claim: "sub",
            agent: "aauth:assistant@agent.example".to_owned(),
            iss: "https://travel.example".to_owned(),
        }
    );
    assert_eq!(counting.resolves(), 0, "refused before any key lookup");
    // A subdomain is another domain.
    p["sub"] = "aauth:assistant@eu.travel.example".into();
    assert!(matches!(
        block(verify::<AgentClaims>(
            &forged(p.clone()),
            &Validation::new(NOW),
            &keys
        )),
        Err(TokenError::AgentOfAnotherIssuer { claim: "sub", .. })
    ));
    // A sub-agent token may not name another provider's agent as its parent.
    p["sub"] = "aauth:assistant+s1@travel.example".into();
    p["parent_agent"] = "aauth:assistant@agent.example".into();
    assert!(matches!(
        block(verify::<AgentClaims>(
            &forged(p.clone()),
            &Validation::new(NOW),
            &keys
        )),
        Err(TokenError::AgentOfAnotherIssuer {
            claim: "parent_agent",
            ..
        })
    ));
    // Its own agents verify, sub-agents included.
    p["parent_agent"] = "aauth:assistant@travel.example".into();
    let v = block(verify::<AgentClaims>(
        &forged(p),
        &Validation::new(NOW),
        &keys,
    ))
    .unwrap();
    assert_eq!(v.claims.sub.as_str(), "aauth:assistant+s1@travel.example");
    // And through verify_bound, which a resource's `jwt` scheme uses.
    let mut p = crate::common::agent_payload();
    p["iss"] = "https://travel.example".into();
    assert!(matches!(
        block(verify_bound(
            &forged(p),
            &[TokenType::Agent],
            &Validation::new(NOW),
            &keys
        )),
        Err(TokenError::AgentOfAnotherIssuer { .. })
    ));
}

/// An agent token with a ten-year lifetime was once accepted (catalogue C7). Verifiers cap agent
/// tokens at 24 hours and resource tokens at one hour.
#[test]
fn c7_verifiers_cap_agent_and_resource_token_lifetimes() {
    let with_life = |life: u64| {
        let mut p = crate::common::agent_payload();
        p["exp"] = (NOW.0 + life).into();
        forge(crate::common::AGENT_HEADER, &p.to_string(), &provider_key())
    };
    block(verify::<AgentClaims>(
        &with_life(86_400),
        &Validation::new(NOW),
        &issuers(),
    ))
    .unwrap();
    let ten_years = 10 * 365 * 86_400;
    assert_eq!(
        block(verify::<AgentClaims>(
            &with_life(ten_years),
            &Validation::new(NOW),
            &issuers()
        ))
        .unwrap_err(),
        TokenError::LifetimeTooLong {
            lifetime: ten_years,
            cap: 86_400
        }
    );
    assert_eq!(
        block(verify::<AgentClaims>(
            &with_life(86_401),
            &Validation::new(NOW),
            &issuers()
        ))
        .unwrap_err(),
        TokenError::LifetimeTooLong {
            lifetime: 86_401,
            cap: 86_400
        }
    );
    let resource = |life: u64| {
        serde_json::json!({
            "iss": "https://resource.example", "dwk": "aauth-resource.json",
            "aud": "https://ps.example", "jti": "r1", "ps": "https://ps.example", "sub": "p",
            "presented_jti": "j1", "agent_jkt": agent_key().public_key().thumbprint().as_str(),
            "iat": NOW.0, "exp": NOW.0 + life,
        })
        .to_string()
    };
    let header = r#"{"alg":"Ed25519","kid":"k1","typ":"aa-resource+jwt"}"#;
    let ps = sid("https://ps.example");
    let v = Validation::new(NOW).audience(&ps);
    block(verify::<ResourceClaims>(
        &forge(header, &resource(3600), &ps_key()),
        &v,
        &issuers(),
    ))
    .unwrap();
    assert!(matches!(
        block(verify::<ResourceClaims>(
            &forge(header, &resource(3601), &ps_key()),
            &v,
            &issuers()
        )),
        Err(TokenError::LifetimeTooLong { cap: 3600, .. })
    ));
}

/// Catalogue C4, RFC 7519 §4.1.5: a token carrying `nbf` is not accepted before it (within the skew);
/// checked before any key lookup; a malformed `nbf` is refused.
#[test]
fn nbf_is_honoured_when_present() {
    let with = |nbf: serde_json::Value| {
        let mut p = crate::common::agent_payload();
        p["nbf"] = nbf;
        forge(crate::common::AGENT_HEADER, &p.to_string(), &provider_key())
    };
    let counting = crate::common::Counting::new(issuers());
    let e = block(verify::<AgentClaims>(
        &with((NOW.0 + 600).into()),
        &Validation::new(NOW),
        &counting,
    ))
    .unwrap_err();
    assert_eq!(
        e,
        TokenError::NotYetValid {
            nbf: NOW.0 + 600,
            now: NOW.0
        }
    );
    assert_eq!(counting.resolves(), 0);
    // Within the skew, and in the past: accepted.
    for nbf in [NOW.0 + 60, NOW.0, NOW.0 - 3600] {
        block(verify::<AgentClaims>(
            &with(nbf.into()),
            &Validation::new(NOW),
            &issuers(),
        ))
        .unwrap();
    }
    assert!(matches!(
        block(verify::<AgentClaims>(
            &with("soon".into()),
            &Validation::new(NOW),
            &issuers()
        )),
        Err(TokenError::Claim { claim: "nbf", .. })
    ));
}
