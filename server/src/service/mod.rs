//! Business logic and transactions, one module per domain. Services know nothing of GraphQL.

pub mod accounts;
pub mod answers;
pub mod exports;
pub mod guides;
pub mod jobs;
pub mod reports;
pub mod scripts;
pub mod synthesis;
pub mod test_runs;
pub mod training;

/// The handlers for every kind of background job this server runs.
pub fn job_handlers() -> jobs::Handlers {
    let mut handlers = jobs::Handlers::default();
    handlers.register(
        entity::enums::JobKind::Extraction,
        guides::ExtractionHandler,
    );
    handlers.register(entity::enums::JobKind::Training, training::TrainingHandler);
    handlers.register(entity::enums::JobKind::Report, reports::ReportHandler);
    handlers.register(entity::enums::JobKind::TestRun, test_runs::TestRunHandler);
    handlers.register(
        entity::enums::JobKind::ScriptSplit,
        scripts::ScriptSplitHandler,
    );
    handlers.register(
        entity::enums::JobKind::Synthesis,
        synthesis::SynthesisHandler,
    );
    handlers
}
