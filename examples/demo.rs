//! The whole tour in one process: start the example server on a free port, describe it with
//! the example client, then shut it down remotely.
//!
//! `cargo run --example demo`

use grpc_helper::RpcServer;
use grpc_helper::api::ShutdownRequest;
use grpc_helper_examples::SampleManager;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let server = RpcServer::builder().port(0).manager(SampleManager).start().await?;
    let port = server.local_addr().port();
    println!("example server listening on 127.0.0.1:{port}\n");

    let client = grpc_helper::RpcClient::builder("127.0.0.1", port).name("demo-client").connect_lazy()?;
    print!("{}", grpc_helper_examples::describe(&client).await?);

    client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await?;
    server.wait_shutdown().await;
    println!("\nserver shut down remotely: running = {}", server.is_running());
    Ok(())
}
