//! Client endpoints from DNS: a client of a name follows what its resolver says at run time
//! (servers added and dropped, calls in flight on a dropped one finishing), keeps its last good
//! addresses when resolution fails, says clearly when a name never resolved, and resolves
//! `localhost` with the system resolver. Servers on 127.0.0.1, port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use grpc_helper::api::{Empty, Filter, ResultStatus};
use grpc_helper::client::{ManualResolver, ResolveFuture, Resolver};
use grpc_helper::tls::{ClientTls, ServerTls};
use grpc_helper::{RpcClient, RpcError, RpcServer, rpc_manager};
use grpc_helper_tests::api::AnotherApiVersion;
use grpc_helper_tests::api::another_sample_service_client::AnotherSampleServiceClient;
use grpc_helper_tests::{bounded, server_builder, status};
use tokio::sync::Notify;

/// Answers with its server's name; while `slow` is set, holds each call until `release`.
struct Named {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    slow: Arc<AtomicBool>,
    started: Arc<Notify>,
    release: Arc<Notify>,
}

#[rpc_manager(service = "named", version = AnotherApiVersion, grpc = grpc_helper_tests::api::another_sample_service_server::AnotherSampleService)]
impl Named {
    async fn method10(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.slow.load(Ordering::SeqCst) {
            self.started.notify_one();
            self.release.notified().await;
        }
        Ok(status(self.name))
    }
}

struct Replica {
    server: RpcServer,
    calls: Arc<AtomicUsize>,
    slow: Arc<AtomicBool>,
    started: Arc<Notify>,
    release: Arc<Notify>,
}

