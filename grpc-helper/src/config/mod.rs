//! Configuration items: declared as constants, layered from files, environment and command
//! line, validated, changeable remotely (user items) and persisted in the workspace.
//!
//! Default of an item, later wins: the hard-coded default < `<system>/config.json` <
//! `<user>/config.json` < environment variable (`my-item` → `MY_ITEM`) < `-c my-item=value`.
//! Current value: the default, or the value persisted in `<workspace>/config.json`.
//!
//! ```
//! use grpc_helper::config::{ConfigItem, Validator};
//!
//! const WORKERS: ConfigItem = ConfigItem::new("my-workers", "Worker threads", "4").validator(Validator::PosInt);
//!
//! # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
//! let server = grpc_helper::RpcServer::builder()
//!     .port(0)
//!     .static_items(&[WORKERS])
//!     .cli_config([("my-workers".to_owned(), "8".to_owned())]) // `-c my-workers=8`
//!     .start()
//!     .await?;
//! assert_eq!(server.config().get(&WORKERS).as_int()?, 8);
//! # server.shutdown().await;
//! # Ok(()) }
//! ```

mod change;
mod item;
mod rpc_items;
#[cfg(feature = "nats")]
mod shared;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

pub(crate) use self::item::valid_name;
pub use self::item::{ConfigItem, ConfigValue};
pub use self::rpc_items::RpcConfig;
pub(crate) use self::rpc_items::admin_networks;
pub use self::validate::Validator;
use crate::api::{self, ResultCode};
use crate::{Folders, RpcError};

/// File name of the layered configuration files and of the persisted values.
pub(crate) const CONFIG_FILE: &str = "config.json";

/// The configuration of one server: every static and user item with its default and current
/// value. Cheap to clone; reads see updates at once.
///
/// Managers read it through [`ManagerContext::config`](crate::ManagerContext::config), tests and
/// embedding programs through [`RpcServer::config`](crate::RpcServer::config).
///
/// ```
/// use grpc_helper::config::ConfigItem;
///
/// const GREETING: ConfigItem = ConfigItem::new("my-greeting", "Greeting text", "Hello");
///
/// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
/// let server = grpc_helper::RpcServer::builder().port(0).user_items(&[GREETING]).start().await?;
/// assert_eq!(server.config().get(&GREETING).as_str(), "Hello");
/// # server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Config(Arc<Inner>);

struct Inner {
    entries: Vec<Entry>,
    index: HashMap<&'static str, usize>,
    /// `<workspace>/config.json`, where user values are persisted.
    persisted: Option<PathBuf>,
    /// Static values and unknown items found in the persisted file: written back unchanged,
    /// so that a server version that knows them finds them again.
    static_overrides: BTreeMap<String, String>,
    /// Items named by `-c` or the workspace file that this server does not define.
    start_warnings: Vec<String>,
    /// Serialises updates with their persistence.
    update: Mutex<()>,
    changes: watch::Sender<u64>,
    /// The bucket of `rpc-config-url`, once [`share`](Config::share)d.
    #[cfg(feature = "nats")]
    shared: std::sync::OnceLock<shared::Shared>,
    /// The bucket's revision whose values the user items hold.
    #[cfg(feature = "nats")]
    applied_revision: Mutex<u64>,
}

struct Entry {
    item: ConfigItem,
    user: bool,
    default: String,
    value: RwLock<String>,
}

/// Where each layer of defaults comes from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    pub folders: Folders,
    pub cli: BTreeMap<String, String>,
    /// Defaults set in code (the builder), over the hard-coded ones.
    pub code: BTreeMap<&'static str, String>,
}

