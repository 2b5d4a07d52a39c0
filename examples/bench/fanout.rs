//! Events fan-out: one sender, many listeners on a grpc-helper server's `events` service;
//! delivered events per second, with every listener checked to receive every event, in order.

use std::time::{Duration, Instant};

use grpc_helper::api::event_service_client::EventServiceClient;
use grpc_helper::api::{Event, EventApiVersion, EventFilter, EventProperty};
use grpc_helper::{Folders, RpcClient, RpcServer};

/// What one fan-out run measured.
pub struct FanoutReport {
    pub listeners: usize,
    pub events: usize,
    pub elapsed: Duration,
    /// Events missing or out of order, over all listeners (must be 0).
    pub lost: usize,
}

impl FanoutReport {
    pub fn delivered_per_second(&self) -> f64 {
        (self.listeners * self.events) as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `events` events (one sender) to `listeners` listeners, each on its own connection.
pub async fn fanout(listeners: usize, events: usize) -> Result<FanoutReport, String> {
    let workspace = std::env::temp_dir().join(format!("grpc-helper-bench-fanout-{}", std::process::id()));
    let server = RpcServer::builder()
        .ip(crate::targets::LOOPBACK)
        .port(0)
        .folders(Folders::default().workspace(&workspace))
        .install_logging(false)
        .debug_signal(false)
        .with_events()
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let port = server.local_addr().port();
    let client =
        |name: String| RpcClient::builder("127.0.0.1", port).name(name).connect_lazy().map_err(|e| e.to_string());
    let mut readers = Vec::with_capacity(listeners);
    for n in 0..listeners {
        let mut stub = EventServiceClient::new(client(format!("listener-{n}"))?.channel::<EventApiVersion>());
        let mut stream = stub.listen(EventFilter::default()).await.map_err(|e| e.to_string())?.into_inner();
        stream.message().await.map_err(|e| e.to_string())?;
        readers.push(tokio::spawn(async move {
            let (mut next, mut lost) = (0usize, 0usize);
            while next < events {
                match stream.message().await {
                    Ok(Some(status)) => {
                        let Some(event) = status.event.filter(|e| !e.name.is_empty()) else { continue };
                        let seq: usize =
                            event.properties.first().and_then(|p| p.value.parse().ok()).unwrap_or(usize::MAX);
                        lost += usize::from(seq != next);
                        next = seq.saturating_add(1);
                    }
                    _ => return events - next + lost,
                }
            }
            lost
        }));
    }
    let mut sender = EventServiceClient::new(client("sender".into())?.channel::<EventApiVersion>());
    let started = Instant::now();
    for seq in 0..events {
        let property = EventProperty { name: "seq".into(), value: seq.to_string() };
        sender.send(Event { name: "bench".into(), properties: vec![property] }).await.map_err(|e| e.to_string())?;
    }
    let mut lost = 0;
    for reader in readers {
        lost += reader.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(workspace);
    Ok(FanoutReport { listeners, events, elapsed, lost })
}
