//! One accepted connection's bytes: TCP, or TLS once its handshake is done, with its HTTP/2
//! frames followed for the ping limit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::call::ConnInfo;

use super::pings::{PingPolicy, PingWatch};
use super::registry::{ConnState, Connections};

enum Transport {
    Plain(TcpStream),
    Handshake(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<TlsStream<TcpStream>>),
    /// The handshake failed.
    Failed,
}

/// One accepted TCP connection.
pub(crate) struct Connection {
    transport: Transport,
    pings: Option<Box<PingWatch>>,
    /// A GOAWAY ended it: reads see the end, writes go nowhere.
    ended: bool,
    id: u64,
    state: Arc<ConnState>,
    connections: Arc<Connections>,
}

impl Connection {
    pub(super) fn new(
        stream: TcpStream,
        tls: Option<&TlsAcceptor>,
        pings: Option<PingPolicy>,
        id: u64,
        state: Arc<ConnState>,
        connections: Arc<Connections>,
    ) -> Self {
        let transport = match tls {
            Some(acceptor) => Transport::Handshake(Box::new(acceptor.accept(stream))),
            None => Transport::Plain(stream),
        };
        let pings = pings.map(|policy| Box::new(PingWatch::new(policy)));
        Self { transport, pings, ended: false, id, state, connections }
    }

    /// Completes the TLS handshake, if it is still going on.
    fn handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Transport::Handshake(accept) = &mut self.transport else { return Poll::Ready(Ok(())) };
        match ready!(Pin::new(&mut **accept).poll(cx)) {
            Ok(tls) => {
                self.transport = Transport::Tls(Box::new(tls));
                self.state.ready.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                self.transport = Transport::Failed;
                tracing::debug!("TLS handshake with {} failed: {e}", self.state.peer);
                Poll::Ready(Err(e))
            }
        }
    }

    /// The stream to read and write (none before the handshake completed, or after it failed).
    fn io(&mut self) -> io::Result<Pin<&mut (dyn AsyncReadWrite + Send + Unpin)>> {
        match &mut self.transport {
            Transport::Plain(tcp) => Ok(Pin::new(tcp)),
            Transport::Tls(tls) => Ok(Pin::new(&mut **tls)),
            Transport::Handshake(_) | Transport::Failed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Sends GOAWAY `too_many_pings` where a frame may go, and ends the connection.
    fn end_for_pings(&mut self, cx: &mut Context<'_>) {
        let Some(pings) = &self.pings else { return };
        let (goaway, min) = (pings.goaway(), pings.min_interval());
        tracing::debug!(
            "closed the connection from {}: pings more often than every {min:?} (gRFC A8 too_many_pings)",
            self.state.peer
        );
        if let (Some(goaway), Ok(mut io)) = (goaway, self.io()) {
            // Best effort: the connection ends whether or not the frame goes out whole.
            let _ = io.as_mut().poll_write(cx, &goaway);
            let _ = io.poll_flush(cx);
        }
        self.ended = true;
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncReadWrite for T {}

impl Drop for Connection {
    fn drop(&mut self) {
        self.connections.deregister(self.id);
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo::new(self.state.peer, Arc::clone(&self.state) as _)
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        ready!(this.handshake(cx))?;
        let before = buf.filled().len();
        ready!(this.io()?.poll_read(cx, buf))?;
        let fresh = &buf.filled()[before..];
        this.state.note_read(fresh.len());
        let calls = this.state.calls.load(Ordering::Relaxed);
        if this.pings.as_mut().is_some_and(|pings| pings.read(fresh, calls)) {
            // Nothing of what came with the ping is served: the connection ends here.
            buf.set_filled(before);
            this.end_for_pings(cx);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.handshake(cx))?;
        let written = ready!(this.io()?.poll_write(cx, buf))?;
        if let Some(pings) = &mut this.pings {
            pings.written(&buf[..written]);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        ready!(this.handshake(cx))?;
        let written = ready!(this.io()?.poll_write_vectored(cx, bufs))?;
        if let Some(pings) = &mut this.pings {
            let mut left = written;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let n = buf.len().min(left);
                pings.written(&buf[..n]);
                left -= n;
            }
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(tcp) => tcp.is_write_vectored(),
            Transport::Tls(tls) => tls.is_write_vectored(),
            Transport::Handshake(_) | Transport::Failed => true,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ended || matches!(self.transport, Transport::Handshake(_)) {
            return Poll::Ready(Ok(()));
        }
        self.io()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.transport, Transport::Handshake(_)) {
            return Poll::Ready(Ok(()));
        }
        self.io()?.poll_shutdown(cx)
    }
}
