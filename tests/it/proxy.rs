//! Proxying over real sockets: a main server forwards a declared service to the backend that
//! registered for it (all RPC shapes, metadata, errors), persists registrations, and waits for
//! a late backend.

use std::path::Path;
use std::time::{Duration, Instant};

use grpc_helper::api::{Empty, Filter, ProxyRegisterRequest, ResultCode};
use grpc_helper::{Folders, RpcError, RpcServer, RpcServerBuilder};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::{SampleApiVersion, SampleRequest};
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, sample_stub, server_builder};

fn main_server(workspace: &Path) -> RpcServerBuilder {
    server_builder()
        .folders(Folders::default().workspace(workspace))
        .proxy::<SampleApiVersion>("sample", "SampleService")
        .cli_config([("rpc-client-timeout".to_owned(), "2".to_owned())])
}

async fn backend(log: &EventLog, delay: Duration) -> RpcServer {
    server_builder().manager(Sample::new(log, delay)).start().await.unwrap()
}

fn registration(names: &[&str], version: &str, host: &str, port: u16) -> ProxyRegisterRequest {
    ProxyRegisterRequest {
        names: names.iter().map(|n| n.to_string()).collect(),
        version: version.into(),
        host: host.into(),
        port: u32::from(port),
    }
}

async fn register(main: &RpcServer, backend: &RpcServer) {
    let request = registration(&["sample"], "123", "127.0.0.1", backend.local_addr().port());
    client_of(main).server_service().proxy_register(request).await.unwrap();
}

fn code(status: tonic::Status) -> Option<ResultCode> {
    RpcError::from(status).result_code()
}

