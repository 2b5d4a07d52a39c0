//! User config items shared by replicas through a NATS JetStream key-value bucket
//! (`rpc-config-url`): example-server processes and in-process servers on one real
//! `nats-server -js`, over loopback sockets.
//!
//! Needs `nats-server` (Debian package `nats-server`, installed by `.ci/run`): without it these
//! tests fail, saying so.

use std::time::{Duration, Instant};

use grpc_helper::api::config_service_client::ConfigServiceClient;
use grpc_helper::api::{
    ConfigApiVersion, ConfigItemUpdate, ConfigUpdate, LoggerConfig, LoggerLevel, LoggerUpdate, ResultCode,
};
use grpc_helper::config::{ConfigItem, Validator};
use grpc_helper::{Folders, RpcChannel, RpcClient, RpcError, RpcServer};
use grpc_helper_tests::api::SampleRequest;
use grpc_helper_tests::names;
use grpc_helper_tests::nats::{NatsServer, Replica};
use grpc_helper_tests::{bounded, client_of, free_port, sample_stub, server_builder};

fn config_of(client: &RpcClient) -> ConfigServiceClient<RpcChannel> {
    ConfigServiceClient::new(client.channel::<ConfigApiVersion>())
}

fn update(name: &str, value: &str) -> ConfigUpdate {
    ConfigUpdate { items: vec![ConfigItemUpdate { name: name.into(), value: value.into() }], ignore_unknown: false }
}

/// The value of one item as the `config` service of `client`'s server reports it.
async fn value_on(client: &RpcClient, name: &str) -> String {
    let status = config_of(client).get(names(&[name])).await.unwrap().into_inner();
    status.items.into_iter().find(|i| i.name == name).expect("the item is listed").value
}

/// What the example's `method4` (which reads `sample-greeting` per call) answers.
async fn greeting_on(client: &RpcClient) -> String {
    sample_stub(client).method4(SampleRequest { foo: "you".into() }).await.unwrap().into_inner().bar
}

