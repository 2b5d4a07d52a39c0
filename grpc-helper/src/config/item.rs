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
    pub const fn new(name: &'static str, description: &'static str, default: &'static str) -> Self {
        assert!(valid_name(name), "config item names are lowercase letters, digits and dashes, starting with a letter");
        Self { name, description, default, can_be_empty: false, validator: Validator::String }
    }

    /// The rule checking values.
    pub const fn validator(mut self, validator: Validator) -> Self {
        self.validator = validator;
        self
    }

    /// Allows the empty value.
    pub const fn can_be_empty(mut self) -> Self {
        self.can_be_empty = true;
        self
    }

    /// The item name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// What the item is for.
    pub const fn description(&self) -> &'static str {
        self.description
    }

    /// The hard-coded default.
    pub const fn default_value(&self) -> &'static str {
        self.default
    }

    /// Checks a value against the item's rules.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamMissing`] for a forbidden empty value,
    /// [`ResultCode::ErrorParamInvalid`] for a value breaking the rule (the message names the
    /// item, the value and the rule).
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

/// The typed reading of one current value.
///
/// ```
/// # use grpc_helper::config::ConfigValue;
/// # fn demo(value: ConfigValue) -> Result<(), grpc_helper::RpcError> {
/// let grace = value.as_duration()?; // "1.5" → 1.5 s
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
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The value as a whole number.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when it is not one.
    pub fn as_int(&self) -> Result<i64, RpcError> {
        validate::parse_int(&self.value).ok_or_else(|| self.not("a whole number"))
    }

    /// The value as a number.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when it is not one.
    pub fn as_float(&self) -> Result<f64, RpcError> {
        validate::parse_float(&self.value).ok_or_else(|| self.not("a number"))
    }

    /// The value as a number of seconds.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when it is not a non-negative finite number.
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
