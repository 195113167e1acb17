//! `cargo xtask load --proxy`: the protecting proxy under load.
//!
//! `load proxy-world DIR` writes the proxy's configuration and serves the upstream and
//! the agent tokens' issuer; `aauth serve resource-proxy --config DIR/proxy.toml` and
//! `load plain-proxy` (a hyper reverse proxy without AAuth) stand in front of that one
//! upstream. All three run on core 0, the driver on core 1, as the resource's load does.
//! Both proxies are driven with the same signed requests (the plain one forwards them
//! unread) at 1 and at `--pipeline` requests in flight per connection; beside each
//! driver's line, the CPU time per request the proxy and the upstream used (from
//! `/proc/PID/task/*/schedstat`), so that the verification's share of core 0 can be read
//! even when the machine is shared. Then the `aauth` process's resident set is read from
//! `/proc` once it has answered at least [`REQUESTS_BEFORE_MEMORY`] requests (topped up if
//! the timed runs fell short).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Options, Pair, Server, drive, field, no_failures, pinned, report, start, warm};

/// Proxied AAuth requests per second × the warm verification time, at least.
const TARGET: f64 = 0.7;
/// The proxy's resident set, at most (MiB).
const MAX_RSS_MIB: f64 = 64.0;
/// How many requests the proxy answers before its memory is read.
const REQUESTS_BEFORE_MEMORY: u64 = 100_000;

/// `aauth serve resource-proxy --config DIR/proxy.toml` on core 0, its log in
/// `DIR/proxy.log`; its port read from the log's "serving" line.
fn start_aauth(taskset: bool, aauth: &str, dir: &Path) -> Result<Server, String> {
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{log_path:?}: {e}"))?;
    let mut cmd: Command = pinned("0", taskset, aauth);
    let child = cmd
        .args(["serve", "resource-proxy", "--config", "proxy.toml"])
        .current_dir(dir)
        .env("AAUTH_LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{aauth} serve resource-proxy: {e}"))?;
    let mut server = Server {
        child,
        port: String::new(),
        stats: None,
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(port) = text.lines().find_map(serving_port) {
            server.port = port;
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "aauth serve resource-proxy exited ({status}) before serving:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "aauth serve resource-proxy did not say it was serving within 30 s (see {log_path:?})"
    ))
}

/// The port of a JSON log line `{"message":"serving",…,"listen":"127.0.0.1:PORT"}`.
fn serving_port(line: &str) -> Option<String> {
    if !line.contains(r#""message":"serving""#) {
        return None;
    }
    let (_, rest) = line.split_once(r#""listen":""#)?;
    let (listen, _) = rest.split_once('"')?;
    let (_, port) = listen.rsplit_once(':')?;
    Some(port.to_owned())
}

/// The CPU time the threads of process `pid` have run, in ns (the sum of their
/// `/proc/PID/task/*/schedstat`); `None` where that is not readable.
pub(super) fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// CPU time per request during one drive, in µs: the proxy's and the upstream's.
#[derive(Clone, Copy)]
struct Cpu {
    proxy: Option<f64>,
    upstream: Option<f64>,
}

impl Cpu {
    fn total(self) -> Option<f64> {
        Some(self.proxy? + self.upstream?)
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(p), Some(u)) = (self.proxy, self.upstream) {
            write!(f, " cpu_proxy_us={p:.1} cpu_upstream_us={u:.1}")?;
        }
        Ok(())
    }
}

