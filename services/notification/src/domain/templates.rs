//! The words of every message sspr sends: email (subject, text, HTML), SMS and voice calls, per
//! message and locale (English and French; anything else falls back to English).
//!
//! A [`Templates`] set holds, for each [`MessageKind`], [`Locale`] and [`Part`], a parsed
//! template: literal text with `{{placeholder}}` holes. The built-in set is complete; an operator
//! may replace any single part from a directory (read by `adapters::template_dir`), checked here
//! by [`Templates::override_part`]. A voice message ([`MessageKind::ResetVoice`],
//! [`MessageKind::RegistrationVoice`]) has only a text part: the words read out in the call,
//! with the code spoken digit by digit and repeated once.
//!
//! Invariants:
//! - The only variable parts are the code (digits only, by construction of [`Code`]), the
//!   validity in minutes, the time of a change, from the directory a display name and a user
//!   id, and from the policy the helpdesk contact (set by an admin). Nothing the user typed
//!   (address, password, locale tag) is ever a placeholder.
//! - A paragraph left empty (the helpdesk line when no contact is set) is dropped from the
//!   rendered text and HTML.
//! - Each message accepts only its own placeholders ([`MessageKind::placeholders`]); an
//!   override with an unknown placeholder or an unclosed `{{` is refused at start.
//! - Everything inserted into the HTML part goes through [`escape_html`]; control characters are
//!   removed from every inserted value, so a value cannot add a header line or a paragraph.
//! - In the built-in text part the code stands alone on its own line, so it is easy to copy.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::delivery::{Code, Locale, Purpose};

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Every message sspr mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    RegistrationCode,
    ResetCode,
    PasswordChanged,
    AdminAlert,
    /// The words of a voice call carrying a reset code (text part only).
    ResetVoice,
    /// The words of a voice call carrying a registration code (text part only).
    RegistrationVoice,
    /// A code to a registered method, to prove the user before their methods change.
    StepUpCode,
    /// "A contact method of your account was added/removed", to the user's other methods.
    MethodChanged,
}

impl MessageKind {
    pub const ALL: [MessageKind; 8] = [
        MessageKind::RegistrationCode,
        MessageKind::ResetCode,
        MessageKind::PasswordChanged,
        MessageKind::AdminAlert,
        MessageKind::ResetVoice,
        MessageKind::RegistrationVoice,
        MessageKind::StepUpCode,
        MessageKind::MethodChanged,
    ];

    /// The file name stem of an override, e.g. `password_changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::RegistrationCode => "registration_code",
            MessageKind::ResetCode => "reset_code",
            MessageKind::PasswordChanged => "password_changed",
            MessageKind::AdminAlert => "admin_alert",
            MessageKind::ResetVoice => "reset_voice",
            MessageKind::RegistrationVoice => "registration_voice",
            MessageKind::StepUpCode => "step_up_code",
            MessageKind::MethodChanged => "method_changed",
        }
    }

    /// The parts this message has: a voice call is only words.
    pub fn parts(self) -> &'static [Part] {
        match self {
            MessageKind::ResetVoice | MessageKind::RegistrationVoice => &[Part::Text],
            _ => &Part::ALL,
        }
    }

    /// The placeholders this message may use.
    pub fn placeholders(self) -> &'static [Placeholder] {
        match self {
            MessageKind::RegistrationCode | MessageKind::ResetCode | MessageKind::StepUpCode => &[
                Placeholder::Code,
                Placeholder::ValidMinutes,
                Placeholder::Validity,
                Placeholder::Helpdesk,
            ],
            MessageKind::PasswordChanged => &[
                Placeholder::DisplayName,
                Placeholder::Time,
                Placeholder::Change,
                Placeholder::Helpdesk,
            ],
            MessageKind::ResetVoice | MessageKind::RegistrationVoice => {
                &[Placeholder::SpokenCode, Placeholder::ValidMinutes]
            }
            MessageKind::AdminAlert => &[
                Placeholder::UserId,
                Placeholder::DisplayName,
                Placeholder::Time,
            ],
            MessageKind::MethodChanged => &[
                Placeholder::DisplayName,
                Placeholder::Time,
                Placeholder::Change,
                Placeholder::Helpdesk,
            ],
        }
    }

    fn of_code(purpose: Purpose) -> Self {
        match purpose {
            Purpose::Registration => MessageKind::RegistrationCode,
            Purpose::StepUp => MessageKind::StepUpCode,
            // Password-changed, admin-alert and method-changed deliveries carry no code.
            Purpose::Reset
            | Purpose::PasswordChanged
            | Purpose::AdminAlert
            | Purpose::MethodChanged => MessageKind::ResetCode,
        }
    }

    fn of_voice(purpose: Purpose) -> Self {
        match purpose {
            // "Your verification code is ...": right for a step-up too.
            Purpose::Registration | Purpose::StepUp => MessageKind::RegistrationVoice,
            Purpose::Reset
            | Purpose::PasswordChanged
            | Purpose::AdminAlert
            | Purpose::MethodChanged => MessageKind::ResetVoice,
        }
    }
}

