//! The code endpoints enrolment calls while a user registers a method: IssueCode and CheckCode.
//!
//! They take the same issuing and checking paths as reset (keyed hash, voiding, resend
//! throttle per (purpose, user, method), expiry, attempts, single use, events, sealed delivery);
//! only `CODE_PURPOSE_REGISTRATION` and `CODE_PURPOSE_STEP_UP` (a code to an existing method
//! before the user's methods change) are accepted, so enrolment can never touch reset codes.

use sspr_proto::events::v1 as events;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1::{
    CheckCodeRequest, CheckCodeResponse, IssueCodeRequest, IssueCodeResponse,
};
use sspr_proto::limits::Effective;
use sspr_proto::time::timestamp;
use tracing::field::Empty;

use super::throttle::{Send, SendTo};
use super::{Check, Issue, Verification, domain_kind};
use crate::Error;
use crate::adapters::store::{CodeKey, ResendScope};
use crate::domain::{ClientIp, Code, FlowId, InputError, Locale, MethodId, Purpose, UserId};

/// The longest destination accepted (an email address is at most 254 characters).
const MAX_DESTINATION_BYTES: usize = 320;

fn registration_purpose(raw: i32) -> Result<Purpose, Error> {
    match events::CodePurpose::try_from(raw) {
        Ok(events::CodePurpose::Registration) => Ok(Purpose::Registration),
        Ok(events::CodePurpose::StepUp) => Ok(Purpose::StepUp),
        _ => Err(InputError::new(
            "purpose",
            "must be CODE_PURPOSE_REGISTRATION or CODE_PURPOSE_STEP_UP",
        )
        .into()),
    }
}

impl Verification {
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub(super) async fn issue_code(
        &self,
        req: IssueCodeRequest,
    ) -> Result<IssueCodeResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        let method_id = MethodId::parse(&req.method_id)?;
        let flow_id = FlowId::parse(&req.flow_id)?;
        let purpose = registration_purpose(req.purpose)?;
        let kind =
            domain_kind(req.kind).ok_or(InputError::new("kind", "must be EMAIL, SMS or VOICE"))?;
        if req.destination.trim().is_empty()
            || req.destination.len() > MAX_DESTINATION_BYTES
            || req.destination.chars().any(char::is_control)
        {
            return Err(InputError::new(
                "destination",
                "must be 1 to 320 bytes without control characters",
            )
            .into());
        }
        let locale = Locale::parse_optional(&req.locale)?.unwrap_or_else(|| Locale::or_default(""));
        let span = tracing::Span::current();
        span.record("user_id", user_id.as_str());
        span.record("flow_id", flow_id.as_str());
        span.record("method_id", method_id.as_str());

        let key = CodeKey {
            purpose,
            user_id: &user_id,
            method_id: &method_id,
        };
        // The code length is the policy's (`limits.code_length`), as for reset codes.
        let policy = self
            .peers
            .evaluate(pol::EvaluateRequest {
                user_id: user_id.as_str().to_owned(),
                ..Default::default()
            })
            .await?;
        let limits = Effective::of(policy.limits.as_ref());
        let resend_after = self.resend_wait(&limits);
        self.ensure_may_resend(key, ResendScope::Binding, resend_after)
            .await?;
        ClientIp::parse(&req.client_ip)?;
        // Registration and step-up codes count against the same per-user, per-destination and
        // per-IP limits as reset codes (registration is the classic SMS-pumping door).
        self.admit_send(Send {
            user_id: &user_id,
            flow_id: Some(&flow_id),
            kind,
            to: SendTo::Destination(&req.destination),
            client_ip: &req.client_ip,
            limits: &limits,
            real: true,
        })
        .await?;
        let issued = self
            .issue(Issue {
                purpose,
                user_id: &user_id,
                method_id: &method_id,
                kind,
                flow_id: &flow_id,
                locale: &locale,
                destination: Some(req.destination),
                scope: ResendScope::Binding,
                limits: &limits,
            })
            .await?;
        Ok(IssueCodeResponse {
            expires_at: Some(timestamp(issued.expires_at)),
            resend_after: Some(timestamp(issued.resend_after)),
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub(super) async fn check_code(
        &self,
        req: CheckCodeRequest,
    ) -> Result<CheckCodeResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        let method_id = MethodId::parse(&req.method_id)?;
        let flow_id = FlowId::parse(&req.flow_id)?;
        let purpose = registration_purpose(req.purpose)?;
        let candidate = Code::parse_any_length(&req.code)?;
        let span = tracing::Span::current();
        span.record("user_id", user_id.as_str());
        span.record("flow_id", flow_id.as_str());
        span.record("method_id", method_id.as_str());

        self.check(Check {
            purpose,
            user_id: &user_id,
            method_id: &method_id,
            flow_id: &flow_id,
            candidate: &candidate,
            decoy: false,
            session: None,
        })
        .await?;
        Ok(CheckCodeResponse {})
    }
}
