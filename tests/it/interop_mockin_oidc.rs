//! Live: a person signs in with an OpenID Provider, `@hellocoop/mockin` 2.0.0 acting as
//! one (its `/authorize` answers at once with a code; its mock API makes it misbehave),
//! through `aauth_oauth::OidcClient`: the authorization code flow with PKCE, `state` and
//! `nonce`, the ID token checked as OpenID Connect Core §3.1.3.7 says. mockin runs behind
//! the world's TLS as `op.example` (`tests/it/node_peer.rs`).
//!
//! What is checked: a sign-in completes and names the person by `(iss, sub)`; a code is
//! used once; a callback with another `state`, an ID token for another `nonce`, an
//! expired ID token, one signed by a key the provider does not publish, and the
//! provider's own `access_denied` are each refused with their typed error.
//!
//! Then the same at the Person Server, in headless Chromium: the sign-in page offers
//! mockin; the person signs in there (code + PKCE) and approves the agent's request,
//! which then goes through; an expired ID token, one signed by the wrong key, an
//! authorization response injected for another `nonce`, and the provider's refusal each
//! end on a page that says so, with no session.

use std::sync::Arc;

use aauth_demos::browser::ProviderSignIn;
use aauth_demos::world::World;
use aauth_keys::time::SystemClock;
use aauth_metadata::Transport as _;
use aauth_oauth::{ClientAuth, OAuthError, OidcClient, OidcProvider, SignInError};
use aauth_person_server::SignInProvider;
use aauth_tokens::ServerId;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::interop_mockin::MOCKIN;
use crate::node_peer::{NodePeer, forward};

const OP: &str = "https://op.example";
const CALLBACK: &str = "https://ps.example/signin/callback";

struct Op {
    peer: NodePeer,
    world: World,
}

async fn op() -> Option<Op> {
    if !MOCKIN.available() {
        return None;
    }
    let peer = NodePeer::start(
        MOCKIN,
        &[("ISSUER", OP)],
        "Mock server listening on http://127.0.0.1:",
        "op.example",
        "/.well-known/openid-configuration",
    )
    .await;
    let world = World::new().expect("the world");
    world
        .serve_async(&ServerId::parse(OP).expect("an id"), peer.shim(false))
        .await
        .expect("the shim is served");
    Some(Op { peer, world })
}

impl Op {
    async fn client(&self) -> OidcClient<impl aauth_metadata::Fetch> {
        let fetch = Arc::new(self.world.fetcher_allowing(&["op.example"]));
        let provider = OidcProvider::discover(fetch.as_ref(), OP)
            .await
            .expect("mockin's discovery document");
        OidcClient::new(
            provider,
            ClientAuth::SecretPost {
                client_id: "aauth-person-server".to_owned(),
                secret: "mock-secret".to_owned(),
            },
            CALLBACK,
            fetch,
            self.world.agent_transport_allowing(&["op.example"]),
            Arc::new(SystemClock),
        )
        .scope("openid email name")
    }

    /// The browser's visit to the authorization URL: the query of the redirect back.
    async fn visit(&self, url: &str) -> String {
        let transport = self.world.agent_transport_allowing(&["op.example"]);
        let resp = transport
            .send(
                http::Request::get(url)
                    .body(Bytes::new())
                    .expect("a request"),
            )
            .await
            .expect("mockin answers");
        assert_eq!(
            resp.status(),
            302,
            "{}",
            String::from_utf8_lossy(resp.body())
        );
        let location = resp.headers()["location"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert!(location.starts_with(CALLBACK), "{location}");
        location
            .split_once('?')
            .map(|(_, q)| q.to_owned())
            .unwrap_or_default()
    }

    /// mockin's mock API: `PUT /mock/{what}` with `body`.
    async fn mock(&self, what: &str, body: &Value) {
        mock(self.peer.port, what, body).await;
    }

    async fn reset(&self) {
        reset(self.peer.port).await;
    }
}

/// mockin's mock API at `port`: `PUT /mock/{what}` with `body`.
async fn mock(port: u16, what: &str, body: &Value) {
    let req = http::Request::put(format!("/mock/{what}"))
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string().into_bytes())
        .expect("a request");
    let resp = forward(port, req, None)
        .await
        .expect("the mock API answers");
    assert_eq!(resp.status(), 200, "PUT /mock/{what}");
}

