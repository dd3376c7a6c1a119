//! Job mutations.

use async_graphql::{Context, Object, Result, ID};

use super::types::Job;
use crate::error::GqlResultExt;
use crate::graphql::{parse_id, require_user, state};
use crate::service::jobs;

/// Job mutations.
#[derive(Default)]
pub struct JobMutation;

#[Object]
impl JobMutation {
    /// Stops a job: a queued job is cancelled at once, a running one at its next safe point
    /// (its `cancelled` event says when).
    async fn cancel_job(&self, ctx: &Context<'_>, id: ID) -> Result<Job> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "job")?;
        Ok(jobs::cancel(state(ctx)?, auth.user_id, id)
            .await
            .gql()?
            .into())
    }
}
