//! Attacks on a main server's proxy, each as what the attacker sends, what they get, and what
//! the server still does for everyone else: loops (its own address, another main server, an
//! address the check cannot see), a hung backend, credentials leaking to a backend, backends of a
//! guarded main server, channels kept to replaced backends, and concurrent registrations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use grpc_helper::api::{Empty, Filter, ProxyRegisterRequest, ResultCode};
use grpc_helper::auth::{AuthGuard, BearerToken};
use grpc_helper::tls::{ClientTls, ServerTls};
use grpc_helper::{Folders, RpcClient, RpcError, RpcServer, RpcServerBuilder};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::{SampleApiVersion, SampleRequest};
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, sample_stub, server_builder, still_serving};
use parking_lot::Mutex;

fn main_server() -> RpcServerBuilder {
    server_builder()
        .proxy::<SampleApiVersion>("sample", "SampleService")
        .cli_config([("rpc-client-timeout".to_owned(), "2".to_owned())])
}

async fn backend(builder: RpcServerBuilder, long_delay: Duration) -> RpcServer {
    builder.manager(Sample::new(&EventLog::default(), long_delay)).start().await.unwrap()
}

fn registration(host: &str, port: u16) -> ProxyRegisterRequest {
    ProxyRegisterRequest { names: vec!["sample".into()], version: "1".into(), host: host.into(), port: u32::from(port) }
}

async fn register(main: &RpcServer, host: &str, port: u16) -> Result<(), RpcError> {
    client_of(main).server_service().proxy_register(registration(host, port)).await.map(drop).map_err(RpcError::from)
}

async fn echo(main: &RpcServer, text: &str) -> Result<String, RpcError> {
    let reply = sample_stub(&client_of(main)).method4(SampleRequest { foo: text.into() }).await;
    reply.map(|r| r.into_inner().bar).map_err(RpcError::from)
}

/// A loopback TCP relay to `target`, counting its open connections.
async fn relay(target: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&open);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, open)
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn registering_the_main_servers_own_address_is_refused() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let main = main_server().start().await.unwrap();
        let port = main.local_addr().port();
        for host in ["127.0.0.1", "localhost", ""] {
            let error = register(&main, host, port).await.unwrap_err();
            assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{host:?}: {error}");
            assert!(error.message().contains("own address"), "{error}");
        }
        let info = client_of(&main).server_service().info(Filter::default()).await.unwrap().into_inner();
        assert_eq!(info.items.iter().find(|i| i.name == "sample").unwrap().proxy_port, 0, "nothing was registered");
        still_serving(&main).await;
        let backend = backend(server_builder(), Duration::ZERO).await;
        register(&main, "127.0.0.1", backend.local_addr().port()).await.unwrap();
        assert_eq!(echo(&main, "after").await.unwrap(), "after", "a real backend still registers");
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_loop_through_an_address_the_check_cannot_see_is_cut_at_the_first_return() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let main = main_server().start().await.unwrap();
        let (relay_port, _) = relay(main.local_addr().port()).await;
        register(&main, "127.0.0.1", relay_port).await.unwrap();
        let started = Instant::now();
        let error = echo(&main, "loop").await.unwrap_err();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStateUnexpected), "{error}");
        assert!(error.message().starts_with("Proxy loop: /SampleService/method4 came back"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2), "one round trip, not 1,800: {:?}", started.elapsed());
        still_serving(&main).await;
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_loop_between_two_main_servers_is_cut_at_the_first_return() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let first = main_server().start().await.unwrap();
        let second = main_server().start().await.unwrap();
        register(&first, "127.0.0.1", second.local_addr().port()).await.unwrap();
        register(&second, "127.0.0.1", first.local_addr().port()).await.unwrap();
        let error = echo(&first, "ping-pong").await.unwrap_err();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStateUnexpected), "{error}");
        assert!(error.message().contains("came back to this main server (2 hops)"), "{error}");
        still_serving(&first).await;
        still_serving(&second).await;
        first.shutdown().await;
        second.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hung_backend_gets_deadline_exceeded_and_its_calls_do_not_pile_up() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let main = main_server().forward_deadline(Some(Duration::from_millis(500))).start().await.unwrap();
        let hung = backend(server_builder(), Duration::from_secs(3600)).await;
        register(&main, "127.0.0.1", hung.local_addr().port()).await.unwrap();
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let mut stub = sample_stub(&client_of(&main));
                tokio::spawn(async move { stub.long_method(Empty {}).await })
            })
            .collect();
        still_serving(&main).await;
        for call in calls {
            let status = call.await.unwrap().unwrap_err();
            assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
            assert!(status.message().contains("did not answer /SampleService/long_method within 500ms"), "{status:?}");
        }
        // The backend's calls were cancelled with them.
        until("the backend's calls end", || hung.pending_calls().is_empty()).await;
        // A caller's own deadline wins over the default.
        let mut request = tonic::Request::new(Empty {});
        request.set_timeout(Duration::from_millis(1500));
        let started = Instant::now();
        let status = sample_stub(&client_of(&main)).long_method(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());
        main.shutdown().await;
        hung.shutdown().await;
    })
    .await;
}

