//! NATS endpoints of the directory: decode, validate into domain types at this edge, apply the
//! rules, store, reply.
//!
//! Invariants:
//! - Passwords are never logged, traced or put in an error; span fields carry only the user id
//!   and flow id.
//! - `authenticate` does one Argon2id computation and gives the same answer for an unknown
//!   user, a wrong password, a disabled account and an account without a password.
//! - A new password is checked by the policy service before it is hashed; if policy cannot be
//!   reached the change is refused (`UNAVAILABLE`), never made without the check.
//! - With a password history (`history_count` N > 0 in the policy's verdict) a new password is
//!   verified against the current hash and at most N - 1 previous ones (each an Argon2id
//!   computation on the blocking pool, stopping at the first match) and refused if it matches
//!   any; the refusal names the rule (`password_reused`), never the password.
//! - A new password (set_password, or upsert_user with a password) goes through the password
//!   connector ([`PasswordWriteback`], e.g. LDAP) AFTER the policy check and BEFORE the local
//!   commit: a refused password never reaches the external directory, and a failed writeback
//!   leaves the local hash, history and events untouched (the call fails with
//!   `UNAVAILABLE`/`INTERNAL`), so the two never disagree because of an error we saw.

use std::sync::Arc;

use sspr_bus::subjects::rpc::directory as subjects;
use sspr_bus::{RequestContext, Router, RpcError};
use sspr_clock::SharedClock;
use sspr_proto::common::v1::PasswordStrength;
use sspr_proto::internal::directory::v1::{
    AuthenticateRequest, AuthenticateResponse, DeleteGroupRequest, DeleteGroupResponse,
    DeleteUserRequest, DeleteUserResponse, GetUserRequest, GetUserResponse, Group as GroupRecord,
    ListAdminsRequest, ListAdminsResponse, ListGroupsRequest, ListGroupsResponse, ListUsersRequest,
    ListUsersResponse, SetPasswordRequest, SetPasswordResponse, UnlockRequest, UnlockResponse,
    UpsertGroupRequest, UpsertGroupResponse, UpsertUserRequest, UpsertUserResponse, UserRecord,
};
use tracing::field::Empty;

use crate::SERVICE;
use crate::domain::group::{self, Group, GroupDraft, InvalidGroup};
use crate::domain::ids::{GroupId, UserId};
use crate::domain::password::{ChangeReason, Password, PasswordHash};
use crate::domain::user::{InvalidInput, Profile, ProfileDraft, UnlockReason, User};
use crate::error::Error;
use crate::events;
use crate::hashing::Hasher;
use crate::ports::{
    AccountWrite, BuiltInOnly, MAX_HISTORY, PasswordRules, PasswordVerdict, PasswordWriteback,
    RuleViolation, UserStore,
};

/// Page size of `list_users` when none is given, and the largest accepted.
const DEFAULT_LIST_USERS: u32 = 500;
const MAX_LIST_USERS: u32 = 1000;

/// Longest flow id accepted from a caller, in characters.
const MAX_FLOW_ID_CHARS: usize = 128;

/// The state every endpoint shares; cheap to clone.
#[derive(Clone)]
pub struct DirectoryHandlers {
    store: Arc<dyn UserStore>,
    rules: Arc<dyn PasswordRules>,
    hasher: Hasher,
    clock: SharedClock,
    writeback: Arc<dyn PasswordWriteback>,
}

