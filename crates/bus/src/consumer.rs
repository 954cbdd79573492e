//! A small durable JetStream event consumer: one durable pull consumer on a stream, filtered to
//! one subject, each message handed to a handler and acknowledged by what the handler returns.
//!
//! It is for services that react to a public event (e.g. `user.deleted`) and keep their own
//! processed-event record for idempotency; it is deliberately narrow (no concurrency, no
//! batching policy, no per-message backoff schedule).
//!
//! Invariants:
//! - Explicit ack, deliver all: every message of the filter subject still in the stream is seen
//!   at least once, also after the consumer was down.
//! - A message is acknowledged only after its handler returned `Ok`; [`Reject::Retry`] is
//!   negatively acknowledged with [`DurableConsumer::retry_after`], [`Reject::Drop`] is
//!   terminated (`AckKind::Term`) and never comes back. The handler must be idempotent: an ack
//!   can be lost and the message redelivered.
//! - Each message is handled inside a consumer span that continues the trace found in the
//!   message's `traceparent` header.
//! - Messages are handled one at a time; on shutdown the consumer stops pulling, and the message
//!   in hand (if any) is finished and acknowledged first.
//! - Nothing here logs a payload: only the subject, the consumer name and the handler's reason.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use tracing::Instrument;

use crate::error::BusError;

/// Which durable consumer to run, and how patiently.
#[derive(Debug, Clone)]
pub struct DurableConsumer {
    /// The stream to consume, e.g. [`crate::subjects::EVENTS_STREAM`].
    pub stream: &'static str,
    /// Durable name shared by every replica of the service (a `subjects::*_CONSUMER` constant).
    pub durable: &'static str,
    /// The only subject delivered.
    pub filter_subject: &'static str,
    /// What the consumer is for, shown by `nats consumer info`.
    pub description: &'static str,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Delay before a message whose handler asked for a retry comes back.
    pub retry_after: Duration,
}

impl DurableConsumer {
    /// A consumer of `filter_subject` on `stream` with 30 s ack wait and 2 s retry delay.
    pub fn new(
        stream: &'static str,
        durable: &'static str,
        filter_subject: &'static str,
        description: &'static str,
    ) -> Self {
        Self {
            stream,
            durable,
            filter_subject,
            description,
            ack_wait: Duration::from_secs(30),
            retry_after: Duration::from_secs(2),
        }
    }

    /// The durable pull consumer's settings.
    pub fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.to_owned()),
            description: Some(self.description.to_owned()),
            filter_subject: self.filter_subject.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            ..Default::default()
        }
    }

    /// Creates the durable consumer, or updates it to [`DurableConsumer::config`].
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<PullConsumer, BusError> {
        let stream = js
            .get_stream(self.stream)
            .await
            .map_err(|e| BusError::JetStream(format!("stream {}: {e}", self.stream)))?;
        stream
            .create_consumer(self.config())
            .await
            .map_err(|e| BusError::JetStream(format!("consumer {}: {e}", self.durable)))
    }
}

/// One message as a handler sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub payload: Bytes,
}

/// Why a handler did not accept a message. The reason is logged: no secret, no payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// A transient failure (e.g. the database): deliver the message again later.
    Retry(String),
    /// The message can never be processed (e.g. it does not decode): terminate it.
    Drop(String),
}

/// Pulls messages and hands each to `handler` until `shutdown` completes; then returns after
/// the message in hand is finished. Connection problems are logged and retried.
pub async fn consume<F, Fut>(
    js: jetstream::Context,
    spec: DurableConsumer,
    handler: F,
    shutdown: impl Future<Output = ()> + Send,
) where
    F: Fn(Received) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), Reject>> + Send,
{
    tokio::pin!(shutdown);
    'pull: loop {
        let consumer = tokio::select! {
            _ = &mut shutdown => break 'pull,
            c = spec.ensure(&js) => c,
        };
        let consumer = match consumer {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(consumer = spec.durable, error = %e, "consumer unavailable; retrying");
                if pause(&mut shutdown, Duration::from_secs(2)).await {
                    break 'pull;
                }
                continue;
            }
        };
        let messages = tokio::select! {
            _ = &mut shutdown => break 'pull,
            m = consumer
                .stream()
                .max_messages_per_batch(16)
                .expires(Duration::from_secs(10))
                .heartbeat(Duration::from_secs(5))
                .messages() => m,
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(consumer = spec.durable, error = %e, "cannot pull; retrying");
                if pause(&mut shutdown, Duration::from_secs(2)).await {
                    break 'pull;
                }
                continue;
            }
        };
        tracing::info!(
            consumer = spec.durable,
            subject = spec.filter_subject,
            "consuming"
        );
        loop {
            let next = tokio::select! {
                _ = &mut shutdown => break 'pull,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => handle(&spec, &handler, message).await,
                Some(Err(e)) => {
                    use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
                    tracing::warn!(consumer = spec.durable, error = %e, "pulling failed");
                    if matches!(
                        e.kind(),
                        K::ConsumerDeleted | K::PushBasedConsumer | K::RequestLimitExceeded
                    ) {
                        continue 'pull;
                    }
                }
                None => {
                    if pause(&mut shutdown, Duration::from_millis(500)).await {
                        break 'pull;
                    }
                    continue 'pull;
                }
            }
        }
    }
    tracing::info!(consumer = spec.durable, "stopped consuming");
}

async fn handle<F, Fut>(spec: &DurableConsumer, handler: &F, message: jetstream::Message)
where
    F: Fn(Received) -> Fut,
    Fut: Future<Output = Result<(), Reject>>,
{
    let subject = message.subject.to_string();
    let span = tracing::info_span!(
        "consumer.process",
        otel.name = %format!("process {subject}"),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %subject,
        messaging.consumer.group.name = spec.durable,
    );
    crate::trace::set_parent_from(&span, message.headers.as_ref());
    async {
        let received = Received {
            subject: subject.clone(),
            payload: message.payload.clone(),
        };
        let kind = match handler(received).await {
            Ok(()) => AckKind::Ack,
            Err(Reject::Retry(reason)) => {
                tracing::warn!(consumer = spec.durable, reason = %reason, "message not processed; will retry");
                AckKind::Nak(Some(spec.retry_after))
            }
            Err(Reject::Drop(reason)) => {
                tracing::Span::current().record("otel.status_code", "ERROR");
                tracing::error!(consumer = spec.durable, reason = %reason, "dropping a message that cannot be processed");
                AckKind::Term
            }
        };
        if let Err(e) = message.ack_with(kind).await {
            // The server redelivers after the ack wait; handlers are idempotent.
            tracing::warn!(consumer = spec.durable, error = %e, "acknowledging a message failed");
        }
    }
    .instrument(span)
    .await
}

/// Sleeps for `d` unless `shutdown` completes first; `true` when it did.
async fn pause<S: Future<Output = ()>>(shutdown: &mut std::pin::Pin<&mut S>, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.as_mut() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_durable_explicit_and_from_the_start() {
        let spec = DurableConsumer::new("S", "d", "a.b", "test");
        let c = spec.config();
        assert_eq!(c.durable_name.as_deref(), Some("d"));
        assert_eq!(c.filter_subject, "a.b");
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.deliver_policy, DeliverPolicy::All);
        assert_eq!(c.ack_wait, Duration::from_secs(30));
    }
}
