//! Attacks on a server's defaults, each over real sockets: what the attacker sends, what they
//! get, and that the server still serves everyone else with nothing lost.

use std::time::Duration;

use grpc_helper::api::{
    ConfigItemUpdate, ConfigUpdate, Event, EventInterrupt, Filter, LoggerConfig, LoggerLevel, LoggerUpdate,
    ProxyRegisterRequest, ResultCode, ShutdownRequest,
};
use grpc_helper::auth::BearerToken;
use grpc_helper::config::ConfigItem;
use grpc_helper::{Folders, RpcClient, RpcServer, RpcServerBuilder};
use grpc_helper_tests::api::{SampleApiVersion, SampleRequest};
use grpc_helper_tests::process::{Process, example};
use grpc_helper_tests::{EventLog, Sample, bounded, free_port, sample_stub, server_builder};
use tonic::Code;

const ITEM: ConfigItem = ConfigItem::new("admin-item", "", "x");
const TOKEN: &str = "token-for-admins-3b9e";

fn client(port: u16, token: Option<&str>) -> RpcClient {
    let builder = RpcClient::builder("127.0.0.1", port).no_retry();
    match token {
        Some(token) => builder.bearer_token(token),
        None => builder,
    }
    .connect_lazy()
    .unwrap()
}

/// A server with every admin RPC in use: a user item, events, a declared proxy, a workspace.
fn full(builder: RpcServerBuilder, workspace: &std::path::Path) -> RpcServerBuilder {
    builder
        .folders(Folders::default().workspace(workspace))
        .with_events()
        .user_items(&[ITEM])
        .proxy::<SampleApiVersion>("proxied", "SampleService")
}

/// Every admin RPC (shutdown last): the gRPC status of each, in order.
async fn admin_calls(client: &RpcClient) -> Vec<Result<(), tonic::Status>> {
    let names = |name: &str| Filter { names: vec![name.into()], ignore_unknown: false };
    let update = ConfigUpdate {
        items: vec![ConfigItemUpdate { name: ITEM.name().into(), value: "hacked".into() }],
        ignore_unknown: false,
    };
    let logger = LoggerUpdate { items: vec![LoggerConfig { name: "admin_logger".into(), enabled: false, level: 0 }] };
    let register =
        ProxyRegisterRequest { names: vec!["proxied".into()], version: "1".into(), host: String::new(), port: 1 };
    let (mut config, mut log, mut events, mut srv) =
        (client.config_service(), client.logger_service(), client.events_service(), client.server_service());
    vec![
        config.set(update).await.map(drop),
        config.reset(names(ITEM.name())).await.map(drop),
        log.set(logger).await.map(drop),
        log.reset(names("admin_logger")).await.map(drop),
        srv.proxy_register(register).await.map(drop),
        srv.proxy_forget(names("proxied")).await.map(drop),
        events.send(Event { name: "forged".into(), properties: Vec::new() }).await.map(drop),
        events.interrupt(EventInterrupt { client_id: 1 }).await.map(drop),
        srv.shutdown(ShutdownRequest { timeout: -1 }).await.map(drop),
    ]
}

fn codes(results: &[Result<(), tonic::Status>]) -> Vec<Code> {
    results.iter().map(|r| r.as_ref().err().map_or(Code::Ok, tonic::Status::code)).collect()
}

