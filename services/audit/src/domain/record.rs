//! How one public event becomes one audit record.
//!
//! The payload is decoded with the event's own message type (`sspr_proto::events::v1`, chosen
//! by subject) and only its safe fields are copied into the JSON summary. Events carry no code,
//! password, session id, token or unmasked destination by design; this module adds nothing
//! else. An event of a kind this build does not know is still recorded from its `EventMeta`
//! (field 1 of every event), with an empty summary.

use chrono::{DateTime, SubsecRound, Utc};
use prost::Message;
use serde_json::{Value, json};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as ev;
use sspr_proto::time::from_timestamp;

/// Prefix of every event subject.
const EVENT_PREFIX: &str = "sspr.events.v1.";
/// Actor of admin changes whose event names no admin (`EventMeta.actor` empty: events from
/// before admin tokens were named).
pub const ADMIN_ACTOR: &str = "admin";
/// Actor of events about no user and not made by an admin.
pub const SYSTEM_ACTOR: &str = "system";
/// Outcome of an event that reports success.
pub const OK: &str = "ok";

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub event_id: String,
    /// Truncated to microseconds (what every backend stores).
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub user_id: String,
    pub flow_id: String,
    pub actor: String,
    pub outcome: String,
    pub trace_id: String,
    pub source: String,
    pub summary: Value,
}

/// Why an event could not become a record (it is then dropped, never retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrecordable {
    #[error("subject {0} is not an event subject")]
    NotAnEvent(String),
    #[error("payload does not decode as {0}")]
    Malformed(&'static str),
    #[error("event without meta, event id or valid time")]
    MissingMeta,
}

/// The `<noun>.<verb>` of an event subject.
pub fn kind_of(subject: &str) -> Option<&str> {
    let kind = subject.strip_prefix(EVENT_PREFIX)?;
    let mut parts = kind.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(noun), Some(verb), None) if !noun.is_empty() && !verb.is_empty() => Some(kind),
        _ => None,
    }
}

/// The trace id (32 lower-case hex digits) of a W3C `traceparent`, if well formed and not zero.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    let valid = trace_id.len() == 32
        && trace_id.chars().all(|c| c.is_ascii_hexdigit())
        && trace_id.chars().any(|c| c != '0');
    valid.then(|| trace_id.to_ascii_lowercase())
}

fn kind_name(kind: i32) -> &'static str {
    match MethodKind::try_from(kind) {
        Ok(MethodKind::Email) => "email",
        Ok(MethodKind::Sms) => "sms",
        Ok(MethodKind::Voice) => "voice",
        Ok(MethodKind::SecurityQuestions) => "security_questions",
        _ => "unspecified",
    }
}

fn purpose_name(purpose: i32) -> &'static str {
    match ev::CodePurpose::try_from(purpose) {
        Ok(ev::CodePurpose::Reset) => "reset",
        Ok(ev::CodePurpose::Registration) => "registration",
        _ => "unspecified",
    }
}

fn time_value(t: Option<&prost_types::Timestamp>) -> Value {
    t.and_then(from_timestamp)
        .map(|t| Value::String(t.to_rfc3339()))
        .unwrap_or(Value::Null)
}

fn decode<M: Message + Default>(payload: &[u8], name: &'static str) -> Result<M, Unrecordable> {
    M::decode(payload).map_err(|_| Unrecordable::Malformed(name))
}

/// What the event-specific part of a record says.
struct Details {
    meta: Option<ev::EventMeta>,
    /// True for admin changes (actor "admin").
    admin: bool,
    outcome: String,
    summary: Value,
}

impl Details {
    fn ok(meta: Option<ev::EventMeta>, summary: Value) -> Self {
        Self {
            meta,
            admin: false,
            outcome: OK.to_owned(),
            summary,
        }
    }
}

