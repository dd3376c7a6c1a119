//! Creates `users`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, now, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_auto(Users::Id))
                    // Lowercased by the application before insert and lookup.
                    .col(string(Users::Email))
                    .col(string(Users::DisplayName))
                    .col(string(Users::PasswordHash))
                    .col(json_binary_null(Users::Settings))
                    .col(timestamp_with_time_zone(Users::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone(Users::UpdatedAt).default(now(manager)))
                    .to_owned(),
            )
            .await?;
        create_indexes(manager, vec![unique(Users::Table, [Users::Email])]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Users {
    Table,
    Id,
    Email,
    DisplayName,
    PasswordHash,
    Settings,
    CreatedAt,
    UpdatedAt,
}
