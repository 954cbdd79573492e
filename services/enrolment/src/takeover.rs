//! The endpoints against registration takeover and the sign-in password oracle: the step-up
//! (SendStepUpCode, VerifyStepUpCode), the destinations notification announces method changes
//! to (`list_destinations`), and the sign-in throttle BeginRegistration and GetStatus pass.
//!
//! Invariants:
//! - A step-up code goes only to a confirmed, usable (past its cool-down) contact method of the
//!   session's user; verification owns the code (purpose `CODE_PURPOSE_STEP_UP`, bound to the
//!   session's flow and that method) and applies its send limits to it.
//! - Only a code verification accepted marks the session stepped up.
//! - `list_destinations` answers full destinations: only notification may call it (subject
//!   permissions), and nothing here logs one.
//! - The sign-in throttle counts an attempt before the password is checked and answers the same
//!   for known and unknown user ids (see `domain::sign_in_throttle`).

use sspr_proto::events::v1::CodePurpose;
use sspr_proto::internal::enrolment::v1::{
    Destination as WireDestination, ListDestinationsRequest, ListDestinationsResponse,
    SendStepUpCodeRequest, SendStepUpCodeResponse, VerifyStepUpCodeRequest,
    VerifyStepUpCodeResponse,
};
use sspr_proto::limits::Effective;
use tracing::Span;
use tracing::field::Empty;

use crate::domain::sign_in_throttle::Scope;
use crate::domain::{MethodId, RegisteredMethod, RegistrationSession, UserId};
use crate::error::Error;
use crate::handlers::Enrolment;

/// Longest code forwarded to verification.
const MAX_CODE_CHARS: usize = 64;
/// Longest client IP accepted as a throttle key (an IPv6 address with a zone fits).
const MAX_CLIENT_IP_CHARS: usize = 64;

impl Enrolment {
    /// Sends a step-up code to one of the user's existing methods.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub async fn send_step_up_code(
        &self,
        req: SendStepUpCodeRequest,
    ) -> Result<SendStepUpCodeResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        let method = self.step_up_method(&session, &req.method_id).await?;
        let issued = self
            .peers
            .issue_code(&session, &method, CodePurpose::StepUp, &req.client_ip)
            .await?;
        tracing::info!(kind = %method.kind(), masked = %method.masked(), "step-up code requested");
        Ok(SendStepUpCodeResponse {
            expires_at: issued.expires_at,
            resend_after: issued.resend_after,
        })
    }

    /// Checks a step-up code; on success the session may change the user's methods.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub async fn verify_step_up_code(
        &self,
        req: VerifyStepUpCodeRequest,
    ) -> Result<VerifyStepUpCodeResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        let code = req.code.trim();
        if code.is_empty() {
            return Err(Error::InvalidArgument("code is required".into()));
        }
        if code.chars().count() > MAX_CODE_CHARS {
            return Err(Error::InvalidArgument("code is too long".into()));
        }
        let method = self.step_up_method(&session, &req.method_id).await?;
        self.peers
            .check_code(&session, &method, code, CodePurpose::StepUp)
            .await?;
        self.store.mark_stepped_up(&session.flow_id).await?;
        tracing::info!("registration session stepped up");
        Ok(VerifyStepUpCodeResponse {})
    }

    /// The full destinations of the user's confirmed contact methods (for notification only).
    #[tracing::instrument(skip_all, fields(user_id = Empty))]
    pub async fn list_destinations(
        &self,
        req: ListDestinationsRequest,
    ) -> Result<ListDestinationsResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        Span::current().record("user_id", user_id.as_str());
        let destinations = self
            .store
            .confirmed_methods(&user_id)
            .await?
            .into_iter()
            .map(|m| WireDestination {
                method_id: m.method_id.as_str().to_owned(),
                kind: m.kind().code(),
                destination: m.destination.as_str().to_owned(),
            })
            .collect();
        Ok(ListDestinationsResponse { destinations })
    }

    /// Counts a sign-in password check for `user_id` and `client_ip` (none: not counted per IP)
    /// and refuses it when either limit is exceeded.
    pub(crate) async fn throttle_sign_in(
        &self,
        user_id: &UserId,
        client_ip: &str,
    ) -> Result<(), Error> {
        let limits = Effective::of(self.peers.policy().await?.limits.as_ref());
        let now = self.clock.now();
        let mut scopes = vec![(
            Scope::User(user_id.as_str().to_owned()),
            limits.user_sign_in_checks_per_hour,
        )];
        let client_ip = client_ip.trim();
        if !client_ip.is_empty() {
            let ip: String = client_ip.chars().take(MAX_CLIENT_IP_CHARS).collect();
            scopes.push((Scope::Ip(ip), limits.ip_sign_in_checks_per_minute));
        }
        let mut refused: Option<crate::domain::sign_in_throttle::Throttled> = None;
        for (scope, limit) in scopes {
            let window = scope.window(now, limit);
            let count = self.store.count_sign_in_check(&window, now).await?;
            if let Err(throttled) = window.judge(count, now) {
                tracing::warn!(limit = scope.name(), "sign-in check throttled");
                // The longest wait wins; both counters are charged either way.
                refused = Some(match refused {
                    Some(t) if t.retry_after_secs >= throttled.retry_after_secs => t,
                    _ => throttled,
                });
            }
        }
        match refused {
            Some(t) => Err(t.into()),
            None => Ok(()),
        }
    }

    /// The session user's confirmed, usable contact method `raw` (a step-up target).
    async fn step_up_method(
        &self,
        session: &RegistrationSession,
        raw: &str,
    ) -> Result<RegisteredMethod, Error> {
        if raw.is_empty() {
            return Err(Error::InvalidArgument("method_id is required".into()));
        }
        let method_id = MethodId::parse(raw).map_err(|_| Error::UnknownMethod)?;
        Span::current().record("method_id", method_id.as_str());
        let now = self.clock.now();
        self.store
            .find_method(&session.user_id, &method_id)
            .await?
            .filter(|m| m.is_usable(now))
            .ok_or(Error::UnknownMethod)
    }
}
