//! The code-delivery consumer: notification's `code.delivered`, `code.delivery_confirmed` and
//! `code.delivery_failed` events keep the delivery state of each issued code (found by the
//! delivery id that `code.issued` announced), which GetCodeStatus answers from. Notification
//! only reports; deciding what the user may do next (another method) stays here.
//!
//! Invariants:
//! - One durable pull consumer, [`sspr_bus::subjects::VERIFICATION_CODE_DELIVERY_CONSUMER`],
//!   shared by every replica, filtered to `sspr.events.v1.code.*` (explicit ack, deliver all);
//!   the other `code.*` events (issued, verified, rejected) are acknowledged untouched.
//! - The state change and the processed-event row (keyed by `meta.event_id`) commit in one
//!   transaction, and the message is acknowledged only after the commit; states only move
//!   forward (`domain::delivery`), so a redelivered, duplicated or late event changes nothing.
//! - An event for a delivery id verification does not know (purged, forgotten) changes nothing.
//! - A malformed event (does not decode, no meta, bad event id, no delivery id) is terminated
//!   with a log line naming what is wrong, never the payload; a database failure is retried.

use prost::Message as _;
use sspr_bus::consumer::{self, DurableConsumer, Received, Reject};
use sspr_bus::subjects::{self, events};
use sspr_clock::SharedClock;
use sspr_proto::events::v1::{CodeDelivered, CodeDeliveryConfirmed, CodeDeliveryFailed, EventMeta};
use tokio_util::sync::CancellationToken;

use crate::adapters::store::{DeliveryUpdate, Store};
use crate::domain::delivery::DeliveryState;

/// Longest delivery id accepted (verification's are UUIDs).
const MAX_DELIVERY_ID_BYTES: usize = 64;

/// The durable consumer verification runs.
pub fn consumer_spec() -> DurableConsumer {
    DurableConsumer::new(
        subjects::EVENTS_STREAM,
        subjects::VERIFICATION_CODE_DELIVERY_CONSUMER,
        subjects::CODE_EVENTS_WILDCARD,
        "sspr-verification replicas: delivery states of issued codes",
    )
}

/// A delivery event, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryEvent {
    pub event_id: uuid::Uuid,
    pub delivery_id: String,
    pub state: DeliveryState,
}

/// Decodes and checks a `code.*` event: `None` for the ones that say nothing about a delivery;
/// the error says what is wrong (no payload data).
pub fn parse(subject: &str, payload: &[u8]) -> Result<Option<DeliveryEvent>, &'static str> {
    let (meta, delivery_id, state) = match subject {
        events::CODE_DELIVERED => {
            let e = CodeDelivered::decode(payload).map_err(|_| "payload is not a CodeDelivered")?;
            (e.meta, e.delivery_id, DeliveryState::Sent)
        }
        events::CODE_DELIVERY_CONFIRMED => {
            let e = CodeDeliveryConfirmed::decode(payload)
                .map_err(|_| "payload is not a CodeDeliveryConfirmed")?;
            (e.meta, e.delivery_id, DeliveryState::Confirmed)
        }
        events::CODE_DELIVERY_FAILED => {
            let e = CodeDeliveryFailed::decode(payload)
                .map_err(|_| "payload is not a CodeDeliveryFailed")?;
            let state = DeliveryState::after_failure(&e.reason);
            (e.meta, e.delivery_id, state)
        }
        _ => return Ok(None),
    };
    let meta: EventMeta = meta.ok_or("event has no meta")?;
    let event_id = uuid::Uuid::parse_str(&meta.event_id).map_err(|_| "event_id is not a UUID")?;
    if delivery_id.is_empty() || delivery_id.len() > MAX_DELIVERY_ID_BYTES {
        return Err("delivery_id is empty or too long");
    }
    Ok(Some(DeliveryEvent {
        event_id,
        delivery_id,
        state,
    }))
}

