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
        let store = std::env::temp_dir().join(format!("grpc-helper-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store).unwrap();
        let mut child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
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
        Self { port, process: Some(process), store }
    }

    /// `nats://127.0.0.1:<port>`, for `rpc-events-url`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
