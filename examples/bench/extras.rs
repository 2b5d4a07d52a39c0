//! The measures that are not a load run: reconnect latency of a retrying `RpcClient`, the time
//! from a server process's start to its first reply, and the RSS and CPU per call of a server
//! process (the bench re-runs itself as that process: `--child`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grpc_helper::RpcClient;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use crate::targets::{
    BareClient, EchoClient, EchoServer, HelperClient, ServerKind, StderrLines, wait_exit, watch_output,
};

// ---------------------------------------------------------------------------------------------
// Reconnect latency
// ---------------------------------------------------------------------------------------------

/// Reconnect latencies of one retry policy.
pub struct ReconnectReport {
    /// Time from the restarted server's `bind` to the retrying call's successful reply.
    pub samples: Vec<Duration>,
    /// Calls that ended with an error while the server was down instead of retrying (another
    /// call was started each time), and the first such error.
    pub not_retried: usize,
    pub first_not_retried: Option<String>,
    /// Rounds with no successful reply, and the first reason.
    pub failures: usize,
    pub first_failure: Option<String>,
}

/// Calls started in one round while the server is down, at most (the rest are not retried).
const CALLS_PER_ROUND: usize = 5;

/// `rounds` times: stop the helper server, start a call from an `RpcClient` (which retries
/// while the port refuses connections), wait `down`, restart the server on the same port, and
/// time its listening again → the call's reply. A call that gives up while the server is down
/// is counted and replaced by a new one.
pub async fn reconnect(
    server_rt: &Handle,
    rounds: usize,
    down: Duration,
    max_retry_delay: Option<Duration>,
) -> Result<ReconnectReport, String> {
    let mut server = EchoServer::start(server_rt, ServerKind::Helper, 0, 1).await?;
    let port = server.port();
    let mut builder = RpcClient::builder("127.0.0.1", port).name("bench-reconnect").timeout(Duration::from_secs(20));
    if let Some(delay) = max_retry_delay {
        builder = builder.max_retry_delay(delay);
    }
    let client = HelperClient::from_client(&builder.connect_lazy().map_err(|e| e.to_string())?)?;
    client.clone().echo("warm-up".into()).await.map_err(|e| format!("first call: {e}"))?;

    let mut report = ReconnectReport {
        samples: Vec::with_capacity(rounds),
        not_retried: 0,
        first_not_retried: None,
        failures: 0,
        first_failure: None,
    };
    let spawn_call = |round: usize| {
        let mut caller = client.clone();
        tokio::spawn(async move {
            let reply = caller.echo(format!("round {round}")).await;
            (reply, Instant::now())
        })
    };
    for round in 0..rounds {
        server.stop(server_rt).await;
        let back_up = Instant::now() + down;
        let mut call = Some(spawn_call(round));
        let mut calls = 1;
        // While the server is down, the call should be retrying (still running).
        while let Some(running) = call.as_mut() {
            let Ok(ended) = tokio::time::timeout_at(back_up.into(), running).await else { break };
            let why = match ended {
                Ok((Ok(_), _)) => "answered while the server was down".to_owned(),
                Ok((Err(status), _)) => format!("{:?}: {}", status.code(), status.message()),
                Err(e) => format!("call task: {e}"),
            };
            report.not_retried += 1;
            report.first_not_retried.get_or_insert(why);
            call = (calls < CALLS_PER_ROUND).then(|| spawn_call(round));
            calls += 1;
        }
        tokio::time::sleep_until(back_up.into()).await;
        let listening = Instant::now();
        server = restart_helper(server_rt, port).await?;
        let Some(mut call) = call else {
            report.failures += 1;
            report
                .first_failure
                .get_or_insert(format!("round {round}: no call kept retrying ({CALLS_PER_ROUND} tried)"));
            continue;
        };
        let why = match tokio::time::timeout(Duration::from_secs(30), &mut call).await {
            Ok(Ok((Ok(_), replied))) => {
                report.samples.push(replied.saturating_duration_since(listening));
                continue;
            }
            Ok(Ok((Err(status), _))) => format!("round {round}: {:?}: {}", status.code(), status.message()),
            Ok(Err(e)) => format!("round {round}: call task: {e}"),
            Err(_) => {
                call.abort();
                format!("round {round}: no reply 30 s after the restart")
            }
        };
        report.failures += 1;
        report.first_failure.get_or_insert(why);
    }
    server.stop(server_rt).await;
    report.samples.sort_unstable();
    Ok(report)
}

