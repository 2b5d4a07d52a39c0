//! Who may administer a server: the builder options (admin networks, remote admin, a token
//! file) and the [`Gate`](crate::auth::Gate) that `start` assembles from them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::RpcError;
use crate::api::ResultCode;
use crate::auth::{AuthGuard, BearerToken, Gate};

/// The admin options given to the builder.
#[derive(Default)]
pub(crate) struct AdminOptions {
    /// As given to `admin_networks` (parsed at start, where a bad one is reported).
    pub(super) networks: Option<Vec<String>>,
    pub(super) allow_remote: bool,
    pub(super) token_file: Option<PathBuf>,
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
    config: &crate::config::Config,
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
    // The builder's networks, else `rpc-admin-networks` (validated when the config was read).
    let item = config.get(&crate::config::RpcConfig::ADMIN_NETWORKS);
    let from_config = crate::config::admin_networks(item.as_str()).map(str::to_owned).collect::<Vec<_>>();
    let given = admin.networks.clone().or_else(|| (!from_config.is_empty()).then_some(from_config));
    let networks = given.map(crate::auth::parse_networks).transpose().map_err(invalid)?;
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
