//! `store = "redis://…"`: two proxy processes in front of one upstream share their state
//! through Redis (`AAUTH_REDIS_URL`; skipped loudly without it, failed without it in CI),
//! and `aauth config check` shows the URL without its password.

use super::*;
use aauth_test_support::services::redis_url;

/// A copy of a signed request (the same bytes, sent again).
fn again(req: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::builder()
        .method(req.method())
        .uri(req.uri())
        .body(req.body().clone())
        .unwrap();
    *copy.headers_mut() = req.headers().clone();
    copy
}

#[tokio::test]
async fn two_proxies_on_one_redis_refuse_a_post_replayed_to_the_other() {
    let Some(url) = redis_url("two_proxies_on_one_redis_refuse_a_post_replayed_to_the_other")
    else {
        return;
    };
    // A database of its own for nothing: the resource's keys carry its identifier, and the
    // replay keys the signature base, so runs do not meet; a fresh agent token each run.
    let store = format!("store = \"{url}\"\n");
    let s = AgentSetup::start_with("proxy-redis", |text| format!("{store}{text}")).await;
    let other = s.another_instance();

    let post = signed(
        "POST",
        "/agent/transfer",
        &[("content-type", "application/json")],
        br#"{"amount":100}"#,
        &assistant_token(),
    );
    let first = send_tls(&s.world, s.proxy.addr, again(&post)).await;
    assert_eq!(first.status(), StatusCode::OK, "{}", s.proxy.log());
    let replayed = send_tls(&s.world, other.addr, again(&post)).await;
    assert_eq!(
        replayed.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        other.log()
    );
    assert_eq!(
        replayed.headers()["signature-error"],
        "error=invalid_signature"
    );
    assert_eq!(s.seen.calls(), 1, "the replay never reached the upstream");
    // Both report the store ready.
    for addr in [s.proxy.addr, other.addr] {
        let req = http::Request::get("https://resource.example/readyz")
            .body(Vec::new())
            .unwrap();
        assert_eq!(send_tls(&s.world, addr, req).await.status(), StatusCode::OK);
    }
}

#[test]
fn config_check_redacts_the_redis_password_and_refuses_another_store() {
    let dir = scratch("proxy-redis-check");
    key_file(&dir, "proxy", 0x55);
    let proxy = "store = \"redis://app:s3cret@127.0.0.1:6379/0\"\nid = \"https://resource.example\"\nlisten = \"127.0.0.1:0\"\nsigning_key_file = \"proxy.jwk\"\n[resource_proxy]\nupstream = \"http://127.0.0.1:9\"\n[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n";
    std::fs::write(dir.join("proxy.toml"), proxy).unwrap();
    let o = aauth(&dir, &["config", "check", "proxy.toml"]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let shown = stdout(&o);
    assert!(
        shown.contains("store = \"redis://app:<redacted>@127.0.0.1:6379/0\""),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    // Not a store the proxy knows: refused, naming the key, without the password.
    std::fs::write(
        dir.join("bad.toml"),
        proxy.replace("redis://app", "sqlite://app"),
    )
    .unwrap();
    let o = aauth(&dir, &["config", "check", "bad.toml"]);
    crate::assert_fails(&o, 2, "store");
    assert!(
        !crate::stderr(&o).contains("s3cret"),
        "{}",
        crate::stderr(&o)
    );
}
