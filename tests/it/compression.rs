//! Compression over real sockets: compressed requests on every service, replies compressed only
//! when the server is configured to and the caller accepts it, and through the proxy unchanged.

use std::time::Duration;

use grpc_helper::CompressionEncoding::{self, Deflate, Gzip, Zstd};
use grpc_helper::RpcServer;
use grpc_helper::api::config_service_client::ConfigServiceClient;
use grpc_helper::api::rpc_server_service_client::RpcServerServiceClient;
use grpc_helper::api::{ConfigApiVersion, Filter, ServerApiVersion};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::{SampleApiVersion, SampleRequest};
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, sample_stub, server_builder};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Compressible, and echoed by `method4`: both ways have something to compress.
fn big_request() -> SampleRequest {
    SampleRequest { foo: "compress me ".repeat(200) }
}

async fn sample_server(replies: &[CompressionEncoding]) -> RpcServer {
    let builder = server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO));
    replies.iter().fold(builder, |b, e| b.send_compressed(*e)).start().await.unwrap()
}

fn encoding_of<T>(response: &tonic::Response<T>) -> Option<&str> {
    response.metadata().get("grpc-encoding").map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn compressed_requests_reach_user_built_in_and_health_services() {
    bounded(LIMIT, async {
        let server = sample_server(&[]).await;
        let client = client_of(&server);
        for encoding in [Gzip, Deflate, Zstd] {
            let reply = sample_stub(&client).send_compressed(encoding).method4(big_request()).await.unwrap();
            assert_eq!(reply.into_inner().bar, big_request().foo, "{encoding}");
            let mut srv = RpcServerServiceClient::new(client.channel::<ServerApiVersion>()).send_compressed(encoding);
            assert_eq!(srv.info(Filter::default()).await.unwrap().into_inner().items[0].name, "srv", "{encoding}");
            let mut config = ConfigServiceClient::new(client.channel::<ConfigApiVersion>()).send_compressed(encoding);
            assert!(config.get(Filter::default()).await.unwrap().into_inner().items.is_empty(), "{encoding}");
            let mut health = HealthClient::new(client.channel_with_version(None)).send_compressed(encoding);
            let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
            assert_eq!(status.into_inner().status, 1, "{encoding}: SERVING");
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn replies_are_compressed_when_configured_and_accepted() {
    bounded(LIMIT, async {
        let server = sample_server(&[Gzip, Zstd]).await;
        let client = client_of(&server);
        for encoding in [Gzip, Zstd] {
            let mut stub = sample_stub(&client).send_compressed(encoding).accept_compressed(encoding);
            let reply = stub.method4(big_request()).await.unwrap();
            assert_eq!(encoding_of(&reply), Some(encoding.to_string().as_str()));
            assert_eq!(reply.into_inner().bar, big_request().foo);
            // Built-in services too.
            let mut srv = client.server_service().accept_compressed(encoding);
            let reply = srv.info(Filter::default()).await.unwrap();
            assert_eq!(encoding_of(&reply), Some(encoding.to_string().as_str()));
        }
        // A caller that does not accept compression gets plain replies.
        let reply = sample_stub(&client).send_compressed(Gzip).method4(big_request()).await.unwrap();
        assert_eq!(encoding_of(&reply), None);
        // Nor does the server offer an encoding it was not configured with.
        let reply = sample_stub(&client).accept_compressed(Deflate).method4(big_request()).await.unwrap();
        assert_eq!(encoding_of(&reply), None);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn replies_are_plain_by_default_even_when_the_caller_accepts_compression() {
    bounded(LIMIT, async {
        let server = sample_server(&[]).await;
        let mut stub = sample_stub(&client_of(&server)).accept_compressed(Gzip);
        let reply = stub.method4(big_request()).await.unwrap();
        assert_eq!(encoding_of(&reply), None);
        assert_eq!(reply.into_inner().bar, big_request().foo);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn compressed_frames_pass_through_the_proxy_both_ways() {
    bounded(LIMIT, async {
        let main = server_builder().proxy::<SampleApiVersion>("sample", "SampleService").start().await.unwrap();
        let backend = sample_server(&[Zstd]).await;
        let registration = grpc_helper::api::ProxyRegisterRequest {
            names: vec!["sample".into()],
            version: "1".into(),
            host: "127.0.0.1".into(),
            port: u32::from(backend.local_addr().port()),
        };
        client_of(&main).server_service().proxy_register(registration).await.unwrap();
        let mut stub = sample_stub(&client_of(&main)).send_compressed(Gzip).accept_compressed(Zstd);
        let reply = stub.method4(big_request()).await.unwrap();
        assert_eq!(encoding_of(&reply), Some("zstd"), "the backend's compressed reply, forwarded as is");
        assert_eq!(reply.into_inner().bar, big_request().foo);
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_built_with_send_compressed_compresses_every_stub() {
    bounded(LIMIT, async {
        let server = sample_server(&[Gzip, Zstd]).await;
        for encoding in [Gzip, Zstd] {
            let client = grpc_helper::RpcClient::builder("127.0.0.1", server.local_addr().port())
                .send_compressed(encoding)
                .connect_lazy()
                .unwrap();
            let reply = sample_stub(&client).method4(big_request()).await.unwrap();
            assert_eq!(reply.into_inner().bar, big_request().foo, "{encoding}");
            let info = client.server_service().info(Filter::default()).await.unwrap().into_inner();
            assert_eq!(info.items[0].name, "srv", "{encoding}");
            let mut config = ConfigServiceClient::new(client.channel::<ConfigApiVersion>());
            assert!(config.get(Filter::default()).await.unwrap().into_inner().items.is_empty(), "{encoding}");
            let mut health = HealthClient::new(client.channel_with_version(None));
            let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
            assert_eq!(status.into_inner().status, 1, "{encoding}: SERVING");
            // A stub's own settings win: it sees the server's compressed reply itself.
            let reply = sample_stub(&client).accept_compressed(Gzip).method4(big_request()).await.unwrap();
            assert_eq!(encoding_of(&reply), Some("gzip"), "{encoding}");
            assert_eq!(reply.into_inner().bar, big_request().foo);
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_compressing_client_streams_both_ways() {
    bounded(LIMIT, async {
        let server = sample_server(&[Deflate]).await;
        let client = grpc_helper::RpcClient::builder("127.0.0.1", server.local_addr().port())
            .send_compressed(Deflate)
            .connect_lazy();
        let mut stub = sample_stub(&client.unwrap());
        let words = ["one", "two", "three"].map(|w| SampleRequest { foo: w.repeat(300) });
        let mut echoes = stub.s_method4(tokio_stream::iter(words.clone())).await.unwrap().into_inner();
        for word in words {
            assert_eq!(echoes.message().await.unwrap().unwrap().bar, word.foo);
        }
        assert!(echoes.message().await.unwrap().is_none());
        server.shutdown().await;
    })
    .await;
}

/// A hostile server: answers any call with a gzip message that announces 100 MiB, sends 5 MiB
/// of it, and then nothing. The number of body bytes it got out is counted.
async fn announcing_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&sent);
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(tcp).await.unwrap();
        while let Some(Ok((_request, mut respond))) = connection.accept().await {
            let counter = std::sync::Arc::clone(&counter);
            tokio::spawn(async move {
                let head = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-encoding", "gzip")
                    .body(())
                    .unwrap();
                let mut body = respond.send_response(head, false).unwrap();
                let mut prefix = vec![1u8];
                prefix.extend_from_slice(&(100u32 << 20).to_be_bytes());
                body.send_data(prefix.into(), false).unwrap();
                for _ in 0..80 {
                    body.reserve_capacity(64 * 1024);
                    // Sent as the client's window allows; a client that stops reading stops it.
                    match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                    if body.send_data(vec![7u8; 64 * 1024].into(), false).is_err() {
                        return;
                    }
                    counter.fetch_add(64 * 1024, Ordering::SeqCst);
                }
                std::future::pending::<()>().await;
            });
        }
    });
    (port, sent)
}

#[tokio::test]
async fn a_compressing_client_refuses_a_reply_announced_past_the_limit_before_buffering_it() {
    bounded(LIMIT, async {
        let (port, _sent) = announcing_server().await;
        let client =
            grpc_helper::RpcClient::builder("127.0.0.1", port).no_retry().send_compressed(Gzip).connect_lazy().unwrap();
        let mut request = tonic::Request::new(SampleRequest { foo: "x".into() });
        request.set_timeout(Duration::from_secs(10));
        let status = sample_stub(&client).method4(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("104857600") && status.message().contains("4194304"), "{status:?}");
    })
    .await;
}
