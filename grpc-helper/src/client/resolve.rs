//! Client endpoints from DNS: a name that resolves to several addresses (a headless Kubernetes
//! Service) is re-resolved periodically, and the client's balancer gains and loses endpoints as
//! the answer changes, without a restart.
//!
//! The rules are in the [`client`](super) module docs ("Endpoints from DNS").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;

/// The future a [`Resolver`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns a host name into the socket addresses of its servers.
///
/// [`SystemResolver`] (the default) asks the system; [`ManualResolver`] answers what it was
/// told, for tests; implement it for any other source (a service registry, a file). An empty
/// answer or an error keeps the client's last good set of addresses for that host.
///
/// ```
/// use std::net::SocketAddr;
/// use grpc_helper::client::{ResolveFuture, Resolver};
///
/// /// Every name is the two local servers of a test.
/// struct TwoLocal;
///
/// impl Resolver for TwoLocal {
///     fn resolve<'a>(&'a self, _host: &'a str, port: u16) -> ResolveFuture<'a> {
///         Box::pin(async move {
///             Ok(vec![SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 2], port))])
///         })
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
/// let client = grpc_helper::RpcClient::builder("my-service", 54321).resolver(TwoLocal).connect_lazy()?;
/// # Ok(()) }
/// ```
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host` (servers listening on `port`, unless the source knows better).
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        (**self).resolve(host, port)
    }
}

/// The system's resolver (`getaddrinfo`, through [`tokio::net::lookup_host`]): `/etc/hosts`,
/// then DNS, as every other program of the host resolves names.
///
/// ```
/// use grpc_helper::client::{Resolver, SystemResolver};
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let addresses = SystemResolver.resolve("localhost", 54321).await?;
/// assert!(addresses.iter().all(|a| a.ip().is_loopback() && a.port() == 54321));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A resolver answering what it was last told: drives a client's endpoints from a test, or from
/// a discovery source of your own. Clones share the same answers.
///
/// Addresses are returned as set, ports included (the port given to the builder is not applied).
/// A host never set is an error (`NotFound`).
///
/// ```
/// use std::net::SocketAddr;
/// use grpc_helper::client::{ManualResolver, Resolver};
///
/// # #[tokio::main] async fn main() {
/// let resolver = ManualResolver::new();
/// let one = SocketAddr::from(([127, 0, 0, 1], 50001));
/// resolver.set("my-service", [one]);
/// assert_eq!(resolver.resolve("my-service", 54321).await.unwrap(), vec![one]);
/// resolver.fail("my-service", "SERVFAIL");
/// assert!(resolver.resolve("my-service", 54321).await.is_err());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualResolver {
    answers: Arc<parking_lot::Mutex<HashMap<String, Answer>>>,
}

/// What a [`ManualResolver`] says of one host: its addresses, or the message of its failure.
type Answer = Result<Vec<SocketAddr>, String>;

impl ManualResolver {
    /// A resolver knowing no name yet.
    ///
    /// ```
    /// let resolver = grpc_helper::client::ManualResolver::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, `host` resolves to `addresses` (none: an empty answer).
    ///
    /// ```
    /// let resolver = grpc_helper::client::ManualResolver::new();
    /// resolver.set("my-service", ["127.0.0.1:50001".parse().unwrap(), "127.0.0.1:50002".parse().unwrap()]);
    /// ```
    pub fn set(&self, host: impl Into<String>, addresses: impl IntoIterator<Item = SocketAddr>) {
        self.answers.lock().insert(host.into(), Ok(addresses.into_iter().collect()));
    }

    /// From now on, resolving `host` fails with `message`.
    ///
    /// ```
    /// let resolver = grpc_helper::client::ManualResolver::new();
    /// resolver.fail("my-service", "the DNS server is down");
    /// ```
    pub fn fail(&self, host: impl Into<String>, message: impl Into<String>) {
        self.answers.lock().insert(host.into(), Err(message.into()));
    }
}

impl Resolver for ManualResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let answer = match self.answers.lock().get(host) {
            Some(Ok(addresses)) => Ok(addresses.clone()),
            Some(Err(message)) => Err(io::Error::other(message.clone())),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no such name {host:?}"))),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// The default re-resolve period.
pub(super) const DEFAULT_PERIOD: Duration = Duration::from_secs(10);

/// How long one resolution may take before it counts as failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// While a name has never resolved to an address, it is retried at least this often.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What calls see of the resolution.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    /// The client's endpoints now.
    pub(super) addresses: BTreeSet<SocketAddr>,
    /// Every name was tried at least once.
    pub(super) attempted: bool,
    /// The last failure, as said at WARN.
    pub(super) error: Option<String>,
}

/// A resolver as the builder keeps it (cloneable, printable).
#[derive(Clone)]
pub(super) struct SharedResolver(pub(super) Arc<dyn Resolver>);

impl std::fmt::Debug for SharedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// Builds the endpoint of one resolved address of `host:port`.
pub(super) type MakeEndpoint = Box<dyn Fn(&str, u16, SocketAddr) -> Result<Endpoint, String> + Send + Sync>;

