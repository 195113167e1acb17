//! The servers' roles built from their configuration sections.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aauth_keys::Signer;
use aauth_metadata::ops::WithHealth;
use aauth_metadata::serve::Endpoint;
use aauth_tokens::{IssuerKeyResolver, ServerId};

use crate::config::Config;
use crate::error::CliError;
use crate::limits::Limits;
use crate::net::server_id;
use crate::serve::{Check, config_error, consent_policy};

/// How long a deferred request waits for the person on the consent pages.
const CONSENT_TTL: Duration = Duration::from_secs(600);

/// `memory`, `sqlite:PATH` or a PostgreSQL database.
enum Store<'a> {
    Memory,
    Sqlite(&'a Path),
    Postgres(aauth_metadata::store::postgres::PgOptions),
}

/// What `aauth config check` checks of a Person or Access Server's `store`: its form,
/// and for PostgreSQL `[postgres]` (its `password_file` read).
pub(crate) fn check_store(c: &Config) -> Result<(), CliError> {
    if c.person_server.is_some() || c.access_server.is_some() {
        store(c)?;
    }
    Ok(())
}

fn store(c: &Config) -> Result<Store<'_>, CliError> {
    match c.store.as_str() {
        "memory" => Ok(Store::Memory),
        s if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
            pg_options(c).map(Store::Postgres)
        }
        s => match s.strip_prefix("sqlite:") {
            Some(p) if !p.is_empty() => Ok(Store::Sqlite(Path::new(p))),
            _ => Err(CliError::Usage {
                flag: "store",
                reason: format!(
                    "{:?}: expected \"memory\", \"sqlite:PATH\" or \"postgres://…\"",
                    crate::config::redact_url(s)
                ),
            }),
        },
    }
}

/// The options of the `postgres://` store: the URL, and `[postgres]`.
fn pg_options(c: &Config) -> Result<aauth_metadata::store::postgres::PgOptions, CliError> {
    let mut o = aauth_metadata::store::postgres::PgOptions::new(c.store.clone());
    let section = c.postgres.clone().unwrap_or_default();
    if let Some(schema) = section.schema {
        o = o.schema(schema);
    }
    if let Some(n) = section.pool_size {
        o = o.pool_size(n);
    }
    if let Some(path) = &section.ca_file {
        o = o.ca_file(path);
    }
    if let Some(path) = &section.password_file {
        let text = crate::keys::read_secret_text(path)?;
        o = o.password(text.trim_end_matches(['\r', '\n']));
    }
    o.check().map_err(|e| config_error(c, "store", e))?;
    Ok(o)
}

/// Applies the migrations the configured PostgreSQL store lacks (`aauth admin
/// migrate`): the Person Server's or the Access Server's, as the configuration's section
/// says. Returns the component and how many were applied.
pub(crate) async fn migrate(c: &Config) -> Result<(&'static str, usize), CliError> {
    let Store::Postgres(o) = store(c)? else {
        return Err(CliError::Usage {
            flag: "store",
            reason: "migrations are a PostgreSQL store's (store = \"postgres://…\"); \
                     SQLite files are migrated when opened"
                .to_owned(),
        });
    };
    if c.person_server.is_some() {
        let n = aauth_person_server::PgStore::migrate(&o)
            .await
            .map_err(|e| config_error(c, "store", e))?;
        Ok(("person-server", n))
    } else if c.access_server.is_some() {
        let n = aauth_access_server::PgStore::migrate(&o)
            .await
            .map_err(|e| config_error(c, "store", e))?;
        Ok(("access-server", n))
    } else {
        Err(CliError::Usage {
            flag: "--config",
            reason: "a PostgreSQL store is a Person Server's or an Access Server's: the \
                     configuration has neither section"
                .to_owned(),
        })
    }
}

