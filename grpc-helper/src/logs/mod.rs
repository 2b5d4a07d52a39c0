//! Logging: per-service rolling files, and logger levels changeable at run time (the `log`
//! service), persisted in `loggers.json`.
//!
//! A server installs [`layer`] as the process's tracing subscriber when none is set yet. A
//! program with its own subscriber adds the layer itself:
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry()
//!     .with(grpc_helper::logs::layer())          // levels + files
//!     .with(tracing_subscriber::fmt::layer())    // and the console
//!     .init();
//! ```
//!
//! Files: every event inside a manager (its calls and hooks) goes to
//! `<logs>/<service>/<service>.log`, and every event to `<logs>/root/root.log`, rotated per
//! `rpc-logs-interval-unit` × `rpc-logs-interval`, keeping `rpc-logs-backup` old files.

mod escape;
mod levels;
mod rolling;
mod router;
mod throttle;

use std::collections::BTreeMap;
use std::path::Path;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

pub(crate) use self::escape::Escaped;
pub(crate) use self::levels::Setting;
pub(crate) use self::rolling::Rotation;
pub(crate) use self::router::{LogsGuard, register};
pub(crate) use self::throttle::{Throttle, clipped, left_out};
use crate::api::{LoggerLevel, ResultCode};
use crate::{Folders, RpcError};

/// Target and name of every manager's span: log routing finds a service's records by them.
/// The target is the module path the span always had, so filters written against it still
/// match.
pub(crate) const RPC_SPAN_TARGET: &str = "grpc_helper::manager";
pub(crate) const RPC_SPAN_NAME: &str = "rpc";

/// Whether `metadata` is a manager's span (the one [`ManagerContext::span`](crate::ManagerContext::span) returns).
pub(crate) fn is_rpc_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && metadata.name() == RPC_SPAN_NAME && metadata.target() == RPC_SPAN_TARGET
}

/// Name of the persisted logger settings.
pub(crate) const LOGGERS_FILE: &str = "loggers.json";

/// The tracing layer of grpc-helper: filters by the run-time logger levels, and writes the log
/// files of every running server.
///
/// For programs that install their own subscriber (then call
/// [`install_logging(false)`](crate::RpcServerBuilder::install_logging) on the builder):
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry().with(grpc_helper::logs::layer()).init();
/// let builder = grpc_helper::RpcServer::builder().install_logging(false);
/// ```
pub fn layer<S>() -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    HelperLayer
}

/// The levels filter and the file router as one layer. Composed with `and_then` over a
/// `Registry`, the pair would report the router's level hint (none, so TRACE) instead of the
/// levels' own: tracing would then ask for every trace call site of h2 and hyper at run time.
struct HelperLayer;

impl<S> Layer<S> for HelperLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Cached per call site; every level change rebuilds the cache.
        if levels::allows(metadata) { Interest::always() } else { Interest::never() }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        levels::allows(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(levels::max_level_hint())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        router::FileRouter.on_new_span(attrs, id, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        router::FileRouter.on_event(event, ctx);
    }
}

/// Installs [`layer`] as the global subscriber unless the program already set one.
pub(crate) fn install_default() {
    if !tracing::dispatcher::has_been_set()
        && tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer())).is_ok()
    {
        INSTALLED_BY_US.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The process's subscriber is the one [`install_default`] set: files only, no console.
static INSTALLED_BY_US: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Logs what an operator must see at start (the address, an open admin port), and also prints
/// it on stderr when no subscriber of the program's shows anything: none at all, or only ours.
pub(crate) fn notice(level: tracing::Level, message: &str) {
    if level == tracing::Level::WARN {
        tracing::warn!("{message}");
    } else {
        tracing::info!("{message}");
    }
    if !tracing::dispatcher::has_been_set() || INSTALLED_BY_US.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("grpc-helper: {message}");
    }
}

/// One persisted value: a level name, `false` for a disabled logger, or `true` for an enabled
/// one that keeps its inherited level (the original accepts any boolean).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Persisted {
    Level(String),
    Disabled,
    Enabled,
}

/// Python's level names.
pub(crate) fn level_name(level: LoggerLevel) -> &'static str {
    match level {
        LoggerLevel::LvlUnknown => "NOTSET",
        LoggerLevel::LvlDebug => "DEBUG",
        LoggerLevel::LvlInfo => "INFO",
        LoggerLevel::LvlWarning => "WARNING",
        LoggerLevel::LvlError => "ERROR",
        LoggerLevel::LvlCritical => "CRITICAL",
    }
}

fn parse_level_name(name: &str) -> Option<LoggerLevel> {
    [
        LoggerLevel::LvlDebug,
        LoggerLevel::LvlInfo,
        LoggerLevel::LvlWarning,
        LoggerLevel::LvlError,
        LoggerLevel::LvlCritical,
    ]
    .into_iter()
    .find(|l| level_name(*l).eq_ignore_ascii_case(name))
}