/// A backend's guard that lets everything through and records the `authorization` it saw:
/// what a backend registered by an attacker would collect.
#[derive(Clone, Default)]
struct Spy(Arc<Mutex<Vec<Option<String>>>>);

impl AuthGuard for Spy {
    fn check(&self, _path: &str, headers: &http::HeaderMap) -> Result<(), tonic::Status> {
        let seen = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
        self.0.lock().push(seen);
        Ok(())
    }
}

/// The `authorization` a backend saw on a call of `method4` through `main` by a caller sending
/// `caller_token` (the main's admin token is `admin-secret`).
async fn seen_by_backend(main: RpcServerBuilder, caller_token: Option<&str>) -> Option<String> {
    let spy = Spy::default();
    let backend =
        backend(server_builder().auth_guard(spy.clone()).guard_method("/SampleService/method4"), Duration::ZERO).await;
    let main = main.auth_guard(BearerToken::new("admin-secret")).start().await.unwrap();
    let admin = RpcClient::builder("127.0.0.1", main.local_addr().port()).bearer_token("admin-secret").connect_lazy();
    admin
        .as_ref()
        .unwrap()
        .server_service()
        .proxy_register(registration("127.0.0.1", backend.local_addr().port()))
        .await
        .unwrap();
    let caller = RpcClient::builder("127.0.0.1", main.local_addr().port());
    let caller = match caller_token {
        Some(token) => caller.bearer_token(token),
        None => caller,
    };
    let caller = caller.connect_lazy().unwrap();
    let reply = sample_stub(&caller).method4(SampleRequest { foo: "x".into() }).await.unwrap();
    assert_eq!(reply.into_inner().bar, "x");
    main.shutdown().await;
    backend.shutdown().await;
    let seen = spy.0.lock().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen.into_iter().next().unwrap()
}

#[tokio::test]
async fn the_callers_authorization_does_not_reach_backends_unless_configured() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let admin = Some("admin-secret");
        assert_eq!(seen_by_backend(main_server(), admin).await, None, "the admin token stays on the main server");
        assert_eq!(
            seen_by_backend(main_server().forward_authorization(true), admin).await.as_deref(),
            Some("Bearer admin-secret"),
            "forwarded when configured"
        );
        assert_eq!(
            seen_by_backend(main_server().backend_bearer_token("for-backends"), admin).await.as_deref(),
            Some("Bearer for-backends"),
            "the main server's own credentials for its backends, for a caller it admits"
        );
        assert_eq!(
            seen_by_backend(main_server().backend_bearer_token("for-backends"), None).await,
            None,
            "an anonymous caller of the main server gets none of its authority"
        );
    })
    .await;
}

