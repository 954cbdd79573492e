//! Delivery receipts: what an SMS/voice provider's status callback says, whether it is
//! authentic, and what it does to a delivery record.
//!
//! Two signature schemes, both keyed with a secret only notification and the provider hold:
//! - Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, full callback URL + every POST
//!   parameter sorted by name, each name immediately followed by its value)).
//! - the generic webhook: `X-Sspr-Signature: sha256=<hex HMAC-SHA256(SSPR_SMS_WEBHOOK_SECRET,
//!   raw body)>` over a JSON body `{"delivery_id": "...", "status": "delivered" | "failed"}`.
//!
//! Signatures are compared in constant time. Invariants of [`decide`]: a receipt only ever
//! moves a SENT delivery forward (to DELIVERED or FAILED); a repeated receipt, or one arriving
//! after another final state, changes nothing (idempotent, never backwards); a receipt for a
//! delivery not yet recorded as sent is refused for now so the provider tries again.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::domain::delivery::DeliveryStatus;

/// A provider's id of a message (Twilio: `SM…` or `CA…` SID): 1 to 64 characters of
/// `[A-Za-z0-9_-]`, checked before it is stored or compared. Safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProviderMessageId(String);

impl ProviderMessageId {
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A provider's error code (Twilio's numeric `ErrorCode`/`code`): digits only, at most 10, so
/// it can go into a reason; anything else is dropped.
pub fn error_code(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    ((1..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit())).then_some(raw)
}

/// What a final receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The message reached the handset (SMS), or the call was answered and read out (voice).
    Delivered,
    /// The provider accepted the message but could not deliver it.
    Undeliverable,
}

impl ReceiptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptOutcome::Delivered => "delivered",
            ReceiptOutcome::Undeliverable => "undeliverable",
        }
    }
}

/// Reads a Twilio `MessageStatus` or `CallStatus`. `None` for intermediate states (queued,
/// sending, sent, ringing, in-progress, ...), which are acknowledged and ignored.
pub fn twilio_outcome(status: &str) -> Option<ReceiptOutcome> {
    match status {
        // Messages.
        "delivered" | "read" => Some(ReceiptOutcome::Delivered),
        "undelivered" | "failed" => Some(ReceiptOutcome::Undeliverable),
        // Calls: answered and played to the end, or never answered.
        "completed" => Some(ReceiptOutcome::Delivered),
        "busy" | "no-answer" | "canceled" => Some(ReceiptOutcome::Undeliverable),
        _ => None,
    }
}

/// Reads the generic webhook's `status`.
pub fn webhook_outcome(status: &str) -> Option<ReceiptOutcome> {
    match status {
        "delivered" => Some(ReceiptOutcome::Delivered),
        "failed" | "undelivered" => Some(ReceiptOutcome::Undeliverable),
        _ => None,
    }
}

/// What a final receipt does to a delivery in state `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// SENT: record the outcome (and its event).
    Apply,
    /// Already DELIVERED, FAILED or EXPIRED: nothing changes, nothing is emitted.
    AlreadyFinal,
    /// Not sent yet (QUEUED or SENDING): the provider should try again later.
    NotSentYet,
}

pub fn decide(current: DeliveryStatus) -> Decision {
    match current {
        DeliveryStatus::Sent => Decision::Apply,
        DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Expired => {
            Decision::AlreadyFinal
        }
        DeliveryStatus::Queued | DeliveryStatus::Sending => Decision::NotSentYet,
    }
}

/// Twilio's signature of a callback to `url` with the form parameters `params`.
pub fn twilio_signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Sorted by name, then by value for repeated names; a repeated identical pair counts once
    // (as Twilio's own validators do).
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    sorted.dedup();
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth_token)
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `presented` is Twilio's signature of this callback (constant time).
pub fn twilio_signature_ok(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    presented: &str,
) -> bool {
    let expected = twilio_signature(auth_token, url, params);
    expected
        .as_bytes()
        .ct_eq(presented.trim().as_bytes())
        .into()
}

