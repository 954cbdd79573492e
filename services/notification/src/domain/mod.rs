//! Pure rules of the notification service, without IO: what a delivery is and how it is
//! checked ([`delivery`]), what the messages say ([`templates`]), and when a failed send is
//! tried again ([`retry`]).

pub mod delivery;
#[cfg(test)]
mod properties;
pub mod retry;
pub mod templates;
