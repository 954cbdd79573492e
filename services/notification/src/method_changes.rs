//! The method-change announcer (registration takeover defence): every `method.registered` and
//! `method.removed` is announced to each of the user's OTHER confirmed contact methods (email,
//! SMS, voice), so a user whose password was stolen learns at once that someone added a method.
//!
//! Invariants:
//! - One durable pull consumer, [`subjects::NOTIFICATION_METHOD_CHANGES_CONSUMER`], shared by
//!   every replica, filtered to `sspr.events.v1.method.*`; `method.change_announced` (our own
//!   output) is acknowledged and skipped.
//! - The method that changed is never told about itself; the notice names it by its MASKED
//!   destination only (from the event), never the full one.
//! - Idempotent as the `password.changed` consumer is: a delivery id per (event, method,
//!   purpose); a notice already SENT is not sent again; the event is marked processed, with the
//!   SENT records and the `method.change_announced` event (outbox), in one transaction, and a
//!   processed event is acknowledged without sending anything.
//! - Destinations are never logged. A transient failure retries the event; a destination the
//!   provider refuses for good is recorded FAILED and skipped. A malformed event is terminated.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost::Message as _;
use sha2::{Digest, Sha256};
use sspr_bus::consumer::{self, DurableConsumer, Received, Reject};
use sspr_bus::subjects;
use sspr_clock::SharedClock;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{EventMeta, MethodChangeAnnounced, MethodRegistered, MethodRemoved};
use sspr_proto::time::{from_timestamp, timestamp};
use tokio_util::sync::CancellationToken;

use crate::SERVICE;
use crate::domain::delivery::{Channel, DeliveryHeader, DeliveryId, DeliveryStatus, Purpose};
use crate::domain::retry::FailureKind;
use crate::domain::templates::{
    MethodChange, MethodLabel, Templates, method_change_sentence, method_changed_sms,
};
use crate::ports::{
    Accounts, ContactAddress, NoticeStore, OutgoingMail, OutgoingSms, SharedHelpdesk, SharedMailer,
    SharedSmsSender,
};

/// The durable consumer notification runs for method changes.
pub fn consumer_spec() -> DurableConsumer {
    DurableConsumer::new(
        subjects::EVENTS_STREAM,
        subjects::NOTIFICATION_METHOD_CHANGES_CONSUMER,
        subjects::METHOD_EVENTS_WILDCARD,
        "sspr-notification replicas: method changes announced to the user's other methods",
    )
}

/// A method change, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub event_id: uuid::Uuid,
    pub user_id: String,
    pub flow_id: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub method_id: String,
    pub change: MethodChange,
    pub label: MethodLabel,
    /// The masked destination from the event (already masked by enrolment).
    pub masked: String,
}

/// What a message on the filter subject is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Change(Changed),
    /// A subject this consumer does not announce (e.g. its own `method.change_announced`).
    Skip,
}

/// Decodes and checks a message; the error says what is wrong (no payload data).
pub fn parse(subject: &str, payload: &[u8]) -> Result<Parsed, &'static str> {
    let (meta, method_id, kind, masked, change) = match subject {
        subjects::events::METHOD_REGISTERED => {
            let e = MethodRegistered::decode(payload)
                .map_err(|_| "payload is not a MethodRegistered")?;
            (
                e.meta,
                e.method_id,
                e.kind,
                e.masked_destination,
                MethodChange::Registered,
            )
        }
        subjects::events::METHOD_REMOVED => {
            let e = MethodRemoved::decode(payload).map_err(|_| "payload is not a MethodRemoved")?;
            (
                e.meta,
                e.method_id,
                e.kind,
                e.masked_destination,
                MethodChange::Removed,
            )
        }
        _ => return Ok(Parsed::Skip),
    };
    let meta = meta.ok_or("event has no meta")?;
    let event_id = uuid::Uuid::parse_str(&meta.event_id).map_err(|_| "event_id is not a UUID")?;
    let user_id = meta.user_id;
    if user_id.is_empty() || user_id.len() > 128 || user_id.chars().any(char::is_control) {
        return Err("user_id is not valid");
    }
    if method_id.is_empty()
        || method_id.len() > 128
        || !method_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("method_id is not valid");
    }
    let label = match MethodKind::try_from(kind) {
        Ok(MethodKind::Email) => MethodLabel::Email,
        Ok(MethodKind::Sms) => MethodLabel::Sms,
        Ok(MethodKind::Voice) => MethodLabel::Voice,
        Ok(MethodKind::SecurityQuestions) => MethodLabel::SecurityQuestions,
        _ => return Err("kind is not a method kind"),
    };
    let flow_id: String = meta
        .flow_id
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    Ok(Parsed::Change(Changed {
        event_id,
        user_id,
        flow_id,
        occurred_at: meta.occurred_at.as_ref().and_then(from_timestamp),
        method_id,
        change,
        label,
        masked,
    }))
}

