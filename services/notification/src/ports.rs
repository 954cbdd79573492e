//! What the delivery worker and the handlers need from the outside world: something that sends
//! mail, something that sends SMS and voice calls, the helpdesk contact, and a store of
//! delivery records.
//!
//! Implementations live in `adapters`. Every error they return is safe to store and log: it
//! never contains a code or a destination.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sspr_proto::events::v1::{CodeDelivered, CodeDeliveryConfirmed, CodeDeliveryFailed};

use crate::domain::delivery::{
    Channel, DeliveryHeader, DeliveryId, DeliveryStatus, EmailAddress, Locale, PhoneNumber, Purpose,
};
use crate::domain::receipt::ProviderMessageId;
use crate::domain::retry::SendFailure;
use crate::domain::templates::EmailContent;

/// An email ready to go.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub delivery_id: DeliveryId,
    pub to: EmailAddress,
    pub content: EmailContent,
}

/// An SMS or a voice call ready to go, through the same provider.
#[derive(Debug, Clone)]
pub struct OutgoingSms {
    pub delivery_id: DeliveryId,
    /// [`Channel::Sms`] (a text message) or [`Channel::Voice`] (`body` is read out in a call).
    pub channel: Channel,
    pub to: PhoneNumber,
    pub body: String,
}

/// Hands mail to a mail server (or, under `sspr dev` only, to files).
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Returns once the server accepted the message for delivery.
    async fn send(&self, mail: &OutgoingMail) -> Result<(), SendFailure>;

    /// The provider name stored in delivery records: `smtp` or `files`.
    fn provider(&self) -> &'static str {
        "smtp"
    }
}

/// Hands an SMS, or a voice call, to a provider.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Returns once the provider accepted the message (or the call).
    async fn send(&self, sms: &OutgoingSms) -> Result<(), SendFailure>;

    /// As [`SmsSender::send`], returning the provider's id of the message when it gives one
    /// (Twilio's message or call SID). The default sends and has no id.
    async fn submit(&self, sms: &OutgoingSms) -> Result<Option<ProviderMessageId>, SendFailure> {
        self.send(sms).await.map(|()| None)
    }

    /// The provider name stored in delivery records: `webhook`, `twilio` or `files`.
    fn provider(&self) -> &'static str {
        "webhook"
    }
}

/// What notification keeps about a message handed to an SMS/voice provider, for its receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMessage {
    pub delivery_id: DeliveryId,
    /// `webhook`, `twilio`, ...
    pub provider: String,
    /// The provider's id, when it gave one.
    pub message_id: Option<ProviderMessageId>,
    /// The flow's method the code was for; empty when unknown.
    pub method_id: String,
    /// When verification issued the code (the receipt latency starts there).
    pub issued_at: DateTime<Utc>,
    /// When the provider accepted it.
    pub accepted_at: DateTime<Utc>,
}

/// The event a receipt emits, committed with its status change (outbox).
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiptEvent {
    /// DELIVERED and `code.delivery_confirmed`.
    Confirmed(CodeDeliveryConfirmed),
    /// FAILED and `code.delivery_failed` (reason `undeliverable`).
    Undeliverable(CodeDeliveryFailed),
}

/// What a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptApplied {
    /// The status moved from SENT and the event was enqueued.
    Applied,
    /// The delivery was no longer SENT (a repeated or late receipt): nothing changed.
    Unchanged,
}

/// Provider messages and receipts (the `provider_messages` table, `m0005_add_receipts`).
#[async_trait]
pub trait ReceiptStore: Send + Sync {
    /// Notes a message the provider accepted (upsert by delivery id).
    async fn record_provider_message(&self, message: &ProviderMessage) -> Result<(), StoreError>;

