//! Calls over real sockets: info, API versions, in-band errors, metadata, streaming shapes.

use std::time::{Duration, Instant};

use grpc_helper::api::{Empty, Filter, MultiServiceInfo, ResultCode, ResultStatus};
use grpc_helper::{ApiVersion, RpcError};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::sample_service_client::SampleServiceClient;
use grpc_helper_tests::api::{AnotherApiVersion, SampleApiVersion, SampleRequest, SampleResponse};
use grpc_helper_tests::{Another, EventLog, bounded, client_of, code_of, sample_stub, server_builder, start_sample};
use tonic::Code;

async fn info(
    client: &grpc_helper::RpcClient,
    names: &[&str],
    ignore_unknown: bool,
) -> Result<MultiServiceInfo, tonic::Status> {
    let filter = Filter { names: names.iter().map(|n| n.to_string()).collect(), ignore_unknown };
    client.server_service().info(filter).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn info_lists_every_service_in_registration_order() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .manager(grpc_helper_tests::Sample::new(&log, Duration::ZERO))
            .manager(Another { log: log.clone(), fail_load: None })
            .start()
            .await
            .unwrap();
        let all = info(&client_of(&server), &[], false).await.unwrap();
        let names: Vec<_> = all.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["srv", "config", "log", "sample", "another"]);
        let srv = &all.items[0];
        assert_eq!(srv.version, format!("grpc-helper:{}", env!("CARGO_PKG_VERSION")));
        assert_eq!((srv.current_api_version, srv.supported_api_version), (1, 1));
        let config = &all.items[1];
        assert_eq!((config.current_api_version, config.supported_api_version), (2, 1));
        assert_eq!(config.version, srv.version);
        let log = &all.items[2];
        assert_eq!((log.current_api_version, log.supported_api_version), (1, 1));
        let sample = &all.items[3];
        assert_eq!(sample.version, format!("grpc-helper-tests:{}", env!("CARGO_PKG_VERSION")));
        assert_eq!((sample.current_api_version, sample.supported_api_version), (2, 1));
        let another = &all.items[4];
        assert_eq!((another.current_api_version, another.supported_api_version), (3, 1));
        assert!(all.items.iter().all(|i| !i.is_proxy && i.proxy_port == 0 && i.proxy_host.is_empty()));
        assert!(all.r.is_none());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn info_filtered_keeps_request_order_and_answers_each_name_once() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let some = info(&client_of(&server), &["sample", "srv", "sample"], false).await.unwrap();
        let names: Vec<_> = some.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["sample", "srv"]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn info_unknown_name_is_item_unknown_in_band() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let status = info(&client_of(&server), &["srv", "nope"], false).await.unwrap_err();
        let error = RpcError::from(status);
        assert_eq!(error.result_code(), Some(ResultCode::ErrorItemUnknown));
        assert!(error.message().contains("\"nope\""), "{error}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn info_ignore_unknown_skips_unknown_names() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let some = info(&client_of(&server), &["nope", "sample"], true).await.unwrap();
        let names: Vec<_> = some.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["sample"]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn manager_method_uses_its_auto_client() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let reply = sample_stub(&client_of(&server)).method1(Empty {}).await.unwrap().into_inner();
        assert_eq!(reply.r.unwrap().msg, "Found info count: 4");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_without_version_is_not_checked() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stub = SampleServiceClient::new(client_of(&server).channel_with_version(None));
        let reply = stub.method4(SampleRequest { foo: "hi".into() }).await.unwrap().into_inner();
        assert_eq!(reply.bar, "hi");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_too_old_gets_error_in_band() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stub =
            SampleServiceClient::new(client_of(&server).channel_with_version(Some(SampleApiVersion::SUPPORTED - 1)));
        let error = RpcError::from(stub.method4(SampleRequest::default()).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiClientTooOld));
        assert_eq!(error.message(), "Client API version (0) is too old for server supported API version (1)");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_too_new_gets_server_too_old() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stub =
            SampleServiceClient::new(client_of(&server).channel_with_version(Some(SampleApiVersion::CURRENT + 1)));
        let error = RpcError::from(stub.method4(SampleRequest::default()).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiServerTooOld));
        assert_eq!(error.message(), "Server current API version (2) is too old for client API version (3)");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn version_check_uses_each_services_own_range() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder().manager(Another { log, fail_load: None }).start().await.unwrap();
        let channel = client_of(&server).channel_with_version(Some(AnotherApiVersion::CURRENT));
        let mut another =
            grpc_helper_tests::api::another_sample_service_client::AnotherSampleServiceClient::new(channel);
        assert_eq!(another.method10(Empty {}).await.unwrap().into_inner().r.unwrap().msg, "another");
        server.shutdown().await;
    })
    .await;
}

/// Sends a request with a hand-written `api_version` value.
async fn method4_with_raw_version(server: &grpc_helper::RpcServer, raw: &str) -> RpcError {
    let mut stub = SampleServiceClient::new(client_of(server).channel_with_version(None));
    let mut request = tonic::Request::new(SampleRequest::default());
    request.metadata_mut().insert("api_version", raw.parse().unwrap());
    RpcError::from(stub.method4(request).await.unwrap_err())
}

