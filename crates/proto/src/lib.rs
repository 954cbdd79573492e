//! Generated protobuf and gRPC code for every sspr package.
//!
//! `proto/` at the workspace root is the one source of truth; this crate only includes what
//! `build.rs` generated from it. Public packages keep their field numbers forever: a breaking
//! change is a new version package.

/// Encoded `FileDescriptorSet` of every sspr proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sspr_descriptor.bin"));

pub mod sspr {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("sspr.common.v1");
        }
    }
    pub mod reset {
        pub mod v1 {
            tonic::include_proto!("sspr.reset.v1");
        }
    }
    pub mod registration {
        pub mod v1 {
            tonic::include_proto!("sspr.registration.v1");
        }
    }
    pub mod admin {
        pub mod v1 {
            tonic::include_proto!("sspr.admin.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("sspr.events.v1");
        }
    }
    /// Request/reply messages between services; not a public contract.
    pub mod internal {
        pub mod policy {
            pub mod v1 {
                tonic::include_proto!("sspr.internal.policy.v1");
            }
        }
        pub mod enrolment {
            pub mod v1 {
                tonic::include_proto!("sspr.internal.enrolment.v1");
            }
        }
        pub mod verification {
            pub mod v1 {
                tonic::include_proto!("sspr.internal.verification.v1");
            }
        }
        pub mod notification {
            pub mod v1 {
                tonic::include_proto!("sspr.internal.notification.v1");
            }
        }
        pub mod directory {
            pub mod v1 {
                tonic::include_proto!("sspr.internal.directory.v1");
            }
        }
        pub mod audit {
            pub mod v1 {
                tonic::include_proto!("sspr.internal.audit.v1");
            }
        }
    }
}

pub use sspr::{admin, common, events, internal, registration, reset};

/// Conversions between `google.protobuf.Timestamp`/`Duration` and chrono.
pub mod time {
    use chrono::{DateTime, Utc};

    pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        }
    }

    pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
    }

    pub fn duration(d: chrono::Duration) -> prost_types::Duration {
        let nanos = d.num_nanoseconds().unwrap_or(i64::MAX);
        prost_types::Duration {
            seconds: nanos / 1_000_000_000,
            nanos: (nanos % 1_000_000_000) as i32,
        }
    }
}

/// The defaults of `sspr.admin.v1.Limits`, in one place for every service that enforces one.
///
/// A policy stores only what the admin set; each unset field means the default below (Entra's
/// where Entra has one). Services read a limit through [`limits::Effective`], never by
/// `unwrap_or` scattered at the call sites.
pub mod limits {
    use crate::admin::v1::Limits;

    pub const PHONE_SENDS_PER_HOUR: u32 = 5;
    pub const EMAIL_SENDS_PER_10_MINUTES: u32 = 10;
    pub const FAILED_VERIFICATIONS_PER_DAY: u32 = 5;
    pub const BLOCK_HOURS: u32 = 24;
    pub const DESTINATION_SENDS_PER_HOUR: u32 = 10;
    pub const IP_START_RESET_PER_MINUTE: u32 = 30;
    pub const IP_SEND_CODE_PER_MINUTE: u32 = 20;
    pub const USER_SIGN_IN_CHECKS_PER_HOUR: u32 = 10;
    pub const IP_SIGN_IN_CHECKS_PER_MINUTE: u32 = 30;
    pub const NEW_METHOD_COOLDOWN_HOURS: u32 = 24;
    pub const PHONE_BUDGET_PER_HOUR: u32 = 1000;
    pub const PHONE_BUDGET_PER_PREFIX_PER_HOUR: u32 = 300;
    pub const BREAKER_MIN_SENDS: u32 = 50;
    pub const BREAKER_MIN_VERIFIED_PERCENT: u32 = 20;
    pub const CODE_LENGTH: u32 = 8;

