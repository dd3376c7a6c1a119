//! `grader_versions`: an immutable, numbered grader artifact (engine, model, prompt, exemplars, calibration, seed).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "grader_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub grader_id: i32,
    /// 1, 2, 3, … per grader; unique with `grader_id`.
    pub version: i32,
    /// The artifact: `{engine, model, prompt, exemplars, calibration, seed}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub config: Json,
    /// Metrics measured on the validation split when this version was made.
    #[sea_orm(column_type = "JsonBinary")]
    pub validation_metrics: Option<Json>,
    /// Training job that produced it; `NULL` if hand-made or the job was deleted.
    pub job_id: Option<i32>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::graders::Entity",
        from = "Column::GraderId",
        to = "super::graders::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Grader,
    #[sea_orm(
        belongs_to = "super::jobs::Entity",
        from = "Column::JobId",
        to = "super::jobs::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    Job,
    #[sea_orm(has_many = "super::test_runs::Entity")]
    TestRuns,
    #[sea_orm(has_many = "super::gradings::Entity")]
    Gradings,
}

impl Related<super::graders::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Grader.def()
    }
}

impl Related<super::jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Job.def()
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
