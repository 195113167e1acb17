//! Demo 3 (phase 3): autonomous three-party authorization. The resource is in auth-token
//! mode and has no Access Server; the person has bound the agent at their Person Server,
//! whose policy approves autonomously. The agent's client does everything by itself: its
//! first call is told to bring a person token, it gets one from its Person Server, the
//! resource answers with a resource token minted from that person token, the client
//! checks it (AG-22) and exchanges it with the person token at the Person Server for an
//! auth token, and the call goes through. Every key is discovered from what each party
//! publishes, over real TLS in the demo world.

use std::sync::Arc;

use aauth_agent::{AAuthClient, Agent, HttpPersonServer, HttpTokenSource};
use bytes::Bytes;

use crate::Transcript;
use crate::d02_agent_identity::{client_exchanges, show_exchanges, token_lines};
use crate::parties::{Options, parties};
use crate::world::Response;

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The claims of the token in a response's JSON member, or of a requirement header.
fn token_in(resp: &Response, member: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(resp.body())
        .ok()?
        .get(member)?
        .as_str()
        .map(str::to_owned)
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
        let p = parties(Options::bound("files.read")).await?;
        let (world, clock, provider, ps) = (&p.world, Arc::clone(&p.clock), Arc::clone(&p.provider), Arc::clone(&p.ps));
        let (agent_id, agent_key) = (p.agent_id.clone(), Arc::clone(&p.agent_key));
        t.step(
            "world",
            "agent.example (provider), ps.example (Person Server; alice has bound aauth:assistant; policy: approve), resource.example (auth-token mode, scope files.read, no Access Server)",
            vec![],
        );

        // The agent's client, with its Person Server.
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
        let person = seen.iter().find_map(|(_, r)| token_in(r, "person_token"));
        let auth = seen.iter().find_map(|(_, r)| token_in(r, "auth_token"));
        let resource_token = seen.iter().find_map(|(_, r)| {
            let v = r.headers().get("aauth-requirement")?.to_str().ok()?;
            let rt = v.split("resource-token=\"").nth(1)?.split('"').next()?;
            Some(rt.to_owned())
        });
        show_exchanges(
            &mut t,
            seen,
            &[
                "its client gets an agent token from its provider (sig=hwk, enrolled key)",
                "calls with the agent token: the resource needs a person first (requirement=person-token)",
                "its client reads the Person Server's metadata for its endpoints",
                "asks the Person Server for a person token for resource.example (signed with the agent token, body covered)",
                "calls with the person token: the resource mints a resource token from it (requirement=auth-token)",
                "checks the resource token (AG-22) and exchanges it, with the person token, for an auth token",
                "calls with the auth token: admitted",
            ],
        )?;
        for (who, label, token) in [
            ("ps", "the person token (directed sub, bound to the agent's key, no scope)", person),
            ("resource", "the resource token (ps, sub, presented_jti, agent_jkt, scope)", resource_token),
            ("ps", "the auth token (aud: the resource, ps = iss, scope files.read)", auth),
        ] {
            let token = token.ok_or_else(|| format!("no {label} on the wire"))?;
            t.step(if who == "ps" { "person server" } else { "resource" }, label, token_lines(&token));
        }

        let resp = client.send(get()?).await.map_err(e)?;
        if resp.status() != 200 {
            return Err(format!("the second call was refused: {}", resp.status()));
        }
        client_exchanges(&mut t, &recorder, &["calls again: the cached auth token, nothing else"])?;
        Ok(t)
    })
}
