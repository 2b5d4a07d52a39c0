//! The `events` service under attack, over real sockets. Each test: what the attacker sends
//! (raw HTTP/2 from another loopback address, `127.0.0.2`, which the server sees as another
//! peer), what it gets, and that the well-behaved listener beside it loses nothing.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::BytesMut;
use grpc_helper::api::event_service_client::EventServiceClient;
use grpc_helper::api::{
    Empty, Event, EventApiVersion, EventFilter, EventInterrupt, EventQueueStatus, EventStatus, ResultCode, ResultStatus,
};
use grpc_helper::{Folders, RpcChannel, RpcError, RpcServer};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::event;
use grpc_helper_tests::events_stub as stub;
use grpc_helper_tests::memory::of_process_kib as rss_kib;
use grpc_helper_tests::raw_h2::{self, H2Connection};
use grpc_helper_tests::{bounded, server_builder};
use prost::Message;
use tonic::Streaming;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// An events server with these configuration items, administered from 127.0.0.1 only: the
/// attacker's address (127.0.0.2) is another machine's as far as the server is concerned.
async fn events_server(workspace: &std::path::Path, items: &[(&str, &str)]) -> RpcServer {
    let items = items.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
    server_builder()
        .with_events()
        .folders(Folders::default().workspace(workspace))
        .cli_config(items)
        .admin_networks(["127.0.0.1/32"])
        .start()
        .await
        .unwrap()
}

/// A well-behaved listener (from 127.0.0.1): its stream and id.
async fn listen(events: &mut EventServiceClient<RpcChannel>, client_id: u32) -> (Streaming<EventStatus>, u32) {
    let mut stream =
        events.listen(EventFilter { names: Vec::new(), client_id, after: None }).await.unwrap().into_inner();
    let id = stream.message().await.unwrap().unwrap().client_id;
    (stream, id)
}

/// The next non-keep-alive event name.
async fn next_name(stream: &mut Streaming<EventStatus>) -> String {
    loop {
        let event = stream.message().await.unwrap().unwrap().event.unwrap();
        if !event.name.is_empty() {
            return event.name;
        }
    }
}

/// `listen` from a raw connection: the first message (the greeting, or an error in band).
async fn raw_listen(connection: &H2Connection, port: u16, client_id: u32) -> (EventStatus, h2::RecvStream) {
    let mut send = connection.send.clone().ready().await.unwrap();
    let filter = EventFilter { names: Vec::new(), client_id, after: None };
    let response = raw_h2::start(&mut send, raw_h2::request(port, "/EventService/listen"), raw_h2::frame(&filter));
    let mut body = response.unwrap().await.unwrap().into_body();
    let first = raw_h2::next_message(&mut body, &mut BytesMut::new()).await.expect("a first message");
    (EventStatus::decode(first.as_slice()).unwrap(), body)
}

fn in_band(status: &EventStatus) -> Option<(ResultCode, &str)> {
    status.r.as_ref().map(|r| (ResultCode::try_from(r.code).unwrap(), r.msg.as_str()))
}

async fn raw_inspect(connection: &H2Connection, port: u16) -> EventQueueStatus {
    raw_h2::unary(&connection.send, port, "/EventService/inspect", &Empty {}).await
}

async fn raw_interrupt(connection: &H2Connection, port: u16, client_id: u32) -> ResultStatus {
    raw_h2::unary(&connection.send, port, "/EventService/interrupt", &EventInterrupt { client_id }).await
}

