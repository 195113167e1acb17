//! Person-token and auth-token access modes, resource tokens and the authorization
//! endpoint: every challenge carries exactly what the draft names, every resource token
//! derives from the token verified on that request, and the handler never runs for a
//! challenge.

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::{AAuthRequirement, Requirement, Scheme};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_resource::{AAuthLayer, Access, Compatibility, Resource, ResourceTokens, RoutePolicy};
use aauth_tokens::{
    AuthIssuer, AuthTokenBuilder, Minted, PersonTokenBuilder, ResourceClaims, ServerId, Unverified,
    Validation,
};
use http::StatusCode;
use tower_layer::Layer;

use crate::{Handler, NOW, World, handler, header, send, signed};
use aauth_test_support::id;
use aauth_test_support::time::fixed_clock;
use aauth_test_support::verify::issuer_keys;

const MISSION: &str = "m1ss10n-s256-value-000000000000000000000000";

pub(crate) struct Modes {
    pub(crate) w: World,
    ps: PrivateKey,
    as_key: PrivateKey,
    rs_key: Arc<PrivateKey>,
}

pub(crate) fn modes() -> Modes {
    let w = crate::world();
    let ps = PrivateKey::ed25519_from_seed(&[7; 32]);
    let as_key = PrivateKey::ed25519_from_seed(&[8; 32]);
    let keys = issuer_keys(&[
        (
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            w.provider.public_key(),
        ),
        (
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            ps.public_key(),
        ),
        (
            "https://as.example",
            "aauth-access.json",
            "as-1",
            as_key.public_key(),
        ),
    ]);
    let w = World {
        resource: Resource::new(id("https://resource.example"), Arc::new(keys)),
        ..w
    };
    Modes {
        w,
        ps,
        as_key,
        rs_key: Arc::new(PrivateKey::ed25519_from_seed(&[9; 32])),
    }
}

impl Modes {
    pub(crate) fn ps_key(&self) -> &PrivateKey {
        &self.ps
    }

    pub(crate) fn tokens(&self) -> ResourceTokens {
        ResourceTokens::new(self.rs_key.clone(), "rs-1").scopes(["read", "write"])
    }

    fn service(
        &self,
        resource: &Resource,
        policy: RoutePolicy,
        calls: &Handler,
    ) -> aauth_resource::AAuthService<Handler> {
        AAuthLayer::new(resource.route(policy), fixed_clock()).layer(calls.clone())
    }

    pub(crate) fn person_token(&self) -> Minted {
        PersonTokenBuilder::new(
            id("https://ps.example"),
            id("https://resource.example"),
            "person-42",
            self.w.agent.public_key(),
        )
        .mission_s256(MISSION)
        .tenant("acme")
        .lifetime(Duration::from_secs(1800))
        .sign(&self.ps, "ps-1", NOW.minus(5), &mut OsRandom)
        .unwrap()
    }

    pub(crate) fn auth_token(&self, scope: &str) -> Minted {
        AuthTokenBuilder::new(
            AuthIssuer::PersonServer,
            id("https://ps.example"),
            id("https://resource.example"),
            id("https://ps.example"),
            "person-42",
            self.w.agent.public_key(),
        )
        .scope(scope)
        .mission_s256(MISSION)
        .sign(&self.ps, "ps-1", NOW.minus(5), &mut OsRandom)
        .unwrap()
    }

    /// The resource token of a `401 requirement=auth-token`, verified under the
    /// resource's key.
    fn resource_token(&self, h: &http::HeaderMap) -> ResourceClaims {
        let req = AAuthRequirement::parse(&header(h, "aauth-requirement")).unwrap();
        let Requirement::AuthToken { resource_token } = req.requirement else {
            panic!("expected requirement=auth-token, got {req:?}");
        };
        self.verify_resource_token(&resource_token)
    }

