//! The vocabulary of a call: messages, per-call parameters, context and results.

use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;

use super::accounting::{estimate, Estimate};
use super::logprobs::TokenLogprob;
use super::provider::Provider;

/// Who speaks in a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The request (student text goes here, fenced, as data).
    User,
    /// A previous model reply.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Where requests go: a provider preset, its base URL and the key.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Preset (structured-output mode, prices, key requirement).
    pub provider: Provider,
    /// Base URL including `/v1`, without a trailing slash.
    pub base_url: String,
    /// Bearer key, if any. Never logged (`SecretString` redacts itself).
    pub api_key: Option<SecretString>,
}

impl Endpoint {
    /// An endpoint with the preset's default base URL and no key.
    pub fn preset(provider: Provider) -> Self {
        Self {
            provider,
            base_url: provider
                .preset()
                .default_base_url
                .unwrap_or_default()
                .to_owned(),
            api_key: None,
        }
    }

    /// The same endpoint at another base URL (a trailing `/` is dropped).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The same endpoint with a key.
    pub fn with_api_key(mut self, key: SecretString) -> Self {
        self.api_key = Some(key);
        self
    }
}

/// Whether a call may be answered from, and stored in, `llm_cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Cache deterministic calls only: temperature 0 (and the server's cache switched on).
    #[default]
    Auto,
    /// Cache even at temperature > 0 (e.g. to replay a sampled call exactly).
    Always,
    /// Neither read nor write the cache (e.g. measuring grading variance).
    Never,
}

/// Everything about a call except its messages and its purpose.
#[derive(Debug, Clone)]
pub struct CallParams {
    /// Provider endpoint.
    pub endpoint: Endpoint,
    /// Model name sent in the request.
    pub model: String,
    /// Sampling temperature, 0 to 2.
    pub temperature: f64,
    /// Sampling seed, for providers that honour it.
    pub seed: Option<i64>,
    /// Upper bound on completion tokens.
    pub max_tokens: Option<u32>,
    /// Per-attempt timeout; `None` uses the server's `llm.timeout_secs`.
    pub timeout: Option<Duration>,
    /// Cache use.
    pub cache: CachePolicy,
    /// Ask for the log-probabilities of each reply token and of this many alternatives at
    /// each position (see [`super::logprobs`]), from providers whose preset says they
    /// return them; ignored for the others.
    pub top_logprobs: Option<u8>,
}

impl CallParams {
    /// Parameters for `model` at `endpoint`, temperature 0, no seed or limit.
    pub fn new(endpoint: Endpoint, model: impl Into<String>) -> Self {
        Self {
            endpoint,
            model: model.into(),
            temperature: 0.0,
            seed: None,
            max_tokens: None,
            timeout: None,
            cache: CachePolicy::Auto,
            top_logprobs: None,
        }
    }

    /// With a temperature.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }

    /// With a seed.
    pub fn seed(mut self, seed: i64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// With a completion-token limit.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// With a per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With token log-probabilities and `alternatives` alternatives per token.
    pub fn top_logprobs(mut self, alternatives: u8) -> Self {
        self.top_logprobs = Some(alternatives);
        self
    }

    /// With a cache policy.
    pub fn cache(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }

    /// Tokens and cost of `calls` such calls with prompts of about `prompt_chars`
    /// characters, each answered with at most `max_completion_tokens` tokens (see
    /// [`super::estimate`]).
    pub fn estimate(&self, calls: u64, prompt_chars: u64, max_completion_tokens: u64) -> Estimate {
        estimate(
            self.endpoint.provider,
            &self.model,
            calls,
            prompt_chars,
            max_completion_tokens,
        )
    }
}

/// Who a call is for and why: the accounting row's user, job and task.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// User charged for the call.
    pub user_id: Option<i32>,
    /// Job whose token and cost totals include the call.
    pub job_id: Option<i32>,
    /// What the call is for: `"extract_items"`, `"grade"`, `"synthesise"`, `"narrative"`, …
    pub task: String,
}

impl CallContext {
    /// A call for `task`, charged to nobody in particular.
    pub fn task(task: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            ..Self::default()
        }
    }

    /// Charged to a user.
    pub fn user(mut self, user_id: i32) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// Counted in a job's totals.
    pub fn job(mut self, job_id: i32) -> Self {
        self.job_id = Some(job_id);
        self
    }
}

/// Tokens of one logical call, summed over its HTTP responses (a repair retry's included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: i64,
    /// Completion (output) tokens.
    pub completion_tokens: i64,
}

/// How a logical call went: what the accounting row says.
#[derive(Debug, Clone)]
pub struct CallMeta {
    /// Lowercase hex SHA-256 of the canonical request (the cache key).
    pub request_sha256: String,
    /// Tokens billed by the provider (zero on a cache hit).
    pub usage: Usage,
    /// Cost in US dollars from the price table (zero on a cache hit).
    pub cost_usd: f64,
    /// Answered from `llm_cache` without HTTP.
    pub cache_hit: bool,
    /// HTTP attempts, retries and the repair request included.
    pub attempts: u32,
    /// Wall-clock time of the whole call.
    pub latency: Duration,
    /// Why the model stopped (`"stop"`, `"length"`, …), if it said.
    pub finish_reason: Option<String>,
}

/// A free-text reply.
#[derive(Debug, Clone)]
pub struct ChatResponse {
    /// The assistant's message text.
    pub content: String,
    /// Accounting facts.
    pub meta: CallMeta,
}

/// A reply parsed into `T`.
#[derive(Debug, Clone)]
pub struct Structured<T> {
    /// The parsed value (range checks are the caller's).
    pub value: T,
    /// The reply text it was parsed from.
    pub raw: String,
    /// The reply's tokens with their log-probabilities, when asked for and returned.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Accounting facts.
    pub meta: CallMeta,
}
