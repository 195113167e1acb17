//! A service's configuration: one TOML file, every value overridable from the environment
//! (`AAUTH_` prefix, `__` between nested keys: `AAUTH_LOG__LEVEL=debug`), secrets read from
//! files (`*_file` keys; a private key or secret file others can read is refused, as
//! `chmod 600` fixes; a file of keys or certificates the service trusts that its group
//! or others can write is refused, as `chmod go-w` fixes). Paths are relative to the
//! file's directory. Checked at start: an unknown key or a wrong type is reported with
//! its key and line; every `*_timeout_secs` and `shutdown_deadline_secs` is at most
//! 86400 (a day).
//!
//! ```toml
//! id = "https://ps.example"              # the public identifier
//! listen = "0.0.0.0:8443"
//! signing_key_file = "ps.jwk"            # a private JWK (mode 0600); its kid is used
//! # retiring_keys_file = "ps.jwk.retiring.json"   # the default; `aauth admin keys rotate` writes it
//! store = "sqlite:ps.sqlite"             # or "memory" (the default), or "postgres://user@host/db?sslmode=require";
//!                                        # (a host not on loopback: sslmode=require, or disable knowingly)
//!                                        # a resource proxy: "memory" or "rediss://[user:password@]host:port/db"
//!                                        # (TLS; redis:// only on loopback, or ending in #insecure to
//!                                        # choose plain text knowingly), shared by its instances;
//!                                        # an agent provider: its replay cache, "memory" or "rediss://…"
//! shutdown_deadline_secs = 10
//! max_connections = 10000                # open at once; past it new ones wait in the kernel's queue
//! max_connections_per_client = 1000      # one client's (its address; IPv6: its /64) at once, past it
//!                                        # closed at once; default a tenth of max_connections, at least
//!                                        # 32; trusted_proxies have none
//! header_timeout_secs = 30               # a request's head (or the next one on a kept-alive
//!                                        # connection) must arrive within it, else the connection closes
//! body_timeout_secs = 60                 # a request's body must arrive whole within it of its head
//!                                        # (408 from a role; a resource proxy's upstream sees it break
//!                                        # off): raise it for slow, large uploads through a proxy
//! max_buffered_body_bytes = 67108864     # the role's own endpoints' bodies held at once, read whole
//!                                        # (else 503; at least 65536, the largest a role reads);
//!                                        # a resource proxy's routes have their own, below
//! trusted_proxies = []                   # e.g. ["10.0.0.0/8"]: the load balancers or TLS terminators in
//!                                        # front, whose X-Forwarded-For names the client (for rate limits,
//!                                        # throttles and the resource proxy's upstream); default: none;
//!                                        # no range wider than an IPv4 /8 or an IPv6 /7
//!
//! [postgres]                             # with store = "postgres://…" (several instances share it)
//! schema = "person_server"               # created if missing; absent: the user's search_path
//! pool_size = 16                         # connections per instance
//! password_file = "db.password"          # rather than a password in the URL
//! ca_file = "db-ca.pem"                  # a private CA for the server's certificate
//!
//! [tls]                                  # absent: plain HTTP behind a TLS proxy
//! cert_file = "cert.pem"
//! key_file = "key.pem"
//!
//! [log]
//! format = "json"                        # or "pretty" (the default)
//! level = "info"                         # or RUST_LOG
//!
//! [rate_limit]                           # requests over a limit get 429 with Retry-After
//! redis = "redis://127.0.0.1:6379"       # shared by every instance; absent: counted in this process;
//!                                        # across the network rediss:// (or redis://…#insecure), as store.
//!                                        # A Person or Access Server also counts wrong guesses
//!                                        # (interaction codes, passwords) there, every instance together
//! [[rate_limit.rules]]
//! scope = "client"                       # each client address (the peer with TLS here, else via trusted_proxies), or "endpoint"
//!                                        # (every client together); a Person or Access Server also takes
//!                                        # "agent" (each agent, counted once its signature verified) and an
//!                                        # Access Server "person_server" (each Person Server that signs to it)
//! path = "/"                             # the requests whose path starts with it
//! requests = 120                         # this many every per_secs, up to burst at once
//! per_secs = 60
//! burst = 30
//!
//! [audit]                                # a Person Server's or an Access Server's audit log
//! retention_days = 90                    # events older than this are dropped (the default: 90)
//! operator_keys = ["ops.pub.jwk"]        # public JWKs (or JWKS) whose hwk-signed requests read
//!                                        # GET /admin/audit; absent: the endpoint is not served
//!
//! [metrics]                              # Prometheus, on its own address
//! listen = "127.0.0.1:9464"
//!
//! [otel]                                 # OpenTelemetry traces: a build with `--features otel`
//! endpoint = "http://127.0.0.1:4318/v1/traces"  # OTLP/HTTP (protobuf); absent: the OTEL_ variables'
//! service_name = "aauth-person-server"   # the default: OTEL_SERVICE_NAME, else aauth-<role>
//!
//! [egress]                               # reaching other servers (their keys)
//! ca_files = ["private-ca.pem"]          # trusted beside the web's roots
//! connect_to = ["agent.example:443:10.0.0.5:8443"]
//!
//! [person_server]
//! directed_secret_file = "directed.secret"   # 64 hex digits
//! consent = "ask"                        # or "auto-approve" (also "dangerous-auto-approve"):
//!                                        # bound agents' requests approved without asking (warned)
//! revoking_providers = ["https://agent.example"]
//! password_sign_in = true               # the password form on the sign-in page
//! messages_file = "de.toml"              # the pages' texts in another language (`aauth config messages`)
//! max_pending_per_provider = 256         # requests waiting for a person, one agent provider's agents
//!                                        # together: past it, an agent no person here is bound to
//!                                        # gets 429 (a bound one only past its own 16)
//! max_pending_total = 10000              # the same, every agent's, ended ones kept for polls too
//! [[person_server.accounts]]
//! name = "alice"
//! password_file = "alice.password"       # absent: she signs in only with a provider below
//! agents = ["aauth:assistant@agent.example"]   # bound already (provider https://agent.example)
//! oidc = [{ issuer = "https://login.example", subject = "248289761001" }]  # linked people
//! [[person_server.sign_in]]              # an OpenID Provider offered on the sign-in page
//! id = "corp"                            # a-z, 0-9, -: in links, and new accounts' names (corp:{sub})
//! label = "Example Corp"                 # "Sign in with Example Corp"
//! issuer = "https://login.example"       # discovered at start (/.well-known/openid-configuration)
//! client_id = "aauth-ps"                 # registered with redirect URI {id}/interact/oidc/callback
//! client_secret_file = "oidc.secret"
//! client_auth = "basic"                  # or "post" (client_secret_basic / client_secret_post)
//! new_accounts = "create"                # or "linked-only": only people linked above sign in
//! # scope = "openid email profile"
//!
//! [access_server]
//! trusted_person_servers = ["https://ps.example"]
//!
//! [agent_provider]
//! [[agent_provider.agents]]
//! agent = "aauth:assistant@agent.example"
//! public_key_file = "assistant.jwks"
//! person_server = "https://ps.example"
//!
//! [resource_proxy]                       # `aauth serve resource-proxy`: id is the resource's
//! upstream = "http://127.0.0.1:8080"     # the API protected (http:// or https://, a base path)
//! connect_timeout_secs = 5               # connecting to the upstream (else 502)
//! request_timeout_secs = 30              # from the request's end to the upstream's response head (else 504)
//! tunnel_idle_timeout_secs = 300         # a WebSocket's tunnel with no byte either way for this long is closed
//! max_body_bytes = 1048576               # a body the proxy must check first (else 413); others stream
//! max_buffered_body_bytes = 67108864    # such bodies held at once, all routes (else 503)
//! forward_signature_headers = false      # Signature, Signature-Input, Signature-Key upstream
//! name = "Example Files"                 # shown on consent pages
//! description = "Keeps your files."
//! revoking_issuers = ["https://ps.example"]  # whose revocations /aauth/revoke takes (and access_server's)
//! # access_server = "https://as.example" # four-party: the issuer of its auth tokens
//! # trusted_person_servers = ["https://ps.example"]  # whose person (and three-party auth) tokens
//!                                        # it takes; absent: any Person Server
//! defer_auth_token = false               # hold a call for its auth token (202) instead of 401
//! case_insensitive_paths = false         # routes match /Admin as /admin (set it when the API does)
//! [resource_proxy.scope_descriptions]
//! "files.read" = "Read your files"
//! [resource_proxy.sessions]              # sessions the upstream grants (x-aauth-grant-session)
//! lifetime_secs = 3600
//! roll = false                           # a new AAuth-Access on every session request
//! # credential_key_file = "sessions.key"  # 64 hex digits: seals, in Redis, the credentials the
//!                                        # upstream hands over to wrap (x-aauth-grant-credential)
//! [resource_proxy.replay]                # the replay cache (memory, or the Redis of `store`)
//! entries = 100000                       # live state-changing requests (each ~2 minutes)
//! key_share = 10000                      # per signing key; past it 429 for that key only
//! issuer_share = 25000                   # per agent provider / person at a server / jwks_uri
//!                                        # server / all bare keys: 429 for those signers only
//! [resource_proxy.oauth]                 # OAuth clients beside AAuth agents (routes with oauth_scope)
//! issuers = ["https://login.example"]    # whose JWT access tokens (RFC 9068) are accepted
//! # audience = "https://api.example"     # the tokens' aud (default: id)
//! plain_jwt = false                      # also typ JWT (servers before RFC 9068)
//! dpop = false                           # also DPoP-bound tokens (RFC 9449)
//! # dpop_nonce_secret_file = "dpop-nonce.secret"  # 64 hex digits: proofs must carry this
//!                                        # resource's nonces (RFC 9449 §9, use_dpop_nonce)
//! # [[resource_proxy.oauth.secret_issuers]]  # an issuer that signs with a secret it shares
//! # issuer = "https://auth.example/v1"     # with this API (HMAC): only its tokens, only `alg`
//! # alg = "HS256"                          # or "HS384", "HS512"
//! # secret_file = "issuer.secret"          # the secret's bytes (one final newline dropped),
//!                                        # at least 32, 48 or 64 of them
//! # [resource_proxy.oauth.introspection] # opaque tokens (RFC 7662)
//! # endpoint = "https://login.example/introspect"
//! # client_id = "api"
//! # client_secret_file = "introspect.secret"  # client_secret_basic; or private_key_jwt:
//! # client_key_file = "introspect.jwk"   # a private JWK (mode 0600), its kid used
//! # assertion_audience = "issuer"        # the assertion's aud: "issuer" (default),
//!                                        # "endpoint", or the exact value the server wants
//! [[resource_proxy.routes]]              # the first route that matches wins; none is 404
//! path = "/files/*"                      # exact (with or without a final `/`), or a prefix ending in `/*`
//! methods = ["GET", "HEAD"]              # absent: every method; HEAD falls under GET
//! access = "auth-token"                  # or "agent-token", "person-token", "session-token"
//! scope = "files.read"                   # what an auth-token route requires (a session-token
//!                                        # route may name one: the session's grant must cover it)
//! require_body_coverage = false          # content-type and content-digest signed
//! # oauth_scope = "files.read"           # OAuth clients too, with these scopes ("" for any)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

