//! The auth guard over real sockets: every dangerous RPC without, with a wrong, and with the
//! right bearer token; other RPCs stay open; refusals are logged without the token.

use std::time::Duration;

use grpc_helper::api::{
    ConfigItemUpdate, ConfigUpdate, Event, EventInterrupt, Filter, LoggerConfig, LoggerUpdate, ProxyRegisterRequest,
    ShutdownRequest,
};
use grpc_helper::auth::BearerToken;
use grpc_helper::config::ConfigItem;
use grpc_helper::{Folders, RpcClient, RpcServer};
use grpc_helper_tests::api::SampleApiVersion;
use grpc_helper_tests::{bounded, server_builder};
use tonic::Code;

const TOKEN: &str = "the-right-token-42";
const ITEM: ConfigItem = ConfigItem::new("guarded-item", "", "x");

fn client(server: &RpcServer, token: Option<&str>) -> RpcClient {
    let builder = RpcClient::builder("127.0.0.1", server.local_addr().port()).no_retry();
    match token {
        Some(token) => builder.bearer_token(token),
        None => builder,
    }
    .connect_lazy()
    .unwrap()
}

/// Every dangerous call (but shutdown) with `client`: the codes, in order.
async fn dangerous_calls(client: &RpcClient) -> Vec<Code> {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let mut config = client.config_service();
    let mut log = client.logger_service();
    let mut events = client.events_service();
    let mut srv = client.server_service();
    let names = || Filter { names: vec![ITEM.name().into()], ignore_unknown: false };
    let update = ConfigUpdate {
        items: vec![ConfigItemUpdate { name: ITEM.name().into(), value: "y".into() }],
        ignore_unknown: false,
    };
    let logger = LoggerUpdate { items: vec![LoggerConfig { name: "guarded_logger".into(), enabled: true, level: 30 }] };
    let register =
        ProxyRegisterRequest { names: vec!["proxied".into()], version: "1".into(), host: String::new(), port: 1 };
    vec![
        code(config.set(update).await.map(drop)),
        code(config.reset(names()).await.map(drop)),
        code(log.set(logger).await.map(drop)),
        code(log.reset(Filter { names: vec!["guarded_logger".into()], ignore_unknown: false }).await.map(drop)),
        code(srv.proxy_register(register).await.map(drop)),
        code(srv.proxy_forget(Filter { names: vec!["proxied".into()], ignore_unknown: false }).await.map(drop)),
        code(events.send(Event { name: "guarded".into(), properties: Vec::new() }).await.map(drop)),
        // No queue 1: answered NOT_FOUND once let through.
        code(events.interrupt(EventInterrupt { client_id: 1 }).await.map(drop)),
    ]
}

#[tokio::test]
async fn dangerous_rpcs_need_the_token_and_the_rest_stays_open() {
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let server = server_builder()
            .folders(Folders::default().workspace(dir.path()))
            .auth_guard(BearerToken::new(TOKEN))
            .with_events()
            .user_items(&[ITEM])
            .proxy::<SampleApiVersion>("proxied", "SampleService")
            .start()
            .await
            .unwrap();
        let anonymous = client(&server, None);
        assert_eq!(dangerous_calls(&anonymous).await, [Code::Unauthenticated; 8]);
        assert_eq!(dangerous_calls(&client(&server, Some("wrong"))).await, [Code::PermissionDenied; 8]);
        let mut allowed = [Code::Ok; 8];
        allowed[7] = Code::NotFound;
        assert_eq!(dangerous_calls(&client(&server, Some(TOKEN))).await, allowed);

        // Reading stays open.
        anonymous.server_service().info(Filter::default()).await.unwrap();
        anonymous.config_service().get(Filter::default()).await.unwrap();

        let refused = anonymous.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(refused.message().contains("authorization: Bearer"), "{}", refused.message());
        assert!(server.is_running());
        client(&server, Some(TOKEN)).server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.wait_shutdown()).await.unwrap();

        let log = std::fs::read_to_string(dir.path().join("logs/root/root.log")).unwrap();
        assert!(log.contains("refused /ConfigService/set"), "refusals are logged (the first of a burst)");
        assert!(!log.contains(TOKEN) && !log.contains("wrong"), "credentials never reach the logs");
    })
    .await;
}

#[test]
fn client_debug_hides_the_token() {
    let builder = RpcClient::builder("127.0.0.1", 1).bearer_token(TOKEN);
    assert!(!format!("{builder:?}").contains(TOKEN));
}
