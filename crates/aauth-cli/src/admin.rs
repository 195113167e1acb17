//! `aauth admin`: the operator's work on a service, through its configuration: signing-key
//! rotation (any role), a Person Server's accounts, agents and tokens
//! (`aauth_person_server::Admin` on the store the configuration names), and a Person
//! Server's or an Access Server's audit log (`crate::audit`: from the store, or over
//! HTTPS from the running server).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aauth_keys::Signer;
use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_person_server::Admin;

use crate::cli::{AccountsCommand, AdminCommand, AgentsCommand, KeysCommand, TokensCommand};
use crate::config::{self, Config};
use crate::error::CliError;
use crate::time::date;

fn stdout(e: std::io::Error) -> CliError {
    CliError::file(Path::new("<stdout>"))(e)
}

/// Runs `command` on the service `config` configures.
pub(crate) fn admin(
    config: Option<&Path>,
    command: AdminCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if let AdminCommand::Audit(args) = &command
        && args.url.is_some()
    {
        return runtime()?.block_on(crate::audit::remote(args, SystemClock.now(), out));
    }
    let path = config.ok_or_else(|| CliError::Usage {
        flag: "--config",
        reason: "name the service's configuration file (aauth admin --config FILE …)".to_owned(),
    })?;
    let c = config::load(path, config::environment()?)?;
    let now = SystemClock.now();
    match command {
        AdminCommand::Keys(k) => keys(&c, k, now.as_secs(), out),
        AdminCommand::Migrate => {
            let (component, applied) = runtime()?.block_on(crate::roles::migrate(&c))?;
            writeln!(
                out,
                "{component} schema: {applied} migration{} applied; the database is current",
                if applied == 1 { "" } else { "s" }
            )
            .map_err(stdout)
        }
        AdminCommand::Audit(args) => runtime()?.block_on(crate::audit::local(&c, &args, now, out)),
        other => runtime()?.block_on(person_server(&c, other, now, out)),
    }
}

/// The runtime the store's calls run on.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Operational(format!("starting the runtime: {e}")))
}

fn keys(c: &Config, command: KeysCommand, now: u64, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        KeysCommand::List => {
            let (_, kid) = crate::keys::service_key(c)?;
            writeln!(out, "signing   {kid}").map_err(stdout)?;
            let (retiring, next) = crate::keyring::listed(c)?;
            for jwk in next {
                writeln!(
                    out,
                    "next      {}  published, signs after rotate",
                    jwk.kid.as_deref().unwrap_or("(no kid)") // default: a key without a kid is listed as such
                )
                .map_err(stdout)?;
            }
            for r in retiring {
                let state = if r.until > now {
                    "published until"
                } else {
                    "dropped since"
                };
                writeln!(
                    out,
                    "retiring  {}  {state} {}",
                    r.jwk.kid.as_deref().unwrap_or("(no kid)"), // default: a key without a kid is listed as such
                    date(r.until)
                )
                .map_err(stdout)?;
            }
            Ok(())
        }
        KeysCommand::Prepare => {
            let kid = crate::keyring::prepare(c)?;
            writeln!(
                out,
                "next signing key prepared: {kid}, published by every instance from its next \
                 start ({})\nrestart the service (every instance), then rotate",
                crate::keyring::retiring_path(c).display()
            )
            .map_err(stdout)
        }
        KeysCommand::Rotate { overlap, force } => {
            let r = crate::keyring::rotate(c, overlap, force, now)?;
            let how = if r.prepared {
                "the prepared key, published already"
            } else {
                "a new key; with several instances, `keys prepare` first publishes it everywhere"
            };
            writeln!(
                out,
                "signing key rotated: {} (new: {how}) replaces {}, which stays published until \
                 {} ({})\nrestart the service (every instance) to sign with the new key",
                r.new_kid,
                r.old_kid,
                date(r.until),
                crate::keyring::retiring_path(c).display()
            )
            .map_err(stdout)
        }
    }
}

