//! An account as the directory keeps it.
//!
//! Invariants:
//! - A [`Profile`] is valid by construction ([`Profile::parse`]): a valid user id, a display
//!   name of at most [`MAX_DISPLAY_NAME_CHARS`] characters, a locale of at most
//!   [`MAX_LOCALE_CHARS`] characters of `A-Z a-z 0-9 _ -`, and at most [`MAX_GROUPS`] distinct
//!   valid group ids.
//! - Input is refused, never trimmed or truncated; the refusal names the field.
//! - A [`User`] never exposes its password hash in `Debug` output.

use std::collections::BTreeSet;

use crate::domain::ids::{GroupId, ID_RULE, UserId};
use crate::domain::password::PasswordHash;

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// Longest locale tag, in characters (BCP 47 tags fit in 35).
pub const MAX_LOCALE_CHARS: usize = 35;
/// Most groups an account may belong to.
pub const MAX_GROUPS: usize = 100;

/// Why account input was refused; the message names the field and is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("user_id {ID_RULE}")]
    UserId,
    #[error("display_name must be at most {MAX_DISPLAY_NAME_CHARS} characters")]
    DisplayName,
    #[error("locale must be at most {MAX_LOCALE_CHARS} characters of A-Z, a-z, 0-9, '_' or '-'")]
    Locale,
    #[error("group_ids has {count} entries; at most {MAX_GROUPS} are allowed")]
    TooManyGroups { count: usize },
    #[error("group_ids[{index}] {ID_RULE}")]
    GroupId { index: usize },
    #[error("group_ids[{index}] repeats an earlier group")]
    DuplicateGroupId { index: usize },
}

/// A display name such as "Alice Example"; may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.chars().count() > MAX_DISPLAY_NAME_CHARS || raw.chars().any(char::is_control) {
            return Err(InvalidInput::DisplayName);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A locale tag such as "en" or "de-CH"; empty means "no preference".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let valid = raw.chars().count() <= MAX_LOCALE_CHARS
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        valid
            .then(|| Self(raw.to_owned()))
            .ok_or(InvalidInput::Locale)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Account fields as a caller submitted them, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct ProfileDraft {
    pub user_id: String,
    pub display_name: String,
    pub locale: String,
    pub group_ids: Vec<String>,
    pub is_admin: bool,
}

/// The fields an admin sets on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: UserId,
    pub display_name: DisplayName,
    pub locale: Locale,
    /// Distinct, in the order given.
    pub group_ids: Vec<GroupId>,
    pub is_admin: bool,
}

impl Profile {
    /// Validates submitted fields; the first problem found is returned.
    pub fn parse(draft: ProfileDraft) -> Result<Self, InvalidInput> {
        let user_id = UserId::parse(&draft.user_id).ok_or(InvalidInput::UserId)?;
        let display_name = DisplayName::parse(&draft.display_name)?;
        let locale = Locale::parse(&draft.locale)?;
        if draft.group_ids.len() > MAX_GROUPS {
            return Err(InvalidInput::TooManyGroups {
                count: draft.group_ids.len(),
            });
        }
        let mut seen = BTreeSet::new();
        let mut group_ids = Vec::with_capacity(draft.group_ids.len());
        for (index, raw) in draft.group_ids.iter().enumerate() {
            let id = GroupId::parse(raw).ok_or(InvalidInput::GroupId { index })?;
            if !seen.insert(id.clone()) {
                return Err(InvalidInput::DuplicateGroupId { index });
            }
            group_ids.push(id);
        }
        Ok(Self {
            user_id,
            display_name,
            locale,
            group_ids,
            is_admin: draft.is_admin,
        })
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub profile: Profile,
    pub enabled: bool,
    /// A locked account cannot sign in until an admin or a verified reset flow unlocks it.
    pub locked: bool,
    /// `None` until a password is set; such an account cannot sign in.
    pub password_hash: Option<PasswordHash>,
    /// The direct groups plus every group containing one of them through nesting, sorted
    /// (see [`crate::domain::group::GroupClosure`]).
    pub effective_group_ids: Vec<GroupId>,
}

impl User {
    pub fn has_password(&self) -> bool {
        self.password_hash.is_some()
    }

    /// The hash to check a sign-in against: none for a disabled or locked account or one
    /// without a password (the caller then verifies against a dummy hash, at the same cost).
    pub fn sign_in_hash(&self) -> Option<&PasswordHash> {
        if self.enabled && !self.locked {
            self.password_hash.as_ref()
        } else {
            None
        }
    }
}

/// Why an account was unlocked (`account.unlocked` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockReason {
    /// A verified self-service flow: UnlockAccount, or a password reset (which also unlocks).
    SelfService,
    /// An admin or helpdesk change.
    Admin,
}

