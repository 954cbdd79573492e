//! `sspr.admin.v1.Admin` -> `sspr.rpc.policy.*` (the SSPR policy and the password policy),
//! `sspr.rpc.directory.*`, `sspr.rpc.audit.list_events` and
//! `sspr.rpc.notification.get_delivery` (a code delivery's status; never the code nor the
//! destination, which notification's records do not hold).
//!
//! Every call must carry `authorization: Bearer <admin token>`, one of the configured named
//! tokens ([`AdminTokens`]). The token is checked first, before the body is looked at, and
//! compared in constant time against every configured token (`UNAUTHENTICATED` when none
//! matches); then its role must allow the method (`PERMISSION_DENIED` otherwise). The caller's
//! admin id travels to the owning service as the `actor` of the change, so the audit names who
//! did it. Neither the expected nor the presented token is ever logged or put in a status
//! message.
//!
//! Failed authentication (no token, or an unknown one) is limited per client IP
//! ([`AdminAuthLimiter`], in memory per gateway replica): after more than 10 failures in a
//! minute every Admin call from that IP is `RESOURCE_EXHAUSTED` with a retry-after until the minute ends,
//! even with a valid token. Failures are reported as `sspr.events.v1.admin.auth_failed`
//! (best effort, at most one event per IP a minute, with the count), which the audit records.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sspr_bus::subjects::{
    self,
    rpc::{audit, directory, notification, policy, verification},
};
use sspr_proto::admin::v1::admin_server::{Admin, SERVICE_NAME};
use sspr_proto::admin::v1::{
    AuditRecord, ClearBlockRequest, ClearBlockResponse, DeleteGroupRequest, DeleteGroupResponse,
    DeleteUserRequest, DeleteUserResponse, Delivery, DeliveryStatus, GetBlockRequest,
    GetBlockResponse, GetDeliveryRequest, GetPasswordPolicyRequest, GetPolicyRequest,
    GetUserRequest, Group, ListAuditEventsRequest, ListAuditEventsResponse, ListGroupsRequest,
    ListGroupsResponse, PasswordPolicy, Policy, PreviewPolicyRequest, PreviewPolicyResponse,
    SetPasswordPolicyRequest, SetPolicyRequest, UnlockUserRequest, UpsertGroupRequest,
    UpsertUserRequest, User,
};
use sspr_proto::events::v1::{AdminAuthFailed, EventMeta};
use sspr_proto::internal::audit::v1 as internal_audit;
use sspr_proto::internal::directory::v1 as internal_directory;
use sspr_proto::internal::notification::v1 as internal_notification;
use sspr_proto::internal::policy::v1 as internal_policy;
use sspr_proto::internal::verification::v1 as internal_verification;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::api::Edge;
use crate::call::Call;
use crate::domain::admin_auth_limit::AdminAuthLimiter;
use crate::domain::admin_tokens::{AdminTokens, HELPDESK_METHODS, Role};
use crate::domain::input;
use crate::error::GatewayError;

/// The administration API.
#[derive(Clone)]
pub struct AdminApi {
    edge: Edge,
    tokens: AdminTokens,
    failures: Arc<Mutex<AdminAuthLimiter>>,
}

/// Who is making an Admin API call: the admin id and role of the token presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminCaller {
    /// Recorded as the `actor` of every change the call makes.
    pub admin_id: String,
    pub role: Role,
}

impl AdminApi {
    pub fn new(edge: Edge, tokens: AdminTokens) -> Self {
        Self {
            edge,
            tokens,
            failures: Arc::default(),
        }
    }

