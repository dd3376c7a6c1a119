//! API tests against the real server over HTTP and WebSocket, one module per feature.

mod access;
mod accounts;
mod answers;
mod cli;
mod contention;
mod disk_full;
mod exports;
mod guides;
mod guides_fixtures;
mod guides_hostile;
mod injection;
mod limits;
mod llm;
mod llm_keys;
mod reports;
mod schema;
mod scoping;
mod scripts;
mod subscriptions;
mod synthesis;
mod test_runs;
mod training;
mod web;
