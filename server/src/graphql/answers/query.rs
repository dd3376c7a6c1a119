//! Answer queries: listings, one answer, and the split summary of a guide.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Object, Result, SimpleObject, ID};

use super::types::{Answer, AnswerSplit, SplitSummary};
use crate::error::{AppError, GqlResultExt};
use crate::graphql::{parse_id, require_user, state};
use crate::service::answers::{self, AnswerFilter};

/// Extra fields on an answers listing.
#[derive(SimpleObject)]
pub struct AnswerConnectionFields {
    /// How many answers match the filters.
    pub total_count: u64,
}

/// Answer queries.
#[derive(Default)]
pub struct AnswerQuery;

#[Object]
impl AnswerQuery {
    /// One of the caller's answers.
    async fn answer(&self, ctx: &Context<'_>, id: ID) -> Result<Answer> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "answer")?;
        Ok(answers::get(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// A guide's answers in import order, optionally of one split or item (a Relay
    /// connection; `after` is an opaque cursor).
    async fn answers(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        split: Option<AnswerSplit>,
        item_id: Option<ID>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 500))] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, Answer, AnswerConnectionFields, EmptyFields>> {
        let auth = require_user(ctx)?;
        let db = &state(ctx)?.db;
        let guide_id = parse_id(&guide_id, "guide")?;
        let filter = AnswerFilter {
            split: split.map(Into::into),
            item_id: item_id.map(|id| parse_id(&id, "guide item")).transpose()?,
        };
        let after = after
            .map(|cursor| {
                cursor
                    .parse::<i32>()
                    .map_err(|_| AppError::bad_input("`after` is not a cursor from this list."))
            })
            .transpose()
            .gql()?;
        let limit = first as u64;
        let mut rows = answers::list(db, auth.user_id, guide_id, filter, after, limit + 1)
            .await
            .gql()?;
        let has_next = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let total_count = answers::count(db, auth.user_id, guide_id, filter)
            .await
            .gql()?;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            has_next,
            AnswerConnectionFields { total_count },
        );
        connection.edges.extend(
            rows.into_iter()
                .map(|a| Edge::new(a.id.to_string(), Answer::from(a))),
        );
        Ok(connection)
    }

    /// A guide's answers counted per split and per item.
    async fn answer_split_summary(&self, ctx: &Context<'_>, guide_id: ID) -> Result<SplitSummary> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        Ok(answers::summary(&state(ctx)?.db, auth.user_id, guide_id)
            .await
            .gql()?
            .into())
    }
}