/// Reads one `loggers.json` (`{name: "LEVEL" | false | true}`); missing → empty.
pub(crate) fn read_loggers(path: &Path) -> Result<BTreeMap<String, Persisted>, RpcError> {
    let Some(value) = crate::persist::read_json(path)? else { return Ok(BTreeMap::new()) };
    let invalid = || {
        RpcError::new(
            ResultCode::ErrorModelInvalid,
            format!("Invalid loggers json file (expecting {{name: level name, true or false}}): {}", path.display()),
        )
    };
    let serde_json::Value::Object(object) = value else { return Err(invalid()) };
    object
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(level) => Ok((name, Persisted::Level(level))),
            serde_json::Value::Bool(false) => Ok((name, Persisted::Disabled)),
            serde_json::Value::Bool(true) => Ok((name, Persisted::Enabled)),
            _ => Err(invalid()),
        })
        .collect()
}

/// Writes the workspace `loggers.json`.
pub(crate) fn write_loggers(path: &Path, loggers: &BTreeMap<String, Persisted>) -> Result<(), RpcError> {
    let object = loggers
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Persisted::Level(level) => serde_json::Value::String(level.clone()),
                Persisted::Disabled => serde_json::Value::Bool(false),
                Persisted::Enabled => serde_json::Value::Bool(true),
            };
            (name.clone(), value)
        })
        .collect();
    crate::persist::write_json(path, &serde_json::Value::Object(object))
}

/// Applies the `loggers.json` of the system, user and workspace folders (later wins); returns
/// the workspace's own entries, and the warnings to log once the log files are open.
pub(crate) fn load(folders: &Folders) -> Result<(BTreeMap<String, Persisted>, Vec<String>), RpcError> {
    let (mut workspace, mut warnings) = (BTreeMap::new(), Vec::new());
    let layers = [folders.system_dir(), folders.user_dir(), folders.workspace_dir()];
    for (i, dir) in layers.into_iter().enumerate() {
        let Some(dir) = dir else { continue };
        let loggers = read_loggers(&dir.join(LOGGERS_FILE))?;
        for (name, value) in &loggers {
            warnings.extend(apply(name, value));
        }
        if i == 2 {
            workspace = loggers;
        }
    }
    levels::rebuild();
    Ok((workspace, warnings))
}

/// Sets one persisted logger; an unknown level name is ignored, with a warning to log.
fn apply(name: &str, value: &Persisted) -> Option<String> {
    let mut warning = None;
    let setting = match value {
        Persisted::Disabled => Setting { enabled: false, level: None },
        Persisted::Enabled => Setting { enabled: true, level: None },
        // What the original writes for an enabled logger without a level of its own.
        Persisted::Level(level) if level.eq_ignore_ascii_case("UNKNOWN") || level.eq_ignore_ascii_case("NOTSET") => {
            Setting { enabled: true, level: None }
        }
        Persisted::Level(level) => match parse_level_name(level) {
            Some(level) => Setting { enabled: true, level: Some(level) },
            None => {
                warning = Some(format!("Ignoring unknown level {} for logger {}", Escaped(level), Escaped(name)));
                Setting { enabled: true, level: None }
            }
        },
    };
    levels::update(|levels| levels.set(name, setting));
    warning
}

/// The current setting of a logger.
pub(crate) fn get(name: &str) -> Setting {
    levels::levels().read().get(name)
}

/// Sets a logger (`""` = root) and refreshes the call-site cache.
pub(crate) fn set(name: &str, setting: Setting) {
    levels::update(|levels| levels.set(name, setting));
    levels::rebuild();
}

/// What is set for each of `names`, for [`restore`].
pub(crate) fn snapshot<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(String, Option<Setting>)> {
    let levels = levels::levels().read();
    names.into_iter().map(|name| (name.to_owned(), levels.entry(name))).collect()
}

/// Puts back what [`snapshot`] saw (a change whose persistence failed is undone).
pub(crate) fn restore(saved: &[(String, Option<Setting>)]) {
    levels::update(|levels| {
        for (name, setting) in saved.iter().rev() {
            match setting {
                Some(setting) => levels.set(name, *setting),
                None => levels.reset(name),
            }
        }
    });
    levels::rebuild();
}

/// Drops a logger's override.
pub(crate) fn reset(name: &str) {
    levels::update(|levels| levels.reset(name));
    levels::rebuild();
}

#[cfg(test)]
mod tests {
    use tracing::Subscriber;
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::prelude::*;

    #[test]
    fn level_hint_stays_at_the_loggers_level_alone_and_under_fmt() {
        // A TRACE hint makes tracing ask the layer about every h2 frame's trace call sites.
        let alone = tracing_subscriber::registry().with(super::layer());
        assert_eq!(alone.max_level_hint(), Some(LevelFilter::INFO));
        let under_fmt = tracing_subscriber::registry().with(super::layer()).with(tracing_subscriber::fmt::layer());
        assert_eq!(under_fmt.max_level_hint(), Some(LevelFilter::INFO));
    }
}
