//! The `user.deleted` consumer: when the directory deletes a user, enrolment forgets the user's
//! methods (pending and confirmed) and registration sessions.
//!
//! Invariants:
//! - One durable pull consumer, [`sspr_bus::subjects::ENROLMENT_USER_DELETED_CONSUMER`], shared
//!   by every replica, filtered to `sspr.events.v1.user.deleted` (explicit ack, deliver all).
//! - The deletion and the processed-event row (keyed by `meta.event_id`) commit in one
//!   transaction, and the message is acknowledged only after the commit: a redelivery or a
//!   duplicate publication deletes nothing twice (so it cannot touch a user re-created later
//!   under the same id).
//! - A malformed event (does not decode, no meta, bad event id or user id) is terminated with a
//!   log line naming what is wrong, never the payload; a database failure is retried.

use std::sync::Arc;

use prost::Message as _;
use sspr_bus::consumer::{self, DurableConsumer, Received, Reject};
use sspr_bus::subjects;
use sspr_clock::SharedClock;
use sspr_proto::events::v1::UserDeleted;
use tokio_util::sync::CancellationToken;

use crate::domain::UserId;
use crate::ports::EnrolmentStore;

/// The durable consumer enrolment runs.
pub fn consumer_spec() -> DurableConsumer {
    DurableConsumer::new(
        subjects::EVENTS_STREAM,
        subjects::ENROLMENT_USER_DELETED_CONSUMER,
        subjects::events::USER_DELETED,
        "sspr-enrolment replicas: forget deleted users' methods and registration sessions",
    )
}

/// A `user.deleted` event, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub event_id: uuid::Uuid,
    pub user_id: UserId,
}

/// Decodes and checks a `user.deleted` payload; the error says what is wrong (no payload data).
pub fn parse(payload: &[u8]) -> Result<Deleted, &'static str> {
    let event = UserDeleted::decode(payload).map_err(|_| "payload is not a UserDeleted")?;
    let meta = event.meta.ok_or("event has no meta")?;
    let event_id = uuid::Uuid::parse_str(&meta.event_id).map_err(|_| "event_id is not a UUID")?;
    let user_id = UserId::parse(&meta.user_id).map_err(|_| "user_id is not valid")?;
    Ok(Deleted { event_id, user_id })
}

/// Applies one message: `Ok` once the user is forgotten (now or by an earlier delivery).
pub async fn apply(
    store: &dyn EnrolmentStore,
    clock: &SharedClock,
    message: Received,
) -> Result<(), Reject> {
    let deleted = parse(&message.payload).map_err(|why| Reject::Drop(why.to_owned()))?;
    match store
        .forget_user(&deleted.event_id, &deleted.user_id, clock.now())
        .await
    {
        Ok(Some(f)) => {
            tracing::info!(
                user_id = %deleted.user_id,
                event_id = %deleted.event_id,
                methods = f.methods,
                sessions = f.sessions,
                "deleted user forgotten"
            );
            Ok(())
        }
        Ok(None) => {
            tracing::debug!(event_id = %deleted.event_id, "user.deleted already applied");
            Ok(())
        }
        Err(e) => Err(Reject::Retry(format!("forgetting a deleted user: {e}"))),
    }
}

/// Consumes `user.deleted` until `shutdown` is cancelled (the message in hand is finished).
pub async fn consume(
    bus: sspr_bus::Bus,
    store: Arc<dyn EnrolmentStore>,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    let handler = move |message: Received| {
        let store = Arc::clone(&store);
        let clock = clock.clone();
        async move { apply(store.as_ref(), &clock, message).await }
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
    use sspr_proto::events::v1::EventMeta;

    use super::*;

    fn payload(event_id: &str, user_id: &str, meta: bool) -> Vec<u8> {
        UserDeleted {
            meta: meta.then(|| EventMeta {
                event_id: event_id.into(),
                occurred_at: None,
                user_id: user_id.into(),
                flow_id: String::new(),
                source: "directory".into(),
                actor: String::new(),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn parses_a_good_event() {
        let id = uuid::Uuid::now_v7();
        let d = parse(&payload(&id.to_string(), "alice", true)).expect("parses");
        assert_eq!(d.event_id, id);
        assert_eq!(d.user_id.as_str(), "alice");
    }

    #[test]
    fn refuses_malformed_events() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(parse(b"\xff\xff\xff"), Err("payload is not a UserDeleted"));
        assert_eq!(
            parse(&payload(&id, "alice", false)),
            Err("event has no meta")
        );
        assert_eq!(
            parse(&payload("nope", "alice", true)),
            Err("event_id is not a UUID")
        );
        assert_eq!(parse(&payload(&id, "", true)), Err("user_id is not valid"));
    }
}
