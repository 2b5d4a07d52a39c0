//! When the queue ids reach `queues.json`: outside the events lock, batched.
//!
//! A change of the set of queues hands a snapshot of the ids to [`IdsFile::submit`] (cheap, under
//! the events lock); one blocking task writes the latest snapshot, so a burst of new queues costs
//! a few writes, not one per queue, and no `listen` or `send` waits for a disk flush. What the
//! file looks like is `ids_to_json`'s business.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The persisted ids of one server's queues.
pub(super) struct IdsFile {
    path: PathBuf,
    /// The latest snapshot not written yet, and whether a writer task runs.
    pending: Mutex<Pending>,
    /// Held from taking a snapshot until it is on disk: writes of the file never overlap, and
    /// [`flush`](Self::flush) waits for the one in progress.
    writing: Mutex<()>,
    /// Files written so far (for tests and logs).
    writes: AtomicU64,
}

#[derive(Default)]
struct Pending {
    ids: Option<Vec<u32>>,
    writer: bool,
}

impl IdsFile {
    pub(super) fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Self { path, pending: Mutex::default(), writing: Mutex::new(()), writes: AtomicU64::new(0) })
    }

    /// Replaces the snapshot to write; starts a writer task unless one runs (without a
    /// runtime, writes at once).
    pub(super) fn submit(self: &Arc<Self>, ids: Vec<u32>) {
        let mut pending = self.pending.lock();
        pending.ids = Some(ids);
        if pending.writer {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(pending);
            self.flush();
            return;
        };
        pending.writer = true;
        drop(pending);
        let file = Arc::clone(self);
        runtime.spawn_blocking(move || file.drain());
    }

    /// Writes snapshots until none is left.
    fn drain(&self) {
        loop {
            let writing = self.writing.lock();
            let mut pending = self.pending.lock();
            let Some(ids) = pending.ids.take() else {
                pending.writer = false;
                return;
            };
            drop(pending);
            self.write(&ids);
            drop(writing);
        }
    }

    /// Writes the latest snapshot now (shutdown), after the write in progress if any.
    pub(super) fn flush(&self) {
        let _writing = self.writing.lock();
        let ids = self.pending.lock().ids.take();
        if let Some(ids) = ids {
            self.write(&ids);
        }
    }

    fn write(&self, ids: &[u32]) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = crate::persist::write_json(&self.path, &super::ids_to_json(ids.iter().copied())) {
            tracing::error!("cannot persist event queues: {e}");
        }
    }

    #[cfg(test)]
    pub(super) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}