#[tokio::test]
async fn garbage_version_is_param_invalid_and_server_keeps_serving() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        for raw in ["abc", "-1", "1.5", "99999999999999999999"] {
            let error = method4_with_raw_version(&server, raw).await;
            assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{raw}: {error}");
            assert!(error.message().contains(&format!("{raw:?}")), "{raw}: {error}");
            assert!(error.message().contains("expected a decimal unsigned integer"), "{error}");
        }
        let reply = sample_stub(&client_of(&server)).method4(SampleRequest { foo: "still".into() }).await.unwrap();
        assert_eq!(reply.into_inner().bar, "still");
        server.shutdown().await;
    })
    .await;
}

/// A plain tonic client with the stock prost codec: what any non-grpc-helper peer (such as a
/// Python client) receives on the wire.
async fn raw_call<Req: prost::Message + 'static, Rep: prost::Message + Default + 'static>(
    port: u16,
    path: &'static str,
    request: Req,
    api_version: &str,
) -> Result<Rep, tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert("api_version", api_version.parse().unwrap());
    let codec = tonic_prost::ProstCodec::<Req, Rep>::default();
    grpc.unary(request, tonic::codegen::http::uri::PathAndQuery::from_static(path), codec)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn errors_travel_in_band_with_status_ok_on_the_wire() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let port = server.local_addr().port();
        let reply: ResultStatus = raw_call(port, "/SampleService/method2", Empty {}, "2").await.expect("status OK");
        let r = reply.r.unwrap();
        assert_eq!(r.code, ResultCode::ErrorApiServerTooOld as i32);
        assert_eq!(r.msg, "sample error");
        let too_new: SampleResponse =
            raw_call(port, "/SampleService/method4", SampleRequest::default(), "3").await.expect("status OK");
        assert_eq!(too_new.r.unwrap().code, ResultCode::ErrorApiServerTooOld as i32);
        assert_eq!(too_new.bar, "", "only `r` is set on an error reply");
        let info: MultiServiceInfo = raw_call(port, "/RpcServerService/info", Filter::default(), "1").await.unwrap();
        assert_eq!(info.items.len(), 4);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn manager_error_becomes_typed_client_error() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stub = sample_stub(&client_of(&server));
        let error = RpcError::from(stub.method2(Empty {}).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiServerTooOld));
        assert_eq!(error.message(), "sample error");
        let error = RpcError::from(stub.method4(SampleRequest { foo: "fail".into() }).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn custom_codes_do_not_raise() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let reply = sample_stub(&client_of(&server))
            .method4(SampleRequest { foo: "custom".into() })
            .await
            .unwrap()
            .into_inner();
        let r = reply.r.unwrap();
        assert_eq!((r.code, r.msg.as_str(), reply.bar.as_str()), (101, "custom outcome", "custom"));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn reply_without_r_gets_a_mapped_status_with_the_result_code() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stub = sample_stub(&client_of(&server));
        let status = stub.plain(SampleRequest { foo: "error".into() }).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such thing");
        assert_eq!(status.metadata().get("result-code").unwrap(), "30");
        assert_eq!(code_of(status), ResultCode::ErrorItemUnknown as i32);
        assert_eq!(stub.plain(SampleRequest { foo: "ok".into() }).await.unwrap().into_inner().bar, "ok");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unimplemented_method_is_an_rpc_error() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let status = sample_stub(&client_of(&server)).method3(Empty {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(code_of(status), ResultCode::ErrorRpc as i32);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn server_sees_caller_metadata() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let reply = sample_stub(&client_of(&server))
            .method4(SampleRequest { foo: "caller".into() })
            .await
            .unwrap()
            .into_inner();
        // `[client]user@host(ip) api:N`
        assert!(reply.bar.starts_with("[test-client]"), "{}", reply.bar);
        assert!(reply.bar.ends_with(" api:2"), "{}", reply.bar);
        assert!(!reply.bar.contains("unknown@"), "the user is always known: {}", reply.bar);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn per_call_deadline_is_an_rpc_error() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .manager(grpc_helper_tests::Sample::new(&log, Duration::from_secs(10)))
            .start()
            .await
            .unwrap();
        let mut request = tonic::Request::new(Empty {});
        request.set_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let status = sample_stub(&client_of(&server)).long_method(request).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(code_of(status), ResultCode::ErrorRpc as i32);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn pending_calls_list_the_call_in_flight() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .manager(grpc_helper_tests::Sample::new(&log, Duration::from_secs(1)))
            .start()
            .await
            .unwrap();
        let call = grpc_helper_tests::start_long_call(&server, &log).await;
        let pending = server.pending_calls();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!((pending[0].service, pending[0].method), ("SampleService", "long_method"));
        assert_eq!(pending[0].caller.client(), "test-client");
        call.await.unwrap().unwrap();
        assert!(server.pending_calls().is_empty());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_streaming_concatenates() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let requests = tokio_stream::iter(["abc", "def", "ghi"].map(|part| SampleRequest { foo: part.into() }));
        let reply = sample_stub(&client_of(&server)).s_method1(requests).await.unwrap().into_inner();
        assert_eq!(reply.r.unwrap().msg, "abcdefghi");
        server.shutdown().await;
    })
    .await;
}

