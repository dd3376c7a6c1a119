//! Account subscriptions.

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::types::AccountEvent;
use crate::graphql::{require_user, state};

/// Account subscriptions.
#[derive(Default)]
pub struct AccountSubscription;

#[Subscription]
impl AccountSubscription {
    /// Security events on the caller's account as they happen: sign-ins, sign-outs,
    /// API tokens created and revoked.
    async fn account_events(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = AccountEvent>> {
        let user_id = require_user(ctx)?.user_id;
        let receiver = state(ctx)?.account_events.subscribe();
        Ok(
            BroadcastStream::new(receiver).filter_map(move |event| async move {
                // A lagging subscriber skips what it missed rather than failing.
                event
                    .ok()
                    .filter(|event| event.user_id == user_id)
                    .map(AccountEvent::from)
            }),
        )
    }
}
