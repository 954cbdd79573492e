//! Runs Argon2id work off the async runtime, a bounded number at a time.
//!
//! Each computation takes tens of milliseconds of CPU and 19 MiB of memory, so it runs on
//! tokio's blocking pool, and a semaphore caps how many run at once (one per core by default):
//! a burst of sign-ins queues instead of exhausting memory or starving the runtime.
//!
//! A [`Hasher`] can also keep a [`WorkLog`]: one [`Work`] entry per computation a request made,
//! with the Argon2 cost read from the PHC string it ran against or produced. The service runs
//! without one; tests give one to the same handlers to prove that every sign-in path does the
//! same work. Entries hold no password and no hash.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

use crate::domain::password::{self, Password, PasswordHash};
use crate::error::Error;

/// The Argon2 operation a measurement is for (the `operation` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Hash,
    Verify,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Hash => "hash",
            Operation::Verify => "verify",
        }
    }
}

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    log: Option<Arc<WorkLog>>,
}

/// The Argon2 cost of one computation, as written in a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$...`); a field absent from the string is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    /// The PHC algorithm identifier, e.g. `argon2id`.
    pub algorithm: String,
    pub version: Option<u32>,
    pub m_cost_kib: Option<u32>,
    pub t_cost: Option<u32>,
    pub p_cost: Option<u32>,
}

impl Cost {
    /// The cost of new hashes and of the dummy hash: Argon2id v19 with the parameters in
    /// [`password`] (the dummy is made with them; `password`'s tests check its PHC string).
    pub fn service() -> Self {
        Self {
            algorithm: "argon2id".to_owned(),
            version: Some(0x13),
            m_cost_kib: Some(password::M_COST_KIB),
            t_cost: Some(password::T_COST),
            p_cost: Some(password::P_COST),
        }
    }

    /// The cost written in `phc`; an `unreadable` algorithm and no parameters if it is not a
    /// PHC string.
    pub fn of_phc(phc: &str) -> Self {
        Self::parse(phc).unwrap_or_else(|| Self {
            algorithm: "unreadable".to_owned(),
            version: None,
            m_cost_kib: None,
            t_cost: None,
            p_cost: None,
        })
    }

    fn parse(phc: &str) -> Option<Self> {
        let parsed = argon2::PasswordHash::new(phc).ok()?;
        Some(Self {
            algorithm: parsed.algorithm.as_str().to_owned(),
            version: parsed.version,
            m_cost_kib: parsed.params.get_decimal("m"),
            t_cost: parsed.params.get_decimal("t"),
            p_cost: parsed.params.get_decimal("p"),
        })
    }

    /// What [`password::verify`] runs against: the stored hash when it is a PHC string,
    /// otherwise (none, or unreadable) the dummy hash.
    fn of_verification(stored: Option<&PasswordHash>) -> Self {
        stored
            .and_then(|h| Self::parse(h.as_phc()))
            .unwrap_or_else(Self::service)
    }
}

/// One Argon2 computation made for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A new hash, with the cost written in it.
    Hash(Cost),
    /// A verification, with the cost of the hash it ran against.
    Verify(Cost),
}

/// The computations a [`Hasher`] made, in the order they finished.
#[derive(Debug, Default)]
pub struct WorkLog {
    entries: Mutex<Vec<Work>>,
}

impl WorkLog {
    /// Everything recorded since the last call (the log is emptied).
    pub fn take(&self) -> Vec<Work> {
        std::mem::take(&mut *self.lock())
    }

    fn push(&self, work: Work) {
        self.lock().push(work);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Work>> {
        // A push cannot leave the vector half-written: a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Hasher {
    /// At most `max_concurrent` (at least 1) computations at once.
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            log: None,
        }
    }

    /// The same hasher, also recording every computation of `hash` and `verify` in `log`.
    pub fn with_work_log(mut self, log: Arc<WorkLog>) -> Self {
        self.log = Some(log);
        self
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
        let hash = self
            .run(Some(Operation::Hash), move || password::hash(&password))
            .await??;
        if let Some(log) = &self.log {
            log.push(Work::Hash(Cost::of_phc(hash.as_phc())));
        }
        Ok(hash)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is none
    /// (same cost either way).
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<PasswordHash>,
    ) -> Result<bool, Error> {
        let cost = self
            .log
            .as_ref()
            .map(|_| Cost::of_verification(stored.as_ref()));
        let matches = self
            .run(Some(Operation::Verify), move || {
                password::verify(&password, stored.as_ref())
            })
            .await?;
        if let (Some(log), Some(cost)) = (&self.log, cost) {
            log.push(Work::Verify(cost));
        }
        Ok(matches)
    }

