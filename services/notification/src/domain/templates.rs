//! The words of every message sspr sends: email (subject, text, HTML) and SMS, per purpose and
//! locale (English and French; anything else falls back to English).
//!
//! Invariants:
//! - The only variable parts are the code (digits only, by construction of [`Code`]) and the
//!   validity in minutes. Nothing the user typed (name, address, locale tag) is ever echoed.
//! - Everything inserted into HTML goes through [`escape_html`], even values that cannot hold
//!   markup today, so a later template change cannot open an injection.
//! - In the text part the code stands alone on its own line, so it is easy to copy and to find.

use super::delivery::{Code, Locale, Purpose};

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
}

struct Wording {
    subject: &'static str,
    greeting: &'static str,
    lead: &'static str,
    validity: fn(u32) -> String,
    unexpected: &'static str,
    never_share: &'static str,
    lang: &'static str,
}

fn minutes_en(n: u32) -> String {
    if n == 1 {
        "This code is valid for 1 minute.".to_owned()
    } else {
        format!("This code is valid for {n} minutes.")
    }
}

fn minutes_fr(n: u32) -> String {
    if n == 1 {
        "Ce code est valable 1 minute.".to_owned()
    } else {
        format!("Ce code est valable {n} minutes.")
    }
}

fn wording(purpose: Purpose, locale: Locale) -> Wording {
    match (locale, purpose) {
        (Locale::En, Purpose::Reset) => Wording {
            subject: "Your password reset code",
            greeting: "Hello,",
            lead: "Use this code to reset your password:",
            validity: minutes_en,
            unexpected: "If you did not ask to reset your password, ignore this message: your password stays as it is, and nobody can change it without this code.",
            never_share: "Never share this code with anyone, not even someone who says they work for your IT support.",
            lang: "en",
        },
        (Locale::En, Purpose::Registration) => Wording {
            subject: "Confirm your email address",
            greeting: "Hello,",
            lead: "Use this code to confirm this email address for self-service password reset:",
            validity: minutes_en,
            unexpected: "If you did not add this email address, ignore this message: it will not be registered.",
            never_share: "Never share this code with anyone, not even someone who says they work for your IT support.",
            lang: "en",
        },
        (Locale::Fr, Purpose::Reset) => Wording {
            subject: "Votre code de réinitialisation du mot de passe",
            greeting: "Bonjour,",
            lead: "Utilisez ce code pour réinitialiser votre mot de passe :",
            validity: minutes_fr,
            unexpected: "Si vous n'avez pas demandé à réinitialiser votre mot de passe, ignorez ce message : votre mot de passe reste inchangé, et personne ne peut le modifier sans ce code.",
            never_share: "Ne communiquez jamais ce code à personne, pas même à quelqu'un qui se présente comme le support informatique.",
            lang: "fr",
        },
        (Locale::Fr, Purpose::Registration) => Wording {
            subject: "Confirmez votre adresse e-mail",
            greeting: "Bonjour,",
            lead: "Utilisez ce code pour confirmer cette adresse e-mail pour la réinitialisation du mot de passe en libre-service :",
            validity: minutes_fr,
            unexpected: "Si vous n'avez pas ajouté cette adresse e-mail, ignorez ce message : elle ne sera pas enregistrée.",
            never_share: "Ne communiquez jamais ce code à personne, pas même à quelqu'un qui se présente comme le support informatique.",
            lang: "fr",
        },
    }
}

/// The email carrying `code`.
pub fn email(purpose: Purpose, locale: Locale, code: &Code, valid_minutes: u32) -> EmailContent {
    let w = wording(purpose, locale);
    let validity = (w.validity)(valid_minutes);
    let code = code.expose();
    let text = format!(
        "{greeting}\n\n{lead}\n\n{code}\n\n{validity}\n\n{unexpected}\n\n{never_share}\n\n-- \nsspr\n",
        greeting = w.greeting,
        lead = w.lead,
        unexpected = w.unexpected,
        never_share = w.never_share,
    );
    let e = escape_html;
    let html = format!(
        concat!(
            "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head><meta charset=\"utf-8\"><title>{subject}</title></head>\n",
            "<body style=\"font-family:sans-serif;line-height:1.5\">\n",
            "<p>{greeting}</p>\n<p>{lead}</p>\n",
            "<p style=\"font-family:monospace;font-size:28px;font-weight:bold;letter-spacing:4px\">{code}</p>\n",
            "<p>{validity}</p>\n<p>{unexpected}</p>\n<p><strong>{never_share}</strong></p>\n",
            "<p style=\"color:#666\">sspr</p>\n</body>\n</html>\n"
        ),
        lang = e(w.lang),
        subject = e(w.subject),
        greeting = e(w.greeting),
        lead = e(w.lead),
        code = e(code),
        validity = e(&validity),
        unexpected = e(w.unexpected),
        never_share = e(w.never_share),
    );
    EmailContent {
        subject: w.subject.to_owned(),
        text,
        html,
    }
}

