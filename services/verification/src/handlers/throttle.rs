//! The abuse throttles at the endpoints: which counters each call takes, the reset block after
//! failed verifications, the CAPTCHA requirement at StartReset, and the admin endpoints
//! ClearBlock and GetBlock.
//!
//! Invariants:
//! - Limits come from the policy's `limits` (`Effective::of`: defaults for whatever is unset);
//!   the same for every user id.
//! - Decoy sessions take the same counters, the same block and the same answers as real ones;
//!   their events are written as never-published stand-ins (same database work, nothing on the
//!   bus). Counters are keyed by the typed user id, so a decoy and a real id behave alike.
//! - Per-user send counters count reset, registration and step-up codes together, by channel
//!   (SMS and voice; email). A send also takes its destination's counter (across users) and,
//!   when the client IP is known, the IP's SendCode counter; all or none are counted.
//! - The block stops only self-service reset (StartReset, SendCode, VerifyCode and the
//!   security-question endpoints); sign-in and the directory's lock are never touched.
//! - Every refusal carries the seconds until a retry may succeed, and counts once in
//!   `sspr_throttled_total{scope}`: the limit's name, or `reset_block` for the block.

use chrono::{DateTime, Duration, Utc};
use sspr_bus::subjects;
use sspr_proto::events::v1 as events;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1::{
    ClearBlockRequest, ClearBlockResponse, GetBlockRequest, GetBlockResponse,
};
use sspr_proto::limits::Effective;
use sspr_proto::time::timestamp;
use sspr_storage::outbox::OutboxMessage;
use tracing::field::Empty;
use uuid::Uuid;

use super::Verification;
use crate::adapters::throttle::Taken;
use crate::domain::throttle::{
    Bucket, ChallengeThresholds, Limit, Subject, block_until, challenge_required, retry_after_secs,
};
use crate::domain::{ClientIp, FlowId, MethodId, MethodKind, ResetSession, UserId};
use crate::{Error, SERVICE};

/// Where a code goes, for the destination counter.
#[derive(Debug, Clone, Copy)]
pub(super) enum SendTo<'a> {
    /// The real destination (normalised and keyed before it is counted).
    Destination(&'a str),
    /// A decoy method: a keyed stand-in for its destination.
    Decoy(&'a MethodId),
}

/// One code about to be sent.
pub(super) struct Send<'a> {
    pub user_id: &'a UserId,
    pub flow_id: Option<&'a FlowId>,
    pub kind: MethodKind,
    pub to: SendTo<'a>,
    /// Empty when unknown (no per-IP counting then).
    pub client_ip: &'a str,
    pub limits: &'a Effective,
    /// Events for real users only (stand-ins for decoys).
    pub real: bool,
}

impl Verification {
    fn throttle_key(&self) -> &[u8; 32] {
        self.key()
    }

    fn bucket(&self, limit: Limit, subject: Subject<'_>, max: u32) -> Bucket {
        Bucket::new(self.throttle_key(), limit, subject, max)
    }

    /// The user's failed-verification counter.
    fn failures_bucket(&self, user_id: &UserId, limits: &Effective) -> Bucket {
        self.bucket(
            Limit::FailedVerificationsPerDay,
            Subject::User(user_id),
            limits.failed_verifications_per_day,
        )
    }

    /// The keys of every counter of the user (cleared by a successful reset and ClearBlock).
    fn user_bucket_keys(&self, user_id: &UserId) -> Vec<String> {
        [
            Limit::PhoneSendsPerHour,
            Limit::EmailSendsPer10Minutes,
            Limit::FailedVerificationsPerDay,
        ]
        .into_iter()
        .map(|limit| self.bucket(limit, Subject::User(user_id), 0).key)
        .collect()
    }

    /// The policy's limits (the same for every user id).
    pub(super) async fn limits(&self, user_id: &UserId) -> Result<Effective, Error> {
        let policy = self
            .peers
            .evaluate(pol::EvaluateRequest {
                user_id: user_id.as_str().to_owned(),
                ..Default::default()
            })
            .await?;
        Ok(Effective::of(policy.limits.as_ref()))
    }

    /// The resend wait: the policy's when set, else `SSPR_RESEND_AFTER_SECS`.
    pub(super) fn resend_wait(&self, limits: &Effective) -> Duration {
        limits
            .resend_after_seconds
            .map(|s| Duration::seconds(i64::from(s)))
            .unwrap_or(self.config.resend_after)
    }

    fn throttle_meta(
        &self,
        now: DateTime<Utc>,
        user_id: &UserId,
        flow_id: Option<&FlowId>,
    ) -> events::EventMeta {
        events::EventMeta {
            event_id: Uuid::now_v7().to_string(),
            occurred_at: Some(timestamp(now)),
            user_id: user_id.as_str().to_owned(),
            flow_id: flow_id.map(|f| f.as_str().to_owned()).unwrap_or_default(),
            source: SERVICE.to_owned(),
            actor: String::new(),
        }
    }

