//! The events service shared by replicas through NATS JetStream (`rpc-events-url`): three
//! example-server processes on one real `nats-server -js`, over loopback sockets.
//!
//! Needs `nats-server` (Debian package `nats-server`, installed by `.ci/run`): without it these
//! tests fail, saying so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use grpc_helper::api::event_service_client::EventServiceClient;
use grpc_helper::api::{Empty, Event, EventApiVersion, EventFilter, EventInterrupt, EventProperty, ResultCode};
use grpc_helper::{RpcChannel, RpcClient, RpcError};
use grpc_helper_tests::nats::{NatsServer, Replica};
use grpc_helper_tests::process::{example, python_client, run, spawn_until};
use grpc_helper_tests::{bounded, free_port};
use tonic::Streaming;

type Listening = Streaming<grpc_helper::api::EventStatus>;

/// One example server using the NATS at `url` for its events.
async fn replica(url: &str) -> Replica {
    Replica::start(&[format!("rpc-events-url={url}")]).await
}

fn events(replica: &Replica) -> EventServiceClient<RpcChannel> {
    EventServiceClient::new(replica.client().channel::<EventApiVersion>())
}

fn event(sender: &str, n: usize) -> Event {
    Event { name: sender.into(), properties: vec![EventProperty { name: "n".into(), value: n.to_string() }] }
}

/// Sends `count` events named `sender` through `replica`, one after the other (in order).
fn send_all(replica: &Replica, sender: &'static str, count: usize) -> tokio::task::JoinHandle<()> {
    let mut events = events(replica);
    tokio::spawn(async move {
        for n in 0..count {
            events.send(event(sender, n)).await.unwrap_or_else(|e| panic!("send {sender} #{n}: {e}"));
        }
    })
}

/// Opens (`client_id` 0) or resumes a queue as the Python original's client does (no `after`:
/// each event confirmed before it is written); the id from the first message.
async fn listen(events: &mut EventServiceClient<RpcChannel>, client_id: u32) -> Result<(u32, Listening), RpcError> {
    listen_after(events, client_id, None).await
}

/// The same, saying which events the listener has (`after`: confirmed late, resumed after it).
async fn listen_after(
    events: &mut EventServiceClient<RpcChannel>,
    client_id: u32,
    after: Option<u64>,
) -> Result<(u32, Listening), RpcError> {
    let mut stream = events.listen(EventFilter { names: vec![], client_id, after }).await?.into_inner();
    let first = stream.message().await?.expect("a first message with the queue id");
    Ok((first.client_id, stream))
}

/// Events received, as (sender, n), and the sequence of the last one.
#[derive(Default)]
struct Received {
    events: Vec<(String, usize)>,
    last: u64,
}

/// Records events (keep-alives aside) until `total` events were received.
async fn receive(stream: &mut Listening, received: &mut Received, total: usize) {
    while received.events.len() < total {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message()).await;
        let Ok(next) = next else {
            let last = |sender: &str| received.events.iter().rev().find(|(s, _)| s == sender).map(|(_, n)| *n);
            panic!(
                "no event for 30 s after {} of {total}; last via-2 {:?}, last via-3 {:?}",
                received.events.len(),
                last("via-2"),
                last("via-3")
            );
        };
        let message = next.expect("the stream goes on").expect("the stream goes on");
        assert!(message.r.is_none(), "unexpected end of stream: {:?}", message.r);
        assert!(message.event.is_some(), "an event");
        record(message, received);
    }
}

/// Records an event as (sender, n); keep-alives aside.
fn record(message: grpc_helper::api::EventStatus, received: &mut Received) {
    if let Some(event) = message.event.filter(|e| !e.name.is_empty()) {
        assert_ne!(message.sequence, 0, "an event of the shared stream without its sequence");
        received.last = received.last.max(message.sequence);
        received.events.push((event.name, event.properties[0].value.parse().unwrap()));
    }
}

/// Records the events still buffered in a stream whose server died, until the stream breaks.
async fn drain(stream: &mut Listening, received: &mut Received) {
    while let Ok(Ok(Some(message))) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
        record(message, received);
    }
}

/// Every sender's events, each exactly once and in its send order.
fn assert_in_order_once(received: &[(String, usize)], senders: &[&str], per_sender: usize) {
    assert_eq!(received.len(), senders.len() * per_sender, "events received");
    for sender in senders {
        let numbers: Vec<usize> = received.iter().filter(|(s, _)| s == sender).map(|(_, n)| *n).collect();
        let expected: Vec<usize> = (0..per_sender).collect();
        if numbers != expected {
            let first_bad = numbers.iter().zip(&expected).position(|(a, b)| a != b);
            panic!("events of {sender}: {} received, first out of place at {first_bad:?}", numbers.len());
        }
    }
}

