//! The notification service end to end against real components: a private nats-server, a real
//! SMTP sink, an HTTP sink as SMS provider, and a SQLite database. Deliveries are sealed and
//! published as verification does.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Harness, Setup, contains_bytes, delivery, delivery_issued_at, traceparent};
use sspr_bus::{BusError, ErrorCode};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::CodePurpose;
use sspr_proto::internal::notification::v1::DeliveryStatus;

const WAIT: Duration = common::WAIT;

#[tokio::test]
async fn email_code_is_mailed_recorded_and_announced() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let d = delivery(
        MethodKind::Email,
        "alice@example.com",
        "48213579",
        CodePurpose::Reset,
        "en-GB",
    );
    let (tp, trace_id) = traceparent();
    h.publish(&d, &tp).await?;

    let mail = h
        .smtp
        .wait_for(|m| m.to == ["alice@example.com"], WAIT)
        .await?;
    assert_eq!(mail.subject().as_deref(), Some("Your password reset code"));
    let text = mail.text_body().unwrap_or_default();
    assert!(
        text.lines().any(|l| l.trim() == "48213579"),
        "code not on its own line:\n{text}"
    );
    assert!(text.contains("valid for 10 minutes"), "{text}");
    let html = mail.html_body().unwrap_or_default();
    assert!(html.contains("48213579"), "{html}");
    assert!(
        mail.header("Content-Type")
            .unwrap_or_default()
            .contains("multipart/alternative")
    );
    assert_eq!(mail.from, "no-reply@sspr.localhost");

    let record = h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    assert_eq!(record.attempts, 1);
    assert_eq!(record.kind, MethodKind::Email as i32);
    assert_eq!(record.last_error, "");
    assert_eq!(record.provider, "smtp");
    assert!(!record.dead_lettered);
    assert!(record.sent_at.is_some() && record.finished_at == record.sent_at);
    assert!(record.provider_message_id.is_empty());

    let (event, raw, headers) = h.wait_code_delivered(&d.delivery_id).await?;
    let meta = event.meta.clone().unwrap_or_default();
    assert_eq!(meta.user_id, "alice");
    assert_eq!(meta.flow_id, d.flow_id);
    assert_eq!(meta.source, "notification");
    assert_eq!(event.kind, MethodKind::Email as i32);
    assert_eq!(event.attempts, 1);
    let latency = event.latency.unwrap_or_default();
    assert!(
        latency.seconds >= 2 && latency.seconds < 60,
        "latency {latency:?}"
    );
    assert!(!contains_bytes(&raw, b"48213579"), "code in the event");
    assert!(
        !contains_bytes(&raw, b"alice@example.com"),
        "destination in the event"
    );
    // The event belongs to the trace of the call that issued the code.
    let event_tp = headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_owned());
    assert!(
        event_tp.as_deref().is_some_and(|t| t.contains(&trace_id)),
        "event traceparent {event_tp:?} is not in trace {trace_id}"
    );
    h.stop().await
}

#[tokio::test]
async fn codes_go_over_starttls_when_the_url_requires_it() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::StartTls).await?;
    let d = delivery(
        MethodKind::Email,
        "tls@example.com",
        "97531864",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    let mail = h
        .smtp
        .wait_for(|m| m.to == ["tls@example.com"], WAIT)
        .await?;
    assert!(mail.text_body().unwrap_or_default().contains("97531864"));
    let record = h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    assert_eq!((record.attempts, record.provider.as_str()), (1, "smtp"));
    assert_eq!(h.smtp.tls_sessions(), 1);
    h.stop().await
}

