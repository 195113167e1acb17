//! The parties most demos share, served in one demo world: the agent provider (with the
//! assistant enrolled), the Person Server, and a resource in auth-token mode that publishes
//! its metadata and JWKS (and, when asked, an authorization endpoint).

use std::sync::Arc;
use std::time::Duration;

use aauth_access_server::AccessServer;
use aauth_agent::{Agent, AgentProvider, HttpTokenSource};
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_keys::{Algorithm, JwkSet, PrivateKey};
use aauth_metadata::audit::operator::Operators;
use aauth_metadata::{
    AccessMode, CacheConfig, DiscoveryResolver, HttpsUrl, KeyCache, Published, ResourceMetadata,
};
use aauth_person_server::{ConsentPolicy, MemoryStore, PersonServer};
use aauth_resource::{
    AAuthLayer, Access, MemoryRevocationList, Resource, ResourceTokens, RevocationEndpoint,
    RoutePolicy,
};
use aauth_tokens::{AgentId, ServerId};

use crate::d01_pseudonymous::{HELLO, layered};
use crate::world::{
    AsyncHandler, GuardedWorldFetch, Recorder, Request, World, provider_handler, ps_handler,
};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// How the shared parties are set up.
pub(crate) struct Options {
    /// The Person Server's consent policy (auto-approve when `None`).
    pub(crate) policy: Option<Arc<dyn ConsentPolicy>>,
    /// Whether the Person Server serves its consent pages (alice's password is
    /// [`PASSWORD`]).
    pub(crate) consent_pages: bool,
    /// Whether alice has bound the assistant already.
    pub(crate) bound: bool,
    /// The scope the resource's API requires.
    pub(crate) scope: &'static str,
    /// Whether the resource serves an authorization endpoint at `/authorize`.
    pub(crate) authorization_endpoint: bool,
    /// Four-party: the resource has an Access Server (`as.example`, trusting
    /// `ps.example`), and the Person Server federates with it.
    pub(crate) access_server: bool,
    /// The Access Server's policy (grant everything when `None`).
    pub(crate) as_policy: Option<Arc<dyn aauth_access_server::AccessPolicy>>,
    /// The terms the person approves missions with (the Person Server's default when
    /// `None`: a day, no other limit).
    pub(crate) mission_terms: Option<Arc<aauth_person_server::MissionTerms>>,
}

impl Options {
    /// Alice has bound the assistant already and her Person Server approves by itself (no
    /// consent pages); the resource's API requires `scope`; no authorization endpoint,
    /// no Access Server. Demos change a field or two: `Options { access_server: true,
    /// ..Options::bound("files.read") }`.
    pub(crate) fn bound(scope: &'static str) -> Self {
        Self {
            policy: None,
            consent_pages: false,
            bound: true,
            scope,
            authorization_endpoint: false,
            access_server: false,
            as_policy: None,
            mission_terms: None,
        }
    }

    /// The person decides on the consent pages; the assistant is not yet bound to alice;
    /// the resource's API requires `calendar.read`; no authorization endpoint, no Access
    /// Server.
    pub(crate) fn consenting() -> Self {
        Self {
            policy: None,
            consent_pages: true,
            bound: false,
            scope: "calendar.read",
            authorization_endpoint: false,
            access_server: false,
            as_policy: None,
            mission_terms: None,
        }
    }
}

/// The servers' operator: the key whose signed requests read their audit logs at
/// `/admin/audit`.
pub(crate) fn operator_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[0x0b; 32])
}

