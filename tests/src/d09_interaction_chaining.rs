//! Demo 9 (phase 9): interaction chaining. As in demo 7, travel.example reads the
//! person's calendar downstream with the agent's auth token as `upstream_token`; this
//! time the Person Server asks the person before the planner may read it. The planner
//! cannot show a consent page to anyone: it answers the agent with its own `202`, its own
//! pending URL and interaction code. The agent hands the code to its person; the person
//! opens travel.example's link, is sent on to the Person Server's consent page, signs in
//! and approves; the planner's downstream request completes, and the agent's poll of
//! travel.example's pending URL returns the trip. Over real TLS in the demo world.

use std::sync::Arc;
use std::time::Duration;

use aauth_agent::{AAuthClient, HttpPersonServer, Interaction, PollPolicy};
use aauth_person_server::{ConsentKind, ConsentPolicy, ConsentRequest, Decision};
use bytes::Bytes;

use crate::Transcript;
use crate::d01_pseudonymous::exchange;
use crate::d04_consent::{Browser, hidden, page_lines};
use crate::parties::{Options, PASSWORD, parties};
use crate::world::{Request, Response};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// alice's policy: her assistant may act; whether an intermediary's planner may know her
/// somewhere (a person token), she decides herself; once she has, its access follows.
struct AskForPlanners;
impl ConsentPolicy for AskForPlanners {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        if r.agent.as_str().starts_with("aauth:planner@") && r.kind == ConsentKind::PersonToken {
            Decision::AskPerson
        } else {
            Decision::Approve
        }
    }
}

/// A one-line summary of an exchange the transcript did not script (their number
/// depends on timing: long polls).
fn describe(req: &Request, resp: &Response) -> String {
    let status = serde_json::from_slice::<serde_json::Value>(resp.body())
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_owned));
    match (req.method().as_str(), resp.status().as_u16(), status) {
        ("POST", 202, _) => format!(
            "{} {}: deferred (202), the Person Server asks alice first",
            req.method(),
            req.uri()
        ),
        (_, 202, Some(s)) => format!("polls {}: still {s}", req.uri()),
        (m, s, _) => format!("{m} {} → {s}", req.uri()),
    }
}

/// The assistant asks travel.example for the next trip (in a task: it may wait for the
/// person); its exchanges go through the returned recorder, and the interactions it is
/// asked to hand its person come out of the receiver.
#[allow(clippy::type_complexity, reason = "the three handles a run uses, once")]
fn plan_trip(
    p: &crate::parties::Parties,
) -> (
    Arc<crate::world::Recorder>,
    tokio::task::JoinHandle<Result<http::Response<Bytes>, String>>,
    tokio::sync::mpsc::UnboundedReceiver<Interaction>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Interaction>();
    let recorder = p.world.agent_transport();
    let client = AAuthClient::builder(p.agent(&recorder))
        .clock(Arc::clone(&p.clock))
        .person_server(
            Arc::new(
                HttpPersonServer::new(p.ps.id().clone(), recorder.clone())
                    .clock(Arc::clone(&p.clock)),
            ),
            p.agent_keys(),
        )
        .poll_policy(PollPolicy::default().deadline(Duration::from_secs(60)))
        .on_interaction(move |i| {
            let _sent = tx.send(i.clone());
        })
        .build(recorder.clone());
    let call = tokio::spawn(async move {
        let req = http::Request::get("https://travel.example/trips/next")
            .body(Bytes::new())
            .map_err(e)?;
        client.send(req).await.map_err(e)
    });
    (recorder, call, rx)
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
        let p = parties(Options {
            policy: Some(Arc::new(AskForPlanners)),
            consent_pages: true,
            bound: true,
            scope: "calendar.read",
            authorization_endpoint: false,
            access_server: false,
            as_policy: None, mission_terms: None,
        })
        .await?;
        let downstream = crate::intermediary::serve(&p).await?.downstream;
        t.step(
            "world",
            "agent.example, ps.example (alice has bound aauth:assistant; her policy: she decides what any planner asks), travel.example (a resource and the provider of its own agent aauth:planner@travel.example), resource.example (alice's calendar)",
            vec![],
        );

        let (recorder, call, mut rx) = plan_trip(&p);

        // The agent is told to involve its person, by travel.example.
        let interaction = rx.recv().await.ok_or("the agent never asked its person")?;
        let seen = recorder.take();
        let scripted = [
            "its client gets an agent token from its provider",
            "calls travel.example: requirement=person-token",
            "reads its Person Server's metadata",
            "gets a person token for travel.example",
            "calls with it: requirement=auth-token",
            "gets the auth token for travel.example",
            "calls with it: travel.example's planner needs alice downstream, so travel.example answers 202 with its own pending URL and interaction code",
            "offers the interaction to its Person Server first (draft -11 §Relaying Through the Person Server): posts {type: interaction, url, code} to the interaction_endpoint its metadata named: 424 interaction_unavailable (this Person Server has no channel of its own to alice), so the agent tells her itself",
        ];
        if seen.len() != scripted.len() {
            return Err(format!("the agent made {} calls before the interaction", seen.len()));
        }
        for ((req, resp), summary) in seen.into_iter().zip(scripted) {
            exchange(&mut t, "agent", summary, req, &resp);
        }
        if interaction.url != "https://travel.example/interact" {
            return Err(format!("the interaction is not travel.example's own: {}", interaction.url));
        }
        t.step(
            "agent",
            format!("tells alice: open {}?code={}", interaction.url, interaction.code),
            vec![],
        );

        // alice: travel.example's link sends her on to her Person Server's consent page.
        let mut browser = Browser { world: &p.world, cookies: Vec::new() };
        let (req, hop) = browser
            .go("GET", &format!("{}?code={}", interaction.url, interaction.code), &[])
            .await?;
        t.step("person", "opens travel.example's link: sent on to the Person Server, with the downstream code", page_lines(&req, &hop));
        let next = hop
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .filter(|l| l.starts_with("https://ps.example/interact?code="))
            .ok_or("travel.example did not send the person to the Person Server")?
            .to_owned();
        let code = next.split("code=").nth(1).unwrap_or_default().to_owned();
        let (req, login) = browser.go("GET", &next, &[]).await?;
        t.step("person", "lands on the Person Server: asked to sign in", page_lines(&req, &login));
        let csrf = hidden(&login, "csrf");
        let (req, signed_in) = browser
            .go("POST", "https://ps.example/interact/login", &[("code", &code), ("csrf", &csrf), ("username", "alice"), ("password", PASSWORD)])
            .await?;
        t.step("person", "signs in as alice", page_lines(&req, &signed_in));
        let back = signed_in
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or("no redirect after sign-in")?
            .to_owned();
        let (req, consent) = browser.go("GET", &format!("https://ps.example{back}"), &[]).await?;
        t.step("person", "reads what the planner asks: her calendar at resource.example, for travel.example's agent", page_lines(&req, &consent));
        let csrf = hidden(&consent, "csrf");
        let (req, done) = browser
            .go("POST", "https://ps.example/interact", &[("code", &code), ("csrf", &csrf), ("decision", "grant")])
            .await?;
        t.step("person", "approves", page_lines(&req, &done));

        let resp = call.await.map_err(e)??;
        if resp.status() != 200 {
            return Err(format!("the trip was not planned: {} {}", resp.status(), String::from_utf8_lossy(resp.body())));
        }
        for (req, resp) in downstream.take() {
            let summary = format!("(travel.example's planner) {}", describe(&req, &resp));
            exchange(&mut t, "travel.example", &summary, req, &resp);
        }
        for (req, resp) in recorder.take() {
            let summary = if resp.status() == 200 {
                "polls travel.example's pending URL: the trip, planned around alice's calendar".to_owned()
            } else {
                describe(&req, &resp)
            };
            exchange(&mut t, "agent", &summary, req, &resp);
        }
        Ok(t)
    })
}

