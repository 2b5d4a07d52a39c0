//! Behaviours the original's own test suite checks (grpc-helper 2.3.1, `src/tests`) that no
//! other test file asserts: the twelve `rpc-*` items as a real server holds them, `info` with
//! events on, `config.set` without a workspace, and the command line's defaults and messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use grpc_helper::api::{ConfigItemUpdate, ConfigUpdate, ConfigValidator, Filter, ResultCode};
use grpc_helper::cli::ServerArgs;
use grpc_helper::config::{ConfigItem, Validator};
use grpc_helper::{RpcError, RpcServer};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, server_builder};

/// The original's `RpcStaticConfig`: name, default, rule, values the rule refuses (with the
/// code), and a value it accepts.
const RPC_ITEMS: [(&str, &str, ConfigValidator, &[&str], &str); 12] = {
    use ConfigValidator::*;
    [
        ("rpc-max-workers", "30", ConfigValidPosInt, &["0", "-3", "x", "1.5"], "5"),
        ("rpc-shutdown-grace", "30", ConfigValidPosFloat, &["0", "-1.5", "x"], "0.5"),
        ("rpc-shutdown-timeout", "60", ConfigValidPosFloat, &["0", "soon"], "2.5"),
        ("rpc-logs-folder", "logs", ConfigValidString, &[], "other-logs"),
        ("rpc-logs-backup", "10", ConfigValidInt, &["x", "1.5"], "0"),
        ("rpc-logs-interval-unit", "H", ConfigValidCustom, &["foo", "W7"], "midnight"),
        // The original's pos-int, bounded here (1 to 100,000: a huge one broke rotation), so a
        // custom rule.
        ("rpc-logs-interval", "1", ConfigValidCustom, &["0", "100001"], "2"),
        ("rpc-main-host", "localhost", ConfigValidString, &[], "10.0.0.1"),
        ("rpc-main-port", "54321", ConfigValidPosInt, &["0", "port"], "1234"),
        ("rpc-client-timeout", "60", ConfigValidPosFloat, &["0", "-1"], "0.1"),
        ("rpc-event-retain-timeout", "300", ConfigValidPosInt, &["0", "1.5"], "1"),
        ("rpc-event-keepalive-timeout", "60", ConfigValidPosInt, &["0"], "1"),
    ]
};

fn statics(server: &RpcServer) -> Vec<ConfigItem> {
    server.config().items().filter(|(_, user)| !user).map(|(item, _)| *item).collect()
}

/// A plain server on a free loopback port (the shared test builder shortens the grace).
fn plain() -> grpc_helper::RpcServerBuilder {
    RpcServer::builder().ip("127.0.0.1".parse().unwrap()).port(0)
}

async fn start_with(name: &str, value: &str) -> Result<RpcServer, RpcError> {
    plain().cli_config([(name.to_owned(), value.to_owned())]).start().await
}

