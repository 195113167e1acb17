//! Demo 8 (phase 8): clarification chat. As in demo 4 the Person Server must ask the
//! person, and this agent also declares the `clarification` capability. On the consent
//! page the person asks the agent why it needs access; the agent's long poll returns the
//! question (`requirement=clarification`); the agent answers at the pending URL
//! (`action: clarification_response`); the person reads the answer (shown as what the
//! agent asserts) and approves. Over real TLS in the demo world.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_agent::{AAuthClient, Agent, HttpPersonServer, HttpTokenSource, Interaction, PollPolicy};
use bytes::Bytes;

use crate::Transcript;
use crate::d02_agent_identity::show_exchanges;
use crate::d04_consent::{Browser, hidden, page_lines};
use crate::parties::{Options, parties};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const QUESTION: &str = "Why do you need to know who I am at the calendar?";
const ANSWER: &str = "To find a free slot for the team meeting you asked me to schedule; I will only read free/busy times.";

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
        let p = parties(Options { policy: None, consent_pages: true, bound: false, scope: "calendar.freebusy", authorization_endpoint: false, access_server: false, as_policy: None, mission_terms: None }).await?;
        let (world, clock, provider, ps) = (&p.world, Arc::clone(&p.clock), Arc::clone(&p.provider), Arc::clone(&p.ps));
        let (agent_id, agent_key) = (p.agent_id.clone(), Arc::clone(&p.agent_key));
        t.step(
            "world",
            "as demo 4 (alice must be asked), and the agent declares the clarification capability",
            vec![],
        );

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Interaction>();
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let heard = Arc::clone(&asked);
        let recorder = world.agent_transport();
        let agent = Arc::new(Agent::new(
            agent_id,
            agent_key,
            Arc::new(HttpTokenSource::new(provider.id().clone(), recorder.clone())),
        ));
        let ps_client = HttpPersonServer::new(ps.id().clone(), recorder.clone())
            .clock(Arc::clone(&clock))
            .poll_policy(PollPolicy::default().prefer_wait(Duration::from_secs(20)).deadline(Duration::from_secs(60)))
            .on_interaction(move |i| {
                let _sent = tx.send(i.clone());
            })
            .on_clarification(move |q| {
                heard.lock().map(|mut h| h.push(q.to_owned())).ok()?;
                Some(ANSWER.to_owned())
            });
        let agent_keys = p.agent_keys();
        let client = AAuthClient::builder(agent)
            .clock(Arc::clone(&clock))
            .person_server(Arc::new(ps_client), agent_keys)
            .build(recorder.clone());
        let call = tokio::spawn(async move {
            let req = http::Request::get("https://resource.example/calendar/freebusy")
                .body(Bytes::new())
                .map_err(e)?;
            client.send(req).await.map_err(e)
        });

        let interaction = rx.recv().await.ok_or("the agent never asked its person")?;
        show_exchanges(
            &mut t,
            recorder.take(),
            &[
                "its client gets an agent token",
                "calls with the agent token: requirement=person-token",
                "reads the Person Server's metadata",
                "asks for a person token (capabilities: interaction, clarification): 202 with an interaction code",
            ],
        )?;
        let mut browser = Browser { world, cookies: Vec::new() };
        let (_, login) = browser.go("GET", &format!("{}?code={}", interaction.url, interaction.code), &[]).await?;
        let csrf = hidden(&login, "csrf");
        let (_, signed_in) = browser
            .go("POST", "https://ps.example/interact/login", &[("code", interaction.code.as_str()), ("csrf", csrf.as_str()), ("username", "alice"), ("password", "correct horse battery staple")])
            .await?;
        let back = signed_in
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| format!("https://ps.example{l}"))
            .ok_or("no redirect after sign-in")?;
        let (req, consent) = browser.go("GET", &back, &[]).await?;
        t.step("person", "signs in and reads the request; the page offers to ask the agent (5 questions at most)", page_lines(&req, &consent));
        let csrf = hidden(&consent, "csrf");
        let (req, sent) = browser
            .go("POST", "https://ps.example/interact", &[("code", interaction.code.as_str()), ("csrf", csrf.as_str()), ("decision", "ask"), ("question", QUESTION)])
            .await?;
        t.step("person", "asks the agent a question", page_lines(&req, &sent));

        // The person reloads until the agent's answer is there.
        let mut answered = None;
        for _ in 0..50 {
            let (req, page) = browser.go("GET", &back, &[]).await?;
            if String::from_utf8_lossy(page.body()).contains("I will only read free/busy times") {
                answered = Some((req, page));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (req, page) = answered.ok_or("the agent's answer never reached the consent page")?;
        t.step("person", "reloads: the agent's answer, shown as what the agent asserts", page_lines(&req, &page));
        let csrf = hidden(&page, "csrf");
        let (req, done) = browser
            .go("POST", "https://ps.example/interact", &[("code", interaction.code.as_str()), ("csrf", csrf.as_str()), ("decision", "grant")])
            .await?;
        t.step("person", "approves", page_lines(&req, &done));

        let resp = call.await.map_err(e)??;
        if resp.status() != 200 {
            return Err(format!("the call did not go through: {}", resp.status()));
        }
        let questions = asked.lock().map_err(e)?.clone();
        if questions != [QUESTION] {
            return Err(format!("the agent heard {questions:?}"));
        }
        let seen = recorder.take();
        let n = seen.len();
        let mut summaries = vec![
            "long-polls: returns with alice's question (requirement=clarification)",
            "answers at the pending URL: action clarification_response",
            "long-polls again: alice approved, the person token",
            "calls with the person token: requirement=auth-token",
            "exchanges the resource token for an auth token",
            "calls with the auth token: admitted",
        ];
        while summaries.len() < n {
            summaries.insert(0, "polls: still pending");
        }
        show_exchanges(&mut t, seen, &summaries)?;
        Ok(t)
    })
}
