//! The SMS-pumping defences where a phone (SMS or voice) code is issued: the country
//! allowlist, the global and per-prefix budgets and the circuit breaker
//! ([`crate::domain::phone_guard`] for the rules, [`crate::adapters::phone_ledger`] for the
//! shared counts). Reset SendCode, registration IssueCode and step-up codes all pass here,
//! through `Verification::issue`.
//!
//! Invariants:
//! - Email codes are never judged here: email keeps working when phone sends stop.
//! - Limits come from the policy (`evaluate`, the same for every user id; the policy service
//!   fills in the organisation's prefixes when the policy lists none).
//! - A decoy is judged as a number in the first allowed prefix and counted nowhere (see the
//!   domain module); its answers are the real ones'.
//! - Refusals are `FAILED_PRECONDITION` for the allowlist (`PHONE_COUNTRY_NOT_ALLOWED`) and the
//!   open breaker (`SMS_BREAKER_OPEN`: retrying soon will not help, another method will; not
//!   `UNAVAILABLE`, which clients retry automatically), `RESOURCE_EXHAUSTED` with retry-after
//!   for the budgets. No refusal names the number.
//! - A budget's first refusal in its window is announced once (`reset.throttled` with limit
//!   `phone_budget_per_hour` or `phone_budget_per_prefix_per_hour`).
//! - The breaker's changes are announced once (`sms.breaker_opened` / `sms.breaker_closed`,
//!   through the outbox) and measured: `sspr_sms_breaker_open` (gauge, 1 open, 0 closed) and
//!   `sspr_sms_sends_refused_total{reason}` (counter), from the metrics catalogue
//!   (`sspr_telemetry::metrics`); a budget refusal also counts in `sspr_throttled_total{scope}`
//!   with the budget's name.

use chrono::{DateTime, Utc};
use sspr_bus::{RpcError, subjects};
use sspr_proto::events::v1 as events;
use sspr_proto::limits::Effective;
use sspr_proto::time::timestamp;
use sspr_storage::outbox::OutboxMessage;
use uuid::Uuid;

use super::Verification;
use crate::adapters::phone_ledger::{Admission, BreakerChange, LastHour, Notice};
use crate::domain::phone_guard::{
    self, PhoneDestination, PhoneRefusal, PhoneRules, breaker_retry_after_secs,
};
use crate::domain::{MethodKind, UserId};
use crate::{Error, SERVICE};

impl From<&Effective> for PhoneRules {
    fn from(limits: &Effective) -> Self {
        PhoneRules {
            allowed_prefixes: limits.phone_allowed_prefixes.clone(),
            budget_per_hour: limits.phone_budget_per_hour,
            budget_per_prefix_per_hour: limits.phone_budget_per_prefix_per_hour,
            breaker_min_sends: limits.breaker_min_sends,
            breaker_min_verified_percent: limits.breaker_min_verified_percent,
        }
    }
}

/// The status of a refused phone code.
pub(crate) fn refusal_status(refusal: PhoneRefusal) -> RpcError {
    let status = match refusal {
        PhoneRefusal::BudgetExhausted { .. } | PhoneRefusal::PrefixBudgetExhausted { .. } => {
            RpcError::resource_exhausted(refusal.to_string())
        }
        PhoneRefusal::CountryNotAllowed | PhoneRefusal::BreakerOpen { .. } => {
            RpcError::failed_precondition(refusal.to_string())
        }
    }
    .with_reason(refusal.reason());
    match refusal.retry_after_secs() {
        Some(secs) => status.with_retry_after(secs),
        None => status,
    }
}

fn record_refusal(refusal: PhoneRefusal) {
    let metrics = sspr_telemetry::metrics::catalogue();
    metrics.sms_sends_refused.inc(&[refusal.limit()]);
    if matches!(
        refusal,
        PhoneRefusal::BudgetExhausted { .. } | PhoneRefusal::PrefixBudgetExhausted { .. }
    ) {
        metrics.throttled.inc(&[refusal.limit()]);
    }
}

fn record_breaker(open: bool) {
    sspr_telemetry::metrics::catalogue()
        .sms_breaker_open
        .set(&[], i64::from(open));
}

impl Verification {
    /// Judges one code about to be issued: nothing for email; for a phone code the allowlist,
    /// the breaker and the budgets, counting a real send (as code `code_id`). `destination` is
    /// `None` for a decoy. `limits` are the policy's, as the caller read them for this request.
    pub(super) async fn guard_phone_send(
        &self,
        kind: MethodKind,
        destination: Option<&str>,
        user_id: &UserId,
        limits: &Effective,
        code_id: &str,
    ) -> Result<(), Error> {
        if !matches!(kind, MethodKind::Sms | MethodKind::Voice) {
            return Ok(());
        }
        let rules = PhoneRules::from(limits);
        let to = match destination {
            Some(number) => PhoneDestination::Real(number),
            None => PhoneDestination::Decoy,
        };
        let prefix = phone_guard::prefix_of(&rules, to).map_err(|refusal| {
            record_refusal(refusal);
            Error::PhoneRefused(refusal)
        })?;
        let now = self.clock.now();
        let min_percent = rules.breaker_min_verified_percent;
        let admitted = self
            .phone_ledger
            .admit(
                Admission {
                    rules: &rules,
                    prefix: prefix.as_deref(),
                    code_id,
                    decoy: destination.is_none(),
                    now,
                },
                |notice| match notice {
                    Notice::Breaker(change, last_hour) => {
                        self.breaker_event(change, last_hour, min_percent, now)
                    }
                    Notice::Throttled(refusal) => {
                        self.budget_throttled_event(user_id, refusal, now)
                    }
                },
            )
            .await?;
        record_breaker(admitted.breaker_open);
        if let Some(change) = admitted.change {
            match change {
                BreakerChange::Opened => tracing::warn!(
                    min_verified_percent = min_percent,
                    "SMS circuit breaker opened: too few phone codes were verified in the last \
                     hour; phone codes stop, email keeps working"
                ),
                BreakerChange::Closed => tracing::info!("SMS circuit breaker closed"),
            }
            self.signal.notify();
        }
        match admitted.refusal {
            Some(refusal) => {
                record_refusal(refusal);
                tracing::info!(limit = refusal.limit(), "phone code refused");
                Err(Error::PhoneRefused(refusal))
            }
            None => Ok(()),
        }
    }

