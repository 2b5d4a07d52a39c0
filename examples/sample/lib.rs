//! Shared pieces of the examples: the sample API (generated from `proto/sample/sample.proto`),
//! the sample manager served by `examples/server.rs`, and the client walk-through used by
//! `examples/client.rs` and `examples/sample/demo.rs`.

use std::fmt::Write as _;
use std::time::Duration;

use grpc_helper::api::{Empty, Filter, ResultStatus};
use grpc_helper::config::{ConfigItem, Validator};
use grpc_helper::{CallContext, ManagerContext, ReplyStream, RpcClient, RpcError, Streaming, rpc_manager};
use tokio_stream::StreamExt;

/// Messages and stubs of the sample service.
#[allow(missing_docs, clippy::all)]
pub mod api {
    grpc_helper::include_protos!();
}

/// The sample API's descriptor set, for server reflection
/// (`RpcServerBuilder::file_descriptor_set`).
pub const FILE_DESCRIPTOR_SET: &[u8] = grpc_helper::include_descriptor_set!();

use api::sample_service_client::SampleServiceClient;
use api::{SampleApiVersion, SampleRequest, SampleResponse};

/// The greeting of `method4`: a user item, changeable at run time through the `config` service.
pub const GREETING: ConfigItem = ConfigItem::new("sample-greeting", "Greeting used by method4", "Hello");
/// How many parts `s_method2` streams.
pub const PARTS: ConfigItem =
    ConfigItem::new("sample-parts", "Number of parts streamed by s_method2", "3").validator(Validator::PosInt);
/// The sample manager's configuration items (register with `RpcServerBuilder::user_items`).
pub const SAMPLE_ITEMS: &[ConfigItem] = &[GREETING, PARTS];

/// A small versioned service: greetings, an in-band error, and every streaming shape.
#[derive(Default)]
pub struct SampleManager;

#[rpc_manager(service = "sample", version = api::SampleApiVersion)]
impl SampleManager {
    /// Counts the services of this server, through the manager's auto-client.
    async fn method1(&self, _request: Empty, cx: CallContext) -> Result<ResultStatus, RpcError> {
        let info = cx.client().server_service().info(Filter::default()).await?.into_inner();
        Ok(status(format!("Found info count: {}", info.items.len())))
    }

    /// Always fails: shows an error travelling in band.
    async fn method2(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        Err(RpcError::new(grpc_helper::ResultCode::ErrorParamInvalid, "sample error"))
    }

    /// Greets the caller by name, with the configured greeting.
    async fn method4(&self, request: SampleRequest, cx: CallContext) -> Result<SampleResponse, RpcError> {
        tracing::info!("method4 called by {}", cx.caller());
        let greeting = cx.config().get(&GREETING);
        Ok(SampleResponse { r: None, bar: format!("{}, {}!", greeting.as_str(), request.foo) })
    }

    /// Takes a second, so a client can watch it being served.
    async fn long_method(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(status("done".to_owned()))
    }

    /// Client streaming: concatenates every `foo`.
    async fn s_method1(&self, mut requests: Streaming<SampleRequest>) -> Result<ResultStatus, RpcError> {
        let mut all = String::new();
        while let Some(request) = requests.message().await? {
            all.push_str(&request.foo);
        }
        Ok(status(all))
    }

    /// Server streaming: `sample-parts` parts.
    async fn s_method2(&self, _request: SampleRequest, cx: CallContext) -> Result<ReplyStream<ResultStatus>, RpcError> {
        let parts = cx.config().get(&PARTS).as_int()?;
        Ok(ReplyStream::from_iter((1..=parts).map(|n| status(format!("part{n}")))))
    }

    /// Bidirectional: echoes each request as it arrives.
    async fn s_method4(&self, requests: Streaming<SampleRequest>) -> Result<ReplyStream<SampleResponse>, RpcError> {
        Ok(ReplyStream::new(requests.map(|request| {
            let request = request.map_err(RpcError::from)?;
            Ok(SampleResponse { r: None, bar: request.foo })
        })))
    }

    #[on_load]
    async fn load(&self, cx: &ManagerContext) {
        tracing::info!("{} manager loaded", cx.service());
    }

    #[on_shutdown]
    async fn shutdown(&self, cx: &ManagerContext) {
        tracing::info!("{} manager shutting down", cx.service());
    }
}

/// Logging of the example servers: grpc-helper's layer (run-time levels, log files in the
/// workspace) plus the console.
pub fn init_logging() {
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry().with(grpc_helper::logs::layer()).with(tracing_subscriber::fmt::layer()).init();
}

fn status(msg: String) -> ResultStatus {
    ResultStatus { r: Some(grpc_helper::api::Result { code: 0, msg, stack: String::new() }) }
}

