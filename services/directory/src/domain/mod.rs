//! Pure rules of the directory: no IO, no async, no protobuf, no database.
//!
//! - [`ids`]: user and group ids.
//! - [`user`]: an account's profile (display name, locale, groups, admin flag) and its record.
//! - [`group`]: groups, their nesting and a user's effective groups.
//! - [`password`]: NFKC normalisation and Argon2id hashing/verification of passwords.

pub mod group;
pub mod ids;
pub mod password;
pub mod user;
