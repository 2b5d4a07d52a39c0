//! Example server: the sample service plus the built-in services.
//!
//! `cargo run --example server -- --port 54321`; stops on Ctrl-C or a remote `srv.shutdown`.

use clap::Parser;
use grpc_helper::RpcServer;
use grpc_helper_examples::SampleManager;

#[derive(Parser)]
#[command(version, about = "grpc-helper example server")]
struct Args {
    /// TCP port to listen on (0 = any free port).
    #[arg(short, long, default_value_t = 54321)]
    port: u16,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(env_filter()).init();
    let args = Args::parse();
    let server = RpcServer::builder().port(args.port).manager(SampleManager).start().await?;
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
