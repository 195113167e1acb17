//! `cargo xtask load`: the resource under load (issue 4's performance target).
//!
//! Builds the `load` binary of the `aauth-demos` package, measures the warm verification in
//! process, then for the resource in agent-token mode and for the same handler without
//! AAuth starts the server pinned to core 0 and drives it from core 1 (with `taskset`, when
//! present) over loopback, bounded in time and request count. Reports requests per second,
//! latency percentiles, and verified rps × warm verification time (target ≥ 0.8: at least
//! 80 % of the server's time is the one signature check it cannot avoid).
//!
//! `--replay` measures what the replay check (on by default for state-changing requests)
//! costs: signed POSTs with it and without it, in process (the warm check, alternating
//! rounds) and over loopback (alternating runs), as ratios from the same run (target: at
//! most 5 % of a warm request).

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

fn warm(taskset: bool, bin: &str) -> Result<f64, String> {
    let out = pinned("0", taskset, bin)
        .arg("warm")
        .output()
        .map_err(|e| format!("load warm: {e}"))?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    field(&line, "warm_us").ok_or_else(|| format!("load warm printed {line:?}"))
}

/// One server (pinned to core 0) driven by one client (core 1); the client's line.
fn one_run(taskset: bool, bin: &str, mode: &str, drive: &[&str]) -> Result<String, String> {
    let mut server = pinned("0", taskset, bin)
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
        let mut args = vec!["drive", mode, &port];
        args.extend_from_slice(drive);
        pinned("1", taskset, bin)
            .args(&args)
            .output()
            .map_err(|e| format!("load drive: {e}"))
    });
    let _ = server.kill();
    let _ = server.wait();
    let out = outcome?;
    if !out.status.success() {
        return Err(format!(
            "load drive {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The replay check's cost: in process, then over loopback (three alternating pairs).
fn replay_cost(
    taskset: bool,
    bin: &str,
    seconds: &str,
    connections: &str,
    max: &str,
    pipeline: &str,
) -> Result<(), String> {
    let out = pinned("0", taskset, bin)
        .arg("warm-replay")
        .output()
        .map_err(|e| format!("load warm-replay: {e}"))?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    eprintln!("in process, the warm check of a POST: {line}");
    let mut ratios = Vec::new();
    for round in 0..3 {
        let mut rps = [0.0_f64; 2];
        let order: [(usize, &str); 2] = if round % 2 == 0 {
            [(0, "post"), (1, "post-noreplay")]
        } else {
            [(1, "post-noreplay"), (0, "post")]
        };
        for (slot, mode) in order {
            let line = one_run(taskset, bin, mode, &[seconds, connections, max, pipeline])?;
            eprintln!("{mode:>13}: {line}");
            if field(&line, "failed").unwrap_or(0.0) > 0.0 {
                return Err(format!("{mode}: requests failed: {line}"));
            }
            rps[slot] = field(&line, "rps").unwrap_or(0.0);
        }
        if rps[1] > 0.0 {
            ratios.push(rps[0] / rps[1]);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
    eprintln!(
        "over loopback: POST rps with the replay check / without = {median:.3} (median of {}; \
         cost {:.1} % of a request, target ≤ 5 %: {})",
        ratios.len(),
        (1.0 / median - 1.0) * 100.0,
        if median > 0.0 && 1.0 / median - 1.0 <= 0.05 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = "5".to_owned();
    let mut connections = "16".to_owned();
    let mut max = "100000".to_owned();
    let mut pipeline = "16".to_owned();
    let mut replay = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--replay" {
            replay = true;
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{a} needs a value"))?
            .clone();
        match a.as_str() {
            "--seconds" => seconds = v,
            "--connections" => connections = v,
            "--max" => max = v,
            "--pipeline" => pipeline = v,
            other => {
                return Err(format!(
                    "unknown option {other}; options: --seconds --connections --max --pipeline --replay"
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
    if replay {
        return replay_cost(taskset, &bin, &seconds, &connections, &max, &pipeline);
    }
    // The warm verification is timed before and after the runs (this VM's speed drifts
    // over seconds); the ratio uses their mean.
    let before = warm(taskset, &bin)?;
    let mut lines = Vec::new();
    for depth in ["1", pipeline.as_str()] {
        for mode in ["aauth", "plain"] {
            let line = one_run(taskset, &bin, mode, &[&seconds, &connections, &max, depth])?;
            eprintln!("{mode:>5}, {depth:>2} in flight per connection: {line}");
            lines.push((depth.to_owned(), mode, line));
        }
    }
    let after = warm(taskset, &bin)?;
    let warm_us = f64::midpoint(before, after);
    eprintln!("warm verification {before:.2} µs before, {after:.2} µs after (mean {warm_us:.2})");
    for pair in lines.chunks(2) {
        let rps = field(&pair[0].2, "rps").unwrap_or(0.0);
        let plain = field(&pair[1].2, "rps").unwrap_or(0.0);
        let share = rps * warm_us / 1e6;
        eprintln!(
            "{:>2} in flight: verified rps × warm time = {share:.3} (target ≥ 0.8: {}); \
             AAuth rps / plain rps = {:.3}",
            pair[0].0,
            if share >= 0.8 { "met" } else { "NOT met" },
            if plain > 0.0 { rps / plain } else { 0.0 }
        );
    }
    Ok(())
}
