//! `sspr.registration.v1.Registration` -> `sspr.rpc.enrolment.*`.
//!
//! The enrolment service owns registration; this only checks the shape of the input and adds
//! the client IP to the calls that are throttled per IP (BeginRegistration, AddMethod,
//! GetStatus).

use sspr_bus::subjects::rpc::enrolment as subject;
use sspr_proto::internal::enrolment::v1 as internal;
use sspr_proto::registration::v1::registration_server::{Registration, SERVICE_NAME};
use sspr_proto::registration::v1::{
    AddMethodRequest, AddMethodResponse, BeginRegistrationRequest, BeginRegistrationResponse,
    ConfirmMethodRequest, ConfirmMethodResponse, GetStatusRequest, GetStatusResponse,
    ListMethodsRequest, ListMethodsResponse, ListSecurityQuestionsRequest,
    ListSecurityQuestionsResponse, RemoveMethodRequest, RemoveMethodResponse,
    SendStepUpCodeRequest, SendStepUpCodeResponse, SetSecurityAnswersRequest,
    SetSecurityAnswersResponse, VerifyStepUpCodeRequest, VerifyStepUpCodeResponse,
};
use tonic::{Request, Response, Status};

use crate::api::Edge;
use crate::call::Call;
use crate::domain::{input, security_answers};

/// The method-registration API.
#[derive(Clone)]
pub struct RegistrationApi {
    edge: Edge,
}

impl RegistrationApi {
    pub fn new(edge: Edge) -> Self {
        Self { edge }
    }
}

