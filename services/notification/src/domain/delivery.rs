//! What a code delivery is, once it has been decrypted and checked.
//!
//! Every field is parsed into a type that can only hold a valid value. The code and the
//! destination are secrets: their `Debug` output is redacted and nothing here formats them into
//! an error message, so a failed parse can be logged as is.

use chrono::{DateTime, Utc};

/// Why a decrypted delivery is unusable. Messages never contain the code or the destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDelivery {
    #[error(
        "the delivery id is empty, longer than 128 characters or has characters outside [A-Za-z0-9._-]"
    )]
    Id,
    #[error("the delivery kind is neither email nor sms")]
    Kind,
    #[error("the delivery purpose is neither reset nor registration")]
    Purpose,
    #[error("the code is not 4 to 16 digits")]
    Code,
    #[error("the destination is not a valid email address")]
    Email,
    #[error("the destination is not a phone number in E.164 form (+ and 7 to 15 digits)")]
    Phone,
    #[error("the delivery has no issued_at/expires_at, or expires before it was issued")]
    Times,
    #[error("the {0} is empty or longer than 128 characters")]
    Field(&'static str),
}

/// Id of a delivery, chosen by verification (a UUID in practice). Safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn parse(raw: &str) -> Result<Self, InvalidDelivery> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidDelivery::Id)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a code travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
    /// A phone call reading the code out, through the SMS provider.
    Voice,
}

impl Channel {
    /// The last token of the delivery subject, and the value stored in delivery records.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Voice => "voice",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            "voice" => Some(Channel::Voice),
            _ => None,
        }
    }
}

/// Why the code was issued; decides the wording of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Reset,
    Registration,
    /// A "your password was changed" mail (no code).
    PasswordChanged,
    /// An "administrator password reset" alert to the admins (no code).
    AdminAlert,
    /// A code to a registered method proving the user before their methods change.
    StepUp,
    /// A "your contact methods changed" notice to the user's other methods (no code).
    MethodChanged,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Reset => "reset",
            Purpose::Registration => "registration",
            Purpose::PasswordChanged => "password_changed",
            Purpose::AdminAlert => "admin_alert",
            Purpose::StepUp => "step_up",
            Purpose::MethodChanged => "method_changed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "reset" => Some(Purpose::Reset),
            "registration" => Some(Purpose::Registration),
            "password_changed" => Some(Purpose::PasswordChanged),
            "admin_alert" => Some(Purpose::AdminAlert),
            "step_up" => Some(Purpose::StepUp),
            "method_changed" => Some(Purpose::MethodChanged),
            _ => None,
        }
    }
}

/// The languages messages are written in. Anything else falls back to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locale {
    En,
    Fr,
}

impl Locale {
    /// Reads the primary language of a BCP 47 tag (`fr`, `fr-CA`, `FR_fr`); unknown or empty
    /// tags give English.
    pub fn from_tag(tag: &str) -> Self {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("fr") {
            Locale::Fr
        } else {
            Locale::En
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
        }
    }
}

/// A one-time code as issued by verification: only digits, so it can be put in any message
/// without escaping. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    pub fn parse(raw: &str) -> Result<Self, InvalidDelivery> {
        if (4..=16).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidDelivery::Code)
        }
    }

    /// The code itself: only for the message sent to the user.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(<redacted>)")
    }
}

/// An email address, checked for shape (the mail adapter parses it fully). `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, InvalidDelivery> {
        let raw = raw.trim();
        let Some((local, domain)) = raw.split_once('@') else {
            return Err(InvalidDelivery::Email);
        };
        let ok = raw.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && !domain.is_empty()
            && !raw
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
            && !domain.contains('@');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidDelivery::Email)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

/// A phone number in E.164 form (`+33612345678`). `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, InvalidDelivery> {
        let digits = raw.strip_prefix('+').ok_or(InvalidDelivery::Phone)?;
        let ok = (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidDelivery::Phone)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

/// Where the code goes; the variant decides the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Email(EmailAddress),
    Sms(PhoneNumber),
    Voice(PhoneNumber),
}

impl Destination {
    pub fn parse(channel: Channel, raw: &str) -> Result<Self, InvalidDelivery> {
        match channel {
            Channel::Email => EmailAddress::parse(raw).map(Destination::Email),
            Channel::Sms => PhoneNumber::parse(raw).map(Destination::Sms),
            Channel::Voice => PhoneNumber::parse(raw).map(Destination::Voice),
        }
    }

