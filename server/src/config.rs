//! Typed, layered settings: defaults → optional `gradelab.toml` → `GRADELAB_*` environment.
//!
//! Environment keys use `__` to split sections, so `GRADELAB_SERVER__BIND=0.0.0.0:9000`
//! sets [`ServerSettings::bind`] and `GRADELAB_DATA_DIR=/srv/gradelab` sets
//! [`Settings::data_dir`]. Keys that match no setting are reported as warnings at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Environment variables with the `GRADELAB_` prefix that belong to the scripts and the
/// test suite rather than to the server; they are not reported as unknown settings.
const NON_SETTING_ENV: &[&str] = &[
    "cache",
    "common_sh",
    "config",
    "datasets",
    "llm_port",
    "llm_threads",
    "local_llm",
    "root",
    "scripts",
    // `GRADELAB_SECRET_KEY`: an alias of `secrets.key`, read in `Settings::load`.
    "secret_key",
];

/// `GRADELAB_TEST_*` variables steer the test suite, never the server.
const TEST_ENV_PREFIX: &str = "test_";

/// Everything the server can be configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// Directory for the SQLite database and the content-addressed file store.
    pub data_dir: PathBuf,
    /// HTTP listener.
    pub server: ServerSettings,
    /// Database connection.
    pub database: DatabaseSettings,
    /// Accounts and sessions.
    pub auth: AuthSettings,
    /// GraphQL endpoint limits.
    pub graphql: GraphqlSettings,
    /// The compiled web app.
    pub web: WebSettings,
    /// The default language-model endpoint (OpenAI chat-completions protocol).
    pub llm: LlmSettings,
    /// Background jobs.
    pub jobs: JobSettings,
    /// Marking guides: upload limits and item extraction.
    pub guides: GuideSettings,
    /// The local sentence-embedding model of the `similarity` grading engine.
    pub embeddings: EmbeddingSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
    /// The key that encrypts users' API keys at rest.
    pub secrets: SecretSettings,
}

/// Secrets the server holds outside the database.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SecretSettings {
    /// Key-encryption key for users' stored API keys: 32 random bytes, base64 or hex
    /// (`openssl rand -base64 32`). Also read from `GRADELAB_SECRET_KEY`. When unset, one
    /// is generated on first start into `<data_dir>/secret.key` (mode 0600). Replicas on
    /// one PostgreSQL database must all use the same key. Never logged.
    #[serde(serialize_with = "redacted")]
    pub key: Option<SecretString>,
}

/// Sentence-embedding model settings (all-MiniLM-L6-v2, notes/EMBEDDINGS.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct EmbeddingSettings {
    /// Directory holding `model.safetensors`, `tokenizer.json` and `config.json`. Default:
    /// `$GRADELAB_CACHE/models/all-minilm-l6-v2`, else `~/.cache/gradelab/models/all-minilm-l6-v2`
    /// (where `./gradelab up` installs it). Nothing is ever downloaded at run time.
    pub model_dir: PathBuf,
    /// Embeddings kept in memory, keyed by the SHA-256 of the text (about 1.5 kB each).
    pub cache_entries: usize,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        let cache = std::env::var_os("GRADELAB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gradelab")))
            .unwrap_or_else(|| PathBuf::from(".cache/gradelab"));
        Self {
            model_dir: cache.join("models/all-minilm-l6-v2"),
            cache_entries: 50_000,
        }
    }
}

/// Marking-guide settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct GuideSettings {
    /// Largest accepted guide file in bytes (default 12 MiB). A larger upload is refused
    /// with a BAD_USER_INPUT error before it is read; keep it below `server.max_body_bytes`,
    /// which caps the whole request.
    pub max_upload_bytes: u64,
    /// Longest guide text after extraction, in characters.
    pub max_text_chars: usize,
    /// Longest line of guide text, in characters (a single enormous line is not a guide).
    pub max_line_chars: usize,
    /// Seconds allowed to read the text out of one file before it is given up as hostile.
    pub read_timeout_secs: u64,
    /// Characters of guide text sent to the model per extraction call; guides are cut only
    /// between questions, so one long question may exceed it.
    pub llm_chunk_chars: usize,
}