impl DirectoryHandlers {
    pub fn new(
        store: Arc<dyn UserStore>,
        rules: Arc<dyn PasswordRules>,
        hasher: Hasher,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            rules,
            hasher,
            clock,
            writeback: Arc::new(BuiltInOnly),
        }
    }

    /// Uses `writeback` as the password connector instead of the built-in store only.
    pub fn with_writeback(mut self, writeback: Arc<dyn PasswordWriteback>) -> Self {
        self.writeback = writeback;
        self
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn get_user(&self, req: GetUserRequest) -> Result<GetUserResponse, Error> {
        let user_id = parse_user_id(&req.user_id)?;
        Ok(match self.store.find(&user_id).await? {
            Some(user) => GetUserResponse {
                found: true,
                user: Some(record(&user)),
            },
            None => GetUserResponse {
                found: false,
                user: None,
            },
        })
    }

    /// One page of every account, sorted by user id (for the policy preview).
    #[tracing::instrument(skip_all, fields(page_size = req.page_size))]
    pub async fn list_users(&self, req: ListUsersRequest) -> Result<ListUsersResponse, Error> {
        let limit = match req.page_size {
            0 => DEFAULT_LIST_USERS,
            n if n <= MAX_LIST_USERS => n,
            n => {
                return Err(Error::InvalidArgument(format!(
                    "page_size must be 1 to {MAX_LIST_USERS}, got {n}"
                )));
            }
        };
        let after = match req.after_user_id.as_str() {
            "" => None,
            raw => Some(parse_user_id(raw)?),
        };
        let users = self
            .store
            .list_users(after.as_ref(), u64::from(limit))
            .await?;
        let next_after_user_id = match users.last() {
            Some(last) if users.len() == limit as usize => last.profile.user_id.as_str().to_owned(),
            _ => String::new(),
        };
        Ok(ListUsersResponse {
            users: users.iter().map(record).collect(),
            next_after_user_id,
        })
    }

    /// Every enabled administrator (for admin alerts), sorted by user id.
    #[tracing::instrument(skip_all)]
    pub async fn list_admins(&self, _req: ListAdminsRequest) -> Result<ListAdminsResponse, Error> {
        let users = self.store.list_admins().await?;
        Ok(ListAdminsResponse {
            users: users.iter().map(record).collect(),
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn authenticate(
        &self,
        req: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, Error> {
        let password = Password::new(&req.password);
        // A malformed id is just another unknown user: same work, same answer.
        let user = match UserId::parse(&req.user_id) {
            Some(id) => self.store.find(&id).await?,
            None => None,
        };
        let stored = user.as_ref().and_then(|u| u.sign_in_hash().cloned());
        let matches = self.hasher.verify(password, stored).await?;
        match user {
            Some(user) if matches => {
                tracing::info!("sign-in accepted");
                Ok(AuthenticateResponse {
                    user: Some(record(&user)),
                })
            }
            _ => {
                tracing::info!("sign-in refused");
                Err(Error::WrongCredentials)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id, flow_id = %req.flow_id))]
    pub async fn set_password(
        &self,
        req: SetPasswordRequest,
    ) -> Result<SetPasswordResponse, Error> {
        let user_id = parse_user_id(&req.user_id)?;
        let reason = ChangeReason::parse(&req.reason).ok_or_else(|| {
            Error::InvalidArgument("reason must be \"self_service_reset\" or \"admin\"".to_owned())
        })?;
        check_flow_id(&req.flow_id)?;
        let user = self.store.find(&user_id).await?.ok_or(Error::UnknownUser)?;
        let password = Password::new(&req.new_password);
        let (hash, keep, strength) = self
            .accept_password(
                password.clone(),
                "new_password",
                &user_id,
                user.profile.display_name.as_str(),
                user.password_hash.as_ref(),
            )
            .await?;
        // Order: policy check (above) -> writeback -> local commit with the event. The
        // external directory is the one that can refuse (unreachable, its own rules), so it
        // goes first; committing locally first would leave a hash (and a `password.changed`
        // event) for a password the user cannot sign in with elsewhere. The reverse case (LDAP
        // changed, local commit fails) is left to a retry of the same password.
        self.write_back(&user_id, &password).await?;
        let now = self.clock.now();
        let event = events::password_changed(&user_id, &req.flow_id, reason, "", now);
        // A verified self-service reset also unlocks a locked account (as Entra does); an
        // admin's password change leaves the lock alone.
        let unlock = (reason == ChangeReason::SelfServiceReset).then(|| {
            events::account_unlocked(&user_id, &req.flow_id, UnlockReason::SelfService, "", now)
        });
        if !self
            .store
            .set_password(&user_id, &hash, keep, now, vec![event], unlock)
            .await?
        {
            // Deleted between the look-up and the write.
            return Err(Error::UnknownUser);
        }
        tracing::info!(reason = reason.as_str(), "password changed");
        Ok(SetPasswordResponse { strength })
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn upsert_user(&self, req: UpsertUserRequest) -> Result<UpsertUserResponse, Error> {
        let actor = req.actor;
        let profile = Profile::parse(ProfileDraft {
            user_id: req.user_id,
            display_name: req.display_name,
            locale: req.locale,
            group_ids: req.group_ids,
            is_admin: req.is_admin,
        })?;
        let (hash, keep) = if req.password.is_empty() {
            (None, 0)
        } else {
            let password = Password::new(&req.password);
            let current = self
                .store
                .find(&profile.user_id)
                .await?
                .and_then(|u| u.password_hash);
            let (hash, keep, _strength) = self
                .accept_password(
                    password.clone(),
                    "password",
                    &profile.user_id,
                    profile.display_name.as_str(),
                    current.as_ref(),
                )
                .await?;
            // Same order as set_password: policy -> writeback -> local commit.
            self.write_back(&profile.user_id, &password).await?;
            (Some(hash), keep)
        };
        let now = self.clock.now();
        let events = match hash {
            Some(_) => vec![events::password_changed(
                &profile.user_id,
                "",
                ChangeReason::Admin,
                &actor,
                now,
            )],
            None => Vec::new(),
        };
        let write = AccountWrite {
            profile: &profile,
            enabled: req.enabled,
            locked: req.locked,
            password: hash.as_ref(),
            keep,
        };
        let lock_event = |locked: bool| {
            if locked {
                events::account_locked(&profile.user_id, &actor, now)
            } else {
                events::account_unlocked(&profile.user_id, "", UnlockReason::Admin, &actor, now)
            }
        };
        let password_set = hash.is_some();
        let upserted = |user: &User, created: bool| {
            events::user_upserted(user, created, password_set, &actor, now)
        };
        let user = self
            .store
            .upsert(write, now, events, &lock_event, &upserted)
            .await?;
        tracing::info!(
            password_set = hash.is_some(),
            is_admin = user.profile.is_admin,
            enabled = user.enabled,
            locked = user.locked,
            groups = user.profile.group_ids.len(),
            "account upserted"
        );
        Ok(UpsertUserResponse {
            user: Some(record(&user)),
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn delete_user(&self, req: DeleteUserRequest) -> Result<DeleteUserResponse, Error> {
        let user_id = parse_user_id(&req.user_id)?;
        let now = self.clock.now();
        let event = events::user_deleted(&user_id, &req.actor, now);
        if !self.store.delete(&user_id, now, vec![event]).await? {
            return Err(Error::UnknownUser);
        }
        tracing::info!("account deleted");
        Ok(DeleteUserResponse {})
    }

    /// Clears the locked state of an account; `account.unlocked` only if it was locked.
    #[tracing::instrument(skip_all, fields(user_id = %req.user_id, flow_id = %req.flow_id))]
    pub async fn unlock(&self, req: UnlockRequest) -> Result<UnlockResponse, Error> {
        let user_id = parse_user_id(&req.user_id)?;
        let reason = UnlockReason::parse(&req.reason).ok_or_else(|| {
            Error::InvalidArgument("reason must be \"self_service\" or \"admin\"".to_owned())
        })?;
        check_flow_id(&req.flow_id)?;
        let now = self.clock.now();
        let event = events::account_unlocked(&user_id, &req.flow_id, reason, &req.actor, now);
        let (user, was_locked) = self
            .store
            .unlock(&user_id, now, event)
            .await?
            .ok_or(Error::UnknownUser)?;
        tracing::info!(reason = reason.as_str(), was_locked, "account unlocked");
        Ok(UnlockResponse {
            user: Some(record(&user)),
            was_locked,
        })
    }

    #[tracing::instrument(skip_all, fields(group_id = Empty))]
    pub async fn upsert_group(
        &self,
        req: UpsertGroupRequest,
    ) -> Result<UpsertGroupResponse, Error> {
        let submitted = req.group.ok_or(InvalidGroup::Missing)?;
        let group = Group::parse(GroupDraft {
            group_id: submitted.group_id,
            display_name: submitted.display_name,
            member_group_ids: submitted.member_group_ids,
        })?;
        tracing::Span::current().record("group_id", group.group_id.as_str());
        let actor = req.actor;
        let now = self.clock.now();
        let upserted =
            |stored: &Group, created: bool| events::group_upserted(stored, created, &actor, now);
        let stored = self.store.upsert_group(&group, now, &upserted).await?;
        tracing::info!(members = stored.member_group_ids.len(), "group upserted");
        Ok(UpsertGroupResponse {
            group: Some(group_record(&stored)),
        })
    }

    #[tracing::instrument(skip_all, fields(group_id = %req.group_id))]
    pub async fn delete_group(
        &self,
        req: DeleteGroupRequest,
    ) -> Result<DeleteGroupResponse, Error> {
        let group_id = GroupId::parse(&req.group_id).ok_or(InvalidGroup::GroupId)?;
        let now = self.clock.now();
        let event = events::group_deleted(&group_id, &req.actor, now);
        if !self.store.delete_group(&group_id, now, event).await? {
            return Err(Error::UnknownGroup);
        }
        tracing::info!("group deleted");
        Ok(DeleteGroupResponse {})
    }

    /// Groups sorted by id, `page_size` at a time (0 means [`group::DEFAULT_PAGE_SIZE`]).
    #[tracing::instrument(skip_all)]
    pub async fn list_groups(&self, req: ListGroupsRequest) -> Result<ListGroupsResponse, Error> {
        let size = match req.page_size {
            0 => group::DEFAULT_PAGE_SIZE,
            n if n <= group::MAX_PAGE_SIZE => n,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "page_size must be at most {}",
                    group::MAX_PAGE_SIZE
                )));
            }
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(group::parse_page_token(&req.page_token).ok_or_else(|| {
                Error::InvalidArgument("page_token is not a valid page token".to_owned())
            })?)
        };
        // One more than asked tells whether another page follows.
        let mut groups = self
            .store
            .list_groups(after.as_ref(), u64::from(size) + 1)
            .await?;
        let next_page_token = if groups.len() > size as usize {
            groups.truncate(size as usize);
            groups
                .last()
                .map(|g| group::page_token_after(&g.group_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ListGroupsResponse {
            groups: groups.iter().map(group_record).collect(),
            next_page_token,
        })
    }

    /// The checks `set_password` would make, without writing anything: the policy's verdict
    /// for the account's stored display name, then the password history. Takes and answers
    /// the policy service's `check_password` messages (the request's display name is ignored).
    #[tracing::instrument(skip_all, fields(user_id = Empty))]
    pub async fn check_password(
        &self,
        req: sspr_proto::internal::policy::v1::CheckPasswordRequest,
    ) -> Result<sspr_proto::internal::policy::v1::CheckPasswordResponse, Error> {
        use sspr_proto::internal::policy::v1 as pol;
        let user_id = parse_user_id(&req.user_id)?;
        tracing::Span::current().record("user_id", user_id.as_str());
        let user = self.store.find(&user_id).await?.ok_or(Error::UnknownUser)?;
        let password = Password::new(&req.password);
        let verdict = self
            .judge_password(
                &password,
                &user_id,
                user.profile.display_name.as_str(),
                user.password_hash.as_ref(),
            )
            .await?;
        tracing::info!(
            accepted = verdict.accepted,
            violations = verdict.violations.len(),
            "password checked"
        );
        Ok(pol::CheckPasswordResponse {
            accepted: verdict.accepted,
            violations: verdict
                .violations
                .into_iter()
                .map(|v| pol::PasswordViolation {
                    rule: v.rule,
                    message: v.message,
                })
                .collect(),
            strength: verdict.strength.as_ref().map_or(0, |s| s.score),
            history_count: verdict.history_count,
            estimate: verdict.strength,
            ..Default::default()
        })
    }

    /// Writes the accepted password through the connector. A failure ends the change; it is
    /// logged where it becomes an `RpcError` (connector and cause, never the password).
    async fn write_back(&self, user_id: &UserId, password: &Password) -> Result<(), Error> {
        Ok(self.writeback.set_password(user_id, password).await?)
    }

    /// Asks the policy service about `password`, refuses it if it is one of the last
    /// `history_count` passwords (`current` and the stored previous ones), then hashes it.
    /// Returns the hash, how many passwords the store must remember and the policy's strength
    /// estimate. `field` names the request field in the refusal's details.
    async fn accept_password(
        &self,
        password: Password,
        field: &'static str,
        user_id: &UserId,
        display_name: &str,
        current: Option<&PasswordHash>,
    ) -> Result<(PasswordHash, u32, Option<PasswordStrength>), Error> {
        let verdict = self
            .judge_password(&password, user_id, display_name, current)
            .await?;
        if !verdict.accepted {
            let mut violations = verdict.violations;
            if violations.is_empty() {
                violations.push(RuleViolation {
                    rule: "policy".to_owned(),
                    message: "does not meet the password policy".to_owned(),
                });
            }
            tracing::info!(violations = violations.len(), "password refused");
            return Err(Error::PasswordRejected { field, violations });
        }
        let keep = verdict.history_count;
        Ok((self.hasher.hash(password).await?, keep, verdict.strength))
    }

    /// The policy's verdict on `password`, then, only when the policy accepts it, the password
    /// history: a reuse of one of the last `history_count` passwords (`current` and the stored
    /// previous ones) turns the verdict into a `password_reused` refusal. `history_count` is
    /// capped at [`MAX_HISTORY`]. Shared by `set_password`/`upsert_user` and `check_password`.
    async fn judge_password(
        &self,
        password: &Password,
        user_id: &UserId,
        display_name: &str,
        current: Option<&PasswordHash>,
    ) -> Result<PasswordVerdict, Error> {
        let mut verdict = self.rules.check(password, user_id, display_name).await?;
        verdict.history_count = verdict.history_count.min(MAX_HISTORY);
        let keep = verdict.history_count;
        if verdict.accepted && keep > 0 && self.in_history(password, user_id, current, keep).await?
        {
            tracing::debug!(history = keep, "password is one of the last ones");
            verdict.accepted = false;
            verdict.violations.push(RuleViolation {
                rule: "password_reused".to_owned(),
                message: format!("must not be one of your last {keep} passwords"),
            });
        }
        Ok(verdict)
    }

    /// True if `password` verifies against `current` or one of the `keep - 1` previous hashes:
    /// at most `keep` Argon2id verifications, stopping at the first match.
    async fn in_history(
        &self,
        password: &Password,
        user_id: &UserId,
        current: Option<&PasswordHash>,
        keep: u32,
    ) -> Result<bool, Error> {
        let previous = self
            .store
            .previous_passwords(user_id, keep.saturating_sub(1))
            .await?;
        let candidates = current.into_iter().cloned().chain(previous);
        for hash in candidates.take(keep as usize) {
            if self.hasher.verify(password.clone(), Some(hash)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn parse_user_id(raw: &str) -> Result<UserId, Error> {
    UserId::parse(raw).ok_or(Error::Invalid(InvalidInput::UserId))
}

fn check_flow_id(flow_id: &str) -> Result<(), Error> {
    if flow_id.chars().count() > MAX_FLOW_ID_CHARS || flow_id.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "flow_id must be at most {MAX_FLOW_ID_CHARS} printable characters"
        )));
    }
    Ok(())
}

fn group_record(group: &Group) -> GroupRecord {
    GroupRecord {
        group_id: group.group_id.as_str().to_owned(),
        display_name: group.display_name.as_str().to_owned(),
        member_group_ids: group
            .member_group_ids
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
    }
}

fn record(user: &User) -> UserRecord {
    UserRecord {
        user_id: user.profile.user_id.as_str().to_owned(),
        display_name: user.profile.display_name.as_str().to_owned(),
        locale: user.profile.locale.as_str().to_owned(),
        group_ids: user
            .profile
            .group_ids
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        is_admin: user.profile.is_admin,
        enabled: user.enabled,
        has_password: user.has_password(),
        locked: user.locked,
        effective_group_ids: user
            .effective_group_ids
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
    }
}

/// The routes that honour the client's idempotency key (the Admin API's changes). UpsertUser is
/// not among them: it may carry a password and nothing unguessable, and the directory has no
/// secret to key the stored request hash with; replaying the same upsert leaves the same state.
pub const IDEMPOTENT: [&str; 4] = [
    subjects::DELETE_USER,
    subjects::UNLOCK,
    subjects::UPSERT_GROUP,
    subjects::DELETE_GROUP,
];

/// The service's NATS endpoints.
pub fn router(handlers: DirectoryHandlers) -> Router {
    let get = handlers.clone();
    let auth = handlers.clone();
    let set = handlers.clone();
    let check = handlers.clone();
    let upsert = handlers.clone();
    let admins = handlers.clone();
    let list_users = handlers.clone();
    let unlock = handlers.clone();
    let upsert_group = handlers.clone();
    let delete_group = handlers.clone();
    let list_groups = handlers.clone();
    let delete = handlers;
    Router::new(
        SERVICE,
        "sspr directory: accounts, groups and password hashes",
    )
    .route(subjects::GET_USER, move |_: RequestContext, req| {
        let h = get.clone();
        async move { h.get_user(req).await.map_err(RpcError::from) }
    })
    .route(subjects::AUTHENTICATE, move |_: RequestContext, req| {
        let h = auth.clone();
        async move { h.authenticate(req).await.map_err(RpcError::from) }
    })
    .route(subjects::SET_PASSWORD, move |_: RequestContext, req| {
        let h = set.clone();
        async move { h.set_password(req).await.map_err(RpcError::from) }
    })
    .route(subjects::CHECK_PASSWORD, move |_: RequestContext, req| {
        let h = check.clone();
        async move { h.check_password(req).await.map_err(RpcError::from) }
    })
    .route(subjects::UPSERT_USER, move |_: RequestContext, req| {
        let h = upsert.clone();
        async move { h.upsert_user(req).await.map_err(RpcError::from) }
    })
    .route(subjects::DELETE_USER, move |_: RequestContext, req| {
        let h = delete.clone();
        async move { h.delete_user(req).await.map_err(RpcError::from) }
    })
    .route(subjects::LIST_ADMINS, move |_: RequestContext, req| {
        let h = admins.clone();
        async move { h.list_admins(req).await.map_err(RpcError::from) }
    })
    .route(subjects::LIST_USERS, move |_: RequestContext, req| {
        let h = list_users.clone();
        async move { h.list_users(req).await.map_err(RpcError::from) }
    })
    .route(subjects::UNLOCK, move |_: RequestContext, req| {
        let h = unlock.clone();
        async move { h.unlock(req).await.map_err(RpcError::from) }
    })
    .route(subjects::UPSERT_GROUP, move |_: RequestContext, req| {
        let h = upsert_group.clone();
        async move { h.upsert_group(req).await.map_err(RpcError::from) }
    })
    .route(subjects::DELETE_GROUP, move |_: RequestContext, req| {
        let h = delete_group.clone();
        async move { h.delete_group(req).await.map_err(RpcError::from) }
    })
    .route(subjects::LIST_GROUPS, move |_: RequestContext, req| {
        let h = list_groups.clone();
        async move { h.list_groups(req).await.map_err(RpcError::from) }
    })
}
