//! A recorded in-process network, a resource, a stand-in Person Server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aauth_agent::{
    AAuthClient, Agent, AgentError, AgentProvider, AuthTokenRequest, PersonServerClient,
    PersonTokenRequest, Transport,
};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, FixedClock, UnixTime};
use aauth_resource::{AAuthLayer, Access, Admitted, Resource, ResourceTokens, RoutePolicy};
use aauth_tokens::{
    AgentId, AuthIssuer, AuthTokenBuilder, PersonTokenBuilder, ResourceClaims, ServerId,
    StaticIssuerKeys, Unverified, Validation,
};
use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

pub const NOW: UnixTime = UnixTime(1_800_000_000);

pub fn id(s: &str) -> ServerId {
    ServerId::parse(s).unwrap()
}

pub type Handler = Arc<
    dyn Fn(Request<Bytes>) -> Pin<Box<dyn Future<Output = Response<Bytes>> + Send>> + Send + Sync,
>;

/// One request as it went on the wire.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub headers: http::HeaderMap,
}

impl Seen {
    /// The `typ` of the token in `Signature-Key: sig=jwt;jwt="…"`, if any.
    pub fn token_typ(&self) -> Option<String> {
        let sk = self.headers.get("signature-key")?.to_str().ok()?;
        let jwt = sk.split("jwt=\"").nth(1)?.split('"').next()?;
        let header = aauth_keys::base64url::decode(jwt.split('.').next()?).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
        v["typ"].as_str().map(str::to_owned)
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// Hosts → handlers; every request recorded, delivered in origin form with `Host`.
#[derive(Default)]
pub struct Net {
    hosts: Mutex<BTreeMap<String, Handler>>,
    pub log: Mutex<Vec<Seen>>,
}

impl Net {
    pub fn host(&self, host: &str, h: Handler) {
        self.hosts.lock().unwrap().insert(host.to_owned(), h);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn typs(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| s.token_typ().unwrap_or_else(|| "-".to_owned()))
            .collect()
    }
}

#[async_trait]
impl Transport for Net {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, AgentError> {
        let host = req.uri().host().unwrap().to_owned();
        let handler = self
            .hosts
            .lock()
            .unwrap()
            .get(&host)
            .cloned()
            .ok_or_else(|| AgentError::Transport {
                reason: format!("no host {host}"),
            })?;
        let (mut parts, body) = req.into_parts();
        parts.uri = parts
            .uri
            .path_and_query()
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        parts.headers.insert("host", host.parse().unwrap());
        self.log.lock().unwrap().push(Seen {
            method: parts.method.clone(),
            path: parts.uri.to_string(),
            headers: parts.headers.clone(),
        });
        Ok(handler(Request::from_parts(parts, body)).await)
    }
}

/// The protected handler: names who it served and counts calls.
#[derive(Clone, Default)]
pub struct Who(pub Arc<AtomicUsize>);

impl Service<Request<Full<Bytes>>> for Who {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        let who = req
            .extensions()
            .get::<Admitted>()
            .map(|a| {
                a.agent()
                    .map(|i| format!("agent {}", i.as_str()))
                    .or_else(|| {
                        a.person()
                            .map(|(iss, sub)| format!("person {} {sub}", iss.as_str()))
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        Box::pin(async move { Ok(Response::new(Full::new(Bytes::from(who)))) })
    }
}

/// A resource route served as a [`Handler`].
pub fn route_handler(svc: aauth_resource::AAuthService<Who>) -> Handler {
    Arc::new(move |req: Request<Bytes>| {
        let mut svc = svc.clone();
        Box::pin(async move {
            let resp = svc.call(req.map(Full::new)).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            Response::from_parts(parts, body)
        })
    })
}

/// The demo parties' keys and identities.
pub struct Parties {
    pub provider: Arc<AgentProvider>,
    pub agent_id: AgentId,
    pub agent_key: Arc<PrivateKey>,
    pub ps_key: Arc<PrivateKey>,
    pub rs_key: Arc<PrivateKey>,
    pub clock: Arc<FixedClock>,
    pub net: Arc<Net>,
}

pub fn parties() -> Parties {
    let provider = Arc::new(
        AgentProvider::new(
            id("https://agent.example"),
            Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
            "key-1",
        )
        .unwrap(),
    );
    let agent_id = AgentId::parse("aauth:assistant@agent.example").unwrap();
    let agent_key = Arc::new(PrivateKey::ed25519_from_seed(&[2; 32]));
    provider
        .enroll(
            &agent_id,
            agent_key.public_key(),
            Some(&id("https://ps.example")),
        )
        .unwrap();
    Parties {
        provider,
        agent_id,
        agent_key,
        ps_key: Arc::new(PrivateKey::ed25519_from_seed(&[3; 32])),
        rs_key: Arc::new(PrivateKey::ed25519_from_seed(&[4; 32])),
        clock: Arc::new(FixedClock::new(NOW)),
        net: Arc::new(Net::default()),
    }
}

impl Parties {
    /// Every issuer key, as both the resource and the agent resolve them.
    pub fn keys(&self) -> Arc<StaticIssuerKeys> {
        Arc::new(
            StaticIssuerKeys::new()
                .with(
                    &id("https://agent.example"),
                    "aauth-agent.json",
                    "key-1",
                    PrivateKey::ed25519_from_seed(&[1; 32]).public_key().clone(),
                )
                .with(
                    &id("https://ps.example"),
                    "aauth-person.json",
                    "ps-1",
                    self.ps_key.public_key().clone(),
                )
                .with(
                    &id("https://resource.example"),
                    "aauth-resource.json",
                    "rs-1",
                    self.rs_key.public_key().clone(),
                ),
        )
    }

    pub fn resource(&self) -> Resource {
        Resource::new(id("https://resource.example"), self.keys())
            .resource_tokens(ResourceTokens::new(self.rs_key.clone(), "rs-1"))
    }

    /// Serves `policy` at resource.example; returns the handler's call counter.
    pub fn serve(&self, policy: RoutePolicy) -> Who {
        let who = Who::default();
        let svc =
            AAuthLayer::new(self.resource().route(policy), self.clock.clone()).layer(who.clone());
        self.net.host("resource.example", route_handler(svc));
        who
    }

    /// As [`Parties::serve`], delivering `requirement=auth-token` as a held `202`.
    pub fn serve_deferred(&self, policy: RoutePolicy) -> Who {
        let who = Who::default();
        let svc = AAuthLayer::new(self.resource().route(policy), self.clock.clone())
            .defer_auth_token(aauth_resource::DeferredAuth::new(
                Arc::new(aauth_resource::MemoryHeldStore::default()),
                "/aauth/pending/",
            ))
            .layer(who.clone());
        self.net.host("resource.example", route_handler(svc));
        who
    }

    pub fn agent(&self) -> Arc<Agent> {
        Arc::new(Agent::new(
            self.agent_id.clone(),
            self.agent_key.clone(),
            self.provider.clone(),
        ))
    }

    pub fn client(&self, ps: Option<Arc<StandInPs>>) -> AAuthClient {
        let mut b = AAuthClient::builder(self.agent()).clock(self.clock.clone());
        if let Some(ps) = ps {
            b = b.person_server(ps, self.keys());
        }
        b.build(self.net.clone())
    }

    pub fn ps(&self) -> Arc<StandInPs> {
        Arc::new(StandInPs {
            key: self.ps_key.clone(),
            rs_key: self.rs_key.clone(),
            clock: self.clock.clone(),
            person_calls: AtomicUsize::new(0),
            auth_calls: AtomicUsize::new(0),
            fault: Mutex::new(None),
            last_auth_request: Mutex::new(None),
        })
    }
}

/// What the stand-in Person Server gets wrong, for the agent's checks to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Auth tokens bound to another key.
    AuthForeignKey,
    /// Auth tokens for another person.
    AuthOtherSub,
    /// Person tokens for another resource.
    PersonWrongAud,
}

/// Issues person tokens and three-party auth tokens as a Person Server would.
pub struct StandInPs {
    key: Arc<PrivateKey>,
    rs_key: Arc<PrivateKey>,
    clock: Arc<FixedClock>,
    pub person_calls: AtomicUsize,
    pub auth_calls: AtomicUsize,
    pub fault: Mutex<Option<Fault>>,
    pub last_auth_request: Mutex<Option<(String, String, Option<String>)>>,
}

impl StandInPs {
    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }
}

#[async_trait]
impl PersonServerClient for StandInPs {
    async fn person_token(
        &self,
        agent: &Agent,
        req: PersonTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.person_calls.fetch_add(1, Ordering::SeqCst);
        let aud = if self.fault() == Some(Fault::PersonWrongAud) {
            id("https://elsewhere.example")
        } else {
            req.resource.clone()
        };
        let mut b = PersonTokenBuilder::new(
            id("https://ps.example"),
            aud,
            "person-1",
            agent.signer().public_key(),
        );
        if let Some(m) = req.mission_s256 {
            b = b.mission_s256(m);
        }
        Ok(
            b.sign(self.key.as_ref(), "ps-1", self.clock.now(), &mut OsRandom)
                .unwrap()
                .token,
        )
    }

    async fn auth_token(
        &self,
        agent: &Agent,
        req: AuthTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.auth_calls.fetch_add(1, Ordering::SeqCst);
        *self.last_auth_request.lock().unwrap() = Some((
            req.resource_token.to_owned(),
            req.presented_token.to_owned(),
            req.login_hint.map(str::to_owned),
        ));
        let me = id("https://ps.example");
        let v = Validation::new(self.clock.now()).audience(&me);
        let rt = Unverified::<ResourceClaims>::decode(req.resource_token, &v)
            .unwrap()
            .finish(self.rs_key.public_key(), &v)
            .unwrap()
            .claims;
        let other = PrivateKey::ed25519_from_seed(&[99; 32]);
        let key = if self.fault() == Some(Fault::AuthForeignKey) {
            other.public_key().clone()
        } else {
            agent.signer().public_key().clone()
        };
        let sub = if self.fault() == Some(Fault::AuthOtherSub) {
            "person-2".to_owned()
        } else {
            rt.sub.clone()
        };
        let mut b = AuthTokenBuilder::new(
            AuthIssuer::PersonServer,
            id("https://ps.example"),
            rt.iss.clone(),
            id("https://ps.example"),
            sub,
            &key,
        )
        .scope(rt.scope.clone().unwrap_or_default());
        if let Some(m) = &rt.mission_s256 {
            b = b.mission_s256(m.clone());
        }
        Ok(
            b.sign(self.key.as_ref(), "ps-1", self.clock.now(), &mut OsRandom)
                .unwrap()
                .token,
        )
    }
}

pub fn get(path: &str) -> Request<Bytes> {
    Request::get(format!("https://resource.example{path}"))
        .body(Bytes::new())
        .unwrap()
}

pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body.to_owned()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// A handler answering from a script, one response per request, the last one repeated.
pub fn scripted(script: Vec<Response<Bytes>>) -> Handler {
    let script = Arc::new(Mutex::new(script));
    Arc::new(move |_req| {
        let script = script.clone();
        Box::pin(async move {
            let mut s = script.lock().unwrap();
            if s.len() > 1 {
                s.remove(0)
            } else {
                s[0].clone()
            }
        })
    })
}

/// The policy of an auth-token route for `scope`.
pub fn auth_route(scope: &str) -> RoutePolicy {
    RoutePolicy::new(Access::AuthToken).scope(scope)
}
