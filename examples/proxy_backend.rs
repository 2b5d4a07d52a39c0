//! Proxy example, backend: serves the sample service and registers it with the main server
//! (`rpc-main-host`:`rpc-main-port`) when loaded; forgets it when stopping.
//!
//! `cargo run -p grpc-helper-examples --example proxy_backend -- --port 0 -w ./backend-workspace -c rpc-main-port=54321`
//!
//! On another machine than the main server: `--register-host current` (this machine's address
//! towards the main server) or `--register-host backend-3.example.org`; a main server with an
//! auth guard: `--main-token-file PATH`.

use std::path::PathBuf;

use clap::Parser;
use grpc_helper::RpcServer;
use grpc_helper::cli::ServerArgs;
use grpc_helper::server::RegisterHost;
use grpc_helper_examples::{SAMPLE_ITEMS, SampleManager};

// glibc's malloc serialises tonic's threads on its arena locks: about 1.5x the calls per
// second on 2 cores with jemalloc (feature `jemalloc`, as the benchmarks build it).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "grpc-helper proxy example: a backend of the main server")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The host the main server calls this backend at: `main` (rpc-main-host, the default),
    /// `current` (this machine's address towards the main server), or a name or address.
    #[arg(long, default_value = "main")]
    register_host: String,
    /// A file holding the bearer token of a main server with an auth guard.
    #[arg(long)]
    main_token_file: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    grpc_helper::server::runtime()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    grpc_helper_examples::init_logging();
    let args = Args::parse();
    let register_host = match args.register_host.as_str() {
        "main" => RegisterHost::MainHost,
        "current" => RegisterHost::Current,
        name => RegisterHost::Named(name.to_owned()),
    };
    let mut builder = RpcServer::builder()
        .args(&args.server)
        .user_items(SAMPLE_ITEMS)
        .manager(SampleManager)
        .register_with_main(&["sample"], env!("CARGO_PKG_VERSION"))
        .register_host(register_host);
    if let Some(path) = &args.main_token_file {
        let token = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        builder = builder.main_bearer_token(token.trim());
    }
    let server = builder.start().await?;
    println!("backend on port {}, registered with the main server", server.local_addr().port());
    server.serve_until_signalled().await?;
    Ok(())
}
