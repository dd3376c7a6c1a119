//! Language-model queries.

use async_graphql::{Context, Object, Result};

use super::types::{LlmEstimate, LlmProviderInfo, LlmSettings, LlmStatus, LlmUsage};
use crate::error::{AppError, GqlResultExt};
use crate::graphql::{require_user, state};
use crate::llm::{accounting, user_settings, Provider};

/// Largest batch `llmEstimate` accepts.
const MAX_ESTIMATE_CALLS: i64 = 10_000_000;

/// Language-model queries.
#[derive(Default)]
pub struct LlmQuery;

#[Object]
impl LlmQuery {
    /// Whether the caller's language model answers, and if not, what to do about it.
    async fn llm_status(&self, ctx: &Context<'_>) -> Result<LlmStatus> {
        let auth = require_user(ctx)?;
        let llm = &state(ctx)?.llm;
        let params = llm.params_for_user(auth.user_id).await.gql()?;
        Ok(llm.status(&params.endpoint, &params.model).await.into())
    }

    /// The caller's LLM settings as their calls use them (server defaults where unset).
    async fn llm_settings(&self, ctx: &Context<'_>) -> Result<LlmSettings> {
        let auth = require_user(ctx)?;
        let app = state(ctx)?;
        let stored = user_settings::load(&app.db, auth.user_id).await.gql()?;
        Ok(app.llm.effective_settings(&stored).into())
    }

    /// The provider presets GradeLab knows.
    async fn llm_providers(&self, ctx: &Context<'_>) -> Result<Vec<LlmProviderInfo>> {
        require_user(ctx)?;
        Ok(Provider::ALL.into_iter().map(Into::into).collect())
    }

    /// The caller's language-model calls, tokens and cost, in total and per task.
    async fn llm_usage(&self, ctx: &Context<'_>) -> Result<LlmUsage> {
        let auth = require_user(ctx)?;
        let usage = accounting::user_usage(&state(ctx)?.db, auth.user_id)
            .await
            .map_err(AppError::from)
            .gql()?;
        Ok(usage.into())
    }

    /// Tokens and cost of `calls` calls of about `promptChars` characters each, answered
    /// with at most `maxCompletionTokens` tokens each, on the caller's model.
    async fn llm_estimate(
        &self,
        ctx: &Context<'_>,
        calls: i64,
        prompt_chars: i64,
        max_completion_tokens: i64,
    ) -> Result<LlmEstimate> {
        let auth = require_user(ctx)?;
        let in_range = |v: i64, max: i64| (0..=max).contains(&v);
        if !in_range(calls, MAX_ESTIMATE_CALLS)
            || !in_range(prompt_chars, 10_000_000)
            || !in_range(max_completion_tokens, 1_000_000)
        {
            return Err(AppError::bad_input(
                "calls, promptChars and maxCompletionTokens must be non-negative and plausible",
            ))
            .gql();
        }
        let params = state(ctx)?.llm.params_for_user(auth.user_id).await.gql()?;
        let unsigned = |v: i64| u64::try_from(v).unwrap_or_default();
        Ok(params
            .estimate(
                unsigned(calls),
                unsigned(prompt_chars),
                unsigned(max_completion_tokens),
            )
            .into())
    }
}