mod checks;
mod limits;
pub(crate) use checks::warnings;

/// The environment prefix of overrides.
const ENV_PREFIX: &str = "AAUTH_";

/// The top-level keys of a configuration: an `AAUTH_` variable overrides the
/// configuration only when its first key is one of these, so that other `AAUTH_`
/// variables (`AAUTH_PROFILE` for `aauth fetch`, a deployment's own) are left alone. A
/// misspelt nested key (`AAUTH_LOG__LEVL`) is still refused, by the section's own check.
const TOP_LEVEL: [&str; 24] = [
    "id",
    "listen",
    "signing_key_file",
    "retiring_keys_file",
    "store",
    "postgres",
    "shutdown_deadline_secs",
    "max_connections",
    "max_connections_per_client",
    "header_timeout_secs",
    "body_timeout_secs",
    "max_buffered_body_bytes",
    "trusted_proxies",
    "tls",
    "log",
    "egress",
    "metrics",
    "rate_limit",
    "audit",
    "otel",
    "person_server",
    "access_server",
    "agent_provider",
    "resource_proxy",
];

/// A service's configuration, as written (paths resolved against the file's directory).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// The public identifier (`https://host`).
    pub(crate) id: String,
    /// Where to listen.
    pub(crate) listen: SocketAddr,
    /// The signing key: a private JWK file.
    pub(crate) signing_key_file: PathBuf,
    /// The keys signed with before a rotation, published until their time (absent: the
    /// signing key's path with `.retiring.json` appended; `aauth admin keys rotate`
    /// writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retiring_keys_file: Option<PathBuf>,
    /// `memory`, `sqlite:PATH` or a `postgres://` URL (the Person and Access Servers), or a
    /// Redis URL (`redis://…`, `rediss://…`: the resource proxy's state shared by its
    /// instances).
    #[serde(default = "memory")]
    pub(crate) store: String,
    /// How a `postgres://` store is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) postgres: Option<Postgres>,
    /// Seconds to finish in-flight requests after SIGTERM or SIGINT.
    #[serde(default = "ten")]
    pub(crate) shutdown_deadline_secs: u64,
    /// Connections served at once (at least 1); past it, new ones wait in the kernel's
    /// accept queue until one closes.
    #[serde(default = "ten_thousand")]
    pub(crate) max_connections: usize,
    /// Connections one client may hold at once (at least 1): a client is the peer's
    /// address, an IPv6 one by its `/64`. Past it, a new connection from that client is
    /// closed as soon as it is accepted. Absent: a tenth of `max_connections`, at least
    /// 32 (never more than `max_connections`). The peers in `trusted_proxies` have no
    /// share: a proxy in front holds its clients' connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_connections_per_client: Option<usize>,
    /// Seconds a client has to send a request's head, and an idle kept-alive HTTP/1.1
    /// connection to begin the next (at least 1). An HTTP/2 connection is closed (a
    /// `GOAWAY`) once no request has been open on it for as long, and one whose requests
    /// run longer is pinged after as long without traffic and closed if the ping goes
    /// unanswered as long again.
    #[serde(default = "thirty")]
    pub(crate) header_timeout_secs: u64,
    /// Seconds a request's body has, from its head, to arrive whole (at least 1): past
    /// it a role answers `408`, and a resource proxy's upstream sees the body break off.
    /// Bodies already whole with their head (a WebSocket's handshake) have none.
    #[serde(default = "sixty")]
    pub(crate) body_timeout_secs: u64,
    /// The bytes of request bodies the role's own endpoints (a resource proxy's
    /// `/aauth/…` ones) hold at once, read whole (default 64 MiB, at least 64 KiB):
    /// past it, `503` with `Retry-After` (`limits`).
    #[serde(default = "limits::body_budget")]
    pub(crate) max_buffered_body_bytes: usize,
    /// The proxies in front of this service (addresses or CIDR ranges: a TLS terminator,
    /// a load balancer) whose `X-Forwarded-For` is believed. A request from one of them
    /// is counted by rate limits and throttles as the client its chain names, and the
    /// resource proxy passes that chain on with the peer appended. From anyone else (the
    /// default: everyone) the client's `X-Forwarded-For`, `X-Real-IP` and `Forwarded`
    /// are not believed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) trusted_proxies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<Tls>,
    #[serde(default)]
    pub(crate) log: Log,
    #[serde(default)]
    pub(crate) egress: Egress,
    /// Request rate limits (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limit: Option<RateLimitSection>,
    /// The servers' audit log: its retention and who may read it over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audit: Option<AuditSection>,
    /// Prometheus metrics on their own address (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metrics: Option<Metrics>,
    /// OpenTelemetry traces (absent: none, unless the `OTEL_EXPORTER_OTLP_` variables name
    /// an endpoint); only a build with the `otel` feature serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) otel: Option<Otel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) person_server: Option<PersonServerSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) access_server: Option<AccessServerSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) agent_provider: Option<AgentProviderSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource_proxy: Option<ResourceProxySection>,
}

