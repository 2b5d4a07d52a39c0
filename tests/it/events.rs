//! The `events` service over real sockets: validation, fan-out with filters, interrupt, resume
//! without loss, retention expiry, keep-alive, and streams ended by shutdown.

use std::path::Path;
use std::time::Duration;

use grpc_helper::api::event_service_client::EventServiceClient;
use grpc_helper::api::{Empty, Event, EventFilter, EventInterrupt, EventProperty, EventStatus, ResultCode};
use grpc_helper::{Folders, RpcChannel, RpcError, RpcServer, RpcServerBuilder};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::event;
use grpc_helper_tests::events_stub as stub;
use grpc_helper_tests::{bounded, client_of, server_builder};
use tonic::Streaming;

fn events_server(workspace: &Path) -> RpcServerBuilder {
    server_builder().with_events().folders(Folders::default().workspace(workspace))
}

/// An events server whose one configuration item `name` is `value` (e.g. a short timeout).
async fn events_server_with(workspace: &Path, name: &str, value: &str) -> RpcServer {
    events_server(workspace).cli_config([(name.to_owned(), value.to_owned())]).start().await.unwrap()
}

fn filter(names: &[&str], client_id: u32) -> EventFilter {
    EventFilter { names: names.iter().map(|n| n.to_string()).collect(), client_id, after: None }
}

/// Opens a listening stream and returns it with its client id (from the first message).
async fn listen(
    events: &mut EventServiceClient<RpcChannel>,
    names: &[&str],
    client_id: u32,
) -> (Streaming<EventStatus>, u32) {
    let mut stream = events.listen(filter(names, client_id)).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.event.is_none(), "the first message only carries the id");
    (stream, first.client_id)
}

/// The next non-keep-alive event name.
async fn next_name(stream: &mut Streaming<EventStatus>) -> Option<String> {
    loop {
        let status = stream.message().await.unwrap()?;
        let event = status.event.unwrap();
        if !event.name.is_empty() {
            return Some(event.name);
        }
    }
}

fn code(status: tonic::Status) -> Option<ResultCode> {
    RpcError::from(status).result_code()
}

