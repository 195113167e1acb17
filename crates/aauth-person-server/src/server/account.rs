//! The person's dashboard (`/account`): what is linked to their account and what was done
//! in their name, read from the store for the signed-in account only, and the three
//! changes they can make (unlink an agent and revoke its tokens, revoke a token, terminate
//! a mission), each asked to be confirmed first and recorded in the audit trail. Anything
//! that is not theirs is answered exactly as something absent: `404`, the same page.

use aauth_keys::time::UnixTime;
use aauth_metadata::audit::{AuditAction, AuditEvent, AuditPage};
use aauth_tokens::{AgentId, ServerId};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::consent::PageRequest;
use super::{INTERACT_PATH, PersonServer, subtle_eq};
use crate::PsError;
use crate::mission::TerminationReason;
use crate::pending::WebSession;
use crate::web;
use crate::web::dashboard::{self, AgentRow, Dashboard, Filter, MissionRow, TokenRow};
use crate::web::text::Text;
use crate::web::view::{MissionShown, Said};

/// The most events a download holds.
const MAX_EXPORT: usize = 10_000;
/// The most valid tokens the dashboard lists (those that end soonest): a page, and
/// the store calls behind it, stay bounded however many an agent obtained.
pub(crate) const MAX_TOKENS_SHOWN: usize = 200;

/// A change the dashboard makes, with what it names.
enum Change {
    RevokeToken(String),
    RevokeAgent(ServerId, AgentId),
    Terminate(String),
}

impl PersonServer {
    /// `GET /account`: the dashboard, or to sign-in without a session.
    pub(super) async fn account_page(
        &self,
        page: &PageRequest<'_>,
    ) -> Result<http::Response<Bytes>, PsError> {
        let Some(s) = page.session.as_ref() else {
            return Ok(web::see_other(INTERACT_PATH));
        };
        let now = page.now;
        let (filter, bad_filter) = match Filter::read(&page.query) {
            Ok(f) => (f, None),
            Err(field) => (Filter::default(), Some(field)),
        };
        let audit = self
            .store
            .audit(&filter.query(&s.account, dashboard::PAGE_EVENTS))
            .await?;
        let (tokens, tokens_more) = self.valid_tokens(&s.account, now).await?;
        let agents = self.agent_rows(&s.account, now).await?;
        let missions: Vec<MissionRow> = self
            .store
            .missions_of(&s.account)
            .await?
            .into_iter()
            .map(|m| MissionRow {
                shown: MissionShown::of(&self.messages, &m),
                ended: m.terminated.map(TerminationReason::as_str),
                s256: m.s256.clone(),
                log: m.into_log(),
            })
            .collect();
        let body = dashboard::dashboard(
            &self.messages,
            &Dashboard {
                account: &s.account,
                csrf: &s.csrf,
                agents: &agents,
                missions: &missions,
                tokens: &tokens,
                tokens_more,
                audit: &audit,
                filter: &filter,
                bad_filter,
            },
        );
        let status = if bad_filter.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        Ok(self.page(status, Text::AccountTitle, &body))
    }

    /// The person and auth tokens of `account` on record and not revoked, those that end
    /// soonest first, at most [`MAX_TOKENS_SHOWN`]; and whether there are more.
    async fn valid_tokens(
        &self,
        account: &str,
        now: UnixTime,
    ) -> Result<(Vec<TokenRow>, bool), PsError> {
        let (person, auth) = self.store.issued_records(Some(account), now).await?;
        let mut unexpired: Vec<_> = person
            .into_iter()
            .map(|r| (Text::PersonTokenKind, r.jti, r.aud, r.exp))
            .chain(
                auth.into_iter()
                    .map(|r| (Text::AuthTokenKind, r.jti, r.aud, r.exp)),
            )
            .filter(|(_, _, _, exp)| *exp > now.as_secs())
            .collect();
        unexpired.sort_by_key(|(_, _, _, exp)| *exp);
        let mut rows = Vec::new();
        for (kind, jti, aud, exp) in unexpired {
            if self.store.is_revoked(&jti, now).await? {
                continue;
            }
            if rows.len() == MAX_TOKENS_SHOWN {
                return Ok((rows, true));
            }
            rows.push(TokenRow {
                kind,
                jti,
                resource: aud.as_str().to_owned(),
                exp,
            });
        }
        Ok((rows, false))
    }

