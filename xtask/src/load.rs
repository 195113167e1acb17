//! `cargo xtask load`: the resource under load (issue 4's performance target).
//!
//! Builds the `load` binary of the `aauth-demos` package, measures the warm verification in
//! process, then for the resource in agent-token mode and for the same handler without
//! AAuth starts the server pinned to core 0 and drives it from core 1 (with `taskset`, when
//! present) over loopback, bounded in time and request count. Reports requests per second,
//! latency percentiles, and verified rps × warm verification time (target ≥ 0.8: at least
//! 80 % of the server's time is the one signature check it cannot avoid).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::{cargo, have, root};

fn field(line: &str, name: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn pinned(core: &str, taskset: bool, bin: &str) -> Command {
    if taskset {
        let mut c = Command::new("taskset");
        c.args(["-c", core, bin]);
        c
    } else {
        Command::new(bin)
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = "5".to_owned();
    let mut connections = "16".to_owned();
    let mut max = "100000".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| format!("{a} needs a value"))?
            .clone();
        match a.as_str() {
            "--seconds" => seconds = v,
            "--connections" => connections = v,
            "--max" => max = v,
            other => {
                return Err(format!(
                    "unknown option {other}; options: --seconds --connections --max"
                ));
            }
        }
    }
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "--package",
        "aauth-demos",
        "--bin",
        "load",
    ])?;
    let bin = root().join("target/release/load");
    let bin = bin.to_string_lossy().into_owned();
    let taskset = have("taskset", &["--version"]);
    if !taskset {
        eprintln!("!! taskset not found: server and client are not pinned to separate cores");
    }
    let out = pinned("0", taskset, &bin)
        .arg("warm")
        .output()
        .map_err(|e| format!("load warm: {e}"))?;
    let warm_line = String::from_utf8_lossy(&out.stdout).into_owned();
    let warm_us =
        field(&warm_line, "warm_us").ok_or_else(|| format!("load warm printed {warm_line:?}"))?;

    let mut results = Vec::new();
    for mode in ["aauth", "plain"] {
        let mut server = pinned("0", taskset, &bin)
            .args(["serve", mode])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("load serve: {e}"))?;
        let mut first = String::new();
        if let Some(stdout) = server.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut first);
        }
        let port = field(&first, "port").ok_or_else(|| format!("load serve printed {first:?}"));
        let outcome = port.and_then(|port| {
            let port = format!("{port}");
            pinned("1", taskset, &bin)
                .args(["drive", mode, &port, &seconds, &connections, &max])
                .output()
                .map_err(|e| format!("load drive: {e}"))
        });
        let _ = server.kill();
        let _ = server.wait();
        let out = outcome?;
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() {
            return Err(format!(
                "load drive {mode} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        eprintln!("{mode:>5}: {line}");
        results.push(line);
    }
    let rps = field(&results[0], "rps").unwrap_or(0.0);
    let plain = field(&results[1], "rps").unwrap_or(0.0);
    let share = rps * warm_us / 1e6;
    eprintln!(
        "warm verification {warm_us:.2} µs; verified rps × warm time = {share:.3} (target ≥ 0.8: {}); \
         AAuth rps / plain rps = {:.3}",
        if share >= 0.8 { "met" } else { "NOT met" },
        if plain > 0.0 { rps / plain } else { 0.0 }
    );
    Ok(())
}