/// The 32-byte secret behind directed identifiers: 64 hex digits, from its file or inline.
fn directed_secret(c: &Config) -> Result<[u8; 32], CliError> {
    let section = c.person_server.as_ref();
    let (text, from) = match (
        section.and_then(|s| s.directed_secret_file.as_ref()),
        section.and_then(|s| s.directed_secret.as_ref()),
    ) {
        (Some(path), _) => (
            crate::keys::read_secret_text(path)?,
            path.display().to_string(),
        ),
        (None, Some(inline)) => (
            zeroize::Zeroizing::new(inline.clone()),
            "person_server.directed_secret".to_owned(),
        ),
        (None, None) => {
            return Err(CliError::Usage {
                flag: "person_server.directed_secret_file",
                reason: "a Person Server needs the secret behind its directed identifiers \
                         (64 hex digits; keep it: it is the persons' identifiers everywhere)"
                    .to_owned(),
            });
        }
    };
    hex32(&text).ok_or_else(|| CliError::Usage {
        flag: "person_server.directed_secret_file",
        reason: format!("{from}: not 64 hex digits"),
    })
}

/// The 32 bytes that `text` (64 hex digits, surrounding whitespace aside) spells.
pub(crate) fn hex32(text: &str) -> Option<[u8; 32]> {
    let hex = text.trim();
    let mut out = [0u8; 32];
    let ok = hex.len() == 64
        && hex.is_ascii()
        && out.iter_mut().enumerate().all(|(i, b)| {
            u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map(|v| *b = v)
                .is_ok()
        });
    ok.then_some(out)
}

fn ids(key: &'static str, values: &[String]) -> Result<Vec<ServerId>, CliError> {
    values.iter().map(|v| server_id(key, v)).collect()
}

/// The Person Server's store as `c` names it; `persistent` refuses `memory` (for `aauth
/// admin`: a memory store is the running process's alone).
pub(crate) async fn ps_store(
    c: &Config,
    persistent: bool,
) -> Result<Arc<dyn aauth_person_server::PsStore>, CliError> {
    Ok(ps_stores(c, persistent, false).await?.0)
}

/// A store and, when `with_replay` and it is PostgreSQL, the replay cache and the
/// pending revocations over its connections (so that every instance sees every accepted
/// request, and answers the polls of every revocation answered `202`).
type Stores<S> = (
    Arc<S>,
    Option<Arc<dyn aauth_signing::ReplayStore>>,
    Option<Arc<dyn aauth_metadata::cascade::CascadeStore>>,
);

/// [`ps_store`], and with `with_replay` the shared replay cache of a PostgreSQL store.
async fn ps_stores(
    c: &Config,
    persistent: bool,
    with_replay: bool,
) -> Result<Stores<dyn aauth_person_server::PsStore>, CliError> {
    use aauth_person_server::{MemoryStore, PgStore, SqliteStore};
    let retention = audit_retention(c)?;
    match store(c)? {
        Store::Memory if persistent => Err(memory_is_private()),
        Store::Memory => Ok((
            Arc::new(MemoryStore::default().audit_retention(retention)),
            None,
            None,
        )),
        Store::Sqlite(p) => Ok((
            Arc::new(
                SqliteStore::open(p)
                    .map_err(|e| config_error(c, "store", e))?
                    .audit_retention(retention),
            ),
            None,
            None,
        )),
        Store::Postgres(o) => {
            let store = PgStore::connect(&o)
                .await
                .map_err(|e| config_error(c, "store", e))?
                .audit_retention(retention);
            if !with_replay {
                return Ok((Arc::new(store), None, None));
            }
            let (replay, cascades) =
                shared_over(c, store.replay_store(), store.cascade_store()).await?;
            Ok((Arc::new(store), replay, cascades))
        }
    }
}

