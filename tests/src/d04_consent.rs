//! Demo 4 (phase 4): user delegation. The agent is not yet bound to a person at its
//! Person Server, so the person token it needs is deferred: the Person Server answers
//! `202` with a pending URL and an interaction code; the agent hands the code to its
//! person; the person signs in on the Person Server's consent page, reads the request,
//! and approves (which binds the agent to them); the agent's long-poll of the pending URL
//! returns the person token, and the three-party flow completes. Over real TLS in the
//! demo world; the person is driven by a small browser (cookies, forms).

use std::sync::Arc;
use std::time::Duration;

use aauth_agent::{AAuthClient, Agent, HttpPersonServer, HttpTokenSource, Interaction, PollPolicy};
use bytes::Bytes;

use crate::Transcript;
use crate::d02_agent_identity::show_exchanges;
use crate::parties::{Options, PASSWORD, parties};
use crate::world::{Request, Response, World};

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A person's browser: a cookie jar and the forms of the pages it reads.
pub(crate) struct Browser<'w> {
    pub(crate) world: &'w World,
    pub(crate) cookies: Vec<(String, String)>,
}

impl<'w> Browser<'w> {
    pub(crate) async fn go(
        &mut self,
        method: &str,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<(Request, Response), String> {
        let body: String = form
            .iter()
            .map(|(k, v)| {
                let enc: String = v
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                            char::from(b).to_string()
                        }
                        b' ' => "+".to_owned(),
                        b => format!("%{b:02X}"),
                    })
                    .collect();
                format!("{k}={enc}")
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut b = http::Request::builder().method(method).uri(url);
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            b = b.header("cookie", c.join("; "));
        }
        if method == "POST" {
            b = b.header("content-type", "application/x-www-form-urlencoded");
            // A form on a page of the same site (as the demos' pages are).
            if let Some(origin) = url
                .strip_prefix("https://")
                .and_then(|rest| rest.split('/').next())
            {
                b = b.header("origin", format!("https://{origin}"));
            }
        }
        let req = b.body(body.into_bytes()).map_err(e)?;
        let resp = self.world.send(req.clone()).await?;
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().map_err(e)?;
            if let Some((k, rest)) = v.split_once('=') {
                let value = rest.split(';').next().unwrap_or_default().to_owned();
                self.cookies.retain(|(n, _)| n != k);
                self.cookies.push((k.to_owned(), value));
            }
        }
        Ok((req, resp))
    }
}

/// The value of the hidden input `name` in an HTML page.
pub(crate) fn hidden(resp: &Response, name: &str) -> String {
    let html = String::from_utf8_lossy(resp.body());
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// A page as the transcript shows it: the request line, the status, and the page's text
/// without markup (passwords and cookies masked).
pub(crate) fn page_lines(req: &Request, resp: &Response) -> Vec<String> {
    let mut out = vec![format!("{} {}", req.method(), req.uri())];
    if !req.body().is_empty() {
        let body = String::from_utf8_lossy(req.body());
        let shown: Vec<String> = body
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("password" | "csrf", _)) => {
                    format!("{}=…", kv.split('=').next().unwrap_or_default())
                }
                _ => kv.to_owned(),
            })
            .collect();
        out.push(format!("form: {}", shown.join("&")));
    }
    out.push("→".to_owned());
    out.push(format!("HTTP/1.1 {}", resp.status()));
    if let Some(l) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
        out.push(format!("location: {l}"));
    }
    for c in resp.headers().get_all("set-cookie") {
        let c = c.to_str().unwrap_or_default();
        let name = c.split('=').next().unwrap_or_default();
        let attrs = c.split_once(';').map_or("", |(_, a)| a);
        out.push(format!("set-cookie: {name}=…;{attrs}"));
    }
    let html = String::from_utf8_lossy(resp.body());
    // The page's own content: what is inside `<main>` (the frame around it is the same
    // on every page).
    let html = html
        .split_once("<main")
        .map_or(html.as_ref(), |(_, rest)| rest);
    let html = html.split_once('>').map_or(html, |(_, rest)| rest);
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    if !text.is_empty() {
        out.push(format!(
            "page: {}",
            text.chars()
                .skip_while(|_| false)
                .take(1600)
                .collect::<String>()
        ));
    }
    out
}

