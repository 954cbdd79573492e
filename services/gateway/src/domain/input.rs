//! Shape checks for public input, applied before any NATS call.
//!
//! Each check returns the value to forward (sometimes trimmed, never truncated) or an
//! [`InvalidField`] naming the field and the rule it broke. Messages describe the rule only:
//! they never echo the value, because a rejected field may be a password, a code or a session
//! id.

use sspr_proto::common::v1::MethodKind;

/// Longest user id or group id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest locale tag (BCP 47 allows 35 characters in practice).
pub const MAX_LOCALE_CHARS: usize = 35;
/// Longest session id, in characters of the base64url alphabet.
pub const MAX_SESSION_ID_CHARS: usize = 128;
/// Longest method id.
pub const MAX_METHOD_ID_CHARS: usize = 64;
/// Code length bounds, in digits.
pub const MIN_CODE_DIGITS: usize = 6;
pub const MAX_CODE_DIGITS: usize = 10;
/// Longest destination (an email address is at most 320 characters).
pub const MAX_DESTINATION_CHARS: usize = 320;
/// Longest password, in bytes of UTF-8. Longer ones are refused, never cut.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// Most group ids in one request.
pub const MAX_GROUPS: usize = 256;

/// A field that broke an edge rule. Safe to show: it holds the field name and the rule, never
/// the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    pub field: &'static str,
    pub problem: String,
}

impl InvalidField {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

fn has_control(raw: &str) -> bool {
    raw.chars().any(char::is_control)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// An identifier such as a user id or group id: surrounding whitespace is trimmed, then it
/// must be 1 to 128 characters without control characters.
pub fn identifier<'a>(field: &'static str, raw: &'a str) -> Result<&'a str, InvalidField> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(InvalidField::new(field, "is required"));
    }
    if trimmed.chars().count() > MAX_ID_CHARS {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_ID_CHARS} characters"),
        ));
    }
    if has_control(trimmed) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed)
}

/// A user id (see [`identifier`]).
pub fn user_id(raw: &str) -> Result<&str, InvalidField> {
    identifier("user_id", raw)
}

/// An optional locale tag: empty, or up to 35 characters of `[A-Za-z0-9_-]`.
pub fn locale<'a>(field: &'static str, raw: &'a str) -> Result<&'a str, InvalidField> {
    if raw.chars().count() > MAX_LOCALE_CHARS {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_LOCALE_CHARS} characters"),
        ));
    }
    if !raw.chars().all(is_token_char) {
        return Err(InvalidField::new(
            field,
            "must be a language tag such as \"en\" or \"fr-CA\"",
        ));
    }
    Ok(raw)
}

/// A session id: 1 to 128 characters of the base64url alphabet (`[A-Za-z0-9_-]`).
pub fn session_id(raw: &str) -> Result<&str, InvalidField> {
    const FIELD: &str = "session_id";
    if raw.is_empty() {
        return Err(InvalidField::new(FIELD, "is required"));
    }
    if raw.len() > MAX_SESSION_ID_CHARS || !raw.chars().all(is_token_char) {
        return Err(InvalidField::new(FIELD, "is not a valid session id"));
    }
    Ok(raw)
}

/// A method id: 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn method_id(raw: &str) -> Result<&str, InvalidField> {
    const FIELD: &str = "method_id";
    if raw.is_empty() {
        return Err(InvalidField::new(FIELD, "is required"));
    }
    if raw.len() > MAX_METHOD_ID_CHARS || !raw.chars().all(is_token_char) {
        return Err(InvalidField::new(FIELD, "is not a valid method id"));
    }
    Ok(raw)
}

/// A one-time code: 6 to 10 ASCII digits and nothing else.
pub fn code(raw: &str) -> Result<&str, InvalidField> {
    const FIELD: &str = "code";
    if raw.is_empty() {
        return Err(InvalidField::new(FIELD, "is required"));
    }
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidField::new(FIELD, "must contain digits only"));
    }
    if !(MIN_CODE_DIGITS..=MAX_CODE_DIGITS).contains(&raw.len()) {
        return Err(InvalidField::new(
            FIELD,
            format!("must be {MIN_CODE_DIGITS} to {MAX_CODE_DIGITS} digits"),
        ));
    }
    Ok(raw)
}

