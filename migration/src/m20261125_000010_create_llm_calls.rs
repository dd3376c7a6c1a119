//! Creates `llm_calls` (per-call accounting) and `llm_cache` (response cache).

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now, unique};
use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000006_create_jobs::Jobs;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LlmCalls::Table)
                    .col(pk_auto(LlmCalls::Id))
                    .col(integer_null(LlmCalls::UserId))
                    .col(integer_null(LlmCalls::JobId))
                    .col(string(LlmCalls::Provider))
                    .col(string(LlmCalls::Model))
                    .col(string(LlmCalls::Task))
                    .col(string_len(LlmCalls::RequestSha256, 64))
                    .col(big_integer(LlmCalls::PromptTokens))
                    .col(big_integer(LlmCalls::CompletionTokens))
                    .col(big_integer(LlmCalls::LatencyMs))
                    .col(double(LlmCalls::CostUsd))
                    .col(boolean(LlmCalls::CacheHit))
                    .col(string_len(LlmCalls::Status, 20))
                    .col(text_null(LlmCalls::Error))
                    .col(integer(LlmCalls::Attempts))
                    .col(timestamp_with_time_zone(LlmCalls::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        LlmCalls::Table,
                        LlmCalls::UserId,
                        Users::Table,
                        ForeignKeyAction::SetNull,
                    ))
                    .foreign_key(&mut fk(
                        LlmCalls::Table,
                        LlmCalls::JobId,
                        Jobs::Table,
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LlmCache::Table)
                    .col(pk_auto(LlmCache::Id))
                    .col(string_len(LlmCache::RequestSha256, 64))
                    .col(string(LlmCache::Provider))
                    .col(string(LlmCache::Model))
                    .col(text(LlmCache::Response))
                    .col(big_integer(LlmCache::PromptTokens))
                    .col(big_integer(LlmCache::CompletionTokens))
                    .col(big_integer(LlmCache::Hits).default(0))
                    .col(timestamp_with_time_zone(LlmCache::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone_null(LlmCache::LastHitAt))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index(LlmCalls::Table, [LlmCalls::UserId, LlmCalls::CreatedAt]),
                index(LlmCalls::Table, [LlmCalls::JobId]),
                unique(LlmCache::Table, [LlmCache::RequestSha256]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LlmCache::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(LlmCalls::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum LlmCalls {
    Table,
    Id,
    UserId,
    JobId,
    Provider,
    Model,
    Task,
    #[sea_orm(iden = "request_sha256")]
    RequestSha256,
    PromptTokens,
    CompletionTokens,
    LatencyMs,
    CostUsd,
    CacheHit,
    Status,
    Error,
    Attempts,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum LlmCache {
    Table,
    Id,
    #[sea_orm(iden = "request_sha256")]
    RequestSha256,
    Provider,
    Model,
    Response,
    PromptTokens,
    CompletionTokens,
    Hits,
    CreatedAt,
    LastHitAt,
}
