//! A user's service on the packaged grpc-helper: serves one versioned method and a watch
//! stream, calls them through `RpcClient` (which sends the API version), uses each built-in
//! client, then shuts down with the watch open: the stream ends in band with
//! ERROR_STREAM_SHUTDOWN in under a second. Exits non-zero on any surprise.

mod api {
    grpc_helper::include_protos!();
}

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

// `package inventory.v1;`: the generated code is nested as the package is.
use api::inventory::v1 as inventory;
use inventory::inventory_service_client::InventoryServiceClient;
use inventory::{InventoryApiVersion, Item, ItemStatus};
use grpc_helper::api::{Event, EventFilter, Filter};
use grpc_helper::{ReplyStream, ResultCode, RpcClient, RpcError, RpcServer, rpc_manager};
use tokio_stream::StreamExt;

/// Counts per item name.
#[derive(Default)]
struct Inventory {
    items: Mutex<BTreeMap<String, u32>>,
}

impl Inventory {
    fn status(&self, name: String) -> ItemStatus {
        let count = self.items.lock().expect("inventory lock").get(&name).copied().unwrap_or_default();
        ItemStatus { r: None, item: Some(Item { name, count }) }
    }
}

// The service trait is found next to the version: `inventory::inventory_service_server::InventoryService`.
#[rpc_manager(service = "inventory", version = inventory::InventoryApiVersion)]
impl Inventory {
    async fn add(&self, request: Item) -> Result<ItemStatus, RpcError> {
        *self.items.lock().expect("inventory lock").entry(request.name.clone()).or_default() += request.count;
        Ok(self.status(request.name))
    }

    async fn watch(&self, request: Item) -> Result<ReplyStream<ItemStatus>, RpcError> {
        let now = tokio_stream::once(Ok(self.status(request.name)));
        Ok(ReplyStream::new(now.chain(tokio_stream::pending())))
    }
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let server = RpcServer::builder()
        .ip([127, 0, 0, 1].into())
        .port(0)
        .with_events()
        .manager(Inventory::default())
        .start()
        .await?;
    let port = server.local_addr().port();
    let client = RpcClient::builder("127.0.0.1", port).name("inventory-check").connect_lazy()?;
    let mut inventory = InventoryServiceClient::new(client.channel::<InventoryApiVersion>());
    let mut total = None;
    for count in [2, 3, 1] {
        total = inventory.add(Item { name: "bolt".into(), count }).await?.into_inner().item.map(|item| item.count);
    }
    if total != Some(6) {
        return Err(format!("expected 6 bolts, the server says {total:?}").into());
    }
    println!("served and called InventoryService/add on 127.0.0.1:{port}: 6 bolts");
    built_in_clients(&client).await?;

    let mut watch = inventory.watch(Item { name: "bolt".into(), count: 0 }).await?.into_inner();
    let first = watch.message().await?.and_then(|status| status.item).map(|item| item.count);
    if first != Some(6) {
        return Err(format!("watch: expected 6 bolts first, got {first:?}").into());
    }
    let started = Instant::now();
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    let end = watch.message().await.map_err(RpcError::from);
    let ended = started.elapsed();
    match end {
        Err(e) if e.result_code() == Some(ResultCode::ErrorStreamShutdown) => {}
        other => return Err(format!("watch at shutdown: expected ERROR_STREAM_SHUTDOWN, got {other:?}").into()),
    }
    if ended >= Duration::from_secs(1) {
        return Err(format!("the watch ended {ended:?} after the shutdown started (grace 30 s)").into());
    }
    shutdown.await?;
    println!("watch ended in band (ERROR_STREAM_SHUTDOWN) {ended:?} after shutdown started");
    Ok(())
}

/// One call through each built-in client.
async fn built_in_clients(client: &RpcClient) -> Result<(), Failure> {
    let services = client.server_service().info(Filter::default()).await?.into_inner().items.len();
    let items = client.config_service().get(Filter::default()).await?.into_inner().items.len();
    let root = Filter { names: vec![String::new()], ignore_unknown: false };
    let loggers = client.logger_service().get(root).await?.into_inner().items.len();
    let mut events = client.events_service();
    let mut listen = events.listen(EventFilter::default()).await?.into_inner();
    listen.message().await?;
    events.send(Event { name: "restocked".into(), properties: vec![] }).await?;
    let event = listen.message().await?.and_then(|status| status.event).map(|event| event.name);
    if event.as_deref() != Some("restocked") {
        return Err(format!("events: expected 'restocked', got {event:?}").into());
    }
    println!("built-in clients: {services} services, {items} config items, {loggers} logger, one event");
    Ok(())
}
