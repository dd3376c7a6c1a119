//! `graders`: a named grader for one guide; its configurations live in `grader_versions`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::Engine;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "graders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    pub guide_id: i32,
    pub name: String,
    pub engine: Engine,
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
    #[sea_orm(has_many = "super::grader_versions::Entity")]
    GraderVersions,
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

impl Related<super::grader_versions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GraderVersions.def()
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
