//! The demo world: real HTTPS servers on loopback under spec-valid identifiers, reached
//! through exactly the world's names; discovery and verification run over it unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use aauth_demos::world::{World, documents};
use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{FixedClock, UnixTime};
use aauth_keys::{JwkSet, PrivateKey};
use aauth_metadata::{
    AccessServerMetadata, AgentProviderMetadata, CacheConfig, EgressError, Fetch, FetchError,
    FetchLimits, GuardedFetch, HttpsTransport, HttpsUrl, KeyCache, MetadataDocument,
    PersonServerMetadata, ResourceMetadata,
};
use aauth_signing::{
    JwtResolver, KeyIdentity, SchemeResolver, Verifier, VerifyPolicy, sign_request,
};
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId, TokenType};

const NOW: UnixTime = UnixTime(1_800_000_000);

fn id(s: &str) -> ServerId {
    ServerId::parse(s).unwrap()
}

fn url(s: &str) -> HttpsUrl {
    HttpsUrl::parse(s).unwrap()
}

/// The four parties, each serving its metadata document (and the provider its JWKS).
async fn world(provider_key: &PrivateKey) -> World {
    let w = World::new().unwrap();
    let mut jwk = provider_key.public_key().to_jwk();
    jwk.kid = Some("key-1".to_owned());
    let ap = AgentProviderMetadata::new(
        id("https://agent.example"),
        url("https://agent.example/jwks.json"),
    );
    let ps = PersonServerMetadata::new(
        id("https://ps.example"),
        url("https://ps.example/jwks.json"),
        HttpsUrl::endpoint("https://ps.example/token").unwrap(),
        HttpsUrl::endpoint("https://ps.example/person").unwrap(),
    );
    let r#as = AccessServerMetadata::new(
        id("https://as.example"),
        url("https://as.example/jwks.json"),
        HttpsUrl::endpoint("https://as.example/token").unwrap(),
    );
    let rs = ResourceMetadata::new(id("https://resource.example"));
    let docs = |doc: (&str, String), extra: Option<(&str, String)>| {
        let mut m = BTreeMap::from([(format!("/.well-known/{}", doc.0), doc.1)]);
        if let Some((p, b)) = extra {
            m.insert(p.to_owned(), b);
        }
        documents(m)
    };
    w.serve(
        &id("https://agent.example"),
        docs(
            (AgentProviderMetadata::DWK, ap.to_json()),
            Some(("/jwks.json", JwkSet::from_jwks(&[jwk]).to_json())),
        ),
    )
    .await
    .unwrap();
    w.serve(
        &id("https://ps.example"),
        docs((PersonServerMetadata::DWK, ps.to_json()), None),
    )
    .await
    .unwrap();
    w.serve(
        &id("https://as.example"),
        docs((AccessServerMetadata::DWK, r#as.to_json()), None),
    )
    .await
    .unwrap();
    w.serve(
        &id("https://resource.example"),
        docs((ResourceMetadata::DWK, rs.to_json()), None),
    )
    .await
    .unwrap();
    w
}

#[tokio::test]
async fn every_party_is_reachable_by_its_identifier_over_verified_tls() {
    let w = world(&PrivateKey::ed25519_from_seed(&[1; 32])).await;
    let fetch = w.fetcher();
    for (party, dwk) in [
        ("https://agent.example", AgentProviderMetadata::DWK),
        ("https://ps.example", PersonServerMetadata::DWK),
        ("https://as.example", AccessServerMetadata::DWK),
        ("https://resource.example", ResourceMetadata::DWK),
    ] {
        let doc = fetch
            .get(&HttpsUrl::well_known(&id(party), dwk).unwrap())
            .await
            .unwrap();
        assert_eq!(doc.status, 200, "{party}");
        let issuer: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
        assert_eq!(issuer["issuer"], party);
    }
    // Typed discovery: the Person Server's endpoints, checked against its identifier.
    let ps: PersonServerMetadata = aauth_metadata::discover(&fetch, &id("https://ps.example"))
        .await
        .unwrap();
    assert_eq!(
        ps.person_token_endpoint.as_str(),
        "https://ps.example/person"
    );
    // Asking ps.example for the Access Server document: not served there.
    let err = aauth_metadata::discover::<AccessServerMetadata>(&fetch, &id("https://ps.example"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            aauth_metadata::DiscoveryError::Fetch {
                error: FetchError::Status { status: 404, .. },
                ..
            }
        ),
        "{err:?}"
    );
    // Each server answers only for its own name: its certificate names it alone.
    let names = w.names();
    assert_eq!(names.len(), 4);
    assert!(names.values().all(|a| a.ip().is_loopback()));
}

#[tokio::test]
async fn the_egress_allow_list_names_exactly_the_world() {
    let w = world(&PrivateKey::ed25519_from_seed(&[1; 32])).await;
    let policy = w.egress_policy();
    for host in [
        "agent.example",
        "ps.example",
        "as.example",
        "resource.example",
    ] {
        assert!(policy.is_allowed_host(host), "{host}");
    }
    for host in [
        "evil.example",
        "localhost",
        "example",
        "agent.example.evil.example",
    ] {
        assert!(!policy.is_allowed_host(host), "{host}");
    }
    // A name outside the world resolves nowhere and is never connected.
    let err = w
        .fetcher()
        .get(&url("https://evil.example/jwks.json"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        FetchError::Egress(EgressError::NoAddress {
            host: "evil.example".to_owned()
        })
    );
    // Without the allow-list the world's loopback sockets are refused like any other.
    let strict = GuardedFetch::new(
        aauth_metadata::EgressPolicy::new(),
        w.resolver(),
        w.transport(),
        FetchLimits::default(),
    );
    assert!(matches!(
        strict
            .get(&url("https://ps.example/.well-known/aauth-person.json"))
            .await
            .unwrap_err(),
        FetchError::Egress(EgressError::SpecialAddress {
            range: "loopback",
            ..
        })
    ));
    // And a client that does not trust the world's CA cannot talk to it.
    let untrusting = GuardedFetch::new(
        w.egress_policy(),
        w.resolver(),
        Arc::new(HttpsTransport::with_webpki_roots()),
        FetchLimits::default(),
    );
    assert!(matches!(
        untrusting.get(&url("https://ps.example/.well-known/aauth-person.json")).await.unwrap_err(),
        FetchError::Transport(m) if m.contains("TLS")
    ));
}

#[tokio::test]
async fn a_resource_verifies_an_agent_with_keys_discovered_in_the_world() {
    let provider_key = PrivateKey::ed25519_from_seed(&[1; 32]);
    let w = world(&provider_key).await;
    let agent_key = PrivateKey::ed25519_from_seed(&[2; 32]);
    let token = AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent_key.public_key(),
    )
    .person_server(id("https://ps.example"))
    .sign(&provider_key, "key-1", NOW, &mut OsRandom)
    .unwrap();
    let mut req = http::Request::get("https://resource.example/api/documents")
        .body(Vec::new())
        .unwrap();
    sign_request(&mut req, &agent_key, &Scheme::jwt(token.token), NOW).unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/api/documents".parse().unwrap();
    parts
        .headers
        .insert("host", "resource.example".parse().unwrap());

    let cache = Arc::new(KeyCache::new(
        Arc::new(w.fetcher()),
        Arc::new(FixedClock::new(NOW)),
        CacheConfig::default(),
    ));
    let verifier = Verifier::new(
        VerifyPolicy::default(),
        Arc::new(SchemeResolver::new().jwt(JwtResolver::new(cache.clone(), &[TokenType::Agent]))),
    );
    let verified = verifier.verify(&parts, &body, NOW).await.unwrap();
    assert_eq!(&verified.key, agent_key.public_key());
    match verified.identity {
        KeyIdentity::Token(t) => match *t {
            aauth_tokens::BoundToken::Agent(a) => {
                assert_eq!(a.claims.sub.as_str(), "aauth:assistant@agent.example");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    let stats = cache.stats();
    assert_eq!((stats.fetches, stats.failures), (1, 0));
}

/// The two-party (session-token) flow over real TLS: the agent authenticates with its agent
/// token at the resource's own authorization step, gets `AAuth-Access`, presents it as
/// `Authorization: AAuth` (covered by its signature), and follows each rolled token.
#[tokio::test]
async fn two_party_session_flow_over_tls() {
    use aauth_resource::{
        AAuthLayer, Access, Admitted, MemorySessionStore, Resource, RoutePolicy, SessionStore,
    };
    use aauth_tokens::StaticIssuerKeys;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower_layer::Layer;
    use tower_service::Service;

    #[derive(Clone)]
    struct Data;
    impl Service<http::Request<Full<Bytes>>> for Data {
        type Response = http::Response<Full<Bytes>>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
            let a = req.extensions().get::<Admitted>().cloned();
            let scope = a
                .as_ref()
                .and_then(|a| a.session.as_ref())
                .and_then(|s| s.scope.clone())
                .unwrap_or_default();
            std::future::ready(Ok(http::Response::new(Full::new(Bytes::from(format!(
                "data for scope {scope}"
            ))))))
        }
    }

    let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
    let agent = PrivateKey::ed25519_from_seed(&[2; 32]);
    let clock = aauth_keys::time::SystemClock;
    let now = aauth_keys::time::Clock::now(&clock);
    let iss = id("https://agent.example");
    let keys = StaticIssuerKeys::new().with(
        &iss,
        "aauth-agent.json",
        "key-1",
        provider.public_key().clone(),
    );
    let resource = Resource::new(id("https://resource.example"), Arc::new(keys));
    let store: Arc<dyn SessionStore> = Arc::new(MemorySessionStore::new(100));
    let authorize = resource
        .route(RoutePolicy::new(Access::AgentToken))
        .sessions(Arc::clone(&store), false);
    let data = AAuthLayer::new(
        resource
            .route(RoutePolicy::new(Access::SessionToken))
            .sessions(store, true),
        Arc::new(clock),
    )
    .layer(Data);

    let w = World::new().unwrap();
    let handler: aauth_demos::world::AsyncHandler =
        Arc::new(move |req: aauth_demos::world::Request| {
            let (authorize, mut data) = (authorize.clone(), data.clone());
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let now = aauth_keys::time::Clock::now(&aauth_keys::time::SystemClock);
                if parts.uri.path() == "/authorize" {
                    let resp = match authorize.check(&parts, &body, now).await {
                        Ok(admitted) => match authorize
                            .issue_session(&admitted, Some("data.read".to_owned()), 3600, now)
                            .await
                        {
                            Ok(token) => http::Response::builder()
                                .header("aauth-access", token.secret())
                                .body(br#"{"status":"authorized","scope":"data.read"}"#.to_vec())
                                .unwrap(),
                            Err(r) => r.into_http_response().map(|b| b.to_vec()),
                        },
                        Err(r) => r.into_http_response().map(|b| b.to_vec()),
                    };
                    return resp;
                }
                let resp = data
                    .call(http::Request::from_parts(
                        parts,
                        Full::new(Bytes::from(body)),
                    ))
                    .await
                    .unwrap();
                let (parts, body) = resp.into_parts();
                http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes().to_vec())
            })
        });
    w.serve_async(&id("https://resource.example"), handler)
        .await
        .unwrap();

    let token = AgentTokenBuilder::new(
        iss,
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent.public_key(),
    )
    .sign(&provider, "key-1", now, &mut OsRandom)
    .unwrap()
    .token;
    // 1. Authorize: POST with a body (digest covered), agent token.
    let mut req = http::Request::post("https://resource.example/authorize")
        .header("content-type", "application/json")
        .body(br#"{"scope":"data.read"}"#.to_vec())
        .unwrap();
    sign_request(&mut req, &agent, &Scheme::jwt(token.clone()), now).unwrap();
    let resp = w.send(req).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    let mut session = resp.headers()["aauth-access"].to_str().unwrap().to_owned();
    // 2–4. Use the session; each answer rolls it, and the agent follows.
    for _ in 0..3 {
        let mut req = http::Request::get("https://resource.example/data")
            .header("authorization", format!("AAuth {session}"))
            .body(Vec::new())
            .unwrap();
        sign_request(
            &mut req,
            &agent,
            &Scheme::jwt(token.clone()),
            aauth_keys::time::Clock::now(&clock),
        )
        .unwrap();
        assert!(
            req.headers()["signature-input"]
                .to_str()
                .unwrap()
                .contains("\"authorization\"")
        );
        let resp = w.send(req).await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{}",
            String::from_utf8_lossy(resp.body())
        );
        assert_eq!(resp.body().as_slice(), b"data for scope data.read");
        let next = resp.headers()["aauth-access"].to_str().unwrap().to_owned();
        assert_ne!(next, session);
        session = next;
    }
}
