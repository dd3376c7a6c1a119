//! `gradings`: one grader version's verdict on one answer (one row per repeat).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "gradings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    pub answer_id: i32,
    pub grader_version_id: i32,
    /// Job that produced the grading (training epoch or test run), if any.
    pub job_id: Option<i32>,
    /// 0 for the first grading of this answer in a job; 1, 2, … for repeats (variance, flip rate).
    pub repeat_index: i32,
    /// Final score after calibration, in marks.
    pub score: f64,
    /// Score as the engine produced it, before calibration.
    pub raw_score: f64,
    /// Per-criterion verdicts: a JSON array as returned by the engine.
    #[sea_orm(column_type = "JsonBinary")]
    pub criteria: Json,
    /// Feedback addressed to the student.
    #[sea_orm(column_type = "Text")]
    pub feedback: String,
    /// The grader's reasoning, for the teacher.
    #[sea_orm(column_type = "Text")]
    pub rationale: String,
    /// Engine's confidence in the score, 0.0 to 1.0, when it reports one.
    pub confidence: Option<f64>,
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
        belongs_to = "super::answers::Entity",
        from = "Column::AnswerId",
        to = "super::answers::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Answer,
    #[sea_orm(
        belongs_to = "super::grader_versions::Entity",
        from = "Column::GraderVersionId",
        to = "super::grader_versions::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    GraderVersion,
    #[sea_orm(
        belongs_to = "super::jobs::Entity",
        from = "Column::JobId",
        to = "super::jobs::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Job,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::answers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Answer.def()
    }
}

impl Related<super::grader_versions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GraderVersion.def()
    }
}

impl Related<super::jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Job.def()
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
