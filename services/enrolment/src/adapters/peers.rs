//! NATS clients of the services enrolment depends on: directory (password check, user record),
//! policy (eligibility and requirements) and verification (which owns every code).
//!
//! Requests here carry a password or a code: they are never logged or `Debug`-printed. A peer's
//! refusal comes back as [`BusError::Rpc`] and is passed on to our caller unchanged.

use sspr_bus::{Bus, BusError, subjects::rpc};
use sspr_proto::admin::v1::Policy;
use sspr_proto::events::v1::CodePurpose;
use sspr_proto::internal::directory::v1::{AuthenticateRequest, AuthenticateResponse, UserRecord};
use sspr_proto::internal::policy::v1::{
    EvaluateRequest, EvaluateResponse, GetPolicyRequest, GetPolicyResponse,
};
use sspr_proto::internal::verification::v1::{
    CheckCodeRequest, CheckCodeResponse, IssueCodeRequest, IssueCodeResponse,
};

use crate::domain::{RegisteredMethod, RegistrationSession, UserId};

/// The other services, reached over the bus.
#[derive(Clone)]
pub struct Peers {
    bus: Bus,
}

impl Peers {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// Checks the user's password with the directory; `UNAUTHENTICATED` when wrong or unknown.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn authenticate(
        &self,
        user_id: &UserId,
        password: &str,
    ) -> Result<Option<UserRecord>, BusError> {
        let request = AuthenticateRequest {
            user_id: user_id.as_str().to_owned(),
            password: password.to_owned(),
        };
        let response: AuthenticateResponse = self
            .bus
            .request(rpc::directory::AUTHENTICATE, &request)
            .await?;
        Ok(response.user)
    }

    /// What self-service reset policy says about this user.
    #[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
    pub async fn evaluate(&self, user: &UserRecord) -> Result<EvaluateResponse, BusError> {
        let request = EvaluateRequest {
            user_id: user.user_id.clone(),
            // Nested groups count for SCOPE_SELECTED; an older directory sends no effective
            // groups, then the direct ones are all there is.
            group_ids: if user.effective_group_ids.is_empty() {
                user.group_ids.clone()
            } else {
                user.effective_group_ids.clone()
            },
            is_admin: user.is_admin,
            enabled: user.enabled,
        };
        self.bus.request(rpc::policy::EVALUATE, &request).await
    }

    /// The SSPR policy in force (for its security questions).
    #[tracing::instrument(skip_all)]
    pub async fn policy(&self) -> Result<Policy, BusError> {
        let response: GetPolicyResponse = self
            .bus
            .request(rpc::policy::GET_POLICY, &GetPolicyRequest {})
            .await?;
        Ok(response.policy.unwrap_or_default())
    }

    /// Asks verification to issue a code for `method` (a registration code, or a step-up code
    /// to an existing method) and queue its delivery; verification applies its send limits,
    /// per client IP too.
    #[tracing::instrument(skip_all, fields(user_id = %method.user_id, flow_id = %session.flow_id, method_id = %method.method_id, purpose = ?purpose))]
    pub async fn issue_code(
        &self,
        session: &RegistrationSession,
        method: &RegisteredMethod,
        purpose: CodePurpose,
        client_ip: &str,
    ) -> Result<IssueCodeResponse, BusError> {
        let request = IssueCodeRequest {
            user_id: method.user_id.as_str().to_owned(),
            method_id: method.method_id.as_str().to_owned(),
            kind: method.kind().code(),
            destination: method.destination.as_str().to_owned(),
            locale: session.locale.as_str().to_owned(),
            flow_id: session.flow_id.to_string(),
            purpose: purpose as i32,
            client_ip: client_ip.to_owned(),
        };
        self.bus
            .request(rpc::verification::ISSUE_CODE, &request)
            .await
    }

    /// Asks verification whether `code` is the live code of `method` for `purpose`.
    #[tracing::instrument(skip_all, fields(user_id = %method.user_id, flow_id = %session.flow_id, method_id = %method.method_id, purpose = ?purpose))]
    pub async fn check_code(
        &self,
        session: &RegistrationSession,
        method: &RegisteredMethod,
        code: &str,
        purpose: CodePurpose,
    ) -> Result<(), BusError> {
        let request = CheckCodeRequest {
            user_id: method.user_id.as_str().to_owned(),
            method_id: method.method_id.as_str().to_owned(),
            code: code.to_owned(),
            flow_id: session.flow_id.to_string(),
            purpose: purpose as i32,
        };
        let _: CheckCodeResponse = self
            .bus
            .request(rpc::verification::CHECK_CODE, &request)
            .await?;
        Ok(())
    }
}
