//! The demo world: real HTTPS servers on loopback under spec-valid identifiers, reached
//! through exactly the world's names; discovery and verification run over it unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use aauth_demos::world::{World, documents};
use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::{JwkSet, PrivateKey};
use aauth_metadata::{
    AccessServerMetadata, AgentProviderMetadata, CacheConfig, EgressError, Fetch, FetchError,
    FetchLimits, GuardedFetch, HttpsTransport, HttpsUrl, KeyCache, MetadataDocument,
    PersonServerMetadata, ResourceMetadata,
};
use aauth_signing::{KeyIdentity, VerifyPolicy, sign_request};
use aauth_test_support::provider::Enrolled;
use aauth_test_support::service::Answering;
use aauth_test_support::stand_in::StandInPs;
use aauth_test_support::time::fixed_clock;
use aauth_test_support::verify::{agent_verifier, issuer_keys};
use aauth_test_support::{NOW, id, tokens, url};
use aauth_tokens::{AgentId, AgentTokenBuilder};

/// A world request through a tower service (a resource's layered API): its answer with
/// the body collected.
async fn through<S, B>(
    svc: &mut S,
    parts: http::request::Parts,
    body: Vec<u8>,
) -> aauth_demos::world::Response
where
    S: tower_service::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<B>,
        >,
    S::Error: std::fmt::Debug,
    B: http_body_util::BodyExt,
    B::Error: std::fmt::Debug,
{
    let resp = svc
        .call(http::Request::from_parts(
            parts,
            http_body_util::Full::new(bytes::Bytes::from(body)),
        ))
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes().to_vec())
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
    let token = tokens::assistant(agent_key.public_key())
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
        fixed_clock(),
        CacheConfig::default(),
    ));
    let verifier = agent_verifier(
        VerifyPolicy::for_server(&id("https://resource.example")),
        cache.clone(),
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
    use tower_layer::Layer;

    let data = Answering::new(|req| {
        let scope = req
            .extensions()
            .get::<Admitted>()
            .and_then(|a| a.session.as_ref())
            .and_then(|s| s.scope.clone())
            .unwrap_or_default();
        format!("data for scope {scope}")
    });

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
    .layer(data);

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
                through(&mut data, parts, body).await
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

/// The three-party flow over TLS with every key discovered from what each party
/// publishes: the agent's client gets its token from the provider, meets
/// `requirement=person-token` and then `requirement=auth-token`, verifies the resource
/// token under the resource's published JWKS (AG-22) before the Person Server sees it,
/// and the resource verifies the auth token under the Person Server's published JWKS.
#[tokio::test]
async fn three_party_flow_over_tls_with_published_keys() {
    use aauth_agent::{AAuthClient, Agent, HttpTokenSource};
    use aauth_metadata::Published;
    use aauth_resource::{AAuthLayer, Access, Admitted, Resource, ResourceTokens, RoutePolicy};
    use bytes::Bytes;
    use tower_layer::Layer;

    let doc = Answering::new(|req| {
        req.extensions()
            .get::<Admitted>()
            .and_then(|a| {
                a.person()
                    .map(|(iss, sub)| format!("{} {sub} {:?}", iss.as_str(), a.scope()))
            })
            .unwrap_or_default()
    });

    let clock: Arc<dyn aauth_keys::time::Clock> = Arc::new(aauth_keys::time::SystemClock);
    let w = World::new().unwrap();
    let published = |key: &PrivateKey, kid: &str, doc: Published| {
        let mut jwk = key.public_key().to_jwk();
        jwk.kid = Some(kid.to_owned());
        doc.jwks("/jwks.json", &JwkSet::from_jwks(&[jwk]))
    };
    let serve_published = |p: Published| -> aauth_demos::world::AsyncHandler {
        Arc::new(move |req: aauth_demos::world::Request| {
            let resp = p.respond(req.method(), req.uri().path()).map_or_else(
                || {
                    http::Response::builder()
                        .status(404)
                        .body(Vec::new())
                        .unwrap()
                },
                |r| r.map(|b| b.to_vec()),
            );
            Box::pin(async move { resp })
        })
    };

    // The Person Server publishes its document and keys.
    let ps_key = PrivateKey::ed25519_from_seed(&[11; 32]);
    let ps_doc = PersonServerMetadata::new(
        id("https://ps.example"),
        url("https://ps.example/jwks.json"),
        HttpsUrl::endpoint("https://ps.example/token").unwrap(),
        HttpsUrl::endpoint("https://ps.example/person").unwrap(),
    );
    w.serve_async(
        &id("https://ps.example"),
        serve_published(published(&ps_key, "ps-1", Published::new(&ps_doc))),
    )
    .await
    .unwrap();

    // The agent provider.
    let Enrolled {
        provider,
        agent_id,
        agent_key,
        ..
    } = Enrolled::new(12, 13, Some("https://ps.example"));
    let p = Arc::clone(&provider);
    let c = Arc::clone(&clock);
    w.serve_async(
        &id("https://agent.example"),
        aauth_demos::world::provider_handler(p, c),
    )
    .await
    .unwrap();

    // The resource: metadata and JWKS published, an auth-token route, keys discovered.
    let rs_key = Arc::new(PrivateKey::ed25519_from_seed(&[14; 32]));
    let mut rs_doc = ResourceMetadata::new(id("https://resource.example"));
    rs_doc.common.jwks_uri = Some(url("https://resource.example/jwks.json"));
    rs_doc.access_mode = Some(aauth_metadata::AccessMode::AuthToken);
    let rs_published = published(&rs_key, "rs-1", Published::new(&rs_doc));
    let resource_keys = Arc::new(KeyCache::new(
        Arc::new(w.fetcher()),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let resource = Resource::new(id("https://resource.example"), resource_keys.clone())
        .resource_tokens(ResourceTokens::new(rs_key.clone(), "rs-1"));
    let svc = AAuthLayer::new(
        resource.route(RoutePolicy::new(Access::AuthToken).scope("docs.read")),
        Arc::clone(&clock),
    )
    .layer(doc);
    w.serve_async(
        &id("https://resource.example"),
        Arc::new(move |req: aauth_demos::world::Request| {
            let mut svc = svc.clone();
            let doc = rs_published.respond(req.method(), req.uri().path());
            Box::pin(async move {
                if let Some(doc) = doc {
                    return doc.map(|b| b.to_vec());
                }
                let (parts, body) = req.into_parts();
                through(&mut svc, parts, body).await
            })
        }),
    )
    .await
    .unwrap();

    // The agent: its HTTPS client into the world, a key cache for what it must verify.
    let transport = w.agent_transport();
    let agent_keys = Arc::new(KeyCache::new(
        Arc::new(w.fetcher()),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let agent = Arc::new(Agent::new(
        agent_id,
        agent_key,
        Arc::new(HttpTokenSource::new(
            id("https://agent.example"),
            transport.clone(),
        )),
    ));
    // Issues person and auth tokens as a Person Server would (its HTTP side is the
    // Person Server issue's).
    let stand_in = Arc::new(StandInPs::new(
        Arc::new(ps_key),
        rs_key.public_key().clone(),
        Arc::clone(&clock),
    ));
    let client = AAuthClient::builder(agent)
        .clock(Arc::clone(&clock))
        .person_server(stand_in, agent_keys.clone())
        .build(transport.clone());

    let resp = client
        .send(
            http::Request::get("https://resource.example/docs/1")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_ref()),
        (
            200,
            br#"https://ps.example person-1 Some("docs.read")"#.as_ref()
        )
    );
    let steps: Vec<String> = transport
        .take()
        .iter()
        .map(|(q, r)| format!("{} {} {}", q.method(), q.uri().path(), r.status().as_u16()))
        .collect();
    assert_eq!(
        steps,
        [
            "POST /agent-token 200",
            "GET /docs/1 401",
            "GET /docs/1 401",
            "GET /docs/1 200"
        ]
    );
    // The agent discovered the resource's keys (AG-22) and the Person Server's (the
    // tokens it received); the resource discovered the provider's and the PS's.
    assert_eq!(agent_keys.stats().fetches, 2, "{:?}", agent_keys.stats());
    assert_eq!(
        resource_keys.stats().fetches,
        2,
        "{:?}",
        resource_keys.stats()
    );
}

/// The reqwest adapter carries the agent over real TLS, and never follows a redirect
/// (which would take the request's `Signature-Key`, and the agent token in it, along).
#[tokio::test]
async fn the_reqwest_adapter_signs_over_tls_and_follows_no_redirect() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aauth_agent::{AAuthClient, Agent, ReqwestTransport};
    use aauth_resource::{AAuthLayer, Access, Admitted, Resource, RoutePolicy};
    use bytes::Bytes;
    use tower_layer::Layer;

    let named = Answering::new(|req| {
        req.extensions()
            .get::<Admitted>()
            .and_then(|a| a.agent().map(|i| i.as_str().to_owned()))
            .unwrap_or_default()
    });

    let clock: Arc<dyn aauth_keys::time::Clock> = Arc::new(aauth_keys::time::SystemClock);
    let Enrolled {
        provider,
        provider_key,
        agent_id,
        agent_key,
    } = Enrolled::new(21, 22, None);
    let keys = issuer_keys(&[(
        "https://agent.example",
        "aauth-agent.json",
        "key-1",
        provider_key.public_key(),
    )]);
    let svc = AAuthLayer::new(
        Resource::new(id("https://resource.example"), Arc::new(keys))
            .route(RoutePolicy::new(Access::AgentToken)),
        Arc::clone(&clock),
    )
    .layer(named);

    let w = World::new().unwrap();
    w.serve_async(
        &id("https://resource.example"),
        Arc::new(move |req: aauth_demos::world::Request| {
            let mut svc = svc.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                through(&mut svc, parts, body).await
            })
        }),
    )
    .await
    .unwrap();
    w.serve(
        &id("https://redirector.example"),
        Arc::new(|_| {
            http::Response::builder()
                .status(302)
                .header("location", "https://evil.example/steal")
                .body(Vec::new())
                .unwrap()
        }),
    )
    .await
    .unwrap();
    let stolen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&stolen);
    w.serve(
        &id("https://evil.example"),
        Arc::new(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
            http::Response::new(Vec::new())
        }),
    )
    .await
    .unwrap();

    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(w.roots())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut builder = reqwest::Client::builder().tls_backend_preconfigured(config);
    for (host, addr) in w.names() {
        builder = builder.resolve(&host, addr);
    }
    let transport = Arc::new(ReqwestTransport::new(builder).unwrap());
    let client = AAuthClient::builder(Arc::new(Agent::new(agent_id, agent_key, provider)))
        .clock(clock)
        .build(transport);

    let resp = client
        .send(
            http::Request::get("https://resource.example/data")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_ref()),
        (200, b"aauth:assistant@agent.example".as_ref())
    );
    let resp = client
        .send(
            http::Request::get("https://redirector.example/x")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302, "handed back, not followed");
    assert_eq!(stolen.load(Ordering::SeqCst), 0);
}

