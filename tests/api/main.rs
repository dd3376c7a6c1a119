//! API tests against the real server over HTTP and WebSocket, one module per feature.

mod accounts;
mod answers;
mod guides;
mod guides_fixtures;
mod guides_hostile;
mod limits;
mod llm;
mod schema;
mod scoping;
mod subscriptions;
mod training;