/// A stable delivery id for one announcement: the same event and recipient method always give
/// the same id, so a redelivery finds the earlier record.
pub fn announcement_id(event_id: &uuid::Uuid, recipient_method_id: &str) -> String {
    let digest = Sha256::digest(
        format!(
            "{event_id}\n{recipient_method_id}\n{}",
            Purpose::MethodChanged.as_str()
        )
        .as_bytes(),
    );
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("announce-{hex}")
}

/// Everything the announcer needs.
pub struct Announcer {
    pub store: Arc<dyn NoticeStore>,
    pub accounts: Arc<dyn Accounts>,
    pub mailer: SharedMailer,
    pub sms: SharedSmsSender,
    pub templates: Arc<Templates>,
    pub clock: SharedClock,
    pub helpdesk: SharedHelpdesk,
}

/// One announcement to send.
enum Outgoing {
    Mail(OutgoingMail),
    Phone(OutgoingSms),
}

impl Announcer {
    /// Applies one message: `Ok` once every announcement was handled (now or earlier).
    pub async fn apply(&self, message: Received) -> Result<(), Reject> {
        let changed = match parse(&message.subject, &message.payload) {
            Ok(Parsed::Change(c)) => c,
            Ok(Parsed::Skip) => return Ok(()),
            Err(why) => return Err(Reject::Drop(why.to_owned())),
        };
        let retry = |what: &str, e: &dyn std::fmt::Display| Reject::Retry(format!("{what}: {e}"));
        match self.store.is_processed(&changed.event_id).await {
            Ok(true) => {
                tracing::debug!(event_id = %changed.event_id, "method change already announced");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(retry("reading processed events", &e)),
        }
        let now = self.clock.now();
        let planned = self.plan(&changed, now).await?;
        let mut sent = Vec::new();
        for (header, outgoing) in planned {
            match self.store.get(&header.id).await {
                Ok(Some(r)) if r.status == DeliveryStatus::Sent => {
                    sent.push(header);
                    continue;
                }
                Ok(Some(r)) if r.status == DeliveryStatus::Failed => continue,
                Ok(_) => {}
                Err(e) => return Err(retry("reading a delivery record", &e)),
            }
            let result = match &outgoing {
                Outgoing::Mail(mail) => self.mailer.send(mail).await,
                Outgoing::Phone(sms) => self.sms.send(sms).await,
            };
            match result {
                Ok(()) => {
                    // Recorded at once, so a later failure of this event does not resend it.
                    if let Err(e) = self
                        .store
                        .record_notice(&header, DeliveryStatus::Sent, None, now)
                        .await
                    {
                        tracing::error!(delivery_id = %header.id, error = %e, "recording a sent announcement failed");
                    }
                    tracing::info!(delivery_id = %header.id, channel = header.channel.as_str(), user_id = %header.user_id, "method change announced");
                    sent.push(header);
                }
                Err(f) if f.kind == FailureKind::Permanent => {
                    tracing::warn!(delivery_id = %header.id, error = %f, "announcement refused for good");
                    if let Err(e) = self
                        .store
                        .record_notice(&header, DeliveryStatus::Failed, Some(&f.detail), now)
                        .await
                    {
                        return Err(retry("recording a failed announcement", &e));
                    }
                }
                Err(f) => return Err(retry("sending an announcement", &f)),
            }
        }
        let announced = announced_event(&changed, sent.len(), now);
        self.store
            .finish_announcement(&changed.event_id, &changed.user_id, &sent, &announced, now)
            .await
            .map_err(|e| retry("recording the processed event", &e))?;
        tracing::info!(event_id = %changed.event_id, user_id = %changed.user_id, notified = sent.len(), "method change announcements done");
        Ok(())
    }

    async fn plan(
        &self,
        changed: &Changed,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DeliveryHeader, Outgoing)>, Reject> {
        let retry = |e: crate::ports::LookupError| Reject::Retry(e.to_string());
        let Some(user) = self
            .accounts
            .get_user(&changed.user_id)
            .await
            .map_err(retry)?
        else {
            tracing::info!(user_id = %changed.user_id, "the account no longer exists; nothing announced");
            return Ok(Vec::new());
        };
        let destinations = self
            .accounts
            .destinations(&changed.user_id)
            .await
            .map_err(retry)?;
        let helpdesk = self.helpdesk.contact().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "helpdesk contact unavailable; announcing without it");
            String::new()
        });
        let at = changed.occurred_at.unwrap_or(now);
        let sentence =
            method_change_sentence(user.locale, changed.change, changed.label, &changed.masked);
        let flow_id = if changed.flow_id.is_empty() {
            changed.event_id.to_string()
        } else {
            changed.flow_id.clone()
        };
        let mut planned = Vec::new();
        // The changed method itself is never told about its own addition.
        for d in destinations
            .into_iter()
            .filter(|d| d.method_id != changed.method_id)
        {
            let id = DeliveryId::parse(&announcement_id(&changed.event_id, &d.method_id))
                .map_err(|e| Reject::Drop(format!("building a delivery id: {e}")))?;
            let (channel, outgoing) = match d.address {
                ContactAddress::Email(to) => (
                    Channel::Email,
                    Outgoing::Mail(OutgoingMail {
                        delivery_id: id.clone(),
                        to,
                        content: self.templates.method_changed(
                            user.locale,
                            &user.display_name,
                            at,
                            &sentence,
                            &helpdesk,
                        ),
                    }),
                ),
                ContactAddress::Sms(to) => (
                    Channel::Sms,
                    Outgoing::Phone(OutgoingSms {
                        delivery_id: id.clone(),
                        channel: Channel::Sms,
                        to,
                        body: method_changed_sms(user.locale, &sentence),
                    }),
                ),
                ContactAddress::Voice(to) => (
                    Channel::Voice,
                    Outgoing::Phone(OutgoingSms {
                        delivery_id: id.clone(),
                        channel: Channel::Voice,
                        to,
                        body: method_changed_sms(user.locale, &sentence),
                    }),
                ),
            };
            planned.push((
                DeliveryHeader {
                    id,
                    channel,
                    purpose: Purpose::MethodChanged,
                    user_id: changed.user_id.chars().take(128).collect(),
                    flow_id: flow_id.clone(),
                    method_id: String::new(),
                },
                outgoing,
            ));
        }
        Ok(planned)
    }
}

