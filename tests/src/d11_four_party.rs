//! Demo 11 (phase 11): PS–AS trust and the federated four-party path. The resource has
//! its own Access Server (`as.example`), which trusts the person's Person Server
//! (`ps.example`); its resource tokens name the Access Server as `aud`. The agent's client
//! does what it does in three-party access (it cannot tell the difference): it gets a
//! person token, the resource answers with a resource token, and the client sends it to
//! its Person Server. The Person Server applies the person's policy, then asks the Access
//! Server, signed as itself (`sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json"`),
//! with the resource, agent and presented tokens; it checks the Access Server's auth token
//! (PS-53) and hands it to the agent, whose call goes through. Over real TLS in the demo
//! world, every key discovered from what each party publishes.

use std::sync::Arc;
use std::time::Duration;

use aauth_agent::{AAuthClient, HttpPersonServer};
use bytes::Bytes;

use crate::Transcript;
use crate::d01_pseudonymous::exchange;
use crate::d02_agent_identity::{client_exchanges, show_exchanges, token_lines};
use crate::parties::{Options, parties};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Runs the demo.
///
/// # Errors
///
/// A description of the first step that did not behave as the drafts require.
pub(crate) fn run() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let p = parties(Options { access_server: true, ..Options::bound("files.read") }).await?;
        t.step(
            "world",
            "agent.example (provider), ps.example (Person Server; alice has bound aauth:assistant; policy: approve; federates), as.example (Access Server of resource.example; trusts ps.example), resource.example (auth-token mode, scope files.read, resource tokens for as.example)",
            vec![],
        );
        let recorder = p.world.agent_transport();
        let client = AAuthClient::builder(p.agent(&recorder))
            .clock(Arc::clone(&p.clock))
            .person_server(
                Arc::new(HttpPersonServer::new(p.ps.id().clone(), recorder.clone()).clock(Arc::clone(&p.clock))),
                p.agent_keys(),
            )
            .build(recorder.clone());
        let get = || {
            http::Request::get("https://resource.example/files/report")
                .body(Bytes::new())
                .map_err(e)
        };
        let resp = client.send(get()?).await.map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the call did not go through: {} {:?}", resp.status(), resp.body()));
        }
        let seen = recorder.take();
        // The agent's exchanges, up to its auth-token request.
        let (before, after): (Vec<_>, Vec<_>) =
            seen.into_iter().enumerate().partition(|(i, _)| *i < 6);
        let resource_token = before
            .iter()
            .find_map(|(_, (_, r))| {
                let v = r.headers().get("aauth-requirement")?.to_str().ok()?;
                let rt = v.split("resource-token=\"").nth(1)?.split('"').next()?;
                Some(rt.to_owned())
            })
            .ok_or("no resource token on the wire")?;
        show_exchanges(
            &mut t,
            before.into_iter().map(|(_, x)| x).collect(),
            &[
                "its client gets an agent token from its provider",
                "calls with the agent token: requirement=person-token",
                "reads its Person Server's metadata",
                "gets a person token for resource.example",
                "calls with the person token: the resource mints a resource token for its Access Server (aud: as.example)",
                "sends the resource token and the person token to its Person Server, as always; the answer is the Access Server's auth token",
            ],
        )?;
        t.step(
            "resource",
            "the resource token: aud is its Access Server, ps is the person's Person Server",
            token_lines(&resource_token),
        );
        // What the Person Server did meanwhile.
        let federation = p.federation.as_ref().ok_or("no federation recorder")?.take();
        let summaries = [
            "reads the Access Server's metadata (the resource token's aud) for its auth_token_endpoint",
            "asks the Access Server, signed as itself (jwks_uri, body covered), with the resource, agent and presented tokens: an auth token",
        ];
        if federation.len() != summaries.len() {
            return Err(format!("the Person Server made {} calls to the Access Server", federation.len()));
        }
        let mut auth = None;
        for ((req, resp), summary) in federation.into_iter().zip(summaries) {
            if let Some(tok) = serde_json::from_slice::<serde_json::Value>(resp.body())
                .ok()
                .and_then(|v| v["auth_token"].as_str().map(str::to_owned))
            {
                auth = Some(tok);
            }
            exchange(&mut t, "person server", summary, req, &resp);
        }
        let auth = auth.ok_or("the Access Server issued no auth token")?;
        t.step(
            "access server",
            "the auth token (iss: as.example, dwk: aauth-access.json, ps: ps.example, the person's directed sub, the agent's key), checked by the Person Server (PS-53) before the agent sees it",
            token_lines(&auth),
        );
        show_exchanges(
            &mut t,
            after.into_iter().map(|(_, x)| x).collect(),
            &["calls with the auth token: the resource honours its Access Server's token"],
        )?;
        let resp = client.send(get()?).await.map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the second call was refused: {}", resp.status()));
        }
        client_exchanges(&mut t, &recorder, &["calls again: the cached auth token, nothing else"])?;

        // The operators' view: each server's audit log has the issuance, once.
        let at_as = crate::parties::operator_audit(&p.world, "as.example", "action=issued").await?;
        let issued_by_as = at_as.events.iter().filter(|e| {
            e.resource.as_deref() == Some("https://resource.example")
                && e.agent.as_deref() == Some("aauth:assistant@agent.example")
                && e.scope.as_deref() == Some("files.read")
                && e.detail.ends_with("to https://ps.example")
        });
        if issued_by_as.count() != 1 {
            return Err(format!("the Access Server's audit log does not show the one auth token it issued: {at_as:?}"));
        }
        t.step(
            "operator",
            "reads the Access Server's audit log (GET /admin/audit?action=issued, signed with an operator key)",
            crate::parties::audit_lines(&at_as),
        );
        let at_ps = crate::parties::operator_audit(&p.world, "ps.example", "action=issued").await?;
        let relayed = at_ps.events.iter().filter(|e| {
            e.detail.starts_with("auth token ")
                && e.detail.ends_with("(issued by the Access Server)")
                && e.agent.as_deref() == Some("aauth:assistant@agent.example")
        });
        if relayed.count() != 1 {
            return Err(format!("the Person Server's audit log does not show the auth token it relayed: {at_ps:?}"));
        }
        t.step(
            "operator",
            "reads the Person Server's: the person token it issued, and the Access Server's auth token it passed on",
            crate::parties::audit_lines(&at_ps),
        );
        Ok(t)
    })
}

