//! Accepted connections that the server can cut when the shutdown grace period runs out, or
//! when they hold resources without using them.
//!
//! tonic's graceful shutdown waits for every open stream to end, possibly forever; after the
//! grace period we `shutdown(2)` the remaining sockets, which ends their connections at once.
//!
//! Neither hyper nor h2 closes a connection that never sends its preface, or that completed the
//! handshake and then sits without a call: a watchdog does (see [`ConnectionLimits`]). Calls are
//! counted per connection by [`Tracked`], which finds the connection's state in what tonic
//! attaches to each request ([`ConnInfo`]): no lookup and no shared lock per call.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::Connected;

use super::metered::{ConnectionMeter, RequestBudget, meter};
use crate::RpcError;
use crate::api::ResultCode;

/// Transport limits of a server (see the `RpcServerBuilder` methods of the same names).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) http2_keepalive_interval: Option<Duration>,
    pub(crate) http2_keepalive_timeout: Duration,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    /// Bytes of request messages being received at once, per connection and per server
    /// (`None`: 16 and 64 times the largest request).
    pub(crate) receiving_per_connection: Option<usize>,
    pub(crate) receiving_per_server: Option<usize>,
    /// A request must arrive whole within this of the server's first wait for it (client
    /// streams: each message, once begun).
    pub(crate) request_read_timeout: Option<Duration>,
    /// Set at start: the largest request, and whether connections begin with a TLS handshake.
    pub(crate) max_request_size: usize,
    pub(crate) tls: bool,
}

impl ConnectionLimits {
    /// These limits, for a server whose largest request is `max_request_size`.
    pub(crate) fn resolved(mut self, max_request_size: usize, tls: bool) -> Self {
        self.max_request_size = max_request_size;
        self.tls = tls;
        self
    }

    /// The budgets of request bytes being received; never below one request of the largest size.
    fn budget(&self) -> RequestBudget {
        let at_least_one = |limit: Option<usize>, times: usize| {
            limit.unwrap_or(self.max_request_size.saturating_mul(times)).max(self.max_request_size)
        };
        RequestBudget::new(
            at_least_one(self.receiving_per_connection, 16),
            at_least_one(self.receiving_per_server, 64),
            self.max_request_size,
            self.request_read_timeout,
        )
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            // 256: on one connection throughput is flat past a few dozen calls in flight, while
            // each open call costs about 10 KiB (README, Connection limits).
            max_concurrent_streams: Some(256),
            // Off, as in gRPC's own servers (2 h there): with it on, hyper reads the clock for
            // every frame (cost measured in the README's benchmark). Vanished peers are found
            // by TCP keep-alive instead, which costs nothing per call.
            http2_keepalive_interval: None,
            http2_keepalive_timeout: Duration::from_secs(20),
            tcp_keepalive: Some(Duration::from_secs(60)),
            handshake_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(300)),
            receiving_per_connection: None,
            receiving_per_server: None,
            request_read_timeout: Some(Duration::from_secs(30)),
            max_request_size: crate::call::MessageLimits::default().max_decoding,
            tls: false,
        }
    }
}

/// Bytes of a client's HTTP/2 preface plus a SETTINGS frame header: a connection that sent
/// fewer has not started (a TLS hello is longer, so TLS connections pass too).
const PREFACE_LEN: usize = 24 + 9;

/// One open connection, as the watchdog sees it.
struct ConnState {
    fd: RawFd,
    /// The TCP peer (never the caller's `ip` metadata, which the caller chooses): the admin
    /// networks and the events queues' owners use it.
    peer: SocketAddr,
    accepted: Instant,
    /// The transport is up: at once for TCP, once the TLS handshake completed for TLS (tonic
    /// asks for the connection's info then).
    ready: AtomicBool,
    /// Request bytes being received.
    meter: Arc<ConnectionMeter>,
    /// Bytes read, counted up to [`PREFACE_LEN`].
    read: AtomicUsize,
    /// Calls in progress.
    calls: AtomicUsize,
    /// When the connection was last busy (ms since `accepted`).
    busy_ms: AtomicU64,
}

impl ConnState {
    fn touch(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.busy_ms.store(ms, Ordering::Relaxed);
    }

