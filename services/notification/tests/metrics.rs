//! The delivery metrics against real components (nats-server, SMTP sink, HTTP sink as SMS
//! provider, SQLite): outcome durations once per delivery, attempts by result, redeliveries,
//! the consumer's lag and provider receipts.
//!
//! One test only: the registry is process-wide and these series have no per-test label, so
//! the scenarios run one after the other and compare exact before/after deltas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, Setup, delivery, delivery_issued_at, traceparent};
use sspr_bus::streams::{self, StreamSettings};
use sspr_bus::{Bus, BusConfig, subjects};
use sspr_notification::delivery_worker;
use sspr_notification::domain::receipt::webhook_signature;
use sspr_notification::sms_config::{ReceiptSettings, SmsProviderChoice, SmsSettings};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::CodePurpose;
use sspr_proto::internal::notification::v1::DeliveryStatus;
use sspr_runtime::Secret;
use sspr_telemetry::metrics::{catalogue, encode};
use sspr_testkit::metrics::series_value;
use sspr_testkit::{NatsServer, TestDb};

const WEBHOOK_SECRET: &str = "webhook-receipt-secret-0123";
const QUEUE: [&str; 2] = [subjects::DELIVERY_STREAM, subjects::DELIVERY_CONSUMER];

/// The series this test watches, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    accepted: (f64, f64),
    failed: (f64, f64),
    expired: (f64, f64),
    sms_accepted: (f64, f64),
    receipt_delivered: (f64, f64),
    sent: f64,
    retry: f64,
    gave_up: f64,
    dropped: f64,
    redeliveries: f64,
}

/// (count, sum) of one histogram series.
fn histogram(text: &str, name: &str, labels: &[(&str, &str)]) -> (f64, f64) {
    (
        series_value(text, &format!("{name}_count"), labels),
        series_value(text, &format!("{name}_sum"), labels),
    )
}

fn read() -> Reading {
    let text = encode();
    let outcome = |channel, outcome| {
        histogram(
            &text,
            "sspr_code_delivery_duration_seconds",
            &[("channel", channel), ("outcome", outcome)],
        )
    };
    let attempts = |result| {
        series_value(
            &text,
            "sspr_delivery_attempts_total",
            &[("channel", "email"), ("result", result)],
        )
    };
    Reading {
        accepted: outcome("email", "accepted"),
        failed: outcome("email", "failed"),
        expired: outcome("email", "expired"),
        sms_accepted: outcome("sms", "accepted"),
        receipt_delivered: histogram(
            &text,
            "sspr_code_delivery_receipt_duration_seconds",
            &[("channel", "sms"), ("outcome", "delivered")],
        ),
        sent: attempts("sent"),
        retry: attempts("retry"),
        gave_up: attempts("failed"),
        dropped: attempts("dropped"),
        redeliveries: series_value(
            &text,
            "sspr_jetstream_redeliveries_total",
            &[
                ("stream", subjects::DELIVERY_STREAM),
                ("consumer", subjects::DELIVERY_CONSUMER),
            ],
        ),
    }
}

/// Reading `after` minus `before`, counts only (sums are checked where they matter).
fn delta(before: Reading, after: Reading) -> Reading {
    let h = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0, a.1 - b.1);
    Reading {
        accepted: h(after.accepted, before.accepted),
        failed: h(after.failed, before.failed),
        expired: h(after.expired, before.expired),
        sms_accepted: h(after.sms_accepted, before.sms_accepted),
        receipt_delivered: h(after.receipt_delivered, before.receipt_delivered),
        sent: after.sent - before.sent,
        retry: after.retry - before.retry,
        gave_up: after.gave_up - before.gave_up,
        dropped: after.dropped - before.dropped,
        redeliveries: after.redeliveries - before.redeliveries,
    }
}

fn nothing() -> Reading {
    Reading {
        accepted: (0.0, 0.0),
        failed: (0.0, 0.0),
        expired: (0.0, 0.0),
        sms_accepted: (0.0, 0.0),
        receipt_delivered: (0.0, 0.0),
        sent: 0.0,
        retry: 0.0,
        gave_up: 0.0,
        dropped: 0.0,
        redeliveries: 0.0,
    }
}

