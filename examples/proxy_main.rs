//! Proxy example, main server: declares the sample service as proxied and forwards its calls
//! to whichever backend registers for it (run `proxy_backend` next). Clients only talk to this
//! server.
//!
//! `cargo run -p grpc-helper-examples --example proxy_main -- --port 54321 -w ./main-workspace`

use clap::Parser;
use grpc_helper::RpcServer;
use grpc_helper::cli::ServerArgs;
use grpc_helper_examples::api::SampleApiVersion;

// glibc's malloc serialises tonic's threads on its arena locks: about 1.5x the calls per
// second on 2 cores with jemalloc (feature `jemalloc`, as the benchmarks build it).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "grpc-helper proxy example: the main server")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    grpc_helper::server::runtime()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    grpc_helper_examples::init_logging();
    let args = Args::parse();
    let server = RpcServer::builder()
        .args(&args.server)
        .with_events()
        .proxy::<SampleApiVersion>("sample", "SampleService")
        .start()
        .await?;
    println!("main server on port {}", server.local_addr().port());
    server.serve_until_signalled().await?;
    Ok(())
}