/// A destination (email address or phone number): 1 to 320 characters, no control characters.
/// Its format is the enrolment service's business.
pub fn destination(raw: &str) -> Result<&str, InvalidField> {
    const FIELD: &str = "destination";
    if raw.is_empty() {
        return Err(InvalidField::new(FIELD, "is required"));
    }
    if raw.chars().count() > MAX_DESTINATION_CHARS {
        return Err(InvalidField::new(
            FIELD,
            format!("must be at most {MAX_DESTINATION_CHARS} characters"),
        ));
    }
    if has_control(raw) {
        return Err(InvalidField::new(
            FIELD,
            "must not contain control characters",
        ));
    }
    Ok(raw)
}

/// A password: 1 to 1024 bytes. Forwarded byte for byte: never trimmed, never truncated.
pub fn password<'a>(field: &'static str, raw: &'a str) -> Result<&'a str, InvalidField> {
    if raw.is_empty() {
        return Err(InvalidField::new(field, "is required"));
    }
    optional_password(field, raw)
}

/// A password that may be empty (meaning "keep the current one"), otherwise as [`password`].
pub fn optional_password<'a>(field: &'static str, raw: &'a str) -> Result<&'a str, InvalidField> {
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_PASSWORD_BYTES} bytes (it is never truncated)"),
        ));
    }
    Ok(raw)
}

/// A method kind: a known value other than `METHOD_KIND_UNSPECIFIED`.
pub fn method_kind(field: &'static str, raw: i32) -> Result<MethodKind, InvalidField> {
    match MethodKind::try_from(raw) {
        Ok(MethodKind::Unspecified) => Err(InvalidField::new(field, "is required")),
        Ok(kind) => Ok(kind),
        Err(_) => Err(InvalidField::new(field, "is not a known method kind")),
    }
}

