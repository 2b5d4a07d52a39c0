//! The load generator: N clients (one connection each) × M calls in flight per client, closed
//! loop, for a warm-up then a measured window; per-request latencies in a sorted `Vec`.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::targets::EchoClient;

/// How hard and how long to load a target.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub connections: usize,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Upper bound of the calls one worker makes (the time window ends it long before).
const MAX_CALLS_PER_WORKER: u64 = 50_000_000;
/// Upper bound of the streams one worker opens.
const MAX_STREAMS_PER_WORKER: u64 = 10_000_000;
/// Extra time a run may take past its window before its workers are cancelled.
const OVERRUN: Duration = Duration::from_secs(10);

/// Per-request latencies of the measured window, sorted.
pub struct Latencies(Vec<u64>);

impl Latencies {
    fn new(mut nanos: Vec<u64>) -> Self {
        nanos.sort_unstable();
        Self(nanos)
    }

    fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
        self.0.sort_unstable();
    }

    /// Nearest-rank quantile (`q` in 0..=1).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.0.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        Some(Duration::from_nanos(self.0[rank - 1]))
    }
}

/// Outcome of a unary run.
pub struct UnaryReport {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    pub latencies: Latencies,
    /// CPU time used during the window by this process (clients, and servers when in-process)
    /// plus the external server process, if any.
    pub cpu: Option<Duration>,
}

impl UnaryReport {
    /// Adds the results of another window on the same target.
    pub fn merge(&mut self, other: UnaryReport) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.window += other.window;
        self.latencies.merge(other.latencies);
        self.cpu = self.cpu.zip(other.cpu).map(|(a, b)| a + b);
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    pub fn cpu_per_call(&self) -> Option<Duration> {
        let cpu = self.cpu?;
        (self.ok > 0).then(|| cpu.div_f64(self.ok as f64))
    }
}

/// Outcome of a streaming run.
pub struct StreamReport {
    pub items: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    pub cpu: Option<Duration>,
}

impl StreamReport {
    /// Adds the results of another window on the same target.
    pub fn merge(&mut self, other: StreamReport) {
        self.items += other.items;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.window += other.window;
        self.cpu = self.cpu.zip(other.cpu).map(|(a, b)| a + b);
    }

    pub fn rate(&self) -> f64 {
        self.items as f64 / self.window.as_secs_f64()
    }

    pub fn cpu_per_item(&self) -> Option<Duration> {
        let cpu = self.cpu?;
        (self.items > 0).then(|| cpu.div_f64(self.items as f64))
    }
}

#[derive(Default)]
struct WorkerStats {
    latencies: Vec<u64>,
    items: u64,
    errors: u64,
    first_error: Option<String>,
}