async fn collect_stream(stream: &mut tonic::Streaming<ResultStatus>) -> (Vec<String>, Option<RpcError>) {
    let mut items = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(item)) => items.push(item.r.unwrap().msg),
            Ok(None) => return (items, None),
            Err(status) => return (items, Some(status.into())),
        }
    }
}

#[tokio::test]
async fn server_streaming_delivers_every_item() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stream =
            sample_stub(&client_of(&server)).s_method2(SampleRequest::default()).await.unwrap().into_inner();
        let (items, error) = collect_stream(&mut stream).await;
        assert_eq!(items, ["abc", "def", "ghi"]);
        assert!(error.is_none());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn server_streaming_error_arrives_after_the_items() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stream = sample_stub(&client_of(&server))
            .s_method2(SampleRequest { foo: "error".into() })
            .await
            .unwrap()
            .into_inner();
        let (items, error) = collect_stream(&mut stream).await;
        assert_eq!(items, ["abc", "def", "ghi"]);
        let error = error.expect("the in-band error ends the stream");
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        assert_eq!(error.message(), "stream failed after 3 items");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn server_streaming_version_error_is_one_in_band_item() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let mut stub = SampleServiceClient::new(client_of(&server).channel_with_version(Some(9)));
        let mut stream = stub.s_method2(SampleRequest::default()).await.unwrap().into_inner();
        let (items, error) = collect_stream(&mut stream).await;
        assert!(items.is_empty());
        assert_eq!(error.unwrap().result_code(), Some(ResultCode::ErrorApiServerTooOld));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unimplemented_bidi_stream_is_an_rpc_error() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let requests = tokio_stream::iter([SampleRequest::default()]);
        let status = sample_stub(&client_of(&server)).s_method3(requests).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bidi_stream_echoes_each_request_then_reports_errors_in_band() {
    bounded(LIMIT, async {
        let server = start_sample(&EventLog::default()).await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut replies = sample_stub(&client_of(&server))
            .s_method4(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for word in ["one", "two"] {
            tx.send(SampleRequest { foo: word.into() }).await.unwrap();
            // Each reply arrives before the next request is sent: truly interleaved.
            assert_eq!(replies.message().await.unwrap().unwrap().bar, word);
        }
        tx.send(SampleRequest { foo: "error".into() }).await.unwrap();
        let error = RpcError::from(replies.message().await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        assert_eq!(error.message(), "echo refused");
        server.shutdown().await;
    })
    .await;
}

/// A manager of a service declared in `package sample.v1;`: the trait is found next to its
/// version enum (`sample::v1::packaged_service_server`), served at the package's path, and
/// version-checked like any other.
mod packaged {
    use grpc_helper::{ApiVersion, RpcError, rpc_manager};
    use grpc_helper_tests::api::sample::v1 as sample;
    use sample::{Ping, Pong};

    pub struct Packaged;

    #[rpc_manager(service = "packaged", version = sample::PackagedApiVersion)]
    impl Packaged {
        async fn ping(&self, request: Ping) -> Result<Pong, RpcError> {
            Ok(Pong { r: None, text: format!("pong {}", request.text) })
        }
    }

    #[test]
    fn its_api_range_comes_from_the_packaged_enum() {
        assert_eq!((sample::PackagedApiVersion::SUPPORTED, sample::PackagedApiVersion::CURRENT), (1, 2));
    }
}

#[tokio::test]
async fn service_in_a_proto_package_is_served_at_its_package_path_and_version_checked() {
    use grpc_helper_tests::api::sample::v1::packaged_service_client::PackagedServiceClient;
    use grpc_helper_tests::api::sample::v1::{PackagedApiVersion, Ping};
    bounded(LIMIT, async {
        let server = server_builder().manager(packaged::Packaged).start().await.unwrap();
        let client = client_of(&server);
        // The generated client calls `/sample.v1.PackagedService/ping`.
        let mut stub = PackagedServiceClient::new(client.channel::<PackagedApiVersion>());
        let pong = stub.ping(Ping { text: "hi".into() }).await.unwrap().into_inner();
        assert_eq!(pong.text, "pong hi");
        let mut too_new =
            PackagedServiceClient::new(client.channel_with_version(Some(PackagedApiVersion::CURRENT + 1)));
        let error = RpcError::from(too_new.ping(Ping::default()).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiServerTooOld));
        let listed = info(&client, &["packaged"], false).await.unwrap();
        assert_eq!((listed.items[0].current_api_version, listed.items[0].supported_api_version), (2, 1));
        server.shutdown().await;
    })
    .await;
}
