//! `rpcctl`: the operator's command line for any grpc-helper server, Rust or Python.
//!
//! ```text
//! rpcctl [--host H] [--port P] [--token T] [--tls-ca PEM [--tls-domain D] [--tls-cert PEM --tls-key PEM]] [--json] info [NAME...]
//! rpcctl health [SERVICE]
//! rpcctl config get [NAME...] | set NAME=VALUE... | reset NAME...
//! rpcctl logger get NAME... | set NAME=LEVEL... | reset NAME...     ("" or root = the root logger)
//! rpcctl events listen [NAME...] [--count N] [--client-id ID] | send NAME [KEY=VALUE...] | inspect
//! rpcctl shutdown [--timeout SECONDS]
//! ```
//! Exit code: 0 on success, else the result code of the error (e.g. 30 for an unknown item,
//! 13 when the server cannot be reached), 2 for a usage error.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use grpc_helper::api::{
    ConfigItem, ConfigItemUpdate, ConfigUpdate, Empty, Event, EventFilter, EventProperty, EventQueueStatus, Filter,
    LoggerConfig, LoggerLevel, LoggerUpdate, ServiceInfo, ShutdownRequest,
};
use grpc_helper::{RpcClient, RpcError};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "rpcctl", version, about = "Operate any grpc-helper server (Rust or Python)")]
struct Cli {
    /// Server host.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(short, long, global = true, default_value_t = 54321)]
    port: u16,
    /// Bearer token for guarded RPCs.
    #[arg(long, global = true, env = "RPCCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// TLS: trust servers signed by this CA (PEM); plain text without it.
    #[arg(long, global = true, value_name = "PATH")]
    tls_ca: Option<std::path::PathBuf>,
    /// TLS: the name the server's certificate must be valid for (default: the host).
    #[arg(long, global = true, requires = "tls_ca")]
    tls_domain: Option<String>,
    /// TLS: client certificate (PEM), for servers requiring one.
    #[arg(long, global = true, requires_all = ["tls_ca", "tls_key"], value_name = "PATH")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS: client private key (PEM).
    #[arg(long, global = true, requires = "tls_cert", value_name = "PATH")]
    tls_key: Option<std::path::PathBuf>,
    /// Seconds to keep retrying while the server is unavailable.
    #[arg(long, global = true, default_value_t = 5)]
    retry: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Services of the server (all, or the named ones).
    Info { names: Vec<String> },
    /// grpc.health.v1 status of the server ("" = overall) or of one gRPC service.
    Health {
        #[arg(default_value = "")]
        service: String,
    },
    /// User configuration items.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Logger levels.
    #[command(subcommand)]
    Logger(LoggerCommand),
    /// Events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Shuts the server down (answers at once).
    Shutdown {
        /// Seconds the server waits before reporting stopped (-1: none, 0: its configured delay).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        timeout: i32,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Values (all user items when no name is given).
    Get { names: Vec<String> },
    /// Changes values (all validated before any is applied).
    Set {
        #[arg(required = true, value_parser = pair)]
        values: Vec<(String, String)>,
    },
    /// Back to the defaults.
    Reset {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum LoggerCommand {
    /// Levels of the named loggers ("root" or "" = the root).
    Get {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Sets levels: NAME=DEBUG|INFO|WARNING|ERROR|CRITICAL|OFF.
    Set {
        #[arg(required = true, value_parser = pair)]
        levels: Vec<(String, String)>,
    },
    /// Drops the overrides.
    Reset {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Prints events as they come (all, or the named ones).
    Listen {
        names: Vec<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Resume this queue.
        #[arg(long, default_value_t = 0)]
        client_id: u32,
    },
    /// Sends an event with properties KEY=VALUE.
    Send {
        name: String,
        #[arg(value_parser = pair)]
        properties: Vec<(String, String)>,
    },
    /// Lists the listening queues with their pending and dropped event counts.
    Inspect,
}

fn pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

fn root_name(name: &str) -> String {
    if name == "root" { String::new() } else { name.to_owned() }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if cli.json {
                println!("{}", json!({"error": {"code": error.code(), "message": error.message()}}));
            } else {
                eprintln!("error: {error}");
            }
            ExitCode::from(u8::try_from(error.code()).ok().filter(|c| *c != 0).unwrap_or(1))
        }
    }
}

async fn run(cli: &Cli) -> Result<(), RpcError> {
    let client = connect(cli)?;
    let out = Output { json: cli.json };
    match &cli.command {
        Command::Info { names } => {
            let filter = Filter { names: names.clone(), ignore_unknown: false };
            let items = client.server_service().info(filter).await?.into_inner().items;
            out.services(&items);
        }
        Command::Health { service } => health(&client, service, &out).await?,
        Command::Config(command) => out.config(&config(&client, command).await?),
        Command::Logger(command) => out.loggers(&logger(&client, command).await?),
        Command::Events(EventsCommand::Send { name, properties }) => {
            let properties = properties
                .iter()
                .map(|(name, value)| EventProperty { name: name.clone(), value: value.clone() })
                .collect();
            client.events_service().send(Event { name: name.clone(), properties }).await?;
            out.print(json!({"sent": name}), || format!("sent {name}\n"));
        }
        Command::Events(EventsCommand::Listen { names, count, client_id }) => {
            let filter = EventFilter { names: names.clone(), client_id: *client_id, after: None };
            listen(&client, filter, *count, &out).await?;
        }
        Command::Events(EventsCommand::Inspect) => {
            out.queues(&client.events_service().inspect(Empty {}).await?.into_inner());
        }
        Command::Shutdown { timeout } => {
            client.server_service().shutdown(ShutdownRequest { timeout: *timeout }).await?;
            out.print(json!({"shutdown": true}), || "shutting down\n".to_owned());
        }
    }
    Ok(())
}

/// The client of the server named on the command line, with its token and TLS.
fn connect(cli: &Cli) -> Result<RpcClient, RpcError> {
    let mut builder = RpcClient::builder(&cli.host, cli.port).name("rpcctl").timeout(Duration::from_secs(cli.retry));
    if let Some(token) = &cli.token {
        builder = builder.bearer_token(token);
    }
    if let Some(ca) = &cli.tls_ca {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                RpcError::new(
                    grpc_helper::ResultCode::ErrorParamInvalid,
                    format!("Cannot read {}: {e}", path.display()),
                )
            })
        };
        let mut tls = grpc_helper::tls::ClientTls::new(read(ca)?);
        if let Some(domain) = &cli.tls_domain {
            tls = tls.domain(domain.clone());
        }
        if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
            tls = tls.identity(read(cert)?, read(key)?);
        }
        builder = builder.tls(tls);
    }
    builder.connect_lazy()
}

