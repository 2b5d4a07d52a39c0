//! Builder methods for who may administer the server (see `server::admin` for the gate that
//! `start` assembles from them).

use std::path::PathBuf;

use super::RpcServerBuilder;

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

    /// Guards the dangerous RPCs with a [`BearerToken`](crate::auth::BearerToken) read from this file at start (trailing
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
