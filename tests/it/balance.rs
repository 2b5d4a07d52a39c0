//! A client of several servers: calls spread over all of them, and a server stopping mid-run
//! costs no failed call (only, with a grace too short, the calls it was running end with its
//! clear status).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use grpc_helper::api::{Empty, ResultStatus};
use grpc_helper::{RpcClient, RpcError, rpc_manager};
use grpc_helper_tests::api::AnotherApiVersion;
use grpc_helper_tests::api::another_sample_service_client::AnotherSampleServiceClient;
use grpc_helper_tests::{bounded, server_builder, status};
use parking_lot::Mutex;

/// Answers with the name of its server.
struct Named(&'static str);

#[rpc_manager(service = "named", version = AnotherApiVersion, grpc = grpc_helper_tests::api::another_sample_service_server::AnotherSampleService)]
impl Named {
    async fn method10(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(status(self.0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_three_servers_and_survive_one_stopping() {
    spread_and_stop(Duration::from_secs(2)).await;
}

/// A grace of a millisecond: the calls the stopped server was running end with its clear
/// "shut down before this call finished" status, which the client does not retry (they may have
/// had effects); every other call lands on the other servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_a_server_cut_mid_call() {
    spread_and_stop(Duration::from_millis(1)).await;
}

async fn spread_and_stop(grace: Duration) {
    // At most one call per worker can be running on the stopped server when its grace ends.
    const WORKERS: usize = 8;
    bounded(Duration::from_secs(60), async {
        let mut servers = Vec::new();
        for name in ["one", "two", "three"] {
            servers.push(server_builder().shutdown_grace(grace).manager(Named(name)).start().await.unwrap());
        }
        let port = |i: usize| servers[i].local_addr().port();
        let client = RpcClient::builder("127.0.0.1", port(0))
            .endpoint("127.0.0.1", port(1))
            .endpoint("127.0.0.1", port(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy()
            .unwrap();
        let answered: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        const CALLS: usize = 1200;
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (client, answered, done, failures, cut) =
                    (client.clone(), Arc::clone(&answered), Arc::clone(&done), Arc::clone(&failures), Arc::clone(&cut));
                tokio::spawn(async move {
                    let mut stub = AnotherSampleServiceClient::new(client.channel::<AnotherApiVersion>());
                    loop {
                        let n = done.fetch_add(1, Ordering::SeqCst);
                        if n >= CALLS {
                            break;
                        }
                        match stub.method10(Empty {}).await {
                            Ok(reply) => answered.lock().push((n, reply.into_inner().r.unwrap().msg)),
                            Err(status) if status.message().contains("shut down before this call finished") => {
                                cut.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(status) => {
                                eprintln!("call {n} failed: {status:?}");
                                failures.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        while done.load(Ordering::SeqCst) < CALLS / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stopped_at = done.load(Ordering::SeqCst);
        servers[1].shutdown().await;
        for worker in workers {
            worker.await.unwrap();
        }
        assert_eq!(failures.load(Ordering::SeqCst), 0, "no call failed");
        let cut = cut.load(Ordering::SeqCst);
        assert!(cut <= WORKERS, "only calls in flight on the stopped server are cut: {cut}");
        if grace >= Duration::from_secs(1) {
            assert_eq!(cut, 0, "a long enough grace cuts nothing");
        }
        let answered = std::mem::take(&mut *answered.lock());
        assert_eq!(answered.len() + cut, CALLS);
        let mut before = BTreeMap::<&str, usize>::new();
        let mut after = BTreeMap::<&str, usize>::new();
        for (n, name) in answered.iter() {
            *if *n < stopped_at { &mut before } else { &mut after }.entry(name.as_str()).or_default() += 1;
        }
        assert_eq!(before.len(), 3, "every server served calls: {before:?}");
        let late_two = answered.iter().filter(|(n, name)| *n > stopped_at + 100 && name == "two").count();
        assert_eq!(late_two, 0, "the stopped server got no more calls: {after:?}");
        servers[0].shutdown().await;
        servers[2].shutdown().await;
    })
    .await;
}