/// How long until `client`'s server greets with `expected` (polled every 5 ms, at most `limit`).
async fn time_until_greeting(client: &RpcClient, expected: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let greeting = greeting_on(client).await;
        if greeting == expected {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still {greeting:?} after {limit:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_config_set_on_replica_3_is_seen_by_a_manager_on_replica_1_within_a_second() {
    bounded(Duration::from_secs(180), async {
        let nats = NatsServer::start();
        let items = [format!("rpc-config-url={}", nats.url())];
        let (r1, r2, r3) = (Replica::start(&items).await, Replica::start(&items).await, Replica::start(&items).await);
        let (c1, c2, c3) = (r1.client(), r2.client(), r3.client());
        assert_eq!(greeting_on(&c1).await, "Hello, you!");

        // The replicas log at WARN (RUST_LOG); a config change's lines are INFO.
        let info =
            LoggerConfig { name: "grpc_helper::config".into(), enabled: true, level: LoggerLevel::LvlInfo as i32 };
        for client in [&c1, &c2, &c3] {
            client.logger_service().set(LoggerUpdate { items: vec![info.clone()] }).await.unwrap();
        }
        let set = config_of(&c3).set(update("sample-greeting", "Good evening")).await.unwrap().into_inner();
        assert_eq!(set.items[0].value, "Good evening", "replica 3 answers with the new value");
        let seen = time_until_greeting(&c1, "Good evening, you!", Duration::from_secs(5)).await;
        assert!(seen < Duration::from_secs(1), "replica 1's manager saw the change after {seen:?}");
        assert_eq!(value_on(&c2, "sample-greeting").await, "Good evening");
        // Who changed what: the caller on the replica it called, the revision on every replica.
        let change = r#"Config item sample-greeting set to "Good evening" (was "Hello")"#;
        r3.logged(&[" INFO ", change, " by ["]).await;
        for replica in [&r1, &r2, &r3] {
            replica.logged(&[" INFO ", change, " from the shared config (revision "]).await;
        }

        // Validated before it is stored: an invalid value changes nothing anywhere.
        let error = RpcError::from(config_of(&c1).set(update("sample-parts", "zero")).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{error}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        for client in [&c1, &c2, &c3] {
            assert_eq!(value_on(client, "sample-parts").await, "3");
        }

        // A reset on replica 2 takes every replica back to its default.
        config_of(&c2).reset(names(&["sample-greeting"])).await.unwrap();
        let seen = time_until_greeting(&c1, "Hello, you!", Duration::from_secs(5)).await;
        assert!(seen < Duration::from_secs(1), "replica 1 saw the reset after {seen:?}");

        // Stored in NATS, not in a replica: a new replica with an empty workspace, started after
        // every other one is gone, has the value.
        config_of(&c1).set(update("sample-greeting", "Bonjour")).await.unwrap();
        drop((r1, r2, r3));
        let r4 = Replica::start(&items).await;
        assert_eq!(greeting_on(&r4.client()).await, "Bonjour, you!");
    })
    .await;
}

const COLOUR: ConfigItem = ConfigItem::new("shared-colour", "A colour", "blue");
const SIZE: ConfigItem = ConfigItem::new("shared-size", "A size", "1").validator(Validator::PosInt);

/// An in-process server sharing its user items through the NATS at `url`, with this
/// workspace.
async fn shared_server(url: &str, workspace: &std::path::Path) -> RpcServer {
    server_builder()
        .user_items(&[COLOUR, SIZE])
        .folders(Folders::default().workspace(workspace))
        .cli_config([("rpc-config-url".to_owned(), url.to_owned())])
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_fire_on_every_replica_and_concurrent_sets_of_different_items_all_land() {
    bounded(Duration::from_secs(120), async {
        let nats = NatsServer::start();
        let (wks_a, wks_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // The first replica of a fleet brings the values its workspace persisted.
        std::fs::write(wks_a.path().join("config.json"), r#"{"shared-colour": "green"}"#).unwrap();
        let a = shared_server(&nats.url(), wks_a.path()).await;
        let b = shared_server(&nats.url(), wks_b.path()).await;
        assert_eq!(b.config().get(&COLOUR).as_str(), "green", "b starts with the value a brought");

        let mut changes = a.config().subscribe();
        config_of(&client_of(&b)).set(update("shared-colour", "red")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), changes.changed())
            .await
            .expect("a's subscriber fires within a second of b's set")
            .unwrap();
        assert_eq!(a.config().get(&COLOUR).as_str(), "red");
        assert!(!wks_b.path().join("config.json").exists(), "stored in the bucket, not in b's workspace");

        // Each replica writes one item 20 times at the same time as the other: compare and swap
        // keeps every write (none lost to the other's).
        let (ca, cb) = (client_of(&a), client_of(&b));
        let colours = async {
            for n in 0..20 {
                config_of(&ca).set(update("shared-colour", &format!("c{n}"))).await.unwrap();
            }
        };
        let sizes = async {
            for n in 1..=20 {
                config_of(&cb).set(update("shared-size", &n.to_string())).await.unwrap();
            }
        };
        tokio::join!(colours, sizes);
        for server in [&a, &b] {
            let deadline = Instant::now() + Duration::from_secs(2);
            while (server.config().get(&COLOUR).as_str(), server.config().get(&SIZE).as_str()) != ("c19", "20") {
                assert!(Instant::now() < deadline, "the last values did not land on {}", server.local_addr());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_server_refuses_to_start_when_the_config_nats_is_unreachable() {
    bounded(Duration::from_secs(30), async {
        let workspace = tempfile::tempdir().unwrap();
        let url = format!("nats://127.0.0.1:{}", free_port());
        let error = server_builder()
            .folders(Folders::default().workspace(workspace.path()))
            .cli_config([("rpc-config-url".to_owned(), url.clone())])
            .start()
            .await
            .err()
            .expect("no server without its config store");
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStateUnreachable), "{error}");
        let message = error.message();
        assert!(message.contains(&format!("Cannot reach NATS at {url} (rpc-config-url)")), "unclear: {message}");
        assert!(message.contains("rpc-events-wait"), "the message names the wait item: {message}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_nats_is_down_a_set_fails_clearly_and_replicas_follow_again_once_it_is_back() {
    bounded(Duration::from_secs(120), async {
        let mut nats = NatsServer::start();
        let (wks_a, wks_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = shared_server(&nats.url(), wks_a.path()).await;
        let b = shared_server(&nats.url(), wks_b.path()).await;
        let (ca, cb) = (client_of(&a), client_of(&b));

        nats.stop();
        let error = RpcError::from(config_of(&cb).set(update("shared-colour", "lost")).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStateUnreachable), "{error}");
        assert!(
            error.message().contains("rpc-config-url") && error.message().contains("config not changed"),
            "{error}"
        );
        assert_eq!(b.config().get(&COLOUR).as_str(), "blue", "nothing changed on b");
        assert_eq!(value_on(&ca, "shared-colour").await, "blue", "nothing changed on a");

        let nats = tokio::task::spawn_blocking(move || {
            nats.restart();
            nats
        })
        .await
        .unwrap();
        // b reconnects by itself; its set lands once it has.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = config_of(&cb).set(update("shared-colour", "back")).await {
            assert!(Instant::now() < deadline, "no set 30 s after NATS came back: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // a watches again and applies it.
        let deadline = Instant::now() + Duration::from_secs(15);
        while a.config().get(&COLOUR).as_str() != "back" {
            assert!(Instant::now() < deadline, "a did not follow after NATS came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a.shutdown().await;
        b.shutdown().await;
        drop(nats);
    })
    .await;
}
