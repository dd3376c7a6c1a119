//! Server health and version.

pub mod query;
