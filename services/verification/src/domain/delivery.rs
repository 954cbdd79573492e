//! Where each issued code's delivery stands, as notification reported it (`code.delivered`,
//! `code.delivery_confirmed`, `code.delivery_failed`), and what GetCodeStatus answers from it.
//!
//! Invariants:
//! - A state only moves forward: `pending` → `sent` → `confirmed`, and from `pending` or `sent`
//!   to `failed` or `expired`. `confirmed`, `failed` and `expired` are final, so a late or
//!   replayed event (a `code.delivered` after `code.delivery_failed`) changes nothing, whatever
//!   order the events arrive in.
//! - A decoy's code is never delivered and gets no event: it is shown `pending` for a keyed
//!   1–4 s after it was issued, as a real code is until the provider takes it, then `sent`
//!   (decoys never fail), so the answer does not tell a decoy from a real flow.
//! - Alternatives are offered only after a failure or an expiry, and only among the session's
//!   own methods: never the failed one, never one already verified, only kinds the policy still
//!   allows and methods enrolment still lists (confirmed, past their cool-down); and only when
//!   they are enough to finish the flow without the failed method.

use chrono::{DateTime, Duration, Utc};
use hmac::Mac;

use super::code::keyed;
use super::ids::MethodId;
use super::session::{MethodKind, ResetSession, SessionMethod};

/// A code delivery's state as verification keeps it (`codes.delivery_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Queued or being sent (no event yet).
    Pending,
    /// The mail server or SMS provider accepted it (`code.delivered`).
    Sent,
    /// The provider's receipt says it reached the handset (`code.delivery_confirmed`).
    Confirmed,
    /// Refused, given up on, or reported undeliverable (`code.delivery_failed`).
    Failed,
    /// Dropped unsent because the code expired (`code.delivery_failed`, reason `expired`).
    Expired,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Confirmed => "confirmed",
            DeliveryState::Failed => "failed",
            DeliveryState::Expired => "expired",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(DeliveryState::Pending),
            "sent" => Some(DeliveryState::Sent),
            "confirmed" => Some(DeliveryState::Confirmed),
            "failed" => Some(DeliveryState::Failed),
            "expired" => Some(DeliveryState::Expired),
            _ => None,
        }
    }

    /// The state a `code.delivery_failed` reason word leads to: `expired` for a code dropped
    /// unsent, `failed` for every other word (`rejected`, `retries_exhausted`,
    /// `undeliverable`, `malformed`, and any word added later).
    pub fn after_failure(reason: &str) -> Self {
        if reason == "expired" {
            DeliveryState::Expired
        } else {
            DeliveryState::Failed
        }
    }

    /// Final states take no further event.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Confirmed | DeliveryState::Failed | DeliveryState::Expired
        )
    }

    /// The states a code may be in for an event to move it to `self`: every earlier one.
    pub fn predecessors(self) -> &'static [DeliveryState] {
        match self {
            DeliveryState::Pending => &[],
            DeliveryState::Sent => &[DeliveryState::Pending],
            DeliveryState::Confirmed | DeliveryState::Failed | DeliveryState::Expired => {
                &[DeliveryState::Pending, DeliveryState::Sent]
            }
        }
    }

    /// Whether an event reporting `next` moves a code in `self` (never backwards, never out of
    /// a final state).
    pub fn may_become(self, next: DeliveryState) -> bool {
        next.predecessors().contains(&self)
    }
}

/// What GetCodeStatus shows (the public `CodeDeliveryState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownState {
    Pending,
    Sent,
    Failed,
    Expired,
}

impl ShownState {
    /// Whether the user should be offered another method.
    pub fn offers_alternatives(self) -> bool {
        matches!(self, ShownState::Failed | ShownState::Expired)
    }
}

/// Shortest and longest time a decoy's code shows as pending after it was issued.
const DECOY_PENDING_MIN_MS: u64 = 1_000;
const DECOY_PENDING_SPREAD_MS: u64 = 3_000;

