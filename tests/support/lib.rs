//! Test support: the sample API, managers with observable behaviour, and helpers that start
//! servers on loopback port 0 and bound every test in time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use grpc_helper::api::{Empty, Filter, Result as RpcResult, ResultCode, ResultStatus};
use grpc_helper::{
    CallContext, ManagerContext, ReplyStream, RpcChannel, RpcClient, RpcError, RpcServer, RpcServerBuilder, Streaming,
    rpc_manager,
};
use parking_lot::Mutex;
use tokio_stream::StreamExt;

pub mod nats;
pub mod process;
pub mod raw_h2;

/// Messages and stubs of `proto/sample/sample.proto`.
#[allow(missing_docs, clippy::all)]
pub mod api {
    grpc_helper::include_protos!();
}

use api::{AnotherApiVersion, PlainReply, SampleApiVersion, SampleRequest, SampleResponse};

/// An ordered record of what managers did (hooks, calls), shared with the test.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<String>>>);

impl EventLog {
    /// Appends one event.
    pub fn push(&self, event: impl Into<String>) {
        self.0.lock().push(event.into());
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

/// The sample service, with behaviour chosen by the request (see each method).
pub struct Sample {
    /// Hook and call record.
    pub log: EventLog,
    /// How long `long_method` sleeps.
    pub long_delay: Duration,
}

impl Sample {
    /// A sample manager whose `long_method` sleeps `long_delay`.
    pub fn new(log: &EventLog, long_delay: Duration) -> Self {
        Self { log: log.clone(), long_delay }
    }
}

/// An in-band status message.
pub fn status(msg: impl Into<String>) -> ResultStatus {
    ResultStatus { r: Some(RpcResult { code: 0, msg: msg.into(), stack: String::new() }) }
}

#[rpc_manager(service = "sample", version = api::SampleApiVersion)]
impl Sample {
    /// Counts the services through the auto-client, unless the server is shutting down.
    async fn method1(&self, _request: Empty, cx: CallContext) -> Result<ResultStatus, RpcError> {
        if cx.is_shutting_down() {
            return Ok(status("Found info count: None"));
        }
        let info = cx.client().server_service().info(Filter::default()).await?.into_inner();
        Ok(status(format!("Found info count: {}", info.items.len())))
    }

    /// Always fails with code 12, as the original's sample.
    async fn method2(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        Err(RpcError::new(ResultCode::ErrorApiServerTooOld, "sample error"))
    }

    /// `caller` → the caller metadata; `custom` → in-band code 101; `fail` → an expected error
    /// (invalid parameter); `broken` → a failure (request failed);
    /// `log:<text>` → logs `<text>` at debug and info (target `sample_chatty`); `levels:<text>`
    /// the same with target `sample_levels` (for tests changing levels); else echo.
    async fn method4(&self, request: SampleRequest, cx: CallContext) -> Result<SampleResponse, RpcError> {
        if let Some(text) = request.foo.strip_prefix("log:") {
            tracing::debug!(target: "sample_chatty", "debug says {text}");
            tracing::info!(target: "sample_chatty", "info says {text}");
        }
        if let Some(text) = request.foo.strip_prefix("levels:") {
            tracing::debug!(target: "sample_levels", "debug says {text}");
            tracing::info!(target: "sample_levels", "info says {text}");
        }
        match request.foo.as_str() {
            "caller" => Ok(SampleResponse { r: None, bar: cx.caller().to_string() }),
            "custom" => Ok(SampleResponse {
                r: Some(RpcResult { code: 101, msg: "custom outcome".into(), stack: String::new() }),
                bar: "custom".into(),
            }),
            "fail" => Err(RpcError::new(ResultCode::ErrorParamInvalid, "foo must not be 'fail'")),
            "broken" => Err(RpcError::new(ResultCode::ErrorRequestFailed, "the disk is full")),
            other => Ok(SampleResponse { r: None, bar: other.to_owned() }),
        }
    }

    /// Sleeps `long_delay`, then tells whether shutdown had started meanwhile.
    async fn long_method(&self, _request: Empty, cx: CallContext) -> Result<ResultStatus, RpcError> {
        self.log.push("long_method started");
        tokio::time::sleep(self.long_delay).await;
        Ok(status(format!("shutting down: {}", cx.is_shutting_down())))
    }

    /// A reply type without `r`: errors travel as a gRPC status.
    async fn plain(&self, request: SampleRequest) -> Result<PlainReply, RpcError> {
        match request.foo.as_str() {
            "error" => Err(RpcError::new(ResultCode::ErrorItemUnknown, "no such thing")),
            other => Ok(PlainReply { bar: other.to_owned() }),
        }
    }

    /// Client streaming: concatenates every `foo`.
    async fn s_method1(&self, mut requests: Streaming<SampleRequest>) -> Result<ResultStatus, RpcError> {
        let mut all = String::new();
        while let Some(request) = requests.message().await? {
            all.push_str(&request.foo);
        }
        Ok(status(all))
    }

    /// Server streaming: abc, def, ghi, then an error when `foo` is `error`.
    async fn s_method2(&self, request: SampleRequest) -> Result<ReplyStream<ResultStatus>, RpcError> {
        let mut items: Vec<Result<ResultStatus, RpcError>> = ["abc", "def", "ghi"].map(|s| Ok(status(s))).into();
        if request.foo == "error" {
            items.push(Err(RpcError::new(ResultCode::ErrorParamInvalid, "stream failed after 3 items")));
        }
        Ok(ReplyStream::new(tokio_stream::iter(items)))
    }

    /// Bidirectional echo; a request `error` fails the stream.
    async fn s_method4(&self, requests: Streaming<SampleRequest>) -> Result<ReplyStream<SampleResponse>, RpcError> {
        Ok(ReplyStream::new(requests.map(|request| {
            let request = request?;
            if request.foo == "error" {
                return Err(RpcError::new(ResultCode::ErrorParamInvalid, "echo refused"));
            }
            Ok(SampleResponse { r: None, bar: request.foo })
        })))
    }

    #[on_load]
    async fn load(&self, cx: &ManagerContext) -> Result<(), RpcError> {
        // Proves that the server is already serving when load hooks run.
        let info = cx.client().server_service().info(Filter::default()).await?.into_inner();
        self.log.push(format!("load sample ({} services up)", info.items.len()));
        Ok(())
    }

    #[on_shutdown]
    async fn shutdown(&self) {
        self.log.push("shutdown sample");
    }
}

/// A second manager; its load hook can be told to fail.
pub struct Another {
    /// Hook record.
    pub log: EventLog,
    /// Makes the load hook return this error.
    pub fail_load: Option<RpcError>,
}

#[rpc_manager(service = "another", version = AnotherApiVersion, grpc = api::another_sample_service_server::AnotherSampleService)]
impl Another {
    async fn method10(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        Ok(status("another"))
    }

    #[on_load]
    async fn load(&self) -> Result<(), RpcError> {
        self.log.push("load another");
        match &self.fail_load {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    #[on_shutdown]
    async fn shutdown(&self, cx: &ManagerContext) {
        self.log.push(format!("shutdown {}", cx.service()));
    }
}

/// A server builder on a free loopback port with a short grace period.
pub fn server_builder() -> RpcServerBuilder {
    RpcServer::builder().ip("127.0.0.1".parse().unwrap()).port(0).shutdown_grace(Duration::from_secs(5))
}

/// Starts a server hosting the sample manager.
pub async fn start_sample(log: &EventLog) -> RpcServer {
    server_builder().manager(Sample::new(log, Duration::from_millis(500))).start().await.expect("server starts")
}

/// A client of `server` with a short retry window.
pub fn client_of(server: &RpcServer) -> RpcClient {
    RpcClient::builder("127.0.0.1", server.local_addr().port())
        .name("test-client")
        .timeout(Duration::from_secs(5))
        .connect_lazy()
        .unwrap()
}

/// A stub of the sample service at its current API version.
pub fn sample_stub(client: &RpcClient) -> api::sample_service_client::SampleServiceClient<RpcChannel> {
    api::sample_service_client::SampleServiceClient::new(client.channel::<SampleApiVersion>())
}

/// Registers `backend` (on 127.0.0.1) with `main` as the backend of its `sample` proxy.
pub async fn register_sample_backend(main: &RpcServer, backend: &RpcServer) {
    let registration = grpc_helper::api::ProxyRegisterRequest {
        names: vec!["sample".into()],
        version: "1".into(),
        host: "127.0.0.1".into(),
        port: u32::from(backend.local_addr().port()),
    };
    client_of(main).server_service().proxy_register(registration).await.unwrap();
}

/// Starts `long_method` on `server` and returns once the manager is running it.
pub async fn start_long_call(
    server: &RpcServer,
    log: &EventLog,
) -> tokio::task::JoinHandle<Result<tonic::Response<ResultStatus>, tonic::Status>> {
    let mut stub = sample_stub(&client_of(server));
    let call = tokio::spawn(async move { stub.long_method(Empty {}).await });
    while !log.events().iter().any(|e| e == "long_method started") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    call
}

/// A loopback port that was free a moment ago, for a server process that must be told its port.
///
/// It is taken below the kernel's ephemeral range: a port from `bind(0)` is released at once, and
/// the kernel may then hand it to any test's outgoing connection before the server binds it.
/// Ports are walked from a per-process offset, so no two calls of one test binary share one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};

    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| low > LOW + 1_000)
        .unwrap_or(32_768);
    let span = ephemeral_low - LOW;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).expect("ports are below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {ephemeral_low}")
}

/// `info` answers within a second: the server still serves everyone else.
pub async fn still_serving(server: &RpcServer) {
    let started = std::time::Instant::now();
    client_of(server).server_service().info(grpc_helper::api::Filter::default()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "info took {:?}", started.elapsed());
}

/// The streaming shapes of the sample service through `stub`: a client stream (`s_method1`), a
/// server stream (`s_method2`) and a bidirectional stream in lockstep (`s_method4`). The first
/// request goes before the call is answered: grpcio sends reply headers with the first reply.
pub async fn every_streaming_shape(stub: &mut api::sample_service_client::SampleServiceClient<RpcChannel>) {
    let uploads = tokio_stream::iter(["abc", "def", "ghi"].map(|part| SampleRequest { foo: part.into() }));
    assert_eq!(stub.s_method1(uploads).await.unwrap().into_inner().r.unwrap().msg, "abcdefghi");
    let mut parts = stub.s_method2(SampleRequest::default()).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(part) = parts.message().await.unwrap() {
        got.push(part.r.unwrap().msg);
    }
    assert_eq!(got, ["abc", "def", "ghi"]);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(SampleRequest { foo: "one".into() }).await.unwrap();
    let mut echoes = stub.s_method4(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert_eq!(echoes.message().await.unwrap().unwrap().bar, "one");
    for word in ["two", "three"] {
        tx.send(SampleRequest { foo: word.into() }).await.unwrap();
        assert_eq!(echoes.message().await.unwrap().unwrap().bar, word);
    }
    drop(tx);
    assert!(echoes.message().await.unwrap().is_none());
}

/// A normal call of the sample service (`method4`) still gets its real reply.
pub async fn sample_still_answers(server: &RpcServer) {
    let reply = sample_stub(&client_of(server)).method4(SampleRequest { foo: "ok".into() }).await.unwrap();
    assert_eq!(reply.into_inner().bar, "ok");
}

/// Taken by a test that loads the machine (floods, thousands of calls, bounds on memory or
/// latency): such tests never overlap, while the light ones run beside them (the test binaries
/// run 8 tests at a time, see `.cargo/config.toml`). Released when dropped, by a failed test too.
pub fn heavy() -> Heavy {
    let mut taken = HEAVY.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while *taken {
        taken = HEAVY.1.wait(taken).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    *taken = true;
    Heavy(())
}

static HEAVY: (std::sync::Mutex<bool>, std::sync::Condvar) = (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// The machine, held by one heavy test (see [`heavy`]).
pub struct Heavy(());

impl Drop for Heavy {
    fn drop(&mut self) {
        *HEAVY.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        HEAVY.1.notify_one();
    }
}

/// The time limit of a test body (see [`bounded`]): generous, it only stops a hung test.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body with a hard time limit, so that no test can hang CI.
pub async fn bounded<F: Future>(limit: Duration, body: F) -> F::Output {
    tokio::time::timeout(limit, body).await.expect("test exceeded its time limit")
}

/// A filter naming `names` (config items, loggers, services).
pub fn names(names: &[&str]) -> Filter {
    Filter { names: names.iter().map(|n| n.to_string()).collect(), ignore_unknown: false }
}

/// An event with no properties.
pub fn event(name: &str) -> grpc_helper::api::Event {
    grpc_helper::api::Event { name: name.into(), properties: Vec::new() }
}

/// A stub of the `events` service of `server`.
pub fn events_stub(server: &RpcServer) -> grpc_helper::api::event_service_client::EventServiceClient<RpcChannel> {
    grpc_helper::api::event_service_client::EventServiceClient::new(
        client_of(server).channel::<grpc_helper::api::EventApiVersion>(),
    )
}

/// Runs `body` (bounded by [`LIMIT`]) with every record of this thread at `level` and above
/// captured, and returns the captured text. The test's runtime runs on this thread, so do the
/// servers and clients it starts: the capture holds their records (those logged while a server
/// starts, before its log files are open, too), and none of other tests' servers (which the root
/// log files of this process's servers all get, for records outside a server's span).
pub async fn captured<F: Future<Output = ()>>(level: tracing::Level, body: F) -> String {
    let text = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let text = Arc::clone(&text);
        move || Captured(Arc::clone(&text))
    };
    let subscriber = tracing_subscriber::fmt().with_max_level(level).with_ansi(false).with_writer(writer).finish();
    let _default = tracing::subscriber::set_default(subscriber);
    bounded(LIMIT, body).await;
    String::from_utf8(text.lock().clone()).unwrap()
}

/// A writer into a shared buffer.
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Resident memory, from `/proc/<pid>/status`.
pub mod memory {
    /// This process's resident memory (the servers under test run in it), in MiB.
    pub fn this_process_mib() -> u64 {
        of_process_kib("self").0 / 1024
    }

    /// A process's resident memory in KiB: now (`VmRSS`) and at its peak (`VmHWM`).
    pub fn of_process_kib(pid: impl std::fmt::Display) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// The result code of a failed call.
pub fn code_of(status: tonic::Status) -> i32 {
    RpcError::from(status).code()
}

/// Counts of one load scenario (reliability tests print them as a summary line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Calls issued.
    pub sent: usize,
    /// Calls answered with their real reply.
    pub succeeded: usize,
    /// Calls that got an error status, other than `failed_in_doubt`.
    pub failed: usize,
    /// Calls cut after the server had started to answer (delivered, so not retried): they end
    /// with UNAVAILABLE saying that the call may have run. Only calls in flight at a crash.
    pub failed_in_doubt: usize,
    /// Calls with no outcome at all within the test's bound (must be 0).
    pub lost: usize,
    /// Succeeded calls that may have run twice: in flight when the server was killed, retried.
    pub in_doubt: usize,
}

impl Tally {
    /// Prints `SUMMARY <scenario>: sent .. succeeded .. failed .. lost .. in doubt ..` on stderr.
    pub fn report(&self, scenario: &str) {
        let Self { sent, succeeded, failed, failed_in_doubt, lost, in_doubt } = self;
        eprintln!(
            "SUMMARY {scenario}: sent {sent} succeeded {succeeded} failed {failed} lost {lost} in doubt {in_doubt} \
             (succeeded after a retry), {failed_in_doubt} (cut mid-reply)"
        );
    }
}