fn memory() -> String {
    "memory".to_owned()
}

fn ten() -> u64 {
    10
}

fn ten_thousand() -> usize {
    10_000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tls {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Log {
    #[serde(default)]
    pub(crate) format: LogFormat,
    /// A `tracing` filter (`info`, `aauth=debug,info`); `RUST_LOG` wins when set.
    #[serde(default = "info")]
    pub(crate) level: String,
}

fn info() -> String {
    "info".to_owned()
}

impl Default for Log {
    /// What an absent `[log]` means: the same as an empty one.
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: info(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `[audit]`: how long a server keeps its audit log, and the operators who read it over
/// HTTP.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// Days events are kept (absent: 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retention_days: Option<u64>,
    /// Public keys (JWK or one-key JWKS files) whose `hwk`-signed requests read
    /// `GET /admin/audit` (absent or empty: the endpoint is not served).
    #[serde(default)]
    pub(crate) operator_keys: Vec<PathBuf>,
}

/// `[rate_limit]`: where the counts are kept, and the rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitSection {
    /// A Redis shared by every instance (absent: counted in this process): the rules'
    /// counts, and a Person or Access Server's wrong guesses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) redis: Option<String>,
    /// The limits.
    #[serde(default)]
    pub(crate) rules: Vec<RateRule>,
}

/// One `[[rate_limit.rules]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateRule {
    /// `client`, `endpoint`, `agent` or `person_server`.
    pub(crate) scope: RateRuleScope,
    /// The path prefix (default `/`: every request).
    #[serde(default = "slash")]
    pub(crate) path: String,
    /// Requests allowed every `per_secs`.
    pub(crate) requests: u32,
    /// The period, in seconds.
    pub(crate) per_secs: u64,
    /// How many may come at once (default: `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) burst: Option<u32>,
}

/// What a rule counts by.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RateRuleScope {
    /// Each client address.
    Client,
    /// Every request to the path together.
    Endpoint,
    /// Each agent, counted by the Person or Access Server once the agent's signature (or
    /// its agent token) verified.
    Agent,
    /// Each Person Server, counted by an Access Server once its signature verified.
    #[serde(rename = "person_server", alias = "person-server")]
    PersonServer,
}

