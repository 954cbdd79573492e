//! `sspr.admin.v1.Admin` -> `sspr.rpc.policy.*` (the SSPR policy and the password policy),
//! `sspr.rpc.directory.*` and `sspr.rpc.audit.list_events`.
//!
//! Every call must carry `authorization: Bearer <SSPR_ADMIN_TOKEN>`. The token is checked
//! first, before the body is looked at, and compared in constant time. Neither the expected nor
//! the presented token is ever logged or put in a status message.

use sspr_bus::subjects::rpc::{audit, directory, policy};
use sspr_proto::admin::v1::admin_server::{Admin, SERVICE_NAME};
use sspr_proto::admin::v1::{
    AuditRecord, DeleteGroupRequest, DeleteGroupResponse, DeleteUserRequest, DeleteUserResponse,
    GetPasswordPolicyRequest, GetPolicyRequest, GetUserRequest, Group, ListAuditEventsRequest,
    ListAuditEventsResponse, ListGroupsRequest, ListGroupsResponse, PasswordPolicy, Policy,
    PreviewPolicyRequest, PreviewPolicyResponse, SetPasswordPolicyRequest, SetPolicyRequest,
    UnlockUserRequest, UpsertGroupRequest, UpsertUserRequest, User,
};
use sspr_proto::internal::audit::v1 as internal_audit;
use sspr_proto::internal::directory::v1 as internal_directory;
use sspr_proto::internal::policy::v1 as internal_policy;
use sspr_runtime::Secret;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::api::Edge;
use crate::call::Call;
use crate::domain::input;
use crate::error::GatewayError;

/// The administration API.
#[derive(Clone)]
pub struct AdminApi {
    edge: Edge,
    token: Secret<String>,
}

impl AdminApi {
    pub fn new(edge: Edge, token: Secret<String>) -> Self {
        Self { edge, token }
    }

    fn authorize(&self, metadata: &MetadataMap) -> Result<(), GatewayError> {
        authorize(metadata, &self.token)
    }
}

/// Accepts `authorization: Bearer <token>` (scheme case-insensitive) with the admin token.
fn authorize(metadata: &MetadataMap, expected: &Secret<String>) -> Result<(), GatewayError> {
    let presented = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err(GatewayError::Unauthenticated(
            "admin calls need the metadata `authorization: Bearer <admin token>`",
        ));
    };
    // ct_eq answers false at once on a length mismatch: that reveals only the length.
    if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(GatewayError::Unauthenticated("invalid admin token"))
    }
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
        locked: false,
        effective_group_ids: Vec::new(),
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
            self.authorize(request.metadata())?;
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
            self.authorize(request.metadata())?;
            let Some(mut policy) = request.into_inner().policy else {
                return Err(input::InvalidField {
                    field: "policy",
                    problem: "is required".to_owned(),
                }
                .into());
            };
            policy.group_ids = input::group_ids("policy.group_ids", &policy.group_ids)?;
            policy.reconfirm_after_days = input::reconfirm_after_days(policy.reconfirm_after_days)?;
            policy.helpdesk_contact = input::helpdesk_contact(&policy.helpdesk_contact)?.to_owned();
            let resp: internal_policy::SetPolicyResponse = self
                .edge
                .bus()
                .request(
                    policy::SET_POLICY,
                    &internal_policy::SetPolicyRequest {
                        policy: Some(policy),
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
            self.authorize(request.metadata())?;
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
            self.authorize(request.metadata())?;
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
            self.authorize(request.metadata())?;
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
            self.authorize(request.metadata())?;
            let req = request.into_inner();
            let internal = internal_directory::DeleteUserRequest {
                user_id: input::user_id(&req.user_id)?.to_owned(),
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
            self.authorize(request.metadata())?;
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
        _request: Request<PreviewPolicyRequest>,
    ) -> Result<Response<PreviewPolicyResponse>, Status> {
        Err(Status::unimplemented(
            "PreviewPolicy is not implemented yet",
        ))
    }

    async fn get_user(&self, _request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("GetUser is not implemented yet"))
    }

    async fn unlock_user(
        &self,
        _request: Request<UnlockUserRequest>,
    ) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("UnlockUser is not implemented yet"))
    }

    async fn upsert_group(
        &self,
        _request: Request<UpsertGroupRequest>,
    ) -> Result<Response<Group>, Status> {
        Err(Status::unimplemented("UpsertGroup is not implemented yet"))
    }

    async fn delete_group(
        &self,
        _request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        Err(Status::unimplemented("DeleteGroup is not implemented yet"))
    }

    async fn list_groups(
        &self,
        _request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        Err(Status::unimplemented("ListGroups is not implemented yet"))
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
        authorize(metadata, &Secret::new(token.to_owned())).is_ok()
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
}