#[tokio::test]
async fn bad_requests_get_clear_codes() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let mut events = stub(&server);
        let first_error = |r: Result<tonic::Response<Streaming<EventStatus>>, tonic::Status>| async move {
            match r {
                Err(status) => code(status),
                Ok(stream) => code(stream.into_inner().message().await.unwrap_err()),
            }
        };
        assert_eq!(first_error(events.listen(filter(&[""], 0)).await).await, Some(ResultCode::ErrorParamMissing));
        assert_eq!(
            first_error(events.listen(filter(&["with space"], 0)).await).await,
            Some(ResultCode::ErrorParamInvalid)
        );
        assert_eq!(first_error(events.listen(filter(&[], 135)).await).await, Some(ResultCode::ErrorItemUnknown));
        assert_eq!(code(events.send(event("")).await.unwrap_err()), Some(ResultCode::ErrorParamMissing));
        assert_eq!(code(events.send(event("with space")).await.unwrap_err()), Some(ResultCode::ErrorParamInvalid));
        // What the original accepts is accepted: other whitespace in a name, any property name.
        let property = EventProperty { name: "a b".into(), value: "v".into() };
        events.send(Event { name: "ok".into(), properties: vec![property] }).await.unwrap();
        events.send(event("tab\there")).await.unwrap();
        assert_eq!(
            code(events.interrupt(EventInterrupt::default()).await.unwrap_err()),
            Some(ResultCode::ErrorItemUnknown)
        );
        assert!(events.inspect(Empty {}).await.unwrap().into_inner().client_ids.is_empty());
        let mut listening = events.listen(filter(&["tab\there"], 0)).await.unwrap().into_inner();
        assert!(listening.message().await.unwrap().is_some(), "the greeting: the filter was taken");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn workflow_with_filters_interrupt_and_inspect() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let mut events = stub(&server);
        let (mut only_some, id1) = listen(&mut events, &["some-event"], 0).await;
        let (mut all, id2) = listen(&mut events, &[], 0).await;
        assert!(id1 != 0 && id2 != 0 && id1 != id2, "random ids, never 0: {id1} {id2}");
        let property = EventProperty { name: "foo".into(), value: "bar".into() };
        events.send(Event { name: "some-event".into(), properties: vec![property.clone()] }).await.unwrap();
        events.send(event("another-event")).await.unwrap();

        let received = only_some.message().await.unwrap().unwrap();
        assert_eq!(received.client_id, id1);
        assert_eq!(received.event.unwrap(), Event { name: "some-event".into(), properties: vec![property] });
        assert_eq!(next_name(&mut all).await.unwrap(), "some-event");
        assert_eq!(next_name(&mut all).await.unwrap(), "another-event");

        let mut both = [id1, id2];
        both.sort_unstable();
        assert_eq!(events.inspect(Empty {}).await.unwrap().into_inner().client_ids, both, "listed by id");
        events.interrupt(EventInterrupt { client_id: id1 }).await.unwrap();
        assert!(only_some.message().await.unwrap().is_none(), "interrupt ends the stream");
        assert_eq!(events.inspect(Empty {}).await.unwrap().into_inner().client_ids, both, "the queue is retained");
        let again = events.interrupt(EventInterrupt { client_id: id1 }).await.unwrap_err();
        assert_eq!(code(again), Some(ResultCode::ErrorStateUnexpected));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn resume_delivers_every_event_queued_meanwhile_in_order_once() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let mut events = stub(&server);
        let (mut stream, id) = listen(&mut events, &[], 0).await;
        events.send(event("e-0")).await.unwrap();
        assert_eq!(next_name(&mut stream).await.unwrap(), "e-0");
        // The client goes away (its stream is dropped): the queue keeps collecting.
        drop(stream);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let interrupted = events.interrupt(EventInterrupt { client_id: id }).await.unwrap_err();
        assert_eq!(code(interrupted), Some(ResultCode::ErrorStateUnexpected), "a dropped stream counts as interrupted");
        for n in 1..=10_000 {
            events.send(event(&format!("e-{n}"))).await.unwrap();
        }
        let (mut resumed, same) = listen(&mut events, &[], id).await;
        assert_eq!(same, id);
        for n in 1..=10_000 {
            assert_eq!(next_name(&mut resumed).await.unwrap(), format!("e-{n}"));
        }
        events.send(event("after")).await.unwrap();
        assert_eq!(next_name(&mut resumed).await.unwrap(), "after", "nothing twice, nothing extra");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn interrupted_queue_expires_after_the_retention() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server_with(dir.path(), "rpc-event-retain-timeout", "1").await;
        let mut events = stub(&server);
        let (_stream, id) = listen(&mut events, &[], 0).await;
        events.interrupt(EventInterrupt { client_id: id }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        events.send(event("late")).await.unwrap();
        assert_eq!(
            code(events.interrupt(EventInterrupt { client_id: id }).await.unwrap_err()),
            Some(ResultCode::ErrorItemUnknown)
        );
        let resume = events.listen(filter(&[], id)).await.unwrap().into_inner().message().await.unwrap_err();
        let error = RpcError::from(resume);
        assert_eq!(error.result_code(), Some(ResultCode::ErrorItemUnknown));
        assert!(error.message().contains(&format!("#{id}")), "{error}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn keepalive_arrives_after_the_configured_silence() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server_with(dir.path(), "rpc-event-keepalive-timeout", "1").await;
        let (mut stream, id) = listen(&mut stub(&server), &["only-this"], 0).await;
        let started = std::time::Instant::now();
        let keepalive = stream.message().await.unwrap().unwrap();
        assert_eq!(keepalive, EventStatus { r: None, event: Some(Event::default()), client_id: id, sequence: 0 });
        assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_streams_in_band_and_queues_survive_a_restart() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let port = server.local_addr().port();
        let (mut stream, id) = listen(&mut stub(&server), &[], 0).await;
        let shutdown = tokio::spawn({
            let server = server.clone();
            async move { server.shutdown().await }
        });
        let error = RpcError::from(stream.message().await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStreamShutdown));
        shutdown.await.unwrap();

        let again = events_server(dir.path()).port(port).start().await.unwrap();
        let mut events = stub(&again);
        // A restored queue has no known owner until a peer resumes it; an administrator (here:
        // loopback, no guard) sees every queue, as in the original.
        assert_eq!(events.inspect(Empty {}).await.unwrap().into_inner().client_ids, [id]);
        let (mut resumed, same) = listen(&mut events, &[], id).await;
        assert_eq!(same, id);
        assert_eq!(events.inspect(Empty {}).await.unwrap().into_inner().client_ids, [id]);
        events.send(event("after-restart")).await.unwrap();
        assert_eq!(next_name(&mut resumed).await.unwrap(), "after-restart");
        again.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn fan_out_to_many_listeners_loses_nothing() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let mut events = stub(&server);
        let mut listeners = Vec::new();
        for n in 0..50 {
            let names: &[&str] = if n % 2 == 0 { &[] } else { &["odd"] };
            listeners.push((n, listen(&mut events, names, 0).await.0));
        }
        for i in 0..200 {
            events.send(event(if i % 4 == 0 { "odd" } else { "even" })).await.unwrap();
        }
        let readers = listeners.into_iter().map(|(n, mut stream)| {
            tokio::spawn(async move {
                let expected = if n % 2 == 0 { 200 } else { 50 };
                let mut got = 0;
                while got < expected {
                    next_name(&mut stream).await.unwrap();
                    got += 1;
                }
                got
            })
        });
        for reader in readers {
            reader.await.unwrap();
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn event_listener_delivers_resumes_after_a_restart_and_stops_cleanly() {
    use grpc_helper::client::EventListener;
    use std::sync::{Arc, Mutex};

    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let port = server.local_addr().port();
        let client = client_of(&server);
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let listener = EventListener::start(&client, vec!["wanted".into()], move |event| {
            sink.lock().unwrap().push(event.properties[0].value.clone());
        });
        listener.ready().await;
        let id = listener.client_id().unwrap();
        let send = |n: u32| {
            let mut events = stub(&server);
            async move {
                let property = EventProperty { name: "n".into(), value: n.to_string() };
                events.send(Event { name: "wanted".into(), properties: vec![property] }).await.unwrap();
                events.send(event("unwanted")).await.unwrap();
            }
        };
        send(1).await;
        send(2).await;

        // The server restarts: the listener resumes its queue by itself.
        server.shutdown().await;
        let server = events_server(dir.path()).port(port).start().await.unwrap();
        let mut events = stub(&server);
        let property = EventProperty { name: "n".into(), value: "3".into() };
        events.send(Event { name: "wanted".into(), properties: vec![property] }).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while received.lock().unwrap().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "got {:?}", received.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*received.lock().unwrap(), ["1", "2", "3"]);
        assert_eq!(listener.client_id(), Some(id), "the same queue was resumed");

        listener.stop().await;
        let again = events.interrupt(EventInterrupt { client_id: id }).await.unwrap_err();
        assert_eq!(code(again), Some(ResultCode::ErrorStateUnexpected), "stop interrupted the queue");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn managers_send_events_through_their_context() {
    use grpc_helper::{ManagerContext, rpc_manager};

    struct Announcer;

    #[rpc_manager(service = "announcer", version = grpc_helper_tests::api::AnotherApiVersion, grpc = grpc_helper_tests::api::another_sample_service_server::AnotherSampleService)]
    impl Announcer {
        async fn method10(
            &self,
            _request: Empty,
            cx: grpc_helper::CallContext,
        ) -> Result<grpc_helper::api::ResultStatus, RpcError> {
            cx.send_event("announced", &[("by", cx.caller().client())])?;
            Ok(grpc_helper_tests::status("sent"))
        }

        #[on_load]
        async fn load(&self, cx: &ManagerContext) -> Result<(), RpcError> {
            let refused = cx.send_event("bad name", &[]).unwrap_err();
            assert_eq!(refused.result_code(), Some(ResultCode::ErrorParamInvalid));
            Ok(())
        }
    }

    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).manager(Announcer).start().await.unwrap();
        let (mut stream, _) = listen(&mut stub(&server), &["announced"], 0).await;
        let channel = client_of(&server).channel::<grpc_helper_tests::api::AnotherApiVersion>();
        grpc_helper_tests::api::another_sample_service_client::AnotherSampleServiceClient::new(channel)
            .method10(Empty {})
            .await
            .unwrap();
        let announced = stream.message().await.unwrap().unwrap().event.unwrap();
        assert_eq!(announced.name, "announced");
        assert_eq!(announced.properties[0].value, "test-client");
        server.shutdown().await;

        let without = server_builder().manager(Announcer).start().await.unwrap();
        let channel = client_of(&without).channel::<grpc_helper_tests::api::AnotherApiVersion>();
        let status = grpc_helper_tests::api::another_sample_service_client::AnotherSampleServiceClient::new(channel)
            .method10(Empty {})
            .await
            .unwrap_err();
        assert_eq!(code(status), Some(ResultCode::ErrorRequestUnsupported));
        without.shutdown().await;
    })
    .await;
}

