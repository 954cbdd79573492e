//! The SSPR policy: who may reset their own password, with how many methods, and of which kinds.
//!
//! Invariants:
//! - A [`PolicyRules`] is valid by construction: it is built only by [`PolicyRules::parse`] (or
//!   is the [`PolicyRules::default`]), so a stored or evaluated policy never has an unknown scope,
//!   a `SELECTED` scope without groups, a `methods_required` other than 1 or 2, or an empty,
//!   duplicated or unknown method list.
//! - Admin accounts always need [`ADMIN_METHODS_REQUIRED`] methods: [`PolicyRules::evaluate`]
//!   never lets a policy weaken that.
//! - A disabled account is never eligible, whatever the scope.
//! - `reconfirm_after_days` is 0 (never) to [`MAX_RECONFIRM_AFTER_DAYS`], default 0.
//! - `helpdesk_contact` is at most [`MAX_HELPDESK_CONTACT_CHARS`] characters without control
//!   characters, trimmed; empty means none. It is free text (a URL, an email address or a phone
//!   number), shown to users as is.
//! - `require_full_destination` defaults to false.
//! - The number of allowed kinds may be smaller than `methods_required`: a user may register two
//!   methods of one kind (two email addresses, say).

use std::collections::BTreeSet;
use std::fmt;

/// Longest group id, in characters.
pub const MAX_GROUP_ID_CHARS: usize = 128;
/// Most groups a `SELECTED` policy may name.
pub const MAX_GROUPS: usize = 100;
/// Longest re-confirmation period, in days (two years, as in Entra ID).
pub const MAX_RECONFIRM_AFTER_DAYS: u32 = 730;
/// Longest helpdesk contact, in characters.
pub const MAX_HELPDESK_CONTACT_CHARS: usize = 256;
/// Methods an admin account needs, whatever the policy says.
pub const ADMIN_METHODS_REQUIRED: u32 = 2;

/// Who the policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Nobody may use self-service reset.
    None,
    /// Members of any of the policy's groups.
    Selected,
    /// Every enabled account.
    All,
}

impl Scope {
    /// Stable name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::None => "NONE",
            Scope::Selected => "SELECTED",
            Scope::All => "ALL",
        }
    }

    /// The inverse of [`Scope::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "NONE" => Some(Scope::None),
            "SELECTED" => Some(Scope::Selected),
            "ALL" => Some(Scope::All),
            _ => None,
        }
    }
}

/// A kind of contact method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MethodKind {
    Email,
    Sms,
}

impl MethodKind {
    /// Stable name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Email => "EMAIL",
            MethodKind::Sms => "SMS",
        }
    }

    /// The inverse of [`MethodKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EMAIL" => Some(MethodKind::Email),
            "SMS" => Some(MethodKind::Sms),
            _ => None,
        }
    }
}

/// A group id: 1 to 128 characters of `A-Z a-z 0-9 . _ @ -`. Compared exactly (case matters),
/// as the directory stores it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(String);

impl GroupId {
    pub fn parse(raw: &str) -> Option<Self> {
        let chars = raw.chars().count();
        let valid = (1..=MAX_GROUP_ID_CHARS).contains(&chars)
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
        valid.then(|| GroupId(raw.to_owned()))
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

/// A policy as an admin submitted it, not yet validated. `None` stands for an unspecified or
/// unknown enum value on the wire.
#[derive(Debug, Clone, Default)]
pub struct PolicyDraft {
    pub scope: Option<Scope>,
    pub group_ids: Vec<String>,
    pub methods_required: u32,
    pub allowed_methods: Vec<Option<MethodKind>>,
    pub reconfirm_after_days: u32,
    pub require_full_destination: bool,
    pub helpdesk_contact: String,
}

/// Why a submitted policy was refused. The message names the field and is shown to the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy.scope must be SCOPE_NONE, SCOPE_SELECTED or SCOPE_ALL")]
    MissingScope,
    #[error("policy.group_ids must name at least one group when the scope is SCOPE_SELECTED")]
    SelectedWithoutGroups,
    #[error("policy.group_ids has {count} entries; at most {MAX_GROUPS} are allowed")]
    TooManyGroups { count: usize },
    #[error(
        "policy.group_ids[{index}] must be 1 to {MAX_GROUP_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_', '@' or '-'"
    )]
    InvalidGroupId { index: usize },
    #[error("policy.group_ids[{index}] repeats an earlier group")]
    DuplicateGroupId { index: usize },
    #[error("policy.methods_required must be 1 or 2, got {got}")]
    MethodsRequired { got: u32 },
    #[error("policy.allowed_methods must list at least one method")]
    NoAllowedMethods,
    #[error("policy.allowed_methods[{index}] must be METHOD_KIND_EMAIL or METHOD_KIND_SMS")]
    InvalidMethod { index: usize },
    #[error("policy.allowed_methods[{index}] repeats an earlier method")]
    DuplicateMethod { index: usize },
    #[error(
        "policy.reconfirm_after_days must be 0 (never) to {MAX_RECONFIRM_AFTER_DAYS}, got {got}"
    )]
    ReconfirmAfterDays { got: u32 },
    #[error(
        "policy.helpdesk_contact must be at most {MAX_HELPDESK_CONTACT_CHARS} characters without control characters"
    )]
    HelpdeskContact,
}

