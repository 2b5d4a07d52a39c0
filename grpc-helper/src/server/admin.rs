//! Who may administer a server: the builder options (admin networks, remote admin, a token
//! file) and the [`Gate`](crate::auth::Gate) that `start` assembles from them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::builder::RpcServerBuilder;
use crate::RpcError;
use crate::api::ResultCode;
use crate::auth::{AuthGuard, BearerToken, Gate};

/// The admin options given to the builder.
#[derive(Default)]
pub(crate) struct AdminOptions {
    /// As given to `admin_networks` (parsed at start, where a bad one is reported).
    networks: Option<Vec<String>>,
    allow_remote: bool,
    token_file: Option<PathBuf>,
}

impl RpcServerBuilder {
    /// The networks whose peers may call the guarded RPCs (CIDR like `10.0.0.0/8`, or single
    /// addresses). Default: loopback only (`127.0.0.0/8`, `::1/128`) when no
    /// [`auth_guard`](Self::auth_guard) is set; every address when one is. Given explicitly, they
    /// apply with a guard too (a call must come from them *and* pass the guard). Others get
    /// PERMISSION_DENIED saying how to allow them. The peer is the connection's TCP peer, never
    /// the caller's `ip` metadata. An invalid network fails [`start`](Self::start).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().admin_networks(["127.0.0.0/8", "::1/128", "10.0.0.0/8"]);
    /// ```
    pub fn admin_networks<S: AsRef<str>>(mut self, networks: impl IntoIterator<Item = S>) -> Self {
        self.admin.networks = Some(networks.into_iter().map(|n| n.as_ref().to_owned()).collect());
        self
    }

    /// Accepts the guarded RPCs from any peer: with a guard, the guard alone decides; without
    /// one, anyone who can reach the port can shut the server down or change its configuration
    /// (the server warns at start). For servers behind a network of their own.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().allow_remote_admin();
    /// ```
    pub fn allow_remote_admin(mut self) -> Self {
        self.admin.allow_remote = true;
        self
    }

    /// Guards the dangerous RPCs with a [`BearerToken`] read from this file at start (trailing
    /// whitespace and newlines dropped), unless [`auth_guard`](Self::auth_guard) set a guard.
    /// A missing, unreadable or empty file fails the start.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().auth_token_file("/run/secrets/rpc-token");
    /// ```
    pub fn auth_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.admin.token_file = Some(path.into());
        self
    }
}

fn invalid(message: String) -> RpcError {
    RpcError::new(ResultCode::ErrorParamInvalid, message)
}

/// The guard from the token file, if one was given.
fn token_guard(path: &std::path::Path) -> Result<Box<dyn AuthGuard>, RpcError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("Cannot read the auth token file {}: {e}", path.display())))?;
    let token = text.trim_end();
    if token.is_empty() {
        return Err(invalid(format!("The auth token file {} is empty: it must hold the bearer token", path.display())));
    }
    Ok(Box::new(BearerToken::new(token)))
}

/// The gate of the guarded `paths`, with the start-up warning when the admin RPCs are open
/// to other machines.
pub(super) fn gate(
    guard: Option<Box<dyn AuthGuard>>,
    paths: HashSet<String>,
    admin: &AdminOptions,
    local_addr: SocketAddr,
) -> Result<Arc<Gate>, RpcError> {
    let guard = match (guard, &admin.token_file) {
        (Some(guard), _) => Some(guard),
        (None, Some(path)) => Some(token_guard(path)?),
        (None, None) => None,
    };
    if let Some(guard) = &guard {
        guard.validate().map_err(invalid)?;
    }
    let networks = admin.networks.as_ref().map(crate::auth::parse_networks).transpose().map_err(invalid)?;
    let gate = Gate::new(guard, paths, networks, admin.allow_remote);
    if !local_addr.ip().is_loopback() {
        warn_if_open(&gate, local_addr);
    }
    Ok(Arc::new(gate))
}

fn warn_if_open(gate: &Gate, local_addr: SocketAddr) {
    let message = match gate.networks_text() {
        _ if gate.has_guard() => return,
        None => format!(
            "!!! {local_addr} is reachable beyond this machine, has no auth guard and allows remote admin: anyone who \
             can reach it can shut it down or change its configuration (set RpcServerBuilder::auth_guard) !!!"
        ),
        Some(networks) => format!(
            "{local_addr} is reachable beyond this machine and has no auth guard: its admin RPCs (shutdown, config and \
             logger changes, proxy registration, events send and interrupt) are accepted only from {networks} (set \
             RpcServerBuilder::auth_guard or --auth-token-file to administer it remotely)"
        ),
    };
    crate::logs::notice(tracing::Level::WARN, &message);
}
