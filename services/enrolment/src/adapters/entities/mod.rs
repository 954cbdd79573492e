//! sea-orm entities of enrolment's own tables.

pub mod method;
pub mod processed_event;
pub mod registration_session;
pub mod security_answer;
pub mod security_question_method;
pub mod sign_in_check;
