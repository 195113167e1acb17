//! Demo 7 (phase 7): call chaining. The agent calls `travel.example`, a resource that is
//! also its own agent provider; to plan the trip it must read the person's calendar at
//! `resource.example`. It does not reuse the agent's token (it is bound to the agent's
//! key and addressed to travel.example): its own agent, `aauth:planner@travel.example`,
//! asks the Person Server the agent's auth token names, presenting that token as
//! `upstream_token` on every request. The Person Server issues for the person the
//! upstream token names (from its own record), with a directed `sub` of their own at the
//! calendar, never outliving the upstream token, and without binding the intermediary to
//! the person. Over real TLS in the demo world.

use std::sync::Arc;

use aauth_agent::{AAuthClient, HttpPersonServer, PersonServerClient};
use bytes::Bytes;

use crate::Transcript;
use crate::d01_pseudonymous::exchange;
use crate::d02_agent_identity::{show_exchanges, token_lines};
use crate::d05_missions::within_what_it_names;
use crate::parties::{Options, parties};
use crate::world::{Request, Response};

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
        let p = parties(Options::bound("calendar.read")).await?;

        let downstream = crate::intermediary::serve(&p).await?.downstream;
        t.step(
            "world",
            "agent.example (provider), ps.example (Person Server; alice has bound aauth:assistant; policy: approve), travel.example (auth-token mode, scope trips.plan; also the agent provider of its own agent aauth:planner@travel.example), resource.example (alice's calendar; auth-token mode, scope calendar.read)",
            vec![],
        );

        // The agent calls travel.example as it would any resource.
        let recorder = p.world.agent_transport();
        let client = AAuthClient::builder(p.agent(&recorder))
            .clock(Arc::clone(&p.clock))
            .person_server(
                Arc::new(HttpPersonServer::new(p.ps.id().clone(), recorder.clone()).clock(Arc::clone(&p.clock))),
                p.agent_keys(),
            )
            .build(recorder.clone());
        let resp = client
            .send(http::Request::get("https://travel.example/trips/next").body(Bytes::new()).map_err(e)?)
            .await
            .map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the trip was not planned: {} {}", resp.status(), String::from_utf8_lossy(resp.body())));
        }
        let seen = recorder.take();
        let n = seen.len();
        let (first, last): (Vec<_>, Vec<_>) = seen.into_iter().enumerate().partition(|(i, _)| *i + 1 < n);
        show_exchanges(
            &mut t,
            first.into_iter().map(|(_, x)| x).collect(),
            &[
                "its client gets an agent token from its provider",
                "calls travel.example with the agent token: requirement=person-token",
                "reads its Person Server's metadata",
                "gets a person token for travel.example",
                "calls with the person token: requirement=auth-token with a resource token",
                "exchanges them for an auth token for travel.example (scope trips.plan)",
            ],
        )?;
        // What travel.example did, as its own agent, while answering.
        let chained = downstream.take();
        let summaries = [
            "travel.example's planner (its agent token from its own provider, in process) calls the calendar: requirement=person-token",
            "reads the Person Server's metadata (the one the upstream token names)",
            "asks for a person token for resource.example with upstream_token = the agent's auth token: issued for alice (from the PS's own record), capped by the upstream token",
            "calls with it: requirement=auth-token with a resource token",
            "asks for the auth token, with the presented person token and the upstream token again",
            "reads the calendar with it: admitted as alice's directed identifier at the calendar",
        ];
        if chained.len() != summaries.len() {
            return Err(format!(
                "travel.example made {} downstream calls: {:?}",
                chained.len(),
                chained.iter().map(|(q, r)| format!("{} {} → {}", q.method(), q.uri(), r.status())).collect::<Vec<_>>()
            ));
        }
        let mut downstream_auth = None;
        for ((req, resp), summary) in chained.into_iter().zip(summaries) {
            if let Some(tok) = serde_json::from_slice::<serde_json::Value>(resp.body())
                .ok()
                .and_then(|v| v["auth_token"].as_str().map(str::to_owned))
            {
                downstream_auth = Some(tok);
            }
            exchange(&mut t, "travel.example", summary, req, &resp);
        }
        let downstream_auth = downstream_auth.ok_or("no downstream auth token")?;
        t.step(
            "person server",
            "the downstream auth token: aud resource.example, alice's sub there, the planner's key, exp no later than the upstream token's, no act claim",
            token_lines(&downstream_auth),
        );
        show_exchanges(
            &mut t,
            last.into_iter().map(|(_, x)| x).collect(),
            &["calls with the auth token: travel.example answers with the trip, planned around alice's calendar"],
        )?;
        Ok(t)
    })
}