/// test_rpc_server_config and §7.4 of the original: the twelve static items of every server,
/// their defaults and rules; static items stay off the `config` service.
#[tokio::test]
async fn every_server_holds_the_twelve_rpc_items_with_the_originals_defaults_and_rules() {
    bounded(LIMIT, async {
        let server = plain().start().await.unwrap();
        let all = statics(&server);
        // The original's twelve come first; then this crate's own (the events caps, the NATS
        // backends and their access).
        let (items, ours) = all.split_at(RPC_ITEMS.len());
        let ours: Vec<_> = ours.iter().map(|i| i.name()).collect();
        assert_eq!(
            ours,
            [
                "rpc-event-max-queues",
                "rpc-event-max-queues-per-peer",
                "rpc-event-queue-bytes",
                "rpc-events-url",
                "rpc-events-wait",
                "rpc-config-url",
                "rpc-nats-prefix",
                "rpc-nats-user",
                "rpc-nats-password-file",
                "rpc-nats-token-file",
                "rpc-nats-nkey-file",
                "rpc-nats-creds-file",
                "rpc-nats-ca-file",
                "rpc-admin-networks",
                "rpc-proxy-deadline"
            ]
        );
        let held: Vec<_> = items.iter().map(|i| (i.name(), server.config().get(i).as_str().to_owned())).collect();
        let expected: Vec<_> = RPC_ITEMS.iter().map(|(n, d, ..)| (*n, d.to_string())).collect();
        assert_eq!(held, expected);
        for (item, (name, _, rule, ..)) in items.iter().zip(RPC_ITEMS) {
            assert_eq!(item.rule().to_proto(), rule, "{name}");
            assert_eq!(server.config().get(item).as_str(), item.default_value(), "{name}: the hard-coded default");
            assert!(!item.description().is_empty(), "{name}");
        }
        assert_eq!(server.config().get(&items[0]).as_int().unwrap(), 30, "rpc-max-workers as an int");
        let mut config = client_of(&server).config_service();
        assert!(config.get(Filter::default()).await.unwrap().into_inner().items.is_empty(), "user items only");
        let asked = Filter { names: vec!["rpc-max-workers".into()], ignore_unknown: false };
        let error = RpcError::from(config.get(asked).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorItemUnknown), "{error}");
        server.shutdown().await;

        // Each rule, as a server applies it at start (no item may be empty).
        for (name, _, _, refused, _) in RPC_ITEMS {
            for bad in refused {
                let error = start_with(name, bad).await.err().unwrap_or_else(|| panic!("{name}={bad} accepted"));
                assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{name}={bad}: {error}");
                assert!(error.message().contains(name), "{error}");
            }
            let error = start_with(name, "").await.err().unwrap_or_else(|| panic!("{name} empty accepted"));
            assert_eq!(error.result_code(), Some(ResultCode::ErrorParamMissing), "{name}: {error}");
        }
        let accepted = RPC_ITEMS.iter().map(|(n, .., good)| (n.to_string(), good.to_string()));
        let server = plain().cli_config(accepted).start().await.unwrap();
        let held: Vec<_> = statics(&server).iter().map(|i| server.config().get(i).as_str().to_owned()).collect();
        assert_eq!(held[..RPC_ITEMS.len()], RPC_ITEMS.map(|(.., good)| good.to_owned()));
        server.shutdown().await;
    })
    .await;
}

/// test_get_info with events on: `events` comes after the three built-in services and before
/// the user's, at API 1..2.
#[tokio::test]
async fn info_with_events_lists_events_fourth_with_api_range_1_to_2() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder().with_events().manager(Sample::new(&log, Duration::ZERO)).start().await.unwrap();
        let all = client_of(&server).server_service().info(Filter::default()).await.unwrap().into_inner();
        let names: Vec<_> = all.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["srv", "config", "log", "events", "sample"]);
        let events = &all.items[3];
        assert_eq!((events.supported_api_version, events.current_api_version), (1, 2));
        assert_eq!(events.version, format!("grpc-helper:{}", env!("CARGO_PKG_VERSION")));
        assert!(!events.is_proxy);
        server.shutdown().await;
    })
    .await;
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

const MY_INT: ConfigItem = ConfigItem::new("my-int-config", "Some int", "12").validator(Validator::Int);

/// test_set_ok, its part without a workspace: the change applies, no file is written.
#[tokio::test]
async fn config_set_without_a_workspace_succeeds_and_writes_nothing() {
    bounded(LIMIT, async {
        let here = std::env::current_dir().unwrap();
        let before = files_in(&here);
        let server = server_builder().user_items(&[MY_INT]).start().await.unwrap();
        assert_eq!(server.config().persisted_path(), None);
        let mut config = client_of(&server).config_service();
        let update = ConfigUpdate {
            items: vec![ConfigItemUpdate { name: "my-int-config".into(), value: "888".into() }],
            ignore_unknown: false,
        };
        let reply = config.set(update).await.unwrap().into_inner();
        assert_eq!(reply.items.iter().map(|i| i.value.as_str()).collect::<Vec<_>>(), ["888"]);
        assert_eq!(server.config().get(&MY_INT).as_str(), "888");
        assert_eq!(files_in(&here), before, "nothing written in the current folder");
        server.shutdown().await;
    })
    .await;
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

/// test_default_params and test_config of the original's test_cli.
#[test]
fn command_line_defaults_are_the_originals() {
    let defaults = Cli::try_parse_from(["srv"]).unwrap().server;
    assert_eq!(defaults.system, Path::new("/etc/grpc_helper"));
    assert_eq!(defaults.folders().system_dir(), Some(Path::new("/etc/grpc_helper")));
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap();
    assert_eq!(defaults.folders().user_dir(), Some(home.join(".config/grpc_helper").as_path()));
    assert_eq!(defaults.folders().workspace_dir(), Some(Path::new("./grpc_helper")));
    assert_eq!(defaults.port, 54321);
    assert!(defaults.cli_config().is_empty(), "no -c: an empty map");

    let both = Cli::try_parse_from(["srv", "-c", "foo=bar", "--config", "some-other=123"]).unwrap().server;
    let expected = [("foo".to_owned(), "bar".to_owned()), ("some-other".to_owned(), "123".to_owned())];
    assert_eq!(both.cli_config(), expected.into_iter().collect());
}

/// test_invalid_config: the message starts with the original's, then says what is expected.
#[test]
fn malformed_config_option_is_refused_with_the_originals_message() {
    for (given, why) in [
        ("invalid syntax", "expected NAME=VALUE"),
        ("Invalid@Name=foo", "the NAME must be lowercase letters, digits and dashes, starting with a letter"),
    ] {
        let error = Cli::try_parse_from(["srv", "-c", given]).err().unwrap();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation, "{given}");
        let text = error.to_string();
        let message = format!("Invalid syntax for config item definition: {given} ({why})");
        assert!(text.contains(&message), "{text}");
    }
}

