//! Server processes under h2load (nghttp2's HTTP/2 load generator, a process of its own): the
//! server as users run it, with the logging they get, measured from outside.
//!
//! Each setup is this binary re-run as a server process (`--serve SETUP`): bare tonic, or an
//! `RpcServer` hosting the echo manager with one of the logging set-ups users have. Every path
//! is loaded with `h2load -n N -c 4 -m 16 -t 1` (one thread: about one core), an empty request
//! body and the header `api_version: 1`, in rounds that rotate the setups so that other load on
//! the machine falls on all of them alike. The bare server answers `RpcServerService/info` with
//! the bytes the helper server answers (fetched from it first), `grpc.health.v1.Health/Check`
//! with tonic-health, and `SampleService/method4` with the plain echo.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use grpc_helper::api::rpc_server_service_server::{RpcServerService, RpcServerServiceServer};
use grpc_helper::api::{Filter, MultiServiceInfo};
use grpc_helper::{Folders, RpcServer};
use prost::Message as _;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::targets::{self, BenchManager, LOOPBACK, StderrLines};

/// How a server process is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Setup {
    /// Bare tonic: the same three paths, no grpc-helper.
    Bare,
    /// `RpcServer` with `install_logging(false)` and no subscriber: no tracing at all.
    HelperNone,
    /// `RpcServer` as built: it installs grpc-helper's logging layer; no workspace (no files).
    HelperDefault,
    /// The layer with a workspace: the log files are written.
    HelperWorkspace,
    /// The example server's set-up: `logs::layer()` + fmt at INFO (to stdout), and a workspace.
    HelperFmt,
}

impl Setup {
    const ALL: [Setup; 5] =
        [Setup::Bare, Setup::HelperNone, Setup::HelperDefault, Setup::HelperWorkspace, Setup::HelperFmt];

    fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare tonic server",
            Self::HelperNone => "helper, no subscriber",
            Self::HelperDefault => "helper, default logging",
            Self::HelperWorkspace => "helper, default + log files",
            Self::HelperFmt => "helper, layer+fmt INFO + files",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::HelperNone => "helper-none",
            Self::HelperDefault => "helper-default",
            Self::HelperWorkspace => "helper-workspace",
            Self::HelperFmt => "helper-fmt",
        }
    }
}

/// The loaded paths: (label, path).
const PATHS: [(&str, &str); 3] = [
    ("srv.info", "/RpcServerService/info"),
    ("Health/Check", "/grpc.health.v1.Health/Check"),
    ("user method4", "/SampleService/method4"),
];

/// Loads of a run.
pub struct H2Spec {
    pub requests: u64,
    pub rounds: usize,
}

/// What one h2load run, or the runs of one (setup, path) summed over the rounds, measured.
#[derive(Default)]
struct Cell {
    requests: u64,
    failed: u64,
    seconds: f64,
    server_cpu: Duration,
    h2load_cpu: Duration,
    data_bytes: u64,
    latencies_us: Vec<u64>,
    error: Option<String>,
}

impl Cell {
    fn add(&mut self, run: Cell) {
        self.requests += run.requests;
        self.failed += run.failed;
        self.seconds += run.seconds;
        self.server_cpu += run.server_cpu;
        self.h2load_cpu += run.h2load_cpu;
        self.data_bytes += run.data_bytes;
        self.latencies_us.extend(run.latencies_us);
    }

    fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }

    fn cpu_per_call_us(&self) -> Option<f64> {
        (self.requests > 0 && !self.server_cpu.is_zero())
            .then(|| self.server_cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    fn quantile_us(&mut self, q: f64) -> Option<u64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        self.latencies_us.sort_unstable();
        let index = ((self.latencies_us.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies_us.get(index.min(self.latencies_us.len() - 1)).copied()
    }
}

/// The h2load binary, if installed.
pub fn h2load() -> Option<PathBuf> {
    let found = Command::new("h2load").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    found.ok().filter(|s| s.success()).map(|_| PathBuf::from("h2load"))
}

/// Runs every setup on every path; returns the table, and false when a run failed.
pub async fn run(h2load: &Path, spec: &H2Spec) -> (String, bool) {
    let work = targets::workspace().join("h2load");
    let _ = std::fs::create_dir_all(&work);
    let mut servers: Vec<(Setup, Result<ServerProcess, String>)> = Vec::new();
    // Helper servers first: the bare one answers info with the helper's reply bytes.
    for setup in Setup::ALL.into_iter().filter(|s| *s != Setup::Bare) {
        servers.push((setup, ServerProcess::spawn(setup, None, &work).await));
    }
    let info = match servers.iter().find_map(|(_, s)| s.as_ref().ok()) {
        Some(server) => info_reply(server.port).await,
        None => Err("no helper server started".to_owned()),
    };
    let bare = match info {
        Ok(bytes) => {
            let file = work.join("info-reply.bin");
            match std::fs::write(&file, bytes) {
                Ok(()) => ServerProcess::spawn(Setup::Bare, Some(&file), &work).await,
                Err(e) => Err(format!("cannot write {}: {e}", file.display())),
            }
        }
        Err(e) => Err(format!("cannot fetch the helper's info reply: {e}")),
    };
    servers.insert(0, (Setup::Bare, bare));
    for (_, server) in &mut servers {
        if let Ok(process) = server
            && let Err(e) = check_paths(process.port).await
        {
            *server = Err(e);
        }
    }

    let mut cells: Vec<Vec<Cell>> = servers.iter().map(|_| PATHS.iter().map(|_| Cell::default()).collect()).collect();
    for round in 0..spec.rounds {
        for (p, (_, path)) in PATHS.iter().enumerate() {
            for i in 0..servers.len() {
                let s = (i + round) % servers.len();
                let Ok(server) = &servers[s].1 else { continue };
                let log = work.join(format!("h2load-{s}-{p}.log"));
                let cell = &mut cells[s][p];
                match load(h2load, server, path, spec.requests, &log).await {
                    Ok(one) => cell.add(one),
                    Err(e) => cell.error = Some(e),
                }
            }
        }
    }
    let mut ok = true;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== Server processes under h2load: h2load -n {} -c 4 -m 16 -t 1 per run, empty request body, header api_version: 1;\n   {} round(s) rotating the servers; server CPU from /proc/<pid>/stat; h2load CPU of its one thread",
        spec.requests, spec.rounds
    );
    for (p, (label, path)) in PATHS.iter().enumerate() {
        let _ = writeln!(out, "-- {label} ({path})");
        let _ = writeln!(
            out,
            "{:<32} {:>9} {:>7} {:>7} {:>11} {:>8} {:>9} {:>7} {:>6} {:>6} {:>6}",
            "server",
            "req/s",
            "p50 us",
            "p99 us",
            "CPU us/call",
            "h2load",
            "bytes/req",
            "failed",
            "x tput",
            "x p99",
            "x CPU"
        );
        let base_rate = cells[0][p].rate();
        let base_p99 = cells[0][p].quantile_us(0.99);
        let base_cpu = cells[0][p].cpu_per_call_us();
        for (s, (setup, server)) in servers.iter().enumerate() {
            let cell = &mut cells[s][p];
            let error = match server {
                Err(e) => Some(e.clone()),
                Ok(_) => cell.error.clone().or_else(|| (cell.requests == 0).then(|| "no request done".to_owned())),
            };
            if let Some(e) = error {
                ok = false;
                let _ = writeln!(out, "{:<32} FAILED: {e}", setup.label());
                continue;
            }
            ok &= cell.failed == 0;
            let (p50, p99) = (cell.quantile_us(0.5), cell.quantile_us(0.99));
            let cpu = cell.cpu_per_call_us();
            let ratio = |v: Option<f64>, b: Option<f64>| match (v, b) {
                (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<32} {:>9.0} {:>7} {:>7} {:>11} {:>7.0}% {:>9} {:>7} {:>6} {:>6} {:>6}",
                setup.label(),
                cell.rate(),
                p50.map_or("-".to_owned(), |v| v.to_string()),
                p99.map_or("-".to_owned(), |v| v.to_string()),
                cpu.map_or("-".to_owned(), |c| format!("{c:.1}")),
                100.0 * cell.h2load_cpu.as_secs_f64() / cell.seconds.max(1e-9),
                cell.data_bytes / cell.requests.max(1),
                cell.failed,
                ratio(Some(cell.rate()), Some(base_rate)),
                ratio(p99.map(|v| v as f64), base_p99.map(|v| v as f64)),
                ratio(cpu, base_cpu),
            );
        }
    }
    let _ = writeln!(
        out,
        "  (x: ratio to the bare tonic server on the same path. bytes/req: DATA bytes per reply, the same for bare and\n   helper on each path. h2load near 100% means the load generator, not the server, set the pace.)"
    );
    for (_, server) in servers {
        if let Ok(server) = server {
            server.stop();
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    (out, ok)
}

/// One h2load run, as a cell of its own.
async fn load(h2load: &Path, server: &ServerProcess, path: &str, requests: u64, log: &Path) -> Result<Cell, String> {
    let (h2load, log, pid) = (h2load.to_owned(), log.to_owned(), server.pid());
    let url = format!("http://127.0.0.1:{}{path}", server.port);
    let body = server.body.clone();
    tokio::task::spawn_blocking(move || {
        let before = crate::load::process_cpu(&pid.to_string());
        let mut command = Command::new(&h2load);
        command
            .args(["-n", &requests.to_string(), "-c", "4", "-m", "16", "-t", "1"])
            .arg("-d")
            .arg(&body)
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "api_version: 1"])
            .arg(format!("--log-file={}", log.display()))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().map_err(|e| format!("cannot run h2load: {e}"))?;
        let (output, cpu) = wait_with_rusage(child)?;
        let after = crate::load::process_cpu(&pid.to_string());
        let text = String::from_utf8_lossy(&output);
        let seconds = parse_after(&text, "finished in ", ',').and_then(parse_seconds);
        let done = parse_after(&text, "requests: ", ' ').and_then(|s| s.parse::<u64>().ok());
        let succeeded = parse_after(&text, "done, ", ' ').and_then(|s| s.parse::<u64>().ok());
        let data = text
            .lines()
            .find(|l| l.starts_with("traffic:"))
            .and_then(|l| l.split(", ").last())
            .and_then(|last| last.split(" (").nth(1))
            .and_then(|n| n.split(')').next())
            .and_then(|n| n.parse::<u64>().ok());
        let (Some(seconds), Some(done), Some(succeeded)) = (seconds, done, succeeded) else {
            return Err(format!("cannot read h2load's output:\n{text}"));
        };
        let latencies_us = std::fs::read_to_string(&log)
            .map_err(|e| format!("cannot read h2load's log file: {e}"))?
            .lines()
            .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<u64>().ok())
            .collect();
        Ok(Cell {
            requests: succeeded,
            failed: done.saturating_sub(succeeded),
            seconds,
            server_cpu: before.zip(after).map(|(b, a)| a.saturating_sub(b)).unwrap_or_default(),
            h2load_cpu: cpu,
            data_bytes: data.unwrap_or(0),
            latencies_us,
            error: None,
        })
    })
    .await
    .map_err(|e| format!("h2load task: {e}"))?
}

