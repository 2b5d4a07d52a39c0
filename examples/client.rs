//! Example client: describes any grpc-helper server (Rust or Python), and tours the sample
//! service when it is there.
//!
//! `cargo run -p grpc-helper-examples --example client -- --host 127.0.0.1 --port 54321`

use std::time::Duration;

use clap::Parser;
use grpc_helper::RpcClient;

// glibc's malloc serialises tonic's threads on its arena locks: about 1.5x the calls per
// second on 2 cores with jemalloc (feature `jemalloc`, as the benchmarks build it).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "grpc-helper example client")]
struct Args {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(short, long, default_value_t = 54321)]
    port: u16,
    /// How long to retry while the server is unavailable, in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = RpcClient::builder(args.host, args.port)
        .name("example-client")
        .timeout(Duration::from_secs(args.timeout))
        .connect_lazy()?;
    print!("{}", grpc_helper_examples::describe(&client).await?);
    Ok(())
}
