//! The JetStream work-queue consumer that sends codes.
//!
//! Every notification replica pulls from the one durable consumer
//! [`sspr_bus::subjects::DELIVERY_CONSUMER`] on `SSPR_DELIVERY`, so each delivery goes to one
//! replica at a time; at most [`MAX_IN_FLIGHT`] are processed concurrently per replica.
//!
//! Invariants, per message:
//! - It is acknowledged only after the SMTP server or SMS provider accepted it and the SENT
//!   record and its `code.delivered` event were committed together (outbox).
//! - A code is never delivered after it expired: the expiry is checked, with the service clock,
//!   before every attempt; an expired delivery is recorded EXPIRED together with a
//!   `code.delivery_failed` event (reason `expired`, outbox) and acknowledged.
//! - A delivery already in a final state (redelivered after a crash between commit and ack) is
//!   acknowledged again without sending.
//! - Transient failures are negatively acknowledged with exponential backoff and jitter
//!   ([`RetryPolicy`]). A delivery is given up when the provider refused it permanently
//!   (`rejected`), when its last allowed send failed (`retries_exhausted`), or when it decrypts
//!   but is malformed and still names its delivery id (`malformed`). Giving up writes, in one
//!   transaction, the FAILED status, a dead-letter entry and the `code.delivery_failed` event
//!   (with the fixed reason word and the delivery's `method_id`); only once that committed is
//!   the message terminated (`AckKind::Term`) by notification itself.
//! - Which attempt is the last is decided by notification, not by the server: the attempt
//!   number is the larger of the message's delivered count and the sends the delivery record
//!   saw start ([`RetryPolicy::attempt_number`]), so a send that started and never reported
//!   (replica killed, ack wait exceeded) still counts, and a delivery past the last attempt only
//!   records the dead letter. The consumer's `max_deliver` is therefore unlimited
//!   ([`MAX_DELIVER`]): any finite value lets the server silently discard a message whose last
//!   delivery was lost (crash, ack timeout) or whose dead letter could not be written (database
//!   down), with no record and no event. Unlimited redelivery cannot loop on sends: after
//!   `max_attempts` sends the worker sends nothing more, and every retry waits out the backoff.
//!   When recording an outcome fails, the message is retried later, never dropped.
//! - A message that does not decrypt under the key its `key_id` names (the current
//!   `SSPR_CODE_KEY` or one of `SSPR_CODE_KEYS_PREVIOUS`), or that names no valid delivery id,
//!   is terminated and never sent: nothing trustworthy identifies it, so it is only logged.
//! - The code and the destination appear in no log line, span field, record, dead letter or
//!   event.
//! - Each message is processed in a consumer span that continues the trace found in the
//!   message's `traceparent` header (the SendCode call), and the SMTP/SMS call is a child of it.
//! - On shutdown the consumer stops pulling and the messages in flight finish first.
//! - Measured (the catalogue in `sspr_telemetry::metrics`): every send attempt and every
//!   message dropped or given up counts once in `sspr_delivery_attempts_total{channel,result}`;
//!   the time from the code's issue to its outcome goes once per delivery into
//!   `sspr_code_delivery_duration_seconds{channel,outcome}` (accepted, failed, expired), when the
//!   outcome was recorded by this attempt: a copy of the message for a delivery already final
//!   records nothing there. A message the queue delivers again counts in
//!   `sspr_jetstream_redeliveries_total`, and [`watch_consumer`] samples the consumer's lag.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message as _;
use sspr_bus::subjects;
use sspr_clock::SharedClock;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodeDelivered, CodeDeliveryFailed, CodePurpose, EventMeta};
use sspr_proto::internal::notification::v1::{Delivery, SealedDelivery};
use sspr_proto::time::{duration, from_timestamp, timestamp};
use sspr_runtime::CodeKeys;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::delivery::{
    Channel, CodeDelivery, DeliveryHeader, Destination, Purpose, RawDelivery,
};
use crate::domain::receipt::ProviderMessageId;
use crate::domain::retry::{FailureKind, NextStep, RetryPolicy, SendFailure};
use crate::domain::templates;
use crate::ports::{
    AttemptClaim, DeadLetter, OutgoingMail, OutgoingSms, ProviderMessage, SharedHelpdesk,
    SharedMailer, SharedReceiptStore, SharedSmsSender, SharedStore,
};