/// The Access Server's policy in the trust-establishment run: the person must approve
/// their Person Server here once (draft -11 §PS-AS Trust Establishment, interaction).
pub(crate) struct BindFirst;
impl aauth_access_server::AccessPolicy for BindFirst {
    fn decide(
        &self,
        r: &aauth_access_server::AccessRequest<'_>,
    ) -> aauth_access_server::AccessDecision {
        if r.bound {
            aauth_access_server::AccessDecision::Grant
        } else {
            aauth_access_server::AccessDecision::RequireInteraction
        }
    }
}

/// Demo 11's trust establishment by interaction: the Access Server does not yet know that
/// this person uses this Person Server, so it answers the Person Server with
/// `requirement=interaction`; the Person Server passes the Access Server's link to the
/// agent with its own pending URL; the person approves at the Access Server; the agent's
/// poll of the Person Server gets the Access Server's token, checked, and the call goes
/// through.
///
/// # Errors
///
/// The first step that did not behave as the drafts require.
pub fn run_binding() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let p = parties(Options { access_server: true, as_policy: Some(Arc::new(BindFirst)), ..Options::bound("files.read") }).await?;
        t.step("world", "as demo 11, but as.example asks each person to approve their Person Server there once", vec![]);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<aauth_agent::Interaction>();
        let recorder = p.world.agent_transport();
        let client = AAuthClient::builder(p.agent(&recorder))
            .clock(Arc::clone(&p.clock))
            .person_server(
                Arc::new(
                    HttpPersonServer::new(p.ps.id().clone(), recorder.clone())
                        .clock(Arc::clone(&p.clock))
                        .poll_policy(aauth_agent::PollPolicy::default().deadline(Duration::from_secs(60)))
                        .on_interaction(move |i| {
                            let _sent = tx.send(i.clone());
                        }),
                ),
                p.agent_keys(),
            )
            .build(recorder.clone());
        let call = tokio::spawn(async move {
            let req = http::Request::get("https://resource.example/files/report")
                .body(Bytes::new())
                .map_err(e)?;
            client.send(req).await.map_err(e)
        });
        let interaction = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| "the agent was never asked to involve its person")?
            .ok_or("the agent was never asked to involve its person")?;
        t.step(
            "agent",
            format!("is told by its Person Server (relaying the Access Server) to send alice to {}?code={}", interaction.url, interaction.code),
            vec![],
        );
        // alice at the Access Server.
        let mut browser = crate::d04_consent::Browser { world: &p.world, cookies: Vec::new() };
        approve_at_access_server(&mut t, &mut browser, &format!("{}?code={}", interaction.url, interaction.code)).await?;
        let resp = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .map_err(|_| "the agent's call did not finish")?
            .map_err(e)??;
        if resp.status() != 200 {
            return Err(format!("the call did not go through: {} {}", resp.status(), String::from_utf8_lossy(resp.body())));
        }
        for (req, resp) in recorder.take() {
            let summary = format!("{} {} → {}", req.method(), req.uri(), resp.status());
            exchange(&mut t, "agent", &summary, req, &resp);
        }
        for (req, resp) in p.federation.as_ref().ok_or("no federation recorder")?.take() {
            let summary = format!("{} {} → {}", req.method(), req.uri(), resp.status());
            exchange(&mut t, "person server", &summary, req, &resp);
        }
        Ok(t)
    })
}

