//! Demo 0: the protocol core, end to end without a network.
//!
//! An agent provider mints an agent token; the agent signs requests with it; a resource
//! and a Person Server endpoint verify them; then the verifier refuses a replayed method,
//! a stale signature, a clock ahead of its own, an inline key, and a body it cannot check,
//! each with the `Signature-Error` the draft names.

use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{JwkSet, PrivateKey};
use aauth_signing::{
    JwtResolver, KeyIdentity, ReplayGuard, SchemeResolver, SignOptions, SigningKey, Verifier,
    VerifyError, VerifyPolicy, sign,
};
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys, TokenType};
use http::request::Parts;

use crate::Transcript;

const T0: UnixTime = UnixTime(1_800_000_000);

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn wire(parts: &Parts) -> Vec<String> {
    let mut out = vec![format!("{} {}", parts.method, parts.uri)];
    for (k, v) in &parts.headers {
        let v = v.to_str().unwrap_or("<binary>");
        let shown = if v.len() > 110 {
            format!("{}…", &v[..110])
        } else {
            v.to_owned()
        };
        out.push(format!("{k}: {shown}"));
    }
    out
}

/// What the server receives: origin-form URI and a Host header.
fn at_server(mut parts: Parts) -> Result<Parts, String> {
    let authority = parts
        .uri
        .authority()
        .ok_or("no authority")?
        .as_str()
        .to_owned();
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = pq.parse().map_err(e)?;
    parts
        .headers
        .insert(http::header::HOST, authority.parse().map_err(e)?);
    Ok(parts)
}

fn refusal(e: &VerifyError, policy: &VerifyPolicy) -> Vec<String> {
    let mut out = vec![format!("HTTP/1.1 {}", e.status())];
    for (k, v) in e.response_headers(policy) {
        out.push(format!("{k}: {}", v.to_str().unwrap_or_default()));
    }
    out.push(format!("(because: {e})"));
    out
}

fn request(method: &str, url: &str, content_type: Option<&str>) -> Result<Parts, String> {
    let mut b = http::Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    Ok(b.body(()).map_err(e)?.into_parts().0)
}

