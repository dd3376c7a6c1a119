//! Scored answers in the API: CSV/JSONL import (file or pasted text), guides from item files, splits and their summary.

pub mod mutation;
pub mod query;
pub mod types;
