//! Named admin tokens: who is calling the Admin API, and what their role lets them call.
//!
//! Each token carries an admin id (recorded as the actor of every change it makes) and a
//! [`Role`]. `SSPR_ADMIN_TOKEN` is one token of admin id `admin` with [`Role::Admin`];
//! `SSPR_ADMIN_TOKENS` (or the file named by `SSPR_ADMIN_TOKENS_FILE`) lists named tokens as
//! `name:role:token` entries separated by commas or new lines (`#` starts a comment line).
//!
//! Invariants:
//! - Every token is at least [`MIN_ADMIN_TOKEN_CHARS`] visible ASCII characters (what an
//!   `authorization` header can carry), tokens are pairwise distinct and admin ids are unique;
//!   a set of tokens is valid by construction ([`AdminTokens::new`]).
//! - A presented token is compared in constant time against every configured token, without
//!   stopping at a match, so the time does not tell which token (if any) matched.
//! - No token ever appears in an error, a log line or a `Debug` output; admin ids and roles are
//!   not secret.

use std::collections::BTreeSet;
use std::fmt;

use sspr_runtime::Secret;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;
/// Longest admin id, in characters.
pub const MAX_ADMIN_ID_CHARS: usize = 64;
/// The admin id of the single `SSPR_ADMIN_TOKEN`.
pub const SINGLE_TOKEN_ADMIN_ID: &str = "admin";
/// What a helpdesk token may call (gRPC method names of `sspr.admin.v1.Admin`).
pub const HELPDESK_METHODS: [&str; 6] = [
    "GetUser",
    "UnlockUser",
    "ClearBlock",
    "GetBlock",
    "GetDelivery",
    "ListAuditEvents",
];

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every Admin API call.
    Admin,
    /// Only [`HELPDESK_METHODS`].
    Helpdesk,
}

impl Role {
    /// `admin` or `helpdesk` (case-insensitive).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "helpdesk" => Some(Role::Helpdesk),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Helpdesk => "helpdesk",
        }
    }

    /// Whether this role may call the Admin API method `method` (e.g. `SetPolicy`).
    pub fn may_call(self, method: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::Helpdesk => HELPDESK_METHODS.contains(&method),
        }
    }
}

/// An admin id: 1 to 64 characters of `A-Z a-z 0-9 . _ @ -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AdminId(String);

impl AdminId {
    pub fn parse(raw: &str) -> Option<Self> {
        let chars = raw.chars().count();
        let valid = (1..=MAX_ADMIN_ID_CHARS).contains(&chars)
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
        valid.then(|| AdminId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AdminId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a token configuration was refused. Never contains a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no admin token is configured")]
    Empty,
    #[error("entry {entry} must be `name:role:token`")]
    Malformed { entry: usize },
    #[error(
        "entry {entry}: the name must be 1 to {MAX_ADMIN_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_', '@' or '-'"
    )]
    InvalidName { entry: usize },
    #[error("entry {entry} ({name}): the role must be `admin` or `helpdesk`")]
    InvalidRole { entry: usize, name: String },
    #[error(
        "the token of {name} must be at least {MIN_ADMIN_TOKEN_CHARS} visible ASCII characters, without spaces or commas"
    )]
    WeakToken { name: String },
    #[error("the admin name {name} is used twice")]
    DuplicateName { name: String },
    #[error("{first} and {second} have the same token; every token must be distinct")]
    DuplicateToken { first: String, second: String },
}

/// One configured token.
#[derive(Clone)]
pub struct AdminToken {
    admin_id: AdminId,
    role: Role,
    token: Secret<String>,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("admin_id", &self.admin_id)
            .field("role", &self.role)
            .field("token", &self.token)
            .finish()
    }
}

impl AdminToken {
    /// A token for `admin_id` with `role`; refused when the token is too short or not visible
    /// ASCII.
    pub fn new(admin_id: AdminId, role: Role, token: Secret<String>) -> Result<Self, TokenError> {
        let raw = token.expose();
        if raw.chars().count() < MIN_ADMIN_TOKEN_CHARS
            || !raw.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        {
            return Err(TokenError::WeakToken {
                name: admin_id.to_string(),
            });
        }
        Ok(Self {
            admin_id,
            role,
            token,
        })
    }

    /// The token of `SSPR_ADMIN_TOKEN`: admin id [`SINGLE_TOKEN_ADMIN_ID`], [`Role::Admin`].
    pub fn single(token: Secret<String>) -> Result<Self, TokenError> {
        Self::new(
            AdminId(SINGLE_TOKEN_ADMIN_ID.to_owned()),
            Role::Admin,
            token,
        )
    }

    pub fn admin_id(&self) -> &AdminId {
        &self.admin_id
    }

    pub fn role(&self) -> Role {
        self.role
    }
}

/// Parses `name:role:token` entries separated by commas or new lines; blank entries and lines
/// starting with `#` are skipped. Entries are numbered from 1 in errors.
pub fn parse_list(raw: &str) -> Result<Vec<AdminToken>, TokenError> {
    let entries = raw
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    let mut tokens = Vec::new();
    for (index, entry) in entries.enumerate() {
        let number = index + 1;
        let mut parts = entry.splitn(3, ':');
        let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed { entry: number });
        };
        let admin_id =
            AdminId::parse(name.trim()).ok_or(TokenError::InvalidName { entry: number })?;
        let role = Role::parse(role).ok_or_else(|| TokenError::InvalidRole {
            entry: number,
            name: admin_id.to_string(),
        })?;
        tokens.push(AdminToken::new(
            admin_id,
            role,
            Secret::new(token.trim().to_owned()),
        )?);
    }
    Ok(tokens)
}

