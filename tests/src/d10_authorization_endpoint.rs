//! Demo 10 (phase 10): the resource's authorization endpoint. Before calling, the agent
//! asks the resource for access: it reads the resource's metadata for its
//! `authorization_endpoint`, posts `{"scope": "calendar.read"}` signed with a person token
//! (the endpoint requires one), gets a resource token, checks it, and exchanges it at its
//! Person Server for an auth token; its first call then goes straight through. An unknown
//! scope is refused with `invalid_scope`. Over real TLS in the demo world.

use std::sync::Arc;

use aauth_agent::{AAuthClient, Agent, AgentError, HttpPersonServer, HttpTokenSource};
use bytes::Bytes;

use crate::Transcript;
use crate::d02_agent_identity::show_exchanges;
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
        let p = parties(Options { authorization_endpoint: true, ..Options::bound("calendar.read") }).await?;
        let (world, clock, provider, ps, rs_id) = (&p.world, Arc::clone(&p.clock), Arc::clone(&p.provider), Arc::clone(&p.ps), p.rs_id.clone());
        let (agent_id, agent_key) = (p.agent_id.clone(), Arc::clone(&p.agent_key));
        t.step(
            "world",
            "resource.example publishes authorization_endpoint https://resource.example/authorize (person token required; scopes calendar.read, calendar.write) beside its auth-token API",
            vec![],
        );

        let recorder = world.agent_transport();
        let agent = Arc::new(Agent::new(
            agent_id,
            agent_key,
            Arc::new(HttpTokenSource::new(provider.id().clone(), recorder.clone())),
        ));
        let agent_keys = p.agent_keys();
        let client = AAuthClient::builder(agent)
            .clock(Arc::clone(&clock))
            .person_server(
                Arc::new(HttpPersonServer::new(ps.id().clone(), recorder.clone()).clock(Arc::clone(&clock))),
                agent_keys,
            )
            .build(recorder.clone());

        client.authorize(&rs_id, "calendar.read", None).await.map_err(e)?;
        show_exchanges(
            &mut t,
            recorder.take(),
            &[
                "reads the resource's metadata: its authorization_endpoint",
                "reads the Person Server's metadata",
                "its client gets an agent token from its provider",
                "gets a person token for resource.example",
                "asks the authorization endpoint for calendar.read, signed with the person token: a resource token",
                "checks it (AG-22) and exchanges it, with the person token, for an auth token",
            ],
        )?;
        let resp = client
            .send(http::Request::get("https://resource.example/calendar/today").body(Bytes::new()).map_err(e)?)
            .await
            .map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the first call was refused: {}", resp.status()));
        }
        show_exchanges(&mut t, recorder.take(), &["its first call goes out with the auth token: admitted"])?;

        match client.authorize(&rs_id, "calendar.admin", None).await {
            Err(AgentError::Refused { status, error }) if status == 400 && error == "invalid_scope" => {}
            other => return Err(format!("an unknown scope was not refused: {other:?}")),
        }
        show_exchanges(
            &mut t,
            recorder.take(),
            &[
                "reads the metadata again",
                "asks for calendar.admin: 400 invalid_scope, nothing issued",
            ],
        )?;
        Ok(t)
    })
}
