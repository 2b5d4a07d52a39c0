//! `log` (`LoggerService`): read and change logger levels at run time; changes are persisted in
//! the workspace `loggers.json` and applied again at the next start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;

use crate::api::{Filter, LoggerConfig, LoggerLevel, LoggerStatus, LoggerUpdate, ResultCode};
use crate::logs::{self, Persisted, Setting};
use crate::{RpcError, rpc_manager};

pub(crate) struct LoggerManager {
    /// What this server's workspace file holds.
    persisted: Mutex<BTreeMap<String, Persisted>>,
    file: Option<PathBuf>,
}

impl LoggerManager {
    pub(crate) fn new(persisted: BTreeMap<String, Persisted>, file: Option<PathBuf>) -> Self {
        Self { persisted: Mutex::new(persisted), file }
    }

    fn save(&self, persisted: &BTreeMap<String, Persisted>) -> Result<(), RpcError> {
        match &self.file {
            Some(path) => logs::write_loggers(path, persisted),
            None => {
                tracing::warn!("no workspace folder: logger changes are not persisted");
                Ok(())
            }
        }
    }
}

fn describe(name: &str) -> LoggerConfig {
    let setting = logs::get(name);
    LoggerConfig {
        name: if name.is_empty() { "root".to_owned() } else { name.to_owned() },
        enabled: setting.enabled,
        level: setting.level.unwrap_or(LoggerLevel::LvlUnknown) as i32,
    }
}

fn missing(what: &str) -> RpcError {
    RpcError::new(ResultCode::ErrorParamMissing, format!("Missing {what} in request"))
}

#[rpc_manager(service = "log", version = crate::api::LoggerApiVersion, crate = crate)]
impl LoggerManager {
    /// Each named logger (`""` = root) with its enabled flag and level (UNKNOWN: inherited).
    async fn get(&self, request: Filter) -> Result<LoggerStatus, RpcError> {
        if request.names.is_empty() {
            return Err(missing("logger names"));
        }
        let names = crate::names::distinct(&request.names, "logger")?;
        Ok(LoggerStatus { r: None, items: names.into_iter().map(describe).collect() })
    }

    /// Applies level and enabled flag of each item, then persists.
    async fn set(&self, request: LoggerUpdate) -> Result<LoggerStatus, RpcError> {
        if request.items.is_empty() {
            return Err(missing("logger items"));
        }
        crate::names::check_count(request.items.len(), "logger")?;
        let mut planned = Vec::with_capacity(request.items.len());
        for item in &request.items {
            let level = LoggerLevel::try_from(item.level).map_err(|_| {
                RpcError::new(
                    ResultCode::ErrorParamInvalid,
                    format!(
                        "Invalid level {} for logger {:?} (expected 0 = inherit, 10 DEBUG, 20 INFO, 30 WARNING, 40 ERROR or 50 CRITICAL)",
                        item.level, item.name
                    ),
                )
            })?;
            let level = (level != LoggerLevel::LvlUnknown).then_some(level);
            planned.push((item.name.as_str(), Setting { enabled: item.enabled, level }));
        }
        let mut persisted = self.persisted.lock();
        let (saved_levels, saved_file) = (logs::snapshot(planned.iter().map(|(n, _)| *n)), persisted.clone());
        for (name, setting) in &planned {
            logs::set(name, *setting);
            match (setting.enabled, setting.level) {
                (false, _) => persisted.insert((*name).to_owned(), Persisted::Disabled),
                (true, Some(level)) => {
                    persisted.insert((*name).to_owned(), Persisted::Level(logs::level_name(level).into()))
                }
                (true, None) => persisted.remove(*name),
            };
        }
        if let Err(e) = self.save(&persisted) {
            // Not persisted, so not applied: the levels and the file agree again.
            logs::restore(&saved_levels);
            *persisted = saved_file;
            return Err(e);
        }
        Ok(LoggerStatus { r: None, items: planned.iter().map(|(n, _)| describe(n)).collect() })
    }

    /// Drops the overrides (the root gets its startup level back), then persists.
    async fn reset(&self, request: Filter) -> Result<LoggerStatus, RpcError> {
        if request.names.is_empty() {
            return Err(missing("logger names"));
        }
        let names = crate::names::distinct(&request.names, "logger")?;
        let mut persisted = self.persisted.lock();
        let (saved_levels, saved_file) = (logs::snapshot(names.iter().copied()), persisted.clone());
        let mut changed = false;
        for name in &names {
            logs::reset(name);
            changed |= persisted.remove(*name).is_some();
        }
        if changed && let Err(e) = self.save(&persisted) {
            logs::restore(&saved_levels);
            *persisted = saved_file;
            return Err(e);
        }
        Ok(LoggerStatus { r: None, items: names.into_iter().map(describe).collect() })
    }
}
