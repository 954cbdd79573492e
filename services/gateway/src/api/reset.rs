//! `sspr.reset.v1.PasswordReset` -> `sspr.rpc.verification.*`.
//!
//! The verification service owns the reset flow; this only checks the shape of the input and
//! adds the client IP to the calls that are throttled per IP (StartReset, SendCode).

use sspr_bus::subjects::rpc::verification as subject;
use sspr_proto::internal::verification::v1 as internal;
use sspr_proto::reset::v1::password_reset_server::{PasswordReset, SERVICE_NAME};
use sspr_proto::reset::v1::{
    AnswerSecurityQuestionsRequest, AnswerSecurityQuestionsResponse, CheckPasswordRequest,
    CheckPasswordResponse, CompleteResetRequest, CompleteResetResponse,
    GetSecurityQuestionsRequest, GetSecurityQuestionsResponse, PasswordRuleViolation,
    SendCodeRequest, SendCodeResponse, StartResetRequest, StartResetResponse, UnlockAccountRequest,
    UnlockAccountResponse, VerifyCodeRequest, VerifyCodeResponse,
};
use tonic::{Request, Response, Status};

use crate::api::Edge;
use crate::call::Call;
use crate::domain::{challenge, input, security_answers};

/// The password-reset API.
#[derive(Clone)]
pub struct ResetApi {
    edge: Edge,
}

impl ResetApi {
    pub fn new(edge: Edge) -> Self {
        Self { edge }
    }
}

