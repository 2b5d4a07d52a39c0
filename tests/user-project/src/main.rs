//! A user's service on the packaged grpc-helper: serves one versioned method, calls it through
//! `RpcClient` (which sends the API version), then shuts down. Exits non-zero on any surprise.

mod api {
    grpc_helper::include_protos!();
}

use std::collections::BTreeMap;
use std::sync::Mutex;

use api::inventory_service_client::InventoryServiceClient;
use api::{InventoryApiVersion, Item, ItemStatus};
use grpc_helper::{RpcClient, RpcError, RpcServer, rpc_manager};

/// Counts per item name.
#[derive(Default)]
struct Inventory {
    items: Mutex<BTreeMap<String, u32>>,
}

#[rpc_manager(service = "inventory", version = InventoryApiVersion, grpc = api::inventory_service_server::InventoryService)]
impl Inventory {
    async fn add(&self, request: Item) -> Result<ItemStatus, RpcError> {
        let mut items = self.items.lock().expect("inventory lock");
        let count = items.entry(request.name.clone()).or_default();
        *count += request.count;
        Ok(ItemStatus { r: None, item: Some(Item { name: request.name, count: *count }) })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RpcServer::builder().ip([127, 0, 0, 1].into()).port(0).manager(Inventory::default()).start().await?;
    let port = server.local_addr().port();
    let client = RpcClient::builder("127.0.0.1", port).name("inventory-check").connect_lazy()?;
    let mut inventory = InventoryServiceClient::new(client.channel::<InventoryApiVersion>());
    let mut total = None;
    for count in [2, 3, 1] {
        total = inventory.add(Item { name: "bolt".into(), count }).await?.into_inner().item.map(|item| item.count);
    }
    server.shutdown().await;
    if total != Some(6) {
        return Err(format!("expected 6 bolts, the server says {total:?}").into());
    }
    println!("served and called InventoryService/add on 127.0.0.1:{port}: 6 bolts");
    Ok(())
}