/// A display name: up to 256 characters without control characters; empty is allowed.
pub fn display_name(raw: &str) -> Result<&str, InvalidField> {
    const FIELD: &str = "display_name";
    if raw.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(InvalidField::new(
            FIELD,
            format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    if has_control(raw) {
        return Err(InvalidField::new(
            FIELD,
            "must not contain control characters",
        ));
    }
    Ok(raw)
}

/// A list of group ids: at most 256, each an [`identifier`]; returned trimmed.
pub fn group_ids(field: &'static str, raw: &[String]) -> Result<Vec<String>, InvalidField> {
    if raw.len() > MAX_GROUPS {
        return Err(InvalidField::new(
            field,
            format!("must hold at most {MAX_GROUPS} group ids"),
        ));
    }
    raw.iter()
        .map(|g| identifier(field, g).map(str::to_owned))
        .collect()
}

/// Largest audit page.
pub const MAX_AUDIT_PAGE_SIZE: u32 = 500;
/// Longest audit kind (`<noun>.<verb>`).
pub const MAX_AUDIT_KIND_CHARS: usize = 64;
/// Longest audit page token.
pub const MAX_PAGE_TOKEN_CHARS: usize = 256;

/// An optional user id filter: empty, or an [`identifier`].
pub fn optional_user_id(raw: &str) -> Result<&str, InvalidField> {
    if raw.trim().is_empty() {
        Ok("")
    } else {
        identifier("user_id", raw)
    }
}

/// An optional audit kind filter: empty, or `<noun>.<verb>` of `[a-z_]` such as
/// `reset.completed`.
pub fn audit_kind(raw: &str) -> Result<&str, InvalidField> {
    const FIELD: &str = "kind";
    if raw.is_empty() {
        return Ok(raw);
    }
    let well_formed = raw.len() <= MAX_AUDIT_KIND_CHARS
        && raw.split('.').count() == 2
        && raw
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    if well_formed {
        Ok(raw)
    } else {
        Err(InvalidField::new(
            FIELD,
            "must be an event kind such as \"reset.completed\"",
        ))
    }
}

/// An audit page size: 0 (the default) or 1 to 500.
pub fn page_size(raw: u32) -> Result<u32, InvalidField> {
    if raw > MAX_AUDIT_PAGE_SIZE {
        return Err(InvalidField::new(
            "page_size",
            format!("must be at most {MAX_AUDIT_PAGE_SIZE}"),
        ));
    }
    Ok(raw)
}

/// An optional page token: empty, or up to 256 characters of `[A-Za-z0-9_-]`.
pub fn page_token(raw: &str) -> Result<&str, InvalidField> {
    if raw.len() > MAX_PAGE_TOKEN_CHARS || !raw.chars().all(is_token_char) {
        return Err(InvalidField::new("page_token", "is not a valid page token"));
    }
    Ok(raw)
}

/// Longest policy-preview page token (it carries a user id of up to 128 characters).
pub const MAX_PREVIEW_PAGE_TOKEN_CHARS: usize = 1024;

/// An optional policy-preview page token: empty, or up to 1,024 characters of `[A-Za-z0-9_-]`.
pub fn preview_page_token(raw: &str) -> Result<&str, InvalidField> {
    if raw.len() > MAX_PREVIEW_PAGE_TOKEN_CHARS || !raw.chars().all(is_token_char) {
        return Err(InvalidField::new("page_token", "is not a valid page token"));
    }
    Ok(raw)
}

/// An optional time range `[from, to)`: each bound a valid timestamp, `from` before `to`.
pub fn time_range(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Result<(), InvalidField> {
    let parse = |field: &'static str, t: Option<&prost_types::Timestamp>| match t {
        None => Ok(None),
        Some(t) => sspr_proto::time::from_timestamp(t)
            .map(Some)
            .ok_or_else(|| InvalidField::new(field, "is not a valid timestamp")),
    };
    let from = parse("from", from)?;
    let to = parse("to", to)?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(InvalidField::new("to", "must be after from"));
    }
    Ok(())
}

/// Password policy bounds checked at the edge (the policy service applies the full rules, e.g.
/// term length after normalisation and duplicates).
pub const PASSWORD_MIN_LENGTH: std::ops::RangeInclusive<u32> = 8..=256;
/// Most custom banned terms.
pub const MAX_BANNED_TERMS: usize = 1_000;
/// Longest custom banned term, in characters as given.
pub const MAX_BANNED_TERM_CHARS: usize = 64;
/// Longest organisation name, in characters.
pub const MAX_ORGANISATION_CHARS: usize = 256;
/// Most previous passwords a policy may refuse.
pub const MAX_PASSWORD_HISTORY: u32 = 24;

/// `policy.min_length`: 8 to 256.
pub fn password_min_length(raw: u32) -> Result<u32, InvalidField> {
    if !PASSWORD_MIN_LENGTH.contains(&raw) {
        return Err(InvalidField::new(
            "policy.min_length",
            format!(
                "must be {} to {}",
                PASSWORD_MIN_LENGTH.start(),
                PASSWORD_MIN_LENGTH.end()
            ),
        ));
    }
    Ok(raw)
}

/// `policy.custom_banned_terms`: at most 1,000 terms, each 1 to 64 characters (trimmed)
/// without control characters; returned trimmed.
pub fn banned_terms(raw: &[String]) -> Result<Vec<String>, InvalidField> {
    const FIELD: &str = "policy.custom_banned_terms";
    if raw.len() > MAX_BANNED_TERMS {
        return Err(InvalidField::new(
            FIELD,
            format!("must hold at most {MAX_BANNED_TERMS} terms"),
        ));
    }
    raw.iter()
        .map(|term| {
            let trimmed = term.trim();
            if trimmed.is_empty()
                || trimmed.chars().count() > MAX_BANNED_TERM_CHARS
                || has_control(trimmed)
            {
                Err(InvalidField::new(
                    FIELD,
                    format!(
                        "each term must be 1 to {MAX_BANNED_TERM_CHARS} characters without \
                         control characters"
                    ),
                ))
            } else {
                Ok(trimmed.to_owned())
            }
        })
        .collect()
}

/// `policy.organisation_name`: at most 256 characters (trimmed), no control characters; may
/// be empty.
pub fn organisation_name(raw: &str) -> Result<&str, InvalidField> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > MAX_ORGANISATION_CHARS || has_control(trimmed) {
        return Err(InvalidField::new(
            "policy.organisation_name",
            format!(
                "must be at most {MAX_ORGANISATION_CHARS} characters without control characters"
            ),
        ));
    }
    Ok(trimmed)
}

