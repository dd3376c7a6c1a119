//! `llm_calls`: one row per LLM request (cached or not), for token and cost accounting.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "llm_calls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    /// User the call was made for; kept as `NULL` for accounting if the user is deleted.
    pub user_id: Option<i32>,
    /// Job the call was made for; kept as `NULL` if the job is deleted.
    pub job_id: Option<i32>,
    /// Provider preset name, e.g. `"openai"`, `"ollama"`.
    pub provider: String,
    pub model: String,
    /// What the call was for, e.g. `"extract_items"`, `"grade"`, `"narrative"`.
    pub task: String,
    /// Lowercase hex SHA-256 (64 chars) of the canonical request (the `llm_cache` key).
    #[sea_orm(column_type = "String(StringLen::N(64))")]
    pub request_sha256: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Wall-clock time including retries, in milliseconds.
    pub latency_ms: i64,
    /// Estimated cost in US dollars (0 for cache hits and local models).
    pub cost_usd: f64,
    /// True when the response came from `llm_cache`.
    pub cache_hit: bool,
    /// `"ok"` or `"error"`.
    pub status: String,
    /// Last error when `status` is `"error"`.
    #[sea_orm(column_type = "Text")]
    pub error: Option<String>,
    /// HTTP attempts made (1 = no retry).
    pub attempts: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::jobs::Entity",
        from = "Column::JobId",
        to = "super::jobs::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    Job,
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
