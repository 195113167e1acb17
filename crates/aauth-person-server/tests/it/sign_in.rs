//! Signing in on the consent pages with an OpenID Provider (the `oidc` feature), against
//! a provider made here: its discovery document and JWKS, and a token endpoint that
//! checks the code and its PKCE verifier and signs ID tokens (ES256, or EdDSA). What is
//! checked:
//! the sign-in page offers the provider; the start sets a sealed `SameSite=Lax` cookie
//! and sends the browser to the provider with `state`, `nonce` and an S256 challenge; the
//! callback signs the person in as the account linked to their `(iss, sub)` (a new one
//! on first sign-in, or refused when only linked people may), then the consent page
//! works as after a password. A forged callback, a cookie from another browser or
//! tampered with, an ID token for another `nonce` and the provider's refusal each end on
//! a page that names the failure, with no session.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aauth_keys::time::FixedClock;
use aauth_keys::{PrivateKey, Signer as _, base64url, digest};
use aauth_metadata::{Fetch, FetchError, Fetched, HttpsUrl, Transport, TransportError};
use aauth_oauth::{ClientAuth, OidcClient, OidcProvider};
use aauth_person_server::{
    NewAccounts, OIDC_CALLBACK_PATH, OIDC_START_PATH, PERSON_TOKEN_PATH, SignInProvider,
    SignInSetupError,
};
use aauth_test_support::request::header;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::consent::{Browser, code_of, consenting_world};
use crate::{NOW, World};

const OP: &str = "https://op.example";
const CLIENT: &str = "ps-client";
const CALLBACK: &str = "https://ps.example/interact/oidc/callback";

/// What the provider remembers of an authorization: the `nonce` and PKCE challenge it
/// was asked with, and who signed in.
struct Grant {
    nonce: String,
    challenge: String,
    subject: String,
}

/// The provider: ES256 ID tokens under `op-1`.
struct Op {
    key: PrivateKey,
    codes: Mutex<BTreeMap<String, Grant>>,
    /// Changes the next ID token's header and claims before it is signed.
    edit: Mutex<Option<Edit>>,
}

/// A change to an ID token's header and claims.
type Edit = fn(&mut Value, &mut Value);

impl Op {
    fn new() -> Arc<Self> {
        Self::signing_with(PrivateKey::es256_from_scalar(&[21; 32]).unwrap())
    }

    /// A provider whose ID tokens `key` signs (ES256 or EdDSA).
    fn signing_with(key: PrivateKey) -> Arc<Self> {
        Arc::new(Self {
            key,
            codes: Mutex::default(),
            edit: Mutex::default(),
        })
    }

    /// The person `subject` signs in at the authorization URL: the query of the
    /// redirect back.
    fn authorize(&self, url: &str, subject: &str) -> String {
        let query = url.split_once('?').unwrap().1;
        let q: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], CLIENT);
        assert_eq!(q["redirect_uri"], CALLBACK);
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(q["scope"].split(' ').any(|s| s == "openid"));
        let code = format!("code-{}", self.codes.lock().unwrap().len());
        self.codes.lock().unwrap().insert(
            code.clone(),
            Grant {
                nonce: q["nonce"].clone(),
                challenge: q["code_challenge"].clone(),
                subject: subject.to_owned(),
            },
        );
        format!("code={code}&state={}", q["state"])
    }

    fn token(&self, body: &[u8]) -> (u16, Value) {
        let form: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        if form.get("client_id").map(String::as_str) != Some(CLIENT)
            || form.get("client_secret").map(String::as_str) != Some("s3cret")
        {
            return (401, json!({"error": "invalid_client"}));
        }
        let Some(grant) = self.codes.lock().unwrap().remove(&form["code"]) else {
            return (400, json!({"error": "invalid_grant"}));
        };
        let verifier = form["code_verifier"].as_bytes();
        if base64url::encode(&digest::sha256(verifier)) != grant.challenge {
            return (
                400,
                json!({"error": "invalid_grant", "error_description": "PKCE"}),
            );
        }
        let nonce = grant.nonce;
        let alg = match self.key.algorithm() {
            aauth_keys::Algorithm::Es256 => "ES256",
            _ => "EdDSA",
        };
        let mut header = json!({"alg": alg, "kid": "op-1", "typ": "JWT"});
        let mut claims = json!({
            "iss": OP, "aud": CLIENT, "sub": grant.subject, "nonce": nonce,
            "iat": NOW.as_secs(), "exp": NOW.as_secs() + 300, "email": "someone@example.com",
        });
        if let Some(edit) = self.edit.lock().unwrap().take() {
            edit(&mut header, &mut claims);
        }
        let input = format!(
            "{}.{}",
            base64url::encode(header.to_string().as_bytes()),
            base64url::encode(claims.to_string().as_bytes())
        );
        let sig = self.key.sign(input.as_bytes()).unwrap();
        let id_token = format!("{input}.{}", base64url::encode(&sig));
        (
            200,
            json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}),
        )
    }
}

