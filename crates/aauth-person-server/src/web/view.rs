//! The pages' markup, written with `maud` (docs/decisions/0018): every value is escaped
//! unless a template says otherwise, and every text comes from the catalogue
//! ([`super::text`]).

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use maud::{DOCTYPE, Markup, Render, html};

use super::describe::Shown;
use super::text::{Messages, Text};
use crate::mission::Proposal;
use crate::pending::{Pending, PendingRequest};

/// Where the pages' stylesheet is served (same origin: the pages' policy allows no other).
pub(crate) const STYLE_PATH: &str = "/interact/style.css";

/// The stylesheet.
const STYLESHEET: &str = include_str!("style.css");

/// The pages' `Content-Security-Policy`: nothing but this server's stylesheet, images
/// inlined by this server (a resource's logo, fetched by it), and forms posted to itself;
/// never framed.
pub(crate) const PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Text that another party wrote (an agent's description or justification, a resource's
/// name, a mission's description), shown as text and only as text: escaped, control
/// characters dropped, each bidirectional formatting character shown as its code point
/// (`[U+202E]`) so it cannot reorder what the person reads, and isolated in `<bdi>` so
/// right-to-left text stays inside its box.
pub(crate) struct Said<'a>(pub(crate) &'a str);

impl Render for Said<'_> {
    fn render_to(&self, buf: &mut String) {
        buf.push_str("<bdi>");
        for c in self.0.chars() {
            match c {
                '&' => buf.push_str("&amp;"),
                '<' => buf.push_str("&lt;"),
                '>' => buf.push_str("&gt;"),
                '"' => buf.push_str("&quot;"),
                '\'' => buf.push_str("&#39;"),
                c if bidi(c) => buf.push_str(&format!("[U+{:04X}]", u32::from(c))),
                c if c.is_control() => {}
                c => buf.push(c),
            }
        }
        buf.push_str("</bdi>");
    }
}

