//! Registry of calls in progress (for debug dumps and drain decisions).
//!
//! One short lock to insert and one to remove per call, into a slab (a free slot is reused:
//! no hashing, no table to grow or clean) of the calling thread's shard (the runtime's workers
//! do not take turns on one lock and one cache line); nothing is formatted on the hot path:
//! the request is kept as a snapshot (a clone of a small message) and rendered by the dump.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::render::{Snapshot, render};
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
    shards: [Shard; SHARDS],
}

/// Shards of the registry; a thread always uses the same one.
const SHARDS: usize = 8;

/// One shard, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Slots>);

/// The calls, each in a slot that its guard frees.
#[derive(Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

/// The shard of the calling thread (threads take shards in turn).
fn shard_of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
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
        let entry = Entry { service, method, request, content, caller: caller.clone(), started: Instant::now() };
        let shard = shard_of_thread();
        let mut calls = self.shards[shard].0.lock();
        let slot = match calls.free.pop() {
            Some(slot) => {
                calls.entries[slot] = Some(entry);
                slot
            }
            None => {
                calls.entries.push(Some(entry));
                calls.entries.len() - 1
            }
        };
        drop(calls);
        PendingGuard { registry: Arc::clone(self), shard, slot }
    }

    /// A snapshot, oldest call first.
    pub(crate) fn snapshot(&self) -> Vec<PendingCall> {
        let now = Instant::now();
        let mut list: Vec<(Instant, PendingCall)> = Vec::new();
        for shard in &self.shards {
            let calls = shard.0.lock();
            list.extend(calls.entries.iter().flatten().map(|e| {
                let call = PendingCall {
                    service: e.service,
                    method: e.method,
                    request: e.request,
                    content: e.content.as_deref().map(|c| render(c)),
                    caller: e.caller.clone(),
                    elapsed: now.saturating_duration_since(e.started),
                };
                (e.started, call)
            }));
        }
        list.sort_by_key(|(started, _)| *started);
        list.into_iter().map(|(_, call)| call).collect()
    }
}

/// Removes its call from the registry when dropped (reply sent, stream ended or cancelled).
pub(crate) struct PendingGuard {
    registry: Arc<PendingCalls>,
    shard: usize,
    slot: usize,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        // The entry (and its snapshot) is freed after the lock is released.
        let entry = {
            let mut calls = self.registry.shards[self.shard].0.lock();
            calls.free.push(self.slot);
            calls.entries[self.slot].take()
        };
        drop(entry);
    }
}