    async fn provider_message(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<ProviderMessage>, StoreError>;

    /// Applies a final receipt in one transaction: only when the delivery is still SENT, moves
    /// it to DELIVERED or FAILED (with `reason` as the last error), notes the receipt
    /// (`provider_status`, `error_code`) and enqueues `event`. Otherwise changes nothing.
    async fn apply_receipt(
        &self,
        id: &DeliveryId,
        event: &ReceiptEvent,
        provider_status: &str,
        error_code: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReceiptApplied, StoreError>;
}

pub type SharedReceiptStore = Arc<dyn ReceiptStore>;

/// A delivery record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub channel: Channel,
    pub purpose: Purpose,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub user_id: String,
    pub flow_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Operator-readable reason of the last failure.
    pub last_error: Option<String>,
    /// When the provider accepted the message.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the delivery reached a final state (sent, failed, expired).
    pub finished_at: Option<DateTime<Utc>>,
    /// True when the delivery was given up and a dead letter was written.
    pub dead_lettered: bool,
    /// Who was asked to carry it (`smtp`, `webhook`, `twilio`, `files`); empty before any send.
    pub provider: String,
    /// The provider's id of the message, when it gives one (Twilio's message SID).
    pub provider_message_id: Option<String>,
}

/// Why a delivery was given up, as written to the dead-letter table together with the FAILED
/// status and the `code.delivery_failed` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Operator-readable reason; never the code or the destination.
    pub reason: String,
    /// Sends started for the delivery.
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("delivery database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("delivery record {0} holds an unknown {1}")]
    Corrupt(String, &'static str),
}

/// The answer of [`DeliveryStore::start_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptClaim {
    /// This attempt may send; the updated record.
    Started(DeliveryRecord),
    /// Another attempt is sending it, since `since`; do not send now.
    Busy { since: DateTime<Utc> },
    /// Already sent, delivered, failed or expired.
    Final(DeliveryRecord),
}

/// Delivery records. Each `record_*` creates the record when it does not exist yet, so a
/// delivery is recorded whatever step it reaches first.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    async fn get(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Claims the next attempt: status SENDING, attempts + 1, `provider` noted, unless another
    /// attempt holds the delivery (SENDING, last changed less than `lease` ago: a copy of the
    /// message redelivered while the first is still being sent) or it is already final. The
    /// check and the claim are one transaction (the row is locked), so two replicas or two
    /// copies never both send.
    async fn start_attempt(
        &self,
        header: &DeliveryHeader,
        provider: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<AttemptClaim, StoreError>;

    /// The code expired before it could be sent: status EXPIRED and the `code.delivery_failed`
    /// event (reason `expired`) in one transaction. Returns false, writing nothing, when the
    /// delivery was already final (another copy of the message got there first).
    async fn record_expired(
        &self,
        header: &DeliveryHeader,
        event: &CodeDeliveryFailed,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// An attempt failed and will be retried: status QUEUED with the reason.
    async fn record_retry(
        &self,
        header: &DeliveryHeader,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Given up: status FAILED with the reason, a dead-letter entry and the
    /// `code.delivery_failed` event, in one transaction (outbox). Idempotent: a delivery is
    /// dead-lettered at most once; returns false, writing nothing, when it already was.
    async fn record_failed(
        &self,
        header: &DeliveryHeader,
        dead: &DeadLetter,
        event: &CodeDeliveryFailed,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The provider accepted the message: status SENT (with `sent_at`, and the provider's
    /// message id when it gave one) and the `code.delivered` event, in one transaction (outbox).
    async fn record_sent(
        &self,
        header: &DeliveryHeader,
        event: &CodeDelivered,
        provider_message_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// What the `password.changed` consumer records: one delivery record per notice mail, and the
/// events already handled.
#[async_trait]
pub trait NoticeStore: DeliveryStore {
    async fn is_processed(&self, event_id: &uuid::Uuid) -> Result<bool, StoreError>;

    /// Records one attempt at a notice mail with its outcome (SENT or FAILED).
    async fn record_notice(
        &self,
        header: &DeliveryHeader,
        status: DeliveryStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Marks the event handled, together with the SENT records of the mails `sent`, in one
    /// transaction.
    async fn finish_event(
        &self,
        event_id: &uuid::Uuid,
        user_id: &str,
        sent: &[DeliveryHeader],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// As [`NoticeStore::finish_event`], and enqueues `announced` (the
    /// `method.change_announced` event) in the same transaction (outbox).
    async fn finish_announcement(
        &self,
        event_id: &uuid::Uuid,
        user_id: &str,
        sent: &[DeliveryHeader],
        announced: &sspr_proto::events::v1::MethodChangeAnnounced,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// A directory account, as notices need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    pub display_name: String,
    pub locale: Locale,
    pub is_admin: bool,
}

/// A registered, confirmed email method of an account.
#[derive(Debug, Clone)]
pub struct RegisteredEmail {
    pub method_id: String,
    pub address: EmailAddress,
}

/// Where one confirmed contact method of an account is reached (email, SMS or voice).
#[derive(Debug, Clone)]
pub enum ContactAddress {
    Email(EmailAddress),
    Sms(PhoneNumber),
    Voice(PhoneNumber),
}

/// A confirmed contact method of an account, with its full destination (never logged).
#[derive(Debug, Clone)]
pub struct ContactDestination {
    pub method_id: String,
    pub address: ContactAddress,
}

/// Why an account lookup failed; safe to log (never a destination).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Unavailable(String),
}

/// The directory and enrolment, as notices need them.
#[async_trait]
pub trait Accounts: Send + Sync {
    async fn get_user(&self, user_id: &str) -> Result<Option<Account>, LookupError>;
    /// Every enabled administrator.
    async fn list_admins(&self) -> Result<Vec<Account>, LookupError>;
    /// The confirmed email methods of an account, with their full addresses.
    async fn emails(&self, user_id: &str) -> Result<Vec<RegisteredEmail>, LookupError>;
    /// Every confirmed contact method (email, SMS, voice) of an account, with its full
    /// destination (enrolment's `list_destinations`).
    async fn destinations(&self, user_id: &str) -> Result<Vec<ContactDestination>, LookupError>;
}

/// The policy-wide helpdesk contact, put in code mails and password-changed mails.
#[async_trait]
pub trait Helpdesk: Send + Sync {
    /// The contact as the admin set it; empty when none is set.
    async fn contact(&self) -> Result<String, LookupError>;
}

pub type SharedHelpdesk = Arc<dyn Helpdesk>;
pub type SharedMailer = Arc<dyn Mailer>;
pub type SharedSmsSender = Arc<dyn SmsSender>;
pub type SharedStore = Arc<dyn DeliveryStore>;