/// Describes any grpc-helper server (Rust or Python): its services, then a tour of the sample
/// service when it is hosted.
///
/// # Errors
/// The first failed call (after the client's retries).
pub async fn describe(client: &RpcClient) -> Result<String, RpcError> {
    let mut out = String::new();
    let info = client.server_service().info(Filter::default()).await?.into_inner();
    let _ = writeln!(out, "{:<10} {:<28} {:>7} {:>9} {:>6}", "SERVICE", "VERSION", "CURRENT", "SUPPORTED", "PROXY");
    for s in &info.items {
        let _ = writeln!(
            out,
            "{:<10} {:<28} {:>7} {:>9} {:>6}",
            s.name, s.version, s.current_api_version, s.supported_api_version, s.is_proxy
        );
    }
    if !info.items.iter().any(|s| s.name == "sample") {
        let _ = writeln!(out, "(no sample service here)");
        return Ok(out);
    }
    let mut sample = SampleServiceClient::new(client.channel::<SampleApiVersion>());
    let reply = sample.method4(SampleRequest { foo: "grpc-helper".into() }).await?.into_inner();
    let _ = writeln!(out, "method4: {}", reply.bar);
    let counted = sample.method1(Empty {}).await?.into_inner();
    let _ = writeln!(out, "method1: {}", counted.r.map(|r| r.msg).unwrap_or_default());
    match sample.method2(Empty {}).await {
        Ok(_) => out.push_str("method2: unexpected success\n"),
        Err(status) => {
            let e = RpcError::from(status);
            let _ = writeln!(out, "method2: error in band, as expected: {e}");
        }
    }
    let mut parts = sample.s_method2(SampleRequest::default()).await?.into_inner();
    let mut streamed = Vec::new();
    while let Some(part) = parts.message().await? {
        streamed.push(part.r.map(|r| r.msg).unwrap_or_default());
    }
    let _ = writeln!(out, "s_method2: {}", streamed.join(" "));
    let uploads = tokio_stream::iter(["a", "b", "c"].map(|part| SampleRequest { foo: part.into() }));
    let joined = sample.s_method1(uploads).await?.into_inner();
    let _ = writeln!(out, "s_method1: {}", joined.r.map(|r| r.msg).unwrap_or_default());
    Ok(out)
}

/// Shows the `config` and `log` services: lists the user items, changes the greeting, greets
/// again, puts the default back, then raises and resets a logger level.
///
/// # Errors
/// The first failed call.
pub async fn tour_operations(client: &RpcClient) -> Result<String, RpcError> {
    use grpc_helper::api::{ConfigItemUpdate, ConfigUpdate};

    let mut out = String::new();
    let mut config = client.config_service();
    for item in config.get(Filter::default()).await?.into_inner().items {
        let _ = writeln!(
            out,
            "config {} = {:?} (default {:?}): {}",
            item.name, item.value, item.default_value, item.description
        );
    }
    let update = ConfigItemUpdate { name: GREETING.name().into(), value: "Good morning".into() };
    config.set(ConfigUpdate { items: vec![update], ignore_unknown: false }).await?;
    let mut sample = SampleServiceClient::new(client.channel::<SampleApiVersion>());
    let reply = sample.method4(SampleRequest { foo: "config".into() }).await?.into_inner();
    let _ = writeln!(out, "after config set: method4 says {:?}", reply.bar);
    let bad = ConfigItemUpdate { name: PARTS.name().into(), value: "zero".into() };
    if let Err(status) = config.set(ConfigUpdate { items: vec![bad], ignore_unknown: false }).await {
        let _ = writeln!(out, "refused: {}", RpcError::from(status));
    }
    config.reset(Filter { names: vec![GREETING.name().into()], ignore_unknown: false }).await?;
    let reply = sample.method4(SampleRequest { foo: "config".into() }).await?.into_inner();
    let _ = writeln!(out, "after config reset: method4 says {:?}", reply.bar);

    // Logger levels: a logger is a tracing target ("" = root); changes apply at once.
    use grpc_helper::api::{LoggerConfig, LoggerLevel, LoggerUpdate};
    let mut log = client.logger_service();
    let target = "grpc_helper_examples";
    let debug = LoggerConfig { name: target.into(), enabled: true, level: LoggerLevel::LvlDebug as i32 };
    let set = log.set(LoggerUpdate { items: vec![debug] }).await?.into_inner();
    let _ = writeln!(out, "logger {target} set to {:?}", LoggerLevel::try_from(set.items[0].level).unwrap_or_default());
    let reset = log.reset(Filter { names: vec![target.into()], ignore_unknown: false }).await?.into_inner();
    let _ = writeln!(
        out,
        "logger {target} reset to {:?} (inherits the root)",
        LoggerLevel::try_from(reset.items[0].level).unwrap_or_default()
    );
    Ok(out)
}
