//! The client API a Python user reaches for, over real sockets: replies that carry an in-band
//! error kept as replies (`client::KeepInBand`, the original's `exception=False`), and
//! `client::EventListener` resuming a saved queue id (after a process restart), recovering from
//! an id the server let expire, and keeping keep-alives from its callback.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_helper::api::{ConfigItemUpdate, ConfigUpdate, Empty, Event, EventFilter, ResultCode};
use grpc_helper::client::{EventListener, KeepInBand};
use grpc_helper::{Folders, RpcClient, RpcError, RpcServer};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::events_stub as stub;
use grpc_helper_tests::{bounded, client_of, server_builder};
use parking_lot::Mutex;

async fn events_server(workspace: &Path, config: &[(&str, &str)]) -> RpcServer {
    let config = config.iter().map(|(n, v)| (n.to_string(), v.to_string()));
    server_builder()
        .with_events()
        .folders(Folders::default().workspace(workspace))
        .cli_config(config)
        .start()
        .await
        .unwrap()
}

async fn send(server: &RpcServer, name: &str) {
    stub(server).send(Event { name: name.into(), properties: Vec::new() }).await.unwrap();
}

/// A callback that records each event name, and the record.
fn recorder() -> (Arc<Mutex<Vec<String>>>, impl FnMut(Event) + Send + 'static) {
    let names = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&names);
    (names, move |event: Event| sink.lock().push(event.name))
}

async fn wait_for(names: &Mutex<Vec<String>>, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while names.lock().len() < count {
        assert!(Instant::now() < deadline, "got {:?}", names.lock());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    names.lock().clone()
}

async fn queue_ids(server: &RpcServer) -> Vec<u32> {
    stub(server).inspect(Empty {}).await.unwrap().into_inner().client_ids
}

/// A process saves its listener's id and exits; the next one resumes that queue and gets what
/// was sent in between, in order.
#[tokio::test]
async fn resume_by_saved_id_delivers_the_events_sent_while_no_listener_was_connected() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path(), &[]).await;
        let client = client_of(&server);
        let first = EventListener::start(&client, vec![], |_| {});
        first.ready().await;
        let saved = first.client_id().unwrap();
        first.stop().await;

        send(&server, "while-away-1").await;
        send(&server, "while-away-2").await;
        let (names, on_event) = recorder();
        let resumed = EventListener::resume(&client, saved, vec![], on_event);
        resumed.ready().await;
        send(&server, "after").await;
        assert_eq!(wait_for(&names, 3).await, ["while-away-1", "while-away-2", "after"]);
        assert_eq!(resumed.client_id(), Some(saved), "the same queue");
        assert_eq!(resumed.expired_queue(), None);
        assert_eq!(queue_ids(&server).await, [saved]);
        resumed.stop().await;
        server.shutdown().await;
    })
    .await;
}

/// The saved queue expired (`rpc-event-retain-timeout`): the listener opens a new one, says
/// which id it lost, and delivers what is sent from then on.
#[tokio::test]
async fn resume_of_an_expired_id_opens_a_new_queue_and_reports_the_lost_id() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path(), &[("rpc-event-retain-timeout", "1")]).await;
        let client = client_of(&server);
        let first = EventListener::start(&client, vec![], |_| {});
        first.ready().await;
        let saved = first.client_id().unwrap();
        first.stop().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        send(&server, "lost").await; // purges the expired queue

        let (names, on_event) = recorder();
        let resumed = EventListener::resume(&client, saved, vec![], on_event);
        resumed.ready().await;
        assert_eq!(resumed.expired_queue(), Some(saved));
        // The new queue may get the same number (the server takes the smallest free one); it
        // is new all the same: what was sent before it opened is not in it.
        let now = resumed.client_id().unwrap();
        assert_eq!(queue_ids(&server).await, [now]);
        send(&server, "fresh").await;
        assert_eq!(wait_for(&names, 1).await, ["fresh"]);
        resumed.stop().await;
        server.shutdown().await;
    })
    .await;
}

