//! Standard services for generic tools, over real sockets: `grpc.health.v1.Health` following
//! the server's lifecycle, and server reflection (v1 and v1alpha).

use std::time::Duration;

use grpc_helper::api::{Empty, ResultStatus};
use grpc_helper::{RpcError, rpc_manager};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::AnotherApiVersion;
use grpc_helper_tests::{EventLog, Sample, bounded, free_port, server_builder, status};
use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A manager whose load hook takes a while.
struct SlowLoad(Duration);

#[rpc_manager(service = "slow", version = AnotherApiVersion, grpc = grpc_helper_tests::api::another_sample_service_server::AnotherSampleService)]
impl SlowLoad {
    async fn method10(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        Ok(status("slow"))
    }

    #[on_load]
    async fn load(&self) {
        tokio::time::sleep(self.0).await;
    }
}

async fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect_lazy()
}

async fn health(client: &mut HealthClient<Channel>, service: &str) -> Result<ServingStatus, tonic::Status> {
    let reply = client.check(HealthCheckRequest { service: service.into() }).await?.into_inner();
    Ok(match reply.status {
        1 => ServingStatus::Serving,
        2 => ServingStatus::NotServing,
        _ => ServingStatus::Unknown,
    })
}

#[tokio::test]
async fn health_is_not_serving_until_loaded_and_again_when_shutting_down() {
    bounded(LIMIT, async {
        let port = free_port();
        let starting = tokio::spawn(
            server_builder()
                .port(port)
                .manager(Sample::new(&EventLog::default(), Duration::ZERO))
                .manager(SlowLoad(Duration::from_millis(1500)))
                .start(),
        );
        let mut client = HealthClient::new(channel(port).await);
        // While the load hooks run, the server answers, but is not ready.
        let mut seen_loading = false;
        while !starting.is_finished() {
            if let Ok(whole) = health(&mut client, "").await {
                let sample = health(&mut client, "SampleService").await.unwrap();
                if whole == ServingStatus::NotServing && sample == ServingStatus::NotServing {
                    seen_loading = true;
                } else {
                    // Only a check in flight when the load ended may see SERVING: start returns
                    // right after.
                    let ended = tokio::time::timeout(Duration::from_secs(2), async {
                        while !starting.is_finished() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    });
                    assert!(ended.await.is_ok(), "SERVING ({whole:?}, {sample:?}) before the load hooks ran");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen_loading, "health was asked during the slow load");
        let server = starting.await.unwrap().unwrap();
        for service in
            ["", "RpcServerService", "ConfigService", "LoggerService", "SampleService", "AnotherSampleService"]
        {
            assert_eq!(health(&mut client, service).await.unwrap(), ServingStatus::Serving, "{service}");
        }
        let unknown = health(&mut client, "NoSuchService").await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        let mut watch = client.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
        let stopping = tokio::spawn({
            let server = server.clone();
            async move { server.shutdown().await }
        });
        assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::NotServing as i32);
        stopping.await.unwrap();
    })
    .await;
}

mod reflection {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
    use tonic_reflection::pb::v1alpha;

    use super::*;

    async fn ask(port: u16, request: MessageRequest) -> MessageResponse {
        let mut client = ServerReflectionClient::new(channel(port).await);
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        let mut replies = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
        let reply: ServerReflectionResponse = replies.message().await.unwrap().unwrap();
        reply.message_response.unwrap()
    }

    #[tokio::test]
    async fn reflection_lists_and_describes_builtin_and_user_services() {
        bounded(LIMIT, async {
            let server = server_builder()
                .file_descriptor_set(grpc_helper::include_descriptor_set!())
                .manager(Sample::new(&EventLog::default(), Duration::ZERO))
                .start()
                .await
                .unwrap();
            let port = server.local_addr().port();
            let MessageResponse::ListServicesResponse(list) =
                ask(port, MessageRequest::ListServices(String::new())).await
            else {
                panic!("not a service list")
            };
            let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            for expected in [
                "ConfigService",
                "LoggerService",
                "RpcServerService",
                "SampleService",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
            ] {
                assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
            }

            let MessageResponse::FileDescriptorResponse(files) =
                ask(port, MessageRequest::FileContainingSymbol("SampleService".into())).await
            else {
                panic!("not a file descriptor")
            };
            let file = <prost_types_like::File as prost::Message>::decode(&files.file_descriptor_proto[0][..]).unwrap();
            assert_eq!(file.name, "sample/sample.proto");

            // The v1alpha flavour, for older tools.
            let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel(port).await);
            let request = v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
            };
            let mut replies = alpha.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
            assert!(replies.message().await.unwrap().unwrap().message_response.is_some());
            server.shutdown().await;
        })
        .await;
    }

    /// Only the name of a `FileDescriptorProto` (field 1), to check which file came back.
    mod prost_types_like {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct File {
            #[prost(string, tag = "1")]
            pub name: String,
        }
    }
}
