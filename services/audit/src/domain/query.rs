//! What a `list_events` query may ask, checked once at the edge.
//!
//! Records are ordered by `(occurred_at, event_id)`; a page token is the position of the last
//! record of the previous page, opaque to callers (base64url of `v1:<micros>:<event_id>`), so
//! paging is stable while new records arrive.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Longest user id filter.
pub const MAX_USER_ID_CHARS: usize = 128;
/// Longest kind filter.
pub const MAX_KIND_CHARS: usize = 64;
/// Longest page token.
pub const MAX_PAGE_TOKEN_CHARS: usize = 256;

/// A query input that broke a rule; the message names the field, never echoes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidQuery {
    pub field: &'static str,
    pub problem: &'static str,
}

fn invalid(field: &'static str, problem: &'static str) -> InvalidQuery {
    InvalidQuery { field, problem }
}

/// A position in the log: records strictly after it come next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Microseconds since the Unix epoch.
    pub occurred_at_us: i64,
    pub event_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", self.occurred_at_us, self.event_id))
    }

    pub fn decode(token: &str) -> Result<Cursor, InvalidQuery> {
        let bad = || invalid("page_token", "is not a valid page token");
        if token.len() > MAX_PAGE_TOKEN_CHARS {
            return Err(bad());
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let rest = raw.strip_prefix("v1:").ok_or_else(bad)?;
        let (micros, event_id) = rest.split_once(':').ok_or_else(bad)?;
        let occurred_at_us = micros.parse().map_err(|_| bad())?;
        if event_id.is_empty() {
            return Err(bad());
        }
        Ok(Cursor {
            occurred_at_us,
            event_id: event_id.to_owned(),
        })
    }
}

/// A checked query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub user_id: Option<String>,
    pub kind: Option<String>,
    /// Inclusive lower bound, microseconds.
    pub from_us: Option<i64>,
    /// Exclusive upper bound, microseconds.
    pub to_us: Option<i64>,
    pub page_size: u32,
    pub after: Option<Cursor>,
}

/// The raw inputs of a query.
pub struct RawQuery<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub page_size: u32,
    pub page_token: &'a str,
}

impl ListQuery {
    pub fn parse(raw: RawQuery<'_>) -> Result<ListQuery, InvalidQuery> {
        let user_id = raw.user_id.trim();
        if user_id.chars().count() > MAX_USER_ID_CHARS || user_id.chars().any(char::is_control) {
            return Err(invalid(
                "user_id",
                "must be at most 128 characters without control characters",
            ));
        }
        let kind = raw.kind.trim();
        let kind_ok = kind.is_empty()
            || (kind.len() <= MAX_KIND_CHARS
                && kind.split('.').count() == 2
                && kind.split('.').all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }));
        if !kind_ok {
            return Err(invalid(
                "kind",
                "must be an event kind such as \"reset.completed\"",
            ));
        }
        let page_size = match raw.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            _ => return Err(invalid("page_size", "must be at most 500")),
        };
        let from_us = raw.from.map(|t| t.timestamp_micros());
        let to_us = raw.to.map(|t| t.timestamp_micros());
        if let (Some(from), Some(to)) = (from_us, to_us)
            && from >= to
        {
            return Err(invalid("to", "must be after from"));
        }
        let after = if raw.page_token.is_empty() {
            None
        } else {
            Some(Cursor::decode(raw.page_token)?)
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(ListQuery {
            user_id: non_empty(user_id),
            kind: non_empty(kind),
            from_us,
            to_us,
            page_size,
            after,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw<'a>() -> RawQuery<'a> {
        RawQuery {
            user_id: "",
            kind: "",
            from: None,
            to: None,
            page_size: 0,
            page_token: "",
        }
    }

    #[test]
    fn defaults() {
        let q = ListQuery::parse(raw()).unwrap();
        assert_eq!(q.page_size, 50);
        assert_eq!((q.user_id, q.kind, q.after), (None, None, None));
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let cases = [
            RawQuery {
                page_size: 501,
                ..raw()
            },
            RawQuery {
                kind: "Reset.done",
                ..raw()
            },
            RawQuery {
                kind: "reset",
                ..raw()
            },
            RawQuery {
                user_id: "a\u{0}",
                ..raw()
            },
            RawQuery {
                page_token: "not a token",
                ..raw()
            },
            RawQuery {
                from: DateTime::from_timestamp(10, 0),
                to: DateTime::from_timestamp(10, 0),
                ..raw()
            },
        ];
        let fields: Vec<&str> = cases
            .into_iter()
            .map(|c| ListQuery::parse(c).unwrap_err().field)
            .collect();
        assert_eq!(
            fields,
            ["page_size", "kind", "kind", "user_id", "page_token", "to"]
        );
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            occurred_at_us: 1_700_000_000_123_456,
            event_id: "0192a-b:c".into(),
        };
        let token = c.encode();
        assert!(
            token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        );
        assert_eq!(Cursor::decode(&token).unwrap(), c);
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v2:1:x")).is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v1:x:y")).is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v1:1:")).is_err());
    }
}