    /// Authenticates the caller and checks that their role may call `method` (the gRPC method
    /// name, as given to [`Call::start`], e.g. `"SetPolicy"`). Call it first in every method.
    /// A client IP over its failure limit is refused before the token is looked at.
    fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &'static str,
    ) -> Result<AdminCaller, GatewayError> {
        let ip = self.edge.client_ip(request);
        let now = Instant::now();
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(&ip, now)
            .map_err(|l| GatewayError::AdminAuthLimited {
                retry_after_secs: l.retry_after.as_secs().max(1),
            })?;
        let result = authorize(request.metadata(), &self.tokens, method);
        if let Err(GatewayError::Unauthenticated(message)) = &result {
            let report = self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record_failure(&ip, now);
            tracing::info!(client_ip = %ip, method, "admin authentication failed");
            if let Some(report) = report {
                let reason = if *message == MISSING_TOKEN {
                    "missing_token"
                } else {
                    "unknown_token"
                };
                self.report_failure(ip, method, reason, report.failures);
            }
        }
        result
    }

    /// Publishes `admin.auth_failed` in the background; losing it loses only a summary.
    fn report_failure(&self, client_ip: String, method: &'static str, reason: &str, failures: u32) {
        let event_id = uuid::Uuid::now_v7().to_string();
        let event = AdminAuthFailed {
            meta: Some(EventMeta {
                event_id: event_id.clone(),
                occurred_at: Some(sspr_proto::time::timestamp(chrono::Utc::now())),
                source: "gateway".to_owned(),
                ..Default::default()
            }),
            client_ip,
            method: method.to_owned(),
            reason: reason.to_owned(),
            failures,
        };
        let bus = self.edge.bus().clone();
        tokio::spawn(async move {
            let payload = prost::Message::encode_to_vec(&event).into();
            if let Err(e) = bus
                .publish_durable(
                    subjects::events::ADMIN_AUTH_FAILED,
                    &event_id,
                    Default::default(),
                    payload,
                )
                .await
            {
                tracing::warn!(error = %e, "could not publish admin.auth_failed");
            }
        });
    }
}

/// The refusal of a call without a bearer token.
const MISSING_TOKEN: &str = "admin calls need the metadata `authorization: Bearer <admin token>`";

/// Accepts `authorization: Bearer <token>` (scheme case-insensitive) with one of the admin
/// tokens whose role may call `method`.
fn authorize(
    metadata: &MetadataMap,
    tokens: &AdminTokens,
    method: &'static str,
) -> Result<AdminCaller, GatewayError> {
    let presented = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err(GatewayError::Unauthenticated(MISSING_TOKEN));
    };
    let Some(token) = tokens.identify(presented) else {
        return Err(GatewayError::Unauthenticated("invalid admin token"));
    };
    let caller = AdminCaller {
        admin_id: token.admin_id().as_str().to_owned(),
        role: token.role(),
    };
    if !caller.role.may_call(method) {
        tracing::info!(
            admin_id = %caller.admin_id,
            role = caller.role.as_str(),
            method,
            "admin call refused: role"
        );
        return Err(GatewayError::PermissionDenied(format!(
            "{} has the {} role, which may not call {method}; it may call only {}",
            caller.admin_id,
            caller.role.as_str(),
            HELPDESK_METHODS.join(", ")
        )));
    }
    Ok(caller)
}

/// The edge checks of a submitted policy, the same for SetPolicy and PreviewPolicy; the
/// policy service validates it in full.
fn proposed_policy(policy: Option<Policy>) -> Result<Policy, GatewayError> {
    let Some(mut policy) = policy else {
        return Err(input::InvalidField {
            field: "policy",
            problem: "is required".to_owned(),
        }
        .into());
    };
    policy.group_ids = input::group_ids("policy.group_ids", &policy.group_ids)?;
    policy.reconfirm_after_days = input::reconfirm_after_days(policy.reconfirm_after_days)?;
    policy.helpdesk_contact = input::helpdesk_contact(&policy.helpdesk_contact)?.to_owned();
    if let Some(limits) = &policy.limits {
        input::phone_prefixes(&limits.phone_allowed_prefixes)?;
    }
    Ok(policy)
}

fn user_from_record(record: internal_directory::UserRecord) -> User {
    User {
        user_id: record.user_id,
        display_name: record.display_name,
        locale: record.locale,
        group_ids: record.group_ids,
        is_admin: record.is_admin,
        enabled: record.enabled,
        has_password: record.has_password,
        locked: record.locked,
        effective_group_ids: record.effective_group_ids,
    }
}

