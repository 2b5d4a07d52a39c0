//! The config service of a main server reaches the user items of its registered backends,
//! merged, as the original's does (its tests `proxy_config_get`, `proxy_config_set_n_reset` and
//! `proxy_config_conflict`): a `sample` backend registered by a `proxy_register` call, and an
//! `another` backend that registers itself, each with its own item `my-int-config` (INT, 12).

use std::time::Duration;

use grpc_helper::api::{ConfigItemUpdate, ConfigUpdate, Filter, ResultCode};
use grpc_helper::config::{ConfigItem, Validator};
use grpc_helper::{RpcClient, RpcError, RpcServer};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::{AnotherApiVersion, SampleApiVersion};
use grpc_helper_tests::names;
use grpc_helper_tests::{Another, EventLog, Sample, bounded, client_of, server_builder};

const SAMPLE_CONFIG: ConfigItem = ConfigItem::new("my-int-config", "Sample int", "12").validator(Validator::Int);
const SAMPLE2_CONFIG: ConfigItem = ConfigItem::new("my-int-config", "Another int", "12").validator(Validator::Int);

/// The main server and its two backends, each with a client.
struct Fleet {
    main: RpcServer,
    sample: RpcServer,
    another: RpcServer,
}

impl Fleet {
    async fn start() -> Self {
        let main = server_builder()
            .proxy::<SampleApiVersion>("sample", "SampleService")
            .proxy::<AnotherApiVersion>("another", "AnotherSampleService")
            .cli_config([("rpc-client-timeout".to_owned(), "2".to_owned())])
            .start()
            .await
            .unwrap();
        let sample = server_builder()
            .user_items(&[SAMPLE_CONFIG])
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        let register = grpc_helper::api::ProxyRegisterRequest {
            names: vec!["sample".into()],
            version: "123".into(),
            host: "127.0.0.1".into(),
            port: u32::from(sample.local_addr().port()),
        };
        client_of(&main).server_service().proxy_register(register).await.unwrap();
        let another = server_builder()
            .user_items(&[SAMPLE2_CONFIG])
            .cli_config([
                ("rpc-main-host".to_owned(), "127.0.0.1".to_owned()),
                ("rpc-main-port".to_owned(), main.local_addr().port().to_string()),
            ])
            .manager(Another { log: EventLog::default(), fail_load: None })
            .register_with_main(&["another"], "123")
            .start()
            .await
            .unwrap();
        Self { main, sample, another }
    }

    fn clients(&self) -> [(&'static str, RpcClient); 3] {
        [("sample", client_of(&self.sample)), ("another", client_of(&self.another)), ("main", client_of(&self.main))]
    }

    async fn stop(self) {
        self.another.shutdown().await;
        self.sample.shutdown().await;
        self.main.shutdown().await;
    }
}

fn update(name: &str, value: &str) -> ConfigUpdate {
    ConfigUpdate { items: vec![ConfigItemUpdate { name: name.into(), value: value.into() }], ignore_unknown: false }
}

/// `(name, value)` of every item `get` returns for `my-int-config`.
async fn values(client: &RpcClient) -> Vec<(String, String)> {
    let items = client.config_service().get(names(&["my-int-config"])).await.unwrap().into_inner().items;
    items.into_iter().map(|i| (i.name, i.value)).collect()
}

fn one(value: &str) -> Vec<(String, String)> {
    vec![("my-int-config".to_owned(), value.to_owned())]
}

#[tokio::test]
async fn proxy_config_get_merges_the_backends_items() {
    bounded(LIMIT, async {
        let fleet = Fleet::start().await;
        for (who, client) in fleet.clients() {
            assert_eq!(values(&client).await, one("12"), "through {who}");
        }
        // No names: every item of every backend, each name once.
        let all = client_of(&fleet.main).config_service().get(Filter::default()).await.unwrap().into_inner().items;
        assert_eq!(all.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["my-int-config"]);
        // A name no one knows is still unknown.
        let status = client_of(&fleet.main).config_service().get(names(&["no-such-item"])).await.unwrap_err();
        assert_eq!(RpcError::from(status).result_code(), Some(ResultCode::ErrorItemUnknown));
        fleet.stop().await;
    })
    .await;
}

#[tokio::test]
async fn proxy_config_set_and_reset_reach_every_backend() {
    bounded(LIMIT, async {
        let fleet = Fleet::start().await;
        let mut main = client_of(&fleet.main).config_service();
        let set = main.set(update("my-int-config", "789")).await.unwrap().into_inner().items;
        assert_eq!(set.into_iter().map(|i| (i.name, i.value)).collect::<Vec<_>>(), one("789"));
        for (who, client) in fleet.clients() {
            assert_eq!(values(&client).await, one("789"), "through {who}");
        }
        let reset = main.reset(names(&["my-int-config"])).await.unwrap().into_inner().items;
        assert_eq!(reset.into_iter().map(|i| (i.name, i.value)).collect::<Vec<_>>(), one("12"));
        for (who, client) in fleet.clients() {
            assert_eq!(values(&client).await, one("12"), "through {who}");
        }
        fleet.stop().await;
    })
    .await;
}

#[tokio::test]
async fn proxy_config_conflict_between_backends_is_an_item_conflict() {
    bounded(LIMIT, async {
        let fleet = Fleet::start().await;
        let set = client_of(&fleet.another).config_service().set(update("my-int-config", "1024")).await.unwrap();
        assert_eq!(set.into_inner().items[0].value, "1024");
        let status = client_of(&fleet.main).config_service().get(names(&["my-int-config"])).await.unwrap_err();
        let error = RpcError::from(status);
        assert_eq!(error.result_code(), Some(ResultCode::ErrorItemConflict), "{error}");
        assert!(error.message().contains("Proxied values conflict for config item my-int-config"), "{error}");
        fleet.stop().await;
    })
    .await;
}

#[tokio::test]
async fn proxy_config_set_with_a_bad_value_is_refused_by_the_backend_and_changes_nothing() {
    bounded(LIMIT, async {
        let fleet = Fleet::start().await;
        let status = client_of(&fleet.main).config_service().set(update("my-int-config", "foo")).await.unwrap_err();
        let error = RpcError::from(status);
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{error}");
        assert!(error.message().starts_with("Proxied server 127.0.0.1:"), "names the backend: {error}");
        for (who, client) in fleet.clients() {
            assert_eq!(values(&client).await, one("12"), "through {who}");
        }
        fleet.stop().await;
    })
    .await;
}
