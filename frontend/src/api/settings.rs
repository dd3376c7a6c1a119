//! The caller's language-model settings: provider, endpoint, model, temperature and a
//! write-only API key, plus a reachability check
//! (`queries/{llm_settings,update_llm_settings,llm_status}.graphql`).

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::json::Read;
use super::{http, ApiError};

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/llm_settings.graphql",
    response_derives = "Serialize"
)]
struct LlmSettings;

// Omitted fields are left as they are on the server (`null` would reset them).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/update_llm_settings.graphql",
    response_derives = "Serialize",
    skip_serializing_none
)]
struct UpdateLlmSettings;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/llm_status.graphql",
    response_derives = "Serialize"
)]
struct LlmStatus;

/// The provider presets, by their GraphQL names, with a label for the select.
pub const PROVIDERS: [(&str, &str); 6] = [
    ("LLAMACPP", "llama.cpp on this server"),
    ("OLLAMA", "Ollama"),
    ("VLLM", "vLLM"),
    ("OPENAI", "OpenAI"),
    ("DEEPSEEK", "DeepSeek"),
    ("CUSTOM", "Other OpenAI-compatible endpoint"),
];

/// The settings calls use. The API key itself never comes back: only whether one is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Provider preset (GraphQL name).
    pub provider: String,
    /// Base URL including `/v1`.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// Default temperature.
    pub temperature: f64,
    /// Whether an API key will be sent.
    pub has_api_key: bool,
    /// Whether anything differs from the server's defaults.
    pub customized: bool,
}

fn read_settings(settings: &Value) -> Settings {
    Settings {
        provider: settings.text("provider"),
        base_url: settings.text("baseUrl"),
        model: settings.text("model"),
        temperature: settings.num("temperature"),
        has_api_key: settings.flag("hasApiKey"),
        customized: settings.flag("customized"),
    }
}

/// What GradeLab knows of a preset.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// Provider (GraphQL name).
    pub provider: String,
    /// URL used when none is set.
    pub base_url: Option<String>,
    /// Model used when none is set.
    pub model: Option<String>,
    /// Whether calls fail without a key.
    pub requires_api_key: bool,
    /// Whether it runs on local hardware.
    pub local: bool,
}

/// The settings and the presets.
pub async fn load() -> Result<(Settings, Vec<Preset>), ApiError> {
    Ok(read_load(
        &http::post::<LlmSettings>(llm_settings::Variables).await?,
    ))
}

fn read_load(data: &Value) -> (Settings, Vec<Preset>) {
    let presets = data
        .list("llmProviders")
        .iter()
        .map(|preset| Preset {
            provider: preset.text("provider"),
            base_url: preset.opt_text("defaultBaseUrl"),
            model: preset.opt_text("defaultModel"),
            requires_api_key: preset.flag("requiresApiKey"),
            local: preset.flag("local"),
        })
        .collect();
    (read_settings(data.at("llmSettings")), presets)
}

/// A change to the settings; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    /// Provider (GraphQL name).
    pub provider: Option<String>,
    /// Base URL.
    pub base_url: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Temperature.
    pub temperature: Option<f64>,
    /// A new key; `Some("")` removes the stored one.
    pub api_key: Option<String>,
}

fn provider(name: &str) -> update_llm_settings::LlmProvider {
    use update_llm_settings::LlmProvider as P;
    match name {
        "OLLAMA" => P::OLLAMA,
        "VLLM" => P::VLLM,
        "OPENAI" => P::OPENAI,
        "DEEPSEEK" => P::DEEPSEEK,
        "CUSTOM" => P::CUSTOM,
        _ => P::LLAMACPP,
    }
}

fn input(change: Change) -> update_llm_settings::UpdateLlmSettingsInput {
    update_llm_settings::UpdateLlmSettingsInput {
        provider: change.provider.as_deref().map(provider),
        base_url: change.base_url,
        model: change.model,
        temperature: change.temperature,
        api_key: change.api_key,
    }
}

/// Saves `change` and returns the settings as calls will use them.
pub async fn save(change: Change) -> Result<Settings, ApiError> {
    let variables = update_llm_settings::Variables {
        input: input(change),
    };
    let data = http::post::<UpdateLlmSettings>(variables).await?;
    Ok(read_settings(data.at("updateLlmSettings")))
}

/// Whether the configured endpoint answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Whether it answered.
    pub reachable: bool,
    /// The models it lists.
    pub models: Vec<String>,
    /// What to tell the user.
    pub message: String,
}

/// Probes the endpoint (up to a few seconds).
pub async fn status() -> Result<Status, ApiError> {
    let data = http::post::<LlmStatus>(llm_status::Variables).await?;
    Ok(read_status(data.at("llmStatus")))
}

fn read_status(status: &Value) -> Status {
    Status {
        reachable: status.flag("reachable"),
        models: status
            .list("models")
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
        message: status.text("message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    #[test]
    fn reads_settings_presets_and_status() {
        let data = typed::<LlmSettings>(json!({
            "llmSettings": {
                "provider": "OPENAI", "baseUrl": "https://api.openai.com/v1", "model": "gpt-4o-mini",
                "temperature": 0.0, "hasApiKey": true, "customized": true,
            },
            "llmProviders": [{
                "provider": "OLLAMA", "defaultBaseUrl": "http://127.0.0.1:11434/v1",
                "defaultModel": null, "requiresApiKey": false, "local": true,
            }],
        }));
        let (settings, presets) = read_load(&data);
        assert_eq!(settings.provider, "OPENAI");
        assert!(settings.has_api_key);
        assert_eq!(presets[0].model, None);
        assert!(presets[0].local);
        let status = typed::<LlmStatus>(json!({ "llmStatus": {
            "provider": "LLAMACPP", "model": "m", "baseUrl": "u", "reachable": true,
            "models": ["m"], "message": "ok",
        }}));
        let status = read_status(status.at("llmStatus"));
        assert_eq!((status.reachable, status.models.len()), (true, 1));
    }

    #[test]
    fn unchanged_fields_are_left_out_and_the_key_is_sent_only_when_typed() {
        let sent = serde_json::to_value(input(Change {
            provider: Some("DEEPSEEK".into()),
            temperature: Some(0.2),
            ..Change::default()
        }))
        .expect("JSON");
        assert_eq!(sent, json!({ "provider": "DEEPSEEK", "temperature": 0.2 }));
        let removed = serde_json::to_value(input(Change {
            api_key: Some(String::new()),
            ..Change::default()
        }))
        .expect("JSON");
        assert_eq!(removed, json!({ "apiKey": "" }));
    }
}