#[tokio::test]
async fn queue_ids_are_random_never_zero_and_never_reused_while_alive() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path(), &[("rpc-event-max-queues-per-peer", "200")]).await;
        let mut events = stub(&server);
        let mut ids = Vec::new();
        let mut streams = Vec::new();
        for _ in 0..200 {
            let (stream, id) = listen(&mut events, 0).await;
            ids.push(id);
            streams.push(stream);
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200, "distinct");
        assert!(ids[0] != 0);
        // Sequential ids (the original's 1, 2, 3...) would span 200; random ones span billions.
        assert!(ids[199] - ids[0] > 1_000_000, "spread over the u32 range: {} .. {}", ids[0], ids[199]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn another_peer_can_neither_resume_nor_interrupt_a_queue() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        // Administered from all of loopback (the default): the attacker may call interrupt,
        // and it is the queue's owner that is checked.
        let server = server_builder().with_events().start().await.unwrap();
        let port = server.local_addr().port();
        let mut events = stub(&server);
        let (mut victim, id) = listen(&mut events, 0).await;

        // The attacker knows the id (say it was leaked) and tries to take the queue over.
        let attacker = raw_h2::connect_from(ATTACKER, port, None).await;
        let (taken, _) = raw_listen(&attacker, port, id).await;
        let (code, message) = in_band(&taken).expect("refused");
        assert_eq!(code, ResultCode::ErrorItemUnknown);
        assert_eq!(message, format!("Unknown event listening queue #{id} (expired, or opened from another address)"));
        let cut = raw_interrupt(&attacker, port, id).await;
        assert_eq!(cut.r.unwrap().code, ResultCode::ErrorItemUnknown as i32, "the same answer as an unknown id");
        // As an administrator it may list the queue (as the original lists every queue); owning
        // it is another matter.
        assert_eq!(raw_inspect(&attacker, port).await.client_ids, [id]);

        // The victim still owns its queue and gets every event.
        for n in 0..100 {
            events.send(event(&format!("e-{n}"))).await.unwrap();
        }
        for n in 0..100 {
            assert_eq!(next_name(&mut victim).await, format!("e-{n}"));
        }
        assert_eq!(events.inspect(Empty {}).await.unwrap().into_inner().client_ids, [id]);
        events.interrupt(EventInterrupt { client_id: id }).await.unwrap();
        server.shutdown().await;
    })
    .await;
}

