//! `answers`: one student's answer to one guide item, with the teacher's score and its split.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::Split;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "answers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    pub guide_id: i32,
    pub item_id: i32,
    /// Submission the answer belongs to, if any.
    pub submission_id: Option<i32>,
    /// The teacher's identifier for the student.
    pub student_ref: String,
    /// The student's answer; data for the grader, never instructions.
    #[sea_orm(column_type = "Text")]
    pub text: String,
    /// The teacher's mark; `None` when unscored (e.g. a fresh script to grade).
    pub teacher_score: Option<f64>,
    pub split: Split,
    /// Lowercase hex SHA-256 (64 chars) of the normalised answer text (deduplication).
    #[sea_orm(column_type = "String(StringLen::N(64))")]
    pub content_sha256: String,
    pub created_at: DateTimeUtc,
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
    #[sea_orm(
        belongs_to = "super::guide_items::Entity",
        from = "Column::ItemId",
        to = "super::guide_items::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Item,
    #[sea_orm(
        belongs_to = "super::submissions::Entity",
        from = "Column::SubmissionId",
        to = "super::submissions::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Submission,
    #[sea_orm(has_many = "super::gradings::Entity")]
    Gradings,
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

impl Related<super::guide_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Item.def()
    }
}

impl Related<super::submissions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Submission.def()
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
        crate::timestamps::stamp_created_updated(
            &mut self.created_at,
            &mut self.updated_at,
            insert,
        );
        Ok(self)
    }
}
