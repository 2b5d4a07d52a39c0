//! Failure detail (issue 12 §4): a panicking manager answers in band and keeps serving, calls
//! are traced at DEBUG in the original's `>>>` / `<<<` shape, and the debug dump shows what
//! each pending call was asked.

use std::sync::Once;
use std::time::Duration;

use grpc_helper::api::{Empty, LoggerConfig, LoggerLevel, LoggerUpdate, ResultCode, ResultStatus};
use grpc_helper::{CallContext, Folders, ReplyStream, RpcError, RpcServer, rpc_manager};
use grpc_helper_tests::api::{PlainReply, SampleRequest, SampleResponse};
use grpc_helper_tests::{LIMIT, bounded, client_of, sample_stub, server_builder, status};
use tokio_stream::StreamExt;

/// A sample service whose methods panic on request.
struct Panicky;

#[rpc_manager(service = "sample", version = grpc_helper_tests::api::SampleApiVersion)]
impl Panicky {
    /// Panics while holding the manager's lock.
    async fn method1(&self, _request: Empty, cx: CallContext) -> Result<ResultStatus, RpcError> {
        let _locked = cx.lock().await;
        let numbers: Vec<u32> = Vec::new();
        panic!("boom with the lock held, {} numbers", numbers.len());
    }

    /// Takes the manager's lock, then answers.
    async fn method2(&self, _request: Empty, cx: CallContext) -> Result<ResultStatus, RpcError> {
        let _locked = cx.lock().await;
        Ok(status("the lock was free"))
    }

    /// Echoes `foo`; `slow:...` first sleeps 3 s (a call to find in the dump).
    async fn method4(&self, request: SampleRequest) -> Result<SampleResponse, RpcError> {
        if request.foo.starts_with("slow:") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if request.foo == "fail" {
            return Err(RpcError::new(ResultCode::ErrorParamInvalid, "foo must not be 'fail'"));
        }
        Ok(SampleResponse { r: None, bar: request.foo })
    }

    /// A reply without `r`: its panic can only be a status.
    async fn plain(&self, request: SampleRequest) -> Result<PlainReply, RpcError> {
        let value = request.foo.strip_prefix("value:");
        Ok(PlainReply { bar: value.expect("plain has no value").to_owned() })
    }

    /// Two items, then the stream itself panics.
    async fn s_method2(&self, _request: SampleRequest) -> Result<ReplyStream<ResultStatus>, RpcError> {
        let mut sent = 0;
        Ok(ReplyStream::new(tokio_stream::iter(std::iter::from_fn(move || {
            sent += 1;
            assert!(sent <= 2, "the stream broke after {} items", sent - 1);
            Some(Ok(status(format!("item {sent}"))))
        }))))
    }
}

/// Backtraces on for this process (read once, at the first panic).
fn backtraces_on() {
    static ON: Once = Once::new();
    // SAFETY: set before any test of this binary reads the environment (all call this first).
    ON.call_once(|| unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "1") });
}

async fn start(workspace: Option<&std::path::Path>) -> RpcServer {
    backtraces_on();
    let mut builder = server_builder().manager(Panicky);
    if let Some(dir) = workspace {
        builder = builder.folders(Folders::default().workspace(dir));
    }
    builder.start().await.expect("server starts")
}

/// The reply as sent, without the client's in-band error handling (which keeps no stack).
async fn raw_method1(server: &RpcServer) -> ResultStatus {
    let address = format!("http://{}", server.local_addr());
    let channel = tonic::transport::Channel::from_shared(address).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/SampleService/method1");
    let codec = tonic_prost::ProstCodec::<Empty, ResultStatus>::default();
    grpc.unary(tonic::Request::new(Empty {}), path, codec).await.expect("status OK: the error is in band").into_inner()
}

#[tokio::test]
async fn a_panic_is_an_in_band_error_with_its_message_and_stack() {
    bounded(LIMIT, async {
        let server = start(None).await;
        let reply = raw_method1(&server).await;
        let result = reply.r.expect("an in-band result");
        assert_eq!(result.code, ResultCode::Error as i32);
        assert_eq!(result.msg, "SampleService.method1 panicked: boom with the lock held, 0 numbers");
        let first = result.stack.lines().take(2).collect::<Vec<_>>().join("\n");
        assert!(first.contains("failure.rs:23:"), "the stack starts where the method panicked: {}", result.stack);
        server.shutdown().await;
    })
    .await;
}

