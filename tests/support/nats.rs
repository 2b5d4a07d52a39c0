//! A real `nats-server -js` on a loopback port, its store in a temporary folder, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::process::Process;

/// A JetStream-enabled NATS server for one test.
pub struct NatsServer {
    /// Its client port on 127.0.0.1.
    pub port: u16,
    process: Option<Process>,
    store: PathBuf,
    /// More `nats-server` arguments (authentication, TLS), kept for a restart.
    extra: Vec<String>,
}

/// The `nats-server` binary: on `PATH` or in `/usr/sbin` (Debian); a clear panic when missing.
pub fn nats_server_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    for dir in candidates {
        let binary = dir.join("nats-server");
        if binary.is_file() {
            return binary;
        }
    }
    panic!(
        "nats-server is not installed, and this test needs a real one: `apt-get install nats-server` \
         (bash .ci/run installs it), or put a nats-server binary on PATH"
    );
}

impl NatsServer {
    /// Starts `nats-server -js` on a free loopback port.
    pub fn start() -> Self {
        Self::start_on(crate::free_port())
    }

    /// Starts `nats-server -js` on this loopback port and waits (bounded) until it is ready.
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Starts `nats-server -js` with more arguments: `["--user", "u", "--pass", "p"]`,
    /// `["--auth", "token"]`, `["-c", "nats.conf"]`.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        let store = std::env::temp_dir().join(format!("grpc-helper-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store).unwrap();
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let process = Some(spawn(port, &store, &extra));
        Self { port, process, store, extra }
    }

    /// `nats://127.0.0.1:<port>`, for `rpc-events-url`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL), keeping its store for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        drop(self.process.take());
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.process = Some(spawn(self.port, &self.store, &self.extra));
    }
}

fn spawn(port: u16, store: &std::path::Path, extra: &[String]) -> Process {
    let mut child = Command::new(nats_server_binary())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nats-server starts");
    let stderr = child.stderr.take().unwrap();
    let process = Process(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Server is ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("nats-server ready within 20 s");
    process
}

/// One example-server process, given these `-c` config items (the NATS URLs), with its own
/// empty workspace; killed on drop.
pub struct Replica {
    /// Its port on 127.0.0.1.
    pub port: u16,
    process: Option<Process>,
    workspace: tempfile::TempDir,
}

impl Replica {
    /// Starts the example server and waits (bounded) until it serves.
    pub async fn start(items: &[String]) -> Self {
        Self::start_on(crate::free_port(), items).await
    }

    /// The same, on a port chosen beforehand (one a client already knows).
    pub async fn start_on(port: u16, items: &[String]) -> Self {
        let workspace = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(crate::process::example("server"));
        command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "warn");
        for item in items {
            command.args(["-c", item]);
        }
        let ready = move || crate::process::spawn_until(command, "serving on port", Duration::from_secs(60));
        let process = tokio::task::spawn_blocking(ready).await.unwrap();
        Self { port, process: Some(process), workspace }
    }

    /// Waits (5 s at most) until the replica's root log holds a line containing each of
    /// `parts`, and returns that line.
    pub async fn logged(&self, parts: &[&str]) -> String {
        let path = self.workspace.path().join("logs/root/root.log");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_owned();
            }
            assert!(tokio::time::Instant::now() < deadline, "no line with {parts:?} in {}:\n{log}", path.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of this replica (lazy).
    pub fn client(&self) -> grpc_helper::RpcClient {
        grpc_helper::RpcClient::builder("127.0.0.1", self.port).connect_lazy().unwrap()
    }

    /// SIGKILL, then waits for the process to be gone.
    pub async fn kill_9(&mut self) {
        let mut process = self.process.take().unwrap();
        tokio::task::spawn_blocking(move || {
            process.0.kill().unwrap();
            process.0.wait().unwrap();
        })
        .await
        .unwrap();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