    /// Computes the dummy hash in the background so the first unknown-user sign-in is not slower.
    pub fn warm_up(&self) {
        let hasher = self.clone();
        tokio::spawn(async move {
            if let Err(e) = hasher.run(None, password::warm_up).await {
                tracing::warn!(error = %e, "computing the dummy password hash failed");
            }
        });
    }

    /// Runs `work` on the blocking pool once a permit is free. An `operation` is measured
    /// there, around the computation alone (not the wait for a permit):
    /// `sspr_argon2_duration_seconds{operation}` and `sspr_argon2_in_flight`.
    async fn run<T: Send + 'static>(
        &self,
        operation: Option<Operation>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::HashPoolClosed)?;
        let result = tokio::task::spawn_blocking(move || {
            let result = match operation {
                Some(operation) => sspr_telemetry::metrics::argon2(operation.as_str(), work),
                None => work(),
            };
            drop(permit);
            result
        })
        .await?;
        Ok(result)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_cost_what_the_service_and_the_dummy_use() {
        let stored = password::hash(&Password::new("correct horse battery")).unwrap();
        assert_eq!(Cost::of_phc(stored.as_phc()), Cost::service());
        assert_eq!(Cost::of_verification(Some(&stored)), Cost::service());
        assert_eq!(Cost::of_verification(None), Cost::service());
    }

    #[test]
    fn costs_are_read_from_the_phc_string() {
        let cheap = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert_eq!(
            Cost::of_phc(cheap),
            Cost {
                algorithm: "argon2id".into(),
                version: Some(19),
                m_cost_kib: Some(8),
                t_cost: Some(1),
                p_cost: Some(1),
            }
        );
        assert_eq!(Cost::of_phc("plaintext").algorithm, "unreadable");
    }

    fn argon2_count(operation: &str) -> f64 {
        sspr_testkit::metrics::series_value(
            &sspr_telemetry::metrics::encode(),
            "sspr_argon2_duration_seconds_count",
            &[("operation", operation)],
        )
    }

    #[tokio::test]
    async fn every_hash_and_verify_is_measured_and_counted_in_flight() {
        // Other tests of this binary hash too, in parallel: at least, never exactly.
        let (hashes, verifies) = (argon2_count("hash"), argon2_count("verify"));
        let hasher = Hasher::new(1);
        let pw = Password::new("correct horse battery");
        let stored = hasher.hash(pw.clone()).await.unwrap();
        assert!(argon2_count("hash") >= hashes + 1.0);
        assert!(hasher.verify(pw.clone(), Some(stored)).await.unwrap());
        assert!(!hasher.verify(pw, None).await.unwrap());
        assert!(argon2_count("verify") >= verifies + 2.0);
        let in_flight = hasher
            .run(Some(Operation::Hash), || {
                sspr_telemetry::metrics::catalogue()
                    .argon2_in_flight
                    .get(&[])
            })
            .await
            .unwrap();
        assert!(in_flight >= 1, "counted while it runs");
    }

    #[tokio::test]
    async fn the_log_records_each_computation_once() {
        let log = Arc::new(WorkLog::default());
        let hasher = Hasher::new(1).with_work_log(Arc::clone(&log));
        let pw = Password::new("correct horse battery");
        let stored = hasher.hash(pw.clone()).await.unwrap();
        assert_eq!(log.take(), vec![Work::Hash(Cost::service())]);
        assert!(hasher.verify(pw.clone(), Some(stored)).await.unwrap());
        assert!(!hasher.verify(pw, None).await.unwrap());
        assert_eq!(
            log.take(),
            vec![Work::Verify(Cost::service()), Work::Verify(Cost::service())]
        );
        assert!(log.take().is_empty(), "take empties the log");
    }
}