#[tokio::test]
async fn unregistered_proxy_waits_then_answers_in_band() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let started = Instant::now();
        let status = sample_stub(&client_of(&main)).method4(SampleRequest::default()).await.unwrap_err();
        let error = RpcError::from(status);
        assert_eq!(error.result_code(), Some(ResultCode::ErrorProxyUnregistered), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn register_checks_its_parameters() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let mut srv = client_of(&main).server_service();
        for (request, expected) in [
            (ProxyRegisterRequest::default(), ResultCode::ErrorParamMissing),
            (registration(&[""], "1", "", 12), ResultCode::ErrorParamMissing),
            (registration(&["sample"], "", "", 0), ResultCode::ErrorParamMissing),
            (registration(&["sample"], "1", "", 0), ResultCode::ErrorParamMissing),
            (registration(&["sample"], "", "", 12), ResultCode::ErrorParamMissing),
            (registration(&["foo"], "1", "", 12), ResultCode::ErrorItemUnknown),
            (registration(&["srv"], "1", "", 12), ResultCode::ErrorParamInvalid),
        ] {
            let described = format!("{request:?}");
            assert_eq!(code(srv.proxy_register(request).await.unwrap_err()), Some(expected), "{described}");
        }
        let forget =
            |names: &[&str]| Filter { names: names.iter().map(|n| n.to_string()).collect(), ignore_unknown: false };
        assert_eq!(code(srv.proxy_forget(forget(&[])).await.unwrap_err()), Some(ResultCode::ErrorParamMissing));
        assert_eq!(code(srv.proxy_forget(forget(&["srv"])).await.unwrap_err()), Some(ResultCode::ErrorParamInvalid));
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn registration_is_forwarded_persisted_restored_and_forgotten() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let port = main.local_addr().port();
        let backend = backend(&EventLog::default(), Duration::ZERO).await;
        let info = |server: RpcServer| async move {
            let filter = Filter { names: vec!["sample".into()], ignore_unknown: false };
            client_of(&server).server_service().info(filter).await.unwrap().into_inner().items.remove(0)
        };
        let health = |server: RpcServer| async move {
            let channel = client_of(&server).channel_with_version(None);
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let request = tonic_health::pb::HealthCheckRequest { service: "SampleService".into() };
            health.check(request).await.unwrap().into_inner().status
        };
        let serving = tonic_health::ServingStatus::Serving as i32;
        let before = info(main.clone()).await;
        assert!(before.is_proxy && before.proxy_port == 0 && before.proxy_host.is_empty());
        assert_ne!(health(main.clone()).await, serving, "no backend yet");
        assert_eq!((before.current_api_version, before.supported_api_version), (2, 1));
        assert!(!dir.path().join("proxy.json").exists());

        register(&main, &backend).await;
        assert_eq!(health(main.clone()).await, serving, "a backend is registered");
        let after = info(main.clone()).await;
        assert_eq!((after.version.as_str(), after.proxy_host.as_str()), ("123", "127.0.0.1"));
        assert_eq!(after.proxy_port, u32::from(backend.local_addr().port()));
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("proxy.json")).unwrap()).unwrap();
        assert_eq!(saved["sample"]["port"], u64::from(backend.local_addr().port()));

        let mut stub = sample_stub(&client_of(&main));
        let caller = stub.method4(SampleRequest { foo: "caller".into() }).await.unwrap().into_inner().bar;
        assert!(caller.starts_with("[test-client(proxied)]") && caller.ends_with(" api:2"), "{caller}");
        main.shutdown().await;

        // Restarted on the same workspace: the registration is back, calls are forwarded.
        let main = main_server(dir.path()).port(port).start().await.unwrap();
        let echo = sample_stub(&client_of(&main)).method4(SampleRequest { foo: "again".into() }).await.unwrap();
        assert_eq!(echo.into_inner().bar, "again");

        let names = Filter { names: vec!["sample".into()], ignore_unknown: false };
        client_of(&main).server_service().proxy_forget(names).await.unwrap();
        let forgotten = info(main.clone()).await;
        assert_eq!((forgotten.proxy_port, forgotten.proxy_host.as_str(), forgotten.version.as_str()), (0, "", "123"));
        let saved = std::fs::read_to_string(dir.path().join("proxy.json")).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&saved).unwrap(), serde_json::json!({}));
        assert_ne!(health(main.clone()).await, serving, "forgotten");
        let waited = sample_stub(&client_of(&main)).method4(SampleRequest::default()).await.unwrap_err();
        assert_eq!(code(waited), Some(ResultCode::ErrorProxyUnregistered), "after forget, calls wait again");
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn errors_and_versions_through_the_proxy() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let backend = backend(&EventLog::default(), Duration::ZERO).await;
        register(&main, &backend).await;
        let error = RpcError::from(sample_stub(&client_of(&main)).method2(Empty {}).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiServerTooOld));
        assert_eq!(error.message(), "sample error", "the backend's in-band error passes through unchanged");
        let mut too_new = grpc_helper_tests::api::sample_service_client::SampleServiceClient::new(
            client_of(&main).channel_with_version(Some(3)),
        );
        let error = RpcError::from(too_new.method4(SampleRequest::default()).await.unwrap_err());
        assert_eq!(error.result_code(), Some(ResultCode::ErrorApiServerTooOld));
        assert!(error.message().contains("(2)"), "checked against the proxy's range: {error}");
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn every_streaming_shape_goes_through_the_proxy() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let backend = backend(&EventLog::default(), Duration::ZERO).await;
        register(&main, &backend).await;
        grpc_helper_tests::every_streaming_shape(&mut sample_stub(&client_of(&main))).await;
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn backend_dying_mid_call_gives_a_clear_error_and_the_main_server_keeps_serving() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let log = EventLog::default();
        let backend = server_builder()
            .shutdown_grace(Duration::from_millis(200))
            .manager(Sample::new(&log, Duration::from_secs(30)))
            .start()
            .await
            .unwrap();
        register(&main, &backend).await;
        let mut stub = sample_stub(&client_of(&main));
        let call = tokio::spawn(async move { stub.long_method(Empty {}).await });
        while !log.events().iter().any(|e| e == "long_method started") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        backend.shutdown().await;
        let status = call.await.unwrap().unwrap_err();
        assert!(!status.message().is_empty(), "{status:?}");
        let info = client_of(&main).server_service().info(Filter::default()).await.unwrap().into_inner();
        assert!(info.items.iter().any(|i| i.name == "sample"));
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_backend_registers_itself_at_start_and_forgets_at_shutdown() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).with_events().start().await.unwrap();
        let main_port = main.local_addr().port().to_string();
        let mut events = grpc_helper::api::event_service_client::EventServiceClient::new(
            client_of(&main).channel::<grpc_helper::api::EventApiVersion>(),
        );
        let mut listening = events.listen(grpc_helper::api::EventFilter::default()).await.unwrap().into_inner();
        listening.message().await.unwrap().unwrap();

        let backend = server_builder()
            .cli_config([("rpc-main-host".to_owned(), "127.0.0.1".to_owned()), ("rpc-main-port".to_owned(), main_port)])
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .register_with_main(&["sample"], "backend-1.0")
            .start()
            .await
            .unwrap();
        let registered = listening.message().await.unwrap().unwrap().event.unwrap();
        assert_eq!(registered.name, "RPC_PROXY_REGISTER");
        let props: Vec<_> = registered.properties.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
        let port = backend.local_addr().port().to_string();
        assert_eq!(
            props,
            [("names", "sample"), ("version", "backend-1.0"), ("port", port.as_str()), ("host", "127.0.0.1")]
        );

        let echo = sample_stub(&client_of(&main)).method4(SampleRequest { foo: "self".into() }).await.unwrap();
        assert_eq!(echo.into_inner().bar, "self");
        backend.shutdown().await;
        let forgotten = listening.message().await.unwrap().unwrap().event.unwrap();
        assert_eq!(forgotten.name, "RPC_PROXY_FORGET");
        let info = client_of(&main).server_service().info(Filter::default()).await.unwrap().into_inner();
        let sample = info.items.iter().find(|i| i.name == "sample").unwrap();
        assert_eq!(sample.proxy_port, 0);
        main.shutdown().await;
    })
    .await;
}

