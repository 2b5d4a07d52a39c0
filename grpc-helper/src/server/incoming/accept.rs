//! The listener: binding, and accepting connections as a stream that tonic serves.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::ConnectionLimits;
use super::io::Connection;
use super::pings::PingPolicy;
use super::registry::{CancelSignal, ConnState, Connections};
use crate::RpcError;
use crate::api::ResultCode;
use crate::server::budget::{ConnectionMeter, RequestBudget};

/// The listener as a stream of connections (TCP_NODELAY set, registered for cutting).
pub(crate) struct Incoming {
    listener: TcpListener,
    connections: Arc<Connections>,
    tcp_keepalive: Option<Duration>,
    /// TLS is terminated here, not by tonic, so that the connection sees HTTP/2's frames.
    tls: Option<TlsAcceptor>,
    pings: Option<PingPolicy>,
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
        tls: Option<TlsAcceptor>,
        stop: CancelSignal,
    ) -> Self {
        Connections::spawn_watchdog(Arc::downgrade(&connections), *limits, stop);
        let budget = Arc::new(limits.budget());
        let (tcp_keepalive, pings) = (limits.tcp_keepalive, limits.pings());
        Self { listener, connections, tcp_keepalive, tls, pings, budget, backoff: None }
    }

    fn accepted(&self, stream: TcpStream, peer: SocketAddr) -> Connection {
        let _ = stream.set_nodelay(true);
        if let Some(idle) = self.tcp_keepalive {
            set_tcp_keepalive(&stream, idle);
        }
        let meter = ConnectionMeter::new(&self.budget);
        let state = Arc::new(ConnState::new(stream.as_raw_fd(), peer, self.tls.is_none(), meter));
        let id = self.connections.register(&state);
        Connection::new(stream, self.tls.as_ref(), self.pings, id, state, Arc::clone(&self.connections))
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
            Poll::Ready(Ok((stream, peer))) => Poll::Ready(Some(Ok(self.accepted(stream, peer)))),
            Poll::Ready(Err(e)) => {
                tracing::warn!("accept failed: {e}");
                self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

/// SO_KEEPALIVE with the first probe after `idle`, then every `idle / 4`, dropping the
/// connection after 4 unanswered probes (2 × `idle` in all).
fn set_tcp_keepalive(stream: &TcpStream, idle: Duration) {
    let idle = idle.max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 4).max(Duration::from_secs(1)))
        .with_retries(4);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!("TCP keep-alive not set: {e}");
    }
}

/// Binds the listener; the default address is every address, IPv6 and IPv4.
pub(crate) async fn bind(ip: Option<IpAddr>, port: u16) -> Result<TcpListener, RpcError> {
    let attempt = |ip: IpAddr| TcpListener::bind(SocketAddr::new(ip, port));
    match ip {
        Some(ip) => attempt(ip).await.map_err(|e| port_busy(port, &e)),
        // Dual stack by default, as the original (`[::]`); IPv4 only where IPv6 is off.
        None => match attempt(IpAddr::V6(Ipv6Addr::UNSPECIFIED)).await {
            Ok(listener) => Ok(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(port_busy(port, &e)),
            Err(_) => attempt(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await.map_err(|e| port_busy(port, &e)),
        },
    }
}

pub(crate) fn port_busy(port: u16, error: &io::Error) -> RpcError {
    RpcError::new(ResultCode::ErrorPortBusy, format!("Failed to start RPC server on port {port}: {error}"))
}