/// Records `seen` as `actor`'s exchanges, each summarized by its request line and status.
fn record(t: &mut Transcript, actor: &'static str, seen: Vec<(Request, Response)>) {
    for (req, resp) in seen {
        let summary = format!("{} {} → {}", req.method(), req.uri(), resp.status());
        exchange(t, actor, &summary, req, &resp);
    }
}

/// Call chaining under a mission (draft -11 §7.1, §10.1): alice approves the agent's
/// mission for travel.example and resource.example (on demo 5's terms: for a day, only at
/// the resources it names); the agent works under it, so the auth token it brings
/// travel.example carries the mission's `mission_s256`. The planner asks with that token
/// as `upstream_token` and no mission of its own: the Person Server issues its tokens
/// under the upstream token's mission, holds its requests to the mission's limits, and
/// logs them in the mission's log. Then a second mission that names travel.example alone:
/// the planner's chained request for the calendar is refused, and logged as refused.
///
/// Not one of the phase demos: the integration tests run it.
///
/// # Errors
///
/// A description of the first step that did not behave as expected.
pub fn run_under_mission() -> Result<Transcript, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(e)?;
    rt.block_on(async {
        let mut t = Transcript::default();
        let p = parties(Options { mission_terms: Some(within_what_it_names()), ..Options::bound("calendar.read") })
        .await?;
        let downstream = crate::intermediary::serve(&p).await?.downstream;
        t.step(
            "world",
            "as in demo 7; alice's Person Server approves missions for a day, limited (her power of attorney) to the resources they name",
            vec![],
        );
        let recorder = p.world.agent_transport();
        let agent = p.agent(&recorder);
        let ps_client = Arc::new(
            HttpPersonServer::new(p.ps.id().clone(), recorder.clone())
                .clock(Arc::clone(&p.clock)),
        );
        let missions: [(&[&str], u16); 2] = [
            (&["https://travel.example", "https://resource.example"], 200),
            (&["https://travel.example"], 502),
        ];
        for (resources, expected) in missions {
            let proposal = serde_json::json!({
                "description": "Plan the next trip around alice's calendar.",
                "tools": [{"name": "trips.plan", "description": "plan a trip"}],
                "resources": resources,
            });
            t.step(
                "agent",
                format!("proposes a mission naming {}", resources.join(", ")),
                vec![],
            );
            let approved = ps_client
                .propose_mission(&agent, proposal)
                .await
                .map_err(e)?;
            record(&mut t, "agent", recorder.take());
            t.step(
                "agent",
                format!("mission approved: {}", approved.s256),
                vec![format!("mission: {}", String::from_utf8_lossy(&approved.blob))],
            );
            // The agent calls travel.example under the mission.
            let client = AAuthClient::builder(Arc::clone(&agent))
                .clock(Arc::clone(&p.clock))
                .mission(&approved.s256)
                .person_server(
                    Arc::clone(&ps_client) as Arc<dyn PersonServerClient>,
                    p.agent_keys(),
                )
                .build(recorder.clone());
            let resp = client
                .send(
                    http::Request::get("https://travel.example/trips/next")
                        .body(Bytes::new())
                        .map_err(e)?,
                )
                .await
                .map_err(e)?;
            let agent_seen = recorder.take();
            let n = agent_seen.len();
            let (first, last): (Vec<_>, Vec<_>) = agent_seen
                .into_iter()
                .enumerate()
                .partition(|(i, _)| *i + 1 < n);
            record(&mut t, "agent", first.into_iter().map(|(_, x)| x).collect());
            // What travel.example did, as its own agent, while answering.
            record(&mut t, "travel.example", downstream.take());
            record(&mut t, "agent", last.into_iter().map(|(_, x)| x).collect());
            if resp.status() != expected {
                return Err(format!(
                    "under a mission for {resources:?} travel.example answered {}, not {expected}: {}",
                    resp.status(),
                    String::from_utf8_lossy(resp.body())
                ));
            }
            let mission = p
                .ps
                .store()
                .mission(&approved.s256)
                .await
                .map_err(e)?
                .ok_or("the mission is not on record")?;
            let log = mission
                .log_entries()
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?;
            t.step(
                "person server",
                format!("the log of mission {}", approved.s256),
                log,
            );
        }
        Ok(t)
    })
}
