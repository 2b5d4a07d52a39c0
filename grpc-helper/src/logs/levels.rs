//! Logger levels changeable at run time. A logger is a tracing target prefix (`my_crate`,
//! `my_crate::db`); `""` is the root. The most specific logger with a level decides; a disabled
//! logger silences its whole subtree.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::RwLock;
use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata};

use super::is_rpc_span;
use crate::api::LoggerLevel;

/// What is set for one logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setting {
    pub enabled: bool,
    /// `None`: inherits from its parent.
    pub level: Option<LoggerLevel>,
}

pub(crate) struct Levels {
    startup_root: LoggerLevel,
    root: LoggerLevel,
    loggers: BTreeMap<String, Setting>,
}

/// The process-wide levels (tracing's subscriber is process-wide too).
pub(crate) fn levels() -> &'static RwLock<Levels> {
    static LEVELS: OnceLock<RwLock<Levels>> = OnceLock::new();
    LEVELS.get_or_init(|| {
        let root = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse::<Level>().ok())
            .map_or(LoggerLevel::LvlInfo, from_tracing);
        let levels = Levels { startup_root: root, root, loggers: BTreeMap::new() };
        MOST_VERBOSE.store(filter_rank(levels.most_verbose()), Ordering::Relaxed);
        RwLock::new(levels)
    })
}

/// [`Levels::most_verbose`] as a rank (0 = off .. 5 = trace), readable without the lock: a
/// record more verbose than every logger is refused before any lock or map walk.
static MOST_VERBOSE: AtomicU8 = AtomicU8::new(5);

