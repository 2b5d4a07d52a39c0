//! Entry points into the crate's parsers for the fuzz targets (`fuzz/`) and the property tests
//! (`tests/it/parsers.rs`): thin wrappers over internals, behind the `fuzz-api` feature. The
//! oracles that check their invariants live with the fuzz targets (`fuzz/oracles.rs`).
//! Not a public API: it changes whenever the parsers do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::config::{ConfigValue, Validator};
use crate::{CallerMetadata, RpcError};

/// The file name that parse errors of [`parse_config_file`] and [`parse_proxy_state`] mention.
pub const FILE: &str = "fuzzed/state.json";

/// The `api_version` check run on every call (`version::check`).
pub fn check_api_version(raw: Option<&[u8]>, supported: u32, current: u32) -> Result<(), RpcError> {
    crate::version::check(raw, supported, current)
}

/// The raw `api_version` value the server checks, as read by [`CallerMetadata::from_headers`].
pub fn api_version_bytes(caller: &CallerMetadata) -> Option<&[u8]> {
    caller.api_version_bytes()
}

/// How int config items read a value ([`ConfigValue::as_int`]).
pub fn parse_int(value: &str) -> Option<i64> {
    ConfigValue::new("fuzz-item", value.to_owned()).as_int().ok()
}

/// How float config items read a value ([`ConfigValue::as_float`]).
pub fn parse_float(value: &str) -> Option<f64> {
    ConfigValue::new("fuzz-item", value.to_owned()).as_float().ok()
}

/// How duration config items read a value ([`ConfigValue::as_duration`]).
pub fn parse_duration(value: &str) -> Option<Duration> {
    ConfigValue::new("fuzz-item", value.to_owned()).as_duration().ok()
}

/// A validator's check of a non-empty value, for an item named `fuzz-item`.
pub fn check_value(validator: Validator, value: &str) -> Result<(), RpcError> {
    validator.check("fuzz-item", value)
}

/// The contents of a `config.json` as the server reads it: a JSON object of strings.
pub fn parse_config_file(bytes: &[u8]) -> Result<BTreeMap<String, String>, RpcError> {
    let path = Path::new(FILE);
    crate::config::string_map(crate::persist::parse_json(bytes, path)?, path)
}

/// The text the server writes for a config map (the persisted `config.json`).
pub fn config_file_text(map: &BTreeMap<String, String>) -> String {
    let object = map.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
    crate::persist::json_text(&serde_json::Value::Object(object))
}

/// One registration read from `proxy.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEntry {
    /// The proxied service's name.
    pub name: String,
    /// The backend's version text.
    pub version: String,
    /// The backend's host (empty: the main server's host).
    pub host: String,
    /// The backend's port (0: not registered).
    pub port: u32,
}

/// The contents of a `proxy.json` as a main server reads it, for the services `known` accepts.
pub fn parse_proxy_state(bytes: &[u8], known: &dyn Fn(&str) -> bool) -> Result<Vec<ProxyEntry>, RpcError> {
    let path = Path::new(FILE);
    let value = crate::persist::parse_json(bytes, path)?;
    Ok(crate::proxy::parse_state(value, path, known)?
        .into_iter()
        .map(|(name, r)| ProxyEntry { name, version: r.version, host: r.host, port: r.port })
        .collect())
}

/// A `proxy.json` in the format the main server persists: the registered entries (port > 0).
pub fn proxy_state_text(entries: &[ProxyEntry]) -> String {
    let object = entries
        .iter()
        .filter(|e| e.port > 0)
        .map(|e| (e.name.clone(), serde_json::json!({"host": e.host, "port": e.port, "version": e.version})))
        .collect();
    crate::persist::json_text(&serde_json::Value::Object(object))
}
