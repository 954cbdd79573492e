//! The phone ledger on real databases (SQLite always, PostgreSQL when `SSPR_TEST_POSTGRES_URL`
//! is set): racing admissions never exceed a budget, decoys count nowhere, and the breaker's
//! change is announced exactly once however many sends race past it.

use std::sync::Arc;

use chrono::Utc;
use sspr_storage::outbox::OutboxMessage;
use sspr_testkit::TestDb;
use sspr_verification::adapters::migration::Migrator;
use sspr_verification::adapters::phone_ledger::{Admission, BreakerChange, Notice, PhoneLedger};
use sspr_verification::domain::phone_guard::{PhoneRefusal, PhoneRules};

fn rules(per_hour: u32, per_prefix: u32, min_sends: u32, percent: u32) -> PhoneRules {
    PhoneRules {
        allowed_prefixes: vec!["+44".into()],
        budget_per_hour: per_hour,
        budget_per_prefix_per_hour: per_prefix,
        breaker_min_sends: min_sends,
        breaker_min_verified_percent: percent,
    }
}

fn event(notice: Notice) -> OutboxMessage {
    let body = sspr_proto::events::v1::SmsBreakerClosed::default();
    OutboxMessage::new(
        &format!("test.{notice:?}"),
        uuid::Uuid::now_v7().to_string(),
        &body,
    )
}

async fn ledger(db: &TestDb) -> PhoneLedger {
    let conn = sspr_storage::connect(sspr_verification::SERVICE, &db.settings())
        .await
        .expect("database");
    sspr_storage::run_migrations::<Migrator>(sspr_verification::SERVICE, &conn)
        .await
        .expect("migrations");
    PhoneLedger::new(conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_sends_never_exceed_the_budget_and_decoys_count_nowhere() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let ledger = Arc::new(ledger(&db).await);
        let now = Utc::now();
        let budget = rules(5, 1000, 100_000, 0);

        // Decoys first: decided, never counted.
        for i in 0..10 {
            let admitted = ledger
                .admit(
                    Admission {
                        rules: &budget,
                        prefix: Some("+44"),
                        code_id: &format!("decoy-{i}"),
                        decoy: true,
                        now,
                    },
                    event,
                )
                .await
                .expect("admit");
            assert_eq!(admitted.refusal, None, "{backend}");
        }

        let mut tasks = Vec::new();
        for i in 0..20 {
            let ledger = Arc::clone(&ledger);
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                ledger
                    .admit(
                        Admission {
                            rules: &budget,
                            prefix: Some("+44"),
                            code_id: &format!("real-{i}"),
                            decoy: false,
                            now,
                        },
                        event,
                    )
                    .await
                    .expect("admit")
                    .refusal
            }));
        }
        let mut sent = 0;
        for task in tasks {
            match task.await.expect("task") {
                None => sent += 1,
                Some(PhoneRefusal::BudgetExhausted { retry_after_secs }) => {
                    assert!((1..=3600).contains(&retry_after_secs));
                }
                other => panic!("{backend}: {other:?}"),
            }
        }
        assert_eq!(sent, 5, "{backend}: exactly the budget");
        assert_eq!(ledger.last_hour(now).await.expect("stats").sent, 5);
        db.cleanup().await.expect("cleanup");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_opens_once_and_closes_when_codes_are_verified() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let ledger = Arc::new(ledger(&db).await);
        let now = Utc::now();
        let breaker = rules(1000, 1000, 4, 50);
        for i in 0..4 {
            let admitted = ledger
                .admit(
                    Admission {
                        rules: &breaker,
                        prefix: Some("+44"),
                        code_id: &format!("c{i}"),
                        decoy: false,
                        now,
                    },
                    event,
                )
                .await
                .expect("admit");
            assert_eq!(admitted.refusal, None, "{backend}");
        }
        // Eight racing sends see 4 sent, 0 verified: all refused, one of them opens it.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let ledger = Arc::clone(&ledger);
            let breaker = breaker.clone();
            tasks.push(tokio::spawn(async move {
                ledger
                    .admit(
                        Admission {
                            rules: &breaker,
                            prefix: Some("+44"),
                            code_id: &format!("r{i}"),
                            decoy: false,
                            now,
                        },
                        event,
                    )
                    .await
                    .expect("admit")
            }));
        }
        let mut opened = 0;
        for task in tasks {
            let admitted = task.await.expect("task");
            assert!(
                matches!(admitted.refusal, Some(PhoneRefusal::BreakerOpen { .. })),
                "{backend}: {admitted:?}"
            );
            if admitted.change == Some(BreakerChange::Opened) {
                opened += 1;
            }
        }
        assert_eq!(opened, 1, "{backend}: announced once");

        for code in ["c0", "c1"] {
            ledger.record_verified(code, now).await.expect("verified");
        }
        let admitted = ledger
            .admit(
                Admission {
                    rules: &breaker,
                    prefix: Some("+44"),
                    code_id: "after",
                    decoy: false,
                    now,
                },
                event,
            )
            .await
            .expect("admit");
        assert_eq!(admitted.refusal, None, "{backend}: 50 % verified");
        assert_eq!(admitted.change, Some(BreakerChange::Closed));
        db.cleanup().await.expect("cleanup");
    }
}
