//! Slow consumers of events: a listener whose stream is never read (raw HTTP/2, a 16-byte
//! window and no window update) while 300,000 events of 1 KiB are sent. Its queue stops at
//! its byte bound (the oldest events dropped and counted), `inspect` shows it, the server's memory stays bounded, and a normal listener gets every event meant
//! for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use grpc_helper::api::{Empty, Event, EventFilter, EventProperty, EventQueueInfo, ResultStatus};
use grpc_helper::events::QUEUE_LIMIT;
use grpc_helper::{Folders, ManagerContext, RpcError, RpcServer, rpc_manager};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::AnotherApiVersion;
use grpc_helper_tests::events_stub as stub;
use grpc_helper_tests::memory::this_process_mib as rss_mib;
use grpc_helper_tests::{bounded, raw_h2, server_builder};

/// Hands its context to the test, which sends events in-process as a manager would.
struct Sender {
    context: Arc<OnceLock<ManagerContext>>,
}

#[rpc_manager(service = "another", version = AnotherApiVersion, grpc = grpc_helper_tests::api::another_sample_service_server::AnotherSampleService)]
impl Sender {
    async fn method10(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        Ok(ResultStatus::default())
    }

    #[on_load]
    async fn load(&self, cx: &ManagerContext) {
        let _ = self.context.set(cx.clone());
    }
}

async fn queue(server: &RpcServer, id: u32) -> EventQueueInfo {
    let status = stub(server).inspect(Empty {}).await.unwrap().into_inner();
    assert_eq!(status.client_ids, status.queues.iter().map(|q| q.client_id).collect::<Vec<_>>());
    status.queues.into_iter().find(|q| q.client_id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_reads_is_bounded_and_visible_in_inspect() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let context = Arc::new(OnceLock::new());
        let server = server_builder()
            .with_events()
            .folders(Folders::default().workspace(dir.path()))
            .manager(Sender { context: Arc::clone(&context) })
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        let cx = context.get().unwrap().clone();

        // The slow listener: its stream is opened, then never read.
        let slow = raw_h2::connect(port, Some(16)).await;
        let mut send = slow.send.clone().ready().await.unwrap();
        let listen = raw_h2::request(port, "/EventService/listen");
        let response = raw_h2::start(&mut send, listen, raw_h2::frame(&EventFilter::default())).unwrap();
        let _unread = response.await.unwrap();
        let slow_id = loop {
            let status = stub(&server).inspect(Empty {}).await.unwrap().into_inner();
            if let Some(id) = status.client_ids.first() {
                break *id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };

        // The normal listener: only markers, read as they come.
        let markers_only = EventFilter { names: vec!["marker".into()], client_id: 0, after: None };
        let mut normal_stream = stub(&server).listen(markers_only).await.unwrap().into_inner();
        let normal_id = normal_stream.message().await.unwrap().unwrap().client_id;
        let markers_seen = Arc::new(AtomicUsize::new(0));
        let reader = {
            let seen = Arc::clone(&markers_seen);
            tokio::spawn(async move {
                let mut order_ok = true;
                while let Ok(Some(status)) = normal_stream.message().await {
                    match status.event {
                        Some(event) if event.name == "marker" => {
                            let n = seen.fetch_add(1, Ordering::AcqRel);
                            order_ok &= event.properties[0].value == n.to_string();
                        }
                        _ => {}
                    }
                }
                order_ok
            })
        };

        // 1,000 events through the `send` RPC, then 300,000 in-process with a marker every 1,000.
        let rss_before = rss_mib();
        let peak_rss = Arc::new(AtomicUsize::new(0));
        let sampler = {
            let peak_rss = Arc::clone(&peak_rss);
            tokio::spawn(async move {
                loop {
                    peak_rss.fetch_max(rss_mib() as usize, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let started = Instant::now();
        let payload = "x".repeat(1024);
        let mut events = stub(&server);
        let over_rpc = 1000;
        for i in 0..over_rpc {
            let property = EventProperty { name: "i".into(), value: i.to_string() };
            events.send(Event { name: "bulk".into(), properties: vec![property] }).await.unwrap();
        }
        let (bulk, every) = (300_000, 1000);
        let mut markers = 0;
        for i in 0..bulk {
            cx.send_event("bulk", &[("payload", &payload)]).unwrap();
            if i % every == every - 1 {
                cx.send_event("marker", &[("n", &markers.to_string())]).unwrap();
                markers += 1;
                // The normal listener keeps up (as a reading client does): at most 20 markers behind.
                while markers - markers_seen.load(Ordering::Acquire) > 20 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        let sent = over_rpc + bulk + markers;
        let deadline = Instant::now() + Duration::from_secs(10);
        while markers_seen.load(Ordering::Acquire) < markers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sending = started.elapsed();
        sampler.abort();
        let peak_rss = peak_rss.load(Ordering::Relaxed) as u64;

        let slow_queue = queue(&server, slow_id).await;
        let normal_queue = queue(&server, normal_id).await;
        let in_transport = sent as u64 - slow_queue.pending - slow_queue.dropped;
        let seen = markers_seen.load(Ordering::Acquire);
        eprintln!(
            "SUMMARY slow consumer, normal listener: sent {markers} succeeded {seen} failed 0 lost {} (its queue \
             dropped {})",
            markers - seen,
            normal_queue.dropped
        );
        eprintln!(
            "SUMMARY slow consumer, unread listener: sent {sent} pending {} dropped {} (oldest, counted) handed to \
             the transport {in_transport}",
            slow_queue.pending, slow_queue.dropped
        );
        eprintln!("  sent in {sending:?}; RSS {rss_before} MiB before, {peak_rss} MiB peak");
        // Bounded by the bytes first (32 MiB by default: about 31,000 events of 1 KiB).
        let one_event = 1100;
        assert_eq!(slow_queue.limit_bytes, 32 << 20);
        assert!(slow_queue.pending_bytes <= slow_queue.limit_bytes, "{slow_queue:?}");
        assert!(slow_queue.pending_bytes > slow_queue.limit_bytes - one_event, "full: {slow_queue:?}");
        assert!(slow_queue.pending < QUEUE_LIMIT as u64, "{slow_queue:?}");
        assert_eq!(slow_queue.limit, QUEUE_LIMIT as u64);
        assert!(slow_queue.listening, "{slow_queue:?}");
        assert!(slow_queue.dropped > 0, "{slow_queue:?}");
        assert!(in_transport < 100, "only what the 16-byte window and tonic's buffer took: {in_transport}");
        assert_eq!((seen, normal_queue.dropped), (markers, 0), "the normal listener lost nothing");
        // 32 MiB of events are held; the 300,000 sent would be 300 MiB.
        assert!(peak_rss < rss_before + 150, "memory bounded: {rss_before} -> {peak_rss} MiB");

        // The slow client goes away: its queue is retained (not listening), still bounded.
        drop(send);
        drop(_unread);
        slow.driver.abort();
        let deadline = Instant::now() + Duration::from_secs(5);
        while queue(&server, slow_id).await.listening {
            assert!(Instant::now() < deadline, "the queue never noticed its client left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(queue(&server, slow_id).await.pending, slow_queue.pending);
        server.shutdown().await;
        assert!(reader.await.unwrap(), "markers arrived in order");
    })
    .await;
}
