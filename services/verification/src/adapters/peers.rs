//! NATS clients of the services verification consults: directory, policy and enrolment.
//!
//! Each call is a protobuf request/reply through [`Bus::request`], which carries the current
//! trace context. Requests to `set_password` carry a password: it is never logged here.

use sspr_bus::subjects::rpc::{directory, enrolment, policy};
use sspr_bus::{Bus, BusError};
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::enrolment::v1 as enr;
use sspr_proto::internal::policy::v1 as pol;

/// The other services, reached over the bus.
#[derive(Clone)]
pub struct Peers {
    bus: Bus,
}

impl Peers {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// The directory's record of `user_id`, `None` when there is no such user.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<dir::UserRecord>, BusError> {
        let resp: dir::GetUserResponse = self
            .bus
            .request(
                directory::GET_USER,
                &dir::GetUserRequest {
                    user_id: user_id.to_owned(),
                },
            )
            .await?;
        Ok(if resp.found { resp.user } else { None })
    }

    /// What the SSPR policy says for this user.
    pub async fn evaluate(
        &self,
        request: pol::EvaluateRequest,
    ) -> Result<pol::EvaluateResponse, BusError> {
        self.bus.request(policy::EVALUATE, &request).await
    }

    /// The user's confirmed methods, masked; the security-questions method only when enough of
    /// its answered questions are among `question_ids` (see the request's comment).
    pub async fn list_methods(
        &self,
        user_id: &str,
        question_ids: Vec<String>,
        questions_required_to_reset: u32,
    ) -> Result<enr::ListMethodsResponse, BusError> {
        self.bus
            .request(
                enrolment::LIST_METHODS,
                &enr::ListMethodsRequest {
                    user_id: user_id.to_owned(),
                    security_question_ids: question_ids,
                    questions_required_to_reset,
                },
            )
            .await
    }

    /// The question ids the user answered for their security-questions method.
    pub async fn list_answered_questions(
        &self,
        user_id: &str,
        method_id: &str,
    ) -> Result<enr::ListAnsweredQuestionsResponse, BusError> {
        self.bus
            .request(
                enrolment::LIST_ANSWERED_QUESTIONS,
                &enr::ListAnsweredQuestionsRequest {
                    user_id: user_id.to_owned(),
                    method_id: method_id.to_owned(),
                },
            )
            .await
    }

    /// Whether the answers match the stored hashes. The answers are secrets: never logged.
    pub async fn check_security_answers(
        &self,
        user_id: &str,
        method_id: &str,
        answers: Vec<sspr_proto::common::v1::SecurityAnswer>,
    ) -> Result<enr::CheckSecurityAnswersResponse, BusError> {
        self.bus
            .request(
                enrolment::CHECK_SECURITY_ANSWERS,
                &enr::CheckSecurityAnswersRequest {
                    user_id: user_id.to_owned(),
                    method_id: method_id.to_owned(),
                    answers,
                },
            )
            .await
    }

    /// The full destination of one method, to address a delivery.
    pub async fn get_destination(
        &self,
        user_id: &str,
        method_id: &str,
    ) -> Result<enr::GetDestinationResponse, BusError> {
        self.bus
            .request(
                enrolment::GET_DESTINATION,
                &enr::GetDestinationRequest {
                    user_id: user_id.to_owned(),
                    method_id: method_id.to_owned(),
                },
            )
            .await
    }

    /// Whether a typed destination names one confirmed method's destination.
    pub async fn match_destination(
        &self,
        user_id: &str,
        method_id: &str,
        candidate: &str,
    ) -> Result<enr::MatchDestinationResponse, BusError> {
        self.bus
            .request(
                enrolment::MATCH_DESTINATION,
                &enr::MatchDestinationRequest {
                    user_id: user_id.to_owned(),
                    method_id: method_id.to_owned(),
                    candidate: candidate.to_owned(),
                },
            )
            .await
    }

    /// The SSPR policy as stored (for policy-wide switches such as `allow_unlock`).
    pub async fn get_policy(&self) -> Result<pol::GetPolicyResponse, BusError> {
        self.bus
            .request(policy::GET_POLICY, &pol::GetPolicyRequest {})
            .await
    }

    /// Asks the directory to unlock the account (it emits `account.unlocked`).
    pub async fn unlock(
        &self,
        request: &dir::UnlockRequest,
    ) -> Result<dir::UnlockResponse, BusError> {
        self.bus.request(directory::UNLOCK, request).await
    }

    /// Asks the directory to set the password (it checks it against the password policy).
    pub async fn set_password(
        &self,
        request: &dir::SetPasswordRequest,
    ) -> Result<dir::SetPasswordResponse, BusError> {
        self.bus.request(directory::SET_PASSWORD, request).await
    }

    /// The policy's verdict on a candidate password (a dry run: nothing is set). The request
    /// carries the password: it is never logged here.
    pub async fn check_password(
        &self,
        request: &pol::CheckPasswordRequest,
    ) -> Result<pol::CheckPasswordResponse, BusError> {
        // The directory's dry run: the policy's rules plus the password history it holds.
        self.bus.request(directory::CHECK_PASSWORD, request).await
    }
}
