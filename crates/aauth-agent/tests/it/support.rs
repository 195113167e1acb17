//! A recorded in-process network, a resource, a stand-in Person Server.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aauth_agent::{
    AAuthClient, Agent, AgentError, AgentProvider, AuthTokenRequest, PersonServerClient,
    PersonTokenRequest,
};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, FixedClock};
use aauth_resource::{AAuthLayer, Access, Admitted, Resource, ResourceTokens, RoutePolicy};
use aauth_test_support::key;
use aauth_test_support::provider::Enrolled;
use aauth_test_support::time::fixed_clock;
use aauth_test_support::verify::issuer_keys;
use aauth_tokens::{
    AgentId, AuthIssuer, AuthTokenBuilder, PersonTokenBuilder, ResourceClaims, StaticIssuerKeys,
    Unverified, Validation,
};
use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

pub use aauth_test_support::net::{Handler, Net, response, scripted};
pub use aauth_test_support::{NOW, id};

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
    aauth_test_support::net::service_handler(svc)
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
    let enrolled = Enrolled::new(1, 2, Some("https://ps.example"));
    Parties {
        provider: enrolled.provider,
        agent_id: enrolled.agent_id,
        agent_key: enrolled.agent_key,
        ps_key: Arc::new(key(3)),
        rs_key: Arc::new(key(4)),
        clock: fixed_clock(),
        net: Arc::new(Net::default()),
    }
}

impl Parties {
    /// Every issuer key, as both the resource and the agent resolve them.
    pub fn keys(&self) -> Arc<StaticIssuerKeys> {
        Arc::new(issuer_keys(&[
            (
                "https://agent.example",
                "aauth-agent.json",
                "key-1",
                key(1).public_key(),
            ),
            (
                "https://ps.example",
                "aauth-person.json",
                "ps-1",
                self.ps_key.public_key(),
            ),
            (
                "https://resource.example",
                "aauth-resource.json",
                "rs-1",
                self.rs_key.public_key(),
            ),
        ]))
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

/// The policy of an auth-token route for `scope`.
pub fn auth_route(scope: &str) -> RoutePolicy {
    RoutePolicy::new(Access::AuthToken).scope(scope)
}