/// A CA and a certificate for `localhost` it signed: `(ca, cert, key)`.
fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_backend_registers_with_a_main_server_guarded_by_a_token_and_tls() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let (ca, cert, key) = pki();
        let main = main_server()
            .tls(ServerTls::new(cert, key).ca(ca.clone()))
            .auth_guard(BearerToken::new("main-token"))
            .start()
            .await
            .unwrap();
        let to_main = || {
            server_builder()
                .cli_config([
                    ("rpc-main-host".to_owned(), "127.0.0.1".to_owned()),
                    ("rpc-main-port".to_owned(), main.local_addr().port().to_string()),
                    ("rpc-client-timeout".to_owned(), "2".to_owned()),
                ])
                .register_with_main(&["sample"], "guarded-1")
                .main_tls(ClientTls::new(ca.clone()).domain("localhost"))
        };
        // Without the token: refused, and the backend does not start.
        let refused = to_main().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.err().unwrap();
        assert!(refused.message().contains("authorization: Bearer"), "{refused}");

        let backend = backend(to_main().main_bearer_token("main-token"), Duration::ZERO).await;
        let client = RpcClient::builder("127.0.0.1", main.local_addr().port())
            .tls(ClientTls::new(ca.clone()).domain("localhost"))
            .connect_lazy()
            .unwrap();
        let info = client.server_service().info(Filter::default()).await.unwrap().into_inner();
        let sample = info.items.iter().find(|i| i.name == "sample").unwrap();
        assert_eq!((sample.version.as_str(), sample.proxy_port), ("guarded-1", u32::from(backend.local_addr().port())));
        let echo = sample_stub(&client).method4(SampleRequest { foo: "over tls".into() }).await.unwrap();
        assert_eq!(echo.into_inner().bar, "over tls");
        // It forgets with the same credentials.
        backend.shutdown().await;
        let info = client.server_service().info(Filter::default()).await.unwrap().into_inner();
        assert_eq!(info.items.iter().find(|i| i.name == "sample").unwrap().proxy_port, 0);
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn channels_to_backends_are_dropped_when_a_registration_is_replaced_or_forgotten() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let main = main_server().start().await.unwrap();
        let old = backend(server_builder(), Duration::ZERO).await;
        let new = backend(server_builder(), Duration::ZERO).await;
        let (relay_port, open) = relay(old.local_addr().port()).await;

        register(&main, "127.0.0.1", relay_port).await.unwrap();
        assert_eq!(echo(&main, "old").await.unwrap(), "old");
        assert_eq!(open.load(Ordering::SeqCst), 1, "one connection to the backend");
        register(&main, "127.0.0.1", new.local_addr().port()).await.unwrap();
        until("the replaced backend's connection closes", || open.load(Ordering::SeqCst) == 0).await;
        assert_eq!(echo(&main, "new").await.unwrap(), "new");

        register(&main, "127.0.0.1", relay_port).await.unwrap();
        assert_eq!(echo(&main, "again").await.unwrap(), "again");
        assert_eq!(open.load(Ordering::SeqCst), 1);
        let names = Filter { names: vec!["sample".into()], ignore_unknown: false };
        client_of(&main).server_service().proxy_forget(names).await.unwrap();
        until("the forgotten backend's connection closes", || open.load(Ordering::SeqCst) == 0).await;
        main.shutdown().await;
        old.shutdown().await;
        new.shutdown().await;
    })
    .await;
}

