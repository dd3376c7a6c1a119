//! Every network call of the web app: typed GraphQL operations over HTTP, file uploads,
//! subscriptions over WebSocket, and the session token.

pub mod answers;
pub mod auth;
pub mod dashboard;
pub mod guides;
pub mod http;
pub mod jobs;
pub mod json;
pub mod session;
pub mod settings;
pub mod testing;
pub mod training;
pub mod upload;
pub mod ws;

pub use http::ApiError;
