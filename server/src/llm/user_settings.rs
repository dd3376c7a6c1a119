//! A user's own LLM settings, stored under `llm` in `users.settings`, and how they combine
//! with the server's defaults.
//!
//! Each field is optional; an unset field falls back to the server's setting, or to the
//! chosen provider's preset when the user picked another provider. The server's API key is
//! only ever sent to the server's own base URL, never to a URL a user typed. The user's key
//! is write-only: nothing returns it, and it is stored sealed ([`super::secrets`]).

use entity::users;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::LlmClient;
use super::error::LlmError;
use super::provider::Provider;
use super::secrets;
use super::types::{CallParams, Endpoint};

/// Key of the LLM section inside `users.settings`.
const SETTINGS_KEY: &str = "llm";
/// Longest accepted base URL, model name and API key.
const MAX_URL_LEN: usize = 500;
const MAX_MODEL_LEN: usize = 200;
const MAX_KEY_LEN: usize = 1_000;

/// A user's stored LLM settings (`users.settings.llm`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserLlmSettings {
    /// Provider preset.
    pub provider: Option<Provider>,
    /// Base URL including `/v1`.
    pub base_url: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Default sampling temperature.
    pub temperature: Option<f64>,
    /// API key, sealed (`enc:v1:…`; plain text from earlier versions until it is sealed);
    /// never returned by the API.
    api_key: Option<String>,
}

impl UserLlmSettings {
    /// Whether the user stored a key.
    pub fn has_api_key(&self) -> bool {
        self.api_key.as_deref().is_some_and(|key| !key.is_empty())
    }

    /// Whether anything differs from the server's defaults.
    pub fn is_customized(&self) -> bool {
        self != &Self::default()
    }
}

/// A change to one setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Change<T> {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Go back to the server's default (for the key: remove it).
    Reset,
    /// Set it.
    Set(T),
}

impl<T> Change<T> {
    fn apply(self, slot: &mut Option<T>) {
        match self {
            Change::Keep => {}
            Change::Reset => *slot = None,
            Change::Set(value) => *slot = Some(value),
        }
    }
}

/// Changes to a user's LLM settings.
#[derive(Debug, Clone, Default)]
pub struct LlmSettingsChanges {
    /// Provider preset name (`openai`, `llamacpp`, …).
    pub provider: Change<String>,
    /// Base URL.
    pub base_url: Change<String>,
    /// Model name.
    pub model: Change<String>,
    /// Temperature, 0 to 2.
    pub temperature: Change<f64>,
    /// API key; an empty string removes it.
    pub api_key: Change<String>,
}

/// The settings the user's calls actually use (the key itself left out).
#[derive(Debug, Clone)]
pub struct EffectiveLlmSettings {
    /// Provider preset.
    pub provider: Provider,
    /// Base URL.
    pub base_url: String,
    /// Model.
    pub model: String,
    /// Temperature.
    pub temperature: f64,
    /// A key will be sent (the user's, or the server's for the server's endpoint).
    pub has_api_key: bool,
    /// The user changed something from the server's defaults.
    pub customized: bool,
}

/// The user's stored settings (defaults when none are stored).
pub async fn load(db: &DatabaseConnection, user_id: i32) -> Result<UserLlmSettings, LlmError> {
    let user = users::Entity::find_by_id(user_id).one(db).await?;
    Ok(user
        .and_then(|user| user.settings)
        .and_then(|settings| settings.get(SETTINGS_KEY).cloned())
        .and_then(|llm| serde_json::from_value(llm).ok())
        .unwrap_or_default())
}

/// Validates and applies `changes`, keeping the other sections of `users.settings`. A new
/// key is sealed before it is stored; a base URL the server may not call for users
/// (`llm.allow_private_base_urls`) is refused.
pub async fn update(
    llm: &LlmClient,
    user_id: i32,
    changes: LlmSettingsChanges,
) -> Result<UserLlmSettings, LlmError> {
    let db = llm.db();
    let Some(user) = users::Entity::find_by_id(user_id).one(db).await? else {
        return Err(LlmError::InvalidSettings(
            "the account no longer exists".into(),
        ));
    };
    let mut all = user
        .settings
        .clone()
        .unwrap_or(Value::Object(Default::default()));
    let mut current: UserLlmSettings = all
        .get(SETTINGS_KEY)
        .cloned()
        .and_then(|llm| serde_json::from_value(llm).ok())
        .unwrap_or_default();

    let provider = match changes.provider {
        Change::Set(name) => Change::Set(
            name.parse::<Provider>()
                .map_err(|err| LlmError::InvalidSettings(err.to_string()))?,
        ),
        Change::Reset => Change::Reset,
        Change::Keep => Change::Keep,
    };
    let endpoint_changed = !matches!((&provider, &changes.base_url), (Change::Keep, Change::Keep));
    provider.apply(&mut current.provider);
    map_change(changes.base_url, validate_base_url)?.apply(&mut current.base_url);
    map_change(changes.model, validate_model)?.apply(&mut current.model);
    map_change(changes.temperature, validate_temperature)?.apply(&mut current.temperature);
    match changes.api_key {
        Change::Set(key) if key.trim().is_empty() => current.api_key = None,
        Change::Set(key) => {
            let key = validate_key(key)?;
            let sealed = llm
                .secrets()?
                .seal(user_id, &key)
                .map_err(|err| LlmError::KeyStore(err.to_string()))?;
            current.api_key = Some(sealed);
        }
        other => other.apply(&mut current.api_key),
    }
    if current.provider == Some(Provider::Custom) && current.base_url.is_none() {
        return Err(LlmError::InvalidSettings(
            "the custom provider needs a base URL".into(),
        ));
    }
    if endpoint_changed {
        let base_url = llm.params_with_key(&current, None).endpoint.base_url;
        llm.check_user_base_url(&base_url).await?;
    }

    let section =
        serde_json::to_value(&current).map_err(|err| LlmError::InvalidSettings(err.to_string()))?;
    if let Value::Object(map) = &mut all {
        map.insert(SETTINGS_KEY.to_owned(), section);
    } else {
        all = serde_json::json!({ SETTINGS_KEY: section });
    }
    let mut row: users::ActiveModel = user.into();
    row.settings = Set(Some(all));
    row.update(db).await?;
    Ok(current)
}

