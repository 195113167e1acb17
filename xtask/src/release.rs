//! `cargo xtask release --dry-run`: packages every publishable crate exactly as `cargo
//! publish` would (`cargo package`, each package built from its packaged sources alone,
//! the workspace's unpublished crates standing in for the registry), and lists each
//! package's size. Publishing itself is left to a person (docs/versioning.md).

use std::path::Path;
use std::process::Command;

use crate::{cargo, root};

/// A package larger than this is refused: something that should not ship (test vectors,
/// a corpus) was included.
const MAX_PACKAGE: u64 = 1024 * 1024;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args.iter().map(String::as_str).ne(["--dry-run"]) {
        return Err(
            "release: only `cargo xtask release --dry-run` exists (publishing is done by hand)"
                .to_owned(),
        );
    }
    let crates = publishable()?;
    if crates.is_empty() {
        return Err("release: no crate is publishable".to_owned());
    }
    forget_earlier_packages(&crates)?;
    let mut cmd: Vec<&str> = vec!["package", "--locked", "--allow-dirty"];
    for (name, _) in &crates {
        cmd.extend_from_slice(&["--package", name]);
    }
    cargo(&cmd)?;
    let dir = root().join("target/package");
    let mut too_big = Vec::new();
    println!("\nin the order to publish them:");
    println!("{:<24} {:>8}  {:>10}", "package", "version", "size");
    for (name, version) in &crates {
        let file = dir.join(format!("{name}-{version}.crate"));
        let size = std::fs::metadata(&file)
            .map_err(|e| format!("release: {}: {e}", file.display()))?
            .len();
        println!("{name:<24} {version:>8}  {:>7} KiB", size.div_ceil(1024));
        if size > MAX_PACKAGE {
            too_big.push(format!("{name} ({} KiB)", size / 1024));
        }
    }
    if too_big.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "release: packages over {} KiB: {}",
            MAX_PACKAGE / 1024,
            too_big.join(", ")
        ))
    }
}

