//! The agent's profile: a directory (`--profile`, `$AAUTH_PROFILE`, or
//! `~/.config/aauth/`) holding `profile.toml` and the files it names.
//!
//! ```toml
//! agent = "aauth:assistant@agent.example"   # the agent identifier
//! provider = "https://agent.example"         # its agent provider (issues its agent token)
//! key = "agent.jwk"                          # the private key (default agent.jwk)
//! # agent_token = "agent.token"              # or a token file kept fresh by something else
//! # person_server = "https://ps.example"     # default: the agent token's `ps` claim
//! ```
//!
//! Every value can be given as a flag instead, which wins over the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::Identity;
use crate::error::CliError;

/// `profile.toml`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agent: Option<String>,
    provider: Option<String>,
    key: Option<PathBuf>,
    agent_token: Option<PathBuf>,
    person_server: Option<String>,
}

/// Who the agent is, from the flags and the profile.
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) agent: String,
    pub(crate) key: PathBuf,
    pub(crate) source: Source,
    pub(crate) person_server: Option<String>,
}

/// Where the agent token comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// The agent provider's token endpoint.
    Provider(String),
    /// A file, read each time a token is needed.
    File(PathBuf),
}

/// The profile directory: the flag, `$AAUTH_PROFILE`, `$XDG_CONFIG_HOME/aauth`, or
/// `~/.config/aauth`.
fn directory(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = flag {
        return Some(dir.to_owned());
    }
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    env("AAUTH_PROFILE").map(PathBuf::from).or_else(|| {
        env("XDG_CONFIG_HOME")
            .map(|c| PathBuf::from(c).join("aauth"))
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config/aauth")))
    })
}

/// The profile: `profile.toml` in the directory if there is one, each value overridden
/// by its flag.
pub(crate) fn load(id: &Identity) -> Result<Profile, CliError> {
    let dir = directory(id.profile.as_deref());
    let path = dir.as_ref().map(|d| d.join("profile.toml"));
    let file = match &path {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p).map_err(CliError::file(p))?;
            toml::from_str::<File>(&text).map_err(|e| CliError::Config {
                path: p.clone(),
                reason: e.to_string(),
            })?
        }
        // A profile directory named explicitly must hold a profile.
        Some(p) if id.profile.is_some() => {
            return Err(CliError::File {
                path: p.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        _ => File::default(),
    };
    let within = |p: PathBuf| match &dir {
        Some(d) if p.is_relative() => d.join(p),
        _ => p,
    };
    let missing = |what: &str, flag: &'static str| CliError::Usage {
        flag,
        reason: format!(
            "no {what}: pass {flag}, or set it in {}",
            path.as_ref()
                .map_or_else(|| "a profile.toml".to_owned(), |p| p.display().to_string())
        ),
    };
    let agent = id
        .agent
        .clone()
        .or(file.agent)
        .ok_or_else(|| missing("agent identifier", "--agent"))?;
    let key = match (&id.key, file.key) {
        (Some(k), _) => k.clone(),
        (None, Some(k)) => within(k),
        (None, None) => dir
            .as_ref()
            .map(|d| d.join("agent.jwk"))
            .ok_or_else(|| missing("private key", "--key"))?,
    };
    let source = match (
        &id.agent_token,
        &id.provider,
        file.agent_token,
        file.provider,
    ) {
        (Some(t), _, _, _) => Source::File(t.clone()),
        (None, Some(p), _, _) => Source::Provider(p.clone()),
        (None, None, Some(t), _) => Source::File(within(t)),
        (None, None, None, Some(p)) => Source::Provider(p),
        (None, None, None, None) => {
            return Err(missing("agent provider or agent token", "--provider"));
        }
    };
    Ok(Profile {
        agent,
        key,
        source,
        person_server: id.person_server.clone().or(file.person_server),
    })
}
