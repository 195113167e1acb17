//! The person's own pages at `/account`: their agents, missions, tokens and audit trail,
//! each change a form (CSRF token, confirmation first), and the audit trail's filters and
//! downloads. The markup only; `server::account` reads the store and acts.

use aauth_metadata::audit::{AuditAction, AuditCursor, AuditEvent, AuditPage, AuditQuery};
use maud::{Markup, html};

use super::text::{Messages, Text};
use super::view::{MissionShown, Said};
use crate::mission::iso8601;

/// Where the dashboard is served.
pub(crate) const ACCOUNT_PATH: &str = "/account";
/// The audit trail as CSV (the dashboard's filters in the query).
pub(crate) const AUDIT_CSV_PATH: &str = "/account/audit.csv";
/// The audit trail as JSON.
pub(crate) const AUDIT_JSON_PATH: &str = "/account/audit.json";
/// Events per dashboard page.
pub(crate) const PAGE_EVENTS: usize = 50;

/// An agent linked to the account.
pub(crate) struct AgentRow {
    pub(crate) provider: String,
    pub(crate) agent: String,
    /// When the oldest and the newest audit events of the agent for this account were
    /// recorded (among those the store keeps).
    pub(crate) first: Option<u64>,
    pub(crate) last: Option<u64>,
    /// Person and auth tokens on record for it.
    pub(crate) tokens: usize,
}

/// A token issued in the person's name that is still valid.
pub(crate) struct TokenRow {
    pub(crate) kind: Text,
    pub(crate) jti: String,
    pub(crate) resource: String,
    pub(crate) exp: u64,
}

/// A mission of the person's.
pub(crate) struct MissionRow {
    pub(crate) s256: String,
    pub(crate) shown: MissionShown,
    pub(crate) ended: Option<&'static str>,
    pub(crate) log: Vec<crate::mission::LogEntry>,
}

/// The audit trail's filters, as the dashboard's form sends them (empty fields are no
/// filter; days as `YYYY-MM-DD`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) agent: String,
    pub(crate) resource: String,
    pub(crate) action: Option<AuditAction>,
    pub(crate) since: String,
    pub(crate) until: String,
    pub(crate) before: Option<AuditCursor>,
}

impl Filter {
    /// The filters in `pairs` (a query string's), or the name of the first that is not
    /// one.
    pub(crate) fn read(pairs: &[(String, String)]) -> Result<Self, &'static str> {
        let text = |name: &str| {
            super::field(pairs, name)
                .map(str::trim)
                .unwrap_or_default() // default: a field not sent does not filter
                .chars()
                .take(256)
                .collect::<String>()
        };
        let action = match text("action").as_str() {
            "" => None,
            a => Some(a.parse::<AuditAction>().map_err(|_| "action")?),
        };
        let before = match text("before").as_str() {
            "" => None,
            b => Some(b.parse::<AuditCursor>().map_err(|_| "before")?),
        };
        let f = Self {
            agent: text("agent"),
            resource: text("resource"),
            action,
            since: text("since"),
            until: text("until"),
            before,
        };
        let (since, until) = (f.since_secs()?, f.until_secs()?);
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err("since");
        }
        Ok(f)
    }

    fn since_secs(&self) -> Result<Option<u64>, &'static str> {
        day("since", &self.since)
    }

    /// The end of the `until` day.
    fn until_secs(&self) -> Result<Option<u64>, &'static str> {
        Ok(day("until", &self.until)?.map(|d| d + 86_399))
    }

    /// The store query: these filters, always for `account`.
    pub(crate) fn query(&self, account: &str, limit: usize) -> AuditQuery {
        let mut q = AuditQuery::default().limit(limit);
        q.account = Some(account.to_owned());
        q.agent = Some(self.agent.clone()).filter(|a| !a.is_empty());
        q.resource = Some(self.resource.clone()).filter(|r| !r.is_empty());
        q.action = self.action;
        q.since = self.since_secs().ok().flatten();
        q.until = self.until_secs().ok().flatten();
        q.before = self.before;
        q
    }

    /// The filters as a query string (without the page's cursor).
    pub(crate) fn query_string(&self) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("agent", self.agent.clone()),
            ("resource", self.resource.clone()),
            (
                "action",
                self.action
                    .map_or_else(String::new, |a| a.as_str().to_owned()),
            ),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
        ];
        pairs.retain(|(_, v)| !v.is_empty());
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", super::query_escape(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `YYYY-MM-DD` as the second its day starts (UTC); empty is `None`.
fn day(name: &'static str, s: &str) -> Result<Option<u64>, &'static str> {
    if s.is_empty() {
        return Ok(None);
    }
    let mut it = s.splitn(3, '-');
    let mut part = |len: usize| {
        it.next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or(name)
    };
    let (y, m, d) = (part(4)?, part(2)?, part(2)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(name);
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400).map(Some).map_err(|_| name)
}

/// What the trail calls `action`, in the person's language (an action this build does not
/// know by its name).
fn action_text(m: &Messages, action: AuditAction) -> &str {
    match action {
        AuditAction::Approved => m.text(Text::ActionApproved),
        AuditAction::Denied => m.text(Text::ActionDenied),
        AuditAction::Issued => m.text(Text::ActionIssued),
        AuditAction::Revoked => m.text(Text::ActionRevoked),
        AuditAction::Account => m.text(Text::ActionAccount),
        AuditAction::Refused => m.text(Text::ActionRefused),
        AuditAction::Mission => m.text(Text::ActionMission),
        other => other.as_str(),
    }
}

/// Everything the dashboard shows.
pub(crate) struct Dashboard<'a> {
    pub(crate) account: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) agents: &'a [AgentRow],
    pub(crate) missions: &'a [MissionRow],
    pub(crate) tokens: &'a [TokenRow],
    /// Whether more valid tokens exist than `tokens` lists.
    pub(crate) tokens_more: bool,
    pub(crate) audit: &'a AuditPage,
    pub(crate) filter: &'a Filter,
    /// The filter that is not one, if any (the audit trail is then unfiltered).
    pub(crate) bad_filter: Option<&'static str>,
}

