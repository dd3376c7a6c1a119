//! `test_runs`: one grader version graded against a guide's test split, run as a job.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "test_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    /// The `test_run` job doing the grading.
    pub job_id: i32,
    pub guide_id: i32,
    pub grader_version_id: i32,
    /// Agreement metrics against the teacher, once the run has finished.
    #[sea_orm(column_type = "JsonBinary")]
    pub metrics: Option<Json>,
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
        belongs_to = "super::guides::Entity",
        from = "Column::GuideId",
        to = "super::guides::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Guide,
    #[sea_orm(
        belongs_to = "super::grader_versions::Entity",
        from = "Column::GraderVersionId",
        to = "super::grader_versions::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    GraderVersion,
    #[sea_orm(has_many = "super::reports::Entity")]
    Reports,
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

impl Related<super::guides::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Guide.def()
    }
}

impl Related<super::grader_versions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GraderVersion.def()
    }
}

impl Related<super::reports::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Reports.def()
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