/// What a PostgreSQL store's instances share beside its records, over its connections:
/// the replay cache and the pending revocations.
async fn shared_over(
    c: &Config,
    replay: impl Future<
        Output = Result<aauth_metadata::store::PgReplayStore, aauth_metadata::store::StoreError>,
    >,
    cascades: impl Future<
        Output = Result<aauth_metadata::store::PgCascadeStore, aauth_metadata::store::StoreError>,
    >,
) -> Result<
    (
        Option<Arc<dyn aauth_signing::ReplayStore>>,
        Option<Arc<dyn aauth_metadata::cascade::CascadeStore>>,
    ),
    CliError,
> {
    let replay = replay.await.map_err(|e| config_error(c, "store", e))?;
    let cascades = cascades.await.map_err(|e| config_error(c, "store", e))?;
    Ok((Some(Arc::new(replay)), Some(Arc::new(cascades))))
}

/// The Access Server's store as `c` names it; `persistent` refuses `memory` (for `aauth
/// admin`).
pub(crate) async fn as_store(
    c: &Config,
    persistent: bool,
) -> Result<Arc<dyn aauth_access_server::AsStore>, CliError> {
    Ok(as_stores(c, persistent).await?.0)
}

/// [`as_store`], and the shared replay cache of a PostgreSQL store.
async fn as_stores(
    c: &Config,
    persistent: bool,
) -> Result<Stores<dyn aauth_access_server::AsStore>, CliError> {
    use aauth_access_server::{MemoryStore, PgStore, SqliteStore};
    let retention = audit_retention(c)?;
    Ok(match store(c)? {
        Store::Memory if persistent => return Err(memory_is_private()),
        Store::Memory => (
            Arc::new(MemoryStore::default().audit_retention(retention)),
            None,
            None,
        ),
        Store::Sqlite(p) => (
            Arc::new(
                SqliteStore::open(p)
                    .map_err(|e| config_error(c, "store", e))?
                    .audit_retention(retention),
            ),
            None,
            None,
        ),
        Store::Postgres(o) => {
            let store = PgStore::connect(&o)
                .await
                .map_err(|e| config_error(c, "store", e))?
                .audit_retention(retention);
            let (replay, cascades) =
                shared_over(c, store.replay_store(), store.cascade_store()).await?;
            (Arc::new(store), replay, cascades)
        }
    })
}

