//! A66 metrics (feature `otel`): the example server's Prometheus endpoint, scraped after known
//! traffic and parsed by Python `prometheus_client`'s text parser.

use std::process::Command;
use std::time::Duration;

use grpc_helper::RpcClient;
use grpc_helper::api::{EventFilter, Filter, ShutdownRequest};
use grpc_helper_tests::free_port;
use grpc_helper_tests::process::{example, python, repo_root, run, spawn_until};
use serde_json::Value;

/// One parsed sample.
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// Scrapes `http://127.0.0.1:PORT/metrics` through the Python parser.
fn scrape(port: u16) -> Vec<Sample> {
    let mut py = Command::new(python());
    py.arg(repo_root().join("tests/python/scrape_metrics.py")).arg(format!("http://127.0.0.1:{port}/metrics"));
    let out = run(py, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "scrape failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_owned(),
                labels: v["labels"].as_object().unwrap().clone(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels` (0 when none).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {} samples", found.len());
    found.first().map_or(0.0, |s| s.value)
}

const METHOD1: &str = "SampleService/method1";
const METHOD2: &str = "SampleService/method2";
const INFO: &str = "RpcServerService/info";
const S_METHOD2: &str = "SampleService/s_method2";
const LISTEN: &str = "EventService/listen";

#[test]
fn prometheus_endpoint_counts_calls_statuses_and_in_band_codes() {
    let (port, metrics_port) = (free_port(), free_port());
    let workspace = tempfile::tempdir().unwrap();
    let mut command = Command::new(example("server"));
    command
        .args(["--port", &port.to_string(), "--metrics-port", &metrics_port.to_string(), "-w"])
        .arg(workspace.path())
        .env("RUST_LOG", "warn");
    let _server = spawn_until(command, "serving on port", Duration::from_secs(60));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = RpcClient::builder("127.0.0.1", port)
            .name("metrics")
            .timeout(Duration::from_secs(10))
            .connect_lazy()
            .unwrap();
        // Known traffic: 3 describe tours (each: info, method4, method1, method2 failing in band, ...).
        for _ in 0..3 {
            grpc_helper_examples::describe(&client).await.unwrap();
        }
        // A server stream ending in band: its first message is the error.
        let bad = EventFilter { names: vec!["with space".into()], ..Default::default() };
        let mut listening = client.events_service().listen(bad).await.unwrap().into_inner();
        let refused = listening.message().await.unwrap_err();
        assert!(refused.message().contains("with space"), "{refused}");
        // One more info, and one call to a path nobody serves (UNIMPLEMENTED, method "other").
        client.server_service().info(Filter::default()).await.unwrap();
        let mut raw = tonic::client::Grpc::new(client.channel::<grpc_helper::api::ServerApiVersion>());
        raw.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/no.such.Service/nothing");
        let codec = tonic_prost::ProstCodec::<grpc_helper::api::Empty, grpc_helper::api::Empty>::default();
        let refused = raw.unary(tonic::Request::new(grpc_helper::api::Empty {}), path, codec).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
    });
    let samples = scrape(metrics_port);
    let names: std::collections::BTreeSet<String> =
        samples.iter().map(|s| format!("{} {:?}", s.name, s.labels.get("grpc_method"))).collect();

    // grpc.server.call.started, per method.
    let started = "grpc_server_call_started_total";
    assert_eq!(value(&samples, started, &[("grpc_method", METHOD1)]), 3.0, "{names:?}");
    // info also runs under the client's version checks: every instrument must agree on its count.
    let infos = value(&samples, started, &[("grpc_method", INFO)]);
    assert!(infos >= 4.0, "{names:?}");
    // grpc.server.call.duration: one observation per call, per method and wire status.
    let duration = "grpc_server_call_duration_seconds_count";
    assert_eq!(value(&samples, duration, &[("grpc_method", METHOD1), ("grpc_status", "OK")]), 3.0);
    assert_eq!(value(&samples, duration, &[("grpc_method", INFO), ("grpc_status", "OK")]), infos);
    // method2 fails in band: OK on the wire...
    assert_eq!(value(&samples, duration, &[("grpc_method", METHOD2), ("grpc_status", "OK")]), 3.0);
    // ...and its in-band code says what happened.
    let codes = "grpc_helper_server_call_result_code_total";
    assert_eq!(
        value(&samples, codes, &[("grpc_method", METHOD2), ("grpc_helper_result_code", "ERROR_PARAM_INVALID")]),
        3.0
    );
    assert_eq!(value(&samples, codes, &[("grpc_method", METHOD2), ("grpc_helper_result_code", "OK")]), 0.0);
    assert_eq!(value(&samples, codes, &[("grpc_method", METHOD1), ("grpc_helper_result_code", "OK")]), 3.0);
    // Server streams too: a stream that ends is OK, one whose last message is an error has its code.
    assert_eq!(value(&samples, codes, &[("grpc_method", S_METHOD2), ("grpc_helper_result_code", "OK")]), 3.0);
    let listen = [("grpc_method", LISTEN), ("grpc_helper_result_code", "ERROR_PARAM_INVALID")];
    assert_eq!(value(&samples, codes, &listen), 1.0);
    assert_eq!(value(&samples, codes, &[("grpc_method", LISTEN), ("grpc_helper_result_code", "OK")]), 0.0);
    // The unknown path is folded into "other", with its wire status, and binds no series.
    assert_eq!(value(&samples, duration, &[("grpc_method", "other"), ("grpc_status", "UNIMPLEMENTED")]), 1.0);
    assert_eq!(value(&samples, started, &[("grpc_method", "other")]), 1.0);
    assert!(!names.iter().any(|n| n.contains("no.such.Service")), "{names:?}");
    // Message sizes: one observation per call; an info reply is not empty, its request is.
    let sent = "grpc_server_call_sent_total_compressed_message_size_bytes";
    let rcvd = "grpc_server_call_rcvd_total_compressed_message_size_bytes";
    assert_eq!(value(&samples, &format!("{sent}_count"), &[("grpc_method", INFO)]), infos);
    assert!(value(&samples, &format!("{sent}_sum"), &[("grpc_method", INFO)]) > infos * 20.0);
    assert_eq!(value(&samples, &format!("{rcvd}_count"), &[("grpc_method", INFO)]), infos);
    assert_eq!(value(&samples, &format!("{rcvd}_sum"), &[("grpc_method", INFO)]), 0.0);
    // Nothing in flight between scrapes (the scrape is not a gRPC call).
    assert_eq!(value(&samples, "grpc_helper_server_calls_in_flight", &[]), 0.0);

    runtime.block_on(async {
        let client = RpcClient::builder("127.0.0.1", port).name("metrics").connect_lazy().unwrap();
        client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
    });
}

#[test]
fn metrics_port_serves_only_its_path() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let server = grpc_helper::RpcServer::builder()
            .port(0)
            .ip("127.0.0.1".parse().unwrap())
            .metrics_port(0)
            .install_logging(false)
            .debug_signal(false)
            .start()
            .await
            .unwrap();
        let addr = server.metrics_addr().unwrap();
        assert_ne!(addr.port(), 0);
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply)).await.unwrap().unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert!(reply.contains("metrics are at /metrics"), "{reply}");
        server.shutdown().await;
    });
}

/// The client's A66 instruments, read from a Prometheus registry fed by its meter provider.
struct ClientSamples(Vec<prometheus::proto::MetricFamily>);

impl ClientSamples {
    /// The counter value, or the histogram's count, of `family` with these labels (0: none).
    fn count(&self, family: &str, labels: &[(&str, &str)]) -> u64 {
        let counter = family.ends_with("_total");
        let Some(family) = self.0.iter().find(|f| f.name() == family) else { return 0 };
        family
            .get_metric()
            .iter()
            .filter(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
            .map(|m| if counter { m.get_counter().get_value() as u64 } else { m.get_histogram().get_sample_count() })
            .sum()
    }
}

/// A meter provider whose metrics land in a Prometheus registry, read with `gather()`.
fn prometheus_provider() -> (prometheus::Registry, opentelemetry_sdk::metrics::SdkMeterProvider) {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter().with_registry(registry.clone()).build().unwrap();
    (registry, opentelemetry_sdk::metrics::SdkMeterProvider::builder().with_reader(exporter).build())
}

#[test]
fn client_metrics_count_one_call_and_every_attempt_of_a_retried_call() {
    let (registry, provider) = prometheus_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    runtime.block_on(async {
        let client = RpcClient::builder("127.0.0.1", port).meter_provider(&provider).connect_lazy().unwrap();
        // No server yet: the call is retried until one listens on the port.
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.server_service().info(Filter::default()).await }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let server = grpc_helper::RpcServer::builder()
            .port(port)
            .ip("127.0.0.1".parse().unwrap())
            .install_logging(false)
            .debug_signal(false)
            .start()
            .await
            .unwrap();
        call.await.unwrap().expect("the retried call succeeds once the server listens");
        // Two more plain calls, and one that fails on the wire.
        client.server_service().info(Filter::default()).await.unwrap();
        client.server_service().info(Filter::default()).await.unwrap();
        let mut raw = tonic::client::Grpc::new(client.channel::<grpc_helper::api::ServerApiVersion>());
        raw.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/no.such.Service/nothing");
        let codec = tonic_prost::ProstCodec::<grpc_helper::api::Empty, grpc_helper::api::Empty>::default();
        raw.unary(tonic::Request::new(grpc_helper::api::Empty {}), path, codec).await.unwrap_err();
        server.shutdown().await;
        // A client that does not retry, with no server: one call, one attempt, UNAVAILABLE.
        let once = RpcClient::builder("127.0.0.1", port).meter_provider(&provider).no_retry().connect_lazy().unwrap();
        once.server_service().info(Filter::default()).await.unwrap_err();
    });
    let samples = ClientSamples(registry.gather());
    let names: Vec<&str> = samples.0.iter().map(|f| f.name()).collect();
    let info = [("grpc_method", INFO), ("grpc_target", target.as_str())];
    let with = |status: &'static str| [info[0], info[1], ("grpc_status", status)];
    let calls = "grpc_client_call_duration_seconds";
    let attempts = "grpc_client_attempt_duration_seconds";
    let started = "grpc_client_attempt_started_total";
    assert_eq!(samples.count(calls, &with("OK")), 3, "one call each, the retried one included: {names:?}");
    assert_eq!(samples.count(calls, &with("UNAVAILABLE")), 1, "the call that did not retry");
    assert_eq!(samples.count(attempts, &with("OK")), 3);
    let retried = samples.count(attempts, &with("UNAVAILABLE"));
    assert!(retried >= 2, "the failed attempts of the retried call, and the one of the no-retry call: {retried}");
    assert_eq!(samples.count(started, &info), retried + 3, "every attempt started is counted once it ends");
    let unknown = [("grpc_method", "no.such.Service/nothing"), ("grpc_status", "UNIMPLEMENTED")];
    assert_eq!(samples.count(calls, &unknown), 1, "a wire error has its status: {names:?}");
}

#[test]
fn proxy_forwards_and_events_queues_are_measured() {
    use grpc_helper::api::event_service_client::EventServiceClient;
    use grpc_helper::api::{Event, EventApiVersion, EventFilter, EventInterrupt};
    use grpc_helper_tests::api::SampleApiVersion;
    use grpc_helper_tests::{EventLog, Sample, client_of, register_sample_backend, sample_stub, server_builder};

    let (registry, provider) = prometheus_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (backend_addr, samples) = runtime.block_on(async {
        let workspace = tempfile::tempdir().unwrap();
        // Queues of 60 bytes: a retained queue drops the oldest of 10 events of ~20 bytes.
        let items = [("rpc-client-timeout", "1"), ("rpc-event-queue-bytes", "60")];
        let main = server_builder()
            .folders(grpc_helper::Folders::default().workspace(workspace.path()))
            .proxy::<SampleApiVersion>("sample", "SampleService")
            .with_events()
            .cli_config(items.map(|(k, v)| (k.to_owned(), v.to_owned())))
            .meter_provider(&provider)
            .install_logging(false)
            .start()
            .await
            .unwrap();
        let stub = || sample_stub(&client_of(&main));
        let unregistered = grpc_helper::RpcError::from(stub().method1(grpc_helper::api::Empty {}).await.unwrap_err());
        assert_eq!(unregistered.result_code(), Some(grpc_helper::ResultCode::ErrorProxyUnregistered), "{unregistered}");
        let backend =
            server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap();
        register_sample_backend(&main, &backend).await;
        stub().method1(grpc_helper::api::Empty {}).await.unwrap();
        stub().method1(grpc_helper::api::Empty {}).await.unwrap();

        let mut events = EventServiceClient::new(client_of(&main).channel::<EventApiVersion>());
        let mut listening = events.listen(EventFilter::default()).await.unwrap().into_inner();
        listening.message().await.unwrap();
        let mut retained = events.listen(EventFilter::default()).await.unwrap().into_inner();
        let id = retained.message().await.unwrap().unwrap().client_id;
        events.interrupt(EventInterrupt { client_id: id }).await.unwrap();
        for n in 0..10 {
            events.send(Event { name: format!("metrics-event-{n}"), properties: vec![] }).await.unwrap();
        }
        // The listening queue is read up to date: what stays pending is the retained one's.
        for _ in 0..10 {
            listening.message().await.unwrap();
        }
        let samples = ClientSamples(registry.gather());
        let addr = format!("127.0.0.1:{}", backend.local_addr().port());
        backend.shutdown().await;
        main.shutdown().await;
        (addr, samples)
    });
    let names: Vec<&str> = samples.0.iter().map(|f| f.name()).collect();
    let forwards = "grpc_helper_proxy_forwards_total";
    let method = ("grpc_method", "SampleService/method1");
    let to_backend = [method, ("grpc_helper_backend", backend_addr.as_str()), ("grpc_helper_result_code", "OK")];
    assert_eq!(samples.count(forwards, &to_backend), 2, "{names:?}");
    // Before any backend answered it, the path was not known to be a method: `other`.
    let other = ("grpc_method", "other");
    let nowhere = [other, ("grpc_helper_backend", "none"), ("grpc_helper_result_code", "ERROR_PROXY_UNREGISTERED")];
    assert_eq!(samples.count(forwards, &nowhere), 1);

    let gauge = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let family = samples.0.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("no {name} in {names:?}"));
        let matching = family
            .get_metric()
            .iter()
            .filter(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)));
        matching
            .map(|m| if name.ends_with("_total") { m.get_counter().get_value() } else { m.get_gauge().get_value() })
            .sum()
    };
    assert_eq!(gauge("grpc_helper_events_queues", &[("grpc_helper_state", "listening")]), 1.0);
    assert_eq!(gauge("grpc_helper_events_queues", &[("grpc_helper_state", "retained")]), 1.0);
    let (pending, dropped) = (gauge("grpc_helper_events_pending", &[]), gauge("grpc_helper_events_dropped_total", &[]));
    assert!(
        pending >= 1.0 && dropped >= 1.0,
        "the retained queue holds some and dropped the oldest: {pending} {dropped}"
    );
    assert_eq!(pending + dropped, 10.0, "every event sent is either pending in the retained queue or dropped from it");

    // The bytes received: the 10 events' messages, without their 5-byte prefixes.
    let rcvd = samples.0.iter().find(|f| f.name() == "grpc_server_call_rcvd_total_compressed_message_size_bytes");
    let sends = rcvd
        .expect("the rcvd histogram")
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.name() == "grpc_method" && l.value() == "EventService/send"));
    let expected: usize = (0..10)
        .map(|n| prost::Message::encoded_len(&Event { name: format!("metrics-event-{n}"), properties: vec![] }))
        .sum();
    let histogram = sends.expect("EventService/send is measured").get_histogram();
    assert_eq!(histogram.get_sample_count(), 10);
    assert_eq!(histogram.get_sample_sum(), expected as f64, "message bytes received by the 10 sends");
}