fn details(kind: &str, payload: &[u8]) -> Result<Details, Unrecordable> {
    Ok(match kind {
        "policy.changed" => {
            let e: ev::PolicyChanged = decode(payload, "PolicyChanged")?;
            let summary = match &e.policy {
                Some(p) => json!({
                    "scope": p.scope().as_str_name(),
                    "group_ids": p.group_ids,
                    "methods_required": p.methods_required,
                    "allowed_methods": p.allowed_methods.iter().map(|k| kind_name(*k)).collect::<Vec<_>>(),
                    "version": p.version,
                }),
                None => json!({}),
            };
            Details {
                admin: true,
                ..Details::ok(e.meta, summary)
            }
        }
        "method.registered" => {
            let e: ev::MethodRegistered = decode(payload, "MethodRegistered")?;
            let summary = json!({
                "method_id": e.method_id,
                "kind": kind_name(e.kind),
                "masked_destination": e.masked_destination,
                "methods_registered": e.methods_registered,
            });
            Details::ok(e.meta, summary)
        }
        "reset.started" => {
            let e: ev::ResetStarted = decode(payload, "ResetStarted")?;
            Details::ok(e.meta, json!({ "client_ip": e.client_ip }))
        }
        "code.issued" => {
            let e: ev::CodeIssued = decode(payload, "CodeIssued")?;
            let summary = json!({
                "method_id": e.method_id,
                "kind": kind_name(e.kind),
                "purpose": purpose_name(e.purpose),
                "expires_at": time_value(e.expires_at.as_ref()),
                "delivery_id": e.delivery_id,
            });
            Details::ok(e.meta, summary)
        }
        "code.delivered" => {
            let e: ev::CodeDelivered = decode(payload, "CodeDelivered")?;
            let latency_ms = e
                .latency
                .map(|d| d.seconds.saturating_mul(1000) + i64::from(d.nanos / 1_000_000));
            let summary = json!({
                "delivery_id": e.delivery_id,
                "kind": kind_name(e.kind),
                "latency_ms": latency_ms,
                "attempts": e.attempts,
            });
            Details::ok(e.meta, summary)
        }
        "code.delivery_confirmed" => {
            // The provider's receipt: the code reached the handset (latency from issue).
            let e: ev::CodeDeliveryConfirmed = decode(payload, "CodeDeliveryConfirmed")?;
            let latency_ms = e
                .latency
                .map(|d| d.seconds.saturating_mul(1000) + i64::from(d.nanos / 1_000_000));
            let summary = json!({
                "delivery_id": e.delivery_id,
                "kind": kind_name(e.kind),
                "latency_ms": latency_ms,
            });
            Details::ok(e.meta, summary)
        }
        "code.delivery_failed" => {
            let e: ev::CodeDeliveryFailed = decode(payload, "CodeDeliveryFailed")?;
            let summary = json!({
                "delivery_id": e.delivery_id,
                "kind": kind_name(e.kind),
                "reason": e.reason,
                "attempts": e.attempts,
            });
            Details {
                outcome: format!("failed:{}", e.reason),
                ..Details::ok(e.meta, summary)
            }
        }
        "admin.auth_failed" => {
            // Never the token: the event carries none.
            let e: ev::AdminAuthFailed = decode(payload, "AdminAuthFailed")?;
            let summary = json!({
                "client_ip": e.client_ip,
                "method": e.method,
                "reason": e.reason,
                "failures": e.failures,
            });
            // Not an admin's act: the caller is unknown (actor `system`).
            Details {
                outcome: format!("failed:{}", e.reason),
                ..Details::ok(e.meta, summary)
            }
        }
        "code.verified" => {
            let e: ev::CodeVerified = decode(payload, "CodeVerified")?;
            let summary = json!({
                "method_id": e.method_id,
                "purpose": purpose_name(e.purpose),
            });
            Details::ok(e.meta, summary)
        }
        "code.rejected" => {
            let e: ev::CodeRejected = decode(payload, "CodeRejected")?;
            let outcome = if e.reason.is_empty() {
                "rejected".to_owned()
            } else {
                format!("rejected:{}", e.reason)
            };
            let summary = json!({
                "method_id": e.method_id,
                "purpose": purpose_name(e.purpose),
                "reason": e.reason,
                "attempts_left": e.attempts_left,
            });
            Details {
                outcome,
                ..Details::ok(e.meta, summary)
            }
        }
        "reset.completed" => {
            let e: ev::ResetCompleted = decode(payload, "ResetCompleted")?;
            Details::ok(
                e.meta,
                json!({ "verified_method_ids": e.verified_method_ids }),
            )
        }
        "password.changed" => {
            let e: ev::PasswordChanged = decode(payload, "PasswordChanged")?;
            Details {
                admin: e.reason == "admin",
                ..Details::ok(e.meta, json!({ "reason": e.reason }))
            }
        }
        "user.deleted" => {
            let e: ev::UserDeleted = decode(payload, "UserDeleted")?;
            Details {
                admin: true,
                ..Details::ok(e.meta, json!({}))
            }
        }
        "account.locked" => {
            let e: ev::AccountLocked = decode(payload, "AccountLocked")?;
            Details {
                admin: e.reason == "admin",
                ..Details::ok(e.meta, json!({ "reason": e.reason }))
            }
        }
        "account.unlocked" => {
            let e: ev::AccountUnlocked = decode(payload, "AccountUnlocked")?;
            Details {
                admin: e.reason == "admin",
                ..Details::ok(e.meta, json!({ "reason": e.reason }))
            }
        }
        "user.upserted" => {
            let e: ev::UserUpserted = decode(payload, "UserUpserted")?;
            let summary = json!({
                "created": e.created,
                "group_ids": e.group_ids,
                "is_admin": e.is_admin,
                "enabled": e.enabled,
                "locked": e.locked,
                "password_set": e.password_set,
            });
            Details {
                admin: true,
                ..Details::ok(e.meta, summary)
            }
        }
        "group.upserted" => {
            let e: ev::GroupUpserted = decode(payload, "GroupUpserted")?;
            let summary = json!({
                "group_id": e.group_id,
                "member_group_ids": e.member_group_ids,
                "created": e.created,
            });
            Details {
                admin: true,
                ..Details::ok(e.meta, summary)
            }
        }
        "group.deleted" => {
            let e: ev::GroupDeleted = decode(payload, "GroupDeleted")?;
            Details {
                admin: true,
                ..Details::ok(e.meta, json!({ "group_id": e.group_id }))
            }
        }
        // A kind this build does not know yet: every event carries its meta as field 1.
        _ => {
            let e: ev::UserDeleted = decode(payload, "an event")?;
            Details::ok(e.meta, json!({}))
        }
    })
}

