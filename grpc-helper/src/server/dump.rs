//! Debug dump on SIGUSR2: `RpcServerDump-YYYYMMDDhhmmss.txt` in the logs folder (mode 0600),
//! with the server's state, every pending call, the runtime's task counts and every thread.

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

    let _ = writeln!(out, "\nPending RPC calls: ({})", state.pending.len());
    for call in &state.pending {
        let _ = writeln!(
            out,
            " - [RPC] {} >>> {}.{} ({}) running for {}",
            call.caller,
            call.service,
            call.method,
            call.request,
            seconds(call.elapsed)
        );
    }

    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let metrics = handle.metrics();
        let _ = writeln!(
            out,
            "\nTokio runtime: {} worker thread(s), {} alive task(s)",
            metrics.num_workers(),
            metrics.num_alive_tasks()
        );
    }
    let _ = writeln!(out, "\nThreads:");
    for (tid, name, state) in threads() {
        let _ = writeln!(out, " - {tid} {name:<20} {state}");
    }
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Every thread of this process: id, name and scheduler state (from /proc, Linux).
fn threads() -> Vec<(u32, String, String)> {
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
            Some((tid, name, state.to_owned()))
        })
        .collect();
    list.sort();
    list
}