/// The standard health service's answer for `service` (`""`: the whole server).
async fn health(client: &RpcClient, service: &str, out: &Output) -> Result<(), RpcError> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel_with_version(None));
    let request = tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
    let status = health.check(request).await?.into_inner().status;
    let name = match status {
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    };
    out.print(json!({"service": service, "status": name}), || format!("{name}\n"));
    Ok(())
}

async fn config(client: &RpcClient, command: &ConfigCommand) -> Result<Vec<ConfigItem>, RpcError> {
    let mut config = client.config_service();
    let items = match command {
        ConfigCommand::Get { names } => {
            config.get(Filter { names: names.clone(), ignore_unknown: false }).await?.into_inner().items
        }
        ConfigCommand::Set { values } => {
            let items = values
                .iter()
                .map(|(name, value)| ConfigItemUpdate { name: name.clone(), value: value.clone() })
                .collect();
            config.set(ConfigUpdate { items, ignore_unknown: false }).await?.into_inner().items
        }
        ConfigCommand::Reset { names } => {
            config.reset(Filter { names: names.clone(), ignore_unknown: false }).await?.into_inner().items
        }
    };
    Ok(items)
}

async fn logger(client: &RpcClient, command: &LoggerCommand) -> Result<Vec<LoggerConfig>, RpcError> {
    let mut log = client.logger_service();
    let items = match command {
        LoggerCommand::Get { names } => {
            let names = names.iter().map(|n| root_name(n)).collect();
            log.get(Filter { names, ignore_unknown: false }).await?.into_inner().items
        }
        LoggerCommand::Set { levels } => {
            let items = levels.iter().map(|(name, level)| logger_config(name, level)).collect::<Result<_, _>>()?;
            log.set(LoggerUpdate { items }).await?.into_inner().items
        }
        LoggerCommand::Reset { names } => {
            let names = names.iter().map(|n| root_name(n)).collect();
            log.reset(Filter { names, ignore_unknown: false }).await?.into_inner().items
        }
    };
    Ok(items)
}

/// Prints the events as they come, `count` of them (`None`: until the stream ends).
async fn listen(client: &RpcClient, filter: EventFilter, count: Option<usize>, out: &Output) -> Result<(), RpcError> {
    let mut stream = client.events_service().listen(filter).await?.into_inner();
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let Some(status) = stream.message().await? else { break };
        match status.event {
            None => out.print(json!({"client_id": status.client_id}), || {
                format!("listening as client {}\n", status.client_id)
            }),
            Some(event) if event.name.is_empty() => {}
            Some(event) => {
                seen += 1;
                let props: serde_json::Map<String, Value> =
                    event.properties.iter().map(|p| (p.name.clone(), Value::from(p.value.clone()))).collect();
                out.print(json!({"name": event.name, "properties": props}), || {
                    let text: Vec<String> =
                        event.properties.iter().map(|p| format!("{}={}", p.name, p.value)).collect();
                    format!("{} {}\n", event.name, text.join(" "))
                });
            }
        }
    }
    Ok(())
}

