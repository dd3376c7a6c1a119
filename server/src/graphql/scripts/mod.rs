//! Whole student scripts split per item, synthetic answers to confirm, and the teacher's scores in the API.

pub mod mutation;
pub mod query;
pub mod types;
