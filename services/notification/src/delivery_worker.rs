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
//! - Transient failures are negatively acknowledged with exponential backoff and jitter, up to
//!   `max_deliver` attempts; permanent ones and the last attempt are recorded FAILED and
//!   terminated.
//! - A message that does not decrypt under the key its `key_id` names (the current
//!   `SSPR_CODE_KEY` or one of `SSPR_CODE_KEYS_PREVIOUS`) is terminated and never sent.
//! - The code and the destination appear in no log line, span field, record or event.
//! - Each message is processed in a consumer span that continues the trace found in the
//!   message's `traceparent` header (the SendCode call), and the SMTP/SMS call is a child of it.
//! - On shutdown the consumer stops pulling and the messages in flight finish first.

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
use crate::domain::retry::{self, FailureKind, NextStep, SendFailure};
use crate::domain::templates;
use crate::ports::{
    OutgoingMail, OutgoingSms, ProviderMessage, SharedHelpdesk, SharedMailer, SharedReceiptStore,
    SharedSmsSender, SharedStore,
};

/// Deliveries processed at once by one replica.
pub const MAX_IN_FLIGHT: usize = 32;
/// How long the server waits for an ack before redelivering (longer than any send timeout).
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// The durable pull consumer's settings.
pub fn consumer_config() -> pull::Config {
    pull::Config {
        durable_name: Some(subjects::DELIVERY_CONSUMER.to_owned()),
        description: Some("sspr-notification replicas: send encrypted code deliveries".to_owned()),
        filter_subject: subjects::DELIVERY_WILDCARD.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_deliver: i64::from(retry::MAX_ATTEMPTS),
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
    /// Where messages handed to an SMS/voice provider are noted for their receipts.
    pub provider_messages: Option<SharedReceiptStore>,
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

    /// Decides and does everything for one message; `attempt` is the queue's delivery count.
    pub async fn process(&self, subject: &str, payload: &[u8], attempt: u32) -> Disposition {
        let span = tracing::Span::current();
        span.record("attempt", attempt);
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
                if let Some(header) = header {
                    self.try_record_failed(&header, &format!("malformed delivery: {reason}"))
                        .await;
                }
                return Disposition::Term;
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
                "published on {subject} but its kind is {}",
                header.channel.as_str()
            );
            tracing::error!(reason = %reason, "dropping a delivery on the wrong subject");
            self.try_record_failed(&header, &reason).await;
            return Disposition::Term;
        }

        match self.store.get(&header.id).await {
            Ok(Some(record)) if record.status.is_final() => {
                span.record("outcome", "duplicate");
                tracing::info!(
                    status = record.status.as_str(),
                    "delivery already handled; acknowledging again"
                );
                return Disposition::Ack;
            }
            Ok(_) => {}
            Err(e) => return self.store_unavailable(&e, attempt),
        }

        let now = self.clock.now();
        if delivery.is_expired(now) {
            span.record("outcome", "expired");
            let event = code_delivery_failed(&header, now, "expired", attempt.saturating_sub(1));
            if let Err(e) = self.store.record_expired(&header, &event, now).await {
                return self.store_unavailable(&e, attempt);
            }
            tracing::warn!("the code expired before it could be delivered; not sending it");
            return Disposition::Ack;
        }

        let record = match self.store.start_attempt(&header, now).await {
            Ok(r) => r,
            Err(e) => return self.store_unavailable(&e, attempt),
        };

        match self.send(&delivery).await {
            Ok(message_id) => {
                // Noted before SENT is committed, so a receipt never finds SENT without it.
                self.note_provider_message(&delivery, message_id).await;
                self.on_sent(&delivery, record.attempts).await
            }
            Err(failure) => self.on_failure(&header, failure, attempt).await,
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
            // The header carries no method id on this branch; merged with the delivery
            // helper's DeliveryHeader.method_id this becomes `delivery.header.method_id`.
            method_id: String::new(),
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

    async fn on_sent(&self, delivery: &CodeDelivery, attempts: u32) -> Disposition {
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
            match self.store.record_sent(header, &event, now).await {
                Ok(()) => {
                    span.record("outcome", "sent");
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
        Disposition::Retry(retry::backoff(1, rand::random()))
    }

    async fn on_failure(
        &self,
        header: &DeliveryHeader,
        failure: SendFailure,
        attempt: u32,
    ) -> Disposition {
        let span = tracing::Span::current();
        let now = self.clock.now();
        match retry::after_failure(failure.kind, attempt, rand::random()) {
            NextStep::RetryAfter(delay) => {
                span.record("outcome", "retry");
                tracing::warn!(reason = %failure.detail, retry_in_ms = delay.as_millis() as u64, "delivery attempt failed; will retry");
                if let Err(e) = self.store.record_retry(header, &failure.detail, now).await {
                    tracing::warn!(error = %e, "could not record the failed attempt");
                }
                Disposition::Retry(delay)
            }
            NextStep::GiveUp => {
                span.record("outcome", "failed");
                let reason = match failure.kind {
                    FailureKind::Permanent => failure.detail,
                    FailureKind::Transient => {
                        format!("gave up after {attempt} attempts: {}", failure.detail)
                    }
                };
                tracing::error!(reason = %reason, "delivery failed");
                self.try_record_failed(header, &reason).await;
                Disposition::Term
            }
        }
    }

    async fn try_record_failed(&self, header: &DeliveryHeader, reason: &str) {
        if let Err(e) = self
            .store
            .record_failed(header, reason, self.clock.now())
            .await
        {
            tracing::error!(error = %e, "could not record the failed delivery");
        }
    }

    /// The database failed before anything was sent: retry later, or give up on the last try.
    fn store_unavailable(&self, e: &crate::ports::StoreError, attempt: u32) -> Disposition {
        tracing::error!(error = %e, "delivery records unavailable");
        match retry::after_failure(FailureKind::Transient, attempt, rand::random()) {
            NextStep::RetryAfter(delay) => {
                tracing::Span::current().record("outcome", "retry");
                Disposition::Retry(delay)
            }
            NextStep::GiveUp => {
                tracing::Span::current().record("outcome", "failed");
                Disposition::Term
            }
        }
    }
}

/// Checks a decrypted delivery.
fn parse_delivery(
    d: &Delivery,
) -> Result<
    CodeDelivery,
    (
        Option<DeliveryHeader>,
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
        issued_at: d.issued_at.as_ref().and_then(from_timestamp),
        expires_at: d.expires_at.as_ref().and_then(from_timestamp),
    })
}

/// The `code.delivered` event: ids, channel, latency and attempts; never the code or the
/// destination.
/// The `code.delivery_failed` event; `reason` is a fixed word (`expired`), never provider text.
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
        ..Default::default()
    }
}

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
