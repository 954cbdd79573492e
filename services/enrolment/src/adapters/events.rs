//! The events enrolment emits. Built here, written through the outbox by the store in the same
//! transaction as the change they report. An event carries ids and the MASKED destination only:
//! never the destination itself, a code or the session token.

use chrono::{DateTime, Utc};
use sspr_bus::subjects;
use sspr_proto::events::v1::{EventMeta, MethodRegistered, MethodRemoved};
use sspr_storage::outbox::OutboxMessage;
use uuid::Uuid;

use crate::SERVICE;
use crate::domain::{FlowId, MethodId, RegisteredMethod, UserId};

/// `sspr.events.v1.method.registered` for `method`, now confirmed; `methods_registered` is the
/// user's count of confirmed methods including this one.
pub fn method_registered(
    method: &RegisteredMethod,
    flow_id: &FlowId,
    methods_registered: u32,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let event_id = Uuid::now_v7().to_string();
    let event = MethodRegistered {
        meta: Some(EventMeta {
            event_id: event_id.clone(),
            occurred_at: Some(sspr_proto::time::timestamp(now)),
            user_id: method.user_id.as_str().to_owned(),
            flow_id: flow_id.to_string(),
            source: SERVICE.to_owned(),
            actor: String::new(),
        }),
        method_id: method.method_id.as_str().to_owned(),
        kind: method.kind().code(),
        masked_destination: method.masked(),
        methods_registered,
    };
    OutboxMessage::new(subjects::events::METHOD_REGISTERED, event_id, &event)
}

/// `sspr.events.v1.method.removed` for `method`, just deleted; `methods_registered` is the
/// user's count of confirmed methods left.
pub fn method_removed(
    method: &RegisteredMethod,
    flow_id: &FlowId,
    methods_registered: u32,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let event_id = Uuid::now_v7().to_string();
    let event = MethodRemoved {
        meta: Some(EventMeta {
            event_id: event_id.clone(),
            occurred_at: Some(sspr_proto::time::timestamp(now)),
            user_id: method.user_id.as_str().to_owned(),
            flow_id: flow_id.to_string(),
            source: SERVICE.to_owned(),
            actor: String::new(),
        }),
        method_id: method.method_id.as_str().to_owned(),
        kind: method.kind().code(),
        masked_destination: method.masked(),
        methods_registered,
    };
    OutboxMessage::new(subjects::events::METHOD_REMOVED, event_id, &event)
}

/// Security-questions method kind, as numbered by `sspr.common.v1.MethodKind`.
const SECURITY_QUESTIONS_KIND: i32 = 4;

fn meta(user_id: &UserId, flow_id: &FlowId, now: DateTime<Utc>) -> (String, EventMeta) {
    let event_id = Uuid::now_v7().to_string();
    let meta = EventMeta {
        event_id: event_id.clone(),
        occurred_at: Some(sspr_proto::time::timestamp(now)),
        user_id: user_id.as_str().to_owned(),
        flow_id: flow_id.to_string(),
        source: SERVICE.to_owned(),
        ..EventMeta::default()
    };
    (event_id, meta)
}

/// `method.registered` for a user's security-questions method: the masked destination is a
/// count of questions ("3 questions"); the answers are never in it.
pub fn questions_registered(
    user_id: &UserId,
    method_id: &MethodId,
    masked: String,
    flow_id: &FlowId,
    methods_registered: u32,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let (event_id, meta) = meta(user_id, flow_id, now);
    let event = MethodRegistered {
        meta: Some(meta),
        method_id: method_id.as_str().to_owned(),
        kind: SECURITY_QUESTIONS_KIND,
        masked_destination: masked,
        methods_registered,
    };
    OutboxMessage::new(subjects::events::METHOD_REGISTERED, event_id, &event)
}

/// `method.removed` for a user's security-questions method.
pub fn questions_removed(
    user_id: &UserId,
    method_id: &MethodId,
    masked: String,
    flow_id: &FlowId,
    methods_registered: u32,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let (event_id, meta) = meta(user_id, flow_id, now);
    let event = MethodRemoved {
        meta: Some(meta),
        method_id: method_id.as_str().to_owned(),
        kind: SECURITY_QUESTIONS_KIND,
        masked_destination: masked,
        methods_registered,
    };
    OutboxMessage::new(subjects::events::METHOD_REMOVED, event_id, &event)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::domain::{Destination, MethodKind, UserId};

    #[test]
    fn event_carries_the_masked_destination_only() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let dest =
            Destination::parse(MethodKind::Email, "alice.secret@contoso.com").expect("valid");
        let method = RegisteredMethod::pending(UserId::parse("alice").expect("valid"), dest, now);
        let flow = FlowId::new();
        let msg = method_registered(&method, &flow, 2, now);
        assert_eq!(msg.subject, "sspr.events.v1.method.registered");
        let event = MethodRegistered::decode(msg.payload.as_slice()).expect("decodes");
        let meta = event.meta.clone().unwrap_or_default();
        assert_eq!(meta.event_id, msg.msg_id);
        assert_eq!(meta.user_id, "alice");
        assert_eq!(meta.flow_id, flow.to_string());
        assert_eq!(meta.source, "enrolment");
        assert_eq!(event.masked_destination, "a•••@c•••.com");
        assert_eq!(event.methods_registered, 2);
        assert_eq!(event.kind, 1);
        let raw = String::from_utf8_lossy(&msg.payload);
        assert!(!raw.contains("secret") && !raw.contains("contoso"));
    }

    #[test]
    fn removal_event_carries_the_masked_destination_only() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let dest = Destination::parse(MethodKind::Sms, "+41791234567").expect("valid");
        let method = RegisteredMethod::pending(UserId::parse("alice").expect("valid"), dest, now);
        let flow = FlowId::new();
        let msg = method_removed(&method, &flow, 1, now);
        assert_eq!(msg.subject, "sspr.events.v1.method.removed");
        let event = MethodRemoved::decode(msg.payload.as_slice()).expect("decodes");
        let meta = event.meta.clone().unwrap_or_default();
        assert_eq!(meta.event_id, msg.msg_id);
        assert_eq!(meta.user_id, "alice");
        assert_eq!(event.method_id, method.method_id.as_str());
        assert_eq!(event.methods_registered, 1);
        assert_eq!(event.kind, 2);
        assert!(!String::from_utf8_lossy(&msg.payload).contains("791234567"));
    }
}
