//! Registry of calls in progress (for debug dumps and drain decisions).
//!
//! One short lock to insert and one to remove per call; nothing is formatted on the hot path:
//! the request is kept as a snapshot (a clone of a small message) and rendered by the dump.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::trace::{Snapshot, render};
use crate::CallerMetadata;

/// A call being served, as listed by [`RpcServer::pending_calls`](crate::RpcServer::pending_calls).
///
/// ```
/// use std::time::Duration;
/// use grpc_helper::server::PendingCall;
///
/// fn slow(calls: &[PendingCall]) -> impl Iterator<Item = String> + '_ {
///     calls.iter().filter(|c| c.elapsed > Duration::from_secs(10)).map(|c| format!("{}.{} ({})", c.service, c.method, c.caller))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PendingCall {
    /// gRPC service name, e.g. `SampleService`.
    pub service: &'static str,
    /// gRPC method name, e.g. `method1`.
    pub method: &'static str,
    /// Rust type of the request, e.g. `grpc_helper::api::Empty`.
    pub request: &'static str,
    /// The request, as the call traces show it (`Empty{}`, at most 1024 characters then
    /// `...`); `None` for a client stream, whose messages arrive during the call.
    pub content: Option<String>,
    /// Who called.
    pub caller: CallerMetadata,
    /// How long it has been running.
    pub elapsed: Duration,
}

struct Entry {
    service: &'static str,
    method: &'static str,
    request: &'static str,
    content: Option<Snapshot>,
    caller: CallerMetadata,
    started: Instant,
}

#[derive(Default)]
pub(crate) struct PendingCalls {
    next: AtomicU64,
    calls: Mutex<HashMap<u64, Entry, BuildHasherDefault<IdHasher>>>,
}

/// Ids are sequential and unique: they need no hashing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

impl PendingCalls {
    pub(crate) fn enter(
        self: &Arc<Self>,
        service: &'static str,
        method: &'static str,
        request: &'static str,
        content: Option<Snapshot>,
        caller: &CallerMetadata,
    ) -> PendingGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Entry { service, method, request, content, caller: caller.clone(), started: Instant::now() };
        self.calls.lock().insert(id, entry);
        PendingGuard { registry: Arc::clone(self), id }
    }

    /// A snapshot, oldest call first.
    pub(crate) fn snapshot(&self) -> Vec<PendingCall> {
        let now = Instant::now();
        let calls = self.calls.lock();
        let mut list: Vec<(Instant, PendingCall)> = calls
            .values()
            .map(|e| {
                let call = PendingCall {
                    service: e.service,
                    method: e.method,
                    request: e.request,
                    content: e.content.as_deref().map(|c| render(c)),
                    caller: e.caller.clone(),
                    elapsed: now.saturating_duration_since(e.started),
                };
                (e.started, call)
            })
            .collect();
        drop(calls);
        list.sort_by_key(|(started, _)| *started);
        list.into_iter().map(|(_, call)| call).collect()
    }
}

/// Removes its call from the registry when dropped (reply sent, stream ended or cancelled).
pub(crate) struct PendingGuard {
    registry: Arc<PendingCalls>,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        // The entry (and its snapshot) is freed after the lock is released.
        let entry = self.registry.calls.lock().remove(&self.id);
        drop(entry);
    }
}
