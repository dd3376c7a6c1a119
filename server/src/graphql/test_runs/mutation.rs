//! Test-run mutations.

use async_graphql::{Context, Object, Result};

use super::types::{TestRun, TestRunInput};
use crate::error::GqlResultExt;
use crate::graphql::{require_user, state};
use crate::service::test_runs;

/// Test-run mutations.
#[derive(Default)]
pub struct TestRunMutation;

#[Object]
impl TestRunMutation {
    /// Starts a test run: grades the guide's test split (or the answers of an upload) with a
    /// grader version, `repeats` times per answer, and compares with the teacher. Follow it
    /// with the `jobEvents` subscription on `job.id`; `metrics` is set once it succeeds.
    async fn start_test_run(&self, ctx: &Context<'_>, input: TestRunInput) -> Result<TestRun> {
        let auth = require_user(ctx)?;
        let params = input.into_params()?;
        Ok(test_runs::start(state(ctx)?, auth.user_id, params)
            .await
            .gql()?
            .into())
    }
}