fn map_change<T>(
    change: Change<T>,
    validate: impl FnOnce(T) -> Result<T, LlmError>,
) -> Result<Change<T>, LlmError> {
    Ok(match change {
        Change::Set(value) => Change::Set(validate(value)?),
        Change::Reset => Change::Reset,
        Change::Keep => Change::Keep,
    })
}

fn validate_base_url(url: String) -> Result<String, LlmError> {
    let url = url.trim().trim_end_matches('/').to_owned();
    let parsed = reqwest::Url::parse(&url);
    let ok = url.len() <= MAX_URL_LEN
        && parsed.as_ref().is_ok_and(|parsed| {
            matches!(parsed.scheme(), "http" | "https")
                && parsed.host_str().is_some()
                && parsed.username().is_empty()
                && parsed.password().is_none()
        });
    if ok {
        Ok(url)
    } else {
        Err(LlmError::InvalidSettings(format!(
            "the base URL must be an http(s) URL such as http://127.0.0.1:11434/v1, without \
             credentials, at most {MAX_URL_LEN} characters"
        )))
    }
}

fn validate_model(model: String) -> Result<String, LlmError> {
    let model = model.trim().to_owned();
    if model.is_empty() || model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(LlmError::InvalidSettings(format!(
            "the model name must be 1 to {MAX_MODEL_LEN} characters"
        )));
    }
    Ok(model)
}

fn validate_temperature(t: f64) -> Result<f64, LlmError> {
    if t.is_finite() && (0.0..=2.0).contains(&t) {
        Ok(t)
    } else {
        Err(LlmError::InvalidSettings(
            "the temperature must be between 0 and 2".into(),
        ))
    }
}

fn validate_key(key: String) -> Result<String, LlmError> {
    let key = key.trim().to_owned();
    if key.len() > MAX_KEY_LEN || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(LlmError::InvalidSettings(format!(
            "the API key must be at most {MAX_KEY_LEN} characters, without spaces"
        )));
    }
    Ok(key)
}

/// Seals every API key still stored in plain text by an earlier version; returns how many.
/// Run at start-up; safe to run on several replicas at once (they share the key).
pub async fn seal_plaintext_keys(llm: &LlmClient) -> Result<usize, LlmError> {
    let users = users::Entity::find()
        .filter(users::Column::Settings.is_not_null())
        .all(llm.db())
        .await?;
    let mut sealed = 0;
    for user in users {
        let stored = user
            .settings
            .as_ref()
            .and_then(|settings| settings.get(SETTINGS_KEY)?.get("apiKey")?.as_str());
        let Some(plain) = stored.filter(|key| !key.is_empty() && !secrets::is_sealed(key)) else {
            continue;
        };
        let plain = SecretString::from(plain.to_owned());
        store_sealed(llm, user, &plain).await?;
        sealed += 1;
    }
    Ok(sealed)
}

/// Replaces the plain-text key in `user`'s settings by its sealed form.
async fn store_sealed(
    llm: &LlmClient,
    user: users::Model,
    plain: &SecretString,
) -> Result<(), LlmError> {
    let value = llm
        .secrets()?
        .seal(user.id, plain.expose_secret())
        .map_err(|err| LlmError::KeyStore(err.to_string()))?;
    let mut all = user.settings.clone().unwrap_or_default();
    if let Some(section) = all.get_mut(SETTINGS_KEY).and_then(Value::as_object_mut) {
        section.insert("apiKey".to_owned(), Value::String(value));
    }
    let mut row: users::ActiveModel = user.into();
    row.settings = Set(Some(all));
    row.update(llm.db()).await?;
    Ok(())
}