/// The agent's governance calls over TLS: a mission, a permission, an audit record, and a
/// question a Person Server without a channel to the person cannot ask.
#[tokio::test]
async fn governance_calls_over_tls() {
    use aauth_agent::{Agent, AgentError, HttpPersonServer, HttpTokenSource, Permission};
    use aauth_person_server::{MemoryStore, PersonServer};

    let clock: Arc<dyn aauth_keys::time::Clock> = Arc::new(aauth_keys::time::SystemClock);
    let w = World::new().unwrap();
    let Enrolled {
        provider,
        agent_id,
        agent_key,
        ..
    } = Enrolled::new(41, 42, None);
    let p = Arc::clone(&provider);
    let c = Arc::clone(&clock);
    w.serve_async(
        &id("https://agent.example"),
        aauth_demos::world::provider_handler(p, c),
    )
    .await
    .unwrap();
    let keys = Arc::new(KeyCache::new(
        Arc::new(w.fetcher_allowing(&["agent.example"])),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let ps = Arc::new(
        PersonServer::new(
            id("https://ps.example"),
            Arc::new(PrivateKey::ed25519_from_seed(&[43; 32])),
            "ps-1",
            keys,
            Arc::new(MemoryStore::default()),
            [1; 32],
        )
        .unwrap()
        .policy(Arc::new(aauth_person_server::dangerous::AutoApprove)),
    );
    ps.store()
        .bind(&id("https://agent.example"), &agent_id, "alice")
        .await
        .unwrap();
    let ps2 = Arc::clone(&ps);
    let c = Arc::clone(&clock);
    w.serve_async(
        &id("https://ps.example"),
        aauth_demos::world::ps_handler(ps2, c),
    )
    .await
    .unwrap();
    let transport = w.agent_transport();
    let agent = Agent::new(
        agent_id,
        agent_key,
        Arc::new(HttpTokenSource::new(
            id("https://agent.example"),
            transport.clone(),
        )),
    );
    let client = HttpPersonServer::new(id("https://ps.example"), transport.clone()).clock(clock);
    let mission = client
        .propose_mission(
            &agent,
            serde_json::json!({"description": "tidy files", "tools": [{"name": "MoveFile"}]}),
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .permission(&agent, "MoveFile", None, Some(&mission.s256))
            .await
            .unwrap(),
        Permission::Granted
    );
    client
        .audit(&agent, &mission.s256, "MoveFile", Some("moved 3 files"))
        .await
        .unwrap();
    let log = ps
        .store()
        .mission(&mission.s256)
        .await
        .unwrap()
        .unwrap()
        .into_log();
    assert_eq!(log.last().map(|e| e.event.as_str()), Some("audit"));
    match client.ask(&agent, "Keep the duplicates?").await {
        Err(AgentError::PersonServer { status, error }) => {
            assert_eq!((status.as_u16(), error.as_str()), (403, "user_unreachable"));
        }
        other => panic!("{other:?}"),
    }
    // A terminated mission refuses audit records.
    ps.terminate_mission(
        &mission.s256,
        aauth_person_server::TerminationReason::Revoked,
        aauth_keys::time::Clock::now(&aauth_keys::time::SystemClock),
    )
    .await
    .unwrap();
    match client.audit(&agent, &mission.s256, "MoveFile", None).await {
        Err(AgentError::PersonServer { status, error }) => assert_eq!(
            (status.as_u16(), error.as_str()),
            (403, "mission_terminated")
        ),
        other => panic!("{other:?}"),
    }
}

/// Revocation end to end over TLS: the provider revokes the agent token at the Person
/// Server, which revokes the person and auth tokens it issued to that agent and tells the
/// resource; the agent's cached auth token is refused there at once with `revoked_jwt`.
#[tokio::test]
async fn an_agent_token_revocation_reaches_the_resource() {
    use aauth_agent::{AAuthClient, Agent, HttpPersonServer, HttpTokenSource};
    use aauth_metadata::{DiscoveryResolver, Published};
    use aauth_person_server::{HttpRevocationNotifier, MemoryStore, PersonServer};
    use aauth_resource::{
        AAuthLayer, Access, MemoryRevocationList, Resource, ResourceTokens, RevocationEndpoint,
        RoutePolicy,
    };
    use bytes::Bytes;
    use tower_layer::Layer;

    let ok = Answering::new(|_| "ok".to_owned());

    let clock: Arc<dyn aauth_keys::time::Clock> = Arc::new(aauth_keys::time::SystemClock);
    let w = World::new().unwrap();
    let Enrolled {
        provider,
        provider_key: _,
        agent_id,
        agent_key,
    } = Enrolled::new(51, 52, Some("https://ps.example"));
    w.serve_async(
        &id("https://agent.example"),
        aauth_demos::world::provider_handler(Arc::clone(&provider), Arc::clone(&clock)),
    )
    .await
    .unwrap();

    // The Person Server: takes revocations from the provider, tells resources.
    let ps_key = Arc::new(PrivateKey::ed25519_from_seed(&[53; 32]));
    let ps_keys = Arc::new(KeyCache::new(
        Arc::new(w.fetcher_allowing(&["agent.example", "resource.example"])),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let ps_out = w.agent_transport_allowing(&["resource.example"]);
    let notifier = HttpRevocationNotifier::new(
        id("https://ps.example"),
        ps_key.clone(),
        "ps-1",
        ps_out.clone(),
        Arc::clone(&clock),
    );
    let ps = Arc::new(
        PersonServer::new(
            id("https://ps.example"),
            ps_key,
            "ps-1",
            ps_keys,
            Arc::new(MemoryStore::default()),
            [5; 32],
        )
        .unwrap()
        .policy(Arc::new(aauth_person_server::dangerous::AutoApprove))
        .revoking_providers([id("https://agent.example")])
        .revocation_notifier(Arc::new(notifier)),
    );
    ps.store()
        .bind(&id("https://agent.example"), &agent_id, "alice")
        .await
        .unwrap();
    w.serve_async(
        &id("https://ps.example"),
        aauth_demos::world::ps_handler(Arc::clone(&ps), Arc::clone(&clock)),
    )
    .await
    .unwrap();

    // The resource: auth-token API, a revocation endpoint trusting the Person Server.
    let rs_key = Arc::new(PrivateKey::ed25519_from_seed(&[54; 32]));
    let mut doc = ResourceMetadata::new(id("https://resource.example"));
    doc.common.jwks_uri = Some(url("https://resource.example/jwks.json"));
    doc.revocation_endpoint = Some(HttpsUrl::endpoint("https://resource.example/revoke").unwrap());
    let mut jwk = rs_key.public_key().to_jwk();
    jwk.kid = Some("rs-1".to_owned());
    let published = Published::new(&doc).jwks("/jwks.json", &JwkSet::from_jwks(&[jwk]));
    let rs_keys = Arc::new(KeyCache::new(
        Arc::new(w.fetcher_allowing(&["agent.example", "ps.example"])),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let list = Arc::new(MemoryRevocationList::new(60, 10_000));
    let revoke_at = Arc::new(RevocationEndpoint::new(
        &id("https://resource.example"),
        Arc::new(DiscoveryResolver::new(KeyCache::new(
            Arc::new(w.fetcher_allowing(&["ps.example"])),
            Arc::clone(&clock),
            CacheConfig::default(),
        ))),
        [&id("https://ps.example")],
        Arc::clone(&list) as Arc<dyn aauth_resource::RevocationStore>,
    ));
    let resource = Resource::new(id("https://resource.example"), rs_keys)
        .resource_tokens(ResourceTokens::new(rs_key, "rs-1"))
        .revocations(list);
    let api = AAuthLayer::new(
        resource.route(RoutePolicy::new(Access::AuthToken).scope("read")),
        Arc::clone(&clock),
    )
    .layer(ok);
    let c = Arc::clone(&clock);
    w.serve_async(
        &id("https://resource.example"),
        Arc::new(move |req: aauth_demos::world::Request| {
            let (mut api, revoke_at, c) = (api.clone(), Arc::clone(&revoke_at), Arc::clone(&c));
            let doc = published.respond(req.method(), req.uri().path());
            Box::pin(async move {
                if let Some(d) = doc {
                    return d.map(|b| b.to_vec());
                }
                let (parts, body) = req.into_parts();
                if parts.uri.path() == "/revoke" {
                    return revoke_at
                        .handle(&parts, &body, c.now())
                        .await
                        .map(|b| b.to_vec());
                }
                through(&mut api, parts, body).await
            })
        }),
    )
    .await
    .unwrap();

    let transport = w.agent_transport();
    let agent = Arc::new(Agent::new(
        agent_id,
        agent_key,
        Arc::new(HttpTokenSource::new(
            id("https://agent.example"),
            transport.clone(),
        )),
    ));
    let agent_keys = Arc::new(KeyCache::new(
        Arc::new(w.fetcher()),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let client = AAuthClient::builder(Arc::clone(&agent))
        .clock(Arc::clone(&clock))
        .person_server(
            Arc::new(
                HttpPersonServer::new(id("https://ps.example"), transport.clone())
                    .clock(Arc::clone(&clock)),
            ),
            agent_keys,
        )
        .build(transport.clone());
    let get = || {
        http::Request::get("https://resource.example/doc")
            .body(Bytes::new())
            .unwrap()
    };
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    drop(transport.take());

    // The provider revokes the agent token at the Person Server.
    let now = aauth_keys::time::Clock::now(&aauth_keys::time::SystemClock);
    let agent_token = agent.token(now).await.unwrap();
    let jti = aauth_tokens::Unverified::<aauth_tokens::AgentClaims>::decode(
        &agent_token.token,
        &aauth_tokens::Validation::new(now),
    )
    .unwrap()
    .unverified_claims()
    .jti
    .clone();
    // Checklist AP-07: the provider's own revocation client, signing as the provider,
    // finds the Person Server's revocation_endpoint and sends {jti, exp}.
    let answer = provider
        .revoker(w.agent_transport())
        .revoke::<PersonServerMetadata>(&id("https://ps.example"), &jti, agent_token.exp, now)
        .await
        .unwrap();
    assert_eq!(answer, None, "an empty 200 once the cascade is done");

    // The cached auth token is refused at the resource now (revoked_jwt, with
    // requirement=person-token beside it, checklist RS-43); the client goes straight for a
    // fresh person token, which the revoked agent token cannot get: it gets a fresh agent
    // token from the provider (AG-60) and completes the flow again with new tokens.
    assert_eq!(client.send(get()).await.unwrap().status(), 200);
    let seen: Vec<String> = transport
        .take()
        .iter()
        .map(|(q, r)| format!("{} {} {}", q.method(), q.uri(), r.status().as_u16()))
        .collect();
    let told: Vec<String> = ps_out
        .take()
        .iter()
        .map(|(q, r)| format!("{} {} {}", q.method(), q.uri(), r.status().as_u16()))
        .collect();
    assert!(
        told.contains(&"POST https://resource.example/revoke 200".to_owned()),
        "the Person Server told the resource: {told:?}"
    );
    assert_eq!(
        seen,
        [
            "GET https://resource.example/doc 401",
            "POST https://ps.example/person-token 401",
            "POST https://agent.example/agent-token 200",
            "POST https://ps.example/person-token 200",
            "GET https://resource.example/doc 401",
            "POST https://ps.example/auth-token 200",
            "GET https://resource.example/doc 200",
        ],
        "{seen:?}"
    );
}
