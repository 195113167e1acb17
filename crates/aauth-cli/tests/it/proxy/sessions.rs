//! The session-token access mode at the proxy: the upstream grants a session on an
//! agent-token route (`x-aauth-grant-session`), the proxy answers `AAuth-Access`, and the
//! session admits the same agent and key on a `session-token` route, never another; with
//! `store = "redis://…"` a session granted through one proxy is honoured by the other.
//! An upstream that hands over its own OAuth token with the grant gets it back, as
//! `Authorization: Bearer`, on each request the session admits; the agent never sees it.

use super::*;
use aauth_test_support::services::redis_url;

/// The proxy's configuration with a session-token route under `/session/`, sessions as
/// `sessions` says (a `[resource_proxy.sessions]` body).
fn with_sessions(text: String, sessions: &str) -> String {
    format!(
        "{text}[[resource_proxy.routes]]\npath = \"/session/*\"\naccess = \"session-token\"\n\
         [resource_proxy.sessions]\n{sessions}"
    )
}

/// `GET path` signed by the key of `seed` under its agent token, presenting `session`
/// (covered by the signature).
fn with_session(path: &str, seed: u8, session: Option<&str>) -> http::Request<Vec<u8>> {
    let authorization = session.map(|s| format!("AAuth {s}"));
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    signed_by(
        seed,
        ("GET", path),
        &headers,
        b"",
        &assistant_token_for(seed),
    )
}

