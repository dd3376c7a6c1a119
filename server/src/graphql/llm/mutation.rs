//! Language-model mutations.

use async_graphql::{Context, Object, Result};

use super::types::{LlmSettings, UpdateLlmSettingsInput};
use crate::error::GqlResultExt;
use crate::graphql::{require_user, state};
use crate::llm::user_settings;

/// Language-model mutations.
#[derive(Default)]
pub struct LlmMutation;

#[Object]
impl LlmMutation {
    /// Changes the caller's own LLM settings and returns them as calls will use them.
    /// The API key is stored but never returned (`hasApiKey` says whether one is set).
    async fn update_llm_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdateLlmSettingsInput,
    ) -> Result<LlmSettings> {
        let auth = require_user(ctx)?;
        let app = state(ctx)?;
        let stored = user_settings::update(&app.llm, auth.user_id, input.into())
            .await
            .gql()?;
        Ok(app.llm.effective_settings(&stored).into())
    }
}
