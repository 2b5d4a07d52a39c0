//! The [`Manager`] trait (implemented by `#[rpc_manager]`), and the contexts handed to managers:
//! [`ManagerContext`] (per service) and [`CallContext`] (per call).

use std::future::Future;
use std::sync::Arc;

use crate::call::StopSignal;
use crate::config::Config;
use crate::events::EventQueues;
use crate::logs::{RPC_SPAN_NAME, RPC_SPAN_TARGET};
use crate::{ApiVersion, Folders, RpcClient, RpcError};

/// A boxed `Send` future, as returned by the manager hooks.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A service implementation hosted by an [`RpcServer`](crate::RpcServer).
///
/// Implemented by `#[rpc_manager]`; not meant to be implemented by hand.
///
/// ```
/// use grpc_helper::{ApiVersion, CallContext, Manager, ManagerContext, RpcError, rpc_manager};
/// use grpc_helper::api::{Filter, MultiServiceInfo};
/// use grpc_helper::api::rpc_server_service_server;
///
/// #[derive(ApiVersion)]
/// enum InfoApiVersion { V1 = 1, V2 = 2 }
///
/// struct Info;
///
/// #[rpc_manager(service = "info", version = InfoApiVersion, grpc = rpc_server_service_server::RpcServerService)]
/// impl Info {
///     async fn info(&self, _filter: Filter, cx: CallContext) -> Result<MultiServiceInfo, RpcError> {
///         tracing::info!("called by {}", cx.caller());
///         Ok(MultiServiceInfo::default())
///     }
///
///     #[on_load]
///     async fn load(&self, cx: &ManagerContext) -> Result<(), RpcError> {
///         tracing::info!("{} is up", cx.service());
///         Ok(())
///     }
/// }
///
/// assert_eq!(<Info as Manager>::SERVICE, "info");
/// assert_eq!(<Info as Manager>::Version::CURRENT, 2);
/// ```
pub trait Manager: Send + Sync + Sized + 'static {
    /// The API version enum of the service.
    type Version: ApiVersion;
    /// The short service name (`info` lists it; the auto-client is `<SERVICE>-client`).
    const SERVICE: &'static str;
    /// `crate-name:version` of the crate defining the manager (the `version` shown by `info`).
    const COMPONENT: &'static str;

    /// Runs once every service is up (`#[on_load]`); an error stops the server.
    fn on_load<'a>(&'a self, cx: &'a ManagerContext) -> BoxFuture<'a, Result<(), RpcError>> {
        let _ = cx;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Runs when the server starts shutting down (`#[on_shutdown]`), while in-flight calls drain.
    /// Reply streams still open once every hook ran end with `ERROR_STREAM_SHUTDOWN`.
    fn on_shutdown<'a>(&'a self, cx: &'a ManagerContext) -> BoxFuture<'a, ()> {
        let _ = cx;
        Box::pin(std::future::ready(()))
    }
}

/// What a hosted manager gets from its server: its name, logging span, a lock, and an
/// auto-client that reaches every service of the server.
///
/// Cheap to clone; keep a clone (e.g. from the load hook) for background tasks.
///
/// ```
/// use std::time::Duration;
/// use grpc_helper::api::{Filter, LoggerStatus};
/// use grpc_helper::{ManagerContext, RpcError, rpc_manager};
///
/// struct Levels;
///
/// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
/// impl Levels {
///     async fn get(&self, _filter: Filter) -> Result<LoggerStatus, RpcError> { Ok(LoggerStatus::default()) }
///
///     #[on_load]
///     async fn load(&self, cx: &ManagerContext) {
///         let cx = cx.clone(); // outlives the hook
///         tokio::spawn(async move {
///             while !cx.is_shutting_down() {
///                 tokio::time::sleep(Duration::from_secs(60)).await;
///                 let _ = cx.send_event("levels-tick", &[]);
///             }
///         });
///     }
/// }
/// ```
#[derive(Clone)]
pub struct ManagerContext(Arc<ContextInner>);

struct ContextInner {
    service: &'static str,
    span: tracing::Span,
    lock: tokio::sync::Mutex<()>,
    client: RpcClient,
    /// The client to the main server, once this server registered its services with one.
    main: Arc<std::sync::OnceLock<RpcClient>>,
    config: Config,
    folders: Folders,
    events: Option<Arc<dyn EventQueues>>,
    /// Fired when shutdown starts.
    shutting_down: StopSignal,
    /// Fired once the shutdown hooks ran: reply streams still open end then.
    end_streams: Arc<StopSignal>,
}