/// The valid set of tokens the gateway accepts.
#[derive(Debug, Clone)]
pub struct AdminTokens {
    tokens: Vec<AdminToken>,
}

impl AdminTokens {
    /// At least one token, unique admin ids, distinct tokens.
    pub fn new(tokens: Vec<AdminToken>) -> Result<Self, TokenError> {
        if tokens.is_empty() {
            return Err(TokenError::Empty);
        }
        let mut names = BTreeSet::new();
        for (i, t) in tokens.iter().enumerate() {
            if !names.insert(t.admin_id.as_str()) {
                return Err(TokenError::DuplicateName {
                    name: t.admin_id.to_string(),
                });
            }
            if let Some(earlier) = tokens[..i]
                .iter()
                .find(|e| e.token.expose() == t.token.expose())
            {
                return Err(TokenError::DuplicateToken {
                    first: earlier.admin_id.to_string(),
                    second: t.admin_id.to_string(),
                });
            }
        }
        Ok(Self { tokens })
    }

    /// One token for admin id [`SINGLE_TOKEN_ADMIN_ID`] with [`Role::Admin`].
    pub fn single(token: Secret<String>) -> Result<Self, TokenError> {
        Self::new(vec![AdminToken::single(token)?])
    }

    /// The token equal to `presented`, if any. Every configured token is compared, in constant
    /// time, whatever matched (a length mismatch answers at once, revealing only lengths).
    pub fn identify(&self, presented: &str) -> Option<&AdminToken> {
        let mut found = u64::MAX;
        for (i, t) in self.tokens.iter().enumerate() {
            let equal = presented.as_bytes().ct_eq(t.token.expose().as_bytes());
            found.conditional_assign(&(i as u64), equal);
        }
        usize::try_from(found).ok().and_then(|i| self.tokens.get(i))
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "alice-token-0123456789";
    const B: &str = "bob-token-0123456789ab";

    #[test]
    fn roles_limit_methods() {
        assert!(Role::Admin.may_call("SetPolicy"));
        assert!(Role::Admin.may_call("GetUser"));
        for m in HELPDESK_METHODS {
            assert!(Role::Helpdesk.may_call(m));
        }
        // Delivery look-ups are a helpdesk task ("did my code go out?").
        assert!(Role::Helpdesk.may_call("GetDelivery"));
        assert!(Role::Admin.may_call("GetDelivery"));
        for m in [
            "SetPolicy",
            "UpsertUser",
            "DeleteUser",
            "PreviewPolicy",
            "GetPolicy",
        ] {
            assert!(!Role::Helpdesk.may_call(m), "{m}");
        }
        assert_eq!(Role::parse(" HelpDesk "), Some(Role::Helpdesk));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn lists_parse_by_comma_or_line_and_identify_each_token() {
        let raw = format!("# ops team\nalice:admin:{A}, bob:helpdesk:{B}\n\n");
        let tokens = AdminTokens::new(parse_list(&raw).unwrap()).unwrap();
        assert_eq!(tokens.len(), 2);
        let alice = tokens.identify(A).unwrap();
        assert_eq!(
            (alice.admin_id().as_str(), alice.role()),
            ("alice", Role::Admin)
        );
        let bob = tokens.identify(B).unwrap();
        assert_eq!(
            (bob.admin_id().as_str(), bob.role()),
            ("bob", Role::Helpdesk)
        );
        assert!(tokens.identify("alice-token-012345678").is_none());
        assert!(tokens.identify("").is_none());
        // A token may contain ':'.
        let tokens = parse_list("carol:admin:a:b:c-0123456789abcdef").unwrap();
        assert_eq!(tokens.len(), 1);
        let tokens = AdminTokens::new(tokens).unwrap();
        assert!(tokens.identify("a:b:c-0123456789abcdef").is_some());
    }

    #[test]
    fn bad_lists_are_refused_without_echoing_tokens() {
        let cases = [
            ("alice:admin", TokenError::Malformed { entry: 1 }),
            (
                &format!("al ice:admin:{A}") as &str,
                TokenError::InvalidName { entry: 1 },
            ),
            (
                &format!("alice:root:{A}"),
                TokenError::InvalidRole {
                    entry: 1,
                    name: "alice".into(),
                },
            ),
            (
                "alice:admin:short-secret",
                TokenError::WeakToken {
                    name: "alice".into(),
                },
            ),
            (
                "alice:admin:has a space 0123456789",
                TokenError::WeakToken {
                    name: "alice".into(),
                },
            ),
        ];
        for (raw, expected) in cases {
            let err = parse_list(raw).unwrap_err();
            assert_eq!(err, expected, "{raw}");
            assert!(!err.to_string().contains("short-secret"));
            assert!(!err.to_string().contains(A));
        }
        let dup_name = parse_list(&format!("alice:admin:{A},alice:helpdesk:{B}")).unwrap();
        assert_eq!(
            AdminTokens::new(dup_name).unwrap_err(),
            TokenError::DuplicateName {
                name: "alice".into()
            }
        );
        let dup_token = parse_list(&format!("alice:admin:{A},bob:helpdesk:{A}")).unwrap();
        let err = AdminTokens::new(dup_token).unwrap_err();
        assert!(!err.to_string().contains(A));
        assert!(matches!(err, TokenError::DuplicateToken { .. }));
        assert_eq!(AdminTokens::new(Vec::new()).unwrap_err(), TokenError::Empty);
    }

    #[test]
    fn the_single_token_is_admin_and_never_printed() {
        let tokens = AdminTokens::single(Secret::new(A.to_owned())).unwrap();
        let t = tokens.identify(A).unwrap();
        assert_eq!((t.admin_id().as_str(), t.role()), ("admin", Role::Admin));
        assert!(!format!("{tokens:?}").contains(A));
    }
}
