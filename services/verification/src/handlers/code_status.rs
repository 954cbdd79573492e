//! GetCodeStatus: where the last code sent to a method of a reset flow stands, and — after it
//! failed or expired — the flow's other methods the user may switch to (then SendCode on one
//! of them; nothing else changes: the flow, its verified methods and its throttles stay).
//!
//! Invariants:
//! - The session and method are checked exactly as VerifyCode checks them (same statuses and
//!   messages for unknown, expired or completed sessions and unknown methods); a method with no
//!   code sent in this flow is `FAILED_PRECONDITION` "no code was sent to this method".
//! - The state comes from the code's delivery state (`delivery_events`); a decoy's code is
//!   pending, then sent (`domain::delivery`), so real and decoy flows answer alike. Until a
//!   code failed or expired, real and decoy flows do the same work: the session and the code
//!   are read, nothing else is asked.
//! - Alternatives ask policy (the kinds allowed now, as SendCode asks it) and enrolment (the
//!   methods usable now, as StartReset asks it); only failed or expired codes get there, and
//!   decoys never do (they never fail).

use sspr_proto::common::v1 as common;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1::{GetCodeStatusRequest, GetCodeStatusResponse};
use sspr_proto::reset::v1::CodeDeliveryState;
use tracing::field::Empty;

use super::{Verification, domain_kind, proto_kind};
use crate::Error;
use crate::adapters::store::CodeKey;
use crate::domain::delivery::{ShownState, alternatives, decoy_pending_for, shown_state};
use crate::domain::{MethodId, MethodKind, Purpose, ResetSession};

impl Verification {
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty, state = Empty))]
    pub(super) async fn get_code_status(
        &self,
        req: GetCodeStatusRequest,
    ) -> Result<GetCodeStatusResponse, Error> {
        let (_, session) = self.usable_session(&req.session_id).await?;
        let method = session.method(&req.method_id)?.clone();
        let span = tracing::Span::current();
        span.record("method_id", method.method_id.as_str());
        let key = CodeKey {
            purpose: Purpose::Reset,
            user_id: &session.user_id,
            method_id: &method.method_id,
        };
        let last = self
            .store
            .last_code(key, &session.flow_id)
            .await?
            .ok_or(Error::NoCodeSent)?;
        let decoy_pending = session
            .decoy
            .then(|| decoy_pending_for(self.key(), &last.delivery_id));
        let shown = shown_state(
            last.delivery_state,
            decoy_pending,
            last.created_at,
            self.clock.now(),
        );
        span.record("state", format!("{shown:?}").to_lowercase());
        let alternatives = if shown.offers_alternatives() {
            self.alternatives(&session, &method.method_id).await?
        } else {
            Vec::new()
        };
        Ok(GetCodeStatusResponse {
            state: proto_state(shown) as i32,
            alternatives,
        })
    }

    /// The session's other methods the user may use instead of `failed` now (see
    /// [`crate::domain::delivery::alternatives`]), masked as StartReset lists them.
    async fn alternatives(
        &self,
        session: &ResetSession,
        failed: &MethodId,
    ) -> Result<Vec<common::ContactMethod>, Error> {
        // Policy-wide settings, as SendCode asks them: the kinds allowed now.
        let policy = self
            .peers
            .evaluate(pol::EvaluateRequest {
                user_id: session.user_id.as_str().to_owned(),
                ..Default::default()
            })
            .await?;
        let allowed: Vec<MethodKind> = policy
            .allowed_methods
            .iter()
            .filter_map(|k| domain_kind(*k))
            .collect();
        // The methods usable now: still confirmed and past their cool-down (enrolment filters).
        let listed: Vec<MethodId> = self
            .peers
            .list_methods(
                session.user_id.as_str(),
                policy
                    .security_questions
                    .iter()
                    .map(|q| q.question_id.clone())
                    .collect(),
                policy.questions_required_to_reset,
            )
            .await?
            .methods
            .iter()
            .filter_map(|m| MethodId::parse(&m.method_id).ok())
            .collect();
        Ok(alternatives(session, failed, &allowed, &listed)
            .into_iter()
            .map(|m| common::ContactMethod {
                method_id: m.method_id.as_str().to_owned(),
                kind: proto_kind(m.kind) as i32,
                masked_destination: m.masked.clone(),
            })
            .collect())
    }
}

fn proto_state(shown: ShownState) -> CodeDeliveryState {
    match shown {
        ShownState::Pending => CodeDeliveryState::Pending,
        ShownState::Sent => CodeDeliveryState::Sent,
        ShownState::Failed => CodeDeliveryState::Failed,
        ShownState::Expired => CodeDeliveryState::Expired,
    }
}
