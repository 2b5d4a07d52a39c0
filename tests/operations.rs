//! Operations over real sockets and processes: the SIGUSR2 debug dump.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grpc_helper::api::Empty;
use grpc_helper::{Folders, RpcClient};
use grpc_helper_tests::process::{example, spawn_until};
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, free_port, sample_stub, server_builder};

fn dumps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("RpcServerDump-"))
        .collect()
}

#[test]
fn sigusr2_dumps_the_pending_calls_of_a_server_process() {
    let workspace = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(example("server"));
    command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "warn");
    let server = spawn_until(command, "serving on port", Duration::from_secs(60));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let call = runtime.spawn(async move {
        let client = RpcClient::builder("127.0.0.1", port).name("dump-test").connect_lazy().unwrap();
        grpc_helper_examples::api::sample_service_client::SampleServiceClient::new(
            client.channel::<grpc_helper_examples::api::SampleApiVersion>(),
        )
        .long_method(Empty {})
        .await
    });
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(server.0.id() as i32, libc::SIGUSR2) }, 0);

    let logs = workspace.path().join("logs");
    let started = Instant::now();
    let dump = loop {
        if let Some(path) = dumps(&logs).pop() {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("Threads:") {
                break (path, text);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no dump in {}", logs.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    let (path, text) = dump;
    assert_eq!(dumps(&logs).len(), 1);
    assert!(text.contains("Pending RPC calls: (1)"), "{text}");
    assert!(text.contains("[RPC] [dump-test]"), "{text}");
    assert!(text.contains(">>> SampleService.long_method (grpc_helper::api::Empty) running for"), "{text}");
    assert!(text.contains(" - sample (grpc-helper-examples:0.1.0, API 1..2)"), "{text}");
    assert!(text.contains("Tokio runtime:"), "{text}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the dump may hold sensitive data");
    // The server kept serving: the slow call completes.
    runtime.block_on(call).unwrap().expect("the call in flight completes");
}

#[tokio::test]
async fn dump_lists_nothing_pending_when_idle_and_names_the_logs_folder_item() {
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let server = server_builder()
            .folders(Folders::default().workspace(dir.path()))
            .cli_config([("rpc-logs-folder".to_owned(), "my-logs".to_owned())])
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        sample_stub(&client_of(&server)).method4(grpc_helper_tests::api::SampleRequest::default()).await.unwrap();
        let path = server.dump().unwrap();
        assert_eq!(path.parent().unwrap(), dir.path().join("my-logs"));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("Pending RPC calls: (0)"), "{text}");
        assert!(text.contains(", serving"), "{text}");
        server.shutdown().await;
    })
    .await;
}
