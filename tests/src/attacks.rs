//! Attacks on the demo world, each in the form an outside tester found it: hand-made
//! requests and tokens sent over real TLS to the servers a deployment runs, with their
//! default settings. Each returns `Ok(())` when the world holds, and otherwise says what
//! got through. `it/security.rs` runs them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, UnixTime};
use aauth_keys::{PrivateKey, Signer, base64url};
use aauth_metadata::{CacheConfig, KeyCache, Published, ResourceMetadata};
use aauth_person_server::AlwaysAsk;
use aauth_resource::{AAuthLayer, Access, Resource, RoutePolicy};
use aauth_signing::{SignOptions, SigningKey, sign, sign_request, sign_request_unique};
use aauth_tokens::ServerId;
use bytes::Bytes;
use http_body_util::Full;
use tower_service::Service;

use crate::d04_consent::{Browser, hidden};
use crate::parties::{Options, PASSWORD, Parties, parties, resource_handler};
use crate::world::{Request, Response, World};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn id(s: &str) -> Result<ServerId, String> {
    ServerId::parse(s).map_err(e)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(e)
}

/// Fails with `what` unless `ok`.
fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn status_and_error(resp: &Response) -> (u16, String) {
    let sig = resp
        .headers()
        .get("signature-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice::<serde_json::Value>(resp.body())
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    (resp.status().as_u16(), sig.or(body).unwrap_or_default())
}

/// An API behind the resource layer that counts the calls that reach it.
#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);

impl Service<http::Request<Full<Bytes>>> for Counter {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<Full<Bytes>>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            b"{\"done\":true}",
        )))))
    }
}

/// The parties plus `api.example`: a resource in agent-token mode with the defaults a
/// deployment gets, discovering agent providers' keys over HTTPS, and a second agent
/// provider `travel.example` (someone else's, with its own key).
struct Range {
    p: Parties,
    calls: Arc<AtomicUsize>,
    travel_key: Arc<PrivateKey>,
    token: String,
}

async fn range(o: Options) -> Result<Range, String> {
    let p = parties(o).await?;
    let clock: Arc<dyn Clock> = Arc::clone(&p.clock);
    // travel.example: an agent provider of its own.
    let travel_key =
        Arc::new(PrivateKey::generate(aauth_keys::Algorithm::Ed25519, &mut OsRandom).map_err(e)?);
    let travel = Arc::new(
        aauth_agent::AgentProvider::new(id("https://travel.example")?, travel_key.clone(), "t-1")
            .map_err(e)?,
    );
    p.world
        .serve_async(
            travel.id(),
            crate::world::provider_handler(Arc::clone(&travel), Arc::clone(&clock)),
        )
        .await
        .map_err(e)?;
    let keys = Arc::new(KeyCache::new(
        Arc::new(
            p.world
                .fetcher_allowing(&["agent.example", "travel.example"]),
        ),
        Arc::clone(&clock),
        CacheConfig::default(),
    ));
    let api = Resource::new(id("https://api.example")?, keys);
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = crate::d01_pseudonymous::layered(
        AAuthLayer::new(api.route(RoutePolicy::new(Access::AgentToken)), clock),
        Counter(Arc::clone(&calls)),
    );
    p.world
        .serve_async(
            &id("https://api.example")?,
            resource_handler(
                Published::new(&ResourceMetadata::new(id("https://api.example")?)),
                handler,
            ),
        )
        .await
        .map_err(e)?;
    let token = p
        .provider
        .issue(&p.agent_id, p.agent_key.public_key(), p.clock.now())
        .map_err(e)?
        .token;
    Ok(Range {
        p,
        calls,
        travel_key,
        token,
    })
}

fn closed() -> Options {
    Options::bound("files.read")
}

impl Range {
    fn now(&self) -> UnixTime {
        self.p.clock.now()
    }

    /// A request signed by the assistant under its agent token (no nonce: the same
    /// bytes each time within a second, as a captured request is).
    fn signed(&self, method: &str, url: &str, body: &[u8]) -> Result<Request, String> {
        let mut b = http::Request::builder().method(method).uri(url);
        if !body.is_empty() {
            b = b.header("content-type", "application/json");
        }
        let mut req = b.body(body.to_vec()).map_err(e)?;
        sign_request(
            &mut req,
            self.p.agent_key.as_ref(),
            &Scheme::jwt(self.token.clone()),
            self.now(),
        )
        .map_err(e)?;
        Ok(req)
    }

