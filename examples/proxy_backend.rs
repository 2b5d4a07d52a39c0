//! Proxy example, backend: serves the sample service and registers it with the main server
//! (`rpc-main-host`:`rpc-main-port`) when loaded; forgets it when stopping.
//!
//! `cargo run --example proxy_backend -- --port 0 -w ./backend-workspace -c rpc-main-port=54321`

use clap::Parser;
use grpc_helper::RpcServer;
use grpc_helper::cli::ServerArgs;
use grpc_helper_examples::{SAMPLE_ITEMS, SampleManager};

#[derive(Parser)]
#[command(version, about = "grpc-helper proxy example: a backend of the main server")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    grpc_helper_examples::init_logging();
    let args = Args::parse();
    let server = RpcServer::builder()
        .args(&args.server)
        .user_items(SAMPLE_ITEMS)
        .manager(SampleManager)
        .register_with_main(&["sample"], env!("CARGO_PKG_VERSION"))
        .start()
        .await?;
    println!("backend on port {}, registered with the main server", server.local_addr().port());
    server.serve_until_signalled().await?;
    Ok(())
}
