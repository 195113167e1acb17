//! The machine's services (PostgreSQL, Redis) for the tests that need a real one: their
//! URLs from the environment, and names unique to one test so that tests running at once
//! share a service without seeing each other's data.
//!
//! A test that needs a service and finds no URL fails when `CI` is set (the services run
//! on every CI machine, so a missing URL is a broken setup, never a reason to pass), and
//! elsewhere says loudly on stderr that it skipped.
//!
//! ```
//! use aauth_test_support::services::unique_name;
//! let (a, b) = (unique_name("ps"), unique_name("ps"));
//! assert_ne!(a, b);
//! assert!(a.starts_with("ps_") && a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming PostgreSQL's URL.
pub const POSTGRES_URL: &str = "AAUTH_POSTGRES_URL";
/// The variable naming Redis's URL.
pub const REDIS_URL: &str = "AAUTH_REDIS_URL";

/// The URL in `var`, for a test that needs the service `what`. `None` (after a loud note
/// on stderr naming `test`) when the variable is unset outside CI.
///
/// # Panics
///
/// When the variable is unset and `CI` is set.
#[must_use]
pub fn service_url(var: &str, what: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {what} is needed and {var} is not set (CI is set, so this fails \
                 rather than skips; .ci/run exports it)"
            );
            // Straight to the process's stderr: the harness hides what a passing test
            // prints through `eprintln!`.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "!! SKIPPED {test}: {what} is needed and was NOT tested; set {var} to run it\n"
                )
                .as_bytes(),
            );
            None
        }
    }
}

/// PostgreSQL's URL for `test` (see [`service_url`]), through [`loopback_tls`].
#[must_use]
pub fn postgres_url(test: &str) -> Option<String> {
    service_url(POSTGRES_URL, "PostgreSQL", test).map(|u| loopback_tls(&u))
}

/// `url` with `sslmode=disable` added when it names no `sslmode`: the machine's
/// PostgreSQL listens on loopback and offers TLS with a self-signed certificate, which
/// the stores (verifying every certificate, unlike libpq's `prefer`) would refuse.
///
/// ```
/// use aauth_test_support::services::loopback_tls;
/// assert_eq!(loopback_tls("postgres://u@127.0.0.1/t"), "postgres://u@127.0.0.1/t?sslmode=disable");
/// assert_eq!(loopback_tls("postgres://h/t?x=1"), "postgres://h/t?x=1&sslmode=disable");
/// assert_eq!(loopback_tls("postgres://h/t?sslmode=require"), "postgres://h/t?sslmode=require");
/// ```
#[must_use]
pub fn loopback_tls(url: &str) -> String {
    if url.contains("sslmode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    }
}

/// Redis's URL for `test` (see [`service_url`]).
#[must_use]
pub fn redis_url(test: &str) -> Option<String> {
    service_url(REDIS_URL, "Redis", test)
}

/// A name (a PostgreSQL schema, a Redis key prefix) no other test of any process uses:
/// `prefix`, this process's id, a counter and 32 random bits, lower case.
///
/// # Panics
///
/// When the OS random source fails.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut salt = [0u8; 4];
    aauth_keys::rand::RandomSource::fill(&mut aauth_keys::rand::OsRandom, &mut salt)
        .expect("the OS random source works");
    let salt = u32::from_le_bytes(salt);
    format!("{prefix}_{}_{n}_{salt}", std::process::id())
}

/// A PostgreSQL schema of its own for one test (feature `postgres`): the store options
/// naming it, and [`drop_schema`](Self::drop_schema) to remove it and everything in it.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub struct PgSchema {
    /// The options of a store kept in this schema.
    pub options: aauth_metadata::store::postgres::PgOptions,
    url: String,
    name: String,
}

#[cfg(feature = "postgres")]
impl PgSchema {
    /// A fresh schema for `test`, or `None` (see [`service_url`]) without a URL.
    #[must_use]
    pub fn new(test: &str) -> Option<Self> {
        let url = postgres_url(test)?;
        let name = unique_name("t");
        Some(Self {
            options: aauth_metadata::store::postgres::PgOptions::new(url.clone())
                .schema(name.clone()),
            url,
            name,
        })
    }

    /// The schema's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL (as [`postgres_url`] gives it).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool in this schema.
    ///
    /// # Panics
    ///
    /// When the options do not hold.
    #[must_use]
    pub fn pg(&self) -> aauth_metadata::store::postgres::Pg {
        aauth_metadata::store::postgres::Pg::new("test", &self.options).expect("valid options")
    }

    /// Runs `sql` in this schema.
    ///
    /// # Panics
    ///
    /// When it fails.
    pub async fn sql(&self, sql: &str) {
        self.pg()
            .client()
            .await
            .expect("a connection")
            .batch_execute(sql)
            .await
            .expect("the statements run");
    }

    /// Drops the schema and everything in it.
    ///
    /// # Panics
    ///
    /// When it fails.
    pub async fn drop_schema(self) {
        let pg = aauth_metadata::store::postgres::Pg::new(
            "test",
            &aauth_metadata::store::postgres::PgOptions::new(self.url),
        )
        .expect("valid options");
        pg.client()
            .await
            .expect("a connection")
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await
            .expect("the schema is dropped");
    }
}

/// A TCP forwarder to a service that a test can cut (every connection dropped, new ones
/// refused) and restore, to make the service unreachable mid-flow without touching the
/// machine's own (feature `cuttable`).
#[cfg(feature = "cuttable")]
#[derive(Debug)]
pub struct Cuttable {
    /// Where clients connect instead of the service.
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "cuttable")]
impl Cuttable {
    /// Forwards a loopback port to the service of `url` (`scheme://[user@]host[:port]/…`;
    /// `default_port` when it names none).
    ///
    /// # Panics
    ///
    /// When no loopback port can be had.
    pub async fn to(url: &str, default_port: u16) -> Self {
        Self::start(&host_port(url, default_port)).await
    }

    /// `url` with its host and port replaced by this forwarder's.
    #[must_use]
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let start = rest.find('@').map_or(0, |i| i + 1);
        let end = start + rest[start..].find(['/', '?']).unwrap_or(rest.len() - start);
        format!("{scheme}://{}{}{}", &rest[..start], self.addr, &rest[end..])
    }

    /// Forwards a loopback port to `target` (`host:port`).
    ///
    /// # Panics
    ///
    /// When no loopback port can be had.
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut = std::sync::Arc::new(cut);
        let (target, state) = (target.to_owned(), std::sync::Arc::clone(&cut));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *state.borrow() {
                    continue; // refused: dropped at once
                }
                let mut cut = state.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

#[cfg(feature = "cuttable")]
impl Drop for Cuttable {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}

/// The `host:port` a service URL names (`default_port` when it names none).
#[cfg(feature = "cuttable")]
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}