impl UnlockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnlockReason::SelfService => "self_service",
            UnlockReason::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "self_service" => Some(UnlockReason::SelfService),
            "admin" => Some(UnlockReason::Admin),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> ProfileDraft {
        ProfileDraft {
            user_id: "alice".into(),
            display_name: "Alice Example".into(),
            locale: "en-GB".into(),
            group_ids: vec!["staff".into(), "admins".into()],
            is_admin: true,
        }
    }

    #[test]
    fn a_valid_profile_parses_and_keeps_group_order() {
        let p = Profile::parse(draft()).expect("valid");
        assert_eq!(p.user_id.as_str(), "alice");
        assert_eq!(p.display_name.as_str(), "Alice Example");
        assert_eq!(p.locale.as_str(), "en-GB");
        let groups: Vec<&str> = p.group_ids.iter().map(GroupId::as_str).collect();
        assert_eq!(groups, vec!["staff", "admins"]);
        assert!(p.is_admin);
    }

    #[test]
    fn empty_display_name_locale_and_groups_are_fine() {
        let p = Profile::parse(ProfileDraft {
            user_id: "bob".into(),
            ..Default::default()
        })
        .expect("valid");
        assert!(p.display_name.as_str().is_empty());
        assert!(p.locale.as_str().is_empty());
        assert!(p.group_ids.is_empty());
    }

    #[test]
    fn user_id_is_validated() {
        for bad in ["", "a b", &"x".repeat(129)] {
            let err = Profile::parse(ProfileDraft {
                user_id: bad.into(),
                ..draft()
            })
            .expect_err("must fail");
            assert_eq!(err, InvalidInput::UserId);
            assert!(err.to_string().starts_with("user_id "));
        }
    }

    #[test]
    fn display_name_limit_is_in_characters_and_never_truncated() {
        let max = "é".repeat(256);
        assert!(
            Profile::parse(ProfileDraft {
                display_name: max,
                ..draft()
            })
            .is_ok()
        );
        let over = "é".repeat(257);
        assert_eq!(
            Profile::parse(ProfileDraft {
                display_name: over,
                ..draft()
            }),
            Err(InvalidInput::DisplayName)
        );
        assert_eq!(
            Profile::parse(ProfileDraft {
                display_name: "a\nb".into(),
                ..draft()
            }),
            Err(InvalidInput::DisplayName)
        );
    }

    #[test]
    fn locale_is_validated() {
        for ok in ["", "en", "de-CH", "zh_Hant_TW", &"a".repeat(35)] {
            assert!(Locale::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["en GB", "en.UTF-8", "fr;", &"a".repeat(36)] {
            let err = Profile::parse(ProfileDraft {
                locale: bad.into(),
                ..draft()
            })
            .expect_err("must fail");
            assert_eq!(err, InvalidInput::Locale, "{bad:?}");
            assert!(err.to_string().starts_with("locale "));
        }
    }

    #[test]
    fn groups_are_validated_counted_and_distinct() {
        let err = Profile::parse(ProfileDraft {
            group_ids: vec!["ok".into(), "not ok".into()],
            ..draft()
        })
        .expect_err("must fail");
        assert_eq!(err, InvalidInput::GroupId { index: 1 });
        assert!(err.to_string().starts_with("group_ids[1] "));

        let many: Vec<String> = (0..101).map(|i| format!("g{i}")).collect();
        assert_eq!(
            Profile::parse(ProfileDraft {
                group_ids: many.clone(),
                ..draft()
            }),
            Err(InvalidInput::TooManyGroups { count: 101 })
        );
        assert!(
            Profile::parse(ProfileDraft {
                group_ids: many[..100].to_vec(),
                ..draft()
            })
            .is_ok()
        );
        assert_eq!(
            Profile::parse(ProfileDraft {
                group_ids: vec!["a".into(), "a".into()],
                ..draft()
            }),
            Err(InvalidInput::DuplicateGroupId { index: 1 })
        );
    }

    #[test]
    fn disabled_locked_and_passwordless_accounts_have_no_sign_in_hash() {
        let hash = crate::domain::password::hash(&crate::domain::password::Password::new(
            "a password of some length",
        ))
        .expect("hash");
        let mut user = User {
            profile: Profile::parse(draft()).expect("valid"),
            enabled: true,
            locked: false,
            password_hash: Some(hash),
            effective_group_ids: Vec::new(),
        };
        assert!(user.sign_in_hash().is_some());
        user.enabled = false;
        assert!(user.sign_in_hash().is_none());
        user.enabled = true;
        user.locked = true;
        assert!(user.sign_in_hash().is_none());
        user.locked = false;
        assert!(user.sign_in_hash().is_some());
        user.password_hash = None;
        assert!(user.sign_in_hash().is_none());
        assert!(!user.has_password());
    }
}
