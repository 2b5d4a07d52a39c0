//! Example server: the sample service plus the built-in services.
//!
//! `cargo run -p grpc-helper-examples --example server -- --port 54321 -w ./grpc_helper -c sample-greeting=Hi`;
//! drains and stops on SIGTERM, Ctrl-C or a remote `srv.shutdown`. `--help` lists every option. The console shows
//! INFO and above (`RUST_LOG=debug` for more); logs also go to `<workspace>/logs/`.

use clap::Parser;
use grpc_helper::RpcServer;
use grpc_helper::cli::ServerArgs;
use grpc_helper_examples::{SAMPLE_ITEMS, SampleManager};

// glibc's malloc serialises tonic's threads on its arena locks: about 1.5x the calls per
// second on 2 cores with jemalloc (feature `jemalloc`, as the benchmarks build it).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "grpc-helper example server")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A current-thread runtime when the process has one CPU (taskset, a container's quota).
    grpc_helper::server::runtime()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    grpc_helper_examples::init_logging();
    let args = Args::parse();
    let server = RpcServer::builder()
        .args(&args.server)
        .with_events()
        .user_items(SAMPLE_ITEMS)
        .file_descriptor_set(grpc_helper_examples::FILE_DESCRIPTOR_SET)
        .manager(SampleManager)
        .start()
        .await?;
    println!("serving on port {}", server.local_addr().port());
    server.serve_until_signalled().await?;
    println!("server stopped");
    Ok(())
}
