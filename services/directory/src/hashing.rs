//! Runs Argon2id work off the async runtime, a bounded number at a time.
//!
//! Each computation takes tens of milliseconds of CPU and 19 MiB of memory, so it runs on
//! tokio's blocking pool, and a semaphore caps how many run at once (one per core by default):
//! a burst of sign-ins queues instead of exhausting memory or starving the runtime.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::domain::password::{self, Password, PasswordHash};
use crate::error::Error;

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    /// At most `max_concurrent` (at least 1) computations at once.
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// One computation per available core.
    pub fn per_core() -> Self {
        Self::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    }

    /// Hashes `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> Result<PasswordHash, Error> {
        Ok(self.run(move || password::hash(&password)).await??)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is none
    /// (same cost either way).
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<PasswordHash>,
    ) -> Result<bool, Error> {
        self.run(move || password::verify(&password, stored.as_ref()))
            .await
    }

    /// Computes the dummy hash in the background so the first unknown-user sign-in is not slower.
    pub fn warm_up(&self) {
        let hasher = self.clone();
        tokio::spawn(async move {
            if let Err(e) = hasher.run(password::warm_up).await {
                tracing::warn!(error = %e, "computing the dummy password hash failed");
            }
        });
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::HashPoolClosed)?;
        let result = tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await?;
        Ok(result)
    }
}