/// Runs the demo.
///
/// # Errors
///
/// A description of the first step that did not behave as the drafts require.
pub(crate) fn run() -> Result<Transcript, String> {
    run_with(None)
}

/// Runs the demo with a person at a real browser instead of the scripted one:
/// `announce` is given what to open (the Chromium command that reaches the demo world,
/// and the interaction link); the demo waits up to ten minutes for the person's answer.
///
/// # Errors
///
/// As the scripted demo; also when the person denies or does not answer in time.
pub fn run_live(announce: &(dyn Fn(&str) + Sync)) -> Result<Transcript, String> {
    run_with(Some(announce))
}

fn run_with(live: Option<&(dyn Fn(&str) + Sync)>) -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let p = parties(Options::consenting()).await?;
        let (world, clock, provider, ps) = (&p.world, Arc::clone(&p.clock), Arc::clone(&p.provider), Arc::clone(&p.ps));
        let (agent_id, agent_key) = (p.agent_id.clone(), Arc::clone(&p.agent_key));
        t.step(
            "world",
            "agent.example, ps.example (consent pages; alice has an account, the agent is not bound to her), resource.example (auth-token mode, scope calendar.read)",
            vec![],
        );

        // The agent hands interaction codes to its person through a channel.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Interaction>();
        let recorder = world.agent_transport();
        let agent = Arc::new(Agent::new(
            agent_id,
            agent_key,
            Arc::new(HttpTokenSource::new(provider.id().clone(), recorder.clone())),
        ));
        let agent_keys = p.agent_keys();
        let ps_client = HttpPersonServer::new(ps.id().clone(), recorder.clone())
            .clock(Arc::clone(&clock))
            .poll_policy(
                PollPolicy::default()
                    .prefer_wait(Duration::from_secs(20))
                    .deadline(Duration::from_secs(if live.is_some() { 600 } else { 60 })),
            )
            .on_interaction(move |i| {
                let _sent = tx.send(i.clone());
            });
        let client = AAuthClient::builder(agent)
            .clock(Arc::clone(&clock))
            .person_server(Arc::new(ps_client), agent_keys)
            .build(recorder.clone());
        let call = tokio::spawn(async move {
            let req = http::Request::get("https://resource.example/calendar/today")
                .body(Bytes::new())
                .map_err(e)?;
            client.send(req).await.map_err(e)
        });

        // The person gets the code from the agent and opens the consent page.
        let interaction = rx.recv().await.ok_or("the agent never asked its person")?;
        show_exchanges(
            &mut t,
            recorder.take(),
            &[
                "its client gets an agent token from its provider",
                "calls with the agent token: requirement=person-token",
                "reads the Person Server's metadata",
                "asks for a person token: alice must be asked first, so 202 with a pending URL and an interaction code",
            ],
        )?;
        t.step(
            "agent",
            format!("tells its person: open {}?code={} (the code is also shown to type in)", interaction.url, interaction.code),
            vec![],
        );
        if let Some(announce) = live {
            let flags: Vec<String> = crate::browser::chromium_flags(world)
                .into_iter()
                .map(|f| format!("'{f}'"))
                .collect();
            announce(&format!(
                "\nThe servers are up. Open the consent page in Chromium (this profile reaches the demo world's names and trusts exactly its servers' keys):\n\n  chromium --user-data-dir=\"$(mktemp -d)\" {} '{}?code={}'\n\nSign in as alice (password: {PASSWORD}), read the request, and approve or deny. Waiting up to 10 minutes...\n",
                flags.join(" "),
                interaction.url,
                interaction.code
            ));
            t.step("person", "answers on the consent page in a real browser", vec![]);
        } else {
            scripted_person(&mut t, world, &interaction).await?;
        }

        let resp = call.await.map_err(e)??;
        if resp.status() != 200 {
            return Err(format!("the call did not go through: {}", resp.status()));
        }
        let seen = recorder.take();
        let n = seen.len();
        let mut summaries = vec![
            "long-polls the pending URL (Prefer: wait): answered when alice approves, with the person token",
            "calls with the person token: requirement=auth-token with a resource token",
            "exchanges it for an auth token (alice's policy approves access once she has bound the agent)",
            "calls with the auth token: admitted as alice's directed identifier",
        ];
        // A long poll that timed out before alice answered adds a 202 before the 200.
        while summaries.len() < n {
            summaries.insert(0, "polls the pending URL: still pending");
        }
        show_exchanges(&mut t, seen, &summaries)?;

        // The operator's view: what the Person Server decided and issued, from its audit log.
        let page = crate::parties::operator_audit(world, "ps.example", "").await?;
        let has = |action: &str, start: &str, scope: Option<&str>| {
            page.events.iter().any(|e| {
                e.action.as_str() == action
                    && e.detail.starts_with(start)
                    && e.agent.as_deref() == Some("aauth:assistant@agent.example")
                    && e.resource.as_deref() == Some("https://resource.example")
                    && scope.is_none_or(|s| e.scope.as_deref() == Some(s))
            })
        };
        for (action, start, scope) in [
            ("approved", "approved by the person", None),
            ("issued", "person token ", None),
            ("issued", "auth token ", Some("calendar.read")),
        ] {
            if !has(action, start, scope) {
                return Err(format!("no {action} \"{start}…\" event in the Person Server's audit log: {page:?}"));
            }
        }
        if live.is_none() && page.events.iter().any(|e| e.request.is_none() && e.action.as_str() == "approved") {
            return Err("the approval does not name its pending request".to_owned());
        }
        t.step(
            "operator",
            "reads the Person Server's audit log: GET /admin/audit, signed (hwk) with an operator key",
            crate::parties::audit_lines(&page),
        );
        if let Some(announce) = live {
            announce(
                "\nThe agent got through. In the same browser, open https://ps.example/account: \
                 alice's agent, the tokens issued in her name (revoke one: it is confirmed first), \
                 and what happened, filtered and downloadable.\n\nPress Enter to end the demo \
                 (it ends by itself in 10 minutes)...\n",
            );
            let enter = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(drop)
            });
            let _ended = tokio::time::timeout(Duration::from_secs(600), enter).await;
            t.step("person", "uses the dashboard at /account in a real browser", vec![]);
        }
        Ok(t)
    })
}