impl Config {
    /// Loads every item from its sources (see the module docs).
    pub(crate) fn load(
        static_items: &[ConfigItem],
        user_items: &[ConfigItem],
        sources: &Sources,
    ) -> Result<Self, RpcError> {
        let (mut entries, index) = declare(static_items, user_items)?;
        let known = entries.iter().map(|e| e.item.name).collect::<Vec<_>>().join(", ");
        let mut start_warnings: Vec<String> = (sources.cli.keys())
            .filter(|name| !index.contains_key(name.as_str()))
            .map(|name| {
                format!(
                    "Unknown config item {name:?} given on the command line (-c {name}=...), ignored; known items: {}",
                    known
                )
            })
            .collect();
        apply_defaults(&mut entries, sources)?;
        let persisted = sources.folders.workspace_dir().map(|dir| dir.join(CONFIG_FILE));
        let static_overrides = match &persisted {
            Some(path) => apply_persisted(&mut entries, &index, path, &mut start_warnings)?,
            None => BTreeMap::new(),
        };
        for name in static_overrides.keys().filter(|name| !index.contains_key(name.as_str())) {
            let path = persisted.as_deref().expect("read from the workspace file").display();
            start_warnings.push(format!(
                "Unknown config item {name:?} in {path}, ignored (kept in the file); known items: {}",
                known
            ));
        }
        let (changes, _) = watch::channel(0);
        let update = Mutex::new(());
        Ok(Self(Arc::new(Inner {
            entries,
            index,
            persisted,
            static_overrides,
            start_warnings,
            update,
            changes,
            #[cfg(feature = "nats")]
            shared: std::sync::OnceLock::new(),
            #[cfg(feature = "nats")]
            applied_revision: Mutex::new(0),
        })))
    }

    /// What the server logs as warnings once its log files are open: each value of the
    /// workspace `config.json` that its rule refuses (the default applies), and each item named
    /// on the command line or in that file that no static or user item defines (the original
    /// ignores them silently; refusing to start would break a fleet in the middle of a
    /// migration).
    pub(crate) fn start_warnings(&self) -> &[String] {
        &self.0.start_warnings
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.0.index.get(name).map(|&i| &self.0.entries[i])
    }

    /// The current value of an item of this server; an item the server does not know reads as
    /// its hard-coded default (with a warning).
    ///
    /// ```
    /// use grpc_helper::config::{ConfigItem, RpcConfig};
    ///
    /// const UNKNOWN: ConfigItem = ConfigItem::new("not-registered", "Never given to the builder", "7");
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// assert_eq!(server.config().get(&RpcConfig::LOGS_BACKUP).as_int()?, 10);
    /// assert_eq!(server.config().get(&UNKNOWN).as_int()?, 7); // the default, and a warning
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn get(&self, item: &ConfigItem) -> ConfigValue {
        let value = match self.entry(item.name) {
            Some(entry) => entry.value.read().clone(),
            None => {
                tracing::warn!("config item {} is not registered with this server: using its default", item.name);
                item.default.to_owned()
            }
        };
        ConfigValue { name: item.name, value }
    }

    /// Changes are counted here: `changed().await` wakes after every successful set or reset.
    ///
    /// ```
    /// use grpc_helper::api::config_service_client::ConfigServiceClient;
    /// use grpc_helper::api::{ConfigApiVersion, ConfigItemUpdate, ConfigUpdate};
    /// use grpc_helper::config::ConfigItem;
    ///
    /// const GREETING: ConfigItem = ConfigItem::new("my-greeting", "Greeting text", "Hello");
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).user_items(&[GREETING]).start().await?;
    /// let mut changes = server.config().subscribe();
    /// let mut remote = ConfigServiceClient::new(server.auto_client().channel::<ConfigApiVersion>());
    /// let hi = ConfigItemUpdate { name: "my-greeting".into(), value: "Hi".into() };
    /// remote.set(ConfigUpdate { items: vec![hi], ignore_unknown: false }).await?;
    /// changes.changed().await.expect("the server is running");
    /// assert_eq!(server.config().get(&GREETING).as_str(), "Hi");
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    /// Every item, static ones first, in declaration order, with `true` for user items.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// for (item, user) in server.config().items() {
    ///     println!("{} = {:?} ({})", item.name(), server.config().get(item).as_str(), if user { "user" } else { "static" });
    /// }
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn items(&self) -> impl Iterator<Item = (&ConfigItem, bool)> {
        self.0.entries.iter().map(|e| (&e.item, e.user))
    }

    /// Every item as the original's `Items dump on load` lists it, on one line:
    /// `[static] rpc-max-workers: 30 (default: 30); ...`.
    pub(crate) fn dump(&self) -> String {
        let item = |(item, user): (&ConfigItem, bool)| {
            let kind = if user { "user" } else { "static" };
            format!("[{kind}] {}: {} (default: {})", item.name(), self.get(item).as_str(), item.default_value())
        };
        self.items().map(item).collect::<Vec<_>>().join("; ")
    }

    /// The wire form of the user items with these names (all when empty).
    pub(crate) fn describe(&self, names: &[String]) -> Vec<api::ConfigItem> {
        let pick = |e: &&Entry| e.user && (names.is_empty() || names.iter().any(|n| n == e.item.name));
        self.0.entries.iter().filter(pick).map(Entry::to_proto).collect()
    }

    /// Is `name` a user item (changeable remotely)?
    pub(crate) fn is_user_item(&self, name: &str) -> bool {
        self.entry(name).is_some_and(|e| e.user)
    }

    /// Why `name` cannot be used remotely (unknown, or static).
    pub(crate) fn not_a_user_item(&self, name: &str) -> RpcError {
        let message = match self.entry(name) {
            Some(_) => format!(
                "Config item {name} is static: set it in config.json, the environment ({}) or with -c at start",
                name.to_ascii_uppercase().replace('-', "_")
            ),
            None => format!("Unknown config item: {name}"),
        };
        RpcError::new(ResultCode::ErrorItemUnknown, message)
    }

    /// The persisted file (for tests and diagnostics): `<workspace>/config.json`, `None`
    /// without a workspace folder.
    ///
    /// ```
    /// use grpc_helper::Folders;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let workspace = tempfile::tempdir()?;
    /// let server = grpc_helper::RpcServer::builder().port(0).folders(Folders::default().workspace(workspace.path())).start().await?;
    /// assert_eq!(server.config().persisted_path(), Some(workspace.path().join("config.json").as_path()));
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn persisted_path(&self) -> Option<&Path> {
        self.0.persisted.as_deref()
    }
}