async fn person_server(
    c: &Config,
    command: AdminCommand,
    now: UnixTime,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if c.person_server.is_none() {
        return Err(CliError::Usage {
            flag: "--config",
            reason: "accounts, agents and tokens are a Person Server's; \
                     this configuration has no [person_server] section"
                .to_owned(),
        });
    }
    let store = crate::roles::ps_store(c, true).await?;
    // Revocations are sent on: signed as the Person Server, reaching out as it does (its
    // key and egress settings are read only for them).
    let notifying = |revokes: bool| -> Result<Admin, CliError> {
        if !revokes {
            return Ok(Admin::new(Arc::clone(&store)));
        }
        let (key, kid) = crate::keys::service_key(c)?;
        let signer: Arc<dyn Signer> = Arc::new(key);
        let reach = crate::net::Reach::from_egress(&c.egress.ca_files, &c.egress.connect_to)?;
        let id = crate::net::server_id("id", &c.id)?;
        Ok(Admin::new(Arc::clone(&store))
            .notifier(crate::roles::ps_notifier(id, signer, &kid, &reach)))
    };
    match command {
        AdminCommand::Keys(_) | AdminCommand::Migrate | AdminCommand::Audit(_) => Ok(()),
        AdminCommand::Accounts(a) => {
            // Disabling revokes the tokens the account holds, at their resources too.
            let admin = notifying(matches!(a, AccountsCommand::Disable { .. }))?;
            accounts(c, &admin, a, now, out).await
        }
        AdminCommand::Agents(a) => {
            let admin = notifying(matches!(a, AgentsCommand::Revoke { .. }))?;
            agents(c, &admin, a, now, out).await
        }
        AdminCommand::Tokens(t) => {
            let admin = notifying(matches!(t, TokensCommand::Revoke { .. }))?;
            tokens(&admin, t, now, out).await
        }
    }
}

async fn accounts(
    c: &Config,
    admin: &Admin,
    command: AccountsCommand,
    now: UnixTime,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let declared = |name: &str| {
        c.person_server
            .iter()
            .flat_map(|s| &s.accounts)
            .any(|a| a.name == name)
    };
    match command {
        AccountsCommand::List => {
            for a in admin.accounts().await.map_err(CliError::Admin)? {
                let state = if a.disabled { "disabled" } else { "enabled" };
                let from = if declared(&a.name) {
                    "  (declared in the configuration)"
                } else {
                    ""
                };
                writeln!(out, "{}\t{state}{from}", a.name).map_err(stdout)?;
            }
            Ok(())
        }
        AccountsCommand::Create {
            name,
            password_file,
        } => {
            let password = password(password_file.as_deref())?;
            admin
                .create_account(&name, &password, now)
                .await
                .map_err(CliError::Admin)?;
            writeln!(out, "account {name} created").map_err(stdout)
        }
        AccountsCommand::Reset {
            name,
            password_file,
        } => {
            if declared(&name) {
                return Err(CliError::Usage {
                    flag: "NAME",
                    reason: format!(
                        "{name} is declared in the configuration (person_server.accounts), \
                             which sets its password at every start: change its password_file"
                    ),
                });
            }
            let password = password(password_file.as_deref())?;
            admin
                .reset_password(&name, &password, now)
                .await
                .map_err(CliError::Admin)?;
            writeln!(out, "password of {name} reset; its sessions ended").map_err(stdout)
        }
        AccountsCommand::Disable { name } => {
            let revoked = admin
                .set_disabled(&name, true, now)
                .await
                .map_err(CliError::Admin)?;
            writeln!(
                out,
                "account {name} disabled; its sessions ended; {revoked} token(s) revoked"
            )
            .map_err(stdout)
        }
        AccountsCommand::Enable { name } => {
            // Enabling revokes nothing (and restores nothing revoked).
            let _none = admin
                .set_disabled(&name, false, now)
                .await
                .map_err(CliError::Admin)?;
            writeln!(out, "account {name} enabled").map_err(stdout)
        }
    }
}