/// Attack: a peer outside the admin networks sends every admin RPC. It gets PERMISSION_DENIED
/// saying how to allow it; nothing changes, and everyone's other calls are served.
#[tokio::test]
async fn admin_rpcs_from_outside_the_admin_networks_are_refused_and_the_rest_is_served() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        // 127.0.0.1 stands for a remote machine: only 10.0.0.0/8 may administer.
        let server = full(server_builder(), dir.path()).admin_networks(["10.0.0.0/8"]).start().await.unwrap();
        let attacker = client(server.local_addr().port(), None);
        let results = admin_calls(&attacker).await;
        assert_eq!(codes(&results), [Code::PermissionDenied; 9]);
        let message = results[0].as_ref().unwrap_err().message().to_owned();
        assert_eq!(
            message,
            "/ConfigService/set is an admin RPC, accepted only from 10.0.0.0/8; 127.0.0.1 is not among them: to allow \
             it, add its network to rpc-admin-networks (-c rpc-admin-networks=10.0.0.0/8,..., or \
             RpcServerBuilder::admin_networks: what a fleet of Python clients, which send no token, needs), \
             configure an auth guard (RpcServerBuilder::auth_guard, or --auth-token-file) and send its credentials, \
             or call allow_remote_admin() to accept it from anyone"
        );

        // Claiming another address in the `ip` metadata changes nothing: the TCP peer counts.
        let mut spoofed = tonic::Request::new(Filter { names: vec![ITEM.name().into()], ignore_unknown: false });
        spoofed.metadata_mut().insert("ip", "10.0.0.5".parse().unwrap());
        assert_eq!(attacker.config_service().reset(spoofed).await.unwrap_err().code(), Code::PermissionDenied);

        // Nothing was applied, and every other call is served.
        assert!(server.is_running());
        let items = attacker.config_service().get(Filter::default()).await.unwrap().into_inner().items;
        assert_eq!(items[0].value, "x");
        let info = attacker.server_service().info(Filter::default()).await.unwrap().into_inner();
        assert!(info.items.iter().any(|s| s.name == "proxied" && s.proxy_port == 0), "no backend registered");
        attacker.events_service().inspect(grpc_helper::api::Empty {}).await.unwrap();
        server.shutdown().await;
        let log = std::fs::read_to_string(dir.path().join("logs/root/root.log")).unwrap();
        // The first refusals; the rest of a burst is throttled (see the flood test).
        assert!(log.contains("refused /ConfigService/set from"), "refusals are logged");
        assert!(log.contains(" at 127.0.0.1: PermissionDenied"), "with the peer address");
    })
    .await;
}

/// The admin networks from the `rpc-admin-networks` item (`-c`, what a Python fleet sets, its
/// clients sending no token): given, they replace the default; the builder's take precedence.
#[tokio::test]
async fn the_admin_networks_item_sets_them_and_the_builder_wins() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let item = |value: &str| [("rpc-admin-networks".to_owned(), value.to_owned())];
        let set = || ConfigUpdate {
            items: vec![ConfigItemUpdate { name: ITEM.name().into(), value: "y".into() }],
            ignore_unknown: false,
        };
        let narrowed = server_builder().user_items(&[ITEM]).cli_config(item("10.0.0.0/8 , 192.168.1.7")).start();
        let narrowed = narrowed.await.unwrap();
        let refused = grpc_helper_tests::client_of(&narrowed).config_service().set(set()).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert!(refused.message().contains("accepted only from 10.0.0.0/8, 192.168.1.7/32;"), "{}", refused.message());
        assert!(refused.message().contains("add its network to rpc-admin-networks"), "{}", refused.message());
        narrowed.shutdown().await;

        let builder_wins = server_builder().user_items(&[ITEM]).cli_config(item("10.0.0.0/8"));
        let builder_wins = builder_wins.admin_networks(["127.0.0.0/8"]).start().await.unwrap();
        grpc_helper_tests::client_of(&builder_wins).config_service().set(set()).await.unwrap();
        builder_wins.shutdown().await;
    })
    .await;
}

/// Without a guard, loopback peers administer the server, also through a dual-stack listener
/// (where IPv4 peers arrive as `::ffff:127.0.0.1`) and over IPv6.
#[tokio::test]
async fn loopback_peers_administer_a_server_without_a_guard() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let builder = RpcServer::builder().ip("::".parse().unwrap()).port(0).shutdown_grace(Duration::from_secs(5));
        let server = full(builder, dir.path()).start().await.unwrap();
        let port = server.local_addr().port();
        let update = |value: &str| ConfigUpdate {
            items: vec![ConfigItemUpdate { name: ITEM.name().into(), value: value.into() }],
            ignore_unknown: false,
        };
        client(port, None).config_service().set(update("v4")).await.unwrap();
        let v6 = RpcClient::builder("::1", port).no_retry().connect_lazy().unwrap();
        v6.config_service().set(update("v6")).await.unwrap();
        assert_eq!(server.config().get(&ITEM).as_str(), "v6");
        v6.shutdown_server_now().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.wait_shutdown()).await.unwrap();
    })
    .await;
}

