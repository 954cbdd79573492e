//! Typed identifiers: [`UserId`], [`MethodId`], [`FlowId`] and [`Locale`].
//!
//! Each is built only by parsing (or, for ids enrolment mints, by `new`), so a value that exists
//! is well formed. None of them is secret: they may appear in logs, traces and events.

use std::fmt;

use uuid::Uuid;

/// Why an identifier was refused; the message is safe to show to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(&'static str);

/// A user id as the directory knows it: 1 to 128 characters, no control characters. Kept
/// exactly as given (the directory owns its spelling).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError("user_id is required"));
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(IdError("user_id is longer than 128 characters"));
        }
        if raw.chars().any(char::is_control) {
            return Err(IdError("user_id must not contain control characters"));
        }
        Ok(Self(raw.to_owned()))
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

/// The opaque id of a registered method: `m_` followed by a UUID v7 in simple (32 hex) form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodId(String);

impl MethodId {
    const PREFIX: &'static str = "m_";

    /// A fresh id, time-ordered so that ids sort roughly by creation.
    pub fn new() -> Self {
        Self(format!("{}{}", Self::PREFIX, Uuid::now_v7().simple()))
    }

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError("method_id is required"));
        }
        let well_formed = raw.strip_prefix(Self::PREFIX).is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !well_formed {
            return Err(IdError("unknown method"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MethodId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MethodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The public id of one registration flow (UUID v7), distinct from the secret session token;
/// carried by events so subscribers can correlate a flow's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId(Uuid);

impl FlowId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| IdError("flow_id is malformed"))
    }
}

impl Default for FlowId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A BCP 47-style language tag such as `en`, `de-CH` or `pt_BR`, used to word the code message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    pub const MAX_LEN: usize = 35;
    pub const FALLBACK: &'static str = "en";

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let s = raw.trim();
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError("locale must be a language tag such as en or de-CH"));
        }
        let well_formed = s.split(['-', '_']).all(|part| {
            !part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !well_formed {
            return Err(IdError("locale must be a language tag such as en or de-CH"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The first of `candidates` that is a valid locale, else English.
    pub fn first_valid<'a>(candidates: impl IntoIterator<Item = &'a str>) -> Self {
        candidates
            .into_iter()
            .find_map(|c| Self::parse(c).ok())
            .unwrap_or_else(|| Self(Self::FALLBACK.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_limits() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"u".repeat(128)).is_ok());
        assert!(UserId::parse(&"u".repeat(129)).is_err());
        assert!(UserId::parse("alice\n").is_err());
        assert_eq!(
            UserId::parse("Alice@Contoso")
                .map(|u| u.to_string())
                .ok()
                .as_deref(),
            Some("Alice@Contoso")
        );
    }

    #[test]
    fn method_ids_round_trip_and_reject_garbage() {
        let id = MethodId::new();
        assert!(id.as_str().starts_with("m_"));
        assert_eq!(id.as_str().len(), 34);
        assert_eq!(MethodId::parse(id.as_str()).ok(), Some(id));
        for bad in [
            "",
            "m_",
            "x_0190f0e4c8a87e3a9f0c2b1d4e5f6a7b",
            "m_0190F0E4C8A87E3A9F0C2B1D4E5F6A7B",
            "m_123",
            "m_0190f0e4c8a87e3a9f0c2b1d4e5f6a7bz",
        ] {
            assert!(MethodId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn method_ids_are_unique_and_time_ordered() {
        let a = MethodId::new();
        let b = MethodId::new();
        assert_ne!(a, b);
        assert!(a.as_str() < b.as_str());
    }

    #[test]
    fn flow_id_is_a_uuid() {
        let f = FlowId::new();
        assert_eq!(FlowId::parse(&f.to_string()).ok(), Some(f));
        assert!(FlowId::parse("nope").is_err());
    }

    #[test]
    fn locale_rules() {
        for ok in ["en", "de-CH", "pt_BR", "zh-Hant-TW"] {
            assert!(Locale::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "en-", "e n", "de/CH", "<script>", "en-toolongsubtag"] {
            assert!(Locale::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Locale::first_valid(["", "fr"]).as_str(), "fr");
        assert_eq!(Locale::first_valid(["", "??"]).as_str(), "en");
    }
}
