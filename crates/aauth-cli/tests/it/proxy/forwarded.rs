//! Who the client is, as the upstream hears it: the address the proxy saw the request
//! come from, in `X-Forwarded-For` and `X-Real-IP`, never what the client wrote there;
//! only from a proxy in `trusted_proxies` is the incoming chain kept (the peer appended).

use super::*;

/// The client's own forwarding headers, each naming an address it is not.
const SPOOFED: [&str; 10] = [
    "-H",
    "X-AAuth-Proxy-Peer: 203.0.113.9",
    "-H",
    "X-Forwarded-For: 203.0.113.9",
    "-H",
    "X-Real-IP: 203.0.113.9",
    "-H",
    "Forwarded: for=203.0.113.9",
    "-H",
    "X_Forwarded_For: 203.0.113.9",
];

/// A call through `s`'s proxy with [`SPOOFED`] headers: what the upstream received.
async fn spoofed_call(s: &AgentSetup) -> HeaderMap {
    let o = fetch(
        &s.dir,
        "https://resource.example/agent/hello",
        &SPOOFED,
        &s.reach(),
    )
    .await;
    assert!(
        o.status.success(),
        "{}\n{}",
        crate::stderr(&o),
        s.proxy.log()
    );
    s.seen.last()
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_never_reaches_the_upstream_which_sees_the_peer() {
    let s = AgentSetup::start("proxy-xff").await;
    let headers = spoofed_call(&s).await;
    let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, ["127.0.0.1"], "{headers:?}");
    let real: Vec<_> = headers.get_all("x-real-ip").iter().collect();
    assert_eq!(real, ["127.0.0.1"], "{headers:?}");
    assert!(!headers.contains_key("forwarded"), "{headers:?}");
    assert!(!headers.contains_key("x_forwarded_for"), "{headers:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_chain_is_kept_and_the_peer_appended() {
    let s = AgentSetup::start_with("proxy-xff-trusted", |text| {
        format!("trusted_proxies = [\"127.0.0.0/8\"]\n{text}")
    })
    .await;
    let headers = spoofed_call(&s).await;
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-real-ip"], "203.0.113.9");
    assert!(!headers.contains_key("forwarded"), "{headers:?}");
    assert!(!headers.contains_key("x_forwarded_for"), "{headers:?}");
}