fn filter_rank(filter: LevelFilter) -> u8 {
    match filter.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn level_rank(level: Level) -> u8 {
    filter_rank(LevelFilter::from_level(level))
}

/// Changes the levels, keeping the lock-free bound in step.
pub(crate) fn update(change: impl FnOnce(&mut Levels)) {
    let mut levels = levels().write();
    change(&mut levels);
    MOST_VERBOSE.store(filter_rank(levels.most_verbose()), Ordering::Relaxed);
}

/// Python's levels, as tracing levels (CRITICAL has no tracing equivalent: ERROR).
pub(crate) fn to_filter(level: LoggerLevel) -> LevelFilter {
    match level {
        LoggerLevel::LvlUnknown | LoggerLevel::LvlDebug => LevelFilter::DEBUG,
        LoggerLevel::LvlInfo => LevelFilter::INFO,
        LoggerLevel::LvlWarning => LevelFilter::WARN,
        LoggerLevel::LvlError | LoggerLevel::LvlCritical => LevelFilter::ERROR,
    }
}

fn from_tracing(level: Level) -> LoggerLevel {
    match level {
        Level::TRACE | Level::DEBUG => LoggerLevel::LvlDebug,
        Level::INFO => LoggerLevel::LvlInfo,
        Level::WARN => LoggerLevel::LvlWarning,
        Level::ERROR => LoggerLevel::LvlError,
    }
}

/// `logger` is `target` or one of its `::` ancestors.
fn covers(logger: &str, target: &str) -> bool {
    target.strip_prefix(logger).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

impl Levels {
    pub(crate) fn allows(&self, target: &str, level: &Level) -> bool {
        let mut decided: Option<LoggerLevel> = None;
        // Longest (most specific) first.
        for setting in self.loggers.iter().rev().filter(|(name, _)| covers(name, target)).map(|(_, s)| s) {
            if !setting.enabled {
                return false;
            }
            if decided.is_none() {
                decided = setting.level;
            }
        }
        *level <= to_filter(decided.unwrap_or(self.root))
    }

    /// The most verbose level any logger allows.
    fn most_verbose(&self) -> LevelFilter {
        let overrides = self.loggers.values().filter(|s| s.enabled).filter_map(|s| s.level).map(to_filter);
        overrides.chain([to_filter(self.root)]).max().unwrap_or(LevelFilter::INFO)
    }

    /// The setting of a logger as the `log` service reports it.
    pub(crate) fn get(&self, name: &str) -> Setting {
        if name.is_empty() {
            return Setting { enabled: true, level: Some(self.root) };
        }
        self.loggers.get(name).copied().unwrap_or(Setting { enabled: true, level: None })
    }

    /// What is set for `name` exactly (`None`: nothing, it inherits), to restore it later.
    pub(crate) fn entry(&self, name: &str) -> Option<Setting> {
        if name.is_empty() {
            Some(Setting { enabled: true, level: Some(self.root) })
        } else {
            self.loggers.get(name).copied()
        }
    }

    pub(crate) fn set(&mut self, name: &str, setting: Setting) {
        if name.is_empty() {
            self.root = setting.level.filter(|l| *l != LoggerLevel::LvlUnknown).unwrap_or(self.startup_root);
        } else {
            self.loggers.insert(name.to_owned(), setting);
        }
    }

    /// Drops the override: the logger inherits again (the root gets its startup level back).
    pub(crate) fn reset(&mut self, name: &str) {
        if name.is_empty() {
            self.root = self.startup_root;
        } else {
            self.loggers.remove(name);
        }
    }
}

/// Whether a span or event passes the levels. Our own `rpc` spans always pass: they tag events
/// with their service for the per-service log files.
pub(crate) fn allows(metadata: &Metadata<'_>) -> bool {
    if is_rpc_span(metadata) {
        return true;
    }
    // h2 and hyper check their trace call sites on every frame when another layer keeps them
    // `sometimes`: those must not take the lock.
    if level_rank(*metadata.level()) > MOST_VERBOSE.load(Ordering::Relaxed) {
        return false;
    }
    levels().read().allows(metadata.target(), metadata.level())
}

/// The most verbose level any logger allows, at least INFO (the level of our `rpc` spans):
/// tracing skips the call sites of quieter levels at no cost.
pub(crate) fn max_level_hint() -> LevelFilter {
    levels(); // sets MOST_VERBOSE on first use
    let most_verbose = match MOST_VERBOSE.load(Ordering::Relaxed) {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    most_verbose.max(LevelFilter::INFO)
}

/// Refreshes tracing's per-call-site cache after a level change.
pub(crate) fn rebuild() {
    // Without any subscriber there is nothing to refresh, and a rebuild would then raise
    // tracing's global max level to TRACE (the no-op dispatcher gives no level hint): every
    // trace call site of h2 and hyper would be checked at run time, on every frame.
    // A subscriber set later rebuilds the cache itself.
    if tracing::dispatcher::has_been_set() {
        tracing::callsite::rebuild_interest_cache();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(loggers: &[(&str, bool, Option<LoggerLevel>)]) -> Levels {
        let mut levels =
            Levels { startup_root: LoggerLevel::LvlInfo, root: LoggerLevel::LvlInfo, loggers: BTreeMap::new() };
        for (name, enabled, level) in loggers {
            levels.set(name, Setting { enabled: *enabled, level: *level });
        }
        levels
    }

    #[test]
    fn most_specific_level_wins_and_disabled_silences_the_subtree() {
        let levels = with(&[
            ("app", true, Some(LoggerLevel::LvlWarning)),
            ("app::db", true, Some(LoggerLevel::LvlDebug)),
            ("app::quiet", false, None),
        ]);
        assert!(levels.allows("other", &Level::INFO));
        assert!(!levels.allows("other", &Level::DEBUG));
        assert!(!levels.allows("app", &Level::INFO));
        assert!(levels.allows("app::db::pool", &Level::DEBUG));
        assert!(!levels.allows("app::quiet::x", &Level::ERROR));
        assert!(levels.allows("application", &Level::INFO), "prefixes match whole path segments only");
    }

    #[test]
    fn root_reset_restores_the_startup_level() {
        let mut levels = with(&[("", true, Some(LoggerLevel::LvlError))]);
        assert!(!levels.allows("x", &Level::WARN));
        levels.reset("");
        assert_eq!(levels.get("").level, Some(LoggerLevel::LvlInfo));
    }
}