    /// A resource token verified under the resource's key, for the audience it names
    /// (asserted separately).
    fn verify_resource_token(&self, token: &str) -> ResourceClaims {
        let u = Unverified::<ResourceClaims>::decode(token, &Validation::new(NOW)).unwrap();
        let aud = u.unverified_claims().aud.clone();
        u.finish(
            self.rs_key.public_key(),
            &Validation::new(NOW).audience(&aud),
        )
        .unwrap()
        .claims
    }
}

#[tokio::test]
async fn a_person_token_route_admits_the_person_and_challenges_an_agent_token() {
    let m = modes();
    let calls = handler();
    let mut svc = m.service(&m.w.resource, RoutePolicy::new(Access::PersonToken), &calls);

    // Unsigned and agent-token requests: `requirement=person-token`, no parameters.
    let unsigned = crate::to_server(
        http::Request::get("https://resource.example/me")
            .body(Vec::new())
            .unwrap(),
    );
    let (s, h, _) = send(&mut svc, unsigned).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "aauth-requirement"), "requirement=person-token");
    let agent = Scheme::jwt(m.w.agent_token(3600));
    let (s, h, _) = send(&mut svc, signed("GET", "/me", b"", &m.w.agent, &agent)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "aauth-requirement"), "requirement=person-token");
    assert!(
        h.get("signature-error").is_none(),
        "a challenge, not a signature failure"
    );
    assert_eq!(calls.calls(), 0);

    // A person token for this resource is admitted; the handler learns (iss, sub).
    let person = Scheme::jwt(m.person_token().token);
    let (s, _, body) = send(&mut svc, signed("GET", "/me", b"", &m.w.agent, &person)).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "person https://ps.example person-42")
    );

    // A person token for another resource is refused by its `aud`.
    let elsewhere = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://other.example"),
        "person-42",
        m.w.agent.public_key(),
    )
    .sign(&m.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, h, _) = send(
        &mut svc,
        signed("GET", "/me", b"", &m.w.agent, &Scheme::jwt(elsewhere)),
    )
    .await;
    crate::assert_sig_error(s, &h, "invalid_jwt");
    assert_eq!(calls.calls(), 1);
}

