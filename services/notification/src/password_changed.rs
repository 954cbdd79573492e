//! The `password.changed` consumer: mails the user "your password was changed" at every
//! registered email, and, when the account is an administrator, alerts every other enabled
//! administrator at their registered emails.
//!
//! Invariants:
//! - One durable pull consumer, [`sspr_bus::subjects::NOTIFICATION_PASSWORD_CHANGED_CONSUMER`],
//!   shared by every replica, filtered to `sspr.events.v1.password.changed` (explicit ack,
//!   deliver all).
//! - Idempotent: each mail has a delivery id derived from (event, recipient, method, purpose);
//!   a mail whose record is already SENT is not sent again, and the event is marked processed
//!   (with the SENT records) in one transaction once every mail was handled; a processed event
//!   is acknowledged without sending anything. The message is acknowledged only afterwards.
//! - Only values from the directory (display name, user id, locale) and the event time are put
//!   in a mail; addresses are never logged. A transient failure (lookup, SMTP, database) retries
//!   the event; an address the server refuses for good is recorded FAILED and skipped.
//! - A malformed event (does not decode, no meta, bad event id or user id) is terminated.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost::Message as _;
use sha2::{Digest, Sha256};
use sspr_bus::consumer::{self, DurableConsumer, Received, Reject};
use sspr_bus::subjects;
use sspr_clock::SharedClock;
use sspr_proto::events::v1::PasswordChanged;
use sspr_proto::time::from_timestamp;
use tokio_util::sync::CancellationToken;

use crate::domain::delivery::{Channel, DeliveryHeader, DeliveryId, DeliveryStatus, Purpose};
use crate::domain::retry::FailureKind;
use crate::domain::templates::{ChangeReason, EmailContent, Templates};
use crate::ports::{Account, Accounts, NoticeStore, OutgoingMail, SharedHelpdesk, SharedMailer};

/// The durable consumer notification runs.
pub fn consumer_spec() -> DurableConsumer {
    DurableConsumer::new(
        subjects::EVENTS_STREAM,
        subjects::NOTIFICATION_PASSWORD_CHANGED_CONSUMER,
        subjects::events::PASSWORD_CHANGED,
        "sspr-notification replicas: password-changed mails and admin alerts",
    )
}

/// A `password.changed` event, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub event_id: uuid::Uuid,
    pub user_id: String,
    pub flow_id: String,
    pub occurred_at: Option<DateTime<Utc>>,
    /// `None` for a reason this version does not mail about.
    pub reason: Option<ChangeReason>,
}

/// Decodes and checks a payload; the error says what is wrong (no payload data).
pub fn parse(payload: &[u8]) -> Result<Changed, &'static str> {
    let event = PasswordChanged::decode(payload).map_err(|_| "payload is not a PasswordChanged")?;
    let meta = event.meta.ok_or("event has no meta")?;
    let event_id = uuid::Uuid::parse_str(&meta.event_id).map_err(|_| "event_id is not a UUID")?;
    let user_id = meta.user_id;
    if user_id.is_empty() || user_id.len() > 128 || user_id.chars().any(char::is_control) {
        return Err("user_id is not valid");
    }
    let flow_id: String = meta
        .flow_id
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    Ok(Changed {
        event_id,
        user_id,
        flow_id,
        occurred_at: meta.occurred_at.as_ref().and_then(from_timestamp),
        reason: ChangeReason::parse(&event.reason),
    })
}

/// Everything the consumer needs.
pub struct Notifier {
    pub store: Arc<dyn NoticeStore>,
    pub accounts: Arc<dyn Accounts>,
    pub mailer: SharedMailer,
    pub templates: Arc<Templates>,
    pub clock: SharedClock,
    /// The policy's helpdesk contact, named in the user's mail.
    pub helpdesk: SharedHelpdesk,
}

/// One mail to send.
struct Planned {
    header: DeliveryHeader,
    mail: OutgoingMail,
}