/// Deliveries processed at once by one replica.
pub const MAX_IN_FLIGHT: usize = 32;
/// How long the server waits for an ack before redelivering (longer than any send timeout).
pub const ACK_WAIT: Duration = Duration::from_secs(30);
// A send gives up before the server would redeliver the message it is working on.
const _: () = assert!(crate::adapters::smtp::SEND_TIMEOUT.as_secs() < ACK_WAIT.as_secs());

/// The consumer's `max_deliver`: unlimited (-1), see the module header.
pub const MAX_DELIVER: i64 = -1;

/// How long an attempt holds a delivery it started (status SENDING): longer than any send can
/// take (the mailer's and the SMS provider's timeouts), shorter than [`ACK_WAIT`], so a copy of
/// the message that arrives while the first attempt still sends waits instead of sending twice,
/// and the redelivery after a crashed attempt (which comes after `ACK_WAIT`) finds the lease
/// expired and sends.
pub const CLAIM_LEASE: Duration = Duration::from_secs(20);

fn claim_lease() -> chrono::Duration {
    chrono::Duration::from_std(CLAIM_LEASE).unwrap_or(chrono::Duration::seconds(20))
}

const _: () = assert!(CLAIM_LEASE.as_secs() < ACK_WAIT.as_secs());
const _: () = assert!(crate::adapters::smtp::SEND_TIMEOUT.as_secs() < CLAIM_LEASE.as_secs());
const _: () = assert!(crate::adapters::http_client::SEND_TIMEOUT.as_secs() < CLAIM_LEASE.as_secs());

/// The durable pull consumer's settings.
pub fn consumer_config() -> pull::Config {
    pull::Config {
        durable_name: Some(subjects::DELIVERY_CONSUMER.to_owned()),
        description: Some("sspr-notification replicas: send encrypted code deliveries".to_owned()),
        filter_subject: subjects::DELIVERY_WILDCARD.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_deliver: MAX_DELIVER,
        ..Default::default()
    }
}

/// Creates the durable consumer, or updates it to [`consumer_config`].
pub async fn ensure_consumer(js: &jetstream::Context) -> anyhow::Result<PullConsumer> {
    let stream = js
        .get_stream(subjects::DELIVERY_STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open stream {}: {e}", subjects::DELIVERY_STREAM))?;
    stream
        .create_consumer(consumer_config())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create consumer {}: {e}",
                subjects::DELIVERY_CONSUMER
            )
        })
}

/// What to tell the queue about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done (sent, expired, or already handled).
    Ack,
    /// Deliver it again after this delay.
    Retry(Duration),
    /// Never deliver it again (undecryptable, malformed, or given up).
    Term,
}

/// Processes deliveries.
pub struct DeliveryWorker {
    /// The code key ring: a delivery opens with the key its `key_id` names.
    pub keys: CodeKeys,
    pub store: SharedStore,
    pub mailer: SharedMailer,
    pub sms: SharedSmsSender,
    pub clock: SharedClock,
    /// The mail templates (built-in plus operator overrides).
    pub templates: Arc<templates::Templates>,
    /// The policy's helpdesk contact, for code mails.
    pub helpdesk: SharedHelpdesk,
    /// How often and how fast failed sends are retried.
    pub retry: RetryPolicy,
    /// Where messages handed to an SMS/voice provider are noted for their receipts.
    pub provider_messages: Option<SharedReceiptStore>,
}

/// How often [`watch_consumer`] samples the delivery consumer.
pub const CONSUMER_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Reads the delivery consumer's info once into `sspr_jetstream_consumer_pending`,
/// `_ack_pending` and `_redelivered` {stream, consumer}.
pub async fn sample_consumer(js: &jetstream::Context) -> anyhow::Result<()> {
    let stream = js
        .get_stream(subjects::DELIVERY_STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open stream {}: {e}", subjects::DELIVERY_STREAM))?;
    let info = stream
        .consumer_info(subjects::DELIVERY_CONSUMER)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot read consumer {}: {e}", subjects::DELIVERY_CONSUMER)
        })?;
    let metrics = sspr_telemetry::metrics::catalogue();
    let labels = [subjects::DELIVERY_STREAM, subjects::DELIVERY_CONSUMER];
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    metrics
        .jetstream_consumer_pending
        .set(&labels, gauge(info.num_pending));
    metrics
        .jetstream_consumer_ack_pending
        .set(&labels, gauge(info.num_ack_pending as u64));
    metrics
        .jetstream_consumer_redelivered
        .set(&labels, gauge(info.num_redelivered as u64));
    Ok(())
}

