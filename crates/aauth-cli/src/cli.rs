//! The command line: every command, flag and help text (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// AAuth from the command line: make keys, read and verify tokens, send requests as an
/// agent, run each role as a service and administer it.
///
/// AAuth (draft-hardt-oauth-aauth-protocol-11) lets an AI agent prove who it is, and what
/// a person allowed it to do, on every HTTP request.
#[derive(Debug, Parser)]
#[command(name = "aauth", version, propagate_version = true)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The exit codes, shown under every `--help`.
const EXIT_CODES: &str = "Exit codes: 0 success; 1 a token or key that does not pass its checks; \
2 a usage error; 3 a file, network or other operational error.";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Make a signing key: a private JWK file (mode 0600) and its public JWKS.
    Keygen(Keygen),
    /// Work with JSON Web Keys.
    #[command(subcommand)]
    Jwk(JwkCommand),
    /// Read and verify AAuth tokens (agent, person, resource and auth tokens).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Send an HTTP request as an agent, like curl: signed, every AAuth challenge answered.
    ///
    /// The agent's key and identity come from its profile (`--profile`, `$AAUTH_PROFILE`
    /// or `~/.config/aauth/`, holding `profile.toml`) or from flags. Person and auth tokens
    /// are obtained from the Person Server as the resource asks; when the person must
    /// approve, the interaction URL and code are printed on standard error and the command
    /// waits. The response body goes to standard output.
    Fetch(Fetch),
    /// The agent's own tokens.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Run a role as a service, configured by a TOML file.
    ///
    /// HTTPS with `[tls]` (or plain HTTP behind a TLS-terminating proxy), `/healthz` and
    /// `/readyz`, one log line per request on standard error (with its `x-request-id`;
    /// never a token, signature or password), and a graceful shutdown on SIGTERM or
    /// SIGINT within `shutdown_deadline_secs`. Every value can be overridden from the
    /// environment: `AAUTH_LISTEN`, `AAUTH_LOG__LEVEL`, … (`__` between nested keys).
    Serve {
        /// The role.
        #[arg(value_enum)]
        role: Role,
        /// The configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a service's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The operator's work on a service: its signing keys; a Person Server's accounts,
    /// agents, tokens and audit log.
    ///
    /// Every command reads the service's configuration (`--config`) and works on its
    /// store and key files directly, beside the running service (an SQLite store is
    /// shared safely between processes; a `memory` store keeps nothing outside the
    /// running process, so there is nothing to administer). Revocations are sent on to
    /// the resources and Access Servers concerned, signed with the service's key.
    Admin {
        /// The service's configuration file.
        #[arg(long, short, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print a completion script for your shell.
    ///
    /// For example: `aauth completions bash > ~/.local/share/bash-completion/completions/aauth`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The roles `aauth serve` runs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Role {
    /// The Person Server: person and auth tokens, consent pages.
    PersonServer,
    /// An Access Server: auth tokens for the resources it governs.
    AccessServer,
    /// An agent provider: agent tokens for the agents enrolled in its configuration.
    AgentProvider,
    /// A reverse proxy that makes an existing HTTP API an AAuth resource: every request
    /// verified by its route's access mode and scope, admitted ones sent on with the
    /// identity in `x-aauth-*` headers.
    ResourceProxy,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Read a configuration as `aauth serve` would (the environment's overrides applied,
    /// every key file read) and print it, inline secrets redacted.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the Person Server pages' texts (English) as a `messages_file` to translate:
    /// `lang`, then every text under its key in `[texts]`. A translation must keep every
    /// key and each text's `{placeholders}`; `aauth config check` says which one does not.
    Messages,
}

/// The signing algorithms AAuth keys use.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Alg {
    /// EdDSA over Ed25519 (mandatory in AAuth).
    #[value(name = "Ed25519", alias = "ed25519")]
    Ed25519,
    /// ECDSA over P-256 with SHA-256.
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

#[derive(Debug, Args)]
pub(crate) struct Keygen {
    /// The algorithm.
    #[arg(long, value_enum, default_value = "Ed25519")]
    pub(crate) alg: Alg,
    /// The key identifier (`kid`); default: the key's RFC 7638 thumbprint.
    #[arg(long)]
    pub(crate) kid: Option<String>,
    /// Where the private JWK goes (created with mode 0600; never overwritten unless
    /// `--force`).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// Also write the public JWKS here (it is always printed on standard output).
    #[arg(long, value_name = "FILE")]
    pub(crate) public: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JwkCommand {
    /// Print a key's RFC 7638 SHA-256 thumbprint (what `agent_jkt` and `jkt-jwt` name).
    ///
    /// The file holds a public or private JWK (a private one must not be readable by
    /// others); `-` reads standard input.
    Thumbprint {
        /// The JWK file, or `-`.
        file: PathBuf,
    },
    /// Print the public JWK (and a JWKS holding it) of a private or public JWK file.
    Public {
        /// The JWK file, or `-`.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Show a token's header and claims, without verifying its signature.
    ///
    /// Names the token type, prints times as dates and checks `exp` and `iat` against
    /// now. The signature is not checked: use `aauth token verify` for that.
    Decode(Decode),
    /// Verify a token as a resource would: discover the issuer's keys over HTTPS, check
    /// the signature and every claim, and print each check.
    ///
    /// The first failing check is printed with the error code the draft gives it (the
    /// `Signature-Error` a resource would answer).
    Verify(Verify),
}

#[derive(Debug, Args)]
pub(crate) struct Decode {
    /// The token (a compact JWS), or `-` to read it from standard input.
    pub(crate) token: String,
    /// Print one JSON object (`header`, `claims`, `type`, `checks`) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Verify {
    /// The token (a compact JWS), or `-` to read it from standard input.
    pub(crate) token: String,
    /// The issuer the token must come from (its server identifier, e.g.
    /// `https://ps.example`): its keys are discovered from its metadata.
    #[arg(long, value_name = "URL")]
    pub(crate) issuer: String,
    /// The audience the token must name (your resource's identifier), for person, auth
    /// and resource tokens.
    #[arg(long, value_name = "URL")]
    pub(crate) audience: Option<String>,
    #[command(flatten)]
    pub(crate) net: Net,
}

#[derive(Debug, Args)]
pub(crate) struct Fetch {
    /// The URL (https).
    pub(crate) url: String,
    /// The method (default GET, or POST with --data).
    #[arg(long, short = 'X', value_name = "METHOD")]
    pub(crate) request: Option<String>,
    /// The request body; `@FILE` reads a file, `@-` standard input.
    #[arg(long, short = 'd', value_name = "DATA")]
    pub(crate) data: Option<String>,
    /// A request header, `Name: value`. Repeatable.
    #[arg(long, short = 'H', value_name = "HEADER")]
    pub(crate) header: Vec<String>,
    /// Print the response's status line and headers before its body.
    #[arg(long, short = 'i')]
    pub(crate) include: bool,
    /// Show every exchange on the wire (requests and responses, headers included) on
    /// standard error. Credentials are shown unusable: a JWT without its signature, a
    /// session token hidden.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
    /// With `--verbose`, show the credentials on the wire in full (tokens are bound to
    /// the agent's key, but whoever reads the output can decode and keep them).
    #[arg(long, requires = "verbose")]
    pub(crate) show_credentials: bool,
    /// Exit 1 when the final status is not 2xx.
    #[arg(long, short = 'f')]
    pub(crate) fail: bool,
    #[command(flatten)]
    pub(crate) identity: Identity,
    #[command(flatten)]
    pub(crate) net: Net,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Obtain an agent token from the agent's provider (signed with the agent's key) and
    /// print it, or write it to `--out` (mode 0600) for `agent_token` in a profile.
    ///
    /// The provider must have enrolled the key (an agent provider run by `aauth serve`
    /// enrols the keys its configuration lists).
    Enroll {
        /// Write the token here instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        identity: Identity,
        #[command(flatten)]
        net: Net,
    },
}

/// Who the agent is: flags, each overriding the profile's `profile.toml`.
#[derive(Debug, Args)]
pub(crate) struct Identity {
    /// The profile directory (default `$AAUTH_PROFILE`, else `~/.config/aauth`).
    #[arg(long, value_name = "DIR")]
    pub(crate) profile: Option<PathBuf>,
    /// The agent identifier (`aauth:local@domain`).
    #[arg(long, value_name = "ID")]
    pub(crate) agent: Option<String>,
    /// The agent's private JWK file (default: the profile's `agent.jwk`).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// The agent provider that issues the agent token (signed with the key, `hwk`).
    #[arg(long, value_name = "URL", conflicts_with = "agent_token")]
    pub(crate) provider: Option<String>,
    /// A file holding the agent token (read whenever a token is needed).
    #[arg(long, value_name = "FILE")]
    pub(crate) agent_token: Option<PathBuf>,
    /// The Person Server (default: the agent token's `ps` claim).
    #[arg(long, value_name = "URL")]
    pub(crate) person_server: Option<String>,
}

/// How to reach servers: extra trust roots and address overrides.
#[derive(Debug, Args)]
pub(crate) struct Net {
    /// Trust the CA certificates in this PEM file as well as the public web roots
    /// (a private deployment, a test world). Repeatable.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_file: Vec<PathBuf>,
    /// Connect to HOST:PORT for requests to NAME:PORT, like curl's `--connect-to`
    /// (`NAME:PORT:HOST:PORT`). HOST must be an IP address. The address is admitted even
    /// if it is loopback or private: you named it. Repeatable.
    #[arg(long, value_name = "NAME:PORT:HOST:PORT")]
    pub(crate) connect_to: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// The service's signing key, and the keys published beside it after a rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A Person Server's accounts (the people who sign in to its consent pages).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// The agents bound to a Person Server's accounts.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// The person and auth tokens a Person Server issued (while their records are kept:
    /// until `exp` and five minutes).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// A Person Server's or an Access Server's audit log: decisions, tokens issued,
    /// refusals, revocations and the operator's changes, newest first, a page at a time.
    ///
    /// From the store the configuration names, or over HTTPS from a running server
    /// (`--url` and `--key`: `GET /admin/audit`, signed with an operator key the server
    /// lists in `[audit] operator_keys`). `--all --json` exports the whole log as JSON
    /// lines.
    Audit(Box<AuditArgs>),
    /// Apply the migrations a PostgreSQL store lacks (a Person Server's or an Access
    /// Server's, as the configuration says, and the replay cache and pending revocations
    /// its instances share), then exit. Every instance also applies them at start, each
    /// migration once whichever starts first; run this first to migrate before a rolling
    /// restart, or to run the instances as a database role that cannot `CREATE`.
    Migrate,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// The signing key's `kid`, the retiring keys, each with when it stops being
    /// published, and the prepared next key.
    List,
    /// Prepare the next signing key (same algorithm; its `kid` its thumbprint): every
    /// instance publishes it from its next start, and `rotate` signs with it. With several
    /// instances, prepare, restart them all, then rotate: no instance ever signs with a
    /// key another does not publish.
    Prepare,
    /// Replace the signing key with the prepared one (else a new one); the old public key
    /// stays in the published JWKS for `--overlap`, then drops out.
    ///
    /// The running service signs with the new key from its next start: restart it (every
    /// instance) after rotating. Until then it signs with the old key, which is still
    /// published.
    Rotate {
        /// How long the old key stays published, counted from now: `30m`, `24h`, `7d`, or
        /// seconds. Cover the longest lifetime of a token the old key signed (an hour),
        /// the time the restart of every instance takes (each signs with the old key
        /// until then) and the hour verifiers may cache a JWKS; under two hours is
        /// refused without `--force`.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        overlap: u64,
        /// Take an `--overlap` under two hours: the old key may drop out of the JWKS while
        /// tokens it signed are still valid, and verifiers refuse them.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccountsCommand {
    /// Every account, and whether it is disabled.
    List,
    /// Create an account. The password is read from `--password-file`, else from the
    /// first line of standard input (never from the command line).
    Create {
        /// The account name (what the person signs in with).
        name: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Disable an account: it signs in to nothing and is issued nothing; its sessions end.
    Disable {
        /// The account name.
        name: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The account name.
        name: String,
    },
    /// Set a new password (from `--password-file` or standard input); the account's
    /// sessions end.
    Reset {
        /// The account name.
        name: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentsCommand {
    /// The agents bound to accounts.
    List {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke an agent: its binding is removed (its next request asks the person again)
    /// and every token issued to it is revoked, here and at the resources. An agent the
    /// configuration binds (`person_server.accounts.agents`) is revoked too, but the exit
    /// status is 2 and says so: every start would bind it again until it is removed there.
    Revoke {
        /// The agent identifier (`aauth:local@domain`); its provider is
        /// `https://domain` unless `--provider` says otherwise.
        agent: String,
        /// The agent's provider.
        #[arg(long, value_name = "URL")]
        provider: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// The person and auth tokens on record, with whether each is revoked.
    List {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a person or auth token by its `jti`, here and at its resource (a person
    /// token takes the auth tokens obtained with it along).
    Revoke {
        /// The token's `jti`.
        jti: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only this agent's events (`aauth:local@domain`).
    #[arg(long)]
    pub(crate) agent: Option<String>,
    /// Only this resource's events (its identifier).
    #[arg(long)]
    pub(crate) resource: Option<String>,
    /// Only this account's events.
    #[arg(long)]
    pub(crate) account: Option<String>,
    /// Only this kind: approved, denied, issued, refused, revoked, account or mission.
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Only events since this time: RFC 3339 (`2026-12-01T00:00:00Z`), seconds since
    /// the epoch, or a duration ago (`1h`, `7d`).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Only events until this time (as `--since`).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// At most this many events per page.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: usize,
    /// The page after the one that printed this cursor (`more: --before CURSOR` on
    /// standard error).
    #[arg(long, value_name = "CURSOR")]
    pub(crate) before: Option<String>,
    /// Every page, not only the first: the whole log that the filters select.
    #[arg(long)]
    pub(crate) all: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Read a running server's log over HTTPS instead of its store: its identifier
    /// (`https://ps.example`). No `--config` is needed.
    #[arg(long, value_name = "URL", requires = "key")]
    pub(crate) url: Option<String>,
    /// The operator's private key (a JWK file) that signs the requests to `--url`.
    #[arg(long, value_name = "FILE", requires = "url")]
    pub(crate) key: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) net: Net,
}

/// A duration: `N` seconds, or `N` followed by `s`, `m`, `h` or `d`.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m, h or d (e.g. 24h)"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?}: too long"))
}