/// The `AAuth-Access` of `resp`, which must carry exactly one.
fn access(resp: &http::Response<hyper::body::Incoming>) -> String {
    let all: Vec<_> = resp.headers().get_all("aauth-access").iter().collect();
    assert_eq!(all.len(), 1, "{:?}", resp.headers());
    all[0].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_the_upstream_grants_admits_its_agent_and_key_only() {
    let s = AgentSetup::start_with("proxy-sessions", |t| {
        with_sessions(t, "lifetime_secs = 600\n")
    })
    .await;
    let (world, proxy) = (&s.world, s.proxy.addr);

    // No session yet: refused at the proxy, the upstream never asked.
    let r = send_tls(world, proxy, with_session("/session/data", 0x22, None)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", s.proxy.log());
    assert_eq!(s.seen.calls(), 0);

    // The API's own flow grants one: the token comes from the proxy, the grant header
    // and the upstream's own `AAuth-Access` do not reach the agent.
    let r = send_tls(world, proxy, with_session("/agent/login", 0x22, None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("x-aauth-grant-session"));
    let token = access(&r);
    assert_ne!(token, "minted-by-the-upstream");

    // Presented by its agent and key: admitted with the granted scope.
    let r = send_tls(
        world,
        proxy,
        with_session("/session/data", 0x22, Some(&token)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
    let seen = s.seen.last();
    assert_eq!(seen["x-aauth-scope"], "files.read");
    assert_eq!(seen["x-aauth-agent"], "aauth:assistant@agent.example");
    assert!(!seen.contains_key("authorization"), "{seen:?}");
    assert!(
        !r.headers().contains_key("aauth-access"),
        "no roll configured"
    );
    let calls = s.seen.calls();

    // The same agent with another key: refused (the session is bound to the key).
    let r = send_tls(
        world,
        proxy,
        with_session("/session/data", 0x33, Some(&token)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A session the signature does not cover: anyone could have added it.
    let mut req = with_session("/session/data", 0x22, None);
    req.headers_mut()
        .insert("authorization", format!("AAuth {token}").parse().unwrap());
    let r = send_tls(world, proxy, req).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token the proxy never issued.
    let r = send_tls(
        world,
        proxy,
        with_session("/session/data", 0x22, Some("made-up")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        s.seen.calls(),
        calls,
        "no refused request reached the upstream"
    );

    // A grant the proxy cannot read is the upstream's fault: 502, and no session.
    let r = send_tls(world, proxy, with_session("/agent/bad-grant", 0x22, None)).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(!r.headers().contains_key("aauth-access"));

    // From the command line: `aauth fetch -i` shows the grant, `-H` presents it (the
    // signature covers it), with a fresh agent token for the same key.
    let o = fetch(
        &s.dir,
        "https://resource.example/agent/login",
        &["-i"],
        &s.reach(),
    )
    .await;
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let shown = stdout(&o);
    let line = shown
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("aauth-access:"))
        .unwrap_or_else(|| panic!("{shown}"));
    let fetched = line["aauth-access:".len()..].trim().to_owned();
    let o = fetch(
        &s.dir,
        "https://resource.example/session/data",
        &["-H", &format!("Authorization: AAuth {fetched}")],
        &s.reach(),
    )
    .await;
    assert!(
        o.status.success(),
        "{}\n{}",
        crate::stderr(&o),
        s.proxy.log()
    );
    assert_eq!(json(&o)["headers"]["x-aauth-scope"], "files.read");

    // The metadata names no single mode (the routes mix them).
    let doc = get(
        world,
        "https://resource.example/.well-known/aauth-resource.json",
        &[],
    )
    .await;
    let doc: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    assert!(doc.get("access_mode").is_none(), "{doc}");
}

#[tokio::test]
async fn a_session_wraps_the_upstreams_own_token() {
    let s = AgentSetup::start_with("proxy-sessions-wrap", |t| {
        with_sessions(
            t,
            "lifetime_secs = 600
",
        )
    })
    .await;
    let (world, proxy) = (&s.world, s.proxy.addr);
    let r = send_tls(world, proxy, with_session("/agent/login-oauth", 0x22, None)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
    assert!(!r.headers().contains_key("x-aauth-grant-credential"));
    let token = access(&r);
    assert!(!token.contains("upstream-oauth-token"), "{token}");

    let r = send_tls(
        world,
        proxy,
        with_session("/session/data", 0x22, Some(&token)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
    let seen = s.seen.last();
    assert_eq!(seen["authorization"], format!("Bearer {}", UPSTREAM_TOKEN));
    assert_eq!(seen["x-aauth-agent"], "aauth:assistant@agent.example");
    assert!(
        !s.proxy.log().contains("upstream-oauth-token"),
        "never logged"
    );

    // Another key presenting it reaches nothing; a credential the proxy cannot carry is
    // the upstream's fault (502), and grants no session.
    let calls = s.seen.calls();
    let r = send_tls(
        world,
        proxy,
        with_session("/session/data", 0x33, Some(&token)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.seen.calls(), calls);
    let r = send_tls(
        world,
        proxy,
        with_session("/agent/bad-credential", 0x22, None),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(!r.headers().contains_key("aauth-access"));
}

#[tokio::test]
async fn a_rolling_session_answers_each_request_with_its_next_token() {
    let s =
        AgentSetup::start_with("proxy-sessions-roll", |t| with_sessions(t, "roll = true\n")).await;
    let (world, proxy) = (&s.world, s.proxy.addr);
    let r = send_tls(world, proxy, with_session("/agent/login", 0x22, None)).await;
    let mut token = access(&r);
    for _ in 0..3 {
        let r = send_tls(
            world,
            proxy,
            with_session("/session/data", 0x22, Some(&token)),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
        let next = access(&r);
        assert_ne!(next, token);
        token = next;
    }
}

#[tokio::test]
async fn a_session_granted_through_one_proxy_is_honoured_by_the_other() {
    let Some(url) = redis_url("a_session_granted_through_one_proxy_is_honoured_by_the_other")
    else {
        return;
    };
    let store = format!("store = \"{url}\"\n");
    let key = std::env::temp_dir().join(format!("aauth-credential-key-{}", std::process::id()));
    crate::serve::secret_file(&key, "5e".repeat(32));
    let sessions = format!(
        "lifetime_secs = 60\ncredential_key_file = \"{}\"\n",
        key.display()
    );
    let s = AgentSetup::start_with("proxy-sessions-redis", |t| {
        format!("{store}{}", with_sessions(t, &sessions))
    })
    .await;
    let other = s.another_instance();

    let r = send_tls(
        &s.world,
        s.proxy.addr,
        with_session("/agent/login", 0x22, None),
    )
    .await;
    let token = access(&r);
    let r = send_tls(
        &s.world,
        other.addr,
        with_session("/session/data", 0x22, Some(&token)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", other.log());
    assert_eq!(s.seen.last()["x-aauth-scope"], "files.read");
    // A session wrapping the upstream's token: sealed in Redis, honoured by the other.
    let r = send_tls(
        &s.world,
        s.proxy.addr,
        with_session("/agent/login-oauth", 0x22, None),
    )
    .await;
    let wrapping = access(&r);
    let r = send_tls(
        &s.world,
        other.addr,
        with_session("/session/data", 0x22, Some(&wrapping)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", other.log());
    assert_eq!(
        s.seen.last()["authorization"],
        format!("Bearer {}", UPSTREAM_TOKEN)
    );
    // And refused there for another key, as at home.
    let r = send_tls(
        &s.world,
        other.addr,
        with_session("/session/data", 0x33, Some(&token)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
