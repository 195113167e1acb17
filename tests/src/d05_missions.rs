//! Demos 5 and 12 (phases 5 and 12): missions. The agent proposes what it will do; the
//! Person Server approves it with power-of-attorney constraints pinned inside the mission
//! blob (resources, tools, a validity window), answering the blob's exact bytes and their
//! SHA-256 (`s256`, checked by the agent). Every token under the mission carries
//! `mission_s256`: person token → resource token → auth token. Demo 5 shows the chain and a
//! request the constraints refuse; demo 12 the lifecycle: the person reviews the proposal
//! on the consent page, the agent works, records an update, proposes completion, the person
//! accepts, and the ended mission refuses further tokens. Over real TLS in the demo world.

use std::sync::Arc;
use std::time::Duration;

use aauth_agent::{
    AAuthClient, Agent, AgentError, HttpPersonServer, Interaction, PersonServerClient,
    PersonTokenRequest, PollPolicy,
};
use aauth_keys::time::Clock;
use aauth_metadata::{CacheConfig, KeyCache};
use aauth_person_server::dangerous::AutoApprove;
use aauth_person_server::{ConsentKind, ConsentPolicy, ConsentRequest, Decision};
use aauth_tokens::ServerId;
use bytes::Bytes;

use crate::Transcript;
use crate::d02_agent_identity::{show_exchanges, token_lines};
use crate::d04_consent::{Browser, hidden, page_lines};
use crate::parties::{Options, parties};
use crate::world::{Recorder, World};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The person reviews proposals and completions; tokens under an approved mission go
/// through by the mission's constraints.
struct ReviewMissions;
impl ConsentPolicy for ReviewMissions {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        match r.kind {
            ConsentKind::Mission | ConsentKind::Completion => Decision::AskPerson,
            _ => Decision::Approve,
        }
    }
}

struct Setup {
    world: World,
    clock: Arc<dyn Clock>,
    recorder: Arc<Recorder>,
    agent: Arc<Agent>,
    ps_client: Arc<HttpPersonServer>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Interaction>,
}

async fn setup(
    policy: Arc<dyn ConsentPolicy>,
    mission_terms: Option<Arc<aauth_person_server::MissionTerms>>,
) -> Result<Setup, String> {
    let p = parties(Options {
        policy: Some(policy),
        consent_pages: true,
        mission_terms,
        ..Options::bound("calendar.read")
    })
    .await?;
    let recorder = p.world.agent_transport();
    let agent = p.agent(&recorder);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Interaction>();
    let ps_client = Arc::new(
        HttpPersonServer::new(p.ps.id().clone(), recorder.clone())
            .clock(Arc::clone(&p.clock))
            .poll_policy(
                PollPolicy::default()
                    .prefer_wait(Duration::from_secs(20))
                    .deadline(Duration::from_secs(60)),
            )
            .on_interaction(move |i| {
                let _sent = tx.send(i.clone());
            }),
    );
    Ok(Setup {
        clock: Arc::clone(&p.clock),
        world: p.world,
        recorder,
        agent,
        ps_client,
        rx,
    })
}

impl Setup {
    fn client(&self, mission: &str) -> AAuthClient {
        let keys = Arc::new(KeyCache::new(
            Arc::new(self.world.fetcher()),
            Arc::clone(&self.clock),
            CacheConfig::default(),
        ));
        AAuthClient::builder(Arc::clone(&self.agent))
            .clock(Arc::clone(&self.clock))
            .mission(mission)
            .person_server(
                Arc::clone(&self.ps_client) as Arc<dyn PersonServerClient>,
                keys,
            )
            .build(self.recorder.clone())
    }

    async fn call(&self, client: &AAuthClient) -> Result<u16, String> {
        let req = http::Request::get("https://resource.example/calendar/today")
            .body(Bytes::new())
            .map_err(e)?;
        Ok(client.send(req).await.map_err(e)?.status().as_u16())
    }

    /// The person signs in with the code, reads, and approves.
    async fn person_approves(&mut self, t: &mut Transcript, what: &str) -> Result<(), String> {
        let interaction = self
            .rx
            .recv()
            .await
            .ok_or("the agent never asked its person")?;
        let mut browser = Browser {
            world: &self.world,
            cookies: Vec::new(),
        };
        let (_, login) = browser
            .go(
                "GET",
                &format!("{}?code={}", interaction.url, interaction.code),
                &[],
            )
            .await?;
        let csrf = hidden(&login, "csrf");
        let (_, signed_in) = browser
            .go(
                "POST",
                "https://ps.example/interact/login",
                &[
                    ("code", interaction.code.as_str()),
                    ("csrf", csrf.as_str()),
                    ("username", "alice"),
                    ("password", "correct horse battery staple"),
                ],
            )
            .await?;
        let back = signed_in
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| format!("https://ps.example{l}"))
            .ok_or("no redirect after sign-in")?;
        let (req, page) = browser.go("GET", &back, &[]).await?;
        t.step(
            "person",
            format!("signs in and reads {what}"),
            page_lines(&req, &page),
        );
        let csrf = hidden(&page, "csrf");
        let (req, done) = browser
            .go(
                "POST",
                "https://ps.example/interact",
                &[
                    ("code", interaction.code.as_str()),
                    ("csrf", csrf.as_str()),
                    ("decision", "grant"),
                ],
            )
            .await?;
        t.step("person", "approves", page_lines(&req, &done));
        Ok(())
    }
}

