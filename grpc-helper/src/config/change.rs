//! Changes of the user items at run time: validated all together, applied (here or in the
//! shared bucket), persisted, and logged with who made them.

use std::fmt::Display;

use super::Config;
use crate::RpcError;

impl Config {
    /// Validates every new value (`None`: back to the default), then applies them all (all or
    /// nothing): stored in the shared bucket of `rpc-config-url` when there is one, else here
    /// and persisted in the workspace. Each change is logged at INFO with `by` (the caller), so
    /// an operator can tell who changed what, and when.
    pub(crate) async fn change(
        &self,
        values: &[(String, Option<String>)],
        by: &(dyn Display + Sync),
    ) -> Result<(), RpcError> {
        let before: Vec<Option<String>> =
            values.iter().map(|(n, _)| self.entry(n).map(|e| e.value.read().clone())).collect();
        #[cfg(feature = "nats")]
        if self.0.shared.get().is_some() {
            for (name, value) in values {
                let entry = self.entry(name).filter(|e| e.user).ok_or_else(|| self.not_a_user_item(name))?;
                if let Some(value) = value {
                    entry.item.validate(value)?;
                }
            }
            self.store_shared(values).await?;
            self.log_changes(values, &before, by);
            return Ok(());
        }
        self.update(values)?;
        self.log_changes(values, &before, by);
        Ok(())
    }

    /// One INFO line per item: its new value (Debug-quoted: a value holds no line break), the old
    /// one, and who changed it.
    fn log_changes(&self, values: &[(String, Option<String>)], before: &[Option<String>], by: &(dyn Display + Sync)) {
        for ((name, value), old) in values.iter().zip(before) {
            let (Some(entry), Some(old)) = (self.entry(name), old) else { continue };
            match value {
                Some(value) => tracing::info!("Config item {name} set to {value:?} (was {old:?}) by {by}"),
                None => {
                    tracing::info!("Config item {name} reset to its default {:?} (was {old:?}) by {by}", entry.default)
                }
            }
        }
    }

    /// Validates every new value, then applies them all and persists (all or nothing).
    pub(crate) fn update(&self, values: &[(String, Option<String>)]) -> Result<(), RpcError> {
        let _serialised = self.0.update.lock();
        let mut planned = Vec::with_capacity(values.len());
        for (name, value) in values {
            let entry = self.entry(name).filter(|e| e.user).ok_or_else(|| self.not_a_user_item(name))?;
            let value = value.clone().unwrap_or_else(|| entry.default.clone());
            entry.item.validate(&value)?;
            planned.push((entry, value));
        }
        let previous: Vec<String> = planned.iter().map(|(e, _)| e.value.read().clone()).collect();
        for (entry, value) in &planned {
            *entry.value.write() = value.clone();
        }
        if let Err(e) = self.persist() {
            for ((entry, _), old) in planned.iter().zip(previous) {
                *entry.value.write() = old;
            }
            return Err(e);
        }
        self.0.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Checks new values of user items as [`update`](Self::update) would, changing nothing.
    pub(crate) fn validate(&self, values: &[(String, String)]) -> Result<(), RpcError> {
        for (name, value) in values {
            let entry = self.entry(name).filter(|e| e.user).ok_or_else(|| self.not_a_user_item(name))?;
            entry.item.validate(value)?;
        }
        Ok(())
    }

    /// Writes user values that differ from their default (and static values found in the file).
    fn persist(&self) -> Result<(), RpcError> {
        let Some(path) = &self.0.persisted else {
            tracing::warn!("no workspace folder: config changes are not persisted");
            return Ok(());
        };
        let mut map = serde_json::Map::new();
        for (name, value) in &self.0.static_overrides {
            map.insert(name.clone(), value.clone().into());
        }
        for entry in self.0.entries.iter().filter(|e| e.user) {
            let value = entry.value.read().clone();
            if value != entry.default {
                map.insert(entry.item.name.to_owned(), value.into());
            }
        }
        crate::persist::write_json(path, &serde_json::Value::Object(map))
    }
}
