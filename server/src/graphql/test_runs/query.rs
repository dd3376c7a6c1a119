//! Test-run queries: one run, a guide's runs, and the fine-tuning export of a guide.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Object, Result, SimpleObject, ID};

use super::types::{Export, TestRun};
use crate::error::{AppError, GqlResultExt};
use crate::graphql::answers::types::AnswerSplit;
use crate::graphql::{parse_id, require_user, state};
use crate::service::{exports, test_runs};

/// Extra fields on a test-run listing.
#[derive(SimpleObject)]
pub struct TestRunConnectionFields {
    /// How many test runs the guide has.
    pub total_count: u64,
}

/// Test-run queries.
#[derive(Default)]
pub struct TestRunQuery;

#[Object]
impl TestRunQuery {
    /// One of the caller's test runs.
    async fn test_run(&self, ctx: &Context<'_>, id: ID) -> Result<TestRun> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "test run")?;
        Ok(test_runs::get(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// The test runs of one of the caller's guides, newest first (a Relay connection;
    /// `after` is an opaque cursor).
    async fn test_runs(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, TestRun, TestRunConnectionFields, EmptyFields>> {
        let auth = require_user(ctx)?;
        let db = &state(ctx)?.db;
        let guide_id = parse_id(&guide_id, "guide")?;
        let before = after
            .map(|cursor| {
                cursor
                    .parse::<i32>()
                    .map_err(|_| AppError::bad_input("`after` is not a cursor from this list."))
            })
            .transpose()
            .gql()?;
        let limit = first as u64;
        let mut rows = test_runs::list(db, auth.user_id, guide_id, before, limit + 1)
            .await
            .gql()?;
        let has_next = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let total_count = test_runs::count(db, auth.user_id, guide_id).await.gql()?;
        let mut connection = Connection::with_additional_fields(
            before.is_some(),
            has_next,
            TestRunConnectionFields { total_count },
        );
        connection.edges.extend(
            rows.into_iter()
                .map(|r| Edge::new(r.id.to_string(), TestRun::from(r))),
        );
        Ok(connection)
    }

    /// The scored answers of one of the caller's guides in a split (default TRAIN) as
    /// OpenAI chat fine-tuning JSONL: one line per answer with the grading prompt (system
    /// and user messages) and the assistant's JSON verdict carrying the teacher's score.
    async fn export_fine_tuning(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        #[graphql(desc = "Default: TRAIN.")] split: Option<AnswerSplit>,
    ) -> Result<Export> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        Ok(exports::fine_tuning_jsonl(
            &state(ctx)?.db,
            auth.user_id,
            guide_id,
            split.unwrap_or(AnswerSplit::Train).into(),
        )
        .await
        .gql()?
        .into())
    }
}