/// A stable delivery id for one notice: the same event, recipient and method always give the
/// same id, so a redelivery finds the earlier record.
fn notice_id(event_id: &uuid::Uuid, recipient: &str, method_id: &str, purpose: Purpose) -> String {
    let digest = Sha256::digest(
        format!("{event_id}\n{recipient}\n{method_id}\n{}", purpose.as_str()).as_bytes(),
    );
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("notice-{hex}")
}

impl Notifier {
    /// Applies one message: `Ok` once every notice was handled (now or by an earlier delivery).
    pub async fn apply(&self, message: Received) -> Result<(), Reject> {
        let changed = parse(&message.payload).map_err(|why| Reject::Drop(why.to_owned()))?;
        let retry = |what: &str, e: &dyn std::fmt::Display| Reject::Retry(format!("{what}: {e}"));
        match self.store.is_processed(&changed.event_id).await {
            Ok(true) => {
                tracing::debug!(event_id = %changed.event_id, "password.changed already handled");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(retry("reading processed events", &e)),
        }
        let now = self.clock.now();
        let planned = match changed.reason {
            Some(reason) => self.plan(&changed, reason, now).await?,
            None => {
                tracing::info!(event_id = %changed.event_id, "password.changed with an unknown reason; nothing mailed");
                Vec::new()
            }
        };
        let mut sent = Vec::new();
        for p in planned {
            match self.store.get(&p.header.id).await {
                Ok(Some(r)) if r.status == DeliveryStatus::Sent => {
                    sent.push(p.header);
                    continue;
                }
                Ok(Some(r)) if r.status == DeliveryStatus::Failed => continue,
                Ok(_) => {}
                Err(e) => return Err(retry("reading a delivery record", &e)),
            }
            match self.mailer.send(&p.mail).await {
                Ok(()) => {
                    // Recorded at once, so a later failure of this event does not resend it.
                    if let Err(e) = self
                        .store
                        .record_notice(&p.header, DeliveryStatus::Sent, None, now)
                        .await
                    {
                        tracing::error!(delivery_id = %p.header.id, error = %e, "recording a sent notice failed");
                    }
                    tracing::info!(delivery_id = %p.header.id, purpose = p.header.purpose.as_str(), user_id = %p.header.user_id, "notice mailed");
                    sent.push(p.header);
                }
                Err(f) if f.kind == FailureKind::Permanent => {
                    tracing::warn!(delivery_id = %p.header.id, error = %f, "notice refused for good");
                    if let Err(e) = self
                        .store
                        .record_notice(&p.header, DeliveryStatus::Failed, Some(&f.detail), now)
                        .await
                    {
                        return Err(retry("recording a failed notice", &e));
                    }
                }
                Err(f) => return Err(retry("sending a notice", &f)),
            }
        }
        self.store
            .finish_event(&changed.event_id, &changed.user_id, &sent, now)
            .await
            .map_err(|e| retry("recording the processed event", &e))?;
        tracing::info!(event_id = %changed.event_id, user_id = %changed.user_id, mails = sent.len(), "password.changed notices done");
        Ok(())
    }

    async fn plan(
        &self,
        changed: &Changed,
        reason: ChangeReason,
        now: DateTime<Utc>,
    ) -> Result<Vec<Planned>, Reject> {
        let retry = |e: crate::ports::LookupError| Reject::Retry(e.to_string());
        let Some(user) = self
            .accounts
            .get_user(&changed.user_id)
            .await
            .map_err(retry)?
        else {
            tracing::info!(user_id = %changed.user_id, "the account no longer exists; nothing mailed");
            return Ok(Vec::new());
        };
        let at = changed.occurred_at.unwrap_or(now);
        let mut planned = Vec::new();
        // Best effort, like the code mails: the notice goes out without the contact rather
        // than waiting on the policy service.
        let helpdesk = self.helpdesk.contact().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "helpdesk contact unavailable; mailing without it");
            String::new()
        });
        let content =
            self.templates
                .password_changed(user.locale, &user.display_name, at, reason, &helpdesk);
        self.add_mails(
            changed,
            &user,
            Purpose::PasswordChanged,
            &content,
            &mut planned,
        )
        .await?;
        if user.is_admin {
            let admins = self.accounts.list_admins().await.map_err(retry)?;
            for admin in admins.iter().filter(|a| a.user_id != user.user_id) {
                let content =
                    self.templates
                        .admin_alert(admin.locale, &user.user_id, &user.display_name, at);
                self.add_mails(changed, admin, Purpose::AdminAlert, &content, &mut planned)
                    .await?;
            }
        }
        Ok(planned)
    }

    async fn add_mails(
        &self,
        changed: &Changed,
        recipient: &Account,
        purpose: Purpose,
        content: &EmailContent,
        planned: &mut Vec<Planned>,
    ) -> Result<(), Reject> {
        let emails = self
            .accounts
            .emails(&recipient.user_id)
            .await
            .map_err(|e| Reject::Retry(e.to_string()))?;
        for email in emails {
            let raw = notice_id(
                &changed.event_id,
                &recipient.user_id,
                &email.method_id,
                purpose,
            );
            let id = DeliveryId::parse(&raw)
                .map_err(|e| Reject::Drop(format!("building a delivery id: {e}")))?;
            let flow_id = if changed.flow_id.is_empty() {
                changed.event_id.to_string()
            } else {
                changed.flow_id.clone()
            };
            planned.push(Planned {
                header: DeliveryHeader {
                    id: id.clone(),
                    channel: Channel::Email,
                    purpose,
                    user_id: recipient.user_id.chars().take(128).collect(),
                    flow_id,
                    method_id: email.method_id.chars().take(128).collect(),
                },
                mail: OutgoingMail {
                    delivery_id: id,
                    to: email.address,
                    content: content.clone(),
                },
            });
        }
        Ok(())
    }
}

