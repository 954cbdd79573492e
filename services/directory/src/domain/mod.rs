//! Pure rules of the directory: no IO, no async, no protobuf, no database.
//!
//! - [`ids`]: user and group ids.
//! - [`user`]: an account's profile (display name, locale, groups, admin flag) and its record.
//! - [`password`]: NFKC normalisation and Argon2id hashing/verification of passwords.

pub mod ids;
pub mod password;
pub mod user;
