//! The person's dashboard (`/account`, issue 16): only what is the signed-in person's,
//! every change a confirmed POST with the session's CSRF token and a record in the audit
//! trail, anything else's answered as something absent, and the trail filtered and
//! downloaded without a spreadsheet formula getting through.

use std::sync::Arc;

use aauth_person_server::{
    AuditAction, AuditEvent, Constraints, INTERACT_PATH, LOGIN_PATH, Mission, PersonTokenRecord,
    TerminationReason,
};
use aauth_tokens::{AgentId, PersonClaims};
use http::StatusCode;

use crate::consent::{AskForAccess, Browser, Page, consenting_world, header_of};
use crate::{AUTH_TOKEN_PATH, NOW, World, id};

const AGENT: &str = "aauth:assistant@agent.example";

/// Signs in from the bare sign-in page (no request's code): lands on the dashboard.
async fn signed_in(w: &World, account: &str, password: &str) -> Browser {
    let mut b = Browser::default();
    let login = b.go(w, "GET", INTERACT_PATH, &[]).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.html);
    let csrf = login.hidden("csrf");
    let done = b
        .go(
            w,
            "POST",
            LOGIN_PATH,
            &[
                ("code", ""),
                ("csrf", &csrf),
                ("username", account),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(header_of(&done.headers, "location"), "/account");
    b
}

async fn change(b: &mut Browser, w: &World, csrf: &str, form: &[(&str, &str)]) -> Page {
    let mut all = vec![("csrf", csrf)];
    all.extend_from_slice(form);
    b.go(w, "POST", "/account", &all).await
}

/// Alice's agent, a person token in her name, a mission of hers, and mallory's token,
/// mission and audit record beside them.
async fn world() -> (World, String, String, String) {
    let w = consenting_world(Some(Arc::new(AskForAccess))).await;
    w.bind(AGENT, "alice").await;
    let pt = w.person_token("https://resource.example").await;
    let store = w.ps.store();
    let owner = (id("https://agent.example"), AgentId::parse(AGENT).unwrap());
    let mallorys = PersonTokenRecord::new(
        "mallorys-jti",
        id("https://resource.example"),
        "sub-m",
        "mallory",
        (
            id("https://agent.example"),
            AgentId::parse("aauth:other@agent.example").unwrap(),
        ),
        NOW.as_secs() + 600,
    );
    store.record_person_token(mallorys).await.unwrap();
    let alices = Mission::new(
        br#"{"agent":"aauth:assistant@agent.example","description":"Alice's <b>offsite</b>"}"#
            .to_vec(),
        owner.clone(),
        "alice",
        Constraints::default(),
    );
    let theirs = Mission::new(
        br#"{"agent":"aauth:assistant@agent.example","description":"Mallory's plan"}"#.to_vec(),
        owner,
        "mallory",
        Constraints::default(),
    );
    store.put_mission(alices.clone()).await.unwrap();
    store.put_mission(theirs.clone()).await.unwrap();
    for (account, detail) in [
        ("alice", "=HYPERLINK(\"https://evil.example\")"),
        ("mallory", "mallory's secret"),
    ] {
        store
            .record_event(
                AuditEvent::new(NOW.as_secs(), AuditAction::Refused, detail).account(account),
            )
            .await
            .unwrap();
    }
    (w, pt, alices.s256, theirs.s256)
}

#[tokio::test]
async fn the_dashboard_shows_only_the_persons_own_and_redirects_without_a_session() {
    let (w, pt, mission, theirs) = world().await;
    let pc: PersonClaims = w.read(&pt, "https://resource.example");
    let mut nobody = Browser::default();
    let away = nobody.go(&w, "GET", "/account", &[]).await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(header_of(&away.headers, "location"), INTERACT_PATH);

    let mut b = signed_in(&w, "alice", "correct horse battery").await;
    let page = b.go(&w, "GET", "/account", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    for shown in [
        "<h1>Your account</h1>",
        "<bdi>aauth:assistant@agent.example</bdi>",
        &format!("data-jti=\"{}\"", pc.jti),
        &mission,
        "Alice&#39;s &lt;b&gt;offsite&lt;/b&gt;",
        "=HYPERLINK(",
        "href=\"/account/audit.csv\"",
    ] {
        assert!(page.html.contains(shown), "{shown}: {}", page.html);
    }
    for hidden in [
        "mallorys-jti",
        "Mallory",
        &theirs,
        "mallory&#39;s secret",
        "<b>offsite</b>",
    ] {
        assert!(!page.html.contains(hidden), "{hidden}: {}", page.html);
    }
    // Filters: only what was refused; a day that is not one is named.
    let issued = "data-label=\"What\">issued</td>";
    assert!(page.html.contains(issued), "{}", page.html);
    let refused = b.go(&w, "GET", "/account?action=refused", &[]).await;
    assert!(refused.html.contains("=HYPERLINK("));
    assert!(refused.html.contains("data-label=\"What\">refused</td>"));
    assert!(!refused.html.contains(issued), "{}", refused.html);
    assert!(
        refused
            .html
            .contains("<option value=\"refused\" selected>refused</option>"),
        "{}",
        refused.html
    );
    let bad = b.go(&w, "GET", "/account?since=yesterday", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.html.contains("That filter is not one: since."),
        "{}",
        bad.html
    );
}

#[tokio::test]
async fn the_person_revokes_a_token_after_confirming_and_the_agent_cannot_use_it() {
    let (w, pt, _, _) = world().await;
    let pc: PersonClaims = w.read(&pt, "https://resource.example");
    let mut b = signed_in(&w, "alice", "correct horse battery").await;
    let page = b.go(&w, "GET", "/account", &[]).await;
    let csrf = page.hidden("csrf");
    let store = w.ps.store();

    // Another's token and one that does not exist: the same 404, the same page.
    let other = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "revoke-token"),
            ("jti", "mallorys-jti"),
            ("confirm", "yes"),
        ],
    )
    .await;
    let absent = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "revoke-token"),
            ("jti", "no-such-jti"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(
        (other.status, absent.status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(other.html, absent.html);
    assert!(!store.is_revoked("mallorys-jti", NOW).await.unwrap());
    // Without the session's CSRF token: refused, nothing changed.
    let forged = change(
        &mut b,
        &w,
        "forged",
        &[
            ("action", "revoke-token"),
            ("jti", &pc.jti),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // Asked first; nothing changes until confirmed.
    let ask = change(
        &mut b,
        &w,
        &csrf,
        &[("action", "revoke-token"), ("jti", &pc.jti)],
    )
    .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(
        ask.html.contains("<h1>Are you sure?</h1>")
            && ask.html.contains("name=\"confirm\" value=\"yes\""),
        "{}",
        ask.html
    );
    assert!(!store.is_revoked(&pc.jti, NOW).await.unwrap());
    let done = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "revoke-token"),
            ("jti", &pc.jti),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(done.html.contains("The token is revoked"), "{}", done.html);
    assert!(store.is_revoked(&pc.jti, NOW).await.unwrap());
    // The agent presents it for an auth token: refused.
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": pt}),
        )
        .await;
    assert!(s.is_client_error(), "{s} {json}");
    // The dashboard no longer lists it, and the trail says who revoked it.
    let page = b.go(&w, "GET", "/account?action=revoked", &[]).await;
    assert!(!page.html.contains(&format!("data-jti=\"{}\"", pc.jti)));
    assert!(page.html.contains("revoked by the person"), "{}", page.html);
}

#[tokio::test]
async fn the_person_unlinks_an_agent_and_terminates_a_mission_but_never_anothers() {
    let (w, _, mission, theirs) = world().await;
    let mut b = signed_in(&w, "alice", "correct horse battery").await;
    let csrf = b.go(&w, "GET", "/account", &[]).await.hidden("csrf");
    let store = w.ps.store();

    let not_hers = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "terminate-mission"),
            ("mission", &theirs),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(not_hers.status, StatusCode::NOT_FOUND);
    assert_eq!(
        store.mission(&theirs).await.unwrap().unwrap().terminated,
        None
    );
    let ask = change(
        &mut b,
        &w,
        &csrf,
        &[("action", "terminate-mission"), ("mission", &mission)],
    )
    .await;
    assert!(
        ask.html.contains("Alice&#39;s &lt;b&gt;offsite&lt;/b&gt;"),
        "{}",
        ask.html
    );
    let done = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "terminate-mission"),
            ("mission", &mission),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert!(
        done.html.contains("The mission is terminated."),
        "{}",
        done.html
    );
    assert_eq!(
        store.mission(&mission).await.unwrap().unwrap().terminated,
        Some(TerminationReason::Revoked)
    );
    // Terminated: nothing more to terminate.
    let again = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "terminate-mission"),
            ("mission", &mission),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    let other_agent = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "revoke-agent"),
            ("provider", "https://agent.example"),
            ("agent", "aauth:other@agent.example"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(other_agent.status, StatusCode::NOT_FOUND);
    let done = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "revoke-agent"),
            ("provider", "https://agent.example"),
            ("agent", AGENT),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert!(
        done.html
            .contains("The agent is unlinked. Tokens revoked: 1."),
        "{}",
        done.html
    );
    assert!(store.bindings(Some("alice")).await.unwrap().is_empty());
    let page = b.go(&w, "GET", "/account", &[]).await;
    assert!(
        page.html.contains("No agent is linked to your account."),
        "{}",
        page.html
    );
}