fn slash() -> String {
    "/".to_owned()
}

/// `[postgres]`: the options of a `postgres://` store.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Postgres {
    /// The schema the tables live in (created if missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<String>,
    /// Connections per instance (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pool_size: Option<usize>,
    /// The database password, in a file (rather than in the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) password_file: Option<PathBuf>,
    /// PEM certificates trusted for the server's certificate, beside the web's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metrics {
    /// Where `GET /metrics` answers (plain HTTP: keep it off the public network).
    pub(crate) listen: SocketAddr,
}

/// `[otel]`: where each request's span is exported (`crate::otel`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Otel {
    /// The collector's OTLP/HTTP traces URL (`http://` or `https://`, the whole path:
    /// `…/v1/traces`). Absent: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended, else
    /// `http://localhost:4318/v1/traces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<String>,
    /// The `service.name` of the spans (absent: `OTEL_SERVICE_NAME`, else
    /// `aauth-<role>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Egress {
    /// CA certificates trusted beside the web's roots.
    #[serde(default)]
    pub(crate) ca_files: Vec<PathBuf>,
    /// `NAME:PORT:HOST:PORT` overrides (as curl's `--connect-to`).
    #[serde(default)]
    pub(crate) connect_to: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonServerSection {
    /// The secret behind directed identifiers, in a file (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) directed_secret_file: Option<PathBuf>,
    /// The same, inline (prefer the file; redacted by `aauth config check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) directed_secret: Option<String>,
    #[serde(default)]
    pub(crate) consent: Consent,
    /// Whether the consent pages are served (default true).
    #[serde(default = "yes")]
    pub(crate) consent_pages: bool,
    /// Agent providers whose agent-token revocations are taken.
    #[serde(default)]
    pub(crate) revoking_providers: Vec<String>,
    /// People who sign in on the consent pages.
    #[serde(default)]
    pub(crate) accounts: Vec<Account>,
    /// Whether the sign-in page offers the password form (default true).
    #[serde(default = "yes")]
    pub(crate) password_sign_in: bool,
    /// The OpenID Providers the sign-in page offers.
    #[serde(default)]
    pub(crate) sign_in: Vec<SignInSection>,
    /// The pages' texts in another language: a TOML file with `lang` and `[texts]` (see
    /// `aauth config messages`); absent, English.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) messages_file: Option<PathBuf>,
    /// Requests waiting for a person from one provider's agents together (default 256,
    /// at least 1): past it, an agent no person here is bound to gets `429` (`limits`).
    #[serde(default = "limits::pending_per_provider")]
    pub(crate) max_pending_per_provider: usize,
    /// Requests waiting for a person kept in all, every agent's, ended ones kept for late
    /// polls too (default 10 000, at least 1): past it, an agent no person here is bound
    /// to gets `429` (`limits`).
    #[serde(default = "limits::pending_total")]
    pub(crate) max_pending_total: usize,
}