#[test]
fn proxy_example_main_and_backend_in_two_processes() {
    use grpc_helper_tests::process::{example, spawn_until};
    use std::process::Command;

    let main_dir = tempfile::tempdir().unwrap();
    let backend_dir = tempfile::tempdir().unwrap();
    let port = grpc_helper_tests::free_port();
    let mut main_cmd = Command::new(example("proxy_main"));
    main_cmd.args(["--port", &port.to_string(), "-w"]).arg(main_dir.path()).env("RUST_LOG", "warn");
    let mut main = spawn_until(main_cmd, "main server on port", Duration::from_secs(60));
    let mut backend_cmd = Command::new(example("proxy_backend"));
    backend_cmd
        .args(["--port", "0", "-w"])
        .arg(backend_dir.path())
        .args(["-c", "rpc-main-host=127.0.0.1", "-c", &format!("rpc-main-port={port}")])
        .env("RUST_LOG", "warn");
    let mut backend = spawn_until(backend_cmd, "backend on port", Duration::from_secs(60));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = grpc_helper::RpcClient::builder("127.0.0.1", port).name("proxy-demo").connect_lazy().unwrap();
        let mut sample = grpc_helper_examples::api::sample_service_client::SampleServiceClient::new(
            client.channel::<grpc_helper_examples::api::SampleApiVersion>(),
        );
        let reply = sample.method4(grpc_helper_examples::api::SampleRequest { foo: "proxied".into() }).await.unwrap();
        assert_eq!(reply.into_inner().bar, "Hello, proxied!");
    });
    // Ctrl-C stops the backend, which forgets its registration on the way out.
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(backend.0.id() as i32, libc::SIGINT) }, 0);
    assert!(backend.wait_exit(Duration::from_secs(30)).success());
    runtime.block_on(async {
        let client = grpc_helper::RpcClient::builder("127.0.0.1", port).connect_lazy().unwrap();
        let info = client.server_service().info(Filter::default()).await.unwrap().into_inner();
        assert_eq!(info.items.iter().find(|i| i.name == "sample").unwrap().proxy_port, 0);
        client.server_service().shutdown(grpc_helper::api::ShutdownRequest { timeout: -1 }).await.unwrap();
    });
    assert!(main.wait_exit(Duration::from_secs(30)).success());
}