/// The operator reads the audit log of the server `host` (`ps.example`, `as.example`):
/// `GET /admin/audit?QUERY` signed under `hwk`, over the world's TLS. Returns the page.
pub(crate) async fn operator_audit(
    world: &World,
    host: &str,
    query: &str,
) -> Result<aauth_metadata::audit::AuditPage, String> {
    let (mut parts, ()) = http::Request::get(format!(
        "https://{host}{}?{query}",
        aauth_metadata::audit::operator::OPERATOR_AUDIT_PATH
    ))
    .body(())
    .map_err(e)?
    .into_parts();
    let key = operator_key();
    let scheme = aauth_signing::hwk_scheme(key.public_key());
    aauth_signing::sign(
        &mut parts,
        &[],
        &[aauth_signing::SigningKey::new("sig", &key, &scheme)],
        &aauth_signing::SignOptions::default().with_query(),
        SystemClock.now(),
    )
    .map_err(e)?;
    let resp = world
        .send(http::Request::from_parts(parts, Vec::new()))
        .await?;
    if resp.status() != 200 {
        return Err(format!(
            "{host}'s audit log answered {}: {}",
            resp.status(),
            String::from_utf8_lossy(resp.body())
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(resp.body()).map_err(e)?;
    aauth_metadata::audit::AuditPage::from_json(&json).map_err(e)
}

/// The events of `page` as transcript lines: action, agent, resource, scope, detail.
pub(crate) fn audit_lines(page: &aauth_metadata::audit::AuditPage) -> Vec<String> {
    page.events
        .iter()
        .map(|e| {
            let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
            format!(
                "{} | agent {} | resource {} | scope {} | {}",
                e.action,
                o(&e.agent),
                o(&e.resource),
                o(&e.scope),
                e.detail
            )
        })
        .collect()
}

/// alice's password on the consent pages.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The parties, served.
pub(crate) struct Parties {
    pub(crate) world: World,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) provider: Arc<AgentProvider>,
    pub(crate) ps: Arc<PersonServer>,
    pub(crate) agent_id: AgentId,
    pub(crate) agent_key: Arc<PrivateKey>,
    pub(crate) rs_id: ServerId,
    /// What the Person Server sent its Access Server (four-party).
    pub(crate) federation: Option<Arc<Recorder>>,
    /// The challenges of the payments the Person Server settled (four-party).
    pub(crate) payments: Arc<InstantPayments>,
    /// agent.example's signing key (what an attacker who stole it, or a provider that
    /// mints badly, signs with).
    pub(crate) provider_key: Arc<PrivateKey>,
    /// resource.example's signing key.
    pub(crate) rs_key: Arc<PrivateKey>,
}

/// as.example's own login (the demo's stand-in for an Access Server's accounts): alice
/// signs in at `/login` with [`PASSWORD`] and gets an `as-session` cookie.
#[derive(Default)]
pub(crate) struct DemoLogin {
    sessions: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

#[async_trait::async_trait]
impl aauth_access_server::PeopleAuthenticator for DemoLogin {
    async fn account(
        &self,
        parts: &http::request::Parts,
        _now: aauth_keys::time::UnixTime,
    ) -> Option<String> {
        let cookie = parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split("; "))
            .find_map(|c| c.strip_prefix("as-session="))?;
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(cookie)
            .cloned()
    }

    fn login_url(&self, return_to: &str) -> String {
        format!(
            "https://as.example/login?return_to={}",
            return_to
                .replace('%', "%25")
                .replace('&', "%26")
                .replace('?', "%3F")
                .replace('=', "%3D")
        )
    }
}

impl DemoLogin {
    /// The login page (`GET`) and the sign-in (`POST`): a session cookie, then back to
    /// `return_to` (a path on as.example's interaction page only).
    fn serve(&self, req: &Request) -> Option<crate::world::Response> {
        if req.uri().path() != "/login" {
            return None;
        }
        let decode = |v: &str| {
            let bytes = v.replace('+', " ").into_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%'
                    && i + 2 < bytes.len()
                    && let Ok(b) =
                        u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
                {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        };
        let field = |src: &str, name: &str| {
            src.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(decode)
        };
        let html = |status: u16, body: String| {
            let mut r = http::Response::new(
                format!("<!DOCTYPE html><html><body>{body}</body></html>").into_bytes(),
            );
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        };
        if req.method() == http::Method::GET {
            let return_to =
                field(req.uri().query().unwrap_or_default(), "return_to").unwrap_or_default();
            return Some(html(
                200,
                format!(
                    "<h1>Sign in to as.example</h1><form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"return_to\" value=\"{}\"><input name=\"username\"><input name=\"password\" type=\"password\"><button>Sign in</button></form>",
                    return_to
                        .replace('&', "&amp;")
                        .replace('"', "&quot;")
                        .replace('<', "&lt;")
                ),
            ));
        }
        let form = String::from_utf8_lossy(req.body()).into_owned();
        let return_to = field(&form, "return_to")
            .filter(|r| r.starts_with("/interact?"))
            .unwrap_or_else(|| "/interact".to_owned());
        if field(&form, "username").as_deref() != Some("alice")
            || field(&form, "password").as_deref() != Some(PASSWORD)
        {
            return Some(html(401, "<p>Wrong name or password.</p>".to_owned()));
        }
        let mut raw = [0u8; 16];
        if aauth_keys::rand::RandomSource::fill(&mut OsRandom, &mut raw).is_err() {
            return Some(html(500, String::new()));
        }
        let token = aauth_keys::base64url::encode(&raw);
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.clone(), "alice".to_owned());
        let mut r = html(303, String::new());
        if let (Ok(location), Ok(cookie)) = (
            http::HeaderValue::from_str(&return_to),
            http::HeaderValue::from_str(&format!(
                "as-session={token}; Path=/; Secure; HttpOnly; SameSite=Lax"
            )),
        ) {
            r.headers_mut().insert(http::header::LOCATION, location);
            r.headers_mut().insert(http::header::SET_COOKIE, cookie);
        }
        Some(r)
    }
}

/// The demo world's payment processor: settling a `402` from `as.example` pays at once,
/// and the processor's notice confirms every payment the Access Server awaits from
/// `ps.example` (in a real deployment, a webhook from the processor to the Access Server).
pub(crate) struct InstantPayments {
    access: Option<Arc<AccessServer>>,
    clock: Arc<dyn Clock>,
    /// The challenges settled, in order.
    pub(crate) settled: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl aauth_person_server::PaymentSettler for InstantPayments {
    async fn settle(&self, access_server: &ServerId, challenge: &str) -> Result<(), String> {
        let access = self
            .access
            .as_ref()
            .filter(|a| a.id() == access_server)
            .ok_or_else(|| format!("no billing account at {access_server}"))?;
        self.settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(challenge.to_owned());
        let now = self.clock.now();
        for (pending, ps) in access.awaiting_payment(now).await.map_err(e)? {
            if ps.as_str() == "https://ps.example" {
                access.confirm_payment(&pending, now).await.map_err(e)?;
            }
        }
        Ok(())
    }
}

fn key() -> Result<Arc<PrivateKey>, String> {
    PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom)
        .map(Arc::new)
        .map_err(e)
}

fn id(s: &str) -> Result<ServerId, String> {
    ServerId::parse(s).map_err(e)
}

/// Serves a resource: its documents, and everything else through `route`.
pub(crate) fn resource_handler(published: Published, route: AsyncHandler) -> AsyncHandler {
    Arc::new(
        move |req: Request| match published.respond(req.method(), req.uri().path()) {
            Some(doc) => {
                let doc = doc.map(|b| b.to_vec());
                Box::pin(async move { doc })
            }
            None => route(req),
        },
    )
}

/// Builds and serves the parties.
///
/// # Errors
///
/// What could not be set up.
pub(crate) async fn parties(o: Options) -> Result<Parties, String> {
    parties_in(World::new().map_err(e)?, o, None).await
}

/// Builds and serves the parties in `world` (where other servers, such as a person's
/// OpenID Provider, may be served already); the Person Server's sign-in page offers
/// `sign_in` when given.
///
/// # Errors
///
/// What could not be set up.
pub(crate) async fn parties_in(
    world: World,
    o: Options,
    sign_in: Option<aauth_person_server::SignInProvider>,
) -> Result<Parties, String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let provider_key = key()?;
    let provider = Arc::new(
        AgentProvider::new(id("https://agent.example")?, provider_key.clone(), "key-1")
            .map_err(e)?,
    );
    let agent_id = AgentId::parse("aauth:assistant@agent.example").map_err(e)?;
    let agent_key = key()?;
    provider
        .enroll(
            &agent_id,
            agent_key.public_key(),
            Some(&id("https://ps.example")?),
        )
        .map_err(e)?;
    world
        .serve_async(
            provider.id(),
            provider_handler(Arc::clone(&provider), Arc::clone(&clock)),
        )
        .await
        .map_err(e)?;

    // Four-party: the resource's Access Server, trusting ps.example, discovering every
    // key it checks over HTTPS.
    let as_id = id("https://as.example")?;
    let mut access_server = None;
    if o.access_server {
        let as_keys = Arc::new(KeyCache::new(
            // (travel.example: an intermediary's agent provider, demo 9's variant.)
            Arc::new(world.fetcher_allowing(&[
                "agent.example",
                "ps.example",
                "resource.example",
                "travel.example",
            ])),
            Arc::clone(&clock),
            CacheConfig::default(),
        ));
        let mut access = AccessServer::new(as_id.clone(), key()?, "as-1", as_keys)
            .map_err(e)?
            .trusted([id("https://ps.example")?])
            .operators(Operators::new(
                &as_id,
                [operator_key().public_key().clone()],
            ));
        if let Some(policy) = o.as_policy.clone() {
            access = access.policy(policy);
        }
        let login = Arc::new(DemoLogin::default());
        let access = Arc::new(access.people_authenticator(
            Arc::clone(&login) as Arc<dyn aauth_access_server::PeopleAuthenticator>
        ));
        access_server = Some(Arc::clone(&access));
        let c = Arc::clone(&clock);
        world
            .serve_async(
                &as_id,
                Arc::new(move |req: Request| {
                    let (access, c, login) =
                        (Arc::clone(&access), Arc::clone(&c), Arc::clone(&login));
                    Box::pin(async move {
                        if let Some(page) = login.serve(&req) {
                            return page;
                        }
                        let (parts, body) = req.into_parts();
                        access
                            .handle(&parts, &body, c.now())
                            .await
                            .map_or_else(crate::world::not_found, |r| r.map(|b| b.to_vec()))
                    })
                }),
            )
            .await
            .map_err(e)?;
    }

    // The Person Server discovers providers', resources' (and the Access Server's) keys
    // over HTTPS.
    let ps_keys = Arc::new(KeyCache::new(
        Arc::new(world.fetcher_allowing(&[
            "agent.example",
            "resource.example",
            "as.example",
            "travel.example",
        ])),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let mut secret = [0u8; 32];
    aauth_keys::rand::RandomSource::fill(&mut OsRandom, &mut secret).map_err(e)?;
    let ps_key = key()?;
    let mut ps = PersonServer::new(
        id("https://ps.example")?,
        Arc::clone(&ps_key) as Arc<dyn aauth_keys::Signer>,
        "ps-1",
        ps_keys,
        Arc::new(MemoryStore::default()),
        secret,
    )
    .map_err(e)?
    .policy(Arc::new(aauth_person_server::dangerous::AutoApproveChained))
    // What it revokes (a person on their dashboard, a cascade) it tells the resource.
    .revocation_notifier(Arc::new(aauth_person_server::HttpRevocationNotifier::new(
        id("https://ps.example")?,
        ps_key,
        "ps-1",
        world.agent_transport_allowing(&["resource.example", "as.example"]),
        Arc::clone(&clock),
    )))
    .operators(Operators::new(
        &id("https://ps.example")?,
        [operator_key().public_key().clone()],
    ));
    if let Some(p) = o.policy.clone() {
        ps = ps.policy(p);
    }
    if o.consent_pages {
        // The consent page describes the resource from its metadata (PS-12).
        ps = ps
            .consent_pages(Duration::from_secs(600))
            .metadata(Arc::new(
                world.fetcher_allowing(&["agent.example", "resource.example"]),
            ));
    }
    if let Some(terms) = o.mission_terms.clone() {
        ps = ps.mission_terms(terms);
    }
    if let Some(provider) = sign_in {
        ps = ps.sign_in_with(provider).map_err(e)?;
    }
    let federation = o
        .access_server
        .then(|| world.agent_transport_allowing(&["as.example"]));
    let payments = Arc::new(InstantPayments {
        access: access_server,
        clock: Arc::clone(&clock),
        settled: std::sync::Mutex::default(),
    });
    if let Some(f) = &federation {
        ps = ps
            .federation(f.clone())
            .payment_settler(Arc::clone(&payments) as Arc<dyn aauth_person_server::PaymentSettler>);
    }
    let ps = Arc::new(ps);
    ps.set_password("alice", PASSWORD).await.map_err(e)?;
    if o.bound {
        ps.store()
            .bind(provider.id(), &agent_id, "alice")
            .await
            .map_err(e)?;
    }
    world
        .serve_async(ps.id(), ps_handler(Arc::clone(&ps), Arc::clone(&clock)))
        .await
        .map_err(e)?;

    let (rs_id, rs_key) = serve_resource(&world, &clock, &o, &as_id).await?;
    Ok(Parties {
        world,
        clock,
        provider,
        ps,
        agent_id,
        agent_key,
        rs_id,
        federation,
        payments,
        provider_key,
        rs_key,
    })
}

/// Serves resource.example in `world`: an auth-token API (any path answers once admitted,
/// with scope `o.scope`), its metadata (named, described, `access_mode: auth-token`) and
/// JWKS, and with `o.authorization_endpoint` its `/authorize`; four-party with
/// `o.access_server` (resource tokens for `as_id`). It discovers the agent provider's,
/// the Person Server's and the Access Server's keys over HTTPS, wherever the world's
/// names lead (in-process servers, or processes aliased in).
///
/// # Errors
///
/// What could not be set up.
pub(crate) async fn serve_resource(
    world: &World,
    clock: &Arc<dyn Clock>,
    o: &Options,
    as_id: &ServerId,
) -> Result<(ServerId, Arc<PrivateKey>), String> {
    let rs_id = id("https://resource.example")?;
    let rs_key = key()?;
    let mut doc = ResourceMetadata::new(rs_id.clone());
    doc.common.jwks_uri = Some(HttpsUrl::parse("https://resource.example/jwks.json").map_err(e)?);
    doc.access_mode = Some(AccessMode::AuthToken);
    // The Person Server tells it what it revokes.
    doc.revocation_endpoint =
        Some(HttpsUrl::endpoint("https://resource.example/revoke").map_err(e)?);
    // What the Person Server's consent page shows of it (PS-12).
    doc.common.name = Some("Example Files".to_owned());
    doc.common.description =
        Some("Keeps the person's files and shares them on request.".to_owned());
    // What the consent page shows for each scope asked for.
    doc.scope_descriptions = Some(
        [
            ("calendar.read", "Read your calendar"),
            ("calendar.freebusy", "See when you are free or busy"),
            ("files.read", "Read your files"),
            ("search", "Search on your behalf"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    if o.authorization_endpoint {
        doc.authorization_endpoint =
            Some(HttpsUrl::endpoint("https://resource.example/authorize").map_err(e)?);
    }
    let mut jwk = rs_key.public_key().to_jwk();
    jwk.kid = Some("rs-1".to_owned());
    let published = Published::new(&doc).jwks("/jwks.json", &JwkSet::from_jwks(&[jwk]));
    // (travel.example is an intermediary's agent provider in demo 7.)
    let rs_keys = Arc::new(KeyCache::new(
        Arc::new(world.fetcher_allowing(&[
            "agent.example",
            "ps.example",
            "as.example",
            "travel.example",
        ])),
        Arc::clone(clock),
        CacheConfig::default(),
    ));
    let mut tokens = ResourceTokens::new(rs_key.clone(), "rs-1");
    if o.access_server {
        tokens = tokens.access_server(as_id.clone());
    }
    if o.authorization_endpoint {
        tokens = tokens.scopes([o.scope, "calendar.write"]);
    }
    let revoked = Arc::new(MemoryRevocationList::new(60, 10_000));
    let revoke_at = Arc::new(RevocationEndpoint::new(
        &rs_id,
        Arc::new(DiscoveryResolver::new(KeyCache::new(
            Arc::new(world.fetcher_allowing(&["ps.example", "as.example"])),
            Arc::clone(clock),
            CacheConfig::default(),
        ))),
        [&id("https://ps.example")?, as_id],
        Arc::clone(&revoked) as Arc<dyn aauth_resource::RevocationStore>,
    ));
    let resource = Resource::new(rs_id.clone(), rs_keys)
        .resource_tokens(tokens)
        .revocations(revoked);
    let api = layered(
        AAuthLayer::new(
            resource.route(RoutePolicy::new(Access::AuthToken).scope(o.scope)),
            Arc::clone(clock),
        ),
        HELLO,
    );
    let routes: AsyncHandler = if o.authorization_endpoint {
        let authorize = resource.route(RoutePolicy::new(Access::PersonToken));
        let c = Arc::clone(clock);
        Arc::new(move |req: Request| {
            if req.uri().path() == "/authorize" {
                let (authorize, c) = (authorize.clone(), Arc::clone(&c));
                Box::pin(async move {
                    let (parts, body) = req.into_parts();
                    authorize
                        .authorization_response(&parts, &body, c.now())
                        .await
                        .map(|b| b.to_vec())
                })
            } else {
                api(req)
            }
        })
    } else {
        api
    };
    let c = Arc::clone(clock);
    let routes: AsyncHandler = Arc::new(move |req: Request| {
        if req.method() == http::Method::POST && req.uri().path() == "/revoke" {
            let (revoke_at, c) = (Arc::clone(&revoke_at), Arc::clone(&c));
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                revoke_at
                    .handle(&parts, &body, c.now())
                    .await
                    .map(|b| b.to_vec())
            })
        } else {
            routes(req)
        }
    });
    world
        .serve_async(&rs_id, resource_handler(published, routes))
        .await
        .map_err(e)?;
    Ok((rs_id, rs_key))
}

impl Parties {
    /// The assistant, its token fetched from the provider through `recorder`.
    pub(crate) fn agent(&self, recorder: &Arc<Recorder>) -> Arc<Agent> {
        Arc::new(Agent::new(
            self.agent_id.clone(),
            Arc::clone(&self.agent_key) as Arc<dyn aauth_keys::Signer>,
            Arc::new(HttpTokenSource::new(
                self.provider.id().clone(),
                recorder.clone(),
            )),
        ))
    }

    /// A key cache for what the agent verifies (resource tokens, tokens it receives).
    pub(crate) fn agent_keys(&self) -> Arc<KeyCache<GuardedWorldFetch>> {
        Arc::new(KeyCache::new(
            Arc::new(self.world.fetcher()),
            Arc::clone(&self.clock),
            CacheConfig::default(),
        ))
    }
}
