//! The policy preview: who could not reset their password under a proposed policy, and why.
//!
//! Each directory user is judged by [`readiness`], which asks [`PolicyRules::evaluate`] (the
//! function behind real eligibility) and counts the user's confirmed methods of the kinds it
//! allows for that user, exactly as a reset does: so the admin rules (two methods, no security
//! questions) and group scope apply here as they do there.
//!
//! Invariants:
//! - A [`Tally`] counts every user it is given, whatever the page asked for; only the listed
//!   unable users depend on the page (those after the token's user id, sorted by user id as
//!   bytes, at most the page size), so totals are the same on every page.
//! - A [`PageToken`] is bound to the proposed policy by a fingerprint of its canonical encoding:
//!   a token presented with another policy is refused rather than silently mis-paging.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::policy::{MethodKind, PolicyRules, Subject};

/// Unable users per page when the request says 0, and the most allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 500;

/// Why a user could not reset under the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inability {
    /// The account is disabled.
    AccountDisabled,
    /// The policy's scope leaves the user out.
    OutOfScope,
    /// Fewer confirmed methods of allowed kinds than the policy requires of this user.
    NotEnoughMethods,
}

impl Inability {
    /// The stable reason of `PreviewedUser.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Inability::AccountDisabled => "account_disabled",
            Inability::OutOfScope => "out_of_scope",
            Inability::NotEnoughMethods => "not_enough_methods",
        }
    }
}

/// What the policy means for one user with their registered methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// `None` when the user could reset.
    pub inability: Option<Inability>,
    /// Confirmed methods of kinds the policy allows for this user.
    pub usable_methods: u32,
    pub methods_required: u32,
}

/// Judges `subject`, whose confirmed methods have the kinds `registered` (one entry per method;
/// `None` for a kind this policy service does not know, never usable). A disabled account is
/// reported as such before scope, and scope before methods.
pub fn readiness(
    rules: &PolicyRules,
    subject: &Subject<'_>,
    registered: &[Option<MethodKind>],
) -> Readiness {
    let evaluation = rules.evaluate(subject);
    let usable = registered
        .iter()
        .flatten()
        .filter(|k| evaluation.allowed_methods.contains(k))
        .count();
    let usable_methods = u32::try_from(usable).unwrap_or(u32::MAX);
    // As at reset: never fewer than one method.
    let required = evaluation.methods_required.max(1);
    let inability = if !subject.enabled {
        Some(Inability::AccountDisabled)
    } else if !evaluation.eligible {
        Some(Inability::OutOfScope)
    } else if usable_methods < required {
        Some(Inability::NotEnoughMethods)
    } else {
        None
    };
    Readiness {
        inability,
        usable_methods,
        methods_required: evaluation.methods_required,
    }
}

/// A user the preview lists as unable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnableUser {
    pub user_id: String,
    pub display_name: String,
    pub is_admin: bool,
    pub inability: Inability,
    pub usable_methods: u32,
    pub methods_required: u32,
}

/// Why a page token was refused. Shown to the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    #[error("page_token is not a token this service issued")]
    Malformed,
    #[error(
        "page_token belongs to another proposed policy: send the same policy as for the first page"
    )]
    OtherPolicy,
}

/// Where the next page of unable users starts, for one proposed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// The last user id of the previous page.
    pub after_user_id: String,
}

impl PageToken {
    /// Opaque text: base64url of `<fingerprint>:<after_user_id>`.
    pub fn encode(&self, fingerprint: &Fingerprint) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", fingerprint.0, self.after_user_id))
    }

    /// The token issued by [`PageToken::encode`] for the same `fingerprint`.
    pub fn decode(raw: &str, fingerprint: &Fingerprint) -> Result<Self, PageTokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim())
            .map_err(|_| PageTokenError::Malformed)?;
        let text = String::from_utf8(bytes).map_err(|_| PageTokenError::Malformed)?;
        let (print, after) = text.split_once(':').ok_or(PageTokenError::Malformed)?;
        if after.is_empty() {
            return Err(PageTokenError::Malformed);
        }
        if print != fingerprint.0 {
            return Err(PageTokenError::OtherPolicy);
        }
        Ok(Self {
            after_user_id: after.to_owned(),
        })
    }
}