/// The scripted person: opens the link, signs in as alice, reads the request, approves.
async fn scripted_person(
    t: &mut Transcript,
    world: &World,
    interaction: &Interaction,
) -> Result<(), String> {
    let mut browser = Browser {
        world,
        cookies: Vec::new(),
    };
    let url = format!("{}?code={}", interaction.url, interaction.code);
    let (req, login) = browser.go("GET", &url, &[]).await?;
    t.step(
        "person",
        "opens the link: asked to sign in (a CSRF cookie and token on the form)",
        page_lines(&req, &login),
    );
    let csrf = hidden(&login, "csrf");
    let (req, signed_in) = browser
        .go(
            "POST",
            "https://ps.example/interact/login",
            &[
                ("code", &interaction.code),
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    if signed_in.status() != 303 {
        return Err(format!("sign-in failed: {}", signed_in.status()));
    }
    t.step(
        "person",
        "signs in as alice: a __Host- session cookie, back to the request",
        page_lines(&req, &signed_in),
    );
    let back = signed_in
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("no redirect after sign-in")?;
    let (req, done) = read_and_approve(
        t,
        &mut browser,
        &interaction.code,
        back,
        "reads what the resource asks, apart from what the agent says about itself",
    )
    .await?;
    t.step(
        "person",
        "approves: the agent is now bound to alice",
        page_lines(&req, &done),
    );
    Ok(())
}

/// The signed-in person opens the consent page at `target` (a path of ps.example), reads
/// it (the step `reads` in `t`) and approves the request `code` names: the approval's
/// request and answer.
///
/// # Errors
///
/// A consent page that did not open.
pub(crate) async fn read_and_approve(
    t: &mut Transcript,
    browser: &mut Browser<'_>,
    code: &str,
    target: &str,
    reads: &str,
) -> Result<(Request, Response), String> {
    let (req, consent) = browser
        .go("GET", &format!("https://ps.example{target}"), &[])
        .await?;
    if consent.status() != 200 {
        return Err(format!("the consent page failed: {}", consent.status()));
    }
    t.step("person", reads.to_owned(), page_lines(&req, &consent));
    let csrf = hidden(&consent, "csrf");
    browser
        .go(
            "POST",
            "https://ps.example/interact",
            &[("code", code), ("csrf", &csrf), ("decision", "grant")],
        )
        .await
}
