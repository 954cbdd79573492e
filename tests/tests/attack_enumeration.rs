//! Enumeration by timing (part of the attack suite, in its own binary because it reads the
//! process-wide work tallies of `sspr_bus::work`, which other tests running in the same
//! process would disturb; the two tests here take turns).
//!
//! - `every_path_does_the_same_work_before_answering`: StartReset, SendCode, GetCodeStatus and
//!   a wrong VerifyCode for a real user, an unknown id, a user out of scope and a disabled user
//!   make the same internal requests and the same number of database statements in every
//!   service on the way, counted by the bus and the storage layer. Fails on any difference.
//! - `latency_distributions_are_reported`: ≥ 200 timed calls per kind of user, interleaved;
//!   prints medians, p99 and the Kolmogorov–Smirnov statistic against the real user. These are
//!   figures for the reader, not a pass/fail gate (shared machines make timing gates flaky).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sspr_bus::work::{self, SubjectWork};
use sspr_proto::reset::v1 as reset;
use sspr_tests::population::{self, PROBES, Probe};
use sspr_tests::{Backend, World};
use tokio::sync::Mutex;

/// The two tests take turns: each reads tallies the other would disturb.
static ALONE: Mutex<()> = Mutex::const_new(());

/// Subjects on the request path of the reset calls (background work such as deliveries and
/// the audit projection happens after the answer and is not compared).
const PATH: &[&str] = &[
    "sspr.rpc.verification.start_reset",
    "sspr.rpc.verification.send_code",
    "sspr.rpc.verification.verify_code",
    "sspr.rpc.verification.get_code_status",
    "sspr.rpc.directory.get_user",
    "sspr.rpc.policy.evaluate",
    "sspr.rpc.enrolment.list_methods",
    "sspr.rpc.enrolment.get_destination",
    "sspr.rpc.enrolment.match_destination",
];

/// Per subject on [`PATH`]: (calls, statements, requests by subject).
type Tally = BTreeMap<&'static str, (u64, u64, BTreeMap<String, u64>)>;

fn snapshot() -> BTreeMap<String, SubjectWork> {
    work::totals().into_iter().collect()
}

fn delta(before: &BTreeMap<String, SubjectWork>, after: &BTreeMap<String, SubjectWork>) -> Tally {
    PATH.iter()
        .map(|subject| {
            let b = before.get(*subject).cloned().unwrap_or_default();
            let a = after.get(*subject).cloned().unwrap_or_default();
            let requests = a
                .requests
                .iter()
                .map(|(k, v)| (k.clone(), v - b.requests.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect();
            (
                *subject,
                (
                    a.calls - b.calls,
                    a.db_statements - b.db_statements,
                    requests,
                ),
            )
        })
        .collect()
}

async fn one_probe(world: &World, probe: Probe) -> Tally {
    let before = snapshot();
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: probe.user_id.to_owned(),
            locale: "en".to_owned(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    let method = started.methods[0].method_id.clone();
    client
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method.clone(),
            ..Default::default()
        })
        .await
        .expect("send");
    // Pending or sent for a real user (whichever the delivery reached), pending for a decoy:
    // the same reads either way.
    client
        .get_code_status(reset::GetCodeStatusRequest {
            session_id: started.session_id.clone(),
            method_id: method.clone(),
        })
        .await
        .expect("status");
    client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id,
            method_id: method,
            code: "00000000".to_owned(),
        })
        .await
        .expect_err("a made-up code is refused");
    delta(&before, &snapshot())
}

