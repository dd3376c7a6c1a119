//! Account queries.

use async_graphql::{Context, Object, Result};

use super::types::{ApiToken, User};
use crate::error::GqlResultExt;
use crate::graphql::{require_user, state};
use crate::service::accounts;

/// Account queries.
#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user. Fails with `UNAUTHENTICATED` without a valid token.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let auth = require_user(ctx)?;
        let user = accounts::current_user(&state(ctx)?.db, auth).await.gql()?;
        Ok(user.into())
    }

    /// The caller's API tokens that have not been revoked, newest first.
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiToken>> {
        let auth = require_user(ctx)?;
        let tokens = accounts::list_api_tokens(&state(ctx)?.db, auth)
            .await
            .gql()?;
        Ok(tokens.into_iter().map(Into::into).collect())
    }
}
