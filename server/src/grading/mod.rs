//! Grading engines: the offline `similarity` engine (embeddings + lexical features + a regression), the `llm` engine with its prompt-injection guard, and their ensemble.

pub mod calibration;
pub mod ensemble;
pub mod grader;
pub mod guard;
pub mod llm;
pub mod similarity;