/// Samples the delivery consumer at once and then every `every` until `shutdown` is cancelled.
/// A failed sample (NATS away, consumer not created yet) keeps the last values.
pub async fn watch_consumer(js: jetstream::Context, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = sample_consumer(&js).await {
            tracing::debug!(error = %e, "could not sample the delivery consumer");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Counts one attempt, or one message dropped or given up (`sspr_delivery_attempts_total`).
fn count_attempt(channel: Channel, result: &'static str) {
    sspr_telemetry::metrics::catalogue()
        .delivery_attempts
        .inc(&[channel.as_str(), result]);
}

/// The delivery reached its outcome: the time since the code was issued, once per delivery
/// (`sspr_code_delivery_duration_seconds`). Nothing without an issue time (malformed).
fn observe_outcome(
    channel: Channel,
    outcome: &'static str,
    issued_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    if let Some(issued_at) = issued_at {
        let secs = (now - issued_at).to_std().map_or(0.0, |d| d.as_secs_f64());
        sspr_telemetry::metrics::catalogue()
            .code_delivery_duration
            .observe(&[channel.as_str(), outcome], secs);
    }
}

/// Pulls deliveries until `shutdown` is cancelled, then waits for those in flight.
pub async fn consume(
    js: jetstream::Context,
    worker: Arc<DeliveryWorker>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    'pull: while !shutdown.is_cancelled() {
        let consumer = match ensure_consumer(&js).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "delivery consumer unavailable; retrying");
                pause(&shutdown, Duration::from_secs(2)).await;
                continue;
            }
        };
        // Small batches: a message waiting in the client buffer already runs its ack timer.
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(MAX_IN_FLIGHT)
            .expires(Duration::from_secs(10))
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot pull deliveries; retrying");
                pause(&shutdown, Duration::from_secs(2)).await;
                continue;
            }
        };
        tracing::info!(consumer = subjects::DELIVERY_CONSUMER, "pulling deliveries");
        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a delivery task panicked");
                }
            }
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break 'pull,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break 'pull,
                },
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break 'pull,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let worker = Arc::clone(&worker);
                    tasks.spawn(async move {
                        worker.handle(message).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
                    tracing::warn!(error = %e, "pulling deliveries failed");
                    if matches!(
                        e.kind(),
                        K::ConsumerDeleted | K::PushBasedConsumer | K::RequestLimitExceeded
                    ) {
                        continue 'pull;
                    }
                }
                None => {
                    pause(&shutdown, Duration::from_millis(500)).await;
                    continue 'pull;
                }
            }
        }
    }
    tracing::info!(
        in_flight = tasks.len(),
        "stopped pulling deliveries; finishing those in flight"
    );
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a delivery task panicked");
        }
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

