//! Built-in services, hosted by every server before the user's managers.

mod config_service;
mod server_service;

pub(crate) use config_service::ConfigManager;
pub(crate) use server_service::ServerManager;
