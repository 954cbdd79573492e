//! Groups and their nesting.
//!
//! Invariants:
//! - A [`Group`] is valid by construction ([`Group::parse`]): a valid group id, a display name
//!   of at most [`MAX_DISPLAY_NAME_CHARS`] characters without control characters, and at most
//!   [`MAX_MEMBER_GROUPS`] distinct valid member group ids, kept sorted. Member groups need not
//!   exist (yet), as a user's group ids need not.
//! - Nesting may form cycles (an admin's mistake, or deliberate); the closure
//!   ([`GroupClosure`]) visits each group once, so a cycle costs nothing and ends. It is bounded
//!   by [`MAX_NESTING_DEPTH`] levels and [`MAX_EFFECTIVE_GROUPS`] groups so a pathological
//!   hierarchy cannot make a look-up unbounded.

use std::collections::BTreeSet;

use crate::domain::ids::{GroupId, ID_RULE};
use crate::domain::user::{DisplayName, MAX_DISPLAY_NAME_CHARS};

/// Most groups nested directly in one group.
pub const MAX_MEMBER_GROUPS: usize = 100;
/// Most levels of nesting followed above a user's direct groups.
pub const MAX_NESTING_DEPTH: usize = 32;
/// Most effective groups of one user (direct and inherited).
pub const MAX_EFFECTIVE_GROUPS: usize = 1000;

/// Why group input was refused; the message names the field and is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidGroup {
    #[error("group is required")]
    Missing,
    #[error("group.group_id {ID_RULE}")]
    GroupId,
    #[error(
        "group.display_name must be at most {MAX_DISPLAY_NAME_CHARS} characters without control characters"
    )]
    DisplayName,
    #[error("group.member_group_ids has {count} entries; at most {MAX_MEMBER_GROUPS} are allowed")]
    TooManyMembers { count: usize },
    #[error("group.member_group_ids[{index}] {ID_RULE}")]
    MemberGroupId { index: usize },
    #[error("group.member_group_ids[{index}] repeats an earlier group")]
    DuplicateMember { index: usize },
}

/// Group fields as a caller submitted them, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct GroupDraft {
    pub group_id: String,
    pub display_name: String,
    pub member_group_ids: Vec<String>,
}

/// A group as stored: its id, name and the groups nested directly in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub group_id: GroupId,
    pub display_name: DisplayName,
    /// Distinct and sorted.
    pub member_group_ids: Vec<GroupId>,
}

impl Group {
    /// Validates submitted fields; the first problem found is returned.
    pub fn parse(draft: GroupDraft) -> Result<Self, InvalidGroup> {
        let group_id = GroupId::parse(&draft.group_id).ok_or(InvalidGroup::GroupId)?;
        let display_name =
            DisplayName::parse(&draft.display_name).map_err(|_| InvalidGroup::DisplayName)?;
        if draft.member_group_ids.len() > MAX_MEMBER_GROUPS {
            return Err(InvalidGroup::TooManyMembers {
                count: draft.member_group_ids.len(),
            });
        }
        let mut members = BTreeSet::new();
        for (index, raw) in draft.member_group_ids.iter().enumerate() {
            let id = GroupId::parse(raw).ok_or(InvalidGroup::MemberGroupId { index })?;
            if !members.insert(id) {
                return Err(InvalidGroup::DuplicateMember { index });
            }
        }
        Ok(Self {
            group_id,
            display_name,
            member_group_ids: members.into_iter().collect(),
        })
    }
}

/// The effective groups of a user, computed level by level: start from the direct groups, ask
/// the store for the groups that contain the current frontier ([`GroupClosure::frontier`]),
/// feed them back ([`GroupClosure::add_parents`]) until the frontier is empty, then
/// [`GroupClosure::finish`]. Kept free of IO so the store can run one query per level.
#[derive(Debug, Clone)]
pub struct GroupClosure {
    seen: BTreeSet<GroupId>,
    frontier: Vec<GroupId>,
    depth: usize,
    truncated: bool,
}

