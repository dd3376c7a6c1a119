//! Creates `guides` and their `guide_items`.

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
                    .table(Guides::Table)
                    .col(pk_auto(Guides::Id))
                    .col(integer(Guides::UserId))
                    .col(string(Guides::Title))
                    .col(string_null(Guides::Filename))
                    .col(string_null(Guides::Mime))
                    .col(string_len(Guides::ContentSha256, 64))
                    .col(string_null(Guides::BlobKey))
                    .col(text(Guides::Text))
                    .col(string_len(Guides::Status, 20).default("pending"))
                    .col(text_null(Guides::Error))
                    .col(timestamp_with_time_zone(Guides::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone(Guides::UpdatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Guides::Table,
                        Guides::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GuideItems::Table)
                    .col(pk_auto(GuideItems::Id))
                    .col(integer(GuideItems::GuideId))
                    .col(integer(GuideItems::Position))
                    .col(string(GuideItems::Label))
                    .col(text(GuideItems::Question))
                    .col(text(GuideItems::ModelAnswer))
                    .col(double(GuideItems::MaxMarks))
                    .col(json_binary(GuideItems::Rubric))
                    .col(boolean(GuideItems::Edited).default(false))
                    .col(timestamp_with_time_zone(GuideItems::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone(GuideItems::UpdatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        GuideItems::Table,
                        GuideItems::GuideId,
                        Guides::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                unique(Guides::Table, [Guides::UserId, Guides::ContentSha256]),
                index(Guides::Table, [Guides::UserId, Guides::CreatedAt]),
                index(
                    GuideItems::Table,
                    [GuideItems::GuideId, GuideItems::Position],
                ),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GuideItems::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Guides::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Guides {
    Table,
    Id,
    UserId,
    Title,
    Filename,
    Mime,
    #[sea_orm(iden = "content_sha256")]
    ContentSha256,
    BlobKey,
    Text,
    Status,
    Error,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum GuideItems {
    Table,
    Id,
    GuideId,
    Position,
    Label,
    Question,
    ModelAnswer,
    MaxMarks,
    Rubric,
    Edited,
    CreatedAt,
    UpdatedAt,
}