impl ManagerContext {
    pub(crate) fn new(
        service: &'static str,
        server: u64,
        client: RpcClient,
        main: Arc<std::sync::OnceLock<RpcClient>>,
        config: Config,
        folders: Folders,
        events: Option<Arc<dyn EventQueues>>,
    ) -> Self {
        Self(Arc::new(ContextInner {
            service,
            span: tracing::info_span!(target: RPC_SPAN_TARGET, RPC_SPAN_NAME, service, server),
            lock: tokio::sync::Mutex::new(()),
            client,
            main,
            config,
            folders,
            events,
            shutting_down: StopSignal::default(),
            end_streams: Arc::default(),
        }))
    }

    /// The server's configuration: `cx.config().get(&MY_ITEM).as_int()?`.
    ///
    /// ```
    /// use grpc_helper::config::{ConfigItem, Validator};
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, RpcError, rpc_manager};
    /// # struct Levels;
    ///
    /// const MAX_NAMES: ConfigItem = ConfigItem::new("levels-max-names", "Names per request", "16").validator(Validator::PosInt);
    ///
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         let max = cx.config().get(&MAX_NAMES).as_int()?;
    ///         if filter.names.len() as i64 > max {
    ///             return Err(RpcError::new(grpc_helper::ResultCode::ErrorParamInvalid, format!("at most {max} names")));
    ///         }
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Sends an event to every listener of this server's `events` service.
    ///
    /// # Errors
    /// [`ResultCode::ErrorRequestUnsupported`](crate::ResultCode::ErrorRequestUnsupported) when
    /// the server has no events service (see `RpcServerBuilder::with_events`); the codes of
    /// `send` for an invalid event or property name.
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn reset(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         cx.send_event("levels-reset", &[("by", cx.caller().client())])?;
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn send_event(&self, name: &str, properties: &[(&str, &str)]) -> Result<(), RpcError> {
        let event = crate::api::Event {
            name: name.to_owned(),
            properties: properties
                .iter()
                .map(|(n, v)| crate::api::EventProperty { name: (*n).to_owned(), value: (*v).to_owned() })
                .collect(),
        };
        crate::events::validate(&event)?;
        let events = self.0.events.as_ref().ok_or_else(|| {
            RpcError::new(
                crate::ResultCode::ErrorRequestUnsupported,
                "This server has no events service: build it with RpcServerBuilder::with_events()",
            )
        })?;
        events.send(event);
        Ok(())
    }

    /// The server's system, user and workspace folders.
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     #[on_load]
    ///     async fn load(&self, cx: &ManagerContext) -> Result<(), RpcError> {
    ///         if let Some(workspace) = cx.folders().workspace_dir() {
    ///             tracing::info!("state kept in {}", workspace.display());
    ///         }
    ///         Ok(())
    ///     }
    /// #   async fn get(&self, _filter: Filter) -> Result<LoggerStatus, RpcError> { Ok(LoggerStatus::default()) }
    /// }
    /// ```
    pub fn folders(&self) -> &Folders {
        &self.0.folders
    }

    /// The short service name.
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     #[on_load]
    ///     async fn load(&self, cx: &ManagerContext) {
    ///         assert_eq!(cx.service(), "levels");
    ///     }
    /// #   async fn get(&self, _filter: Filter) -> Result<LoggerStatus, RpcError> { Ok(LoggerStatus::default()) }
    /// }
    /// ```
    pub fn service(&self) -> &'static str {
        self.0.service
    }

    /// The manager's logging span (`rpc{service=...}`): every call and hook runs inside it, so
    /// plain `tracing` macros in manager code are attributed to the service.
    ///
    /// Work spawned outside a call or hook can enter it to keep that attribution:
    ///
    /// ```
    /// use tracing::Instrument;
    ///
    /// fn spawn_cleanup(cx: &grpc_helper::ManagerContext) {
    ///     tokio::spawn(async { tracing::info!("cleaning up") }.instrument(cx.span().clone()));
    /// }
    /// ```
    pub fn span(&self) -> &tracing::Span {
        &self.0.span
    }

    /// The manager's lock, to serialise calls that must not interleave.
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn set(&self, _update: grpc_helper::api::LoggerUpdate, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         let _one_at_a_time = cx.lock().await; // held until the reply
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock.lock().await
    }

    /// A client named `<service>-client` on every service of this server.
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         let info = cx.client().server_service().info(Filter::default()).await?.into_inner();
    ///         tracing::info!("this server hosts {} services", info.items.len());
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn client(&self) -> &RpcClient {
        &self.0.client
    }

    /// The client to the main server this one registered its services with (`rpc-main-host`,
    /// `rpc-main-port`), once registered: the original's `proxy_client` of a proxied manager,
    /// through which a backend sends and listens to the main server's events. `None` before the
    /// registration (during `load` hooks) and on a server that registers with none.
    ///
    /// ```
    /// # use grpc_helper::api::{Empty, Event, LoggerStatus, Filter};
    /// # use grpc_helper::{CallContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         if let Some(main) = cx.main_client() {
    ///             main.events_service().send(Event { name: "levels-read".into(), properties: vec![] }).await?;
    ///         }
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn main_client(&self) -> Option<&RpcClient> {
        self.0.main.get()
    }

    /// The backends registered with this (main) server, once each: the `(host, port)` of every
    /// proxied service with a registration, the host being `rpc-main-host` when the backend gave
    /// none (the original's `_proxied_servers`).
    ///
    /// ```
    /// # use grpc_helper::api::{LoggerStatus, Filter};
    /// # use grpc_helper::{CallContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         for (host, port) in cx.proxied_servers().await? {
    ///             tracing::info!("backend at {host}:{port}");
    ///         }
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub async fn proxied_servers(&self) -> Result<std::collections::BTreeSet<(String, u16)>, RpcError> {
        let info = self.client().server_service().info(crate::api::Filter::default()).await?.into_inner();
        let main_host = self.config().get(&crate::config::RpcConfig::MAIN_HOST);
        let backend = |s: crate::api::ServiceInfo| {
            let port = u16::try_from(s.proxy_port).ok().filter(|p| *p > 0)?;
            Some((if s.proxy_host.is_empty() { main_host.as_str().to_owned() } else { s.proxy_host }, port))
        };
        Ok(info.items.into_iter().filter_map(backend).collect())
    }

    /// A client to each of [`proxied_servers`](Self::proxied_servers), named after this
    /// service, with `rpc-client-timeout` (the original's `_proxied_clients`).
    ///
    /// ```
    /// # use grpc_helper::api::{LoggerStatus, Filter};
    /// # use grpc_helper::{CallContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         for backend in cx.proxied_clients().await? {
    ///             backend.logger_service().get(filter.clone()).await?;
    ///         }
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub async fn proxied_clients(&self) -> Result<Vec<RpcClient>, RpcError> {
        let timeout = self.config().get(&crate::config::RpcConfig::CLIENT_TIMEOUT).as_duration()?;
        let client = |(host, port): (String, u16)| {
            RpcClient::builder(&host, port).name(self.service()).timeout(timeout).connect_lazy()
        };
        self.proxied_servers().await?.into_iter().map(client).collect()
    }

    /// True once the server started shutting down (in-flight calls may still be running).
    ///
    /// ```
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// # use grpc_helper::{CallContext, ManagerContext, RpcError, rpc_manager};
    /// # struct Levels;
    /// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
    /// impl Levels {
    ///     async fn reset(&self, _filter: Filter, cx: CallContext) -> Result<LoggerStatus, RpcError> {
    ///         if cx.is_shutting_down() {
    ///             return Err(RpcError::new(grpc_helper::ResultCode::ErrorStateUnexpected, "shutting down: not resetting"));
    ///         }
    ///         Ok(LoggerStatus::default())
    ///     }
    /// }
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.0.shutting_down.is_fired()
    }

    /// Completes when the server starts shutting down (at once if it already has).
    ///
    /// The future owns what it needs: move it into a background task or a stream to stop them
    /// at shutdown. Reply streams still open once the shutdown hooks have run end on their own
    /// with a last `ERROR_STREAM_SHUTDOWN` item (in band when the item has an `r` field); a
    /// stream that ends on this signal itself chooses its last item.
    ///
    /// ```
    /// use std::time::Duration;
    /// use grpc_helper::{CallContext, ReplyStream, RpcError, rpc_manager};
    /// use grpc_helper::api::{EventApiVersion, EventFilter, EventStatus, event_service_server};
    ///
    /// struct Ticker;
    ///
    /// #[rpc_manager(service = "ticker", version = EventApiVersion, grpc = event_service_server::EventService)]
    /// impl Ticker {
    ///     /// A status every second until the server shuts down; then the stream ends normally.
    ///     async fn listen(&self, _filter: EventFilter, cx: CallContext) -> Result<ReplyStream<EventStatus>, RpcError> {
    ///         let (tx, rx) = tokio::sync::mpsc::channel(1);
    ///         let stop = cx.shutdown_signal();
    ///         tokio::spawn(async move {
    ///             tokio::pin!(stop);
    ///             loop {
    ///                 tokio::select! {
    ///                     () = &mut stop => break,
    ///                     () = tokio::time::sleep(Duration::from_secs(1)) => {
    ///                         if tx.send(Ok(EventStatus::default())).await.is_err() {
    ///                             break; // the caller left
    ///                         }
    ///                     }
    ///                 }
    ///             }
    ///         });
    ///         Ok(ReplyStream::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    ///     }
    /// }
    /// ```
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.0.shutting_down.wait()
    }

    pub(crate) fn set_shutting_down(&self) {
        self.0.shutting_down.fire();
    }

    /// Ends the reply streams still open (after the shutdown hooks).
    pub(crate) fn end_streams(&self) {
        self.0.end_streams.fire();
    }

    pub(crate) fn streams_end(&self) -> &Arc<StopSignal> {
        &self.0.end_streams
    }
}
