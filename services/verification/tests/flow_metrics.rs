//! The reset flow's metrics through the real service over NATS (stand-ins for directory,
//! policy and enrolment): `sspr_reset_outcomes_total`, `sspr_throttled_total`,
//! `sspr_sms_breaker_open` and `sspr_sms_sends_refused_total`.
//!
//! One test only: the registry is process-wide, so the steps run one after the other and
//! compare exact before/after deltas.

mod harness;

use harness::{GOOD_PASSWORD, Harness, WEAK_PASSWORD, World, other_code};
use sspr_bus::ErrorCode;
use sspr_proto::common::v1::MethodKind;
use sspr_telemetry::metrics::{catalogue, encode};
use sspr_testkit::metrics::series_value;

const OUTCOMES: [(&str, &str); 9] = [
    ("started", "ok"),
    ("code_sent", "ok"),
    ("verified", "ok"),
    ("completed", "ok"),
    ("failed", "wrong_code"),
    ("failed", "policy_rejected"),
    ("blocked", "breaker_open"),
    ("blocked", "throttled"),
    ("failed", "unknown_session"),
];

fn outcomes() -> Vec<f64> {
    let text = encode();
    OUTCOMES
        .iter()
        .map(|(outcome, reason)| {
            series_value(
                &text,
                "sspr_reset_outcomes_total",
                &[("outcome", outcome), ("reason", reason)],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_counts_once_and_decoys_count_as_real_flows() {
    let mut world = World::one_method();
    world.add_method(
        "alice",
        "m-sms",
        MethodKind::Sms,
        "+33•••78",
        "+33612345678",
    );
    world.limits = Some(sspr_proto::admin::v1::Limits {
        failed_verifications_per_day: Some(100),
        ip_start_reset_per_minute: Some(3),
        // Open as soon as one phone code was sent and none verified.
        breaker_min_sends: Some(1),
        breaker_min_verified_percent: Some(100),
        ..Default::default()
    });
    let mut h = Harness::start(world).await;
    let metrics = catalogue();
    let before = outcomes();
    let throttled_before = metrics.throttled.get(&["ip_start_reset_per_minute"]);
    let refused_before = metrics.sms_sends_refused.get(&["sms_breaker_open"]);

    // A real flow and a decoy (unknown user) side by side.
    let real = h.start_reset("alice").await.expect("start alice");
    let decoy = h.start_reset("nobody").await.expect("start decoy");
    let decoy_method = decoy.methods[0].method_id.clone();
    h.send_code(&real.session_id, "m-email")
        .await
        .expect("send alice");
    let code = h.next_delivery().await.delivery.code;
    h.send_code(&decoy.session_id, &decoy_method)
        .await
        .expect("send decoy");
    let wrong = other_code(&code);
    for (session, method) in [
        (&real.session_id, "m-email"),
        (&decoy.session_id, decoy_method.as_str()),
    ] {
        let e = h
            .verify_code(session, method, &wrong)
            .await
            .expect_err("wrong code");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
    }

    // The SMS breaker: the first phone code goes, the second finds it open.
    h.send_code(&real.session_id, "m-sms")
        .await
        .expect("first SMS");
    assert_eq!(metrics.sms_breaker_open.get(&[]), 0, "closed while it sent");
    let e = h
        .send_code(&real.session_id, "m-sms")
        .await
        .expect_err("breaker open");
    assert_eq!(e.reason.as_deref(), Some("SMS_BREAKER_OPEN"));
    assert_eq!(metrics.sms_breaker_open.get(&[]), 1, "open");
    assert_eq!(
        metrics.sms_sends_refused.get(&["sms_breaker_open"]),
        refused_before + 1
    );

    h.verify_code(&real.session_id, "m-email", &code)
        .await
        .expect("right code");
    h.complete_reset(&real.session_id, WEAK_PASSWORD)
        .await
        .expect_err("weak password");
    h.complete_reset(&real.session_id, GOOD_PASSWORD)
        .await
        .expect("completed");
    let e = h
        .complete_reset(&real.session_id, GOOD_PASSWORD)
        .await
        .expect_err("already completed");
    assert_eq!(e.code, ErrorCode::Unauthenticated);

    // The third StartReset from the IP in a minute is allowed, the fourth throttled.
    h.start_reset("alice").await.expect("third start");
    let e = h.start_reset("alice").await.expect_err("fourth start");
    assert_eq!(e.code, ErrorCode::ResourceExhausted);
    assert_eq!(
        metrics.throttled.get(&["ip_start_reset_per_minute"]),
        throttled_before + 1
    );

    let seen: Vec<f64> = outcomes()
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    let expected = [3.0, 3.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0];
    assert_eq!(
        OUTCOMES.iter().zip(seen).collect::<Vec<_>>(),
        OUTCOMES.iter().zip(expected).collect::<Vec<_>>(),
        "the decoy's start, send and wrong code count as a real flow's"
    );
    // No label can tell a decoy from a real flow.
    let text = encode();
    for line in text
        .lines()
        .filter(|l| l.starts_with("sspr_reset_outcomes_total{"))
    {
        assert!(
            !line.contains("decoy") && !line.contains("unknown_user"),
            "{line}"
        );
    }
    h.stop().await;
}