    /// The agents bound to `account`, with when the audit trail first and last saw each
    /// for this account and how many tokens it holds on record.
    async fn agent_rows(&self, account: &str, now: UnixTime) -> Result<Vec<AgentRow>, PsError> {
        let mut rows = Vec::new();
        for b in self.store.bindings(Some(account)).await? {
            // Its newest and its oldest event, one read of one event each, however many
            // it has.
            let q = aauth_metadata::audit::AuditQuery::default()
                .account(account)
                .agent(b.agent.as_str())
                .limit(1);
            let last = self.store.audit(&q).await?;
            let first = self.store.audit(&q.oldest_first()).await?;
            let tokens = self.store.tokens_of_agent(&b.provider, &b.agent).await?;
            rows.push(AgentRow {
                provider: b.provider.as_str().to_owned(),
                agent: b.agent.as_str().to_owned(),
                first: first.events.first().map(|e| e.at),
                last: last.events.first().map(|e| e.at),
                tokens: tokens
                    .iter()
                    .filter(|(_, _, exp)| *exp > now.as_secs())
                    .count(),
            });
        }
        Ok(rows)
    }

    /// `POST /account`: a change, confirmed first. The form's CSRF token must be the
    /// session's; what it names must be the person's.
    pub(super) async fn account_change(
        &self,
        page: &PageRequest<'_>,
    ) -> Result<http::Response<Bytes>, PsError> {
        let Some(s) = page.session.as_ref() else {
            return Ok(self.message(StatusCode::UNAUTHORIZED, Text::SignInFirst));
        };
        let field = |name| web::field(&page.posted, name).unwrap_or_default(); // default: a missing field names nothing, refused below
        if !bool::from(subtle_eq(s.csrf.as_bytes(), field("csrf").as_bytes())) {
            return Ok(self.message(StatusCode::FORBIDDEN, Text::FormExpired));
        }
        let change = match field("action") {
            "revoke-token" => Change::RevokeToken(field("jti").to_owned()),
            "revoke-agent" => {
                match (
                    ServerId::parse(field("provider")),
                    AgentId::parse(field("agent")),
                ) {
                    (Ok(p), Ok(a)) => Change::RevokeAgent(p, a),
                    _ => return Ok(self.not_yours()),
                }
            }
            "terminate-mission" => Change::Terminate(field("mission").to_owned()),
            _ => return Ok(self.message(StatusCode::BAD_REQUEST, Text::NotHere)),
        };
        let confirmed = field("confirm") == "yes";
        match change {
            Change::RevokeToken(jti) => self.revoke_token_of(s, &jti, confirmed, page.now).await,
            Change::RevokeAgent(p, a) => self.revoke_agent_of(s, &p, &a, confirmed, page.now).await,
            Change::Terminate(s256) => self.terminate_of(s, &s256, confirmed, page.now).await,
        }
    }

    async fn revoke_token_of(
        &self,
        s: &WebSession,
        jti: &str,
        confirmed: bool,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        let found = if let Some(r) = self.store.person_token(jti, now).await? {
            Some((Text::PersonTokenKind, r.aud, r.exp, r.account))
        } else {
            self.store
                .auth_token(jti, now)
                .await?
                .map(|r| (Text::AuthTokenKind, r.aud, r.exp, r.account))
        };
        let Some((kind, aud, exp, _)) = found.filter(|(_, _, _, account)| *account == s.account)
        else {
            return Ok(self.not_yours());
        };
        let m = &self.messages;
        if !confirmed {
            let said = m.markup(
                Text::ConfirmRevokeToken,
                &[
                    ("kind", maud::html! { (m.text(kind)) }),
                    ("resource", maud::html! { (Said(aud.as_str())) }),
                ],
            );
            return Ok(self.confirm_page(s, "revoke-token", &[("jti", jti)], said));
        }
        crate::outbound::revoke_with_obtained(
            self.store.as_ref(),
            self.notifier.as_deref(),
            (jti, &s.account),
            &aud,
            exp,
            now,
        )
        .await?;
        let event = AuditEvent::new(
            now.as_secs(),
            AuditAction::Revoked,
            format!("token {jti} revoked by the person"),
        )
        .account(&s.account)
        .resource(aud.as_str());
        self.log_event(event).await?;
        Ok(self.done_page(m.text(Text::DoneRevokedToken)))
    }

