//! `aauth admin audit`: a Person Server's or an Access Server's audit log, newest first,
//! a page at a time, from the store the configuration names or over HTTPS from the
//! running server (`GET /admin/audit`, signed under `hwk` with an operator key).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use aauth_agent::Transport as _;
use aauth_keys::time::UnixTime;
use aauth_metadata::audit::operator::OPERATOR_AUDIT_PATH;
use aauth_metadata::audit::{AuditAction, AuditCursor, AuditEvent, AuditPage, AuditQuery};
use aauth_signing::{SignOptions, SigningKey, hwk_scheme, sign};
use bytes::Bytes;

use crate::cli::AuditArgs;
use crate::config::Config;
use crate::error::CliError;
use crate::terminal::{printable, printable_json};
use crate::time::{date, parse_time};

fn stdout(e: std::io::Error) -> CliError {
    CliError::file(Path::new("<stdout>"))(e)
}

/// Where the pages come from.
enum Source {
    PersonServer(Arc<dyn aauth_person_server::PsStore>),
    AccessServer(Arc<dyn aauth_access_server::AsStore>),
    Remote(Box<Remote>),
}

impl Source {
    async fn page(&self, q: &AuditQuery) -> Result<AuditPage, CliError> {
        let store = |e: aauth_metadata::store::StoreError| {
            CliError::Admin(aauth_person_server::AdminError::Store(e))
        };
        match self {
            Self::PersonServer(s) => s.audit(q).await.map_err(store),
            Self::AccessServer(s) => s.audit(q).await.map_err(store),
            Self::Remote(r) => r.page(q).await,
        }
    }
}

/// The log in the store the configuration names: a Person Server's or an Access
/// Server's.
pub(crate) async fn local(
    c: &Config,
    args: &AuditArgs,
    now: UnixTime,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    crate::roles::existing_store(c)?;
    let source = if c.person_server.is_some() {
        Source::PersonServer(crate::roles::ps_store(c, true).await?)
    } else if c.access_server.is_some() {
        Source::AccessServer(crate::roles::as_store(c, true).await?)
    } else {
        return Err(CliError::Usage {
            flag: "--config",
            reason: "an audit log is a Person Server's or an Access Server's: this \
                     configuration has neither section"
                .to_owned(),
        });
    };
    print(&source, args, now, out).await
}

/// The log of the server at `--url`, read with the operator key `--key`.
pub(crate) async fn remote(
    args: &AuditArgs,
    now: UnixTime,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (Some(url), Some(key)) = (&args.url, &args.key) else {
        return Err(CliError::Usage {
            flag: "--url",
            reason: "reading a server's log over HTTPS takes --url and --key".to_owned(),
        });
    };
    let server = crate::net::server_id("--url", url)?;
    let key = crate::keys::read_private(key)?;
    let reach = crate::net::Reach::new(&args.net)?;
    let remote = Remote {
        server,
        key,
        client: reach.https_client(),
    };
    print(&Source::Remote(Box::new(remote)), args, now, out).await
}

/// The query the flags ask.
fn query(args: &AuditArgs, now: UnixTime) -> Result<AuditQuery, CliError> {
    if args.limit == 0 {
        return Err(CliError::Usage {
            flag: "--limit",
            reason: "0: a page holds at least one event".to_owned(),
        });
    }
    let mut q = AuditQuery::default().limit(args.limit);
    q.agent.clone_from(&args.agent);
    q.resource.clone_from(&args.resource);
    q.account.clone_from(&args.account);
    if let Some(a) = &args.action {
        q = q.action(a.parse::<AuditAction>().map_err(|e| CliError::Usage {
            flag: "--action",
            reason: e.to_string(),
        })?);
    }
    let time = |flag: &'static str, v: &Option<String>| {
        v.as_deref()
            .map(|v| {
                parse_time(v, now.as_secs()).map_err(|reason| CliError::Usage { flag, reason })
            })
            .transpose()
    };
    q.since = time("--since", &args.since)?;
    q.until = time("--until", &args.until)?;
    if let Some(b) = &args.before {
        q = q.before(b.parse::<AuditCursor>().map_err(|e| CliError::Usage {
            flag: "--before",
            reason: e.to_string(),
        })?);
    }
    Ok(q)
}

/// Prints the first page (every page with `--all`); says on standard error how to read
/// the next one when there is one left.
async fn print(
    source: &Source,
    args: &AuditArgs,
    now: UnixTime,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut q = query(args, now)?;
    loop {
        let page = source.page(&q).await?;
        for e in &page.events {
            line(out, e, args.json)?;
        }
        match page.next {
            // Each page's cursor must go down: a server that answered the same cursor again
            // would keep `--all` going for ever.
            Some(next) if args.all => match q.before {
                Some(last) if next >= last => {
                    return Err(CliError::Operational(format!(
                        "the log's next page ({next}) does not come after the last ({last})"
                    )));
                }
                _ => q = q.before(next),
            },
            Some(next) => {
                let _ = writeln!(std::io::stderr(), "more: --before {next}");
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

fn line(out: &mut dyn Write, e: &AuditEvent, json: bool) -> Result<(), CliError> {
    if json {
        return writeln!(out, "{}", printable_json(&e.to_json().to_string())).map_err(stdout);
    }
    let o = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_owned(), printable); // default: an event that names no such party
    writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        date(e.at),
        e.action,
        o(&e.account),
        o(&e.agent),
        o(&e.resource),
        o(&e.scope),
        printable(&e.detail)
    )
    .map_err(stdout)
}

/// A running server's operator endpoint.
struct Remote {
    server: aauth_tokens::ServerId,
    key: aauth_keys::PrivateKey,
    client: aauth_agent::HttpsClient<crate::net::Overrides>,
}

impl Remote {
    async fn page(&self, q: &AuditQuery) -> Result<AuditPage, CliError> {
        let url = format!(
            "{}{OPERATOR_AUDIT_PATH}?{}",
            self.server.as_str(),
            q.to_query_string()
        );
        let failed = |what: String| CliError::Operational(format!("{url}: {what}"));
        let (mut parts, ()) = http::Request::get(&url)
            .header(http::header::ACCEPT, "application/json")
            .body(())
            .map_err(|e| failed(e.to_string()))?
            .into_parts();
        let scheme = hwk_scheme(self.key.public_key());
        // The filters are signed too: nobody between may widen the query.
        sign(
            &mut parts,
            &[],
            &[SigningKey::new("sig", &self.key, &scheme)],
            &SignOptions::default().with_query(),
            aauth_keys::time::Clock::now(&aauth_keys::time::SystemClock),
        )
        .map_err(|e| failed(format!("signing: {e}")))?;
        let response = self
            .client
            .send(http::Request::from_parts(parts, Bytes::new()))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(response.body())
            .map_err(|_| failed(format!("{} and no JSON body", response.status())))?;
        if !response.status().is_success() {
            let said = |k: &str| json[k].as_str().unwrap_or("-").to_owned(); // default: a member the problem lacks
            return Err(failed(format!(
                "{} {}: {}",
                response.status(),
                said("error"),
                said("detail")
            )));
        }
        AuditPage::from_json(&json).map_err(|e| failed(e.to_string()))
    }
}
