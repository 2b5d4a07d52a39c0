//! The builder options of proxying: the services a main server forwards and how, and how a
//! backend registers with its main server.

use std::time::Duration;

use super::RpcServerBuilder;
use crate::ApiVersion;
use crate::auth::BearerToken;
use crate::proxy::Proxied;
use crate::tls::ClientTls;

/// The host a backend registers with its main server: where the main server will call it.
///
/// ```
/// use grpc_helper::server::RegisterHost;
///
/// // A backend on another machine than its main server.
/// let builder = grpc_helper::RpcServer::builder()
///     .register_with_main(&["sample"], "1.0")
///     .register_host(RegisterHost::Current);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RegisterHost {
    /// `rpc-main-host`, as the original sends it: right when the backend runs on the main
    /// server's machine (the default `localhost`).
    #[default]
    MainHost,
    /// This machine's address on the route to the main server (the original's
    /// `_proxy_use_current_host`): for a backend on another machine.
    Current,
    /// This name or address.
    Named(String),
}

/// How a backend reaches its main server.
#[derive(Clone, Default)]
pub(crate) struct MainOptions {
    pub(crate) host: RegisterHost,
    pub(crate) token: Option<BearerToken>,
    pub(crate) tls: Option<ClientTls>,
}

impl RpcServerBuilder {
    /// Declares a service served by another server (a backend that registers itself with
    /// `srv.proxy_register`): calls to `/<grpc_service>/...` are forwarded to it, after the
    /// API version check against `V`. `name` is the short name shown by `info`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), grpc_helper::RpcError> {
    /// # #[derive(grpc_helper::ApiVersion)] enum SampleApiVersion { V1 = 1 }
    /// let main = grpc_helper::RpcServer::builder().proxy::<SampleApiVersion>("sample", "SampleService").start().await?;
    /// # Ok(()) }
    /// ```
    pub fn proxy<V: ApiVersion>(mut self, name: &'static str, grpc_service: &'static str) -> Self {
        self.proxies.push(Proxied::new::<V>(name, grpc_service));
        self
    }

    /// How long a forwarded call whose caller set no deadline may wait for its backend to start
    /// answering (default: the static item `rpc-proxy-deadline`, 60 s; `None`: forever, as the
    /// original); then the caller gets DEADLINE_EXCEEDED and the backend's call is cancelled, so
    /// a hung backend cannot pile up calls. A caller's own deadline (`grpc-timeout`) always
    /// applies instead. A reply stream that has started runs on.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().forward_deadline(Some(Duration::from_secs(10)));
    /// ```
    pub fn forward_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.forward.deadline_given = Some(deadline);
        self
    }

    /// Also forwards the caller's `authorization` metadata to backends (default: removed, as
    /// credentials for the main server are not for whoever registered a backend).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().forward_authorization(true);
    /// ```
    pub fn forward_authorization(mut self, forward: bool) -> Self {
        self.forward.forward_authorization = forward;
        self
    }

    /// The bearer token this main server sends to its backends (forwarded calls without a
    /// forwarded `authorization`, and the config calls it fans out).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().backend_bearer_token("backends-s3cret");
    /// ```
    pub fn backend_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.forward.backend_token = Some(BearerToken::new(token));
        self
    }

    /// Calls the backends over TLS, trusting this CA.
    ///
    /// ```no_run
    /// let ca = std::fs::read("ca.pem")?;
    /// let builder = grpc_helper::RpcServer::builder().backend_tls(grpc_helper::tls::ClientTls::new(ca));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend_tls(mut self, tls: ClientTls) -> Self {
        self.forward.backend_tls = Some(tls);
        self
    }

    /// Once loaded, registers these services with the main server (`rpc-main-host`:
    /// `rpc-main-port`, retried for `rpc-client-timeout`) as served here, with `version`; forgets
    /// them at shutdown. A failed registration fails the start. See
    /// [`register_host`](Self::register_host), [`main_bearer_token`](Self::main_bearer_token)
    /// and [`main_tls`](Self::main_tls).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().register_with_main(&["sample"], "1.0");
    /// ```
    pub fn register_with_main(mut self, names: &[&str], version: impl Into<String>) -> Self {
        self.main_registration = Some((names.iter().map(|n| (*n).to_owned()).collect(), version.into()));
        self
    }

    /// The host sent with the registration (default [`RegisterHost::MainHost`]).
    ///
    /// ```
    /// use grpc_helper::server::RegisterHost;
    /// let builder = grpc_helper::RpcServer::builder().register_host(RegisterHost::Named("backend-3.local".into()));
    /// ```
    pub fn register_host(mut self, host: RegisterHost) -> Self {
        self.main.host = host;
        self
    }

    /// The bearer token for a main server with an auth guard (`proxy_register` and
    /// `proxy_forget` are guarded).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().main_bearer_token("main-s3cret");
    /// ```
    pub fn main_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.main.token = Some(BearerToken::new(token));
        self
    }

    /// Reaches the main server over TLS, trusting this CA.
    ///
    /// ```no_run
    /// let ca = std::fs::read("main-ca.pem")?;
    /// let builder = grpc_helper::RpcServer::builder().main_tls(grpc_helper::tls::ClientTls::new(ca));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn main_tls(mut self, tls: ClientTls) -> Self {
        self.main.tls = Some(tls);
        self
    }
}