/// The payment challenge of the billing run (a Payment HTTP authentication scheme
/// challenge, as in draft -11 §AS Response).
pub const BILLING_CHALLENGE: &str =
    r#"Payment id="x7Tg2pLq", method="demo", request="eyJhbW91bnQiOiIxMDAifQ""#;

/// The question the Access Server asks in the billing run.
pub const AS_QUESTION: &str = "What will the agent do with **the report**?";

/// The Access Server's policy in the billing run: a Person Server is billed once (`402`),
/// and each request must say what the access is for (`requirement=clarification`).
struct BillThenAsk;
impl aauth_access_server::AccessPolicy for BillThenAsk {
    fn decide(
        &self,
        r: &aauth_access_server::AccessRequest<'_>,
    ) -> aauth_access_server::AccessDecision {
        use aauth_access_server::AccessDecision;
        if !r.billed {
            AccessDecision::RequirePayment(BILLING_CHALLENGE.to_owned())
        } else if r.clarification.is_none_or(|a| a.trim().is_empty()) {
            AccessDecision::RequireClarification {
                question: AS_QUESTION.to_owned(),
                options: Vec::new(),
            }
        } else {
            AccessDecision::Grant
        }
    }
}

/// Demo 11 with the Access Server's other steps composed on one pending URL: it answers
/// the Person Server's first request with `402 Payment Required`; the Person Server pays
/// (the demo world's processor confirms at once) and polls; the Access Server then asks
/// what the access is for; the Person Server passes the question to the agent as its own
/// `requirement=clarification`, forwards the agent's answer, and hands on the token.
///
/// # Errors
///
/// The first step that did not behave as the drafts require.
pub fn run_billing() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let p = parties(Options { access_server: true, as_policy: Some(Arc::new(BillThenAsk)), ..Options::bound("files.read") }).await?;
        t.step("world", "as demo 11, but as.example bills each Person Server once and asks what each access is for", vec![]);
        let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = Arc::clone(&asked);
        let recorder = p.world.agent_transport();
        let client = AAuthClient::builder(p.agent(&recorder))
            .clock(Arc::clone(&p.clock))
            .person_server(
                Arc::new(
                    HttpPersonServer::new(p.ps.id().clone(), recorder.clone())
                        .clock(Arc::clone(&p.clock))
                        .poll_policy(aauth_agent::PollPolicy::default().deadline(Duration::from_secs(60)))
                        .on_clarification(move |q| {
                            seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(q.to_owned());
                            Some("To summarize it for alice's weekly review.".to_owned())
                        }),
                ),
                p.agent_keys(),
            )
            .build(recorder.clone());
        let req = http::Request::get("https://resource.example/files/report")
            .body(Bytes::new())
            .map_err(e)?;
        let resp = tokio::time::timeout(Duration::from_secs(60), client.send(req))
            .await
            .map_err(|_| "the agent's call did not finish")?
            .map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the call did not go through: {} {}", resp.status(), String::from_utf8_lossy(resp.body())));
        }
        let settled = p.payments.settled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        t.step("person server", format!("settled the Access Server's payment challenge: {}", settled.join(" | ")), vec![]);
        let asked = asked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        t.step("agent", format!("was asked, through its Person Server: {}", asked.join(" | ")), vec![]);
        for (req, resp) in recorder.take() {
            let summary = format!("{} {} → {}", req.method(), req.uri(), resp.status());
            exchange(&mut t, "agent", &summary, req, &resp);
        }
        for (req, resp) in p.federation.as_ref().ok_or("no federation recorder")?.take() {
            let summary = format!("{} {} → {}", req.method(), req.uri(), resp.status());
            exchange(&mut t, "person server", &summary, req, &resp);
        }
        Ok(t)
    })
}

