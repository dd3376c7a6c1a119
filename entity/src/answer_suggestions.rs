//! `answer_suggestions`: the LLM's suggestion for a synthetic answer (the score level it was
//! written for and the score it suggests). A suggestion is never the teacher's score: the
//! answer stays unscored, and out of training, until the teacher confirms it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "answer_suggestions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    /// The synthetic answer (one suggestion per answer).
    #[sea_orm(unique)]
    pub answer_id: i32,
    /// The score level it was written for: `"full"`, `"partial"` or `"wrong"`.
    pub level: String,
    /// The score the model suggests, in marks (within the item's maximum).
    pub suggested_score: f64,
    /// When the teacher confirmed it (and set the answer's teacher score); `None` until then.
    pub confirmed_at: Option<DateTimeUtc>,
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
}

impl Related<super::answers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Answer.def()
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
