//! Creates `submissions` and their `answers`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, fk, index, now};
use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000003_create_guides::{GuideItems, Guides};
use crate::m20261125_000004_create_uploads::Uploads;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Submissions::Table)
                    .col(pk_auto(Submissions::Id))
                    .col(integer(Submissions::UserId))
                    .col(integer(Submissions::GuideId))
                    .col(string(Submissions::StudentRef))
                    .col(string_len(Submissions::Source, 20))
                    .col(integer_null(Submissions::UploadId))
                    .col(timestamp_with_time_zone(Submissions::CreatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Submissions::Table,
                        Submissions::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Submissions::Table,
                        Submissions::GuideId,
                        Guides::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Submissions::Table,
                        Submissions::UploadId,
                        Uploads::Table,
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Answers::Table)
                    .col(pk_auto(Answers::Id))
                    .col(integer(Answers::UserId))
                    .col(integer(Answers::GuideId))
                    .col(integer(Answers::ItemId))
                    .col(integer_null(Answers::SubmissionId))
                    .col(string(Answers::StudentRef))
                    .col(text(Answers::Text))
                    .col(double_null(Answers::TeacherScore))
                    .col(string_len(Answers::Split, 20).default("unassigned"))
                    .col(string_len(Answers::ContentSha256, 64))
                    .col(timestamp_with_time_zone(Answers::CreatedAt).default(now(manager)))
                    .col(timestamp_with_time_zone(Answers::UpdatedAt).default(now(manager)))
                    .foreign_key(&mut fk(
                        Answers::Table,
                        Answers::UserId,
                        Users::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Answers::Table,
                        Answers::GuideId,
                        Guides::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Answers::Table,
                        Answers::ItemId,
                        GuideItems::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        Answers::Table,
                        Answers::SubmissionId,
                        Submissions::Table,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index(Submissions::Table, [Submissions::UserId]),
                index(
                    Submissions::Table,
                    [Submissions::GuideId, Submissions::StudentRef],
                ),
                index(Submissions::Table, [Submissions::UploadId]),
                index(Answers::Table, [Answers::UserId]),
                index(Answers::Table, [Answers::GuideId, Answers::Split]),
                index(Answers::Table, [Answers::ItemId]),
                index(Answers::Table, [Answers::SubmissionId]),
                index(Answers::Table, [Answers::GuideId, Answers::ContentSha256]),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Answers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Submissions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Submissions {
    Table,
    Id,
    UserId,
    GuideId,
    StudentRef,
    Source,
    UploadId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Answers {
    Table,
    Id,
    UserId,
    GuideId,
    ItemId,
    SubmissionId,
    StudentRef,
    Text,
    TeacherScore,
    Split,
    #[sea_orm(iden = "content_sha256")]
    ContentSha256,
    CreatedAt,
    UpdatedAt,
}
