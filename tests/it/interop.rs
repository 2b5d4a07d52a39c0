//! Interop with the Python original (grpc-helper 2.3.1 from PyPI), both ways, across processes:
//! a Python client calls the Rust example server, the Rust example client reads a Python server,
//! a Python backend registers with a Rust main server and a Rust backend with a Python one.
//!
//! The Python virtualenv is created on first use by `tests/python/setup-venv.sh` (in
//! `$GRPC_HELPER_VENV`, default `target/py-venv`).

use std::process::Command;
use std::time::Duration;

use grpc_helper::api::{Filter, ResultCode, ShutdownRequest};
use grpc_helper::{RpcClient, RpcError};
use grpc_helper_tests::free_port;
use grpc_helper_tests::process::{example, python, python_client, repo_root, run, spawn_until};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn client(port: u16) -> RpcClient {
    RpcClient::builder("127.0.0.1", port).name("interop").timeout(Duration::from_secs(10)).connect_lazy().unwrap()
}

/// The example server in its own process, on a free port with a fresh workspace.
struct ExampleServer {
    process: grpc_helper_tests::process::Process,
    port: u16,
    workspace: tempfile::TempDir,
}

impl ExampleServer {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With these extra arguments (`-c name=value`...).
    fn start_with(args: &[&str]) -> Self {
        let port = free_port();
        let workspace = tempfile::tempdir().unwrap();
        let mut command = Command::new(example("server"));
        command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).args(args).env("RUST_LOG", "warn");
        let process = spawn_until(command, "serving on port", Duration::from_secs(60));
        Self { process, port, workspace }
    }

    /// Runs a Python script of `tests/python` against it; returns what it printed (it must succeed).
    fn python(&self, script: &str) -> String {
        python_client(script, self.port)
    }

    /// Stops it with the remote shutdown RPC: the process must end by itself. Returns the workspace.
    fn stop(mut self) -> tempfile::TempDir {
        runtime().block_on(async {
            client(self.port).server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
        });
        assert!(self.process.wait_exit(Duration::from_secs(30)).success());
        self.workspace
    }
}

#[test]
fn python_client_calls_the_rust_example_server() {
    let server = ExampleServer::start();
    let stdout = server.python("py_client.py");
    assert!(stdout.contains("SERVICE name=srv version=grpc-helper:0.1.0 current=1 supported=1"), "{stdout}");
    assert!(stdout.contains("SERVICE name=sample version=grpc-helper-sample:0.1.0 current=2 supported=1"), "{stdout}");
    assert!(stdout.contains("METHOD4 bar=Hello, interop!"), "{stdout}");
    assert!(stdout.contains("TOO_NEW rc=12"), "{stdout}");
    assert!(stdout.contains("TOO_OLD rc=11"), "{stdout}");
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
    server.stop();
}

#[test]
fn python_client_gets_sets_and_resets_config_and_logger_levels_of_the_rust_server() {
    let server = ExampleServer::start();
    let stdout = server.python("py_config.py");
    let expected = [
        "ITEM name=sample-greeting value=Hello default=Hello",
        "ITEM name=sample-parts value=3 default=3",
        "SET value=Bonjour",
        "INVALID rc=21",
        "RESET value=Hello",
        "UNKNOWN rc=30",
        "LOGGER name=root enabled=True level=30",
        "LOGGER name=py_interop_logger enabled=True level=0",
        "LOGGER_SET level=30",
        "LOGGER_RESET level=0",
        "OK",
    ];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stdout}");
    let workspace = server.stop();
    // The sets were persisted, then the resets too: nothing differs from the defaults.
    for file in ["config.json", "loggers.json"] {
        let saved = std::fs::read_to_string(workspace.path().join(file)).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&saved).unwrap(), serde_json::json!({}), "{file}");
    }
}

/// A Python fleet's clients send no token: a Rust server whose admin networks leave a Python
/// client out refuses its admin RPCs, saying which setting lets it in (`rpc-admin-networks`).
#[test]
fn a_python_client_outside_the_admin_networks_is_told_which_setting_admits_it() {
    let server = ExampleServer::start_with(&["-c", "rpc-admin-networks=10.0.0.0/8"]);
    let stdout = server.python("py_refused.py");
    assert!(stdout.contains("REFUSED rc=13 "), "{stdout}");
    assert!(stdout.contains("StatusCode.PERMISSION_DENIED"), "{stdout}");
    assert!(stdout.contains("/ConfigService/set is an admin RPC, accepted only from 10.0.0.0/8;"), "{stdout}");
    assert!(stdout.contains("add its network to rpc-admin-networks (-c rpc-admin-networks="), "{stdout}");
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
    // Its remote shutdown is refused too (loopback is not in the list): the process is killed.
    drop(server);
}

