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

use aauth_agent::{AAuthClient, HttpPersonServer};
use bytes::Bytes;

use crate::Transcript;
use crate::d01_pseudonymous::exchange;
use crate::d02_agent_identity::{show_exchanges, token_lines};
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
        let p = parties(Options { policy: None, consent_pages: false, bound: true, scope: "calendar.read", authorization_endpoint: false, access_server: false, as_policy: None, mission_terms: None }).await?;

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
