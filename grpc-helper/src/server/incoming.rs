//! Accepted connections that the server can cut when the shutdown grace period runs out.
//!
//! tonic's graceful shutdown waits for every open stream to end, possibly forever; after the
//! grace period we `shutdown(2)` the remaining sockets, which ends their connections at once.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Open connections, by id, so that they can be cut together.
#[derive(Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, RawFd>>,
}

impl Connections {
    /// Shuts every open socket down; returns how many were cut.
    pub(crate) fn cut_all(&self) -> usize {
        let open = self.open.lock();
        for fd in open.values() {
            // SAFETY: the fd stays open while registered: deregistration (under this lock)
            // happens before the stream is closed.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
        open.len()
    }
}

/// The listener as a stream of connections (TCP_NODELAY set, registered for cutting).
pub(crate) struct Incoming {
    listener: TcpListener,
    connections: Arc<Connections>,
    /// After an accept error (e.g. out of file descriptors), pause instead of spinning.
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Incoming {
    pub(crate) fn new(listener: TcpListener, connections: Arc<Connections>) -> Self {
        Self { listener, connections, backoff: None }
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
            Poll::Ready(Ok((stream, _))) => {
                let _ = stream.set_nodelay(true);
                let id = self.connections.next.fetch_add(1, Ordering::Relaxed);
                self.connections.open.lock().insert(id, stream.as_raw_fd());
                Poll::Ready(Some(Ok(Connection { stream, id, connections: Arc::clone(&self.connections) })))
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
    connections: Arc<Connections>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.connections.open.lock().remove(&self.id);
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
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
