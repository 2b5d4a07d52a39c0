//! Unit tests of the local queues' shared log.
use tokio_stream::StreamExt;

use super::*;

fn log_len(events: &LocalEvents) -> usize {
    events.inner.lock().log.len()
}

#[tokio::test]
async fn the_log_keeps_each_event_once_until_every_queue_has_it() {
    let events = Arc::new(LocalEvents::new(Duration::from_millis(1), None).unwrap());
    let listen = || Arc::clone(&events).listen(0, Vec::new(), Duration::from_secs(60)).unwrap();
    let (mut fast, slow) = (listen(), listen());
    for n in 0..10 {
        events.send(Event { name: format!("e{n}"), properties: Vec::new() });
    }
    assert_eq!(log_len(&events), 10, "one entry per event, whatever the number of queues");
    for _ in 0..11 {
        fast.next().await.unwrap().unwrap();
    }
    assert_eq!(log_len(&events), 10, "the slow queue still holds them");
    drop(slow);
    tokio::time::sleep(Duration::from_millis(5)).await;
    events.send(Event { name: "last".into(), properties: Vec::new() });
    assert_eq!(log_len(&events), 1, "the expired queue let its events go");
    fast.next().await.unwrap().unwrap();
    assert_eq!(log_len(&events), 0, "every queue has every event");
}