#[test]
fn python_client_listens_and_sends_events_on_the_rust_server() {
    let server = ExampleServer::start();
    let stdout = server.python("py_events.py");
    // Queue ids are random (never 0): the Python client takes whichever it is given.
    let id: u32 =
        stdout.lines().next().and_then(|l| l.strip_prefix("LISTENING id=")).and_then(|id| id.parse().ok()).unwrap();
    assert_ne!(id, 0, "{stdout}");
    let (listening, inspect) = (format!("LISTENING id={id}"), format!("INSPECT ids={id}"));
    let expected = [listening.as_str(), "RECEIVED name=py-event props=origin=python", "ENDED", inspect.as_str(), "OK"];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stdout}");
    let workspace = server.stop();
    // The retained queue was persisted for the next start, in the original's form.
    let ids = std::fs::read_to_string(workspace.path().join("queues.json")).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&ids).unwrap(), serde_json::json!({ id.to_string(): [] }));
}

#[test]
fn rust_example_client_reads_a_python_server() {
    let python = python();
    let port = free_port();
    let workspace = std::env::temp_dir().join(format!("grpc-helper-interop-{port}"));
    let mut py = Command::new(python);
    py.arg(repo_root().join("tests/python/py_server.py"))
        .args(["--port", &port.to_string(), "--workspace"])
        .arg(&workspace);
    let mut server = spawn_until(py, "READY", Duration::from_secs(60));

    // The example binary, as a user would run it.
    let mut client_cmd = Command::new(example("client"));
    client_cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    let out = run(client_cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "example client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let services: Vec<&str> =
        stdout.lines().skip(1).filter_map(|l| l.split_whitespace().next()).filter(|w| !w.starts_with('(')).collect();
    assert_eq!(services, ["srv", "config", "log"], "{stdout}");
    assert!(stdout.contains("grpc-helper:"), "{stdout}");
    assert!(stdout.contains("(no sample service here)"), "{stdout}");

    runtime().block_on(async {
        let client = client(port);
        // The Python server checks our api_version and answers in band; our client raises it.
        let mut too_new = grpc_helper::api::rpc_server_service_client::RpcServerServiceClient::new(
            client.channel_with_version(Some(2)),
        );
        let error = RpcError::from(too_new.info(Filter::default()).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiServerTooOld), "{error}");
        // Filtered info: unknown names are ERROR_ITEM_UNKNOWN there too.
        let unknown = Filter { names: vec!["nope".into()], ignore_unknown: false };
        let error = RpcError::from(client.server_service().info(unknown).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorItemUnknown), "{error}");
        // Remote shutdown of the Python server from Rust.
        client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
    });
    assert!(server.wait_exit(Duration::from_secs(60)).success());
    let _ = std::fs::remove_dir_all(workspace);
}

#[test]
fn python_backend_registers_with_a_rust_main_server() {
    use grpc_helper::Folders;
    use grpc_helper_tests::api::{SampleApiVersion, SampleRequest};

    let python = python();
    let runtime = runtime();
    let main_dir = tempfile::tempdir().unwrap();
    let main = runtime
        .block_on(
            grpc_helper_tests::server_builder()
                .folders(Folders::default().workspace(main_dir.path()))
                .proxy::<SampleApiVersion>("sample", "SampleService")
                .start(),
        )
        .unwrap();
    let backend_port = free_port();
    let backend_dir = tempfile::tempdir().unwrap();
    let mut py = Command::new(python);
    py.arg(repo_root().join("tests/python/py_backend.py"))
        .args([
            "--port",
            &backend_port.to_string(),
            "--main-port",
            &main.local_addr().port().to_string(),
            "--workspace",
        ])
        .arg(backend_dir.path());
    let mut backend = spawn_until(py, "READY", Duration::from_secs(60));

    runtime.block_on(async {
        let client = grpc_helper_tests::client_of(&main);
        let info = client.server_service().info(Filter { names: vec!["sample".into()], ignore_unknown: false }).await;
        let sample = info.unwrap().into_inner().items.remove(0);
        assert_eq!((sample.version.as_str(), sample.proxy_port), ("py-backend", u32::from(backend_port)));
        // Through the Rust main server, served by the Python backend.
        let reply =
            grpc_helper_tests::sample_stub(&client).method4(SampleRequest { foo: "hello".into() }).await.unwrap();
        assert_eq!(reply.into_inner().bar, "py:hello");
        // Stop the Python backend remotely: it forgets its registration on the way out.
        let backend_client = RpcClient::builder("127.0.0.1", backend_port).connect_lazy().unwrap();
        backend_client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
    });
    assert!(backend.wait_exit(Duration::from_secs(60)).success());
    runtime.block_on(async {
        let info = grpc_helper_tests::client_of(&main).server_service().info(Filter::default()).await.unwrap();
        let sample = info.into_inner().items.into_iter().find(|i| i.name == "sample").unwrap();
        assert_eq!(sample.proxy_port, 0, "the backend forgot its registration");
        main.shutdown().await;
    });
}

