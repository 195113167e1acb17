//! Workspace automation. Run `cargo xtask help`.
//!
//! xtask links no workspace crate: it shells out to `cargo`, so it builds in seconds and
//! a broken crate never breaks the tool that reports it.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool talks on stdout and stderr"
)]

mod ci;
mod demo;
mod fuzz;
mod interop;
mod load;
mod release;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const HELP: &str = "\
cargo xtask <command>

  ci [fmt|tidy|clippy|test|doc|features|release|semver|deny|…]
                                       run every CI job (or one), cheapest first
  demo [N|SLUG|all|--list]             run the demos and print their transcripts
  demo 4 --live                        demo 4 with you as the person, in your own browser
  interop                              the live peer tests as a matrix (peer x direction x feature)
  fuzz [--smoke | <target> [--seconds N]]
                                       run the cargo-fuzz targets in fuzz/ (needs cargo-fuzz)
  bench                                run the criterion benchmarks (cargo bench)
  load [--seconds N] [--connections C] [--max N] [--pipeline P] [--replay | --proxy | --redis]
                                       the resource under load on loopback (pinned with taskset);
                                       --replay: the replay check's cost; --proxy: the
                                       resource proxy, beside a plain proxy, and its memory;
                                       --redis: replay cache and revocations in Redis
                                       (AAUTH_REDIS_URL) beside memory
  release --dry-run                    package every publishable crate as `cargo publish` would,
                                       and list each package's size
  help                                 this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("interop") => interop::run(&args[1..]),
        Some("bench") => cargo(&["bench", "--workspace"]),
        Some("load") => load::run(&args[1..]),
        Some("release") => release::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub(crate) fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs `cargo <args>` in the workspace root, echoing the command.
pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    run_in(&root(), &cargo_bin(), args, &[])
}

/// Runs `cargo <args>` with extra environment variables.
pub(crate) fn cargo_env(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    run_in(&root(), &cargo_bin(), args, env)
}

/// Runs a program in `dir`, echoing the command; fails on a non-zero exit.
pub(crate) fn run_in(
    dir: &Path,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(), String> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// Whether `program --version` runs.
pub(crate) fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}