/// No further event arrives within a second (nothing delivered twice).
async fn assert_quiet(stream: &mut Listening) {
    let extra = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let message = stream.message().await.unwrap().unwrap();
            if message.event.as_ref().is_some_and(|e| !e.name.is_empty()) {
                return message;
            }
        }
    })
    .await;
    assert!(extra.is_err(), "an event beyond those sent: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_deliver_10000_events_in_order_once() {
    bounded(Duration::from_secs(240), async {
        let nats = NatsServer::start();
        let (r1, r2, r3) = (replica(&nats.url()).await, replica(&nats.url()).await, replica(&nats.url()).await);
        let mut on_1 = events(&r1);
        let (id, mut stream) = listen_after(&mut on_1, 0, Some(0)).await.unwrap();
        assert_ne!(id, 0);

        // The queue is shared: another replica sees it listening.
        let seen = events(&r3).inspect(Empty {}).await.unwrap().into_inner();
        let queue = seen.queues.iter().find(|q| q.client_id == id).expect("replica 3 lists the queue");
        assert!(queue.listening, "replica 3 sees the stream on replica 1 listening");

        let senders = [send_all(&r2, "via-2", 5_000), send_all(&r3, "via-3", 5_000)];
        let mut received = Received::default();
        receive(&mut stream, &mut received, 10_000).await;
        for sender in senders {
            sender.await.unwrap();
        }
        assert_in_order_once(&received.events, &["via-2", "via-3"], 5_000);
        assert_quiet(&mut stream).await;

        // Interrupted from another replica: the stream on replica 1 ends quietly.
        events(&r3).interrupt(EventInterrupt { client_id: id }).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("stream ends");
        assert!(matches!(end, Ok(None)), "a quiet end after the interrupt: {end:?}");
        let again = events(&r2).interrupt(EventInterrupt { client_id: id }).await.unwrap_err();
        assert_eq!(RpcError::from(again).code(), ResultCode::ErrorStateUnexpected as i32);

        // Retained: events sent meanwhile wait in NATS, and a resume on replica 2 gets them.
        send_all(&r3, "later", 3).await.unwrap();
        let (resumed, mut stream) = listen_after(&mut events(&r2), id, Some(received.last)).await.unwrap();
        assert_eq!(resumed, id);
        let mut later = Received::default();
        receive(&mut stream, &mut later, 3).await;
        assert_in_order_once(&later.events, &["later"], 3);
        assert_quiet(&mut stream).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_listening_replica_resumes_on_another_losing_nothing_repeating_nothing() {
    bounded(Duration::from_secs(240), async {
        let nats = NatsServer::start();
        let (mut r1, r2, r3) = (replica(&nats.url()).await, replica(&nats.url()).await, replica(&nats.url()).await);
        // As `EventListener` listens: saying what it has, so that the server confirms late.
        let (id, mut stream) = listen_after(&mut events(&r1), 0, Some(0)).await.unwrap();
        let senders = [send_all(&r2, "via-2", 2_000), send_all(&r3, "via-3", 2_000)];
        let mut received = Received::default();
        receive(&mut stream, &mut received, 1_000).await;
        // Mid-stream: the senders go on while replica 1 dies.
        r1.kill_9().await;
        // What reached this client before the connection broke was delivered: keep it.
        drain(&mut stream, &mut received).await;
        let kept = received.events.len();
        let (resumed, mut stream) =
            listen_after(&mut events(&r2), id, Some(received.last)).await.expect("the queue resumes on replica 2");
        assert_eq!(resumed, id);
        for sender in senders {
            sender.await.unwrap();
        }
        receive(&mut stream, &mut received, 4_000).await;
        // The events being written at the kill come again after the resume, after the last one
        // this client had: none lost, none twice, in each sender's order.
        assert_in_order_once(&received.events, &["via-2", "via-3"], 2_000);
        assert_quiet(&mut stream).await;
        println!("{kept} events before the kill, {} after the resume", 4_000 - kept);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_listener_on_two_replicas_loses_nothing_and_repeats_nothing_when_its_replica_is_killed() {
    bounded(Duration::from_secs(240), async {
        let nats = NatsServer::start();
        let mut r1 = replica(&nats.url()).await;
        // The listener's client knows both replicas; the second starts once the stream is on
        // the first, so that the kill is of the replica that holds it.
        let port_2 = free_port();
        let client = RpcClient::builder("127.0.0.1", r1.port).endpoint("127.0.0.1", port_2).connect_lazy().unwrap();
        let got = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&got);
        let listener = grpc_helper::client::EventListener::start(&client, vec!["via-3".into()], move |event| {
            sink.lock().push(event.properties[0].value.parse::<usize>().unwrap());
        });
        listener.ready().await;
        let _r2 = Replica::start_on(port_2, &[format!("rpc-events-url={}", nats.url())]).await;
        let r3 = replica(&nats.url()).await;
        let sender = send_all(&r3, "via-3", 2_000);
        while got.lock().len() < 500 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r1.kill_9().await;
        sender.await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while got.lock().len() < 2_000 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Anything twice would come within the second after the last one.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = got.lock().clone();
        assert_eq!(got, (0..2_000).collect::<Vec<_>>(), "every event once, in order, across the kill");
        listener.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_nats_mid_stream_loses_no_event_that_it_had_accepted() {
    bounded(Duration::from_secs(240), async {
        let mut nats = NatsServer::start();
        let (r1, r2) = (replica(&nats.url()).await, replica(&nats.url()).await);
        let (id, mut stream) = listen(&mut events(&r1), 0).await.unwrap();
        // Sends go on through the outage: the accepted ones (answered OK) are those NATS stored.
        let total = 3_000;
        let sender = {
            let mut events = events(&r2);
            tokio::spawn(async move {
                let (mut accepted, mut refused) = (Vec::new(), Vec::new());
                for n in 0..total {
                    match events.send(event("sender", n)).await {
                        Ok(_) => accepted.push(n),
                        Err(e) => {
                            let e = RpcError::from(e);
                            assert_eq!(e.result_code(), Some(ResultCode::ErrorStateUnreachable), "{e}");
                            refused.push(n);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (accepted, refused)
            })
        };
        let mut received = Received::default();
        receive(&mut stream, &mut received, 500).await;
        // Down long enough (6 s) for a send to time out: it must say so, not hang or lie.
        let restart = tokio::task::spawn_blocking(move || {
            nats.stop();
            std::thread::sleep(Duration::from_secs(6));
            nats.restart();
            nats
        });
        // Until the sender is done and nothing more comes for 10 s; a stream ended in band
        // (NATS gone) is resumed with the same id once NATS answers again.
        let (mut ended, mut resumes) = (Vec::new(), 0);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                Ok(Ok(Some(message))) if message.r.is_none() => record(message, &mut received),
                Err(_) if sender.is_finished() => break,
                Err(_) => {}
                other => {
                    ended.push(format!("{other:?}"));
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    stream = loop {
                        match listen(&mut events(&r1), id).await {
                            Ok((_, stream)) => break stream,
                            Err(e) => {
                                assert!(tokio::time::Instant::now() < deadline, "no resume 60 s after: {e}");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    };
                    resumes += 1;
                }
            }
        }
        let _nats = restart.await.unwrap();
        let (accepted, refused) = sender.await.unwrap();
        assert!(!refused.is_empty(), "no send refused while NATS was down for 6 s");
        let mut numbers: Vec<usize> = received.events.iter().map(|(_, n)| *n).collect();
        // In order; the one event whose ack NATS took down with it may come twice, no other.
        let again: Vec<usize> = numbers.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        assert!(again.len() <= 1 && resumes >= again.len(), "events delivered twice: {again:?}");
        numbers.dedup();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "events out of order");
        let lost: Vec<usize> = accepted.iter().copied().filter(|n| numbers.binary_search(n).is_err()).collect();
        assert!(lost.is_empty(), "accepted events lost across the NATS restart: {lost:?}");
        println!(
            "{} accepted, {} refused during the outage, {} received; stream ended {resumes} times: {ended:?}",
            accepted.len(),
            refused.len(),
            numbers.len()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_peer_cap_counts_the_queues_of_a_peer_on_every_replica() {
    bounded(Duration::from_secs(120), async {
        let nats = NatsServer::start();
        let items = [format!("rpc-events-url={}", nats.url()), "rpc-event-max-queues-per-peer=2".to_owned()];
        let (r1, r2) = (Replica::start(&items).await, Replica::start(&items).await);
        // One queue listening on replica 1, one retained (interrupted) on replica 2.
        let (_, _listening) = listen(&mut events(&r1), 0).await.unwrap();
        let (retained, _stream) = listen(&mut events(&r2), 0).await.unwrap();
        events(&r2).interrupt(EventInterrupt { client_id: retained }).await.unwrap();

        let Err(refused) = listen(&mut events(&r2), 0).await else { panic!("a third queue from 127.0.0.1 opened") };
        assert_eq!(refused.result_code(), Some(ResultCode::ErrorItemBusy), "{refused}");
        let message = refused.message();
        assert!(message.contains("from 127.0.0.1") && message.contains("rpc-event-max-queues-per-peer"), "{message}");
        // Resuming a queue of its own is not a new queue.
        let (resumed, _again) = listen(&mut events(&r1), retained).await.expect("the retained queue resumes");
        assert_eq!(resumed, retained);
    })
    .await;
}

/// The example server's exit and output, started with these config items.
fn start_failing(items: &[String], workspace: &Path) -> std::process::Output {
    let mut command = Command::new(example("server"));
    command.args(["--port", &free_port().to_string(), "-w"]).arg(workspace);
    for item in items {
        command.args(["-c", item]);
    }
    run(command, Duration::from_secs(60))
}

#[tokio::test]
async fn a_server_refuses_to_start_when_nats_is_unreachable() {
    let workspace = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let output = tokio::task::spawn_blocking({
        let (url, path) = (url.clone(), workspace.path().to_owned());
        move || start_failing(&[format!("rpc-events-url={url}")], &path)
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "the server started without its NATS: {text}");
    assert!(text.contains(&format!("Cannot reach NATS at {url} (rpc-events-url)")), "unclear failure: {text}");
    assert!(text.contains("rpc-events-wait"), "the message names the wait item: {text}");
}

#[tokio::test]
async fn a_server_waits_for_nats_when_told_to() {
    bounded(Duration::from_secs(120), async {
        let port = free_port();
        let url = format!("nats://127.0.0.1:{port}");
        let (server_port, workspace) = (free_port(), tempfile::tempdir().unwrap());
        let mut command = Command::new(example("server"));
        command
            .args(["--port", &server_port.to_string(), "-c", &format!("rpc-events-url={url}")])
            .args(["-c", "rpc-events-wait=60", "-w"])
            .arg(workspace.path())
            .env("RUST_LOG", "warn");
        let server =
            tokio::task::spawn_blocking(move || spawn_until(command, "serving on port", Duration::from_secs(90)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!server.is_finished(), "the server is waiting for NATS, not serving");
        let _nats = tokio::task::spawn_blocking(move || NatsServer::start_on(port)).await.unwrap();
        let _server = server.await.unwrap();
        let client = RpcClient::builder("127.0.0.1", server_port).connect_lazy().unwrap();
        let mut events = EventServiceClient::new(client.channel::<EventApiVersion>());
        events.send(event("after-wait", 0)).await.expect("send through NATS once it is up");
    })
    .await;
}

/// A Python client script against the replica on `port`, off the runtime's threads.
fn python_against(port: u16, script: &'static str) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || python_client(script, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_originals_client_works_against_the_shared_backend() {
    bounded(Duration::from_secs(240), async {
        let nats = NatsServer::start();
        let (r1, r2) = (replica(&nats.url()).await, replica(&nats.url()).await);
        let stdout = python_against(r1.port, "py_events.py").await.unwrap();
        // The same wire test as against the local backend (tests/interop.rs).
        let id: u32 =
            stdout.lines().next().and_then(|l| l.strip_prefix("LISTENING id=")).and_then(|id| id.parse().ok()).unwrap();
        let (listening, inspect) = (format!("LISTENING id={id}"), format!("INSPECT ids={id}"));
        let expected =
            [listening.as_str(), "RECEIVED name=py-event props=origin=python", "ENDED", inspect.as_str(), "OK"];
        assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stdout}");
        // The queue the Python client left is retained in NATS: replica 2 lists it.
        let seen = events(&r2).inspect(Empty {}).await.unwrap().into_inner();
        assert!(seen.queues.iter().any(|q| q.client_id == id && !q.listening), "replica 2 lists queue {id}: {seen:?}");

        let stdout = python_against(r2.port, "py_events_listener.py").await.unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines.first().is_some_and(|l| l.starts_with("READY id=")), "{stdout}");
        assert_eq!(lines[1..], ["RECEIVED name=py-event props=n=1", "STOPPED", "OK"], "{stdout}");
    })
    .await;
}