    fn started(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.read.load(Ordering::Relaxed) >= PREFACE_LEN
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        let busy = Duration::from_millis(self.busy_ms.load(Ordering::Relaxed));
        Some(self.accepted.elapsed().saturating_sub(busy))
    }
}

#[derive(Default)]
struct Registry {
    open: HashMap<u64, Arc<ConnState>>,
}

/// Open connections, by id, so that they can be cut together.
#[derive(Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    registry: Mutex<Registry>,
}

impl Connections {
    /// Shuts every open socket down; returns how many were cut.
    pub(crate) fn cut_all(&self) -> usize {
        self.cut_where(|_| true)
    }

    /// Shuts the matching sockets down; returns how many were cut.
    fn cut_where(&self, cut: impl Fn(&ConnState) -> bool) -> usize {
        let registry = self.registry.lock();
        let mut count = 0;
        for state in registry.open.values().filter(|s| cut(s)) {
            // SAFETY: the fd stays open while registered: deregistration (under this lock)
            // happens before the stream is closed.
            unsafe { libc::shutdown(state.fd, libc::SHUT_RDWR) };
            count += 1;
        }
        count
    }

    /// Closes, every tick, the connections past their handshake or idle timeout; at shutdown,
    /// closes the ones that never started (no call can be in progress there), then ends.
    fn spawn_watchdog(connections: Weak<Self>, limits: ConnectionLimits, stop: CancelSignal) {
        let timeouts = [limits.handshake_timeout, limits.idle_timeout];
        let Some(shortest) = timeouts.iter().flatten().min().copied() else { return };
        let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::spawn(async move {
            let stopped = stop.wait();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(tick) => {}
                    () = &mut stopped => {
                        if let Some(connections) = connections.upgrade() {
                            connections.cut_where(|s| !s.started());
                        }
                        return;
                    }
                }
                let Some(connections) = connections.upgrade() else { return };
                let silent = connections
                    .cut_where(|s| limits.handshake_timeout.is_some_and(|t| !s.started() && s.accepted.elapsed() > t));
                let idle = connections.cut_where(|s| {
                    limits.idle_timeout.is_some_and(|t| s.started() && s.idle_for().is_some_and(|idle| idle > t))
                });
                if silent + idle > 0 {
                    tracing::debug!("closed {silent} connection(s) that never started and {idle} idle one(s)");
                }
            }
        });
    }
}

/// Counts a call on its connection until its response body is dropped.
struct CallGuard(Arc<ConnState>);

impl CallGuard {
    fn new(state: &Arc<ConnState>) -> Self {
        state.calls.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(state))
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts the calls of each connection, for the idle timeout.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// What tonic attaches to every request of a connection: the connection's state.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    state: Arc<ConnState>,
}

impl ConnInfo {
    /// The connection's TCP peer.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.state.peer
    }
}

/// The TCP peer of the connection a request came on (`None` outside a server connection).
pub(crate) fn peer_of<B>(request: &http::Request<B>) -> Option<IpAddr> {
    connection_of(request).map(|state| state.peer.ip())
}

fn connection_of<B>(request: &http::Request<B>) -> Option<&Arc<ConnState>> {
    // tonic inserts it for TLS connections too (beside `TlsConnectInfo`).
    request.extensions().get::<ConnInfo>().map(|info| &info.state)
}

impl<S, B> tower::Service<http::Request<tonic::body::Body>> for Tracked<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let Some(state) = connection_of(&request) else {
            return TrackedFuture { inner: self.inner.call(request), call: None };
        };
        let call = CallGuard::new(state);
        let request = meter(request, &call.0.meter);
        TrackedFuture { inner: self.inner.call(request), call: Some(call) }
    }
}

pin_project_lite::pin_project! {
    /// The inner response, whose body carries the call's guard.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        call: Option<CallGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let call = this.call.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, _call: call })))
    }
}

