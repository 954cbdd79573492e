//! Enrolment's pure rules: contact methods and their masking, typed ids, registration sessions
//! and the add/confirm/remove rules, and the registration status. No IO here (no NATS, no database): time comes in as arguments.

pub mod confirm;
pub mod contact;
pub mod ids;
pub mod method;
pub mod questions;
pub mod session;
pub mod status;

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