#[tokio::test]
async fn mails_follow_purpose_and_locale_with_english_fallback() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let fr = delivery(
        MethodKind::Email,
        "fr@example.com",
        "11112222",
        CodePurpose::Registration,
        "fr-FR",
    );
    let de = delivery(
        MethodKind::Email,
        "de@example.com",
        "33334444",
        CodePurpose::Registration,
        "de",
    );
    let fr_reset = delivery(
        MethodKind::Email,
        "frr@example.com",
        "55556666",
        CodePurpose::Reset,
        "fr",
    );
    for d in [&fr, &de, &fr_reset] {
        h.publish(d, &traceparent().0).await?;
    }

    let mail = h
        .smtp
        .wait_for(|m| m.to == ["fr@example.com"], WAIT)
        .await?;
    assert_eq!(
        mail.subject().as_deref(),
        Some("Confirmez votre adresse e-mail")
    );
    let text = mail.text_body().unwrap_or_default();
    assert!(text.lines().any(|l| l.trim() == "11112222"), "{text}");
    assert!(text.contains("valable 10 minutes"), "{text}");

    let mail = h
        .smtp
        .wait_for(|m| m.to == ["de@example.com"], WAIT)
        .await?;
    assert_eq!(
        mail.subject().as_deref(),
        Some("Confirm your email address")
    );
    assert!(
        mail.text_body()
            .unwrap_or_default()
            .lines()
            .any(|l| l.trim() == "33334444")
    );

    let mail = h
        .smtp
        .wait_for(|m| m.to == ["frr@example.com"], WAIT)
        .await?;
    assert_eq!(
        mail.subject().as_deref(),
        Some("Votre code de réinitialisation du mot de passe")
    );
    h.stop().await
}

#[tokio::test]
async fn sms_code_goes_to_the_webhook() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let d = delivery(
        MethodKind::Sms,
        "+33612345678",
        "90817263",
        CodePurpose::Reset,
        "fr",
    );
    h.publish(&d, &traceparent().0).await?;

    let request = h.http.wait_for(|_| true, WAIT).await?;
    assert_eq!(request.method, "POST");
    assert!(
        request
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let body = request.json()?;
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["to"], "+33612345678");
    assert_eq!(body["delivery_id"], d.delivery_id.as_str());
    let text = body["body"].as_str().unwrap_or_default();
    assert!(
        text.contains("90817263") && text.contains("valable 10 min"),
        "{text}"
    );

    let record = h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    assert_eq!(record.kind, MethodKind::Sms as i32);
    assert_eq!(record.provider, "webhook");
    let (event, raw, _) = h.wait_code_delivered(&d.delivery_id).await?;
    assert_eq!(event.kind, MethodKind::Sms as i32);
    assert!(!contains_bytes(&raw, b"90817263") && !contains_bytes(&raw, b"+33612345678"));
    assert!(h.smtp.messages().is_empty(), "an SMS delivery sent mail");
    h.stop().await
}

#[tokio::test]
async fn voice_code_goes_to_the_webhook_as_a_call_reading_the_digits() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let d = delivery(
        MethodKind::Voice,
        "+33612345678",
        "48193027",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;

    let request = h.http.wait_for(|_| true, WAIT).await?;
    let body = request.json()?;
    assert_eq!(body["channel"], "voice");
    assert_eq!(body["to"], "+33612345678");
    assert_eq!(body["delivery_id"], d.delivery_id.as_str());
    let words = body["body"].as_str().unwrap_or_default();
    assert_eq!(
        words.matches("4, 8, 1, 9, 3, 0, 2, 7").count(),
        2,
        "spoken digit by digit, then repeated: {words}"
    );
    assert!(words.contains("I repeat"), "{words}");

    let record = h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    assert_eq!(record.kind, MethodKind::Voice as i32);
    let (event, raw, _) = h.wait_code_delivered(&d.delivery_id).await?;
    assert_eq!(event.kind, MethodKind::Voice as i32);
    assert!(!contains_bytes(&raw, b"48193027") && !contains_bytes(&raw, b"+33612345678"));
    assert!(h.smtp.messages().is_empty(), "a voice delivery sent mail");
    h.stop().await
}

#[tokio::test]
async fn sms_webhook_server_errors_are_retried() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    h.http.respond_next(1, 503, "{}")?;
    let d = delivery(
        MethodKind::Sms,
        "+447700900123",
        "24682468",
        CodePurpose::Registration,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    let record = h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    assert_eq!(record.attempts, 2);
    assert!(
        record.last_error.contains("HTTP 503"),
        "{}",
        record.last_error
    );
    assert_eq!(h.http.requests().len(), 2);
    h.stop().await
}

#[tokio::test]
async fn sms_without_a_webhook_fails_with_a_clear_reason() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::NoSms).await?;
    let d = delivery(
        MethodKind::Sms,
        "+33612345678",
        "13572468",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    let record = h
        .wait_status(&d.delivery_id, DeliveryStatus::Failed)
        .await?;
    assert_eq!(record.attempts, 1);
    assert!(
        record.last_error.contains("SSPR_SMS_WEBHOOK_URL"),
        "{}",
        record.last_error
    );
    assert!(!record.last_error.contains("+33612345678") && !record.last_error.contains("13572468"));
    assert!(record.dead_lettered);
    let (event, _) = h.wait_delivery_failed(&d.delivery_id).await?;
    assert_eq!(
        (event.reason.as_str(), event.kind),
        ("rejected", MethodKind::Sms as i32)
    );
    h.wait_queue_drained().await?;
    assert!(h.http.requests().is_empty());
    h.stop().await
}