impl Default for GuideSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 12 * 1024 * 1024,
            max_text_chars: 2_000_000,
            max_line_chars: 20_000,
            read_timeout_secs: 30,
            llm_chunk_chars: 3_500,
        }
    }
}

/// Background job settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct JobSettings {
    /// Jobs this process runs at the same time.
    pub workers: usize,
    /// Seconds a claimed job's lease lasts without a heartbeat; when a replica dies, another
    /// one takes its jobs over this long after its last heartbeat.
    pub lease_secs: u64,
    /// Seconds between heartbeats that renew a running job's lease (well below `lease_secs`).
    pub heartbeat_secs: u64,
    /// Milliseconds an idle worker waits before looking for work it was not told about.
    pub poll_ms: u64,
    /// Seconds a running job may take to finish after SIGTERM before its current call is
    /// dropped and its lease handed back for another replica to resume.
    pub shutdown_grace_secs: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            lease_secs: 30,
            heartbeat_secs: 10,
            poll_ms: 2_000,
            shutdown_grace_secs: 10,
        }
    }
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Largest accepted request body in bytes (GraphQL documents and uploads).
    pub max_body_bytes: usize,
}

/// Database settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user:pass@host/db`. Empty means a SQLite
    /// file `gradelab.db` in the data directory.
    #[serde(serialize_with = "redacted")]
    pub url: Option<SecretString>,
    /// Maximum pooled connections.
    pub max_connections: Option<u32>,
}

/// Account and session settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthSettings {
    /// How long a sign-in session stays valid, in hours.
    pub session_ttl_hours: u32,
    /// Shortest accepted password.
    pub min_password_len: usize,
}

/// GraphQL endpoint limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct GraphqlSettings {
    /// Deepest allowed selection set.
    pub max_depth: usize,
    /// Largest allowed query complexity (each field counts 1, lists multiply).
    pub max_complexity: usize,
}

/// Where the compiled web app lives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WebSettings {
    /// Directory holding `index.html` and the wasm bundle (`frontend/build.sh` output).
    pub dist_dir: PathBuf,
}

/// Default LLM endpoint, used when a user has not configured their own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LlmSettings {
    /// Provider preset: `llamacpp` (the local default), `openai`, `deepseek`, `ollama`,
    /// `vllm` or `custom`.
    pub provider: String,
    /// Base URL of the OpenAI-compatible API, including `/v1`.
    pub base_url: String,
    /// Model name sent in each request.
    pub model: String,
    /// API key, if the endpoint needs one. Never logged, never returned by the API.
    #[serde(serialize_with = "redacted")]
    pub api_key: Option<SecretString>,
    /// Most requests in flight at once to one endpoint (base URL); further calls wait.
    pub concurrency: usize,
    /// Timeout of one HTTP attempt, in seconds (a small local model on 2 CPU cores needs
    /// tens of seconds for a long prompt).
    pub timeout_secs: u64,
    /// Retries after a transient failure (429, 5xx, timeout, refused or reset connection).
    pub max_retries: u32,
    /// Backoff before the first retry, at most, in milliseconds; doubles with each retry
    /// (full jitter: the actual wait is uniform between 0 and this cap).
    pub retry_base_ms: u64,
    /// Longest backoff between retries, in milliseconds.
    pub retry_max_ms: u64,
    /// Longest `Retry-After` a provider may ask for, in seconds; beyond it the call fails
    /// at once with `RATE_LIMITED`.
    pub max_retry_after_secs: u64,
    /// Answer a repeated deterministic request (temperature 0) from the `llm_cache` table.
    pub cache: bool,
    /// Whether a user's own base URL (or their provider preset's) may point at loopback,
    /// private or link-local addresses. The server makes those requests on the user's
    /// behalf, so on a shared server set it to `false` to keep users from reaching internal
    /// services (SSRF); the single-teacher default allows a local Ollama or llama.cpp.
    /// The server's own `llm.base_url` is never restricted.
    pub allow_private_base_urls: bool,
}