/// The `port` of each service in `proxy.json` (which must parse), by name.
fn saved_ports(workspace: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let text = std::fs::read_to_string(workspace.join("proxy.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    value.as_object().unwrap().iter().map(|(name, entry)| (name.clone(), entry["port"].as_u64().unwrap())).collect()
}

async fn registered_ports(main: &RpcServer) -> std::collections::BTreeMap<String, u64> {
    let info = client_of(main).server_service().info(Filter::default()).await.unwrap().into_inner();
    info.items
        .into_iter()
        .filter(|i| i.is_proxy && i.proxy_port > 0)
        .map(|i| (i.name, u64::from(i.proxy_port)))
        .collect()
}

const SERVICES: [(&str, &str); 5] =
    [("p0", "P0Service"), ("p1", "P1Service"), ("p2", "P2Service"), ("p3", "P3Service"), ("p4", "P4Service")];

#[tokio::test]
async fn fifty_concurrent_registrations_all_succeed_and_proxy_json_parses() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let builder = SERVICES.iter().fold(server_builder(), |b, (name, grpc)| b.proxy::<SampleApiVersion>(name, grpc));
        let main = builder.folders(Folders::default().workspace(dir.path())).start().await.unwrap();
        let calls: Vec<_> = (0..50u32)
            .map(|i| {
                let client = client_of(&main);
                tokio::spawn(async move {
                    let name = SERVICES[i as usize % 5].0;
                    let request = ProxyRegisterRequest {
                        names: vec![name.into()],
                        version: format!("v{i}"),
                        host: "127.0.0.1".into(),
                        port: 1000 + i,
                    };
                    client.server_service().proxy_register(request).await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let saved = saved_ports(dir.path());
        assert_eq!(saved.len(), 5, "{saved:?}");
        assert_eq!(saved, registered_ports(&main).await, "the file holds what the server serves");
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_registration_whose_write_fails_changes_nothing() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main = main_server().folders(Folders::default().workspace(dir.path())).start().await.unwrap();
        register(&main, "127.0.0.1", 1001).await.unwrap();
        // proxy.json can no longer be replaced (even by root): a folder that is not empty.
        std::fs::remove_file(dir.path().join("proxy.json")).unwrap();
        std::fs::create_dir_all(dir.path().join("proxy.json/blocker")).unwrap();
        let error = register(&main, "127.0.0.1", 1002).await.unwrap_err();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorRequestFailed), "{error}");
        assert!(error.message().contains("proxy.json"), "{error}");
        let unchanged: std::collections::BTreeMap<_, _> = [("sample".to_owned(), 1001)].into();
        assert_eq!(registered_ports(&main).await, unchanged, "the failed registration was not applied");
        let names = Filter { names: vec!["sample".into()], ignore_unknown: false };
        assert!(client_of(&main).server_service().proxy_forget(names).await.is_err(), "nor a forget");
        assert_eq!(registered_ports(&main).await, unchanged);

        std::fs::remove_dir_all(dir.path().join("proxy.json")).unwrap();
        register(&main, "127.0.0.1", 1003).await.unwrap();
        assert_eq!(saved_ports(dir.path()), [("sample".to_owned(), 1003)].into());
        main.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_config_cycle_between_two_main_servers_is_cut_at_the_first_return() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let first = main_server().start().await.unwrap();
        let second = main_server().start().await.unwrap();
        register(&first, "127.0.0.1", second.local_addr().port()).await.unwrap();
        register(&second, "127.0.0.1", first.local_addr().port()).await.unwrap();
        let started = Instant::now();
        let status = client_of(&first).config_service().get(Filter::default()).await.unwrap_err();
        let error = RpcError::from(status);
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStateUnexpected), "{error}");
        assert!(
            error.message().contains("Proxy loop: a config call came back to this main server (2 hops)"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        still_serving(&first).await;
        still_serving(&second).await;
        first.shutdown().await;
        second.shutdown().await;
    })
    .await;
}

/// A client stream that a main server forwards is copied for a replay until the backend
/// answers; the copy counts against the connection's budget of request bytes, so another call
/// on that connection that would pass the budget is refused, and is accepted again once the
/// stream has its answer (and its copy is freed).
#[tokio::test]
async fn a_forwarded_streams_replay_copy_counts_in_its_connections_budget() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let main =
            main_server().max_request_size(512 << 10).max_receiving_bytes(1 << 20, 8 << 20).start().await.unwrap();
        let backend = backend(server_builder(), Duration::ZERO).await;
        register(&main, "127.0.0.1", backend.local_addr().port()).await.unwrap();
        let client = client_of(&main);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut stream_stub = sample_stub(&client);
        let stream =
            tokio::spawn(async move { stream_stub.s_method1(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
        for _ in 0..9 {
            tx.send(SampleRequest { foo: "a".repeat(100 << 10) }).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let large = SampleRequest { foo: "b".repeat(300 << 10) };
        let refused = sample_stub(&client).method4(large.clone()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
        assert!(refused.message().contains("on this connection"), "{}", refused.message());
        drop(tx);
        let all = stream.await.unwrap().unwrap().into_inner();
        assert_eq!(all.r.unwrap().msg.len(), 900 << 10, "the stream itself went through whole");
        let echoed = sample_stub(&client).method4(large).await.unwrap().into_inner();
        assert_eq!(echoed.bar.len(), 300 << 10, "the copy was released with the stream's answer");
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

/// The forward deadline from the static item `rpc-proxy-deadline`: a number of seconds, or 0 for
/// none (the original's behaviour: a call waits for its backend as long as it takes).
#[tokio::test]
async fn the_forward_deadline_comes_from_rpc_proxy_deadline_and_0_is_none() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let deadline = |value: &str| [("rpc-proxy-deadline".to_owned(), value.to_owned())];
        let hung = backend(server_builder(), Duration::from_secs(3600)).await;
        let main = main_server().cli_config(deadline("0.3")).start().await.unwrap();
        register(&main, "127.0.0.1", hung.local_addr().port()).await.unwrap();
        let status = sample_stub(&client_of(&main)).long_method(Empty {}).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("within 300ms"), "{status:?}");
        main.shutdown().await;

        let unbounded = main_server().cli_config(deadline("0")).start().await.unwrap();
        register(&unbounded, "127.0.0.1", hung.local_addr().port()).await.unwrap();
        let mut stub = sample_stub(&client_of(&unbounded));
        let call = tokio::spawn(async move { stub.long_method(Empty {}).await });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!call.is_finished(), "no deadline: the call still waits for its backend");
        assert!(!hung.pending_calls().is_empty());
        call.abort();
        unbounded.shutdown().await;
        hung.shutdown().await;

        let refused = main_server().cli_config(deadline("-1")).start().await.err().unwrap();
        assert!(refused.message().starts_with("Invalid value for rpc-proxy-deadline: \"-1\""), "{refused}");
    })
    .await;
}
