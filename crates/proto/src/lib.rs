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