/// alice at the Access Server, from `link` (its interaction page with a code): it sends
/// her to its own login first (the code, which her agent also holds, approves nothing);
/// signed in, she reads which Person Server asks for which resource, and approves.
///
/// # Errors
///
/// The first step that did not behave as it should.
pub(crate) async fn approve_at_access_server(
    t: &mut Transcript,
    browser: &mut crate::d04_consent::Browser<'_>,
    link: &str,
) -> Result<(), String> {
    use crate::d04_consent::{hidden, page_lines};
    let location = |r: &crate::world::Response| {
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (req, hop) = browser.go("GET", link, &[]).await?;
    let login = location(&hop)
        .filter(|l| l.starts_with("https://as.example/login?return_to="))
        .ok_or("the Access Server did not ask alice to sign in")?;
    t.step(
        "person",
        "opens the Access Server's link: asked to sign in there first",
        page_lines(&req, &hop),
    );
    let (_, form) = browser.go("GET", &login, &[]).await?;
    let return_to = hidden(&form, "return_to");
    let (req, back) = browser
        .go(
            "POST",
            "https://as.example/login",
            &[
                ("return_to", &return_to),
                ("username", "alice"),
                ("password", crate::parties::PASSWORD),
            ],
        )
        .await?;
    t.step("person", "signs in at as.example", page_lines(&req, &back));
    let back = location(&back).ok_or("no way back to the Access Server's page")?;
    let (req, page) = browser
        .go("GET", &format!("https://as.example{back}"), &[])
        .await?;
    t.step(
        "person",
        "reads the Access Server's page: her Person Server asks for the resource",
        page_lines(&req, &page),
    );
    let code = back.split("code=").nth(1).unwrap_or_default().to_owned();
    let (req, done) = browser
        .go(
            "POST",
            "https://as.example/interact",
            &[("code", &code), ("decision", "grant")],
        )
        .await?;
    if done.status() != 200 {
        return Err(format!("the approval was refused: {}", done.status()));
    }
    t.step(
        "person",
        "approves: as.example now trusts ps.example for her",
        page_lines(&req, &done),
    );
    Ok(())
}