/// An OpenID Provider people sign in with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInSection {
    /// The provider's name in links and new accounts' names.
    pub(crate) id: String,
    /// What the sign-in page calls it.
    pub(crate) label: String,
    /// Its `issuer` (discovered at start).
    pub(crate) issuer: String,
    /// This server's client at the provider.
    pub(crate) client_id: String,
    /// The client's secret, in a file.
    pub(crate) client_secret_file: PathBuf,
    /// How the client authenticates at the token endpoint.
    #[serde(default)]
    pub(crate) client_auth: ClientAuthMethod,
    /// Who may sign in without a link made beforehand.
    #[serde(default)]
    pub(crate) new_accounts: NewAccountsSetting,
    /// The scope asked for (default `openid email profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

/// `client_secret_basic` or `client_secret_post`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ClientAuthMethod {
    /// HTTP Basic (the default, RFC 6749 §2.3.1).
    #[default]
    Basic,
    /// In the form body.
    Post,
}

/// Who may sign in through a provider without a link.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum NewAccountsSetting {
    /// Anyone the provider vouches for gets an account (the default).
    #[default]
    Create,
    /// Only people linked to an account (`person_server.accounts.oidc`).
    LinkedOnly,
}

/// A person at an OpenID Provider, linked to an account.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcLink {
    /// The provider's `issuer`.
    pub(crate) issuer: String,
    /// The person's `sub` there.
    pub(crate) subject: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Consent {
    /// Ask the person about everything (the default).
    #[default]
    Ask,
    /// Approve without asking (agents the person lets act alone; tests). Also spelt
    /// `dangerous-auto-approve`; said aloud by `aauth config check` and at start.
    #[serde(alias = "dangerous-auto-approve")]
    AutoApprove,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Account {
    pub(crate) name: String,
    /// Absent: the account signs in only through a provider it is linked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) password_file: Option<PathBuf>,
    /// The people at OpenID Providers who sign in as this account.
    #[serde(default)]
    pub(crate) oidc: Vec<OidcLink>,
    /// Agents already bound to this person (`aauth:local@domain`, their provider
    /// `https://domain`): they need no first-time approval on the consent pages.
    #[serde(default)]
    pub(crate) agents: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessServerSection {
    pub(crate) trusted_person_servers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentProviderSection {
    #[serde(default)]
    pub(crate) agents: Vec<EnrolledAgent>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolledAgent {
    pub(crate) agent: String,
    /// The agent's public key: a JWK or a one-key JWKS.
    pub(crate) public_key_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) person_server: Option<String>,
}

/// `[resource_proxy]`: the API the proxy protects and how.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceProxySection {
    /// The upstream's base URL (`http://` or `https://`; a path is prefixed to every
    /// request's).
    pub(crate) upstream: String,
    /// Seconds to connect to the upstream (default 5): past them, `502`.
    #[serde(default = "five")]
    pub(crate) connect_timeout_secs: u64,
    /// Seconds from the end of the request (its body sent, a streamed one as the client
    /// sends it, within `body_timeout_secs`) until the upstream's response head (default
    /// 30): past them, `504`. A streamed response body is not cut short.
    #[serde(default = "thirty")]
    pub(crate) request_timeout_secs: u64,
    /// Seconds an upgraded connection (a WebSocket passed through) may go with no byte
    /// passing either way (default 300, at least 1): past them the tunnel is closed, both
    /// halves, so that a silent one does not hold its connection (one of
    /// `max_connections`) and an upstream connection for ever. A WebSocket that must stay
    /// open through longer silences sends pings more often.
    #[serde(default = "three_hundred")]
    pub(crate) tunnel_idle_timeout_secs: u64,
    /// The largest request body the proxy reads whole before sending it on (default 1
    /// MiB): past it, `413`. A body is read whole when the decision needs it (a route
    /// with `require_body_coverage`, a request with a `Content-Digest`, which is checked
    /// before any of it goes upstream; a held call); every other body streams to the
    /// upstream as it arrives, whatever its size.
    #[serde(default = "one_mib")]
    pub(crate) max_body_bytes: usize,
    /// The request bodies held read whole at once, across every route, in bytes (default
    /// 64 MiB, at least `max_body_bytes`): past it, `503` with `Retry-After`, so that
    /// many admitted requests at once (a body is read only once its request's signature
    /// verified) cannot make the proxy hold more.
    #[serde(default = "sixty_four_mib")]
    pub(crate) max_buffered_body_bytes: usize,
    /// Whether the request's `Signature`, `Signature-Input` and `Signature-Key` headers go
    /// on to the upstream (default false: they carry the agent's token, and only the
    /// proxy, which is the resource, can verify them; the upstream gets the verified
    /// identity in `x-aauth-*`).
    #[serde(default)]
    pub(crate) forward_signature_headers: bool,
    /// The resource's display name (its metadata's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// Its description (Markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    /// Scope value → description, published as `scope_descriptions`; the scopes the
    /// authorization endpoint accepts, with the routes' own.
    #[serde(default)]
    pub(crate) scope_descriptions: std::collections::BTreeMap<String, String>,
    /// Four-party: the resource's Access Server, the `aud` of its resource tokens and the
    /// only issuer of the auth tokens it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) access_server: Option<String>,
    /// The Person Servers whose person tokens (and, three-party, auth tokens) the proxy
    /// takes; absent: any Person Server, which in three-party mode lets whoever runs one
    /// grant its own tokens any scope here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trusted_person_servers: Option<Vec<String>>,
    /// The Person and Access Servers whose revocations the revocation endpoint takes,
    /// besides `access_server`, which always may (none and no `access_server`: no
    /// revocation endpoint).
    #[serde(default)]
    pub(crate) revoking_issuers: Vec<String>,
    /// Answer `requirement=auth-token` with a `202` that holds the call until the agent
    /// polls with its auth token (draft -11 §8.2), instead of a `401`.
    #[serde(default)]
    pub(crate) defer_auth_token: bool,
    /// The session-token access mode: how long the sessions the upstream grants last,
    /// and whether they roll.
    #[serde(default)]
    pub(crate) sessions: ProxySessions,
    /// OAuth clients beside AAuth agents, on the routes that say `oauth_scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) oauth: Option<ProxyOAuth>,
    /// The replay cache's bounds (in this process, or in the Redis `store` names).
    #[serde(default)]
    pub(crate) replay: ProxyReplay,
    /// Whether routes match paths whatever the case of their letters (default false): set
    /// it when the API routes `/Admin` as `/admin` (ASP.NET, Express by default, a
    /// case-insensitive file system), so that no spelling of a path passes under a
    /// weaker route than the one written for it.
    #[serde(default)]
    pub(crate) case_insensitive_paths: bool,
    /// The routes, in order: the first that matches a request decides it.
    pub(crate) routes: Vec<ProxyRoute>,
}

/// `[resource_proxy.replay]`: how many state-changing requests the replay cache holds
/// (each until its signature's `created` window closes, about two minutes), and how many
/// of them one signing key, and one issuer, may hold: past a share only those signers get
/// `429`, so no one key or issuer can fill the cache and have everyone refused. An issuer
/// is an agent provider (its agents' keys together), a person at a Person or Access
/// Server, a `jwks_uri` server, or every bare `hwk` key together.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyReplay {
    /// Live entries in all (default 100 000).
    #[serde(default = "replay_entries")]
    pub(crate) entries: usize,
    /// Live entries per signing key (default 10 000, about 80 requests a second, or
    /// `entries` if fewer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key_share: Option<usize>,
    /// Live entries per issuer (default 25 000, or `entries` if fewer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) issuer_share: Option<usize>,
}

impl Default for ProxyReplay {
    fn default() -> Self {
        Self {
            entries: replay_entries(),
            key_share: None,
            issuer_share: None,
        }
    }
}

fn replay_entries() -> usize {
    aauth_signing::DEFAULT_REPLAY_ENTRIES
}

/// `[resource_proxy.oauth]`: the OAuth authorization servers whose access tokens the
/// routes with `oauth_scope` accept (`aauth_oauth`; decision 0017).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyOAuth {
    /// The issuers whose JWT access tokens are accepted (their keys discovered through
    /// RFC 8414 or OpenID Connect metadata).
    #[serde(default)]
    pub(crate) issuers: Vec<String>,
    /// Issuers that sign with a secret shared with this API (HMAC), each explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) secret_issuers: Vec<ProxySecretIssuer>,
    /// The `aud` tokens must carry (default: the proxy's `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audience: Option<String>,
    /// Whether `typ` `JWT` (or none) passes beside RFC 9068's `at+jwt` (default false).
    #[serde(default)]
    pub(crate) plain_jwt: bool,
    /// Whether DPoP-bound tokens are accepted (default false).
    #[serde(default)]
    pub(crate) dpop: bool,
    /// A file holding the secret (64 hex digits, the same at every instance) behind the
    /// DPoP nonces every proof must then carry (RFC 9449 §9); absent: no nonces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dpop_nonce_secret_file: Option<PathBuf>,
    /// Opaque tokens, checked at an introspection endpoint (RFC 7662).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) introspection: Option<ProxyIntrospection>,
}