/// Starts the helper server on `port` again (the old socket may take a moment to be released).
async fn restart_helper(server_rt: &Handle, port: u16) -> Result<EchoServer, String> {
    let mut last = String::new();
    for _ in 0..100 {
        match EchoServer::start(server_rt, ServerKind::Helper, port, 1).await {
            Ok(server) => return Ok(server),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("cannot restart the helper server on port {port}: {last}"))
}

// ---------------------------------------------------------------------------------------------
// Start to serving
// ---------------------------------------------------------------------------------------------

/// Times from spawning a server process to its first successful reply, sorted.
pub struct StartupReport {
    pub samples: Vec<Duration>,
}

impl StartupReport {
    pub fn median(&self) -> Option<Duration> {
        self.samples.get(self.samples.len() / 2).copied()
    }
}

/// `rounds` times: spawn a server process (`python`: the Python server), wait for the port it
/// prints, then call until the first echo succeeds; the process is stopped after each round.
pub async fn startup(kind: ServerKind, python: Option<&Path>, rounds: usize) -> Result<StartupReport, String> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let (process, port) = match (kind, python) {
            (ServerKind::Python, Some(python)) => {
                let server = EchoServer::python(python, 1).await?;
                let port = server.port();
                (Measured::Python(server), port)
            }
            (ServerKind::Python, None) => return Err("no python given".into()),
            (kind, _) => {
                let (child, stderr, port) =
                    tokio::task::spawn_blocking(move || spawn_child(child_arg(kind, false), "none", None))
                        .await
                        .map_err(|e| format!("spawn task: {e}"))??;
                (Measured::Rust(child, stderr), port)
            }
        };
        let served = first_reply(port).await.map(|()| start.elapsed());
        process.stop().await;
        samples.push(served?);
    }
    samples.sort();
    Ok(StartupReport { samples })
}