    /// `GET /data` at api.example signed by the assistant's key under `token`: it must be
    /// refused with `Signature-Error: error=<code>` and reach no handler.
    async fn refused_with_token(
        &self,
        token: String,
        code: &str,
        what: &str,
    ) -> Result<(), String> {
        let mut req = http::Request::get("https://api.example/data")
            .body(Vec::new())
            .map_err(e)?;
        sign_request(
            &mut req,
            self.p.agent_key.as_ref(),
            &Scheme::jwt(token),
            self.now(),
        )
        .map_err(e)?;
        let resp = self.p.world.send(req).await?;
        let got = status_and_error(&resp);
        check(got == (401, format!("error={code}")), || {
            format!("{what} was answered {got:?}")
        })?;
        check(self.calls.load(Ordering::SeqCst) == 0, || {
            format!("{what} reached the handler")
        })
    }

    /// A compact JWS over `claims` signed by `key` (an attacker's hand-made token).
    fn forge(key: &PrivateKey, kid: &str, claims: &serde_json::Value) -> Result<String, String> {
        let header = format!(r#"{{"alg":"Ed25519","kid":"{kid}","typ":"aa-agent+jwt"}}"#);
        let input = format!(
            "{}.{}",
            base64url::encode(header.as_bytes()),
            base64url::encode(claims.to_string().as_bytes())
        );
        let sig = key.sign(input.as_bytes()).map_err(e)?;
        Ok(format!("{input}.{}", base64url::encode(&sig)))
    }
}

/// travel.example signs, under its own published key, a token naming agent.example's
/// assistant; before, the resource admitted it as that agent.
///
/// # Errors
///
/// What got through.
pub fn a_provider_cannot_speak_for_another_providers_agents() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(closed()).await?;
        let now = r.now().as_secs();
        let forged = Range::forge(
            &r.travel_key,
            "t-1",
            &serde_json::json!({
                "iss": "https://travel.example", "dwk": "aauth-agent.json",
                "sub": "aauth:assistant@agent.example", "jti": "x1",
                "cnf": {"jwk": r.p.agent_key.public_key().to_jwk()},
                "iat": now, "exp": now + 600,
            }),
        )?;
        r.refused_with_token(forged, "invalid_jwt", "a foreign provider's token")
            .await
    })
}

/// An agent token signed by its own provider but claiming ten years of life.
///
/// # Errors
///
/// What got through.
pub fn a_ten_year_agent_token_is_refused() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(closed()).await?;
        let now = r.now().as_secs();
        // The provider's own key, as a provider that mints badly would use it.
        let long = Range::forge(
            r.p.provider_key.as_ref(),
            "key-1",
            &serde_json::json!({
                "iss": "https://agent.example", "dwk": "aauth-agent.json",
                "sub": "aauth:assistant@agent.example", "jti": "long",
                "cnf": {"jwk": r.p.agent_key.public_key().to_jwk()},
                "iat": now, "exp": now + 10 * 365 * 86_400,
            }),
        )?;
        r.refused_with_token(long, "invalid_jwt", "a ten-year token")
            .await
    })
}

/// A request the agent signed for one host, relayed (its `Host` kept, or as an
/// absolute-form target) to another: before, the other admitted it as the agent.
///
/// # Errors
///
/// What got through.
pub fn a_request_signed_for_one_host_is_refused_by_another() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(closed()).await?;
        // Signed for api2.example (the malicious resource the agent called), relayed to
        // api.example with its Host header.
        let mut req = r.signed("GET", "https://api2.example/data", b"")?;
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("api2.example"));
        *req.uri_mut() = "/data".parse().map_err(e)?;
        let resp = r.p.world.send_to("api.example", req).await?;
        check(
            status_and_error(&resp) == (401, "error=invalid_signature".to_owned()),
            || {
                format!(
                    "a relayed request was answered {:?}",
                    status_and_error(&resp)
                )
            },
        )?;
        // As an absolute-form target, with the Host of the real server.
        let mut req = r.signed("GET", "https://api2.example/data", b"")?;
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("api.example"));
        let resp = r.p.world.send_to("api.example", req).await?;
        check(resp.status() == 401 || resp.status() == 400, || {
            format!("an absolute-form relay was answered {}", resp.status())
        })?;
        check(r.calls.load(Ordering::SeqCst) == 0, || {
            "the handler ran".to_owned()
        })?;
        // A token request signed for ps2.example, relayed to ps.example: no person token.
        let body = serde_json::json!({"resource": "https://resource.example"}).to_string();
        let mut req = r.signed("POST", "https://ps2.example/person-token", body.as_bytes())?;
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("ps2.example"));
        *req.uri_mut() = "/person-token".parse().map_err(e)?;
        let resp = r.p.world.send_to("ps.example", req).await?;
        check(
            status_and_error(&resp) == (401, "error=invalid_signature".to_owned()),
            || {
                format!(
                    "a Person Server answered a request signed for another: {:?}",
                    status_and_error(&resp)
                )
            },
        )
    })
}

