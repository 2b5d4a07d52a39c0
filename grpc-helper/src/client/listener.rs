//! [`EventListener`]: listens to a server's `events` in a background task, hands every event to
//! a callback, resumes its queue by itself after a disconnect or a server restart, and stops
//! cleanly (its queue is interrupted). [`EventListener::resume`] starts from a queue id saved by
//! an earlier process, as the original's listener takes a `client_id`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::event_service_client::EventServiceClient;
use crate::api::{Event, EventApiVersion, EventFilter, EventInterrupt, ResultCode};
use crate::{RpcClient, RpcError};

/// A running listener; see the module docs.
///
/// ```no_run
/// # async fn demo(client: grpc_helper::RpcClient) {
/// use grpc_helper::client::EventListener;
///
/// let listener = EventListener::start(&client, vec!["job-done".into()], |event| {
///     println!("{} {:?}", event.name, event.properties);
/// });
/// listener.ready().await;
/// // ...
/// listener.stop().await;
/// # }
/// ```
pub struct EventListener {
    client: RpcClient,
    client_id: Arc<AtomicU32>,
    expired: Arc<AtomicU32>,
    ready: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EventListener {
    /// Starts listening to the events named in `names` (all when empty).
    ///
    /// ```
    /// use grpc_helper::client::EventListener;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).with_events().start().await?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let listener = EventListener::start(&server.auto_client(), vec![], move |event| {
    ///     let _ = tx.send(event.name);
    /// });
    /// # listener.ready().await;
    /// # use grpc_helper::api::{Event, EventApiVersion, event_service_client::EventServiceClient};
    /// # let mut events = EventServiceClient::new(server.auto_client().channel::<EventApiVersion>());
    /// # events.send(Event { name: "job-done".into(), properties: vec![] }).await?;
    /// assert_eq!(rx.recv().await.as_deref(), Some("job-done"));
    /// # listener.stop().await;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn start<F>(client: &RpcClient, names: Vec<String>, on_event: F) -> Self
    where
        F: FnMut(Event) + Send + 'static,
    {
        Self::resume(client, 0, names, on_event)
    }

    /// Resumes the queue `client_id` (one saved from [`client_id`](Self::client_id) by an
    /// earlier run): the events sent to it while nobody listened are delivered first. When the
    /// server no longer knows it (it expired after `rpc-event-retain-timeout`), the listener
    /// opens a new queue, logs a warning naming both ids, and reports the lost one in
    /// [`expired_queue`](Self::expired_queue). `client_id` 0 is [`start`](Self::start).
    ///
    /// Within one listener, a resume says which events it has (`EventFilter.after`), so that a
    /// server sharing its events through NATS repeats none and loses none, even when the
    /// replica it listened on crashed. A queue saved by an earlier run resumes after the last
    /// event that server confirmed: up to a second of events before the earlier run stopped
    /// may come again.
    ///
    /// ```no_run
    /// # async fn demo(client: grpc_helper::RpcClient) -> std::io::Result<()> {
    /// use grpc_helper::client::EventListener;
    ///
    /// let saved = std::fs::read_to_string("listener.id").ok().and_then(|id| id.trim().parse().ok());
    /// let listener = EventListener::resume(&client, saved.unwrap_or(0), vec!["job-done".into()], |event| {
    ///     println!("{}", event.name);
    /// });
    /// listener.ready().await;
    /// if let Some(lost) = listener.expired_queue() {
    ///     eprintln!("queue #{lost} had expired: events sent while we were away are lost");
    /// }
    /// std::fs::write("listener.id", listener.client_id().unwrap().to_string())?;
    /// # Ok(()) }
    /// ```
    pub fn resume<F>(client: &RpcClient, client_id: u32, names: Vec<String>, on_event: F) -> Self
    where
        F: FnMut(Event) + Send + 'static,
    {
        let ids = Ids { current: Arc::new(AtomicU32::new(client_id)), expired: Arc::new(AtomicU32::new(0)) };
        let (ready_tx, ready) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let (client_id, expired) = (Arc::clone(&ids.current), Arc::clone(&ids.expired));
        let task = tokio::spawn(run(client.clone(), names, ids, ready_tx, stop_rx, on_event));
        Self { client: client.clone(), client_id, expired, ready, stop, task }
    }

    /// The last queue id the server did not know any more (expired while nobody listened),
    /// replaced since by a new queue; `None` while every resume found its queue.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// # let server = grpc_helper::RpcServer::builder().port(0).with_events().start().await?;
    /// # let client = server.auto_client();
    /// let listener = grpc_helper::client::EventListener::resume(&client, 4242, vec![], |_| {});
    /// listener.ready().await;
    /// assert_eq!(listener.expired_queue(), Some(4242));
    /// assert_ne!(listener.client_id(), Some(4242));
    /// # listener.stop().await;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn expired_queue(&self) -> Option<u32> {
        Some(self.expired.load(Ordering::Acquire)).filter(|id| *id != 0)
    }