/// Consumes `password.changed` until `shutdown` is cancelled (the message in hand is finished).
pub async fn consume(bus: sspr_bus::Bus, notifier: Arc<Notifier>, shutdown: CancellationToken) {
    let handler = move |message: Received| {
        let notifier = Arc::clone(&notifier);
        async move { notifier.apply(message).await }
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

    fn payload(event_id: &str, user_id: &str, reason: &str) -> Vec<u8> {
        PasswordChanged {
            meta: Some(EventMeta {
                event_id: event_id.into(),
                occurred_at: None,
                user_id: user_id.into(),
                flow_id: "f1".into(),
                source: "directory".into(),
                actor: String::new(),
            }),
            reason: reason.into(),
        }
        .encode_to_vec()
    }

    #[test]
    fn parses_events() {
        let id = uuid::Uuid::now_v7();
        let c = parse(&payload(&id.to_string(), "alice", "self_service_reset")).expect("ok");
        assert_eq!(c.event_id, id);
        assert_eq!(c.user_id, "alice");
        assert_eq!(c.reason, Some(ChangeReason::SelfService));
        let c = parse(&payload(&id.to_string(), "alice", "other")).expect("ok");
        assert_eq!(c.reason, None);
        assert_eq!(parse(b"\xff\xff"), Err("payload is not a PasswordChanged"));
        assert_eq!(
            parse(&payload("x", "alice", "admin")),
            Err("event_id is not a UUID")
        );
        assert_eq!(
            parse(&payload(&id.to_string(), "", "admin")),
            Err("user_id is not valid")
        );
    }

    #[test]
    fn notice_ids_are_stable_and_valid() {
        let id = uuid::Uuid::now_v7();
        let a = notice_id(&id, "alice", "m1", Purpose::PasswordChanged);
        assert_eq!(a, notice_id(&id, "alice", "m1", Purpose::PasswordChanged));
        assert_ne!(a, notice_id(&id, "alice", "m2", Purpose::PasswordChanged));
        assert_ne!(a, notice_id(&id, "alice", "m1", Purpose::AdminAlert));
        assert!(DeliveryId::parse(&a).is_ok());
    }
}
