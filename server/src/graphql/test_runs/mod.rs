//! Test runs and exports in the API: start a run, its metrics, per-answer rows, review queue, and downloads of gradings and fine-tuning data.

pub mod mutation;
pub mod query;
pub mod types;
