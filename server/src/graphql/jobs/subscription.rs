//! Live job events.

use std::time::Duration;

use async_graphql::{Context, Result, Subscription, ID};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::types::JobEvent;
use crate::error::GqlResultExt;
use crate::graphql::{parse_id, require_user, state};
use crate::observability::SubscriptionGuard;
use crate::service::jobs;

/// How long a subscription waits for a live event before it checks the log itself (a
/// notification lost while a replica's LISTEN connection was down).
const CATCH_UP: Duration = Duration::from_secs(3);

/// Job subscriptions.
#[derive(Default)]
pub struct JobSubscription;

#[Subscription]
impl JobSubscription {
    /// A job's events: first those after `afterSeq` from the log, then live ones as they
    /// happen, with no gaps or repeats — also when the job runs on another server replica.
    /// The stream ends after the job's final event. Reconnect with `afterSeq` = the last
    /// `seq` seen to resume without losing events.
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
            let _open = SubscriptionGuard::open();
            let mut last = after_seq;
            // Yields the logged events after `last`; ends the stream after a final one.
            macro_rules! catch_up {
                () => {{
                    // The database unreachable for a moment (a restart): keep the stream and
                    // read the log again at the next check rather than end it early.
                    let missed = jobs::events_after(&app.db, &job, last).await.unwrap_or_default();
                    for event in missed {
                        last = event.seq;
                        let terminal = event.is_terminal();
                        yield JobEvent::from(event);
                        if terminal { return; }
                    }
                }};
            }
            catch_up!();
            let mut check_at = tokio::time::Instant::now() + CATCH_UP;
            loop {
                match tokio::time::timeout_at(check_at, live.recv()).await {
                    Ok(Ok(event)) if event.job_id == job.id && event.seq == last + 1 => {
                        check_at = tokio::time::Instant::now() + CATCH_UP;
                        last = event.seq;
                        let terminal = event.is_terminal();
                        yield JobEvent::from(event);
                        if terminal { return; }
                    }
                    // A gap (an announcement was missed): the log has everything in order.
                    Ok(Ok(event)) if event.job_id == job.id && event.seq > last => catch_up!(),
                    Ok(Ok(_)) => {}
                    // Fell behind the live channel, or nothing came for a while: read the log.
                    Ok(Err(RecvError::Lagged(_))) | Err(_) => {
                        check_at = tokio::time::Instant::now() + CATCH_UP;
                        catch_up!();
                    }
                    Ok(Err(RecvError::Closed)) => return,
                }
            }
        })
    }
}