/// Demo 9 with the person needed by the downstream resource's Access Server instead of
/// the Person Server: resource.example's Access Server asks each person to approve their
/// Person Server there once. The Person Server passes the Access Server's link to the
/// planner; travel.example answers the agent with its own `202` and code; alice, sent on
/// from travel.example's link, approves at the Access Server; the planner's downstream
/// request completes and the agent's poll returns the trip.
///
/// # Errors
///
/// The first step that did not behave as the drafts require.
pub fn run_via_access_server() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let p = parties(Options { access_server: true, as_policy: Some(Arc::new(crate::d11_four_party::BindFirst)), ..Options::bound("calendar.read") })
        .await?;
        let downstream = crate::intermediary::serve(&p).await?.downstream;
        t.step(
            "world",
            "as demo 9, but alice's Person Server approves by itself and resource.example's Access Server (as.example) asks each person to approve their Person Server there once",
            vec![],
        );
        let (recorder, call, mut rx) = plan_trip(&p);
        let asked = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| "the agent was never asked to involve its person")?;
        let Some(interaction) = asked else {
            let outcome = match call.await.map_err(e)? {
                Ok(r) => format!("{} {}", r.status(), String::from_utf8_lossy(r.body())),
                Err(why) => why,
            };
            let planner: Vec<String> = downstream
                .take()
                .into_iter()
                .map(|(q, r)| format!("{} {} → {} {}", q.method(), q.uri(), r.status(), String::from_utf8_lossy(r.body())))
                .collect();
            return Err(format!(
                "the agent was never asked to involve its person; its call ended: {outcome}; the planner's calls: {planner:?}"
            ));
        };
        if interaction.url != "https://travel.example/interact" {
            return Err(format!("the interaction is not travel.example's own: {}", interaction.url));
        }
        t.step("agent", format!("tells alice: open {}?code={}", interaction.url, interaction.code), vec![]);
        let mut browser = Browser { world: &p.world, cookies: Vec::new() };
        let (req, hop) = browser
            .go("GET", &format!("{}?code={}", interaction.url, interaction.code), &[])
            .await?;
        t.step("person", "opens travel.example's link: sent on to the Access Server, with its code", page_lines(&req, &hop));
        let next = hop
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .filter(|l| l.starts_with("https://as.example/interact?code="))
            .ok_or("travel.example did not send the person to the Access Server")?
            .to_owned();
        crate::d11_four_party::approve_at_access_server(&mut t, &mut browser, &next).await?;
        let resp = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .map_err(|_| "the agent's call did not finish")?
            .map_err(e)??;
        if resp.status() != 200 {
            return Err(format!("the trip was not planned: {} {}", resp.status(), String::from_utf8_lossy(resp.body())));
        }
        for (req, resp) in downstream.take() {
            let summary = format!("(travel.example's planner) {} {} → {}", req.method(), req.uri(), resp.status());
            exchange(&mut t, "travel.example", &summary, req, &resp);
        }
        for (req, resp) in p.federation.as_ref().ok_or("no federation recorder")?.take() {
            let summary = format!("{} {} → {}", req.method(), req.uri(), resp.status());
            exchange(&mut t, "person server", &summary, req, &resp);
        }
        for (req, resp) in recorder.take() {
            let summary = format!("{} {} → {}", req.method(), req.uri(), resp.status());
            exchange(&mut t, "agent", &summary, req, &resp);
        }
        Ok(t)
    })
}
