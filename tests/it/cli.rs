//! The operator CLI (`rpcctl`) end to end against a real server: every sub-command, exit codes,
//! `--json` output.

use std::process::{Command, Output};
use std::time::Duration;

use grpc_helper::config::{ConfigItem, Validator};
use grpc_helper::{Folders, RpcServer};
use grpc_helper_tests::process::{rpcctl, run};
use grpc_helper_tests::server_builder;
use serde_json::Value;

const LIMIT: ConfigItem = ConfigItem::new("cli-limit", "A limit", "10").validator(Validator::PosInt);

fn ctl(port: u16, args: &[&str]) -> Output {
    let mut command = Command::new(rpcctl());
    command.args(["--port", &port.to_string(), "--retry", "2"]).args(args);
    run(command, Duration::from_secs(30))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}{}", stdout(out), String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn every_sub_command_against_a_running_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server: RpcServer = runtime
        .block_on(
            server_builder()
                .folders(Folders::default().workspace(dir.path()))
                .with_events()
                .user_items(&[LIMIT])
                .start(),
        )
        .unwrap();
    let port = server.local_addr().port();

    let info = ctl(port, &["info"]);
    assert!(info.status.success());
    assert!(stdout(&info).lines().any(|l| l.starts_with("srv ")), "{}", stdout(&info));
    let listed = json(&ctl(port, &["--json", "info", "events", "srv"]));
    assert_eq!(listed[0]["name"], "events");
    assert_eq!(listed[1]["current_api_version"], 1);
    let unknown = ctl(port, &["info", "nope"]);
    assert_eq!(unknown.status.code(), Some(30), "exit code = ERROR_ITEM_UNKNOWN");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("\"nope\""));

    assert_eq!(stdout(&ctl(port, &["health"])).trim(), "SERVING");
    assert_eq!(json(&ctl(port, &["--json", "health", "ConfigService"]))["status"], "SERVING");

    assert_eq!(json(&ctl(port, &["--json", "config", "get"]))[0]["value"], "10");
    assert_eq!(json(&ctl(port, &["--json", "config", "set", "cli-limit=25"]))[0]["value"], "25");
    assert_eq!(ctl(port, &["config", "set", "cli-limit=zero"]).status.code(), Some(21));
    assert_eq!(json(&ctl(port, &["--json", "config", "reset", "cli-limit"]))[0]["value"], "10");

    assert_eq!(json(&ctl(port, &["--json", "logger", "set", "cli_logger=debug"]))[0]["level"], "DEBUG");
    assert_eq!(json(&ctl(port, &["--json", "logger", "get", "cli_logger", "root"]))[1]["name"], "root");
    assert_eq!(json(&ctl(port, &["--json", "logger", "reset", "cli_logger"]))[0]["level"], "UNKNOWN");
    assert_eq!(ctl(port, &["logger", "set", "x=LOUD"]).status.code(), Some(21));

    // A listener in another process, then a sender.
    let mut listen = Command::new(rpcctl());
    listen.args(["--port", &port.to_string(), "--json", "events", "listen", "cli-event", "--count", "1"]);
    let listener = std::thread::spawn(move || run(listen, Duration::from_secs(30)));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ids = loop {
        let ids = runtime.block_on(async {
            let client = grpc_helper_tests::client_of(&server);
            let mut events = grpc_helper::api::event_service_client::EventServiceClient::new(
                client.channel::<grpc_helper::api::EventApiVersion>(),
            );
            events.inspect(grpc_helper::api::Empty {}).await.unwrap().into_inner().client_ids
        });
        if !ids.is_empty() {
            break ids;
        }
        assert!(std::time::Instant::now() < deadline, "the listener never connected");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ctl(port, &["events", "send", "cli-event", "k=v"]).status.success());
    let out = listener.join().unwrap();
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["client_id"], ids[0], "the listener's queue (a random id)");
    assert_eq!(lines[1]["name"], "cli-event");
    assert_eq!(lines[1]["properties"]["k"], "v");

    assert!(ctl(port, &["shutdown"]).status.success());
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), server.wait_shutdown()).await.unwrap() });

    let mut no_server = Command::new(rpcctl());
    no_server.args(["--port", &port.to_string(), "--retry", "0", "info"]);
    let unreachable = run(no_server, Duration::from_secs(30));
    assert_eq!(unreachable.status.code(), Some(13), "exit code = ERROR_RPC");
    assert_eq!(ctl(port, &["config"]).status.code(), Some(2), "usage error");
}