/// A valid policy, without its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRules {
    scope: Scope,
    group_ids: Vec<GroupId>,
    methods_required: u32,
    allowed_methods: Vec<MethodKind>,
    reconfirm_after_days: u32,
    require_full_destination: bool,
    helpdesk_contact: String,
}

impl Default for PolicyRules {
    /// The policy in force before an admin set one: nobody in scope, one method, email or SMS.
    fn default() -> Self {
        Self {
            scope: Scope::None,
            group_ids: Vec::new(),
            methods_required: 1,
            allowed_methods: vec![MethodKind::Email, MethodKind::Sms],
            reconfirm_after_days: 0,
            require_full_destination: false,
            helpdesk_contact: String::new(),
        }
    }
}

impl PolicyRules {
    /// Validates a submitted policy; the first problem found is returned. Group ids are kept
    /// with every scope (so switching to `ALL` and back does not lose them) and validated
    /// whatever the scope.
    pub fn parse(draft: PolicyDraft) -> Result<Self, PolicyError> {
        let scope = draft.scope.ok_or(PolicyError::MissingScope)?;

        if draft.group_ids.len() > MAX_GROUPS {
            return Err(PolicyError::TooManyGroups {
                count: draft.group_ids.len(),
            });
        }
        let mut group_ids = Vec::with_capacity(draft.group_ids.len());
        let mut seen_groups = BTreeSet::new();
        for (index, raw) in draft.group_ids.iter().enumerate() {
            let id = GroupId::parse(raw).ok_or(PolicyError::InvalidGroupId { index })?;
            if !seen_groups.insert(id.clone()) {
                return Err(PolicyError::DuplicateGroupId { index });
            }
            group_ids.push(id);
        }
        if scope == Scope::Selected && group_ids.is_empty() {
            return Err(PolicyError::SelectedWithoutGroups);
        }

        if !(1..=2).contains(&draft.methods_required) {
            return Err(PolicyError::MethodsRequired {
                got: draft.methods_required,
            });
        }

        if draft.allowed_methods.is_empty() {
            return Err(PolicyError::NoAllowedMethods);
        }
        let mut allowed_methods = Vec::with_capacity(draft.allowed_methods.len());
        for (index, kind) in draft.allowed_methods.iter().enumerate() {
            let kind = kind.ok_or(PolicyError::InvalidMethod { index })?;
            if allowed_methods.contains(&kind) {
                return Err(PolicyError::DuplicateMethod { index });
            }
            allowed_methods.push(kind);
        }

        if draft.reconfirm_after_days > MAX_RECONFIRM_AFTER_DAYS {
            return Err(PolicyError::ReconfirmAfterDays {
                got: draft.reconfirm_after_days,
            });
        }

        let helpdesk_contact = draft.helpdesk_contact.trim();
        if helpdesk_contact.chars().count() > MAX_HELPDESK_CONTACT_CHARS
            || helpdesk_contact.chars().any(char::is_control)
        {
            return Err(PolicyError::HelpdeskContact);
        }

        Ok(Self {
            scope,
            group_ids,
            methods_required: draft.methods_required,
            allowed_methods,
            reconfirm_after_days: draft.reconfirm_after_days,
            require_full_destination: draft.require_full_destination,
            helpdesk_contact: helpdesk_contact.to_owned(),
        })
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub fn group_ids(&self) -> &[GroupId] {
        &self.group_ids
    }

    pub fn methods_required(&self) -> u32 {
        self.methods_required
    }

    pub fn allowed_methods(&self) -> &[MethodKind] {
        &self.allowed_methods
    }

    /// 0 = never; otherwise registrations older than this many days must be confirmed again.
    pub fn reconfirm_after_days(&self) -> u32 {
        self.reconfirm_after_days
    }

    /// The user must type the full destination of a method before a code is sent to it.
    pub fn require_full_destination(&self) -> bool {
        self.require_full_destination
    }

    /// Where users get help; empty = none.
    pub fn helpdesk_contact(&self) -> &str {
        &self.helpdesk_contact
    }

    /// What self-service reset means for `subject` under this policy.
    pub fn evaluate(&self, subject: &Subject<'_>) -> Evaluation {
        let in_scope = match self.scope {
            Scope::None => false,
            Scope::All => true,
            Scope::Selected => subject
                .group_ids
                .iter()
                .any(|g| self.group_ids.iter().any(|p| p.as_str() == g.as_str())),
        };
        let methods_required = if subject.is_admin {
            ADMIN_METHODS_REQUIRED
        } else {
            self.methods_required
        };
        Evaluation {
            eligible: subject.enabled && in_scope,
            methods_required,
            allowed_methods: self.allowed_methods.clone(),
            reconfirm_after_days: self.reconfirm_after_days,
            require_full_destination: self.require_full_destination,
            helpdesk_contact: self.helpdesk_contact.clone(),
        }
    }
}

/// A stored policy: the rules and the version that `set_policy` gave them. The default is the
/// default rules at version 0, in force until an admin sets a policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub rules: PolicyRules,
    pub version: u64,
}

