//! Creates `reports`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now};
use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000006_create_jobs::Jobs;
use crate::m20261125_000008_create_test_runs::TestRuns;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reports::Table)
                    .col(pk_auto(Reports::Id))
                    .col(integer(Reports::UserId))
                    .col(integer_null(Reports::JobId))
                    .col(integer_null(Reports::TestRunId))
                    .col(string(Reports::Title))
                    .col(text(Reports::Html))
                    .col(json_binary_null(Reports::Narrative))
                    .col(string_len(Reports::NarrativeSource, 20))
                    .col(timestamp_with_time_zone(Reports::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Reports::Table,
                        Reports::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Reports::Table,
                        Reports::JobId,
                        Jobs::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Reports::Table,
                        Reports::TestRunId,
                        TestRuns::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index(Reports::Table, [Reports::UserId, Reports::CreatedAt]),
                index(Reports::Table, [Reports::JobId]),
                index(Reports::Table, [Reports::TestRunId]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Reports::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Reports {
    Table,
    Id,
    UserId,
    JobId,
    TestRunId,
    Title,
    Html,
    Narrative,
    NarrativeSource,
    CreatedAt,
}
