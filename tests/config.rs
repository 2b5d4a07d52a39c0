//! Configuration over real sockets: default layering (files, environment, command line),
//! validation, the `config` service, persistence across restarts, and `rpc-*` items driving
//! the server.
//!
//! One test at a time (each takes `heavy()`): they read the log files that every server of
//! this process writes to, and set environment variables.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use grpc_helper::api::config_service_client::ConfigServiceClient;
use grpc_helper::api::{ConfigItemUpdate, ConfigStatus, ConfigUpdate, Filter, ResultCode};
use grpc_helper::config::{ConfigItem, RpcConfig, Validator};
use grpc_helper::{Folders, RpcChannel, RpcError, RpcServer, RpcServerBuilder};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::names;
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, server_builder};

const MY_INT: ConfigItem = ConfigItem::new("my-int-config", "Some int", "12").validator(Validator::Int);
const MY_POS: ConfigItem = ConfigItem::new("my-pos-float", "Some positive float", "1.5").validator(Validator::PosFloat);
const MY_TEXT: ConfigItem = ConfigItem::new("my-text", "Some text, may be empty", "abc").can_be_empty();
const ITEMS: &[ConfigItem] = &[MY_INT, MY_POS, MY_TEXT];

fn config_stub(server: &RpcServer) -> ConfigServiceClient<RpcChannel> {
    client_of(server).config_service()
}

fn with_workspace(dir: &Path) -> RpcServerBuilder {
    server_builder().folders(Folders::default().workspace(dir.join("wks"))).user_items(ITEMS)
}

fn update(pairs: &[(&str, &str)]) -> ConfigUpdate {
    let items = pairs.iter().map(|(n, v)| ConfigItemUpdate { name: n.to_string(), value: v.to_string() }).collect();
    ConfigUpdate { items, ignore_unknown: false }
}

fn values(status: &ConfigStatus) -> BTreeMap<String, String> {
    status.items.iter().map(|i| (i.name.clone(), i.value.clone())).collect()
}

fn persisted(dir: &Path) -> BTreeMap<String, String> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("wks/config.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn get_lists_user_items_only_with_their_rules() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = with_workspace(dir.path()).start().await.unwrap();
        let all = config_stub(&server).get(Filter::default()).await.unwrap().into_inner();
        let listed: Vec<_> = all.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(listed, ["my-int-config", "my-pos-float", "my-text"]);
        let int = &all.items[0];
        assert_eq!(
            (int.value.as_str(), int.default_value.as_str(), int.description.as_str()),
            ("12", "12", "Some int")
        );
        assert_eq!(int.validator, grpc_helper::api::ConfigValidator::ConfigValidInt as i32);
        assert!(!int.can_be_empty && all.items[2].can_be_empty);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn get_checks_names() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = with_workspace(dir.path()).start().await.unwrap();
        let mut config = config_stub(&server);
        let code = |s: tonic::Status| RpcError::from(s).result_code();
        assert_eq!(code(config.get(names(&[""])).await.unwrap_err()), Some(ResultCode::ErrorParamMissing));
        assert_eq!(code(config.get(names(&["unknown"])).await.unwrap_err()), Some(ResultCode::ErrorItemUnknown));
        // Static items are not reachable remotely, and the message says why.
        let error = RpcError::from(config.get(names(&["rpc-shutdown-grace"])).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorItemUnknown));
        assert!(error.message().contains("is static"), "{error}");
        let mut lenient = names(&["unknown", "my-text"]);
        lenient.ignore_unknown = true;
        let some = config.get(lenient).await.unwrap().into_inner();
        assert_eq!(values(&some), BTreeMap::from([("my-text".into(), "abc".into())]));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn set_validates_then_persists_and_restart_restores() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = with_workspace(dir.path()).start().await.unwrap();
        let mut config = config_stub(&server);
        let code = |s: tonic::Status| RpcError::from(s).result_code();
        assert_eq!(code(config.set(ConfigUpdate::default()).await.unwrap_err()), Some(ResultCode::ErrorParamMissing));
        assert_eq!(
            code(config.set(update(&[("my-int-config", "")])).await.unwrap_err()),
            Some(ResultCode::ErrorParamMissing)
        );
        let error = RpcError::from(config.set(update(&[("my-int-config", "foo")])).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        assert!(error.message().contains("my-int-config") && error.message().contains("\"foo\""), "{error}");
        assert!(error.message().contains("expected a whole number"), "{error}");
        // One bad value: nothing changes, nothing is written.
        let mixed = update(&[("my-text", "changed"), ("my-pos-float", "-1")]);
        assert_eq!(code(config.set(mixed).await.unwrap_err()), Some(ResultCode::ErrorParamInvalid));
        assert!(!dir.path().join("wks/config.json").exists());

        let reply = config.set(update(&[("my-int-config", "999"), ("my-text", "")])).await.unwrap().into_inner();
        assert_eq!(
            values(&reply),
            BTreeMap::from([("my-int-config".into(), "999".into()), ("my-text".into(), "".into())])
        );
        assert_eq!(
            persisted(dir.path()),
            BTreeMap::from([("my-int-config".into(), "999".into()), ("my-text".into(), "".into())])
        );
        server.shutdown().await;

        let again = with_workspace(dir.path()).start().await.unwrap();
        let all = config_stub(&again).get(Filter::default()).await.unwrap().into_inner();
        assert_eq!(values(&all)["my-int-config"], "999");
        assert_eq!(values(&all)["my-text"], "");
        again.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn reset_restores_the_default_and_persists() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = with_workspace(dir.path()).start().await.unwrap();
        let mut config = config_stub(&server);
        config.set(update(&[("my-int-config", "777")])).await.unwrap();
        assert_eq!(
            RpcError::from(config.reset(Filter::default()).await.unwrap_err()).result_code(),
            Some(ResultCode::ErrorParamMissing)
        );
        let reply = config.reset(names(&["my-int-config"])).await.unwrap().into_inner();
        assert_eq!(values(&reply)["my-int-config"], "12");
        assert!(persisted(dir.path()).is_empty(), "the reset is persisted (the original forgets)");
        server.shutdown().await;
        let again = with_workspace(dir.path()).start().await.unwrap();
        assert_eq!(again.config().get(&MY_INT).as_int().unwrap(), 12);
        again.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn managers_read_current_values_and_see_changes() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = with_workspace(dir.path()).start().await.unwrap();
        let mut changes = server.config().subscribe();
        config_stub(&server).set(update(&[("my-pos-float", "2.25")])).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), changes.changed()).await.unwrap().unwrap();
        let value = server.config().get(&MY_POS);
        assert_eq!(value.as_duration().unwrap(), Duration::from_millis(2250));
        assert_eq!(value.as_float().unwrap(), 2.25);
        server.shutdown().await;
    })
    .await;
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const P_HARD: ConfigItem = ConfigItem::new("prec-hard", "", "hard");
const P_SYSTEM: ConfigItem = ConfigItem::new("prec-system", "", "hard");
const P_USER: ConfigItem = ConfigItem::new("prec-user", "", "hard");
const P_ENV: ConfigItem = ConfigItem::new("prec-env", "", "hard");
const P_CLI: ConfigItem = ConfigItem::new("prec-cli", "", "hard");

