//! Demo 6 (phase 6): agent delegation. The assistant spawns a sub-agent
//! (`aauth:assistant+search@agent.example`) with a key of its own; the provider issues the
//! sub-agent token only to the parent, under the parent's own agent token
//! (`parent_agent`, one level, same `iss`). The sub-agent calls the resource itself; when
//! it needs person and auth tokens, its parent asks the Person Server with the sub-agent's
//! token as `subagent_token` (a Person Server refuses requests signed by a sub-agent), and
//! the tokens bind the sub-agent's key. Over real TLS in the demo world.

use std::sync::Arc;

use aauth_agent::{
    AAuthClient, Agent, AgentError, HttpPersonServer, HttpTokenSource, PersonServerClient,
    PersonTokenRequest, SubagentRelay, SubagentTokenSource,
};
use aauth_keys::rand::OsRandom;
use aauth_keys::{Algorithm, PrivateKey};
use aauth_tokens::AgentId;
use bytes::Bytes;

use crate::Transcript;
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
        let p = parties(Options::bound("search")).await?;
        let (world, clock, provider, ps, rs_id) = (&p.world, Arc::clone(&p.clock), Arc::clone(&p.provider), Arc::clone(&p.ps), p.rs_id.clone());
        let (parent_id, parent_key) = (p.agent_id.clone(), Arc::clone(&p.agent_key));
        let key = || PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom).map(Arc::new).map_err(e);
        t.step(
            "world",
            "agent.example (the assistant enrolled), ps.example (alice bound the assistant), resource.example (auth-token mode, scope search)",
            vec![],
        );

        // The parent, and a sub-agent with its own key whose token comes through the parent.
        let recorder = world.agent_transport();
        let parent = Arc::new(Agent::new(
            parent_id,
            parent_key,
            Arc::new(HttpTokenSource::new(provider.id().clone(), recorder.clone())),
        ));
        let sub_id = AgentId::parse("aauth:assistant+search@agent.example").map_err(e)?;
        let sub = Arc::new(Agent::new(
            sub_id,
            key()?,
            Arc::new(SubagentTokenSource::new(provider.id().clone(), Arc::clone(&parent), recorder.clone())),
        ));
        let sub_token = sub.token(clock.now()).await.map_err(e)?.token.clone();
        show_exchanges(
            &mut t,
            recorder.take(),
            &[
                "the assistant gets its own agent token (enrolled key)",
                "asks the provider for a sub-agent token, signed under its own token; the body names the sub-agent and its key",
            ],
        )?;
        t.step("agent provider", "the sub-agent token: parent_agent, the same iss, the sub-agent's key, no later exp", token_lines(&sub_token));

        // The sub-agent calls the resource; its parent relays to the Person Server.
        let ps_client = Arc::new(HttpPersonServer::new(ps.id().clone(), recorder.clone()).clock(Arc::clone(&clock)));
        let agent_keys = p.agent_keys();
        let client = AAuthClient::builder(Arc::clone(&sub))
            .clock(Arc::clone(&clock))
            .person_server(Arc::new(SubagentRelay::new(Arc::clone(&ps_client), Arc::clone(&parent))), agent_keys)
            .build(recorder.clone());
        let resp = client
            .send(http::Request::get("https://resource.example/search?q=flights").body(Bytes::new()).map_err(e)?)
            .await
            .map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the sub-agent's call was refused: {}", resp.status()));
        }
        show_exchanges(
            &mut t,
            recorder.take(),
            &[
                "the sub-agent calls with its sub-agent token: requirement=person-token",
                "its parent reads the Person Server's metadata",
                "its parent asks for a person token with subagent_token (signed by the parent): it binds the sub-agent's key",
                "the sub-agent calls with the person token: requirement=auth-token (agent_jkt: the sub-agent's key)",
                "its parent exchanges the resource token with subagent_token: an auth token bound to the sub-agent's key",
                "the sub-agent calls with the auth token: admitted as alice",
            ],
        )?;

        // A sub-agent that signs its own Person Server request is refused.
        let direct = HttpPersonServer::new(ps.id().clone(), recorder.clone()).clock(Arc::clone(&clock));
        match direct
            .person_token(&sub, PersonTokenRequest::new(&rs_id, None))
            .await
        {
            Err(AgentError::PersonServer { status, error }) if status == 400 && error == "invalid_subagent_token" => {}
            other => return Err(format!("a sub-agent's own request was not refused: {other:?}")),
        }
        show_exchanges(
            &mut t,
            recorder.take(),
            &[
                "the sub-agent reads the metadata itself",
                "and asks itself, signed by its sub-agent token: 400 invalid_subagent_token",
            ],
        )?;
        Ok(t)
    })
}
