//! The whole tour in one process: start the example server on a free port, describe it with
//! the example client, then shut it down remotely.
//!
//! `cargo run --example demo`

use grpc_helper::{Folders, RpcServer};
use grpc_helper_sample::{SAMPLE_ITEMS, SampleManager};
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Log files and run-time levels from grpc-helper; on the console, warnings (or RUST_LOG's level).
    let level = std::env::var("RUST_LOG").ok().and_then(|level| level.parse().ok());
    let console = level.unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(grpc_helper::logs::layer())
        .with(tracing_subscriber::fmt::layer().with_filter(console))
        .init();
    // A throw-away workspace: config changes are persisted there.
    let workspace = std::env::temp_dir().join(format!("grpc-helper-demo-{}", std::process::id()));
    let server = RpcServer::builder()
        .port(0)
        .folders(Folders::default().workspace(&workspace))
        .user_items(SAMPLE_ITEMS)
        .manager(SampleManager)
        .start()
        .await?;
    let port = server.local_addr().port();
    println!("example server listening on 127.0.0.1:{port}\n");

    let client = grpc_helper::RpcClient::builder("127.0.0.1", port).name("demo-client").connect_lazy()?;
    print!("{}", grpc_helper_sample::describe(&client).await?);
    println!();
    print!("{}", grpc_helper_sample::tour_operations(&client).await?);

    client.shutdown_server_now().await?;
    server.wait_shutdown().await;
    println!("\nserver shut down remotely: running = {}", server.is_running());
    let _ = std::fs::remove_dir_all(workspace);
    Ok(())
}
