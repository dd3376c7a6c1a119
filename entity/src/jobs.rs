//! `jobs`: durable background work (extraction, training, test runs, reports), leased by a worker.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::{JobKind, JobStatus};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    /// Guide the job works on, if any.
    pub guide_id: Option<i32>,
    pub kind: JobKind,
    pub status: JobStatus,
    /// Input parameters, fixed at creation (budget, patience, grader, split, …).
    #[sea_orm(column_type = "JsonBinary")]
    pub params: Json,
    /// Fraction done, 0.0 to 1.0.
    pub progress: f64,
    /// Last finished epoch of a training job.
    pub current_epoch: Option<i32>,
    /// State to resume from after a restart (written after each finished epoch).
    #[sea_orm(column_type = "JsonBinary")]
    pub checkpoint: Option<Json>,
    /// Outcome of a succeeded job.
    #[sea_orm(column_type = "JsonBinary")]
    pub result: Option<Json>,
    /// Why the job failed.
    #[sea_orm(column_type = "Text")]
    pub error: Option<String>,
    /// Set by the user; the worker stops at the next safe point and marks the job cancelled.
    pub cancel_requested: bool,
    /// Worker (replica) currently holding the lease.
    pub lease_owner: Option<String>,
    /// The lease lapses at this time; another worker may then claim the job.
    pub lease_expires_at: Option<DateTimeUtc>,
    /// Number of times a worker has claimed the job.
    pub attempts: i32,
    /// LLM prompt tokens spent so far.
    pub prompt_tokens: i64,
    /// LLM completion tokens spent so far.
    pub completion_tokens: i64,
    /// Estimated LLM cost so far, in US dollars.
    pub cost_usd: f64,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::guides::Entity",
        from = "Column::GuideId",
        to = "super::guides::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Guide,
    #[sea_orm(has_many = "super::job_events::Entity")]
    JobEvents,
    #[sea_orm(has_many = "super::grader_versions::Entity")]
    GraderVersions,
    #[sea_orm(has_many = "super::test_runs::Entity")]
    TestRuns,
    #[sea_orm(has_many = "super::gradings::Entity")]
    Gradings,
    #[sea_orm(has_many = "super::reports::Entity")]
    Reports,
    #[sea_orm(has_many = "super::llm_calls::Entity")]
    LlmCalls,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::guides::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Guide.def()
    }
}

impl Related<super::job_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::JobEvents.def()
    }
}

impl Related<super::grader_versions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GraderVersions.def()
    }
}

impl Related<super::test_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TestRuns.def()
    }
}

impl Related<super::gradings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Gradings.def()
    }
}

impl Related<super::reports::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Reports.def()
    }
}

impl Related<super::llm_calls::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::LlmCalls.def()
    }
}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        crate::timestamps::stamp_created_updated(
            &mut self.created_at,
            &mut self.updated_at,
            insert,
        );
        Ok(self)
    }
}