impl Entry {
    fn to_proto(&self) -> api::ConfigItem {
        api::ConfigItem {
            name: self.item.name.to_owned(),
            description: self.item.description.to_owned(),
            value: self.value.read().clone(),
            default_value: self.default.clone(),
            can_be_empty: self.item.can_be_empty,
            validator: self.item.validator.to_proto() as i32,
        }
    }
}

/// One entry per item, with its hard-coded default; names checked, unique, and known to `cli`.
fn declare(
    static_items: &[ConfigItem],
    user_items: &[ConfigItem],
) -> Result<(Vec<Entry>, HashMap<&'static str, usize>), RpcError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut index = HashMap::new();
    for (item, user) in static_items.iter().map(|i| (i, false)).chain(user_items.iter().map(|i| (i, true))) {
        if !valid_name(item.name) {
            return Err(RpcError::new(
                ResultCode::ErrorParamInvalid,
                format!("Invalid config item name: {:?} (expected [a-z][a-z0-9-]*)", item.name),
            ));
        }
        if let Some(&at) = index.get(item.name) {
            let previous: &Entry = &entries[at];
            let message = if previous.user != user {
                format!("Config item {} is defined as both a static and a user item", item.name)
            } else {
                format!("Config item {} is declared twice", item.name)
            };
            return Err(RpcError::new(ResultCode::ErrorModelInvalid, message));
        }
        index.insert(item.name, entries.len());
        let default = item.default.to_owned();
        entries.push(Entry { item: *item, user, default: default.clone(), value: RwLock::new(default) });
    }
    Ok((entries, index))
}

/// Layers the defaults (code, system and user files, environment, command line), each
/// validated, and makes them the current values.
fn apply_defaults(entries: &mut [Entry], sources: &Sources) -> Result<(), RpcError> {
    let files: Vec<(PathBuf, BTreeMap<String, String>)> = [sources.folders.system_dir(), sources.folders.user_dir()]
        .into_iter()
        .flatten()
        .map(|dir| {
            let path = dir.join(CONFIG_FILE);
            read_string_map(&path).map(|map| (path, map))
        })
        .collect::<Result<_, _>>()?;
    for (path, map) in &files {
        // System and user files are shared by every server of the machine or user: items of
        // other servers are expected there, so only a debug line (the original says nothing).
        for name in map.keys().filter(|name| !entries.iter().any(|e| e.item.name == name.as_str())) {
            tracing::debug!("{}: item {name:?} is not one of this server's, ignored", path.display());
        }
    }
    for entry in entries {
        let name = entry.item.name;
        let mut origin = String::from("its hard-coded default");
        if let Some(value) = sources.code.get(name) {
            entry.default = value.clone();
            origin = "the server builder".into();
        }
        for (path, map) in &files {
            if let Some(value) = map.get(name) {
                entry.default = value.clone();
                origin = path.display().to_string();
            }
        }
        if let Ok(value) = std::env::var(entry.item.env_name()) {
            entry.default = value;
            origin = format!("environment variable {}", entry.item.env_name());
        }
        if let Some(value) = sources.cli.get(name) {
            entry.default = value.clone();
            origin = format!("command line -c {name}=...");
        }
        entry.item.validate(&entry.default).map_err(|e| {
            RpcError::custom(e.code(), format!("{} (default from {origin}; the server cannot start)", e.message()))
        })?;
        *entry.value.get_mut() = entry.default.clone();
    }
    Ok(())
}