/// For a command that only reads records (`aauth admin audit`): a SQLite file that is
/// not there is refused, rather than created empty and reported as holding nothing.
pub(crate) fn existing_store(c: &Config) -> Result<(), CliError> {
    match store(c)? {
        Store::Sqlite(p) if !p.exists() => Err(CliError::Usage {
            flag: "store",
            reason: format!(
                "sqlite:{}: no such file: the service has not run with this configuration \
                 yet, or `store` names another file",
                p.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// Why `aauth admin` refuses a `memory` store.
fn memory_is_private() -> CliError {
    CliError::Usage {
        flag: "store",
        reason: "this service keeps its records in memory (store = \"memory\"): nothing \
                 outside the running process can read or change them; use \
                 store = \"sqlite:PATH\" or \"postgres://…\""
            .to_owned(),
    }
}

/// The most days `[audit] retention_days` takes (a hundred years).
const MAX_RETENTION_DAYS: u64 = 36_500;

/// `[audit] retention_days` (absent: the default, 90 days), checked.
fn audit_retention(c: &Config) -> Result<Duration, CliError> {
    match c.audit.as_ref().and_then(|a| a.retention_days) {
        None => Ok(aauth_metadata::audit::AUDIT_RETENTION),
        Some(days @ 1..=MAX_RETENTION_DAYS) => Ok(Duration::from_secs(days * 24 * 3600)),
        Some(days) => Err(CliError::Usage {
            flag: "audit.retention_days",
            reason: format!("{days}: expected 1 to {MAX_RETENTION_DAYS} days"),
        }),
    }
}

/// The operators of `[audit] operator_keys` who read the audit log at `/admin/audit`;
/// `None` when there are none.
fn operators(
    c: &Config,
    id: &ServerId,
) -> Result<Option<aauth_metadata::audit::operator::Operators>, CliError> {
    let files = c.audit.as_ref().map(|a| a.operator_keys.as_slice());
    let files = files.unwrap_or_default(); // default: no [audit] section, no operators
    if files.is_empty() {
        return Ok(None);
    }
    let keys = files
        .iter()
        .map(|f| crate::keys::read_public(f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(aauth_metadata::audit::operator::Operators::new(
        id, keys,
    )))
}

/// Revocations sent as Person Server `id` (to resources and Access Servers), through
/// `reach`.
pub(crate) fn ps_notifier(
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: &str,
    reach: &crate::net::Reach,
) -> Arc<dyn aauth_person_server::RevocationNotifier> {
    Arc::new(aauth_person_server::HttpRevocationNotifier::new(
        id,
        signer,
        kid,
        Arc::new(reach.https_client()),
        Arc::new(aauth_keys::time::SystemClock),
    ))
}

/// An account's password: its file's text without the final line break, never empty.
fn account_password(file: &Path) -> Result<zeroize::Zeroizing<String>, CliError> {
    let text = crate::keys::read_secret_text(file)?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(CliError::Usage {
            flag: "person_server.accounts.password_file",
            reason: format!("{}: empty", file.display()),
        });
    }
    Ok(zeroize::Zeroizing::new(password.to_owned()))
}

/// The accounts `[person_server.accounts]` declares: their passwords set (or, without
/// one, an account no password opens: a password it had is removed), their agents
/// bound, their people at OpenID Providers linked. A password changed or removed ends
/// the account's sessions; the same password as before changes nothing.
async fn declare_accounts(
    c: &Config,
    ps: &aauth_person_server::PersonServer,
    store: &dyn aauth_person_server::PsStore,
    accounts: &[crate::config::Account],
) -> Result<(), CliError> {
    for a in accounts {
        if let Some(file) = &a.password_file {
            let password = account_password(file)?;
            ps.declare_password(&a.name, Some(&password))
                .await
                .map_err(|e| config_error(c, "person_server.accounts", e))?;
        } else {
            // An account that signs in only through its provider: no password opens it,
            // not even one it had before.
            ps.declare_password(&a.name, None)
                .await
                .map_err(|e| config_error(c, "store", e))?;
        }
        for link in &a.oidc {
            let linked = ps
                .link_account(&link.issuer, &link.subject, &a.name)
                .await
                .map_err(|e| config_error(c, "person_server.accounts.oidc", e))?;
            let current = store
                .linked_account(&link.issuer, &link.subject)
                .await
                .map_err(|e| config_error(c, "store", e))?;
            if !linked && current.as_deref() != Some(a.name.as_str()) {
                return Err(CliError::Usage {
                    flag: "person_server.accounts.oidc",
                    reason: format!(
                        "{} at {} is linked to another account already ({}); a link is changed only by removing it from the store",
                        link.subject,
                        link.issuer,
                        current.unwrap_or_default() // default: unreachable: not linked means linked now
                    ),
                });
            }
        }
        for agent in &a.agents {
            let agent = aauth_tokens::AgentId::parse(agent)
                .map_err(|e| config_error(c, "person_server.accounts.agents", e))?;
            let provider = server_id(
                "person_server.accounts.agents",
                &format!("https://{}", agent.domain()),
            )?;
            store
                .bind(&provider, &agent, &a.name)
                .await
                .map_err(|e| config_error(c, "store", e))?;
        }
    }
    Ok(())
}

/// The pages' texts `[person_server] messages_file` names, checked whole: a TOML file with
/// `lang = "…"` and a `[texts]` table whose keys are the catalogue's (nested tables joined
/// with `.`: `[texts.consent] approve = "…"` is `consent.approve`). `None` without one.
pub(crate) fn person_server_messages(
    section: &crate::config::PersonServerSection,
) -> Result<Option<aauth_person_server::Messages>, CliError> {
    fn flatten(
        prefix: &str,
        table: &toml::Table,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::String(s) => out.push((key, s.clone())),
                toml::Value::Table(t) => flatten(&key, t, out)?,
                _ => return Err(format!("{key}: a text is a string")),
            }
        }
        Ok(())
    }
    let Some(path) = &section.messages_file else {
        return Ok(None);
    };
    let usage = |reason: String| CliError::Usage {
        flag: "person_server.messages_file",
        reason: format!("{}: {reason}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(CliError::file(path))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| usage(e.to_string()))?;
    let lang = doc
        .get("lang")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| usage("no lang = \"…\" (the pages' language tag)".to_owned()))?;
    let texts = doc
        .get("texts")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| usage("no [texts] table".to_owned()))?;
    let mut pairs = Vec::new();
    flatten("", texts, &mut pairs).map_err(usage)?;
    aauth_person_server::Messages::from_entries(lang, pairs)
        .map(Some)
        .map_err(|e| usage(e.to_string()))
}

/// `aauth config messages`: the English catalogue as a `messages_file`.
pub(crate) fn print_messages(out: &mut dyn std::io::Write) -> Result<(), CliError> {
    use aauth_person_server::Text;
    let mut texts = toml::Table::new();
    for t in Text::ALL {
        let mut table = &mut texts;
        let mut parts: Vec<&str> = t.key().split('.').collect();
        let last = parts.pop().unwrap_or_default(); // default: split always yields a part
        for p in parts {
            table = match table
                .entry(p)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(inner) => inner,
                _ => {
                    return Err(CliError::Usage {
                        flag: "messages",
                        reason: format!("{}: a key is also a table", t.key()),
                    });
                }
            };
        }
        table.insert(last.to_owned(), toml::Value::String(t.english().to_owned()));
    }
    let mut doc = toml::Table::new();
    doc.insert("lang".to_owned(), toml::Value::String("en".to_owned()));
    doc.insert("texts".to_owned(), toml::Value::Table(texts));
    let shown = toml::to_string(&doc).map_err(|e| CliError::Usage {
        flag: "messages",
        reason: e.to_string(),
    })?;
    write!(out, "{shown}").map_err(CliError::file(Path::new("<stdout>")))
}

/// What `aauth config check` and the start check of `[person_server]` before anything
/// is reached: the directed-identifier secret and the passwords read (files only their
/// owner can read), every account can sign in (a password or a provider's person linked),
/// each provider's id is one the Person Server takes and is used once, its secret file
/// reads, its scope asks for `openid`.
pub(crate) fn check_person_server(c: &Config) -> Result<(), CliError> {
    let Some(section) = &c.person_server else {
        return Ok(());
    };
    person_server_messages(section)?;
    directed_secret(c)?;
    for a in &section.accounts {
        if let Some(file) = &a.password_file {
            account_password(file)?;
        }
        if a.password_file.is_none() && a.oidc.is_empty() {
            return Err(CliError::Usage {
                flag: "person_server.accounts",
                reason: format!(
                    "{}: neither a password_file nor an oidc link: the account could never sign in",
                    a.name
                ),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &section.sign_in {
        let usage = |reason: String| CliError::Usage {
            flag: "person_server.sign_in",
            reason,
        };
        aauth_person_server::SignInProvider::check_id(&p.id).map_err(|e| usage(e.to_string()))?;
        if !seen.insert(p.id.as_str()) || !seen.insert(p.issuer.as_str()) {
            return Err(usage(format!(
                "{}: configured twice (by id or by issuer)",
                p.id
            )));
        }
        if let Some(scope) = p.scope.as_deref()
            && !scope.split(' ').any(|s| s == "openid")
        {
            return Err(usage(format!("{}: scope {scope:?} lacks openid", p.id)));
        }
        client_secret(p)?;
    }
    Ok(())
}

/// The client secret of provider `p`: its file's first line, never empty.
fn client_secret(p: &crate::config::SignInSection) -> Result<String, CliError> {
    let secret = crate::keys::read_secret_text(&p.client_secret_file)?
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    if secret.is_empty() {
        return Err(CliError::Usage {
            flag: "person_server.sign_in",
            reason: format!("{}: {} is empty", p.id, p.client_secret_file.display()),
        });
    }
    Ok(secret)
}

/// The OpenID Provider `p`, discovered now through the egress guard, with this server
/// `id` as its client's redirect.
async fn sign_in_provider(
    p: &crate::config::SignInSection,
    id: &ServerId,
    reach: &crate::net::Reach,
) -> Result<aauth_person_server::SignInProvider, CliError> {
    use crate::config::{ClientAuthMethod, NewAccountsSetting};
    use aauth_oauth::{ClientAuth, OidcClient, OidcProvider};
    let usage = |reason: String| CliError::Usage {
        flag: "person_server.sign_in",
        reason: format!("{}: {reason}", p.id),
    };
    let secret = client_secret(p)?;
    let fetch = Arc::new(reach.fetcher());
    let provider = OidcProvider::discover(fetch.as_ref(), &p.issuer)
        .await
        .map_err(|e| usage(format!("discovery at {}: {e}", p.issuer)))?;
    let auth = match p.client_auth {
        ClientAuthMethod::Basic => ClientAuth::SecretBasic {
            client_id: p.client_id.clone(),
            secret,
        },
        ClientAuthMethod::Post => ClientAuth::SecretPost {
            client_id: p.client_id.clone(),
            secret,
        },
    };
    let mut client = OidcClient::new(
        provider,
        auth,
        format!("{}{}", id.as_str(), aauth_person_server::OIDC_CALLBACK_PATH),
        fetch,
        Arc::new(reach.https_client()),
        Arc::new(aauth_keys::time::SystemClock),
    );
    if let Some(scope) = &p.scope {
        client = client.scope(scope.clone());
    }
    let new_accounts = match p.new_accounts {
        NewAccountsSetting::Create => aauth_person_server::NewAccounts::Create,
        NewAccountsSetting::LinkedOnly => aauth_person_server::NewAccounts::LinkedOnly,
    };
    Ok(
        aauth_person_server::SignInProvider::new(p.id.clone(), p.label.clone(), client)
            .new_accounts(new_accounts),
    )
}

/// The Person Server of `[person_server]`, counting wrong guesses and agents' requests as
/// `limits` says.
pub(crate) async fn person_server(
    c: &Config,
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: &str,
    keys: Arc<dyn IssuerKeyResolver>,
    reach: &crate::net::Reach,
    limits: &Limits,
) -> Result<WithHealth<dyn Endpoint>, CliError> {
    use aauth_person_server::PersonServer;
    let section = c.person_server.clone().ok_or_else(|| CliError::Usage {
        flag: "person_server",
        reason: "the configuration has no [person_server] section".to_owned(),
    })?;
    check_person_server(c)?;
    let secret = directed_secret(c)?;
    let (store, replay, cascades) = ps_stores(c, false, true).await?;
    // What it reaches out to: resources' metadata (for the consent page), revocations
    // sent on, and Access Servers (four-party), all through the egress guard.
    let metadata = Arc::new(reach.fetcher());
    let notifier = ps_notifier(id.clone(), Arc::clone(&signer), kid, reach);
    let outbound = Arc::new(reach.https_client());
    let operators = operators(c, &id)?;
    let mut ps = PersonServer::new(id, signer, kid, keys, Arc::clone(&store), secret)
        .map_err(|e| config_error(c, "id", e))?
        .retiring_keys(&crate::keyring::retiring(c)?)
        .revocation_notifier(notifier)
        // Four-party: a resource whose Access Server issues its auth tokens is honoured
        // by asking that Access Server (through the same egress guard).
        .federation(outbound)
        .policy(consent_policy(section.consent))
        .revoking_providers(ids(
            "person_server.revoking_providers",
            &section.revoking_providers,
        )?)
        .metadata(metadata)
        .max_pending_per_provider(section.max_pending_per_provider)
        .max_pending_total(section.max_pending_total);
    if section.consent_pages {
        ps = ps.consent_pages(CONSENT_TTL);
    }
    if let Some(replay) = replay {
        ps = ps.replay_store(replay);
    }
    if let Some(cascades) = cascades {
        ps = ps.shared_revocations(cascades);
    }
    if let Some(ops) = operators {
        ps = ps.operators(ops);
    }
    if let Some(throttle) = &limits.throttle {
        ps = ps.throttle(Arc::clone(throttle));
    }
    if let Some(rules) = &limits.rules {
        ps = ps.rate_limits(Arc::clone(rules));
    }
    declare_accounts(c, &ps, store.as_ref(), &section.accounts).await?;
    ps = ps.password_sign_in(section.password_sign_in);
    if let Some(messages) = person_server_messages(&section)? {
        ps = ps.messages(messages);
    }
    for p in &section.sign_in {
        let provider = sign_in_provider(p, ps.id(), reach).await?;
        ps = ps.sign_in_with(provider).map_err(|e| CliError::Usage {
            flag: "person_server.sign_in",
            reason: e.to_string(),
        })?;
    }
    let check = Check(move || {
        let store = Arc::clone(&store);
        async move {
            store
                .password_hash("")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    });
    Ok(WithHealth::new(Arc::new(ps) as Arc<dyn Endpoint>).check("store", Arc::new(check)))
}

/// The Access Server of `[access_server]`, counting wrong guesses and the requests of
/// Person Servers and agents as `limits` says, revoking the auth tokens a revocation
/// cascades to at their resources through `reach` (the egress guard and `[egress]`).
pub(crate) async fn access_server(
    c: &Config,
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: &str,
    keys: Arc<dyn IssuerKeyResolver>,
    reach: &crate::net::Reach,
    limits: &Limits,
) -> Result<WithHealth<dyn Endpoint>, CliError> {
    use aauth_access_server::AccessServer;
    let section = c.access_server.clone().ok_or_else(|| CliError::Usage {
        flag: "access_server",
        reason: "the configuration has no [access_server] section".to_owned(),
    })?;
    let (store, replay, cascades) = as_stores(c, false).await?;
    let operators = operators(c, &id)?;
    let access = AccessServer::new(id, signer, kid, keys)
        .map_err(|e| config_error(c, "id", e))?
        .retiring_keys(&crate::keyring::retiring(c)?)
        .trusted(ids(
            "access_server.trusted_person_servers",
            &section.trusted_person_servers,
        )?)
        .store(Arc::clone(&store))
        .revocation_transport(Arc::new(reach.https_client()))
        // Agent providers' metadata, through the egress guard: an agent's `callback` on
        // the interaction page is followed when its provider publishes it.
        .metadata(Arc::new(reach.fetcher()));
    let access = match replay {
        Some(replay) => access.replay_store(replay),
        None => access,
    };
    let access = match cascades {
        Some(cascades) => access.shared_revocations(cascades),
        None => access,
    };
    let access = match operators {
        Some(ops) => access.operators(ops),
        None => access,
    };
    let access = match &limits.throttle {
        Some(throttle) => access.throttle(Arc::clone(throttle)),
        None => access,
    };
    let access = match &limits.rules {
        Some(rules) => access.rate_limits(Arc::clone(rules)),
        None => access,
    };
    // One lookup by key: cheap however many records the store keeps.
    let check = Check(move || {
        let store = Arc::clone(&store);
        async move {
            let now = aauth_keys::time::Clock::now(&aauth_keys::time::SystemClock);
            store
                .waiting("", now)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    });
    Ok(WithHealth::new(Arc::new(access) as Arc<dyn Endpoint>).check("store", Arc::new(check)))
}
