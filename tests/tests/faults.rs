//! The fault suite: real processes (`sspr-<service>` binaries, several replicas where a scenario
//! needs them), a real nats-server with JetStream on disk, a private PostgreSQL cluster and the
//! SMTP sink, while clients drive resets through the gateways. Each scenario prints one line of
//! the report (issued, delivered, duplicated, lost, failed, late), counted from the SMTP sink,
//! never from sspr's own records, and fails when anything was lost or delivered late, or
//! duplicated beyond what the scenario's fault can explain.
//!
//! The scenarios run one at a time (they start a dozen processes each). They need PostgreSQL's
//! server binaries (`initdb`, `pg_ctl`; the `postgresql` package) and skip themselves, saying
//! so, when those are missing, unless `SSPR_REQUIRE_FAULT_TESTS=1` (set by `.ci/run`) makes that
//! a failure.

use std::time::{Duration, SystemTime};

use rand::Rng;
use sspr_testkit::PrivatePostgres;
use sspr_tests::cluster::Cluster;
use sspr_tests::faults::{self, ResetOptions, Tally};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the scenarios can run here; panics when they must and cannot.
fn can_run() -> bool {
    if PrivatePostgres::available() {
        return true;
    }
    if std::env::var("SSPR_REQUIRE_FAULT_TESTS").as_deref() == Ok("1") {
        panic!(
            "SSPR_REQUIRE_FAULT_TESTS=1 but PostgreSQL's server binaries (initdb, pg_ctl) or the postgres user are missing"
        );
    }
    eprintln!(
        "fault scenarios skipped: install the postgresql package (initdb, pg_ctl) to run them"
    );
    false
}

const DELIVERY_ONLY: ResetOptions = ResetOptions {
    code_wait: Duration::from_secs(120),
    complete: false,
};
const WHOLE_RESET: ResetOptions = ResetOptions {
    code_wait: Duration::from_secs(120),
    complete: true,
};

/// A started cluster with the open policy and `n` registered users `<prefix>-<i>`.
struct Prepared {
    cluster: Cluster,
    channel: tonic::transport::Channel,
    smtp: std::sync::Arc<sspr_testkit::SmtpSink>,
    members: Vec<faults::Member>,
}

async fn prepare(replicas: &[(&'static str, usize)], prefix: &str, n: usize) -> Prepared {
    let cluster = match Cluster::start(replicas, &[]).await {
        Ok(c) => c,
        Err(e) => panic!("the cluster did not start: {e:#}"),
    };
    let channel = cluster.channel().await.expect("channel");
    let smtp = cluster.smtp.clone();
    faults::open_policy(&channel).await.expect("policy");
    let members = faults::populate(&channel, &smtp, prefix, n, 8)
        .await
        .expect("population");
    Prepared {
        cluster,
        channel,
        smtp,
        members,
    }
}

async fn finish(cluster: &Cluster, scenario: &str, runs: &[faults::ResetRun]) -> Tally {
    faults::settle(
        &cluster.smtp,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await;
    let events = cluster.stream_events().await.expect("events");
    let tally = faults::tally(scenario, runs, &cluster.smtp, &events);
    tally.print();
    tally
}

/// SMTP down: the relay defers everything (451) for a while, then is gone altogether
/// (connections refused, open ones cut), during 50 resets. When it returns every code is
/// delivered exactly once, in time, or reported failed; none after expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_outage_loses_nothing_and_sends_nothing_twice() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Prepared {
        cluster,
        channel,
        smtp,
        members,
    } = prepare(&[], "smtp", 50).await;

    // The outage begins as the resets do, so their first attempts meet it.
    cluster.smtp.set_refusing(Some(451));
    let outage = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.smtp.stop();
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster.smtp.set_refusing(None);
        cluster.smtp.restart().await.expect("sink back");
    };
    let (runs, ()) = tokio::join!(
        faults::run_resets(&channel, &smtp, &members, 25, DELIVERY_ONLY),
        outage
    );
    let tally = finish(&cluster, "SMTP deferring 3 s then down 4 s", &runs).await;
    eprintln!(
        "  messages the relay deferred (451) during the outage: {}",
        cluster.smtp.refused_count()
    );
    assert!(
        cluster.smtp.refused_count() > 0,
        "the outage met no delivery"
    );
    assert_eq!(
        tally.issued, 50,
        "every SendCode was acknowledged: {runs:#?}"
    );
    assert_eq!(tally.delivered + tally.failed, tally.issued);
    tally.assert_exact().expect("exact delivery");
}

/// The relay's delay before accepting a message in the kill scenario.
const ACCEPT_DELAY: Duration = Duration::from_millis(150);

