//! Contact methods: the kinds a user can register and their destinations, parsed at the edge.
//!
//! Invariants:
//! - An [`Email`] or [`PhoneNumber`] that exists is valid and normalised (email domain
//!   lower-cased, phone reduced to `+` and digits), so equal destinations compare equal.
//! - Parse errors describe what is wrong without ever echoing the input: a destination is
//!   personal data and must not reach logs or error messages unmasked.

use std::fmt;

/// A kind of contact method; numbered as `sspr.common.v1.MethodKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodKind {
    Email,
    Sms,
    /// A phone call that reads the code out: a phone number, like [`MethodKind::Sms`].
    Voice,
}

impl MethodKind {
    /// The contract's number for this kind (also how it is stored).
    pub fn code(self) -> i32 {
        match self {
            MethodKind::Email => 1,
            MethodKind::Sms => 2,
            MethodKind::Voice => 3,
        }
    }

    /// The kind with the contract's number `code`; `None` for unspecified or unknown values.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(MethodKind::Email),
            2 => Some(MethodKind::Sms),
            3 => Some(MethodKind::Voice),
            _ => None,
        }
    }

    /// Lower-case name, for log fields and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Email => "email",
            MethodKind::Sms => "sms",
            MethodKind::Voice => "voice",
        }
    }
}

