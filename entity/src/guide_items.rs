//! `guide_items`: one question of a guide with its model answer, marks and rubric.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "guide_items")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub guide_id: i32,
    /// Order of the item within its guide (0-based by convention; not unique, so reordering is easy).
    pub position: i32,
    /// Question label as printed in the guide, e.g. `"1a"`; answers are imported against it.
    pub label: String,
    #[sea_orm(column_type = "Text")]
    pub question: String,
    #[sea_orm(column_type = "Text")]
    pub model_answer: String,
    pub max_marks: f64,
    /// Rubric criteria: a JSON array of `{"description": string, "marks": number}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub rubric: Json,
    /// True once the teacher has edited the item (re-extraction must not overwrite it).
    pub edited: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::guides::Entity",
        from = "Column::GuideId",
        to = "super::guides::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Guide,
    #[sea_orm(has_many = "super::answers::Entity")]
    Answers,
}

impl Related<super::guides::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Guide.def()
    }
}

impl Related<super::answers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Answers.def()
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
