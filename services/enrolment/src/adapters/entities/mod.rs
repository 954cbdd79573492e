//! sea-orm entities of enrolment's own tables.

pub mod method;
pub mod registration_session;
