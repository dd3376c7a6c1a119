//! GraphQL types for language-model settings, status and usage.

use async_graphql::{Enum, InputObject, MaybeUndefined, SimpleObject};

use crate::llm::accounting::{UsageTotals, UserUsage};
use crate::llm::user_settings::{Change, EffectiveLlmSettings, LlmSettingsChanges};
use crate::llm::{self, Estimate, Provider, StructuredMode};

/// An OpenAI-compatible provider preset.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LlmProvider {
    /// llama.cpp's server on this machine, as `./gradelab up` starts it (the default).
    Llamacpp,
    /// An Ollama server.
    Ollama,
    /// A vLLM server.
    Vllm,
    /// OpenAI's API (needs an API key).
    Openai,
    /// DeepSeek's API (needs an API key).
    Deepseek,
    /// Any other OpenAI-compatible endpoint, at the base URL given.
    Custom,
}

impl From<Provider> for LlmProvider {
    fn from(provider: Provider) -> Self {
        match provider {
            Provider::LlamaCpp => Self::Llamacpp,
            Provider::Ollama => Self::Ollama,
            Provider::Vllm => Self::Vllm,
            Provider::OpenAi => Self::Openai,
            Provider::DeepSeek => Self::Deepseek,
            Provider::Custom => Self::Custom,
        }
    }
}

impl From<LlmProvider> for Provider {
    fn from(provider: LlmProvider) -> Self {
        match provider {
            LlmProvider::Llamacpp => Self::LlamaCpp,
            LlmProvider::Ollama => Self::Ollama,
            LlmProvider::Vllm => Self::Vllm,
            LlmProvider::Openai => Self::OpenAi,
            LlmProvider::Deepseek => Self::DeepSeek,
            LlmProvider::Custom => Self::Custom,
        }
    }
}

/// How a provider is asked for JSON that follows a schema.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LlmStructuredOutput {
    /// The provider constrains its output to the JSON Schema (`response_format: json_schema`).
    JsonSchema,
    /// The provider guarantees JSON; the schema is in the prompt and checked by GradeLab.
    JsonObject,
}

impl From<StructuredMode> for LlmStructuredOutput {
    fn from(mode: StructuredMode) -> Self {
        match mode {
            StructuredMode::JsonSchema => Self::JsonSchema,
            StructuredMode::JsonObject => Self::JsonObject,
        }
    }
}

/// What GradeLab knows about a provider preset.
#[derive(SimpleObject)]
pub struct LlmProviderInfo {
    /// The preset.
    pub provider: LlmProvider,
    /// Base URL used when none is set; null for `CUSTOM`.
    pub default_base_url: Option<String>,
    /// Model used when none is set, if the preset has one.
    pub default_model: Option<String>,
    /// How structured output is requested.
    pub structured_output: LlmStructuredOutput,
    /// Whether calls fail without an API key.
    pub requires_api_key: bool,
    /// Whether it runs on the school's own hardware (and costs nothing per token).
    pub local: bool,
}

impl From<Provider> for LlmProviderInfo {
    fn from(provider: Provider) -> Self {
        let preset = provider.preset();
        Self {
            provider: provider.into(),
            default_base_url: preset.default_base_url.map(str::to_owned),
            default_model: preset.default_model.map(str::to_owned),
            structured_output: preset.structured.into(),
            requires_api_key: preset.requires_api_key,
            local: preset.local,
        }
    }
}

/// The caller's LLM settings as their calls use them. The API key is never returned.
#[derive(SimpleObject)]
pub struct LlmSettings {
    /// Provider preset.
    pub provider: LlmProvider,
    /// Base URL of the OpenAI-compatible API, including `/v1`.
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Default sampling temperature (0 = deterministic, and cacheable).
    pub temperature: f64,
    /// Whether an API key will be sent (the caller's own, or the server's for the server's
    /// endpoint). The key itself is write-only.
    pub has_api_key: bool,
    /// Whether the caller changed anything from the server's defaults.
    pub customized: bool,
}

impl From<EffectiveLlmSettings> for LlmSettings {
    fn from(s: EffectiveLlmSettings) -> Self {
        Self {
            provider: s.provider.into(),
            base_url: s.base_url,
            model: s.model,
            temperature: s.temperature,
            has_api_key: s.has_api_key,
            customized: s.customized,
        }
    }
}

