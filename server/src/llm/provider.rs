//! Provider presets: default base URL, structured-output support, API-key need and prices.
//!
//! This file is the one place that knows how providers differ. Prices are list prices in
//! US dollars per million tokens as published by each provider (checked 2025-11); a paid
//! provider's model missing from the table is recorded at cost 0 and logged once as
//! unpriced, so update the table when a school adopts a new model. Local providers
//! (llama.cpp, Ollama, vLLM) and `custom` endpoints have no price table and cost 0.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OpenAI-compatible provider preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// api.openai.com.
    OpenAi,
    /// api.deepseek.com.
    DeepSeek,
    /// A local or LAN Ollama server.
    Ollama,
    /// A vLLM server (`vllm serve`).
    Vllm,
    /// llama.cpp's server, as `./gradelab up` runs it: the local default.
    LlamaCpp,
    /// Any other OpenAI-compatible endpoint (LM Studio, LiteLLM, a gateway, …).
    Custom,
}

/// How a provider is asked for JSON that follows a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredMode {
    /// `response_format: {type: "json_schema", json_schema: {strict: true, schema}}`: the
    /// provider constrains decoding to the schema.
    JsonSchema,
    /// `response_format: {type: "json_object"}`: valid JSON is guaranteed, the schema is
    /// given in the system prompt and checked by us.
    JsonObject,
}

/// Price of a model in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million prompt (input) tokens.
    pub prompt: f64,
    /// Per million completion (output) tokens.
    pub completion: f64,
}

impl Price {
    /// Free (local models).
    pub const FREE: Price = Price {
        prompt: 0.0,
        completion: 0.0,
    };

    /// Cost in US dollars of the given token counts.
    pub fn cost(&self, prompt_tokens: i64, completion_tokens: i64) -> f64 {
        (prompt_tokens.max(0) as f64 * self.prompt
            + completion_tokens.max(0) as f64 * self.completion)
            / 1_000_000.0
    }
}

/// What GradeLab knows about a provider.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Name used in settings and in `llm_calls.provider`.
    pub name: &'static str,
    /// Base URL used when none is configured, including `/v1`; `None` for `custom`.
    pub default_base_url: Option<&'static str>,
    /// Model used when none is configured.
    pub default_model: Option<&'static str>,
    /// Best structured-output mode the provider supports.
    pub structured: StructuredMode,
    /// Whether requests fail without an API key.
    pub requires_api_key: bool,
    /// Whether the endpoint runs on the school's own hardware (free, and a failure to
    /// connect means "start it").
    pub local: bool,
    /// Whether the endpoint decodes one request at a time (llama.cpp as `gradelab llm start`
    /// runs it, one slot on the CPU), so a job sends its calls one by one rather than up to
    /// `llm.concurrency` at once: queued calls would only wait on the server, inside their
    /// timeout.
    pub serial: bool,
    /// Whether every model it serves returns token log-probabilities (`logprobs`,
    /// `top_logprobs`) on chat completions. Only llama.cpp and vLLM are asked: OpenAI's and
    /// DeepSeek's reasoning models refuse them, and not every Ollama or custom server sends
    /// them.
    pub logprobs: bool,
    /// List prices, matched on the longest model-name prefix.
    pub prices: &'static [(&'static str, Price)],
}

const fn p(prompt: f64, completion: f64) -> Price {
    Price { prompt, completion }
}

/// OpenAI list prices (platform.openai.com/pricing), standard tier.
const OPENAI_PRICES: &[(&str, Price)] = &[
    ("gpt-5", p(1.25, 10.00)),
    ("gpt-5-mini", p(0.25, 2.00)),
    ("gpt-5-nano", p(0.05, 0.40)),
    ("gpt-4.1", p(2.00, 8.00)),
    ("gpt-4.1-mini", p(0.40, 1.60)),
    ("gpt-4.1-nano", p(0.10, 0.40)),
    ("gpt-4o", p(2.50, 10.00)),
    ("gpt-4o-mini", p(0.15, 0.60)),
    ("o4-mini", p(1.10, 4.40)),
    ("o3", p(2.00, 8.00)),
    ("o3-mini", p(1.10, 4.40)),
];

/// DeepSeek list prices (api-docs.deepseek.com/quick_start/pricing), cache-miss input.
const DEEPSEEK_PRICES: &[(&str, Price)] = &[
    ("deepseek-chat", p(0.28, 0.42)),
    ("deepseek-reasoner", p(0.28, 0.42)),
];