impl LlmClient {
    /// Call parameters for user `user_id`'s settings on top of the server's defaults, with
    /// their API key opened.
    pub fn params_for(&self, user_id: i32, user: &UserLlmSettings) -> Result<CallParams, LlmError> {
        let key = match user.api_key.as_deref().filter(|key| !key.is_empty()) {
            None => None,
            Some(plain) if !secrets::is_sealed(plain) => Some(SecretString::from(plain.to_owned())),
            Some(sealed) => Some(self.secrets()?.open(user_id, sealed).ok_or_else(|| {
                LlmError::InvalidSettings(
                    "your stored API key cannot be decrypted with this server's secret key \
                     (was secrets.key changed?); enter the key again in your LLM settings"
                        .into(),
                )
            })?),
        };
        Ok(self.params_with_key(user, key))
    }

    /// Call parameters for `user`'s settings with `key` as the user's (opened) key.
    fn params_with_key(&self, user: &UserLlmSettings, key: Option<SecretString>) -> CallParams {
        let server = self.default_params();
        let provider = user.provider.unwrap_or(server.endpoint.provider);
        let same_provider = provider == server.endpoint.provider;
        let base_url = match (&user.base_url, same_provider) {
            (Some(url), _) => url.clone(),
            (None, true) => server.endpoint.base_url.clone(),
            (None, false) => provider
                .preset()
                .default_base_url
                .unwrap_or_default()
                .to_owned(),
        };
        let model = match (&user.model, same_provider) {
            (Some(model), _) => model.clone(),
            (None, true) => server.model.clone(),
            (None, false) => provider
                .preset()
                .default_model
                .unwrap_or_default()
                .to_owned(),
        };
        let mut endpoint = Endpoint::preset(provider).with_base_url(base_url);
        endpoint.api_key = match key {
            Some(key) => Some(key),
            // The server's key goes only to the server's endpoint.
            None if endpoint.base_url == server.endpoint.base_url => server.endpoint.api_key,
            None => None,
        };
        let mut params = CallParams::new(endpoint, model);
        params.temperature = user.temperature.unwrap_or(server.temperature);
        params
    }

    /// Call parameters for a user's stored settings.
    pub async fn params_for_user(&self, user_id: i32) -> Result<CallParams, LlmError> {
        self.params_for(user_id, &load(self.db(), user_id).await?)
    }

    /// What the user's calls use, for display (the key is not opened).
    pub fn effective_settings(&self, user: &UserLlmSettings) -> EffectiveLlmSettings {
        let has_user_key = user.has_api_key();
        let params = self.params_with_key(user, None);
        EffectiveLlmSettings {
            provider: params.endpoint.provider,
            base_url: params.endpoint.base_url,
            model: params.model,
            temperature: params.temperature,
            has_api_key: has_user_key || params.endpoint.api_key.is_some(),
            customized: user.is_customized(),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::LlmSettings;

    fn client(api_key: Option<&str>) -> LlmClient {
        let settings = LlmSettings {
            provider: "openai".into(),
            base_url: String::new(),
            model: "gpt-4o-mini".into(),
            api_key: api_key.map(|k| SecretString::from(k.to_owned())),
            ..LlmSettings::default()
        };
        LlmClient::new(&settings, sea_orm::DatabaseConnection::default())
    }

    #[test]
    fn the_server_key_never_goes_to_a_users_own_url() {
        let client = client(Some("sk-server"));
        let defaults = client
            .params_for(1, &UserLlmSettings::default())
            .expect("params");
        assert_eq!(defaults.endpoint.base_url, "https://api.openai.com/v1");
        assert_eq!(
            defaults
                .endpoint
                .api_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned()),
            Some("sk-server".to_owned())
        );

        let own_url = UserLlmSettings {
            base_url: Some("http://evil.example/v1".into()),
            ..Default::default()
        };
        assert!(client
            .params_for(1, &own_url)
            .expect("params")
            .endpoint
            .api_key
            .is_none());

        let ollama = UserLlmSettings {
            provider: Some(Provider::Ollama),
            model: Some("qwen2.5:1.5b".into()),
            temperature: Some(0.3),
            ..Default::default()
        };
        let params = client.params_for(1, &ollama).expect("params");
        assert_eq!(params.endpoint.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(params.model, "qwen2.5:1.5b");
        assert_eq!(params.temperature, 0.3);
        assert!(params.endpoint.api_key.is_none());

        let own_key = UserLlmSettings {
            api_key: Some("sk-user".into()),
            ..Default::default()
        };
        let params = client.params_for(1, &own_key).expect("params");
        assert_eq!(
            params
                .endpoint
                .api_key
                .map(|k| k.expose_secret().to_owned()),
            Some("sk-user".to_owned())
        );
    }

    #[test]
    fn inputs_are_validated() {
        assert!(validate_base_url("http://127.0.0.1:11434/v1/".into())
            .is_ok_and(|u| u.ends_with("/v1")));
        assert!(validate_base_url("ftp://x/v1".into()).is_err());
        assert!(validate_base_url("http://user:pw@x/v1".into()).is_err());
        assert!(validate_temperature(2.5).is_err());
        assert!(validate_temperature(f64::NAN).is_err());
        assert!(validate_model("  ".into()).is_err());
        assert!(validate_key("sk live".into()).is_err());
    }
}
