//! Pure rules of the policy service: no IO, no async, no protobuf, no database.
//!
//! - [`policy`]: the SSPR policy (scope, groups, methods) and the eligibility of a user.
//! - [`limits`]: the abuse limits of the policy (throttles, SMS allowlist, budget, breaker),
//!   valid by construction, and the organisation's own phone prefixes.
//! - [`preview`]: who could not reset under a proposed policy, and why, paged.
//! - [`password_policy`]: the password section of the policy (minimum length, custom banned
//!   terms, organisation name, history length), valid by construction.
//! - [`password`]: the password rules a candidate password must pass (length, Entra-style
//!   banned passwords) and its strength estimate.

pub mod limits;
pub mod password;
pub mod password_policy;
pub mod policy;
pub mod preview;