impl DeliveryWorker {
    /// Processes one message inside its consumer span and acknowledges it accordingly.
    pub async fn handle(&self, message: jetstream::Message) {
        let subject = message.subject.to_string();
        let span = tracing::info_span!(
            "delivery.process",
            otel.name = %format!("process {subject}"),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %subject,
            messaging.consumer.group.name = subjects::DELIVERY_CONSUMER,
            messaging.message.id = tracing::field::Empty,
            delivery_id = tracing::field::Empty,
            user_id = tracing::field::Empty,
            flow_id = tracing::field::Empty,
            channel = tracing::field::Empty,
            attempt = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        sspr_bus::trace::set_parent_from(&span, message.headers.as_ref());
        let attempt = message
            .info()
            .ok()
            .and_then(|info| u32::try_from(info.delivered).ok())
            .unwrap_or(1)
            .max(1);
        if attempt > 1 {
            sspr_telemetry::metrics::catalogue()
                .jetstream_redeliveries
                .inc(&[subjects::DELIVERY_STREAM, subjects::DELIVERY_CONSUMER]);
        }
        async {
            let disposition = self.process(&subject, &message.payload, attempt).await;
            let span = tracing::Span::current();
            let kind = match disposition {
                Disposition::Ack => AckKind::Ack,
                Disposition::Retry(delay) => AckKind::Nak(Some(delay)),
                Disposition::Term => {
                    span.record("otel.status_code", "ERROR");
                    AckKind::Term
                }
            };
            if let Err(e) = message.ack_with(kind).await {
                // The server redelivers after the ack wait; the record tells the next attempt
                // whether the delivery was already handled.
                tracing::warn!(error = %e, "could not acknowledge the delivery message");
            }
        }
        .instrument(span)
        .await
    }

    /// Decides and does everything for one message; `delivered` is the queue's delivery count.
    pub async fn process(&self, subject: &str, payload: &[u8], delivered: u32) -> Disposition {
        let span = tracing::Span::current();
        span.record("attempt", delivered);
        let sealed = match SealedDelivery::decode(payload) {
            Ok(s) => s,
            Err(_) => {
                span.record("outcome", "malformed");
                tracing::error!("a delivery message is not a SealedDelivery; dropping it");
                return Disposition::Term;
            }
        };
        let delivery = match sspr_bus::sealed::open_with(|kid| self.keys.get(kid), &sealed) {
            Ok(d) => d,
            Err(e) => {
                span.record("outcome", "undecryptable");
                // The delivery id is unauthenticated here: logged only as a hint, length-capped.
                let hint: String = sealed.delivery_id.chars().take(64).collect();
                tracing::error!(error = %e, claimed_delivery_id = %hint, "dropping a delivery that cannot be opened");
                return Disposition::Term;
            }
        };
        let delivery = match parse_delivery(&delivery) {
            Ok(d) => d,
            Err((header, reason)) => {
                span.record("outcome", "malformed");
                tracing::error!(reason = %reason, "dropping a malformed delivery");
                return match header {
                    Some(header) => {
                        let issued_at = delivery.issued_at.as_ref().and_then(from_timestamp);
                        self.dead_letter(
                            &header,
                            issued_at,
                            "malformed",
                            format!("malformed delivery: {reason}"),
                            0,
                            delivered,
                        )
                        .await
                    }
                    None => Disposition::Term,
                };
            }
        };
        let header = delivery.header.clone();
        span.record("messaging.message.id", header.id.as_str());
        span.record("delivery_id", header.id.as_str());
        span.record("user_id", header.user_id.as_str());
        span.record("flow_id", header.flow_id.as_str());
        span.record("channel", header.channel.as_str());

        if subjects::method_of(subject) != header.channel.as_str() {
            span.record("outcome", "malformed");
            let reason = format!(
                "malformed delivery: published on {subject} but its kind is {}",
                header.channel.as_str()
            );
            tracing::error!(reason = %reason, "dropping a delivery on the wrong subject");
            return self
                .dead_letter(
                    &header,
                    Some(delivery.issued_at),
                    "malformed",
                    reason,
                    0,
                    delivered,
                )
                .await;
        }

        let previous = match self.store.get(&header.id).await {
            Ok(Some(record)) if record.status.is_final() => {
                span.record("outcome", "duplicate");
                count_attempt(header.channel, "dropped");
                tracing::info!(
                    status = record.status.as_str(),
                    "delivery already handled; acknowledging again"
                );
                return Disposition::Ack;
            }
            Ok(record) => record,
            Err(e) => return self.store_unavailable(&e, delivered),
        };
        let sends_started = previous.as_ref().map_or(0, |r| r.attempts);
        let attempt = RetryPolicy::attempt_number(delivered, sends_started);
        span.record("attempt", attempt);

        let now = self.clock.now();
        if delivery.is_expired(now) {
            span.record("outcome", "expired");
            let event = code_delivery_failed(&header, now, "expired", sends_started);
            match self.store.record_expired(&header, &event, now).await {
                Ok(recorded) => {
                    count_attempt(header.channel, "dropped");
                    if recorded {
                        observe_outcome(header.channel, "expired", Some(delivery.issued_at), now);
                    }
                }
                Err(e) => return self.store_unavailable(&e, attempt),
            }
            tracing::warn!("the code expired before it could be delivered; not sending it");
            return Disposition::Ack;
        }

        if self.retry.exhausted(attempt) {
            // Every allowed send started already; the last one never reported (the replica
            // died or the ack wait ran out). Sending again would exceed the limit.
            span.record("outcome", "failed");
            let last = previous
                .and_then(|r| r.last_error)
                .unwrap_or_else(|| "the last attempt never reported an outcome".to_owned());
            let reason = format!("gave up after {sends_started} attempts: {last}");
            tracing::error!(reason = %reason, "delivery failed");
            return self
                .dead_letter(
                    &header,
                    Some(delivery.issued_at),
                    "retries_exhausted",
                    reason,
                    sends_started,
                    attempt,
                )
                .await;
        }

        let provider = match header.channel {
            Channel::Email => self.mailer.provider(),
            Channel::Sms | Channel::Voice => self.sms.provider(),
        };
        let record = match self
            .store
            .start_attempt(&header, provider, claim_lease(), now)
            .await
        {
            Ok(AttemptClaim::Started(r)) => r,
            Ok(AttemptClaim::Final(record)) => {
                span.record("outcome", "duplicate");
                count_attempt(header.channel, "dropped");
                tracing::info!(
                    status = record.status.as_str(),
                    "delivery handled meanwhile by another attempt; acknowledging"
                );
                return Disposition::Ack;
            }
            Ok(AttemptClaim::Busy { since }) => {
                // A copy of this message (redelivered after a NATS restart or an ack timeout)
                // while an attempt is still sending it: sending now could mail the code twice.
                // Come back once that attempt has ended or its lease has run out.
                span.record("outcome", "in_progress");
                let wait = (since + claim_lease() - now)
                    .to_std()
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_secs(1));
                tracing::info!(
                    retry_in_ms = wait.as_millis() as u64,
                    "another attempt is sending this delivery; not sending it twice"
                );
                return Disposition::Retry(wait);
            }
            Err(e) => return self.store_unavailable(&e, attempt),
        };
        let attempt = attempt.max(record.attempts);

        match self.send(&delivery).await {
            Ok(message_id) => {
                count_attempt(header.channel, "sent");
                // Noted before SENT is committed, so a receipt never finds SENT without it.
                self.note_provider_message(&delivery, message_id.clone())
                    .await;
                self.on_sent(&delivery, record.attempts, message_id).await
            }
            Err(failure) => {
                self.on_failure(
                    &header,
                    delivery.issued_at,
                    failure,
                    attempt,
                    record.attempts,
                )
                .await
            }
        }
    }