#[tokio::test]
async fn a_restarting_backend_is_retried_within_the_client_timeout() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let first = backend(&EventLog::default(), Duration::ZERO).await;
        let port = first.local_addr().port();
        register(&main, &first).await;
        first.shutdown().await;
        let mut stub = sample_stub(&client_of(&main));
        let call = tokio::spawn(async move { stub.method4(SampleRequest { foo: "restarted".into() }).await });
        tokio::time::sleep(Duration::from_millis(700)).await;
        let again = server_builder().port(port).manager(Sample::new(&EventLog::default(), Duration::ZERO)).start();
        let again = again.await.unwrap();
        assert_eq!(call.await.unwrap().unwrap().into_inner().bar, "restarted", "served once the backend is back");
        main.shutdown().await;
        again.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_backend_gets_a_clear_in_band_error_after_the_client_timeout() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let gone = grpc_helper_tests::free_port();
        let request = registration(&["sample"], "1", "127.0.0.1", gone);
        client_of(&main).server_service().proxy_register(request).await.unwrap();
        let started = Instant::now();
        let error = RpcError::from(sample_stub(&client_of(&main)).method4(SampleRequest::default()).await.unwrap_err());
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "retried for rpc-client-timeout: {:?}",
            started.elapsed()
        );
        assert_eq!(error.result_code(), Some(ResultCode::ErrorRpc), "{error}");
        let expected = format!("Proxy error: backend 127.0.0.1:{gone} of sample failed for /SampleService/method4: ");
        assert!(error.message().starts_with(&expected), "{error}");
        assert!(error.message().contains("unavailable after"), "{error}");
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_backend_registers_the_host_the_main_server_should_call() {
    use grpc_helper::server::RegisterHost;
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let to_main = [
            ("rpc-main-host".to_owned(), "127.0.0.1".to_owned()),
            ("rpc-main-port".to_owned(), main.local_addr().port().to_string()),
        ];
        for (host, expected) in [
            (RegisterHost::MainHost, Some("127.0.0.1")),
            (RegisterHost::Named("localhost".into()), Some("localhost")),
            (RegisterHost::Current, None),
        ] {
            let backend = server_builder()
                .cli_config(to_main.clone())
                .manager(Sample::new(&EventLog::default(), Duration::ZERO))
                .register_with_main(&["sample"], "1")
                .register_host(host.clone())
                .start()
                .await
                .unwrap();
            let filter = Filter { names: vec!["sample".into()], ignore_unknown: false };
            let info = client_of(&main).server_service().info(filter).await.unwrap().into_inner().items.remove(0);
            match expected {
                Some(expected) => assert_eq!(info.proxy_host, expected, "{host:?}"),
                // This machine's address towards the main server: a dotted IPv4 address.
                None => assert!(info.proxy_host.parse::<std::net::Ipv4Addr>().is_ok(), "{host:?}: {}", info.proxy_host),
            }
            assert_eq!(info.proxy_port, u32::from(backend.local_addr().port()));
            let echo = sample_stub(&client_of(&main)).method4(SampleRequest { foo: "hosted".into() }).await.unwrap();
            assert_eq!(echo.into_inner().bar, "hosted", "{host:?}");
            backend.shutdown().await;
        }
        main.shutdown().await;
    })
    .await;
}

