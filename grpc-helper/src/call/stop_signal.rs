//! A one-shot signal many tasks and streams can wait for: shutdown started, streams must end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

#[derive(Default)]
pub(crate) struct StopSignal {
    fired: AtomicBool,
    notify: Arc<Notify>,
}

impl StopSignal {
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Completes once fired; owns what it needs, so it can move into a task.
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        // Registered before the flag is read: a `fire` in between still wakes it.
        let notified = Arc::clone(&self.notify).notified_owned();
        let fired = self.is_fired();
        async move {
            if !fired {
                notified.await;
            }
        }
    }

    /// Poll-style wait for streams; `slot` keeps the registration between polls (allocated
    /// on the first poll that has to wait, so streams that never wait pay nothing).
    pub(crate) fn poll_fired(&self, slot: &mut Option<Pin<Box<OwnedNotified>>>, cx: &mut Context<'_>) -> Poll<()> {
        let notified = slot.get_or_insert_with(|| Box::pin(Arc::clone(&self.notify).notified_owned()));
        if self.is_fired() || notified.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
