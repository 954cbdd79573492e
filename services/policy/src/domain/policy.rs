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
//! - Security questions (Entra ID's rules): each question has a distinct id (1 to 64 characters
//!   of `A-Z a-z 0-9 . _ -`) and a distinct text of 3 to 200 characters (trimmed, no control
//!   characters); at most [`MAX_SECURITY_QUESTIONS`]. When the kind is allowed, 3 to 5 are
//!   answered at registration and 3 to 5 (no more than at registration) at reset, 3 by default,
//!   and the policy has at least as many questions as registration needs. Security questions
//!   are never the only allowed kind, and never allowed for an admin account:
//!   [`PolicyRules::evaluate`] drops them (and their questions) for admins.

use std::collections::BTreeSet;
use std::fmt;

use super::limits::{Limits, LimitsDraft, LimitsError};

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
/// Most security questions a policy may define.
pub const MAX_SECURITY_QUESTIONS: usize = 100;
/// Longest security question id, in characters.
pub const MAX_QUESTION_ID_CHARS: usize = 64;
/// Shortest and longest security question text, in characters (after trimming).
pub const MIN_QUESTION_CHARS: usize = 3;
pub const MAX_QUESTION_CHARS: usize = 200;
/// Fewest and most questions answered at registration and at reset.
pub const MIN_QUESTIONS_REQUIRED: u32 = 3;
pub const MAX_QUESTIONS_REQUIRED: u32 = 5;
/// Questions answered at registration and at reset when the policy says 0.
pub const DEFAULT_QUESTIONS_REQUIRED: u32 = 3;

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
    /// A phone call that reads the code out.
    Voice,
    SecurityQuestions,
}

impl MethodKind {
    /// Stable name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Email => "EMAIL",
            MethodKind::Sms => "SMS",
            MethodKind::Voice => "VOICE",
            MethodKind::SecurityQuestions => "SECURITY_QUESTIONS",
        }
    }

    /// The inverse of [`MethodKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EMAIL" => Some(MethodKind::Email),
            "SMS" => Some(MethodKind::Sms),
            "VOICE" => Some(MethodKind::Voice),
            "SECURITY_QUESTIONS" => Some(MethodKind::SecurityQuestions),
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

/// One admin-defined security question, valid by construction (see [`PolicyRules::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityQuestion {
    id: String,
    text: String,
}

