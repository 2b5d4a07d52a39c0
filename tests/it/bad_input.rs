//! Bad input over real sockets: odd `api_version` values, unknown services and methods, a body
//! that is not protobuf, a message over the size limit. Each gets a clear answer, and a normal
//! call succeeds right after.

use std::time::Duration;

use bytes::{Buf, BufMut};
use grpc_helper::api::ResultCode;
use grpc_helper::{RpcError, RpcServer};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::SampleRequest;
use grpc_helper_tests::api::sample_service_client::SampleServiceClient;
use grpc_helper_tests::sample_still_answers as still_serving;
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, sample_stub, server_builder};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

async fn start() -> RpcServer {
    server_builder()
        .max_request_size(1024)
        .manager(Sample::new(&EventLog::default(), Duration::ZERO))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn odd_api_version_values_get_clear_answers() {
    bounded(LIMIT, async {
        let server = start().await;
        let call = |values: Vec<&'static [u8]>| {
            let mut stub = SampleServiceClient::new(client_of(&server).channel_with_version(None));
            async move {
                let mut request = tonic::Request::new(SampleRequest { foo: "x".into() });
                for value in values {
                    let value = tonic::metadata::MetadataValue::try_from(value).unwrap();
                    request.metadata_mut().append("api_version", value);
                }
                stub.method4(request).await.map(|r| r.into_inner().bar).map_err(RpcError::from)
            }
        };
        assert_eq!(call(vec![b""]).await.unwrap(), "x", "empty: no check, as the original");
        for bad in [&b"-1"[..], b"99999999999999999999", b"abc", b"\xc3\xa9", b" 2"] {
            let error = call(vec![bad]).await.unwrap_err();
            assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{bad:?}: {error}");
            assert!(error.message().contains("expected a decimal unsigned integer"), "{error}");
            still_serving(&server).await;
        }
        // Repeated: the first value is the one checked.
        assert_eq!(call(vec![b"2", b"9"]).await.unwrap(), "x");
        let error = call(vec![b"9", b"2"]).await.unwrap_err();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiServerTooOld));
        server.shutdown().await;
    })
    .await;
}

/// Sends and receives raw bytes as gRPC messages.
#[derive(Default, Clone)]
struct RawCodec;

struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

async fn raw(server: &RpcServer, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let uri = format!("http://127.0.0.1:{}", server.local_addr().port());
    let channel = tonic::transport::Endpoint::from_shared(uri).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn unknown_services_and_methods_are_unimplemented() {
    bounded(LIMIT, async {
        let server = start().await;
        for path in ["/NoSuchService/method", "/SampleService/no_such_method"] {
            let status = raw(&server, path, Vec::new()).await.unwrap_err();
            assert_eq!(status.code(), Code::Unimplemented, "{path}");
            still_serving(&server).await;
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_protobuf_is_refused() {
    bounded(LIMIT, async {
        let server = start().await;
        // Field 1, length-delimited, claiming 100 bytes that are not there.
        let status = raw(&server, "/SampleService/method4", vec![0x0a, 100, b'x']).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(status.message().contains("decode"), "{}", status.message());
        still_serving(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// RESOURCE_EXHAUSTED, as gRPC's own implementations say (tonic alone says OUT_OF_RANGE); the
/// message names the size and the limit.
#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_naming_the_limit() {
    bounded(LIMIT, async {
        let server = start().await;
        let big = SampleRequest { foo: "x".repeat(4096) };
        let status = sample_stub(&client_of(&server)).method4(big).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("1024"), "the limit is named: {}", status.message());
        // The same before a server stream starts.
        let big = SampleRequest { foo: "x".repeat(4096) };
        let status = sample_stub(&client_of(&server)).s_method2(big).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        still_serving(&server).await;
        server.shutdown().await;
    })
    .await;
}