/// A bidirectional formatting character (it reorders the text around it).
fn bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Another party's words as plain text that cannot reorder or hide what surrounds it:
/// control characters dropped, each bidirectional formatting character written as its
/// code point (`[U+202E]`). For words filled into a sentence of the catalogue (a scope,
/// an action's name), which the page then escapes as all text; [`Said`] adds the
/// escaping and the `<bdi>` isolation for words shown on their own.
pub(crate) fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| bidi(c) || c.is_control()) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bidi(c) {
            out.push_str(&format!("[U+{:04X}]", u32::from(c)));
        } else if !c.is_control() {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An HTML page: the frame (language, title, stylesheet, landmarks) around `body`, with
/// the headers every page carries.
pub(crate) fn page(
    m: &Messages,
    status: StatusCode,
    title: Text,
    body: &Markup,
) -> http::Response<Bytes> {
    let html = html! {
        (DOCTYPE)
        html lang=(m.lang()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title {
                    (m.text(title))
                    @if title != Text::PersonServer { " · " (m.text(Text::PersonServer)) }
                }
                link rel="stylesheet" href=(STYLE_PATH);
            }
            body {
                a.skip href="#main" { (m.text(Text::SkipToContent)) }
                header.site { (m.text(Text::PersonServer)) }
                main #main {
                    h1 { (m.text(title)) }
                    (body)
                }
            }
        }
    };
    let mut r = http::Response::new(Bytes::from(html.into_string()));
    *r.status_mut() = status;
    with_headers(
        r,
        &[
            (http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (http::header::CACHE_CONTROL, "no-store"),
            (http::header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (http::header::X_FRAME_OPTIONS, "DENY"),
            // `same-origin`, not `no-referrer`: links to the resource, its terms or a
            // provider carry no referrer, and the pages' own forms keep their `Origin`
            // (under `no-referrer` a browser sends `Origin: null`, which the origin
            // check refuses).
            (http::header::REFERRER_POLICY, "same-origin"),
        ],
    )
}

/// `r`, a page whose form may be answered with a redirect to an agent's callback at
/// `origin` (a [`super::callback_origin`]), under the pages' policy with that origin also
/// allowed in `form-action`: browsers (Chrome, Safari) apply `form-action` to the
/// redirects that follow a form's submission, so under `'self'` alone the decision is
/// saved but the browser never reaches the agent.
pub(crate) fn form_may_lead_to(
    mut r: http::Response<Bytes>,
    origin: &str,
) -> http::Response<Bytes> {
    let policy = PAGE_POLICY.replacen(
        "form-action 'self';",
        &format!("form-action 'self' {origin};"),
        1,
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        r.headers_mut()
            .insert(http::header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// A page that says `text` and goes on to `target` by itself (`Refresh: 0`), with a link
/// for a browser that does not: the way from a form's answer to another site that the
/// form's page could not allow in its policy (a refresh is a navigation of its own, which
/// `form-action` does not govern).
pub(crate) fn onward(m: &Messages, text: Text, target: &str) -> http::Response<Bytes> {
    let body = html! {
        p { (m.text(text)) }
        p { (link(m, target, Text::Continue)) }
    };
    let mut r = page(m, StatusCode::OK, Text::PersonServer, &body);
    if let Ok(v) = HeaderValue::from_str(&format!("0; url={target}")) {
        r.headers_mut().insert(http::header::REFRESH, v);
    }
    r
}

/// `r` with `headers` set, and `X-Content-Type-Options: nosniff`.
pub(crate) fn with_headers(
    mut r: http::Response<Bytes>,
    headers: &[(http::HeaderName, &'static str)],
) -> http::Response<Bytes> {
    let h = r.headers_mut();
    for (name, value) in headers {
        h.insert(name.clone(), HeaderValue::from_static(value));
    }
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A page that says one thing.
pub(crate) fn message(m: &Messages, status: StatusCode, text: Text) -> http::Response<Bytes> {
    page(
        m,
        status,
        Text::PersonServer,
        &html! { p { (m.text(text)) } },
    )
}

/// `GET` [`STYLE_PATH`]: the stylesheet, cacheable for a day.
pub(crate) fn stylesheet() -> http::Response<Bytes> {
    with_headers(
        http::Response::new(Bytes::from_static(STYLESHEET.as_bytes())),
        &[
            (http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
    )
}

/// The hidden `callback` input of a form, if there is a callback to carry.
pub(crate) fn hidden_callback(callback: Option<&str>) -> Markup {
    html! {
        @if let Some(cb) = callback.filter(|c| !c.is_empty()) {
            input type="hidden" name="callback" value=(cb);
        }
    }
}

/// A link whose text comes from the catalogue.
pub(crate) fn link(m: &Messages, href: &str, text: Text) -> Markup {
    html! { a href=(href) { (m.text(text)) } }
}

/// A resource's logo as this server fetched it: `data:` URIs (light, and dark if the
/// resource publishes one), so the person's browser never asks the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logo {
    pub(crate) light: String,
    pub(crate) dark: Option<String>,
}

/// What the sign-in page offers.
pub(crate) struct SignInForm<'a> {
    /// The interaction code the person came with.
    pub(crate) code: &'a str,
    /// The double-submit CSRF token of the password form.
    pub(crate) csrf: &'a str,
    /// The agent's callback, carried through.
    pub(crate) callback: Option<&'a str>,
    /// The OpenID Providers offered, `(id, label)`.
    pub(crate) providers: &'a [(&'a str, &'a str)],
    /// Whether the password form is offered.
    pub(crate) passwords: bool,
}

/// The sign-in page's body: a link per provider, then the password form.
pub(crate) fn login_form(m: &Messages, form: &SignInForm<'_>, error: Option<Text>) -> Markup {
    let provider_href = |id: &str| {
        let mut href = format!(
            "/interact/oidc?provider={}&code={}",
            super::query_escape(id),
            super::query_escape(form.code)
        );
        if let Some(cb) = form.callback.filter(|c| !c.is_empty()) {
            href.push_str("&callback=");
            href.push_str(&super::query_escape(cb));
        }
        href
    };
    html! {
        @if let Some(e) = error {
            p role="alert" { (m.text(e)) }
        }
        @for (id, label) in form.providers {
            p {
                a.sign-in-provider.button.primary data-provider=(id) href=(provider_href(id)) {
                    (m.fill(Text::SignInWith, &[("provider", label)]))
                }
            }
        }
        @if form.passwords {
            form method="post" action="/interact/login" {
                @if !form.providers.is_empty() {
                    h2 { (m.text(Text::OrWithPassword)) }
                }
                input type="hidden" name="code" value=(form.code);
                input type="hidden" name="csrf" value=(form.csrf);
                (hidden_callback(form.callback))
                label for="username" { (m.text(Text::Account)) }
                input #username name="username" autocomplete="username" required;
                label for="password" { (m.text(Text::Password)) }
                input #password name="password" type="password" autocomplete="current-password" required;
                p.actions { button.primary type="submit" { (m.text(Text::SignInButton)) } }
            }
        }
    }
}

/// What a resource's metadata says of it (PS-12), for the consent page: its logo, its
/// `name` and `description` quoted as its own words, what its `access_mode` means for the
/// person, each scope of `scope` (the one asked for) with the description the resource
/// publishes for it, and its terms of service and privacy policy.
pub(crate) fn resource_description(
    m: &Messages,
    doc: &aauth_metadata::ResourceMetadata,
    scope: Option<&str>,
    logo: Option<&Logo>,
) -> Markup {
    use aauth_metadata::AccessMode;
    let name = doc.common.name.as_deref().filter(|n| !n.trim().is_empty());
    let description = doc
        .common
        .description
        .as_deref()
        .filter(|d| !d.trim().is_empty());
    let mode = match doc.access_mode {
        Some(AccessMode::PersonToken) => Some(("person-token", Text::ModePersonToken)),
        Some(AccessMode::AuthToken) => Some(("auth-token", Text::ModeAuthToken)),
        Some(AccessMode::SessionToken) => Some(("session-token", Text::ModeSessionToken)),
        Some(AccessMode::AgentToken) => Some(("agent-token", Text::ModeAgentToken)),
        _ => None,
    };
    let scopes: Vec<&str> = scope
        .map(|s| s.split_whitespace().take(64).collect())
        .unwrap_or_default(); // default: no scope asked lists none
    let described = |s: &str| {
        doc.scope_descriptions
            .as_ref()
            .and_then(|d| d.get(s))
            .filter(|d| !d.trim().is_empty())
            .cloned()
    };
    let links: Vec<(&str, Text)> = [
        (doc.common.tos_uri.as_ref(), Text::TermsOfService),
        (doc.common.policy_uri.as_ref(), Text::PrivacyPolicy),
    ]
    .into_iter()
    .filter_map(|(url, text)| url.map(|u| (u.as_str(), text)))
    .collect();
    html! {
        @if let Some(logo) = logo {
            picture {
                @if let Some(dark) = &logo.dark {
                    source media="(prefers-color-scheme: dark)" srcset=(dark);
                }
                img.logo src=(logo.light) alt=(m.text(Text::ResourceLogo)) width="64" height="64";
            }
        }
        @if let Some(name) = name {
            p.resource-name { (m.markup(Text::CallsItself, &[("name", html! { strong { (Said(name)) } })])) }
        }
        @if let Some(d) = description {
            blockquote.resource-description { (Said(d)) }
        }
        @if let Some((value, meaning)) = mode {
            p.resource-access-mode {
                (m.markup(Text::AccessMode, &[
                    ("mode", html! { code { (value) } }),
                    ("meaning", html! { (m.text(meaning)) }),
                ]))
            }
        }
        @if !scopes.is_empty() {
            ul.resource-scopes {
                @for s in &scopes {
                    li {
                        code { (Said(s)) } ": "
                        @match described(s) {
                            Some(d) => (Said(&d)),
                            None => em { (m.text(Text::NoScopeDescription)) },
                        }
                    }
                }
            }
        }
        @if !links.is_empty() {
            p.resource-links {
                @for (i, (url, text)) in links.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(url) rel="noopener noreferrer" { (m.text(*text)) }
                }
            }
        }
    }
}

/// Who the person is signed in as, with the way out ("not you?"): a form that signs out
/// and comes back to the request `code` names.
pub(crate) fn signed_in_as(m: &Messages, s: &crate::pending::WebSession, code: &str) -> Markup {
    html! {
        form.signed-in method="post" action=(crate::server::LOGOUT_PATH) {
            p {
                (m.markup(Text::SignedInAs, &[("account", html! { strong { (Said(&s.account)) } })]))
                " "
                button.link-button type="submit" { (m.text(Text::NotYou)) }
            }
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="code" value=(code);
        }
    }
}

/// What the page says is asked: of which party (the resource, or the Person Server
/// `ps`), what, and what the agent says about it.
pub(crate) fn what_is_asked<'a>(
    m: &Messages,
    ps: &'a str,
    p: &'a Pending,
) -> (&'a str, String, Option<String>) {
    match &p.request {
        PendingRequest::PersonToken { resource, .. } => (
            resource.as_str(),
            m.text(Text::AskPersonToken).to_owned(),
            p.justification.clone(),
        ),
        PendingRequest::AuthToken {
            resource,
            scope,
            budget,
            ..
        } => {
            let scope = scope
                .as_deref()
                .map_or(m.text(Text::NoScope).into(), visible);
            let asked = match budget {
                Some(b) => m.fill(
                    Text::AskAuthTokenBudget,
                    &[("scope", &scope), ("budget", &visible(&b.to_string()))],
                ),
                None => m.fill(Text::AskAuthToken, &[("scope", &scope)]),
            };
            (resource.as_str(), asked, p.justification.clone())
        }
        PendingRequest::Mission { proposal } => {
            let prop = serde_json::from_str::<Proposal>(proposal).ok();
            let resources = prop
                .as_ref()
                .map(|p| p.resources.join(", "))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| m.text(Text::NoneNamed).to_owned());
            (
                ps,
                m.fill(Text::AskMission, &[("resources", &visible(&resources))]),
                prop.map(|p| p.description),
            )
        }
        PendingRequest::Completion { s256, summary } => (
            ps,
            m.fill(Text::AskCompletion, &[("mission", &visible(s256))]),
            Some(summary.clone()),
        ),
        PendingRequest::Permission {
            action,
            description,
            ..
        } => (
            ps,
            m.fill(Text::AskPermission, &[("action", &visible(action))]),
            description.clone(),
        ),
        PendingRequest::Question { question, .. } => (
            ps,
            m.text(Text::AskAnswer).to_owned(),
            Some(question.clone()),
        ),
    }
}

/// The mission a request is asked under, as the consent page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MissionShown {
    /// The person's mission.
    Known {
        /// What the mission is for, in the agent's words.
        description: Option<String>,
        /// What its constraints allow, one phrase each.
        allows: Vec<String>,
        /// `(spent, total, left)` when it has a budget.
        budget: Option<(String, String, String)>,
        /// Whether it has ended.
        ended: bool,
    },
    /// A mission this server does not hold for the signed-in person.
    Unknown,
}

impl MissionShown {
    /// `mission` as the page shows it.
    pub(crate) fn of(m: &Messages, mission: &crate::mission::Mission) -> Self {
        let description = serde_json::from_slice::<serde_json::Value>(&mission.blob)
            .ok()
            .and_then(|v| v.get("description")?.as_str().map(str::to_owned));
        let c = &mission.constraints;
        let mut allows = Vec::new();
        if let Some(t) = c.valid_until {
            allows.push(m.fill(Text::MissionUntil, &[("time", &crate::mission::iso8601(t))]));
        }
        if let Some(r) = &c.resources {
            allows.push(m.fill(Text::MissionResources, &[("list", &r.join(", "))]));
        }
        if let Some(t) = &c.tools {
            allows.push(m.fill(Text::MissionTools, &[("list", &t.join(", "))]));
        }
        for a in &mission.approvals {
            allows.push(m.fill(
                Text::MissionStanding,
                &[("scope", &a.scope), ("resource", &a.resource)],
            ));
        }
        if let Some(max) = c.max_grants {
            allows.push(m.fill(
                Text::MissionGrants,
                &[
                    ("used", &mission.grants.to_string()),
                    ("max", &max.to_string()),
                ],
            ));
        }
        let budget = c.budget.as_ref().map(|b| {
            let spent = mission.spent();
            let figure = |amount: u64| {
                aauth_tokens::Budget::new(amount, b.unit.clone(), b.decimals)
                    .map_or_else(|_| format!("{amount} {}", b.unit), |f| f.to_string())
            };
            (
                figure(spent),
                b.to_string(),
                figure(b.amount.saturating_sub(spent)),
            )
        });
        Self::Known {
            description,
            allows,
            budget,
            ended: mission.terminated.is_some(),
        }
    }
}

/// What the consent page shows.
pub(crate) struct Consent<'a> {
    /// This Person Server's identifier.
    pub(crate) ps: &'a str,
    /// The request.
    pub(crate) pending: &'a Pending,
    /// The resource, as its metadata describes it.
    pub(crate) shown: Option<&'a Shown>,
    /// The mission the request is asked under.
    pub(crate) mission: Option<&'a MissionShown>,
    /// The session's CSRF token.
    pub(crate) csrf: &'a str,
    /// The agent's callback, carried through.
    pub(crate) callback: Option<&'a str>,
    /// Whether the person may approve for the rest of the mission.
    pub(crate) mission_wide: bool,
    /// How long the token asked for would last at most (seconds), for a token.
    pub(crate) lasts: Option<u64>,
}

/// The consent page's body: what the resource asserts (and what its metadata says of it),
/// the mission, apart from them what the agent says of itself, the conversation, and the
/// decision.
pub(crate) fn consent(m: &Messages, c: &Consent<'_>) -> Markup {
    let p = c.pending;
    let (resource, asked, says) = what_is_asked(m, c.ps, p);
    let scope = match &p.request {
        PendingRequest::AuthToken { scope, .. } => scope.as_deref(),
        _ => None,
    };
    let heading = match &p.request {
        PendingRequest::PersonToken { .. } | PendingRequest::AuthToken { .. } => Text::TheResource,
        _ => Text::YourPersonServer,
    };
    let runs_on: Vec<&str> = [p.platform.as_deref(), p.device.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let code = aauth_metadata::code::display(&p.code);
    html! {
        section.resource aria-labelledby="resource-h" {
            h2 #resource-h { (m.text(heading)) }
            p { (Said(resource)) }
            p { (m.fill(Text::Asks, &[("what", &asked)])) }
            @if let Some(secs) = c.lasts {
                p.lasts { (m.fill(Text::Lasts, &[("minutes", &secs.div_ceil(60).to_string())])) }
            }
            @if let Some(shown) = c.shown {
                (resource_description(m, &shown.doc, scope, shown.logo.as_ref()))
            }
            @if p.revision > 0 {
                p { em { (m.text(Text::Changed)) } }
            }
        }
        @if let Some(mission) = c.mission {
            (mission_section(m, mission))
        }
        section.agent aria-labelledby="agent-h" {
            h2 #agent-h { (m.text(Text::AgentHeading)) }
            p.claim { (m.text(Text::AgentClaim)) }
            p { (Said(p.agent.1.as_str())) }
            p { (m.markup(Text::From, &[("provider", html! { (Said(p.agent.0.as_str())) })])) }
            @if !runs_on.is_empty() {
                p { (m.markup(Text::RunsOn, &[("platform", html! { (Said(&runs_on.join(", "))) })])) }
            }
            @if let Some(t) = &says {
                p { strong { (m.text(Text::AgentSays)) } " " (Said(t)) }
            }
            @if p.account.is_none() {
                p { strong { (m.text(Text::NotLinked)) } " " (m.text(Text::ApprovingLinks)) }
            }
            (chat(m, p))
        }
        form method="post" action=(crate::server::INTERACT_PATH) {
            input type="hidden" name="code" value=(code);
            input type="hidden" name="csrf" value=(c.csrf);
            input type="hidden" name="revision" value=(p.revision);
            (hidden_callback(c.callback))
            (ask(m, p))
            @if c.mission_wide {
                p.muted { (m.text(Text::MissionWideHint)) }
            }
            // A question is answered (its field is above), never approved or denied.
            @if !matches!(p.request, PendingRequest::Question { .. }) {
                (decision_buttons(m, c.mission_wide))
            }
        }
    }
}

/// The consent form's approve and deny buttons (approve once or for the mission, when the
/// person may approve for the mission).
fn decision_buttons(m: &Messages, mission_wide: bool) -> Markup {
    html! {
        p.actions {
            @if mission_wide {
                button.primary name="decision" value="grant" { (m.text(Text::ApproveOnce)) }
                " "
                button.primary name="decision" value="grant-mission" { (m.text(Text::ApproveForMission)) }
            } @else {
                button.primary name="decision" value="grant" { (m.text(Text::Approve)) }
            }
            " "
            button name="decision" value="deny" { (m.text(Text::Deny)) }
        }
    }
}

/// The mission's section of the consent page.
fn mission_section(m: &Messages, mission: &MissionShown) -> Markup {
    html! {
        section.mission aria-labelledby="mission-h" {
            h2 #mission-h { (m.text(Text::MissionHeading)) }
            (mission_details(m, mission))
        }
    }
}

/// What a mission is: its description, whether it has ended, its budget and what its
/// constraints allow (the consent page's and the dashboard's).
pub(crate) fn mission_details(m: &Messages, mission: &MissionShown) -> Markup {
    html! {
        @match mission {
            MissionShown::Unknown => p { (m.text(Text::MissionUnknown)) },
            MissionShown::Known { description, allows, budget, ended } => {
                @if let Some(d) = description {
                    blockquote.mission-description { (Said(d)) }
                }
                @if *ended {
                    p role="alert" { (m.text(Text::MissionEnded)) }
                }
                @if let Some((spent, total, left)) = budget {
                    p.mission-budget {
                        (m.fill(Text::MissionBudget, &[("spent", spent), ("total", total), ("left", left)]))
                    }
                }
                @if !allows.is_empty() {
                    p { (m.text(Text::MissionConstraints)) }
                    ul.mission-constraints {
                        @for a in allows { li { (Said(a)) } }
                    }
                }
            }
        }
    }
}

/// The clarification so far.
fn chat(m: &Messages, p: &Pending) -> Markup {
    html! {
        @for t in &p.chat {
            p { strong { (m.text(Text::YouAsked)) } " " (Said(&t.question)) }
            p {
                strong { (m.text(Text::AgentAnswered)) } " "
                @match &t.answer {
                    Some(a) => (Said(a)),
                    None => (m.text(Text::WaitingForAgent)),
                }
            }
        }
    }
}

/// The form's question or answer field: the person asks the agent, answers the agent's
/// question, or answers the Access Server's when the agent cannot.
fn ask(m: &Messages, p: &Pending) -> Markup {
    let max = crate::pending::MAX_CLARIFICATIONS;
    let can_ask = p.clarification && p.open_question().is_none() && p.chat.len() < max;
    let access_server_question = p.open_access_server_question().filter(|_| !p.clarification);
    let answer_field = html! {
        label for="answer" { (m.text(Text::YourAnswer)) }
        input #answer name="answer" maxlength="4000";
        button name="decision" value="answer" { (m.text(Text::Answer)) }
    };
    html! {
        @if let Some(q) = access_server_question {
            p { strong { (m.text(Text::AccessServerAsks)) } " " (Said(q)) }
            p { (answer_field) }
        } @else if matches!(p.request, PendingRequest::Question { .. }) {
            p { (answer_field) }
        } @else if can_ask {
            p {
                label for="question" { (m.text(Text::AskTheAgent)) }
                input #question name="question" maxlength="2000";
                button name="decision" value="ask" { (m.text(Text::Ask)) }
                " "
                (m.fill(Text::QuestionsLeft, &[("left", &(max - p.chat.len()).to_string()), ("max", &max.to_string())]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_is_text_and_only_text() {
        let shown =
            html! { p { (Said("<script>x</script> \u{202E}evil\u{2066} 'q' \"r\"\u{7}")) } }
                .into_string();
        assert_eq!(
            shown,
            "<p><bdi>&lt;script&gt;x&lt;/script&gt; [U+202E]evil[U+2066] &#39;q&#39; &quot;r&quot;</bdi></p>"
        );
    }

    #[test]
    fn words_filled_into_a_sentence_cannot_reorder_it() {
        // A scope or an action's name from another party, filled into "Asks …": its
        // direction marks shown, its controls dropped; plain words pass untouched.
        assert_eq!(
            visible("files.read\u{202E}etirw\u{2069}\u{0}"),
            "files.read[U+202E]etirw[U+2069]"
        );
        assert!(matches!(
            visible("files.read"),
            std::borrow::Cow::Borrowed(_)
        ));
        let m = Messages::english();
        let asked = m.fill(
            Text::AskPermission,
            &[("action", &visible("delete\u{202E}txt.exe"))],
        );
        assert!(!asked.contains('\u{202E}'), "{asked}");
        assert!(asked.contains("delete[U+202E]txt.exe"), "{asked}");
    }

    #[test]
    fn a_form_may_lead_to_the_agents_origin_and_nowhere_else() {
        let r = form_may_lead_to(
            message(&Messages::english(), StatusCode::OK, Text::NotHere),
            "https://agent.example",
        );
        assert_eq!(
            r.headers()[http::header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; style-src 'self'; img-src data:; \
             form-action 'self' https://agent.example; frame-ancestors 'none'; base-uri 'none'"
        );
        let r = onward(
            &Messages::english(),
            Text::ApprovedReturn,
            "http://[::1]:9/cb?x=1",
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[http::header::REFRESH],
            "0; url=http://[::1]:9/cb?x=1"
        );
        assert_eq!(
            r.headers()[http::header::CONTENT_SECURITY_POLICY],
            PAGE_POLICY
        );
        let body = String::from_utf8_lossy(r.body()).into_owned();
        assert!(
            body.contains(r#"<a href="http://[::1]:9/cb?x=1">Continue</a>"#),
            "{body}"
        );
    }

    #[test]
    fn pages_carry_their_language_and_policy() {
        let r = message(&Messages::english(), StatusCode::NOT_FOUND, Text::NotHere);
        let body = String::from_utf8_lossy(r.body()).into_owned();
        assert!(
            body.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{body}"
        );
        assert!(body.contains("<main id=\"main\"><h1>Person Server</h1><p>Not here.</p></main>"));
        assert_eq!(
            r.headers()[http::header::CONTENT_SECURITY_POLICY],
            PAGE_POLICY
        );
        assert_eq!(
            stylesheet().headers()[http::header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
    }
}
