//! Child processes for cross-process tests: the example binaries, Python peers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The python of the test virtualenv (`$GRPC_HELPER_VENV`, default `target/py-venv`) with the
/// original grpc-helper 2.3.1, created on first use (once per test run).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = std::env::var_os("GRPC_HELPER_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target").join("py-venv"));
        let status = Command::new("bash")
            .arg(repo_root().join("tests/python/setup-venv.sh"))
            .arg(&venv)
            .stdin(Stdio::null())
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            "creating the Python virtualenv in {} failed: it needs python3 with venv and pip, and PyPI for \
             grpc-helper==2.3.1 (tests/python/setup-venv.sh, which bash .ci/run runs first; or set GRPC_HELPER_VENV \
             to a virtualenv that has it)",
            venv.display()
        );
        venv.join("bin").join("python")
    })
}

/// An example program of `grpc-helper-examples` (`server`, `client`, `proxy_main`,
/// `proxy_backend`), or `quiet_server` (a server that sets no subscriber of its own): the
/// `it-*` binaries of this package, which cargo builds from the same sources before the tests
/// run, with the tests' own features.
pub fn example(name: &str) -> PathBuf {
    own_binary(&format!("it-{}", name.replace('_', "-")))
}

/// The `rpcctl` binary, built from its sources as this package's `it-rpcctl`.
pub fn rpcctl() -> PathBuf {
    own_binary("it-rpcctl")
}

/// A binary of this package: beside the test executable's `deps/` folder.
fn own_binary(name: &str) -> PathBuf {
    let path = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join(name);
    assert!(path.exists(), "{} is missing: run the tests through cargo (it builds the binaries)", path.display());
    path
}

/// A child process killed when the test ends, whatever happens.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "process did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts a process and waits (bounded) for a stdout line starting with `ready`.
pub fn spawn_until(mut command: Command, ready: &str, limit: Duration) -> Process {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let (tx, rx) = mpsc::channel();
    let marker = ready.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&marker) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("no '{ready}' line within {limit:?}"));
    process
}

/// Runs a Python (grpc-helper 2.3.1) client script of `tests/python` against the server on
/// 127.0.0.1:`port`; what it printed (it must succeed).
pub fn python_client(script: &str, port: u16) -> String {
    let mut py = Command::new(python());
    py.arg(repo_root().join("tests/python").join(script)).args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    let out = run(py, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Runs a command to completion, bounded in time.
pub fn run(mut command: Command, limit: Duration) -> Output {
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(limit).expect("command finished in time").unwrap()
}

/// How many calls a server process (started with a workspace whose logs folder is `logs`) is
/// serving: asks for a debug dump (SIGUSR2), reads its pending-call count, removes it.
pub fn pending_calls_in_dump(server: &Process, logs: &Path) -> usize {
    let dumps = || -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(logs) else { return Vec::new() };
        entries
            .map_while(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("RpcServerDump-")))
            .collect()
    };
    for stale in dumps() {
        let _ = std::fs::remove_file(stale);
    }
    let sent = Command::new("kill").args(["-USR2", &server.0.id().to_string()]).status().expect("kill runs");
    assert!(sent.success(), "SIGUSR2 sent");
    let start = Instant::now();
    loop {
        for path in dumps() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.contains("Threads:") {
                continue;
            }
            let _ = std::fs::remove_file(&path);
            let count = text
                .lines()
                .find_map(|line| line.strip_prefix("Pending RPC calls: (")?.strip_suffix(')')?.parse().ok())
                .unwrap_or_else(|| panic!("no pending-call count in the dump:\n{text}"));
            return count;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no debug dump in {}", logs.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A kill -9 loop over a server process writing state files: each round starts `command(port)`
/// (on a fresh port; it must print a line starting with `ready` once serving), runs
/// `hammer(port)` (writes through RPCs until one fails, returns how many succeeded) on `runtime`,
/// kills the process at a pseudo-random point 100 to 500 ms in, then calls `check(round)` on what
/// it left. Returns the writes completed over all rounds.
///
/// ```no_run
/// use std::process::Command;
/// use grpc_helper_tests::process::{example, kill_loop};
///
/// let runtime = tokio::runtime::Runtime::new().unwrap();
/// let command = |port: u16| {
///     let mut command = Command::new(example("server"));
///     command.args(["--port", &port.to_string()]);
///     command
/// };
/// let writes = kill_loop(&runtime, 3, command, "serving on port", |_port| async { 0 }, |_round| {});
/// ```
pub fn kill_loop<F>(
    runtime: &tokio::runtime::Runtime,
    rounds: u64,
    command: impl Fn(u16) -> Command,
    ready: &str,
    hammer: impl Fn(u16) -> F,
    mut check: impl FnMut(u64),
) -> usize
where
    F: std::future::Future<Output = usize> + Send + 'static,
{
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill loop seed {seed}");
    let mut state = seed | 1;
    let mut written = 0;
    for round in 0..rounds {
        let port = crate::free_port();
        let mut server = spawn_until(command(port), ready, Duration::from_secs(60));
        let writes = {
            let _in_runtime = runtime.enter();
            runtime.spawn(hammer(port))
        };
        // xorshift: a different kill point every round, reproducible from the seed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(100 + state % 400));
        server.0.kill().unwrap();
        let _ = server.0.wait();
        written += runtime.block_on(writes).unwrap();
        check(round);
    }
    written
}
