//! What [`super::load`] checks of a configuration beyond its types, for every command
//! that reads one (`aauth serve`, `aauth config check`, `aauth admin`): the values that
//! would weaken the service without a word are refused, each error naming its key, and
//! those that weaken it on purpose (`consent = "auto-approve"`, a remote store's
//! transport chosen plain or unchecked) are said aloud ([`warnings`]).

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use super::{Config, Consent};
use crate::error::CliError;

/// The longest any `*_secs` timeout may be: a day. Far larger ones are mistakes, and
/// some (a `header_timeout_secs` near `u64::MAX`) overflow the clock arithmetic of every
/// connection.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// The file a configuration was read from, and its text: where a refused value's line is
/// looked up.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Written<'_> {
    /// `reason`, after the line of the file that sets `key` (its whole dotted name) to
    /// `value`, when the file does (a value from the environment has no line).
    pub(super) fn at(self, key: &str, value: &str, reason: String) -> String {
        let mut table = String::new();
        for (i, line) in self.text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('[') {
                table = line.trim_matches(['[', ']', ' ']).to_owned();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let k = k.trim();
            let whole = if table.is_empty() {
                k.to_owned()
            } else {
                format!("{table}.{k}")
            };
            if whole == key && v.contains(value) {
                return format!("{}, line {}: {reason}", self.path.display(), i + 1);
            }
        }
        reason
    }
}

/// Everything below, and the bounds of `super::limits`, in order.
pub(super) fn check(c: &Config, written: Written<'_>) -> Result<(), CliError> {
    timeouts(c)?;
    postgres_tls(&c.store, written)?;
    redis_tls(c, written)?;
    super::limits::check(c, written)?;
    trusted_files(c)
}

/// The timeouts, each at most [`MAX_TIMEOUT_SECS`] (their lower bounds are checked where
/// they are used).
fn timeouts(c: &Config) -> Result<(), CliError> {
    let mut all = vec![
        ("shutdown_deadline_secs", c.shutdown_deadline_secs),
        ("header_timeout_secs", c.header_timeout_secs),
        ("body_timeout_secs", c.body_timeout_secs),
    ];
    if let Some(p) = &c.resource_proxy {
        all.extend([
            (
                "resource_proxy.connect_timeout_secs",
                p.connect_timeout_secs,
            ),
            (
                "resource_proxy.request_timeout_secs",
                p.request_timeout_secs,
            ),
            (
                "resource_proxy.tunnel_idle_timeout_secs",
                p.tunnel_idle_timeout_secs,
            ),
        ]);
    }
    match all.into_iter().find(|&(_, secs)| secs > MAX_TIMEOUT_SECS) {
        Some((flag, secs)) => Err(CliError::Usage {
            flag,
            reason: format!("{secs}: at most {MAX_TIMEOUT_SECS} seconds (a day)"),
        }),
        None => Ok(()),
    }
}

/// A PostgreSQL `store` reached over the network must say `sslmode=require` (TLS, the
/// certificate verified) or, knowingly, `sslmode=disable`: tokio-postgres's default,
/// `prefer`, falls back to plain text whenever the server (or anyone on the path) says
/// it has no TLS, and the password and every record then cross in the clear. A server
/// on loopback or a Unix socket needs neither. A URL that does not parse is left to the
/// store's own check, which names it.
fn postgres_tls(store: &str, written: Written<'_>) -> Result<(), CliError> {
    if !(store.starts_with("postgres://") || store.starts_with("postgresql://")) {
        return Ok(());
    }
    let Ok(url) = tokio_postgres::Config::from_str(store) else {
        return Ok(());
    };
    match url.get_ssl_mode() {
        tokio_postgres::config::SslMode::Require | tokio_postgres::config::SslMode::Disable => {
            return Ok(());
        }
        _ => {}
    }
    if postgres_local(&url) {
        return Ok(());
    }
    let reason = format!(
        "{}: a database across the network needs sslmode=require in the URL (TLS, its \
         certificate verified; a private CA in [postgres] ca_file): without it the \
         connection falls back to plain text whenever the path says so, password and \
         records readable; sslmode=disable chooses plain text knowingly",
        super::redact_url(store)
    );
    Err(CliError::Usage {
        flag: "store",
        reason: written.at("store", store, reason),
    })
}

/// Whether every host a PostgreSQL URL names is this machine (loopback, `localhost` or a
/// Unix socket): nothing crosses a network.
fn postgres_local(url: &tokio_postgres::Config) -> bool {
    let loopback = |ip: &IpAddr| ip.to_canonical().is_loopback();
    url.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| loopback(&ip))
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    }) && url.get_hostaddrs().iter().all(loopback)
}

/// Whether a Redis URL's host is this machine (loopback, `localhost`, a Unix socket);
/// `None` for a URL the client does not read.
fn redis_local(url: &str) -> Option<bool> {
    use aauth_metadata::store::redis::client::{Client, ConnectionAddr};
    let client = Client::open(url).ok()?;
    let (ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. }) =
        client.get_connection_info().addr()
    else {
        // A Unix socket.
        return Some(true);
    };
    Some(
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback()),
    )
}