impl GroupClosure {
    pub fn new(direct: &[GroupId]) -> Self {
        let mut seen = BTreeSet::new();
        let mut frontier = Vec::new();
        for g in direct {
            if seen.insert(g.clone()) {
                frontier.push(g.clone());
            }
        }
        Self {
            seen,
            frontier,
            depth: 0,
            truncated: false,
        }
    }

    /// The groups whose containing groups are needed next; empty when the closure is complete
    /// (or has reached a bound).
    pub fn frontier(&self) -> &[GroupId] {
        if self.depth >= MAX_NESTING_DEPTH || self.truncated {
            &[]
        } else {
            &self.frontier
        }
    }

    /// Records the groups containing the current frontier; those not seen before become the
    /// next frontier.
    pub fn add_parents(&mut self, parents: impl IntoIterator<Item = GroupId>) {
        let mut next = Vec::new();
        for parent in parents {
            if self.seen.contains(&parent) {
                continue;
            }
            if self.seen.len() >= MAX_EFFECTIVE_GROUPS {
                self.truncated = true;
                break;
            }
            self.seen.insert(parent.clone());
            next.push(parent);
        }
        self.frontier = next;
        self.depth += 1;
        if self.depth >= MAX_NESTING_DEPTH && !self.frontier.is_empty() {
            self.truncated = true;
        }
    }

    /// True when a bound stopped the walk before it was complete.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Every group found, sorted.
    pub fn finish(self) -> Vec<GroupId> {
        self.seen.into_iter().collect()
    }
}

/// Largest page of [`Group`]s.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Page size when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The page token of the page after `last`: its id in lower-case hex, so any valid id fits the
/// public token alphabet (`A-Z a-z 0-9 _ -`).
pub fn page_token_after(last: &GroupId) -> String {
    last.as_str().bytes().map(|b| format!("{b:02x}")).collect()
}