    /// Sends; returns the SMS/voice provider's message id when it gave one.
    async fn send(
        &self,
        delivery: &CodeDelivery,
    ) -> Result<Option<ProviderMessageId>, SendFailure> {
        let (purpose, locale, minutes) = (
            delivery.header.purpose,
            delivery.locale,
            delivery.validity_minutes(),
        );
        match &delivery.destination {
            Destination::Email(to) => {
                let helpdesk = self.helpdesk_contact().await;
                let mail = OutgoingMail {
                    delivery_id: delivery.header.id.clone(),
                    to: to.clone(),
                    content: self.templates.code_email(
                        purpose,
                        locale,
                        &delivery.code,
                        minutes,
                        &helpdesk,
                    ),
                };
                self.mailer.send(&mail).await.map(|()| None)
            }
            Destination::Sms(to) => {
                let sms = OutgoingSms {
                    delivery_id: delivery.header.id.clone(),
                    channel: Channel::Sms,
                    to: to.clone(),
                    body: templates::sms(purpose, locale, &delivery.code, minutes),
                };
                self.sms.submit(&sms).await
            }
            Destination::Voice(to) => {
                let call = OutgoingSms {
                    delivery_id: delivery.header.id.clone(),
                    channel: Channel::Voice,
                    to: to.clone(),
                    body: self
                        .templates
                        .voice(purpose, locale, &delivery.code, minutes),
                };
                self.sms.submit(&call).await
            }
        }
    }

