//! What a request handler did before it answered: database statements and outgoing requests.
//!
//! Every request served by a [`Router`](crate::Router) runs inside [`measure`], which keeps a
//! task-local tally: the storage layer calls [`record_db_statement`] for each SQL statement
//! (through the connection's metric hook) and [`Bus::request`](crate::Bus::request) records
//! each subject it calls. When the handler returns, the tally is added to a process-wide table
//! per served subject ([`totals`]).
//!
//! Why: the reset flow must do the same work for unknown, out-of-scope, disabled and real
//! users, so answers and their timing do not tell them apart. The attack tests compare these
//! tallies per call; they are also useful load figures. Work done outside a handler's task
//! (the outbox relay, consumers, spawned tasks) is not counted: it happens after the answer.
//! Nothing here sees a payload.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Mutex, OnceLock};

/// The tally of one handler run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// SQL statements executed (queries and writes, inside or outside transactions).
    pub db_statements: u64,
    /// Requests made to other services, by subject, in order.
    pub requests: Vec<String>,
}

/// Totals for one served subject since the process started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectWork {
    /// Handler runs.
    pub calls: u64,
    pub db_statements: u64,
    /// Outgoing requests by subject.
    pub requests: BTreeMap<String, u64>,
}

tokio::task_local! {
    static CURRENT: RefCell<Work>;
}

fn table() -> &'static Mutex<HashMap<String, SubjectWork>> {
    static TABLE: OnceLock<Mutex<HashMap<String, SubjectWork>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Counts one SQL statement for the handler running on this task, if any.
pub fn record_db_statement() {
    let _ = CURRENT.try_with(|w| w.borrow_mut().db_statements += 1);
}

/// Counts one outgoing request for the handler running on this task, if any.
pub(crate) fn record_request(subject: &str) {
    let _ = CURRENT.try_with(|w| w.borrow_mut().requests.push(subject.to_owned()));
}

/// Runs `fut` with a fresh tally and returns its output with the tally.
pub async fn measure<F: Future>(fut: F) -> (F::Output, Work) {
    CURRENT
        .scope(RefCell::new(Work::default()), async move {
            let out = fut.await;
            let work = CURRENT.with(|w| w.take());
            (out, work)
        })
        .await
}

/// Adds one handler run of `subject` to the process-wide totals.
pub(crate) fn add(subject: &str, work: &Work) {
    let mut table = table().lock().unwrap_or_else(|p| p.into_inner());
    let entry = table.entry(subject.to_owned()).or_default();
    entry.calls += 1;
    entry.db_statements += work.db_statements;
    for r in &work.requests {
        *entry.requests.entry(r.clone()).or_default() += 1;
    }
}

/// The totals of every subject served in this process so far.
pub fn totals() -> HashMap<String, SubjectWork> {
    table().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tally_belongs_to_its_own_task() {
        let ((), work) = measure(async {
            record_db_statement();
            record_db_statement();
            record_request("sspr.rpc.policy.evaluate");
            // Another task's statements are not ours.
            let other = tokio::spawn(async { record_db_statement() });
            let _ = other.await;
        })
        .await;
        assert_eq!(work.db_statements, 2);
        assert_eq!(work.requests, vec!["sspr.rpc.policy.evaluate".to_owned()]);
        // Outside any handler nothing is counted (and nothing panics).
        record_db_statement();
        add("sspr.rpc.test.work", &work);
        add("sspr.rpc.test.work", &work);
        let t = totals();
        let s = t.get("sspr.rpc.test.work").cloned().unwrap_or_default();
        assert_eq!(s.calls, 2);
        assert_eq!(s.db_statements, 4);
        assert_eq!(s.requests.get("sspr.rpc.policy.evaluate"), Some(&2));
    }
}
