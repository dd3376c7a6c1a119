//! Creates `answer_suggestions`: the LLM's suggested score level and score for a synthetic
//! answer, kept apart from the teacher's score.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now, unique};
use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000005_create_submissions::Answers;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AnswerSuggestions::Table)
                    .col(pk_auto(AnswerSuggestions::Id))
                    .col(integer(AnswerSuggestions::UserId))
                    .col(integer(AnswerSuggestions::AnswerId))
                    .col(string_len(AnswerSuggestions::Level, 20))
                    .col(double(AnswerSuggestions::SuggestedScore))
                    .col(timestamp_with_time_zone_null(
                        AnswerSuggestions::ConfirmedAt,
                    ))
                    .col(
                        timestamp_with_time_zone(AnswerSuggestions::CreatedAt)
                            .default(now(manager)),
                    )
                    .foreign_key(&mut fk(
                        AnswerSuggestions::Table,
                        AnswerSuggestions::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        AnswerSuggestions::Table,
                        AnswerSuggestions::AnswerId,
                        Answers::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                unique(AnswerSuggestions::Table, [AnswerSuggestions::AnswerId]),
                index(AnswerSuggestions::Table, [AnswerSuggestions::UserId]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AnswerSuggestions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AnswerSuggestions {
    Table,
    Id,
    UserId,
    AnswerId,
    Level,
    SuggestedScore,
    ConfirmedAt,
    CreatedAt,
}