fn group_from_record(record: internal_directory::Group) -> Group {
    Group {
        group_id: record.group_id,
        display_name: record.display_name,
        member_group_ids: record.member_group_ids,
    }
}

fn password_policy_from_internal(p: internal_policy::PasswordPolicy) -> PasswordPolicy {
    PasswordPolicy {
        min_length: p.min_length,
        custom_banned_terms: p.custom_banned_terms,
        organisation_name: p.organisation_name,
        history_count: p.history_count,
        version: p.version,
        max_length: p.max_length,
    }
}

/// Checks the submitted password policy at the edge; `version` and `max_length` are not
/// settable and are dropped.
fn password_policy_to_internal(
    p: PasswordPolicy,
) -> Result<internal_policy::PasswordPolicy, input::InvalidField> {
    Ok(internal_policy::PasswordPolicy {
        min_length: input::password_min_length(p.min_length)?,
        custom_banned_terms: input::banned_terms(&p.custom_banned_terms)?,
        organisation_name: input::organisation_name(&p.organisation_name)?.to_owned(),
        history_count: input::password_history(p.history_count)?,
        version: 0,
        max_length: 0,
    })
}

fn audit_record(r: internal_audit::AuditRecord) -> AuditRecord {
    AuditRecord {
        event_id: r.event_id,
        occurred_at: r.occurred_at,
        kind: r.kind,
        user_id: r.user_id,
        flow_id: r.flow_id,
        actor: r.actor,
        outcome: r.outcome,
        trace_id: r.trace_id,
        source: r.source,
        summary_json: r.summary_json,
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn get_policy(
        &self,
        request: Request<GetPolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        let call = Call::start(SERVICE_NAME, "GetPolicy", request.metadata());
        call.run(async {
            self.authorize(&request, "GetPolicy")?;
            let resp: internal_policy::GetPolicyResponse = self
                .edge
                .bus()
                .request(policy::GET_POLICY, &internal_policy::GetPolicyRequest {})
                .await?;
            resp.policy.ok_or(GatewayError::MalformedReply(
                "get_policy answered without a policy",
            ))
        })
        .await
    }

    async fn set_policy(
        &self,
        request: Request<SetPolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        let call = Call::start(SERVICE_NAME, "SetPolicy", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "SetPolicy")?;
            let policy = proposed_policy(request.into_inner().policy)?;
            let resp: internal_policy::SetPolicyResponse = self
                .edge
                .bus()
                .request(
                    policy::SET_POLICY,
                    &internal_policy::SetPolicyRequest {
                        policy: Some(policy),
                        actor: caller.admin_id,
                    },
                )
                .await?;
            resp.policy.ok_or(GatewayError::MalformedReply(
                "set_policy answered without a policy",
            ))
        })
        .await
    }

    async fn get_password_policy(
        &self,
        request: Request<GetPasswordPolicyRequest>,
    ) -> Result<Response<PasswordPolicy>, Status> {
        let call = Call::start(SERVICE_NAME, "GetPasswordPolicy", request.metadata());
        call.run(async {
            self.authorize(&request, "GetPasswordPolicy")?;
            let resp: internal_policy::GetPasswordPolicyResponse = self
                .edge
                .bus()
                .request(
                    policy::GET_PASSWORD_POLICY,
                    &internal_policy::GetPasswordPolicyRequest {},
                )
                .await?;
            resp.policy
                .map(password_policy_from_internal)
                .ok_or(GatewayError::MalformedReply(
                    "get_password_policy answered without a policy",
                ))
        })
        .await
    }

    async fn set_password_policy(
        &self,
        request: Request<SetPasswordPolicyRequest>,
    ) -> Result<Response<PasswordPolicy>, Status> {
        let call = Call::start(SERVICE_NAME, "SetPasswordPolicy", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "SetPasswordPolicy")?;
            let Some(submitted) = request.into_inner().policy else {
                return Err(input::InvalidField {
                    field: "policy",
                    problem: "is required".to_owned(),
                }
                .into());
            };
            let policy = password_policy_to_internal(submitted)?;
            let resp: internal_policy::SetPasswordPolicyResponse = self
                .edge
                .bus()
                .request(
                    policy::SET_PASSWORD_POLICY,
                    &internal_policy::SetPasswordPolicyRequest {
                        policy: Some(policy),
                        actor: caller.admin_id,
                    },
                )
                .await?;
            resp.policy
                .map(password_policy_from_internal)
                .ok_or(GatewayError::MalformedReply(
                    "set_password_policy answered without a policy",
                ))
        })
        .await
    }

    async fn upsert_user(
        &self,
        request: Request<UpsertUserRequest>,
    ) -> Result<Response<User>, Status> {
        let call = Call::start(SERVICE_NAME, "UpsertUser", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "UpsertUser")?;
            let req = request.into_inner();
            let user_id = input::user_id(&req.user_id)?.to_owned();
            let display_name = input::display_name(&req.display_name)?.to_owned();
            let locale = input::locale("locale", &req.locale)?.to_owned();
            let group_ids = input::group_ids("group_ids", &req.group_ids)?;
            input::optional_password("password", &req.password)?;
            let internal = internal_directory::UpsertUserRequest {
                user_id,
                display_name,
                locale,
                group_ids,
                is_admin: req.is_admin,
                password: req.password,
                enabled: req.enabled,
                locked: req.locked,
                actor: caller.admin_id,
            };
            let resp: internal_directory::UpsertUserResponse = self
                .edge
                .bus()
                .request(directory::UPSERT_USER, &internal)
                .await?;
            resp.user
                .map(user_from_record)
                .ok_or(GatewayError::MalformedReply(
                    "upsert_user answered without a user",
                ))
        })
        .await
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "DeleteUser", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "DeleteUser")?;
            let req = request.into_inner();
            let internal = internal_directory::DeleteUserRequest {
                user_id: input::user_id(&req.user_id)?.to_owned(),
                actor: caller.admin_id,
            };
            let _: internal_directory::DeleteUserResponse = self
                .edge
                .bus()
                .request(directory::DELETE_USER, &internal)
                .await?;
            Ok(DeleteUserResponse {})
        })
        .await
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "ListAuditEvents", request.metadata());
        call.run(async {
            self.authorize(&request, "ListAuditEvents")?;
            let req = request.into_inner();
            input::time_range(req.from.as_ref(), req.to.as_ref())?;
            let internal = internal_audit::ListEventsRequest {
                user_id: input::optional_user_id(&req.user_id)?.to_owned(),
                kind: input::audit_kind(&req.kind)?.to_owned(),
                from: req.from,
                to: req.to,
                page_size: input::page_size(req.page_size)?,
                page_token: input::page_token(&req.page_token)?.to_owned(),
            };
            let resp: internal_audit::ListEventsResponse = self
                .edge
                .bus()
                .request(audit::LIST_EVENTS, &internal)
                .await?;
            Ok(ListAuditEventsResponse {
                records: resp.records.into_iter().map(audit_record).collect(),
                next_page_token: resp.next_page_token,
            })
        })
        .await
    }
    async fn preview_policy(
        &self,
        request: Request<PreviewPolicyRequest>,
    ) -> Result<Response<PreviewPolicyResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "PreviewPolicy", request.metadata());
        call.run(async {
            self.authorize(&request, "PreviewPolicy")?;
            let req = request.into_inner();
            let internal = internal_policy::PreviewRequest {
                policy: Some(proposed_policy(req.policy)?),
                page_size: input::page_size(req.page_size)?,
                page_token: input::preview_page_token(&req.page_token)?.to_owned(),
            };
            let resp: internal_policy::PreviewResponse =
                self.edge.bus().request(policy::PREVIEW, &internal).await?;
            Ok(PreviewPolicyResponse {
                users_total: resp.users_total,
                users_able: resp.users_able,
                users_unable: resp.users_unable,
                unable: resp.unable,
                next_page_token: resp.next_page_token,
            })
        })
        .await
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let call = Call::start(SERVICE_NAME, "GetUser", request.metadata());
        call.run(async {
            self.authorize(&request, "GetUser")?;
            let req = request.into_inner();
            let internal = internal_directory::GetUserRequest {
                user_id: input::user_id(&req.user_id)?.to_owned(),
            };
            let resp: internal_directory::GetUserResponse = self
                .edge
                .bus()
                .request(directory::GET_USER, &internal)
                .await?;
            match (resp.found, resp.user) {
                (true, Some(user)) => Ok(user_from_record(user)),
                (true, None) => Err(GatewayError::MalformedReply(
                    "get_user answered found without a user",
                )),
                (false, _) => Err(GatewayError::NotFound("no such user")),
            }
        })
        .await
    }

    async fn unlock_user(
        &self,
        request: Request<UnlockUserRequest>,
    ) -> Result<Response<User>, Status> {
        let call = Call::start(SERVICE_NAME, "UnlockUser", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "UnlockUser")?;
            let req = request.into_inner();
            let internal = internal_directory::UnlockRequest {
                user_id: input::user_id(&req.user_id)?.to_owned(),
                flow_id: String::new(),
                reason: "admin".to_owned(),
                actor: caller.admin_id,
            };
            let resp: internal_directory::UnlockResponse = self
                .edge
                .bus()
                .request(directory::UNLOCK, &internal)
                .await?;
            resp.user
                .map(user_from_record)
                .ok_or(GatewayError::MalformedReply(
                    "unlock answered without a user",
                ))
        })
        .await
    }

    async fn upsert_group(
        &self,
        request: Request<UpsertGroupRequest>,
    ) -> Result<Response<Group>, Status> {
        let call = Call::start(SERVICE_NAME, "UpsertGroup", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "UpsertGroup")?;
            let Some(group) = request.into_inner().group else {
                return Err(input::InvalidField {
                    field: "group",
                    problem: "is required".to_owned(),
                }
                .into());
            };
            let internal = internal_directory::UpsertGroupRequest {
                group: Some(internal_directory::Group {
                    group_id: input::identifier("group.group_id", &group.group_id)?.to_owned(),
                    display_name: input::display_name(&group.display_name)?.to_owned(),
                    member_group_ids: input::group_ids(
                        "group.member_group_ids",
                        &group.member_group_ids,
                    )?,
                }),
                actor: caller.admin_id,
            };
            let resp: internal_directory::UpsertGroupResponse = self
                .edge
                .bus()
                .request(directory::UPSERT_GROUP, &internal)
                .await?;
            resp.group
                .map(group_from_record)
                .ok_or(GatewayError::MalformedReply(
                    "upsert_group answered without a group",
                ))
        })
        .await
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "DeleteGroup", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "DeleteGroup")?;
            let req = request.into_inner();
            let internal = internal_directory::DeleteGroupRequest {
                group_id: input::identifier("group_id", &req.group_id)?.to_owned(),
                actor: caller.admin_id,
            };
            let _: internal_directory::DeleteGroupResponse = self
                .edge
                .bus()
                .request(directory::DELETE_GROUP, &internal)
                .await?;
            Ok(DeleteGroupResponse {})
        })
        .await
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "ListGroups", request.metadata());
        call.run(async {
            self.authorize(&request, "ListGroups")?;
            let req = request.into_inner();
            let internal = internal_directory::ListGroupsRequest {
                page_size: input::page_size(req.page_size)?,
                page_token: input::page_token(&req.page_token)?.to_owned(),
            };
            let resp: internal_directory::ListGroupsResponse = self
                .edge
                .bus()
                .request(directory::LIST_GROUPS, &internal)
                .await?;
            Ok(ListGroupsResponse {
                groups: resp.groups.into_iter().map(group_from_record).collect(),
                next_page_token: resp.next_page_token,
            })
        })
        .await
    }

    async fn clear_block(
        &self,
        request: Request<ClearBlockRequest>,
    ) -> Result<Response<ClearBlockResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "ClearBlock", request.metadata());
        call.run(async {
            let caller = self.authorize(&request, "ClearBlock")?;
            let req = request.into_inner();
            let internal = internal_verification::ClearBlockRequest {
                user_id: input::user_id(&req.user_id)?.to_owned(),
                actor: caller.admin_id,
            };
            let resp: internal_verification::ClearBlockResponse = self
                .edge
                .bus()
                .request(verification::CLEAR_BLOCK, &internal)
                .await?;
            Ok(ClearBlockResponse {
                was_blocked: resp.was_blocked,
            })
        })
        .await
    }

    async fn get_block(
        &self,
        request: Request<GetBlockRequest>,
    ) -> Result<Response<GetBlockResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "GetBlock", request.metadata());
        call.run(async {
            self.authorize(&request, "GetBlock")?;
            let req = request.into_inner();
            let internal = internal_verification::GetBlockRequest {
                user_id: input::user_id(&req.user_id)?.to_owned(),
            };
            let resp: internal_verification::GetBlockResponse = self
                .edge
                .bus()
                .request(verification::GET_BLOCK, &internal)
                .await?;
            Ok(GetBlockResponse {
                blocked: resp.blocked,
                blocked_until: resp.blocked_until,
                failed_verifications: resp.failed_verifications,
            })
        })
        .await
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<Delivery>, Status> {
        let call = Call::start(SERVICE_NAME, "GetDelivery", request.metadata());
        call.run(async {
            self.authorize(&request, "GetDelivery")?;
            let req = request.into_inner();
            let internal = internal_notification::GetDeliveryRequest {
                delivery_id: delivery_id(&req.delivery_id)?.to_owned(),
            };
            let resp: internal_notification::GetDeliveryResponse = self
                .edge
                .bus()
                .request(notification::GET_DELIVERY, &internal)
                .await?;
            Ok(delivery_from_response(resp))
        })
        .await
    }
}

