//! The open connections, what the server knows of each, and the watchdog that closes those
//! that hold resources without using them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ConnectionLimits;
use crate::server::budget::ConnectionMeter;

/// Bytes of a client's HTTP/2 preface plus a SETTINGS frame header: a connection that sent
/// fewer has not started.
const PREFACE_LEN: usize = 24 + 9;

/// One open connection, as the watchdog sees it.
pub(super) struct ConnState {
    pub(super) fd: RawFd,
    /// The TCP peer (never the caller's `ip` metadata, which the caller chooses): the admin
    /// networks and the events queues' owners use it.
    pub(super) peer: SocketAddr,
    pub(super) accepted: Instant,
    /// The transport is up: at once for TCP, once the TLS handshake completed for TLS.
    pub(super) ready: AtomicBool,
    /// Request bytes being received.
    pub(super) meter: Arc<ConnectionMeter>,
    /// Bytes of HTTP/2 read, counted up to [`PREFACE_LEN`].
    pub(super) read: AtomicUsize,
    /// Calls in progress.
    pub(super) calls: AtomicUsize,
    /// When the connection was last busy (ms since `accepted`).
    busy_ms: AtomicU64,
}

impl ConnState {
    pub(super) fn new(fd: RawFd, peer: SocketAddr, ready: bool, meter: ConnectionMeter) -> Self {
        Self {
            fd,
            peer,
            accepted: Instant::now(),
            ready: AtomicBool::new(ready),
            meter: Arc::new(meter),
            read: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            busy_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.busy_ms.store(ms, Ordering::Relaxed);
    }

    pub(super) fn started(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.read.load(Ordering::Relaxed) >= PREFACE_LEN
    }

    /// Counts bytes read until the connection has started.
    pub(super) fn note_read(&self, len: usize) {
        if !self.started() {
            self.read.fetch_add(len, Ordering::Relaxed);
        }
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        let busy = Duration::from_millis(self.busy_ms.load(Ordering::Relaxed));
        Some(self.accepted.elapsed().saturating_sub(busy))
    }
}

/// Open connections, by id, so that they can be cut together.
#[derive(Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Connections {
    /// Registers a connection: its id.
    pub(super) fn register(&self, state: &Arc<ConnState>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(id, Arc::clone(state));
        id
    }

    pub(super) fn deregister(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    /// Shuts every open socket down; returns how many were cut.
    pub(crate) fn cut_all(&self) -> usize {
        self.cut_where(|_| true)
    }

    /// Shuts the matching sockets down; returns how many were cut.
    fn cut_where(&self, cut: impl Fn(&ConnState) -> bool) -> usize {
        let open = self.open.lock();
        let mut count = 0;
        for state in open.values().filter(|s| cut(s)) {
            // SAFETY: the fd stays open while registered: deregistration (under this lock)
            // happens before the stream is closed.
            unsafe { libc::shutdown(state.fd, libc::SHUT_RDWR) };
            count += 1;
        }
        count
    }

    /// Closes, every tick, the connections past their handshake or idle timeout; at shutdown,
    /// closes the ones that never started (no call can be in progress there), then ends.
    pub(super) fn spawn_watchdog(connections: Weak<Self>, limits: ConnectionLimits, stop: CancelSignal) {
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