/// The three parts of an email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Subject, Part::Text, Part::Html];

    /// The file name suffix of an override: `<message><suffix>`.
    pub fn suffix(self) -> &'static str {
        match self {
            Part::Subject => ".subject.txt",
            Part::Text => ".text.txt",
            Part::Html => ".html",
        }
    }
}

/// A named hole in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// The one-time code (digits).
    Code,
    /// The validity of the code in minutes (a number).
    ValidMinutes,
    /// The validity as a sentence in the message's language.
    Validity,
    /// The account's display name, from the directory.
    DisplayName,
    /// When the password was changed, e.g. `2026-11-24 20:15 UTC`.
    Time,
    /// What changed, a sentence: how the password was changed (self-service or by an
    /// administrator), or which contact method was added or removed (masked only).
    Change,
    /// The id of the account whose password was changed (admin alerts).
    UserId,
    /// The code as read out: its digits separated by commas, e.g. `4, 8, 1, 9`.
    SpokenCode,
    /// A sentence naming the policy's helpdesk contact; empty when none is set.
    Helpdesk,
}

impl Placeholder {
    const ALL: [Placeholder; 9] = [
        Placeholder::SpokenCode,
        Placeholder::Helpdesk,
        Placeholder::Code,
        Placeholder::ValidMinutes,
        Placeholder::Validity,
        Placeholder::DisplayName,
        Placeholder::Time,
        Placeholder::Change,
        Placeholder::UserId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Code => "code",
            Placeholder::ValidMinutes => "valid_minutes",
            Placeholder::Validity => "validity",
            Placeholder::DisplayName => "display_name",
            Placeholder::Time => "time",
            Placeholder::Change => "change",
            Placeholder::UserId => "user_id",
            Placeholder::SpokenCode => "spoken_code",
            Placeholder::Helpdesk => "helpdesk",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Why a template is refused. Names the problem, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("malformed template: {0}")]
    Malformed(String),
    #[error("unknown placeholder {{{{{name}}}}} (this message accepts: {allowed})")]
    UnknownPlaceholder { name: String, allowed: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Lit(String),
    Hole(Placeholder),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Segment>);

impl Template {
    /// Parses `source` for `message`: `{{name}}` (spaces inside allowed) must name one of the
    /// message's placeholders; a lone `{{` without `}}` is malformed.
    pub fn parse(message: MessageKind, source: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                segments.push(Segment::Lit(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Malformed("a {{ is not closed by }}".to_owned()))?;
            let name = after[..end].trim();
            if name.is_empty() || name.contains('{') {
                return Err(TemplateError::Malformed(
                    "empty or nested {{ }} placeholder".to_owned(),
                ));
            }
            let hole = Placeholder::from_name(name)
                .filter(|p| message.placeholders().contains(p))
                .ok_or_else(|| TemplateError::UnknownPlaceholder {
                    name: name.chars().take(40).collect(),
                    allowed: message
                        .placeholders()
                        .iter()
                        .map(|p| format!("{{{{{}}}}}", p.name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            segments.push(Segment::Hole(hole));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Lit(rest.to_owned()));
        }
        Ok(Self(segments))
    }

    /// Fills the holes; `escape` HTML-escapes the inserted values.
    fn render(&self, values: &Values, escape: bool) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Lit(s) => out.push_str(s),
                Segment::Hole(p) => {
                    let clean: String =
                        values.get(*p).chars().filter(|c| !c.is_control()).collect();
                    if escape {
                        out.push_str(&escape_html(&clean));
                    } else {
                        out.push_str(&clean);
                    }
                }
            }
        }
        out
    }
}

/// The values of one message.
#[derive(Debug, Default)]
pub struct Values(HashMap<Placeholder, String>);

impl Values {
    pub fn with(mut self, p: Placeholder, value: impl Into<String>) -> Self {
        self.0.insert(p, value.into());
        self
    }

    fn get(&self, p: Placeholder) -> &str {
        self.0.get(&p).map(String::as_str).unwrap_or_default()
    }
}

/// How a password was changed, as the `password.changed` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeReason {
    SelfService,
    Admin,
}

impl ChangeReason {
    /// `"self_service_reset"` or `"admin"`; anything else is not mailed about.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "self_service_reset" => Some(ChangeReason::SelfService),
            "admin" => Some(ChangeReason::Admin),
            _ => None,
        }
    }
}

/// A full set of templates: the built-in ones, with any operator overrides.
#[derive(Debug, Clone)]
pub struct Templates {
    parts: HashMap<(MessageKind, Locale, Part), Template>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::builtin()
    }
}