impl SecurityQuestion {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn text(&self) -> &str {
        &self.text
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
    /// A verified user whose account is locked may unlock it without a new password.
    pub allow_unlock: bool,
    /// `(question_id, text)` pairs, in the admin's order.
    pub security_questions: Vec<(String, String)>,
    pub questions_required_to_register: u32,
    pub questions_required_to_reset: u32,
    /// The abuse limits (see [`super::limits`]).
    pub limits: LimitsDraft,
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
    #[error(
        "policy.allowed_methods must include a method other than METHOD_KIND_SECURITY_QUESTIONS (admins never use security questions)"
    )]
    SecurityQuestionsAlone,
    #[error(
        "policy.security_questions has {count} entries; at most {MAX_SECURITY_QUESTIONS} are allowed"
    )]
    TooManyQuestions { count: usize },
    #[error(
        "policy.security_questions[{index}].question_id must be 1 to {MAX_QUESTION_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_' or '-'"
    )]
    InvalidQuestionId { index: usize },
    #[error("policy.security_questions[{index}].question_id repeats an earlier question")]
    DuplicateQuestionId { index: usize },
    #[error(
        "policy.security_questions[{index}].text must be {MIN_QUESTION_CHARS} to {MAX_QUESTION_CHARS} characters without control characters"
    )]
    InvalidQuestionText { index: usize },
    #[error("policy.security_questions[{index}].text repeats an earlier question")]
    DuplicateQuestionText { index: usize },
    #[error(
        "policy.questions_required_to_register must be {MIN_QUESTIONS_REQUIRED} to {MAX_QUESTIONS_REQUIRED}, got {got}"
    )]
    QuestionsToRegister { got: u32 },
    #[error(
        "policy.questions_required_to_reset must be {MIN_QUESTIONS_REQUIRED} to {MAX_QUESTIONS_REQUIRED} and at most questions_required_to_register, got {got}"
    )]
    QuestionsToReset { got: u32 },
    #[error(
        "policy.security_questions must have at least questions_required_to_register ({required}) questions when METHOD_KIND_SECURITY_QUESTIONS is allowed, got {got}"
    )]
    TooFewQuestions { required: u32, got: usize },
    #[error(transparent)]
    Limits(#[from] LimitsError),
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
    allow_unlock: bool,
    security_questions: Vec<SecurityQuestion>,
    questions_required_to_register: u32,
    questions_required_to_reset: u32,
    limits: Limits,
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
            allow_unlock: false,
            security_questions: Vec::new(),
            questions_required_to_register: 0,
            questions_required_to_reset: 0,
            limits: Limits::default(),
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

        let questions_allowed = allowed_methods.contains(&MethodKind::SecurityQuestions);
        if questions_allowed && allowed_methods.len() == 1 {
            return Err(PolicyError::SecurityQuestionsAlone);
        }
        let security_questions = parse_questions(&draft.security_questions)?;
        let (register, reset) = parse_question_counts(
            questions_allowed,
            draft.questions_required_to_register,
            draft.questions_required_to_reset,
        )?;
        if questions_allowed && security_questions.len() < register as usize {
            return Err(PolicyError::TooFewQuestions {
                required: register,
                got: security_questions.len(),
            });
        }

        let limits = Limits::parse(draft.limits)?;

        Ok(Self {
            scope,
            group_ids,
            methods_required: draft.methods_required,
            allowed_methods,
            reconfirm_after_days: draft.reconfirm_after_days,
            require_full_destination: draft.require_full_destination,
            helpdesk_contact: helpdesk_contact.to_owned(),
            allow_unlock: draft.allow_unlock,
            security_questions,
            questions_required_to_register: register,
            questions_required_to_reset: reset,
            limits,
        })
    }

    /// The abuse limits, as the admin set them.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The admin-defined security questions, in the admin's order (kept whether or not the
    /// kind is allowed, like group ids).
    pub fn security_questions(&self) -> &[SecurityQuestion] {
        &self.security_questions
    }

    /// 3..=5 when security questions are allowed; otherwise 0 or what the admin set.
    pub fn questions_required_to_register(&self) -> u32 {
        self.questions_required_to_register
    }

    /// 3..=5 and at most [`Self::questions_required_to_register`] when allowed.
    pub fn questions_required_to_reset(&self) -> u32 {
        self.questions_required_to_reset
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

    /// A verified user whose account is locked may unlock it instead of resetting (default
    /// false).
    pub fn allow_unlock(&self) -> bool {
        self.allow_unlock
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
        // Admins always use the stricter policy: never security questions.
        let allowed_methods: Vec<MethodKind> = self
            .allowed_methods
            .iter()
            .copied()
            .filter(|k| !(subject.is_admin && *k == MethodKind::SecurityQuestions))
            .collect();
        let questions_allowed = allowed_methods.contains(&MethodKind::SecurityQuestions);
        Evaluation {
            eligible: subject.enabled && in_scope,
            methods_required,
            allowed_methods,
            reconfirm_after_days: self.reconfirm_after_days,
            require_full_destination: self.require_full_destination,
            helpdesk_contact: self.helpdesk_contact.clone(),
            security_questions: if questions_allowed {
                self.security_questions.clone()
            } else {
                Vec::new()
            },
            questions_required_to_register: if questions_allowed {
                self.questions_required_to_register
            } else {
                0
            },
            questions_required_to_reset: if questions_allowed {
                self.questions_required_to_reset
            } else {
                0
            },
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
    /// Empty (and both counts 0) unless security questions are allowed for this subject.
    pub security_questions: Vec<SecurityQuestion>,
    pub questions_required_to_register: u32,
    pub questions_required_to_reset: u32,
}

/// Validates the question list: ids, texts, duplicates, count.
fn parse_questions(raw: &[(String, String)]) -> Result<Vec<SecurityQuestion>, PolicyError> {
    if raw.len() > MAX_SECURITY_QUESTIONS {
        return Err(PolicyError::TooManyQuestions { count: raw.len() });
    }
    let mut questions: Vec<SecurityQuestion> = Vec::with_capacity(raw.len());
    let mut seen_texts = BTreeSet::new();
    for (index, (id, text)) in raw.iter().enumerate() {
        let id_ok = (1..=MAX_QUESTION_ID_CHARS).contains(&id.chars().count())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            return Err(PolicyError::InvalidQuestionId { index });
        }
        if questions.iter().any(|q| q.id == *id) {
            return Err(PolicyError::DuplicateQuestionId { index });
        }
        let text = text.trim();
        if !(MIN_QUESTION_CHARS..=MAX_QUESTION_CHARS).contains(&text.chars().count())
            || text.chars().any(char::is_control)
        {
            return Err(PolicyError::InvalidQuestionText { index });
        }
        // Two questions that differ only in case or spacing are the same question.
        let key: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if !seen_texts.insert(key) {
            return Err(PolicyError::DuplicateQuestionText { index });
        }
        questions.push(SecurityQuestion {
            id: id.clone(),
            text: text.to_owned(),
        });
    }
    Ok(questions)
}

/// The counts to store: 0 means the default (3) when questions are allowed and stays 0
/// otherwise; any other value must be valid either way.
fn parse_question_counts(
    allowed: bool,
    register: u32,
    reset: u32,
) -> Result<(u32, u32), PolicyError> {
    let valid = MIN_QUESTIONS_REQUIRED..=MAX_QUESTIONS_REQUIRED;
    let default = |n: u32| {
        if n == 0 && allowed {
            DEFAULT_QUESTIONS_REQUIRED
        } else {
            n
        }
    };
    let (register, reset) = (default(register), default(reset));
    if register != 0 && !valid.contains(&register) {
        return Err(PolicyError::QuestionsToRegister { got: register });
    }
    if reset != 0 && (!valid.contains(&reset) || (register != 0 && reset > register)) {
        return Err(PolicyError::QuestionsToReset { got: reset });
    }
    Ok((register, reset))
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
        for m in [MethodKind::Email, MethodKind::Sms, MethodKind::Voice] {
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

    #[test]
    fn allow_unlock_defaults_off_and_is_kept() {
        assert!(!PolicyRules::default().allow_unlock());
        let rules = PolicyRules::parse(PolicyDraft {
            allow_unlock: true,
            ..draft(Scope::All, &[], 1, &[MethodKind::Email])
        })
        .expect("valid");
        assert!(rules.allow_unlock());
        assert!(!rules_with_contact("").allow_unlock());
    }

    fn with_questions(n: usize, register: u32, reset: u32) -> PolicyDraft {
        PolicyDraft {
            security_questions: (1..=n)
                .map(|i| (format!("q{i}"), format!("Question number {i}?")))
                .collect(),
            questions_required_to_register: register,
            questions_required_to_reset: reset,
            ..draft(
                Scope::All,
                &[],
                1,
                &[MethodKind::Email, MethodKind::SecurityQuestions],
            )
        }
    }

    #[test]
    fn security_questions_default_to_three_and_are_validated() {
        let rules = PolicyRules::parse(with_questions(3, 0, 0)).expect("defaults");
        assert_eq!(rules.questions_required_to_register(), 3);
        assert_eq!(rules.questions_required_to_reset(), 3);
        assert_eq!(rules.security_questions()[0].id(), "q1");
        let rules = PolicyRules::parse(with_questions(100, 5, 4)).expect("max");
        assert_eq!(rules.security_questions().len(), 100);
        assert_eq!(
            PolicyRules::parse(with_questions(101, 5, 4)),
            Err(PolicyError::TooManyQuestions { count: 101 })
        );
        assert_eq!(
            PolicyRules::parse(with_questions(2, 3, 3)),
            Err(PolicyError::TooFewQuestions {
                required: 3,
                got: 2
            })
        );
        assert_eq!(
            PolicyRules::parse(with_questions(4, 4, 5)),
            Err(PolicyError::QuestionsToReset { got: 5 })
        );
        for bad in [2, 6] {
            assert_eq!(
                PolicyRules::parse(with_questions(6, bad, 3)),
                Err(PolicyError::QuestionsToRegister { got: bad })
            );
        }
        assert_eq!(
            PolicyRules::parse(with_questions(6, 5, 2)),
            Err(PolicyError::QuestionsToReset { got: 2 })
        );
        let err = PolicyRules::parse(with_questions(2, 3, 3)).expect_err("too few");
        assert!(err.to_string().starts_with("policy.security_questions"));
    }

    #[test]
    fn question_ids_and_texts_are_checked() {
        let mut d = with_questions(3, 3, 3);
        d.security_questions[1].0 = "has space".into();
        assert_eq!(
            PolicyRules::parse(d),
            Err(PolicyError::InvalidQuestionId { index: 1 })
        );
        let mut d = with_questions(3, 3, 3);
        d.security_questions[2].0 = "q1".into();
        assert_eq!(
            PolicyRules::parse(d),
            Err(PolicyError::DuplicateQuestionId { index: 2 })
        );
        for bad in ["ab", "   ab  ", "line\nbreak", &"x".repeat(201)] {
            let mut d = with_questions(3, 3, 3);
            d.security_questions[0].1 = bad.to_owned();
            assert_eq!(
                PolicyRules::parse(d),
                Err(PolicyError::InvalidQuestionText { index: 0 }),
                "{bad:?}"
            );
        }
        let mut d = with_questions(3, 3, 3);
        d.security_questions[2].1 = "  question   NUMBER 1? ".into();
        assert_eq!(
            PolicyRules::parse(d),
            Err(PolicyError::DuplicateQuestionText { index: 2 })
        );
        let mut d = with_questions(3, 3, 3);
        d.security_questions[0].1 = format!("  {}  ", "y".repeat(200));
        let rules = PolicyRules::parse(d).expect("trimmed to 200");
        assert_eq!(rules.security_questions()[0].text().len(), 200);
    }

    #[test]
    fn security_questions_are_never_alone_and_never_for_admins() {
        let mut d = with_questions(3, 3, 3);
        d.allowed_methods = vec![Some(MethodKind::SecurityQuestions)];
        assert_eq!(
            PolicyRules::parse(d),
            Err(PolicyError::SecurityQuestionsAlone)
        );
        let rules = PolicyRules::parse(with_questions(4, 4, 3)).expect("valid");
        let member = rules.evaluate(&user(&[], false, true));
        assert_eq!(
            member.allowed_methods,
            vec![MethodKind::Email, MethodKind::SecurityQuestions]
        );
        assert_eq!(member.security_questions.len(), 4);
        assert_eq!(
            (
                member.questions_required_to_register,
                member.questions_required_to_reset
            ),
            (4, 3)
        );
        let admin = rules.evaluate(&user(&[], true, true));
        assert_eq!(admin.allowed_methods, vec![MethodKind::Email]);
        assert_eq!(admin.methods_required, 2);
        assert!(admin.security_questions.is_empty());
        assert_eq!(admin.questions_required_to_reset, 0);
        // Not allowed: the questions are kept but nobody is asked them.
        let mut d = with_questions(3, 0, 0);
        d.allowed_methods = vec![Some(MethodKind::Email)];
        let off = PolicyRules::parse(d).expect("kept");
        assert_eq!(off.security_questions().len(), 3);
        assert_eq!(off.questions_required_to_register(), 0);
        assert!(
            off.evaluate(&user(&[], false, true))
                .security_questions
                .is_empty()
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