/// The group a page token continues after; `None` for a token this service did not make.
pub fn parse_page_token(raw: &str) -> Option<GroupId> {
    if !raw.len().is_multiple_of(2) || !raw.is_ascii() {
        return None;
    }
    let bytes = (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    GroupId::parse(std::str::from_utf8(&bytes).ok()?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn id(raw: &str) -> GroupId {
        GroupId::parse(raw).expect("valid id")
    }

    /// Runs the closure against `containers`: member -> groups that contain it.
    fn closure(direct: &[&str], containers: &BTreeMap<&str, Vec<&str>>) -> (Vec<String>, bool) {
        let direct: Vec<GroupId> = direct.iter().map(|g| id(g)).collect();
        let mut c = GroupClosure::new(&direct);
        let mut rounds = 0;
        while !c.frontier().is_empty() {
            rounds += 1;
            assert!(rounds <= MAX_NESTING_DEPTH, "the walk must end");
            let parents: Vec<GroupId> = c
                .frontier()
                .iter()
                .flat_map(|g| containers.get(g.as_str()).cloned().unwrap_or_default())
                .map(id)
                .collect();
            c.add_parents(parents);
        }
        let truncated = c.truncated();
        (
            c.finish().iter().map(|g| g.as_str().to_owned()).collect(),
            truncated,
        )
    }

    #[test]
    fn nested_groups_are_inherited_transitively_and_sorted() {
        // engineering ⊂ staff ⊂ everyone; backend ⊂ engineering.
        let containers = BTreeMap::from([
            ("backend", vec!["engineering"]),
            ("engineering", vec!["staff"]),
            ("staff", vec!["everyone"]),
        ]);
        let (groups, truncated) = closure(&["backend", "zeta"], &containers);
        assert_eq!(
            groups,
            vec!["backend", "engineering", "everyone", "staff", "zeta"]
        );
        assert!(!truncated);
    }

    #[test]
    fn groups_that_do_not_exist_have_no_parents() {
        let (groups, _) = closure(&["ghost"], &BTreeMap::new());
        assert_eq!(groups, vec!["ghost"]);
        let (none, _) = closure(&[], &BTreeMap::new());
        assert!(none.is_empty());
    }

    #[test]
    fn cycles_end_and_list_each_group_once() {
        let containers = BTreeMap::from([
            ("a", vec!["b"]),
            ("b", vec!["c", "a"]),
            ("c", vec!["a", "c"]),
        ]);
        let (groups, truncated) = closure(&["a"], &containers);
        assert_eq!(groups, vec!["a", "b", "c"]);
        assert!(!truncated);
    }

    #[test]
    fn the_walk_is_bounded_in_depth() {
        let names: Vec<String> = (0..100).map(|i| format!("g{i:03}")).collect();
        let containers: BTreeMap<&str, Vec<&str>> = names
            .windows(2)
            .map(|w| (w[0].as_str(), vec![w[1].as_str()]))
            .collect();
        let (groups, truncated) = closure(&["g000"], &containers);
        assert_eq!(groups.len(), MAX_NESTING_DEPTH + 1);
        assert!(truncated);
    }

    #[test]
    fn the_walk_is_bounded_in_size() {
        let names: Vec<String> = (0..MAX_EFFECTIVE_GROUPS + 50)
            .map(|i| format!("p{i}"))
            .collect();
        let containers = BTreeMap::from([("root", names.iter().map(String::as_str).collect())]);
        let (groups, truncated) = closure(&["root"], &containers);
        assert_eq!(groups.len(), MAX_EFFECTIVE_GROUPS);
        assert!(truncated);
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_anything_else() {
        let g = id("Staff.EU@corp_x-1");
        let token = page_token_after(&g);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(parse_page_token(&token), Some(g));
        for bad in ["", "a", "zz", "2020", "é0", "20ff"] {
            assert_eq!(parse_page_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_group_is_validated_and_its_members_sorted() {
        let g = Group::parse(GroupDraft {
            group_id: "staff".into(),
            display_name: "All staff".into(),
            member_group_ids: vec!["sales".into(), "engineering".into()],
        })
        .expect("valid");
        let members: Vec<&str> = g.member_group_ids.iter().map(GroupId::as_str).collect();
        assert_eq!(members, vec!["engineering", "sales"]);

        let bad = |draft: GroupDraft| Group::parse(draft).expect_err("must fail");
        assert_eq!(
            bad(GroupDraft {
                group_id: "a b".into(),
                ..Default::default()
            }),
            InvalidGroup::GroupId
        );
        assert_eq!(
            bad(GroupDraft {
                group_id: "g".into(),
                display_name: "x\ny".into(),
                ..Default::default()
            }),
            InvalidGroup::DisplayName
        );
        assert_eq!(
            bad(GroupDraft {
                group_id: "g".into(),
                member_group_ids: vec!["ok".into(), "not ok".into()],
                ..Default::default()
            }),
            InvalidGroup::MemberGroupId { index: 1 }
        );
        assert_eq!(
            bad(GroupDraft {
                group_id: "g".into(),
                member_group_ids: vec!["a".into(), "a".into()],
                ..Default::default()
            }),
            InvalidGroup::DuplicateMember { index: 1 }
        );
        let many: Vec<String> = (0..=MAX_MEMBER_GROUPS).map(|i| format!("m{i}")).collect();
        assert_eq!(
            bad(GroupDraft {
                group_id: "g".into(),
                member_group_ids: many,
                ..Default::default()
            }),
            InvalidGroup::TooManyMembers {
                count: MAX_MEMBER_GROUPS + 1
            }
        );
        assert!(
            bad(GroupDraft {
                group_id: "g".into(),
                member_group_ids: vec!["a".into(), "a".into()],
                ..Default::default()
            })
            .to_string()
            .starts_with("group.member_group_ids[1] ")
        );
    }
}
