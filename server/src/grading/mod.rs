//! Grading engines: the offline `similarity` engine (embeddings + lexical features + a regression).

pub mod calibration;
pub mod ensemble;
pub mod grader;
pub mod llm;
pub mod similarity;
