//! `config` (`ConfigService`): get, set and reset the server's user configuration items, and on
//! a main server those of its registered backends too, merged (as the original does).

use std::sync::Arc;

use crate::api::{ConfigItem, ConfigItemUpdate, ConfigStatus, ConfigUpdate, Filter, ResultCode};
use crate::config::Config;
use crate::proxy::Proxies;
use crate::{CallContext, RpcClient, RpcError, rpc_manager};

pub(crate) struct ConfigManager {
    config: Config,
    /// The backends whose items are merged with ours.
    proxies: Arc<Proxies>,
}

/// Why a backend's config call failed, naming the backend.
fn backend_error(client: &RpcClient, status: tonic::Status) -> RpcError {
    let error = RpcError::from(status);
    let code = error.result_code().unwrap_or(ResultCode::ErrorRpc);
    RpcError::new(code, format!("Proxied server {}: {}", client.target(), error.message()))
}

/// Adds `items` to `merged`, the first value of a name kept; with `check`, two different values
/// of one name are an `ERROR_ITEM_CONFLICT`.
fn merge(merged: &mut Vec<ConfigItem>, items: Vec<ConfigItem>, check: bool) -> Result<(), RpcError> {
    for item in items {
        match merged.iter().find(|m| m.name == item.name) {
            Some(kept) if check && kept.value != item.value => {
                return Err(RpcError::new(
                    ResultCode::ErrorItemConflict,
                    format!("Proxied values conflict for config item {}: {} != {}", item.name, item.value, kept.value),
                ));
            }
            Some(_) => {}
            None => merged.push(item),
        }
    }
    Ok(())
}

impl ConfigManager {
    pub(crate) fn new(config: Config, proxies: Arc<Proxies>) -> Self {
        Self { config, proxies }
    }

    /// Our user items with these names (all when empty), then those of every backend.
    async fn merged(&self, names: &[String], check: bool) -> Result<Vec<ConfigItem>, RpcError> {
        let mut merged = self.config.describe(names);
        for client in self.proxies.backend_clients()? {
            let filter = self.marked(Filter { names: names.to_vec(), ignore_unknown: true })?;
            let items = client.config_service().get(filter).await.map_err(|s| backend_error(&client, s))?;
            merge(&mut merged, items.into_inner().items, check)?;
        }
        Ok(merged)
    }

    /// The original's name checks: empty list (when `required`), empty names, then names that
    /// neither this server nor a backend knows (unless `ignore_unknown`).
    fn check(
        &self,
        names: &[String],
        merged: &[ConfigItem],
        ignore_unknown: bool,
        required: bool,
    ) -> Result<(), RpcError> {
        if required && names.is_empty() {
            return Err(RpcError::new(ResultCode::ErrorParamMissing, "Missing config item names in request"));
        }
        if names.iter().any(String::is_empty) {
            return Err(RpcError::new(ResultCode::ErrorParamMissing, "Empty config item name in request"));
        }
        if ignore_unknown {
            return Ok(());
        }
        match names.iter().find(|n| !merged.iter().any(|m| &m.name == *n)) {
            Some(unknown) => Err(self.config.not_a_user_item(unknown)),
            None => Ok(()),
        }
    }

    /// Tells every backend, ignoring the items it does not have.
    async fn fan_out(&self, set: Option<&[ConfigItemUpdate]>, names: &[String]) -> Result<(), RpcError> {
        for client in self.proxies.backend_clients()? {
            let mut config = client.config_service();
            let answer = match set {
                Some(items) => {
                    config.set(self.marked(ConfigUpdate { items: items.to_vec(), ignore_unknown: true })?).await
                }
                None => config.reset(self.marked(Filter { names: names.to_vec(), ignore_unknown: true })?).await,
            };
            answer.map_err(|s| backend_error(&client, s))?;
        }
        Ok(())
    }

    /// A request to a backend, with the hop marker that stops a cycle of main servers.
    fn marked<T>(&self, message: T) -> Result<tonic::Request<T>, RpcError> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert(crate::wire::VIA_KEY, self.proxies.fan_out_via()?.parse().expect("hex ids and commas"));
        // A fan-out is this server's own call: it carries the main's credentials, if any.
        if let Some(value) = self.proxies.backend_authorization().and_then(|v| v.to_str().ok()?.parse().ok()) {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// The names of `names` that are our own user items, each once.
    fn local(&self, names: &[String]) -> Vec<String> {
        let mut local: Vec<String> = Vec::with_capacity(names.len());
        for name in names.iter().filter(|n| self.config.is_user_item(n)) {
            if !local.contains(name) {
                local.push(name.clone());
            }
        }
        local
    }
}

#[rpc_manager(service = "config", version = crate::api::ConfigApiVersion, crate = crate)]
impl ConfigManager {
    /// Empty names → every user item (ours and the backends').
    async fn get(&self, request: Filter) -> Result<ConfigStatus, RpcError> {
        let merged = self.merged(&request.names, true).await?;
        self.check(&request.names, &merged, request.ignore_unknown, false)?;
        Ok(ConfigStatus { r: None, items: merged })
    }

    /// Validates every new value of ours before applying any, tells the backends, then
    /// applies and persists ours.
    async fn set(&self, request: ConfigUpdate, cx: CallContext) -> Result<ConfigStatus, RpcError> {
        // The last value given for a name wins.
        let mut values: Vec<(String, String)> = Vec::with_capacity(request.items.len());
        for item in &request.items {
            match values.iter_mut().find(|(name, _)| *name == item.name) {
                Some(slot) => slot.1.clone_from(&item.value),
                None => values.push((item.name.clone(), item.value.clone())),
            }
        }
        let names: Vec<String> = values.iter().map(|(name, _)| name.clone()).collect();
        let merged = self.merged(&names, false).await?;
        self.check(&names, &merged, request.ignore_unknown, true)?;
        let local = self.local(&names);
        let ours: Vec<(String, String)> = values.into_iter().filter(|(name, _)| local.contains(name)).collect();
        self.config.validate(&ours)?;
        self.fan_out(Some(&request.items), &names).await?;
        if !ours.is_empty() {
            let update: Vec<(String, Option<String>)> = ours.into_iter().map(|(n, v)| (n, Some(v))).collect();
            self.config.change(&update, cx.caller()).await?;
        }
        let merged = self.merged(&names, true).await?;
        Ok(ConfigStatus { r: None, items: merged.into_iter().filter(|i| names.contains(&i.name)).collect() })
    }

    /// Back to the defaults, on the backends too (persisted, unlike the original).
    async fn reset(&self, request: Filter, cx: CallContext) -> Result<ConfigStatus, RpcError> {
        let merged = self.merged(&request.names, false).await?;
        self.check(&request.names, &merged, request.ignore_unknown, true)?;
        self.fan_out(None, &request.names).await?;
        let local: Vec<(String, Option<String>)> = self.local(&request.names).into_iter().map(|n| (n, None)).collect();
        if !local.is_empty() {
            self.config.change(&local, cx.caller()).await?;
        }
        let merged = self.merged(&request.names, true).await?;
        Ok(ConfigStatus { r: None, items: merged.into_iter().filter(|i| request.names.contains(&i.name)).collect() })
    }
}