    pub fn channel(&self) -> Channel {
        match self {
            Destination::Email(_) => Channel::Email,
            Destination::Sms(_) => Channel::Sms,
            Destination::Voice(_) => Channel::Voice,
        }
    }
}

/// A public id owned by another service (user id, flow id): bounded, opaque, safe to log.
fn bounded(field: &'static str, raw: &str) -> Result<String, InvalidDelivery> {
    if raw.is_empty() || raw.len() > 128 || raw.chars().any(char::is_control) {
        Err(InvalidDelivery::Field(field))
    } else {
        Ok(raw.to_owned())
    }
}

/// The parts of a delivery that may be stored and logged: no code, no destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryHeader {
    pub id: DeliveryId,
    pub channel: Channel,
    pub purpose: Purpose,
    pub user_id: String,
    pub flow_id: String,
    /// The flow's method the code is for (echoed in `code.delivery_failed`); empty when the
    /// publisher did not say (deliveries queued before it existed, notices).
    pub method_id: String,
}

/// A decrypted, checked delivery.
#[derive(Debug, Clone)]
pub struct CodeDelivery {
    pub header: DeliveryHeader,
    pub destination: Destination,
    pub code: Code,
    pub locale: Locale,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The raw fields of a delivery, as decrypted.
#[derive(Clone)]
pub struct RawDelivery<'a> {
    pub id: &'a str,
    pub channel: Option<Channel>,
    pub purpose: Option<Purpose>,
    pub destination: &'a str,
    pub code: &'a str,
    pub locale: &'a str,
    pub user_id: &'a str,
    pub flow_id: &'a str,
    pub method_id: &'a str,
    pub issued_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl CodeDelivery {
    /// Checks every field. The header is returned with the error when it could be read, so the
    /// failure can be recorded against the delivery.
    pub fn parse(
        raw: RawDelivery<'_>,
    ) -> Result<Self, (Option<Box<DeliveryHeader>>, InvalidDelivery)> {
        let id = DeliveryId::parse(raw.id).map_err(|e| (None, e))?;
        let channel = raw.channel.ok_or((None, InvalidDelivery::Kind))?;
        let purpose = raw.purpose.ok_or((None, InvalidDelivery::Purpose))?;
        let user_id = bounded("user id", raw.user_id).map_err(|e| (None, e))?;
        let flow_id = bounded("flow id", raw.flow_id).map_err(|e| (None, e))?;
        let method_id = if raw.method_id.is_empty() {
            String::new()
        } else {
            bounded("method id", raw.method_id).map_err(|e| (None, e))?
        };
        let header = DeliveryHeader {
            id,
            channel,
            purpose,
            user_id,
            flow_id,
            method_id,
        };
        let fail = |e| (Some(Box::new(header.clone())), e);
        let destination = Destination::parse(channel, raw.destination).map_err(fail)?;
        let code = Code::parse(raw.code).map_err(fail)?;
        let (issued_at, expires_at) = match (raw.issued_at, raw.expires_at) {
            (Some(i), Some(e)) if e > i => (i, e),
            _ => return Err(fail(InvalidDelivery::Times)),
        };
        Ok(Self {
            header,
            destination,
            code,
            locale: Locale::from_tag(raw.locale),
            issued_at,
            expires_at,
        })
    }

    /// A code is never delivered once it expired.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    /// How long the code is valid, in whole minutes (rounded, at least 1), for the message text.
    pub fn validity_minutes(&self) -> u32 {
        let secs = (self.expires_at - self.issued_at).num_seconds().max(0);
        u32::try_from((secs + 30) / 60).unwrap_or(u32::MAX).max(1)
    }
}

/// Where a delivery record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for a (re)try.
    Queued,
    /// A send is in progress (or a replica died during one).
    Sending,
    /// The SMTP server or SMS provider accepted the message.
    Sent,
    /// The provider confirmed delivery to the user (not reported yet by any provider).
    Delivered,
    /// Given up: permanent refusal or retries exhausted.
    Failed,
    /// The code expired before it could be sent; it never will be.
    Expired,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "queued" => DeliveryStatus::Queued,
            "sending" => DeliveryStatus::Sending,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            "expired" => DeliveryStatus::Expired,
            _ => return None,
        })
    }

    /// A delivery in a final state is never sent again, whatever the queue redelivers.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Sent
                | DeliveryStatus::Delivered
                | DeliveryStatus::Failed
                | DeliveryStatus::Expired
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn raw<'a>(code: &'a str, destination: &'a str) -> RawDelivery<'a> {
        let issued = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        RawDelivery {
            id: "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000",
            channel: Some(Channel::Email),
            purpose: Some(Purpose::Reset),
            destination,
            code,
            locale: "fr-CA",
            user_id: "alice",
            flow_id: "flow-1",
            method_id: "method-1",
            issued_at: Some(issued),
            expires_at: Some(issued + Duration::minutes(10)),
        }
    }

    #[test]
    fn a_good_delivery_parses() {
        let d = CodeDelivery::parse(raw("12345678", "alice@example.com")).expect("valid");
        assert_eq!(d.locale, Locale::Fr);
        assert_eq!(d.validity_minutes(), 10);
        assert_eq!(d.destination.channel(), Channel::Email);
        assert!(!d.is_expired(d.issued_at));
        assert!(d.is_expired(d.expires_at));
    }

    #[test]
    fn only_digit_codes_are_accepted() {
        for bad in [
            "",
            "123",
            "1234567a",
            "<b>1234</b>",
            "12345678901234567",
            "１２３４５６",
        ] {
            assert_eq!(Code::parse(bad), Err(InvalidDelivery::Code), "{bad:?}");
        }
        assert!(Code::parse("00001234").is_ok());
    }

    #[test]
    fn bad_fields_are_refused_with_the_header_when_known() {
        let err = CodeDelivery::parse(raw("x", "alice@example.com")).err();
        let (header, e) = err.expect("refused");
        assert_eq!(e, InvalidDelivery::Code);
        assert_eq!(header.map(|h| h.user_id), Some("alice".to_owned()));

        let mut r = raw("12345678", "alice@example.com");
        r.id = "../etc/passwd";
        assert_eq!(
            CodeDelivery::parse(r).err().map(|e| e.1),
            Some(InvalidDelivery::Id)
        );

        let mut r = raw("12345678", "alice@example.com");
        r.expires_at = r.issued_at;
        assert_eq!(
            CodeDelivery::parse(r).err().map(|e| e.1),
            Some(InvalidDelivery::Times)
        );
    }

    #[test]
    fn destinations_are_checked_per_channel() {
        assert!(EmailAddress::parse("a@b.example").is_ok());
        for bad in [
            "",
            "no-at",
            "@b.example",
            "a@",
            "a b@c.example",
            "a@b@c",
            "<a@b.example>",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert!(PhoneNumber::parse("+33612345678").is_ok());
        for bad in [
            "0612345678",
            "+0612345678",
            "+33 6 12",
            "+33612345678901234",
            "+336a2345678",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let d = CodeDelivery::parse(raw("12345678", "alice@example.com")).expect("valid");
        let printed = format!("{d:?}");
        assert!(!printed.contains("12345678"), "{printed}");
        assert!(!printed.contains("alice@example.com"), "{printed}");
    }

    #[test]
    fn locale_falls_back_to_english() {
        assert_eq!(Locale::from_tag("fr"), Locale::Fr);
        assert_eq!(Locale::from_tag("FR_be"), Locale::Fr);
        assert_eq!(Locale::from_tag("de-DE"), Locale::En);
        assert_eq!(Locale::from_tag(""), Locale::En);
        assert_eq!(Locale::from_tag("french"), Locale::En);
    }

    #[test]
    fn validity_is_rounded_to_minutes_and_at_least_one() {
        let mut d = CodeDelivery::parse(raw("12345678", "a@b.example")).expect("valid");
        d.expires_at = d.issued_at + Duration::seconds(9 * 60 + 45);
        assert_eq!(d.validity_minutes(), 10);
        d.expires_at = d.issued_at + Duration::seconds(5);
        assert_eq!(d.validity_minutes(), 1);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            DeliveryStatus::Queued,
            DeliveryStatus::Sending,
            DeliveryStatus::Sent,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Expired,
        ] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert!(DeliveryStatus::Sent.is_final());
        assert!(!DeliveryStatus::Queued.is_final());
    }
}