/// `[[resource_proxy.oauth.secret_issuers]]`: an issuer whose access tokens are signed
/// with a secret it shares with the API (HS256, HS384, HS512; decision 0017).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxySecretIssuer {
    /// The `iss` its tokens carry.
    pub(crate) issuer: String,
    /// The one algorithm its tokens may name (default `HS256`).
    #[serde(default = "hs256")]
    pub(crate) alg: String,
    /// A file holding the secret's bytes, as the issuer prints it (one final newline
    /// dropped).
    pub(crate) secret_file: PathBuf,
}

fn hs256() -> String {
    "HS256".to_owned()
}

/// `[resource_proxy.oauth.introspection]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyIntrospection {
    /// The introspection endpoint (`https://`).
    pub(crate) endpoint: String,
    /// The proxy's client id there.
    pub(crate) client_id: String,
    /// A file holding its secret (one line): `client_secret_basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_secret_file: Option<PathBuf>,
    /// A file holding its private JWK (not readable by others; its `kid`, else its
    /// thumbprint, names it): `private_key_jwt` (RFC 7523 §2.2). Exactly one of this and
    /// `client_secret_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_key_file: Option<PathBuf>,
    /// The `aud` of the `private_key_jwt` assertion: `issuer` (the default: the first
    /// configured issuer), `endpoint` (the introspection endpoint), or any other value
    /// taken as it is (the server's token endpoint, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) assertion_audience: Option<String>,
    /// How long an answer is kept at most, in seconds (default 60).
    #[serde(default = "sixty")]
    pub(crate) max_ttl_secs: u64,
}

