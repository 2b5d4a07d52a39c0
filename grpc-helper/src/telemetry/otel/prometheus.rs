//! The optional Prometheus text endpoint (`metrics_port`): `GET /metrics` over HTTP/1.1 on the
//! server's own IP, with limits of its own, since anyone who reaches the port may scrape it:
//! at most [`MAX_CONNECTIONS`] at once, request headers within [`HEADER_READ_TIMEOUT`], and a
//! pause after a failed `accept` (no spinning when the process is out of descriptors).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::Meter;

use super::SCOPE;
use crate::RpcError;
use crate::api::ResultCode;

/// Scrapes served at once; a connection past them is closed at once.
const MAX_CONNECTIONS: usize = 16;
/// A client that has not sent its request headers by then is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection kept open longer than this (idle keep-alive included) is closed.
const CONNECTION_LIMIT: Duration = Duration::from_secs(120);

/// A MeterProvider of our own whose metrics are served as Prometheus text on `addr`.
pub(crate) struct PrometheusEndpoint {
    pub(crate) meter: Meter,
    _provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    pub(crate) addr: SocketAddr,
}

impl PrometheusEndpoint {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Binds `addr` and serves `GET /metrics` there in a background task.
    pub(crate) async fn start(addr: SocketAddr) -> Result<Self, RpcError> {
        use opentelemetry::metrics::MeterProvider as _;
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| RpcError::new(ResultCode::Error, format!("Cannot set up the Prometheus exporter: {e}")))?;
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().with_reader(exporter).build();
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            RpcError::new(ResultCode::ErrorPortBusy, format!("Cannot listen for metrics on {addr}: {e}"))
        })?;
        let addr = listener.local_addr().map_err(|e| RpcError::new(ResultCode::Error, e.to_string()))?;
        tokio::spawn(serve_metrics(listener, registry));
        Ok(Self { meter: provider.meter(SCOPE), _provider: provider, addr })
    }
}

async fn serve_metrics(listener: tokio::net::TcpListener, registry: prometheus::Registry) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut pause = Duration::from_millis(10);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or memory): wait for some to be freed, longer each time.
                tracing::warn!("metrics port: accept failed ({e}); pausing {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        pause = Duration::from_millis(10);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(scrape(request.uri().path(), &registry)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, service);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
            drop(slot);
        });
    }
}

fn scrape(path: &str, registry: &prometheus::Registry) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    use prometheus::Encoder as _;
    let text = |status: u16, body: Vec<u8>| {
        http::Response::builder()
            .status(status)
            .header("content-type", prometheus::TEXT_FORMAT)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("valid response")
    };
    if path != "/metrics" {
        return text(404, b"Not found: metrics are at /metrics\n".to_vec());
    }
    let mut out = Vec::new();
    match prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        Ok(()) => text(200, out),
        Err(e) => text(500, format!("Cannot encode the metrics: {e}\n").into_bytes()),
    }
}

/// The instruments the builder asked for, and the Prometheus endpoint if any (on the server's IP).
pub(crate) async fn start(
    options: super::MetricsOptions,
    server: SocketAddr,
    events: Option<&Arc<dyn crate::events::EventQueues>>,
) -> Result<(Option<PrometheusEndpoint>, Option<Arc<super::ServerMetrics>>), RpcError> {
    match options {
        super::MetricsOptions::Off => Ok((None, None)),
        super::MetricsOptions::Meter(meter) => Ok((None, Some(Arc::new(super::ServerMetrics::new(&meter, events))))),
        super::MetricsOptions::Prometheus(port) => {
            let endpoint = PrometheusEndpoint::start(SocketAddr::new(server.ip(), port)).await?;
            let metrics = Arc::new(super::ServerMetrics::new(&endpoint.meter, events));
            crate::logs::notice(tracing::Level::INFO, &format!("Metrics served at http://{}/metrics", endpoint.addr));
            Ok((Some(endpoint), Some(metrics)))
        }
    }
}
