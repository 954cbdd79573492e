//! CheckPassword: a dry run of the password policy for a flow whose methods are verified, so a
//! page can show the broken rules and a strength meter before CompleteReset.
//!
//! Invariants: the candidate goes only to the directory's `check_password` subject (the same
//! checks as its `set_password`: the policy's rules, then the password history), so a password
//! CheckPassword accepts is one CompleteReset accepts; it is never stored, logged or put in a
//! span field. A flow that is not verified enough (decoys never are) gets FAILED_PRECONDITION,
//! like CompleteReset.

use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1::{
    CheckPasswordRequest, CheckPasswordResponse, PasswordRuleViolation,
};
use tracing::field::Empty;

use super::Verification;
use super::reset::MAX_PASSWORD_BYTES;
use crate::Error;
use crate::domain::InputError;

impl Verification {
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty))]
    pub(super) async fn check_password(
        &self,
        req: CheckPasswordRequest,
    ) -> Result<CheckPasswordResponse, Error> {
        let (_, session) = self.usable_session(&req.session_id).await?;
        session.ensure_complete()?;
        if req.password.is_empty() || req.password.len() > MAX_PASSWORD_BYTES {
            return Err(InputError::new("password", "must be 1 to 1024 bytes").into());
        }
        // The directory applies the stored display name, as at completion.
        let verdict = self
            .peers
            .check_password(&pol::CheckPasswordRequest {
                password: req.password,
                user_id: session.user_id.as_str().to_owned(),
                display_name: String::new(),
            })
            .await?;
        tracing::info!(
            acceptable = verdict.accepted,
            violations = verdict.violations.len(),
            "password checked"
        );
        Ok(CheckPasswordResponse {
            acceptable: verdict.accepted,
            violations: verdict
                .violations
                .into_iter()
                .map(|v| PasswordRuleViolation {
                    rule: v.rule,
                    description: v.message,
                })
                .collect(),
            strength: verdict.estimate,
        })
    }
}
