//! The per-call context a manager method may take (`cx: CallContext`).

use std::ops::Deref;

use crate::{CallerMetadata, ManagerContext};

/// In a request's extensions: the router found its caller an administrator.
#[derive(Clone, Copy)]
pub(crate) struct AdminCaller;

/// In a request's extensions: the server's auth guard checked the caller's credentials for
/// this call (a guarded method) and accepted them; a panic's stack may go to it, as to a caller
/// on this machine.
#[derive(Clone, Copy)]
pub(crate) struct Authenticated;

/// Per-call context: the caller's metadata and the manager's [`ManagerContext`] (by `Deref`).
///
/// Declare it as an optional second argument of an RPC method: `cx: CallContext`.
///
/// ```
/// use grpc_helper::api::{Filter, LoggerStatus};
/// use grpc_helper::{CallContext, RpcError, rpc_manager};
///
/// struct Levels;
///
/// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
/// impl Levels {
///     async fn get(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
///         tracing::info!("{} called by {}", cx.method(), cx.caller());
///         Ok(LoggerStatus::default())
///     }
/// }
/// ```
#[derive(Clone)]
pub struct CallContext {
    manager: ManagerContext,
    caller: CallerMetadata,
    method: &'static str,
    peer: Option<std::net::SocketAddr>,
    /// The router found the caller an administrator (only asked for calls that need it).
    admin: bool,
}

impl CallContext {
    pub(crate) fn new(
        manager: ManagerContext,
        caller: CallerMetadata,
        method: &'static str,
        peer: Option<std::net::SocketAddr>,
        admin: bool,
    ) -> Self {
        Self { manager, caller, method, peer, admin }
    }

    /// Whether the caller administers this server: from an admin network without a guard
    /// (loopback by default), or with credentials the guard accepts. Only known for the calls
    /// whose answer depends on it (`inspect`); `false` for the others.
    pub(crate) fn is_admin(&self) -> bool {
        self.admin
    }

    /// The TCP peer of the call's connection, which the caller cannot choose (unlike the `ip`
    /// of [`caller`](Self::caller)); `None` outside a server connection.
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         let local = cx.peer_addr().is_some_and(|peer| peer.ip().is_loopback());
    ///         tracing::info!("called from {}", if local { "this machine" } else { "elsewhere" });
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// Who is calling (client name, user, host, ip, api_version).
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn reset(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         if cx.caller().client() != "admin-tool" {
    ///             return Err(RpcError::new(grpc_helper::ResultCode::ErrorRequestUnsupported, "only admin-tool resets levels"));
    ///         }
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn caller(&self) -> &CallerMetadata {
        &self.caller
    }

    /// The gRPC method name being served (e.g. `method1`).
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         assert_eq!(cx.method(), "get");
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The manager-wide context (also reachable through `Deref`: `cx.service()`).
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         let manager: ManagerContext = cx.manager().clone(); // for work that outlives the call
    ///         tokio::spawn(async move { tracing::info!("follow-up in {}", manager.service()) });
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn manager(&self) -> &ManagerContext {
        &self.manager
    }
}

impl Deref for CallContext {
    type Target = ManagerContext;

    fn deref(&self) -> &ManagerContext {
        &self.manager
    }
}