/// Keep-alives (events with an empty name) keep the stream open; they never reach the callback.
#[tokio::test]
async fn keep_alive_messages_never_reach_the_callback() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path(), &[("rpc-event-keepalive-timeout", "1")]).await;
        let (names, on_event) = recorder();
        let listener = EventListener::start(&client_of(&server), vec![], on_event);
        listener.ready().await;
        // A raw stream opened after the listener's, silent as long: once it got two keep-alives,
        // the listener's stream got at least one.
        let filter = EventFilter { names: Vec::new(), client_id: 0, after: None };
        let mut raw = stub(&server).listen(filter).await.unwrap().into_inner();
        raw.message().await.unwrap().unwrap();
        for _ in 0..2 {
            let keepalive = raw.message().await.unwrap().unwrap();
            assert_eq!(keepalive.event, Some(Event::default()), "a keep-alive: {keepalive:?}");
        }
        send(&server, "real").await;
        assert_eq!(wait_for(&names, 1).await, ["real"], "the keep-alives came before it, and were not passed on");
        listener.stop().await;
        server.shutdown().await;
    })
    .await;
}

fn set_one(name: &str, value: &str) -> ConfigUpdate {
    ConfigUpdate { items: vec![ConfigItemUpdate { name: name.into(), value: value.into() }], ignore_unknown: false }
}

/// `keep_in_band()` on a unary result: the reply with its `r` as the server sent it; without it,
/// the same call is an error carrying the same code and message.
#[tokio::test]
async fn keep_in_band_returns_the_reply_that_carries_an_in_band_error() {
    bounded(LIMIT, async {
        let server = server_builder().start().await.unwrap();
        let mut config = client_of(&server).config_service();
        let reply = config.set(set_one("no-such-item", "1")).await.keep_in_band().unwrap();
        let r = reply.r.expect("the in-band result");
        assert_eq!(r.code, ResultCode::ErrorItemUnknown as i32);
        assert_eq!(r.msg, "Unknown config item: no-such-item");
        assert!(reply.items.is_empty());

        let raised = RpcError::from(config.set(set_one("no-such-item", "1")).await.unwrap_err());
        assert_eq!((raised.result_code(), raised.message()), (Some(ResultCode::ErrorItemUnknown), r.msg.as_str()));
        let ok = config.get(grpc_helper::api::Filter::default()).await.keep_in_band().unwrap();
        assert_eq!(ok.r.map(|r| r.code).unwrap_or(0), ResultCode::Ok as i32, "a success is the reply as before");
        server.shutdown().await;
    })
    .await;
}

/// On a reply stream, the in-band error item comes back as the last message.
#[tokio::test]
async fn keep_in_band_returns_the_error_item_of_a_reply_stream() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path(), &[]).await;
        let filter = EventFilter { names: vec![String::new()], client_id: 0, after: None };
        let mut stream = stub(&server).listen(filter).await.unwrap().into_inner();
        let item = stream.message().await.keep_in_band().unwrap().expect("one item");
        let r = item.r.expect("the in-band result");
        assert_eq!(r.code, ResultCode::ErrorParamMissing as i32);
        assert!(r.msg.contains("name"), "the message says what is missing: {r:?}");
        assert_eq!(stream.message().await.keep_in_band().unwrap(), None, "the stream ended with it");
        server.shutdown().await;
    })
    .await;
}

/// No reply, nothing to keep: a server that cannot be reached is still an error.
#[tokio::test]
async fn keep_in_band_leaves_transport_failures_as_errors() {
    bounded(LIMIT, async {
        let port = grpc_helper_tests::free_port();
        let client = RpcClient::builder("127.0.0.1", port).timeout(Duration::from_millis(300)).connect_lazy().unwrap();
        let status = client.config_service().get(grpc_helper::api::Filter::default()).await.keep_in_band().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    })
    .await;
}
