//! Unit tests of the local queues: the shared log, the byte bound, the batched id file.
use std::net::{IpAddr, Ipv4Addr};

use tokio_stream::StreamExt;

use super::*;
use crate::names::NameFilter;

fn limits() -> EventLimits {
    EventLimits {
        retain: Duration::from_millis(1),
        stall: Duration::from_secs(60),
        max_queues: 10_000,
        max_per_peer: 10_000,
        queue_bytes: 1 << 30,
    }
}

fn log_len(events: &LocalEvents) -> usize {
    events.log_len()
}

fn event(name: &str) -> Event {
    Event { name: name.into(), properties: Vec::new() }
}

const ME: Peer = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

#[tokio::test]
async fn the_log_keeps_each_event_once_until_every_queue_has_it() {
    let events = Arc::new(LocalEvents::new(limits(), None).unwrap());
    let listen = || Arc::clone(&events).listen(ME, 0, NameFilter::default(), Duration::from_secs(60)).unwrap();
    let (mut fast, slow) = (listen(), listen());
    for n in 0..10 {
        events.send(event(&format!("e{n}")));
    }
    assert_eq!(log_len(&events), 10, "one entry per event, whatever the number of queues");
    for _ in 0..11 {
        fast.next().await.unwrap().unwrap();
    }
    assert_eq!(log_len(&events), 10, "the slow queue still holds them");
    drop(slow);
    tokio::time::sleep(Duration::from_millis(5)).await;
    events.send(event("last"));
    assert_eq!(log_len(&events), 1, "the expired queue let its events go");
    fast.next().await.unwrap().unwrap();
    assert_eq!(log_len(&events), 0, "every queue has every event");
}

#[tokio::test]
async fn a_queue_holds_at_most_its_bytes_and_counts_the_rest_as_dropped() {
    let one = SharedEvent::new(&event("e-0")).encoded_len() as u64;
    let events = Arc::new(LocalEvents::new(EventLimits { queue_bytes: 10 * one, ..limits() }, None).unwrap());
    let _stream = Arc::clone(&events).listen(ME, 0, NameFilter::default(), Duration::from_secs(60)).unwrap();
    for n in 0..25 {
        events.send(event(&format!("e-{}", n % 10)));
    }
    let queue = events.inspect(ME, false).pop().unwrap();
    assert_eq!((queue.pending, queue.pending_bytes, queue.dropped), (10, 10 * one, 15), "{queue:?}");
    assert_eq!(log_len(&events), 10, "the log is bounded too");
}

#[tokio::test]
async fn a_burst_of_new_queues_is_written_in_a_few_files_holding_every_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.json");
    let events = Arc::new(LocalEvents::new(limits(), Some(path.clone())).unwrap());
    let streams: Vec<_> = (0..500)
        .map(|_| Arc::clone(&events).listen(ME, 0, NameFilter::default(), Duration::from_secs(60)).unwrap())
        .collect();
    events.shutdown();
    let mut ids = ids_from_json(crate::persist::read_json(&path).unwrap().unwrap(), &path).unwrap();
    ids.sort_unstable();
    let mut expected: Vec<u32> = events.inspect(ME, false).iter().map(|q| q.client_id).collect();
    expected.sort_unstable();
    assert_eq!((ids.len(), ids), (500, expected));
    assert!(events.file_writes() < 500, "batched: {} writes for 500 queues", events.file_writes());
    drop(streams);
}

#[tokio::test]
async fn a_stream_found_stalled_ends_in_band_and_its_queue_resumes_with_everything() {
    let events = Arc::new(
        LocalEvents::new(
            EventLimits { stall: Duration::from_millis(20), retain: Duration::from_secs(60), ..limits() },
            None,
        )
        .unwrap(),
    );
    let mut stalled = Arc::clone(&events).listen(ME, 0, NameFilter::default(), Duration::from_secs(60)).unwrap();
    let id = events.inspect(ME, false)[0].client_id;
    tokio::time::sleep(Duration::from_millis(30)).await;
    events.send(event("while-stalled"));
    assert!(!events.inspect(ME, false)[0].listening, "counts as interrupted");
    let error = stalled.next().await.unwrap().unwrap_err();
    assert_eq!(error.result_code(), Some(ResultCode::ErrorRequestTimeout));
    assert!(error.message().contains("listen again with this client_id"), "{error}");
    assert!(stalled.next().await.is_none());
    let mut resumed = Arc::clone(&events).listen(ME, id, NameFilter::default(), Duration::from_secs(60)).unwrap();
    resumed.next().await.unwrap().unwrap();
    let mut bytes = Vec::new();
    resumed.next().await.unwrap().unwrap().encode(&mut bytes);
    let mut expected = Vec::new();
    ListenReply::event(id, SharedEvent::new(&event("while-stalled"))).encode(&mut expected);
    assert_eq!(bytes, expected, "the event sent while stalled");
}

#[tokio::test]
async fn events_left_out_by_a_listening_filter_are_skipped_without_holding_the_log() {
    let events = Arc::new(LocalEvents::new(limits(), None).unwrap());
    let mut only_b = Arc::clone(&events)
        .listen(ME, 0, NameFilter::new(vec!["b".into()], |_| Ok(())).unwrap(), Duration::from_secs(60))
        .unwrap();
    only_b.next().await.unwrap().unwrap();
    for _ in 0..100 {
        events.send(event("a"));
    }
    assert_eq!(log_len(&events), 0, "nothing kept for a listener that does not want it");
    assert_eq!(events.inspect(ME, false)[0].pending, 0);
    events.send(event("b"));
    let mut bytes = Vec::new();
    only_b.next().await.unwrap().unwrap().encode(&mut bytes);
    let mut expected = Vec::new();
    ListenReply::event(events.inspect(ME, false)[0].client_id, SharedEvent::new(&event("b"))).encode(&mut expected);
    assert_eq!(bytes, expected);
}

#[test]
fn ipv6_peers_are_capped_per_64_and_ipv4_per_address() {
    use super::usage::cap_group;
    let v6 = |text: &str| Some(text.parse::<IpAddr>().unwrap());
    assert_eq!(cap_group(v6("2001:db8:1:2:aaaa::1")), cap_group(v6("2001:db8:1:2:ffff::9")));
    assert_ne!(cap_group(v6("2001:db8:1:2::1")), cap_group(v6("2001:db8:1:3::1")));
    assert_eq!(cap_group(v6("2001:db8:1:2:aaaa::1")), v6("2001:db8:1:2::"));
    assert_eq!(cap_group(v6("10.0.0.1")), v6("10.0.0.1"));
    assert_eq!(cap_group(None), None);
}