const LOCALES: [Locale; 2] = [Locale::En, Locale::Fr];

impl Templates {
    /// The built-in templates, every message in English and French.
    pub fn builtin() -> Self {
        let mut parts = HashMap::new();
        for message in MessageKind::ALL {
            for locale in LOCALES {
                let sources = match builtin_voice(message, locale) {
                    Some(words) => vec![(Part::Text, words.to_owned())],
                    None => {
                        let b = builtin(message, locale);
                        vec![
                            (Part::Subject, b.subject.to_owned()),
                            (Part::Text, b.text()),
                            (Part::Html, b.html(locale)),
                        ]
                    }
                };
                for (part, source) in sources {
                    // The built-in sources are constants, checked by the unit tests.
                    let template = Template::parse(message, &source)
                        .unwrap_or_else(|_| Template(vec![Segment::Lit(source.clone())]));
                    parts.insert((message, locale, part), template);
                }
            }
        }
        Self { parts }
    }

    /// Replaces one part with an operator's `source`.
    pub fn override_part(
        &mut self,
        message: MessageKind,
        locale: Locale,
        part: Part,
        source: &str,
    ) -> Result<(), TemplateError> {
        let template = Template::parse(message, source)?;
        self.parts.insert((message, locale, part), template);
        Ok(())
    }

    /// Renders `message` in `locale` with `values`.
    pub fn render(&self, message: MessageKind, locale: Locale, values: &Values) -> EmailContent {
        let part = |p: Part, escape: bool| {
            self.parts
                .get(&(message, locale, p))
                .map(|t| t.render(values, escape))
                .unwrap_or_default()
        };
        EmailContent {
            subject: part(Part::Subject, false).trim().to_owned(),
            text: drop_empty_text_paragraphs(&part(Part::Text, false)),
            html: part(Part::Html, true).replace("<p></p>\n", ""),
        }
    }

    /// The email carrying `code`.
    pub fn code_email(
        &self,
        purpose: Purpose,
        locale: Locale,
        code: &Code,
        valid_minutes: u32,
        helpdesk_contact: &str,
    ) -> EmailContent {
        let values = Values::default()
            .with(Placeholder::Code, code.expose())
            .with(Placeholder::ValidMinutes, valid_minutes.to_string())
            .with(Placeholder::Validity, validity(locale, valid_minutes))
            .with(Placeholder::Helpdesk, helpdesk(locale, helpdesk_contact));
        self.render(MessageKind::of_code(purpose), locale, &values)
    }

    /// The words a voice call reads out: the code digit by digit, then once more.
    pub fn voice(
        &self,
        purpose: Purpose,
        locale: Locale,
        code: &Code,
        valid_minutes: u32,
    ) -> String {
        let values = Values::default()
            .with(Placeholder::SpokenCode, spoken(code))
            .with(Placeholder::ValidMinutes, valid_minutes.to_string());
        self.render(MessageKind::of_voice(purpose), locale, &values)
            .text
            .trim()
            .to_owned()
    }

    /// The "your password was changed" email.
    pub fn password_changed(
        &self,
        locale: Locale,
        display_name: &str,
        at: DateTime<Utc>,
        reason: ChangeReason,
        helpdesk_contact: &str,
    ) -> EmailContent {
        let change = match (locale, reason) {
            (Locale::En, ChangeReason::SelfService) => {
                "It was reset with self-service password reset."
            }
            (Locale::En, ChangeReason::Admin) => "It was changed by an administrator.",
            (Locale::Fr, ChangeReason::SelfService) => "Il a été réinitialisé en libre-service.",
            (Locale::Fr, ChangeReason::Admin) => "Il a été modifié par un administrateur.",
        };
        let values = Values::default()
            .with(Placeholder::DisplayName, display_name)
            .with(Placeholder::Time, format_time(at))
            .with(Placeholder::Change, change)
            .with(Placeholder::Helpdesk, helpdesk(locale, helpdesk_contact));
        self.render(MessageKind::PasswordChanged, locale, &values)
    }

    /// The "a contact method of your account changed" notice; `change` is the sentence built by
    /// [`method_change_sentence`] (a masked destination only).
    pub fn method_changed(
        &self,
        locale: Locale,
        display_name: &str,
        at: DateTime<Utc>,
        change: &str,
        helpdesk_contact: &str,
    ) -> EmailContent {
        let values = Values::default()
            .with(Placeholder::DisplayName, display_name)
            .with(Placeholder::Time, format_time(at))
            .with(Placeholder::Change, change)
            .with(Placeholder::Helpdesk, helpdesk(locale, helpdesk_contact));
        self.render(MessageKind::MethodChanged, locale, &values)
    }