#[tokio::test]
async fn the_trail_downloads_as_csv_and_json_with_formulas_neutralised() {
    let (w, _, _, _) = world().await;
    let mut b = signed_in(&w, "alice", "correct horse battery").await;
    let csv = b.go(&w, "GET", "/account/audit.csv", &[]).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(
        header_of(&csv.headers, "content-type"),
        "text/csv; charset=utf-8"
    );
    assert!(header_of(&csv.headers, "content-disposition").contains("audit.csv"));
    assert!(
        csv.html
            .starts_with("time,action,agent,resource,scope,request,detail\r\n")
    );
    assert!(
        csv.html
            .contains("\"'=HYPERLINK(\"\"https://evil.example\"\")\""),
        "{}",
        csv.html
    );
    assert!(!csv.html.contains("mallory"), "{}", csv.html);
    let json = b
        .go(&w, "GET", "/account/audit.json?action=refused", &[])
        .await;
    let events: Vec<serde_json::Value> = serde_json::from_str(&json.html).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events.iter().all(|e| e["account"] == "alice"), "{events:?}");
    // Without a session: to sign-in, nothing downloaded.
    let mut nobody = Browser::default();
    assert_eq!(
        nobody
            .go(&w, "GET", "/account/audit.json", &[])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

/// What an agent wrote (a mission's description) and what the trail recorded of an agent
/// (its identifier, a detail) are text on the dashboard and in both downloads: markup,
/// `javascript:` links and direction overrides never act; and a form posted to the
/// dashboard from another site changes nothing.
#[tokio::test]
async fn hostile_words_stay_text_on_the_dashboard_and_in_downloads() {
    let (w, _, _, _) = world().await;
    let hostile = "<script>alert(1)</script><a href=\"javascript:alert(2)\">x</a> \u{202E}fdp.exe";
    let owner = (id("https://agent.example"), AgentId::parse(AGENT).unwrap());
    let blob = serde_json::json!({"agent": AGENT, "description": hostile}).to_string();
    let m = Mission::new(blob.into_bytes(), owner, "alice", Constraints::default());
    w.ps.store().put_mission(m.clone()).await.unwrap();
    w.ps.store()
        .record_event(
            AuditEvent::new(NOW.as_secs(), AuditAction::Denied, hostile)
                .account("alice")
                .agent("-2+3"),
        )
        .await
        .unwrap();
    let mut b = signed_in(&w, "alice", "correct horse battery").await;
    let page = b.go(&w, "GET", "/account", &[]).await;
    let html = &page.html;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("href=\"javascript:"), "{html}");
    assert!(!html.contains('\u{202E}'), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("[U+202E]fdp.exe"), "{html}");
    let csv = b
        .go(&w, "GET", "/account/audit.csv?action=denied", &[])
        .await
        .html;
    assert!(csv.contains("\"'-2+3\""), "{csv}");
    assert!(
        csv.contains("\"<script>alert(1)</script><a href=\"\"javascript:alert(2)\"\">x</a>"),
        "{csv}"
    );
    let json = b
        .go(&w, "GET", "/account/audit.json?action=denied", &[])
        .await
        .html;
    let events: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(events[0]["detail"], hostile);

    // The terminate form, posted from another site: refused before anything is read.
    let csrf = page.hidden("csrf");
    b.origin = Some("https://evil.example".to_owned());
    let refused = change(
        &mut b,
        &w,
        &csrf,
        &[
            ("action", "terminate-mission"),
            ("mission", &m.s256),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        w.ps.store()
            .mission(&m.s256)
            .await
            .unwrap()
            .unwrap()
            .terminated,
        None
    );
}

/// However many tokens an agent obtained, the page lists the 200 that end soonest and
/// says there are more.
#[tokio::test]
async fn a_long_token_list_is_cut_to_the_soonest_and_says_so() {
    let w = consenting_world(None).await;
    w.bind(AGENT, "alice").await;
    let store = w.ps.store();
    let agent = (id("https://agent.example"), AgentId::parse(AGENT).unwrap());
    for i in 0..205u64 {
        store
            .record_person_token(PersonTokenRecord::new(
                format!("jti-{i:03}"),
                id("https://resource.example"),
                "sub-a",
                "alice",
                agent.clone(),
                NOW.as_secs() + 600 + i,
            ))
            .await
            .unwrap();
    }
    // One of the soonest is revoked: not listed, and not counted.
    store
        .revoke("jti-000", NOW.as_secs() + 600, NOW)
        .await
        .unwrap();
    let mut b = signed_in(&w, "alice", "correct horse battery").await;
    let page = b.go(&w, "GET", "/account", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.html.matches("class=\"token-row\"").count(), 200);
    assert!(
        page.html
            .contains("Only the 200 that end soonest are listed")
    );
    assert!(!page.html.contains("data-jti=\"jti-000\""));
    assert!(page.html.contains("data-jti=\"jti-001\""));
    assert!(page.html.contains("data-jti=\"jti-200\""));
    assert!(
        !page.html.contains("data-jti=\"jti-201\""),
        "the latest are cut"
    );
}

/// An agent's first and last seen are its oldest and newest events for the person, read
/// as one event each, however many it has (here more than a thousand).
#[tokio::test]
async fn first_seen_is_the_agents_first_event_however_many_follow() {
    let w = consenting_world(None).await;
    w.bind(AGENT, "alice").await;
    let store = w.ps.store();
    let event = |at: u64| {
        AuditEvent::new(at, AuditAction::Issued, "person token j")
            .account("alice")
            .agent(AGENT)
    };
    // 2027-01-14T08:00:00Z, then 1,200 events from 2027-01-15T07:00:00Z on.
    store
        .record_event(event(NOW.as_secs() - 86_400))
        .await
        .unwrap();
    for i in 0..1_200u64 {
        store
            .record_event(event(NOW.as_secs() - 3_600 + i))
            .await
            .unwrap();
    }
    let mut b = signed_in(&w, "alice", "correct horse battery").await;
    let page = b.go(&w, "GET", "/account", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html
            .contains(r#"<td data-label="First seen"><time datetime="2027-01-14T08:00:00Z">"#),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains(r#"<td data-label="Last seen"><time datetime="2027-01-15T07:19:59Z">"#)
    );
}
