//! System queries.

use async_graphql::{Context, Object, Result, SimpleObject};
use sea_orm::ConnectionTrait;

use crate::error::{AppError, GqlResultExt};
use crate::graphql::state;

/// Server health.
#[derive(SimpleObject)]
pub struct Health {
    /// Server version.
    pub version: String,
    /// Database backend in use: `sqlite` or `postgres`.
    pub database: String,
}

/// System queries; these need no sign-in.
#[derive(Default)]
pub struct SystemQuery;

#[Object]
impl SystemQuery {
    /// Version and database backend; answers only when the database does.
    async fn health(&self, ctx: &Context<'_>) -> Result<Health> {
        let db = &state(ctx)?.db;
        db.ping().await.map_err(AppError::from).gql()?;
        let database = match db.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => "sqlite",
            sea_orm::DatabaseBackend::Postgres => "postgres",
            sea_orm::DatabaseBackend::MySql => "mysql",
        };
        Ok(Health {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            database: database.to_owned(),
        })
    }
}