fn sixty() -> u64 {
    60
}

/// `[resource_proxy.sessions]`: the sessions of the session-token access mode (draft -11
/// §AAuth-Access Response Header). The upstream grants one by answering an admitted
/// agent with `x-aauth-grant-session: SCOPE`; the proxy keeps it (in `store`) and sends
/// the agent the token in `AAuth-Access`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxySessions {
    /// Seconds a session lasts from its grant (default 3600; 60 to 2,592,000).
    #[serde(default = "an_hour")]
    pub(crate) lifetime_secs: u64,
    /// Whether every admitted session request gets a new token in `AAuth-Access` (the
    /// old one ends a few seconds later); default false.
    #[serde(default)]
    pub(crate) roll: bool,
    /// The key (64 hex digits, in a file) that seals the credentials sessions wrap
    /// (`x-aauth-grant-credential`) in a Redis store; without it, Redis refuses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) credential_key_file: Option<PathBuf>,
}

impl Default for ProxySessions {
    fn default() -> Self {
        Self {
            lifetime_secs: an_hour(),
            roll: false,
            credential_key_file: None,
        }
    }
}

fn an_hour() -> u64 {
    3600
}

fn five() -> u64 {
    5
}

fn thirty() -> u64 {
    30
}

fn three_hundred() -> u64 {
    300
}

fn sixty_four_mib() -> usize {
    64 * 1024 * 1024
}

fn one_mib() -> usize {
    1024 * 1024
}

/// One `[[resource_proxy.routes]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyRoute {
    /// An exact path, or a prefix ending in `/*` (`/api/*` is `/api` and everything
    /// under `/api/`).
    pub(crate) path: String,
    /// The methods it covers (absent or empty: every method).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) methods: Vec<String>,
    /// What the caller must present.
    pub(crate) access: ProxyAccess,
    /// The scope an auth-token route requires (space-separated values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
    /// Whether `content-type` and `content-digest` must be signed on requests with a
    /// body (a `Content-Digest` that is sent is checked either way).
    #[serde(default)]
    pub(crate) require_body_coverage: bool,
    /// OAuth clients too (`[resource_proxy.oauth]`), their tokens granting these scopes
    /// (space-separated; empty: any token of a trusted issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) oauth_scope: Option<String>,
}

/// The access modes a proxied route can require.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[expect(clippy::enum_variant_names, reason = "the draft's names for the modes")]
pub(crate) enum ProxyAccess {
    /// An agent token.
    AgentToken,
    /// An agent token and a session the upstream granted (`Authorization: AAuth`,
    /// covered by the signature): the resource-managed, two-party mode.
    SessionToken,
    /// A person token (or an auth token) for this resource.
    PersonToken,
    /// An auth token granting the route's scope.
    AuthToken,
}

