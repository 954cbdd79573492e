//! Turns an [`OutgoingMail`] into an RFC 5322 message with lettre: From, To, Subject, Date,
//! Message-ID, and a `multipart/alternative` body (text/plain first, then text/html).
//!
//! A destination that lettre cannot parse is a permanent failure whose reason does not repeat
//! the address.

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use crate::domain::retry::SendFailure;
use crate::ports::OutgoingMail;

/// Builds the message `mail` describes, from `from`.
pub fn build_message(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, SendFailure> {
    let to: Mailbox = mail
        .to
        .expose()
        .parse()
        .map_err(|_| SendFailure::permanent("the destination is not a valid email address"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.content.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            mail.content.text.clone(),
            mail.content.html.clone(),
        ))
        .map_err(|e| SendFailure::permanent(format!("the message could not be built: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::{Code, DeliveryId, EmailAddress, Locale, Purpose};
    use crate::domain::templates;

    #[test]
    fn builds_a_multipart_alternative_message() {
        let mail = OutgoingMail {
            delivery_id: DeliveryId::parse("d-1").expect("id"),
            to: EmailAddress::parse("alice@example.com").expect("address"),
            content: templates::email(
                Purpose::Reset,
                Locale::Fr,
                &Code::parse("12345678").expect("code"),
                10,
            ),
        };
        let msg = build_message(&crate::config::default_mail_from(), &mail).expect("built");
        let raw = String::from_utf8(msg.formatted()).expect("ascii");
        assert!(raw.contains("To: alice@example.com"), "{raw}");
        assert!(
            raw.contains("From: sspr <no-reply@sspr.localhost>"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain"), "{raw}");
        assert!(raw.contains("text/html"), "{raw}");
        assert!(raw.contains("\r\n12345678\r\n"), "{raw}");
        assert!(raw.is_ascii(), "the French text is transfer-encoded");
    }
}