impl WorkerStats {
    fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    fn merge(&mut self, other: WorkerStats) {
        self.latencies.extend(other.latencies);
        self.items += other.items;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Closed-loop unary calls: `spec.concurrency` workers per client, each with one call in
/// flight. Only calls that start after the warm-up and end inside the window are counted.
pub async fn unary<C: EchoClient>(clients: &[C], spec: &LoadSpec, server_pid: Option<u32>) -> UnaryReport {
    let from = Instant::now() + spec.warmup;
    let end = from + spec.duration;
    let cpu = tokio::spawn(cpu_during(from, end, server_pid));
    let mut workers = JoinSet::new();
    for (c, client) in clients.iter().enumerate() {
        for w in 0..spec.concurrency {
            let client = client.clone();
            // The same size for every worker: "bench payload cc/www".
            let payload = format!("bench payload {c:02}/{w:03}");
            workers.spawn(unary_worker(client, payload, from, end));
        }
    }
    let stats = collect(workers, end + OVERRUN).await;
    UnaryReport {
        ok: stats.latencies.len() as u64,
        errors: stats.errors,
        first_error: stats.first_error,
        window: spec.duration,
        latencies: Latencies::new(stats.latencies),
        cpu: cpu.await.ok().flatten(),
    }
}

async fn unary_worker<C: EchoClient>(mut client: C, payload: String, from: Instant, end: Instant) -> WorkerStats {
    let mut stats = WorkerStats::default();
    for _ in 0..MAX_CALLS_PER_WORKER {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let result = client.echo(payload.clone()).await;
        let done = Instant::now();
        if start < from || done > end {
            continue;
        }
        match result {
            Ok(bar) if bar == payload => stats.latencies.push((done - start).as_nanos() as u64),
            Ok(bar) => stats.error(|| format!("wrong echo: {bar:?} for {payload:?}")),
            Err(status) => stats.error(|| format!("{:?}: {}", status.code(), status.message())),
        }
    }
    stats
}

/// Server-streaming calls, one stream in flight per client, back to back: items received
/// inside the window are counted.
pub async fn streaming<C: EchoClient>(clients: &[C], spec: &LoadSpec, server_pid: Option<u32>) -> StreamReport {
    let from = Instant::now() + spec.warmup;
    let end = from + spec.duration;
    let cpu = tokio::spawn(cpu_during(from, end, server_pid));
    let mut workers = JoinSet::new();
    for client in clients {
        let mut client = client.clone();
        workers.spawn(async move {
            let mut stats = WorkerStats::default();
            for _ in 0..MAX_STREAMS_PER_WORKER {
                if Instant::now() >= end {
                    break;
                }
                match client.stream(from, end).await {
                    Ok(items) => stats.items += items,
                    Err(status) => stats.error(|| format!("{:?}: {}", status.code(), status.message())),
                }
            }
            stats
        });
    }
    let stats = collect(workers, end + OVERRUN).await;
    StreamReport {
        items: stats.items,
        errors: stats.errors,
        first_error: stats.first_error,
        window: spec.duration,
        cpu: cpu.await.ok().flatten(),
    }
}

/// Joins every worker; those still running at `give_up` are cancelled and count as errors.
async fn collect(mut workers: JoinSet<WorkerStats>, give_up: Instant) -> WorkerStats {
    let mut total = WorkerStats::default();
    loop {
        match tokio::time::timeout_at(give_up.into(), workers.join_next()).await {
            Ok(Some(Ok(stats))) => total.merge(stats),
            Ok(Some(Err(e))) => total.error(|| format!("worker failed: {e}")),
            Ok(None) => break,
            Err(_) => {
                let stuck = workers.len();
                workers.abort_all();
                for _ in 0..stuck {
                    total.error(|| format!("{stuck} worker(s) still waiting for a reply {OVERRUN:?} after the window"));
                }
                break;
            }
        }
    }
    total
}

/// CPU time used between `from` and `end` by this process and `other` (a server process).
async fn cpu_during(from: Instant, end: Instant, other: Option<u32>) -> Option<Duration> {
    let sample = || -> Option<Duration> {
        let own = process_cpu("self")?;
        match other {
            Some(pid) => Some(own + process_cpu(&pid.to_string())?),
            None => Some(own),
        }
    };
    tokio::time::sleep_until(from.into()).await;
    let before = sample()?;
    tokio::time::sleep_until(end.into()).await;
    let after = sample()?;
    Some(after.saturating_sub(before))
}

/// utime + stime of a process, from `/proc/<pid>/stat` (in USER_HZ = 100 ticks per second, the
/// value on every Linux platform Rust targets).
pub fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Machine-wide CPU time from the first line of `/proc/stat`: (busy, steal, total), busy being
/// user + nice + system (irq and softirq time, much of it our own loopback traffic, is charged
/// to no process, so it is left out).
pub fn machine_cpu() -> Option<(Duration, Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    let ticks = |n: u64| Duration::from_millis(n * 10);
    let busy = field(0) + field(1) + field(2);
    let total: u64 = v.iter().take(8).sum();
    Some((ticks(busy), ticks(field(7)), ticks(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let l = Latencies::new((1..=1000).rev().collect());
        assert_eq!(l.quantile(0.5), Some(Duration::from_nanos(500)));
        assert_eq!(l.quantile(0.99), Some(Duration::from_nanos(990)));
        assert_eq!(l.quantile(0.999), Some(Duration::from_nanos(999)));
        assert_eq!(l.quantile(1.0), Some(Duration::from_nanos(1000)));
        assert_eq!(Latencies::new(vec![]).quantile(0.5), None);
    }
}