impl Replica {
    async fn start(name: &'static str) -> Self {
        let (calls, slow, started, release) = (Arc::default(), Arc::default(), Arc::default(), Arc::default());
        let manager = Named {
            name,
            calls: Arc::clone(&calls),
            slow: Arc::clone(&slow),
            started: Arc::clone(&started),
            release: Arc::clone(&release),
        };
        let server = server_builder().manager(manager).start().await.unwrap();
        Self { server, calls, slow, started, release }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

fn stub(client: &RpcClient) -> AnotherSampleServiceClient<grpc_helper::RpcChannel> {
    AnotherSampleServiceClient::new(client.channel::<AnotherApiVersion>())
}

async fn who(client: &RpcClient) -> String {
    stub(client).method10(Empty {}).await.unwrap().into_inner().r.unwrap().msg
}

/// Waits until the client's endpoints are exactly `expected`.
async fn endpoints_become(client: &RpcClient, expected: &[SocketAddr]) {
    let mut expected = expected.to_vec();
    expected.sort();
    while client.resolved_endpoints() != expected {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn client_of(resolver: &ManualResolver) -> RpcClient {
    RpcClient::builder("my-service", 54321)
        .resolver(resolver.clone())
        .resolve_every(Duration::from_millis(20))
        .timeout(Duration::from_secs(5))
        .connect_lazy()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_resolver_and_a_dropped_one_finishes_its_calls() {
    bounded(Duration::from_secs(60), async {
        let (one, two, three) =
            (Replica::start("one").await, Replica::start("two").await, Replica::start("three").await);
        let resolver = ManualResolver::new();
        resolver.set("my-service", [one.addr()]);
        let client = client_of(&resolver);
        for _ in 0..10 {
            assert_eq!(who(&client).await, "one");
        }
        assert_eq!(client.resolved_endpoints(), vec![one.addr()]);

        // A second replica appears: calls reach it without a new client.
        resolver.set("my-service", [one.addr(), two.addr()]);
        endpoints_become(&client, &[one.addr(), two.addr()]).await;
        let mut reached_two = false;
        for _ in 0..200 {
            reached_two |= who(&client).await == "two";
        }
        assert!(reached_two, "no call reached the added endpoint");

        // A slow call in flight on `one` when `one` leaves the answer (and `three` joins).
        one.slow.store(true, Ordering::SeqCst);
        let mut in_flight = Vec::new();
        loop {
            let client = client.clone();
            in_flight.push(tokio::spawn(async move { who(&client).await }));
            if tokio::time::timeout(Duration::from_millis(20), one.started.notified()).await.is_ok() {
                break;
            }
        }
        resolver.set("my-service", [two.addr(), three.addr()]);
        endpoints_become(&client, &[two.addr(), three.addr()]).await;
        let one_before = one.calls.load(Ordering::SeqCst);
        let mut reached_three = false;
        for _ in 0..200 {
            let answer = who(&client).await;
            assert_ne!(answer, "one", "a call went to a removed endpoint");
            reached_three |= answer == "three";
        }
        assert!(reached_three, "no call reached the endpoint added last");
        assert_eq!(one.calls.load(Ordering::SeqCst), one_before, "the removed server got new calls");

        // The call held on the removed endpoint finishes there, with its real answer.
        one.slow.store(false, Ordering::SeqCst);
        one.release.notify_waiters();
        let mut answers = Vec::new();
        for call in in_flight {
            answers.push(call.await.unwrap());
        }
        assert!(answers.iter().any(|a| a == "one"), "the call in flight on the removed endpoint: {answers:?}");
        for replica in [one, two, three] {
            replica.server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_empty_resolution_keeps_the_last_good_addresses() {
    bounded(Duration::from_secs(30), async {
        let one = Replica::start("one").await;
        let resolver = ManualResolver::new();
        resolver.set("my-service", [one.addr()]);
        let client = client_of(&resolver);
        assert_eq!(who(&client).await, "one");

        resolver.fail("my-service", "SERVFAIL from the test");
        tokio::time::sleep(Duration::from_millis(100)).await; // several periods
        assert_eq!(client.resolved_endpoints(), vec![one.addr()]);
        assert_eq!(who(&client).await, "one");

        resolver.set("my-service", []);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(client.resolved_endpoints(), vec![one.addr()]);
        assert_eq!(who(&client).await, "one");
        one.server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_never_resolved_fails_calls_clearly_then_works_once_it_does() {
    bounded(Duration::from_secs(30), async {
        let resolver = ManualResolver::new();
        resolver.fail("my-service", "SERVFAIL from the test");
        let client = RpcClient::builder("my-service", 54321)
            .resolver(resolver.clone())
            .timeout(Duration::from_millis(300))
            .connect_lazy()
            .unwrap();
        let started = std::time::Instant::now();
        let error = stub(&client).method10(Empty {}).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
        assert_eq!(
            error.message(),
            "no address to call for my-service:54321: my-service:54321 cannot be resolved: SERVFAIL from the test"
        );
        assert!(started.elapsed() >= Duration::from_millis(300), "the call waited its retry window");

        let no_retry =
            RpcClient::builder("unknown", 54321).resolver(resolver.clone()).no_retry().connect_lazy().unwrap();
        let error = stub(&no_retry).method10(Empty {}).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert!(error.message().contains("no such name \"unknown\""), "{error:?}");

        // A call waiting for the first address gets it when the name appears (retried every
        // second at most while it never resolved).
        let one = Replica::start("one").await;
        let waiting = RpcClient::builder("my-service", 54321)
            .resolver(resolver.clone())
            .timeout(Duration::from_secs(10))
            .connect_lazy()
            .unwrap();
        let call = tokio::spawn(async move { who(&waiting).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!call.is_finished(), "the call waits for an address");
        resolver.set("my-service", [one.addr()]);
        assert_eq!(call.await.unwrap(), "one");
        assert_eq!(who(&client).await, "one", "the first client recovers too");
        one.server.shutdown().await;
    })
    .await;
}

/// A resolver counting its uses (to see the background task stop with its client).
struct Counting(Arc<AtomicUsize>, SocketAddr);

impl Resolver for Counting {
    fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> ResolveFuture<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(vec![self.1])))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_stops_with_the_client() {
    bounded(Duration::from_secs(30), async {
        let one = Replica::start("one").await;
        let uses = Arc::new(AtomicUsize::new(0));
        let client = RpcClient::builder("my-service", 54321)
            .resolver(Counting(Arc::clone(&uses), one.addr()))
            .resolve_every(Duration::from_millis(10))
            .connect_lazy()
            .unwrap();
        assert_eq!(who(&client).await, "one");
        while uses.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after_drop = uses.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(uses.load(Ordering::SeqCst), after_drop, "the resolver is still used after the client is gone");
        one.server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_resolver_finds_localhost() {
    bounded(Duration::from_secs(30), async {
        let one = Replica::start("one").await;
        let port = one.addr().port();
        let client = RpcClient::builder("localhost", port)
            .resolve_every(Duration::from_millis(50))
            .timeout(Duration::from_secs(5))
            .connect_lazy()
            .unwrap();
        for _ in 0..5 {
            assert_eq!(who(&client).await, "one");
        }
        let endpoints = client.resolved_endpoints();
        assert!(endpoints.contains(&one.addr()), "{endpoints:?}");
        assert!(endpoints.iter().all(|a| a.ip().is_loopback() && a.port() == port), "{endpoints:?}");
        assert!(RpcClient::builder("localhost", port).resolve_every(Duration::ZERO).connect_lazy().is_err());
        one.server.shutdown().await;
    })
    .await;
}

/// Connected by address, a TLS client still checks the certificate against the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_checks_the_name_not_the_address() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    bounded(Duration::from_secs(30), async {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["my-service.test".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        let server = server_builder().tls(ServerTls::new(cert.pem(), key.serialize_pem())).start().await.unwrap();
        let resolver = ManualResolver::new();
        for name in ["my-service.test", "other-name.test"] {
            resolver.set(name, [server.local_addr()]);
        }
        let client_for = |name: &str| {
            RpcClient::builder(name, 54321)
                .resolver(resolver.clone())
                .tls(ClientTls::new(ca.pem()))
                .no_retry()
                .connect_lazy()
                .unwrap()
        };
        let info = client_for("my-service.test").server_service().info(Filter::default()).await.unwrap().into_inner();
        assert_eq!(info.items[0].name, "srv");
        let refused = client_for("other-name.test").server_service().info(Filter::default()).await;
        assert!(refused.is_err(), "a certificate for another name is refused");
        server.shutdown().await;
    })
    .await;
}