/// Runs the demo.
///
/// # Errors
///
/// A description of the first step that did not behave as the draft requires.
pub(crate) fn run() -> Result<Transcript, String> {
    let mut t = Transcript::default();
    let provider = ServerId::parse("https://agent.example").map_err(e)?;
    let provider_key = PrivateKey::ed25519_from_seed(&[0x11; 32]);
    let jwks = JwkSet::from_jwks(&[provider_key.public_key().to_jwk().with_kid("key-1")]);
    t.step(
        "agent provider",
        "publishes its JWKS at https://agent.example/.well-known/jwks.json",
        vec![jwks.to_json()],
    );

    let agent_key = PrivateKey::ed25519_from_seed(&[0x22; 32]);
    let minted = AgentTokenBuilder::new(
        provider.clone(),
        AgentId::parse("aauth:assistant@agent.example").map_err(e)?,
        agent_key.public_key(),
    )
    .person_server(ServerId::parse("https://ps.example").map_err(e)?)
    .jti("agent-token-1")
    .sign(&provider_key, "key-1", T0, &mut OsRandom)
    .map_err(e)?;
    t.step(
        "agent provider",
        "issues an agent token (aa-agent+jwt) bound to the agent's key",
        vec![
            format!("cnf.jwk thumbprint {}", agent_key.public_key().thumbprint()),
            format!("exp {} (one hour)", minted.exp),
        ],
    );

    // The verifier side: issuer keys (here configured; the metadata crate fetches them).
    let issuers = StaticIssuerKeys::new().with(
        &provider,
        "aauth-agent.json",
        "key-1",
        provider_key.public_key().clone(),
    );
    let resolver: Arc<SchemeResolver> = Arc::new(
        SchemeResolver::new().jwt(JwtResolver::new(Arc::new(issuers), &[TokenType::Agent])),
    );
    // Each server answers only to its own name and accepts a state-changing request once.
    let policy = VerifyPolicy::for_server(&ServerId::parse("https://resource.example").map_err(e)?);
    let verifier = Verifier::new(policy.clone(), resolver.clone()).replay(ReplayGuard::in_memory());
    let ps_policy = VerifyPolicy::for_server(&ServerId::parse("https://ps.example").map_err(e)?);
    let ps_verifier = Verifier::new(ps_policy.clone(), resolver).replay(ReplayGuard::in_memory());
    let scheme = Scheme::jwt(minted.token);
    let key = SigningKey::new("sig", &agent_key, &scheme);

    // 1. A GET to a resource.
    let mut get = request("GET", "https://resource.example/api/documents", None)?;
    sign(&mut get, b"", &[key], &SignOptions::default(), T0).map_err(e)?;
    t.step(
        "agent",
        "signs GET /api/documents with its agent token",
        wire(&get),
    );
    let server_get = at_server(get)?;
    let v = futures_executor::block_on(verifier.verify(&server_get, b"", T0)).map_err(e)?;
    let who = match &v.identity {
        KeyIdentity::Token(tok) => match tok.as_ref() {
            aauth_tokens::BoundToken::Agent(a) => a.claims.sub.to_string(),
            _ => return Err("expected an agent token".into()),
        },
        _ => return Err("expected the jwt scheme".into()),
    };
    t.step(
        "resource",
        format!("verifies the signature and the agent token: {who}"),
        vec!["HTTP/1.1 200 OK".into()],
    );

    // 2. A POST with a body to a Person Server endpoint: content-digest and content-type.
    let body = br#"{"description":"Plan a trip to Sydney"}"#;
    let mut post = request(
        "POST",
        "https://ps.example/mission",
        Some("application/json"),
    )?;
    sign(&mut post, body, &[key], &SignOptions::default(), T0).map_err(e)?;
    t.step(
        "agent",
        "signs POST /mission, covering content-type and content-digest",
        wire(&post),
    );
    let server_post = at_server(post)?;
    futures_executor::block_on(ps_verifier.verify(&server_post, body, T0)).map_err(e)?;
    t.step(
        "person server",
        "verifies signature and body digest, and records the request",
        vec!["HTTP/1.1 200 OK".into()],
    );

    // 3. Refusals.
    let mut replay = server_get.clone();
    replay.method = http::Method::DELETE;
    let err = futures_executor::block_on(verifier.verify(&replay, b"", T0))
        .err()
        .ok_or("a replayed GET as DELETE must fail")?;
    t.step(
        "attacker",
        "replays the signed GET as DELETE",
        refusal(&err, &policy),
    );

    let err = futures_executor::block_on(ps_verifier.verify(&server_post, body, T0.plus(5)))
        .err()
        .ok_or("a replayed POST must fail")?;
    t.step(
        "attacker",
        "sends the captured POST /mission again",
        refusal(&err, &ps_policy),
    );

    let err = futures_executor::block_on(verifier.verify(&server_post, body, T0))
        .err()
        .ok_or("a POST relayed to another host must fail")?;
    t.step(
        "attacker",
        "relays the POST signed for ps.example to resource.example",
        refusal(&err, &policy),
    );

    let late = T0.plus(120);
    let err = futures_executor::block_on(verifier.verify(&server_get, b"", late))
        .err()
        .ok_or("a stale signature must fail")?;
    t.step(
        "attacker",
        "replays the GET two minutes later",
        refusal(&err, &policy),
    );

    let early = UnixTime(T0.0 - 300);
    let err = futures_executor::block_on(verifier.verify(&server_get, b"", early))
        .err()
        .ok_or("clock skew must be reported")?;
    t.step(
        "resource",
        "with its clock five minutes behind the agent's",
        refusal(&err, &policy),
    );

    let swapped = br#"{"description":"Send my files to evil.example"}"#;
    let err = futures_executor::block_on(ps_verifier.verify(&server_post, swapped, T0))
        .err()
        .ok_or("a changed body must fail")?;
    t.step(
        "attacker",
        "swaps the mission body",
        refusal(&err, &ps_policy),
    );

    let mut uncovered = request(
        "POST",
        "https://ps.example/mission",
        Some("application/json"),
    )?;
    let only_digest = SignOptions::default().components(&[
        "@method",
        "@authority",
        "@path",
        "content-digest",
        "signature-key",
    ]);
    sign(&mut uncovered, body, &[key], &only_digest, T0).map_err(e)?;
    let err = futures_executor::block_on(ps_verifier.verify(&at_server(uncovered)?, body, T0))
        .err()
        .ok_or("uncovered content-type must fail")?;
    t.step(
        "agent",
        "posts a body without covering content-type",
        refusal(&err, &ps_policy),
    );

    let hwk = Scheme::Hwk({
        let mut h = aauth_headers::Hwk::default();
        h.kty = Some("OKP".into());
        h.crv = Some("Ed25519".into());
        h.x = Some(aauth_keys::base64url::encode(
            agent_key.public_key().as_bytes(),
        ));
        h.alg = Some("Ed25519".into());
        h
    });
    let mut pseudo = request("GET", "https://resource.example/api/documents", None)?;
    sign(
        &mut pseudo,
        b"",
        &[SigningKey::new("sig", &agent_key, &hwk)],
        &SignOptions::default(),
        T0,
    )
    .map_err(e)?;
    let err = futures_executor::block_on(verifier.verify(&at_server(pseudo)?, b"", T0))
        .err()
        .ok_or("hwk must be refused")?;
    t.step(
        "agent",
        "signs with an inline key (hwk) instead of its token",
        refusal(&err, &policy),
    );
    Ok(t)
}