/// `VmRSS` and `VmHWM` of process `pid`, in MiB.
fn memory(pid: u32) -> Result<(f64, f64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

pub(super) fn run(o: &Options, taskset: bool, load: &str, aauth: &str) -> Result<(), String> {
    let dir = super::target_dir().join("load-proxy");
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();
    let world = start(taskset, load, &["proxy-world", &dir_arg])?;
    let proxy = start_aauth(taskset, aauth, &dir)?;
    let plain = start(taskset, load, &["plain-proxy", &world.port])?;
    eprintln!(
        "upstream on port {}, aauth serve resource-proxy on {} (pid {}), plain proxy on {}",
        world.port,
        proxy.port,
        proxy.child.id(),
        plain.port
    );
    let pids = [proxy.child.id(), plain.child.id(), world.child.id()];
    let before = warm(taskset, load)?;
    let mut pairs = Vec::new();
    let mut cpu = Vec::new();
    let mut proxied = 0;
    for depth in ["1", o.pipeline.as_str()] {
        // Both proxies get the same signed requests: the plain one forwards them unread.
        let run = |name: &str, port: &str, pid: u32| -> Result<(String, Cpu), String> {
            let at = (cpu_ns(pid), cpu_ns(pids[2]));
            let line = drive(taskset, load, "aauth", port, &o.drive_args(depth))?;
            no_failures(name, &line)?;
            let sent = field(&line, "sent").unwrap_or(0.0);
            let per = |a: Option<u64>, b: Option<u64>| {
                Some((b?.checked_sub(a?)? as f64) / 1e3 / sent).filter(|v| v.is_finite())
            };
            let used = Cpu {
                proxy: per(at.0, cpu_ns(pid)),
                upstream: per(at.1, cpu_ns(pids[2])),
            };
            eprintln!("{name}, {depth:>2} in flight per connection: {line}{used}");
            Ok((line, used))
        };
        let (aauth_line, aauth_cpu) = run("aauth proxy", &proxy.port, pids[0])?;
        proxied += field(&aauth_line, "sent").unwrap_or(0.0) as u64;
        let (plain_line, plain_cpu) = run("plain proxy", &plain.port, pids[1])?;
        cpu.push((depth.to_owned(), aauth_cpu, plain_cpu));
        pairs.push(Pair {
            depth: depth.to_owned(),
            aauth: aauth_line,
            plain: plain_line,
        });
    }
    let after = warm(taskset, load)?;
    report(&pairs, before, after, TARGET, "proxied");
    let warm_us = f64::midpoint(before, after);
    for (depth, aauth_cpu, plain_cpu) in &cpu {
        if let (Some(a), Some(p)) = (aauth_cpu.total(), plain_cpu.total()) {
            eprintln!(
                "{depth:>2} in flight: core 0's CPU per request (proxy + upstream): AAuth \
                 {a:.1} µs, plain {p:.1} µs; the warm verification's share of it {:.3}",
                warm_us / a
            );
        }
    }
    if proxied < REQUESTS_BEFORE_MEMORY {
        let more = (REQUESTS_BEFORE_MEMORY - proxied).to_string();
        let line = drive(
            taskset,
            load,
            "aauth",
            &proxy.port,
            &["120", &o.connections, &more, &o.pipeline],
        )?;
        no_failures("aauth proxy", &line)?;
        proxied += field(&line, "sent").unwrap_or(0.0) as u64;
    }
    let (rss, hwm) = memory(proxy.child.id())?;
    let (plain_rss, plain_hwm) = memory(plain.child.id())?;
    eprintln!(
        "aauth serve resource-proxy after {proxied} requests: VmRSS {rss:.1} MiB, VmHWM (peak) \
         {hwm:.1} MiB (target ≤ {MAX_RSS_MIB} MiB: {}); the plain proxy: VmRSS \
         {plain_rss:.1} MiB, VmHWM {plain_hwm:.1} MiB",
        if hwm <= MAX_RSS_MIB { "met" } else { "NOT met" }
    );
    drop((plain, proxy, world));
    if proxied < REQUESTS_BEFORE_MEMORY {
        return Err(format!(
            "the proxy answered {proxied} requests, fewer than the {REQUESTS_BEFORE_MEMORY} \
             its memory is measured after"
        ));
    }
    if hwm > MAX_RSS_MIB {
        return Err(format!(
            "aauth serve resource-proxy's peak resident set is {hwm:.1} MiB after {proxied} \
             requests, over the {MAX_RSS_MIB} MiB target"
        ));
    }
    Ok(())
}