    async fn revoke_agent_of(
        &self,
        s: &WebSession,
        provider: &ServerId,
        agent: &AgentId,
        confirmed: bool,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        if self.store.binding(provider, agent).await?.as_deref() != Some(s.account.as_str()) {
            return Ok(self.not_yours());
        }
        let m = &self.messages;
        if !confirmed {
            let said = m.markup(
                Text::ConfirmRevokeAgent,
                &[("agent", maud::html! { strong { (Said(agent.as_str())) } })],
            );
            return Ok(self.confirm_page(
                s,
                "revoke-agent",
                &[("provider", provider.as_str()), ("agent", agent.as_str())],
                said,
            ));
        }
        let (_, revoked) = crate::outbound::unbind_and_revoke(
            self.store.as_ref(),
            self.notifier.as_deref(),
            provider,
            agent,
            now,
        )
        .await?;
        let event = AuditEvent::new(
            now.as_secs(),
            AuditAction::Revoked,
            format!("agent unlinked and {revoked} token(s) revoked by the person"),
        )
        .account(&s.account)
        .agent(agent.as_str());
        self.log_event(event).await?;
        let count = revoked.to_string();
        Ok(self.done_page(&m.fill(Text::DoneRevokedAgent, &[("count", &count)])))
    }

    async fn terminate_of(
        &self,
        s: &WebSession,
        s256: &str,
        confirmed: bool,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        let mine = self
            .store
            .mission(s256)
            .await?
            .filter(|m| m.account == s.account && m.terminated.is_none());
        let Some(mission) = mine else {
            return Ok(self.not_yours());
        };
        if !confirmed {
            let m = &self.messages;
            let said = maud::html! {
                (m.text(Text::ConfirmTerminate))
                (web::view::mission_details(m, &MissionShown::of(m, &mission)))
            };
            return Ok(self.confirm_page(s, "terminate-mission", &[("mission", s256)], said));
        }
        self.terminate_mission(s256, TerminationReason::Revoked, now)
            .await?;
        Ok(self.done_page(self.messages.text(Text::DoneTerminated)))
    }

    /// `GET /account/audit.csv` and `.json`: the person's audit trail under the
    /// dashboard's filters, newest first, at most 10,000 events.
    pub(super) async fn audit_export(
        &self,
        page: &PageRequest<'_>,
        csv: bool,
    ) -> Result<http::Response<Bytes>, PsError> {
        let Some(s) = page.session.as_ref() else {
            return Ok(web::see_other(INTERACT_PATH));
        };
        let Ok(filter) = Filter::read(&page.query) else {
            return Ok(self.message(StatusCode::BAD_REQUEST, Text::NotHere));
        };
        let mut q = filter.query(&s.account, dashboard::PAGE_EVENTS * 20);
        let mut events = Vec::new();
        loop {
            let AuditPage {
                events: got, next, ..
            } = self.store.audit(&q).await?;
            events.extend(got);
            match next {
                Some(c) if events.len() < MAX_EXPORT => q.before = Some(c),
                _ => break,
            }
        }
        events.truncate(MAX_EXPORT);
        let (body, kind, name) = if csv {
            (
                dashboard::audit_csv(&events),
                "text/csv; charset=utf-8",
                "audit.csv",
            )
        } else {
            (
                dashboard::audit_json(&events),
                "application/json",
                "audit.json",
            )
        };
        let mut r = web::view::with_headers(
            http::Response::new(Bytes::from(body)),
            &[
                (http::header::CONTENT_TYPE, kind),
                (http::header::CACHE_CONTROL, "no-store"),
            ],
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            r.headers_mut().insert(http::header::CONTENT_DISPOSITION, v);
        }
        Ok(r)
    }

    /// The answer for anything that is not the person's, and for anything absent.
    fn not_yours(&self) -> http::Response<Bytes> {
        self.message(StatusCode::NOT_FOUND, Text::NotFound)
    }

    fn confirm_page(
        &self,
        s: &WebSession,
        action: &str,
        target: &[(&str, &str)],
        said: maud::Markup,
    ) -> http::Response<Bytes> {
        let body = dashboard::confirm(&self.messages, &s.csrf, action, target, said);
        self.page(StatusCode::OK, Text::ConfirmTitle, &body)
    }

    fn done_page(&self, said: &str) -> http::Response<Bytes> {
        self.page(
            StatusCode::OK,
            Text::DoneTitle,
            &dashboard::done(&self.messages, said),
        )
    }
}