/// Applies one message: `Ok` once its effect (if any) is recorded, now or by an earlier delivery.
pub async fn apply(store: &Store, clock: &SharedClock, message: Received) -> Result<(), Reject> {
    let Some(event) =
        parse(&message.subject, &message.payload).map_err(|why| Reject::Drop(why.to_owned()))?
    else {
        return Ok(());
    };
    match store
        .record_delivery_state(
            &event.event_id,
            &event.delivery_id,
            event.state,
            clock.now(),
        )
        .await
    {
        Ok(update) => {
            tracing::debug!(
                event_id = %event.event_id,
                delivery_id = %event.delivery_id,
                state = event.state.as_str(),
                moved = update == DeliveryUpdate::Moved,
                already_processed = update == DeliveryUpdate::AlreadyProcessed,
                "code delivery event applied"
            );
            Ok(())
        }
        Err(e) => Err(Reject::Retry(format!("recording a delivery state: {e}"))),
    }
}

/// Consumes `code.*` until `shutdown` is cancelled (the message in hand is finished).
pub async fn consume(
    bus: sspr_bus::Bus,
    store: Store,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    let handler = move |message: Received| {
        let store = store.clone();
        let clock = clock.clone();
        async move { apply(&store, &clock, message).await }
    };
    consumer::consume(
        bus.jetstream().clone(),
        consumer_spec(),
        handler,
        shutdown.cancelled_owned(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(event_id: &str) -> Option<EventMeta> {
        Some(EventMeta {
            event_id: event_id.into(),
            occurred_at: None,
            user_id: "alice".into(),
            flow_id: "f".into(),
            source: "notification".into(),
            actor: String::new(),
        })
    }

    #[test]
    fn parses_the_three_delivery_events() {
        let id = uuid::Uuid::now_v7();
        let delivered = CodeDelivered {
            meta: meta(&id.to_string()),
            delivery_id: "d1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            parse(events::CODE_DELIVERED, &delivered),
            Ok(Some(DeliveryEvent {
                event_id: id,
                delivery_id: "d1".into(),
                state: DeliveryState::Sent
            }))
        );
        let confirmed = CodeDeliveryConfirmed {
            meta: meta(&id.to_string()),
            delivery_id: "d1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let parsed = parse(events::CODE_DELIVERY_CONFIRMED, &confirmed);
        assert_eq!(
            parsed.map(|e| e.map(|e| e.state)),
            Ok(Some(DeliveryState::Confirmed))
        );
        for (reason, state) in [
            ("rejected", DeliveryState::Failed),
            ("retries_exhausted", DeliveryState::Failed),
            ("expired", DeliveryState::Expired),
        ] {
            let failed = CodeDeliveryFailed {
                meta: meta(&id.to_string()),
                delivery_id: "d1".into(),
                reason: reason.into(),
                method_id: "m-sms".into(),
                ..Default::default()
            }
            .encode_to_vec();
            let parsed = parse(events::CODE_DELIVERY_FAILED, &failed);
            assert_eq!(parsed.map(|e| e.map(|e| e.state)), Ok(Some(state)));
        }
    }

    #[test]
    fn skips_other_code_events_and_refuses_malformed_ones() {
        assert_eq!(parse(events::CODE_ISSUED, b"\xff\xff"), Ok(None));
        assert_eq!(parse(events::CODE_VERIFIED, b""), Ok(None));
        assert_eq!(
            parse(events::CODE_DELIVERED, b"\xff\xff\xff"),
            Err("payload is not a CodeDelivered")
        );
        let no_meta = CodeDelivered {
            delivery_id: "d1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            parse(events::CODE_DELIVERED, &no_meta),
            Err("event has no meta")
        );
        let bad_id = CodeDeliveryFailed {
            meta: meta("nope"),
            delivery_id: "d1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            parse(events::CODE_DELIVERY_FAILED, &bad_id),
            Err("event_id is not a UUID")
        );
        let no_delivery = CodeDelivered {
            meta: meta(&uuid::Uuid::now_v7().to_string()),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            parse(events::CODE_DELIVERED, &no_delivery),
            Err("delivery_id is empty or too long")
        );
    }
}