/// h2load's durations: `1.23s`, `971.88ms`, `850us`.
fn parse_seconds(text: &str) -> Option<f64> {
    let units = [("ms", 1e-3), ("us", 1e-6), ("s", 1.0)];
    let (number, scale) = units.iter().find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))?;
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// The text after `prefix`, up to `end`.
fn parse_after<'t>(text: &'t str, prefix: &str, end: char) -> Option<&'t str> {
    let start = text.find(prefix)? + prefix.len();
    text[start..].split(end).next()
}

/// Waits for the child; its stdout, and the CPU time it used (user + system).
fn wait_with_rusage(mut child: Child) -> Result<(Vec<u8>, Duration), String> {
    use std::io::Read as _;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let mut output = Vec::new();
    stdout.read_to_end(&mut output).map_err(|e| e.to_string())?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the pid is our own child, not waited yet.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let errors = errors.join().unwrap_or_default();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "h2load failed ({status}):\n{}{}",
            String::from_utf8_lossy(&output),
            String::from_utf8_lossy(&errors)
        ));
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((output, time(usage.ru_utime) + time(usage.ru_stime)))
}

/// A server process: this binary re-run with `--serve`.
struct ServerProcess {
    child: Child,
    port: u16,
    /// The request body file (an empty gRPC message: 5 zero bytes).
    body: PathBuf,
    _stderr: StderrLines,
}

impl ServerProcess {
    async fn spawn(setup: Setup, info_reply: Option<&Path>, work: &Path) -> Result<Self, String> {
        let body = work.join("empty-message.grpc");
        std::fs::write(&body, [0u8; 5]).map_err(|e| format!("cannot write {}: {e}", body.display()))?;
        let info_reply = info_reply.map(Path::to_owned);
        tokio::task::spawn_blocking(move || {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            let mut command = Command::new(&exe);
            command.args(["--serve", setup.arg()]);
            if let Some(file) = &info_reply {
                command.arg("--info-reply").arg(file);
            }
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = command.spawn().map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
            let stderr = StderrLines::default();
            let ready = targets::watch_output(&mut child, "PORT ", stderr.clone());
            let port = ready
                .recv_timeout(Duration::from_secs(30))
                .ok()
                .and_then(|line| line["PORT ".len()..].trim().parse().ok());
            match port {
                Some(port) => Ok(ServerProcess { child, port, body, _stderr: stderr }),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let lines = stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
                    Err(format!("the {} server process did not report its port:\n{lines}", setup.arg()))
                }
            }
        })
        .await
        .map_err(|e| format!("spawn task: {e}"))?
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin (it then shuts down), waits 10 s at most, then kills it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn channel(port: u16) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    endpoint.connect_timeout(Duration::from_secs(5)).connect().await.map_err(|e| e.to_string())
}

/// The encoded `info` reply of a helper server.
async fn info_reply(port: u16) -> Result<Vec<u8>, String> {
    use grpc_helper::api::rpc_server_service_client::RpcServerServiceClient;
    let mut client = RpcServerServiceClient::new(channel(port).await?);
    let reply = client.info(Filter::default()).await.map_err(|e| e.to_string())?.into_inner();
    Ok(reply.encode_to_vec())
}

