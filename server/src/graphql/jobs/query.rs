//! Job queries.

use async_graphql::{Context, Object, Result, ID};

use super::types::{Job, JobEvent, JobKind};
use crate::error::GqlResultExt;
use crate::graphql::{parse_id, require_user, state};
use crate::service::{guides, jobs};

/// Job queries.
#[derive(Default)]
pub struct JobQuery;

#[Object]
impl JobQuery {
    /// One of the caller's jobs.
    async fn job(&self, ctx: &Context<'_>, id: ID) -> Result<Job> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "job")?;
        Ok(jobs::get(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// The caller's jobs, newest first; with `guideId`, that guide's (another user's guide
    /// reads as not found).
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        kind: Option<JobKind>,
        guide_id: Option<ID>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] limit: u64,
    ) -> Result<Vec<Job>> {
        let auth = require_user(ctx)?;
        let db = &state(ctx)?.db;
        let guide_id = guide_id.map(|id| parse_id(&id, "guide")).transpose()?;
        if let Some(guide_id) = guide_id {
            guides::get(db, auth.user_id, guide_id).await.gql()?;
        }
        let rows = jobs::list(db, auth.user_id, kind.map(Into::into), guide_id, limit)
            .await
            .gql()?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// A job's event log after `afterSeq` (0 for all of it).
    async fn job_events(
        &self,
        ctx: &Context<'_>,
        job_id: ID,
        #[graphql(default = 0)] after_seq: i32,
    ) -> Result<Vec<JobEvent>> {
        let auth = require_user(ctx)?;
        let db = &state(ctx)?.db;
        let job = jobs::get(db, auth.user_id, parse_id(&job_id, "job")?)
            .await
            .gql()?;
        let events = jobs::events_after(db, &job, after_seq).await.gql()?;
        Ok(events.into_iter().map(Into::into).collect())
    }
}