/// mockin behaving again: `DELETE /mock`.
async fn reset(port: u16) {
    let req = http::Request::delete("/mock")
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .body(Vec::new())
        .expect("a request");
    forward(port, req, None)
        .await
        .expect("the mock API answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_the_provider_by_code_and_pkce() {
    let Some(op) = op().await else { return };
    let client = op.client().await;
    let (url, pending) = client.start().expect("an authorization URL");
    for p in [
        "response_type=code",
        "code_challenge_method=S256",
        "nonce=",
        "state=",
    ] {
        assert!(url.contains(p), "{url}");
    }
    let query = op.visit(&url).await;
    let who = client.finish(&pending, &query).await.expect("signed in");
    assert_eq!(who.issuer, OP);
    assert!(!who.subject.is_empty());
    // The code was used: the same callback again is the provider's refusal.
    let again = client
        .finish(&pending, &query)
        .await
        .expect_err("a code is used once");
    assert!(matches!(again, SignInError::Token(_)), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_foreign_sign_ins_are_refused() {
    let Some(op) = op().await else { return };
    let client = op.client().await;

    // Another browser's callback (its state) brought to this one.
    let (url, _theirs) = client.start().expect("a URL");
    let (_, mine) = client.start().expect("a URL");
    let query = op.visit(&url).await;
    assert_eq!(
        client.finish(&mine, &query).await.expect_err("state"),
        SignInError::State
    );

    // An ID token minted for another nonce (same state, a replayed response).
    let (url, pending) = client.start().expect("a URL");
    let query = op.visit(&url).await;
    let mut other = pending.clone();
    other.nonce = "another-nonce".to_owned();
    let e = client.finish(&other, &query).await.expect_err("nonce");
    assert!(
        matches!(
            e,
            SignInError::IdToken(OAuthError::Claim { claim: "nonce", .. })
        ),
        "{e:?}"
    );

    // An expired ID token.
    op.mock("token", &json!({"expired": true})).await;
    let (url, pending) = client.start().expect("a URL");
    let query = op.visit(&url).await;
    let e = client.finish(&pending, &query).await.expect_err("expired");
    assert!(
        matches!(
            e,
            SignInError::IdToken(
                OAuthError::Expired { .. } | OAuthError::Claim { claim: "iat", .. }
            )
        ),
        "{e:?}"
    );
    op.reset().await;

    // An ID token signed by a key the provider does not publish.
    op.mock("token", &json!({"wrongKey": true})).await;
    let (url, pending) = client.start().expect("a URL");
    let query = op.visit(&url).await;
    let e = client
        .finish(&pending, &query)
        .await
        .expect_err("wrong key");
    assert!(
        matches!(
            e,
            SignInError::IdToken(OAuthError::Key { .. } | OAuthError::Signature)
        ),
        "{e:?}"
    );
    op.reset().await;

    // The provider's own refusal comes back typed.
    op.mock("authorize", &json!({"error": "access_denied"}))
        .await;
    let (url, pending) = client.start().expect("a URL");
    let query = op.visit(&url).await;
    let e = client.finish(&pending, &query).await.expect_err("denied");
    assert_eq!(e.code(), "access_denied", "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_at_the_person_server_with_mockin_in_chromium() {
    let (browser, driver) = match aauth_demos::browser::find_browser() {
        Ok(found) => found,
        Err(why) => {
            assert!(
                std::env::var("AAUTH_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "the browser test is required here but cannot run: {why}"
            );
            eprintln!("\n!!! SKIPPED signing in with mockin in a real browser: {why}.\n");
            return;
        }
    };
    let Some(Op { peer, world }) = op().await else {
        return;
    };
    let fetch = Arc::new(world.fetcher_allowing(&["op.example"]));
    let provider = OidcProvider::discover(fetch.as_ref(), OP)
        .await
        .expect("mockin's discovery document");
    let client = OidcClient::new(
        provider,
        ClientAuth::SecretPost {
            client_id: "aauth-person-server".to_owned(),
            secret: "mock-secret".to_owned(),
        },
        "https://ps.example/interact/oidc/callback",
        fetch,
        world.agent_transport_allowing(&["op.example"]),
        Arc::new(SystemClock),
    )
    .scope("openid email name");
    let sign_in = ProviderSignIn::start(
        &browser,
        &driver,
        world,
        SignInProvider::new("mockin", "Mockin", client),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // An expired ID token, one signed by a key mockin does not publish, and mockin's
    // refusal: each a page that says so, and no session.
    for (what, body, says) in [
        ("token", json!({"expired": true}), "invalid_id_token"),
        ("token", json!({"wrongKey": true}), "invalid_id_token"),
        (
            "authorize",
            json!({"error": "access_denied"}),
            "access_denied",
        ),
    ] {
        mock(peer.port, what, &body).await;
        let landed = sign_in.sign_in().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            landed
                .url
                .starts_with("https://ps.example/interact/oidc/callback"),
            "{body}: {}",
            landed.url
        );
        assert!(
            landed.text.contains("You are not signed in") && landed.text.contains(says),
            "{body}: {}",
            landed.text
        );
        assert!(
            !landed.session,
            "{body}: a failed sign-in starts no session"
        );
        reset(peer.port).await;
    }

    // An authorization response for another nonce, brought to this browser's sign-in
    // (its state and PKCE challenge, so only the nonce tells).
    let url = sign_in
        .planted_start("mockin")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let nonce = url
        .split("nonce=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .expect("a nonce");
    let injected = url.replace(&format!("nonce={nonce}"), "nonce=an-attackers-nonce");
    sign_in.wd.goto(&injected).await.unwrap();
    let landed = sign_in.landed().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        landed.text.contains("invalid_id_token") && !landed.session,
        "{}",
        landed.text
    );

    // The person signs in, reads the request, approves: the agent gets through.
    let landed = sign_in.sign_in().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        landed.url.starts_with("https://ps.example/interact?code="),
        "{}: {}",
        landed.url,
        landed.text
    );
    assert!(
        landed.session
            && landed.text.contains("An agent asks for your approval")
            && landed.text.contains("Signed in as mockin:"),
        "{}",
        landed.text
    );
    let (status, body) = sign_in.approve().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "calendar.read");
    assert_eq!(body["person"]["iss"], "https://ps.example");
}
