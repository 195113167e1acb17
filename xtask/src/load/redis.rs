//! `cargo xtask load --redis`: the resource's shared state in Redis, beside memory.
//!
//! The same in-process resource as `--replay`'s (one route in agent-token mode, signed
//! POSTs, each new: the state-changing requests the replay check applies to) served three
//! ways, one after the other at each depth: `post-memory` (the replay cache and a
//! revocation list in this process), `post-redis` (both in the Redis of
//! `AAUTH_REDIS_URL`, default `redis://127.0.0.1:6379`, asked together: one round trip a
//! request) and `post-redis-apart` (both in Redis, asked apart: two). The keys live under
//! a fresh prefix, deleted at the end (also when the run fails). Beside each driver's line:
//! the Redis calls per request the server made (its store metrics: one call, one round
//! trip) and their mean time as the server saw it, and the CPU time per request of the
//! server and of the Redis server (`/proc/PID/task/*/schedstat`). Then, per depth, the
//! ratio of Redis rps to memory rps (target ≥ 0.6).

use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Read as _;
use std::process::Command;

use super::proxy::cpu_ns;
use super::{Options, drive, field, no_failures, start};

/// Redis rps / memory rps, at least.
const TARGET: f64 = 0.6;

/// Deletes the run's keys when dropped.
struct Clean<'a> {
    bin: &'a str,
    prefix: String,
}

impl Drop for Clean<'_> {
    fn drop(&mut self) {
        match Command::new(self.bin)
            .args(["redis-clean", &self.prefix])
            .output()
        {
            Ok(out) if out.status.success() => eprintln!(
                "the run's Redis keys ({}*) deleted: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stdout).trim()
            ),
            Ok(out) => eprintln!(
                "!! the keys under {} were not deleted: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(err) => eprintln!("!! the keys under {} were not deleted: {err}", self.prefix),
        }
    }
}

/// The calls line the server answers on its stats port.
fn calls(port: &str) -> Result<(f64, f64), String> {
    let mut tcp = std::net::TcpStream::connect((
        "127.0.0.1",
        port.parse::<u16>().map_err(|e| e.to_string())?,
    ))
    .map_err(|e| format!("stats port {port}: {e}"))?;
    let mut line = String::new();
    tcp.read_to_string(&mut line)
        .map_err(|e| format!("stats port {port}: {e}"))?;
    Ok((
        field(&line, "calls").unwrap_or(0.0),
        field(&line, "call_us").unwrap_or(0.0),
    ))
}

/// One mode at one depth: its driver's line with what the server and Redis spent.
fn one(
    o: &Options,
    taskset: bool,
    bin: &str,
    (mode, depth, prefix): (&str, &str, &str),
    redis_pid: u32,
) -> Result<f64, String> {
    let server = start(taskset, bin, &["serve", mode, prefix])?;
    let stats = server.stats.clone();
    let before = (
        stats.as_deref().map(calls).transpose()?,
        cpu_ns(server.child.id()),
        cpu_ns(redis_pid),
    );
    let line = drive(taskset, bin, mode, &server.port, &o.drive_args(depth))?;
    let after = (
        stats.as_deref().map(calls).transpose()?,
        cpu_ns(server.child.id()),
        cpu_ns(redis_pid),
    );
    drop(server);
    no_failures(mode, &line)?;
    let sent = field(&line, "sent").unwrap_or(0.0).max(1.0);
    let mut extra = String::new();
    if let (Some((c0, us0)), Some((c1, us1))) = (before.0, after.0) {
        let n = c1 - c0;
        let mean = if n > 0.0 { (us1 - us0) / n } else { 0.0 };
        extra.push_str(&format!(
            " redis_calls_per_req={:.2} redis_call_us={mean:.0}",
            n / sent
        ));
    }
    let per = |a: Option<u64>, b: Option<u64>| {
        Some((b?.checked_sub(a?)? as f64) / 1e3 / sent).filter(|v| v.is_finite())
    };
    if let Some(us) = per(before.1, after.1) {
        extra.push_str(&format!(" cpu_server_us={us:.1}"));
    }
    if let Some(us) = per(before.2, after.2) {
        extra.push_str(&format!(" cpu_redis_us={us:.1}"));
    }
    eprintln!("{mode:>16}, {depth:>2} in flight per connection: {line}{extra}");
    Ok(field(&line, "rps").unwrap_or(0.0))
}

pub(super) fn run(o: &Options, taskset: bool, bin: &str) -> Result<(), String> {
    let out = Command::new(bin)
        .arg("redis-info")
        .output()
        .map_err(|e| format!("load redis-info: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "no Redis to measure (AAUTH_REDIS_URL, default redis://127.0.0.1:6379): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let info = String::from_utf8_lossy(&out.stdout).into_owned();
    let redis_pid = field(&info, "pid").map_or(0, |p| p as u32);
    // A fresh prefix: the process id and a random number (`RandomState`'s keys).
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let clean = Clean {
        bin,
        prefix: format!("aauth-load:{}-{random:016x}:", std::process::id()),
    };
    eprintln!(
        "Redis server pid {redis_pid} (not pinned: it runs where the scheduler puts it), keys \
         under {}",
        clean.prefix
    );
    let mut ratios = Vec::new();
    for depth in ["1", o.pipeline.as_str()] {
        let mut rps = [0.0_f64; 3];
        for (slot, mode) in ["post-memory", "post-redis", "post-redis-apart"]
            .into_iter()
            .enumerate()
        {
            rps[slot] = one(o, taskset, bin, (mode, depth, &clean.prefix), redis_pid)?;
        }
        ratios.push((depth, rps));
    }
    for (depth, [memory, joint, apart]) in ratios {
        let ratio = |x: f64| if memory > 0.0 { x / memory } else { 0.0 };
        eprintln!(
            "{depth:>2} in flight: Redis rps / memory rps = {:.3} (target ≥ {TARGET}: {}); \
             asked apart (two round trips) / memory = {:.3}",
            ratio(joint),
            if ratio(joint) >= TARGET {
                "met"
            } else {
                "NOT met"
            },
            ratio(apart)
        );
    }
    drop(clean);
    Ok(())
}
