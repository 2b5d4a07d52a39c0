//! State files under kill -9: the proxy example's main server is killed at random points while
//! proxy registrations (`proxy.json`) and event queues (`queues.json`) are being written. Every
//! file left is complete JSON, the server restarts from it, and the restored registration is the
//! one in the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use grpc_helper::RpcClient;
use grpc_helper::api::{EventFilter, Filter, ProxyRegisterRequest};
use grpc_helper_tests::process::{example, kill_loop};

/// The registration in `proxy.json` (port, version), `None` without one; panics on a partial or
/// invalid file.
fn registration_in(file: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    let value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("partial or invalid proxy.json ({e}): {text:?}"));
    let sample = value.as_object().expect("an object").get("sample")?;
    assert_eq!(sample["host"], "127.0.0.1", "{text}");
    let version = sample["version"].as_str().expect("a version").to_owned();
    assert!(version.starts_with('v'), "{text}");
    Some((sample["port"].as_u64().expect("a port"), version))
}

/// Counts a restart whose restored registration is not the one of `proxy.json`.
async fn check_restored(client: &RpcClient, file: &Path, mismatches: &AtomicUsize) {
    let expected = registration_in(file).map_or(0, |(port, _)| port);
    let info = client.server_service().info(Filter::default()).await.unwrap().into_inner();
    let restored = info.items.iter().find(|i| i.name == "sample").unwrap();
    if u64::from(restored.proxy_port) != expected {
        eprintln!("restored port {} but proxy.json says {expected}", restored.proxy_port);
        mismatches.fetch_add(1, Ordering::Relaxed);
    }
}

/// 8 clients registering the `sample` proxy at once, over and over, until a call fails (the
/// kill); first checks the restored registration. Returns the registrations answered.
async fn hammer_concurrently(port: u16, file: std::path::PathBuf, mismatches: Arc<AtomicUsize>) -> usize {
    let client = RpcClient::builder("127.0.0.1", port).no_retry().connect_lazy().unwrap();
    check_restored(&client, &file, &mismatches).await;
    let writers: Vec<_> = (0..8u32)
        .map(|writer| {
            let mut srv = client.server_service();
            tokio::spawn(async move {
                let mut n = 0u32;
                loop {
                    let request = ProxyRegisterRequest {
                        names: vec!["sample".to_owned()],
                        version: format!("v{writer}-{n}"),
                        host: "127.0.0.1".into(),
                        port: 1000 + writer * 5000 + n % 5000,
                    };
                    if srv.proxy_register(request).await.is_err() || n == 100_000 {
                        return n as usize;
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let mut total = 0;
    for writer in writers {
        total += writer.await.unwrap();
    }
    total
}

/// Registers and forgets the `sample` proxy in turn (opening an events queue now and then),
/// until a call fails (the kill) or 100,000 writes; first checks that the server restored the
/// registration of `proxy.json`. Counts writes in `written`.
async fn hammer(port: u16, file: std::path::PathBuf, mismatches: Arc<AtomicUsize>) -> usize {
    let client = RpcClient::builder("127.0.0.1", port).no_retry().connect_lazy().unwrap();
    let mut srv = client.server_service();
    check_restored(&client, &file, &mismatches).await;
    let mut events = client.events_service();
    let sample = || vec!["sample".to_owned()];
    let mut n = 0usize;
    while n < 100_000 {
        let written = if n.is_multiple_of(2) {
            let request = ProxyRegisterRequest {
                names: sample(),
                version: format!("v{n}"),
                host: "127.0.0.1".into(),
                port: 1000 + (n % 60_000) as u32,
            };
            srv.proxy_register(request).await.is_ok()
        } else if n % 50 == 1 {
            // A new queue (written to queues.json), left at once.
            events.listen(EventFilter::default()).await.is_ok()
        } else {
            srv.proxy_forget(Filter { names: sample(), ignore_unknown: false }).await.is_ok()
        };
        if !written {
            break;
        }
        n += 1;
    }
    n
}

#[test]
fn proxy_and_queue_files_are_never_partial_when_the_process_is_killed_mid_write() {
    let workspace = tempfile::tempdir().unwrap();
    let file = workspace.path().join("proxy.json");
    let queues = workspace.path().join("queues.json");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mismatches = Arc::new(AtomicUsize::new(0));
    let binary = example("proxy_main"); // built before the clock starts
    let command = |port: u16| {
        let mut command = Command::new(&binary);
        command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "error");
        command
    };
    let (mut registered, mut forgotten) = (0, 0);
    let rounds = 12;
    let started = Instant::now();
    let written = kill_loop(
        &runtime,
        rounds,
        command,
        "main server on port",
        |port| hammer(port, file.clone(), Arc::clone(&mismatches)),
        |round| {
            match registration_in(&file) {
                Some(_) => registered += 1,
                None => forgotten += 1,
            }
            if queues.exists() {
                let text = std::fs::read_to_string(&queues).unwrap();
                let ids: Result<BTreeMap<u32, Vec<()>>, _> = serde_json::from_str(&text);
                assert!(ids.is_ok(), "round {round}: partial queues.json: {text:?}");
            }
        },
    );
    // The last file is restored too.
    let port = grpc_helper_tests::free_port();
    let last = grpc_helper_tests::process::spawn_until(command(port), "main server on port", Duration::from_secs(60));
    let checked = runtime.block_on(async {
        let client = RpcClient::builder("127.0.0.1", port).no_retry().connect_lazy().unwrap();
        let info = client.server_service().info(Filter::default()).await.unwrap().into_inner();
        u64::from(info.items.iter().find(|i| i.name == "sample").unwrap().proxy_port)
    });
    drop(last);
    assert_eq!(checked, registration_in(&file).map_or(0, |(port, _)| port));
    let mismatches = mismatches.load(Ordering::Relaxed);
    eprintln!(
        "SUMMARY kill -9 while writing proxy.json and queues.json: sent {written} writes over {rounds} kills, \
         restarts succeeded {} failed 0, files left registered {registered} / forgotten {forgotten}, \
         restore mismatches {mismatches} ({:?})",
        rounds + 1,
        started.elapsed()
    );
    assert_eq!(mismatches, 0, "a restart restored something else than the file");
    assert!(written > 100, "the test wrote enough to hit a write in progress: {written}");
}

#[test]
fn concurrent_registrations_leave_a_valid_proxy_json_when_the_process_is_killed() {
    let workspace = tempfile::tempdir().unwrap();
    let file = workspace.path().join("proxy.json");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mismatches = Arc::new(AtomicUsize::new(0));
    let binary = example("proxy_main");
    let command = |port: u16| {
        let mut command = Command::new(&binary);
        command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "error");
        command
    };
    let rounds = 8;
    let written = kill_loop(
        &runtime,
        rounds,
        command,
        "main server on port",
        |port| hammer_concurrently(port, file.clone(), Arc::clone(&mismatches)),
        |_round| {
            // Parses, or the helper panics naming the partial content.
            registration_in(&file);
        },
    );
    let mismatches = mismatches.load(Ordering::Relaxed);
    eprintln!(
        "SUMMARY kill -9 during 8 concurrent registration streams: {written} registrations over {rounds} kills, \
         every proxy.json valid, restore mismatches {mismatches}"
    );
    assert_eq!(mismatches, 0, "a restart restored something else than the file");
    assert!(written > 100, "the test wrote enough to hit a write in progress: {written}");
}