impl fmt::Display for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a destination was refused; the message is safe to show to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DestinationError(&'static str);

impl DestinationError {
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

/// A syntactically valid email address; the domain is lower-cased, the local part kept as typed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;
    pub const MAX_LOCAL_LEN: usize = 64;
    const MAX_LABEL_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, DestinationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(DestinationError("email address is required"));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(DestinationError(
                "email address is longer than 254 characters",
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DestinationError(
                "email address must not contain spaces or control characters",
            ));
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DestinationError(
                "email address must contain exactly one '@'",
            ));
        };
        if local.is_empty() {
            return Err(DestinationError(
                "email address needs a name before the '@'",
            ));
        }
        if local.chars().count() > Self::MAX_LOCAL_LEN {
            return Err(DestinationError(
                "the part of the email address before the '@' is longer than 64 characters",
            ));
        }
        if !domain.contains('.') {
            return Err(DestinationError(
                "email domain must contain a dot, e.g. example.com",
            ));
        }
        if domain.split('.').any(|label| label.is_empty()) {
            return Err(DestinationError(
                "email domain must not start or end with a dot or contain '..'",
            ));
        }
        if domain
            .split('.')
            .any(|label| label.chars().count() > Self::MAX_LABEL_LEN)
        {
            return Err(DestinationError(
                "email domain has a part longer than 63 characters",
            ));
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn split(&self) -> (&str, &str) {
        // Parsing guarantees exactly one '@'.
        self.0.split_once('@').unwrap_or((self.0.as_str(), ""))
    }

    /// `a•••@c•••.com`: first character of the local part and of the domain, and the top-level
    /// domain; nothing else of the address.
    pub fn masked(&self) -> String {
        let (local, domain) = self.split();
        let first_local = local.chars().next().unwrap_or('•');
        let first_domain = domain.chars().next().unwrap_or('•');
        let tld = domain.rsplit('.').next().unwrap_or_default();
        format!("{first_local}•••@{first_domain}•••.{tld}")
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs: show only the masked form.
        write!(f, "Email({})", self.masked())
    }
}

/// A phone number in E.164 form: `+` and 8 to 15 digits, the first not 0.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub const MIN_DIGITS: usize = 8;
    pub const MAX_DIGITS: usize = 15;

    /// Accepts common formatting (spaces, dashes, dots, parentheses), which is stripped.
    pub fn parse(raw: &str) -> Result<Self, DestinationError> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        if compact.is_empty() {
            return Err(DestinationError("phone number is required"));
        }
        let Some(digits) = compact.strip_prefix('+') else {
            return Err(DestinationError(
                "phone number must be in international format, starting with '+' and the country code",
            ));
        };
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(DestinationError(
                "phone number may only contain digits after the '+'",
            ));
        }
        if digits.len() < Self::MIN_DIGITS || digits.len() > Self::MAX_DIGITS {
            return Err(DestinationError(
                "phone number must have 8 to 15 digits after the '+'",
            ));
        }
        if digits.starts_with('0') {
            return Err(DestinationError(
                "phone number country code cannot start with 0",
            ));
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+•• •••• ••67`: only the last two digits.
    pub fn masked(&self) -> String {
        let digits = self.0.as_bytes();
        // Parsing guarantees at least 8 ASCII digits.
        let tail = self
            .0
            .get(digits.len().saturating_sub(2)..)
            .unwrap_or_default();
        format!("+•• •••• ••{tail}")
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// Where a code for a method is sent, typed by the method's kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Email(Email),
    Sms(PhoneNumber),
    Voice(PhoneNumber),
}

impl Destination {
    /// Parses `raw` as a destination of `kind`.
    pub fn parse(kind: MethodKind, raw: &str) -> Result<Self, DestinationError> {
        match kind {
            MethodKind::Email => Email::parse(raw).map(Destination::Email),
            MethodKind::Sms => PhoneNumber::parse(raw).map(Destination::Sms),
            MethodKind::Voice => PhoneNumber::parse(raw).map(Destination::Voice),
        }
    }

    pub fn kind(&self) -> MethodKind {
        match self {
            Destination::Email(_) => MethodKind::Email,
            Destination::Sms(_) => MethodKind::Sms,
            Destination::Voice(_) => MethodKind::Voice,
        }
    }

    /// The full, normalised destination. Only for storage and for addressing a delivery.
    pub fn as_str(&self) -> &str {
        match self {
            Destination::Email(e) => e.as_str(),
            Destination::Sms(p) | Destination::Voice(p) => p.as_str(),
        }
    }

    /// The form shown to users and put in events.
    pub fn masked(&self) -> String {
        match self {
            Destination::Email(e) => e.masked(),
            Destination::Sms(p) | Destination::Voice(p) => p.masked(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn phone(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn kind_codes_match_the_contract() {
        assert_eq!(MethodKind::Email.code(), 1);
        assert_eq!(MethodKind::Sms.code(), 2);
        assert_eq!(MethodKind::from_code(1), Some(MethodKind::Email));
        assert_eq!(MethodKind::from_code(2), Some(MethodKind::Sms));
        assert_eq!(MethodKind::Voice.code(), 3);
        assert_eq!(MethodKind::from_code(3), Some(MethodKind::Voice));
        assert_eq!(MethodKind::from_code(0), None);
        assert_eq!(MethodKind::from_code(99), None);
    }

    #[test]
    fn email_is_trimmed_and_domain_lower_cased() {
        assert_eq!(
            email("  Alice.Smith@Contoso.COM \n").as_str(),
            "Alice.Smith@contoso.com"
        );
    }

    #[test]
    fn email_rejects_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@contoso.com",
            "alice@contoso",
            "alice@@contoso.com",
            "a@b@contoso.com",
            "alice smith@contoso.com",
            "alice@contoso .com",
            "alice\u{0}@contoso.com",
            "alice\t@contoso.com",
            "alice@.contoso.com",
            "alice@contoso.com.",
            "alice@contoso..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn email_length_limits() {
        let local64 = "a".repeat(64);
        assert!(Email::parse(&format!("{local64}@contoso.com")).is_ok());
        assert!(Email::parse(&format!("a{local64}@contoso.com")).is_err());
        // 254 total is the limit.
        let domain = format!(
            "{}.{}.{}.com",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63)
        );
        let ok = format!("{}@{domain}", "a".repeat(254 - 1 - domain.len()));
        assert_eq!(ok.len(), 254);
        assert!(Email::parse(&ok).is_ok());
        let too_long = format!("{}@{domain}", "a".repeat(255 - 1 - domain.len()));
        assert!(Email::parse(&too_long).is_err());
        let long_label = format!("alice@{}.com", "x".repeat(64));
        assert!(Email::parse(&long_label).is_err());
    }

    #[test]
    fn errors_never_echo_the_input() {
        for (kind, bad) in [
            (MethodKind::Email, "secret.person@nowhere"),
            (MethodKind::Email, "secret person@example.com"),
            (MethodKind::Sms, "+0123456789"),
            (MethodKind::Sms, "0041791234567"),
            (MethodKind::Sms, "+41 79 123 45x7"),
        ] {
            let err = Destination::parse(kind, bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.is_empty(), "{bad:?} should be refused");
            assert!(!err.contains("secret"), "error {err:?} echoes the input");
            assert!(!err.contains("123"), "error {err:?} echoes the input");
        }
    }

    #[test]
    fn email_masking_shows_first_chars_and_tld_only() {
        assert_eq!(email("alice@contoso.com").masked(), "a•••@c•••.com");
        assert_eq!(email("a@b.co").masked(), "a•••@b•••.co");
        assert_eq!(email("bob@mail.eu.example.co.uk").masked(), "b•••@m•••.uk");
        assert_eq!(email("Ünïcode@Éxample.ORG").masked(), "Ü•••@é•••.org");
        let masked = email("jonathan.secretname@privatecorp.internal.example.com").masked();
        assert_eq!(masked, "j•••@p•••.com");
        for leaked in ["secret", "private", "internal", "example", "onathan"] {
            assert!(!masked.contains(leaked));
        }
    }

    #[test]
    fn phone_strips_formatting() {
        assert_eq!(phone("+41 (79) 123-45.67").as_str(), "+41791234567");
        assert_eq!(phone(" +1 555 010 0199 ").as_str(), "+15550100199");
    }

    #[test]
    fn phone_rejects_non_e164() {
        for bad in [
            "",
            "0791234567",
            "41791234567",
            "+",
            "+1234567",
            "+1234567890123456",
            "+4179123456a",
            "+41 79 123 45 67 ext 2",
            "++41791234567",
            "+0791234567",
            "+٤١٧٩١٢٣٤٥٦٧",
        ] {
            assert!(
                PhoneNumber::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(PhoneNumber::parse("+12345678").is_ok());
        assert!(PhoneNumber::parse("+123456789012345").is_ok());
    }

    #[test]
    fn phone_masking_shows_last_two_digits_only() {
        assert_eq!(phone("+41791234567").masked(), "+•• •••• ••67");
        assert_eq!(phone("+12345678").masked(), "+•• •••• ••78");
    }

    #[test]
    fn debug_output_is_masked() {
        let e = format!(
            "{:?}",
            Destination::parse(MethodKind::Email, "alice@contoso.com")
        );
        assert!(!e.contains("alice") && !e.contains("contoso"), "{e}");
        let p = format!("{:?}", Destination::parse(MethodKind::Sms, "+41791234567"));
        assert!(!p.contains("7912345"), "{p}");
    }

    #[test]
    fn destination_follows_its_kind() {
        let d = Destination::parse(MethodKind::Sms, "+41791234567").ok();
        assert_eq!(d.as_ref().map(Destination::kind), Some(MethodKind::Sms));
        assert!(Destination::parse(MethodKind::Sms, "alice@contoso.com").is_err());
        let v = Destination::parse(MethodKind::Voice, "+41 79 123 45 67").ok();
        assert_eq!(v.as_ref().map(Destination::kind), Some(MethodKind::Voice));
        assert_eq!(v.as_ref().map(Destination::as_str), Some("+41791234567"));
        assert_eq!(v.map(|d| d.masked()), Some("+•• •••• ••67".to_owned()));
        assert!(Destination::parse(MethodKind::Voice, "alice@contoso.com").is_err());
        assert!(Destination::parse(MethodKind::Email, "+41791234567").is_err());
    }
}