    /// The queue id, once the server assigned one.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// # let server = grpc_helper::RpcServer::builder().port(0).with_events().start().await?;
    /// # let client = server.auto_client();
    /// let listener = grpc_helper::client::EventListener::start(&client, vec![], |_| {});
    /// listener.ready().await;
    /// println!("listening as queue #{}", listener.client_id().expect("assigned once ready"));
    /// # listener.stop().await;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn client_id(&self) -> Option<u32> {
        Some(self.client_id.load(Ordering::Acquire)).filter(|id| *id != 0)
    }

    /// Waits until the listener's queue exists on the server (events sent from then on are
    /// delivered).
    ///
    /// ```no_run
    /// # async fn demo(client: grpc_helper::RpcClient) {
    /// use std::time::Duration;
    ///
    /// let listener = grpc_helper::client::EventListener::start(&client, vec!["job-done".into()], |_| {});
    /// if tokio::time::timeout(Duration::from_secs(5), listener.ready()).await.is_err() {
    ///     eprintln!("no events service at {} yet; still trying", client.target());
    /// }
    /// # }
    /// ```
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Stops listening: interrupts the queue on the server and ends the task.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// # let server = grpc_helper::RpcServer::builder().port(0).with_events().start().await?;
    /// # let client = server.auto_client();
    /// let listener = grpc_helper::client::EventListener::start(&client, vec![], |_| {});
    /// listener.ready().await;
    /// listener.stop().await; // the server drops the queue at once
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let id = self.client_id();
        let _ = self.task.await;
        if let Some(id) = id {
            let mut events = EventServiceClient::new(self.client.channel::<EventApiVersion>());
            let interrupt = events.interrupt(EventInterrupt { client_id: id });
            match tokio::time::timeout(Duration::from_secs(5), interrupt).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => tracing::debug!("event queue #{id} not interrupted: {}", status.message()),
                Err(_) => tracing::debug!("event queue #{id}: no answer to interrupt"),
            }
        }
    }
}

/// The queue id in use (0: ask for a new one) and the last one found expired.
struct Ids {
    current: Arc<AtomicU32>,
    expired: Arc<AtomicU32>,
}

async fn run<F: FnMut(Event)>(
    client: RpcClient,
    names: Vec<String>,
    ids: Ids,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    mut on_event: F,
) {
    let mut events = EventServiceClient::new(client.channel::<EventApiVersion>());
    let mut pause = Duration::from_millis(100);
    // The last event's place in a shared stream (0: none yet, or queues without sequences):
    // given back on each resume, so that the server repeats nothing and confirms late.
    let mut after = 0;
    loop {
        let client_id = ids.current.load(Ordering::Acquire);
        if client_id == 0 {
            after = 0;
        }
        let filter = EventFilter { names: names.clone(), client_id, after: Some(after) };
        let opened = tokio::select! {
            opened = events.listen(filter) => opened,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let outcome: Result<(), tonic::Status> = match opened {
            Err(status) => Err(status),
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        _ = stop.wait_for(|stop| *stop) => return,
                    };
                    match message {
                        Ok(Some(status)) => match status.event {
                            None => {
                                if ids.current.swap(status.client_id, Ordering::AcqRel) == 0 {
                                    tracing::info!("listening to events as queue #{}", status.client_id);
                                }
                                ready.send_replace(true);
                                pause = Duration::from_millis(100);
                            }
                            Some(event) if event.name.is_empty() => {}
                            Some(event) => {
                                after = after.max(status.sequence);
                                on_event(event);
                            }
                        },
                        Ok(None) => break Ok(()),
                        Err(status) => break Err(status),
                    }
                }
            }
        };
        if let Err(status) = outcome {
            let error = RpcError::from(status);
            if error.result_code() == Some(ResultCode::ErrorItemUnknown) {
                // The queue expired while we were away: start a new one.
                let lost = ids.current.swap(0, Ordering::AcqRel);
                ids.expired.store(lost, Ordering::Release);
                tracing::warn!("event queue #{lost} expired on the server ({error}); listening with a new queue");
                if lost != 0 {
                    continue; // at once: nothing to wait for
                }
            } else {
                tracing::debug!("event listening interrupted ({error}); resuming");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
