//! `sessions`: login sessions and named API tokens; only the SHA-256 of the secret is stored.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::TokenKind;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    /// Lowercase hex SHA-256 (64 chars) of the bearer secret; unique. Never serialized.
    #[sea_orm(unique, column_type = "String(StringLen::N(64))")]
    #[serde(skip_serializing)]
    pub token_hash: String,
    pub kind: TokenKind,
    /// Name the user gave an API token; `None` for login sessions.
    pub name: Option<String>,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    /// `None`: never expires (API tokens without expiry).
    pub expires_at: Option<DateTimeUtc>,
    /// Set on logout or token revocation; a revoked row no longer authenticates.
    pub revoked_at: Option<DateTimeUtc>,
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
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
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