/// With a guard, explicit admin networks still apply (network *and* token); allow_remote_admin
/// leaves the decision to the guard alone.
#[tokio::test]
async fn admin_networks_apply_with_a_guard_and_allow_remote_admin_lifts_them() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let guarded = || full(server_builder(), dir.path()).auth_guard(BearerToken::new(TOKEN));
        let narrowed = guarded().admin_networks(["10.0.0.0/8", "192.168.1.7"]).start().await.unwrap();
        let port = narrowed.local_addr().port();
        let refused = client(port, Some(TOKEN)).config_service().reset(Filter::default()).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert!(refused.message().contains("accepted only from 10.0.0.0/8, 192.168.1.7/32;"), "{}", refused.message());
        assert!(refused.message().contains("allow_remote_admin() to let the auth guard alone decide"));
        narrowed.shutdown().await;

        let lifted = guarded().admin_networks(["10.0.0.0/8"]).allow_remote_admin().start().await.unwrap();
        let port = lifted.local_addr().port();
        let through = codes(&admin_calls(&client(port, Some(TOKEN))).await);
        // Let through: each answers for itself (interrupt: there is no queue 1).
        let mut expected = [Code::Ok; 9];
        expected[7] = Code::NotFound;
        assert_eq!(through, expected);
        tokio::time::timeout(Duration::from_secs(10), lifted.wait_shutdown()).await.unwrap();
        let anonymous = full(server_builder(), dir.path()).auth_guard(BearerToken::new(TOKEN)).allow_remote_admin();
        let server = anonymous.start().await.unwrap();
        let denied = client(server.local_addr().port(), None).config_service().reset(Filter::default()).await;
        assert_eq!(denied.unwrap_err().code(), Code::Unauthenticated, "the guard still decides");
        server.shutdown().await;
    })
    .await;
}

/// Misconfigurations that would open the server refuse to start, with a clear error.
#[tokio::test]
async fn an_empty_token_or_a_bad_admin_network_fails_the_start() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let error = server_builder().auth_guard(BearerToken::new("")).start().await.err().unwrap();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        assert!(error.message().contains("bearer token of the auth guard is empty"), "{error}");
        let error = RpcClient::builder("127.0.0.1", 1).bearer_token("").connect_lazy().err().unwrap();
        assert!(error.message().contains("empty"), "{error}");

        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "\n").unwrap();
        let error = server_builder().auth_token_file(&token_file).start().await.err().unwrap();
        assert!(error.message().contains("is empty: it must hold the bearer token"), "{error}");
        let error = server_builder().auth_token_file(dir.path().join("missing")).start().await.err().unwrap();
        assert!(error.message().starts_with("Cannot read the auth token file"), "{error}");

        let error = server_builder().admin_networks(["10.0.0.0/33"]).start().await.err().unwrap();
        assert_eq!(
            error.message(),
            "invalid admin network \"10.0.0.0/33\": expected CIDR like 10.0.0.0/8 or ::1/128, or an address"
        );
        let item = |value: &str| [("rpc-admin-networks".to_owned(), value.to_owned())];
        let error = server_builder().cli_config(item("10.0.0.0/8, 10.0.0.0/33")).start().await.err().unwrap();
        assert_eq!(
            error.message(),
            "Invalid value for rpc-admin-networks: invalid admin network \"10.0.0.0/33\": expected CIDR like \
             10.0.0.0/8 or ::1/128, or an address (default from command line -c rpc-admin-networks=...; the server \
             cannot start)"
        );
    })
    .await;
}