/// Current values persisted in the workspace (invalid ones skipped with a warning); returns
/// the static ones, which are written back unchanged.
fn apply_persisted(
    entries: &mut [Entry],
    index: &HashMap<&'static str, usize>,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, RpcError> {
    let mut static_overrides = BTreeMap::new();
    for (name, value) in read_string_map(path)? {
        let Some(&at) = index.get(name.as_str()) else {
            static_overrides.insert(name, value);
            continue;
        };
        let entry = &mut entries[at];
        match entry.item.validate(&value) {
            Ok(()) => *entry.value.get_mut() = value.clone(),
            Err(e) => warnings.push(format!(
                "Can't load invalid persisted value {value:?} for config item {name}; use default one ({e})"
            )),
        }
        if !entry.user {
            static_overrides.insert(name, value);
        }
    }
    Ok(static_overrides)
}

/// A `config.json`: a JSON object of strings (missing file → empty).
fn read_string_map(path: &Path) -> Result<BTreeMap<String, String>, RpcError> {
    let Some(value) = crate::persist::read_json(path)? else { return Ok(BTreeMap::new()) };
    string_map(value, path)
}

/// The parsed JSON of a config file as its map of strings; `path` only names the file in the
/// error.
pub(crate) fn string_map(value: serde_json::Value, path: &Path) -> Result<BTreeMap<String, String>, RpcError> {
    let invalid = || {
        RpcError::new(
            ResultCode::ErrorModelInvalid,
            format!("Invalid config json file (expecting a simple str:str object): {}", path.display()),
        )
    };
    let serde_json::Value::Object(object) = value else { return Err(invalid()) };
    object
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(invalid()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const INT: ConfigItem = ConfigItem::new("unit-int", "an int", "12").validator(Validator::Int);
    const TEXT: ConfigItem = ConfigItem::new("unit-text", "a text", "hello");

    fn sources(dir: &Path) -> Sources {
        Sources { folders: Folders::default().workspace(dir.join("wks")), ..Sources::default() }
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("rpc-max-workers"));
        assert!(valid_name("a9"));
        for bad in ["", "Ab", "9a", "a_b", "a b", "aB", "-a"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn static_and_user_item_with_one_name_is_refused() {
        let error = Config::load(&[INT], &[INT], &Sources::default()).err().unwrap();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid));
    }

    #[test]
    fn update_validates_everything_before_applying_anything() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&[], &[INT, TEXT], &sources(dir.path())).unwrap();
        let error = config
            .update(&[("unit-text".into(), Some("changed".into())), ("unit-int".into(), Some("x".into()))])
            .unwrap_err();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        assert_eq!(config.get(&TEXT).as_str(), "hello");
        assert!(!dir.path().join("wks/config.json").exists());
        config.update(&[("unit-int".into(), Some("13".into()))]).unwrap();
        assert_eq!(config.get(&INT).as_int().unwrap(), 13);
        let saved = std::fs::read_to_string(dir.path().join("wks/config.json")).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&saved).unwrap(), serde_json::json!({"unit-int": "13"}));
    }

    #[test]
    fn typed_reads() {
        let v = ConfigValue { name: "x", value: "1.5".into() };
        assert_eq!(v.as_float().unwrap(), 1.5);
        assert_eq!(v.as_duration().unwrap(), Duration::from_millis(1500));
        assert!(v.as_int().is_err());
    }
}