#[tokio::test]
async fn an_expired_code_is_never_sent() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let issued = chrono::Utc::now() - chrono::Duration::minutes(11);
    let d = delivery_issued_at(
        MethodKind::Email,
        "late@example.com",
        "99990000",
        CodePurpose::Reset,
        "en",
        issued,
    );
    h.publish(&d, &traceparent().0).await?;
    let record = h
        .wait_status(&d.delivery_id, DeliveryStatus::Expired)
        .await?;
    assert_eq!(record.attempts, 0);
    h.wait_queue_drained().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.smtp.messages().is_empty(), "an expired code was mailed");
    assert_eq!(h.code_delivered_count().await?, 0);
    assert!(record.finished_at.is_some() && !record.dead_lettered);
    let (event, _) = h.wait_delivery_failed(&d.delivery_id).await?;
    assert_eq!(event.reason, "expired");
    assert_eq!(event.method_id, "method-1");
    assert_eq!(event.attempts, 0);
    h.stop().await
}

#[tokio::test]
async fn a_temporary_smtp_refusal_is_retried_then_delivered() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    h.smtp.reject_next(1, 451);
    let d = delivery(
        MethodKind::Email,
        "retry@example.com",
        "31415926",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;

    let mail = h
        .smtp
        .wait_for(|m| m.to == ["retry@example.com"], WAIT)
        .await?;
    assert!(mail.text_body().unwrap_or_default().contains("31415926"));
    let record = h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    assert_eq!(record.attempts, 2);
    assert!(record.last_error.contains("451"), "{}", record.last_error);
    let (event, _, _) = h.wait_code_delivered(&d.delivery_id).await?;
    assert_eq!(event.attempts, 2);
    assert_eq!(h.smtp.messages().len(), 1);
    h.stop().await
}

#[tokio::test]
async fn a_permanent_smtp_refusal_fails_without_retry() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    h.smtp.reject_next(1, 550);
    let d = delivery(
        MethodKind::Email,
        "nobody@example.com",
        "27182818",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;

    let record = h
        .wait_status(&d.delivery_id, DeliveryStatus::Failed)
        .await?;
    assert_eq!(record.attempts, 1);
    assert!(record.last_error.contains("550"), "{}", record.last_error);
    assert!(!record.last_error.contains("nobody@example.com"));
    assert!(record.dead_lettered);
    assert_eq!(record.provider, "smtp");
    assert!(record.finished_at.is_some() && record.sent_at.is_none());
    assert_eq!(
        (record.user_id.as_str(), record.flow_id.as_str()),
        ("alice", d.flow_id.as_str())
    );

    // One transaction wrote the dead letter and the event with it.
    let dead = h.dead_letter(&d.delivery_id).await?.expect("a dead letter");
    assert_eq!(
        (
            dead.channel.as_str(),
            dead.purpose.as_str(),
            dead.user_id.as_str()
        ),
        ("email", "reset", "alice")
    );
    assert_eq!(
        (dead.flow_id.as_str(), dead.method_id.as_str()),
        (d.flow_id.as_str(), "method-1")
    );
    assert_eq!(dead.attempts, 1);
    assert!(
        dead.reason
            .contains("refused the message permanently (reply 550)"),
        "{}",
        dead.reason
    );
    assert!(!dead.reason.contains("nobody@example.com") && !dead.reason.contains("27182818"));
    let (event, raw) = h.wait_delivery_failed(&d.delivery_id).await?;
    assert_eq!(event.reason, "rejected");
    assert_eq!(event.method_id, "method-1");
    assert_eq!(event.attempts, 1);
    assert_eq!(event.kind, MethodKind::Email as i32);
    assert_eq!(event.meta.unwrap_or_default().flow_id, d.flow_id);
    assert!(!contains_bytes(&raw, b"27182818") && !contains_bytes(&raw, b"nobody@example.com"));

    h.wait_queue_drained().await?;
    // The sink would accept a retry now: none comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        h.smtp.messages().is_empty(),
        "a permanently refused mail was retried"
    );
    assert_eq!(h.get_delivery(&d.delivery_id).await?.attempts, 1);
    assert_eq!(h.code_delivered_count().await?, 0);
    assert_eq!(h.delivery_failed_count().await?, 1);
    assert_eq!(
        h.delivery_stream_len().await?,
        0,
        "terminated, not left in the queue"
    );
    h.stop().await
}