/// test_empty_default, test_float_validation, test_pos_float_validation,
/// test_pos_int_validation, test_string_validation: a hard-coded default is checked at start.
#[tokio::test]
async fn hard_coded_defaults_follow_their_rule_at_start() {
    bounded(LIMIT, async {
        const EMPTY_OK: ConfigItem = ConfigItem::new("ok", "", "").can_be_empty();
        const FLOAT: ConfigItem = ConfigItem::new("some-float", "", "not a float").validator(Validator::Float);
        const NEG_POS_FLOAT: ConfigItem =
            ConfigItem::new("some-pos-float", "", "-69.45").validator(Validator::PosFloat);
        const POS_FLOAT: ConfigItem = ConfigItem::new("some-pos-float", "", "69.45").validator(Validator::PosFloat);
        const NEG_POS_INT: ConfigItem = ConfigItem::new("some-pos-int", "", "-69").validator(Validator::PosInt);
        const POS_INT: ConfigItem = ConfigItem::new("some-pos-int", "", "69").validator(Validator::PosInt);
        const TEXT: ConfigItem = ConfigItem::new("some-text", "", "Any default is OK");

        for refused in [FLOAT, NEG_POS_FLOAT, NEG_POS_INT] {
            let error = plain().static_items(&[refused]).start().await.err().unwrap();
            assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{}: {error}", refused.name());
            assert!(error.message().contains(refused.name()), "{error}");
        }
        let server = plain().static_items(&[EMPTY_OK, POS_FLOAT, POS_INT, TEXT]).start().await.unwrap();
        let held: Vec<_> =
            [EMPTY_OK, POS_FLOAT, POS_INT, TEXT].iter().map(|i| server.config().get(i).as_str().to_owned()).collect();
        assert_eq!(held, ["", "69.45", "69", "Any default is OK"]);
        server.shutdown().await;
    })
    .await;
}

/// test_folder_without_file_default: a system folder that does not exist is no error.
#[tokio::test]
async fn a_missing_system_folder_leaves_the_hard_coded_default() {
    bounded(LIMIT, async {
        let folders = grpc_helper::Folders::default().system("/missing/folder");
        let server = plain().folders(folders).user_items(&[MY_INT]).start().await.unwrap();
        assert_eq!(server.config().get(&MY_INT).as_str(), "12");
        server.shutdown().await;
    })
    .await;
}

/// test_folders: no folder by default; given ones read back as given. (The original also
/// creates the user and workspace folders when they are read; here a folder is created when
/// something is written into it.)
#[test]
fn folders_are_none_by_default_and_read_back_as_given() {
    let none = grpc_helper::Folders::default();
    assert_eq!((none.system_dir(), none.user_dir(), none.workspace_dir()), (None, None, None));
    let given = grpc_helper::Folders::default().system("/tmp").user("/tf/user").workspace("/tf/workspace");
    assert_eq!(given.system_dir().and_then(Path::file_name).and_then(|n| n.to_str()), Some("tmp"));
    assert_eq!(given.user_dir(), Some(Path::new("/tf/user")));
    assert_eq!(given.workspace_dir(), Some(Path::new("/tf/workspace")));
}