/// Attack: a config name holding a newline and a fake record. The log files get exactly one
/// line for it, with the newline escaped.
#[tokio::test]
async fn a_config_name_with_a_newline_cannot_forge_a_log_line() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let server = full(server_builder(), dir.path()).start().await.unwrap();
        let admin = client(server.local_addr().port(), None);
        // DEBUG, so that the failed call and its message are logged.
        let debug = LoggerConfig { name: "grpc_helper".into(), enabled: true, level: LoggerLevel::LvlDebug as i32 };
        admin.logger_service().set(LoggerUpdate { items: vec![debug] }).await.unwrap();
        let forged = "x\n2026-12-02 00:00:00.000 ERROR grpc_helper: FORGED admin logged in";
        let update = ConfigUpdate {
            items: vec![ConfigItemUpdate { name: forged.into(), value: "1".into() }],
            ignore_unknown: false,
        };
        let reply = admin.config_service().set(update).await.unwrap_err();
        assert_eq!(grpc_helper_tests::code_of(reply), ResultCode::ErrorItemUnknown as i32);
        admin.config_service().get(Filter::default()).await.unwrap();
        server.shutdown().await;

        for file in ["logs/root/root.log", "logs/config/config.log"] {
            let log = std::fs::read_to_string(dir.path().join(file)).unwrap();
            // The refusal, and at DEBUG the call's own trace (request and reply): each one line
            // holding the name escaped in place, none a record of its own.
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("FORGED")).collect();
            assert!(lines.iter().any(|l| l.contains("Unknown config item: x\\n2026-12-02")), "{file}: {lines:?}");
            assert!(
                lines.iter().all(|l| l.contains("x\\n2026-12-02 00:00:00.000 ERROR")),
                "escaped in place: {lines:?}"
            );
            assert!(log.lines().all(|l| l.starts_with("20") && l.as_bytes()[4] == b'-'), "every line is a record");
            assert!(!log.lines().any(|l| l.starts_with("2026-12-02 00:00:00.000")), "no forged record");
        }
    })
    .await;
}

/// Attack: a huge `rpc-logs-interval` (9223372036854775807 hours would overflow the rotation
/// arithmetic). It is a validation error naming the item and the range, not a panic.
#[tokio::test]
async fn a_huge_rpc_logs_interval_is_a_validation_error() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let error = server_builder()
            .folders(Folders::default().workspace(dir.path()))
            .cli_config([("rpc-logs-interval".to_owned(), i64::MAX.to_string())])
            .start()
            .await
            .err()
            .unwrap();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        assert!(error.message().contains("rpc-logs-interval"), "{error}");
        assert!(error.message().contains("from 1 to 100000"), "{error}");
    })
    .await;
}

/// Attack: `loggers.json` cannot be written (here a folder stands where the file goes: it
/// fails for root too, unlike a read-only folder). `log.set` answers the write error and the
/// level stays what it was, in memory and on disk; once writable, changes persist again.
#[tokio::test]
async fn a_failed_loggers_write_leaves_the_level_unchanged() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let server = server_builder()
            .folders(Folders::default().workspace(dir.path()))
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        let admin = client(server.local_addr().port(), None);
        let mut log = admin.logger_service();
        let level = |level: LoggerLevel| LoggerUpdate {
            items: vec![LoggerConfig { name: "sample_levels".into(), enabled: true, level: level as i32 }],
        };
        log.set(level(LoggerLevel::LvlWarning)).await.unwrap();
        let file = dir.path().join("loggers.json");
        let saved = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir_all(file.join("blocker")).unwrap();

        let failed = log.set(level(LoggerLevel::LvlDebug)).await.unwrap_err();
        assert_eq!(failed.message(), format!("Cannot write {}: Is a directory (os error 21)", file.display()));
        assert_eq!(grpc_helper_tests::code_of(failed), ResultCode::ErrorRequestFailed as i32);
        let now = log.get(Filter { names: vec!["sample_levels".into()], ignore_unknown: false }).await.unwrap();
        assert_eq!(now.into_inner().items[0].level, LoggerLevel::LvlWarning as i32, "the change was undone");
        let reset = log.reset(Filter { names: vec!["sample_levels".into()], ignore_unknown: false }).await;
        assert_eq!(grpc_helper_tests::code_of(reset.unwrap_err()), ResultCode::ErrorRequestFailed as i32);
        let now = log.get(Filter { names: vec!["sample_levels".into()], ignore_unknown: false }).await.unwrap();
        assert_eq!(now.into_inner().items[0].level, LoggerLevel::LvlWarning as i32, "the reset was undone");
        // The server serves on, and persists again once the file can be written.
        sample_stub(&admin).method4(SampleRequest { foo: "still here".into() }).await.unwrap();
        std::fs::remove_dir_all(&file).unwrap();
        log.set(level(LoggerLevel::LvlWarning)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), saved);
        server.shutdown().await;
    })
    .await;
}