/// A form that asks to confirm `action` on `target` (a POST to the dashboard).
fn action_form(
    m: &Messages,
    csrf: &str,
    action: &str,
    target: &[(&str, &str)],
    label: Text,
) -> Markup {
    html! {
        form.inline method="post" action=(ACCOUNT_PATH) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value=(action);
            @for (name, value) in target {
                input type="hidden" name=(name) value=(value);
            }
            button.danger type="submit" { (m.text(label)) }
        }
    }
}

/// The dashboard's body.
pub(crate) fn dashboard(m: &Messages, d: &Dashboard<'_>) -> Markup {
    html! {
        form.signed-in method="post" action=(crate::server::LOGOUT_PATH) {
            p {
                (m.markup(Text::SignedInAs, &[("account", html! { strong { (Said(d.account)) } })]))
                " "
                input type="hidden" name="csrf" value=(d.csrf);
                button.link-button type="submit" { (m.text(Text::SignOut)) }
            }
        }
        (agents(m, d))
        (missions(m, d))
        (tokens(m, d))
        (audit(m, d))
    }
}

/// `t` as a person reads it (`2026-12-05 09:30 UTC`), machine-readable in `datetime`.
fn when(m: &Messages, t: Option<u64>) -> Markup {
    html! {
        @match t {
            Some(t) => {
                @let iso = iso8601(t);
                time datetime=(iso) { (iso.get(..16).unwrap_or(&iso).replace('T', " ")) " UTC" }
            },
            None => (m.text(Text::Never)),
        }
    }
}