#[tokio::test]
async fn defaults_layer_files_then_environment_then_command_line() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let all = r#"{"prec-system": "system", "prec-user": "system", "prec-env": "system", "prec-cli": "system"}"#;
        write(&dir.path().join("sys/config.json"), all);
        write(&dir.path().join("usr/config.json"), r#"{"prec-user": "user", "prec-env": "user", "prec-cli": "user"}"#);
        // SAFETY: these variable names are read by this test only.
        unsafe {
            std::env::set_var("PREC_ENV", "env");
            std::env::set_var("PREC_CLI", "env");
        }
        let folders = Folders::default().system(dir.path().join("sys")).user(dir.path().join("usr"));
        let server = server_builder()
            .folders(folders)
            .user_items(&[P_HARD, P_SYSTEM, P_USER, P_ENV, P_CLI])
            .cli_config([("prec-cli".to_owned(), "cli".to_owned())])
            .start()
            .await
            .unwrap();
        let all = config_stub(&server).get(Filter::default()).await.unwrap().into_inner();
        let defaults: Vec<_> = all.items.iter().map(|i| (i.name.as_str(), i.default_value.as_str())).collect();
        assert_eq!(
            defaults,
            [
                ("prec-hard", "hard"),
                ("prec-system", "system"),
                ("prec-user", "user"),
                ("prec-env", "env"),
                ("prec-cli", "cli")
            ]
        );
        assert!(all.items.iter().all(|i| i.value == i.default_value));
        server.shutdown().await;
    })
    .await;
}

const ENV_MANGLED: ConfigItem = ConfigItem::new("my-own-setting", "", "x");

