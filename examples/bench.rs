//! Benchmark: what grpc-helper costs over bare tonic, in one run.
//!
//! ```sh
//! cargo run --release -p grpc-helper-examples --example bench -- [--smoke] [--duration SECS] [--connections N]
//!     [--concurrency M] [--python PATH_TO_PYTHON] [--runtime shared|split] [--logging none|fmt|helper]
//! ```
//!
//! Unary echo (`SampleService/method4`, `foo` → `bar`), closed loop over N connections × M calls
//! in flight, after a warm-up, for:
//! - (a) a bare tonic server (plain tonic-prost-build code, `ProstCodec`) and bare tonic client;
//! - (b') the same echo as a grpc-helper manager in an `RpcServer`, driven by the bare client
//!   (server-side cost), also with the helper's five metadata keys added by an interceptor;
//! - the bare server driven by grpc-helper's `RpcClient` (client-side cost);
//! - (b) the helper server driven by the `RpcClient` (both);
//! - (c) with `--python`, the Python grpc-helper 2.3.1 server (`bench/py_echo_server.py`).
//!
//! Then: server-streaming items/s (`s_method2`, K items per stream), the reconnect latency of a
//! retrying `RpcClient` across server restarts on the same port, and the idle RSS of a server
//! process. Every server listens on 127.0.0.1 only; every loop is bounded in time and count.

#[path = "bench/capacity.rs"]
mod capacity;
#[path = "bench/extras.rs"]
mod extras;
#[path = "bench/fanout.rs"]
mod fanout;
#[path = "bench/h2load.rs"]
mod h2load;
#[path = "bench/hotpath.rs"]
mod hotpath;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/replicas.rs"]
mod replicas;
#[path = "bench/targets.rs"]
mod targets;

/// Plain tonic-prost-build code for `sample.proto` (see `build.rs`).
#[allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]
mod bare {
    include!(concat!(env!("OUT_DIR"), "/bare/_.rs"));
}

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::runtime::{Builder, Handle, Runtime};

use crate::load::{LoadSpec, StreamReport, UnaryReport};
use crate::targets::{BareClient, ClientKind, Clients, EchoClient, EchoServer, ServerKind};

