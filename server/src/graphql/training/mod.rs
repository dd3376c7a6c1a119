//! Training jobs and graders in the API: estimate, start, the learning curve, graders, versions and their diffs.

pub mod mutation;
pub mod query;
pub mod types;