fn logger_config(name: &str, level: &str) -> Result<LoggerConfig, RpcError> {
    let upper = level.to_ascii_uppercase();
    let (enabled, level) = match upper.as_str() {
        "OFF" | "DISABLED" => (false, LoggerLevel::LvlUnknown),
        "DEBUG" => (true, LoggerLevel::LvlDebug),
        "INFO" => (true, LoggerLevel::LvlInfo),
        "WARNING" | "WARN" => (true, LoggerLevel::LvlWarning),
        "ERROR" => (true, LoggerLevel::LvlError),
        "CRITICAL" => (true, LoggerLevel::LvlCritical),
        _ => {
            return Err(RpcError::new(
                grpc_helper::ResultCode::ErrorParamInvalid,
                format!(
                    "Invalid level {level:?} for logger {name:?}: expected DEBUG, INFO, WARNING, ERROR, CRITICAL or OFF"
                ),
            ));
        }
    };
    Ok(LoggerConfig { name: root_name(name), enabled, level: level as i32 })
}

struct Output {
    json: bool,
}

impl Output {
    fn print(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            print!("{}", text());
        }
    }

    fn services(&self, items: &[ServiceInfo]) {
        let rows: Vec<Value> = items
            .iter()
            .map(|s| {
                json!({"name": s.name, "version": s.version, "current_api_version": s.current_api_version,
                       "supported_api_version": s.supported_api_version, "is_proxy": s.is_proxy,
                       "proxy_host": s.proxy_host, "proxy_port": s.proxy_port})
            })
            .collect();
        self.print(Value::from(rows), || {
            let mut text =
                format!("{:<12} {:<30} {:>7} {:>9}  {}\n", "NAME", "VERSION", "CURRENT", "SUPPORTED", "PROXY");
            for s in items {
                let proxy = if s.is_proxy { format!("{}:{}", s.proxy_host, s.proxy_port) } else { "-".into() };
                text += &format!(
                    "{:<12} {:<30} {:>7} {:>9}  {proxy}\n",
                    s.name, s.version, s.current_api_version, s.supported_api_version
                );
            }
            text
        });
    }

    fn config(&self, items: &[ConfigItem]) {
        let rows: Vec<Value> = items
            .iter()
            .map(
                |i| json!({"name": i.name, "value": i.value, "default": i.default_value, "description": i.description}),
            )
            .collect();
        self.print(Value::from(rows), || {
            let mut text = format!("{:<28} {:<20} {:<20} {}\n", "NAME", "VALUE", "DEFAULT", "DESCRIPTION");
            for i in items {
                text += &format!("{:<28} {:<20} {:<20} {}\n", i.name, i.value, i.default_value, i.description);
            }
            text
        });
    }

    /// A Python server only lists ids (no `queues`): its counters show as `-`.
    fn queues(&self, status: &EventQueueStatus) {
        let find = |id: u32| status.queues.iter().find(|q| q.client_id == id);
        let rows: Vec<Value> = status
            .client_ids
            .iter()
            .map(|id| match find(*id) {
                Some(q) => json!({"client_id": id, "listening": q.listening, "pending": q.pending,
                                  "pending_bytes": q.pending_bytes, "dropped": q.dropped, "limit": q.limit,
                                  "limit_bytes": q.limit_bytes}),
                None => json!({"client_id": id}),
            })
            .collect();
        self.print(Value::from(rows), || {
            let mut text = format!(
                "{:>10} {:<9} {:>9} {:>11} {:>9} {:>9} {:>11}\n",
                "CLIENT_ID", "STATE", "PENDING", "BYTES", "DROPPED", "LIMIT", "LIMIT_BYTES"
            );
            for id in &status.client_ids {
                text += &match find(*id) {
                    Some(q) => {
                        let state = if q.listening { "listening" } else { "retained" };
                        format!(
                            "{id:>10} {state:<9} {:>9} {:>11} {:>9} {:>9} {:>11}\n",
                            q.pending, q.pending_bytes, q.dropped, q.limit, q.limit_bytes
                        )
                    }
                    None => format!("{id:>10} {:<9} {:>9} {:>11} {:>9} {:>9} {:>11}\n", "-", "-", "-", "-", "-", "-"),
                };
            }
            text
        });
    }

    fn loggers(&self, items: &[LoggerConfig]) {
        let level = |l: i32| LoggerLevel::try_from(l).map_or("?", |l| l.as_str_name().trim_start_matches("LVL_"));
        let rows: Vec<Value> =
            items.iter().map(|i| json!({"name": i.name, "enabled": i.enabled, "level": level(i.level)})).collect();
        self.print(Value::from(rows), || {
            let mut text = format!("{:<28} {:<8} {}\n", "NAME", "ENABLED", "LEVEL");
            for i in items {
                text += &format!("{:<28} {:<8} {}\n", i.name, i.enabled, level(i.level));
            }
            text
        });
    }
}