/// Removes what an earlier `cargo package` of these crates left in cargo's home: each
/// packaged crate is unpacked there under the temporary registry that stands in for
/// crates.io, by name and version, and an unpacked crate is reused as it is. With the
/// version unchanged, a later dry run from the same checkout path built each crate
/// against its neighbours' earlier sources (an API changed between them failed to
/// compile). crates.io's own directories are left alone.
fn forget_earlier_packages(crates: &[(String, String)]) -> Result<(), String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(home) = home else {
        return Ok(());
    };
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            if registry
                .file_name()
                .to_string_lossy()
                .starts_with("index.crates.io")
            {
                continue;
            }
            for (name, version) in crates {
                let unpacked = registry.path().join(format!("{name}-{version}"));
                let packed = registry.path().join(format!("{name}-{version}.crate"));
                let removed = if unpacked.is_dir() {
                    std::fs::remove_dir_all(&unpacked).map_err(|e| (unpacked, e))
                } else if packed.is_file() {
                    std::fs::remove_file(&packed).map_err(|e| (packed, e))
                } else {
                    Ok(())
                };
                removed.map_err(|(p, e)| format!("release: removing {}: {e}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// `cargo xtask ci features`: every publishable crate builds with no optional feature,
/// with each feature alone, and with all of them (a user may pick any one; `clippy` and
/// `test` see only the workspace's union of features).
pub(crate) fn each_feature() -> Result<(), String> {
    let meta = metadata()?;
    let names: Vec<String> = publishable_in(&meta)?.into_iter().map(|(n, _)| n).collect();
    for p in meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?
    {
        let Some(name) = p["name"].as_str().filter(|n| names.iter().any(|x| x == n)) else {
            continue;
        };
        let features: Vec<&str> = p["features"]
            .as_object()
            .map(|f| {
                f.keys()
                    .map(String::as_str)
                    .filter(|k| *k != "default")
                    .collect()
            })
            .unwrap_or_default(); // default: a crate without features has none to try
        let check = |extra: &[&str]| {
            let mut args = vec![
                "check",
                "--package",
                name,
                "--locked",
                "--quiet",
                "--message-format=json",
            ];
            args.extend_from_slice(extra);
            check_without_warnings(&args)
        };
        check(&["--no-default-features"])?;
        for f in &features {
            check(&["--no-default-features", "--features", f])?;
        }
        if !features.is_empty() {
            check(&["--all-features"])?;
        }
    }
    Ok(())
}

/// Runs `cargo <args>` (a `check` with JSON messages) and fails on its failure or on any
/// warning in a workspace crate, printing each: the cut of features `clippy` never sees
/// is held to the same `-D warnings`, without the `RUSTFLAGS` that would rebuild every
/// dependency. Cargo replays a cached crate's warnings, so a warm run sees them too.
fn check_without_warnings(args: &[&str]) -> Result<(), String> {
    eprintln!("$ cargo {}", args.join(" "));
    let out = Command::new(crate::cargo_bin())
        .args(args)
        .current_dir(root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    let root = format!("path+file://{}", root().display());
    let mut warnings = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = m["package_id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&root));
        if m["reason"] == "compiler-message" && ours {
            if let Some(rendered) = m["message"]["rendered"].as_str() {
                eprint!("{rendered}");
            }
            if m["message"]["level"] == "warning" {
                warnings += 1;
            }
        }
    }
    if !out.status.success() {
        return Err(format!("cargo {} failed", args.join(" ")));
    }
    if warnings > 0 {
        return Err(format!(
            "cargo {}: {warnings} warning(s) in the workspace's crates",
            args.join(" ")
        ));
    }
    Ok(())
}

/// `cargo xtask ci semver`: the public API against the last release (the newest `v*` tag)
/// with `cargo semver-checks`, every publishable crate. Before the first release there is
/// nothing to compare with: the tool is run on the two layer-0 crates against the current
/// tree (`HEAD`), so that the job is known to work when the first tag exists. Without the
/// tool the job fails under `CI` and says loudly that it skipped elsewhere.
pub(crate) fn semver() -> Result<(), String> {
    if !crate::have(&crate::cargo_bin(), &["semver-checks", "--version"]) {
        if std::env::var_os("CI").is_some() {
            return Err(
                "semver: cargo-semver-checks is not installed (.ci/run installs it)".to_owned(),
            );
        }
        eprintln!(
            "!! SKIPPED: cargo-semver-checks is not installed \
             (cargo install --locked cargo-semver-checks@0.51.0): the public API was NOT checked."
        );
        return Ok(());
    }
    let out = Command::new("git")
        .args(["tag", "--list", "v*", "--sort=-version:refname"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("git tag: {e}"))?;
    let tags = String::from_utf8_lossy(&out.stdout).into_owned();
    match tags.lines().next().filter(|t| !t.trim().is_empty()) {
        Some(tag) => {
            let mut args = vec!["semver-checks", "check-release", "--baseline-rev", tag];
            let crates = publishable()?;
            for (name, _) in &crates {
                // aauth-cli is a command, not a library API.
                if name != "aauth-cli" {
                    args.extend_from_slice(&["--package", name]);
                }
            }
            cargo(&args)
        }
        None => {
            eprintln!("semver: no release tag yet; checking that the tool runs, against HEAD");
            cargo(&[
                "semver-checks",
                "check-release",
                "--baseline-rev",
                "HEAD",
                "--package",
                "aauth-keys",
                "--package",
                "aauth-headers",
            ])
        }
    }
}

/// `cargo metadata` of the workspace's own packages.
fn metadata() -> Result<serde_json::Value, String> {
    let out = Command::new(crate::cargo_bin())
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))
}

/// The workspace's publishable packages `(name, version)`, each after the ones it depends
/// on (the order to publish them in).
fn publishable() -> Result<Vec<(String, String)>, String> {
    publishable_in(&metadata()?)
}

/// [`publishable`], from `meta` already read.
fn publishable_in(meta: &serde_json::Value) -> Result<Vec<(String, String)>, String> {
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    let mut left: Vec<(String, String, Vec<String>)> = packages
        .iter()
        // `publish: null` is "to any registry"; `[]` is `publish = false`.
        .filter(|p| p["publish"].is_null())
        .filter(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m).starts_with(root().join("crates")))
        })
        .filter_map(|p| {
            // What it needs published first: its normal and build dependencies.
            let needs = p["dependencies"]
                .as_array()?
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect();
            Some((
                p["name"].as_str()?.to_owned(),
                p["version"].as_str()?.to_owned(),
                needs,
            ))
        })
        .collect();
    let names: Vec<String> = left.iter().map(|(n, _, _)| n.clone()).collect();
    let mut ordered: Vec<(String, String)> = Vec::new();
    while !left.is_empty() {
        let ready = left.iter().position(|(_, _, needs)| {
            needs
                .iter()
                .all(|d| !names.contains(d) || ordered.iter().any(|(o, _)| o == d))
        });
        let Some(i) = ready else {
            return Err(
                "release: the publishable crates depend on each other in a cycle".to_owned(),
            );
        };
        let (name, version, _) = left.remove(i);
        ordered.push((name, version));
    }
    Ok(ordered)
}