/// Identifies a proposed policy: the hex SHA-256 (first 16 bytes) of its canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(canonical: &[u8]) -> Self {
        let digest = Sha256::digest(canonical);
        Self(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
    }
}

/// Counts users as they are judged and keeps the page of unable users asked for.
#[derive(Debug)]
pub struct Tally {
    after: Option<String>,
    page_size: usize,
    pub users_total: u32,
    pub users_able: u32,
    pub users_unable: u32,
    /// The smallest unable user ids after `after`, at most `page_size + 1` (one more tells
    /// whether another page follows).
    page: BTreeMap<String, UnableUser>,
}

/// The finished preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub users_total: u32,
    pub users_able: u32,
    pub users_unable: u32,
    /// Sorted by user id.
    pub unable: Vec<UnableUser>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PageToken>,
}

impl Tally {
    /// Lists unable users after `after` (from the start when `None`), `page_size` of them.
    pub fn new(after: Option<PageToken>, page_size: u32) -> Self {
        Self {
            after: after.map(|t| t.after_user_id),
            page_size: usize::try_from(page_size.max(1)).unwrap_or(usize::MAX),
            users_total: 0,
            users_able: 0,
            users_unable: 0,
            page: BTreeMap::new(),
        }
    }

    /// Counts one user, in any order.
    pub fn add(&mut self, user_id: &str, display_name: &str, is_admin: bool, judged: Readiness) {
        self.users_total = self.users_total.saturating_add(1);
        let Some(inability) = judged.inability else {
            self.users_able = self.users_able.saturating_add(1);
            return;
        };
        self.users_unable = self.users_unable.saturating_add(1);
        if self.after.as_deref().is_some_and(|a| user_id <= a) {
            return;
        }
        self.page.insert(
            user_id.to_owned(),
            UnableUser {
                user_id: user_id.to_owned(),
                display_name: display_name.to_owned(),
                is_admin,
                inability,
                usable_methods: judged.usable_methods,
                methods_required: judged.methods_required,
            },
        );
        if self.page.len() > self.page_size + 1 {
            self.page.pop_last();
        }
    }