/// Notification crash: two notification processes; one is killed with SIGKILL in the middle of
/// 100 deliveries, after checking that the queue holds unacknowledged messages. Every code is
/// delivered at least once; a duplicate can only be a message that was between the relay's
/// acceptance and its ack at the instant of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notification_kill_loses_nothing() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Prepared {
        mut cluster,
        channel,
        smtp,
        members,
    } = prepare(&[("notification", 2)], "crash", 100).await;
    // A slow relay keeps deliveries in flight, so the kill finds some unacknowledged.
    cluster.smtp.set_accept_delay(ACCEPT_DELAY);

    let resets = faults::run_resets(&channel, &smtp, &members, 40, DELIVERY_ONLY);
    let kill = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let ack_pending = loop {
            let (ack_pending, _, _) = faults::delivery_consumer_state(&cluster)
                .await
                .expect("consumer state");
            if ack_pending > 2 || tokio::time::Instant::now() > deadline {
                break ack_pending;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            ack_pending > 0,
            "the queue never held unacknowledged deliveries"
        );
        let killed_at = SystemTime::now();
        cluster
            .kill("notification", 0)
            .await
            .expect("kill -9 notification#0");
        (ack_pending, killed_at)
    };
    let (runs, (ack_pending, killed_at)) = tokio::join!(resets, kill);
    let tally = finish(&cluster, "notification#0 kill -9 mid-run", &runs).await;
    eprintln!("  at the kill: {ack_pending} deliveries acknowledged-pending on the queue");
    assert_eq!(tally.issued, 100, "{runs:#?}");
    assert_eq!(tally.lost, 0, "lost codes");
    assert_eq!(tally.late, 0, "codes delivered after expiry");
    assert_eq!(tally.failed, 0, "failures without a failing relay");
    // A duplicate must be a message the killed process had handed to the relay but not yet
    // acknowledged: its first copy was accepted around the kill: at most 2 s before it (the
    // time to record and ack a sent delivery is far less), or after it, by up to the relay's
    // accept delay, when the final "." had left before the process died and the relay answered
    // 250 to a dead client.
    for (user, copies, first) in &tally.duplicates {
        let offset = match killed_at.duration_since(*first) {
            Ok(before) => format!("{before:?} before"),
            Err(e) => format!("{:?} after", e.duration()),
        };
        eprintln!(
            "  duplicate: {user}: {copies} copies, first accepted {offset} the kill (in flight at the kill: handed to the relay, not yet acknowledged)"
        );
        let in_window = match killed_at.duration_since(*first) {
            Ok(before) => before < Duration::from_secs(2),
            Err(e) => e.duration() < ACCEPT_DELAY + Duration::from_secs(1),
        };
        assert!(
            in_window,
            "a duplicate that was not in flight at the kill: {user}, first copy {offset} it"
        );
    }
    assert!(
        tally.duplicated <= ack_pending.max(1),
        "more duplicates ({}) than deliveries in flight at the kill ({ack_pending})",
        tally.duplicated
    );
}

/// NATS restart: nats-server is stopped (killed) and started again, JetStream on disk, during a
/// run of whole resets. No event is lost from SSPR_EVENTS (every event id the services
/// committed is in the stream exactly once) and no delivery is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_restart_loses_no_event_and_no_delivery() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Prepared {
        mut cluster,
        channel,
        smtp,
        members,
    } = prepare(&[], "natsrestart", 40).await;

    let runs = {
        let resets = faults::run_resets(&channel, &smtp, &members, 20, WHOLE_RESET);
        let restart = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.nats.stop().await.expect("stop nats");
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.nats.restart().await.expect("restart nats");
        };
        // `restart` borrows the server mutably, `resets` only the channel and sink.
        let (runs, ()) = tokio::join!(resets, restart);
        runs
    };
    let tally = finish(&cluster, "nats-server killed 3 s mid-run", &runs).await;
    for (user, _, _) in &tally.duplicates {
        for row in cluster
            .diagnose(&format!(
                "SELECT delivery_id::text, status::text, attempts::text, created_at::text, updated_at::text, last_error::text \
                 FROM sspr_notification.deliveries WHERE user_id = '{user}' ORDER BY created_at"
            ))
            .await
        {
            eprintln!("  delivery of {user}: {row}");
        }
    }
    tally.assert_exact().expect("exact delivery");
    assert_eq!(tally.failed, 0);

    // Every committed event reaches the stream once the relays drained.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let outbox = loop {
        let outbox = cluster.outbox_event_ids().await.expect("outboxes");
        if outbox.iter().all(|(_, _, published)| *published)
            || tokio::time::Instant::now() > deadline
        {
            break outbox;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let unpublished: Vec<_> = outbox.iter().filter(|(_, _, p)| !p).collect();
    assert!(
        unpublished.is_empty(),
        "events still unpublished: {unpublished:?}"
    );
    let stream = cluster.stream_events().await.expect("stream");
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for e in &stream {
        *seen.entry(e.msg_id.as_str()).or_default() += 1;
    }
    let missing: Vec<_> = outbox
        .iter()
        .filter(|(id, _, _)| !seen.contains_key(id.as_str()))
        .collect();
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "  events committed: {}, in SSPR_EVENTS: {}, missing: {}, twice: {}",
        outbox.len(),
        stream.len(),
        missing.len(),
        doubled.len()
    );
    assert!(missing.is_empty(), "events lost: {missing:?}");
    assert!(
        doubled.is_empty(),
        "events in the stream twice: {doubled:?}"
    );
}

