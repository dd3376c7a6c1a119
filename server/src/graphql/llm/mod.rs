//! Language models in the API: endpoint status, the caller's usage and cost, estimates, and
//! the caller's own LLM settings (the API key is write-only).

pub mod mutation;
pub mod query;
pub mod types;