/// `policy.history_count`: 0 (off) to 24.
pub fn password_history(raw: u32) -> Result<u32, InvalidField> {
    if raw > MAX_PASSWORD_HISTORY {
        return Err(InvalidField::new(
            "policy.history_count",
            format!("must be 0 to {MAX_PASSWORD_HISTORY}"),
        ));
    }
    Ok(raw)
}

/// Longest re-confirmation period a policy may set, in days (0 = never).
pub const MAX_RECONFIRM_AFTER_DAYS: u32 = 730;

/// `policy.reconfirm_after_days`: 0 (never) to 730.
pub fn reconfirm_after_days(raw: u32) -> Result<u32, InvalidField> {
    if raw > MAX_RECONFIRM_AFTER_DAYS {
        return Err(InvalidField::new(
            "policy.reconfirm_after_days",
            format!("must be 0 (never) to {MAX_RECONFIRM_AFTER_DAYS}"),
        ));
    }
    Ok(raw)
}

/// Most prefixes in `policy.limits.phone_allowed_prefixes`.
pub const MAX_PHONE_PREFIXES: usize = 100;

/// `policy.limits.phone_allowed_prefixes`, cheaply: at most 100 entries of at most 5
/// characters each (`+` and up to 4 digits), so no oversized list travels on. The policy
/// service checks the form of each prefix and every other limit's range.
pub fn phone_prefixes(raw: &[String]) -> Result<(), InvalidField> {
    const FIELD: &str = "policy.limits.phone_allowed_prefixes";
    if raw.len() > MAX_PHONE_PREFIXES {
        return Err(InvalidField::new(
            FIELD,
            format!("must hold at most {MAX_PHONE_PREFIXES} prefixes"),
        ));
    }
    if raw.iter().any(|p| p.len() > 5) {
        return Err(InvalidField::new(
            FIELD,
            "must hold prefixes of '+' and 1 to 4 digits (e.g. +44)",
        ));
    }
    Ok(())
}

/// `destination_confirmation`: optional (empty is forwarded, verification decides whether the
/// policy needs it), at most 320 characters, no control characters. Never echoed.
pub fn destination_confirmation(raw: &str) -> Result<&str, InvalidField> {
    const FIELD: &str = "destination_confirmation";
    if raw.chars().count() > MAX_DESTINATION_CHARS {
        return Err(InvalidField::new(
            FIELD,
            format!("must be at most {MAX_DESTINATION_CHARS} characters"),
        ));
    }
    if has_control(raw) {
        return Err(InvalidField::new(
            FIELD,
            "must not contain control characters",
        ));
    }
    Ok(raw)
}

/// Longest helpdesk contact, in characters.
pub const MAX_HELPDESK_CONTACT_CHARS: usize = 256;

