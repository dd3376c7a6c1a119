//! Creates `uploads` (content-addressed raw files).

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
                    .table(Uploads::Table)
                    .col(pk_auto(Uploads::Id))
                    .col(integer(Uploads::UserId))
                    .col(integer_null(Uploads::GuideId))
                    .col(string_len(Uploads::Kind, 20))
                    .col(string_len(Uploads::Sha256, 64))
                    .col(string(Uploads::Filename))
                    .col(big_integer(Uploads::SizeBytes))
                    .col(string(Uploads::BlobKey))
                    .col(timestamp_with_time_zone(Uploads::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Uploads::Table,
                        Uploads::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Uploads::Table,
                        Uploads::GuideId,
                        Guides::Table,
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                unique(
                    Uploads::Table,
                    [Uploads::UserId, Uploads::Kind, Uploads::Sha256],
                ),
                index(Uploads::Table, [Uploads::GuideId]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Uploads::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Uploads {
    Table,
    Id,
    UserId,
    GuideId,
    Kind,
    #[sea_orm(iden = "sha256")]
    Sha256,
    Filename,
    SizeBytes,
    BlobKey,
    CreatedAt,
}
