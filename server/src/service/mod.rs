//! Business logic and transactions, one module per domain. Services know nothing of GraphQL.

pub mod accounts;
pub mod answers;
pub mod guides;
pub mod jobs;
pub mod training;

/// The handlers for every kind of background job this server runs.
pub fn job_handlers() -> jobs::Handlers {
    let mut handlers = jobs::Handlers::default();
    handlers.register(
        entity::enums::JobKind::Extraction,
        guides::ExtractionHandler,
    );
    handlers.register(entity::enums::JobKind::Training, training::TrainingHandler);
    handlers
}