/// The example server as operators run it, its stdout lines sent to a channel.
fn example_server(args: &[&str]) -> (Process, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(example("server"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    (Process(child), rx)
}

/// Lines until one starts with `marker` (60 s at most), that one included.
fn lines_until(rx: &std::sync::mpsc::Receiver<String>, marker: &str) -> Vec<String> {
    let started = std::time::Instant::now();
    let mut lines = Vec::new();
    loop {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no {marker:?} line within 60 s: {lines:?}"));
        let done = line.starts_with(marker);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// `--bind` and `--auth-token-file` on the example server: it listens on the given address
/// only (no open-port warning) and guards the admin RPCs with the file's token.
#[test]
fn the_example_server_takes_bind_and_auth_token_file() {
    let _heavy = grpc_helper_tests::heavy();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let workspace = dir.path().join("ws");
    let args = ["-p", &port.to_string(), "-w", workspace.to_str().unwrap(), "--bind", "127.0.0.1"];
    let (mut server, rx) = example_server(&[&args[..], &["--auth-token-file", token_file.to_str().unwrap()]].concat());
    let lines = lines_until(&rx, "serving on port");
    assert!(lines.iter().any(|l| l.contains(&format!("RPC server listening on 127.0.0.1:{port}"))), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("reachable beyond this machine")), "{lines:?}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let anonymous = client(port, None).config_service().reset(Filter::default()).await.unwrap_err();
        assert_eq!(anonymous.code(), Code::Unauthenticated);
        client(port, Some(TOKEN)).shutdown_server_now().await.unwrap();
    });
    // The client's connection closes, as its process would end: the server does not wait the
    // shutdown grace for a peer that no longer answers (its HTTP/2 GOAWAY ping).
    drop(runtime);
    lines_until(&rx, "server stopped");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
}

/// Without `--bind`, the example server listens on every address and says where its admin
/// RPCs are accepted.
#[test]
fn the_example_server_on_every_address_says_admin_is_loopback_only() {
    let _heavy = grpc_helper_tests::heavy();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut server, rx) = example_server(&["-p", &port.to_string(), "-w", dir.path().to_str().unwrap()]);
    let lines = lines_until(&rx, "serving on port");
    let warning = lines.iter().find(|l| l.contains("reachable beyond this machine")).expect("a warning");
    assert!(
        warning.ends_with(&format!(
            "[::]:{port} is reachable beyond this machine and has no auth guard: its admin RPCs (shutdown, config \
             and logger changes, proxy registration, events send and interrupt) are accepted only from \
             127.0.0.0/8, ::1/128 (set RpcServerBuilder::auth_guard or --auth-token-file to administer it remotely)"
        )),
        "{warning}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { client(port, None).shutdown_server_now().await.unwrap() });
    drop(runtime);
    lines_until(&rx, "server stopped");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
}

/// Attack: `shutdown(timeout = 2^31 - 1)`, which used to leave a process that had stopped
/// serving and slept for 68 years. The wait is capped at `rpc-shutdown-timeout` (1 s here):
/// the process exits.
#[test]
fn a_remote_shutdown_with_a_huge_timeout_still_ends_the_process() {
    let _heavy = grpc_helper_tests::heavy();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args = ["-p", &port.to_string(), "-w", dir.path().to_str().unwrap(), "--bind", "127.0.0.1"];
    let (mut server, rx) = example_server(&[&args[..], &["-c", "rpc-shutdown-timeout=1"]].concat());
    lines_until(&rx, "serving on port");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = std::time::Instant::now();
    runtime.block_on(async {
        client(port, None).server_service().shutdown(ShutdownRequest { timeout: i32::MAX }).await.unwrap();
    });
    drop(runtime);
    let lines = lines_until(&rx, "server stopped");
    assert!(lines.iter().any(|l| l.contains("Will shutdown in 1s")), "{lines:?}");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited the capped delay");
}

/// Attack: a link planted where the root log goes, pointing at a file of the operator's. The
/// server writes nothing through it; the logs it writes and its state files are its owner's
/// alone (at DEBUG the logs hold request contents; the state files name peers and queues).
#[tokio::test]
async fn logs_go_through_no_link_and_logs_and_state_files_are_the_owners_alone() {
    let _heavy = grpc_helper_tests::heavy();
    use std::os::unix::fs::PermissionsExt;
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious\n").unwrap();
        std::fs::create_dir_all(dir.path().join("logs/root")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("logs/root/root.log")).unwrap();
        let server = full(server_builder(), dir.path()).start().await.unwrap();
        let admin = client(server.local_addr().port(), None);
        let debug = LoggerConfig { name: "grpc_helper".into(), enabled: true, level: LoggerLevel::LvlDebug as i32 };
        admin.logger_service().set(LoggerUpdate { items: vec![debug] }).await.unwrap();
        let unknown = ConfigItemUpdate { name: "no-such-item".into(), value: "1".into() };
        admin.config_service().set(ConfigUpdate { items: vec![unknown], ignore_unknown: false }).await.unwrap_err();
        server.shutdown().await;

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "written through the link");
        let mode = |file: &str| std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        let config_log = std::fs::read_to_string(dir.path().join("logs/config/config.log")).unwrap();
        assert!(config_log.contains("no-such-item"), "{config_log}");
        assert_eq!(mode("logs/config/config.log"), 0o600);
        assert_eq!(mode("loggers.json"), 0o600);
    })
    .await;
}

