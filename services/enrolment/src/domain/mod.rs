//! Enrolment's pure rules: contact methods and their masking, typed ids, registration sessions
//! and the add/confirm/remove rules, and the registration status. No IO here (no NATS, no database): time comes in as arguments.

pub mod confirm;
pub mod contact;
pub mod ids;
pub mod method;
#[cfg(test)]
mod properties;
pub mod questions;
pub mod session;
pub mod sign_in_throttle;
pub mod status;
pub mod takeover;

pub use contact::{Destination, DestinationError, Email, MethodKind, PhoneNumber};
pub use ids::{FlowId, IdError, Locale, MethodId, UserId};
pub use method::{
    AddPlan, AddRefusal, MAX_METHODS_PER_USER, MethodStatus, PENDING_TTL, RegisteredMethod,
    RemoveRefusal, abandoned_cutoff, check_removal, plan_add,
};
pub use session::{
    EntropyError, MalformedToken, RegistrationSession, Requirements, SESSION_TTL, SessionToken,
    TokenHash,
};
pub use status::RegistrationStatus;
pub use takeover::{MethodChange, StepUp, StepUpRequired};