#[tokio::test]
async fn repeated_temporary_refusals_end_in_retries_exhausted() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    h.smtp.reject_next(10, 451);
    let d = delivery(
        MethodKind::Email,
        "busy@example.com",
        "16180339",
        CodePurpose::Registration,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;

    let record = h
        .wait_status(&d.delivery_id, DeliveryStatus::Failed)
        .await?;
    let max = sspr_notification::domain::retry::MAX_ATTEMPTS;
    assert_eq!(record.attempts, max);
    assert!(record.dead_lettered);
    assert!(
        record
            .last_error
            .starts_with(&format!("gave up after {max} attempts"))
            && record.last_error.contains("451"),
        "{}",
        record.last_error
    );
    let (event, _) = h.wait_delivery_failed(&d.delivery_id).await?;
    assert_eq!(event.reason, "retries_exhausted");
    assert_eq!(event.attempts, max);
    assert_eq!(event.method_id, "method-1");
    let dead = h.dead_letter(&d.delivery_id).await?.expect("a dead letter");
    assert_eq!(dead.attempts, i32::try_from(max)?);
    assert_eq!(dead.purpose, "registration");
    h.wait_queue_drained().await?;
    assert_eq!(
        h.smtp.pending_rejections(),
        10 - max as usize,
        "exactly {max} sends"
    );
    assert!(h.smtp.messages().is_empty());
    assert_eq!(h.delivery_failed_count().await?, 1);
    h.stop().await
}

#[tokio::test]
async fn a_delivery_past_its_last_attempt_is_dead_lettered_without_sending() -> anyhow::Result<()> {
    use sspr_notification::domain::delivery::{Channel, DeliveryHeader, DeliveryId, Purpose};
    use sspr_notification::ports::DeliveryStore;
    let mut h = Harness::start(Setup::Standard).await?;
    let d = delivery(
        MethodKind::Email,
        "ghost@example.com",
        "14142135",
        CodePurpose::Reset,
        "en",
    );
    // Another replica started every allowed send and died before reporting the last one; the
    // queue redelivers the message once more (its delivered count alone would allow a send).
    let (_conn, store) = h.store().await?;
    let header = DeliveryHeader {
        id: DeliveryId::parse(&d.delivery_id)?,
        channel: Channel::Email,
        purpose: Purpose::Reset,
        user_id: "alice".into(),
        flow_id: d.flow_id.clone(),
        method_id: "method-1".into(),
    };
    for _ in 0..sspr_notification::domain::retry::MAX_ATTEMPTS {
        store
            .start_attempt(
                &header,
                "smtp",
                chrono::Duration::zero(),
                chrono::Utc::now(),
            )
            .await?;
    }
    h.publish(&d, &traceparent().0).await?;

    let record = h
        .wait_status(&d.delivery_id, DeliveryStatus::Failed)
        .await?;
    assert!(record.dead_lettered);
    assert!(
        record.last_error.contains("never reported"),
        "{}",
        record.last_error
    );
    let (event, _) = h.wait_delivery_failed(&d.delivery_id).await?;
    assert_eq!(event.reason, "retries_exhausted");
    h.wait_queue_drained().await?;
    assert!(h.smtp.messages().is_empty(), "a sixth send went out");
    assert_eq!(h.smtp.connection_count(), 0);
    h.stop().await
}

