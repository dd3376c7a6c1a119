//! Marking guides in the API: upload, pasted text, items and the teacher's edits.

pub mod mutation;
pub mod query;
pub mod types;