/// The SMS carrying `code`: short enough for one message.
pub fn sms(purpose: Purpose, locale: Locale, code: &Code, valid_minutes: u32) -> String {
    let code = code.expose();
    match (locale, purpose) {
        (Locale::En, Purpose::Reset) => {
            format!("sspr password reset code: {code} (valid {valid_minutes} min). Never share it.")
        }
        (Locale::En, Purpose::Registration) => {
            format!("sspr verification code: {code} (valid {valid_minutes} min). Never share it.")
        }
        (Locale::Fr, Purpose::Reset) => format!(
            "Code sspr de réinitialisation : {code} (valable {valid_minutes} min). Ne le communiquez à personne."
        ),
        (Locale::Fr, Purpose::Registration) => format!(
            "Code de vérification sspr : {code} (valable {valid_minutes} min). Ne le communiquez à personne."
        ),
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> Code {
        Code::parse("04719253").expect("digits")
    }

    #[test]
    fn english_reset_mail_has_the_code_on_its_own_line() {
        let m = email(Purpose::Reset, Locale::En, &code(), 10);
        assert_eq!(m.subject, "Your password reset code");
        assert!(m.text.lines().any(|l| l == "04719253"), "{}", m.text);
        assert!(m.text.contains("valid for 10 minutes"));
        assert!(m.html.contains("04719253"));
        assert!(m.html.starts_with("<!DOCTYPE html>"));
        assert!(m.html.contains("lang=\"en\""));
    }

    #[test]
    fn french_mails_are_in_french() {
        let m = email(Purpose::Reset, Locale::Fr, &code(), 10);
        assert_eq!(m.subject, "Votre code de réinitialisation du mot de passe");
        assert!(m.text.lines().any(|l| l == "04719253"));
        assert!(m.text.contains("valable 10 minutes"));
        assert!(m.html.contains("lang=\"fr\""));
        // The apostrophe of "n'avez" is escaped in HTML, kept in text.
        assert!(m.html.contains("n&#39;avez"));
        assert!(m.text.contains("n'avez"));

        let r = email(Purpose::Registration, Locale::Fr, &code(), 1);
        assert_eq!(r.subject, "Confirmez votre adresse e-mail");
        assert!(r.text.contains("valable 1 minute."));
    }

    #[test]
    fn unknown_locales_fall_back_to_english() {
        let de = email(
            Purpose::Registration,
            Locale::from_tag("de-DE"),
            &code(),
            10,
        );
        assert_eq!(de, email(Purpose::Registration, Locale::En, &code(), 10));
        assert_eq!(de.subject, "Confirm your email address");
        assert_eq!(
            sms(Purpose::Reset, Locale::from_tag("pt"), &code(), 10),
            sms(Purpose::Reset, Locale::En, &code(), 10)
        );
    }

    #[test]
    fn purposes_read_differently() {
        let reset = email(Purpose::Reset, Locale::En, &code(), 10);
        let reg = email(Purpose::Registration, Locale::En, &code(), 10);
        assert_ne!(reset.subject, reg.subject);
        assert!(reset.text.contains("reset your password"));
        assert!(reg.text.contains("confirm this email address"));
    }

    #[test]
    fn sms_is_short_and_carries_the_code() {
        for purpose in [Purpose::Reset, Purpose::Registration] {
            for locale in [Locale::En, Locale::Fr] {
                let body = sms(purpose, locale, &code(), 10);
                assert!(body.contains("04719253"), "{body}");
                assert!(body.contains("10 min"), "{body}");
                assert!(body.chars().count() <= 160, "{body}");
            }
        }
        assert_eq!(
            sms(Purpose::Reset, Locale::En, &code(), 10),
            "sspr password reset code: 04719253 (valid 10 min). Never share it."
        );
    }

    #[test]
    fn html_cannot_be_injected() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        // Markup can never reach a template as a code: codes are digits only.
        assert!(Code::parse("<img src=x onerror=alert(1)>").is_err());
        // The only tags in the HTML are the template's own.
        for purpose in [Purpose::Reset, Purpose::Registration] {
            for locale in [Locale::En, Locale::Fr] {
                let m = email(purpose, locale, &code(), 10);
                assert!(!m.html.contains("<script"), "{}", m.html);
                let tags: Vec<&str> = m
                    .html
                    .split('<')
                    .skip(1)
                    .filter_map(|t| t.split([' ', '>']).next())
                    .collect();
                for tag in tags {
                    assert!(
                        [
                            "!DOCTYPE", "html", "head", "meta", "title", "/title", "/head", "body",
                            "p", "/p", "strong", "/strong", "/body", "/html"
                        ]
                        .contains(&tag),
                        "unexpected tag {tag}"
                    );
                }
            }
        }
    }
}
