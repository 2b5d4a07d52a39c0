//! The server's own static items (`rpc-*`), with the names, defaults and rules of the original.

use super::item::ConfigItem;
use super::validate::Validator;
use crate::RpcError;
use crate::api::ResultCode;

/// The built-in static items of every server.
///
/// ```
/// use grpc_helper::config::RpcConfig;
///
/// assert_eq!(RpcConfig::SHUTDOWN_GRACE.name(), "rpc-shutdown-grace");
/// assert_eq!(RpcConfig::SHUTDOWN_GRACE.env_name(), "RPC_SHUTDOWN_GRACE");
/// assert_eq!(RpcConfig::ALL.len(), 27);
/// ```
pub struct RpcConfig;

impl RpcConfig {
    /// Accepted for compatibility; calls are not limited by a worker pool (async server).
    pub const MAX_WORKERS: ConfigItem =
        ConfigItem::new("rpc-max-workers", "Maximum number of RPC workers", "30").validator(Validator::PosInt);
    /// Seconds in-flight calls may run once shutdown started.
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).cli_config([("rpc-shutdown-grace".into(), "2.5".into())]).start().await?;
    /// assert_eq!(server.config().get(&RpcConfig::SHUTDOWN_GRACE).as_duration()?.as_millis(), 2500);
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub const SHUTDOWN_GRACE: ConfigItem =
        ConfigItem::new("rpc-shutdown-grace", "Grace period for in-flight calls on shutdown (s)", "30")
            .validator(Validator::PosFloat);
    /// Delay of a remote `shutdown(timeout=0)` (s).
    pub const SHUTDOWN_TIMEOUT: ConfigItem =
        ConfigItem::new("rpc-shutdown-timeout", "Delay before a remotely requested shutdown completes (s)", "60")
            .validator(Validator::PosFloat);
    /// Logs folder (relative to the workspace, or absolute).
    pub const LOGS_FOLDER: ConfigItem = ConfigItem::new("rpc-logs-folder", "Folder of the log files", "logs");
    /// How many rotated log files are kept.
    pub const LOGS_BACKUP: ConfigItem =
        ConfigItem::new("rpc-logs-backup", "Number of rotated log files kept", "10").validator(Validator::Int);
    /// Rotation unit: S, M, H, D, MIDNIGHT or W0..W6 (any case).
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    ///
    /// assert!(RpcConfig::LOGS_INTERVAL_UNIT.validate("midnight").is_ok());
    /// assert!(RpcConfig::LOGS_INTERVAL_UNIT.validate("W7").is_err()); // weekdays are W0 to W6
    /// ```
    pub const LOGS_INTERVAL_UNIT: ConfigItem =
        ConfigItem::new("rpc-logs-interval-unit", "Log rotation unit (S, M, H, D, MIDNIGHT, W0-W6)", "H")
            .validator(Validator::Custom(check_interval_unit));
    /// Rotation interval, in units: a whole number from 1 to [`MAX_LOGS_INTERVAL`](Self::MAX_LOGS_INTERVAL).
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    ///
    /// assert!(RpcConfig::LOGS_INTERVAL.validate("24").is_ok());
    /// let huge = RpcConfig::LOGS_INTERVAL.validate("9223372036854775807").unwrap_err();
    /// assert!(huge.message().contains("from 1 to 100000"), "{huge}");
    /// ```
    pub const LOGS_INTERVAL: ConfigItem = ConfigItem::new("rpc-logs-interval", "Log rotation interval (in units)", "1")
        .validator(Validator::Custom(check_logs_interval));
    /// The largest `rpc-logs-interval` (100,000 weeks is still a date the clock can compute).
    pub const MAX_LOGS_INTERVAL: i64 = 100_000;
    /// Host of the main (proxy) server.
    pub const MAIN_HOST: ConfigItem = ConfigItem::new("rpc-main-host", "Host of the main server", "localhost");
    /// Port of the main (proxy) server.
    pub const MAIN_PORT: ConfigItem =
        ConfigItem::new("rpc-main-port", "Port of the main server", "54321").validator(Validator::PosInt);
    /// Retry window of auto-clients (s).
    pub const CLIENT_TIMEOUT: ConfigItem =
        ConfigItem::new("rpc-client-timeout", "Retry window of internal clients (s)", "60")
            .validator(Validator::PosFloat);
    /// How long an interrupted event queue is kept (s).
    pub const EVENT_RETAIN_TIMEOUT: ConfigItem =
        ConfigItem::new("rpc-event-retain-timeout", "Retention of interrupted event queues (s)", "300")
            .validator(Validator::PosInt);
    /// Period of keep-alive events (s).
    pub const EVENT_KEEPALIVE_TIMEOUT: ConfigItem =
        ConfigItem::new("rpc-event-keepalive-timeout", "Period of keep-alive events (s)", "60")
            .validator(Validator::PosInt);
    /// Most event listening queues at once (listening or retained), all peers together; a new
    /// queue beyond gets `ERROR_ITEM_BUSY` (RESOURCE_EXHAUSTED).
    pub const EVENT_MAX_QUEUES: ConfigItem =
        ConfigItem::new("rpc-event-max-queues", "Most event listening queues at once", "4096")
            .validator(Validator::PosInt);
    /// Most event listening queues at once opened from one peer address (an IPv6 /64 counts as
    /// one): with the total's default, it takes 64 addresses to fill the server.
    pub const EVENT_MAX_QUEUES_PER_PEER: ConfigItem =
        ConfigItem::new("rpc-event-max-queues-per-peer", "Most event listening queues of one peer address", "64")
            .validator(Validator::PosInt);
    /// Most bytes of events one queue holds; beyond, the oldest are dropped (counted).
    pub const EVENT_QUEUE_BYTES: ConfigItem =
        ConfigItem::new("rpc-event-queue-bytes", "Most bytes of events held per queue", "33554432")
            .validator(Validator::PosInt);

    /// Where the events service keeps its queues: empty, in this process; `nats://host:port`,
    /// in a NATS JetStream stream shared by every replica given the same URL (feature `nats`;
    /// README, "Running several replicas").
    pub const EVENTS_URL: ConfigItem =
        ConfigItem::new("rpc-events-url", "Events shared through NATS JetStream (nats://host:port; empty: local)", "")
            .can_be_empty();
    /// How long a server waits at start for the NATS of `rpc-events-url` and `rpc-config-url`
    /// (s); 0: it refuses to start at once when NATS is unreachable.
    pub const EVENTS_WAIT: ConfigItem = ConfigItem::new(
        "rpc-events-wait",
        "Wait at start for the NATS of rpc-events-url and rpc-config-url (s; 0: refuse at once)",
        "0",
    )
    .validator(Validator::Int);
    /// Where the user items' values live: empty, in the workspace `config.json`;
    /// `nats://host:port`, in a NATS JetStream key-value bucket shared by every replica given
    /// the same URL, so that a `config.set` on one is applied by all (feature `nats`; README,
    /// "Running several replicas").
    pub const CONFIG_URL: ConfigItem = ConfigItem::new(
        "rpc-config-url",
        "User config items shared through a NATS JetStream key-value bucket (nats://host:port; empty: local)",
        "",
    )
    .can_be_empty();

    /// Prefix of every name this server uses on NATS (subjects, stream, bucket), so that
    /// several fleets can share one NATS: letters, digits, `-` and `_`; empty: none.
    pub const NATS_PREFIX: ConfigItem =
        ConfigItem::new("rpc-nats-prefix", "Prefix of the subjects, stream and bucket used on NATS", "")
            .can_be_empty()
            .validator(Validator::Custom(check_nats_prefix));
    /// NATS user (with `rpc-nats-password-file`).
    pub const NATS_USER: ConfigItem = ConfigItem::new("rpc-nats-user", "NATS user name", "").can_be_empty();
    /// File holding the NATS user's password (never the URL: the URL is logged).
    pub const NATS_PASSWORD_FILE: ConfigItem =
        ConfigItem::new("rpc-nats-password-file", "File holding the NATS user's password", "").can_be_empty();
    /// File holding a NATS token.
    pub const NATS_TOKEN_FILE: ConfigItem =
        ConfigItem::new("rpc-nats-token-file", "File holding the NATS token", "").can_be_empty();
    /// File holding a NATS NKey seed (`SU...`).
    pub const NATS_NKEY_FILE: ConfigItem =
        ConfigItem::new("rpc-nats-nkey-file", "File holding the NATS NKey seed", "").can_be_empty();
    /// A NATS `.creds` file (user JWT and NKey seed, decentralised authentication).
    pub const NATS_CREDS_FILE: ConfigItem =
        ConfigItem::new("rpc-nats-creds-file", "NATS credentials file (.creds)", "").can_be_empty();
    /// PEM file of the CA that signed the NATS server's certificate: TLS is then required.
    pub const NATS_CA_FILE: ConfigItem =
        ConfigItem::new("rpc-nats-ca-file", "CA (PEM) of the NATS server's certificate; TLS required", "")
            .can_be_empty();

    /// The networks whose peers may call the admin RPCs (comma-separated CIDR or addresses),
    /// for a fleet whose Python clients cannot send a token; empty: the default (loopback only
    /// without an auth guard). `RpcServerBuilder::admin_networks` takes precedence.
    pub const ADMIN_NETWORKS: ConfigItem = ConfigItem::new(
        "rpc-admin-networks",
        "Networks allowed to call the admin RPCs (comma-separated CIDR or addresses; empty: loopback only)",
        "",
    )
    .can_be_empty()
    .validator(Validator::Custom(check_networks));

    /// How long a forwarded call whose caller set no deadline may wait for its backend to start
    /// answering (s); 0: no limit, as the original. `RpcServerBuilder::forward_deadline` wins.
    pub const PROXY_DEADLINE: ConfigItem = ConfigItem::new(
        "rpc-proxy-deadline",
        "Deadline of forwarded calls whose caller set none (s; 0: none, as the original)",
        "60",
    )
    .validator(Validator::Custom(check_seconds_or_zero));

    /// Every built-in static item.
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    /// assert!(RpcConfig::ALL.iter().all(|item| item.name().starts_with("rpc-")));
    /// ```
    pub const ALL: &'static [ConfigItem] = &[
        Self::MAX_WORKERS,
        Self::SHUTDOWN_GRACE,
        Self::SHUTDOWN_TIMEOUT,
        Self::LOGS_FOLDER,
        Self::LOGS_BACKUP,
        Self::LOGS_INTERVAL_UNIT,
        Self::LOGS_INTERVAL,
        Self::MAIN_HOST,
        Self::MAIN_PORT,
        Self::CLIENT_TIMEOUT,
        Self::EVENT_RETAIN_TIMEOUT,
        Self::EVENT_KEEPALIVE_TIMEOUT,
        Self::EVENT_MAX_QUEUES,
        Self::EVENT_MAX_QUEUES_PER_PEER,
        Self::EVENT_QUEUE_BYTES,
        Self::EVENTS_URL,
        Self::EVENTS_WAIT,
        Self::CONFIG_URL,
        Self::NATS_PREFIX,
        Self::NATS_USER,
        Self::NATS_PASSWORD_FILE,
        Self::NATS_TOKEN_FILE,
        Self::NATS_NKEY_FILE,
        Self::NATS_CREDS_FILE,
        Self::NATS_CA_FILE,
        Self::ADMIN_NETWORKS,
        Self::PROXY_DEADLINE,
    ];
}

