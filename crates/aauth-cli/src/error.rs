//! What can go wrong, each with the exit code it gives.

use std::path::PathBuf;
use std::process::ExitCode;

/// A command's failure: printed as one line (with its causes), never a panic.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A flag's value the command cannot use (exit 2, like clap's own usage errors).
    #[error("{flag}: {reason}")]
    Usage { flag: &'static str, reason: String },
    /// A file that cannot be read or written (exit 3).
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that exists where the command would create one (exit 3).
    #[error("{}: already exists (pass --force to replace it)", path.display())]
    Exists { path: PathBuf },
    /// A private key or secret file others can read (exit 3).
    #[error(
        "{}: a private key or secret readable by others (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileMode { path: PathBuf, mode: u32 },
    /// A file the service trusts (keys it publishes or accepts, CA certificates) that its
    /// group or others can write (exit 3).
    #[error(
        "{key}: {} is writable by its group or others (mode {mode:04o}), who could put \
         their own keys or certificates in it; run `chmod go-w {}`",
        path.display(),
        path.display()
    )]
    WritableFile {
        key: &'static str,
        path: PathBuf,
        mode: u32,
    },
    /// A configuration file with a wrong or unknown value (exit 3); the reason names the
    /// key and the line.
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// The agent could not complete the request (exit 1 when a party refused, 3 when a
    /// server could not be reached).
    #[error("{0}")]
    Agent(#[source] aauth_agent::AgentError),
    /// The final response was not 2xx and `--fail` was given (exit 1).
    #[error("the server answered {0}")]
    Status(http::StatusCode),
    /// A key that does not read as a JWK AAuth accepts (exit 1).
    #[error("{what}: {source}")]
    Key {
        what: String,
        #[source]
        source: aauth_keys::KeyError,
    },
    /// A token that does not pass its checks (exit 1). The checks were printed.
    #[error("the token did not verify: {check} failed ({code})")]
    Refused { check: &'static str, code: String },
    /// A token that cannot even be read (exit 1).
    #[error("not a token: {0}")]
    NotAToken(String),
    /// What the operator asked that the records refuse: a missing account, one that
    /// exists, an unknown token (exit 2); or the store's failure (exit 3).
    #[error("{0}")]
    Admin(#[source] aauth_person_server::AdminError),
    /// The network or the runtime (exit 3).
    #[error("{0}")]
    Operational(String),
}

impl CliError {
    /// The process exit code (see `aauth --help`).
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage { .. } => 2,
            Self::Key { .. } | Self::Refused { .. } | Self::NotAToken(_) | Self::Status(_) => 1,
            Self::Agent(aauth_agent::AgentError::Transport { .. }) => 3,
            Self::Agent(_) => 1,
            Self::File { .. }
            | Self::Exists { .. }
            | Self::KeyFileMode { .. }
            | Self::WritableFile { .. } => 3,
            Self::Config { .. } => 3,
            Self::Operational(_) => 3,
            Self::Admin(
                aauth_person_server::AdminError::Store(_)
                | aauth_person_server::AdminError::Hash(_),
            ) => 3,
            Self::Admin(_) => 2,
        })
    }

    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::File {
            path: path.to_owned(),
            source,
        }
    }
}
