//! `config` (`ConfigService`): get, set and reset the server's user configuration items.

use crate::api::{ConfigStatus, ConfigUpdate, Filter, ResultCode};
use crate::config::Config;
use crate::{RpcError, rpc_manager};

pub(crate) struct ConfigManager {
    config: Config,
}

impl ConfigManager {
    pub(crate) fn new(config: Config) -> Self {
        Self { config }
    }

    /// The names to act on: checks for empty names and (unless `ignore_unknown`) unknown ones;
    /// unknown names are dropped when ignored.
    fn known(&self, names: &[String], ignore_unknown: bool, required: bool) -> Result<Vec<String>, RpcError> {
        if required && names.is_empty() {
            return Err(RpcError::new(ResultCode::ErrorParamMissing, "Missing config item names in request"));
        }
        if names.iter().any(String::is_empty) {
            return Err(RpcError::new(ResultCode::ErrorParamMissing, "Empty config item name in request"));
        }
        let mut known = Vec::with_capacity(names.len());
        for name in names {
            if self.config.is_user_item(name) {
                if !known.contains(name) {
                    known.push(name.clone());
                }
            } else if !ignore_unknown {
                return Err(self.config.not_a_user_item(name));
            }
        }
        Ok(known)
    }

    fn status(&self, names: &[String]) -> ConfigStatus {
        ConfigStatus { r: None, items: self.config.describe(names) }
    }
}

#[rpc_manager(service = "config", version = crate::api::ConfigApiVersion, crate = crate)]
impl ConfigManager {
    /// Empty names → every user item.
    async fn get(&self, request: Filter) -> Result<ConfigStatus, RpcError> {
        let names = self.known(&request.names, request.ignore_unknown, false)?;
        if names.is_empty() && !request.names.is_empty() {
            return Ok(ConfigStatus::default());
        }
        Ok(self.status(&names))
    }

    /// Validates every new value before applying any, then persists.
    async fn set(&self, request: ConfigUpdate) -> Result<ConfigStatus, RpcError> {
        let names: Vec<String> = request.items.iter().map(|i| i.name.clone()).collect();
        let known = self.known(&names, request.ignore_unknown, true)?;
        // The last value given for a name wins.
        let values: Vec<(String, Option<String>)> = known
            .iter()
            .map(|name| {
                let value = request.items.iter().rev().find(|i| &i.name == name).map(|i| i.value.clone());
                (name.clone(), value)
            })
            .collect();
        if values.is_empty() {
            return Ok(ConfigStatus::default());
        }
        self.config.update(&values)?;
        Ok(self.status(&known))
    }

    /// Back to the defaults (persisted, unlike the original).
    async fn reset(&self, request: Filter) -> Result<ConfigStatus, RpcError> {
        let known = self.known(&request.names, request.ignore_unknown, true)?;
        if known.is_empty() {
            return Ok(ConfigStatus::default());
        }
        let values: Vec<(String, Option<String>)> = known.iter().map(|n| (n.clone(), None)).collect();
        self.config.update(&values)?;
        Ok(self.status(&known))
    }
}
