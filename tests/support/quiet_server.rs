//! A program that sets no tracing subscriber of its own: an `RpcServer` as built (it installs its
//! file-only logging), with the sample service, on 127.0.0.1 and a free port. Prints `PORT n`,
//! serves until its stdin closes, then shuts down.

#[tokio::main]
async fn main() -> Result<(), grpc_helper::RpcError> {
    let server = grpc_helper::RpcServer::builder()
        .ip([127, 0, 0, 1].into())
        .port(0)
        .debug_signal(false)
        .manager(grpc_helper_examples::SampleManager)
        .start()
        .await?;
    println!("PORT {}", server.local_addr().port());
    tokio::task::spawn_blocking(|| {
        use std::io::Read as _;
        let mut sink = [0u8; 64];
        while let Ok(1..) = std::io::stdin().read(&mut sink) {}
    })
    .await
    .expect("stdin reader");
    server.shutdown().await;
    Ok(())
}