fn agents(m: &Messages, d: &Dashboard<'_>) -> Markup {
    html! {
        section #agents aria-labelledby="agents-h" {
            h2 #agents-h { (m.text(Text::AgentsHeading)) }
            @if d.agents.is_empty() {
                p { (m.text(Text::NoAgents)) }
            } @else {
                table.stack {
                    thead { tr {
                        th scope="col" { (m.text(Text::ColAgent)) }
                        th scope="col" { (m.text(Text::ColProvider)) }
                        th scope="col" { (m.text(Text::ColFirstSeen)) }
                        th scope="col" { (m.text(Text::ColLastSeen)) }
                        th scope="col" { (m.text(Text::ColTokens)) }
                        th scope="col" { span.skip { (m.text(Text::UnlinkRevoke)) } }
                    } }
                    tbody {
                        @for a in d.agents {
                            tr.agent-row {
                                td data-label=(m.text(Text::ColAgent)) { (Said(&a.agent)) }
                                td data-label=(m.text(Text::ColProvider)) { (Said(&a.provider)) }
                                td data-label=(m.text(Text::ColFirstSeen)) { (when(m, a.first)) }
                                td data-label=(m.text(Text::ColLastSeen)) { (when(m, a.last)) }
                                td data-label=(m.text(Text::ColTokens)) { (a.tokens) }
                                td { (action_form(m, d.csrf, "revoke-agent", &[("provider", &a.provider), ("agent", &a.agent)], Text::UnlinkRevoke)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn missions(m: &Messages, d: &Dashboard<'_>) -> Markup {
    html! {
        section #missions aria-labelledby="missions-h" {
            h2 #missions-h { (m.text(Text::MissionsHeading)) }
            @if d.missions.is_empty() {
                p { (m.text(Text::NoMissions)) }
            }
            @for mission in d.missions {
                article.mission-row {
                    (super::view::mission_details(m, &mission.shown))
                    p {
                        @match mission.ended {
                            None => strong { (m.text(Text::MissionActive)) },
                            Some(reason) => (m.fill(Text::MissionEndedAs, &[("reason", reason)])),
                        }
                        " · " code { (mission.s256) }
                    }
                    @if !mission.log.is_empty() {
                        details {
                            summary { (m.text(Text::MissionLogHeading)) }
                            ul {
                                @for e in mission.log.iter().rev().take(20) {
                                    li {
                                        (when(m, Some(e.at))) " " (Said(&e.event)) " " (Said(&e.decision))
                                        @if let Some(r) = &e.resource { " " (Said(r)) }
                                        @if let Some(x) = &e.detail { " — " (Said(x)) }
                                    }
                                }
                            }
                        }
                    }
                    @if mission.ended.is_none() {
                        (action_form(m, d.csrf, "terminate-mission", &[("mission", &mission.s256)], Text::Terminate))
                    }
                }
            }
        }
    }
}

fn tokens(m: &Messages, d: &Dashboard<'_>) -> Markup {
    html! {
        section #tokens aria-labelledby="tokens-h" {
            h2 #tokens-h { (m.text(Text::TokensHeading)) }
            @if d.tokens.is_empty() {
                p { (m.text(Text::NoTokens)) }
            } @else {
                @if d.tokens_more {
                    p { (m.fill(Text::TokensMore, &[("shown", &d.tokens.len().to_string())])) }
                }
                table.stack {
                    thead { tr {
                        th scope="col" { (m.text(Text::ColKind)) }
                        th scope="col" { (m.text(Text::ColResource)) }
                        th scope="col" { (m.text(Text::ColValidUntil)) }
                        th scope="col" { span.skip { (m.text(Text::Revoke)) } }
                    } }
                    tbody {
                        @for t in d.tokens {
                            tr.token-row data-jti=(t.jti) data-kind=(if t.kind == Text::AuthTokenKind { "auth" } else { "person" }) {
                                td data-label=(m.text(Text::ColKind)) { (m.text(t.kind)) }
                                td data-label=(m.text(Text::ColResource)) { (Said(&t.resource)) }
                                td data-label=(m.text(Text::ColValidUntil)) { (when(m, Some(t.exp))) }
                                td { (action_form(m, d.csrf, "revoke-token", &[("jti", &t.jti)], Text::Revoke)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn audit(m: &Messages, d: &Dashboard<'_>) -> Markup {
    let f = d.filter;
    let query = f.query_string();
    let with = |path: &str| {
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    };
    let older = d.audit.next.map(|c| {
        let sep = if query.is_empty() { "?" } else { "&" };
        format!("{}{sep}before={c}", with(ACCOUNT_PATH))
    });
    html! {
        section #audit aria-labelledby="audit-h" {
            h2 #audit-h { (m.text(Text::AuditHeading)) }
            @if let Some(field) = d.bad_filter {
                p role="alert" { (m.fill(Text::BadFilter, &[("field", field)])) }
            }
            form.filters method="get" action=(ACCOUNT_PATH) {
                label for="f-agent" { (m.text(Text::FilterAgent)) }
                input #f-agent name="agent" value=(f.agent);
                label for="f-resource" { (m.text(Text::FilterResource)) }
                input #f-resource name="resource" value=(f.resource);
                label for="f-action" { (m.text(Text::FilterDecision)) }
                select #f-action name="action" {
                    option value="" { (m.text(Text::FilterAny)) }
                    @for a in AuditAction::ALL {
                        option value=(a.as_str()) selected[f.action == Some(a)] { (action_text(m, a)) }
                    }
                }
                label for="f-since" { (m.text(Text::FilterSince)) }
                input #f-since name="since" type="date" value=(f.since);
                label for="f-until" { (m.text(Text::FilterUntil)) }
                input #f-until name="until" type="date" value=(f.until);
                p.actions { button type="submit" { (m.text(Text::FilterButton)) } }
            }
            p {
                a href=(with(AUDIT_CSV_PATH)) download { (m.text(Text::DownloadCsv)) }
                " · "
                a href=(with(AUDIT_JSON_PATH)) download { (m.text(Text::DownloadJson)) }
            }
            @if d.audit.events.is_empty() {
                p { (m.text(Text::NoEvents)) }
            } @else {
                table.audit.stack {
                    thead { tr {
                        th scope="col" { (m.text(Text::ColTime)) }
                        th scope="col" { (m.text(Text::ColDecision)) }
                        th scope="col" { (m.text(Text::ColAgent)) }
                        th scope="col" { (m.text(Text::ColResource)) }
                        th scope="col" { (m.text(Text::ColDetail)) }
                    } }
                    tbody {
                        @for e in &d.audit.events {
                            tr.audit-row {
                                td data-label=(m.text(Text::ColTime)) { (when(m, Some(e.at))) }
                                td data-label=(m.text(Text::ColDecision)) { (action_text(m, e.action)) }
                                td data-label=(m.text(Text::ColAgent)) { @if let Some(a) = &e.agent { (Said(a)) } }
                                td data-label=(m.text(Text::ColResource)) { @if let Some(r) = &e.resource { (Said(r)) } }
                                td data-label=(m.text(Text::ColDetail)) { (Said(&e.detail)) }
                            }
                        }
                    }
                }
            }
            @if let Some(href) = older {
                p { a href=(href) rel="next" { (m.text(Text::OlderEvents)) } }
            }
        }
    }
}

/// The confirmation page's body: what will happen, and the same form with `confirm`.
pub(crate) fn confirm(
    m: &Messages,
    csrf: &str,
    action: &str,
    target: &[(&str, &str)],
    said: Markup,
) -> Markup {
    html! {
        p role="alert" { (said) }
        form method="post" action=(ACCOUNT_PATH) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value=(action);
            input type="hidden" name="confirm" value="yes";
            @for (name, value) in target {
                input type="hidden" name=(name) value=(value);
            }
            p.actions {
                button.primary.danger type="submit" { (m.text(Text::ConfirmYes)) }
                " "
                a.button href=(ACCOUNT_PATH) { (m.text(Text::Cancel)) }
            }
        }
    }
}

/// The result page's body.
pub(crate) fn done(m: &Messages, said: &str) -> Markup {
    html! {
        p role="status" { (said) }
        p { a.button.primary href=(ACCOUNT_PATH) { (m.text(Text::BackToAccount)) } }
    }
}

/// A CSV cell: quoted, quotes doubled, and a value a spreadsheet would read as a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) prefixed with `'`.
fn csv_cell(s: &str, out: &mut String) {
    out.push('"');
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// The events as CSV (RFC 4180, a header line, CRLF line ends).
pub(crate) fn audit_csv(events: &[AuditEvent]) -> String {
    let mut out = String::from("time,action,agent,resource,scope,request,detail\r\n");
    for e in events {
        let cells = [
            iso8601(e.at),
            e.action.as_str().to_owned(),
            e.agent.clone().unwrap_or_default(), // default: an event without an agent has an empty cell
            e.resource.clone().unwrap_or_default(), // default: likewise
            e.scope.clone().unwrap_or_default(), // default: likewise
            e.request.clone().unwrap_or_default(), // default: likewise
            e.detail.clone(),
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_cell(c, &mut out);
        }
        out.push_str("\r\n");
    }
    out
}

/// The events as a JSON array of [`AuditEvent::to_json`]'s objects.
pub(crate) fn audit_json(events: &[AuditEvent]) -> String {
    serde_json::Value::Array(events.iter().map(AuditEvent::to_json).collect()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_filters_read_strictly() {
        assert_eq!(day("since", "1970-01-01"), Ok(Some(0)));
        assert_eq!(day("since", "2026-12-05"), Ok(Some(1_796_428_800)));
        assert_eq!(day("since", ""), Ok(None));
        for bad in [
            "2026-13-01",
            "26-12-05",
            "2026-12-5",
            "x",
            "1969-12-31",
            "2026-12-05-",
        ] {
            assert_eq!(day("since", bad), Err("since"), "{bad}");
        }
        let pairs = |q: &str| super::super::form(q.as_bytes());
        let f = Filter::read(&pairs(
            "agent=a&action=denied&since=2026-12-01&until=2026-12-05&before=9",
        ))
        .expect("a filter");
        let q = f.query("alice", 50);
        assert_eq!(q.account.as_deref(), Some("alice"));
        assert_eq!(q.action, Some(AuditAction::Denied));
        assert_eq!(q.until, Some(1_796_428_800 + 86_399));
        assert_eq!(
            f.query_string(),
            "agent=a&action=denied&since=2026-12-01&until=2026-12-05"
        );
        assert_eq!(Filter::read(&pairs("action=rejected")), Err("action"));
        assert_eq!(
            Filter::read(&pairs("since=2026-12-05&until=2026-12-01")),
            Err("since")
        );
        assert_eq!(Filter::read(&pairs("before=x")), Err("before"));
    }

    #[test]
    fn csv_cells_never_become_formulas() {
        let e = AuditEvent::new(0, AuditAction::Denied, "=HYPERLINK(\"http://x\")")
            .agent("+1")
            .resource("@SUM(A1)");
        let csv = audit_csv(&[e]);
        assert_eq!(
            csv,
            "time,action,agent,resource,scope,request,detail\r\n\"1970-01-01T00:00:00Z\",\"denied\",\"'+1\",\"'@SUM(A1)\",\"\",\"\",\"'=HYPERLINK(\"\"http://x\"\")\"\r\n"
        );
    }
}
