//! User and group ids: 1 to 128 characters of `A-Z a-z 0-9 . _ @ -`, compared exactly.
//!
//! Invariant: a [`UserId`] or [`GroupId`] value always satisfies that rule; they are built only
//! by `parse`. The charset keeps ids safe in logs, subjects, URLs and comma-separated lists.

use std::fmt;

/// Longest id, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// What every id must look like, for messages.
pub const ID_RULE: &str = "must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '@' or '-'";

fn is_valid_id(raw: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&raw.chars().count())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

/// The id of an account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Option<Self> {
        is_valid_id(raw).then(|| Self(raw.to_owned()))
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

/// The id of a group an account belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(String);

impl GroupId {
    pub fn parse(raw: &str) -> Option<Self> {
        is_valid_id(raw).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_charset_and_lengths() {
        for ok in ["a", "alice", "Alice.Smith_2@corp-x", &"x".repeat(128)] {
            assert!(UserId::parse(ok).is_some(), "{ok:?}");
            assert!(GroupId::parse(ok).is_some(), "{ok:?}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let long = "x".repeat(129);
        for bad in [
            "",
            " ",
            "a b",
            "a,b",
            "a/b",
            "ä",
            "a\n",
            "*",
            ">",
            long.as_str(),
        ] {
            assert!(UserId::parse(bad).is_none(), "{bad:?}");
            assert!(GroupId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_case_sensitive_and_kept_as_given() {
        let id = UserId::parse("Alice").expect("valid");
        assert_eq!(id.as_str(), "Alice");
        assert_ne!(Some(id), UserId::parse("alice"));
    }
}