#[tokio::test]
async fn a_malformed_but_attributable_delivery_is_dead_lettered() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let mut d = delivery(
        MethodKind::Email,
        "shape@example.com",
        "12345678",
        CodePurpose::Reset,
        "en",
    );
    d.code = "12ab".into();
    h.publish(&d, &traceparent().0).await?;
    let record = h
        .wait_status(&d.delivery_id, DeliveryStatus::Failed)
        .await?;
    assert!(record.dead_lettered);
    assert_eq!(record.attempts, 0);
    assert!(
        record.last_error.starts_with("malformed delivery"),
        "{}",
        record.last_error
    );
    let (event, raw) = h.wait_delivery_failed(&d.delivery_id).await?;
    assert_eq!(event.reason, "malformed");
    assert_eq!(event.method_id, "method-1");
    assert!(!contains_bytes(&raw, b"shape@example.com") && !contains_bytes(&raw, b"12ab"));
    let dead = h.dead_letter(&d.delivery_id).await?.expect("a dead letter");
    assert!(!dead.reason.contains("12ab"), "{}", dead.reason);
    h.wait_queue_drained().await?;
    assert!(h.smtp.messages().is_empty());
    h.stop().await
}

#[tokio::test]
async fn the_consumer_never_lets_the_server_drop_a_delivery() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let stream = h
        .bus
        .jetstream()
        .get_stream(sspr_bus::subjects::DELIVERY_STREAM)
        .await?;
    let info = stream
        .consumer_info(sspr_bus::subjects::DELIVERY_CONSUMER)
        .await?;
    assert_eq!(
        info.config.max_deliver,
        sspr_notification::delivery_worker::MAX_DELIVER
    );
    assert!(
        info.config.max_deliver <= 0,
        "a finite max_deliver can drop messages unrecorded"
    );

    // A consumer left by an older version (max_deliver 5) is updated in place.
    let mut old = sspr_notification::delivery_worker::consumer_config();
    old.max_deliver = 5;
    stream.create_consumer(old).await?;
    let info = stream
        .consumer_info(sspr_bus::subjects::DELIVERY_CONSUMER)
        .await?;
    assert_eq!(info.config.max_deliver, 5);
    sspr_notification::delivery_worker::ensure_consumer(h.bus.jetstream()).await?;
    let info = stream
        .consumer_info(sspr_bus::subjects::DELIVERY_CONSUMER)
        .await?;
    assert_eq!(
        info.config.max_deliver,
        sspr_notification::delivery_worker::MAX_DELIVER
    );
    h.stop().await
}

#[tokio::test]
async fn a_delivery_sealed_with_another_key_is_not_sent() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let bad = delivery(
        MethodKind::Email,
        "mallory@example.com",
        "66666666",
        CodePurpose::Reset,
        "en",
    );
    h.publish_sealed_with(&sspr_testkit::random_code_key(), &bad, &traceparent().0)
        .await?;
    let good = delivery(
        MethodKind::Email,
        "bob@example.com",
        "12121212",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&good, &traceparent().0).await?;

    h.wait_status(&good.delivery_id, DeliveryStatus::Sent)
        .await?;
    h.wait_queue_drained().await?;
    let mails = h.smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        h.delivery_stream_len().await?,
        0,
        "the undecryptable delivery stays in the work queue"
    );
    assert_eq!(mails[0].to, ["bob@example.com"]);
    match h.get_delivery(&bad.delivery_id).await {
        Err(BusError::Rpc(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    h.stop().await
}

#[tokio::test]
async fn a_redelivered_delivery_is_not_sent_twice() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    let d = delivery(
        MethodKind::Email,
        "once@example.com",
        "10203040",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    // The same sealed delivery again under another message id, as after a lost ack.
    let key = h.key;
    h.publish_raw(
        &key,
        &d,
        &traceparent().0,
        &format!("{}-again", d.delivery_id),
    )
    .await?;
    h.wait_queue_drained().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.smtp.messages().len(), 1);
    assert_eq!(h.get_delivery(&d.delivery_id).await?.attempts, 1);
    assert_eq!(h.code_delivered_count().await?, 1);
    h.stop().await
}

#[tokio::test]
async fn files_transport_writes_an_eml_with_the_code() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Files).await?;
    let d = delivery(
        MethodKind::Email,
        "dev@example.com",
        "56565656",
        CodePurpose::Registration,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    let record = h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    assert_eq!(record.provider, "files");
    let path = h
        .mail_dir
        .path()
        .join("mail")
        .join(format!("{}.eml", d.delivery_id));
    let eml = std::fs::read_to_string(&path)?;
    assert!(eml.contains("To: dev@example.com"), "{eml}");
    assert!(eml.contains("Subject: Confirm your email address"), "{eml}");
    assert!(eml.contains("\r\n56565656\r\n"), "{eml}");
    assert!(h.smtp.messages().is_empty());
    h.wait_code_delivered(&d.delivery_id).await?;
    h.stop().await
}

