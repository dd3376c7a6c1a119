//! Training queries: cost estimates, the learning curve, graders, versions and diffs.

use async_graphql::{Context, Object, Result, ID};

use super::types::{
    ConfigChange, Grader, GraderVersion, TrainingEpoch, TrainingEstimate, TrainingInput,
};
use crate::error::GqlResultExt;
use crate::graphql::{parse_id, require_user, state};
use crate::service::training;

/// Training queries.
#[derive(Default)]
pub struct TrainingQuery;

#[Object]
impl TrainingQuery {
    /// What a training job with this input would cost at most (calls, tokens, dollars),
    /// before starting it. Checks the input like `startTraining` does.
    async fn estimate_training(
        &self,
        ctx: &Context<'_>,
        input: TrainingInput,
    ) -> Result<TrainingEstimate> {
        let auth = require_user(ctx)?;
        let (guide_id, params) = input.into_params()?;
        Ok(
            training::estimate(state(ctx)?, auth.user_id, guide_id, params)
                .await
                .gql()?
                .into(),
        )
    }

    /// The finished epochs of a training job in order: its learning curve.
    async fn training_epochs(&self, ctx: &Context<'_>, job_id: ID) -> Result<Vec<TrainingEpoch>> {
        let auth = require_user(ctx)?;
        let job_id = parse_id(&job_id, "job")?;
        let epochs = training::epochs(&state(ctx)?.db, auth.user_id, job_id)
            .await
            .gql()?;
        Ok(epochs.into_iter().map(Into::into).collect())
    }

    /// The graders of one of the caller's guides, newest first.
    async fn graders(&self, ctx: &Context<'_>, guide_id: ID) -> Result<Vec<Grader>> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        let rows = training::graders_of(&state(ctx)?.db, auth.user_id, guide_id)
            .await
            .gql()?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One of the caller's graders.
    async fn grader(&self, ctx: &Context<'_>, id: ID) -> Result<Grader> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "grader")?;
        Ok(training::grader(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// One of the caller's grader versions.
    async fn grader_version(&self, ctx: &Context<'_>, id: ID) -> Result<GraderVersion> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "grader version")?;
        Ok(training::version(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// What changed in the config from one grader version to another, leaf by leaf.
    async fn grader_version_diff(
        &self,
        ctx: &Context<'_>,
        from_id: ID,
        to_id: ID,
    ) -> Result<Vec<ConfigChange>> {
        let auth = require_user(ctx)?;
        let from = parse_id(&from_id, "grader version")?;
        let to = parse_id(&to_id, "grader version")?;
        let changes = training::version_diff(&state(ctx)?.db, auth.user_id, from, to)
            .await
            .gql()?;
        Ok(changes.into_iter().map(Into::into).collect())
    }
}
