//! Pure rules of the notification service, without IO: what a delivery is and how it is
//! checked ([`delivery`]), what the messages say ([`templates`]), when a failed send is
//! tried again ([`retry`]), and what a provider's delivery receipt means ([`receipt`]).

pub mod delivery;
#[cfg(test)]
mod properties;
pub mod receipt;
pub mod retry;
pub mod templates;