#[tokio::test]
async fn files_transport_writes_sms_as_text_files() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Files).await?;
    let d = delivery(
        MethodKind::Sms,
        "+33612345678",
        "78787878",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&d, &traceparent().0).await?;
    h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    let path = h
        .mail_dir
        .path()
        .join("sms")
        .join(format!("{}.sms.txt", d.delivery_id));
    let text = std::fs::read_to_string(&path)?;
    assert!(text.starts_with("To: +33612345678\n\n"), "{text}");
    assert!(text.contains("78787878"), "{text}");
    assert!(h.http.requests().is_empty(), "no provider is called");
    h.wait_code_delivered(&d.delivery_id).await?;
    h.stop().await
}

#[tokio::test]
async fn files_transport_writes_voice_calls_as_their_own_text_files() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Files).await?;
    let d = delivery(
        MethodKind::Voice,
        "+33612345678",
        "13572468",
        CodePurpose::Reset,
        "fr",
    );
    h.publish(&d, &traceparent().0).await?;
    h.wait_status(&d.delivery_id, DeliveryStatus::Sent).await?;
    let dir = h.mail_dir.path().join("sms");
    let text = std::fs::read_to_string(dir.join(format!("{}.voice.txt", d.delivery_id)))?;
    assert!(text.starts_with("To: +33612345678\n\n"), "{text}");
    assert!(
        text.contains("Je répète : 1, 3, 5, 7, 2, 4, 6, 8."),
        "{text}"
    );
    assert!(!dir.join(format!("{}.sms.txt", d.delivery_id)).exists());
    assert!(h.http.requests().is_empty(), "no provider is called");
    h.stop().await
}