#[tokio::test]
async fn environment_variable_is_the_name_uppercased_with_underscores() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        assert_eq!(ENV_MANGLED.env_name(), "MY_OWN_SETTING");
        // SAFETY: read by this test only.
        unsafe { std::env::set_var("MY_OWN_SETTING", "from-env") };
        let server = server_builder().user_items(&[ENV_MANGLED]).start().await.unwrap();
        assert_eq!(server.config().get(&ENV_MANGLED).as_str(), "from-env");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_default_refuses_to_start_naming_item_value_rule_and_source() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let error = server_builder()
            .user_items(ITEMS)
            .cli_config([("my-int-config".to_owned(), "zzz".to_owned())])
            .start()
            .await
            .err()
            .unwrap();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        for part in ["my-int-config", "\"zzz\"", "expected a whole number", "command line"] {
            assert!(error.message().contains(part), "{part} missing in: {error}");
        }
        let interval = server_builder()
            .cli_config([("rpc-logs-interval-unit".to_owned(), "foo".to_owned())])
            .start()
            .await
            .err()
            .unwrap();
        assert_eq!(interval.result_code(), Some(ResultCode::ErrorParamInvalid));
    })
    .await;
}

#[tokio::test]
async fn corrupt_config_files_refuse_to_start_naming_the_file() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        for (folder, text) in [("sys", "{not json"), ("usr", r#"{"my-int-config": 45}"#), ("wks", "[1, 2]")] {
            let path = dir.path().join(folder).join("config.json");
            write(&path, text);
            let folders = Folders::default()
                .system(dir.path().join("sys"))
                .user(dir.path().join("usr"))
                .workspace(dir.path().join("wks"));
            let error = server_builder().folders(folders).user_items(ITEMS).start().await.err().expect(folder);
            assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid), "{folder}: {error}");
            assert!(error.message().contains(&path.display().to_string()), "{folder}: {error}");
            std::fs::remove_file(&path).unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn persisted_static_values_apply_at_start_and_are_kept() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("wks/config.json"), r#"{"rpc-shutdown-timeout": "5"}"#);
        let server = with_workspace(dir.path()).start().await.unwrap();
        assert_eq!(server.config().get(&RpcConfig::SHUTDOWN_TIMEOUT).as_str(), "5");
        config_stub(&server).set(update(&[("my-text", "kept")])).await.unwrap();
        let saved = persisted(dir.path());
        assert_eq!(saved["rpc-shutdown-timeout"], "5", "a hand-written static value survives the rewrite");
        assert_eq!(saved["my-text"], "kept");
        server.shutdown().await;
    })
    .await;
}

/// Who changed what, and when: each `set` and `reset` writes an INFO line (the default level)
/// per item with its new and old value and the caller, in the config service's log and the root
/// log; a value with a line break stays on its line.
#[tokio::test]
async fn each_config_change_is_logged_with_its_caller() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = with_workspace(dir.path()).start().await.unwrap();
        let mut config = config_stub(&server);
        config.set(update(&[("my-text", "two\nlines"), ("my-int-config", "7")])).await.unwrap();
        config.reset(Filter { names: vec!["my-text".into()], ignore_unknown: false }).await.unwrap();
        server.shutdown().await;
        for file in ["wks/logs/root/root.log", "wks/logs/config/config.log"] {
            let log = std::fs::read_to_string(dir.path().join(file)).unwrap();
            let changes: Vec<&str> =
                log.lines().filter(|l| l.contains(" INFO ") && l.contains("Config item my-")).collect();
            assert_eq!(changes.len(), 3, "{file}: {changes:?}");
            assert!(
                changes[0].contains(r#"Config item my-text set to "two\nlines" (was "abc") by [test-client]"#),
                "{changes:?}"
            );
            assert!(changes[1].contains(r#"Config item my-int-config set to "7" (was "#), "{changes:?}");
            assert!(
                changes[2]
                    .contains(r#"Config item my-text reset to its default "abc" (was "two\nlines") by [test-client]"#),
                "{changes:?}"
            );
        }
    })
    .await;
}

/// As the original, a server starts when `-c` or its workspace `config.json` names an item it
/// does not define (a fleet mid-migration, an item renamed); unlike the original, it says so.
#[tokio::test]
async fn unknown_items_on_the_command_line_or_in_the_workspace_start_with_a_warning_naming_them() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("wks/config.json"), r#"{"no-such-item": "1", "my-int-config": "13"}"#);
        write(&dir.path().join("sys/config.json"), r#"{"other-servers-item": "x"}"#);
        let server = with_workspace(dir.path())
            .folders(Folders::default().system(dir.path().join("sys")).workspace(dir.path().join("wks")))
            .cli_config([("no-such-cli-item".to_owned(), "2".to_owned())])
            .start()
            .await
            .unwrap();
        assert_eq!(server.config().get(&MY_INT).as_str(), "13", "the known items still apply");
        let log = std::fs::read_to_string(dir.path().join("wks/logs/root/root.log")).unwrap();
        // The original's "Items dump on load", one line: every item, its value and default.
        let dump = log.lines().find(|l| l.contains("grpc_helper::config: Items dump on load: ")).expect(&log);
        assert!(dump.contains(": [static] rpc-max-workers: 30 (default: 30); [static] rpc-shutdown-grace: "), "{dump}");
        assert!(dump.contains("; [user] my-int-config: 13 (default: "), "{dump}");
        let known = "known items: rpc-max-workers, rpc-shutdown-grace";
        let cli = "WARN  grpc_helper::logs: Unknown config item \"no-such-cli-item\" given on the command line \
                   (-c no-such-cli-item=...), ignored; ";
        assert!(log.contains(cli) && log.contains(known), "{log}");
        assert!(
            log.contains(
                "rpc-events-url, rpc-events-wait, rpc-config-url, rpc-nats-prefix, rpc-nats-user, rpc-nats-password-file, \
                 rpc-nats-token-file, rpc-nats-nkey-file, rpc-nats-creds-file, rpc-nats-ca-file, rpc-admin-networks, rpc-proxy-deadline, \
                 my-int-config, my-pos-float, my-text\n"
            ),
            "{log}"
        );
        let file = format!(
            "Unknown config item \"no-such-item\" in {}, ignored (kept in the file); known items: ",
            dir.path().join("wks/config.json").display()
        );
        assert!(log.contains(&file), "{log}");
        assert!(!log.contains("other-servers-item"), "system and user files are shared by other servers: {log}");
        config_stub(&server).set(update(&[("my-text", "x")])).await.unwrap();
        let saved = persisted(dir.path());
        assert_eq!(saved.get("no-such-item").map(String::as_str), Some("1"), "kept for a server that knows it");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_grace_item_drives_the_server() {
    let _alone = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .cli_config([("rpc-shutdown-grace".to_owned(), "0.2".to_owned())])
            .manager(Sample::new(&log, Duration::from_secs(30)))
            .start()
            .await
            .unwrap();
        let call = grpc_helper_tests::start_long_call(&server, &log).await;
        let started = Instant::now();
        server.shutdown().await;
        assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
        assert!(call.await.unwrap().is_err());
    })
    .await;
}

