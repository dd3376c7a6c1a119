//! `llm_cache`: provider responses keyed by the SHA-256 of the canonical request.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "llm_cache")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Lowercase hex SHA-256 (64 chars) of the canonical request; unique.
    #[sea_orm(unique, column_type = "String(StringLen::N(64))")]
    pub request_sha256: String,
    pub provider: String,
    pub model: String,
    /// Raw JSON body returned by the provider.
    #[sea_orm(column_type = "Text")]
    pub response: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Times the entry has been served from the cache.
    pub hits: i64,
    pub created_at: DateTimeUtc,
    pub last_hit_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

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
