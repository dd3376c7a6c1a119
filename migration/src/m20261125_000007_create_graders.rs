//! Creates `graders` and their `grader_versions`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now, unique};
use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000003_create_guides::Guides;
use crate::m20261125_000006_create_jobs::Jobs;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Graders::Table)
                    .col(pk_auto(Graders::Id))
                    .col(integer(Graders::UserId))
                    .col(integer(Graders::GuideId))
                    .col(string(Graders::Name))
                    .col(string_len(Graders::Engine, 20))
                    .col(timestamp_with_time_zone(Graders::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone(Graders::UpdatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Graders::Table,
                        Graders::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Graders::Table,
                        Graders::GuideId,
                        Guides::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GraderVersions::Table)
                    .col(pk_auto(GraderVersions::Id))
                    .col(integer(GraderVersions::GraderId))
                    .col(integer(GraderVersions::Version))
                    .col(json_binary(GraderVersions::Config))
                    .col(json_binary_null(GraderVersions::ValidationMetrics))
                    .col(integer_null(GraderVersions::JobId))
                    .col(timestamp_with_time_zone(GraderVersions::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        GraderVersions::Table,
                        GraderVersions::GraderId,
                        Graders::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        GraderVersions::Table,
                        GraderVersions::JobId,
                        Jobs::Table,
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index(Graders::Table, [Graders::UserId]),
                index(Graders::Table, [Graders::GuideId]),
                unique(
                    GraderVersions::Table,
                    [GraderVersions::GraderId, GraderVersions::Version],
                ),
                index(GraderVersions::Table, [GraderVersions::JobId]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GraderVersions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Graders::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Graders {
    Table,
    Id,
    UserId,
    GuideId,
    Name,
    Engine,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum GraderVersions {
    Table,
    Id,
    GraderId,
    Version,
    Config,
    ValidationMetrics,
    JobId,
    CreatedAt,
}