/// The compatibility profile (off by default): with `person_token_jti` on, the resource
/// token also carries the pre-rename claim, equal to `presented_jti`; strict, it does not.
#[tokio::test]
async fn person_token_jti_is_written_only_under_the_compatibility_profile() {
    let m = modes();
    for (compat, expect) in [
        (None, false),
        (Some(Compatibility::strict()), false),
        (Some(Compatibility::strict().person_token_jti(true)), true),
    ] {
        let mut tokens = m.tokens();
        if let Some(c) = compat {
            tokens = tokens.compatibility(c);
        }
        let resource = m.w.resource.clone().resource_tokens(tokens);
        let calls = handler();
        let mut svc = m.service(
            &resource,
            RoutePolicy::new(Access::AuthToken).scope("read"),
            &calls,
        );
        let person = m.person_token();
        let (s, h, _) = send(
            &mut svc,
            signed(
                "GET",
                "/doc",
                b"",
                &m.w.agent,
                &Scheme::jwt(person.token.clone()),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let req = AAuthRequirement::parse(&header(&h, "aauth-requirement")).unwrap();
        let Requirement::AuthToken { resource_token } = req.requirement else {
            panic!("expected requirement=auth-token, got {req:?}");
        };
        let payload = resource_token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&aauth_keys::base64url::decode(payload).unwrap()).unwrap();
        assert_eq!(claims["presented_jti"], person.jti.as_str(), "{compat:?}");
        if expect {
            assert_eq!(
                claims["person_token_jti"],
                person.jti.as_str(),
                "{compat:?}"
            );
        } else {
            assert!(
                claims.get("person_token_jti").is_none(),
                "{compat:?}: {claims}"
            );
        }
        // Either way it is a -11 resource token.
        assert_eq!(
            m.verify_resource_token(&resource_token).presented_jti,
            person.jti
        );
    }
}

#[tokio::test]
async fn an_auth_token_route_mints_a_resource_token_from_the_verified_person_token() {
    let m = modes();
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    let calls = handler();
    let mut svc = m.service(
        &resource,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );

    // The agent token alone cannot yield a resource token (RS-30).
    let agent = Scheme::jwt(m.w.agent_token(3600));
    let (s, h, _) = send(&mut svc, signed("GET", "/doc", b"", &m.w.agent, &agent)).await;
    assert_eq!(
        (s, header(&h, "aauth-requirement").as_str()),
        (StatusCode::UNAUTHORIZED, "requirement=person-token")
    );

    let person = m.person_token();
    let (s, h, _) = send(
        &mut svc,
        signed(
            "GET",
            "/doc",
            b"",
            &m.w.agent,
            &Scheme::jwt(person.token.clone()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let rt = m.resource_token(&h);
    assert_eq!(rt.iss, id("https://resource.example"));
    assert_eq!(
        rt.aud,
        id("https://ps.example"),
        "three-party: aud is the person token's iss"
    );
    assert_eq!(rt.ps, id("https://ps.example"));
    assert_eq!(rt.sub, "person-42");
    assert_eq!(rt.presented_jti, person.jti);
    assert_eq!(rt.agent_jkt, m.w.agent.public_key().thumbprint().as_str());
    assert_eq!(rt.scope.as_deref(), Some("read"));
    assert_eq!(
        rt.mission_s256.as_deref(),
        Some(MISSION),
        "mission_s256 is never dropped"
    );
    assert_eq!(rt.tenant.as_deref(), Some("acme"));
    assert!(rt.exp - rt.iat <= 300 && rt.exp <= person.exp);
    assert_eq!(calls.calls(), 0);

    // The auth token granting the scope is admitted.
    let auth = Scheme::jwt(m.auth_token("read write").token);
    let (s, _, body) = send(&mut svc, signed("GET", "/doc", b"", &m.w.agent, &auth)).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "person https://ps.example person-42")
    );

    // One lacking it gets a step-up resource token derived from that auth token.
    let narrow = m.auth_token("write");
    let (s, h, _) = send(
        &mut svc,
        signed("GET", "/doc", b"", &m.w.agent, &Scheme::jwt(narrow.token)),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let rt = m.resource_token(&h);
    assert_eq!(
        (rt.presented_jti.as_str(), rt.sub.as_str()),
        (narrow.jti.as_str(), "person-42")
    );
    assert_eq!(rt.mission_s256.as_deref(), Some(MISSION));
    assert_eq!(calls.calls(), 1);
}

#[tokio::test]
async fn a_resource_that_knows_the_person_says_so_in_login_hint() {
    // Checklist RS-35: the resource token carries `login_hint` when the resource knows
    // who the authorization is for.
    let m = modes();
    let hints: Arc<aauth_resource::LoginHint> = Arc::new(|ps: &ServerId, sub: &str, _| {
        (ps.as_str() == "https://ps.example" && sub == "person-42")
            .then(|| "alice@corp.example".to_owned())
    });
    let resource =
        m.w.resource
            .clone()
            .resource_tokens(m.tokens().login_hints(hints));
    let calls = handler();
    let mut svc = m.service(
        &resource,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );
    let person = m.person_token();
    let (s, h, _) = send(
        &mut svc,
        signed("GET", "/doc", b"", &m.w.agent, &Scheme::jwt(person.token)),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        m.resource_token(&h).login_hint.as_deref(),
        Some("alice@corp.example")
    );
    // Without hints, none.
    let plain = m.w.resource.clone().resource_tokens(m.tokens());
    let mut svc = m.service(
        &plain,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );
    let (_, h, _) = send(
        &mut svc,
        signed(
            "GET",
            "/doc",
            b"",
            &m.w.agent,
            &Scheme::jwt(m.person_token().token),
        ),
    )
    .await;
    assert_eq!(m.resource_token(&h).login_hint, None);
}

#[tokio::test]
async fn a_revoked_auth_token_sends_the_agent_back_to_its_person_token() {
    let m = modes();
    let list = Arc::new(aauth_resource::MemoryRevocationList::new(60, 1000));
    let resource =
        m.w.resource
            .clone()
            .resource_tokens(m.tokens())
            .revocations(list.clone());
    let calls = handler();
    let mut svc = m.service(
        &resource,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );
    let (auth, person) = (m.auth_token("read"), m.person_token());
    let ps = id("https://ps.example");
    list.revoke(&ps, &auth.jti, auth.exp, NOW).unwrap();
    list.revoke(&ps, &person.jti, person.exp, NOW).unwrap();

    // Draft -11 §Revocation (checklist RS-43): `revoked_jwt`, and for an auth token
    // `requirement=person-token` beside it, never a resource token for the revoked grant.
    let (s, h, _) = send(
        &mut svc,
        signed("GET", "/doc", b"", &m.w.agent, &Scheme::jwt(auth.token)),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "signature-error"), "error=revoked_jwt");
    assert_eq!(header(&h, "aauth-requirement"), "requirement=person-token");
    // A revoked person token gets the error alone.
    let (s, h, _) = send(
        &mut svc,
        signed("GET", "/doc", b"", &m.w.agent, &Scheme::jwt(person.token)),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "signature-error"), "error=revoked_jwt");
    assert!(h.get("aauth-requirement").is_none(), "{h:?}");
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn auth_tokens_are_honoured_only_from_the_issuer_the_resource_trusts() {
    let m = modes();
    let calls = handler();
    // Three-party: a Person Server's auth token must have iss = ps.
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    let mut svc = m.service(
        &resource,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );
    let from_as = AuthTokenBuilder::new(
        AuthIssuer::AccessServer,
        id("https://as.example"),
        id("https://resource.example"),
        id("https://ps.example"),
        "person-42",
        m.w.agent.public_key(),
    )
    .scope("read")
    .sign(&m.as_key, "as-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, h, _) = send(
        &mut svc,
        signed(
            "GET",
            "/doc",
            b"",
            &m.w.agent,
            &Scheme::jwt(from_as.clone()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(h.get("signature-error").is_none());

    // Four-party: only the resource's Access Server; resource tokens are for it.
    let resource =
        m.w.resource
            .clone()
            .resource_tokens(m.tokens().access_server(id("https://as.example")));
    let mut svc = m.service(
        &resource,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );
    let (s, _, _) = send(
        &mut svc,
        signed("GET", "/doc", b"", &m.w.agent, &Scheme::jwt(from_as)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = send(
        &mut svc,
        signed(
            "GET",
            "/doc",
            b"",
            &m.w.agent,
            &Scheme::jwt(m.auth_token("read").token),
        ),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a PS-issued auth token where the AS decides"
    );
    let (_, h, _) = send(
        &mut svc,
        signed(
            "GET",
            "/doc",
            b"",
            &m.w.agent,
            &Scheme::jwt(m.person_token().token),
        ),
    )
    .await;
    assert_eq!(m.resource_token(&h).aud, id("https://as.example"));
    assert_eq!(calls.calls(), 1);
}

/// A resource that names the Person Servers it takes honours person tokens and
/// three-party auth tokens only from those: another one's, however well signed, is
/// refused (`403`) and never reaches the handler.
#[tokio::test]
async fn only_the_person_servers_a_resource_names_vouch_for_people_there() {
    let m = modes();
    let calls = handler();
    let send_as = |token: String| signed("GET", "/doc", b"", &m.w.agent, &Scheme::jwt(token));
    for (listed, admitted) in [
        ("https://other-ps.example", false),
        ("https://ps.example", true),
    ] {
        let resource =
            m.w.resource
                .clone()
                .resource_tokens(m.tokens().person_servers([id(listed)]));
        let mut auth = m.service(
            &resource,
            RoutePolicy::new(Access::AuthToken).scope("read"),
            &calls,
        );
        let mut person = m.service(&resource, RoutePolicy::new(Access::PersonToken), &calls);
        let before = calls.calls();
        let (s, _, body) = send(&mut auth, send_as(m.auth_token("read").token)).await;
        let (p, _, _) = send(&mut person, send_as(m.person_token().token)).await;
        if admitted {
            assert_eq!((s, p), (StatusCode::OK, StatusCode::OK), "{body}");
            assert_eq!(calls.calls(), before + 2);
        } else {
            assert_eq!(
                (s, p),
                (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
                "{body}"
            );
            assert!(body.contains("not accepted here"), "{body}");
            // Nor is a resource token minted for that Person Server to answer.
            let (s, h, _) = send(&mut auth, send_as(m.person_token().token)).await;
            assert_eq!(s, StatusCode::FORBIDDEN);
            assert!(h.get("aauth-requirement").is_none(), "{h:?}");
            assert_eq!(calls.calls(), before);
        }
    }
}

/// The two person keys of an Access Server's auth token: `person()` is `(ps, sub)`, the
/// same person as their person token names; `issuer_subject()` is the draft's `(iss,
/// sub)`, here the Access Server's.
#[tokio::test]
async fn an_access_servers_auth_token_names_the_person_two_ways() {
    let m = modes();
    let calls = aauth_test_support::service::Answering::new(|req| {
        req.extensions()
            .get::<aauth_resource::Admitted>()
            .map(|a| {
                let show = |p: Option<(&ServerId, &str)>| {
                    p.map(|(iss, sub)| format!("{} {sub}", iss.as_str()))
                        .unwrap_or_default()
                };
                format!("{} | {}", show(a.person()), show(a.issuer_subject()))
            })
            .unwrap_or_default()
    });
    let resource =
        m.w.resource
            .clone()
            .resource_tokens(m.tokens().access_server(id("https://as.example")));
    let mut svc = m.service(
        &resource,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );
    let from_as = AuthTokenBuilder::new(
        AuthIssuer::AccessServer,
        id("https://as.example"),
        id("https://resource.example"),
        id("https://ps.example"),
        "person-42",
        m.w.agent.public_key(),
    )
    .scope("read")
    .sign(&m.as_key, "as-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, _, body) = send(
        &mut svc,
        signed("GET", "/doc", b"", &m.w.agent, &Scheme::jwt(from_as)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        "https://ps.example person-42 | https://as.example person-42"
    );
}

#[tokio::test]
async fn an_auth_token_route_without_resource_tokens_or_scope_is_a_500() {
    let m = modes();
    let calls = handler();
    let person = Scheme::jwt(m.person_token().token);
    let mut svc = m.service(
        &m.w.resource,
        RoutePolicy::new(Access::AuthToken).scope("read"),
        &calls,
    );
    let (s, _, _) = send(&mut svc, signed("GET", "/doc", b"", &m.w.agent, &person)).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    let mut svc = m.service(&resource, RoutePolicy::new(Access::AuthToken), &calls);
    let (s, _, _) = send(&mut svc, signed("GET", "/doc", b"", &m.w.agent, &person)).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn the_authorization_endpoint_answers_a_resource_token_or_the_exact_error() {
    let m = modes();
    let resource = m
        .w
        .resource
        .clone()
        .resource_tokens(m.tokens().accounts(Arc::new(
            |iss: &ServerId, sub: &str, account: &str| {
                iss.as_str() == "https://ps.example" && sub == "person-42" && account == "acct-7"
            },
        )));
    let route = resource.route(RoutePolicy::new(Access::PersonToken));
    let person = m.person_token();
    let post = |body: &str, scheme: &Scheme| {
        let req = signed("POST", "/authorize", body.as_bytes(), &m.w.agent, scheme);
        let (parts, _) = req.into_parts();
        (parts, body.as_bytes().to_vec())
    };
    let answer = |resp: http::Response<bytes::Bytes>| {
        let status = resp.status();
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        (status, resp.headers().clone(), body)
    };
    let scheme = Scheme::jwt(person.token.clone());

    let (parts, body) = post(r#"{"scope":"read write","account":"acct-7"}"#, &scheme);
    let (s, h, json) = answer(route.authorization_response(&parts, &body, NOW).await);
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(header(&h, "cache-control"), "no-store");
    let token = json["resource_token"].as_str().unwrap();
    let rt = m.verify_resource_token(token);
    assert_eq!(rt.scope.as_deref(), Some("read write"));
    assert_eq!(rt.account.as_deref(), Some("acct-7"));
    assert_eq!(rt.presented_jti, person.jti);

    for (body, code) in [
        (r#"{"account":"acct-7"}"#, "invalid_request"),
        (r#"not json"#, "invalid_request"),
        (r#"{"scope":"admin"}"#, "invalid_scope"),
        (r#"{"scope":"read  write"}"#, "invalid_scope"),
        (r#"{"scope":""}"#, "invalid_scope"),
        (r#"{"scope":"read","account":"acct-8"}"#, "invalid_account"),
    ] {
        let (parts, b) = post(body, &scheme);
        let (s, _, json) = answer(route.authorization_response(&parts, &b, NOW).await);
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }

    // scope and account are read up to what a token's claims may carry (1024 bytes):
    // at the limit a scope of known values is granted, past it the request is invalid
    // before any scope or account check.
    let at_limit = format!("read{}", " read".repeat(204));
    assert_eq!(at_limit.len(), aauth_resource::MAX_AUTHORIZATION_PARAM);
    let (parts, b) = post(&format!(r#"{{"scope":"{at_limit}"}}"#), &scheme);
    let (s, _, json) = answer(route.authorization_response(&parts, &b, NOW).await);
    assert_eq!(s, StatusCode::OK, "{json}");
    let over_scope = format!(r#"{{"scope":"{at_limit} read"}}"#);
    let over_account = format!(r#"{{"scope":"read","account":"{}"}}"#, "a".repeat(1025));
    let account_at_limit = format!(r#"{{"scope":"read","account":"{}"}}"#, "a".repeat(1024));
    for (body, code) in [
        (&over_scope, "invalid_request"),
        (&over_account, "invalid_request"),
        (&account_at_limit, "invalid_account"),
    ] {
        let (parts, b) = post(body, &scheme);
        let (s, _, json) = answer(route.authorization_response(&parts, &b, NOW).await);
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{json}"
        );
    }

    // An agent token is not enough: requirement=person-token.
    let (parts, b) = post(r#"{"scope":"read"}"#, &Scheme::jwt(m.w.agent_token(3600)));
    let (s, h, _) = answer(route.authorization_response(&parts, &b, NOW).await);
    assert_eq!(
        (s, header(&h, "aauth-requirement").as_str()),
        (StatusCode::UNAUTHORIZED, "requirement=person-token")
    );

    // Without an account check, any account is refused.
    let plain =
        m.w.resource
            .clone()
            .resource_tokens(m.tokens())
            .route(RoutePolicy::new(Access::PersonToken));
    let (parts, b) = post(r#"{"scope":"read","account":"acct-7"}"#, &scheme);
    let (s, _, json) = answer(plain.authorization_response(&parts, &b, NOW).await);
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_account"))
    );
}

mod axum_extractors {
    use aauth_resource::{Authorization, Person};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower_service::Service;

    use super::*;

    async fn me(person: Person) -> String {
        format!(
            "{} {} {:?}",
            person.iss.as_str(),
            person.sub,
            person.mission_s256
        )
    }

    async fn doc(Authorization(auth): Authorization) -> String {
        format!("scope {}", auth.scope.unwrap_or_default())
    }

    async fn call(app: &mut axum::Router, req: http::Request<Full<Bytes>>) -> (StatusCode, String) {
        let resp = Service::call(app, req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn person_and_authorization_extractors() {
        let m = modes();
        let resource = m.w.resource.clone().resource_tokens(m.tokens());
        let clock: Arc<dyn aauth_keys::time::Clock> = fixed_clock();
        let layer = |p: RoutePolicy| AAuthLayer::new(resource.route(p), Arc::clone(&clock));
        let mut app = axum::Router::new()
            .route("/me", axum::routing::get(me).layer(layer(RoutePolicy::new(Access::PersonToken))))
            .route(
                "/doc",
                axum::routing::get(doc).layer(layer(RoutePolicy::new(Access::AuthToken).scope("read"))),
            )
            .route("/agent-me", axum::routing::get(me).layer(layer(RoutePolicy::new(Access::AgentToken))))
            // An agent-token route told to accept hwk as well: a bare key is still no agent.
            .route(
                "/agent-hwk",
                axum::routing::get(me).layer(layer(
                    RoutePolicy::new(Access::AgentToken).accept_schemes(&["jwt", "hwk"]),
                )),
            );
        let person = Scheme::jwt(m.person_token().token);
        assert_eq!(
            call(&mut app, signed("GET", "/me", b"", &m.w.agent, &person)).await,
            (
                StatusCode::OK,
                format!("https://ps.example person-42 Some({MISSION:?})")
            )
        );
        let auth = Scheme::jwt(m.auth_token("read").token);
        assert_eq!(
            call(&mut app, signed("GET", "/doc", b"", &m.w.agent, &auth)).await,
            (StatusCode::OK, "scope read".to_owned())
        );
        // An agent on a Person handler gets 403 from the extractor; a bare key on an
        // agent-token route that accepts hwk is still asked for an agent token (401).
        let agent = Scheme::jwt(m.w.agent_token(3600));
        assert_eq!(
            call(
                &mut app,
                signed("GET", "/agent-me", b"", &m.w.agent, &agent)
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        let hwk = aauth_signing::hwk_scheme(m.w.agent.public_key());
        let (s, _) = call(&mut app, signed("GET", "/agent-hwk", b"", &m.w.agent, &hwk)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
}

/// Answers revocation requests from a script and records where they went.
#[derive(Default)]
struct Recipients {
    answers: std::sync::Mutex<std::collections::VecDeque<http::Response<bytes::Bytes>>>,
    seen: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl aauth_metadata::Transport for Recipients {
    async fn send(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, aauth_metadata::TransportError> {
        self.seen
            .lock()
            .unwrap()
            .push((req.method().to_string(), req.uri().to_string()));
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| aauth_metadata::TransportError::new("nothing scripted"))
    }
}

fn doc(body: &str) -> http::Response<bytes::Bytes> {
    http::Response::new(bytes::Bytes::from(body.to_owned()))
}

/// Checklist RS-62: a resource revokes its resource token at its `aud`, and in
/// four-party at the `ps` as well, signed as the resource.
#[tokio::test]
async fn a_resource_revokes_its_resource_tokens_where_they_could_be_redeemed() {
    let m = modes();
    let ps_doc = r#"{"issuer":"https://ps.example","jwks_uri":"https://ps.example/j","auth_token_endpoint":"https://ps.example/a","person_token_endpoint":"https://ps.example/p","revocation_endpoint":"https://ps.example/revocation"}"#;
    let as_doc = r#"{"issuer":"https://as.example","jwks_uri":"https://as.example/j","auth_token_endpoint":"https://as.example/a","revocation_endpoint":"https://as.example/revocation"}"#;
    let tokens = m.tokens();
    for (aud, script, expected) in [
        (
            "https://ps.example",
            vec![doc(ps_doc), doc("")],
            vec!["POST https://ps.example/revocation"],
        ),
        (
            "https://as.example",
            vec![doc(as_doc), doc(""), doc(ps_doc), doc("")],
            vec![
                "POST https://as.example/revocation",
                "POST https://ps.example/revocation",
            ],
        ),
    ] {
        let transport = Arc::new(Recipients {
            answers: std::sync::Mutex::new(script.into()),
            seen: std::sync::Mutex::default(),
        });
        let revoker = tokens.revoker(
            &id("https://resource.example"),
            Arc::clone(&transport) as Arc<dyn aauth_metadata::Transport>,
        );
        let minted = aauth_tokens::ResourceTokenBuilder::new(
            id("https://resource.example"),
            id(aud),
            id("https://ps.example"),
            "person-42",
            "pt-1",
            m.w.agent.public_key(),
            "read",
        )
        .sign(m.rs_key.as_ref(), "rs-1", NOW, &mut OsRandom)
        .unwrap();
        let claims = m.verify_resource_token(&minted.token);
        tokens.revoke(&revoker, &claims, NOW).await.unwrap();
        let posts: Vec<String> = transport
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(method, _)| method == "POST")
            .map(|(method, uri)| format!("{method} {uri}"))
            .collect();
        assert_eq!(posts, expected, "{aud}");
    }
}

/// Every refusal's body names its `error`, the member draft -11 requires of every AAuth
/// error body and tells receivers to proceed from (§Error Response Format).
#[test]
fn every_refusal_names_its_error() {
    use aauth_resource::Refusal;
    let refusals = [
        Refusal::Unsigned {
            requirement: Requirement::AgentToken,
        },
        Refusal::Challenge {
            requirement: Requirement::PersonToken,
        },
        Refusal::Invalid {
            error: "invalid_request",
            detail: "x".to_owned(),
        },
        Refusal::Forbidden {
            detail: "x".to_owned(),
        },
        Refusal::TooLarge { limit: 1 },
        Refusal::UnreadableBody {
            reason: "x".to_owned(),
        },
        Refusal::BodyTimedOut {
            reason: "x".to_owned(),
        },
        Refusal::BadCredential {
            reason: "x".to_owned(),
        },
        Refusal::SessionStoreUnavailable {
            reason: "x".to_owned(),
        },
        Refusal::Misconfigured {
            detail: "x".to_owned(),
        },
    ];
    for refusal in refusals {
        let name = format!("{refusal:?}");
        let resp = refusal.into_http_response();
        let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        let error = json["error"].as_str().unwrap_or_default();
        assert!(
            !error.is_empty() && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}: {json}"
        );
        assert_eq!(json["status"], resp.status().as_u16(), "{name}");
    }
}

/// A body whose reader's deadline passed (an `io::Error` of kind `TimedOut`, as `aauth
/// serve`'s `body_timeout_secs` ends one) is answered `408`, not `400`; nothing reaches
/// the handler.
#[tokio::test]
async fn a_body_that_timed_out_is_answered_408() {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower_service::Service as _;

    /// A body that never arrives: its first frame is the deadline's error.
    struct TimedOut;

    impl http_body::Body for TimedOut {
        type Data = bytes::Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
            Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the body did not arrive within 1 s",
            ))))
        }
    }

    let w = crate::world();
    let calls = handler();
    let mut svc = AAuthLayer::new(
        w.resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .layer(calls.clone());
    // Signed (an unsigned request is answered before its body is read).
    let agent = Scheme::jwt(w.agent_token(3600));
    let (parts, _) = signed("POST", "/data", b"{}", &w.agent, &agent).into_parts();
    let resp = svc
        .call(http::Request::from_parts(parts, TimedOut))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(calls.calls(), 0);
}