#[tokio::test]
async fn get_delivery_refuses_unknown_and_malformed_ids() -> anyhow::Result<()> {
    let mut h = Harness::start(Setup::Standard).await?;
    match h.get_delivery("0190aaaa-0000-7000-8000-000000000000").await {
        Err(BusError::Rpc(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    for bad in ["", "../x", &"a".repeat(200)] {
        match h.get_delivery(bad).await {
            Err(BusError::Rpc(e)) => assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad:?}"),
            other => panic!("expected INVALID_ARGUMENT for {bad:?}, got {other:?}"),
        }
    }
    h.stop().await
}

/// The same record keeping on PostgreSQL (runs when `SSPR_TEST_POSTGRES_URL` is set).
#[tokio::test]
async fn postgres_keeps_the_same_records() -> anyhow::Result<()> {
    let Some(db) = sspr_testkit::TestDb::postgres().await? else {
        return Ok(());
    };
    let mut h = Harness::start_on(Setup::Standard, db).await?;
    h.smtp.reject_next(1, 451);
    let retried = delivery(
        MethodKind::Email,
        "pg@example.com",
        "80808080",
        CodePurpose::Reset,
        "fr",
    );
    let issued = chrono::Utc::now() - chrono::Duration::minutes(30);
    let expired = delivery_issued_at(
        MethodKind::Email,
        "old@example.com",
        "81818181",
        CodePurpose::Reset,
        "en",
        issued,
    );
    h.publish(&retried, &traceparent().0).await?;
    h.publish(&expired, &traceparent().0).await?;

    let record = h
        .wait_status(&retried.delivery_id, DeliveryStatus::Sent)
        .await?;
    assert_eq!(record.attempts, 2);
    assert!(record.last_error.contains("451"));
    let (event, _, _) = h.wait_code_delivered(&retried.delivery_id).await?;
    assert_eq!(event.attempts, 2);
    h.wait_status(&expired.delivery_id, DeliveryStatus::Expired)
        .await?;
    h.wait_queue_drained().await?;
    assert_eq!(h.smtp.messages().len(), 1);

    h.smtp.reject_next(1, 554);
    let refused = delivery(
        MethodKind::Email,
        "refused@example.com",
        "82828282",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&refused, &traceparent().0).await?;
    let record = h
        .wait_status(&refused.delivery_id, DeliveryStatus::Failed)
        .await?;
    assert!(record.dead_lettered && record.finished_at.is_some());
    let dead = h
        .dead_letter(&refused.delivery_id)
        .await?
        .expect("a dead letter");
    assert_eq!(dead.method_id, "method-1");
    let (event, _) = h.wait_delivery_failed(&refused.delivery_id).await?;
    assert_eq!(event.reason, "rejected");
    h.stop().await
}

/// A copy of a delivery message that arrives while an attempt is still sending it (a
/// redelivery after a NATS restart or an ack timeout) must not send it a second time: the claim
/// answers Busy while the attempt's lease runs, Started once it ran out (the attempt died), and
/// Final once the delivery was recorded sent. On both backends.
#[tokio::test]
async fn an_attempt_in_progress_holds_the_delivery_against_a_second_send() -> anyhow::Result<()> {
    use sspr_notification::domain::delivery::{Channel, DeliveryHeader, DeliveryId, Purpose};
    use sspr_notification::ports::{AttemptClaim, DeliveryStore};
    let mut dbs = vec![sspr_testkit::TestDb::sqlite()?];
    if let Some(pg) = sspr_testkit::TestDb::postgres().await? {
        dbs.push(pg);
    }
    for db in dbs {
        let mut h = Harness::start_on(Setup::Standard, db).await?;
        let (_conn, store) = h.store().await?;
        let header = DeliveryHeader {
            id: DeliveryId::parse(&uuid::Uuid::now_v7().to_string())?,
            channel: Channel::Email,
            purpose: Purpose::Reset,
            user_id: "alice".into(),
            flow_id: "flow-claim".into(),
            method_id: "method-1".into(),
        };
        let lease = chrono::Duration::seconds(20);
        let t0 = chrono::Utc::now();
        let first = store.start_attempt(&header, "smtp", lease, t0).await?;
        assert!(
            matches!(first, AttemptClaim::Started(ref r) if r.attempts == 1),
            "{first:?}"
        );
        let copy = store
            .start_attempt(&header, "smtp", lease, t0 + chrono::Duration::seconds(5))
            .await?;
        assert!(
            matches!(copy, AttemptClaim::Busy { .. }),
            "a second send while the first runs: {copy:?}"
        );
        // The first attempt died: once its lease ran out the next one may send.
        let after = store
            .start_attempt(&header, "smtp", lease, t0 + chrono::Duration::seconds(21))
            .await?;
        assert!(
            matches!(after, AttemptClaim::Started(ref r) if r.attempts == 2),
            "{after:?}"
        );
        let sent = sspr_proto::events::v1::CodeDelivered {
            meta: Some(sspr_proto::events::v1::EventMeta {
                event_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            }),
            delivery_id: header.id.as_str().to_owned(),
            ..Default::default()
        };
        store
            .record_sent(&header, &sent, None, t0 + chrono::Duration::seconds(22))
            .await?;
        let late = store
            .start_attempt(&header, "smtp", lease, t0 + chrono::Duration::seconds(60))
            .await?;
        assert!(matches!(late, AttemptClaim::Final(_)), "{late:?}");
        h.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_expired_delivery_is_recorded_once_by_racing_copies() -> anyhow::Result<()> {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use sspr_notification::domain::delivery::{Channel, DeliveryHeader, DeliveryId, Purpose};
    use sspr_notification::ports::DeliveryStore;
    let mut h = Harness::start(Setup::Standard).await?;
    let (conn, store) = h.store().await?;
    let header = DeliveryHeader {
        id: DeliveryId::parse(&uuid::Uuid::now_v7().to_string())?,
        channel: Channel::Email,
        purpose: Purpose::Reset,
        user_id: "alice".into(),
        flow_id: "flow-expired".into(),
        method_id: "method-1".into(),
    };
    // Two copies of the message both found the delivery open and its code expired.
    let event = || sspr_proto::events::v1::CodeDeliveryFailed {
        meta: Some(sspr_proto::events::v1::EventMeta {
            event_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        delivery_id: header.id.as_str().to_owned(),
        reason: "expired".into(),
        ..Default::default()
    };
    let now = chrono::Utc::now();
    assert!(store.record_expired(&header, &event(), now).await?);
    assert!(
        !store.record_expired(&header, &event(), now).await?,
        "the second copy finds it final"
    );
    let failed_events = sspr_storage::outbox::entity::Entity::find()
        .filter(
            sspr_storage::outbox::entity::Column::Subject
                .eq(sspr_bus::subjects::events::CODE_DELIVERY_FAILED),
        )
        .count(&conn)
        .await?;
    assert_eq!(failed_events, 1, "one code.delivery_failed");
    h.stop().await
}
