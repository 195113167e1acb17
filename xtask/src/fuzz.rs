//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (outside the workspace).
//!
//! cargo-fuzz needs nightly compiler features; the toolchain here is stable, so the runs
//! set `RUSTC_BOOTSTRAP=1`, as rustls's CI does.

use crate::{have, root, run_in};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if !have("cargo-fuzz", &["--version"]) {
        return Err("cargo-fuzz is not installed: cargo install --locked cargo-fuzz".to_owned());
    }
    let dir = root().join("fuzz");
    let mut seconds = "10".to_owned();
    let mut target = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => {}
            "--seconds" => seconds = it.next().ok_or("--seconds needs a value")?.clone(),
            t => target = Some(t.to_owned()),
        }
    }
    let targets = match target {
        Some(t) => vec![t],
        None => list_targets(&dir)?,
    };
    let bootstrap = [("RUSTC_BOOTSTRAP", "1")];
    for t in &targets {
        let corpus = format!("corpus/{t}");
        let seeds = format!("seeds/{t}");
        std::fs::create_dir_all(dir.join(&corpus)).map_err(|e| e.to_string())?;
        let mut cmd = vec!["fuzz", "run", t.as_str(), corpus.as_str()];
        if dir.join(&seeds).is_dir() {
            cmd.push(seeds.as_str());
        }
        let time = format!("-max_total_time={seconds}");
        cmd.extend(["--", time.as_str()]);
        run_in(&dir, "cargo", &cmd, &bootstrap)?;
    }
    eprintln!("fuzzed {} target(s) for {seconds}s each", targets.len());
    Ok(())
}

fn list_targets(dir: &std::path::Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir.join("fuzz_targets"))
        .map_err(|e| format!("fuzz/fuzz_targets: {e}"))?;
    for e in entries {
        let name = e.map_err(|e| e.to_string())?.file_name();
        if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".rs")) {
            out.push(stem.to_owned());
        }
    }
    out.sort();
    Ok(out)
}