/// Changes to the caller's LLM settings. An omitted field is left as it is; `null` returns
/// it to the server's default (for `apiKey`: removes the stored key).
#[derive(InputObject)]
pub struct UpdateLlmSettingsInput {
    /// Provider preset. Changing it without a `baseUrl` uses the preset's default URL.
    pub provider: MaybeUndefined<LlmProvider>,
    /// Base URL including `/v1`, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: MaybeUndefined<String>,
    /// Model name, e.g. `gpt-4o-mini` or `qwen2.5:1.5b`.
    pub model: MaybeUndefined<String>,
    /// Default temperature, 0 to 2.
    pub temperature: MaybeUndefined<f64>,
    /// API key. Stored for the caller's calls only and never returned; an empty string
    /// removes it.
    pub api_key: MaybeUndefined<String>,
}

fn change<T, U>(value: MaybeUndefined<T>, map: impl FnOnce(T) -> U) -> Change<U> {
    match value {
        MaybeUndefined::Undefined => Change::Keep,
        MaybeUndefined::Null => Change::Reset,
        MaybeUndefined::Value(value) => Change::Set(map(value)),
    }
}

impl From<UpdateLlmSettingsInput> for LlmSettingsChanges {
    fn from(input: UpdateLlmSettingsInput) -> Self {
        Self {
            provider: change(input.provider, |p| Provider::from(p).as_str().to_owned()),
            base_url: change(input.base_url, |v| v),
            model: change(input.model, |v| v),
            temperature: change(input.temperature, |v| v),
            api_key: change(input.api_key, |v| v),
        }
    }
}

/// Whether the caller's language model can be used right now.
#[derive(SimpleObject)]
pub struct LlmStatus {
    /// Provider preset.
    pub provider: LlmProvider,
    /// Model that calls use.
    pub model: String,
    /// Base URL probed.
    pub base_url: String,
    /// Whether the endpoint answered `GET /models` successfully within 3 seconds.
    pub reachable: bool,
    /// Models the endpoint lists.
    pub models: Vec<String>,
    /// What to tell the user, e.g. how to start the local model.
    pub message: String,
}

impl From<llm::LlmStatus> for LlmStatus {
    fn from(s: llm::LlmStatus) -> Self {
        Self {
            provider: s.provider.into(),
            model: s.model,
            base_url: s.base_url,
            reachable: s.reachable,
            models: s.models,
            message: s.message,
        }
    }
}

/// Language-model calls and their cost. Tokens and cost are what providers billed: a call
/// answered from the cache counts as a call and a cache hit, with no tokens.
#[derive(SimpleObject)]
pub struct LlmUsageTotals {
    /// Calls (retries of one call are not separate calls).
    pub calls: i64,
    /// Calls answered from the response cache.
    pub cache_hits: i64,
    /// Calls that failed.
    pub failed_calls: i64,
    /// Prompt (input) tokens.
    pub prompt_tokens: i64,
    /// Completion (output) tokens.
    pub completion_tokens: i64,
    /// Cost in US dollars from GradeLab's price table (0 for local models).
    pub cost_usd: f64,
}

impl From<&UsageTotals> for LlmUsageTotals {
    fn from(t: &UsageTotals) -> Self {
        Self {
            calls: t.calls,
            cache_hits: t.cache_hits,
            failed_calls: t.failed,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cost_usd: t.cost_usd,
        }
    }
}

/// Usage for one purpose (`grade`, `extract_items`, `narrative`, …).
#[derive(SimpleObject)]
pub struct LlmTaskUsage {
    /// What the calls were for.
    pub task: String,
    /// Totals for the task.
    pub usage: LlmUsageTotals,
}

/// The caller's language-model usage.
#[derive(SimpleObject)]
pub struct LlmUsage {
    /// All the caller's calls.
    pub total: LlmUsageTotals,
    /// Per task, most expensive first.
    pub by_task: Vec<LlmTaskUsage>,
}

impl From<UserUsage> for LlmUsage {
    fn from(u: UserUsage) -> Self {
        Self {
            total: (&u.total).into(),
            by_task: u
                .by_task
                .iter()
                .map(|t| LlmTaskUsage {
                    task: t.task.clone(),
                    usage: t.into(),
                })
                .collect(),
        }
    }
}

/// Tokens and cost of planned calls, before a job starts. Prompt tokens are estimated as
/// characters / 4; completion tokens are the per-call limit, so this is an upper bound.
#[derive(SimpleObject)]
pub struct LlmEstimate {
    /// Calls planned.
    pub calls: i64,
    /// Estimated prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens at most.
    pub completion_tokens: i64,
    /// Estimated cost in US dollars; null when the model is not in the price table.
    pub cost_usd: Option<f64>,
}

impl From<Estimate> for LlmEstimate {
    fn from(e: Estimate) -> Self {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            calls: int(e.calls),
            prompt_tokens: int(e.prompt_tokens),
            completion_tokens: int(e.completion_tokens),
            cost_usd: e.cost_usd,
        }
    }
}
