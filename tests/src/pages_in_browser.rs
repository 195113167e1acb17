//! The person's pages in a real browser (issue 16): headless Chromium signs in, reads the
//! consent page of a token asked under a mission (the resource's name, its scope's
//! description, the mission's budget), approves; opens the dashboard, finds the agent, the
//! mission and the token, revokes the token; the agent's next request with it is refused
//! by the resource, which the Person Server told. Each page is photographed at a desktop's
//! and a phone's size, and checked by axe-core in the page.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aauth_agent::{AAuthClient, HttpPersonServer, Interaction, PersonServerClient, PollPolicy};
use aauth_person_server::{ConsentKind, ConsentPolicy, ConsentRequest, Decision};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::browser::{WebDriver, chromium_flags};
use crate::parties::{Options, PASSWORD, parties};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Missions are approved on their terms; each auth token asks the person.
struct AskForAccess;
impl ConsentPolicy for AskForAccess {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        match r.kind {
            ConsentKind::AuthToken => Decision::AskPerson,
            _ => Decision::Approve,
        }
    }
}

/// The sizes pages are photographed at: a desktop and a phone.
const SIZES: [(u32, u32, &str); 2] = [(1280, 800, "1280x800"), (390, 844, "390x844")];

/// What the browser saw and what the agent got.
#[derive(Debug)]
pub struct PagesInBrowser {
    /// The consent page's text.
    pub consent: String,
    /// The dashboard's text once the call went through.
    pub dashboard: String,
    /// The page after revoking.
    pub revoked: String,
    /// The agent's first call, once approved: its status.
    pub first_call: u16,
    /// The resource's answer to the agent's next request with the revoked token: its
    /// status and headers, as text.
    pub refused: Option<(u16, String)>,
    /// The screenshots taken.
    pub screenshots: Vec<PathBuf>,
    /// axe-core's serious and critical violations, by page (empty: none).
    pub violations: Vec<(String, Value)>,
}

/// Photographs the page at each of [`SIZES`] as `{name}-{size}.png` in `shots`, then runs
/// `axe` (axe-core's source) in it; back at the desktop size.
async fn capture(
    wd: &WebDriver,
    shots: &Path,
    name: &str,
    axe: &str,
    seen: &mut PagesInBrowser,
) -> Result<(), String> {
    for (w, h, size) in SIZES {
        wd.window_size(w, h).await?;
        let path = shots.join(format!("{name}-{size}.png"));
        std::fs::write(&path, wd.screenshot().await?).map_err(e)?;
        seen.screenshots.push(path);
    }
    wd.window_size(SIZES[0].0, SIZES[0].1).await?;
    let script = format!(
        "{axe}\n;return axe.run(document, {{ resultTypes: ['violations'] }}).then(r => r.violations\
         .filter(v => v.impact === 'serious' || v.impact === 'critical')\
         .map(v => ({{ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')) }})));"
    );
    let found = wd.execute(&script, json!([])).await?;
    if found.as_array().is_some_and(|v| !v.is_empty()) {
        seen.violations.push((name.to_owned(), found));
    }
    Ok(())
}