/// `sha256=<hex>` of the generic webhook's `body`.
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `presented` is the generic webhook's signature of `body` (constant time; the hex
/// may be upper or lower case).
pub fn webhook_signature_ok(secret: &[u8], body: &[u8], presented: &str) -> bool {
    let expected = webhook_signature(secret, body);
    let presented = presented.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// HMAC takes keys of any length, so `new_from_slice` cannot fail; this keeps the call sites
/// free of `unwrap`.
fn unreachable_hmac() -> ! {
    unreachable!("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The vectors of Twilio's documentation and helper libraries' tests.
    #[test]
    fn twilio_signature_matches_the_documented_example() {
        const SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let token = b"12345";
        assert_eq!(twilio_signature(token, url, &params), SIG);
        assert!(twilio_signature_ok(token, url, &params, SIG));
        assert!(!twilio_signature_ok(b"54321", url, &params, SIG));
        assert!(!twilio_signature_ok(
            token,
            &format!("{url}&x=1"),
            &params,
            SIG
        ));
        let mut changed = params.clone();
        changed[2].1 = "1235".into();
        assert!(!twilio_signature_ok(token, url, &changed, SIG));
        // Repeated names: sorted by value, identical pairs once (Twilio's libraries' vector).
        let repeated = p(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            twilio_signature(token, url, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
        // Parameter order on the wire does not matter.
        let mut reversed = params.clone();
        reversed.reverse();
        assert_eq!(
            twilio_signature(token, url, &reversed),
            twilio_signature(token, url, &params)
        );
    }

    #[test]
    fn webhook_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = webhook_signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(webhook_signature_ok(
            b"Jefe",
            b"what do ya want for nothing?",
            &sig.to_ascii_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!webhook_signature_ok(
            b"Jefe",
            b"what do ya want for nothing!",
            &sig
        ));
        assert!(!webhook_signature_ok(b"Jefe", b"x", ""));
    }

    #[test]
    fn provider_ids_and_error_codes_are_checked() {
        assert!(ProviderMessageId::parse("SM0123456789abcdef0123456789abcdef").is_some());
        assert!(ProviderMessageId::parse("").is_none());
        assert!(ProviderMessageId::parse("SM 1").is_none());
        assert!(ProviderMessageId::parse(&"a".repeat(65)).is_none());
        assert_eq!(error_code(" 30003 "), Some("30003"));
        assert_eq!(error_code("30003; drop table"), None);
        assert_eq!(error_code(""), None);
    }

    #[test]
    fn statuses_are_read() {
        assert_eq!(twilio_outcome("delivered"), Some(ReceiptOutcome::Delivered));
        assert_eq!(
            twilio_outcome("undelivered"),
            Some(ReceiptOutcome::Undeliverable)
        );
        assert_eq!(
            twilio_outcome("failed"),
            Some(ReceiptOutcome::Undeliverable)
        );
        assert_eq!(twilio_outcome("completed"), Some(ReceiptOutcome::Delivered));
        assert_eq!(
            twilio_outcome("no-answer"),
            Some(ReceiptOutcome::Undeliverable)
        );
        for intermediate in ["queued", "sending", "sent", "ringing", "in-progress", ""] {
            assert_eq!(twilio_outcome(intermediate), None);
        }
        assert_eq!(
            webhook_outcome("delivered"),
            Some(ReceiptOutcome::Delivered)
        );
        assert_eq!(
            webhook_outcome("failed"),
            Some(ReceiptOutcome::Undeliverable)
        );
        assert_eq!(webhook_outcome("sent"), None);
    }

    #[test]
    fn receipts_only_move_sent_deliveries_forward() {
        assert_eq!(decide(DeliveryStatus::Sent), Decision::Apply);
        for done in [
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Expired,
        ] {
            assert_eq!(decide(done), Decision::AlreadyFinal);
        }
        assert_eq!(decide(DeliveryStatus::Queued), Decision::NotSentYet);
        assert_eq!(decide(DeliveryStatus::Sending), Decision::NotSentYet);
    }
}