/// What the store URLs weaken on purpose, to be said aloud: a remote Redis in plain text
/// (`redis://…#insecure`) or over TLS without the certificate's check
/// (`rediss://…#insecure`), a remote PostgreSQL with `sslmode=disable`.
fn weakened_stores(c: &Config) -> Vec<String> {
    let mut urls = vec![("store", c.store.as_str())];
    if let Some(r) = c.rate_limit.as_ref().and_then(|r| r.redis.as_deref()) {
        urls.push(("rate_limit.redis", r));
    }
    let mut said = Vec::new();
    for (key, url) in urls {
        let shown = super::redact_url(url);
        if url.ends_with(REDIS_PLAIN_TEXT) && redis_local(url) == Some(false) {
            if url.starts_with("rediss://") {
                said.push(format!(
                    "{key} = {shown}: the Redis's TLS certificate is not checked (the URL \
                     ends in {REDIS_PLAIN_TEXT}): anyone on the path can stand in for it \
                     and read its password and every key"
                ));
            } else if url.starts_with("redis://") {
                said.push(format!(
                    "{key} = {shown}: the Redis is spoken to in plain text across the \
                     network (the URL ends in {REDIS_PLAIN_TEXT}): its password and every \
                     key cross in the clear"
                ));
            }
        }
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if let Some(pg) = postgres
            .then(|| tokio_postgres::Config::from_str(url).ok())
            .flatten()
            && pg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable
            && !postgres_local(&pg)
        {
            said.push(format!(
                "{key} = {shown}: the database is spoken to in plain text across the \
                 network (sslmode=disable): its password and every record cross in the clear"
            ));
        }
    }
    said
}

/// What ends a `redis://` URL whose Redis is across the network to choose plain text
/// knowingly. The client reads no fragment of a `redis://` URL; of a `rediss://` one it
/// reads this same word, there to skip the certificate's check.
pub(crate) const REDIS_PLAIN_TEXT: &str = "#insecure";

/// A Redis (`store`, `[rate_limit] redis`) reached over the network must be spoken to
/// over TLS (`rediss://`) or, knowingly, in plain text (a `redis://` URL ending in
/// [`REDIS_PLAIN_TEXT`]): over `redis://` its password and every key (the replay cache,
/// sessions and the credentials they wrap, the throttles' counts) cross in the clear. A
/// Redis on loopback or a Unix socket needs neither. A URL the client does not read is
/// left to the store's own check, which names it.
fn redis_tls(c: &Config, written: Written<'_>) -> Result<(), CliError> {
    let mut urls = vec![("store", c.store.as_str())];
    if let Some(r) = c.rate_limit.as_ref().and_then(|r| r.redis.as_deref()) {
        urls.push(("rate_limit.redis", r));
    }
    for (key, url) in urls {
        if !url.starts_with("redis://") || url.ends_with(REDIS_PLAIN_TEXT) {
            continue;
        }
        if redis_local(url) != Some(false) {
            continue;
        }
        let reason = format!(
            "{}: a Redis across the network needs rediss:// (TLS, its certificate \
             verified): over redis:// its password and every key cross in plain text; a \
             redis:// URL ending in {REDIS_PLAIN_TEXT} chooses plain text knowingly",
            super::redact_url(url)
        );
        return Err(CliError::Usage {
            flag: key,
            reason: written.at(key, url, reason),
        });
    }
    Ok(())
}

/// The files whose contents decide what the service trusts, refused when their group or
/// others can write them: the retiring keys it publishes, the operators' and the
/// enrolled agents' public keys it accepts, the CA certificates it trusts. Each is
/// checked on the file opened; one that cannot be opened is left to the command that
/// reads it, which says why (a retiring-keys file that does not exist holds no keys).
fn trusted_files(c: &Config) -> Result<(), CliError> {
    let retiring = crate::keyring::retiring_path(c);
    let mut files: Vec<(&'static str, &Path)> = vec![("retiring_keys_file", &retiring)];
    files.extend(
        c.egress
            .ca_files
            .iter()
            .map(|p| ("egress.ca_files", p.as_path())),
    );
    if let Some(p) = c.postgres.as_ref().and_then(|p| p.ca_file.as_ref()) {
        files.push(("postgres.ca_file", p));
    }
    if let Some(a) = &c.audit {
        files.extend(
            a.operator_keys
                .iter()
                .map(|p| ("audit.operator_keys", p.as_path())),
        );
    }
    if let Some(a) = &c.agent_provider {
        files.extend(a.agents.iter().map(|e| {
            (
                "agent_provider.agents.public_key_file",
                e.public_key_file.as_path(),
            )
        }));
    }
    for (key, path) in files {
        if let Ok(f) = std::fs::File::open(path) {
            crate::keys::check_not_writable(key, path, &f)?;
        }
    }
    Ok(())
}

/// What the configuration weakens on purpose, one sentence each naming its key: said by
/// `aauth config check` and logged as a warning when the service starts.
pub(crate) fn warnings(c: &Config) -> Vec<String> {
    let mut said = Vec::new();
    if c.person_server
        .as_ref()
        .is_some_and(|p| p.consent == Consent::AutoApprove)
    {
        said.push(
            "person_server.consent = \"auto-approve\": whatever an agent bound to a \
             person asks (any scope, at any resource) is approved without asking that \
             person; use it only where the people let their agents act alone, or in \
             tests (\"ask\" asks)"
                .to_owned(),
        );
    }
    said.extend(weakened_stores(c));
    said
}