    /// Notes (best effort) that a phone code was verified, for the breaker's ratio.
    pub(super) async fn record_phone_verified(&self, code_id: &str, now: DateTime<Utc>) {
        if let Err(e) = self.phone_ledger.record_verified(code_id, now).await {
            tracing::warn!(error = %e, "could not record a verified code for the SMS breaker");
        }
    }

    /// `reset.throttled` for a budget's first refusal in its window (real sends only: a
    /// decoy's transaction is rolled back).
    fn budget_throttled_event(
        &self,
        user_id: &UserId,
        refusal: PhoneRefusal,
        now: DateTime<Utc>,
    ) -> OutboxMessage {
        let meta = events::EventMeta {
            event_id: Uuid::now_v7().to_string(),
            occurred_at: Some(timestamp(now)),
            user_id: user_id.as_str().to_owned(),
            flow_id: String::new(),
            source: SERVICE.to_owned(),
            actor: String::new(),
        };
        let retry_after = refusal.retry_after_secs().unwrap_or(0);
        let body = events::ResetThrottled {
            meta: Some(meta.clone()),
            limit: refusal.limit().to_owned(),
            retry_after: Some(timestamp(
                now + chrono::Duration::seconds(i64::try_from(retry_after).unwrap_or(0)),
            )),
        };
        self.event(subjects::events::RESET_THROTTLED, &meta, &body)
    }

    fn breaker_event(
        &self,
        change: BreakerChange,
        last_hour: LastHour,
        min_verified_percent: u32,
        now: DateTime<Utc>,
    ) -> OutboxMessage {
        let meta = events::EventMeta {
            event_id: Uuid::now_v7().to_string(),
            occurred_at: Some(timestamp(now)),
            user_id: String::new(),
            flow_id: String::new(),
            source: SERVICE.to_owned(),
            actor: String::new(),
        };
        match change {
            BreakerChange::Opened => {
                let reopens_in = breaker_retry_after_secs(now, last_hour.oldest);
                let body = events::SmsBreakerOpened {
                    meta: Some(meta.clone()),
                    sent_last_hour: u32::try_from(last_hour.sent).unwrap_or(u32::MAX),
                    verified_last_hour: u32::try_from(last_hour.verified).unwrap_or(u32::MAX),
                    min_verified_percent,
                    reopens_at: Some(timestamp(
                        now + chrono::Duration::seconds(i64::try_from(reopens_in).unwrap_or(0)),
                    )),
                };
                self.event(subjects::events::SMS_BREAKER_OPENED, &meta, &body)
            }
            BreakerChange::Closed => {
                let body = events::SmsBreakerClosed {
                    meta: Some(meta.clone()),
                };
                self.event(subjects::events::SMS_BREAKER_CLOSED, &meta, &body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sspr_bus::ErrorCode;

    use super::*;

    #[test]
    fn refusals_map_to_their_statuses_reasons_and_retry_after() {
        let country = refusal_status(PhoneRefusal::CountryNotAllowed);
        assert_eq!(country.code, ErrorCode::FailedPrecondition);
        assert_eq!(
            country.message,
            "codes cannot be sent to phone numbers in this country"
        );
        assert_eq!(country.reason.as_deref(), Some("PHONE_COUNTRY_NOT_ALLOWED"));
        assert_eq!(country.retry_after_secs, None);

        let budget = refusal_status(PhoneRefusal::BudgetExhausted {
            retry_after_secs: 60,
        });
        assert_eq!(budget.code, ErrorCode::ResourceExhausted);
        assert_eq!(budget.retry_after_secs, Some(60));

        let prefix = refusal_status(PhoneRefusal::PrefixBudgetExhausted {
            retry_after_secs: 5,
        });
        assert_eq!(prefix.code, ErrorCode::ResourceExhausted);

        let breaker = refusal_status(PhoneRefusal::BreakerOpen {
            retry_after_secs: 10,
        });
        assert_eq!(breaker.code, ErrorCode::FailedPrecondition);
        assert_eq!(breaker.reason.as_deref(), Some("SMS_BREAKER_OPEN"));
    }

    #[test]
    fn phone_rules_take_the_policy_limits() {
        let rules = PhoneRules::from(&Effective::of(None));
        assert_eq!(rules.budget_per_hour, 1000);
        assert_eq!(rules.budget_per_prefix_per_hour, 300);
        assert_eq!(rules.breaker_min_sends, 50);
        assert_eq!(rules.breaker_min_verified_percent, 20);
        assert!(rules.allowed_prefixes.is_empty());
    }
}