/// Calls until one echo succeeds (bounded: 30 s).
async fn first_reply(port: u16) -> Result<(), String> {
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async { BareClient::connect(port).await?.echo("up?".into()).await.map_err(|e| e.to_string()) };
        match attempt.await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= limit => return Err(format!("no reply within 30 s: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idle RSS
// ---------------------------------------------------------------------------------------------

/// Resident set sizes of a server process, in KiB.
pub struct RssReport {
    /// Started, nothing connected yet.
    pub fresh: u64,
    /// One connection, one call done.
    pub after_one_call: u64,
    /// After the load (`calls` more calls, 8 in flight), idle again.
    pub after_load: u64,
    /// Peak (VmHWM).
    pub peak: u64,
    /// Calls of the load.
    pub calls: u64,
    /// CPU time (user + system) of the server process alone during the load, per call: what
    /// serving costs, whatever the load generator costs (it runs in another process).
    pub cpu_per_call: Option<Duration>,
}

/// Capacity with one core each (see `capacity.rs`): the server of `kind` in a process of its
/// own pinned to `cpus.1`, driven from one thread pinned to `cpus.0`.
pub async fn capacity(
    kind: ServerKind,
    current_thread: bool,
    logging: &'static str,
    python: Option<&Path>,
    cpus: (usize, usize),
    spec: crate::load::LoadSpec,
) -> Result<crate::capacity::CapacityReport, String> {
    let (measured, port, pid) = match (kind, python) {
        (ServerKind::Python, Some(python)) => {
            let server = EchoServer::python_on(python, 1, Some(cpus.1)).await?;
            let (port, pid) = (server.port(), server.pid().unwrap_or_default());
            (Measured::Python(server), port, pid)
        }
        (ServerKind::Python, None) => return Err("no python given".into()),
        (kind, _) => {
            let (child, stderr, port) = tokio::task::spawn_blocking(move || {
                spawn_child(child_arg(kind, current_thread), logging, Some(cpus.1))
            })
            .await
            .map_err(|e| format!("spawn task: {e}"))??;
            let pid = child.id();
            (Measured::Rust(child, stderr), port, pid)
        }
    };
    let load = move || crate::capacity::run(cpus.0, port, pid, spec);
    let result = tokio::task::spawn_blocking(load).await.map_err(|e| format!("load task: {e}")).and_then(|r| r);
    let stderr = measured.stop().await;
    result.map_err(|e| format!("{e}\n{stderr}"))
}

/// The server process whose memory is measured.
enum Measured {
    /// This program, re-run with `--child <kind>`.
    Rust(Child, StderrLines),
    Python(EchoServer),
}

/// Runs a server in a process of its own (`python`: the Python server instead of a Rust one)
/// and reads its RSS from `/proc/<pid>/status` at three moments.
/// `logging` is passed to the child as `--logging <logging>`.
pub async fn idle_rss(
    kind: ServerKind,
    python: Option<&Path>,
    logging: &'static str,
    calls: u64,
) -> Result<RssReport, String> {
    let (measured, port, pid) = match (kind, python) {
        (ServerKind::Python, Some(python)) => {
            let server = EchoServer::python(python, 1).await?;
            let (port, pid) = (server.port(), server.pid().unwrap_or_default());
            (Measured::Python(server), port, pid)
        }
        (ServerKind::Python, None) => return Err("no python given".into()),
        (kind, _) => {
            let (child, stderr, port) =
                tokio::task::spawn_blocking(move || spawn_child(child_arg(kind, false), logging, None))
                    .await
                    .map_err(|e| format!("spawn task: {e}"))??;
            let pid = child.id();
            (Measured::Rust(child, stderr), port, pid)
        }
    };
    let result = measure_rss(port, pid, calls).await;
    let stderr = measured.stop().await;
    result.map_err(|e| format!("{e}\n{stderr}"))
}

impl Measured {
    /// Stops the process (bounded); returns what a Rust child wrote on stderr.
    async fn stop(self) -> String {
        match self {
            Measured::Rust(mut child, stderr) => {
                let _ = tokio::task::spawn_blocking(move || {
                    drop(child.stdin.take());
                    if !wait_exit(&mut child, Duration::from_secs(10)) {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                })
                .await;
                stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
            }
            Measured::Python(server) => {
                server.stop(&Handle::current()).await;
                String::new()
            }
        }
    }
}

async fn measure_rss(port: u16, pid: u32, calls: u64) -> Result<RssReport, String> {
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    settle().await;
    let fresh = status_kib(pid, "VmRSS")?;
    let client = BareClient::connect(port).await?;
    client.clone().echo("one".into()).await.map_err(|e| e.to_string())?;
    settle().await;
    let after_one_call = status_kib(pid, "VmRSS")?;
    const WORKERS: u64 = 8;
    let per_worker = calls.div_ceil(WORKERS);
    let cpu_before = crate::load::process_cpu(&pid.to_string());
    let mut workers = JoinSet::new();
    for w in 0..WORKERS {
        let mut client = client.clone();
        workers.spawn(async move {
            for i in 0..per_worker {
                client.echo(format!("load {w}/{i}")).await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(done) =
        tokio::time::timeout(Duration::from_secs(120), workers.join_next()).await.map_err(|_| "load timed out")?
    {
        done.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    }
    let cpu_after = crate::load::process_cpu(&pid.to_string());
    let calls = per_worker * WORKERS;
    let cpu_per_call = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b).div_f64(calls as f64));
    drop(client);
    settle().await;
    Ok(RssReport {
        fresh,
        after_one_call,
        after_load: status_kib(pid, "VmRSS")?,
        peak: status_kib(pid, "VmHWM")?,
        calls,
        cpu_per_call,
    })
}

/// A `kB` line of `/proc/<pid>/status`.
fn status_kib(pid: u32, key: &str) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

/// The `--child` of a server kind: bare tonic on `#[tokio::main]`'s runtime or on a
/// current-thread one, the helper on `grpc_helper::server::runtime()`.
fn child_arg(kind: ServerKind, current_thread: bool) -> &'static str {
    match (kind, current_thread) {
        (ServerKind::Bare, false) => "bare",
        (ServerKind::Bare, true) => "bare-current-thread",
        _ => "helper",
    }
}

fn spawn_child(arg: &'static str, logging: &str, cpu: Option<usize>) -> Result<(Child, StderrLines, u16), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut command = Command::new(&exe);
    command
        .args(["--child", arg, "--logging", logging])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cpu) = cpu {
        // The child's runtime sees one available CPU, so it starts one worker, as a server
        // given one core would.
        crate::capacity::pin_command(&mut command, cpu);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let ready = watch_output(&mut child, "PORT ", Arc::clone(&stderr));
    let port =
        ready.recv_timeout(Duration::from_secs(30)).ok().and_then(|line| line["PORT ".len()..].trim().parse().ok());
    match port {
        Some(port) => Ok((child, stderr, port)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let lines = stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
            Err(format!("the {arg} server process did not report its port:\n{lines}"))
        }
    }
}

/// `--child <kind>`: serve the echo on 127.0.0.1 (any port, printed as `PORT <n>`) until stdin
/// closes (at most 10 minutes), with the runtime a server binary would use by default.
/// The runtime of a child server process.
#[derive(Debug, Clone, Copy)]
pub enum ChildRuntime {
    /// `#[tokio::main]`'s: multi-thread, a worker per CPU (what a bare tonic server runs).
    Tokio,
    /// `grpc_helper::server::runtime()` (what the example server runs): current-thread on one CPU.
    Helper,
    /// Current-thread, whatever the CPUs (a reference for bare tonic on one core).
    CurrentThread,
}

pub fn child_main(kind: ServerKind, runtime: ChildRuntime) -> Result<(), String> {
    let runtime = match runtime {
        ChildRuntime::Tokio => tokio::runtime::Runtime::new(),
        ChildRuntime::Helper => grpc_helper::server::runtime(),
        ChildRuntime::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    }
    .map_err(|e| e.to_string())?;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        while let Ok(1..) = std::io::stdin().read(&mut sink) {}
        let _ = closed_tx.send(());
    });
    let result = runtime.block_on(async {
        let handle = Handle::current();
        let server = EchoServer::start(&handle, kind, 0, 1).await?;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "PORT {}", server.port());
        let _ = out.flush();
        let _ = tokio::time::timeout(Duration::from_secs(600), closed_rx).await;
        server.stop(&handle).await;
        Ok(())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