#[async_trait::async_trait]
impl Fetch for Op {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        Ok(match url.as_str() {
            "https://op.example/.well-known/openid-configuration" => Fetched::ok(
                json!({
                    "issuer": OP,
                    "authorization_endpoint": format!("{OP}/authorize"),
                    "token_endpoint": format!("{OP}/token"),
                    "jwks_uri": format!("{OP}/jwks"),
                })
                .to_string(),
            ),
            "https://op.example/jwks" => Fetched::ok(format!(
                "{{\"keys\":[{}]}}",
                self.key.public_key().to_jwk().with_kid("op-1").to_json()
            )),
            _ => Fetched::status(404),
        })
    }
}

#[async_trait::async_trait]
impl Transport for Op {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        assert_eq!(req.uri().to_string(), format!("{OP}/token"));
        let (status, body) = self.token(req.body());
        let mut r = http::Response::new(Bytes::from(body.to_string()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(r)
    }
}

/// The relying party at `op`, called back at `redirect`.
async fn client(op: &Arc<Op>, redirect: &str) -> OidcClient<Arc<Op>> {
    let provider = OidcProvider::discover(op.as_ref(), OP).await.unwrap();
    OidcClient::new(
        provider,
        ClientAuth::SecretPost {
            client_id: CLIENT.to_owned(),
            secret: "s3cret".to_owned(),
        },
        redirect,
        Arc::new(Arc::clone(op)),
        Arc::clone(op) as Arc<dyn Transport>,
        Arc::new(FixedClock::new(NOW)),
    )
}

/// A consenting Person Server offering `op` as "Example Corp", passwords still on.
async fn world(op: &Arc<Op>, new_accounts: NewAccounts) -> World {
    let mut w = consenting_world(None).await;
    w.ps =
        w.ps.sign_in_with(
            SignInProvider::new("corp", "Example Corp", client(op, CALLBACK).await)
                .new_accounts(new_accounts),
        )
        .unwrap();
    w
}

/// An agent's request that waits for the person: its interaction code.
async fn waiting(w: &World) -> String {
    let ask = json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (status, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    code_of(&headers)
}

/// The browser opens the request's link and follows "Sign in with Example Corp": the
/// provider's authorization URL.
async fn start(w: &World, browser: &mut Browser, code: &str) -> String {
    let login = browser
        .go(w, "GET", &format!("/interact?code={code}"), &[])
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let link = login
        .html
        .split("data-provider=\"corp\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no provider link: {}", login.html))
        .replace("&amp;", "&");
    assert!(login.html.contains("Sign in with Example Corp"));
    assert!(link.starts_with(OIDC_START_PATH), "{link}");
    let started = browser.go(w, "GET", &link, &[]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.html);
    let set = header(&started.headers, "set-cookie");
    assert!(
        set.starts_with("__Host-aauth-oidc=") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let url = header(&started.headers, "location");
    assert!(url.starts_with("https://op.example/authorize?"), "{url}");
    url
}

/// Comes back from the provider with `query`.
async fn back(w: &World, browser: &mut Browser, query: &str) -> crate::consent::Page {
    browser
        .go(w, "GET", &format!("{OIDC_CALLBACK_PATH}?{query}"), &[])
        .await
}

#[tokio::test]
async fn a_person_signs_in_with_their_provider_and_approves() {
    let op = Op::new();
    let w = world(&op, NewAccounts::Create).await;
    let code = waiting(&w).await;
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let sealed = browser.cookie("__Host-aauth-oidc").unwrap().to_owned();
    for secret in ["state=", "nonce=", "code_challenge="] {
        let value = url.split(secret).nth(1).unwrap().split('&').next().unwrap();
        assert!(
            !sealed.contains(value),
            "the cookie is sealed, not a copy of {secret}"
        );
    }

    let page = back(&w, &mut browser, &op.authorize(&url, "p-1")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("Signed in with Example Corp"));
    let refresh = header(&page.headers, "refresh");
    let target = refresh.strip_prefix("0; url=").unwrap();
    assert!(target.starts_with("/interact?code="), "{refresh}");
    assert!(browser.cookie("__Host-aauth-session").is_some());
    assert!(
        browser.cookie("__Host-aauth-oidc").is_none(),
        "the sign-in cookie is used once"
    );

    let consent = browser.go(&w, "GET", target, &[]).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    assert!(consent.html.contains("aauth:assistant@agent.example"));
    let csrf = consent.hidden("csrf");
    let done = browser
        .go(
            &w,
            "POST",
            "/interact",
            &[("code", &code), ("csrf", &csrf), ("decision", "grant")],
        )
        .await;
    assert!(done.html.contains("Approved"), "{}", done.html);

    // The person is the account made for them, linked to (iss, sub), with no password.
    let store = w.mem.as_ref().unwrap();
    use aauth_person_server::PsStore as _;
    assert_eq!(
        store.linked_account(OP, "p-1").await.unwrap().as_deref(),
        Some("corp:p-1")
    );
    assert_eq!(
        store
            .binding(
                &aauth_test_support::id("https://agent.example"),
                &aauth_tokens::AgentId::parse("aauth:assistant@agent.example").unwrap()
            )
            .await
            .unwrap()
            .as_deref(),
        Some("corp:p-1")
    );
    let mut other = Browser::default();
    let login = other.sign_in(&w, &code, "corp:p-1", "!none").await;
    assert_eq!(
        login.status,
        StatusCode::UNAUTHORIZED,
        "no password opens an account made for a provider's person"
    );

    // The same person again (the request is answered; signing in still works): the
    // same account, no new one.
    let mut again = Browser::default();
    let url = start(&w, &mut again, &code).await;
    let page = back(&w, &mut again, &op.authorize(&url, "p-1")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let accounts = store.accounts().await.unwrap();
    assert_eq!(
        accounts
            .iter()
            .filter(|a| a.name.starts_with("corp:"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_failed_sign_in_says_why_and_starts_no_session() {
    let op = Op::new();
    let w = world(&op, NewAccounts::Create).await;
    let code = waiting(&w).await;

    // A callback for another browser's sign-in: state mismatch.
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let query = op.authorize(&url, "p-1");
    let forged = query.split("&state=").next().unwrap().to_owned() + "&state=forged";
    let page = back(&w, &mut browser, &forged).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.html);
    assert!(page.html.contains("state_mismatch"), "{}", page.html);
    assert!(browser.cookie("__Host-aauth-session").is_none());
    assert!(browser.cookie("__Host-aauth-oidc").is_none());

    // A callback in a browser that started nothing, or with a cookie tampered with.
    let mut stranger = Browser::default();
    let page = back(&w, &mut stranger, &query).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.html
            .contains("expired or was started in another browser")
    );
    let mut tamperer = Browser::default();
    let url = start(&w, &mut tamperer, &code).await;
    let mut sealed = tamperer.cookie("__Host-aauth-oidc").unwrap().to_owned();
    let last = sealed.pop().unwrap();
    sealed.push(if last == 'A' { 'B' } else { 'A' });
    tamperer.set_cookie("__Host-aauth-oidc", &sealed);
    let page = back(&w, &mut tamperer, &op.authorize(&url, "p-1")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(tamperer.cookie("__Host-aauth-session").is_none());

    // A sign-in finished after its ten minutes.
    let mut late = Browser::default();
    let url = start(&w, &mut late, &code).await;
    let query = op.authorize(&url, "p-1");
    let page = late
        .go_at(
            &w,
            "GET",
            &format!("{OIDC_CALLBACK_PATH}?{query}"),
            &[],
            NOW.plus(601),
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(late.cookie("__Host-aauth-session").is_none());

    // Signed by the provider, but not the ID token of this sign-in for this client
    // alone: for another nonce; another audience beside it (with azp naming it, Core
    // §3.1.3.7 step 3); another kind of token (RFC 8725 §3.11).
    let edits: [Edit; 3] = [
        |_, c| c["nonce"] = json!("someone-else's"),
        |_, c| {
            c["aud"] = json!([CLIENT, "https://another-client.example"]);
            c["azp"] = json!(CLIENT);
        },
        |h, _| h["typ"] = json!("at+jwt"),
    ];
    for edit in edits {
        let mut browser = Browser::default();
        let url = start(&w, &mut browser, &code).await;
        *op.edit.lock().unwrap() = Some(edit);
        let page = back(&w, &mut browser, &op.authorize(&url, "p-1")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.html);
        assert!(page.html.contains("invalid_id_token"), "{}", page.html);
        assert!(browser.cookie("__Host-aauth-session").is_none());
    }

    // The provider's refusal.
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let state = url
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let page = back(
        &w,
        &mut browser,
        &format!("error=access_denied&state={state}"),
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(page.html.contains("access_denied"));
    assert!(browser.cookie("__Host-aauth-session").is_none());

    // A code used twice: the provider refuses the exchange.
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let query = op.authorize(&url, "p-2");
    op.codes.lock().unwrap().clear();
    let page = back(&w, &mut browser, &query).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.html);
    assert!(page.html.contains("invalid_grant"), "{}", page.html);

    // No account was made by any of it.
    use aauth_person_server::PsStore as _;
    let store = w.mem.as_ref().unwrap();
    assert_eq!(store.linked_account(OP, "p-1").await.unwrap(), None);
    assert_eq!(store.linked_account(OP, "p-2").await.unwrap(), None);
}

#[tokio::test]
async fn only_linked_people_sign_in_when_the_provider_says_so() {
    // (This provider signs its ID tokens with Ed25519.)
    let op = Op::signing_with(PrivateKey::ed25519_from_seed(&[22; 32]));
    let w = world(&op, NewAccounts::LinkedOnly).await;
    let code = waiting(&w).await;
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let page = back(&w, &mut browser, &op.authorize(&url, "p-9")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(page.html.contains("No account here is linked to you"));
    assert!(browser.cookie("__Host-aauth-session").is_none());

    // Linked to alice by the operator: signs in as alice.
    assert!(w.ps.link_account(OP, "p-9", "alice").await.unwrap());
    assert!(!w.ps.link_account(OP, "p-9", "mallory").await.unwrap());
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let page = back(&w, &mut browser, &op.authorize(&url, "p-9")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let target = header(&page.headers, "refresh")
        .strip_prefix("0; url=")
        .unwrap()
        .to_owned();
    let consent = browser.go(&w, "GET", &target, &[]).await;
    assert!(consent.html.contains("Approve"), "{}", consent.html);

    // A disabled account signs in to nothing.
    use aauth_person_server::PsStore as _;
    w.mem
        .as_ref()
        .unwrap()
        .set_account_disabled("alice", true)
        .await
        .unwrap();
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let page = back(&w, &mut browser, &op.authorize(&url, "p-9")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(page.html.contains("disabled"));
    assert!(browser.cookie("__Host-aauth-session").is_none());
}

#[tokio::test]
async fn an_existing_account_is_never_taken_over_by_a_new_person() {
    let op = Op::new();
    let w = world(&op, NewAccounts::Create).await;
    // Someone made an account with the name a new person would get.
    w.ps.set_password("corp:p-1", "its own password")
        .await
        .unwrap();
    let code = waiting(&w).await;
    let mut browser = Browser::default();
    let url = start(&w, &mut browser, &code).await;
    let page = back(&w, &mut browser, &op.authorize(&url, "p-1")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(browser.cookie("__Host-aauth-session").is_none());
    use aauth_person_server::PsStore as _;
    assert_eq!(
        w.mem
            .as_ref()
            .unwrap()
            .linked_account(OP, "p-1")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn passwords_can_be_turned_off_and_providers_are_checked_when_added() {
    let op = Op::new();
    let mut w = world(&op, NewAccounts::Create).await;
    w.ps = w.ps.password_sign_in(false);
    let code = waiting(&w).await;
    let mut browser = Browser::default();
    let login = browser
        .go(&w, "GET", &format!("/interact?code={code}"), &[])
        .await;
    assert!(login.html.contains("Sign in with Example Corp"));
    assert!(!login.html.contains("type=\"password\""), "{}", login.html);
    let refused = browser
        .sign_in(&w, &code, "alice", "correct horse battery")
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert!(browser.cookie("__Host-aauth-session").is_none());

    // An unknown provider.
    let page = browser
        .go(
            &w,
            "GET",
            &format!("{OIDC_START_PATH}?provider=nope&code={code}"),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    // Misconfigured providers are refused when added, each for its reason.
    let w = consenting_world(None).await;
    let bad_id = SignInProvider::new("Corp!", "Corp", client(&op, CALLBACK).await);
    assert!(matches!(
        w.ps.sign_in_with(bad_id),
        Err(SignInSetupError::Id(_))
    ));
    let w = consenting_world(None).await;
    let elsewhere = SignInProvider::new("corp", "Corp", client(&op, "https://ps.example/cb").await);
    assert!(matches!(
        w.ps.sign_in_with(elsewhere),
        Err(SignInSetupError::RedirectUri { .. })
    ));
    let w = consenting_world(None).await;
    let ps =
        w.ps.sign_in_with(SignInProvider::new(
            "corp",
            "Corp",
            client(&op, CALLBACK).await,
        ))
        .unwrap();
    let twice = SignInProvider::new("corp2", "Corp again", client(&op, CALLBACK).await);
    assert!(matches!(
        ps.sign_in_with(twice),
        Err(SignInSetupError::Duplicate(_))
    ));
}

/// Several providers: the sign-in page offers each, and each link starts at its own.
#[tokio::test]
async fn the_sign_in_page_offers_every_configured_provider() {
    let op = Op::new();
    let mut w = world(&op, NewAccounts::Create).await;
    let other = OidcProvider::parse(
        json!({
            "issuer": "https://login.other.example",
            "authorization_endpoint": "https://login.other.example/auth",
            "token_endpoint": "https://login.other.example/token",
            "jwks_uri": "https://login.other.example/jwks",
        })
        .to_string()
        .as_bytes(),
        "https://login.other.example",
    )
    .unwrap();
    let client = OidcClient::new(
        other,
        ClientAuth::SecretBasic {
            client_id: "ps".to_owned(),
            secret: "s".to_owned(),
        },
        CALLBACK,
        Arc::new(Arc::clone(&op)),
        Arc::clone(&op) as Arc<dyn Transport>,
        Arc::new(FixedClock::new(NOW)),
    );
    w.ps =
        w.ps.sign_in_with(SignInProvider::new("other", "Other Org", client))
            .unwrap();
    let code = waiting(&w).await;
    let mut browser = Browser::default();
    let login = browser
        .go(&w, "GET", &format!("/interact?code={code}"), &[])
        .await;
    assert!(
        login.html.contains("Sign in with Example Corp")
            && login.html.contains("Sign in with Other Org"),
        "{}",
        login.html
    );
    let started = browser
        .go(
            &w,
            "GET",
            &format!("{OIDC_START_PATH}?provider=other&code={code}"),
            &[],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    assert!(
        header(&started.headers, "location").starts_with("https://login.other.example/auth?"),
        "{}",
        header(&started.headers, "location")
    );
}