/// A panic's stack goes to callers on the server's machine, or authenticated by its guard for
/// the call: a call forwarded by a main server on the same machine is neither, unless the main
/// server passes on credentials the backend's guard accepts (for a guarded method).
#[tokio::test]
async fn a_forwarded_call_gets_the_stack_only_when_authenticated() {
    use grpc_helper::api::ProxyRegisterRequest;
    use grpc_helper::auth::BearerToken;
    bounded(LIMIT, async {
        backtraces_on();
        for token in [None, Some("backend-secret")] {
            let backend = match token {
                Some(token) => {
                    server_builder().auth_guard(BearerToken::new(token)).guard_method("/SampleService/method1")
                }
                None => server_builder(),
            };
            let backend = backend.manager(Panicky).start().await.unwrap();
            let main = server_builder().proxy::<grpc_helper_tests::api::SampleApiVersion>("sample", "SampleService");
            let main = match token {
                Some(token) => main.backend_bearer_token(token),
                None => main,
            };
            let main = main.start().await.unwrap();
            let port = u32::from(backend.local_addr().port());
            let registration = ProxyRegisterRequest {
                names: vec!["sample".into()],
                version: "1".into(),
                host: "127.0.0.1".into(),
                port,
            };
            client_of(&main).server_service().proxy_register(registration).await.unwrap();
            let result = raw_method1(&main).await.r.expect("an in-band result");
            assert!(result.msg.ends_with("panicked: boom with the lock held, 0 numbers"), "{}", result.msg);
            assert_eq!(!result.stack.is_empty(), token.is_some(), "token {token:?}: stack {:?}", result.stack);
            main.shutdown().await;
            backend.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn after_a_panic_the_lock_is_free_and_the_server_keeps_serving() {
    bounded(LIMIT, async {
        let server = start(None).await;
        let mut sample = sample_stub(&client_of(&server));
        for _ in 0..3 {
            let error = RpcError::from(sample.method1(Empty {}).await.unwrap_err());
            assert_eq!(error.result_code(), Some(ResultCode::Error));
            assert!(error.message().contains("boom with the lock held"), "{error}");
            let next = tokio::time::timeout(Duration::from_secs(2), sample.method2(Empty {})).await;
            let reply = next.expect("the lock was released by the panicking call").unwrap().into_inner();
            assert_eq!(reply.r.unwrap().msg, "the lock was free");
        }
        let echo = sample.method4(SampleRequest { foo: "still here".into() }).await.unwrap().into_inner();
        assert_eq!(echo.bar, "still here");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_panic_inside_a_reply_stream_is_its_last_in_band_message() {
    bounded(LIMIT, async {
        let server = start(None).await;
        let mut sample = sample_stub(&client_of(&server));
        let mut stream = sample.s_method2(SampleRequest::default()).await.unwrap().into_inner();
        let mut items = Vec::new();
        let mut error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(item) => items.push(item.r.unwrap().msg),
                Err(status) => error = Some(RpcError::from(status)),
            }
        }
        assert_eq!(items, ["item 1", "item 2"]);
        let error = error.expect("the panic ends the stream with an error item");
        assert_eq!(error.result_code(), Some(ResultCode::Error));
        assert_eq!(error.message(), "SampleService.s_method2 panicked: the stream broke after 2 items");
        assert_eq!(sample.method2(Empty {}).await.unwrap().into_inner().r.unwrap().msg, "the lock was free");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_panic_in_a_method_whose_reply_has_no_r_is_an_internal_status() {
    bounded(LIMIT, async {
        let server = start(None).await;
        let mut sample = sample_stub(&client_of(&server));
        let status = sample.plain(SampleRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "SampleService.plain panicked: plain has no value");
        assert_eq!(RpcError::from(status).result_code(), Some(ResultCode::Error));
        server.shutdown().await;
    })
    .await;
}

fn debug_calls(enabled: bool) -> LoggerUpdate {
    let level = if enabled { LoggerLevel::LvlDebug } else { LoggerLevel::LvlInfo };
    LoggerUpdate { items: vec![LoggerConfig { name: "grpc_helper::rpc".into(), enabled: true, level: level as i32 }] }
}

#[tokio::test]
async fn at_debug_each_call_is_traced_with_its_caller_request_and_reply() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(Some(dir.path())).await;
        let client = client_of(&server);
        client.logger_service().set(debug_calls(true)).await.unwrap();
        let mut sample = sample_stub(&client);
        sample.method4(SampleRequest { foo: "traced".into() }).await.unwrap();
        sample.method4(SampleRequest { foo: "fail".into() }).await.unwrap_err();
        let mut stream = sample.s_method2(SampleRequest::default()).await.unwrap().into_inner();
        while stream.next().await.is_some() {}
        client.logger_service().set(debug_calls(false)).await.unwrap();
        sample.method4(SampleRequest { foo: "not traced".into() }).await.unwrap();

        let text = std::fs::read_to_string(dir.path().join("logs/sample/sample.log")).unwrap();
        let caller = "[RPC] [test-client]";
        let line = |needle: &str| text.lines().any(|l| l.contains(caller) && l.contains(needle));
        assert!(line(r#" >>> SampleService.method4 (SampleRequest{ foo: "traced" })"#), "{text}");
        assert!(line(r#" <<< SampleService.method4: SampleResponse{ r: None, bar: "traced" }"#), "{text}");
        assert!(line(r#" <<< SampleService.method4: SampleResponse{ r: Some(Result { code: ErrorParamInvalid, msg: "foo must not be 'fail'""#), "{text}");
        assert!(line(r#" <<< SampleService.s_method2: ResultStatus{ r: Some(Result { code: Ok, msg: "item 2""#), "{text}");
        assert!(line(r#" <<< SampleService.s_method2: ResultStatus{ r: Some(Result { code: Error, msg: "SampleService.s_method2 panicked"#), "{text}");
        assert!(!text.contains("not traced"), "INFO again: no trace: {text}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_dump_lists_each_pending_call_with_its_request() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(Some(dir.path())).await;
        let mut sample = sample_stub(&client_of(&server));
        let call = tokio::spawn(async move { sample.method4(SampleRequest { foo: "slow: look at me".into() }).await });
        while server.pending_calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pending = server.pending_calls();
        assert_eq!(pending[0].content.as_deref(), Some(r#"SampleRequest{ foo: "slow: look at me" }"#));
        let text = std::fs::read_to_string(server.dump().unwrap()).unwrap();
        let expected = r#" - [RPC] [test-client]"#;
        let line = text.lines().find(|l| l.starts_with(expected)).unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.contains(r#" >>> SampleService.method4 (SampleRequest{ foo: "slow: look at me" }) running for"#),
            "{line}"
        );
        assert!(text.contains("Tokio runtime: "), "{text}");
        assert!(text.contains(" - worker 0: "), "each worker and what it does: {text}");
        assert!(text.contains("\nThreads:\n"), "{text}");
        call.await.unwrap().expect("the call in flight completes");
        server.shutdown().await;
    })
    .await;
}