/// Logging settings. The filter itself comes from `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// Emit JSON lines instead of human-readable logs.
    pub json: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            auth: AuthSettings::default(),
            graphql: GraphqlSettings::default(),
            web: WebSettings::default(),
            llm: LlmSettings::default(),
            jobs: JobSettings::default(),
            guides: GuideSettings::default(),
            embeddings: EmbeddingSettings::default(),
            telemetry: TelemetrySettings::default(),
            secrets: SecretSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            session_ttl_hours: 24 * 14,
            min_password_len: 8,
        }
    }
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 2_000,
        }
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            dist_dir: PathBuf::from("frontend/dist"),
        }
    }
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            provider: "llamacpp".into(),
            base_url: "http://127.0.0.1:8765/v1".into(),
            model: "local".into(),
            api_key: None,
            concurrency: 4,
            timeout_secs: 120,
            max_retries: 3,
            retry_base_ms: 500,
            retry_max_ms: 20_000,
            max_retry_after_secs: 60,
            cache: true,
            allow_private_base_urls: true,
        }
    }
}

impl Settings {
    /// Loads settings from defaults, then `config_file` (if it exists), then the environment.
    /// Returns the settings and the keys that matched nothing, for the caller to warn about.
    pub fn load(config_file: &Path) -> Result<(Self, Vec<String>), Box<figment::Error>> {
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(config_file))
            .merge(
                Env::prefixed("GRADELAB_")
                    .split("__")
                    .ignore(NON_SETTING_ENV)
                    .filter(|key| {
                        !key.as_str()
                            .to_ascii_lowercase()
                            .starts_with(TEST_ENV_PREFIX)
                    }),
            );
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        if settings.secrets.key.is_none() {
            settings.secrets.key = std::env::var("GRADELAB_SECRET_KEY")
                .ok()
                .filter(|key| !key.trim().is_empty())
                .map(SecretString::from);
        }
        let given: serde_json::Value = figment.extract().map_err(Box::new)?;
        let known = serde_json::to_value(Settings::default()).unwrap_or_default();
        let mut unknown = Vec::new();
        unknown_keys(&given, &known, "", &mut unknown);
        Ok((settings, unknown))
    }

    /// The database URL to connect to.
    pub fn database_url(&self) -> String {
        use secrecy::ExposeSecret;
        match &self.database.url {
            Some(url) if !url.expose_secret().is_empty() => url.expose_secret().to_owned(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("gradelab.db").display()
            ),
        }
    }

    /// Directory of the content-addressed file store.
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }
}

/// Serialises a secret as `null` or `"[redacted]"`, never its value.
fn redacted<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("[redacted]"),
        None => serializer.serialize_none(),
    }
}

/// Collects the dotted paths present in `given` but absent from `known`.
fn unknown_keys(
    given: &serde_json::Value,
    known: &serde_json::Value,
    prefix: &str,
    out: &mut Vec<String>,
) {
    let (Some(given), Some(known)) = (given.as_object(), known.as_object()) else {
        return;
    };
    for (key, value) in given {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match known.get(key) {
            // Optional settings serialise as null by default; anything goes below them.
            Some(serde_json::Value::Null) => {}
            Some(sub) => unknown_keys(value, sub, &path, out),
            None => out.push(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn environment_overrides_file_and_unknown_keys_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gradelab.toml",
                "data_dir = \"/srv/g\"\n[server]\nbind = \"127.0.0.1:9000\"\nbindd = 1\n",
            )?;
            jail.set_env("GRADELAB_SERVER__BIND", "127.0.0.1:9100");
            jail.set_env("GRADELAB_LLM__MODEL", "gpt-4o-mini");
            jail.set_env("GRADELAB_TEST_SOMETHING_NEW", "only for the test suite");
            let (settings, unknown) =
                Settings::load(Path::new("gradelab.toml")).map_err(|err| *err)?;
            assert_eq!(settings.server.bind.port(), 9100);
            assert_eq!(settings.data_dir, PathBuf::from("/srv/g"));
            assert_eq!(settings.llm.model, "gpt-4o-mini");
            assert_eq!(unknown, vec!["server.bindd".to_string()]);
            assert_eq!(
                settings.database_url(),
                "sqlite:///srv/g/gradelab.db?mode=rwc"
            );
            Ok(())
        });
    }
}
