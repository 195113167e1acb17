//! `cargo xtask ci`: the jobs CI runs, cheapest first. `.ci/run` calls exactly this.

use crate::{cargo, cargo_env, have, root, run_in};

const JOBS: [&str; 13] = [
    "fmt",
    "tidy",
    "clippy",
    "interop-deps",
    "test",
    "interop",
    "oracles",
    "fuzz-check",
    "doc",
    "features",
    "release",
    "semver",
    "deny",
];

/// aauth-cli's optional OpenTelemetry traces, built and tested by CI.
const OTEL: &str = "aauth-cli/otel";

/// Crates outside the workspace (own `[workspace]`), checked by the same rules.
const OUTSIDE: [&str; 2] = ["tests/oracles/Cargo.toml", "fuzz/Cargo.toml"];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let jobs: Vec<&str> = match args.first() {
        Some(j) => vec![j.as_str()],
        None => JOBS.to_vec(),
    };
    for job in jobs {
        eprintln!("\n==> ci {job}");
        match job {
            "fmt" => {
                cargo(&["fmt", "--all", "--", "--check"])?;
                for manifest in OUTSIDE {
                    cargo(&["fmt", "--manifest-path", manifest, "--all", "--", "--check"])?;
                }
            }
            "tidy" => cargo(&["test", "--quiet", "--package", "xtask", "--", "tidy"])?,
            "clippy" => {
                cargo(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ])?;
                // aauth-cli's OpenTelemetry traces (feature `otel`, off by default) are
                // linted too, with the workspace's features otherwise (decision 0014).
                cargo(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--features",
                    OTEL,
                    "--",
                    "-D",
                    "warnings",
                ])?;
                // aauth-metadata's documents stand without a runtime or a TLS stack
                // (decision 0009): both cuts keep compiling, warning-free.
                for features in [
                    &["--no-default-features"][..],
                    &["--no-default-features", "--features", "runtime"],
                ] {
                    let mut args =
                        vec!["clippy", "--package", "aauth-metadata", "--lib", "--locked"];
                    args.extend_from_slice(features);
                    args.extend_from_slice(&["--", "-D", "warnings"]);
                    cargo(&args)?;
                }
                // The optional features (bundled SQLite, axum) are off by default: the
                // default cuts compile warning-free too.
                cargo(&[
                    "clippy",
                    "--package",
                    "aauth-person-server",
                    "--package",
                    "aauth-access-server",
                    "--package",
                    "aauth-resource",
                    "--lib",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ])?;
            }
            "interop-deps" => interop_deps()?,
            "features" => crate::release::each_feature()?,
            "release" => crate::release::run(&["--dry-run".to_owned()])?,
            "semver" => crate::release::semver()?,
            "interop" => crate::interop::run(&[])?,
            "test" => {
                // With aauth-cli's `otel` feature, so that its export test runs in the same
                // build as every other test (a build of its own would rebuild most of the
                // workspace: decision 0014); `clippy` lints the default build.
                cargo(&[
                    "test",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--features",
                    OTEL,
                ])?;
                cargo(&[
                    "test",
                    "--workspace",
                    "--doc",
                    "--locked",
                    "--features",
                    OTEL,
                ])?;
            }
            "oracles" => {
                // Outside the workspace (see tests/oracles/Cargo.toml); share the target dir.
                let target = root().join("target");
                let target = target.to_string_lossy();
                cargo_env(
                    &[
                        "test",
                        "--locked",
                        "--manifest-path",
                        "tests/oracles/Cargo.toml",
                    ],
                    &[("CARGO_TARGET_DIR", &target)],
                )?;
                cargo_env(
                    &[
                        "clippy",
                        "--locked",
                        "--all-targets",
                        "--manifest-path",
                        "tests/oracles/Cargo.toml",
                        "--",
                        "-D",
                        "warnings",
                    ],
                    &[("CARGO_TARGET_DIR", &target)],
                )?;
            }
            "fuzz-check" => {
                // The fuzz targets must keep compiling against the crates' APIs; running
                // them needs cargo-fuzz (`cargo xtask fuzz --smoke`), not part of CI.
                let target = root().join("target");
                let target = target.to_string_lossy();
                cargo_env(
                    &[
                        "clippy",
                        "--locked",
                        "--bins",
                        "--manifest-path",
                        "fuzz/Cargo.toml",
                        "--",
                        "-D",
                        "warnings",
                    ],
                    &[("CARGO_TARGET_DIR", &target)],
                )?;
            }
            "doc" => cargo_env(
                &["doc", "--workspace", "--no-deps", "--locked"],
                &[("RUSTDOCFLAGS", "-D warnings")],
            )?,
            "deny" => {
                if have("cargo-deny", &["--version"]) {
                    cargo(&[
                        "deny",
                        "--all-features",
                        "check",
                        "licenses",
                        "bans",
                        "sources",
                    ])?;
                } else {
                    eprintln!(
                        "!! SKIPPED: cargo-deny is not installed (cargo install --locked cargo-deny).\n\
                         !! The licence, ban and source checks did NOT run. .ci/run installs it."
                    );
                }
            }
            other => {
                return Err(format!(
                    "unknown ci job {other:?}; jobs: {}",
                    JOBS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Installs the interop peers: `@hellocoop/httpsig`, `@hellocoop/mockin` and
/// `oidc-provider` (an OAuth 2.0 authorization server) from their lock files, and the Python
/// `aauth` packages into a virtualenv ([`python_peer`]), so the interop tests can run them;
/// and `axe-core`, which the Chromium test of the Person Server's pages runs in them.
/// Without npm or Python a test skips loudly (or fails under `AAUTH_REQUIRE_INTEROP=1`, as
/// in CI).
pub(crate) fn interop_deps() -> Result<(), String> {
    npm_peer("hellocoop")?;
    npm_peer("mockin")?;
    npm_peer("oidc-provider")?;
    npm_peer("axe-core")?;
    python_peer()
}

/// `npm ci` in `tests/interop/{peer}` (`hellocoop`: `@hellocoop/httpsig`; `mockin`:
/// `@hellocoop/mockin`, run as a live Person Server).
fn npm_peer(peer: &str) -> Result<(), String> {
    let dir = root().join("tests/interop").join(peer);
    if !dir.join("package-lock.json").exists() {
        return Err(format!("tests/interop/{peer}/package-lock.json is missing"));
    }
    if !have("npm", &["--version"]) {
        eprintln!(
            "!! npm is not installed: the TypeScript interop tests ({peer}) will be skipped."
        );
        return Ok(());
    }
    run_in(
        &dir,
        "npm",
        &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
        &[],
    )
}

/// The Python peer (`aauth`, `aauth-signing`, pinned in `tests/interop/python/requirements.txt`):
/// `python3 -m venv tests/interop/python/.venv`, then `pip install -r` into it. Idempotent
/// and quick when nothing changed: the venv keeps a copy of the requirements it was
/// installed from, and an install whose copy matches is skipped.
fn python_peer() -> Result<(), String> {
    let dir = root().join("tests/interop/python");
    let requirements = dir.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("tests/interop/python/requirements.txt: {e}"))?;
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.installed");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        eprintln!("python peer: .venv is up to date with requirements.txt");
        return Ok(());
    }
    if !have("python3", &["--version"]) {
        eprintln!("!! python3 is not installed: the Python interop tests will be skipped.");
        return Ok(());
    }
    if !python.exists() {
        run_in(&dir, "python3", &["-m", "venv", ".venv"], &[])?;
    }
    let python = python.to_string_lossy();
    run_in(
        &dir,
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            "requirements.txt",
        ],
        &[],
    )?;
    std::fs::write(&stamp, &wanted).map_err(|e| format!("{}: {e}", stamp.display()))
}
