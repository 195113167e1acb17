//! `aauth`: AAuth from the command line.
//!
//! ```text
//! aauth keygen --out agent.jwk            # a private JWK (0600); the public JWKS printed
//! aauth jwk thumbprint agent.jwk          # its RFC 7638 thumbprint
//! aauth token decode "$TOKEN"             # header, claims, dates, exp/iat against now
//! aauth token verify "$TOKEN" --issuer https://ps.example --audience https://api.example
//! aauth fetch https://api.example/things   # as the agent of ~/.config/aauth/profile.toml
//! aauth serve person-server --config ps.toml
//! aauth serve resource-proxy --config api.toml   # an existing API as an AAuth resource
//! aauth admin --config ps.toml accounts create alice --password-file pw.txt
//! aauth admin --config ps.toml audit --agent aauth:assistant@agent.example --since 1d
//! aauth admin --config ps.toml keys rotate --overlap 24h
//! aauth completions bash                  # a completion script
//! ```
//!
//! Every command has `--help`. Errors are one line on standard error, never a panic; the
//! exit code says what kind (`aauth --help` lists them).

mod admin;
mod audit;
mod cli;
mod config;
mod deadline;
mod error;
mod fetch;
mod forwarded;
mod idle;
mod keyring;
mod keys;
mod limits;
mod metrics;
mod net;
mod otel;
mod profile;
mod proxy;
mod roles;
mod serve;
mod share;
mod terminal;
mod time;
mod token;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{AgentCommand, Cli, Command, ConfigCommand, JwkCommand, TokenCommand};
use error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli.command, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush(); // the checks printed so far come before the error
            let mut line = format!("aauth: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // (Some errors already say their cause; it is not repeated.)
                let said = s.to_string();
                if !line.contains(&said) {
                    line.push_str(&format!(": {said}"));
                }
                source = s.source();
            }
            // Standard error is the command's channel for its one error line, which may
            // quote a token or a server (a problem's `error`, a refused `alg`): nothing
            // in it reaches the terminal as a control character.
            let _ = writeln!(std::io::stderr(), "{}", terminal::printable(&line));
            e.exit_code()
        }
    }
}

fn run(command: Command, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        Command::Keygen(args) => keys::keygen(&args, out),
        Command::Jwk(JwkCommand::Thumbprint { file }) => keys::thumbprint(&file, out),
        Command::Jwk(JwkCommand::Public { file }) => keys::public(&file, out),
        Command::Token(TokenCommand::Decode(args)) => token::decode(&args, out),
        Command::Token(TokenCommand::Verify(args)) => token::verify(&args, out),
        Command::Fetch(args) => fetch::fetch(&args, out),
        Command::Agent(AgentCommand::Enroll {
            out: file,
            identity,
            net,
        }) => fetch::enroll(&identity, &net, file.as_deref(), out),
        Command::Serve { role, config } => serve::serve(role, &config),
        Command::Config(ConfigCommand::Check { file }) => serve::check(&file, out),
        Command::Config(ConfigCommand::Messages) => roles::print_messages(out),
        Command::Admin { config, command } => admin::admin(config.as_deref(), command, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "aauth", out);
            Ok(())
        }
    }
}
