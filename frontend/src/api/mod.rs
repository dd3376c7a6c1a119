//! Every network call of the web app: typed GraphQL operations and the session token.

pub mod auth;
pub mod http;
pub mod session;

pub use http::ApiError;