/// The `method.change_announced` event: ids and a count, never a destination.
fn announced_event(
    changed: &Changed,
    notified: usize,
    now: DateTime<Utc>,
) -> MethodChangeAnnounced {
    // Derived from the announced event, so a retried transaction carries the same id.
    let digest = Sha256::digest(format!("{}\nmethod.change_announced", changed.event_id));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let event_id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
    MethodChangeAnnounced {
        meta: Some(EventMeta {
            event_id: event_id.to_string(),
            occurred_at: Some(timestamp(now)),
            user_id: changed.user_id.clone(),
            flow_id: changed.flow_id.clone(),
            source: SERVICE.to_owned(),
            actor: String::new(),
        }),
        method_id: changed.method_id.clone(),
        change: match changed.change {
            MethodChange::Registered => "registered",
            MethodChange::Removed => "removed",
        }
        .to_owned(),
        notified: u32::try_from(notified).unwrap_or(u32::MAX),
    }
}

/// Consumes method changes until `shutdown` is cancelled (the message in hand is finished).
pub async fn consume(bus: sspr_bus::Bus, announcer: Arc<Announcer>, shutdown: CancellationToken) {
    let handler = move |message: Received| {
        let announcer = Arc::clone(&announcer);
        async move { announcer.apply(message).await }
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

    fn meta(event_id: &str, user_id: &str) -> Option<EventMeta> {
        Some(EventMeta {
            event_id: event_id.into(),
            occurred_at: None,
            user_id: user_id.into(),
            flow_id: "f1".into(),
            source: "enrolment".into(),
            actor: String::new(),
        })
    }

    #[test]
    fn parses_registrations_and_removals_and_skips_announcements() {
        let id = uuid::Uuid::now_v7();
        let registered = MethodRegistered {
            meta: meta(&id.to_string(), "alice"),
            method_id: "m_1".into(),
            kind: MethodKind::Sms as i32,
            masked_destination: "+•• •••• ••67".into(),
            methods_registered: 2,
        }
        .encode_to_vec();
        let Ok(Parsed::Change(c)) = parse(subjects::events::METHOD_REGISTERED, &registered) else {
            panic!("a registration parses");
        };
        assert_eq!(c.event_id, id);
        assert_eq!(c.change, MethodChange::Registered);
        assert_eq!(c.label, MethodLabel::Sms);
        assert_eq!(c.method_id, "m_1");
        let removed = MethodRemoved {
            meta: meta(&id.to_string(), "alice"),
            method_id: "m_2".into(),
            kind: MethodKind::Email as i32,
            masked_destination: "a•••@c•••.com".into(),
            methods_registered: 1,
        }
        .encode_to_vec();
        let Ok(Parsed::Change(c)) = parse(subjects::events::METHOD_REMOVED, &removed) else {
            panic!("a removal parses");
        };
        assert_eq!(c.change, MethodChange::Removed);
        assert_eq!(c.label, MethodLabel::Email);
        assert_eq!(
            parse(subjects::events::METHOD_CHANGE_ANNOUNCED, b"anything"),
            Ok(Parsed::Skip)
        );
        assert_eq!(
            parse(subjects::events::METHOD_REGISTERED, b"\xff\xff"),
            Err("payload is not a MethodRegistered")
        );
        let no_user = MethodRemoved {
            meta: meta(&id.to_string(), ""),
            method_id: "m_2".into(),
            kind: MethodKind::Email as i32,
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            parse(subjects::events::METHOD_REMOVED, &no_user),
            Err("user_id is not valid")
        );
    }

    #[test]
    fn announcements_name_the_method_masked_in_both_languages() {
        use crate::domain::delivery::Locale;
        let en = method_change_sentence(
            Locale::En,
            MethodChange::Registered,
            MethodLabel::Email,
            "a•••@e•••.net",
        );
        assert_eq!(
            en,
            "The email address a•••@e•••.net was added to (or confirmed again for) your account for password reset."
        );
        let fr = method_change_sentence(
            Locale::Fr,
            MethodChange::Removed,
            MethodLabel::Sms,
            "+•• •••• ••67",
        );
        assert_eq!(
            fr,
            "Le téléphone mobile +•• •••• ••67 (SMS) a été supprimé de votre compte."
        );
        // Control characters cannot add lines; the value is cut short.
        let odd = method_change_sentence(
            Locale::En,
            MethodChange::Removed,
            MethodLabel::Voice,
            &format!("x\r\nBcc: y{}", "z".repeat(200)),
        );
        assert!(!odd.contains('\n') && !odd.contains('\r'));
        assert!(odd.chars().count() < 200);
        let mail = Templates::builtin().method_changed(Locale::En, "Alice", Utc::now(), &en, "");
        assert_eq!(mail.subject, "A contact method of your account changed");
        assert!(mail.text.contains("a•••@e•••.net"));
        assert!(mail.text.contains("Hello Alice,"));
        let sms = method_changed_sms(Locale::Fr, &fr);
        assert!(sms.starts_with("sspr : Le téléphone mobile"));
    }

    #[test]
    fn step_up_codes_have_their_own_words() {
        use crate::domain::delivery::{Code, Locale};
        use crate::domain::templates::{email, sms};
        let code = Code::parse("04719253").expect("digits");
        let mail = email(Purpose::StepUp, Locale::En, &code, 10);
        assert_eq!(mail.subject, "Your verification code");
        assert!(mail.text.contains("confirm it is you"));
        assert!(mail.text.lines().any(|l| l == "04719253"));
        let fr = email(Purpose::StepUp, Locale::Fr, &code, 10);
        assert_eq!(fr.subject, "Votre code de vérification");
        assert!(sms(Purpose::StepUp, Locale::En, &code, 10).starts_with("sspr verification code"));
    }

    #[test]
    fn announcement_ids_are_stable_per_event_and_recipient() {
        let id = uuid::Uuid::now_v7();
        let a = announcement_id(&id, "m_1");
        assert_eq!(a, announcement_id(&id, "m_1"));
        assert_ne!(a, announcement_id(&id, "m_2"));
        assert_ne!(a, announcement_id(&uuid::Uuid::now_v7(), "m_1"));
        assert!(DeliveryId::parse(&a).is_ok());
    }

    #[test]
    fn the_announced_event_has_a_stable_id_and_no_destination() {
        let changed = Changed {
            event_id: uuid::Uuid::now_v7(),
            user_id: "alice".into(),
            flow_id: "f1".into(),
            occurred_at: None,
            method_id: "m_1".into(),
            change: MethodChange::Registered,
            label: MethodLabel::Email,
            masked: "a•••@c•••.com".into(),
        };
        let now = Utc::now();
        let a = announced_event(&changed, 2, now);
        let b = announced_event(&changed, 2, now);
        assert_eq!(
            a.meta.as_ref().map(|m| &m.event_id),
            b.meta.as_ref().map(|m| &m.event_id)
        );
        assert_eq!(a.change, "registered");
        assert_eq!(a.notified, 2);
        assert!(!format!("{a:?}").contains('@'));
    }
}