#[tonic::async_trait]
impl Registration for RegistrationApi {
    async fn begin_registration(
        &self,
        request: Request<BeginRegistrationRequest>,
    ) -> Result<Response<BeginRegistrationResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "BeginRegistration", request.metadata());
        let client_ip = self.edge.client_ip(&request);
        let req = request.into_inner();
        call.run(async {
            let user_id = input::user_id(&req.user_id)?.to_owned();
            let locale = input::locale("locale", &req.locale)?.to_owned();
            input::password("password", &req.password)?;
            let internal = internal::BeginRegistrationRequest {
                user_id,
                password: req.password,
                locale,
                client_ip,
            };
            let resp: internal::BeginRegistrationResponse = self
                .edge
                .bus()
                .request(subject::BEGIN_REGISTRATION, &internal)
                .await?;
            Ok(BeginRegistrationResponse {
                session_id: resp.session_id,
                methods_required: resp.methods_required,
                allowed_kinds: resp.allowed_kinds,
                registered: resp.registered,
                registration_required: resp.registration_required,
                expires_at: resp.expires_at,
                reconfirm_required: resp.reconfirm_required,
                step_up_required: resp.step_up_required,
            })
        })
        .await
    }

    async fn add_method(
        &self,
        request: Request<AddMethodRequest>,
    ) -> Result<Response<AddMethodResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "AddMethod", request.metadata());
        let client_ip = self.edge.client_ip(&request);
        let req = request.into_inner();
        call.run(async {
            let internal = internal::AddMethodRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                kind: input::method_kind("kind", req.kind)? as i32,
                destination: input::destination(&req.destination)?.to_owned(),
                client_ip,
            };
            let resp: internal::AddMethodResponse = self
                .edge
                .bus()
                .request(subject::ADD_METHOD, &internal)
                .await?;
            Ok(AddMethodResponse {
                method_id: resp.method_id,
                expires_at: resp.expires_at,
            })
        })
        .await
    }

    async fn confirm_method(
        &self,
        request: Request<ConfirmMethodRequest>,
    ) -> Result<Response<ConfirmMethodResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "ConfirmMethod", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::ConfirmMethodRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
                code: input::code(&req.code)?.to_owned(),
            };
            let resp: internal::ConfirmMethodResponse = self
                .edge
                .bus()
                .request(subject::CONFIRM_METHOD, &internal)
                .await?;
            Ok(ConfirmMethodResponse {
                registration_complete: resp.registration_complete,
            })
        })
        .await
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "GetStatus", request.metadata());
        let client_ip = self.edge.client_ip(&request);
        let req = request.into_inner();
        call.run(async {
            let user_id = input::user_id(&req.user_id)?.to_owned();
            input::password("password", &req.password)?;
            let internal = internal::GetStatusRequest {
                user_id,
                password: req.password,
                client_ip,
            };
            let resp: internal::GetStatusResponse = self
                .edge
                .bus()
                .request(subject::GET_STATUS, &internal)
                .await?;
            Ok(GetStatusResponse {
                registration_required: resp.registration_required,
                reconfirm_required: resp.reconfirm_required,
                methods_required: resp.methods_required,
                methods_registered: resp.methods_registered,
                eligible: resp.eligible,
            })
        })
        .await
    }

    async fn list_methods(
        &self,
        request: Request<ListMethodsRequest>,
    ) -> Result<Response<ListMethodsResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "ListMethods", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::ListOwnMethodsRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
            };
            let resp: internal::ListOwnMethodsResponse = self
                .edge
                .bus()
                .request(subject::LIST_OWN_METHODS, &internal)
                .await?;
            Ok(ListMethodsResponse {
                methods: resp.methods,
            })
        })
        .await
    }

    async fn remove_method(
        &self,
        request: Request<RemoveMethodRequest>,
    ) -> Result<Response<RemoveMethodResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "RemoveMethod", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::RemoveMethodRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
            };
            let _: internal::RemoveMethodResponse = self
                .edge
                .bus()
                .request(subject::REMOVE_METHOD, &internal)
                .await?;
            Ok(RemoveMethodResponse {})
        })
        .await
    }

    async fn list_security_questions(
        &self,
        request: Request<ListSecurityQuestionsRequest>,
    ) -> Result<Response<ListSecurityQuestionsResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "ListSecurityQuestions", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::ListSecurityQuestionsRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
            };
            let resp: internal::ListSecurityQuestionsResponse = self
                .edge
                .bus()
                .request(subject::LIST_SECURITY_QUESTIONS, &internal)
                .await?;
            Ok(ListSecurityQuestionsResponse {
                questions: resp.questions,
                answers_required: resp.answers_required,
            })
        })
        .await
    }

    async fn set_security_answers(
        &self,
        request: Request<SetSecurityAnswersRequest>,
    ) -> Result<Response<SetSecurityAnswersResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "SetSecurityAnswers", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let session_id = input::session_id(&req.session_id)?.to_owned();
            security_answers::answers(&req.answers)?;
            // Moved, not copied: the answers are forwarded as typed (enrolment normalises).
            let internal = internal::SetSecurityAnswersRequest {
                session_id,
                answers: req.answers,
            };
            let resp: internal::SetSecurityAnswersResponse = self
                .edge
                .bus()
                .request(subject::SET_SECURITY_ANSWERS, &internal)
                .await?;
            Ok(SetSecurityAnswersResponse {
                method_id: resp.method_id,
                registration_complete: resp.registration_complete,
            })
        })
        .await
    }

    async fn send_step_up_code(
        &self,
        request: Request<SendStepUpCodeRequest>,
    ) -> Result<Response<SendStepUpCodeResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "SendStepUpCode", request.metadata());
        let client_ip = self.edge.client_ip(&request);
        let req = request.into_inner();
        call.run(async {
            let internal = internal::SendStepUpCodeRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
                client_ip,
            };
            let resp: internal::SendStepUpCodeResponse = self
                .edge
                .bus()
                .request(subject::SEND_STEP_UP_CODE, &internal)
                .await?;
            Ok(SendStepUpCodeResponse {
                expires_at: resp.expires_at,
                resend_after: resp.resend_after,
            })
        })
        .await
    }

    async fn verify_step_up_code(
        &self,
        request: Request<VerifyStepUpCodeRequest>,
    ) -> Result<Response<VerifyStepUpCodeResponse>, Status> {
        let call = Call::start(SERVICE_NAME, "VerifyStepUpCode", request.metadata());
        let req = request.into_inner();
        call.run(async {
            let internal = internal::VerifyStepUpCodeRequest {
                session_id: input::session_id(&req.session_id)?.to_owned(),
                method_id: input::method_id(&req.method_id)?.to_owned(),
                code: input::code(&req.code)?.to_owned(),
            };
            let _: internal::VerifyStepUpCodeResponse = self
                .edge
                .bus()
                .request(subject::VERIFY_STEP_UP_CODE, &internal)
                .await?;
            Ok(VerifyStepUpCodeResponse {})
        })
        .await
    }
}
