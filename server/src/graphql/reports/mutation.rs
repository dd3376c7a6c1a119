//! Report mutations.

use async_graphql::{Context, Object, Result};

use super::types::{GenerateReportInput, Report};
use crate::error::{AppError, GqlResultExt};
use crate::graphql::{parse_id, require_user, state};
use crate::reports::data::Subject;
use crate::service::reports;

/// Report mutations.
#[derive(Default)]
pub struct ReportMutation;

#[Object]
impl ReportMutation {
    /// Generates a report on a training job or a test run. The report is stored at once
    /// with a computed narrative; with `useLlm` (the default) a `report` job then asks the
    /// language model for the narrative and replaces the computed one only if every number
    /// it cites is in the report (`narrativePending`, `narrativeJobId`).
    async fn generate_report(
        &self,
        ctx: &Context<'_>,
        input: GenerateReportInput,
    ) -> Result<Report> {
        let auth = require_user(ctx)?;
        let subject = match (&input.job_id, &input.test_run_id) {
            (Some(job), None) => Subject::TrainingJob(parse_id(job, "training job")?),
            (None, Some(run)) => Subject::TestRun(parse_id(run, "test run")?),
            _ => {
                return Err(AppError::bad_input(
                    "Give exactly one of `jobId` and `testRunId`.",
                ))
                .gql()
            }
        };
        Ok(
            reports::generate(state(ctx)?, auth.user_id, subject, input.use_llm)
                .await
                .gql()?
                .into(),
        )
    }
}
