//! Creates `test_runs` and `gradings`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now};
use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000003_create_guides::Guides;
use crate::m20261125_000005_create_submissions::Answers;
use crate::m20261125_000006_create_jobs::Jobs;
use crate::m20261125_000007_create_graders::GraderVersions;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TestRuns::Table)
                    .col(pk_auto(TestRuns::Id))
                    .col(integer(TestRuns::UserId))
                    .col(integer(TestRuns::JobId))
                    .col(integer(TestRuns::GuideId))
                    .col(integer(TestRuns::GraderVersionId))
                    .col(json_binary_null(TestRuns::Metrics))
                    .col(timestamp_with_time_zone(TestRuns::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        TestRuns::Table,
                        TestRuns::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        TestRuns::Table,
                        TestRuns::JobId,
                        Jobs::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        TestRuns::Table,
                        TestRuns::GuideId,
                        Guides::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        TestRuns::Table,
                        TestRuns::GraderVersionId,
                        GraderVersions::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Gradings::Table)
                    .col(pk_auto(Gradings::Id))
                    .col(integer(Gradings::UserId))
                    .col(integer(Gradings::AnswerId))
                    .col(integer(Gradings::GraderVersionId))
                    .col(integer_null(Gradings::JobId))
                    .col(integer(Gradings::RepeatIndex).default(0))
                    .col(double(Gradings::Score))
                    .col(double(Gradings::RawScore))
                    .col(json_binary(Gradings::Criteria))
                    .col(text(Gradings::Feedback))
                    .col(text(Gradings::Rationale))
                    .col(double_null(Gradings::Confidence))
                    .col(timestamp_with_time_zone(Gradings::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Gradings::Table,
                        Gradings::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Gradings::Table,
                        Gradings::AnswerId,
                        Answers::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Gradings::Table,
                        Gradings::GraderVersionId,
                        GraderVersions::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Gradings::Table,
                        Gradings::JobId,
                        Jobs::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index(TestRuns::Table, [TestRuns::UserId, TestRuns::CreatedAt]),
                index(TestRuns::Table, [TestRuns::JobId]),
                index(TestRuns::Table, [TestRuns::GuideId]),
                index(TestRuns::Table, [TestRuns::GraderVersionId]),
                index(Gradings::Table, [Gradings::UserId]),
                index(Gradings::Table, [Gradings::AnswerId]),
                index(Gradings::Table, [Gradings::GraderVersionId]),
                index(Gradings::Table, [Gradings::JobId]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Gradings::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TestRuns::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum TestRuns {
    Table,
    Id,
    UserId,
    JobId,
    GuideId,
    GraderVersionId,
    Metrics,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Gradings {
    Table,
    Id,
    UserId,
    AnswerId,
    GraderVersionId,
    JobId,
    RepeatIndex,
    Score,
    RawScore,
    Criteria,
    Feedback,
    Rationale,
    Confidence,
    CreatedAt,
}