fn check_nats_prefix(name: &str, value: &str) -> Result<(), RpcError> {
    if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err(RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Invalid value for {name}: {value:?} (expected letters, digits, '-' and '_' only)"),
        ))
    }
}

fn check_seconds_or_zero(name: &str, value: &str) -> Result<(), RpcError> {
    match super::validate::parse_float(value) {
        Some(secs) if secs == 0.0 || (0.001..=86_400.0).contains(&secs) => Ok(()),
        _ => Err(RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Invalid value for {name}: {value:?} (expected seconds from 0.001 to 86400, or 0 for no limit)"),
        )),
    }
}

fn check_networks(name: &str, value: &str) -> Result<(), RpcError> {
    match crate::auth::parse_networks(admin_networks(value)) {
        Ok(_) => Ok(()),
        Err(e) => Err(RpcError::new(ResultCode::ErrorParamInvalid, format!("Invalid value for {name}: {e}"))),
    }
}

/// The networks of `rpc-admin-networks`'s value (none when it is empty).
pub(crate) fn admin_networks(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|n| !n.is_empty())
}

fn check_logs_interval(name: &str, value: &str) -> Result<(), RpcError> {
    Validator::PosInt.check(name, value)?;
    match super::validate::parse_int(value) {
        Some(interval) if interval <= RpcConfig::MAX_LOGS_INTERVAL => Ok(()),
        _ => Err(RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!(
                "Invalid value for {name}: {value:?} (expected a whole number of rotation units from 1 to {})",
                RpcConfig::MAX_LOGS_INTERVAL
            ),
        )),
    }
}

fn check_interval_unit(name: &str, value: &str) -> Result<(), RpcError> {
    let unit = value.to_ascii_uppercase();
    let weekday = unit.len() == 2 && unit.starts_with('W') && matches!(unit.as_bytes()[1], b'0'..=b'6');
    if matches!(unit.as_str(), "S" | "M" | "H" | "D" | "MIDNIGHT") || weekday {
        Ok(())
    } else {
        Err(RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Invalid interval unit for {name}: {value:?} (expected S, M, H, D, MIDNIGHT or W0 to W6)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_units() {
        for ok in ["S", "m", "H", "d", "midnight", "W0", "w6"] {
            assert!(RpcConfig::LOGS_INTERVAL_UNIT.validate(ok).is_ok(), "{ok}");
        }
        for bad in ["foo", "W7", "X", "WW"] {
            let e = RpcConfig::LOGS_INTERVAL_UNIT.validate(bad).unwrap_err();
            assert_eq!(e.result_code(), Some(ResultCode::ErrorParamInvalid), "{bad}");
        }
    }
}