/// Longest delivery id, in characters (notification's own bound).
const MAX_DELIVERY_ID_CHARS: usize = 128;

/// A delivery id: 1 to 128 characters of `[A-Za-z0-9._-]` (verification makes them UUIDs).
/// Kept here rather than in `domain::input` because only this method takes one.
fn delivery_id(raw: &str) -> Result<&str, input::InvalidField> {
    let problem = if raw.is_empty() {
        "is required"
    } else if raw.len() > MAX_DELIVERY_ID_CHARS
        || !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        "is not a valid delivery id (1 to 128 characters of A-Z a-z 0-9 . _ -)"
    } else {
        return Ok(raw);
    };
    Err(input::InvalidField {
        field: "delivery_id",
        problem: problem.to_owned(),
    })
}

/// Notification's record as the public `Delivery`: the same fields, the status and kind enums
/// mapped by name (the two enums share their numbering, but the mapping must not rely on it).
fn delivery_from_response(r: internal_notification::GetDeliveryResponse) -> Delivery {
    use internal_notification::DeliveryStatus as In;
    let status = match In::try_from(r.status).unwrap_or(In::Unspecified) {
        In::Unspecified => DeliveryStatus::Unspecified,
        In::Queued => DeliveryStatus::Queued,
        In::Sending => DeliveryStatus::Sending,
        In::Sent => DeliveryStatus::Sent,
        In::Delivered => DeliveryStatus::Delivered,
        In::Failed => DeliveryStatus::Failed,
        In::Expired => DeliveryStatus::Expired,
    };
    Delivery {
        delivery_id: r.delivery_id,
        status: status as i32,
        kind: r.kind,
        attempts: r.attempts,
        created_at: r.created_at,
        updated_at: r.updated_at,
        last_error: r.last_error,
        user_id: r.user_id,
        flow_id: r.flow_id,
        sent_at: r.sent_at,
        finished_at: r.finished_at,
        dead_lettered: r.dead_lettered,
        provider: r.provider,
        provider_message_id: r.provider_message_id,
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    fn metadata(value: &'static str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", MetadataValue::from_static(value));
        m
    }

    fn check(token: &str, metadata: &MetadataMap) -> bool {
        let tokens = AdminTokens::single(sspr_runtime::Secret::new(token.to_owned()));
        tokens.is_ok_and(|t| authorize(metadata, &t, "SetPolicy").is_ok())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_exact() {
        let token = "0123456789abcdef-admin";
        assert!(check(token, &metadata("Bearer 0123456789abcdef-admin")));
        assert!(check(token, &metadata("bearer 0123456789abcdef-admin")));
        assert!(!check(token, &metadata("Bearer 0123456789abcdef-admi")));
        assert!(!check(token, &metadata("Bearer 0123456789abcdef-admin2")));
        assert!(!check(token, &metadata("Basic 0123456789abcdef-admin")));
        assert!(!check(token, &metadata("0123456789abcdef-admin")));
        assert!(!check(token, &MetadataMap::new()));
    }

    #[test]
    fn the_caller_is_the_named_token_and_its_role_limits_methods() {
        let tokens = AdminTokens::new(
            crate::domain::admin_tokens::parse_list(
                "alice:admin:alice-token-0123456789,hd:helpdesk:helpdesk-token-0123456789",
            )
            .expect("valid tokens"),
        )
        .expect("valid tokens");
        let alice = metadata("Bearer alice-token-0123456789");
        let helpdesk = metadata("Bearer helpdesk-token-0123456789");
        let caller = authorize(&alice, &tokens, "SetPolicy").expect("admin may");
        assert_eq!(caller.admin_id, "alice");
        assert_eq!(caller.role, Role::Admin);
        let caller = authorize(&helpdesk, &tokens, "ListAuditEvents").expect("helpdesk may");
        assert_eq!(caller.admin_id, "hd");
        match authorize(&helpdesk, &tokens, "SetPolicy") {
            Err(GatewayError::PermissionDenied(m)) => {
                assert!(m.contains("hd") && m.contains("SetPolicy"), "{m}");
                assert!(!m.contains("helpdesk-token"));
            }
            other => panic!("expected PERMISSION_DENIED, got {other:?}"),
        }
        assert!(matches!(
            authorize(
                &metadata("Bearer nobody-token-0123456789"),
                &tokens,
                "GetUser"
            ),
            Err(GatewayError::Unauthenticated(_))
        ));
    }

    #[test]
    fn delivery_ids_are_checked_at_the_edge() {
        assert_eq!(
            delivery_id("0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000").ok(),
            Some("0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000")
        );
        assert_eq!(delivery_id("a.b_c-1").ok(), Some("a.b_c-1"));
        for bad in ["", "has space", "slash/", "é", &"x".repeat(129)] {
            let e = delivery_id(bad).expect_err("refused");
            assert_eq!(e.field, "delivery_id");
            assert!(!e.to_string().contains("slash/"));
        }
        assert!(delivery_id(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn every_internal_delivery_status_has_its_public_name() {
        use internal_notification::DeliveryStatus as In;
        for (internal, public) in [
            (In::Unspecified, DeliveryStatus::Unspecified),
            (In::Queued, DeliveryStatus::Queued),
            (In::Sending, DeliveryStatus::Sending),
            (In::Sent, DeliveryStatus::Sent),
            (In::Delivered, DeliveryStatus::Delivered),
            (In::Failed, DeliveryStatus::Failed),
            (In::Expired, DeliveryStatus::Expired),
        ] {
            let d = delivery_from_response(internal_notification::GetDeliveryResponse {
                status: internal as i32,
                ..Default::default()
            });
            assert_eq!(d.status, public as i32);
        }
        let unknown = delivery_from_response(internal_notification::GetDeliveryResponse {
            status: 99,
            ..Default::default()
        });
        assert_eq!(unknown.status, DeliveryStatus::Unspecified as i32);
    }
}