/// Captured state-changing requests sent again: at the resource the handler ran twice,
/// at the Person Server a second person token was issued.
///
/// # Errors
///
/// What got through.
pub fn a_captured_request_is_accepted_once() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(closed()).await?;
        let req = r.signed("POST", "https://api.example/transfer", br#"{"amount":100}"#)?;
        let first = r.p.world.send(req.clone()).await?;
        check(first.status() == 200, || {
            format!("the first POST: {}", first.status())
        })?;
        let again = r.p.world.send(req).await?;
        check(
            status_and_error(&again) == (401, "error=invalid_signature".to_owned()),
            || {
                format!(
                    "a replayed POST was answered {:?}",
                    status_and_error(&again)
                )
            },
        )?;
        check(r.calls.load(Ordering::SeqCst) == 1, || {
            format!("the handler ran {} times", r.calls.load(Ordering::SeqCst))
        })?;
        let body = serde_json::json!({"resource": "https://resource.example"}).to_string();
        let req = r.signed("POST", "https://ps.example/person-token", body.as_bytes())?;
        let first = r.p.world.send(req.clone()).await?;
        check(first.status() == 200, || {
            format!("the first token request: {}", first.status())
        })?;
        let again = r.p.world.send(req).await?;
        check(
            status_and_error(&again) == (401, "error=invalid_signature".to_owned()),
            || {
                format!(
                    "a replayed token request was answered {:?}",
                    status_and_error(&again)
                )
            },
        )?;
        // The same request made anew by a client (a nonce) is a new request.
        let fresh = as_agent(
            &r.p,
            &r.token,
            http::Method::POST,
            "https://ps.example/person-token",
            Some(&serde_json::json!({"resource": "https://resource.example"})),
        )
        .await?;
        check(fresh.status() == 200, || {
            format!("a new request was refused: {}", fresh.status())
        })
    })
}

/// Two covered `Content-Digest` field lines, the second wrong: before, only the first
/// was checked.
///
/// # Errors
///
/// What got through.
pub fn every_content_digest_line_is_checked() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(closed()).await?;
        let body = br#"{"amount":100}"#;
        let (mut parts, ()) = http::Request::post("https://api.example/transfer")
            .header("content-type", "application/json")
            .header("content-digest", aauth_signing::content_digest(body))
            .header(
                "content-digest",
                format!("sha-512=:{}:", crate::world::base64_std(&[0; 64])),
            )
            .body(())
            .map_err(e)?
            .into_parts();
        let scheme = Scheme::jwt(r.token.clone());
        sign(
            &mut parts,
            body,
            &[SigningKey::new("sig", r.p.agent_key.as_ref(), &scheme)],
            &SignOptions::default()
                .digest(aauth_signing::DigestMode::Never)
                .with("content-digest")
                .with("content-type"),
            r.now(),
        )
        .map_err(e)?;
        let resp =
            r.p.world
                .send(http::Request::from_parts(parts, body.to_vec()))
                .await?;
        check(
            status_and_error(&resp) == (401, "error=invalid_signature".to_owned()),
            || {
                format!(
                    "a second, wrong digest line was answered {:?}",
                    status_and_error(&resp)
                )
            },
        )?;
        check(r.calls.load(Ordering::SeqCst) == 0, || {
            "the handler ran".to_owned()
        })
    })
}