    /// The "an administrator's password was reset" alert.
    pub fn admin_alert(
        &self,
        locale: Locale,
        user_id: &str,
        display_name: &str,
        at: DateTime<Utc>,
    ) -> EmailContent {
        let values = Values::default()
            .with(Placeholder::UserId, user_id)
            .with(Placeholder::DisplayName, display_name)
            .with(Placeholder::Time, format_time(at));
        self.render(MessageKind::AdminAlert, locale, &values)
    }
}

/// What happened to a contact method, as a method-change notice says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodChange {
    /// Added (or confirmed again).
    Registered,
    Removed,
}

/// Which kind of method changed, for the notice's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLabel {
    Email,
    Sms,
    Voice,
    SecurityQuestions,
}

/// The sentence of a method-change notice, e.g. `The email address a•••@c•••.com was added to
/// your account for password reset.` `masked` is the MASKED destination from the event; control
/// characters are dropped and it is cut to 80 characters.
pub fn method_change_sentence(
    locale: Locale,
    change: MethodChange,
    label: MethodLabel,
    masked: &str,
) -> String {
    let masked: String = masked
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    let what = match (locale, label) {
        (Locale::En, MethodLabel::Email) => format!("The email address {masked}"),
        (Locale::En, MethodLabel::Sms) => format!("The mobile phone {masked} (text messages)"),
        (Locale::En, MethodLabel::Voice) => format!("The phone {masked} (voice calls)"),
        (Locale::En, MethodLabel::SecurityQuestions) => {
            format!("Security questions ({masked})")
        }
        (Locale::Fr, MethodLabel::Email) => format!("L'adresse e-mail {masked}"),
        (Locale::Fr, MethodLabel::Sms) => format!("Le téléphone mobile {masked} (SMS)"),
        (Locale::Fr, MethodLabel::Voice) => format!("Le téléphone {masked} (appels vocaux)"),
        (Locale::Fr, MethodLabel::SecurityQuestions) => {
            format!("Des questions de sécurité ({masked})")
        }
    };
    let verb = match (locale, change, label) {
        (Locale::En, MethodChange::Registered, MethodLabel::SecurityQuestions) => {
            "were set for your account for password reset."
        }
        (Locale::En, MethodChange::Registered, _) => {
            "was added to (or confirmed again for) your account for password reset."
        }
        (Locale::En, MethodChange::Removed, MethodLabel::SecurityQuestions) => {
            "were removed from your account."
        }
        (Locale::En, MethodChange::Removed, _) => "was removed from your account.",
        (Locale::Fr, MethodChange::Registered, MethodLabel::SecurityQuestions) => {
            "ont été définies pour la réinitialisation du mot de passe de votre compte."
        }
        (Locale::Fr, MethodChange::Registered, MethodLabel::Email) => {
            "a été ajoutée à votre compte (ou confirmée à nouveau) pour la réinitialisation du mot de passe."
        }
        (Locale::Fr, MethodChange::Registered, _) => {
            "a été ajouté à votre compte (ou confirmé à nouveau) pour la réinitialisation du mot de passe."
        }
        (Locale::Fr, MethodChange::Removed, MethodLabel::SecurityQuestions) => {
            "ont été supprimées de votre compte."
        }
        (Locale::Fr, MethodChange::Removed, MethodLabel::Email) => {
            "a été supprimée de votre compte."
        }
        (Locale::Fr, MethodChange::Removed, _) => "a été supprimé de votre compte.",
    };
    format!("{what} {verb}")
}

/// The SMS (or the words of a voice call) announcing a method change: short, no link.
pub fn method_changed_sms(locale: Locale, change: &str) -> String {
    match locale {
        Locale::En => format!("sspr: {change} If this was not you, contact your helpdesk now."),
        Locale::Fr => format!(
            "sspr : {change} Si vous n'êtes pas à l'origine de ce changement, contactez votre support informatique."
        ),
    }
}

/// `2026-11-24 20:15 UTC`: unambiguous in both languages.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn validity(locale: Locale, n: u32) -> String {
    match (locale, n) {
        (Locale::En, 1) => "This code is valid for 1 minute.".to_owned(),
        (Locale::En, n) => format!("This code is valid for {n} minutes."),
        (Locale::Fr, 1) => "Ce code est valable 1 minute.".to_owned(),
        (Locale::Fr, n) => format!("Ce code est valable {n} minutes."),
    }
}

/// The sentence naming the helpdesk, or nothing when no contact is set.
fn helpdesk(locale: Locale, contact: &str) -> String {
    let contact = contact.trim();
    match (locale, contact.is_empty()) {
        (_, true) => String::new(),
        (Locale::En, false) => format!("Need help? Contact your helpdesk: {contact}"),
        (Locale::Fr, false) => {
            format!("Besoin d'aide ? Contactez votre support informatique : {contact}")
        }
    }
}