/// The account a policy is evaluated for, as the directory knows it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub group_ids: &'a [String],
    pub is_admin: bool,
    pub enabled: bool,
}

/// The outcome of [`PolicyRules::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The user may reset their own password.
    pub eligible: bool,
    pub methods_required: u32,
    pub allowed_methods: Vec<MethodKind>,
    pub reconfirm_after_days: u32,
    pub require_full_destination: bool,
    pub helpdesk_contact: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(scope: Scope, groups: &[&str], required: u32, methods: &[MethodKind]) -> PolicyDraft {
        PolicyDraft {
            scope: Some(scope),
            group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
            methods_required: required,
            allowed_methods: methods.iter().copied().map(Some).collect(),
            reconfirm_after_days: 0,
            ..PolicyDraft::default()
        }
    }

    fn rules(scope: Scope, groups: &[&str], required: u32) -> PolicyRules {
        PolicyRules::parse(draft(
            scope,
            groups,
            required,
            &[MethodKind::Email, MethodKind::Sms],
        ))
        .expect("valid policy")
    }

    fn user(groups: &[String], is_admin: bool, enabled: bool) -> Subject<'_> {
        Subject {
            group_ids: groups,
            is_admin,
            enabled,
        }
    }

    fn groups(names: &[&str]) -> Vec<String> {
        names.iter().map(|g| (*g).to_owned()).collect()
    }

    #[test]
    fn default_policy_is_scope_none_one_method_email_or_sms() {
        let policy = Policy::default();
        assert_eq!(policy.version, 0);
        assert_eq!(policy.rules.scope(), Scope::None);
        assert_eq!(policy.rules.methods_required(), 1);
        assert_eq!(
            policy.rules.allowed_methods(),
            &[MethodKind::Email, MethodKind::Sms]
        );
        assert!(policy.rules.group_ids().is_empty());
    }

    #[test]
    fn scope_none_makes_nobody_eligible() {
        let policy = rules(Scope::None, &["staff"], 1);
        let staff = groups(&["staff"]);
        assert!(!policy.evaluate(&user(&staff, false, true)).eligible);
        assert!(!policy.evaluate(&user(&staff, true, true)).eligible);
        assert!(!policy.evaluate(&user(&[], false, true)).eligible);
    }

    #[test]
    fn scope_all_makes_every_enabled_user_eligible() {
        let policy = rules(Scope::All, &[], 1);
        let e = policy.evaluate(&user(&[], false, true));
        assert!(e.eligible);
        assert_eq!(e.methods_required, 1);
        assert_eq!(e.allowed_methods, vec![MethodKind::Email, MethodKind::Sms]);
    }

    #[test]
    fn scope_selected_needs_membership_of_any_policy_group() {
        let policy = rules(Scope::Selected, &["staff", "contractors"], 1);
        assert!(
            policy
                .evaluate(&user(&groups(&["contractors"]), false, true))
                .eligible
        );
        assert!(
            policy
                .evaluate(&user(&groups(&["other", "staff"]), false, true))
                .eligible
        );
        assert!(
            !policy
                .evaluate(&user(&groups(&["other"]), false, true))
                .eligible
        );
        assert!(!policy.evaluate(&user(&[], false, true)).eligible);
        // Group ids are compared exactly, as stored.
        assert!(
            !policy
                .evaluate(&user(&groups(&["Staff"]), false, true))
                .eligible
        );
    }

    #[test]
    fn disabled_users_are_never_eligible() {
        let staff = groups(&["staff"]);
        for scope in [Scope::None, Scope::Selected, Scope::All] {
            let policy = rules(scope, &["staff"], 1);
            assert!(
                !policy.evaluate(&user(&staff, false, false)).eligible,
                "{scope:?}"
            );
            assert!(
                !policy.evaluate(&user(&staff, true, false)).eligible,
                "{scope:?}"
            );
        }
    }

    #[test]
    fn admins_always_need_two_methods() {
        for (scope, required) in [
            (Scope::All, 1),
            (Scope::All, 2),
            (Scope::None, 1),
            (Scope::Selected, 1),
        ] {
            let policy = rules(scope, &["admins"], required);
            let admins = groups(&["admins"]);
            assert_eq!(
                policy.evaluate(&user(&admins, true, true)).methods_required,
                2
            );
            assert_eq!(
                policy
                    .evaluate(&user(&admins, true, false))
                    .methods_required,
                2
            );
        }
    }

    #[test]
    fn non_admins_get_the_policys_count() {
        assert_eq!(
            rules(Scope::All, &[], 1)
                .evaluate(&user(&[], false, true))
                .methods_required,
            1
        );
        assert_eq!(
            rules(Scope::All, &[], 2)
                .evaluate(&user(&[], false, true))
                .methods_required,
            2
        );
    }

    #[test]
    fn missing_scope_is_refused() {
        let mut d = draft(Scope::All, &[], 1, &[MethodKind::Email]);
        d.scope = None;
        let err = PolicyRules::parse(d).expect_err("must fail");
        assert_eq!(err, PolicyError::MissingScope);
        assert!(err.to_string().starts_with("policy.scope"));
    }

    #[test]
    fn selected_needs_a_group() {
        let err = PolicyRules::parse(draft(Scope::Selected, &[], 1, &[MethodKind::Email]))
            .expect_err("must fail");
        assert_eq!(err, PolicyError::SelectedWithoutGroups);
        assert!(err.to_string().contains("policy.group_ids"));
    }

    #[test]
    fn group_ids_are_validated_whatever_the_scope() {
        let long = "g".repeat(129);
        let max = "g".repeat(128);
        for bad in ["", "has space", "comma,sep", "ümlaut", long.as_str()] {
            let err = PolicyRules::parse(draft(Scope::All, &["ok", bad], 1, &[MethodKind::Email]))
                .expect_err(bad);
            assert_eq!(err, PolicyError::InvalidGroupId { index: 1 }, "{bad:?}");
            assert!(err.to_string().starts_with("policy.group_ids[1]"));
        }
        let ok = PolicyRules::parse(draft(
            Scope::Selected,
            &["a.b_c@d-e", max.as_str(), "X9"],
            1,
            &[MethodKind::Email],
        ))
        .expect("valid ids");
        assert_eq!(ok.group_ids().len(), 3);
    }

    #[test]
    fn group_count_and_duplicates() {
        let many: Vec<String> = (0..101).map(|i| format!("g{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            PolicyRules::parse(draft(Scope::Selected, &refs, 1, &[MethodKind::Email])),
            Err(PolicyError::TooManyGroups { count: 101 })
        );
        assert!(
            PolicyRules::parse(draft(
                Scope::Selected,
                &refs[..100],
                1,
                &[MethodKind::Email]
            ))
            .is_ok()
        );
        assert_eq!(
            PolicyRules::parse(draft(
                Scope::Selected,
                &["a", "b", "a"],
                1,
                &[MethodKind::Email]
            )),
            Err(PolicyError::DuplicateGroupId { index: 2 })
        );
    }

    #[test]
    fn methods_required_is_one_or_two() {
        for got in [0, 3, 100] {
            let err = PolicyRules::parse(draft(Scope::All, &[], got, &[MethodKind::Email]))
                .expect_err("must fail");
            assert_eq!(err, PolicyError::MethodsRequired { got });
            assert!(err.to_string().starts_with("policy.methods_required"));
        }
        assert!(PolicyRules::parse(draft(Scope::All, &[], 2, &[MethodKind::Email])).is_ok());
    }

    #[test]
    fn two_required_with_one_allowed_kind_is_valid() {
        // A user may register two methods of one kind.
        let p = PolicyRules::parse(draft(Scope::All, &[], 2, &[MethodKind::Sms])).expect("valid");
        assert_eq!(p.methods_required(), 2);
        assert_eq!(p.allowed_methods(), &[MethodKind::Sms]);
    }

    #[test]
    fn allowed_methods_must_be_known_non_empty_and_distinct() {
        assert_eq!(
            PolicyRules::parse(draft(Scope::All, &[], 1, &[])),
            Err(PolicyError::NoAllowedMethods)
        );
        let mut d = draft(Scope::All, &[], 1, &[MethodKind::Email]);
        d.allowed_methods.push(None);
        let err = PolicyRules::parse(d).expect_err("must fail");
        assert_eq!(err, PolicyError::InvalidMethod { index: 1 });
        assert!(err.to_string().starts_with("policy.allowed_methods[1]"));
        assert_eq!(
            PolicyRules::parse(draft(
                Scope::All,
                &[],
                1,
                &[MethodKind::Sms, MethodKind::Sms]
            )),
            Err(PolicyError::DuplicateMethod { index: 1 })
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [Scope::None, Scope::Selected, Scope::All] {
            assert_eq!(Scope::from_name(s.as_str()), Some(s));
        }
        for m in [MethodKind::Email, MethodKind::Sms] {
            assert_eq!(MethodKind::from_name(m.as_str()), Some(m));
        }
        assert_eq!(Scope::from_name("all"), None);
        assert_eq!(MethodKind::from_name(""), None);
    }

    #[test]
    fn reconfirm_after_days_is_zero_to_730_and_reaches_the_evaluation() {
        assert_eq!(PolicyRules::default().reconfirm_after_days(), 0);
        for days in [0, 1, 90, MAX_RECONFIRM_AFTER_DAYS] {
            let rules = PolicyRules::parse(PolicyDraft {
                reconfirm_after_days: days,
                ..draft(Scope::All, &[], 1, &[MethodKind::Email])
            })
            .expect("valid");
            assert_eq!(rules.reconfirm_after_days(), days);
            let staff = groups(&[]);
            assert_eq!(
                rules
                    .evaluate(&user(&staff, false, true))
                    .reconfirm_after_days,
                days
            );
        }
        let err = PolicyRules::parse(PolicyDraft {
            reconfirm_after_days: 731,
            ..draft(Scope::All, &[], 1, &[MethodKind::Email])
        })
        .expect_err("too long");
        assert_eq!(err, PolicyError::ReconfirmAfterDays { got: 731 });
        assert_eq!(
            err.to_string(),
            "policy.reconfirm_after_days must be 0 (never) to 730, got 731"
        );
    }

    #[test]
    fn require_full_destination_defaults_off_and_reaches_the_evaluation() {
        assert!(!PolicyRules::default().require_full_destination());
        let rules = PolicyRules::parse(PolicyDraft {
            require_full_destination: true,
            ..draft(Scope::All, &[], 1, &[MethodKind::Email])
        })
        .expect("valid");
        assert!(rules.require_full_destination());
        assert!(
            rules
                .evaluate(&user(&[], false, true))
                .require_full_destination
        );
        let off = rules_with_contact("");
        assert!(
            !off.evaluate(&user(&[], false, true))
                .require_full_destination
        );
    }

    fn rules_with_contact(contact: &str) -> PolicyRules {
        PolicyRules::parse(PolicyDraft {
            helpdesk_contact: contact.to_owned(),
            ..draft(Scope::All, &[], 1, &[MethodKind::Email])
        })
        .expect("valid contact")
    }

    #[test]
    fn helpdesk_contact_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(PolicyRules::default().helpdesk_contact(), "");
        for ok in [
            "",
            "https://help.example.com/sspr",
            "helpdesk@example.com",
            "Call 0800 123 456 (Mon–Fri)",
        ] {
            assert_eq!(rules_with_contact(ok).helpdesk_contact(), ok);
        }
        assert_eq!(
            rules_with_contact("  help@example.com \t").helpdesk_contact(),
            "help@example.com"
        );
        let max = "é".repeat(MAX_HELPDESK_CONTACT_CHARS);
        assert_eq!(rules_with_contact(&max).helpdesk_contact(), max);
        let long = "a".repeat(MAX_HELPDESK_CONTACT_CHARS + 1);
        for bad in [long.as_str(), "line\nbreak", "bell\u{7}", "del\u{7f}x"] {
            let err = PolicyRules::parse(PolicyDraft {
                helpdesk_contact: bad.to_owned(),
                ..draft(Scope::All, &[], 1, &[MethodKind::Email])
            })
            .expect_err("must fail");
            assert_eq!(err, PolicyError::HelpdeskContact);
            assert!(err.to_string().starts_with("policy.helpdesk_contact"));
        }
        let e = rules_with_contact("help@example.com").evaluate(&user(&[], false, false));
        assert_eq!(e.helpdesk_contact, "help@example.com");
    }
}