/// A request the assistant makes as its client does (under `token`, with a nonce on a
/// state-changing one).
async fn as_agent(
    p: &Parties,
    token: &str,
    method: http::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<Response, String> {
    let mut b = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let mut req = b
        .body(body.map(|v| v.to_string().into_bytes()).unwrap_or_default())
        .map_err(e)?;
    sign_request_unique(
        &mut req,
        p.agent_key.as_ref(),
        &Scheme::jwt(token.to_owned()),
        p.clock.now(),
        &mut OsRandom,
    )
    .map_err(e)?;
    p.world.send(req).await
}

/// The assistant (not yet bound) asks for a person token; the Person Server defers.
async fn deferred(p: &Parties, token: &str) -> Result<(String, String), String> {
    let body = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let resp = as_agent(
        p,
        token,
        http::Method::POST,
        "https://ps.example/person-token",
        Some(&body),
    )
    .await?;
    if resp.status() != 202 {
        return Err(format!("not deferred: {}", resp.status()));
    }
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let code = header("aauth-requirement")
        .split("code=\"")
        .nth(1)
        .and_then(|c| c.split('"').next())
        .unwrap_or_default()
        .to_owned();
    Ok((header("location"), code))
}

/// A browser signed in to the Person Server as `account`, from the page of `code`.
async fn signed_in<'w>(
    world: &'w World,
    code: &str,
    account: &str,
    password: &str,
) -> Result<(Browser<'w>, Response), String> {
    let mut b = Browser {
        world,
        cookies: Vec::new(),
    };
    let (_, login) = b
        .go(
            "GET",
            &format!("https://ps.example/interact?code={code}"),
            &[],
        )
        .await?;
    let csrf = hidden(&login, "csrf");
    let (_, resp) = b
        .go(
            "POST",
            "https://ps.example/interact/login",
            &[
                ("code", code),
                ("csrf", &csrf),
                ("username", account),
                ("password", password),
            ],
        )
        .await?;
    Ok((b, resp))
}

fn consenting() -> Options {
    Options {
        policy: Some(Arc::new(AlwaysAsk)),
        consent_pages: true,
        bound: false,
        ..closed()
    }
}

/// A signed-in person posting decisions with guessed codes, in fresh sessions: before,
/// nothing limited it, and a hit approved someone else's agent and bound it.
///
/// # Errors
///
/// What got through.
pub fn interaction_codes_cannot_be_guessed() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(consenting()).await?;
        r.p.ps
            .set_password("mallory", "mallory's password")
            .await
            .map_err(e)?;
        let (location, code) = deferred(&r.p, &r.token).await?;
        let mut guesses = 0;
        loop {
            // A fresh session each time (before, a new session started a new count).
            let (mut b, resp) =
                signed_in(&r.p.world, "ZZZZ-ZZZZ", "mallory", "mallory's password").await?;
            if resp.status() != 303 {
                return Err(format!("mallory's sign-in: {}", resp.status()));
            }
            let guess = format!("ZZZZ-ZZ{guesses:02}");
            let (_, page) = b
                .go(
                    "GET",
                    &format!("https://ps.example/interact?code={guess}"),
                    &[],
                )
                .await?;
            guesses += 1;
            if page.status() == 429 {
                break;
            }
            check(page.status() == 404, || {
                format!("a wrong code was answered {}", page.status())
            })?;
            check(guesses < 10, || {
                "ten wrong codes and still no limit".to_owned()
            })?;
        }
        // Now even the right code approves nothing for mallory.
        let (mut b, _) = signed_in(&r.p.world, &code, "mallory", "mallory's password").await?;
        let (_, page) = b
            .go(
                "GET",
                &format!("https://ps.example/interact?code={code}"),
                &[],
            )
            .await?;
        check(page.status() == 429, || {
            format!(
                "after {guesses} wrong codes the right one was answered {}",
                page.status()
            )
        })?;
        // And the request still waits for its person.
        let url = format!("https://ps.example{location}");
        let poll = as_agent(&r.p, &r.token, http::Method::GET, &url, None).await?;
        check(poll.status() == 202, || {
            format!("the request was decided: {}", poll.status())
        })
    })
}

/// Passwords guessed over the wire: before, without limit (and each guess cost an
/// argon2 hash).
///
/// # Errors
///
/// What got through.
pub fn passwords_cannot_be_guessed() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(consenting()).await?;
        let (_, code) = deferred(&r.p, &r.token).await?;
        let mut tries = 0;
        loop {
            let (_, resp) =
                signed_in(&r.p.world, &code, "alice", &format!("guess {tries}")).await?;
            tries += 1;
            match resp.status().as_u16() {
                401 => check(tries < 10, || {
                    "ten wrong passwords and still no limit".to_owned()
                })?,
                429 => break,
                other => return Err(format!("a wrong password was answered {other}")),
            }
        }
        // The right password from a new browser is refused too, before any hash.
        let (_, resp) = signed_in(&r.p.world, &code, "alice", PASSWORD).await?;
        check(resp.status() == 429, || {
            format!(
                "after {tries} guesses the right password was answered {}",
                resp.status()
            )
        })
    })
}

