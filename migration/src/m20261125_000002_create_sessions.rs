//! Creates `sessions` (login sessions and API tokens).

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now, unique};
use crate::m20261125_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(pk_auto(Sessions::Id))
                    .col(integer(Sessions::UserId))
                    .col(string_len(Sessions::TokenHash, 64))
                    .col(string_len(Sessions::Kind, 20))
                    .col(string_null(Sessions::Name))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone_null(Sessions::LastUsedAt))
                    .col(timestamp_with_time_zone_null(Sessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                    .foreign_key(&mut fk(
                        Sessions::Table,
                        Sessions::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                unique(Sessions::Table, [Sessions::TokenHash]),
                index(Sessions::Table, [Sessions::UserId]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Sessions {
    Table,
    Id,
    UserId,
    TokenHash,
    Kind,
    Name,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
}
