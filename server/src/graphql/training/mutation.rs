//! Training mutations.

use async_graphql::{Context, Object, Result};

use super::types::TrainingInput;
use crate::error::GqlResultExt;
use crate::graphql::jobs::types::Job;
use crate::graphql::{require_user, state};
use crate::service::training;

/// Training mutations.
#[derive(Default)]
pub struct TrainingMutation;

#[Object]
impl TrainingMutation {
    /// Starts a training job for a guide: epoch 0 measures the base grader on the validation
    /// split; each later epoch tries one change and keeps it only if validation agreement
    /// improves. Follow it with the `jobEvents` subscription (`epoch` events carry the
    /// learning curve); the job's result names the grader version it made.
    async fn start_training(&self, ctx: &Context<'_>, input: TrainingInput) -> Result<Job> {
        let auth = require_user(ctx)?;
        let (guide_id, params) = input.into_params()?;
        Ok(training::start(state(ctx)?, auth.user_id, guide_id, params)
            .await
            .gql()?
            .into())
    }
}
