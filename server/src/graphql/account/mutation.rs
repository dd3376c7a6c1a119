//! Account mutations.

use async_graphql::{Context, Object, Result, ID};

use super::types::{ApiToken, AuthPayload, NewApiToken, SignInInput, SignUpInput};
use crate::error::GqlResultExt;
use crate::graphql::{parse_id, require_user, state};
use crate::service::accounts::{self, NewAccount};

/// Account mutations.
#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account and signs it in.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> Result<AuthPayload> {
        let new = NewAccount {
            email: input.email,
            password: input.password,
            display_name: input.display_name,
        };
        let (token, user) = accounts::sign_up(state(ctx)?, new).await.gql()?;
        Ok(AuthPayload {
            token,
            user: user.into(),
        })
    }

    /// Signs in with email and password.
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> Result<AuthPayload> {
        let (token, user) = accounts::sign_in(state(ctx)?, &input.email, input.password)
            .await
            .gql()?;
        Ok(AuthPayload {
            token,
            user: user.into(),
        })
    }

    /// Ends the session (or revokes the API token) used for this request.
    async fn sign_out(&self, ctx: &Context<'_>) -> Result<bool> {
        let auth = require_user(ctx)?;
        accounts::sign_out(state(ctx)?, auth).await.gql()?;
        Ok(true)
    }

    /// Creates a named API token for scripts. The secret is returned only this once.
    async fn create_api_token(&self, ctx: &Context<'_>, name: String) -> Result<NewApiToken> {
        let auth = require_user(ctx)?;
        let (token, row) = accounts::create_api_token(state(ctx)?, auth, &name)
            .await
            .gql()?;
        Ok(NewApiToken {
            token,
            api_token: row.into(),
        })
    }

    /// Revokes one of the caller's API tokens.
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> Result<ApiToken> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "API token")?;
        let row = accounts::revoke_api_token(state(ctx)?, auth, id)
            .await
            .gql()?;
        Ok(row.into())
    }
}