    pub fn finish(self) -> Preview {
        let mut unable: Vec<UnableUser> = self.page.into_values().collect();
        let next = if unable.len() > self.page_size {
            unable.truncate(self.page_size);
            unable.last().map(|u| PageToken {
                after_user_id: u.user_id.clone(),
            })
        } else {
            None
        };
        Preview {
            users_total: self.users_total,
            users_able: self.users_able,
            users_unable: self.users_unable,
            unable,
            next,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::policy::{PolicyDraft, Scope};
    use super::*;

    fn rules(scope: Scope, groups: &[&str], required: u32, kinds: &[MethodKind]) -> PolicyRules {
        PolicyRules::parse(PolicyDraft {
            scope: Some(scope),
            group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
            methods_required: required,
            allowed_methods: kinds.iter().copied().map(Some).collect(),
            ..PolicyDraft::default()
        })
        .unwrap()
    }

    fn subject(groups: &[String], is_admin: bool, enabled: bool) -> Subject<'_> {
        Subject {
            group_ids: groups,
            is_admin,
            enabled,
        }
    }

    const EMAIL: Option<MethodKind> = Some(MethodKind::Email);
    const SMS: Option<MethodKind> = Some(MethodKind::Sms);

    #[test]
    fn reasons_follow_the_real_evaluation() {
        let all = rules(Scope::All, &[], 1, &[MethodKind::Email, MethodKind::Sms]);
        let none: Vec<String> = Vec::new();
        let judged = readiness(&all, &subject(&none, false, true), &[EMAIL]);
        assert_eq!(judged.inability, None);
        assert_eq!((judged.usable_methods, judged.methods_required), (1, 1));
        let judged = readiness(&all, &subject(&none, false, true), &[]);
        assert_eq!(judged.inability, Some(Inability::NotEnoughMethods));
        // Admins need two, whatever the policy says.
        let judged = readiness(&all, &subject(&none, true, true), &[EMAIL]);
        assert_eq!(judged.inability, Some(Inability::NotEnoughMethods));
        assert_eq!((judged.usable_methods, judged.methods_required), (1, 2));
        assert_eq!(
            readiness(&all, &subject(&none, true, true), &[EMAIL, SMS]).inability,
            None
        );
        // Disabled comes first, even with methods.
        let judged = readiness(&all, &subject(&none, false, false), &[EMAIL, SMS]);
        assert_eq!(judged.inability, Some(Inability::AccountDisabled));
    }

    #[test]
    fn only_allowed_kinds_are_usable_and_scope_uses_the_groups_given() {
        let email_only = rules(Scope::Selected, &["staff"], 1, &[MethodKind::Email]);
        let staff = vec!["staff".to_owned()];
        let other = vec!["guests".to_owned()];
        let judged = readiness(&email_only, &subject(&staff, false, true), &[SMS, None]);
        assert_eq!(judged.inability, Some(Inability::NotEnoughMethods));
        assert_eq!(judged.usable_methods, 0);
        assert_eq!(
            readiness(&email_only, &subject(&staff, false, true), &[EMAIL]).inability,
            None
        );
        assert_eq!(
            readiness(&email_only, &subject(&other, false, true), &[EMAIL]).inability,
            Some(Inability::OutOfScope)
        );
        let nobody = rules(Scope::None, &[], 1, &[MethodKind::Email]);
        assert_eq!(
            readiness(&nobody, &subject(&staff, false, true), &[EMAIL]).inability,
            Some(Inability::OutOfScope)
        );
    }

    fn unable(reason: Inability) -> Readiness {
        Readiness {
            inability: Some(reason),
            usable_methods: 0,
            methods_required: 1,
        }
    }

    const ABLE: Readiness = Readiness {
        inability: None,
        usable_methods: 1,
        methods_required: 1,
    };

    #[test]
    fn tally_counts_everyone_and_pages_unable_users_in_order() {
        let users = [
            ("dave", unable(Inability::OutOfScope)),
            ("alice", ABLE),
            ("carol", unable(Inability::NotEnoughMethods)),
            ("bob", unable(Inability::AccountDisabled)),
        ];
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let mut tally = Tally::new(after.take(), 1);
            for (id, judged) in users {
                tally.add(id, id, false, judged);
            }
            let preview = tally.finish();
            assert_eq!(
                (
                    preview.users_total,
                    preview.users_able,
                    preview.users_unable
                ),
                (4, 1, 3)
            );
            assert_eq!(preview.unable.len(), 1);
            pages.push(preview.unable[0].user_id.clone());
            match preview.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, ["bob", "carol", "dave"]);
        let mut tally = Tally::new(None, 100);
        for (id, judged) in users {
            tally.add(id, id, false, judged);
        }
        let preview = tally.finish();
        assert_eq!(preview.next, None);
        let reasons: Vec<&str> = preview
            .unable
            .iter()
            .map(|u| u.inability.as_str())
            .collect();
        assert_eq!(
            reasons,
            ["account_disabled", "not_enough_methods", "out_of_scope"]
        );
    }

    #[test]
    fn page_tokens_are_bound_to_the_policy() {
        let one = Fingerprint::of(b"policy one");
        let two = Fingerprint::of(b"policy two");
        let token = PageToken {
            after_user_id: "carol:x".into(),
        };
        let raw = token.encode(&one);
        assert_eq!(PageToken::decode(&raw, &one), Ok(token));
        assert_eq!(
            PageToken::decode(&raw, &two),
            Err(PageTokenError::OtherPolicy)
        );
        assert_eq!(
            PageToken::decode("not base64!", &one),
            Err(PageTokenError::Malformed)
        );
        assert_eq!(
            PageToken::decode(&URL_SAFE_NO_PAD.encode("no-separator"), &one),
            Err(PageTokenError::Malformed)
        );
    }
}