/// One call on each path, each answered with status OK (and an in-band OK): h2load counts
/// HTTP statuses only.
async fn check_paths(port: u16) -> Result<(), String> {
    use grpc_helper::api::rpc_server_service_client::RpcServerServiceClient;
    let channel = channel(port).await?;
    // The header h2load sends.
    fn version<T>(mut request: Request<T>) -> Request<T> {
        request.metadata_mut().insert("api_version", tonic::metadata::AsciiMetadataValue::from_static("1"));
        request
    }
    let info = RpcServerServiceClient::new(channel.clone()).info(version(Request::new(Filter::default()))).await;
    let info = info.map_err(|e| format!("info: {e}"))?.into_inner();
    if info.r.as_ref().is_some_and(|r| r.code != 0) {
        return Err(format!("info answered in band: {:?}", info.r));
    }
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(version(Request::new(tonic_health::pb::HealthCheckRequest::default())))
        .await
        .map_err(|e| format!("Health/Check: {e}"))?
        .into_inner();
    if health.status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        return Err(format!("Health/Check: not serving ({})", health.status));
    }
    let mut echo = grpc_helper_examples::api::sample_service_client::SampleServiceClient::new(channel);
    let reply = echo
        .method4(version(Request::new(grpc_helper_examples::api::SampleRequest::default())))
        .await
        .map_err(|e| format!("method4: {e}"))?
        .into_inner();
    if reply.r.as_ref().is_some_and(|r| r.code != 0) {
        return Err(format!("method4 answered in band: {:?}", reply.r));
    }
    Ok(())
}

/// The bare server's `info`: the helper's reply, decoded once, encoded per call as any tonic
/// service would.
struct BareInfo(MultiServiceInfo);

#[tonic::async_trait]
impl RpcServerService for BareInfo {
    async fn info(&self, _request: Request<Filter>) -> Result<Response<MultiServiceInfo>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

/// The `--serve` process: prints `PORT n`, serves until its stdin closes.
pub fn serve_main(setup: Setup, info_reply: Option<&Path>) -> Result<(), String> {
    let info = match info_reply {
        Some(file) => {
            let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            Some(MultiServiceInfo::decode(bytes.as_slice()).map_err(|e| format!("bad info reply: {e}"))?)
        }
        None => None,
    };
    if setup == Setup::HelperFmt {
        use tracing_subscriber::prelude::*;
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        tracing_subscriber::registry().with(grpc_helper::logs::layer()).with(fmt).init();
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let workspace = targets::workspace().join(format!("serve-{}", setup.arg()));
    let result = runtime.block_on(async {
        let (port, stop): (u16, Box<dyn FnOnce() -> tokio::task::JoinHandle<()>>) = match setup {
            Setup::Bare => {
                let info = info.ok_or("the bare server needs --info-reply")?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let incoming = tonic::transport::server::TcpIncoming::bind(std::net::SocketAddr::new(LOOPBACK, 0))
                    .map_err(|e| format!("bind: {e}"))?
                    .with_nodelay(Some(true));
                let port = incoming.local_addr().map_err(|e| e.to_string())?.port();
                let (_reporter, health) = tonic_health::server::health_reporter();
                let serve = tonic::transport::Server::builder()
                    .add_service(RpcServerServiceServer::new(BareInfo(info)))
                    .add_service(health)
                    .add_service(targets::bare_echo_service())
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stopped.await;
                    });
                let task = tokio::spawn(async move {
                    let _ = serve.await;
                });
                (
                    port,
                    Box::new(move || {
                        let _ = stop.send(());
                        task
                    }),
                )
            }
            _ => {
                let mut builder = RpcServer::builder()
                    .ip(LOOPBACK)
                    .port(0)
                    .debug_signal(false)
                    .install_logging(setup != Setup::HelperNone)
                    .manager(BenchManager::new(1));
                if matches!(setup, Setup::HelperWorkspace | Setup::HelperFmt) {
                    builder = builder.folders(Folders::default().workspace(&workspace));
                }
                let server = builder.start().await.map_err(|e| format!("helper server: {e}"))?;
                let port = server.local_addr().port();
                (port, Box::new(move || tokio::spawn(async move { server.shutdown().await })))
            }
        };
        println!("PORT {port}");
        // Serves until the bench closes our stdin.
        tokio::task::spawn_blocking(|| {
            use std::io::Read as _;
            let mut sink = [0u8; 64];
            while let Ok(1..) = std::io::stdin().read(&mut sink) {}
        })
        .await
        .map_err(|e| e.to_string())?;
        let _ = tokio::time::timeout(Duration::from_secs(5), stop()).await;
        Ok::<_, String>(())
    });
    let _ = std::fs::remove_dir_all(&workspace);
    result
}
