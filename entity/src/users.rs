//! `users`: a teacher's account; owns every other row in the database.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Login e-mail, unique. Stored lowercased: lowercase it before inserting and before looking it up.
    #[sea_orm(unique)]
    pub email: String,
    pub display_name: String,
    /// Password hash in PHC string format. Never serialized.
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// Per-user settings (LLM provider, model, …); `None` means the server defaults.
    #[sea_orm(column_type = "JsonBinary")]
    pub settings: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::sessions::Entity")]
    Sessions,
    #[sea_orm(has_many = "super::uploads::Entity")]
    Uploads,
    #[sea_orm(has_many = "super::guides::Entity")]
    Guides,
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
    #[sea_orm(has_many = "super::gradings::Entity")]
    Gradings,
    #[sea_orm(has_many = "super::reports::Entity")]
    Reports,
    #[sea_orm(has_many = "super::llm_calls::Entity")]
    LlmCalls,
}

impl Related<super::sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Sessions.def()
    }
}

impl Related<super::uploads::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Uploads.def()
    }
}

impl Related<super::guides::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Guides.def()
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

impl Related<super::gradings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Gradings.def()
    }
}

impl Related<super::reports::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Reports.def()
    }
}

impl Related<super::llm_calls::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::LlmCalls.def()
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