/// A numbered event: `name` with property `seq`.
fn numbered(name: &str, seq: usize) -> Event {
    Event { name: name.into(), properties: vec![EventProperty { name: "seq".into(), value: seq.to_string() }] }
}

#[tokio::test]
async fn every_listener_gets_each_event_of_its_filter_once_in_order() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let mut events = stub(&server);
        let filters: [&[&str]; 4] = [&[], &["a", "end"], &["b", "c", "end"], &["c", "end"]];
        let mut listeners = Vec::new();
        for n in 0..40 {
            let names = filters[n % filters.len()];
            listeners.push((names, listen(&mut events, names, 0).await.0));
        }
        let sent: Vec<Event> = (0..600).map(|seq| numbered(["a", "b", "c"][seq % 3], seq)).collect();
        // Read while sending, as listeners do: thousands of tiny DATA frames left unread on one
        // connection make the client's h2 end it (ENHANCE_YOUR_CALM).
        let readers: Vec<_> = listeners
            .into_iter()
            .map(|(names, mut stream)| {
                let expected: Vec<Event> =
                    sent.iter().filter(|e| names.is_empty() || names.contains(&e.name.as_str())).cloned().collect();
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    loop {
                        let event = stream.message().await.unwrap().unwrap().event.unwrap();
                        match event.name.as_str() {
                            "" => continue,
                            "end" => break,
                            _ => received.push(event),
                        }
                    }
                    assert_eq!(received, expected, "filter {names:?}");
                })
            })
            .collect();
        for event in &sent {
            events.send(event.clone()).await.unwrap();
        }
        events.send(event("end")).await.unwrap();
        for reader in readers {
            reader.await.unwrap();
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_new_queue_starts_with_the_events_sent_after_it_opened() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let mut events = stub(&server);
        let (_retained, early) = listen(&mut events, &[], 0).await;
        events.interrupt(EventInterrupt { client_id: early }).await.unwrap();
        events.send(event("before")).await.unwrap();
        let (mut late, _) = listen(&mut events, &[], 0).await;
        events.send(event("after")).await.unwrap();
        assert_eq!(next_name(&mut late).await.unwrap(), "after");
        let (mut resumed, _) = listen(&mut events, &[], early).await;
        assert_eq!(next_name(&mut resumed).await.unwrap(), "before", "the retained queue kept it");
        assert_eq!(next_name(&mut resumed).await.unwrap(), "after");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn listen_writes_the_bytes_prost_writes_for_each_event_status() {
    use grpc_helper_tests::raw_h2;
    use prost::Message;

    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server_with(dir.path(), "rpc-event-keepalive-timeout", "1").await;
        let port = server.local_addr().port();
        let connection = raw_h2::connect(port, None).await;
        let mut send = connection.send.clone().ready().await.unwrap();
        let mut request = raw_h2::request(port, "/EventService/listen");
        request.headers_mut().insert("api_version", http::HeaderValue::from_static("2"));
        let response = raw_h2::start(&mut send, request, raw_h2::frame(&filter(&["wanted"], 0))).unwrap();
        let mut body = response.await.unwrap().into_body();
        let mut buffer = bytes::BytesMut::new();

        let greeting = raw_h2::next_message(&mut body, &mut buffer).await.expect("the stream goes on");
        let id = EventStatus::decode(greeting.as_slice()).unwrap().client_id;
        assert_ne!(id, 0);
        assert_eq!(greeting, EventStatus { r: None, event: None, client_id: id, sequence: 0 }.encode_to_vec());
        let wanted = Event {
            name: "wanted".into(),
            properties: vec![
                EventProperty { name: "text".into(), value: "é".repeat(200) },
                EventProperty { name: "empty".into(), value: String::new() },
            ],
        };
        let mut events = stub(&server);
        events.send(event("unwanted")).await.unwrap();
        events.send(wanted.clone()).await.unwrap();
        let delivered = raw_h2::next_message(&mut body, &mut buffer).await.expect("the stream goes on");
        assert_eq!(delivered, EventStatus { r: None, event: Some(wanted), client_id: id, sequence: 0 }.encode_to_vec());
        let keepalive = raw_h2::next_message(&mut body, &mut buffer).await.expect("the stream goes on");
        assert_eq!(
            keepalive,
            EventStatus { r: None, event: Some(Event::default()), client_id: id, sequence: 0 }.encode_to_vec()
        );

        let shutdown = tokio::spawn({
            let server = server.clone();
            async move { server.shutdown().await }
        });
        let last = raw_h2::next_message(&mut body, &mut buffer).await.expect("the stream goes on");
        let status = EventStatus::decode(last.as_slice()).unwrap();
        assert_eq!(status.r.as_ref().map(|r| r.code), Some(ResultCode::ErrorStreamShutdown as i32));
        assert_eq!(last, status.encode_to_vec());
        shutdown.await.unwrap();
    })
    .await;
}
