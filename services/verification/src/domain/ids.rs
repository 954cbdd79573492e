//! Typed values taken from requests: user ids, method ids, flow ids, locales, client IPs.
//!
//! Each is built only by `parse`, so a handler that holds one knows it is well-formed. Parse
//! errors name the field and the rule, never echo the value (it may be anything a caller sent).

use std::fmt;

/// A request field that broke its rule; shown to the caller as `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InputError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl InputError {
    pub const fn new(field: &'static str, problem: &'static str) -> Self {
        Self { field, problem }
    }
}

fn printable_1_to(max: usize, raw: &str) -> bool {
    let len = raw.chars().count();
    (1..=max).contains(&len) && !raw.chars().any(char::is_control)
}

/// Identifies a user in the directory: 1..=128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InputError> {
        if printable_1_to(Self::MAX_CHARS, raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::new(
                "user_id",
                "must be 1 to 128 characters without control characters",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies a registered (or being registered) contact method; opaque, chosen by enrolment.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct MethodId(String);

impl MethodId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InputError> {
        if printable_1_to(Self::MAX_CHARS, raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::new(
                "method_id",
                "must be 1 to 128 characters without control characters",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MethodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The public id of a reset or registration flow; distinct from the secret session token.
/// Ours are UUID v7; flows started by enrolment may use any 1..=64 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowId(String);

impl FlowId {
    pub const MAX_CHARS: usize = 64;

    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id.to_string())
    }

    pub fn parse(raw: &str) -> Result<Self, InputError> {
        if printable_1_to(Self::MAX_CHARS, raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::new(
                "flow_id",
                "must be 1 to 64 characters without control characters",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A BCP 47-ish language tag such as `en` or `de-CH`; empty means "use the user's default".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    pub const MAX_CHARS: usize = 35;

    /// `Ok(None)` for an empty value.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, InputError> {
        if raw.is_empty() {
            return Ok(None);
        }
        let ok = raw.len() <= Self::MAX_CHARS
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Some(Self(raw.to_owned())))
        } else {
            Err(InputError::new(
                "locale",
                "must be a language tag such as en or de-CH",
            ))
        }
    }

    /// A locale from a trusted source (our own database or the directory); falls back to `en`.
    pub fn or_default(raw: &str) -> Self {
        Self::parse_optional(raw)
            .ok()
            .flatten()
            .unwrap_or_else(|| Self("en".to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The caller's IP as determined by the gateway; only recorded in `reset.started`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIp(String);

impl ClientIp {
    pub const MAX_CHARS: usize = 64;

    /// Empty is allowed (callers without a network peer, such as tests or the CLI).
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let ok = raw.len() <= Self::MAX_CHARS && raw.chars().all(|c| c.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::new("client_ip", "must be an IP address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_bounds_and_control_characters() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse(&"a".repeat(128)).is_ok());
        assert!(
            UserId::parse(&"é".repeat(128)).is_ok(),
            "counted in characters, not bytes"
        );
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
        assert!(UserId::parse("ali\nce").is_err());
        assert!(UserId::parse("ali\u{0}ce").is_err());
        let err = UserId::parse("").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("user_id must be 1 to 128 characters without control characters")
        );
    }

    #[test]
    fn method_and_flow_ids() {
        assert!(MethodId::parse("m-1").is_ok());
        assert!(MethodId::parse("").is_err());
        assert!(FlowId::parse(&"f".repeat(64)).is_ok());
        assert!(FlowId::parse(&"f".repeat(65)).is_err());
    }

    #[test]
    fn locales() {
        assert_eq!(Locale::parse_optional(""), Ok(None));
        assert_eq!(
            Locale::parse_optional("de-CH").ok().flatten().map(|l| l.0),
            Some("de-CH".to_owned())
        );
        assert!(Locale::parse_optional("de CH").is_err());
        assert!(Locale::parse_optional(&"a".repeat(36)).is_err());
        assert_eq!(Locale::or_default("").as_str(), "en");
        assert_eq!(Locale::or_default("fr").as_str(), "fr");
    }

    #[test]
    fn client_ips() {
        assert!(ClientIp::parse("").is_ok());
        assert!(ClientIp::parse("2001:db8::1").is_ok());
        assert!(ClientIp::parse("1.2.3.4 x").is_err());
        assert!(ClientIp::parse(&"1".repeat(65)).is_err());
    }
}