    /// Receipts: notes an SMS/voice message the provider accepted (provider, its message id,
    /// when the code was issued), so its receipt can be checked and timed. Best effort: the
    /// code is already out; without this note a receipt still applies, timed from the record's
    /// creation and without the message-id check.
    async fn note_provider_message(
        &self,
        delivery: &CodeDelivery,
        message_id: Option<ProviderMessageId>,
    ) {
        let Some(store) = &self.provider_messages else {
            return;
        };
        if delivery.header.channel == Channel::Email {
            return;
        }
        let message = ProviderMessage {
            delivery_id: delivery.header.id.clone(),
            provider: self.sms.provider().to_owned(),
            message_id,
            method_id: delivery.header.method_id.clone(),
            issued_at: delivery.issued_at,
            accepted_at: self.clock.now(),
        };
        if let Err(e) = store.record_provider_message(&message).await {
            tracing::warn!(error = %e, "could not note the provider message for its receipt");
        }
    }

    /// The helpdesk contact for a code mail. Best effort: the policy service being unreachable
    /// must not hold a code back, so the mail then goes without the helpdesk line.
    async fn helpdesk_contact(&self) -> String {
        match self.helpdesk.contact().await {
            Ok(contact) => contact,
            Err(e) => {
                tracing::warn!(error = %e, "helpdesk contact unavailable; mailing without it");
                String::new()
            }
        }
    }

    async fn on_sent(
        &self,
        delivery: &CodeDelivery,
        attempts: u32,
        message_id: Option<ProviderMessageId>,
    ) -> Disposition {
        let span = tracing::Span::current();
        let header = &delivery.header;
        let now = self.clock.now();
        let latency = (now - delivery.issued_at).max(chrono::Duration::zero());
        span.record("latency_ms", latency.num_milliseconds());
        let event = code_delivered(header, now, latency, attempts);
        // The provider has the message: try hard to record it, since a retry would send it again.
        let mut last_error = None;
        for pause_ms in [0u64, 100, 400, 1600] {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            let provider_id = message_id.as_ref().map(ProviderMessageId::as_str);
            match self
                .store
                .record_sent(header, &event, provider_id, now)
                .await
            {
                Ok(()) => {
                    span.record("outcome", "sent");
                    observe_outcome(header.channel, "accepted", Some(delivery.issued_at), now);
                    tracing::info!(
                        latency_ms = latency.num_milliseconds(),
                        attempts,
                        "code delivered to the provider"
                    );
                    return Disposition::Ack;
                }
                Err(e) => last_error = Some(e),
            }
        }
        span.record("outcome", "unrecorded");
        tracing::error!(
            error = %last_error.map(|e| e.to_string()).unwrap_or_default(),
            "the code was sent but the delivery could not be recorded; it will be sent again"
        );
        Disposition::Retry(self.retry.backoff(1, rand::random()))
    }

    /// `attempt` decides whether this was the last try; `sends` is the record's count of sends.
    async fn on_failure(
        &self,
        header: &DeliveryHeader,
        issued_at: DateTime<Utc>,
        failure: SendFailure,
        attempt: u32,
        sends: u32,
    ) -> Disposition {
        let span = tracing::Span::current();
        let now = self.clock.now();
        match self
            .retry
            .after_failure(failure.kind, attempt, rand::random())
        {
            NextStep::RetryAfter(delay) => {
                span.record("outcome", "retry");
                count_attempt(header.channel, "retry");
                tracing::warn!(reason = %failure.detail, retry_in_ms = delay.as_millis() as u64, "delivery attempt failed; will retry");
                if let Err(e) = self.store.record_retry(header, &failure.detail, now).await {
                    tracing::warn!(error = %e, "could not record the failed attempt");
                }
                Disposition::Retry(delay)
            }
            NextStep::GiveUp => {
                span.record("outcome", "failed");
                let (word, reason) = match failure.kind {
                    FailureKind::Permanent => ("rejected", failure.detail),
                    FailureKind::Transient => (
                        "retries_exhausted",
                        format!("gave up after {sends} attempts: {}", failure.detail),
                    ),
                };
                tracing::error!(reason = %reason, "delivery failed");
                self.dead_letter(header, Some(issued_at), word, reason, sends, attempt)
                    .await
            }
        }
    }

