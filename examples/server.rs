//! Example server: the sample service plus the built-in services.
//!
//! `cargo run --example server -- --port 54321 -w ./grpc_helper -c sample-greeting=Hi`;
//! stops on Ctrl-C or a remote `srv.shutdown`. `--help` lists every option.

use clap::Parser;
use grpc_helper::RpcServer;
use grpc_helper::cli::ServerArgs;
use grpc_helper_examples::{SAMPLE_ITEMS, SampleManager};

#[derive(Parser)]
#[command(version, about = "grpc-helper example server")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(env_filter()).init();
    let args = Args::parse();
    let server =
        RpcServer::builder().args(&args.server).user_items(SAMPLE_ITEMS).manager(SampleManager).start().await?;
    println!("serving on port {}", server.local_addr().port());
    tokio::select! {
        () = server.wait_shutdown() => {}
        _ = tokio::signal::ctrl_c() => server.shutdown().await,
    }
    println!("server stopped");
    Ok(())
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}