/// What a manager sees of the fleet, as `method10`'s message: `main=<services of the main
/// server, or none> servers=<backends> answered=<backends whose client answered>`.
struct Fleet;

#[grpc_helper::rpc_manager(
    service = "fleet",
    version = grpc_helper_tests::api::AnotherApiVersion,
    grpc = grpc_helper_tests::api::another_sample_service_server::AnotherSampleService
)]
impl Fleet {
    async fn method10(
        &self,
        _request: Empty,
        cx: grpc_helper::CallContext,
    ) -> Result<grpc_helper::api::ResultStatus, RpcError> {
        let main = match cx.main_client() {
            Some(main) => main.server_service().info(Filter::default()).await?.into_inner().items.len().to_string(),
            None => "none".to_owned(),
        };
        let servers: Vec<String> = cx.proxied_servers().await?.into_iter().map(|(h, p)| format!("{h}:{p}")).collect();
        let mut answered = 0;
        for backend in cx.proxied_clients().await? {
            backend.server_service().info(Filter::default()).await?;
            answered += 1;
        }
        Ok(grpc_helper_tests::status(format!("main={main} servers={} answered={answered}", servers.join(","))))
    }
}

/// The original's `proxy_client` of a proxied manager, and `_proxied_servers` /
/// `_proxied_clients` of a main server's, as a porting user looks for them on the context.
#[tokio::test]
async fn a_manager_sees_its_main_server_and_a_main_its_backends() {
    bounded(LIMIT, async {
        let fleet = |server: &RpcServer| {
            grpc_helper_tests::api::another_sample_service_client::AnotherSampleServiceClient::new(
                client_of(server).channel::<grpc_helper_tests::api::AnotherApiVersion>(),
            )
        };
        let message = |reply: tonic::Response<grpc_helper::api::ResultStatus>| reply.into_inner().r.unwrap().msg;
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).manager(Fleet).start().await.unwrap();
        assert_eq!(message(fleet(&main).method10(Empty {}).await.unwrap()), "main=none servers= answered=0");
        let main_port = main.local_addr().port().to_string();
        let backend = server_builder()
            .cli_config([("rpc-main-host".to_owned(), "127.0.0.1".to_owned()), ("rpc-main-port".to_owned(), main_port)])
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .manager(Fleet)
            .register_with_main(&["sample"], "backend-1.0")
            .start()
            .await
            .unwrap();
        let seen_by_main = message(fleet(&main).method10(Empty {}).await.unwrap());
        assert_eq!(seen_by_main, format!("main=none servers=127.0.0.1:{} answered=1", backend.local_addr().port()));
        // The main hosts srv, config, log, fleet and the proxied sample.
        assert_eq!(message(fleet(&backend).method10(Empty {}).await.unwrap()), "main=5 servers= answered=0");
        backend.shutdown().await;
        main.shutdown().await;
    })
    .await;
}

/// The original's backends register with an empty host (its default): the main server then calls
/// them at `rpc-main-host`, its own machine by default.
#[tokio::test]
async fn a_backend_registered_with_an_empty_host_is_called_at_rpc_main_host() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server(dir.path()).start().await.unwrap();
        let backend = backend(&EventLog::default(), Duration::ZERO).await;
        let request = registration(&["sample"], "1.0", "", backend.local_addr().port());
        client_of(&main).server_service().proxy_register(request).await.unwrap();
        let info = client_of(&main).server_service().info(Filter::default()).await.unwrap().into_inner();
        let sample = info.items.iter().find(|i| i.name == "sample").unwrap();
        assert_eq!((sample.proxy_host.as_str(), sample.proxy_port), ("", u32::from(backend.local_addr().port())));
        let echo = sample_stub(&client_of(&main)).method4(SampleRequest { foo: "empty host".into() }).await.unwrap();
        assert_eq!(echo.into_inner().bar, "empty host");
        backend.shutdown().await;
        main.shutdown().await;
    })
    .await;
}
