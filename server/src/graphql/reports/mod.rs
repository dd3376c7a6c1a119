//! Reports: generate one for a training job or a test run, list them, read one.

pub mod mutation;
pub mod query;
pub mod types;
