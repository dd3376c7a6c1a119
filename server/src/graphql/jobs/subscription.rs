//! Live job events.

use async_graphql::{Context, Result, Subscription, ID};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::types::JobEvent;
use crate::error::GqlResultExt;
use crate::graphql::{parse_id, require_user, state};
use crate::service::jobs;

/// Job subscriptions.
#[derive(Default)]
pub struct JobSubscription;

#[Subscription]
impl JobSubscription {
    /// A job's events: first those after `afterSeq` from the log, then live ones as they
    /// happen, with no gaps or repeats. The stream ends after the job's final event.
    /// Reconnect with `afterSeq` = the last `seq` seen to resume without losing events.
    async fn job_events(
        &self,
        ctx: &Context<'_>,
        job_id: ID,
        #[graphql(default = 0)] after_seq: i32,
    ) -> Result<impl Stream<Item = JobEvent>> {
        let auth = require_user(ctx)?;
        let app = state(ctx)?.clone();
        let job = jobs::get(&app.db, auth.user_id, parse_id(&job_id, "job")?)
            .await
            .gql()?;
        // Subscribe before reading the log so nothing falls between the two.
        let mut live = app.jobs.subscribe();
        Ok(async_stream::stream! {
            let mut last = after_seq;
            let Ok(backlog) = jobs::events_after(&app.db, &job, last).await else { return };
            for event in backlog {
                last = event.seq;
                let terminal = event.is_terminal();
                yield JobEvent::from(event);
                if terminal { return; }
            }
            loop {
                match live.recv().await {
                    Ok(event) if event.job_id == job.id && event.seq > last => {
                        last = event.seq;
                        let terminal = event.is_terminal();
                        yield JobEvent::from(event);
                        if terminal { return; }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // Fell behind the live channel: catch up from the log.
                        let Ok(missed) = jobs::events_after(&app.db, &job, last).await else { return };
                        for event in missed {
                            last = event.seq;
                            let terminal = event.is_terminal();
                            yield JobEvent::from(event);
                            if terminal { return; }
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }
}
