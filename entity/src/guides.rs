//! `guides`: a teacher's marking guide, its extracted text and extraction status.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::GuideStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "guides")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    pub title: String,
    /// Original file name, if the guide came from a file.
    pub filename: Option<String>,
    /// MIME type of the original file.
    pub mime: Option<String>,
    /// Lowercase hex SHA-256 (64 chars) of the normalised text; unique per user (duplicate detection).
    #[sea_orm(column_type = "String(StringLen::N(64))")]
    pub content_sha256: String,
    /// Blob-store key of the original file, if kept.
    pub blob_key: Option<String>,
    /// Extracted, normalised text of the guide.
    #[sea_orm(column_type = "Text")]
    pub text: String,
    pub status: GuideStatus,
    /// Why extraction failed (when `status` is `failed`).
    #[sea_orm(column_type = "Text")]
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Bumped by the database (triggers) whenever one of the guide's items or one of its
    /// jobs changes: what a cache of them is checked against.
    pub revision: i64,
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
    #[sea_orm(has_many = "super::guide_items::Entity")]
    GuideItems,
    #[sea_orm(has_many = "super::uploads::Entity")]
    Uploads,
    #[sea_orm(has_many = "super::submissions::Entity")]
    Submissions,
    #[sea_orm(has_many = "super::answers::Entity")]
    Answers,
    #[sea_orm(has_many = "super::graders::Entity")]
    Graders,
    #[sea_orm(has_many = "super::jobs::Entity")]
    Jobs,
    #[sea_orm(has_many = "super::test_runs::Entity")]
    TestRuns,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::guide_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GuideItems.def()
    }
}

impl Related<super::uploads::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Uploads.def()
    }
}

impl Related<super::submissions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Submissions.def()
    }
}

impl Related<super::answers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Answers.def()
    }
}

impl Related<super::graders::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Graders.def()
    }
}

impl Related<super::jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Jobs.def()
    }
}

impl Related<super::test_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TestRuns.def()
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