/// Eight concurrent polls of one approved request, many rounds: before, about one round
/// in four delivered two person tokens.
///
/// # Errors
///
/// What got through.
pub fn one_approval_delivers_one_token() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = Arc::new(range(consenting()).await?);
        for round in 0..8 {
            let (location, code) = deferred(&r.p, &r.token).await?;
            let (mut b, resp) = signed_in(&r.p.world, &code, "alice", PASSWORD).await?;
            if resp.status() != 303 {
                return Err(format!("alice's sign-in: {}", resp.status()));
            }
            let (_, consent) = b
                .go(
                    "GET",
                    &format!("https://ps.example/interact?code={code}"),
                    &[],
                )
                .await?;
            let csrf = hidden(&consent, "csrf");
            let (_, done) = b
                .go(
                    "POST",
                    "https://ps.example/interact",
                    &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
                )
                .await?;
            if done.status() != 200 {
                return Err(format!("the approval: {}", done.status()));
            }
            let polls: Vec<_> = (0..8)
                .map(|_| {
                    let (r, location) = (Arc::clone(&r), location.clone());
                    tokio::spawn(async move {
                        let url = format!("https://ps.example{location}");
                        as_agent(&r.p, &r.token, http::Method::GET, &url, None).await
                    })
                })
                .collect();
            let mut tokens = 0;
            for p in polls {
                let resp = p.await.map_err(e)??;
                if resp.status() == 200 {
                    tokens += 1;
                }
            }
            check(tokens == 1, || {
                format!("round {round}: one approval delivered {tokens} tokens")
            })?;
        }
        Ok(())
    })
}

/// An agent opening requests for the person without end: before, each one stored (with
/// its justification) and found by a scan.
///
/// # Errors
///
/// What got through.
pub fn an_agent_cannot_flood_the_person_with_requests() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(consenting()).await?;
        let mut opened = 0;
        loop {
            match deferred(&r.p, &r.token).await {
                Ok(_) => opened += 1,
                Err(why) if why.contains("429") => break,
                Err(why) => return Err(why),
            }
            check(opened <= aauth_person_server::DEFAULT_MAX_PENDING, || {
                format!("{opened} requests open and still no limit")
            })?;
        }
        check(opened == aauth_person_server::DEFAULT_MAX_PENDING, || {
            format!("limited after {opened}")
        })
    })
}

/// A revocation whose `exp` is `u64::MAX`: before, the next check of that token
/// overflowed (a panic in a debug build, "not revoked" in a release build).
///
/// # Errors
///
/// What got through.
pub fn a_revocation_with_the_largest_exp_holds() -> Result<(), String> {
    runtime()?.block_on(async {
        let r = range(closed()).await?;
        // The Person Server's resource revocation branch: any resource may revoke its
        // own resource tokens; here resource.example, with u64::MAX.
        let jti = "rt-1";
        let body = serde_json::json!({"jti": jti, "exp": u64::MAX}).to_string();
        let mut req = http::Request::post("https://ps.example/revocation")
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .map_err(e)?;
        let scheme = Scheme::JwksUri {
            id: "https://resource.example".to_owned(),
            dwk: "aauth-resource.json".to_owned(),
            kid: "rs-1".to_owned(),
        };
        sign_request_unique(
            &mut req,
            r.p.rs_key.as_ref(),
            &scheme,
            r.now(),
            &mut OsRandom,
        )
        .map_err(e)?;
        let resp = r.p.world.send(req).await?;
        check(resp.status() == 200, || {
            format!("the revocation was answered {}", resp.status())
        })?;
        // Still revoked a day later: the record was kept, clamped to the longest
        // lifetime a resource token can have from now.
        let key = format!("resource https://resource.example {jti}");
        let store = r.p.ps.store();
        check(store.is_revoked(&key, r.now()).await.map_err(e)?, || {
            "the revocation was not recorded".to_owned()
        })?;
        check(
            !store
                .is_revoked(&key, r.now().plus(2 * 86_400))
                .await
                .map_err(e)?,
            || "a revocation of u64::MAX was kept forever".to_owned(),
        )
    })
}
