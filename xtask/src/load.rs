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
//!
//! `--proxy` puts `aauth serve resource-proxy` (a real process, from a generated
//! configuration, plain HTTP on loopback, its route in agent-token mode) in front of a
//! trivial upstream, beside a plain hyper reverse proxy to the same upstream, all three
//! pinned to core 0, and drives both proxies from core 1 as above (see [`proxy`]).
//!
//! `--redis` serves signed POSTs with the replay cache and a revocation list in memory,
//! and in the Redis of `AAUTH_REDIS_URL` (asked together, and apart), and reports the
//! Redis calls per request and Redis rps / memory rps (target ≥ 0.6; see [`redis`]).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{cargo, have, root};

mod proxy;
mod redis;

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

/// A server process, killed when dropped.
struct Server {
    child: Child,
    port: String,
    /// The port of its Redis call counts, if it prints one (`stats=`).
    stats: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `load ARGS` pinned to core 0 and reads the port it prints first.
fn start(taskset: bool, bin: &str, args: &[&str]) -> Result<Server, String> {
    let mut child = pinned("0", taskset, bin)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("load {}: {e}", args.join(" ")))?;
    let mut first = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut first);
    }
    let port = field(&first, "port").map(|p| format!("{p}"));
    let server = Server {
        child,
        port: port.clone().unwrap_or_default(),
        stats: field(&first, "stats").map(|p| format!("{p}")),
    };
    match port {
        Some(_) => Ok(server),
        None => Err(format!("load {} printed {first:?}", args.join(" "))),
    }
}

/// The client (pinned to core 1) driving the server on `port` with `mode`'s requests;
/// its line.
fn drive(
    taskset: bool,
    bin: &str,
    mode: &str,
    port: &str,
    drive: &[&str],
) -> Result<String, String> {
    let mut args = vec!["drive", mode, port];
    args.extend_from_slice(drive);
    let out = pinned("1", taskset, bin)
        .args(&args)
        .output()
        .map_err(|e| format!("load drive: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "load drive {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One server (pinned to core 0) driven by one client (core 1); the client's line.
fn one_run(taskset: bool, bin: &str, mode: &str, args: &[&str]) -> Result<String, String> {
    let server = start(taskset, bin, &["serve", mode])?;
    let line = drive(taskset, bin, mode, &server.port, args);
    drop(server);
    line
}

/// The replay check's cost: in process, then over loopback (three alternating pairs).
fn replay_cost(taskset: bool, bin: &str, o: &Options) -> Result<(), String> {
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
            let line = one_run(taskset, bin, mode, &o.drive_args(&o.pipeline))?;
            eprintln!("{mode:>13}: {line}");
            no_failures(mode, &line)?;
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

/// What a run measures, from the command line.
struct Options {
    seconds: String,
    connections: String,
    max: String,
    pipeline: String,
    replay: bool,
    proxy: bool,
    redis: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            seconds: "5".to_owned(),
            connections: "16".to_owned(),
            max: "100000".to_owned(),
            pipeline: "16".to_owned(),
            replay: false,
            proxy: false,
            redis: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--replay" => o.replay = true,
                "--proxy" => o.proxy = true,
                "--redis" => o.redis = true,
                "--seconds" | "--connections" | "--max" | "--pipeline" => {
                    let v = it
                        .next()
                        .ok_or_else(|| format!("{a} needs a value"))?
                        .clone();
                    match a.as_str() {
                        "--seconds" => o.seconds = v,
                        "--connections" => o.connections = v,
                        "--max" => o.max = v,
                        _ => o.pipeline = v,
                    }
                }
                other => {
                    return Err(format!(
                        "unknown option {other}; options: --seconds --connections --max \
                         --pipeline --replay --proxy --redis"
                    ));
                }
            }
        }
        if [o.replay, o.proxy, o.redis].iter().filter(|m| **m).count() > 1 {
            return Err("one of --replay, --proxy, --redis".to_owned());
        }
        Ok(o)
    }

    /// The driver's arguments after the mode and port, for `depth` in flight.
    fn drive_args<'a>(&'a self, depth: &'a str) -> [&'a str; 4] {
        [&self.seconds, &self.connections, &self.max, depth]
    }
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` in the workspace).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// The driver's lines at one depth: the AAuth server's and the plain one's.
struct Pair {
    depth: String,
    aauth: String,
    plain: String,
}

/// Prints the warm time and, per depth, AAuth rps × the warm time against `target`
/// (`what`: "verified", "proxied") and AAuth rps / plain rps.
fn report(pairs: &[Pair], before: f64, after: f64, target: f64, what: &str) {
    let warm_us = f64::midpoint(before, after);
    eprintln!("warm verification {before:.2} µs before, {after:.2} µs after (mean {warm_us:.2})");
    for p in pairs {
        let rps = field(&p.aauth, "rps").unwrap_or(0.0);
        let plain = field(&p.plain, "rps").unwrap_or(0.0);
        let share = rps * warm_us / 1e6;
        eprintln!(
            "{:>2} in flight: {what} rps × warm time = {share:.3} (target ≥ {target}: {}); \
             AAuth rps / plain rps = {:.3}",
            p.depth,
            if share >= target { "met" } else { "NOT met" },
            if plain > 0.0 { rps / plain } else { 0.0 }
        );
    }
}

/// A driver line that reports failed requests is an error.
fn no_failures(what: &str, line: &str) -> Result<(), String> {
    if field(line, "failed").unwrap_or(0.0) > 0.0 {
        return Err(format!("{what}: requests failed: {line}"));
    }
    Ok(())
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = Options::parse(args)?;
    // Both binaries in one build, so that `load` is the same build with `--proxy` or not.
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "--package",
        "aauth-demos",
        "--bin",
        "load",
        "--package",
        "aauth-cli",
        "--bin",
        "aauth",
    ])?;
    let release = target_dir().join("release");
    let bin = release.join("load").to_string_lossy().into_owned();
    let taskset = have("taskset", &["--version"]);
    if !taskset {
        eprintln!("!! taskset not found: servers and client are not pinned to separate cores");
    }
    if o.replay {
        return replay_cost(taskset, &bin, &o);
    }
    if o.redis {
        return redis::run(&o, taskset, &bin);
    }
    if o.proxy {
        let aauth = release.join("aauth").to_string_lossy().into_owned();
        return proxy::run(&o, taskset, &bin, &aauth);
    }
    // The warm verification is timed before and after the runs (this VM's speed drifts
    // over seconds); the ratio uses their mean.
    let before = warm(taskset, &bin)?;
    let mut pairs = Vec::new();
    for depth in ["1", o.pipeline.as_str()] {
        let line = |mode: &str| -> Result<String, String> {
            let line = one_run(taskset, &bin, mode, &o.drive_args(depth))?;
            eprintln!("{mode:>5}, {depth:>2} in flight per connection: {line}");
            Ok(line)
        };
        let aauth = line("aauth")?;
        let plain = line("plain")?;
        pairs.push(Pair {
            depth: depth.to_owned(),
            aauth,
            plain,
        });
    }
    let after = warm(taskset, &bin)?;
    report(&pairs, before, after, 0.8, "verified");
    Ok(())
}
