//! The pages themselves (issue 16): one stylesheet and nothing else the policy allows, a
//! form posted from another site refused before anything changes, a resource's logo
//! inlined by the server, text another party wrote shown only as text, and every text
//! from the catalogue (a translation changes them all, and `lang`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aauth_person_server::{INTERACT_PATH, Messages, Text};
use aauth_tokens::PersonClaims;
use http::StatusCode;

use crate::consent::{
    AskForAccess, Browser, Page, callback_world, code_of, consenting_world, header_of,
    open_with_callback,
};
use crate::{AUTH_TOKEN_PATH, NOW, World};

/// The decision form of `page`, granting.
fn grant_form(page: &Page) -> Vec<(&'static str, String)> {
    vec![
        ("code", page.hidden("code")),
        ("csrf", page.hidden("csrf")),
        ("revision", page.hidden("revision")),
        ("callback", page.hidden("callback")),
        ("decision", "grant".to_owned()),
    ]
}

async fn post(b: &mut Browser, w: &World, path: &str, form: &[(&'static str, String)]) -> Page {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.go(w, "POST", path, &form).await
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused_and_changes_nothing() {
    let w = callback_world().await;
    let (page, mut b, _) = open_with_callback(&w, "https://agent.example/callback", NOW).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let form = grant_form(&page);
    for origin in [
        "https://evil.example",
        "null",
        "https://ps.example.evil.example",
    ] {
        b.origin = Some(origin.to_owned());
        let refused = post(&mut b, &w, INTERACT_PATH, &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(
            refused
                .html
                .contains("sent from another site. Nothing was changed."),
            "{}",
            refused.html
        );
        // Signing out from another site is refused too: the session holds.
        let out = post(
            &mut b,
            &w,
            aauth_person_server::LOGOUT_PATH,
            &[("csrf", page.hidden("csrf")), ("code", page.hidden("code"))],
        )
        .await;
        assert_eq!(out.status, StatusCode::FORBIDDEN, "{origin}");
    }
    // The same form from the server's own page: the request was still open, and is
    // approved now (a refused post had denied or spent it, this would be 410).
    b.origin = Some("https://ps.example".to_owned());
    let done = post(&mut b, &w, INTERACT_PATH, &form).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(
        header_of(&done.headers, "location"),
        "https://agent.example/callback"
    );
}

#[tokio::test]
async fn pages_load_one_stylesheet_and_the_policy_allows_nothing_else() {
    let w = callback_world().await;
    let (page, mut b, _) = open_with_callback(&w, "https://agent.example/callback", NOW).await;
    let policy = header_of(&page.headers, "content-security-policy");
    // Its form may lead to the agent's callback (the decision's redirect), and nowhere
    // else.
    assert_eq!(
        policy,
        "default-src 'none'; style-src 'self'; img-src data:; form-action 'self' https://agent.example; frame-ancestors 'none'; base-uri 'none'"
    );
    for landmark in [
        "<html lang=\"en\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<link rel=\"stylesheet\" href=\"/interact/style.css\">",
        "<main id=\"main\">",
        "<a class=\"skip\" href=\"#main\">",
        "<section class=\"agent\" aria-labelledby=\"agent-h\">",
    ] {
        assert!(page.html.contains(landmark), "{landmark}: {}", page.html);
    }
    assert!(
        !page.html.contains("style=\""),
        "no inline style: {}",
        page.html
    );
    let css = b.go(&w, "GET", "/interact/style.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(
        header_of(&css.headers, "content-type"),
        "text/css; charset=utf-8"
    );
    assert!(css.html.contains("prefers-color-scheme: dark"));
    assert!(css.html.contains(":focus-visible"));
}

/// Serves the resource's metadata with a PNG logo and an SVG "dark logo", counting the
/// fetches.
struct LogoMetadata(AtomicUsize);

const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

#[async_trait::async_trait]
impl aauth_metadata::Fetch for LogoMetadata {
    async fn get(
        &self,
        url: &aauth_metadata::HttpsUrl,
    ) -> Result<aauth_metadata::Fetched, aauth_metadata::FetchError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(aauth_metadata::Fetched::ok(match url.as_str() {
            "https://agent.example/.well-known/aauth-agent.json" => {
                br#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json"}"#.to_vec()
            }
            "https://resource.example/.well-known/aauth-resource.json" => {
                br#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json","name":"Acme","logo_uri":"https://resource.example/logo.png","logo_dark_uri":"https://resource.example/dark.svg"}"#.to_vec()
            }
            "https://resource.example/logo.png" => PNG.to_vec(),
            "https://resource.example/dark.svg" => {
                br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec()
            }
            other => panic!("an unexpected fetch: {other}"),
        }))
    }
}

/// Opens a deferred auth-token request's consent page as alice; returns it.
async fn consent_page(w: &World, body: serde_json::Value) -> Page {
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let mut body = body;
    body["resource_token"] = rt.into();
    body["presented_token"] = person.into();
    body["capabilities"] = serde_json::json!(["interaction"]);
    let (s, headers, _) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let code = code_of(&headers);
    let mut b = Browser::default();
    let signed_in = b.sign_in(w, &code, "alice", "correct horse battery").await;
    b.go(w, "GET", &header_of(&signed_in.headers, "location"), &[])
        .await
}

#[tokio::test]
async fn the_resources_logo_is_inlined_by_the_server_and_never_an_svg() {
    let mut w = consenting_world(Some(Arc::new(AskForAccess))).await;
    let fetches = Arc::new(LogoMetadata(AtomicUsize::new(0)));
    w.ps = w.ps.metadata(fetches.clone());
    w.bind("aauth:assistant@agent.example", "alice").await;
    let page = consent_page(&w, serde_json::json!({})).await;
    assert!(
        page.html
            .contains("<img class=\"logo\" src=\"data:image/png;base64,iVBORw0KGgo"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("svg"), "{}", page.html);
    assert!(!page.html.contains("prefers-color-scheme"), "{}", page.html);
    // Metadata, logo and the refused dark logo: three fetches; a second page, none.
    let after_first = fetches.0.load(Ordering::Relaxed);
    assert_eq!(after_first, 3);
    let again = consent_page(&w, serde_json::json!({})).await;
    assert!(again.html.contains("data:image/png;base64,"));
    assert_eq!(fetches.0.load(Ordering::Relaxed), after_first, "kept");
}

#[tokio::test]
async fn what_an_agent_writes_is_shown_as_text_with_its_direction_marks_visible() {
    let w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.bind("aauth:assistant@agent.example", "alice").await;
    let said =
        "Harmless\u{202E}exe.txt <script>alert(1)</script> <a href=\"javascript:alert(1)\">x</a>";
    let page = consent_page(&w, serde_json::json!({ "justification": said })).await;
    assert!(
        page.html.contains(
            "<bdi>Harmless[U+202E]exe.txt &lt;script&gt;alert(1)&lt;/script&gt; &lt;a href=&quot;javascript:alert(1)&quot;&gt;x&lt;/a&gt;</bdi>"
        ),
        "{}",
        page.html
    );
    assert!(!page.html.contains('\u{202E}'));
    // How long what is approved lasts.
    assert!(
        page.html.contains(&format!(
            "What you approve lasts up to {} minutes",
            aauth_tokens::AUTH_TOKEN_MAX_LIFETIME / 60
        )),
        "{}",
        page.html
    );
    assert!(!page.html.contains("<script>"));
    assert!(!page.html.contains("href=\"javascript:"));
}

#[tokio::test]
async fn a_translation_changes_every_text_and_the_pages_language() {
    let mut w = consenting_world(Some(Arc::new(AskForAccess))).await;
    let de = Messages::from_entries(
        "de",
        Text::ALL.iter().map(|t| match t {
            Text::Approve => (t.key(), "Erlauben".to_owned()),
            Text::Deny => (t.key(), "Ablehnen".to_owned()),
            Text::ConsentTitle => (t.key(), "Ein Agent bittet um Ihre Zustimmung".to_owned()),
            t => (t.key(), format!("[de] {}", t.english())),
        }),
    )
    .expect("a whole catalogue");
    w.ps = w.ps.messages(de);
    w.bind("aauth:assistant@agent.example", "alice").await;
    let page = consent_page(&w, serde_json::json!({})).await;
    assert!(page.html.contains("<html lang=\"de\">"), "{}", page.html);
    assert!(
        page.html
            .contains("<h1>Ein Agent bittet um Ihre Zustimmung</h1>")
    );
    assert!(page.html.contains(">Erlauben</button>") && page.html.contains(">Ablehnen</button>"));
    // Every text the page shows is a catalogue text: none is left in English.
    for t in [
        Text::AgentHeading,
        Text::AgentClaim,
        Text::TheResource,
        Text::NotYou,
    ] {
        assert!(
            page.html
                .contains(&format!("[de] {}", t.english()).replace('\'', "&#39;"))
                || page.html.contains(&format!("[de] {}", t.english())),
            "{t:?}: {}",
            page.html
        );
    }
}