    /// A `reset.throttled` event (a stand-in when not `real`).
    fn throttled_event(
        &self,
        now: DateTime<Utc>,
        user_id: &UserId,
        flow_id: Option<&FlowId>,
        real: bool,
        limit: Limit,
        retry_at: DateTime<Utc>,
    ) -> Vec<OutboxMessage> {
        let meta = self.throttle_meta(now, user_id, flow_id);
        let body = events::ResetThrottled {
            meta: Some(meta.clone()),
            limit: limit.name().to_owned(),
            retry_after: Some(timestamp(retry_at)),
        };
        let event = self.event(subjects::events::RESET_THROTTLED, &meta, &body);
        vec![if real { event } else { event.decoy() }]
    }

    /// Counts one call in `buckets`, or refuses it with the retry time.
    async fn take(
        &self,
        buckets: &[Bucket],
        user_id: &UserId,
        flow_id: Option<&FlowId>,
        real: bool,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let taken = self
            .throttles
            .take(buckets, now, |limit, retry_at| {
                self.throttled_event(now, user_id, flow_id, real, limit, retry_at)
            })
            .await?;
        match taken {
            Taken::Allowed => Ok(()),
            Taken::Refused { limit, retry_at } => {
                self.signal.notify();
                tracing::info!(limit = limit.name(), "throttled");
                sspr_telemetry::metrics::catalogue()
                    .throttled
                    .inc(&[limit.name()]);
                Err(Error::Throttled {
                    retry_after_secs: retry_after_secs(now, retry_at),
                })
            }
        }
    }

    /// Refuses when the user id is blocked from self-service reset.
    pub(super) async fn ensure_not_blocked(&self, user_id: &UserId) -> Result<(), Error> {
        let now = self.clock.now();
        match self.throttles.blocked_until(user_id, now).await? {
            None => Ok(()),
            Some(until) => {
                tracing::info!("reset refused: the user id is blocked");
                sspr_telemetry::metrics::catalogue()
                    .throttled
                    .inc(&["reset_block"]);
                Err(Error::Blocked {
                    retry_after_secs: retry_after_secs(now, until),
                })
            }
        }
    }

    /// StartReset's gates, in order: the CAPTCHA thresholds (unless a challenge was passed),
    /// the client IP's StartReset counter, the user id's block. Returns the key of the IP's
    /// failure counter (to remember as the flow's origin), `None` without a client IP.
    pub(super) async fn admit_start(
        &self,
        user_id: &UserId,
        client_ip: &ClientIp,
        challenge_passed: bool,
        limits: &Effective,
        real: bool,
    ) -> Result<Option<String>, Error> {
        let ip = client_ip.as_str();
        let mut origin = None;
        if !ip.is_empty() {
            let starts = self.bucket(
                Limit::IpStartResetPerMinute,
                Subject::ClientIp(ip),
                limits.ip_start_reset_per_minute,
            );
            let failures = self.bucket(
                Limit::IpFailuresPerHour,
                Subject::ClientIp(ip),
                limits.challenge_ip_failures_per_hour,
            );
            let thresholds = ChallengeThresholds {
                ip_starts_per_minute: limits.challenge_ip_starts_per_minute,
                ip_failures_per_hour: limits.challenge_ip_failures_per_hour,
            };
            if !challenge_passed
                && (thresholds.ip_starts_per_minute > 0 || thresholds.ip_failures_per_hour > 0)
            {
                let now = self.clock.now();
                let recent_starts = self
                    .throttles
                    .count_since(&starts.key, now - starts.limit.window())
                    .await?;
                let recent_failures = self
                    .throttles
                    .count_since(&failures.key, now - failures.limit.window())
                    .await?;
                if challenge_required(thresholds, recent_starts, recent_failures) {
                    tracing::info!("reset refused: a challenge is required");
                    return Err(Error::ChallengeRequired);
                }
            }
            self.take(std::slice::from_ref(&starts), user_id, None, real)
                .await?;
            origin = Some(failures.key);
        }
        self.ensure_not_blocked(user_id).await?;
        Ok(origin)
    }

    /// Counts one code about to be sent against the user's channel counter, the destination's
    /// counter and the client IP's SendCode counter; refuses it when one of them is full.
    pub(super) async fn admit_send(&self, send: Send<'_>) -> Result<(), Error> {
        let Some(user_limit) = Limit::user_sends(send.kind) else {
            return Ok(());
        };
        let user_max = match user_limit {
            Limit::PhoneSendsPerHour => send.limits.phone_sends_per_hour,
            _ => send.limits.email_sends_per_10_minutes,
        };
        let destination = match send.to {
            SendTo::Destination(raw) => Subject::Destination(send.kind, raw),
            SendTo::Decoy(method) => Subject::DecoyDestination(send.user_id, method),
        };
        let mut buckets = vec![
            self.bucket(user_limit, Subject::User(send.user_id), user_max),
            self.bucket(
                Limit::DestinationSendsPerHour,
                destination,
                send.limits.destination_sends_per_hour,
            ),
        ];
        if !send.client_ip.is_empty() {
            buckets.push(self.bucket(
                Limit::IpSendCodePerMinute,
                Subject::ClientIp(send.client_ip),
                send.limits.ip_send_code_per_minute,
            ));
        }
        self.take(&buckets, send.user_id, send.flow_id, send.real)
            .await
    }