/// Attack: 500 refused admin calls in a burst, each with 8 KiB of caller metadata. The log gets
/// a few lines, each clipped, and the next line says how many were left out.
#[tokio::test]
async fn a_flood_of_refused_admin_calls_writes_a_few_clipped_lines() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let server = full(server_builder().auth_guard(BearerToken::new(TOKEN)), dir.path()).start().await.unwrap();
        let attacker = RpcClient::builder("127.0.0.1", server.local_addr().port())
            .name("a".repeat(8 * 1024))
            .no_retry()
            .connect_lazy()
            .unwrap();
        let set = || ConfigUpdate {
            items: vec![ConfigItemUpdate { name: ITEM.name().into(), value: "y".into() }],
            ignore_unknown: false,
        };
        let started = std::time::Instant::now();
        for _ in 0..500 {
            let refused = attacker.config_service().set(set()).await.unwrap_err();
            assert_eq!(refused.code(), Code::Unauthenticated);
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        attacker.config_service().set(set()).await.unwrap_err();
        let seconds = started.elapsed().as_secs();
        server.shutdown().await;

        let log = std::fs::read_to_string(dir.path().join("logs/root/root.log")).unwrap();
        let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused /ConfigService/set")).collect();
        // At most 10 lines a second, however slow the machine made the flood.
        let most = usize::try_from(10 * (seconds + 2)).unwrap();
        assert!(
            (2..=most).contains(&refusals.len()) && refusals.len() < 100,
            "{} lines in {seconds} s",
            refusals.len()
        );
        assert!(
            refusals.iter().all(|l| l.len() < 1024),
            "clipped: {}",
            refusals.iter().map(|l| l.len()).max().unwrap()
        );
        // Which line says so depends on how fast the flood went (a slow machine logs all of the
        // last second's few calls): at least one does.
        assert!(refusals.iter().any(|l| l.contains("more like it left out)")), "{}", refusals.last().unwrap());
    })
    .await;
}
