//! A recorded in-process network, a resource, a stand-in Person Server.

use std::sync::Arc;

use aauth_agent::{AAuthClient, Agent, AgentProvider, Compatibility};
use aauth_keys::PrivateKey;
use aauth_keys::time::FixedClock;
use aauth_resource::{AAuthLayer, Access, Admitted, Resource, ResourceTokens, RoutePolicy};
use aauth_test_support::key;
use aauth_test_support::provider::Enrolled;
use aauth_test_support::service::Answering;
use aauth_test_support::time::fixed_clock;
use aauth_test_support::tokens::person_token_jti_only;
use aauth_test_support::verify::issuer_keys;
use aauth_tokens::{AgentId, StaticIssuerKeys};
use bytes::Bytes;
use http::Request;
use tower_layer::Layer;

pub use aauth_test_support::net::{Handler, Net, response, scripted};
pub use aauth_test_support::stand_in::{Fault, StandInPs};
pub use aauth_test_support::{NOW, id};

/// The protected handler: names who it served and counts calls.
pub type Who = Answering;

fn who() -> Who {
    Answering::new(|req| {
        req.extensions()
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
            .unwrap_or_default()
    })
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
        let who = who();
        let svc =
            AAuthLayer::new(self.resource().route(policy), self.clock.clone()).layer(who.clone());
        self.net.host("resource.example", route_handler(svc));
        who
    }

    /// One resource with two routes: `/public…` in agent-token mode, everything else
    /// an auth-token route for `read`.
    pub fn serve_public_and_private(&self) -> Who {
        let who = who();
        let public = route_handler(
            AAuthLayer::new(
                self.resource().route(RoutePolicy::new(Access::AgentToken)),
                self.clock.clone(),
            )
            .layer(who.clone()),
        );
        let private = route_handler(
            AAuthLayer::new(
                self.resource().route(auth_route("read")),
                self.clock.clone(),
            )
            .layer(who.clone()),
        );
        self.net.host(
            "resource.example",
            Arc::new(move |req: Request<Bytes>| {
                if req.uri().path().starts_with("/public") {
                    public(req)
                } else {
                    private(req)
                }
            }),
        );
        who
    }

    /// As [`Parties::serve`], delivering `requirement=auth-token` as a held `202`.
    pub fn serve_deferred(&self, policy: RoutePolicy) -> Who {
        let (who, handler) = self.deferred_handler(policy);
        self.net.host("resource.example", handler);
        who
    }

    /// The handler [`Parties::serve_deferred`] serves (its pending prefix
    /// `/aauth/pending/`), not yet hosted.
    pub fn deferred_handler(&self, policy: RoutePolicy) -> (Who, Handler) {
        let who = who();
        let svc = AAuthLayer::new(self.resource().route(policy), self.clock.clone())
            .defer_auth_token(aauth_resource::DeferredAuth::new(
                Arc::new(aauth_resource::MemoryHeldStore::default()),
                "/aauth/pending/",
            ))
            .layer(who.clone());
        (who, route_handler(svc))
    }

    /// As [`Parties::serve`], as a resource that lags draft -11 (the TypeScript
    /// reference's): each resource token in its challenges names the presented token only
    /// by the pre-rename `person_token_jti`.
    pub fn serve_lagging(&self, policy: RoutePolicy) -> Who {
        let who = who();
        let svc =
            AAuthLayer::new(self.resource().route(policy), self.clock.clone()).layer(who.clone());
        let inner = route_handler(svc);
        let rs_key = self.rs_key.clone();
        self.net.host(
            "resource.example",
            Arc::new(move |req| {
                let inner = inner.clone();
                let rs_key = rs_key.clone();
                Box::pin(async move {
                    let mut resp = inner(req).await;
                    let Some(req) = resp.headers().get("aauth-requirement") else {
                        return resp;
                    };
                    let req = req.to_str().unwrap().to_owned();
                    if let Some((head, rest)) = req.split_once("resource-token=\"") {
                        let (token, tail) = rest.split_once('"').unwrap();
                        let old = person_token_jti_only(token, rs_key.as_ref(), "rs-1");
                        let value = format!("{head}resource-token=\"{old}\"{tail}");
                        resp.headers_mut()
                            .insert("aauth-requirement", value.parse().unwrap());
                    }
                    resp
                })
            }),
        );
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
        self.client_with(ps, Compatibility::strict())
    }

    /// As [`Parties::client`], with the compatibility profile `compat`.
    pub fn client_with(&self, ps: Option<Arc<StandInPs>>, compat: Compatibility) -> AAuthClient {
        let mut b = AAuthClient::builder(self.agent())
            .clock(self.clock.clone())
            .compatibility(compat);
        if let Some(ps) = ps {
            b = b.person_server(ps, self.keys());
        }
        b.build(self.net.clone())
    }

    pub fn ps(&self) -> Arc<StandInPs> {
        Arc::new(StandInPs::new(
            self.ps_key.clone(),
            self.rs_key.public_key().clone(),
            self.clock.clone(),
        ))
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
