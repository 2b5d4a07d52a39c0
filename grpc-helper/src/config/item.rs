//! [`ConfigItem`], an item declared as a constant, and [`ConfigValue`], the typed reading of
//! its current value.

use std::time::Duration;

use super::validate::{self, Validator};
use crate::RpcError;
use crate::api::ResultCode;

/// A configuration item, declared as a constant.
///
/// Names are lowercase letters, digits and dashes, starting with a letter; a bad name in a
/// constant is a compile-time error.
///
/// ```
/// use grpc_helper::config::{ConfigItem, Validator};
///
/// pub const RETRIES: ConfigItem = ConfigItem::new("my-retries", "How many times to retry", "3")
///     .validator(Validator::PosInt);
/// pub const GREETING: ConfigItem = ConfigItem::new("my-greeting", "Greeting text", "").can_be_empty();
///
/// assert!(RETRIES.validate("5").is_ok());
/// assert!(RETRIES.validate("0").is_err());
/// assert!(GREETING.validate("").is_ok());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ConfigItem {
    pub(super) name: &'static str,
    pub(super) description: &'static str,
    pub(super) default: &'static str,
    pub(super) can_be_empty: bool,
    pub(super) validator: Validator,
}

impl ConfigItem {
    /// An item of text values that must not be empty.
    ///
    /// # Panics
    /// When `name` is not `[a-z][a-z0-9-]*` (at compile time for constants).
    ///
    /// ```
    /// use grpc_helper::config::ConfigItem;
    ///
    /// pub const HOST: ConfigItem = ConfigItem::new("my-host", "Host of the backend", "localhost");
    /// assert!(HOST.validate("").is_err()); // text items must not be empty by default
    /// ```
    ///
    /// ```compile_fail
    /// // An invalid name in a constant stops the build.
    /// const BAD: grpc_helper::config::ConfigItem = grpc_helper::config::ConfigItem::new("My_Item", "", "");
    /// ```
    pub const fn new(name: &'static str, description: &'static str, default: &'static str) -> Self {
        assert!(valid_name(name), "config item names are lowercase letters, digits and dashes, starting with a letter");
        Self { name, description, default, can_be_empty: false, validator: Validator::String }
    }

    /// The rule checking values.
    ///
    /// ```
    /// use grpc_helper::config::{ConfigItem, Validator};
    ///
    /// const RATIO: ConfigItem = ConfigItem::new("my-ratio", "Sampling ratio", "0.5").validator(Validator::PosFloat);
    /// assert!(RATIO.validate("0.25").is_ok());
    /// assert!(RATIO.validate("-1").is_err());
    /// ```
    pub const fn validator(mut self, validator: Validator) -> Self {
        self.validator = validator;
        self
    }

    /// Allows the empty value.
    ///
    /// ```
    /// use grpc_helper::config::ConfigItem;
    ///
    /// const PROXY: ConfigItem = ConfigItem::new("my-proxy", "HTTP proxy (empty: none)", "").can_be_empty();
    /// assert!(PROXY.validate("").is_ok());
    /// ```
    pub const fn can_be_empty(mut self) -> Self {
        self.can_be_empty = true;
        self
    }

    /// The item name.
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    /// assert_eq!(RpcConfig::LOGS_FOLDER.name(), "rpc-logs-folder");
    /// ```
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// What the item is for.
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    /// assert_eq!(RpcConfig::LOGS_FOLDER.description(), "Folder of the log files");
    /// ```
    pub const fn description(&self) -> &'static str {
        self.description
    }

    /// The hard-coded default.
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    /// assert_eq!(RpcConfig::LOGS_FOLDER.default_value(), "logs");
    /// ```
    pub const fn default_value(&self) -> &'static str {
        self.default
    }

    /// The rule its values follow (as on the wire: [`Validator::to_proto`]).
    ///
    /// ```
    /// use grpc_helper::api::ConfigValidator;
    /// use grpc_helper::config::RpcConfig;
    /// assert_eq!(RpcConfig::MAX_WORKERS.rule().to_proto(), ConfigValidator::ConfigValidPosInt);
    /// ```
    pub const fn rule(&self) -> Validator {
        self.validator
    }

    /// Checks a value against the item's rules.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamMissing`] for a forbidden empty value,
    /// [`ResultCode::ErrorParamInvalid`] for a value breaking the rule (the message names the
    /// item, the value and the rule).
    ///
    /// ```
    /// use grpc_helper::ResultCode;
    /// use grpc_helper::config::{ConfigItem, Validator};
    ///
    /// const PORT: ConfigItem = ConfigItem::new("my-port", "Backend port", "8080").validator(Validator::PosInt);
    /// assert!(PORT.validate(" 9_000 ").is_ok()); // the Python number syntax
    /// assert_eq!(PORT.validate("http").unwrap_err().result_code(), Some(ResultCode::ErrorParamInvalid));
    /// assert_eq!(PORT.validate("").unwrap_err().result_code(), Some(ResultCode::ErrorParamMissing));
    /// ```
    pub fn validate(&self, value: &str) -> Result<(), RpcError> {
        if value.is_empty() {
            return if self.can_be_empty {
                Ok(())
            } else {
                Err(RpcError::new(
                    ResultCode::ErrorParamMissing,
                    format!("Empty value provided for item {} (not supported)", self.name),
                ))
            };
        }
        self.validator.check(self.name, value)
    }

    /// The environment variable that overrides the default (`my-item` → `MY_ITEM`).
    ///
    /// ```
    /// use grpc_helper::config::ConfigItem;
    /// assert_eq!(ConfigItem::new("my-max-jobs", "Job limit", "8").env_name(), "MY_MAX_JOBS");
    /// ```
    pub fn env_name(&self) -> String {
        self.name.to_ascii_uppercase().replace('-', "_")
    }
}

