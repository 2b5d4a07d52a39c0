//! Built-in services, hosted by every server before the user's managers: `srv`, `config`, `log`,
//! and `events` when enabled.

mod config_service;
mod events_service;
mod logger_service;
mod server_service;

pub(crate) use config_service::ConfigManager;
pub(crate) use events_service::EventsManager;
pub(crate) use logger_service::LoggerManager;
pub(crate) use server_service::{Catalog, ServerControl, ServerManager};