/// Builds the record of the event received on `subject` with `payload`; `traceparent` is the
/// message's header, if any.
pub fn from_event(
    subject: &str,
    payload: &[u8],
    traceparent: Option<&str>,
) -> Result<AuditRecord, Unrecordable> {
    let kind = kind_of(subject).ok_or_else(|| Unrecordable::NotAnEvent(subject.to_owned()))?;
    let details = details(kind, payload)?;
    let meta = details.meta.ok_or(Unrecordable::MissingMeta)?;
    let occurred_at = meta
        .occurred_at
        .as_ref()
        .and_then(from_timestamp)
        .ok_or(Unrecordable::MissingMeta)?
        .trunc_subsecs(6);
    if meta.event_id.trim().is_empty() {
        return Err(Unrecordable::MissingMeta);
    }
    // An event that names its actor (the admin id of the token behind an admin change) is
    // recorded as done by that admin, whatever its kind.
    let actor = if !meta.actor.is_empty() {
        meta.actor.clone()
    } else if details.admin {
        ADMIN_ACTOR.to_owned()
    } else if meta.user_id.is_empty() {
        SYSTEM_ACTOR.to_owned()
    } else {
        meta.user_id.clone()
    };
    Ok(AuditRecord {
        event_id: meta.event_id,
        occurred_at,
        kind: kind.to_owned(),
        user_id: meta.user_id,
        flow_id: meta.flow_id,
        actor,
        outcome: details.outcome,
        trace_id: traceparent.and_then(trace_id_of).unwrap_or_default(),
        source: meta.source,
        summary: details.summary,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sspr_proto::time::timestamp;

    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn meta(user: &str) -> Option<ev::EventMeta> {
        Some(ev::EventMeta {
            event_id: "0192-e1".into(),
            occurred_at: Some(timestamp(
                DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            )),
            user_id: user.into(),
            flow_id: "flow-1".into(),
            source: "verification".into(),
            actor: String::new(),
        })
    }

    #[test]
    fn failed_admin_auth_and_failed_deliveries_are_recorded() {
        let event = ev::AdminAuthFailed {
            meta: Some(ev::EventMeta {
                user_id: String::new(),
                ..meta("x").unwrap_or_default()
            }),
            client_ip: "10.0.0.9".into(),
            method: "SetPolicy".into(),
            reason: "unknown_token".into(),
            failures: 3,
        };
        let r = from_event(
            "sspr.events.v1.admin.auth_failed",
            &event.encode_to_vec(),
            None,
        )
        .expect("recorded");
        assert_eq!(r.kind, "admin.auth_failed");
        assert_eq!(r.outcome, "failed:unknown_token");
        assert_eq!(r.actor, SYSTEM_ACTOR);
        assert_eq!(r.summary["client_ip"], "10.0.0.9");
        assert_eq!(r.summary["failures"], 3);

        let failed = ev::CodeDeliveryFailed {
            meta: meta("alice"),
            delivery_id: "d-1".into(),
            kind: MethodKind::Email as i32,
            reason: "expired".into(),
            attempts: 1,
            method_id: "m-1".into(),
        };
        let r = from_event(
            "sspr.events.v1.code.delivery_failed",
            &failed.encode_to_vec(),
            None,
        )
        .expect("recorded");
        assert_eq!(r.outcome, "failed:expired");
        assert_eq!(r.summary["reason"], "expired");
    }

    #[test]
    fn delivery_receipts_are_recorded() {
        let confirmed = ev::CodeDeliveryConfirmed {
            meta: meta("alice"),
            delivery_id: "d-2".into(),
            kind: MethodKind::Sms as i32,
            latency: Some(prost_types::Duration {
                seconds: 4,
                nanos: 250_000_000,
            }),
        };
        let r = from_event(
            "sspr.events.v1.code.delivery_confirmed",
            &confirmed.encode_to_vec(),
            None,
        )
        .expect("recorded");
        assert_eq!(r.kind, "code.delivery_confirmed");
        assert_eq!(r.outcome, OK);
        assert_eq!(r.summary["delivery_id"], "d-2");
        assert_eq!(r.summary["kind"], "sms");
        assert_eq!(r.summary["latency_ms"], 4250);
    }

    #[test]
    fn kinds_and_trace_ids() {
        assert_eq!(
            kind_of("sspr.events.v1.reset.completed"),
            Some("reset.completed")
        );
        assert_eq!(kind_of("sspr.events.v1.reset"), None);
        assert_eq!(kind_of("sspr.events.v1.a.b.c"), None);
        assert_eq!(kind_of("sspr.delivery.v1.email"), None);
        assert_eq!(
            trace_id_of(TP).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of("00-0000000000000000000000000000000-x-01"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
    }

    #[test]
    fn a_rejected_code_is_recorded_with_its_reason() {
        let e = ev::CodeRejected {
            meta: meta("alice"),
            method_id: "m1".into(),
            purpose: ev::CodePurpose::Reset as i32,
            reason: "wrong_code".into(),
            attempts_left: 2,
        };
        let r = from_event("sspr.events.v1.code.rejected", &e.encode_to_vec(), Some(TP)).unwrap();
        assert_eq!(r.event_id, "0192-e1");
        assert_eq!(r.kind, "code.rejected");
        assert_eq!(r.actor, "alice");
        assert_eq!(r.outcome, "rejected:wrong_code");
        assert_eq!(r.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(r.source, "verification");
        assert_eq!(r.flow_id, "flow-1");
        assert_eq!(r.occurred_at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(r.summary["reason"], "wrong_code");
        assert_eq!(r.summary["purpose"], "reset");
        assert_eq!(r.summary["attempts_left"], 2);
    }

    #[test]
    fn admin_changes_are_made_by_the_admin() {
        let e = ev::UserDeleted { meta: meta("bob") };
        let r = from_event("sspr.events.v1.user.deleted", &e.encode_to_vec(), None).unwrap();
        assert_eq!((r.actor.as_str(), r.user_id.as_str()), ("admin", "bob"));
        assert_eq!(r.trace_id, "");
        let e = ev::PasswordChanged {
            meta: meta("bob"),
            reason: "admin".into(),
        };
        let r = from_event("sspr.events.v1.password.changed", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.actor, "admin");
        let e = ev::PasswordChanged {
            meta: meta("bob"),
            reason: "self_service_reset".into(),
        };
        let r = from_event("sspr.events.v1.password.changed", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.actor, "bob");
        let e = ev::PolicyChanged {
            meta: meta(""),
            policy: Some(sspr_proto::admin::v1::Policy {
                scope: sspr_proto::admin::v1::Scope::All as i32,
                methods_required: 1,
                ..Default::default()
            }),
        };
        let r = from_event("sspr.events.v1.policy.changed", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.actor, "admin");
        assert_eq!(r.summary["scope"], "SCOPE_ALL");
    }

    #[test]
    fn admin_changes_name_the_admin_of_the_token() {
        let named = |user: &str| {
            meta(user).map(|m| ev::EventMeta {
                actor: "alice-ops".into(),
                ..m
            })
        };
        let e = ev::PolicyChanged {
            meta: named(""),
            policy: None,
        };
        let r = from_event("sspr.events.v1.policy.changed", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.actor, "alice-ops");
        let e = ev::UserDeleted { meta: named("bob") };
        let r = from_event("sspr.events.v1.user.deleted", &e.encode_to_vec(), None).unwrap();
        assert_eq!((r.actor.as_str(), r.user_id.as_str()), ("alice-ops", "bob"));
        let e = ev::PasswordChanged {
            meta: named("bob"),
            reason: "admin".into(),
        };
        let r = from_event("sspr.events.v1.password.changed", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.actor, "alice-ops");
    }

    #[test]
    fn lock_changes_record_their_reason_and_who_made_them() {
        let e = ev::AccountLocked {
            meta: meta("bob"),
            reason: "admin".into(),
        };
        let r = from_event("sspr.events.v1.account.locked", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.kind, "account.locked");
        assert_eq!((r.outcome.as_str(), r.actor.as_str()), (OK, ADMIN_ACTOR));
        assert_eq!(r.summary, json!({ "reason": "admin" }));

        let e = ev::AccountUnlocked {
            meta: meta("bob"),
            reason: "self_service".into(),
        };
        let r = from_event("sspr.events.v1.account.unlocked", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.kind, "account.unlocked");
        assert_eq!((r.outcome.as_str(), r.actor.as_str()), (OK, "bob"));
        assert_eq!((r.user_id.as_str(), r.flow_id.as_str()), ("bob", "flow-1"));
        assert_eq!(r.summary, json!({ "reason": "self_service" }));

        let e = ev::AccountUnlocked {
            meta: meta("bob"),
            reason: "admin".into(),
        };
        let r = from_event("sspr.events.v1.account.unlocked", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.actor, ADMIN_ACTOR);
        assert!(from_event("sspr.events.v1.account.locked", b"\xff\xff", None).is_err());
    }

    #[test]
    fn user_and_group_changes_are_recorded_with_their_admin_and_safe_fields() {
        let e = ev::UserUpserted {
            meta: meta("bob").map(|m| ev::EventMeta {
                actor: "alice-ops".into(),
                ..m
            }),
            created: true,
            group_ids: vec!["staff".into()],
            is_admin: false,
            enabled: true,
            locked: false,
            password_set: true,
        };
        let r = from_event("sspr.events.v1.user.upserted", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.kind, "user.upserted");
        assert_eq!((r.actor.as_str(), r.user_id.as_str()), ("alice-ops", "bob"));
        assert_eq!(r.outcome, OK);
        assert_eq!(
            r.summary,
            json!({
                "created": true,
                "group_ids": ["staff"],
                "is_admin": false,
                "enabled": true,
                "locked": false,
                "password_set": true,
            })
        );
        // An upsert that names no admin is still an admin change.
        let e = ev::UserUpserted {
            meta: meta("bob"),
            ..Default::default()
        };
        let r = from_event("sspr.events.v1.user.upserted", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.actor, ADMIN_ACTOR);

        let group_meta = || {
            meta("").map(|m| ev::EventMeta {
                source: "directory".into(),
                ..m
            })
        };
        let e = ev::GroupUpserted {
            meta: group_meta(),
            group_id: "staff".into(),
            member_group_ids: vec!["backend".into(), "frontend".into()],
            created: false,
        };
        let r = from_event("sspr.events.v1.group.upserted", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.kind, "group.upserted");
        assert_eq!((r.actor.as_str(), r.user_id.as_str()), (ADMIN_ACTOR, ""));
        assert_eq!(
            r.summary,
            json!({
                "group_id": "staff",
                "member_group_ids": ["backend", "frontend"],
                "created": false,
            })
        );
        let e = ev::GroupDeleted {
            meta: group_meta().map(|m| ev::EventMeta {
                actor: "carol-ops".into(),
                ..m
            }),
            group_id: "staff".into(),
        };
        let r = from_event("sspr.events.v1.group.deleted", &e.encode_to_vec(), None).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.actor.as_str()),
            ("group.deleted", "carol-ops")
        );
        assert_eq!(r.summary, json!({ "group_id": "staff" }));
        for subject in [
            "sspr.events.v1.user.upserted",
            "sspr.events.v1.group.upserted",
            "sspr.events.v1.group.deleted",
        ] {
            assert!(matches!(
                from_event(subject, &[0xff, 0xff, 0xff], None),
                Err(Unrecordable::Malformed(_))
            ));
        }
    }

    #[test]
    fn unknown_kinds_keep_their_meta_and_bad_payloads_are_refused() {
        let e = ev::ResetStarted {
            meta: meta("carol"),
            client_ip: "192.0.2.1".into(),
        };
        let r = from_event("sspr.events.v1.thing.happened", &e.encode_to_vec(), None).unwrap();
        assert_eq!(r.kind, "thing.happened");
        assert_eq!(r.summary, json!({}));
        assert!(matches!(
            from_event("sspr.events.v1.reset.started", &[0xff, 0xff, 0xff], None),
            Err(Unrecordable::Malformed(_))
        ));
        let e = ev::ResetStarted {
            meta: None,
            client_ip: String::new(),
        };
        assert_eq!(
            from_event("sspr.events.v1.reset.started", &e.encode_to_vec(), None),
            Err(Unrecordable::MissingMeta)
        );
    }
}
