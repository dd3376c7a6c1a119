//! `reports`: a self-contained HTML report for a job or a test run.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "reports")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    /// Job the report is about (e.g. a training job), if any.
    pub job_id: Option<i32>,
    /// Test run the report is about, if any.
    pub test_run_id: Option<i32>,
    pub title: String,
    /// The complete, self-contained HTML document.
    #[sea_orm(column_type = "Text")]
    pub html: String,
    /// Executive summary, insights and recommendations.
    #[sea_orm(column_type = "JsonBinary")]
    pub narrative: Option<Json>,
    /// Who wrote the narrative: `"llm"` or `"computed"` (fallback).
    pub narrative_source: String,
    pub created_at: DateTimeUtc,
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
        belongs_to = "super::jobs::Entity",
        from = "Column::JobId",
        to = "super::jobs::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Job,
    #[sea_orm(
        belongs_to = "super::test_runs::Entity",
        from = "Column::TestRunId",
        to = "super::test_runs::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    TestRun,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Job.def()
    }
}

impl Related<super::test_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TestRun.def()
    }
}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        crate::timestamps::stamp_created(&mut self.created_at, insert);
        Ok(self)
    }
}
