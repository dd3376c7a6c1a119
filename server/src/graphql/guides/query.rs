//! Guide queries.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Object, Result, ID};

use super::types::Guide;
use crate::error::{AppError, GqlResultExt};
use crate::graphql::loaders::{
    GuideCache, GuideItemsLoader, GuidePageLoader, LatestJobLoader, PageGuide, PagePrefetch,
};
use crate::graphql::{parse_id, require_user, state};
use crate::service::guides::{self, GuidePage};

/// Extra fields on the guide list.
pub struct GuideConnectionFields {
    user_id: i32,
}

#[Object]
impl GuideConnectionFields {
    /// How many guides the caller has in all (counted only when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        guides::count(&state(ctx)?.db, self.user_id).await.gql()
    }
}

/// Guide queries.
#[derive(Default)]
pub struct GuideQuery;

#[Object]
impl GuideQuery {
    /// One of the caller's guides.
    async fn guide(&self, ctx: &Context<'_>, id: ID) -> Result<Guide> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "guide")?;
        Ok(guides::get(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// The caller's guides, newest first (a Relay connection; `after` is an opaque cursor).
    async fn guides(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, Guide, GuideConnectionFields, EmptyFields>> {
        let auth = require_user(ctx)?;
        let before = after
            .map(|cursor| {
                cursor
                    .parse::<i32>()
                    .map_err(|_| AppError::bad_input("`after` is not a cursor from this list."))
            })
            .transpose()
            .gql()?;
        let limit = first as u64;
        let page = GuidePage {
            user_id: auth.user_id,
            before,
            limit: limit + 1,
        };
        let mut rows = ctx
            .data::<DataLoader<GuidePageLoader>>()?
            .load_one(page)
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("loading guides: {err}")))
            .gql()?
            // Shared only when another request read the same page at the same time.
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default();
        let has_next = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let mut connection = Connection::with_additional_fields(
            before.is_some(),
            has_next,
            GuideConnectionFields {
                user_id: auth.user_id,
            },
        );
        let guides: Vec<PageGuide> = rows
            .iter()
            .map(|guide| PageGuide {
                id: guide.id,
                revision: guide.revision,
            })
            .collect();
        let prefetched = Arc::new(
            PagePrefetch::load(
                &ctx.look_ahead().field("edges").field("node"),
                &guides,
                ctx.data::<DataLoader<GuideItemsLoader>>()?,
                ctx.data::<DataLoader<LatestJobLoader>>()?,
                ctx.data::<GuideCache>()?,
            )
            .await
            .gql()?,
        );
        connection.edges.extend(rows.into_iter().map(|guide| {
            Edge::new(
                guide.id.to_string(),
                Guide::listed(guide, Arc::clone(&prefetched)),
            )
        }));
        Ok(connection)
    }
}