/// `[a-z][a-z0-9-]*`, as a const fn so that constants are checked at compile time.
pub(crate) const fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// The typed reading of one current value, from [`Config::get`](super::Config::get).
///
/// ```
/// use grpc_helper::config::{ConfigItem, Validator};
///
/// const POLL: ConfigItem = ConfigItem::new("my-poll", "Poll period (s)", "1.5").validator(Validator::PosFloat);
///
/// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
/// let server = grpc_helper::RpcServer::builder().port(0).static_items(&[POLL]).start().await?;
/// let poll = server.config().get(&POLL).as_duration()?; // "1.5" → 1.5 s
/// assert_eq!(poll.as_millis(), 1500);
/// # server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    pub(super) name: &'static str,
    pub(super) value: String,
}

impl ConfigValue {
    /// A value of the item named `name`, for the parsers' fuzz and property tests.
    #[cfg(feature = "fuzz-api")]
    pub(crate) fn new(name: &'static str, value: String) -> Self {
        Self { name, value }
    }

    /// The text value.
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let unit = server.config().get(&RpcConfig::LOGS_INTERVAL_UNIT);
    /// assert_eq!(unit.as_str(), "H");
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The value as a whole number.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when it is not one.
    ///
    /// ```
    /// use grpc_helper::config::{ConfigItem, Validator};
    ///
    /// const JOBS: ConfigItem = ConfigItem::new("my-jobs", "Parallel jobs", "4").validator(Validator::PosInt);
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder()
    ///     .port(0)
    ///     .static_items(&[JOBS])
    ///     .cli_config([("my-jobs".to_owned(), "6".to_owned())])
    ///     .start()
    ///     .await?;
    /// assert_eq!(server.config().get(&JOBS).as_int()?, 6);
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn as_int(&self) -> Result<i64, RpcError> {
        validate::parse_int(&self.value).ok_or_else(|| self.not("a whole number"))
    }

    /// The value as a number.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when it is not one.
    ///
    /// ```
    /// use grpc_helper::config::{ConfigItem, Validator};
    ///
    /// const RATE: ConfigItem = ConfigItem::new("my-rate", "Requests per second", "2.5").validator(Validator::PosFloat);
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).user_items(&[RATE]).start().await?;
    /// assert_eq!(server.config().get(&RATE).as_float()?, 2.5);
    /// assert!(server.config().get(&RATE).as_int().is_err()); // not a whole number
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn as_float(&self) -> Result<f64, RpcError> {
        validate::parse_float(&self.value).ok_or_else(|| self.not("a number"))
    }

    /// The value as a number of seconds.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when it is not a non-negative finite number.
    ///
    /// ```
    /// use grpc_helper::config::RpcConfig;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let timeout = server.config().get(&RpcConfig::CLIENT_TIMEOUT).as_duration()?;
    /// assert_eq!(timeout.as_secs(), 60);
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn as_duration(&self) -> Result<Duration, RpcError> {
        self.as_float()
            .and_then(|secs| Duration::try_from_secs_f64(secs).map_err(|_| self.not("a duration in seconds")))
    }

    fn not(&self, what: &str) -> RpcError {
        RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Config item {} = {:?} is not {what}", self.name, self.value),
        )
    }
}