/// Any service crash: two replicas (processes) of every service, one of them (picked at
/// random) killed with SIGKILL mid-run; every started reset still completes, the clients
/// retrying with their idempotency keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_replica_killed_every_reset_completes() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let replicas: Vec<(&'static str, usize)> = sspr_tests::cluster::SERVICES
        .iter()
        .map(|s| (*s, 2))
        .collect();
    let Prepared {
        mut cluster,
        channel,
        smtp,
        members,
    } = prepare(&replicas, "anycrash", 40).await;
    // At random, unless SSPR_FAULT_VICTIM names a service (to replay one case).
    let victim = std::env::var("SSPR_FAULT_VICTIM")
        .ok()
        .and_then(|v| {
            sspr_tests::cluster::SERVICES
                .iter()
                .copied()
                .find(|s| *s == v)
        })
        .unwrap_or_else(|| sspr_tests::cluster::SERVICES[rand::rng().random_range(0..6)]);
    eprintln!("  victim: sspr-{victim}#0");

    let runs = {
        let resets = faults::run_resets(&channel, &smtp, &members, 20, WHOLE_RESET);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            cluster.kill(victim, 0).await.expect("kill -9");
        };
        let (runs, ()) = tokio::join!(resets, kill);
        runs
    };
    let tally = finish(
        &cluster,
        &format!("sspr-{victim}#0 kill -9 (2 replicas each)"),
        &runs,
    )
    .await;
    let unfinished: Vec<_> = runs.iter().filter(|r| !r.completed).collect();
    for run in &unfinished {
        for row in cluster
            .diagnose(&format!(
                "SELECT status::text, completing_since::text, (completed_by_request IS NOT NULL)::text, verified_at::text, expires_at::text \
                 FROM sspr_verification.reset_sessions WHERE flow_id = '{}'",
                run.flow_id
            ))
            .await
        {
            eprintln!("  unfinished {} session: {row}", run.user_id);
        }
    }
    assert!(
        unfinished.is_empty(),
        "resets that did not complete: {unfinished:#?}"
    );
    assert_eq!(tally.lost, 0);
    assert_eq!(tally.late, 0);
}

/// PostgreSQL restarted mid-run (the private cluster, fast shutdown then start): nothing that
/// was acknowledged to a caller is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_loses_nothing_acknowledged() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Prepared {
        mut cluster,
        channel,
        smtp,
        members,
    } = prepare(&[], "pgrestart", 40).await;

    let runs = {
        let resets = faults::run_resets(&channel, &smtp, &members, 20, WHOLE_RESET);
        let restart = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.postgres.stop(false).await.expect("stop postgres");
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.postgres.restart().await.expect("start postgres");
        };
        let (runs, ()) = tokio::join!(resets, restart);
        runs
    };
    let tally = finish(&cluster, "PostgreSQL restarted (3 s down) mid-run", &runs).await;
    let refused = runs.iter().filter(|r| !r.issued).count();
    eprintln!("  SendCode not acknowledged during the outage (the client saw an error): {refused}");
    tally.assert_exact().expect("nothing acknowledged lost");
}

/// Graceful shutdown: SIGTERM to one of two notification and one of two verification replicas
/// under load; each exits 0 within 15 s and nothing is lost or sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_nothing() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Prepared {
        mut cluster,
        channel,
        smtp,
        members,
    } = prepare(&[("notification", 2), ("verification", 2)], "sigterm", 60).await;
    cluster.smtp.set_accept_delay(Duration::from_millis(100));
    let bound = Duration::from_secs(15);

    let runs = {
        let resets = faults::run_resets(&channel, &smtp, &members, 30, WHOLE_RESET);
        let stop = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            let (n, took_n) = cluster
                .terminate("notification", 0, bound)
                .await
                .expect("notification#0 exits after SIGTERM");
            let (v, took_v) = cluster
                .terminate("verification", 0, bound)
                .await
                .expect("verification#0 exits after SIGTERM");
            (n, took_n, v, took_v)
        };
        let (runs, (n, took_n, v, took_v)) = tokio::join!(resets, stop);
        eprintln!("  notification#0 exited in {took_n:?}, verification#0 in {took_v:?}");
        n.assert_clean_exit();
        v.assert_clean_exit();
        runs
    };
    let tally = finish(&cluster, "SIGTERM notification#0 and verification#0", &runs).await;
    tally.assert_exact().expect("exact delivery");
    assert_eq!(tally.failed, 0);
}