/// How long a decoy's code shows as pending: keyed by its delivery id (which nobody outside
/// sees), between 1 and 4 seconds.
pub fn decoy_pending_for(key: &[u8; 32], delivery_id: &str) -> Duration {
    let mut mac = keyed(key);
    mac.update(b"decoy-delivery");
    mac.update(delivery_id.as_bytes());
    let h: [u8; 32] = mac.finalize().into_bytes().into();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&h[..8]);
    let ms = DECOY_PENDING_MIN_MS + u64::from_be_bytes(bytes) % DECOY_PENDING_SPREAD_MS;
    Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The state shown for a code in `state`, issued at `issued_at`: for a decoy (`decoy_pending`
/// is its [`decoy_pending_for`]) pending, then sent; for a real code its stored state, a
/// confirmed delivery shown as sent.
pub fn shown_state(
    state: DeliveryState,
    decoy_pending: Option<Duration>,
    issued_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> ShownState {
    if let Some(pending) = decoy_pending {
        return if now < issued_at + pending {
            ShownState::Pending
        } else {
            ShownState::Sent
        };
    }
    match state {
        DeliveryState::Pending => ShownState::Pending,
        DeliveryState::Sent | DeliveryState::Confirmed => ShownState::Sent,
        DeliveryState::Failed => ShownState::Failed,
        DeliveryState::Expired => ShownState::Expired,
    }
}

/// The session's methods the user may switch to instead of `failed`: not `failed`, not
/// verified yet, of a kind in `allowed` (the policy now), and among `listed` (the method ids
/// enrolment lists as usable now), in the session's order. None at all when they are fewer
/// than the methods the flow still needs: then the flow cannot finish without the failed
/// method, and nothing can be used instead of it.
pub fn alternatives<'a>(
    session: &'a ResetSession,
    failed: &MethodId,
    allowed: &[MethodKind],
    listed: &[MethodId],
) -> Vec<&'a SessionMethod> {
    let usable: Vec<&SessionMethod> = session
        .methods
        .iter()
        .filter(|m| {
            m.method_id != *failed
                && !session.verified.contains(&m.method_id)
                && allowed.contains(&m.kind)
                && listed.contains(&m.method_id)
        })
        .collect();
    let needed = usize::try_from(session.methods_remaining()).unwrap_or(usize::MAX);
    if usable.len() < needed {
        return Vec::new();
    }
    usable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::{DEFAULT_SESSION_TTL, SessionStatus};
    use crate::domain::{FlowId, Locale, UserId};

    const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Sent,
        DeliveryState::Confirmed,
        DeliveryState::Failed,
        DeliveryState::Expired,
    ];

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn id(raw: &str) -> MethodId {
        MethodId::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn states_round_trip_through_the_database_words() {
        for s in ALL {
            assert_eq!(DeliveryState::from_db(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryState::from_db("delivered"), None);
    }

    #[test]
    fn states_never_move_backwards_or_out_of_a_final_state() {
        use DeliveryState::*;
        let allowed = [
            (Pending, Sent),
            (Pending, Confirmed),
            (Pending, Failed),
            (Pending, Expired),
            (Sent, Confirmed),
            (Sent, Failed),
            (Sent, Expired),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.may_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
            assert_eq!(from.is_final(), !ALL.iter().any(|to| from.may_become(*to)));
        }
    }

    #[test]
    fn failure_reasons_map_to_failed_or_expired() {
        assert_eq!(
            DeliveryState::after_failure("expired"),
            DeliveryState::Expired
        );
        for reason in [
            "rejected",
            "retries_exhausted",
            "undeliverable",
            "malformed",
            "",
        ] {
            assert_eq!(DeliveryState::after_failure(reason), DeliveryState::Failed);
        }
    }

    #[test]
    fn real_codes_show_their_state_and_confirmed_shows_as_sent() {
        let now = t0() + Duration::hours(1);
        let shown = |s| shown_state(s, None, t0(), now);
        assert_eq!(shown(DeliveryState::Pending), ShownState::Pending);
        assert_eq!(shown(DeliveryState::Sent), ShownState::Sent);
        assert_eq!(shown(DeliveryState::Confirmed), ShownState::Sent);
        assert_eq!(shown(DeliveryState::Failed), ShownState::Failed);
        assert_eq!(shown(DeliveryState::Expired), ShownState::Expired);
        assert!(ShownState::Failed.offers_alternatives());
        assert!(ShownState::Expired.offers_alternatives());
        assert!(!ShownState::Sent.offers_alternatives());
        assert!(!ShownState::Pending.offers_alternatives());
    }

    #[test]
    fn decoys_are_pending_for_a_keyed_few_seconds_then_sent_and_never_fail() {
        let key = [7u8; 32];
        let mut waits = std::collections::HashSet::new();
        for i in 0..200 {
            let delivery_id = format!("d-{i}");
            let wait = decoy_pending_for(&key, &delivery_id);
            assert_eq!(wait, decoy_pending_for(&key, &delivery_id), "stable");
            assert!(wait >= Duration::seconds(1) && wait < Duration::seconds(4));
            waits.insert(wait);
            for stored in ALL {
                let shown = |at| shown_state(stored, Some(wait), t0(), at);
                assert_eq!(shown(t0()), ShownState::Pending);
                assert_eq!(shown(t0() + wait), ShownState::Sent);
                assert_eq!(shown(t0() + Duration::hours(1)), ShownState::Sent);
            }
        }
        assert!(waits.len() > 150, "spread out: {}", waits.len());
        assert_ne!(
            decoy_pending_for(&key, "d-1"),
            decoy_pending_for(&[8u8; 32], "d-1")
        );
    }

    #[test]
    fn alternatives_are_the_other_unverified_allowed_listed_methods() {
        let method = |raw: &str, kind| SessionMethod {
            method_id: id(raw),
            kind,
            masked: "x".into(),
        };
        let session = ResetSession {
            flow_id: FlowId::parse("f").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("alice").unwrap_or_else(|e| panic!("{e}")),
            locale: Locale::or_default("en"),
            decoy: false,
            methods: vec![
                method("m-sms", MethodKind::Sms),
                method("m-email", MethodKind::Email),
                method("m-voice", MethodKind::Voice),
                method("m-done", MethodKind::Email),
                method("m-gone", MethodKind::Email),
            ],
            methods_required: 1,
            verified: vec![id("m-done")],
            verified_at: None,
            status: SessionStatus::Active,
            created_at: t0(),
            expires_at: t0() + DEFAULT_SESSION_TTL,
        };
        let listed = [id("m-sms"), id("m-email"), id("m-voice"), id("m-done")];
        let allowed = [MethodKind::Email, MethodKind::Sms];
        let ids = |ms: Vec<&SessionMethod>| {
            ms.into_iter()
                .map(|m| m.method_id.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        // Not the failed one, not the verified one, not voice (no longer allowed), not the
        // method enrolment no longer lists.
        assert_eq!(
            ids(alternatives(&session, &id("m-sms"), &allowed, &listed)),
            ["m-email"]
        );
        assert!(alternatives(&session, &id("m-sms"), &[], &listed).is_empty());
        assert!(alternatives(&session, &id("m-sms"), &allowed, &[]).is_empty());

        // Two methods required, none verified: SMS and email are not enough without the SMS...
        let mut two = session.clone();
        two.methods_required = 2;
        two.verified.clear();
        two.methods.truncate(2);
        assert!(alternatives(&two, &id("m-sms"), &allowed, &listed).is_empty());
        // ...but with voice allowed too, email and voice can stand in for it.
        let mut three = session.clone();
        three.methods_required = 2;
        three.verified.clear();
        three.methods.truncate(3);
        let all = [MethodKind::Email, MethodKind::Sms, MethodKind::Voice];
        assert_eq!(
            ids(alternatives(&three, &id("m-sms"), &all, &listed)),
            ["m-email", "m-voice"]
        );
        // One of two verified: one more is needed, and voice is there.
        three.verified = vec![id("m-email")];
        assert_eq!(
            ids(alternatives(&three, &id("m-sms"), &all, &listed)),
            ["m-voice"]
        );
    }
}