    /// Gives the delivery up: FAILED, dead letter and `code.delivery_failed` (reason `word`) in
    /// one transaction, then terminates the message. When that cannot be written, the message
    /// is retried later instead, so that it is never dropped unrecorded. Counts the give-up
    /// (`failed`), and its duration from `issued_at` when this call recorded it.
    async fn dead_letter(
        &self,
        header: &DeliveryHeader,
        issued_at: Option<DateTime<Utc>>,
        word: &'static str,
        reason: String,
        sends: u32,
        attempt: u32,
    ) -> Disposition {
        let now = self.clock.now();
        let event = code_delivery_failed(header, now, word, sends);
        let dead = DeadLetter {
            reason,
            attempts: sends,
        };
        match self.store.record_failed(header, &dead, &event, now).await {
            Ok(recorded) => {
                count_attempt(header.channel, "failed");
                if recorded {
                    observe_outcome(header.channel, "failed", issued_at, now);
                }
                Disposition::Term
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record the failed delivery; will retry recording it");
                Disposition::Retry(self.retry.backoff(attempt, rand::random()))
            }
        }
    }

    /// The database failed before anything was sent: retry later. Never terminated: the
    /// outcome must be recorded first (see the module header).
    fn store_unavailable(&self, e: &crate::ports::StoreError, attempt: u32) -> Disposition {
        tracing::error!(error = %e, "delivery records unavailable");
        tracing::Span::current().record("outcome", "retry");
        Disposition::Retry(self.retry.backoff(attempt, rand::random()))
    }
}

/// Checks a decrypted delivery.
fn parse_delivery(
    d: &Delivery,
) -> Result<
    CodeDelivery,
    (
        Option<Box<DeliveryHeader>>,
        crate::domain::delivery::InvalidDelivery,
    ),
> {
    let channel = match MethodKind::try_from(d.kind) {
        Ok(MethodKind::Email) => Some(Channel::Email),
        Ok(MethodKind::Sms) => Some(Channel::Sms),
        Ok(MethodKind::Voice) => Some(Channel::Voice),
        _ => None,
    };
    let purpose = match CodePurpose::try_from(d.purpose) {
        Ok(CodePurpose::Reset) => Some(Purpose::Reset),
        Ok(CodePurpose::Registration) => Some(Purpose::Registration),
        Ok(CodePurpose::StepUp) => Some(Purpose::StepUp),
        _ => None,
    };
    CodeDelivery::parse(RawDelivery {
        id: &d.delivery_id,
        channel,
        purpose,
        destination: &d.destination,
        code: &d.code,
        locale: &d.locale,
        user_id: &d.user_id,
        flow_id: &d.flow_id,
        method_id: &d.method_id,
        issued_at: d.issued_at.as_ref().and_then(from_timestamp),
        expires_at: d.expires_at.as_ref().and_then(from_timestamp),
    })
}

/// The `code.delivery_failed` event; `reason` is a fixed word (`expired`, `rejected`,
/// `retries_exhausted`, `malformed`), never provider text; `method_id` from the delivery.
fn code_delivery_failed(
    header: &DeliveryHeader,
    now: DateTime<Utc>,
    reason: &str,
    attempts: u32,
) -> CodeDeliveryFailed {
    CodeDeliveryFailed {
        meta: Some(EventMeta {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: Some(timestamp(now)),
            user_id: header.user_id.clone(),
            flow_id: header.flow_id.clone(),
            source: crate::SERVICE.to_owned(),
            actor: String::new(),
        }),
        delivery_id: header.id.as_str().to_owned(),
        kind: match header.channel {
            Channel::Email => MethodKind::Email as i32,
            Channel::Sms => MethodKind::Sms as i32,
            Channel::Voice => MethodKind::Voice as i32,
        },
        reason: reason.to_owned(),
        attempts,
        method_id: header.method_id.clone(),
    }
}

/// The `code.delivered` event: ids, channel, latency and attempts; never the code or the
/// destination.
fn code_delivered(
    header: &DeliveryHeader,
    now: DateTime<Utc>,
    latency: chrono::Duration,
    attempts: u32,
) -> CodeDelivered {
    CodeDelivered {
        meta: Some(EventMeta {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: Some(timestamp(now)),
            user_id: header.user_id.clone(),
            flow_id: header.flow_id.clone(),
            source: crate::SERVICE.to_owned(),
            actor: String::new(),
        }),
        delivery_id: header.id.as_str().to_owned(),
        kind: match header.channel {
            Channel::Email => MethodKind::Email as i32,
            Channel::Sms => MethodKind::Sms as i32,
            Channel::Voice => MethodKind::Voice as i32,
        },
        latency: Some(duration(latency)),
        attempts,
    }
}
