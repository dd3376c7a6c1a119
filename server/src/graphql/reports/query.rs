//! Report queries.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Object, Result, SimpleObject, ID};

use super::types::Report;
use crate::error::{AppError, GqlResultExt};
use crate::graphql::{parse_id, require_user, state};
use crate::service::reports;

/// Extra fields on the report list.
#[derive(SimpleObject)]
pub struct ReportConnectionFields {
    /// How many reports the caller has in all.
    pub total_count: u64,
}

/// Report queries.
#[derive(Default)]
pub struct ReportQuery;

#[Object]
impl ReportQuery {
    /// One of the caller's reports.
    async fn report(&self, ctx: &Context<'_>, id: ID) -> Result<Report> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "report")?;
        Ok(reports::get(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// The caller's reports, newest first (a Relay connection; `after` is an opaque cursor).
    async fn reports(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, Report, ReportConnectionFields, EmptyFields>> {
        let auth = require_user(ctx)?;
        let db = &state(ctx)?.db;
        let before = after
            .map(|cursor| {
                cursor
                    .parse::<i32>()
                    .map_err(|_| AppError::bad_input("`after` is not a cursor from this list."))
            })
            .transpose()
            .gql()?;
        let limit = first as u64;
        let mut rows = reports::list(db, auth.user_id, before, limit + 1)
            .await
            .gql()?;
        let has_next = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let total_count = reports::count(db, auth.user_id).await.gql()?;
        let mut connection = Connection::with_additional_fields(
            before.is_some(),
            has_next,
            ReportConnectionFields { total_count },
        );
        connection.edges.extend(
            rows.into_iter()
                .map(|report| Edge::new(report.id.to_string(), Report::from(report))),
        );
        Ok(connection)
    }
}