async fn same_work(backend: Backend) {
    let _alone = ALONE.lock().await;
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    population::populate(&world, Some(population::generous_limits()))
        .await
        .expect("population");
    // Twice each, interleaved: the second round shows the counts are stable too.
    let mut tallies: Vec<(Probe, Tally)> = Vec::new();
    for _ in 0..2 {
        for probe in PROBES {
            tallies.push((probe, one_probe(&world, probe).await));
        }
    }
    println!("\nwork per StartReset + SendCode + GetCodeStatus + wrong VerifyCode ({backend:?}):");
    println!(
        "{:<14} {:<40} {:>5} {:>10}",
        "user", "subject", "calls", "statements"
    );
    for (probe, tally) in tallies.iter().take(PROBES.len()) {
        for (subject, (calls, statements, _)) in tally {
            if *calls > 0 {
                println!(
                    "{:<14} {:<40} {calls:>5} {statements:>10}",
                    probe.label, subject
                );
            }
        }
    }
    let (_, real) = &tallies[0];
    assert!(
        real.values().map(|(_, s, _)| s).sum::<u64>() > 0,
        "the storage layer counted statements"
    );
    assert!(
        real["sspr.rpc.verification.start_reset"].0 == 1
            && !real["sspr.rpc.verification.start_reset"].2.is_empty(),
        "the bus counted the calls and their requests: {real:?}"
    );
    for (probe, tally) in &tallies {
        assert_eq!(
            tally, real,
            "{} does different work than a real user",
            probe.label
        );
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_does_the_same_work_before_answering_sqlite() {
    same_work(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_does_the_same_work_before_answering_postgres() {
    same_work(Backend::Postgres).await;
}

/// Calls per kind of user and per call.
const SAMPLES: usize = 200;

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical
/// distribution functions of `a` and `b` (both sorted).
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        let gap = (i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs();
        d = d.max(gap);
    }
    d
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_distributions_are_reported() {
    let _alone = ALONE.lock().await;
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    population::populate(&world, Some(population::generous_limits()))
        .await
        .expect("population");
    let mut client = world.reset();
    let mut start_ms: Vec<Vec<f64>> = vec![Vec::new(); PROBES.len()];
    let mut send_ms: Vec<Vec<f64>> = vec![Vec::new(); PROBES.len()];
    // Two phases, so the asynchronous delivery a real send causes does not slow the next
    // StartReset: StartReset alone, then SendCode (on fresh sessions). Within a phase the
    // kinds are interleaved, in a rotating order, after a warm-up round, so drift and
    // neighbours affect every kind alike.
    for timing_sends in [false, true] {
        for round in 0..=SAMPLES {
            // Keep every user under the per-user email limit (at most 100 per 10 minutes).
            if timing_sends && round % 50 == 49 {
                world.clock.advance(chrono::Duration::minutes(11));
            }
            for i in 0..PROBES.len() {
                let k = (i + round) % PROBES.len();
                let probe = PROBES[k];
                let t = Instant::now();
                let started = client
                    .start_reset(reset::StartResetRequest {
                        user_id: probe.user_id.to_owned(),
                        locale: "en".to_owned(),
                        ..Default::default()
                    })
                    .await
                    .expect("start")
                    .into_inner();
                let start_took = t.elapsed();
                if !timing_sends {
                    if round > 0 {
                        start_ms[k].push(millis(start_took));
                    }
                    continue;
                }
                let t = Instant::now();
                client
                    .send_code(reset::SendCodeRequest {
                        session_id: started.session_id,
                        method_id: started.methods[0].method_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("send");
                if round > 0 {
                    send_ms[k].push(millis(t.elapsed()));
                }
            }
        }
    }
    for v in start_ms.iter_mut().chain(send_ms.iter_mut()) {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!("\nlatency through the gateway, {SAMPLES} calls per kind of user (SQLite, ms):");
    println!(
        "{:<14} {:>13} {:>13} {:>9} {:>12} {:>12} {:>9}",
        "user", "start median", "start p99", "start KS", "send median", "send p99", "send KS"
    );
    for (k, probe) in PROBES.iter().enumerate() {
        println!(
            "{:<14} {:>13.2} {:>13.2} {:>9.3} {:>12.2} {:>12.2} {:>9.3}",
            probe.label,
            quantile(&start_ms[k], 0.5),
            quantile(&start_ms[k], 0.99),
            ks_statistic(&start_ms[0], &start_ms[k]),
            quantile(&send_ms[k], 0.5),
            quantile(&send_ms[k], 0.99),
            ks_statistic(&send_ms[0], &send_ms[k]),
        );
    }
    println!(
        "(KS: the largest gap between the two empirical distributions; with {SAMPLES} samples \
         each, gaps below about {:.3} are what two draws of the same distribution show 95% of \
         the time)",
        1.358 * (2.0 / SAMPLES as f64).sqrt()
    );
    for v in start_ms.iter().chain(send_ms.iter()) {
        assert_eq!(v.len(), SAMPLES, "every call was timed");
    }
    world.stop().await;
}

#[test]
fn ks_statistic_of_known_samples() {
    let a = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(ks_statistic(&a, &a), 0.0);
    let b = [5.0, 6.0, 7.0, 8.0];
    assert_eq!(ks_statistic(&a, &b), 1.0);
    let c = [1.5, 2.5, 3.5, 4.5];
    assert!((ks_statistic(&a, &c) - 0.25).abs() < 1e-9);
}