fn counts(r: Reading) -> Reading {
    let c = |h: (f64, f64)| (h.0, 0.0);
    Reading {
        accepted: c(r.accepted),
        failed: c(r.failed),
        expired: c(r.expired),
        sms_accepted: c(r.sms_accepted),
        receipt_delivered: c(r.receipt_delivered),
        ..r
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while !check() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_measured_once_per_outcome_and_per_attempt() -> anyhow::Result<()> {
    let metrics = catalogue();

    // The consumer sampler alone, on a queue nobody consumes: its lag is what waits.
    {
        let nats = NatsServer::start().await?;
        let bus = Bus::connect(&BusConfig::new(nats.url(), "metrics-test")).await?;
        streams::ensure(bus.jetstream(), &StreamSettings::default()).await?;
        delivery_worker::ensure_consumer(bus.jetstream()).await?;
        for i in 0..3 {
            bus.publish_durable(
                subjects::delivery::EMAIL,
                &format!("waiting-{i}"),
                async_nats::HeaderMap::new(),
                Bytes::from_static(b"sealed"),
            )
            .await?;
        }
        delivery_worker::sample_consumer(bus.jetstream()).await?;
        assert_eq!(metrics.jetstream_consumer_pending.get(&QUEUE), 3);
        assert_eq!(metrics.jetstream_consumer_ack_pending.get(&QUEUE), 0);
        assert_eq!(metrics.jetstream_consumer_redelivered.get(&QUEUE), 0);
    }

    let port = sspr_testkit::free_port()?;
    let public = format!("http://127.0.0.1:{port}");
    let public_for_config = public.clone();
    let mut h = Harness::start_configured(Setup::Standard, TestDb::sqlite()?, move |config, _| {
        config.sms = SmsSettings {
            provider: SmsProviderChoice::Webhook,
            receipts: Some(ReceiptSettings {
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
                public_url: reqwest::Url::parse(&public_for_config).unwrap(),
            }),
            webhook_secret: Some(Secret::new(WEBHOOK_SECRET.into())),
        };
    })
    .await?;
    // The service samples its own (empty) queue as it starts.
    eventually("the running service sampled its consumer", || {
        metrics.jetstream_consumer_pending.get(&QUEUE) == 0
    })
    .await?;

    // Accepted: one duration from the issue (2 s before), one attempt.
    let before = read();
    let d = delivery(
        MethodKind::Email,
        "m1@example.com",
        "11223344",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    h.wait_queue_drained().await?;
    let after = read();
    let seen = delta(before, after);
    assert_eq!(
        counts(seen),
        Reading {
            accepted: (1.0, 0.0),
            sent: 1.0,
            ..nothing()
        }
    );
    assert!(
        (2.0..60.0).contains(&seen.accepted.1),
        "timed from the code's issue: {}",
        seen.accepted.1
    );

    // The same delivery again (a lost ack): dropped, and no second duration.
    let before = read();
    let key = h.key;
    h.publish_raw(
        &key,
        &d,
        &traceparent().0,
        &format!("{}-again", d.delivery_id),
    )
    .await?;
    h.wait_queue_drained().await?;
    assert_eq!(
        counts(delta(before, read())),
        Reading {
            dropped: 1.0,
            ..nothing()
        }
    );

    // A temporary refusal, then accepted: a retry, a redelivery, one duration.
    let before = read();
    h.smtp.reject_next(1, 451);
    let d = delivery(
        MethodKind::Email,
        "m2@example.com",
        "22334455",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    h.wait_queue_drained().await?;
    assert_eq!(
        counts(delta(before, read())),
        Reading {
            accepted: (1.0, 0.0),
            sent: 1.0,
            retry: 1.0,
            redeliveries: 1.0,
            ..nothing()
        }
    );

    // A permanent refusal: given up once.
    let before = read();
    h.smtp.reject_next(1, 550);
    let d = delivery(
        MethodKind::Email,
        "m3@example.com",
        "33445566",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    h.wait_status(&d.delivery_id, DeliveryStatus::Failed)
        .await?;
    h.wait_queue_drained().await?;
    assert_eq!(
        counts(delta(before, read())),
        Reading {
            failed: (1.0, 0.0),
            gave_up: 1.0,
            ..nothing()
        }
    );

    // Expired before it could be sent, twice over: one duration, two drops.
    let before = read();
    let d = delivery_issued_at(
        MethodKind::Email,
        "m4@example.com",
        "44556677",
        CodePurpose::Reset,
        "en",
        chrono::Utc::now() - chrono::Duration::minutes(11),
    );
    h.publish(&d, &traceparent().0).await?;
    h.wait_status(&d.delivery_id, DeliveryStatus::Expired)
        .await?;
    h.wait_queue_drained().await?;
    h.publish_raw(
        &key,
        &d,
        &traceparent().0,
        &format!("{}-again", d.delivery_id),
    )
    .await?;
    h.wait_queue_drained().await?;
    let seen = delta(before, read());
    assert_eq!(
        counts(seen),
        Reading {
            expired: (1.0, 0.0),
            dropped: 2.0,
            ..nothing()
        }
    );
    assert!(seen.expired.1 >= 660.0, "{}", seen.expired.1);

    // An SMS accepted, then eight copies of its receipt: one receipt duration.
    let before = read();
    let sms = delivery(
        MethodKind::Sms,
        "+33612345678",
        "55667788",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&sms, &traceparent().0).await?;
    h.wait_status(&sms.delivery_id, DeliveryStatus::Sent)
        .await?;
    let body =
        serde_json::json!({"delivery_id": sms.delivery_id, "status": "delivered"}).to_string();
    let signature = webhook_signature(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    let callback = format!("{public}/receipts/webhook/{}", sms.delivery_id);
    let client = sspr_notification::adapters::http_client::provider_client()?;
    let answers = futures::future::join_all((0..8).map(|_| {
        client
            .post(&callback)
            .header("content-type", "application/json")
            .header("x-sspr-signature", &signature)
            .body(body.clone())
            .send()
    }))
    .await;
    for answer in answers {
        assert_eq!(answer?.status().as_u16(), 204);
    }
    h.wait_status(&sms.delivery_id, DeliveryStatus::Delivered)
        .await?;
    let seen = delta(before, read());
    assert_eq!(
        counts(seen),
        Reading {
            sms_accepted: (1.0, 0.0),
            receipt_delivered: (1.0, 0.0),
            ..nothing()
        }
    );
    assert!(seen.receipt_delivered.1 >= 2.0, "{seen:?}");

    // Its idle keep-alive connections would hold the receipts listener open on shutdown.
    drop(client);
    h.stop().await
}