    /// Every limit of a policy with its default filled in. `resend_after_seconds` stays
    /// optional: its default is the verification service's own setting.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Effective {
        pub phone_sends_per_hour: u32,
        pub email_sends_per_10_minutes: u32,
        pub failed_verifications_per_day: u32,
        pub block_hours: u32,
        pub destination_sends_per_hour: u32,
        pub ip_start_reset_per_minute: u32,
        pub ip_send_code_per_minute: u32,
        pub user_sign_in_checks_per_hour: u32,
        pub ip_sign_in_checks_per_minute: u32,
        pub resend_after_seconds: Option<u32>,
        pub new_method_cooldown_hours: u32,
        /// Empty: the organisation's own prefixes (the policy service fills them in before it
        /// answers `evaluate`, so an empty list reaching verification means none configured).
        pub phone_allowed_prefixes: Vec<String>,
        pub phone_budget_per_hour: u32,
        pub phone_budget_per_prefix_per_hour: u32,
        pub breaker_min_sends: u32,
        pub breaker_min_verified_percent: u32,
        /// 0 = no challenge on this ground.
        pub challenge_ip_starts_per_minute: u32,
        pub challenge_ip_failures_per_hour: u32,
        pub code_length: u32,
    }

    impl Effective {
        /// The limits of `limits`, defaults for whatever is unset (all of them for `None`).
        pub fn of(limits: Option<&Limits>) -> Self {
            let none = Limits::default();
            let l = limits.unwrap_or(&none);
            Self {
                phone_sends_per_hour: l.phone_sends_per_hour.unwrap_or(PHONE_SENDS_PER_HOUR),
                email_sends_per_10_minutes: l
                    .email_sends_per_10_minutes
                    .unwrap_or(EMAIL_SENDS_PER_10_MINUTES),
                failed_verifications_per_day: l
                    .failed_verifications_per_day
                    .unwrap_or(FAILED_VERIFICATIONS_PER_DAY),
                block_hours: l.block_hours.unwrap_or(BLOCK_HOURS),
                destination_sends_per_hour: l
                    .destination_sends_per_hour
                    .unwrap_or(DESTINATION_SENDS_PER_HOUR),
                ip_start_reset_per_minute: l
                    .ip_start_reset_per_minute
                    .unwrap_or(IP_START_RESET_PER_MINUTE),
                ip_send_code_per_minute: l
                    .ip_send_code_per_minute
                    .unwrap_or(IP_SEND_CODE_PER_MINUTE),
                user_sign_in_checks_per_hour: l
                    .user_sign_in_checks_per_hour
                    .unwrap_or(USER_SIGN_IN_CHECKS_PER_HOUR),
                ip_sign_in_checks_per_minute: l
                    .ip_sign_in_checks_per_minute
                    .unwrap_or(IP_SIGN_IN_CHECKS_PER_MINUTE),
                resend_after_seconds: l.resend_after_seconds,
                new_method_cooldown_hours: l
                    .new_method_cooldown_hours
                    .unwrap_or(NEW_METHOD_COOLDOWN_HOURS),
                phone_allowed_prefixes: l.phone_allowed_prefixes.clone(),
                phone_budget_per_hour: l.phone_budget_per_hour.unwrap_or(PHONE_BUDGET_PER_HOUR),
                phone_budget_per_prefix_per_hour: l
                    .phone_budget_per_prefix_per_hour
                    .unwrap_or(PHONE_BUDGET_PER_PREFIX_PER_HOUR),
                breaker_min_sends: l.breaker_min_sends.unwrap_or(BREAKER_MIN_SENDS),
                breaker_min_verified_percent: l
                    .breaker_min_verified_percent
                    .unwrap_or(BREAKER_MIN_VERIFIED_PERCENT),
                challenge_ip_starts_per_minute: l.challenge_ip_starts_per_minute.unwrap_or(0),
                challenge_ip_failures_per_hour: l.challenge_ip_failures_per_hour.unwrap_or(0),
                code_length: l.code_length.unwrap_or(CODE_LENGTH),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn unset_limits_take_the_defaults_and_set_ones_stand() {
            let all = Effective::of(None);
            assert_eq!(all.phone_sends_per_hour, 5);
            assert_eq!(all.email_sends_per_10_minutes, 10);
            assert_eq!(all.failed_verifications_per_day, 5);
            assert_eq!(all.block_hours, 24);
            assert_eq!(all.code_length, 8);
            assert_eq!(all.resend_after_seconds, None);
            let set = Limits {
                phone_sends_per_hour: Some(2),
                new_method_cooldown_hours: Some(0),
                ..Default::default()
            };
            let some = Effective::of(Some(&set));
            assert_eq!(some.phone_sends_per_hour, 2);
            assert_eq!(some.new_method_cooldown_hours, 0);
            assert_eq!(some.email_sends_per_10_minutes, 10);
        }
    }
}
