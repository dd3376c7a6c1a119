//! Small helpers shared by the migrations. Old migrations depend on them: never change what
//! an existing helper emits; add a new helper instead.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Default value "now" for a `timestamp_with_time_zone` column.
///
/// On SQLite the column is text, and sea-orm writes RFC 3339 (`2026-11-25T16:54:00.123+00:00`);
/// `CURRENT_TIMESTAMP` would write `2026-11-25 16:54:00`, which sorts differently, so the
/// default produces RFC 3339 too. PostgreSQL has a real `timestamptz`.
pub(crate) fn now(manager: &SchemaManager) -> SimpleExpr {
    match manager.get_database_backend() {
        DbBackend::Sqlite => Expr::cust("(strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))"),
        DbBackend::Postgres | DbBackend::MySql => Expr::current_timestamp().into(),
    }
}

/// Foreign key `table.column → parent.id`, named `fk_<table>_<column>`.
pub(crate) fn fk<T, C, P>(
    table: T,
    column: C,
    parent: P,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement
where
    T: IntoIden,
    C: IntoIden,
    P: IntoIden,
{
    let table = table.into_iden();
    let column = column.into_iden();
    ForeignKey::create()
        .name(format!("fk_{}_{}", table.to_string(), column.to_string()))
        .from(table, column)
        .to(parent.into_iden(), Alias::new("id"))
        .on_delete(on_delete)
        .on_update(ForeignKeyAction::NoAction)
        .to_owned()
}

/// Index on `table(columns…)`, named `idx_<table>_<col>_<col>…`.
pub(crate) fn index<T, C>(table: T, columns: impl IntoIterator<Item = C>) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIden,
{
    named_index("idx", table, columns)
}

/// Unique index on `table(columns…)`, named `uq_<table>_<col>_<col>…`.
pub(crate) fn unique<T, C>(table: T, columns: impl IntoIterator<Item = C>) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIden,
{
    named_index("uq", table, columns).unique().to_owned()
}

fn named_index<T, C>(
    prefix: &str,
    table: T,
    columns: impl IntoIterator<Item = C>,
) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIden,
{
    let table = table.into_iden();
    let columns: Vec<DynIden> = columns.into_iter().map(IntoIden::into_iden).collect();
    let mut name = format!("{prefix}_{}", table.to_string());
    for column in &columns {
        name.push('_');
        name.push_str(&column.to_string());
    }
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    index
}

/// Create every index in `indexes`.
pub(crate) async fn create_indexes(
    manager: &SchemaManager<'_>,
    indexes: Vec<IndexCreateStatement>,
) -> Result<(), DbErr> {
    for index in indexes {
        manager.create_index(index).await?;
    }
    Ok(())
}
