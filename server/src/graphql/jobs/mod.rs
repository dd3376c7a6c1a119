//! Background jobs in the API: status, the event log, cancellation and live events.

pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;
