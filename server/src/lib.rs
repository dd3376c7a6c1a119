//! GradeLab server library: configuration, the GraphQL API, services and start-up.
//!
//! The binary (`main.rs`) is a thin command-line shell around [`startup::Application`];
//! the integration tests drive the same type.

pub mod blobs;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod eval;
pub mod grading;
pub mod graphql;
pub mod ingest;
pub mod llm;
pub mod metrics;
pub mod observability;
pub mod reports;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