/// `policy.helpdesk_contact`: trimmed, at most 256 characters, no control characters; may be
/// empty. A URL, an email address or free text: the content is not interpreted.
pub fn helpdesk_contact(raw: &str) -> Result<&str, InvalidField> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > MAX_HELPDESK_CONTACT_CHARS || has_control(trimmed) {
        return Err(InvalidField::new(
            "policy.helpdesk_contact",
            format!(
                "must be at most {MAX_HELPDESK_CONTACT_CHARS} characters without control characters"
            ),
        ));
    }
    Ok(trimmed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reconfirm_after_days_is_bounded() {
        assert_eq!(reconfirm_after_days(0).unwrap(), 0);
        assert_eq!(reconfirm_after_days(730).unwrap(), 730);
        let err = reconfirm_after_days(731).unwrap_err();
        assert_eq!(err.field, "policy.reconfirm_after_days");
    }

    #[test]
    fn phone_prefix_lists_are_bounded_at_the_edge() {
        assert!(phone_prefixes(&["+44".into(), "+1264".into()]).is_ok());
        let long = phone_prefixes(&["+441234".into()]).unwrap_err();
        assert_eq!(long.field, "policy.limits.phone_allowed_prefixes");
        let many: Vec<String> = (0..101).map(|_| "+1".to_owned()).collect();
        assert!(phone_prefixes(&many).is_err());
    }

    #[test]
    fn audit_filters_are_checked() {
        assert_eq!(optional_user_id("  "), Ok(""));
        assert_eq!(optional_user_id(" bob "), Ok("bob"));
        assert!(optional_user_id("b\u{0}ob").is_err());
        assert_eq!(audit_kind(""), Ok(""));
        assert_eq!(audit_kind("reset.completed"), Ok("reset.completed"));
        assert_eq!(audit_kind("reset").unwrap_err().field, "kind");
        assert!(audit_kind("Reset.completed").is_err());
        assert!(audit_kind("a.b.c").is_err());
        assert!(audit_kind(".b").is_err());
        assert_eq!(page_size(0), Ok(0));
        assert_eq!(page_size(500), Ok(500));
        assert_eq!(page_size(501).unwrap_err().field, "page_size");
        assert_eq!(page_token("abc_-9"), Ok("abc_-9"));
        assert!(page_token("a b").is_err());
        assert!(page_token(&"a".repeat(257)).is_err());
        let t = |s: i64| prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        };
        assert!(time_range(None, None).is_ok());
        assert!(time_range(Some(&t(1)), Some(&t(2))).is_ok());
        assert_eq!(
            time_range(Some(&t(2)), Some(&t(2))).unwrap_err().field,
            "to"
        );
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(time_range(Some(&bad), None).unwrap_err().field, "from");
    }

    #[test]
    fn user_id_is_trimmed_and_bounded() {
        assert_eq!(user_id("  alice "), Ok("alice"));
        assert_eq!(user_id(&"é".repeat(128)).map(str::len), Ok(256));
        assert_eq!(user_id("").unwrap_err().field, "user_id");
        assert!(user_id("   ").is_err());
        assert!(user_id(&"a".repeat(129)).is_err());
        assert!(user_id("al\u{0}ice").is_err());
        assert!(user_id("al\nice").is_err());
        assert!(user_id("al\u{7f}ice").is_err());
    }

    #[test]
    fn locale_may_be_empty_but_not_odd() {
        assert_eq!(locale("locale", ""), Ok(""));
        assert_eq!(locale("locale", "fr-CA"), Ok("fr-CA"));
        assert_eq!(locale("locale", "zh_Hant_TW"), Ok("zh_Hant_TW"));
        assert!(locale("locale", &"a".repeat(35)).is_ok());
        assert!(locale("locale", &"a".repeat(36)).is_err());
        assert!(locale("locale", "en US").is_err());
        assert!(locale("locale", "en;q=1").is_err());
        assert!(locale("locale", "ünï").is_err());
    }

    #[test]
    fn session_id_uses_the_base64url_alphabet() {
        assert!(session_id("AbC-_09").is_ok());
        assert!(session_id(&"x".repeat(128)).is_ok());
        assert!(session_id(&"x".repeat(129)).is_err());
        assert!(session_id("").is_err());
        assert!(session_id("abc+/").is_err());
        assert!(session_id("abc=").is_err());
        assert!(session_id("abc def").is_err());
    }

    #[test]
    fn method_id_is_a_short_token() {
        assert!(method_id("0190a5f2-7c1e-7d3a-9f00-1234567890ab").is_ok());
        assert!(method_id(&"m".repeat(64)).is_ok());
        assert!(method_id(&"m".repeat(65)).is_err());
        assert!(method_id("").is_err());
        assert!(method_id("m.1").is_err());
    }

    #[test]
    fn code_is_six_to_ten_digits() {
        assert!(code("123456").is_ok());
        assert!(code("1234567890").is_ok());
        assert!(code("12345").is_err());
        assert!(code("12345678901").is_err());
        assert!(code("1234 5678").is_err());
        assert!(code("12345a78").is_err());
        assert!(code("１２３４５６").is_err());
        assert!(code("").is_err());
    }

    #[test]
    fn destination_is_bounded() {
        assert!(destination("alice@example.com").is_ok());
        assert!(destination("+33612345678").is_ok());
        assert!(destination(&"d".repeat(320)).is_ok());
        assert!(destination(&"d".repeat(321)).is_err());
        assert!(destination("").is_err());
        assert!(destination("a@b.c\r\nBcc: x@y.z").is_err());
    }

    #[test]
    fn password_counts_bytes_and_is_never_cut() {
        let max = "é".repeat(512);
        assert_eq!(max.len(), 1024);
        assert_eq!(password("password", &max), Ok(max.as_str()));
        let over = format!("{max}x");
        let err = password("new_password", &over).unwrap_err();
        assert_eq!(err.field, "new_password");
        assert!(password("password", "").is_err());
        assert_eq!(password("password", " spaces kept "), Ok(" spaces kept "));
        assert_eq!(optional_password("password", ""), Ok(""));
        assert!(optional_password("password", &over).is_err());
    }

    #[test]
    fn method_kind_must_be_known_and_set() {
        assert_eq!(
            method_kind("kind", MethodKind::Email as i32),
            Ok(MethodKind::Email)
        );
        assert_eq!(
            method_kind("kind", MethodKind::Sms as i32),
            Ok(MethodKind::Sms)
        );
        assert!(method_kind("kind", 0).is_err());
        assert!(method_kind("kind", 99).is_err());
        assert!(method_kind("kind", -1).is_err());
    }

    #[test]
    fn admin_fields() {
        assert!(display_name("").is_ok());
        assert!(display_name("Alice Liddell").is_ok());
        assert!(display_name(&"n".repeat(257)).is_err());
        assert!(display_name("a\tb").is_err());
        assert_eq!(
            group_ids("group_ids", &[" staff ".into()]),
            Ok(vec!["staff".to_owned()])
        );
        assert!(group_ids("group_ids", &["".into()]).is_err());
        assert!(group_ids("group_ids", &vec!["g".to_owned(); 257]).is_err());
    }

    #[test]
    fn password_policy_fields() {
        assert_eq!(password_min_length(8), Ok(8));
        assert_eq!(password_min_length(256), Ok(256));
        assert!(password_min_length(7).is_err());
        assert!(password_min_length(257).is_err());
        assert_eq!(
            banned_terms(&[" contoso ".into()]),
            Ok(vec!["contoso".to_owned()])
        );
        assert!(banned_terms(&["".into()]).is_err());
        assert!(banned_terms(&["a\nb".into()]).is_err());
        assert!(banned_terms(&["x".repeat(65)]).is_err());
        assert!(banned_terms(&vec!["term".to_owned(); 1_001]).is_err());
        assert_eq!(organisation_name(" Contoso "), Ok("Contoso"));
        assert_eq!(organisation_name(""), Ok(""));
        assert!(organisation_name(&"o".repeat(257)).is_err());
        assert_eq!(password_history(24), Ok(24));
        assert!(password_history(25).is_err());
    }

    #[test]
    fn messages_name_the_field_not_the_value() {
        let err = password("new_password", &"s3cret!".repeat(200)).unwrap_err();
        assert!(err.to_string().starts_with("new_password: "));
        assert!(!err.to_string().contains("s3cret"));
        let err = code("12ab56").unwrap_err();
        assert!(!err.to_string().contains("12ab56"));
    }

    #[test]
    fn destination_confirmation_is_optional_bounded_and_never_echoed() {
        assert_eq!(destination_confirmation("").unwrap(), "");
        assert_eq!(
            destination_confirmation(" Alice@Example.com ").unwrap(),
            " Alice@Example.com "
        );
        let max = "a".repeat(MAX_DESTINATION_CHARS);
        assert!(destination_confirmation(&max).is_ok());
        let long = "a".repeat(MAX_DESTINATION_CHARS + 1);
        assert!(destination_confirmation(&long).is_err());
        let err = destination_confirmation("secret\u{0}@x.y").unwrap_err();
        assert_eq!(err.field, "destination_confirmation");
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn helpdesk_contact_is_trimmed_and_bounded() {
        assert_eq!(helpdesk_contact("").unwrap(), "");
        assert_eq!(
            helpdesk_contact(" https://help.example.com ").unwrap(),
            "https://help.example.com"
        );
        assert!(helpdesk_contact(&"h".repeat(MAX_HELPDESK_CONTACT_CHARS)).is_ok());
        assert!(helpdesk_contact(&"h".repeat(MAX_HELPDESK_CONTACT_CHARS + 1)).is_err());
        let err = helpdesk_contact("a\nb").unwrap_err();
        assert_eq!(err.field, "policy.helpdesk_contact");
    }
}