/// The background task keeping the balancer's endpoints in line with the names. Ends when the
/// client is gone (the balancer dropped its receiver).
pub(super) struct Refresh {
    pub(super) names: Vec<(String, u16)>,
    pub(super) resolver: Arc<dyn Resolver>,
    pub(super) period: Duration,
    pub(super) changes: mpsc::Sender<Change<SocketAddr, Endpoint>>,
    pub(super) make: MakeEndpoint,
    pub(super) state: watch::Sender<Snapshot>,
}

impl Refresh {
    pub(super) async fn run(self) {
        // The last good answer of each name, and the failure being reported for it.
        let mut found: Vec<BTreeSet<SocketAddr>> = vec![BTreeSet::new(); self.names.len()];
        let mut failing: Vec<Option<String>> = vec![None; self.names.len()];
        // Endpoints in the balancer, with the name each came from.
        let mut current: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        loop {
            for (i, (host, port)) in self.names.iter().enumerate() {
                let failure = match tokio::time::timeout(RESOLVE_TIMEOUT, self.resolver.resolve(host, *port)).await {
                    Ok(Ok(addresses)) if !addresses.is_empty() => {
                        if failing[i].take().is_some() {
                            tracing::info!(target: "grpc_helper::client", "{host}:{port} resolves again ({} address(es))", addresses.len());
                        }
                        found[i] = addresses.into_iter().collect();
                        continue;
                    }
                    Ok(Ok(_)) => "resolved to no address".to_owned(),
                    Ok(Err(e)) => format!("cannot be resolved: {e}"),
                    Err(_) => format!("cannot be resolved: no answer within {}s", RESOLVE_TIMEOUT.as_secs()),
                };
                let kept = match found[i].len() {
                    0 => "no address known yet".to_owned(),
                    n => format!("keeping its last {n} address(es)"),
                };
                if failing[i].as_deref() == Some(failure.as_str()) {
                    tracing::debug!(target: "grpc_helper::client", "{host}:{port} still {failure} ({kept})");
                } else {
                    tracing::warn!(target: "grpc_helper::client", "{host}:{port} {failure} ({kept}); trying again");
                }
                failing[i] = Some(failure);
            }
            let mut wanted: BTreeMap<SocketAddr, usize> = BTreeMap::new();
            for (i, addresses) in found.iter().enumerate() {
                for address in addresses {
                    wanted.entry(*address).or_insert(i);
                }
            }
            if self.apply(&mut current, &wanted).await.is_err() {
                return; // the client is gone
            }
            let error = failing.iter().enumerate().rev().find_map(|(i, f)| {
                f.as_ref().map(|f| format!("{} {f}", crate::wire::authority(&self.names[i].0, self.names[i].1)))
            });
            self.state.send_replace(Snapshot { addresses: current.keys().copied().collect(), attempted: true, error });
            let wait = if found.iter().any(BTreeSet::is_empty) { self.period.min(FIRST_RETRY) } else { self.period };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.changes.closed() => return,
            }
        }
    }

    /// Sends the balancer the differences between `current` and `wanted`; `Err` once the
    /// balancer is gone.
    async fn apply(
        &self,
        current: &mut BTreeMap<SocketAddr, usize>,
        wanted: &BTreeMap<SocketAddr, usize>,
    ) -> Result<(), mpsc::error::SendError<Change<SocketAddr, Endpoint>>> {
        let gone: Vec<SocketAddr> = current.keys().filter(|a| !wanted.contains_key(a)).copied().collect();
        for address in gone {
            current.remove(&address);
            tracing::info!(target: "grpc_helper::client", "endpoint {address} removed ({} left)", current.len());
            self.changes.send(Change::Remove(address)).await?;
        }
        for (address, &i) in wanted {
            if current.contains_key(address) {
                continue;
            }
            let (host, port) = &self.names[i];
            match (self.make)(host, *port, *address) {
                Ok(endpoint) => {
                    self.changes.send(Change::Insert(*address, endpoint)).await?;
                    current.insert(*address, i);
                    tracing::info!(target: "grpc_helper::client", "endpoint {address} of {host}:{port} added ({} in all)", current.len());
                }
                Err(e) => {
                    tracing::warn!(target: "grpc_helper::client", "endpoint {address} of {host}:{port} skipped: {e}")
                }
            }
        }
        Ok(())
    }
}

/// Waits until the client has an endpoint (within `limit`; with `first_only`, only until every
/// name was tried once); the UNAVAILABLE status of a call finding none.
pub(super) async fn wait_for_address(
    mut state: watch::Receiver<Snapshot>,
    limit: Option<Duration>,
    first_only: bool,
    target: &str,
) -> Result<(), tonic::Status> {
    let ready = |s: &Snapshot| !s.addresses.is_empty() || (first_only && s.attempted);
    let waited = match limit {
        Some(limit) => tokio::time::timeout(limit, state.wait_for(ready)).await.ok().and_then(Result::ok).is_some(),
        None => state.wait_for(ready).await.is_ok(),
    };
    let snapshot = state.borrow();
    if waited && !snapshot.addresses.is_empty() {
        return Ok(());
    }
    let why = snapshot.error.clone().unwrap_or_else(|| "no resolution finished yet".to_owned());
    Err(tonic::Status::unavailable(format!("no address to call for {target}: {why}")))
}
