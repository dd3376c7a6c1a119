//! `uploads`: raw files a user uploaded, stored content-addressed; unique per (user, kind, sha256).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "uploads")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    /// Guide the file belongs to, if any; set to `NULL` when that guide is deleted.
    pub guide_id: Option<i32>,
    /// What the file is: `"guide"`, `"answers"` (CSV/JSONL) or `"script"` (one student's work).
    pub kind: String,
    /// Lowercase hex SHA-256 (64 chars) of the file's bytes.
    #[sea_orm(column_type = "String(StringLen::N(64))")]
    pub sha256: String,
    /// File name as sent by the browser (display only, never a path).
    pub filename: String,
    pub size_bytes: i64,
    /// Key of the stored bytes under the data directory's blob store (content-addressed).
    pub blob_key: String,
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
        belongs_to = "super::guides::Entity",
        from = "Column::GuideId",
        to = "super::guides::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    Guide,
    #[sea_orm(has_many = "super::submissions::Entity")]
    Submissions,
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

impl Related<super::submissions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Submissions.def()
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