#[test]
fn command_line_options_parse_into_folders_port_and_config() {
    let _alone = grpc_helper_tests::heavy();
    use clap::Parser;
    use grpc_helper::cli::ServerArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    let cli = Cli::try_parse_from([
        "srv", "--system", "/s", "--user", "/u", "-w", "/w", "-p", "1234", "-c", "a-b=1", "-c", "a-b=2", "-c", "x=y=z",
    ])
    .unwrap();
    assert_eq!(cli.server.folders(), Folders::default().system("/s").user("/u").workspace("/w"));
    assert_eq!(cli.server.port, 1234);
    assert_eq!(cli.server.cli_config(), BTreeMap::from([("a-b".into(), "2".into()), ("x".into(), "y=z".into())]));
    let defaults = Cli::try_parse_from(["srv"]).unwrap();
    assert_eq!(defaults.server.port, 54321);
    assert_eq!(defaults.server.folders().workspace_dir(), Some(Path::new("./grpc_helper")));
    assert!(defaults.server.folders().user_dir().unwrap().ends_with(".config/grpc_helper"));
    for bad in ["noequals", "Bad=1", "9x=1", "a_b=1", "=1"] {
        let error = Cli::try_parse_from(["srv", "-c", bad]).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
    }
}

#[test]
fn persisted_config_is_never_partial_when_the_process_is_killed_mid_write() {
    let _alone = grpc_helper_tests::heavy();
    use grpc_helper_tests::process::{example, kill_loop};
    use std::process::Command;

    let workspace = tempfile::tempdir().unwrap();
    let file = workspace.path().join("config.json");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let command = |port: u16| {
        // Each round starts from the previous round's file (the server restores it).
        let mut command = Command::new(example("server"));
        command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "error");
        command
    };
    let hammer = |port: u16| async move {
        let client = grpc_helper::RpcClient::builder("127.0.0.1", port).no_retry().connect_lazy().unwrap();
        let mut config = client.config_service();
        let mut n = 0usize;
        // Bounded: stops at the first failure (the kill) or after 100k writes.
        while n < 100_000 {
            let value = format!("greeting number {n} {}", "x".repeat(n % 500));
            if config.set(update(&[("sample-greeting", &value)])).await.is_err() {
                break;
            }
            n += 1;
        }
        n
    };
    let check = |round: u64| {
        if file.exists() {
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed: BTreeMap<String, String> =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("round {round}: partial file ({e}): {text:?}"));
            assert!(parsed["sample-greeting"].starts_with("greeting number "), "{parsed:?}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(workspace.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "config.json" && !n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    };
    let written = kill_loop(&runtime, 8, command, "serving on port", hammer, check);
    assert!(written > 100, "the test wrote enough to hit a write in progress: {written}");
}