/// The code as a voice reads it: `4, 8, 1, 9`.
fn spoken(code: &Code) -> String {
    code.expose()
        .chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text part without the paragraphs an empty value left blank: runs of blank lines become
/// one paragraph break.
fn drop_empty_text_paragraphs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        if line.trim().is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    // `split` yields one piece more than there are newlines.
    out.pop();
    out
}

/// The email carrying `code`, with the built-in templates and no helpdesk line.
pub fn email(purpose: Purpose, locale: Locale, code: &Code, valid_minutes: u32) -> EmailContent {
    Templates::builtin().code_email(purpose, locale, code, valid_minutes, "")
}

/// The words of a built-in voice message; `None` for a mail.
fn builtin_voice(message: MessageKind, locale: Locale) -> Option<&'static str> {
    Some(match (message, locale) {
        (MessageKind::ResetVoice, Locale::En) => {
            "Hello, this is sspr. Your password reset code is: {{spoken_code}}. I repeat: {{spoken_code}}. The code is valid for {{valid_minutes}} minutes. Never share it with anyone."
        }
        (MessageKind::RegistrationVoice, Locale::En) => {
            "Hello, this is sspr. Your verification code is: {{spoken_code}}. I repeat: {{spoken_code}}. The code is valid for {{valid_minutes}} minutes. Never share it with anyone."
        }
        (MessageKind::ResetVoice, Locale::Fr) => {
            "Bonjour, ici sspr. Votre code de réinitialisation du mot de passe est : {{spoken_code}}. Je répète : {{spoken_code}}. Ce code est valable {{valid_minutes}} minutes. Ne le communiquez à personne."
        }
        (MessageKind::RegistrationVoice, Locale::Fr) => {
            "Bonjour, ici sspr. Votre code de vérification est : {{spoken_code}}. Je répète : {{spoken_code}}. Ce code est valable {{valid_minutes}} minutes. Ne le communiquez à personne."
        }
        _ => return None,
    })
}

/// How a built-in paragraph is shown in HTML.
#[derive(Clone, Copy)]
enum Style {
    Plain,
    Code,
    Strong,
}

/// A built-in message: a subject and paragraphs, each a template source.
struct Builtin {
    subject: &'static str,
    paragraphs: Vec<(Style, &'static str)>,
}

impl Builtin {
    fn text(&self) -> String {
        let body: Vec<&str> = self.paragraphs.iter().map(|(_, p)| *p).collect();
        format!("{}\n\n-- \nsspr\n", body.join("\n\n"))
    }

    /// Literal text is escaped here; placeholders survive escaping (no special characters) and
    /// their values are escaped at render time.
    fn html(&self, locale: Locale) -> String {
        let e = escape_html;
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"{}\">\n<head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family:sans-serif;line-height:1.5\">\n",
            locale.as_str(),
            e(self.subject)
        );
        for (style, p) in &self.paragraphs {
            let p = e(p);
            html.push_str(&match style {
                Style::Plain => format!("<p>{p}</p>\n"),
                Style::Code => format!(
                    "<p style=\"font-family:monospace;font-size:28px;font-weight:bold;letter-spacing:4px\">{p}</p>\n"
                ),
                Style::Strong => format!("<p><strong>{p}</strong></p>\n"),
            });
        }
        html.push_str("<p style=\"color:#666\">sspr</p>\n</body>\n</html>\n");
        html
    }
}

