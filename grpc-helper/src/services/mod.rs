//! Built-in services, hosted by every server before the user's managers.

mod server_service;

pub(crate) use server_service::ServerManager;