/// The process's environment as [`load`] reads it: the variables that are text. One
/// named `AAUTH_…` that is not is an error naming it; any other such variable is none of
/// the configuration's business and is passed over (`std::env::vars` would panic on it).
pub(crate) fn environment() -> Result<Vec<(String, String)>, CliError> {
    let mut out = Vec::new();
    for (key, value) in std::env::vars_os() {
        match (key.into_string(), value.into_string()) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            (Ok(k), Err(_)) if k.starts_with(ENV_PREFIX) => {
                return Err(CliError::Usage {
                    flag: "environment",
                    reason: format!("{k}: its value is not UTF-8"),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Reads `path`, applies the `AAUTH_*` overrides in `env`, checks it, and resolves its
/// paths against the file's directory.
pub(crate) fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, CliError> {
    let text = std::fs::read_to_string(path).map_err(CliError::file(path))?;
    let bad = |reason: String| CliError::Config {
        path: path.to_owned(),
        reason,
    };
    // The file alone first, so that its mistakes are reported with their line; a key it
    // lacks may come from the environment, and is asked for after.
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(located(&text, &e)))?;
    if let Err(e) = toml::from_str::<Config>(&text)
        && !e.message().starts_with("missing field")
    {
        return Err(bad(located(&text, &e)));
    }
    let mut applied = Vec::new();
    for (name, value) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        if !TOP_LEVEL.contains(&path[0].as_str()) {
            continue;
        }
        if path.iter().any(String::is_empty) {
            return Err(bad(format!("{name}: an empty key between `__`")));
        }
        set(&mut table, &path, env_value(&value)).map_err(|e| bad(format!("{name}: {e}")))?;
        applied.push(name);
    }
    let mut config: Config = toml::Value::Table(table).try_into().map_err(|e| {
        bad(format!(
            "with the environment's {}: {e}",
            applied.join(", ")
        ))
    })?;
    resolve_paths(&mut config, path.parent().unwrap_or(Path::new(".")));
    checks::check(&config, checks::Written { path, text: &text })?;
    Ok(config)
}

/// A TOML error with its line, column and the key written there, but not the line
/// itself: its value may be a secret (a misspelt key's, a URL with a password).
fn located(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(start..).unwrap_or("").chars().count() + 1;
    let whole = text
        .get(start..)
        .and_then(|t| t.lines().next())
        .unwrap_or("");
    match whole.split_once('=').map(|(k, _)| k.trim()) {
        Some(key) if !key.is_empty() && !key.contains(['"', '{', '[']) => {
            format!("line {line}, column {column} (`{key}`): {}", e.message())
        }
        _ => format!("line {line}, column {column}: {}", e.message()),
    }
}

/// An environment value as TOML: a number, boolean or array when it reads as one, else a
/// string.
fn env_value(value: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

/// Sets `table[path…] = value`, creating tables on the way.
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("no key".to_owned());
    };
    let mut at = table;
    for p in parents {
        at = match at
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{p}` is not a table")),
        };
    }
    at.insert(last.clone(), value);
    Ok(())
}

fn resolve_paths(c: &mut Config, dir: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    fix(&mut c.signing_key_file);
    if let Some(p) = &mut c.retiring_keys_file {
        fix(p);
    }
    if let Some(t) = &mut c.tls {
        fix(&mut t.cert_file);
        fix(&mut t.key_file);
    }
    c.egress.ca_files.iter_mut().for_each(fix);
    if let Some(a) = &mut c.audit {
        a.operator_keys.iter_mut().for_each(fix);
    }
    if let Some(i) = c
        .resource_proxy
        .as_mut()
        .and_then(|p| p.oauth.as_mut())
        .and_then(|o| o.introspection.as_mut())
    {
        i.client_secret_file.iter_mut().for_each(fix);
        i.client_key_file.iter_mut().for_each(fix);
    }
    if let Some(o) = c.resource_proxy.as_mut().and_then(|p| p.oauth.as_mut()) {
        o.secret_issuers
            .iter_mut()
            .for_each(|i| fix(&mut i.secret_file));
    }
    if let Some(k) = c
        .resource_proxy
        .as_mut()
        .and_then(|p| p.sessions.credential_key_file.as_mut())
    {
        fix(k);
    }
    if let Some(k) = c
        .resource_proxy
        .as_mut()
        .and_then(|p| p.oauth.as_mut())
        .and_then(|o| o.dpop_nonce_secret_file.as_mut())
    {
        fix(k);
    }
    if let Some(pg) = &mut c.postgres {
        pg.password_file.iter_mut().for_each(fix);
        pg.ca_file.iter_mut().for_each(fix);
    }
    if let Some(rest) = c.store.strip_prefix("sqlite:") {
        let p = PathBuf::from(rest);
        if p.is_relative() {
            c.store = format!("sqlite:{}", dir.join(p).display());
        }
    }
    if let Some(ps) = &mut c.person_server {
        if let Some(p) = &mut ps.directed_secret_file {
            fix(p);
        }
        ps.accounts
            .iter_mut()
            .filter_map(|a| a.password_file.as_mut())
            .for_each(fix);
        ps.sign_in
            .iter_mut()
            .for_each(|p| fix(&mut p.client_secret_file));
    }
    if let Some(ap) = &mut c.agent_provider {
        ap.agents
            .iter_mut()
            .for_each(|a| fix(&mut a.public_key_file));
    }
}

/// `store` (or any URL) with the password of its user information replaced by
/// `<redacted>`: what may be shown or logged.
pub(crate) fn redact_url(url: &str) -> String {
    aauth_metadata::store::redact_url(url)
}

/// The effective configuration as TOML, inline secrets redacted (`aauth config check`).
pub(crate) fn redacted(config: &Config) -> Result<String, CliError> {
    let mut c = config.clone();
    c.store = redact_url(&c.store);
    if let Some(r) = &mut c.rate_limit {
        r.redis = r.redis.as_deref().map(redact_url);
    }
    if let Some(ps) = &mut c.person_server
        && ps.directed_secret.is_some()
    {
        ps.directed_secret = Some("<redacted>".to_owned());
    }
    let shown = toml::to_string_pretty(&c).map_err(|e| CliError::Operational(e.to_string()))?;
    // What weakens the service on purpose comes first, as TOML comments.
    let said: String = warnings(config)
        .iter()
        .map(|w| format!("# WARNING: {w}\n"))
        .collect();
    Ok(said + &shown)
}

#[cfg(test)]
mod tests;
