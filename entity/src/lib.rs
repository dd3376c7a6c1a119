//! GradeLab's database entities: one sea-orm model per table, plus the string enums they use.
//!
//! Every table has `created_at`; tables with `updated_at` have both stamped by
//! [`ActiveModelBehavior::before_save`](sea_orm::ActiveModelBehavior::before_save)
//! when the caller leaves them unset (bulk `insert_many` skips that hook and falls
//! back to the database default for `created_at`/`updated_at`).

pub mod enums;
mod timestamps;

pub mod answer_suggestions;
pub mod answers;
pub mod grader_versions;
pub mod graders;
pub mod gradings;
pub mod guide_items;
pub mod guides;
pub mod job_events;
pub mod jobs;
pub mod llm_cache;
pub mod llm_calls;
pub mod reports;
pub mod sessions;
pub mod submissions;
pub mod test_runs;
pub mod uploads;
pub mod users;

/// `use entity::prelude::*;` brings every entity (by table name) and every enum into scope.
pub mod prelude {
    pub use super::answers::Entity as Answers;
    pub use super::enums::{Engine, GuideStatus, JobKind, JobStatus, Split, TokenKind};
    pub use super::grader_versions::Entity as GraderVersions;
    pub use super::graders::Entity as Graders;
    pub use super::gradings::Entity as Gradings;
    pub use super::guide_items::Entity as GuideItems;
    pub use super::guides::Entity as Guides;
    pub use super::job_events::Entity as JobEvents;
    pub use super::jobs::Entity as Jobs;
    pub use super::llm_cache::Entity as LlmCache;
    pub use super::llm_calls::Entity as LlmCalls;
    pub use super::reports::Entity as Reports;
    pub use super::sessions::Entity as Sessions;
    pub use super::submissions::Entity as Submissions;
    pub use super::test_runs::Entity as TestRuns;
    pub use super::uploads::Entity as Uploads;
    pub use super::users::Entity as Users;
}