// glibc's malloc serialises tonic's threads on its arena locks: about 1.5x the calls per
// second on 2 cores with jemalloc (feature `jemalloc`, as the benchmarks build it).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(about = "grpc-helper vs bare tonic: throughput, latency, streaming, reconnect, memory")]
struct Args {
    /// CI mode: 0.5 s per target after 0.2 s of warm-up, 2 connections x 4 calls in flight,
    /// 3 reconnect rounds.
    #[arg(long)]
    smoke: bool,
    /// Measured seconds per target (default 5; 0.5 with --smoke).
    #[arg(long, value_parser = seconds)]
    duration: Option<f64>,
    /// Warm-up seconds before each measured window (default 1; 0.2 with --smoke).
    #[arg(long, value_parser = seconds)]
    warmup: Option<f64>,
    /// Client connections (separate channels) per target (default 4; 2 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: Option<u16>,
    /// Unary calls in flight per connection (default 8; 4 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: Option<u16>,
    /// Interleaved slices each target's measured time is cut into (default 5; 1 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    rounds: Option<u16>,
    /// Items per server stream (s_method2).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    stream_items: u32,
    /// Reconnect rounds per retry policy (default 20; 3 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=200))]
    reconnect_rounds: Option<u16>,
    /// A Python with grpc-helper==2.3.1 and grpcio-tools: adds the Python server as target (c).
    #[arg(long, value_name = "PATH_TO_PYTHON")]
    python: Option<PathBuf>,
    /// Where servers run: `shared` (one runtime for servers and clients, the default) or
    /// `split` (servers and clients on runtimes of their own, the cores split between them).
    #[arg(long, value_enum, default_value_t = RuntimeMode::Shared)]
    runtime: RuntimeMode,
    /// The process's tracing subscriber, for every target: `helper` (the default: grpc-helper's
    /// logging layer, which an RpcServer installs unless told not to; log files in a temporary
    /// workspace), `none` (what the frameworks cost by themselves), or `fmt` (fmt at level info,
    /// written to a sink). With a subscriber, the managers' `rpc` spans are live.
    #[arg(long, value_enum, default_value_t = Logging::Helper)]
    logging: Logging,
    /// Run only these targets (comma-separated keys: h2load, bare, bare-md, srv, srv-md, srv-metrics, cli, helper,
    /// python, stream-bare, stream-srv, stream-helper, stream-python, reconnect, fanout, replicas,
    /// startup, rss, capacity).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Instead of the tables: `--calls` sequential calls of this unary target (bare, srv,
    /// srv-md, srv-metrics, cli, helper) on one current-thread runtime, for callgrind (see bench/hotpath.rs).
    #[arg(long, value_name = "KEY")]
    hotpath: Option<String>,
    /// Calls of `--hotpath`.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    calls: u64,
    /// Internal: serve the echo in this process for the RSS measure.
    #[arg(long, hide = true, value_enum)]
    child: Option<ChildKind>,
    /// Internal: serve the h2load paths in this process, set up as given.
    #[arg(long, hide = true, value_enum)]
    serve: Option<h2load::Setup>,
    /// Internal: the `info` reply the bare `--serve` process answers.
    #[arg(long, hide = true)]
    info_reply: Option<PathBuf>,
    /// Requests per h2load run (default 100000; 2000 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
    h2load_requests: Option<u64>,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..=600.0).contains(&s) => Ok(s),
        _ => Err("expected a number of seconds between 0 and 600".into()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeMode {
    Shared,
    Split,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Logging {
    None,
    Fmt,
    Helper,
}

impl Logging {
    /// Installs the subscriber as the process's global default (once, before any server).
    fn install(self) {
        use tracing_subscriber::prelude::*;
        match self {
            Self::None => {}
            Self::Fmt => tracing_subscriber::fmt().with_env_filter("info").with_writer(std::io::sink).init(),
            Self::Helper => tracing_subscriber::registry().with(grpc_helper::logs::layer()).init(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Fmt => "fmt at info, to a sink",
            Self::Helper => "grpc-helper's logging layer (files in a temporary workspace)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ChildKind {
    /// Bare tonic on `#[tokio::main]`'s runtime.
    Bare,
    /// Bare tonic on a current-thread runtime.
    BareCurrentThread,
    /// The helper server on `grpc_helper::server::runtime()`.
    Helper,
}

/// One unary or streaming row.
struct Target {
    key: &'static str,
    label: &'static str,
    server: ServerKind,
    client: ClientKind,
}

const UNARY: [Target; 8] = [
    Target {
        key: "bare",
        label: "(a)  bare tonic srv   <- tonic client",
        server: ServerKind::Bare,
        client: ClientKind::Bare,
    },
    Target {
        key: "bare-md",
        label: "     bare tonic srv   <- tonic + helper metadata",
        server: ServerKind::Bare,
        client: ClientKind::BareWithMetadata,
    },
    Target {
        key: "srv",
        label: "(b') helper srv       <- tonic client",
        server: ServerKind::Helper,
        client: ClientKind::Bare,
    },
    Target {
        key: "srv-md",
        label: "     helper srv       <- tonic + helper metadata",
        server: ServerKind::Helper,
        client: ClientKind::BareWithMetadata,
    },
    Target {
        key: "srv-metrics",
        label: "     helper srv + A66 metrics <- tonic client",
        server: ServerKind::HelperMetrics,
        client: ClientKind::Bare,
    },
    Target {
        key: "cli",
        label: "     bare tonic srv   <- helper RpcClient",
        server: ServerKind::Bare,
        client: ClientKind::Helper,
    },
    Target {
        key: "helper",
        label: "(b)  helper srv       <- helper RpcClient",
        server: ServerKind::Helper,
        client: ClientKind::Helper,
    },
    Target {
        key: "python",
        label: "(c)  Python helper    <- tonic client",
        server: ServerKind::Python,
        client: ClientKind::Bare,
    },
];

const STREAMING: [Target; 4] = [
    Target {
        key: "stream-bare",
        label: "bare tonic srv   <- tonic client",
        server: ServerKind::Bare,
        client: ClientKind::Bare,
    },
    Target {
        key: "stream-srv",
        label: "helper srv       <- tonic client",
        server: ServerKind::Helper,
        client: ClientKind::Bare,
    },
    Target {
        key: "stream-helper",
        label: "helper srv       <- helper RpcClient",
        server: ServerKind::Helper,
        client: ClientKind::Helper,
    },
    Target {
        key: "stream-python",
        label: "Python helper    <- tonic client",
        server: ServerKind::Python,
        client: ClientKind::Bare,
    },
];

/// Resolved settings of a run.
struct Settings {
    spec: LoadSpec,
    stream_items: usize,
    rounds: usize,
    reconnect_rounds: usize,
    reconnect_down: Duration,
    python: Option<PathBuf>,
    only: Vec<String>,
    runtime: RuntimeMode,
    logging: Logging,
    /// Calls of the server-process load (RSS and CPU per call): Rust servers, Python server.
    process_calls: (u64, u64),
    /// Load of the one-core-each capacity measure.
    capacity: LoadSpec,
    /// Rounds of the start-to-serving measure.
    startup_rounds: usize,
    /// The server processes under h2load.
    h2load: h2load::H2Spec,
}

impl Settings {
    fn wants(&self, key: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|k| k == key)
    }

    /// The targets to run: asked for, and with their server available.
    fn selected<'t>(&self, targets: &'t [Target]) -> Vec<&'t Target> {
        targets
            .iter()
            .filter(|t| self.wants(t.key) && (t.server != ServerKind::Python || self.python.is_some()))
            .collect()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(setup) = args.serve {
        let result = h2load::serve_main(setup, args.info_reply.as_deref());
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server process: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(child) = args.child {
        let (kind, runtime) = match child {
            ChildKind::Bare => (ServerKind::Bare, extras::ChildRuntime::Tokio),
            ChildKind::BareCurrentThread => (ServerKind::Bare, extras::ChildRuntime::CurrentThread),
            ChildKind::Helper => (ServerKind::Helper, extras::ChildRuntime::Helper),
        };
        args.logging.install();
        let result = extras::child_main(kind, runtime);
        let _ = std::fs::remove_dir_all(targets::workspace());
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(key) = &args.hotpath {
        let Some(target) = UNARY.iter().find(|t| t.key == key && t.server != ServerKind::Python) else {
            eprintln!(
                "--hotpath: unknown target {key:?} (expected one of bare, bare-md, srv, srv-md, srv-metrics, cli, helper)"
            );
            return ExitCode::FAILURE;
        };
        args.logging.install();
        let ok = hotpath::run(target.server, target.client, args.calls);
        let _ = std::fs::remove_dir_all(targets::workspace());
        return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let smoke = args.smoke;
    let settings = Settings {
        spec: LoadSpec {
            connections: args.connections.map_or(if smoke { 2 } else { 4 }, usize::from),
            concurrency: args.concurrency.map_or(if smoke { 4 } else { 8 }, usize::from),
            warmup: Duration::from_secs_f64(args.warmup.unwrap_or(if smoke { 0.2 } else { 1.0 })),
            duration: Duration::from_secs_f64(args.duration.unwrap_or(if smoke { 0.5 } else { 5.0 }).max(0.05)),
        },
        stream_items: args.stream_items as usize,
        rounds: args.rounds.map_or(if smoke { 1 } else { 5 }, usize::from),
        reconnect_rounds: args.reconnect_rounds.map_or(if smoke { 3 } else { 20 }, usize::from),
        reconnect_down: Duration::from_millis(if smoke { 200 } else { 500 }),
        python: args.python,
        only: args.only,
        runtime: args.runtime,
        logging: args.logging,
        process_calls: if smoke { (2_000, 500) } else { (40_000, 10_000) },
        startup_rounds: if smoke { 2 } else { 10 },
        h2load: h2load::H2Spec {
            requests: args.h2load_requests.unwrap_or(if smoke { 2_000 } else { 100_000 }),
            rounds: if smoke { 1 } else { 3 },
        },
        // Enough calls in flight to keep a one-core server busy whatever its latency.
        capacity: LoadSpec {
            connections: if smoke { 2 } else { 4 },
            concurrency: if smoke { 8 } else { 32 },
            warmup: Duration::from_secs_f64(if smoke { 0.2 } else { 1.0 }),
            duration: Duration::from_secs_f64(if smoke { 0.5 } else { 5.0 }),
        },
    };
    settings.logging.install();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Which runtime(s)? On a 2-core machine, client and server together need more CPU than
    // there is, so throughput measures total CPU per request. With ONE shared runtime (the
    // default, `cores` workers) the scheduler gives the cores to whichever side has work, and
    // every microsecond of overhead, server- or client-side, shows as lost throughput: the
    // fairest comparison of two stacks. Splitting the cores (`--runtime split`, one worker for
    // the servers, one for the clients) caps each side at one core, so the result is that of
    // the slower side only (usually the client) and hides the other side's overhead; it is kept
    // as an option to look at one side at a time. The Python server is a process of its own in
    // both modes and competes with the clients for the same cores.
    let (client_rt, server_rt) = match settings.runtime {
        RuntimeMode::Shared => (runtime(cores, "bench"), None),
        RuntimeMode::Split => {
            let servers = (cores / 2).max(1);
            (runtime(cores.saturating_sub(servers).max(1), "bench-client"), Some(runtime(servers, "bench-server")))
        }
    };
    let server_handle = server_rt.as_ref().map_or_else(|| client_rt.handle().clone(), |rt| rt.handle().clone());
    let ok = client_rt.block_on(run(&settings, &server_handle, cores));
    drop(server_rt);
    let _ = std::fs::remove_dir_all(targets::workspace());
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn runtime(workers: usize, name: &str) -> Runtime {
    Builder::new_multi_thread().worker_threads(workers).thread_name(name).enable_all().build().expect("a tokio runtime")
}

/// Runs everything and prints the tables; false when a target failed or had errors.
async fn run(settings: &Settings, server_rt: &Handle, cores: usize) -> bool {
    let mut ok = true;
    println!("{}", machine(cores, settings));

    if settings.wants("h2load") {
        match h2load::h2load() {
            None => println!(
                "== Server processes under h2load: skipped, h2load is not installed (Debian: apt-get install nghttp2-client)\n"
            ),
            Some(h2load) => {
                let (table, passed) = h2load::run(&h2load, &settings.h2load).await;
                ok &= passed;
                println!("{table}");
            }
        }
    }

    let unary_targets = settings.selected(&UNARY);
    let stream_targets = settings.selected(&STREAMING);
    let before = (load::machine_cpu(), load::process_cpu("self"));
    let mut servers = Servers::default();
    for target in unary_targets.iter().chain(&stream_targets) {
        servers.ensure(target.server, settings, server_rt).await;
    }

    if !unary_targets.is_empty() {
        let rows = measure::<Unary>(settings, &servers, &unary_targets).await;
        ok &= rows.iter().all(|(_, r)| r.as_ref().is_ok_and(|r| r.errors == 0 && r.ok > 0));
        println!("{}", unary_table(settings, &rows));
    }
    if !stream_targets.is_empty() {
        let rows = measure::<Streaming>(settings, &servers, &stream_targets).await;
        ok &= rows.iter().all(|(_, r)| r.as_ref().is_ok_and(|r| r.errors == 0 && r.items > 0));
        println!("{}", stream_table(settings, &rows));
    }
    if !unary_targets.is_empty() || !stream_targets.is_empty() {
        let python = servers.pid().and_then(|pid| load::process_cpu(&pid.to_string())).unwrap_or_default();
        println!("{}", noise(before, (load::machine_cpu(), load::process_cpu("self")), python));
    }
    servers.stop(server_rt).await;

    if settings.wants("reconnect") {
        let rounds = settings.reconnect_rounds;
        let down = settings.reconnect_down;
        let default = extras::reconnect(server_rt, rounds, down, None).await;
        let fast =
            extras::reconnect(server_rt, rounds, Duration::from_millis(100), Some(Duration::from_millis(10))).await;
        ok &= [&default, &fast].iter().all(|r| r.as_ref().is_ok_and(|r| r.failures == 0));
        println!("{}", reconnect_table(rounds, down, &default, &fast));
    }

    if settings.wants("fanout") {
        let (listeners, events) =
            if settings.spec.duration < Duration::from_secs(1) { (10, 500) } else { (100, 10_000) };
        ok &= fanout::section(listeners, events).await;
    }

    if settings.wants("replicas") {
        let (listeners, events) =
            if settings.spec.duration < Duration::from_secs(1) { (10, 200) } else { (100, 2_000) };
        ok &= replicas::section(listeners, events).await;
    }

    if settings.wants("startup") {
        let rounds = settings.startup_rounds;
        let mut rows = vec![
            ("bare tonic server", extras::startup(ServerKind::Bare, None, rounds).await),
            ("helper RpcServer", extras::startup(ServerKind::Helper, None, rounds).await),
        ];
        if let Some(python) = &settings.python {
            rows.push(("Python helper 2.3.1", extras::startup(ServerKind::Python, Some(python), rounds).await));
        }
        ok &= rows.iter().all(|(_, r)| r.is_ok());
        println!("{}", startup_table(rounds, &rows));
    }

    if settings.wants("rss") {
        // Enough calls for the CPU ticks (10 ms) to be a small error on the per-call figure.
        let (calls, python_calls) = settings.process_calls;
        let mut rows = vec![
            ("bare tonic server", extras::idle_rss(ServerKind::Bare, None, "none", calls).await),
            ("helper RpcServer", extras::idle_rss(ServerKind::Helper, None, "none", calls).await),
            ("helper + logging layer", extras::idle_rss(ServerKind::Helper, None, "helper", calls).await),
        ];
        if let Some(python) = &settings.python {
            rows.push((
                "Python helper 2.3.1",
                extras::idle_rss(ServerKind::Python, Some(python), "none", python_calls).await,
            ));
        }
        ok &= rows.iter().all(|(_, r)| r.is_ok());
        println!("{}", rss_table(&rows));
    }

    if settings.wants("capacity") {
        match capacity::two_cpus() {
            None => println!("== Capacity, one core each: skipped (this process may use fewer than 2 CPUs)\n"),
            Some(cpus) => {
                let spec = &settings.capacity;
                let mut rows = vec![
                    (
                        "bare tonic server",
                        extras::capacity(ServerKind::Bare, false, "none", None, cpus, spec.clone()).await,
                    ),
                    (
                        "bare, current-thread",
                        extras::capacity(ServerKind::Bare, true, "none", None, cpus, spec.clone()).await,
                    ),
                    (
                        "helper, no subscriber",
                        extras::capacity(ServerKind::Helper, false, "none", None, cpus, spec.clone()).await,
                    ),
                    (
                        "helper, default logging",
                        extras::capacity(ServerKind::Helper, false, "helper", None, cpus, spec.clone()).await,
                    ),
                ];
                if let Some(python) = &settings.python {
                    let python =
                        extras::capacity(ServerKind::Python, false, "none", Some(python), cpus, spec.clone()).await;
                    rows.push(("Python helper 2.3.1", python));
                }
                ok &= rows.iter().all(|(_, r)| r.is_ok());
                println!("{}", capacity_table(cpus, spec, &rows));
            }
        }
    }
    ok
}

fn capacity_table(
    cpus: (usize, usize),
    spec: &LoadSpec,
    rows: &[(&str, Result<capacity::CapacityReport, String>)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== Capacity, one core each: the server process pinned to CPU {} (bare tonic on #[tokio::main]'s runtime, then\n   with 1 worker, or on a current-thread one; the helper on grpc_helper::server::runtime(): current-thread on one CPU),\n   the load generator one thread of this process pinned to CPU {} (tonic client, current-thread runtime);\n   {} connections x {} in flight, {:.1} s measured after {:.1} s of warm-up. The Python original is GIL-bound\n   to about one core anyway: this gives every server that one core.",
        cpus.1,
        cpus.0,
        spec.connections,
        spec.concurrency,
        spec.duration.as_secs_f64(),
        spec.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>11} {:>12} {:>14} {:>16} {:>16}",
        "server", "req/s", "server CPU", "CPU us/call", "load gen CPU", "x Python req/s", "x Python CPU/call"
    );
    let python = rows.iter().find(|(label, _)| label.starts_with("Python")).and_then(|(_, r)| r.as_ref().ok());
    for (label, report) in rows {
        match report {
            Ok(r) => {
                let per_call = r.server_cpu_per_call();
                let cpu = per_call.map_or("-".to_owned(), |c| format!("{:.1}", c.as_secs_f64() * 1e6));
                let busy = r.server_cpu.map_or("-".to_owned(), |c| format!("{:.0}%", r.busy(c)));
                let (x_rate, x_cpu) = match python {
                    Some(p) if p.calls > 0 => (
                        format!("{:.1}x", r.per_second() / p.per_second()),
                        match (per_call, p.server_cpu_per_call()) {
                            (Some(c), Some(pc)) if !c.is_zero() => {
                                format!("{:.1}x", pc.as_secs_f64() / c.as_secs_f64())
                            }
                            _ => "-".to_owned(),
                        },
                    ),
                    _ => ("-".to_owned(), "-".to_owned()),
                };
                let _ = writeln!(
                    out,
                    "{label:<24} {:>9.0} {busy:>11} {cpu:>12} {:>14} {x_rate:>16} {x_cpu:>16}",
                    r.per_second(),
                    format!("{:.0}%", r.busy(r.client_cpu)),
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{label:<24} FAILED: {e}");
            }
        }
    }
    let _ = writeln!(
        out,
        "  (server CPU: of its one core, from /proc/<pid>/stat; load gen CPU: of the other core. A Rust row whose\n   load generator is near 100% is capped by the load generator: its ratios are then lower bounds.)"
    );
    out
}

/// One server of each kind, shared by every target that uses that kind (each target has its
/// own connections); they stay up, idle, while other targets run.
#[derive(Default)]
struct Servers(Vec<(ServerKind, Result<EchoServer, String>)>);

impl Servers {
    async fn ensure(&mut self, kind: ServerKind, settings: &Settings, server_rt: &Handle) {
        if self.0.iter().any(|(k, _)| *k == kind) {
            return;
        }
        let items = settings.stream_items;
        let server = match (kind, &settings.python) {
            (ServerKind::Python, Some(python)) => match EchoServer::python(python, items).await {
                // grpcio may accept connections a moment before its handlers are in place.
                Ok(server) => wait_until_serving(server.port()).await.map(|()| server),
                Err(e) => Err(e),
            },
            (kind, _) => EchoServer::start(server_rt, kind, 0, items).await,
        };
        self.0.push((kind, server));
    }

    /// The server process (the Python one), if any.
    fn pid(&self) -> Option<u32> {
        self.0.iter().find_map(|(_, s)| s.as_ref().ok()?.pid())
    }

    fn get(&self, kind: ServerKind) -> Result<&EchoServer, String> {
        match self.0.iter().find(|(k, _)| *k == kind) {
            Some((_, Ok(server))) => Ok(server),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(format!("no {kind:?} server")),
        }
    }

    async fn stop(self, server_rt: &Handle) {
        for (_, server) in self.0 {
            if let Ok(server) = server {
                server.stop(server_rt).await;
            }
        }
    }
}

/// A kind of measured run.
trait Phase {
    type Report;
    async fn run(clients: &Clients, spec: &LoadSpec, server_pid: Option<u32>) -> Self::Report;
    fn merge(into: &mut Self::Report, other: Self::Report);
}

struct Unary;

impl Phase for Unary {
    type Report = UnaryReport;
    async fn run(clients: &Clients, spec: &LoadSpec, server_pid: Option<u32>) -> UnaryReport {
        clients.unary(spec, server_pid).await
    }
    fn merge(into: &mut UnaryReport, other: UnaryReport) {
        into.merge(other);
    }
}

struct Streaming;

impl Phase for Streaming {
    type Report = StreamReport;
    async fn run(clients: &Clients, spec: &LoadSpec, server_pid: Option<u32>) -> StreamReport {
        clients.streaming(spec, server_pid).await
    }
    fn merge(into: &mut StreamReport, other: StreamReport) {
        into.merge(other);
    }
}

/// Measures every target in `settings.rounds` interleaved slices of `duration / rounds` (the
/// starting target rotates each round): on a shared machine, load from other processes then
/// falls on every target alike instead of on whichever ran at the wrong moment. The first slice
/// of a target has the full warm-up (connections opened, caches warm), later ones a short one.
async fn measure<'t, P: Phase>(
    settings: &Settings,
    servers: &Servers,
    targets: &[&'t Target],
) -> Vec<(&'t Target, Result<P::Report, String>)> {
    let mut prepared = Vec::with_capacity(targets.len());
    for target in targets {
        let clients = match servers.get(target.server) {
            Ok(server) => {
                let pid = server.pid();
                Clients::connect(target.client, server.port(), settings.spec.connections).await.map(|c| (c, pid))
            }
            Err(e) => Err(e),
        };
        prepared.push(clients);
    }
    let rounds = settings.rounds;
    let slice = settings.spec.duration.div_f64(rounds as f64);
    let mut reports: Vec<Option<P::Report>> = targets.iter().map(|_| None).collect();
    for round in 0..rounds {
        for i in 0..targets.len() {
            let index = (i + round) % targets.len();
            let Ok((clients, pid)) = &prepared[index] else { continue };
            let warmup = if round == 0 { settings.spec.warmup } else { settings.spec.warmup.min(RE_WARMUP) };
            let spec = LoadSpec { warmup, duration: slice, ..settings.spec.clone() };
            let report = P::run(clients, &spec, *pid).await;
            match &mut reports[index] {
                Some(total) => P::merge(total, report),
                empty => *empty = Some(report),
            }
        }
    }
    targets
        .iter()
        .zip(prepared)
        .zip(reports)
        .map(|((target, prepared), report)| {
            let report = match prepared {
                Ok(_) => report.ok_or_else(|| "not run".to_owned()),
                Err(e) => Err(e),
            };
            (*target, report)
        })
        .collect()
}

/// Warm-up of a target's later slices.
const RE_WARMUP: Duration = Duration::from_millis(200);

async fn wait_until_serving(port: u16) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..100 {
        match BareClient::connect(port).await {
            Ok(mut client) => match client.echo("ping".into()).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("server on port {port} never answered: {last}"))
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

fn machine(cores: usize, settings: &Settings) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let runtime = match settings.runtime {
        RuntimeMode::Shared => format!("one shared tokio runtime, {cores} workers"),
        RuntimeMode::Split => "split runtimes (servers | clients)".to_owned(),
    };
    // Unoptimized code is several times slower, and not alike across the targets (the Python
    // server does not change): its numbers only show that the bench runs.
    let build =
        if cfg!(debug_assertions) { "DEBUG build: numbers not comparable, use --release" } else { "release build" };
    format!(
        "grpc-helper bench: {cores} cores ({model}), load average {}; {build}\n\
         servers and clients in this process on {runtime}; tracing subscriber: {}; all traffic on 127.0.0.1\n",
        load.join(" "),
        settings.logging.describe(),
    )
}

type CpuSample = (Option<(Duration, Duration, Duration)>, Option<Duration>);

/// How busy the machine was with other work while the load runs were measured.
fn noise(before: CpuSample, after: CpuSample, python: Duration) -> String {
    let (Some((busy0, steal0, total0)), Some(own0)) = before else { return String::new() };
    let (Some((busy1, steal1, total1)), Some(own1)) = after else { return String::new() };
    let total = (total1 - total0).as_secs_f64().max(1e-9);
    let others = (busy1 - busy0).saturating_sub(own1 - own0).saturating_sub(python);
    format!(
        "Machine during the load runs: other processes used {:.0}% of the CPU time, steal {:.1}% (what they take\n\
         is CPU the targets did not get; slices are interleaved so that it falls on all targets alike)\n",
        100.0 * others.as_secs_f64() / total,
        100.0 * (steal1 - steal0).as_secs_f64() / total
    )
}

fn micros(d: Option<std::time::Duration>) -> String {
    match d {
        Some(d) if d < Duration::from_micros(100) => format!("{:.1}", d.as_secs_f64() * 1e6),
        Some(d) => format!("{:.0}", d.as_secs_f64() * 1e6),
        None => "-".into(),
    }
}

fn ratio(value: f64, base: Option<f64>) -> String {
    match base {
        Some(base) if base > 0.0 && value.is_finite() => format!("{:.2}x", value / base),
        _ => "-".into(),
    }
}

fn unary_table(settings: &Settings, rows: &[(&Target, Result<UnaryReport, String>)]) -> String {
    let spec = &settings.spec;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== Unary echo (method4): {} connections x {} in flight; per target {:.1} s measured in {} interleaved slice(s), {:.1} s warm-up",
        spec.connections,
        spec.concurrency,
        spec.duration.as_secs_f64(),
        settings.rounds,
        spec.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<48} {:>9} {:>8} {:>8} {:>9} {:>9} {:>6} {:>7} {:>6} {:>6}",
        "target (server <- client)",
        "req/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "CPU us/req",
        "errors",
        "x tput",
        "x p99",
        "x CPU"
    );
    let base = rows.iter().find(|(t, _)| t.key == "bare").and_then(|(_, r)| r.as_ref().ok());
    let base_rate = base.map(UnaryReport::rate);
    let base_p99 = base.and_then(|b| b.latencies.quantile(0.99)).map(|d| d.as_secs_f64());
    let base_cpu = base.and_then(UnaryReport::cpu_per_call).map(|d| d.as_secs_f64());
    let mut notes = Vec::new();
    for (target, report) in rows {
        match report {
            Ok(r) => {
                let p99 = r.latencies.quantile(0.99);
                let _ = writeln!(
                    out,
                    "{:<48} {:>9.0} {:>8} {:>8} {:>9} {:>9} {:>6} {:>7} {:>6} {:>6}",
                    target.label,
                    r.rate(),
                    micros(r.latencies.quantile(0.5)),
                    micros(p99),
                    micros(r.latencies.quantile(0.999)),
                    micros(r.cpu_per_call()),
                    r.errors,
                    ratio(r.rate(), base_rate),
                    ratio(p99.map_or(f64::NAN, |d| d.as_secs_f64()), base_p99),
                    ratio(r.cpu_per_call().map_or(f64::NAN, |d| d.as_secs_f64()), base_cpu),
                );
                if let Some(e) = &r.first_error {
                    notes.push(format!("  {}: first error: {e}", target.key));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{:<48} FAILED: {e}", target.label);
            }
        }
    }
    let find = |key: &str| rows.iter().find(|(t, _)| t.key == key).and_then(|(_, r)| r.as_ref().ok());
    if let (Some(helper), Some(bare_md)) = (find("helper"), find("bare-md")) {
        let cpu = |r: &UnaryReport| r.cpu_per_call().map(|d| d.as_secs_f64());
        let _ = writeln!(
            out,
            "  (b) against bare tonic with the same 5 metadata headers: {} throughput, {} CPU per call",
            ratio(helper.rate(), Some(bare_md.rate())),
            ratio(cpu(helper).unwrap_or(f64::NAN), cpu(bare_md)),
        );
    }
    let _ = writeln!(
        out,
        "  (x tput, x p99, x CPU: ratio to (a). CPU us/req: CPU time of this process, servers and clients, plus the\n   Python server process for (c), over the measured windows, per completed call: the least noisy column on a\n   shared machine.)"
    );
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn stream_table(settings: &Settings, rows: &[(&Target, Result<StreamReport, String>)]) -> String {
    let spec = &settings.spec;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== Server streaming (s_method2, {} items per stream): {} streams in flight (one per connection); {:.1} s measured in {} slice(s)",
        settings.stream_items,
        spec.connections,
        spec.duration.as_secs_f64(),
        settings.rounds
    );
    let _ = writeln!(
        out,
        "{:<48} {:>11} {:>12} {:>6} {:>9} {:>6}",
        "target (server <- client)", "items/s", "CPU ns/item", "errors", "x items/s", "x CPU"
    );
    let base = rows.iter().find(|(t, _)| t.key == "stream-bare").and_then(|(_, r)| r.as_ref().ok());
    let base_cpu = base.and_then(StreamReport::cpu_per_item).map(|d| d.as_secs_f64());
    let base = base.map(StreamReport::rate);
    let mut notes = Vec::new();
    for (target, report) in rows {
        match report {
            Ok(r) => {
                let cpu = r.cpu_per_item().map_or_else(|| "-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e9));
                let _ = writeln!(
                    out,
                    "{:<48} {:>11.0} {:>12} {:>6} {:>9} {:>6}",
                    target.label,
                    r.rate(),
                    cpu,
                    r.errors,
                    ratio(r.rate(), base),
                    ratio(r.cpu_per_item().map_or(f64::NAN, |d| d.as_secs_f64()), base_cpu),
                );
                if let Some(e) = &r.first_error {
                    notes.push(format!("  {}: first error: {e}", target.key));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{:<48} FAILED: {e}", target.label);
            }
        }
    }
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn reconnect_table(
    rounds: usize,
    down: Duration,
    default: &Result<extras::ReconnectReport, String>,
    fast: &Result<extras::ReconnectReport, String>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== Reconnect: helper server stopped, RpcClient call started, server restarted on the same port;\n   time from the restart's bind to the call's reply, {rounds} rounds"
    );
    let _ = writeln!(
        out,
        "{:<64} {:>9} {:>9} {:>9} {:>11} {:>8}",
        "RpcClient retry policy", "median ms", "min ms", "max ms", "not retried", "failures"
    );
    let millis = |d: Option<&Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
    let policies = [
        (format!("default (50 ms then 100 ms max, full jitter; down {} ms)", down.as_millis()), default),
        ("max_retry_delay 10 ms (down 100 ms): the mechanism alone".to_owned(), fast),
    ];
    let mut notes = Vec::new();
    for (label, report) in policies {
        match report {
            Ok(r) => {
                let median = r.samples.get(r.samples.len().saturating_sub(1) / 2);
                let _ = writeln!(
                    out,
                    "{label:<64} {:>9} {:>9} {:>9} {:>11} {:>8}",
                    millis(median),
                    millis(r.samples.first()),
                    millis(r.samples.last()),
                    r.not_retried,
                    r.failures
                );
                if let Some(e) = &r.first_not_retried {
                    notes.push(format!("  not retried (first): {e}"));
                }
                if let Some(e) = &r.first_failure {
                    notes.push(format!("  failure (first): {e}"));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{label:<64} FAILED: {e}");
            }
        }
    }
    let _ = writeln!(
        out,
        "  (not retried: calls started just after the stop that ended with an error instead of retrying;\n   a new call replaced each, so every round still measures a retrying call)"
    );
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn startup_table(rounds: usize, rows: &[(&str, Result<extras::StartupReport, String>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== Start to serving: server process spawned -> first echo reply (a tonic client calling every 1 ms), {rounds} rounds"
    );
    let _ = writeln!(out, "{:<24} {:>10} {:>8} {:>8}", "server", "median ms", "min ms", "max ms");
    let ms = |d: Option<&Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
    for (label, report) in rows {
        match report {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "{label:<24} {:>10} {:>8} {:>8}",
                    ms(r.median().as_ref()),
                    ms(r.samples.first()),
                    ms(r.samples.last())
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{label:<24} FAILED: {e}");
            }
        }
    }
    out
}

fn rss_table(rows: &[(&str, Result<extras::RssReport, String>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== Server process alone (/proc/<pid>): RSS, and CPU per call under load. Rust servers: this binary re-run as a\n   server only, default multi-thread runtime ({} workers), the echo service; \"+ logging layer\": grpc-helper's default\n   logging (log files) installed, as RpcServer does unless told not to. Load: a tonic client in this process,\n   8 calls in flight; the server's CPU is read from /proc/<pid>/stat, so the load generator's is not counted.",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>11} {:>14} {:>9} {:>7} {:>13} {:>6}",
        "server", "fresh MiB", "1 call MiB", "after load MiB", "peak MiB", "calls", "CPU us/call", "x CPU"
    );
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    let base = rows.first().and_then(|(_, r)| r.as_ref().ok()?.cpu_per_call);
    for (label, report) in rows {
        match report {
            Ok(r) => {
                let cpu = r.cpu_per_call.map_or("-".to_owned(), |c| format!("{:.1}", c.as_secs_f64() * 1e6));
                let ratio = match (r.cpu_per_call, base) {
                    (Some(c), Some(b)) if !b.is_zero() => format!("{:.2}x", c.as_secs_f64() / b.as_secs_f64()),
                    _ => "-".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{label:<24} {:>9} {:>11} {:>14} {:>9} {:>7} {cpu:>13} {ratio:>6}",
                    mib(r.fresh),
                    mib(r.after_one_call),
                    mib(r.after_load),
                    mib(r.peak),
                    r.calls
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{label:<24} FAILED: {e}");
            }
        }
    }
    out
}