/// The terms alice approves missions on: for a day, and only at the resources the
/// proposal names. A mission's resource list is a record, not a limit (draft -11 §Mission
/// Approval): alice makes it one, as power of attorney.
pub(crate) fn within_what_it_names() -> Arc<aauth_person_server::MissionTerms> {
    Arc::new(|p: &aauth_person_server::Proposal, now: u64| {
        let mut c = aauth_person_server::Constraints::default();
        c.valid_until = Some(now + 86_400);
        c.resources = Some(p.resources.clone());
        c
    })
}

fn proposal() -> serde_json::Value {
    serde_json::json!({
        "description": "Plan the team offsite: find a day everyone is free.",
        "tools": [{"name": "calendar.read", "description": "read free/busy"}],
        "resources": ["https://resource.example"],
    })
}

/// Demo 5.
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
        let s = setup(Arc::new(AutoApprove), Some(within_what_it_names())).await?;
        t.step("world", "alice bound the assistant; her Person Server approves missions for a day, limited (her power of attorney) to the resources they name", vec![]);
        let approved = s.ps_client.propose_mission(&s.agent, proposal()).await.map_err(e)?;
        show_exchanges(
            &mut t,
            s.recorder.take(),
            &[
                "reads the Person Server's metadata (mission_endpoint)",
                "its client gets an agent token",
                "proposes a mission: approved with the blob's bytes, their s256, and a person token for the approved resource",
            ],
        )?;
        t.step(
            "agent",
            format!("checks s256 over the bytes it got: {}", approved.s256),
            vec![format!("mission: {}", String::from_utf8_lossy(&approved.blob))],
        );
        let client = s.client(&approved.s256);
        let status = s.call(&client).await?;
        if status != 200 {
            return Err(format!("the call under the mission was refused: {status}"));
        }
        let seen = s.recorder.take();
        let tokens: Vec<String> = seen
            .iter()
            .filter_map(|(_, r)| {
                let body: serde_json::Value = serde_json::from_slice(r.body()).ok()?;
                body.get("person_token").or_else(|| body.get("auth_token"))?.as_str().map(str::to_owned)
            })
            .collect();
        show_exchanges(
            &mut t,
            seen,
            &[
                "calls under the mission: requirement=person-token",
                "asks for a person token with mission_s256: the mission's constraints permit it",
                "calls with the person token: the resource token copies mission_s256",
                "exchanges it: the auth token carries mission_s256 too",
                "calls with the auth token: admitted",
            ],
        )?;
        for token in tokens {
            t.step("person server", "a token under the mission", token_lines(&token));
        }
        // Outside the mission's resources.
        let other = ServerId::parse("https://other.example").map_err(e)?;
        match s
            .ps_client
            .person_token(&s.agent, PersonTokenRequest::new(&other, Some(&approved.s256)))
            .await
        {
            Err(AgentError::PersonServer { status, .. }) if status == 403 => {}
            other => return Err(format!("a resource outside the mission was not refused: {other:?}")),
        }
        show_exchanges(&mut t, s.recorder.take(), &["asks for a person token for other.example under the mission: 403, violation resource_not_approved"])?;
        Ok(t)
    })
}

/// Demo 12.
///
/// # Errors
///
/// A description of the first step that did not behave as the drafts require.
pub(crate) fn run_lifecycle() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let mut s = setup(Arc::new(ReviewMissions), None).await?;
        t.step("world", "alice's Person Server asks her to review mission proposals and completions", vec![]);
        let ps_client = Arc::clone(&s.ps_client);
        let agent = Arc::clone(&s.agent);
        let proposing = tokio::spawn(async move { ps_client.propose_mission(&agent, proposal()).await });
        s.person_approves(&mut t, "the proposal (what the agent says it will do)").await?;
        let approved = proposing.await.map_err(e)?.map_err(e)?;
        show_exchanges(
            &mut t,
            s.recorder.take(),
            &[
                "reads the Person Server's metadata",
                "its client gets an agent token",
                "proposes a mission: 202, alice reviews it",
                "long-polls: approved, the blob and its s256",
            ],
        )?;
        let client = s.client(&approved.s256);
        if s.call(&client).await? != 200 {
            return Err("the call under the mission was refused".to_owned());
        }
        let n = s.recorder.take().len();
        t.step("agent", format!("works under the mission: {n} exchanges, the call admitted (as in demo 5)"), vec![]);
        let digest = s.ps_client.update_mission(&s.agent, &approved.s256, "Also book a venue near the office.").await.map_err(e)?;
        show_exchanges(&mut t, s.recorder.take(), &["records an update: the digest of the update as persisted; the mission's s256 is unchanged"])?;
        t.step("agent", format!("update digest {digest}"), vec![]);

        let ps_client = Arc::clone(&s.ps_client);
        let agent = Arc::clone(&s.agent);
        let mission = approved.s256.clone();
        let completing = tokio::spawn(async move {
            ps_client.complete_mission(&agent, &mission, "Friday the 12th works for everyone; venue shortlisted.").await
        });
        s.person_approves(&mut t, "the completion summary").await?;
        completing.await.map_err(e)?.map_err(e)?;
        show_exchanges(
            &mut t,
            s.recorder.take(),
            &[
                "proposes completion: 202, alice reviews the summary",
                "long-polls: accepted, the mission is terminated (completed)",
            ],
        )?;
        // A fresh client (no cached tokens) under the ended mission.
        let after = s.client(&approved.s256);
        match s.call(&after).await {
            Err(msg) if msg.contains("403") && msg.contains("mission_terminated") => {}
            other => return Err(format!("the ended mission still worked: {other:?}")),
        }
        show_exchanges(
            &mut t,
            s.recorder.take(),
            &[
                "calls again under the mission: requirement=person-token",
                "asks for a person token under the ended mission: 403 mission_terminated, termination_reason completed",
            ],
        )?;
        Ok(t)
    })
}
