//! Creates `jobs` and their `job_events`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now, unique};
use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000003_create_guides::Guides;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(pk_auto(Jobs::Id))
                    .col(integer(Jobs::UserId))
                    .col(integer_null(Jobs::GuideId))
                    .col(string_len(Jobs::Kind, 20))
                    .col(string_len(Jobs::Status, 20).default("queued"))
                    .col(json_binary(Jobs::Params))
                    .col(double(Jobs::Progress).default(0.0))
                    .col(integer_null(Jobs::CurrentEpoch))
                    .col(json_binary_null(Jobs::Checkpoint))
                    .col(json_binary_null(Jobs::Result))
                    .col(text_null(Jobs::Error))
                    .col(boolean(Jobs::CancelRequested).default(false))
                    .col(string_null(Jobs::LeaseOwner))
                    .col(timestamp_with_time_zone_null(Jobs::LeaseExpiresAt))
                    .col(integer(Jobs::Attempts).default(0))
                    .col(big_integer(Jobs::PromptTokens).default(0))
                    .col(big_integer(Jobs::CompletionTokens).default(0))
                    .col(double(Jobs::CostUsd).default(0.0))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone_null(Jobs::StartedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Jobs::Table,
                        Jobs::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Jobs::Table,
                        Jobs::GuideId,
                        Guides::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobEvents::Table)
                    .col(pk_auto(JobEvents::Id))
                    .col(integer(JobEvents::JobId))
                    .col(integer(JobEvents::Seq))
                    .col(string(JobEvents::Kind))
                    .col(json_binary(JobEvents::Payload))
                    .col(timestamp_with_time_zone(JobEvents::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        JobEvents::Table,
                        JobEvents::JobId,
                        Jobs::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index(Jobs::Table, [Jobs::Status, Jobs::LeaseExpiresAt]),
                index(Jobs::Table, [Jobs::UserId, Jobs::CreatedAt]),
                index(Jobs::Table, [Jobs::GuideId]),
                unique(JobEvents::Table, [JobEvents::JobId, JobEvents::Seq]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Jobs {
    Table,
    Id,
    UserId,
    GuideId,
    Kind,
    Status,
    Params,
    Progress,
    CurrentEpoch,
    Checkpoint,
    Result,
    Error,
    CancelRequested,
    LeaseOwner,
    LeaseExpiresAt,
    Attempts,
    PromptTokens,
    CompletionTokens,
    CostUsd,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum JobEvents {
    Table,
    Id,
    JobId,
    Seq,
    Kind,
    Payload,
    CreatedAt,
}
