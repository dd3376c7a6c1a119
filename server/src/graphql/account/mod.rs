//! Accounts in the API: sign-up, sign-in, sign-out, the current user, API tokens and
//! security events.

pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;