#[test]
fn standard_python_health_and_reflection_clients_query_the_rust_server() {
    let server = ExampleServer::start();
    let stdout = server.python("py_health.py");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "HEALTH service= status=SERVING", "{stdout}");
    assert_eq!(lines[1], "HEALTH service=SampleService status=SERVING", "{stdout}");
    let services = lines[2].strip_prefix("SERVICES ").unwrap().split(',').collect::<Vec<_>>();
    for expected in
        ["RpcServerService", "ConfigService", "LoggerService", "EventService", "SampleService", "grpc.health.v1.Health"]
    {
        assert!(services.contains(&expected), "{expected} missing: {stdout}");
    }
    assert_eq!(lines[3], "OK");
    server.stop();
}

#[test]
fn grpcio_client_with_gzip_or_deflate_requests_calls_user_built_in_and_health_services() {
    use grpc_helper::CompressionEncoding;
    use grpc_helper_tests::{EventLog, Sample};

    let python = python();
    let runtime = runtime();
    // Replies compressed too, for the callers that accept it (grpcio does).
    let server = runtime
        .block_on(
            grpc_helper_tests::server_builder()
                .manager(Sample::new(&EventLog::default(), Duration::from_millis(500)))
                .send_compressed(CompressionEncoding::Gzip)
                .start(),
        )
        .unwrap();
    for compression in ["gzip", "deflate"] {
        let mut py = Command::new(python);
        py.arg(repo_root().join("tests/python/py_compressed.py")).args([
            "--port",
            &server.local_addr().port().to_string(),
            "--compression",
            compression,
        ]);
        let out = run(py, Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{compression}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], "METHOD4 len=2400", "{compression}: {stdout}");
        assert!(lines[1].starts_with("INFO services=srv,") && lines[1].contains(",sample"), "{compression}: {stdout}");
        assert_eq!(lines[2..], ["HEALTH status=SERVING", "OK"], "{compression}: {stdout}");
    }
    runtime.block_on(server.shutdown());
}

#[test]
fn rust_backend_registers_with_a_python_main_server_and_serves_every_call_shape() {
    use grpc_helper_tests::api::SampleRequest;
    use grpc_helper_tests::{EventLog, Sample, sample_stub, server_builder};

    let python = python();
    let runtime = runtime();
    let port = free_port();
    let workspace = tempfile::tempdir().unwrap();
    let mut py = Command::new(python);
    py.arg(repo_root().join("tests/python/py_main.py"))
        .args(["--port", &port.to_string(), "--workspace"])
        .arg(workspace.path())
        .env("RPC_CLIENT_TIMEOUT", "10");
    let mut main = spawn_until(py, "READY", Duration::from_secs(60));

    runtime.block_on(async {
        let backend = server_builder()
            .cli_config([
                ("rpc-main-host".to_owned(), "127.0.0.1".to_owned()),
                ("rpc-main-port".to_owned(), port.to_string()),
            ])
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .register_with_main(&["sample"], "rust-backend")
            .start()
            .await
            .unwrap();
        let client = client(port);
        let filter = || Filter { names: vec!["sample".into()], ignore_unknown: false };
        let sample = client.server_service().info(filter()).await.unwrap().into_inner().items.remove(0);
        assert!(sample.is_proxy);
        assert_eq!((sample.version.as_str(), sample.proxy_host.as_str()), ("rust-backend", "127.0.0.1"));
        assert_eq!(sample.proxy_port, u32::from(backend.local_addr().port()));

        let mut stub = sample_stub(&client);
        // Unary, with the caller's metadata as the Python main server forwards it.
        assert_eq!(stub.method4(SampleRequest { foo: "hello".into() }).await.unwrap().into_inner().bar, "hello");
        let caller = stub.method4(SampleRequest { foo: "caller".into() }).await.unwrap().into_inner().bar;
        assert!(caller.starts_with("[interop(proxied)]") && caller.ends_with(" api:2"), "{caller}");
        // Client, server and bidirectional streams.
        grpc_helper_tests::every_streaming_shape(&mut stub).await;

        // The backend forgets its registration on the way out.
        backend.shutdown().await;
        let sample = client.server_service().info(filter()).await.unwrap().into_inner().items.remove(0);
        assert_eq!(sample.proxy_port, 0);
        client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
    });
    assert!(main.wait_exit(Duration::from_secs(60)).success());
}

#[test]
fn python_events_listener_gets_a_random_id_receives_and_stops_on_the_rust_server() {
    let server = ExampleServer::start();
    let stdout = server.python("py_events_listener.py");
    let lines: Vec<&str> = stdout.lines().collect();
    let id: u32 = lines.first().and_then(|l| l.strip_prefix("READY id=")).and_then(|id| id.parse().ok()).unwrap();
    assert_ne!(id, 0, "{stdout}");
    assert_eq!(lines[1..], ["RECEIVED name=py-event props=n=1", "STOPPED", "OK"], "{stdout}");
}
