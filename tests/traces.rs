//! W3C trace context end to end (feature `otel`): with a `tracing-opentelemetry` layer and an
//! in-memory span exporter, a call from a client span through a proxying main server to its
//! backend, whose manager calls its own server through its auto-client, is one trace whose
//! spans are linked parent to child.
//!
//! One test in this binary: the subscriber is process-wide (servers run on runtime threads).

use std::time::Duration;

use grpc_helper::api::Empty;
use grpc_helper::{Folders, RpcServer};
use grpc_helper_tests::api::SampleApiVersion;
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, register_sample_backend, sample_stub, server_builder};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;

fn find<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name:?} among {names:?}"))
}

#[test]
fn one_trace_links_client_proxy_backend_and_the_backends_own_call() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    // As the README says to: INFO (h2's own spans are DEBUG and TRACE), without the managers'
    // server-long `rpc` spans.
    let filter = Targets::new().with_default(LevelFilter::INFO).with_target("grpc_helper::manager", LevelFilter::OFF);
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("traces-test")).with_filter(filter);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bounded(Duration::from_secs(60), async {
        let workspace = tempfile::tempdir().unwrap();
        let main = server_builder()
            .folders(Folders::default().workspace(workspace.path()))
            .proxy::<SampleApiVersion>("sample", "SampleService")
            .install_logging(false)
            .start()
            .await
            .unwrap();
        let backend: RpcServer = server_builder()
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .install_logging(false)
            .start()
            .await
            .unwrap();
        register_sample_backend(&main, &backend).await;
        // An untraced call first: no span of ours without a caller's context.
        sample_stub(&client_of(&main)).method1(Empty {}).await.unwrap();
        let before: Vec<_> = exporter.get_finished_spans().unwrap().into_iter().map(|s| s.name).collect();
        assert!(before.is_empty(), "spans without any trace context: {before:?}");

        let stub = sample_stub(&client_of(&main));
        async move { stub.clone().method1(Empty {}).await.unwrap() }.instrument(tracing::info_span!("client")).await;
        main.shutdown().await;
        backend.shutdown().await;
    }));
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let client = find(&spans, "client");
    let proxy = find(&spans, "proxy SampleService/method1");
    let method1 = find(&spans, "SampleService/method1");
    let info = find(&spans, "RpcServerService/info");
    let trace = client.span_context.trace_id();
    for span in [proxy, method1, info] {
        assert_eq!(span.span_context.trace_id(), trace, "{} is in the client's trace", span.name);
        assert!(span.parent_span_is_remote, "{} continues a context that came over the wire", span.name);
    }
    assert_eq!(client.parent_span_id, SpanId::INVALID, "the client span is the root");
    assert_eq!(proxy.parent_span_id, client.span_context.span_id(), "main's span is the client's child");
    assert_eq!(method1.parent_span_id, proxy.span_context.span_id(), "the backend's span is main's child");
    assert_eq!(info.parent_span_id, method1.span_context.span_id(), "the auto-client's call is method1's child");
    assert_eq!(spans.len(), 4, "one span per hop: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
}
