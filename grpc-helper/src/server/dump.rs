//! Debug dump on SIGUSR2: `RpcServerDump-YYYYMMDDhhmmss.txt` in the logs folder (mode 0600),
//! with the server's state, every pending call with its request, the runtime's workers and task
//! counts, and every thread with what the kernel says it waits on.
//!
//! Not in it: the stack of each thread or task. Another thread's stack cannot be read from
//! inside the process without stopping it (a debugger's job: `gdb -p <pid> -batch -ex 'thread
//! apply all bt'`), and tokio's task dumps exist only in builds with `--cfg tokio_unstable
//! --cfg tokio_taskdump`. Each pending call is one task, so the list of calls says what the
//! tasks serving requests are doing.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::ServiceInfo;
use crate::call::PendingCall;

/// What a dump shows of the server.
pub(crate) struct State {
    pub(crate) local_addr: SocketAddr,
    pub(crate) uptime: Duration,
    pub(crate) shutting_down: bool,
    pub(crate) services: Vec<ServiceInfo>,
    pub(crate) pending: Vec<PendingCall>,
    /// The events queues, when they are this process's.
    pub(crate) events: Option<crate::events::EventTotals>,
}

/// Writes one dump now; returns its path.
pub(crate) fn write_dump(state: &State, logs_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(logs_dir)?;
    let now = chrono::Local::now();
    let mut path = logs_dir.join(format!("RpcServerDump-{}.txt", now.format("%Y%m%d%H%M%S")));
    // Two dumps in one second: keep both.
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = logs_dir.join(format!("RpcServerDump-{}-{n}.txt", now.format("%Y%m%d%H%M%S")));
    }
    let text = render(state, &now.to_rfc3339());
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

fn render(state: &State, when: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "grpc-helper debug dump, {when}");
    let _ = writeln!(
        out,
        "Server: {} (pid {}), up {:.1}s, {}",
        state.local_addr,
        std::process::id(),
        state.uptime.as_secs_f64(),
        if state.shutting_down { "shutting down" } else { "serving" }
    );
    let _ = writeln!(out, "\nServices:");
    for info in &state.services {
        let _ = writeln!(
            out,
            " - {} ({}, API {}..{})",
            info.name, info.version, info.supported_api_version, info.current_api_version
        );
    }

    if let Some(t) = state.events {
        let _ = writeln!(
            out,
            "\nEvents queues: {} ({} listening, {} retained), {} events waiting, {} dropped from full queues",
            t.queues,
            t.listening,
            t.queues - t.listening,
            t.pending,
            t.dropped
        );
    }

    let _ = writeln!(out, "\nPending RPC calls: ({})", state.pending.len());
    for call in &state.pending {
        // The original's line: `[RPC] <peer> >>> <Service>.<method> (<request>)`.
        let content = call.content.clone().unwrap_or_else(|| format!("client stream of {}", call.request));
        let _ = writeln!(
            out,
            " - [RPC] {} >>> {}.{} ({content}) running for {}",
            call.caller,
            call.service,
            call.method,
            seconds(call.elapsed)
        );
    }

    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        runtime(&mut out, &handle.metrics());
    }
    // id, name, state, and the kernel function a sleeping thread waits in.
    let _ = writeln!(out, "\nThreads:");
    for thread in threads() {
        let _ = writeln!(out, " - {} {:<20} {:<14} {}", thread.tid, thread.name, thread.state, thread.wchan);
    }
    out
}

/// What tokio tells without `--cfg tokio_unstable`: workers, tasks, and whether each worker is
/// parked (waiting for work) or running a task.
fn runtime(out: &mut String, metrics: &tokio::runtime::RuntimeMetrics) {
    let _ = writeln!(
        out,
        "\nTokio runtime: {} worker thread(s), {} alive task(s), {} task(s) queued for a worker",
        metrics.num_workers(),
        metrics.num_alive_tasks(),
        metrics.global_queue_depth()
    );
    for worker in 0..metrics.num_workers() {
        // Odd while the worker is parked (tokio's documented invariant).
        let parked = metrics.worker_park_unpark_count(worker) % 2 == 1;
        let _ = writeln!(
            out,
            " - worker {worker}: {}, busy {} in all, parked {} time(s)",
            if parked { "parked (idle)" } else { "running a task" },
            seconds(metrics.worker_total_busy_duration(worker)),
            metrics.worker_park_count(worker)
        );
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

struct Thread {
    tid: u32,
    name: String,
    state: String,
    /// The kernel function a sleeping thread waits in (`ep_poll`: tokio's I/O driver,
    /// `futex_wait_queue`: a parked worker or a lock), when the kernel shows it.
    wchan: String,
}

/// Every thread of this process: id, name, scheduler state and wait channel (from /proc, Linux).
fn threads() -> Vec<Thread> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut list: Vec<_> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_owned();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised name: "tid (name) S ...".
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("?");
            let state = match state {
                "R" => "R (running)",
                "S" => "S (sleeping)",
                "D" => "D (disk sleep)",
                "T" | "t" => "T (stopped)",
                "Z" => "Z (zombie)",
                other => other,
            };
            let wchan = std::fs::read_to_string(entry.path().join("wchan")).unwrap_or_default();
            let wchan = if wchan.is_empty() || wchan == "0" { "-".to_owned() } else { wchan };
            Some(Thread { tid, name, state: state.to_owned(), wchan })
        })
        .collect();
    list.sort_by_key(|t| t.tid);
    list
}