/// Runs the whole walk; `axe` is axe-core's source (`axe.min.js`), screenshots go to
/// `shots`.
///
/// # Errors
///
/// The first step that failed.
pub async fn pages_in_browser(
    browser: &Path,
    driver: &Path,
    shots: &Path,
    axe: &str,
) -> Result<PagesInBrowser, String> {
    std::fs::create_dir_all(shots).map_err(e)?;
    let terms: Arc<aauth_person_server::MissionTerms> =
        Arc::new(|p: &aauth_person_server::Proposal, now: u64| {
            let mut c = aauth_person_server::Constraints::default();
            c.valid_until = Some(now + 86_400);
            c.resources = Some(p.resources.clone());
            c.budget = aauth_tokens::Budget::new(2500, "USD", 2).ok();
            c
        });
    let p = parties(Options {
        policy: Some(Arc::new(AskForAccess)),
        bound: true,
        mission_terms: Some(terms),
        ..Options::consenting()
    })
    .await?;
    let recorder = p.world.agent_transport();
    let agent = p.agent(&recorder);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Interaction>();
    let ps_client = Arc::new(
        HttpPersonServer::new(p.ps.id().clone(), recorder.clone())
            .clock(Arc::clone(&p.clock))
            .poll_policy(
                PollPolicy::default()
                    .prefer_wait(Duration::from_secs(20))
                    .deadline(Duration::from_secs(90)),
            )
            .on_interaction(move |i| {
                let _sent = tx.send(i.clone());
            }),
    );
    let mission = ps_client
        .propose_mission(
            &agent,
            json!({
                "description": "Plan the team offsite: find a day everyone is free.",
                "tools": [{"name": "calendar.read", "description": "read free/busy"}],
                "resources": ["https://resource.example"],
            }),
        )
        .await
        .map_err(e)?;
    let client = AAuthClient::builder(Arc::clone(&agent))
        .clock(Arc::clone(&p.clock))
        .mission(&mission.s256)
        .person_server(
            Arc::clone(&ps_client) as Arc<dyn PersonServerClient>,
            p.agent_keys(),
        )
        .build(recorder.clone());
    let client = Arc::new(client);
    let call = |client: Arc<AAuthClient>| {
        tokio::spawn(async move {
            let req = http::Request::get("https://resource.example/calendar/today")
                .body(Bytes::new())
                .map_err(e)?;
            client.send(req).await.map_err(e)
        })
    };
    let first = call(Arc::clone(&client));
    let interaction = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .map_err(|_| "the agent never asked its person")?
        .ok_or("the agent never asked its person")?;

    let wd = WebDriver::start(browser, driver, &chromium_flags(&p.world)).await?;
    let walked = walk(&wd, &interaction, shots, axe).await;
    let mut seen = match walked {
        Ok(seen) => seen,
        Err(err) => {
            wd.quit().await;
            return Err(err);
        }
    };
    let resp = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .map_err(|_| "the agent's call did not finish after the approval")?
        .map_err(e)??;
    seen.first_call = resp.status().as_u16();

    // The dashboard: the agent, the mission and the token; the token revoked.
    let revoked = revoke_on_dashboard(&wd, shots, axe, &mut seen).await;
    wd.quit().await;
    seen.revoked = revoked?;

    // The agent's next request with the revoked token: the resource refuses it (the
    // client then starts again, and would wait for the person: not awaited here).
    recorder.take();
    let next = call(client);
    tokio::time::sleep(Duration::from_secs(5)).await;
    next.abort();
    seen.refused = recorder
        .take()
        .into_iter()
        .find(|(req, _)| req.uri().host() == Some("resource.example"))
        .map(|(_, resp)| (resp.status().as_u16(), format!("{:?}", resp.headers())));
    Ok(seen)
}

/// Sign-in and consent, photographed and checked.
async fn walk(
    wd: &WebDriver,
    interaction: &Interaction,
    shots: &Path,
    axe: &str,
) -> Result<PagesInBrowser, String> {
    let mut seen = PagesInBrowser {
        consent: String::new(),
        dashboard: String::new(),
        revoked: String::new(),
        first_call: 0,
        refused: None,
        screenshots: Vec::new(),
        violations: Vec::new(),
    };
    wd.goto(&format!("{}?code={}", interaction.url, interaction.code))
        .await?;
    let user = wd.find("input[name=username]").await?;
    capture(wd, shots, "sign-in", axe, &mut seen).await?;
    wd.type_into(&user, "alice").await?;
    let pass = wd.find("input[name=password]").await?;
    wd.type_into(&pass, PASSWORD).await?;
    wd.click(&wd.find("button[type=submit]").await?).await?;
    let grant = wd.find("button[value=grant]").await?;
    seen.consent = wd.text(&wd.find("main").await?).await?;
    capture(wd, shots, "consent", axe, &mut seen).await?;
    wd.click(&grant).await?;
    wd.wait_for_text("body", "Approved").await?;
    Ok(seen)
}

/// Opens the dashboard, reads it, revokes the auth token (confirming).
async fn revoke_on_dashboard(
    wd: &WebDriver,
    shots: &Path,
    axe: &str,
    seen: &mut PagesInBrowser,
) -> Result<String, String> {
    wd.goto("https://ps.example/account").await?;
    let revoke = wd.find("tr.token-row[data-kind=auth] button").await?;
    seen.dashboard = wd.text(&wd.find("main").await?).await?;
    capture(wd, shots, "dashboard", axe, seen).await?;
    wd.click(&revoke).await?;
    let yes = wd.find("button.primary").await?;
    capture(wd, shots, "confirm", axe, seen).await?;
    wd.click(&yes).await?;
    wd.wait_for_text("main", "The token is revoked").await
}