pin_project_lite::pin_project! {
    /// A response body; the call counts as in progress until it is dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _call: Option<CallGuard>,
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// SO_KEEPALIVE with the first probe after `idle`, then every `idle / 4`, dropping the
/// connection after 4 unanswered probes (2 × `idle` in all).
fn set_tcp_keepalive(fd: RawFd, idle: Duration) {
    let set = |level, name, value: libc::c_int| {
        // SAFETY: a valid socket and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    let seconds = |d: Duration| libc::c_int::try_from(d.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, seconds(idle));
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, seconds(idle / 4));
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4);
}

/// The listener as a stream of connections (TCP_NODELAY set, registered for cutting).
pub(crate) struct Incoming {
    listener: TcpListener,
    connections: Arc<Connections>,
    tcp_keepalive: Option<Duration>,
    tls: bool,
    budget: Arc<RequestBudget>,
    /// After an accept error (e.g. out of file descriptors), pause instead of spinning.
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Incoming {
    /// Also starts the watchdog of the handshake and idle timeouts (it ends at `stop`).
    pub(crate) fn new(
        listener: TcpListener,
        connections: Arc<Connections>,
        limits: &ConnectionLimits,
        stop: CancelSignal,
    ) -> Self {
        Connections::spawn_watchdog(Arc::downgrade(&connections), *limits, stop);
        let budget = Arc::new(limits.budget());
        Self { listener, connections, tcp_keepalive: limits.tcp_keepalive, tls: limits.tls, budget, backoff: None }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(sleep) = &mut self.backoff {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.backoff = None;
        }
        match self.listener.poll_accept(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                if let Some(idle) = self.tcp_keepalive {
                    set_tcp_keepalive(stream.as_raw_fd(), idle);
                }
                let id = self.connections.next.fetch_add(1, Ordering::Relaxed);
                let state = Arc::new(ConnState {
                    fd: stream.as_raw_fd(),
                    peer,
                    accepted: Instant::now(),
                    ready: AtomicBool::new(!self.tls),
                    meter: Arc::new(ConnectionMeter::new(&self.budget)),
                    read: AtomicUsize::new(0),
                    calls: AtomicUsize::new(0),
                    busy_ms: AtomicU64::new(0),
                });
                let mut registry = self.connections.registry.lock();
                registry.open.insert(id, Arc::clone(&state));
                drop(registry);
                Poll::Ready(Some(Ok(Connection { stream, id, state, connections: Arc::clone(&self.connections) })))
            }
            Poll::Ready(Err(e)) => {
                tracing::warn!("accept failed: {e}");
                self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

/// One accepted TCP connection.
pub(crate) struct Connection {
    stream: TcpStream,
    id: u64,
    state: Arc<ConnState>,
    connections: Arc<Connections>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.connections.registry.lock().open.remove(&self.id);
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnInfo;

    /// Asked once the connection is ready to serve: for TLS, once the handshake completed.
    fn connect_info(&self) -> ConnInfo {
        self.state.ready.store(true, Ordering::Relaxed);
        ConnInfo { state: Arc::clone(&self.state) }
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if !self.state.started() {
            self.state.read.fetch_add(buf.filled().len() - before, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Binds the listener; the default address is every address, IPv6 and IPv4.
pub(crate) async fn bind(ip: Option<IpAddr>, port: u16) -> Result<tokio::net::TcpListener, RpcError> {
    let attempt = |ip: IpAddr| tokio::net::TcpListener::bind(SocketAddr::new(ip, port));
    match ip {
        Some(ip) => attempt(ip).await.map_err(|e| port_busy(port, &e)),
        // Dual stack by default, as the original (`[::]`); IPv4 only where IPv6 is off.
        None => match attempt(IpAddr::V6(Ipv6Addr::UNSPECIFIED)).await {
            Ok(listener) => Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(port_busy(port, &e)),
            Err(_) => attempt(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await.map_err(|e| port_busy(port, &e)),
        },
    }
}

pub(crate) fn port_busy(port: u16, error: &std::io::Error) -> RpcError {
    RpcError::new(ResultCode::ErrorPortBusy, format!("Failed to start RPC server on port {port}: {error}"))
}

/// A one-shot signal that can be awaited by many (the "stop accepting" trigger).
#[derive(Clone)]
pub(crate) struct CancelSignal(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for CancelSignal {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl CancelSignal {
    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }

    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|fired| *fired).await;
    }
}