const OPENAI: Preset = Preset {
    name: "openai",
    default_base_url: Some("https://api.openai.com/v1"),
    default_model: Some("gpt-4o-mini"),
    structured: StructuredMode::JsonSchema,
    requires_api_key: true,
    local: false,
    serial: false,
    logprobs: false,
    prices: OPENAI_PRICES,
};

const DEEPSEEK: Preset = Preset {
    name: "deepseek",
    default_base_url: Some("https://api.deepseek.com/v1"),
    default_model: Some("deepseek-chat"),
    structured: StructuredMode::JsonObject,
    requires_api_key: true,
    local: false,
    serial: false,
    logprobs: false,
    prices: DEEPSEEK_PRICES,
};

const OLLAMA: Preset = Preset {
    name: "ollama",
    default_base_url: Some("http://127.0.0.1:11434/v1"),
    default_model: None,
    structured: StructuredMode::JsonSchema,
    requires_api_key: false,
    local: true,
    serial: false,
    logprobs: false,
    prices: &[],
};

const VLLM: Preset = Preset {
    name: "vllm",
    default_base_url: Some("http://127.0.0.1:8000/v1"),
    default_model: None,
    structured: StructuredMode::JsonSchema,
    requires_api_key: false,
    local: true,
    serial: false,
    logprobs: true,
    prices: &[],
};

const LLAMACPP: Preset = Preset {
    name: "llamacpp",
    default_base_url: Some("http://127.0.0.1:8765/v1"),
    default_model: Some("local"),
    structured: StructuredMode::JsonSchema,
    requires_api_key: false,
    local: true,
    serial: true,
    logprobs: true,
    prices: &[],
};

const CUSTOM: Preset = Preset {
    name: "custom",
    default_base_url: None,
    default_model: None,
    structured: StructuredMode::JsonObject,
    requires_api_key: false,
    local: false,
    serial: false,
    logprobs: false,
    prices: &[],
};

impl Provider {
    /// Every preset, in the order a settings form lists them.
    pub const ALL: [Provider; 6] = [
        Provider::LlamaCpp,
        Provider::Ollama,
        Provider::Vllm,
        Provider::OpenAi,
        Provider::DeepSeek,
        Provider::Custom,
    ];

    /// The preset's facts.
    pub fn preset(self) -> &'static Preset {
        match self {
            Provider::OpenAi => &OPENAI,
            Provider::DeepSeek => &DEEPSEEK,
            Provider::Ollama => &OLLAMA,
            Provider::Vllm => &VLLM,
            Provider::LlamaCpp => &LLAMACPP,
            Provider::Custom => &CUSTOM,
        }
    }

    /// The settings name, e.g. `"llamacpp"`.
    pub fn as_str(self) -> &'static str {
        self.preset().name
    }

    /// The price of `model`: the entry with the longest prefix of the model name, so dated
    /// snapshots (`gpt-4o-mini-2024-07-18`) are priced like their family. `None` for a paid
    /// provider's unknown model; local providers and `custom` are free.
    pub fn price(self, model: &str) -> Option<Price> {
        let preset = self.preset();
        if preset.local || self == Provider::Custom {
            return Some(Price::FREE);
        }
        preset
            .prices
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, price)| *price)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is not a preset.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown LLM provider “{0}”: use one of llamacpp, ollama, vllm, openai, deepseek, custom")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .or(match name.as_str() {
                "llama.cpp" | "llama-cpp" | "local" => Some(Provider::LlamaCpp),
                _ => None,
            })
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_match_the_longest_prefix_and_local_models_are_free() {
        let mini = Provider::OpenAi.price("gpt-4o-mini-2024-07-18");
        assert_eq!(mini, Some(p(0.15, 0.60)));
        assert_eq!(Provider::OpenAi.price("gpt-4o"), Some(p(2.50, 10.00)));
        assert_eq!(Provider::OpenAi.price("some-future-model"), None);
        assert_eq!(Provider::LlamaCpp.price("local"), Some(Price::FREE));
        let cost = p(0.15, 0.60).cost(1_000_000, 500_000);
        assert!((cost - 0.45).abs() < 1e-12);
    }

    #[test]
    fn provider_names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>().ok(), Some(provider));
        }
        assert_eq!(
            "llama.cpp".parse::<Provider>().ok(),
            Some(Provider::LlamaCpp)
        );
        assert!("gemini".parse::<Provider>().is_err());
    }
}
