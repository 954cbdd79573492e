//! The projection of `SSPR_EVENTS` into the audit log.
//!
//! Every audit replica pulls from the one durable consumer
//! [`sspr_bus::subjects::AUDIT_CONSUMER`] (all of `sspr.events.v1.>`, from the start of the
//! stream, explicit ack), so each event is recorded by one replica at a time.
//!
//! Invariants, per message:
//! - It is acknowledged only after its record is committed, or found already there (the event
//!   id is the primary key: a redelivery or a re-publication under another `Nats-Msg-Id` adds
//!   no second row).
//! - A message that cannot be a record (not an event subject, payload that does not decode,
//!   no meta) is logged without its payload and terminated: retrying cannot fix it.
//! - A database failure is negatively acknowledged with a delay and retried.
//! - Each message is processed in a consumer span continuing the trace in its `traceparent`.
//! - On shutdown the consumer stops pulling after the message in hand.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use sspr_bus::subjects;
use sspr_clock::SharedClock;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::adapters::store::AuditStore;
use crate::domain::record;

/// How long the server waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Delay before a message whose write failed comes back.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Messages fetched per pull.
const BATCH: usize = 64;

/// The durable pull consumer's settings.
pub fn consumer_config() -> pull::Config {
    pull::Config {
        durable_name: Some(subjects::AUDIT_CONSUMER.to_owned()),
        description: Some("sspr-audit replicas: project public events into the audit log".into()),
        filter_subject: subjects::EVENTS_WILDCARD.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        ..Default::default()
    }
}

/// Creates the durable consumer, or updates it to [`consumer_config`].
pub async fn ensure_consumer(js: &jetstream::Context) -> anyhow::Result<PullConsumer> {
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open stream {}: {e}", subjects::EVENTS_STREAM))?;
    stream
        .create_consumer(consumer_config())
        .await
        .map_err(|e| anyhow::anyhow!("cannot create consumer {}: {e}", subjects::AUDIT_CONSUMER))
}

/// What to tell the stream about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    Retry,
    Term,
}

/// Records one event, stamped with the clock's now as its recording time.
pub async fn project(
    store: &AuditStore,
    clock: &SharedClock,
    subject: &str,
    payload: &[u8],
    traceparent: Option<&str>,
) -> Disposition {
    let record = match record::from_event(subject, payload, traceparent) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(subject, problem = %e, "event cannot be audited; dropped");
            return Disposition::Term;
        }
    };
    match store.insert(&record, clock.now()).await {
        Ok(true) => {
            tracing::debug!(kind = %record.kind, user_id = %record.user_id, "event audited");
            Disposition::Ack
        }
        Ok(false) => {
            tracing::debug!(kind = %record.kind, "event already audited");
            Disposition::Ack
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record an audit event; will retry");
            Disposition::Retry
        }
    }
}

/// Pulls events until `shutdown` is cancelled.
pub async fn consume(
    js: jetstream::Context,
    store: AuditStore,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    'pull: while !shutdown.is_cancelled() {
        let consumer = match ensure_consumer(&js).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "audit consumer unavailable; retrying");
                pause(&shutdown, Duration::from_secs(2)).await;
                continue;
            }
        };
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .expires(Duration::from_secs(10))
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot pull events; retrying");
                pause(&shutdown, Duration::from_secs(2)).await;
                continue;
            }
        };
        tracing::info!(consumer = subjects::AUDIT_CONSUMER, "projecting events");
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break 'pull,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => handle(&store, &clock, message).await,
                Some(Err(e)) => {
                    use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
                    tracing::warn!(error = %e, "pulling events failed");
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
    tracing::info!("stopped projecting events");
}

async fn handle(store: &AuditStore, clock: &SharedClock, message: jetstream::Message) {
    // OpenTelemetry messaging conventions for processing a consumed message. The record keeps
    // the trace id of the message's `traceparent` (the request that caused the event), which
    // is also this span's trace.
    let span = tracing::info_span!(
        "audit.project",
        otel.name = %format!("process {}", message.subject),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %message.subject,
        messaging.consumer.group.name = subjects::AUDIT_CONSUMER,
    );
    sspr_bus::trace::set_parent_from(&span, message.headers.as_ref());
    let traceparent = message
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_owned());
    let disposition = project(
        store,
        clock,
        message.subject.as_str(),
        &message.payload,
        traceparent.as_deref(),
    )
    .instrument(span)
    .await;
    let ack = match disposition {
        Disposition::Ack => message.ack().await,
        Disposition::Retry => message.ack_with(AckKind::Nak(Some(RETRY_AFTER))).await,
        Disposition::Term => message.ack_with(AckKind::Term).await,
    };
    if let Err(e) = ack {
        // The server redelivers after ACK_WAIT; the insert is idempotent.
        tracing::warn!(error = %e, "acknowledging an event failed");
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
