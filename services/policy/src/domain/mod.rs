//! Pure rules of the policy service: no IO, no async, no protobuf, no database.
//!
//! - [`policy`]: the SSPR policy (scope, groups, methods) and the eligibility of a user.
//! - [`password`]: the password rules a candidate password must pass.

pub mod password;
pub mod policy;
