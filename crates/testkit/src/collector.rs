//! What a sink has received, and waiting for it.
//!
//! Invariant: a waiter never misses an item pushed concurrently: it subscribes to the change
//! counter BEFORE looking at the items, so a push between the look and the wait still wakes it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::bail;
use tokio::sync::watch;

/// A shared, append-only list of received items with change notification.
#[derive(Debug)]
pub(crate) struct Collector<T> {
    items: Mutex<Vec<T>>,
    changes: watch::Sender<u64>,
}

impl<T: Clone> Collector<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Collector {
            items: Mutex::new(Vec::new()),
            changes: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // A panic while holding the lock cannot leave a Vec half-pushed: keep using it.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn push(&self, item: T) {
        self.lock().push(item);
        self.changes.send_modify(|n| *n += 1);
    }

    pub(crate) fn snapshot(&self) -> Vec<T> {
        self.lock().clone()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// The first item matching `pred`, waiting up to `timeout` for it to arrive.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        mut pred: impl FnMut(&T) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changes.subscribe();
        loop {
            let seen = {
                let items = self.lock();
                if let Some(found) = items.iter().find(|item| pred(item)) {
                    return Ok(found.clone());
                }
                items.len()
            };
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                bail!("no matching {what} within {timeout:?} ({seen} received, none matched)");
            }
        }
    }

    /// All items once there are at least `n`, waiting up to `timeout`.
    pub(crate) async fn wait_for_count(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changes.subscribe();
        loop {
            let seen = {
                let items = self.lock();
                if items.len() >= n {
                    return Ok(items.clone());
                }
                items.len()
            };
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                bail!("expected {n} {what} within {timeout:?}, received {seen}");
            }
        }
    }
}
