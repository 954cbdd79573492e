//! [`PasswordRules`] over NATS: asks the policy service (`sspr.rpc.policy.check_password`).
//!
//! The request carries the NFKC-normalised candidate password; it goes only to the policy
//! service's subject and is never logged here.

use sspr_bus::subjects::rpc::policy::CHECK_PASSWORD;
use sspr_bus::{Bus, BusError};
use sspr_proto::internal::policy::v1::{CheckPasswordRequest, CheckPasswordResponse};

use crate::domain::ids::UserId;
use crate::domain::password::Password;
use crate::ports::{MAX_HISTORY, PasswordRules, PasswordVerdict, RuleViolation};

pub struct NatsPasswordRules {
    bus: Bus,
}

impl NatsPasswordRules {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }
}

#[async_trait::async_trait]
impl PasswordRules for NatsPasswordRules {
    async fn check(
        &self,
        password: &Password,
        user_id: &UserId,
        display_name: &str,
    ) -> Result<PasswordVerdict, BusError> {
        let request = CheckPasswordRequest {
            password: password.expose().to_owned(),
            user_id: user_id.as_str().to_owned(),
            display_name: display_name.to_owned(),
        };
        let response: CheckPasswordResponse = self.bus.request(CHECK_PASSWORD, &request).await?;
        Ok(PasswordVerdict {
            accepted: response.accepted,
            violations: response
                .violations
                .into_iter()
                .map(|v| RuleViolation {
                    rule: v.rule,
                    message: v.message,
                })
                .collect(),
            history_count: response.history_count.min(MAX_HISTORY),
            strength: response.estimate,
        })
    }
}
