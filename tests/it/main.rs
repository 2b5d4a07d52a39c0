//! The integration tests over real sockets, a module per area, in one binary (one link, and
//! every area's tests run side by side). What they share is in the support library
//! (`grpc_helper_tests`, `tests/support/`). Areas that set process-wide state or measure this
//! process's memory are binaries of their own (see `tests/Cargo.toml`).

mod auth;
mod bad_input;
mod balance;
mod cli;
mod client_api;
mod compression;
mod config_nats;
mod crash_restart;
mod dns;
mod ecosystem;
mod event_attacks;
mod events;
mod events_nats;
mod handover;
mod interop;
mod lifecycle;
mod metrics;
mod nats_access;
mod operations;
mod original_checklist;
mod original_warnings;
mod parsers;
mod persistence;
mod proxy;
mod proxy_attacks;
mod proxy_config;
mod request_cost;
mod rpc;
mod security;
mod shutdown_load;
mod transport_attacks;