    /// Counts a failed verification in a reset flow (wrong code, wrong answers, destination
    /// mismatch), for the user id and for the client IP that started the flow; blocks the user
    /// id when the limit is reached (`reset.blocked`, a stand-in for a decoy).
    pub(super) async fn count_failure(&self, session: &ResetSession) -> Result<(), Error> {
        let limits = self.limits(&session.user_id).await?;
        let failures = self.failures_bucket(&session.user_id, &limits);
        let origin = self.throttles.origin(&session.flow_id).await?;
        let now = self.clock.now();
        let until = block_until(now, limits.block_hours);
        let blocked = self
            .throttles
            .record_failure(
                &session.user_id,
                &failures,
                origin.as_deref(),
                until,
                now,
                |until, count| {
                    let meta = self.throttle_meta(now, &session.user_id, Some(&session.flow_id));
                    let body = events::ResetBlocked {
                        meta: Some(meta.clone()),
                        reason: "failed_verifications".to_owned(),
                        blocked_until: Some(timestamp(until)),
                        failed_verifications: count,
                    };
                    let event = self.event(subjects::events::RESET_BLOCKED, &meta, &body);
                    vec![if session.decoy { event.decoy() } else { event }]
                },
            )
            .await?;
        if blocked.is_some() {
            self.signal.notify();
            tracing::info!("the user id is now blocked from self-service reset");
        }
        Ok(())
    }

    /// After a successful reset or unlock: clears the user's counters and any block (with
    /// `reset.unblocked`, reason `reset_completed`, when there was something to clear). A
    /// failure here is logged: the reset itself is done.
    pub(super) async fn clear_after_reset(&self, session: &ResetSession) {
        let now = self.clock.now();
        // The limits only size the failure counter, whose key does not depend on them.
        let failures = self.failures_bucket(&session.user_id, &Effective::of(None));
        let cleared = self
            .throttles
            .clear_user(
                &session.user_id,
                &failures,
                &self.user_bucket_keys(&session.user_id),
                now,
                |was_blocked, failed| {
                    if !was_blocked && failed == 0 {
                        return Vec::new();
                    }
                    let meta = self.throttle_meta(now, &session.user_id, Some(&session.flow_id));
                    let body = events::ResetUnblocked {
                        meta: Some(meta.clone()),
                        reason: "reset_completed".to_owned(),
                        was_blocked,
                    };
                    vec![self.event(subjects::events::RESET_UNBLOCKED, &meta, &body)]
                },
            )
            .await;
        match cleared {
            Ok((was_blocked, failed)) => {
                if was_blocked || failed > 0 {
                    self.signal.notify();
                }
            }
            Err(e) => tracing::warn!(error = %e, "clearing the throttle counters failed"),
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty))]
    pub(super) async fn clear_block(
        &self,
        req: ClearBlockRequest,
    ) -> Result<ClearBlockResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        tracing::Span::current().record("user_id", user_id.as_str());
        let now = self.clock.now();
        let failures = self.failures_bucket(&user_id, &Effective::of(None));
        let (was_blocked, _) = self
            .throttles
            .clear_user(
                &user_id,
                &failures,
                &self.user_bucket_keys(&user_id),
                now,
                |was_blocked, _| {
                    let mut meta = self.throttle_meta(now, &user_id, None);
                    meta.actor = req.actor.clone();
                    let body = events::ResetUnblocked {
                        meta: Some(meta.clone()),
                        reason: "admin".to_owned(),
                        was_blocked,
                    };
                    vec![self.event(subjects::events::RESET_UNBLOCKED, &meta, &body)]
                },
            )
            .await?;
        self.signal.notify();
        tracing::info!(was_blocked, "reset block cleared by an admin");
        Ok(ClearBlockResponse { was_blocked })
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty))]
    pub(super) async fn get_block(&self, req: GetBlockRequest) -> Result<GetBlockResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        tracing::Span::current().record("user_id", user_id.as_str());
        let failures = self.failures_bucket(&user_id, &Effective::of(None));
        let status = self
            .throttles
            .status(&user_id, &failures, self.clock.now())
            .await?;
        Ok(GetBlockResponse {
            blocked: status.blocked_until.is_some(),
            blocked_until: status.blocked_until.map(timestamp),
            failed_verifications: status.failed_verifications,
        })
    }
}