#[tonic::async_trait]
impl PasswordReset for ResetApi {
    async fn start_reset(
        &self,
        request: Request<StartResetRequest>,
    ) -> Result<Response<StartResetResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "StartReset", request.metadata());
        let client_ip = self.edge.client_ip(&request);
        let req = request.into_inner();
        call.run(async {
            let user_id = input::user_id(&req.user_id)?.to_owned();
            let locale = input::locale("locale", &req.locale)?.to_owned();
            let token = challenge::token(&req.challenge_token)?;
            let challenge_passed = self.edge.challenge_passed(token, &client_ip).await;
            let internal = internal::StartResetRequest {
                user_id,
                locale,
                client_ip,
                challenge_passed,
            };
            let resp: internal::StartResetResponse = self
                .edge
                .bus()
                .request(subject::START_RESET, &internal)
                .await?;
            Ok(StartResetResponse {
                session_id: resp.session_id,
                methods: resp.methods,
                methods_required: resp.methods_required,
                expires_at: resp.expires_at,
                flow_id: resp.flow_id,
                helpdesk_contact: resp.helpdesk_contact,
            })
        })
        .await
    }

    async fn send_code(
        &self,
        request: Request<SendCodeRequest>,
    ) -> Result<Response<SendCodeResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "SendCode", request.metadata());
        let client_ip = self.edge.client_ip(&request);
        let req = request.into_inner();
        call.run(async {
            let internal = internal::SendCodeRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
                client_ip,
                destination_confirmation: input::destination_confirmation(
                    &req.destination_confirmation,
                )?
                .to_owned(),
            };
            let resp: internal::SendCodeResponse = self
                .edge
                .bus()
                .request(subject::SEND_CODE, &internal)
                .await?;
            Ok(SendCodeResponse {
                expires_at: resp.expires_at,
                resend_after: resp.resend_after,
            })
        })
        .await
    }

    async fn verify_code(
        &self,
        request: Request<VerifyCodeRequest>,
    ) -> Result<Response<VerifyCodeResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "VerifyCode", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::VerifyCodeRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
                code: input::code(&req.code)?.to_owned(),
            };
            let resp: internal::VerifyCodeResponse = self
                .edge
                .bus()
                .request(subject::VERIFY_CODE, &internal)
                .await?;
            Ok(VerifyCodeResponse {
                methods_remaining: resp.methods_remaining,
                unlock_available: resp.unlock_available,
            })
        })
        .await
    }

    async fn complete_reset(
        &self,
        request: Request<CompleteResetRequest>,
    ) -> Result<Response<CompleteResetResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "CompleteReset", request.metadata());
        let req = request.into_inner();
        call.run(async {
            input::session_id(&req.session_id)?;
            input::password("new_password", &req.new_password)?;
            // Moved, not copied: the password is forwarded byte for byte.
            let internal = internal::CompleteResetRequest {
                session_id: req.session_id,
                new_password: req.new_password,
            };
            let resp: internal::CompleteResetResponse = self
                .edge
                .bus()
                .request(subject::COMPLETE_RESET, &internal)
                .await?;
            Ok(CompleteResetResponse {
                strength: resp.strength,
            })
        })
        .await
    }

    async fn get_security_questions(
        &self,
        request: Request<GetSecurityQuestionsRequest>,
    ) -> Result<Response<GetSecurityQuestionsResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "GetSecurityQuestions", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::GetSecurityQuestionsRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
            };
            let resp: internal::GetSecurityQuestionsResponse = self
                .edge
                .bus()
                .request(subject::GET_SECURITY_QUESTIONS, &internal)
                .await?;
            Ok(GetSecurityQuestionsResponse {
                questions: resp.questions,
            })
        })
        .await
    }

    async fn answer_security_questions(
        &self,
        request: Request<AnswerSecurityQuestionsRequest>,
    ) -> Result<Response<AnswerSecurityQuestionsResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "AnswerSecurityQuestions", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let session_id = input::session_id(&req.session_id)?.to_owned();
            let method_id = input::method_id(&req.method_id)?.to_owned();
            security_answers::answers(&req.answers)?;
            let internal = internal::AnswerSecurityQuestionsRequest {
                session_id,
                method_id,
                answers: req.answers,
            };
            let resp: internal::AnswerSecurityQuestionsResponse = self
                .edge
                .bus()
                .request(subject::ANSWER_SECURITY_QUESTIONS, &internal)
                .await?;
            Ok(AnswerSecurityQuestionsResponse {
                methods_remaining: resp.methods_remaining,
                unlock_available: resp.unlock_available,
            })
        })
        .await
    }

    async fn check_password(
        &self,
        request: Request<CheckPasswordRequest>,
    ) -> Result<Response<CheckPasswordResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "CheckPassword", request.metadata());
        let req = request.into_inner();
        call.run(async {
            input::session_id(&req.session_id)?;
            input::password("password", &req.password)?;
            // Moved, not copied: the candidate is forwarded byte for byte and never kept.
            let internal = internal::CheckPasswordRequest {
                session_id: req.session_id,
                password: req.password,
            };
            let resp: internal::CheckPasswordResponse = self
                .edge
                .bus()
                .request(subject::CHECK_PASSWORD, &internal)
                .await?;
            Ok(CheckPasswordResponse {
                acceptable: resp.acceptable,
                violations: resp
                    .violations
                    .into_iter()
                    .map(|v| PasswordRuleViolation {
                        rule: v.rule,
                        description: v.description,
                    })
                    .collect(),
                strength: resp.strength,
            })
        })
        .await
    }

    async fn unlock_account(
        &self,
        request: Request<UnlockAccountRequest>,
    ) -> Result<Response<UnlockAccountResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "UnlockAccount", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::UnlockAccountRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
            };
            let _: internal::UnlockAccountResponse = self
                .edge
                .bus()
                .request(subject::UNLOCK_ACCOUNT, &internal)
                .await?;
            Ok(UnlockAccountResponse {})
        })
        .await
    }

    async fn get_code_status(
        &self,
        request: Request<sspr_proto::reset::v1::GetCodeStatusRequest>,
    ) -> Result<Response<sspr_proto::reset::v1::GetCodeStatusResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "GetCodeStatus", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::GetCodeStatusRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
            };
            let resp: internal::GetCodeStatusResponse = self
                .edge
                .bus()
                .request(subject::GET_CODE_STATUS, &internal)
                .await?;
            Ok(sspr_proto::reset::v1::GetCodeStatusResponse {
                state: resp.state,
                alternatives: resp.alternatives,
            })
        })
        .await
    }
}