fn builtin(message: MessageKind, locale: Locale) -> Builtin {
    use Style::{Code as C, Plain as P, Strong as S};
    const NEVER_SHARE_EN: &str = "Never share this code with anyone, not even someone who says they work for your IT support.";
    const NEVER_SHARE_FR: &str = "Ne communiquez jamais ce code à personne, pas même à quelqu'un qui se présente comme le support informatique.";
    match (message, locale) {
        (MessageKind::ResetCode, Locale::En) => Builtin {
            subject: "Your password reset code",
            paragraphs: vec![
                (P, "Hello,"),
                (P, "Use this code to reset your password:"),
                (C, "{{code}}"),
                (P, "{{validity}}"),
                (
                    P,
                    "If you did not ask to reset your password, ignore this message: your password stays as it is, and nobody can change it without this code.",
                ),
                (S, NEVER_SHARE_EN),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::RegistrationCode, Locale::En) => Builtin {
            subject: "Confirm your email address",
            paragraphs: vec![
                (P, "Hello,"),
                (
                    P,
                    "Use this code to confirm this email address for self-service password reset:",
                ),
                (C, "{{code}}"),
                (P, "{{validity}}"),
                (
                    P,
                    "If you did not add this email address, ignore this message: it will not be registered.",
                ),
                (S, NEVER_SHARE_EN),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::ResetCode, Locale::Fr) => Builtin {
            subject: "Votre code de réinitialisation du mot de passe",
            paragraphs: vec![
                (P, "Bonjour,"),
                (
                    P,
                    "Utilisez ce code pour réinitialiser votre mot de passe :",
                ),
                (C, "{{code}}"),
                (P, "{{validity}}"),
                (
                    P,
                    "Si vous n'avez pas demandé à réinitialiser votre mot de passe, ignorez ce message : votre mot de passe reste inchangé, et personne ne peut le modifier sans ce code.",
                ),
                (S, NEVER_SHARE_FR),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::RegistrationCode, Locale::Fr) => Builtin {
            subject: "Confirmez votre adresse e-mail",
            paragraphs: vec![
                (P, "Bonjour,"),
                (
                    P,
                    "Utilisez ce code pour confirmer cette adresse e-mail pour la réinitialisation du mot de passe en libre-service :",
                ),
                (C, "{{code}}"),
                (P, "{{validity}}"),
                (
                    P,
                    "Si vous n'avez pas ajouté cette adresse e-mail, ignorez ce message : elle ne sera pas enregistrée.",
                ),
                (S, NEVER_SHARE_FR),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::PasswordChanged, Locale::En) => Builtin {
            subject: "Your password was changed",
            paragraphs: vec![
                (P, "Hello {{display_name}},"),
                (
                    P,
                    "The password of your account was changed on {{time}}. {{change}}",
                ),
                (S, "If this was not you, contact your helpdesk immediately."),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::PasswordChanged, Locale::Fr) => Builtin {
            subject: "Votre mot de passe a été modifié",
            paragraphs: vec![
                (P, "Bonjour {{display_name}},"),
                (
                    P,
                    "Le mot de passe de votre compte a été modifié le {{time}}. {{change}}",
                ),
                (
                    S,
                    "Si vous n'êtes pas à l'origine de ce changement, contactez immédiatement votre support informatique.",
                ),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::StepUpCode, Locale::En) => Builtin {
            subject: "Your verification code",
            paragraphs: vec![
                (P, "Hello,"),
                (
                    P,
                    "Use this code to confirm it is you before the contact methods of your account for password reset are changed:",
                ),
                (C, "{{code}}"),
                (P, "{{validity}}"),
                (
                    S,
                    "If you did not ask for this code, someone may know your password: change it and contact your helpdesk.",
                ),
                (S, NEVER_SHARE_EN),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::StepUpCode, Locale::Fr) => Builtin {
            subject: "Votre code de vérification",
            paragraphs: vec![
                (P, "Bonjour,"),
                (
                    P,
                    "Utilisez ce code pour confirmer votre identité avant toute modification des moyens de contact de votre compte pour la réinitialisation du mot de passe :",
                ),
                (C, "{{code}}"),
                (P, "{{validity}}"),
                (
                    S,
                    "Si vous n'avez pas demandé ce code, quelqu'un connaît peut-être votre mot de passe : changez-le et contactez votre support informatique.",
                ),
                (S, NEVER_SHARE_FR),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::MethodChanged, Locale::En) => Builtin {
            subject: "A contact method of your account changed",
            paragraphs: vec![
                (P, "Hello {{display_name}},"),
                (P, "{{change}}"),
                (P, "This happened on {{time}}."),
                (
                    S,
                    "If this was not you, someone may know your password: change it and contact your helpdesk immediately.",
                ),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::MethodChanged, Locale::Fr) => Builtin {
            subject: "Un moyen de contact de votre compte a changé",
            paragraphs: vec![
                (P, "Bonjour {{display_name}},"),
                (P, "{{change}}"),
                (P, "Date du changement : {{time}}."),
                (
                    S,
                    "Si vous n'êtes pas à l'origine de ce changement, quelqu'un connaît peut-être votre mot de passe : changez-le et contactez immédiatement votre support informatique.",
                ),
                (P, "{{helpdesk}}"),
            ],
        },
        (MessageKind::AdminAlert, Locale::En) => Builtin {
            subject: "Administrator password reset: {{user_id}}",
            paragraphs: vec![
                (P, "Hello,"),
                (
                    P,
                    "The password of the administrator account {{user_id}} ({{display_name}}) was reset on {{time}}.",
                ),
                (
                    S,
                    "If this reset was not expected, contact your helpdesk immediately and check the account.",
                ),
            ],
        },
        (MessageKind::AdminAlert, Locale::Fr) => Builtin {
            subject: "Réinitialisation du mot de passe d'un administrateur : {{user_id}}",
            paragraphs: vec![
                (P, "Bonjour,"),
                (
                    P,
                    "Le mot de passe du compte administrateur {{user_id}} ({{display_name}}) a été réinitialisé le {{time}}.",
                ),
                (
                    S,
                    "Si cette réinitialisation n'était pas prévue, contactez immédiatement votre support informatique et vérifiez le compte.",
                ),
            ],
        },
        // Voice messages are words only, see `builtin_voice`.
        (MessageKind::ResetVoice | MessageKind::RegistrationVoice, _) => Builtin {
            subject: "",
            paragraphs: Vec::new(),
        },
    }
}

/// The SMS carrying `code`: short enough for one message.
pub fn sms(purpose: Purpose, locale: Locale, code: &Code, valid_minutes: u32) -> String {
    let code = code.expose();
    match (locale, MessageKind::of_code(purpose)) {
        (Locale::En, MessageKind::RegistrationCode | MessageKind::StepUpCode) => {
            format!("sspr verification code: {code} (valid {valid_minutes} min). Never share it.")
        }
        (Locale::En, _) => {
            format!("sspr password reset code: {code} (valid {valid_minutes} min). Never share it.")
        }
        (Locale::Fr, MessageKind::RegistrationCode | MessageKind::StepUpCode) => format!(
            "Code de vérification sspr : {code} (valable {valid_minutes} min). Ne le communiquez à personne."
        ),
        (Locale::Fr, _) => format!(
            "Code sspr de réinitialisation : {code} (valable {valid_minutes} min). Ne le communiquez à personne."
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
    use chrono::TimeZone;

    use super::*;

    fn code() -> Code {
        Code::parse("04719253").expect("digits")
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 20, 15, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn every_builtin_template_parses() {
        for message in MessageKind::ALL {
            for locale in LOCALES {
                let b = builtin(message, locale);
                Template::parse(message, b.subject).expect("subject");
                Template::parse(message, &b.text()).expect("text");
                Template::parse(message, &b.html(locale)).expect("html");
            }
        }
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
    fn sms_is_short_and_carries_the_code() {
        for purpose in [Purpose::Reset, Purpose::Registration] {
            for locale in LOCALES {
                let body = sms(purpose, locale, &code(), 10);
                assert!(body.contains("04719253"), "{body}");
                assert!(body.chars().count() <= 160, "{body}");
            }
        }
        assert_eq!(
            sms(Purpose::Reset, Locale::En, &code(), 10),
            "sspr password reset code: 04719253 (valid 10 min). Never share it."
        );
    }

    #[test]
    fn password_changed_mail_names_the_time_and_the_helpdesk_per_reason() {
        let t = Templates::builtin();
        let m = t.password_changed(Locale::En, "Alice", at(), ChangeReason::SelfService, "");
        assert_eq!(m.subject, "Your password was changed");
        assert!(m.text.contains("Hello Alice,"), "{}", m.text);
        assert!(m.text.contains("2026-11-24 20:15 UTC"));
        assert!(m.text.contains("self-service"));
        assert!(m.text.contains("contact your helpdesk"));
        assert!(m.html.contains("2026-11-24 20:15 UTC"));
        let admin = t.password_changed(Locale::En, "Alice", at(), ChangeReason::Admin, "");
        assert!(admin.text.contains("by an administrator"));
        let fr = t.password_changed(Locale::Fr, "Alice", at(), ChangeReason::SelfService, "");
        assert_eq!(fr.subject, "Votre mot de passe a été modifié");
        assert!(fr.text.contains("support informatique"));
        assert!(fr.html.contains("lang=\"fr\""));
    }

    #[test]
    fn admin_alert_names_the_account_and_time() {
        let t = Templates::builtin();
        let m = t.admin_alert(Locale::En, "root-admin", "Root", at());
        assert_eq!(m.subject, "Administrator password reset: root-admin");
        assert!(m.text.contains("root-admin (Root)"));
        assert!(m.text.contains("2026-11-24 20:15 UTC"));
        let fr = t.admin_alert(Locale::Fr, "root-admin", "Root", at());
        assert!(fr.subject.starts_with("Réinitialisation"));
    }

    #[test]
    fn voice_reads_the_code_digit_by_digit_twice() {
        let t = Templates::builtin();
        let en = t.voice(Purpose::Reset, Locale::En, &code(), 10);
        assert_eq!(
            en,
            "Hello, this is sspr. Your password reset code is: 0, 4, 7, 1, 9, 2, 5, 3. I repeat: \
             0, 4, 7, 1, 9, 2, 5, 3. The code is valid for 10 minutes. Never share it with anyone."
        );
        let registration = t.voice(Purpose::Registration, Locale::En, &code(), 10);
        assert!(registration.contains("verification code is: 0, 4, 7"));
        let fr = t.voice(Purpose::Reset, Locale::Fr, &code(), 10);
        assert!(fr.contains("Je répète : 0, 4, 7, 1, 9, 2, 5, 3."), "{fr}");
        for words in [en, registration, fr] {
            assert_eq!(words.matches("0, 4, 7, 1, 9, 2, 5, 3").count(), 2);
            assert!(
                !words.contains("04719253"),
                "the code is never read as one number"
            );
        }
    }

    #[test]
    fn helpdesk_contact_is_named_when_set_and_escaped_in_html() {
        let t = Templates::builtin();
        let contact = "Call <x> & ask for \"IT\"\r\n";
        for purpose in [Purpose::Reset, Purpose::Registration] {
            let m = t.code_email(purpose, Locale::En, &code(), 10, contact);
            assert!(
                m.text
                    .contains("Contact your helpdesk: Call <x> & ask for \"IT\""),
                "{}",
                m.text
            );
            assert!(
                m.html
                    .contains("Contact your helpdesk: Call &lt;x&gt; &amp; ask for &quot;IT&quot;"),
                "{}",
                m.html
            );
            assert!(!m.html.contains("<x>"));
        }
        let m = t.password_changed(
            Locale::Fr,
            "A",
            at(),
            ChangeReason::SelfService,
            "https://help.example.com",
        );
        assert!(
            m.text
                .contains("support informatique : https://help.example.com")
        );
        assert!(
            m.html
                .contains("support informatique : https://help.example.com")
        );
        // Unset: no helpdesk line, no empty paragraph, no run of blank lines.
        let m = t.code_email(Purpose::Reset, Locale::En, &code(), 10, " ");
        assert!(!m.text.contains("helpdesk:"), "{}", m.text);
        assert!(!m.text.contains("\n\n\n"), "{:?}", m.text);
        assert!(!m.html.contains("<p></p>"), "{}", m.html);
        assert!(
            m.text.ends_with(
                "anyone, not even someone who says they work for your IT support.\n\n-- \nsspr\n"
            ),
            "{:?}",
            m.text
        );
    }

    #[test]
    fn values_are_escaped_in_html_and_stripped_of_control_characters() {
        let t = Templates::builtin();
        let m = t.password_changed(
            Locale::En,
            "<b>Eve</b>\r\nBcc: x",
            at(),
            ChangeReason::Admin,
            "",
        );
        assert!(
            m.html.contains("&lt;b&gt;Eve&lt;/b&gt;Bcc: x"),
            "{}",
            m.html
        );
        assert!(!m.html.contains("<b>"));
        assert!(m.text.contains("Hello <b>Eve</b>Bcc: x,"));
        let alert = t.admin_alert(Locale::En, "a\nb", "x", at());
        assert!(!alert.subject.contains('\n'));
    }

    #[test]
    fn overrides_replace_one_part_and_keep_the_rest() {
        let mut t = Templates::builtin();
        t.override_part(
            MessageKind::PasswordChanged,
            Locale::Fr,
            Part::Subject,
            "Mot de passe changé pour {{ display_name }}",
        )
        .expect("valid");
        t.override_part(
            MessageKind::PasswordChanged,
            Locale::Fr,
            Part::Html,
            "<p>{{display_name}} {{time}}</p>",
        )
        .expect("valid");
        let m = t.password_changed(Locale::Fr, "A&B", at(), ChangeReason::SelfService, "");
        assert_eq!(m.subject, "Mot de passe changé pour A&B");
        assert_eq!(m.html, "<p>A&amp;B 2026-11-24 20:15 UTC</p>");
        // The text part is still the built-in one, and English is untouched.
        assert!(m.text.contains("support informatique"));
        let en = t.password_changed(Locale::En, "A", at(), ChangeReason::SelfService, "");
        assert_eq!(en.subject, "Your password was changed");
    }

    #[test]
    fn overrides_with_unknown_placeholders_or_bad_syntax_are_refused() {
        let mut t = Templates::builtin();
        let err = t
            .override_part(
                MessageKind::PasswordChanged,
                Locale::En,
                Part::Text,
                "{{code}}",
            )
            .expect_err("code is not in a password-changed mail");
        assert!(
            matches!(&err, TemplateError::UnknownPlaceholder { name, .. } if name == "code"),
            "{err}"
        );
        assert!(err.to_string().contains("{{display_name}}"), "{err}");
        for bad in ["Hello {{display_name", "{{}}", "{{ {{time}} }}"] {
            assert!(
                matches!(
                    Template::parse(MessageKind::PasswordChanged, bad),
                    Err(TemplateError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(Template::parse(MessageKind::ResetCode, "{{password}}").is_err());
    }

    #[test]
    fn html_cannot_be_injected() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert!(Code::parse("<img src=x onerror=alert(1)>").is_err());
        let t = Templates::builtin();
        let mut all = Vec::new();
        for locale in LOCALES {
            for purpose in [Purpose::Reset, Purpose::Registration] {
                all.push(t.code_email(purpose, locale, &code(), 10, ""));
            }
            all.push(t.password_changed(locale, "<x>", at(), ChangeReason::SelfService, ""));
            all.push(t.admin_alert(locale, "u", "<x>", at()));
        }
        for m in all {
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