/// `inspect` lists every queue to an administrator (here: the guard's token), as the original
/// does, and to anyone else only the queues opened from its own address.
#[tokio::test]
async fn inspect_shows_an_administrator_every_queue_and_anyone_else_their_own() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder()
            .with_events()
            .auth_guard(grpc_helper::auth::BearerToken::new("inspect-token"))
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        let other = raw_h2::connect_from(ATTACKER, port, None).await;
        let (greeting, _open) = raw_listen(&other, port, 0).await;
        let client = |token: Option<&str>| {
            let builder = grpc_helper::RpcClient::builder("127.0.0.1", port).no_retry();
            let builder = if let Some(token) = token { builder.bearer_token(token) } else { builder };
            EventServiceClient::new(builder.connect_lazy().unwrap().channel::<EventApiVersion>())
        };
        let anonymous = client(None).inspect(Empty {}).await.unwrap().into_inner();
        assert!(anonymous.client_ids.is_empty(), "a caller without the token sees only its own: {anonymous:?}");
        let admin = client(Some("inspect-token")).inspect(Empty {}).await.unwrap().into_inner();
        assert_eq!(admin.client_ids, [greeting.client_id]);
        assert!(admin.queues[0].listening);
        assert_eq!(raw_inspect(&other, port).await.client_ids, [greeting.client_id], "its opener sees it");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_past_its_cap_gets_resource_exhausted_and_everyone_else_still_listens() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let caps =
            [("rpc-event-max-queues-per-peer", "3"), ("rpc-event-max-queues", "5"), ("rpc-event-retain-timeout", "1")];
        let server = events_server(dir.path(), &caps).await;
        let port = server.local_addr().port();
        let attacker = raw_h2::connect_from(ATTACKER, port, None).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let (greeting, body) = raw_listen(&attacker, port, 0).await;
            assert!(greeting.r.is_none() && greeting.client_id != 0, "{greeting:?}");
            held.push(body);
        }
        let (refused, _) = raw_listen(&attacker, port, 0).await;
        let (code, message) = in_band(&refused).expect("refused");
        assert_eq!(code, ResultCode::ErrorItemBusy);
        assert_eq!(
            message,
            "Too many event listening queues from 127.0.0.2: 3 are open or retained, the most per peer address \
             (IPv6: per /64) is 3 (rpc-event-max-queues-per-peer; raise it, or interrupt unused queues)"
        );

        // Another peer still gets its queues, up to the global cap; a Rust client sees RESOURCE_EXHAUSTED.
        let mut events = stub(&server);
        let (mut victim, _) = listen(&mut events, 0).await;
        let (_second, _) = listen(&mut events, 0).await;
        let status = events.listen(EventFilter::default()).await.unwrap().into_inner().message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "Too many event listening queues: 5 are open or retained, the most is 5 (rpc-event-max-queues; raise it, \
             or shorten rpc-event-retain-timeout)"
        );
        assert_eq!(RpcError::from(status).result_code(), Some(ResultCode::ErrorItemBusy));
        events.send(event("still-served")).await.unwrap();
        assert_eq!(next_name(&mut victim).await, "still-served");

        // The attacker leaves: its queues are retained, then expire, and free their places.
        drop(held);
        attacker.driver.abort();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (_third, id) = listen(&mut events, 0).await;
        assert_ne!(id, 0);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_stalled_stream_stops_holding_its_queue_but_still_counts_against_its_peer() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        // A stream that takes nothing for 2 s (twice the keep-alive period) is stalled.
        let items = [
            ("rpc-event-keepalive-timeout", "1"),
            ("rpc-event-retain-timeout", "1"),
            ("rpc-event-max-queues-per-peer", "1"),
        ];
        let server = events_server(dir.path(), &items).await;
        let port = server.local_addr().port();
        // The attacker's stream announces a zero window: it never takes a byte.
        let stalled = raw_h2::connect_from(ATTACKER, port, Some(0)).await;
        let mut send = stalled.send.clone().ready().await.unwrap();
        let listen_request = raw_h2::request(port, "/EventService/listen");
        let response = raw_h2::start(&mut send, listen_request, raw_h2::frame(&EventFilter::default())).unwrap();
        let _stalled_body = response.await.unwrap().into_body();
        let observer = raw_h2::connect_from(ATTACKER, port, None).await;
        let queue = loop {
            if let Some(queue) = raw_inspect(&observer, port).await.queues.pop() {
                break queue;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(queue.listening);

        let mut events = stub(&server);
        let (mut good, _) = listen(&mut events, 0).await;
        for n in 0..40 {
            events.send(event(&format!("e-{n}"))).await.unwrap();
            assert_eq!(next_name(&mut good).await, format!("e-{n}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // 4 s later: the stalled queue counted as interrupted after 2 s, and expired 1 s later.
        assert!(raw_inspect(&observer, port).await.client_ids.is_empty(), "the stalled queue expired");
        let (resumed, _) = raw_listen(&observer, port, queue.client_id).await;
        assert_eq!(in_band(&resumed).map(|(code, _)| code), Some(ResultCode::ErrorItemUnknown));
        // Its stream is still open, so the attacker's place is still taken.
        let (refused, _) = raw_listen(&observer, port, 0).await;
        assert_eq!(in_band(&refused).map(|(code, _)| code), Some(ResultCode::ErrorItemBusy), "{refused:?}");
        // The reading listener, polled by every keep-alive, was never taken for stalled.
        events.send(event("last")).await.unwrap();
        assert_eq!(next_name(&mut good).await, "last");

        // The attacker closes its stalled connection: its place is free again.
        drop(send);
        stalled.driver.abort();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (greeting, _body) = raw_listen(&observer, port, 0).await;
            if greeting.r.is_none() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the stalled stream was never released: {greeting:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn listen_can_be_put_behind_the_auth_guard() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = server_builder()
            .with_events()
            .folders(Folders::default().workspace(dir.path()))
            .auth_guard(grpc_helper::auth::BearerToken::new("s3cret"))
            .guard_method("/EventService/listen")
            .start()
            .await
            .unwrap();
        let status = stub(&server).listen(EventFilter::default()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(
            status.message(),
            "/EventService/listen needs credentials: send the metadata `authorization: Bearer <token>`"
        );
        let port = server.local_addr().port();
        let client = grpc_helper::RpcClient::builder("127.0.0.1", port).bearer_token("s3cret").connect_lazy().unwrap();
        let mut events = EventServiceClient::new(client.channel::<EventApiVersion>());
        let (mut stream, id) = listen(&mut events, 0).await;
        assert_ne!(id, 0);
        events.send(event("for-the-guarded")).await.unwrap();
        assert_eq!(next_name(&mut stream).await, "for-the-guarded");
        server.shutdown().await;
    })
    .await;
}

/// What the bound allows per listening stream: its state, the request, and what the transport
/// holds of it (tonic's 8 KiB first buffer, up to two 32 KiB chunks once events were pending).
const STREAM_KIB: u64 = 80;
/// Per HTTP/2 connection: hyper's and h2's read and write buffers.
const CONNECTION_KIB: u64 = 512;

/// The server's peak RSS stays within what its limits allow: per stream, per connection, and
/// one queue's byte bound for the shared log; a copy of each event per listener would be 2 GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_listeners_and_a_thousand_events_keep_the_server_rss_bounded() {
    let _heavy = grpc_helper_tests::heavy();
    use grpc_helper_tests::process::{example, spawn_until};

    const STALLED: usize = 2000;
    const CONNECTIONS: usize = 20;
    const QUEUE_BYTES: u64 = 4 << 20;
    bounded(Duration::from_secs(120), async {
        let workspace = tempfile::tempdir().unwrap();
        let port = grpc_helper_tests::free_port();
        let mut command = std::process::Command::new(example("server"));
        command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "error");
        for item in [
            format!("rpc-event-max-queues-per-peer={STALLED}"),
            format!("rpc-event-max-queues={}", STALLED + 10),
            format!("rpc-event-queue-bytes={QUEUE_BYTES}"),
        ] {
            command.args(["-c", &item]);
        }
        let server = tokio::task::spawn_blocking(move || spawn_until(command, "serving on port", LIMIT)).await.unwrap();
        let pid = server.0.id();
        let client = grpc_helper::RpcClient::builder("127.0.0.1", port).timeout(Duration::from_secs(10)).connect_lazy().unwrap();
        let mut events = EventServiceClient::new(client.channel::<EventApiVersion>());
        let (mut good, _) = listen(&mut events, 0).await;
        let payload = "x".repeat(1024);
        let sized = |n: usize| Event {
            name: "bulk".into(),
            properties: vec![grpc_helper::api::EventProperty { name: format!("n{n}"), value: payload.clone() }],
        };
        events.send(sized(0)).await.unwrap();
        next_name(&mut good).await;
        let (baseline, _) = rss_kib(pid);

        // The attack: 2,000 listeners announcing a zero window, 100 per connection.
        let mut stalled = Vec::new();
        let mut bodies = Vec::new();
        for _ in 0..CONNECTIONS {
            let connection = raw_h2::connect_from(ATTACKER, port, Some(0)).await;
            let mut pending = Vec::new();
            for _ in 0..STALLED / CONNECTIONS {
                let mut send = connection.send.clone().ready().await.unwrap();
                let request = raw_h2::request(port, "/EventService/listen");
                pending.push(raw_h2::start(&mut send, request, raw_h2::frame(&EventFilter::default())).unwrap());
            }
            for response in pending {
                bodies.push(response.await.unwrap().into_body());
            }
            stalled.push(connection);
        }
        let (with_listeners, _) = rss_kib(pid);
        let over = raw_h2::connect_from(ATTACKER, port, None).await;
        let (refused, _) = raw_listen(&over, port, 0).await;
        assert_eq!(in_band(&refused).map(|(code, _)| code), Some(ResultCode::ErrorItemBusy), "capped at {STALLED}");

        // 1,000 events of 1 KiB, each sent as a client call and timed, while the good listener reads.
        let reader = tokio::spawn(async move {
            for _ in 0..1000 {
                next_name(&mut good).await;
            }
        });
        let mut sends = Vec::new();
        for n in 1..=1000 {
            let started = std::time::Instant::now();
            events.send(sized(n)).await.unwrap();
            sends.push(started.elapsed());
        }
        reader.await.unwrap();
        let mut info = Vec::new();
        for _ in 0..20 {
            let started = std::time::Instant::now();
            client.server_service().info(grpc_helper::api::Filter::default()).await.unwrap();
            info.push(started.elapsed());
        }
        let (now, peak) = rss_kib(pid);
        sends.sort_unstable();
        info.sort_unstable();
        let bound = STALLED as u64 * STREAM_KIB + CONNECTIONS as u64 * CONNECTION_KIB + QUEUE_BYTES / 1024;
        eprintln!(
            "SUMMARY {STALLED} stalled listeners ({CONNECTIONS} connections, zero window) + 1000 events of 1 KiB: server \
             RSS {baseline} KiB before, {with_listeners} KiB with the listeners, {now} KiB after the events, {peak} KiB \
             peak: +{} KiB ({} KiB per listener), bound +{bound} KiB",
            peak - baseline,
            (peak - baseline) / STALLED as u64
        );
        eprintln!(
            "  send p50 {:?} p99 {:?} max {:?}; srv.info max {:?} (20 calls); the reading listener got 1000/1000",
            sends[500], sends[990], sends[999], info[19]
        );
        assert!(peak - baseline <= bound, "RSS grew by {} KiB, over the bound of {bound} KiB", peak - baseline);
        drop((bodies, stalled));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_queues_is_persisted_without_holding_up_the_listeners() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path(), &[("rpc-event-max-queues-per-peer", "1024")]).await;
        let port = server.local_addr().port();
        let mut events = stub(&server);
        let (mut good, good_id) = listen(&mut events, 0).await;
        // The attacker opens 1,000 queues at once (under a cap raised to 1,024) while events flow,
        // over 4 connections (a connection takes 256 calls at once by default).
        let mut attackers = Vec::new();
        for _ in 0..4 {
            attackers.push(raw_h2::connect_from(ATTACKER, port, None).await);
        }
        let attacker = &attackers[0];
        let flood = {
            let sends: Vec<_> = attackers.iter().map(|a| a.send.clone()).collect();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                for n in 0..1000 {
                    let mut send = sends[n % sends.len()].clone().ready().await.unwrap();
                    let request = raw_h2::request(port, "/EventService/listen");
                    // Listening to nothing that is sent: thousands of unread DATA frames would make
                    // the attacker's own h2 give up.
                    let filter = EventFilter { names: vec!["never-sent".into()], client_id: 0, after: None };
                    pending.push(raw_h2::start(&mut send, request, raw_h2::frame(&filter)).unwrap());
                }
                let mut bodies = Vec::new();
                for response in pending {
                    let mut body = response.await.unwrap().into_body();
                    let greeting = raw_h2::next_message(&mut body, &mut BytesMut::new()).await.unwrap();
                    assert!(EventStatus::decode(greeting.as_slice()).unwrap().r.is_none());
                    bodies.push(body);
                }
                bodies
            })
        };
        for n in 0..200 {
            events.send(event(&format!("e-{n}"))).await.unwrap();
            assert_eq!(next_name(&mut good).await, format!("e-{n}"), "the good listener loses nothing");
        }
        let bodies = flood.await.unwrap();
        let mut expected: Vec<u32> = raw_inspect(attacker, port).await.client_ids;
        assert_eq!(expected.len(), 1000);
        server.shutdown().await;
        expected.push(good_id);
        expected.sort_unstable();
        let text = std::fs::read_to_string(dir.path().join("queues.json")).unwrap();
        // The ids, in either form of the file: a list, or the original's {"<id>": []} map.
        let mut persisted: Vec<u32> = match serde_json::from_str(&text).unwrap() {
            serde_json::Value::Object(map) => map.keys().map(|id| id.parse().unwrap()).collect(),
            list => serde_json::from_value(list).unwrap(),
        };
        persisted.sort_unstable();
        assert_eq!(persisted, expected, "every queue id reached queues.json");
        drop(bodies);
    })
    .await;
}