async fn agents(
    c: &Config,
    admin: &Admin,
    command: AgentsCommand,
    now: UnixTime,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        AgentsCommand::List { account } => {
            for b in admin
                .agents(account.as_deref())
                .await
                .map_err(CliError::Admin)?
            {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    b.agent.as_str(),
                    b.account,
                    b.provider.as_str()
                )
                .map_err(stdout)?;
            }
            Ok(())
        }
        AgentsCommand::Revoke { agent, provider } => {
            let agent = aauth_tokens::AgentId::parse(&agent).map_err(|e| CliError::Usage {
                flag: "AGENT",
                reason: e.to_string(),
            })?;
            let provider = match provider {
                Some(p) => crate::net::server_id("--provider", &p)?,
                None => crate::net::server_id("AGENT", &format!("https://{}", agent.domain()))?,
            };
            let n = admin
                .revoke_agent(&provider, &agent, now)
                .await
                .map_err(CliError::Admin)?;
            writeln!(
                out,
                "agent {} unbound; {n} token(s) revoked and sent on to their resources",
                agent.as_str()
            )
            .map_err(stdout)?;
            // Revoked now, whatever the configuration says; but one that binds the agent
            // would bind it again at the next start of any instance: said, and not 0.
            let declared_by = c
                .person_server
                .iter()
                .flat_map(|s| &s.accounts)
                .find(|a| a.agents.iter().any(|d| d == agent.as_str()));
            match declared_by {
                Some(a) => Err(CliError::Usage {
                    flag: "AGENT",
                    reason: format!(
                        "{} is declared in the configuration (person_server.accounts.agents of \
                         {}): revoked now, but every start binds it again; remove it there",
                        agent.as_str(),
                        a.name
                    ),
                }),
                None => Ok(()),
            }
        }
    }
}

async fn tokens(
    admin: &Admin,
    command: TokensCommand,
    now: UnixTime,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        TokensCommand::List { account, json } => {
            let listing = admin
                .tokens(account.as_deref(), now)
                .await
                .map_err(CliError::Admin)?;
            for (r, revoked) in &listing.person {
                let line = serde_json::json!({
                    "type": "person", "jti": r.jti, "aud": r.aud.as_str(),
                    "account": r.account, "agent": r.agent.1.as_str(),
                    "exp": r.exp, "revoked": revoked,
                });
                token_line(out, json, &line)?;
            }
            for (r, revoked) in &listing.auth {
                let line = serde_json::json!({
                    "type": "auth", "jti": r.jti, "aud": r.aud.as_str(),
                    "account": r.account, "presented": r.presented_jti,
                    "exp": r.exp, "revoked": revoked,
                });
                token_line(out, json, &line)?;
            }
            Ok(())
        }
        TokensCommand::Revoke { jti } => {
            admin
                .revoke_token(&jti, now)
                .await
                .map_err(CliError::Admin)?;
            writeln!(out, "token {jti} revoked and sent on to its resource").map_err(stdout)
        }
    }
}

fn token_line(out: &mut dyn Write, json: bool, line: &serde_json::Value) -> Result<(), CliError> {
    if json {
        return writeln!(out, "{line}").map_err(stdout);
    }
    let s = |k: &str| line[k].as_str().unwrap_or("-").to_owned(); // default: a member a type lacks
    let exp = line["exp"].as_u64().map_or_else(|| "-".to_owned(), date);
    let revoked = if line["revoked"].as_bool() == Some(true) {
        "revoked"
    } else {
        "live"
    };
    writeln!(
        out,
        "{}\t{}\t{}\t{}\texp {exp}\t{revoked}",
        s("type"),
        s("jti"),
        s("account"),
        s("aud")
    )
    .map_err(stdout)
}

/// A new password: the first line of `file`, else of standard input; never empty.
fn password(file: Option<&Path>) -> Result<zeroize::Zeroizing<String>, CliError> {
    let mut line = zeroize::Zeroizing::new(String::new());
    match file {
        Some(f) => {
            let text = crate::keys::read_secret_text(f)?;
            line.push_str(text.lines().next().unwrap_or_default()); // default: an empty file is refused below
        }
        None => {
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(CliError::file(&PathBuf::from("<stdin>")))?;
            let kept = line.trim_end_matches(['\r', '\n']).len();
            line.truncate(kept);
        }
    }
    if line.is_empty() {
        return Err(CliError::Usage {
            flag: "--password-file",
            reason: "the password is empty (give it in the file, or on standard input)".to_owned(),
        });
    }
    Ok(line)
}
