//! [`LlmClient`]: chat and structured calls with bounded concurrency, retries, a cache and
//! accounting.

use std::collections::{HashMap, HashSet};
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use schemars::JsonSchema;
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing::field::Empty;
use tracing::{instrument, Span};

use super::accounting::{CallRecord, Recorder};
use super::cache;
use super::error::{excerpt, LlmError, EXCERPT_CHARS};
use super::logprobs::TokenLogprob;
use super::provider::{Provider, StructuredMode};
use super::retry::{self, RetryPolicy};
use super::schema::OutputSchema;
use super::secrets::SecretBox;
use super::types::{
    CachePolicy, CallContext, CallMeta, CallParams, ChatResponse, Endpoint, Message, Structured,
    Usage,
};
use crate::config::LlmSettings;

/// Timeout of the health probe (`GET /models`).
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout for opening a TCP connection, within the per-attempt timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The one client for OpenAI-compatible chat completions. Cheap to share (`Arc`).
///
/// Every call:
/// 1. builds the request body and its cache key (see [`super::cache`]);
/// 2. is answered from `llm_cache` when caching applies and an entry exists;
/// 3. otherwise waits for one of `concurrency` permits of its endpoint and sends the
///    request, retrying transient failures per [`RetryPolicy`];
/// 4. for structured calls, parses the reply with serde and, if that fails, sends one
///    repair request showing the model its reply and the parse error;
/// 5. writes one `llm_calls` row (success or failure) and adds tokens and cost to the job.
pub struct LlmClient {
    http: reqwest::Client,
    /// For endpoints a user chose when `llm.allow_private_base_urls` is off: resolves names
    /// only to public addresses, so a user cannot make the server call internal services.
    guarded_http: Option<reqwest::Client>,
    db: DatabaseConnection,
    recorder: Recorder,
    secrets: Option<Arc<SecretBox>>,
    defaults: CallParams,
    default_timeout: Duration,
    policy: RetryPolicy,
    concurrency: usize,
    cache_enabled: bool,
    accounting: bool,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    unpriced: Mutex<HashSet<String>>,
}

/// Per-endpoint admission: a semaphore bounding requests in flight, and a pause set by a
/// 429's `Retry-After` so that every caller, not just the one that got it, backs off.
struct Gate {
    permits: Semaphore,
    paused_until: Mutex<Option<tokio::time::Instant>>,
}

impl Gate {
    async fn wait_if_paused(&self) {
        let until = self.paused_until.lock().map(|guard| *guard).unwrap_or(None);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    fn pause_for(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        if let Ok(mut guard) = self.paused_until.lock() {
            if guard.is_none_or(|current| current < until) {
                *guard = Some(until);
            }
        }
    }
}

/// The parts of a chat completion we read.
#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<CompletionUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<ChoiceLogprobs>,
}

#[derive(Debug, Default, Deserialize)]
struct ChoiceLogprobs {
    #[serde(default)]
    content: Option<Vec<TokenLogprob>>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionUsage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
}

/// One successful HTTP response.
struct Reply {
    /// Raw body, as cached.
    body: String,
    content: String,
    finish_reason: Option<String>,
    usage: Usage,
    logprobs: Option<Vec<TokenLogprob>>,
}

impl Reply {
    /// Parses a response body; on failure returns the reason and the body.
    fn parse(body: String) -> Result<Self, (String, String)> {
        let completion: Completion = match serde_json::from_str(&body) {
            Ok(completion) => completion,
            Err(err) => return Err((err.to_string(), body)),
        };
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(("the response has no choices".to_owned(), body));
        };
        let usage = completion.usage.unwrap_or_default();
        let logprobs = choice
            .logprobs
            .and_then(|l| l.content)
            .filter(|tokens| !tokens.is_empty())
            .map(|mut tokens| {
                for token in &mut tokens {
                    if token.bytes.as_deref() == Some(token.token.as_bytes()) {
                        token.bytes = None;
                    }
                }
                tokens
            });
        let content = match (choice.message.content, choice.message.refusal) {
            (Some(content), _) => content,
            (None, Some(refusal)) => format!("(the model refused: {refusal})"),
            (None, None) => String::new(),
        };
        Ok(Self {
            body,
            content,
            finish_reason: choice.finish_reason,
            usage: Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            },
            logprobs,
        })
    }

    /// The body to cache: as received, or, when it carries log-probabilities, only what
    /// [`Reply::parse`] reads (a reply's alternatives as sent are ~250 bytes per token).
    fn cache_body(&self) -> String {
        let Some(tokens) = &self.logprobs else {
            return self.body.clone();
        };
        json!({
            "choices": [{
                "message": {"role": "assistant", "content": self.content},
                "finish_reason": self.finish_reason,
                "logprobs": {"content": tokens},
            }],
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
        })
        .to_string()
    }
}

/// Why one HTTP attempt failed.
#[derive(Debug)]
enum Failure {
    Timeout,
    Connect(String),
    Status {
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
    },
    Protocol {
        message: String,
        raw: String,
    },
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Timeout | Failure::Connect(_) | Failure::Protocol { .. } => true,
            Failure::Status { status, .. } => retry::retryable_status(*status),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn from_reqwest(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            return Failure::Timeout;
        }
        // The innermost cause says what happened ("Connection refused (os error 111)").
        let mut detail = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            detail = cause.to_string();
            source = cause.source();
        }
        Failure::Connect(detail)
    }

    fn into_error(
        self,
        endpoint: &Endpoint,
        model: &str,
        timeout: Duration,
        attempts: u32,
    ) -> LlmError {
        match self {
            Failure::Timeout => LlmError::Timeout {
                base_url: endpoint.base_url.clone(),
                timeout,
                attempts,
            },
            Failure::Connect(detail) => LlmError::Unreachable {
                message: unreachable_message(endpoint, &detail),
                attempts,
            },
            Failure::Status {
                status,
                retry_after,
                ..
            } if status == StatusCode::TOO_MANY_REQUESTS => LlmError::RateLimited {
                retry_after,
                attempts,
            },
            Failure::Status {
                status, message, ..
            } => LlmError::Status {
                status: status.as_u16(),
                message: status_message(status, &message, model),
                attempts,
            },
            Failure::Protocol { message, raw } => LlmError::Protocol {
                message,
                raw,
                attempts,
            },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Connect(detail) => write!(f, "connection failed: {detail}"),
            Failure::Status {
                status, message, ..
            } => write!(f, "HTTP {status}: {message}"),
            Failure::Protocol { message, .. } => write!(f, "not a chat completion: {message}"),
        }
    }
}

/// The human message for an endpoint nobody answers at.
pub(crate) fn unreachable_message(endpoint: &Endpoint, detail: &str) -> String {
    if endpoint.provider.preset().local || is_loopback(&endpoint.base_url) {
        format!(
            "No language model is reachable at {} — start it with ./gradelab up or set \
             GRADELAB_LLM__BASE_URL ({detail}).",
            endpoint.base_url
        )
    } else {
        format!(
            "No language model is reachable at {} ({detail}); check the base URL in your LLM \
             settings and the server's network.",
            endpoint.base_url
        )
    }
}

fn is_loopback(base_url: &str) -> bool {
    reqwest::Url::parse(base_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .is_some_and(|host| host == "localhost" || host == "127.0.0.1" || host == "[::1]")
}

/// The provider's own error message from an error body, or an excerpt of the body.
fn provider_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let text = message.unwrap_or_else(|| body.trim().to_owned());
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        excerpt(&text, EXCERPT_CHARS)
    }
}

fn status_message(status: StatusCode, message: &str, model: &str) -> String {
    match status.as_u16() {
        401 | 403 => {
            format!("the API key was rejected — check the key in your LLM settings ({message})")
        }
        404 => format!(
            "not found — check the base URL and that the model “{model}” exists ({message})"
        ),
        _ => message.to_owned(),
    }
}

/// Tokens and attempts of one logical call so far.
#[derive(Default)]
struct Tally {
    attempts: u32,
    usage: Usage,
}

/// Text of the repair request sent after an unparseable structured reply.
fn repair_prompt(error: &str) -> String {
    format!(
        "Your previous reply could not be used: {error}. Reply again with only the JSON \
         object, following the JSON Schema exactly, with no other text."
    )
}

/// The reply with surrounding whitespace and a Markdown code fence removed, as small models
/// in JSON-object mode sometimes add one.
fn strip_fences(content: &str) -> &str {
    let trimmed = content.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

impl LlmClient {
    /// A client for the server's default endpoint in `settings`, accounting to `db`.
    ///
    /// Never fails: an unknown provider name is logged and treated as `custom`, and a
    /// settings problem (no base URL, no key) is reported by each call and by
    /// [`LlmClient::status`], so the server still starts without a language model.
    pub fn new(settings: &LlmSettings, db: DatabaseConnection) -> Self {
        let provider = settings.provider.parse::<Provider>().unwrap_or_else(|err| {
            tracing::warn!(error = %err, "treating the LLM provider as `custom`");
            Provider::Custom
        });
        let mut endpoint = Endpoint::preset(provider);
        if !settings.base_url.trim().is_empty() {
            endpoint = endpoint.with_base_url(settings.base_url.trim());
        }
        if let Some(key) = settings
            .api_key
            .as_ref()
            .filter(|key| !key.expose_secret().trim().is_empty())
        {
            endpoint = endpoint.with_api_key(key.clone());
        }
        let model = if settings.model.trim().is_empty() {
            provider
                .preset()
                .default_model
                .unwrap_or_default()
                .to_owned()
        } else {
            settings.model.trim().to_owned()
        };
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("GradeLab/", env!("CARGO_PKG_VERSION")))
                // Keep a warm connection for every request the limit lets through.
                .pool_max_idle_per_host(settings.concurrency.max(1))
                .tcp_nodelay(true)
        };
        let build = |builder: reqwest::ClientBuilder| {
            builder.build().unwrap_or_else(|err| {
                tracing::error!(error = %err, "HTTP client with custom options failed; using defaults");
                reqwest::Client::new()
            })
        };
        let http = build(builder());
        let guarded_http = (!settings.allow_private_base_urls).then(|| {
            // Direct connections only: through a proxy the check would apply to the proxy.
            build(
                builder()
                    .no_proxy()
                    .dns_resolver(Arc::new(super::ssrf::PublicOnlyResolver)),
            )
        });
        Self {
            http,
            guarded_http,
            recorder: Recorder::new(db.clone()),
            secrets: None,
            db,
            defaults: CallParams::new(endpoint, model),
            default_timeout: Duration::from_secs(settings.timeout_secs.max(1)),
            policy: RetryPolicy {
                max_retries: settings.max_retries,
                base_delay: Duration::from_millis(settings.retry_base_ms),
                max_delay: Duration::from_millis(settings.retry_max_ms.max(settings.retry_base_ms)),
                max_retry_after: Duration::from_secs(settings.max_retry_after_secs),
            },
            concurrency: settings.concurrency.max(1),
            cache_enabled: settings.cache,
            accounting: true,
            gates: Mutex::new(HashMap::new()),
            unpriced: Mutex::new(HashSet::new()),
        }
    }

    /// The same client without `llm_calls` rows or job totals. Only for benchmarks that
    /// measure what accounting costs; the server always accounts.
    #[doc(hidden)]
    pub fn without_accounting(mut self) -> Self {
        self.accounting = false;
        self
    }

    /// How many calls one job should keep in flight to `params`' endpoint: the concurrency
    /// limit, or one for an endpoint that decodes one request at a time.
    pub fn parallel_calls(&self, params: &CallParams) -> usize {
        if params.endpoint.provider.preset().serial {
            1
        } else {
            self.concurrency
        }
    }

    /// Parameters for the server's default endpoint and model.
    pub fn default_params(&self) -> CallParams {
        self.defaults.clone()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The database the client accounts to.
    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The same client, sealing and opening users' API keys with `secrets` (the server
    /// always sets it; see [`super::secrets`]).
    pub fn with_secrets(mut self, secrets: SecretBox) -> Self {
        self.secrets = Some(Arc::new(secrets));
        self
    }

    /// The box for users' API keys, or why there is none.
    pub(crate) fn secrets(&self) -> Result<&SecretBox, LlmError> {
        self.secrets.as_deref().ok_or_else(|| {
            LlmError::KeyStore("this server was started without a secret key".into())
        })
    }

    /// Whether calls to `endpoint` go through the guarded HTTP client: a user-chosen URL
    /// (anything but the server's own base URL) while private addresses are not allowed.
    fn guarded(&self, endpoint: &Endpoint) -> Option<&reqwest::Client> {
        self.guarded_http
            .as_ref()
            .filter(|_| endpoint.base_url != self.defaults.endpoint.base_url)
    }

    /// Refuses a user-chosen `base_url` that is, or resolves to, a loopback, private or
    /// link-local address while `llm.allow_private_base_urls` is off.
    pub(crate) async fn check_user_base_url(&self, base_url: &str) -> Result<(), LlmError> {
        if self.guarded_http.is_none() || base_url == self.defaults.endpoint.base_url {
            return Ok(());
        }
        super::ssrf::check_base_url(base_url).await
    }

    /// A free-text reply.
    pub async fn chat(
        &self,
        ctx: &CallContext,
        params: &CallParams,
        messages: &[Message],
    ) -> Result<ChatResponse, LlmError> {
        let reply = self
            .execute(ctx, params, messages, None, |content, _| {
                Ok::<_, String>(content.to_owned())
            })
            .await?;
        Ok(ChatResponse {
            content: reply.value,
            meta: reply.meta,
        })
    }

    /// A reply that follows `T`'s JSON Schema, parsed into `T`.
    pub async fn structured<T: JsonSchema + DeserializeOwned>(
        &self,
        ctx: &CallContext,
        params: &CallParams,
        messages: &[Message],
    ) -> Result<Structured<T>, LlmError> {
        self.structured_with_schema(ctx, params, messages, &OutputSchema::of::<T>())
            .await
    }

    /// Like [`LlmClient::structured`] with a schema the caller adjusted (e.g. a `maximum`
    /// on `score` for this item). The schema must still describe `T`.
    pub async fn structured_with_schema<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        params: &CallParams,
        messages: &[Message],
        schema: &OutputSchema,
    ) -> Result<Structured<T>, LlmError> {
        self.execute(
            ctx,
            params,
            messages,
            Some(schema),
            |content, finish_reason| {
                serde_json::from_str::<T>(strip_fences(content)).map_err(|err| {
                    if finish_reason == Some("length") {
                        format!("{err} (the reply was cut off at the max_tokens limit)")
                    } else {
                        err.to_string()
                    }
                })
            },
        )
        .await
    }

    /// One logical call; see the type's documentation for the steps.
    #[instrument(
        name = "llm_call",
        skip_all,
        fields(
            provider = %params.endpoint.provider,
            model = %params.model,
            task = %ctx.task,
            prompt_tokens = Empty,
            completion_tokens = Empty,
            latency_ms = Empty,
            cache_hit = Empty,
            attempts = Empty,
        )
    )]
    async fn execute<T>(
        &self,
        ctx: &CallContext,
        params: &CallParams,
        messages: &[Message],
        schema: Option<&OutputSchema>,
        parse: impl Fn(&str, Option<&str>) -> Result<T, String>,
    ) -> Result<Structured<T>, LlmError> {
        let started = Instant::now();
        let endpoint = &params.endpoint;
        let body = request_body(params, messages, schema);
        let key = cache::request_key(endpoint.provider.as_str(), &endpoint.base_url, &body);
        let use_cache = self.cache_enabled
            && match params.cache {
                CachePolicy::Auto => params.temperature == 0.0,
                CachePolicy::Always => true,
                CachePolicy::Never => false,
            };

        if use_cache {
            if let Some((value, reply)) = self.cached(&key, &parse).await {
                let meta = CallMeta {
                    request_sha256: key,
                    usage: Usage::default(),
                    cost_usd: 0.0,
                    cache_hit: true,
                    attempts: 0,
                    latency: started.elapsed(),
                    finish_reason: reply.finish_reason,
                };
                self.account(ctx, params, &meta, None).await;
                return Ok(Structured {
                    value,
                    raw: reply.content,
                    logprobs: reply.logprobs,
                    meta,
                });
            }
        }

        let mut tally = Tally::default();
        let outcome = match validate(params) {
            Ok(()) => {
                self.send_and_parse(params, &body, schema, &parse, &mut tally)
                    .await
            }
            Err(err) => Err(err),
        };
        let cost_usd = self.cost(params, tally.usage);
        let mut meta = CallMeta {
            request_sha256: key,
            usage: tally.usage,
            cost_usd,
            cache_hit: false,
            attempts: tally.attempts,
            latency: started.elapsed(),
            finish_reason: None,
        };
        match outcome {
            Ok((value, reply)) => {
                meta.finish_reason = reply.finish_reason.clone();
                self.account(ctx, params, &meta, None).await;
                if use_cache {
                    let entry = cache::Entry {
                        key: &meta.request_sha256,
                        provider: endpoint.provider.as_str(),
                        model: &params.model,
                        response: &reply.cache_body(),
                        prompt_tokens: reply.usage.prompt_tokens,
                        completion_tokens: reply.usage.completion_tokens,
                    };
                    if let Err(err) = cache::store(&self.db, entry).await {
                        tracing::warn!(error = %err, "could not store the LLM response in the cache");
                    }
                }
                Ok(Structured {
                    value,
                    raw: reply.content,
                    logprobs: reply.logprobs,
                    meta,
                })
            }
            Err(err) => {
                let mut message = err.to_string();
                if let Some(raw) = err.raw() {
                    message.push_str("\n--- raw output ---\n");
                    message.push_str(&excerpt(raw, 4_000));
                }
                self.account(ctx, params, &meta, Some(message)).await;
                tracing::warn!(error = %err, "LLM call failed");
                Err(err)
            }
        }
    }

    /// A cache entry for `key` that still parses, with the reply it was parsed from.
    async fn cached<T>(
        &self,
        key: &str,
        parse: &impl Fn(&str, Option<&str>) -> Result<T, String>,
    ) -> Option<(T, Reply)> {
        let body = match cache::lookup(&self.db, key).await {
            Ok(body) => body?,
            Err(err) => {
                tracing::warn!(error = %err, "LLM cache lookup failed; calling the provider");
                return None;
            }
        };
        let reply = Reply::parse(body).ok()?;
        let value = parse(&reply.content, reply.finish_reason.as_deref()).ok()?;
        Some((value, reply))
    }

    /// Sends the request (with retries), parses the reply and, for structured output, makes
    /// one repair request if it does not parse.
    async fn send_and_parse<T>(
        &self,
        params: &CallParams,
        body: &Value,
        schema: Option<&OutputSchema>,
        parse: &impl Fn(&str, Option<&str>) -> Result<T, String>,
        tally: &mut Tally,
    ) -> Result<(T, Reply), LlmError> {
        let reply = self.send(params, body, tally).await?;
        let error = match parse(&reply.content, reply.finish_reason.as_deref()) {
            Ok(value) => return Ok((value, reply)),
            Err(error) => error,
        };
        let Some(schema) = schema else {
            // Free text always parses; this is unreachable for `chat`.
            return Err(LlmError::Protocol {
                message: error,
                raw: reply.content,
                attempts: tally.attempts,
            });
        };
        tracing::info!(error = %error, "structured reply did not parse; asking the model to repair it");
        let mut repair = body.clone();
        if let Some(Value::Array(messages)) = repair.get_mut("messages") {
            messages.push(json!({"role": "assistant", "content": reply.content}));
            messages.push(json!({"role": "user", "content": repair_prompt(&error)}));
        }
        let second = self.send(params, &repair, tally).await?;
        match parse(&second.content, second.finish_reason.as_deref()) {
            Ok(value) => Ok((value, second)),
            Err(error) => Err(LlmError::InvalidOutput {
                schema: schema.name.clone(),
                error,
                raw: second.content,
                attempts: tally.attempts,
            }),
        }
    }

    /// One HTTP request with retries and backoff, inside the endpoint's concurrency limit.
    async fn send(
        &self,
        params: &CallParams,
        body: &Value,
        tally: &mut Tally,
    ) -> Result<Reply, LlmError> {
        let endpoint = &params.endpoint;
        let timeout = params.timeout.unwrap_or(self.default_timeout);
        let gate = self.gate(&endpoint.base_url);
        let url = format!("{}/chat/completions", endpoint.base_url);
        let bytes = serde_json::to_vec(body).map_err(|err| LlmError::Protocol {
            message: format!("the request could not be encoded: {err}"),
            raw: String::new(),
            attempts: tally.attempts,
        })?;
        let bytes = axum::body::Bytes::from(bytes);
        let auth = bearer(endpoint.api_key.as_ref())?;
        let http = match self.guarded(endpoint) {
            Some(guarded) => {
                // Names are checked by the guarded resolver; an IP address needs no resolving.
                super::ssrf::check_literal_host(&endpoint.base_url)?;
                guarded
            }
            None => &self.http,
        };
        let mut retries = 0;
        loop {
            let outcome = {
                // The semaphore is never closed; without a permit we would still be correct.
                let _permit = gate.permits.acquire().await.ok();
                // A 429 elsewhere may have paused the endpoint while this call queued.
                gate.wait_if_paused().await;
                tally.attempts += 1;
                Self::attempt(http, &url, auth.as_ref(), bytes.clone(), timeout).await
            };
            let failure = match outcome {
                Ok(reply) => {
                    tally.usage.prompt_tokens += reply.usage.prompt_tokens;
                    tally.usage.completion_tokens += reply.usage.completion_tokens;
                    return Ok(reply);
                }
                Err(failure) => failure,
            };
            let retry_after = failure.retry_after();
            if let Some(wait) = retry_after {
                if wait > self.policy.max_retry_after {
                    return Err(LlmError::RateLimited {
                        retry_after: Some(wait),
                        attempts: tally.attempts,
                    });
                }
                gate.pause_for(wait);
            }
            if !failure.retryable() || retries >= self.policy.max_retries {
                return Err(failure.into_error(endpoint, &params.model, timeout, tally.attempts));
            }
            retries += 1;
            let delay = self.policy.delay(retries, retry_after);
            tracing::warn!(
                attempt = tally.attempts,
                error = %failure,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "LLM request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP attempt.
    async fn attempt(
        http: &reqwest::Client,
        url: &str,
        auth: Option<&HeaderValue>,
        body: axum::body::Bytes,
        timeout: Duration,
    ) -> Result<Reply, Failure> {
        let mut request = http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|err| Failure::from_reqwest(&err))?;
        let status = response.status();
        let retry_after = retry::retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|err| Failure::from_reqwest(&err))?;
        if !status.is_success() {
            return Err(Failure::Status {
                status,
                message: provider_message(&text),
                retry_after,
            });
        }
        Reply::parse(text).map_err(|(message, text)| Failure::Protocol {
            message,
            raw: excerpt(&text, EXCERPT_CHARS),
        })
    }

    fn gate(&self, base_url: &str) -> Arc<Gate> {
        let mut gates = match self.gates.lock() {
            Ok(gates) => gates,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(gate) = gates.get(base_url) {
            return gate.clone();
        }
        gates
            .entry(base_url.to_owned())
            .or_insert_with(|| {
                Arc::new(Gate {
                    permits: Semaphore::new(self.concurrency),
                    paused_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Cost from the price table; an unpriced paid model is logged once and costs 0.
    fn cost(&self, params: &CallParams, usage: Usage) -> f64 {
        let provider = params.endpoint.provider;
        match provider.price(&params.model) {
            Some(price) => price.cost(usage.prompt_tokens, usage.completion_tokens),
            None => {
                let first = self
                    .unpriced
                    .lock()
                    .map(|mut seen| seen.insert(format!("{provider}/{}", params.model)))
                    .unwrap_or(false);
                if first {
                    tracing::warn!(
                        %provider, model = %params.model,
                        "no price for this model in llm/provider.rs; its cost is recorded as 0"
                    );
                }
                0.0
            }
        }
    }

    /// Records the call span's fields and writes the accounting row. An accounting failure
    /// is logged, not returned: the call itself succeeded or failed on its own, and failing
    /// a paid call would only make the caller pay for it again.
    async fn account(
        &self,
        ctx: &CallContext,
        params: &CallParams,
        meta: &CallMeta,
        error: Option<String>,
    ) {
        let latency_ms = i64::try_from(meta.latency.as_millis()).unwrap_or(i64::MAX);
        let span = Span::current();
        span.record("prompt_tokens", meta.usage.prompt_tokens);
        span.record("completion_tokens", meta.usage.completion_tokens);
        span.record("latency_ms", latency_ms);
        span.record("cache_hit", meta.cache_hit);
        span.record("attempts", meta.attempts);
        tracing::debug!(
            cost_usd = meta.cost_usd,
            ok = error.is_none(),
            "LLM call finished"
        );
        crate::observability::llm_call(
            &params.model,
            error.is_none(),
            meta.cache_hit,
            meta.usage.prompt_tokens,
            meta.usage.completion_tokens,
            meta.latency,
        );
        if !self.accounting {
            return;
        }
        let record = CallRecord {
            user_id: ctx.user_id,
            job_id: ctx.job_id,
            provider: params.endpoint.provider.as_str().to_owned(),
            model: params.model.clone(),
            task: ctx.task.clone(),
            request_sha256: meta.request_sha256.clone(),
            prompt_tokens: meta.usage.prompt_tokens,
            completion_tokens: meta.usage.completion_tokens,
            latency_ms,
            cost_usd: meta.cost_usd,
            cache_hit: meta.cache_hit,
            attempts: meta.attempts,
            error,
        };
        if let Err(err) = self.recorder.record(record).await {
            tracing::error!(error = %err, "could not record an LLM call in llm_calls");
        }
    }

    /// Whether `endpoint` answers `GET /models` within 3 s, and a message saying what to do
    /// if it does not.
    #[instrument(skip_all, fields(provider = %endpoint.provider, base_url = %endpoint.base_url))]
    pub async fn status(&self, endpoint: &Endpoint, model: &str) -> LlmStatus {
        let status = |reachable: bool, models: Vec<String>, message: String| LlmStatus {
            provider: endpoint.provider,
            base_url: endpoint.base_url.clone(),
            model: model.to_owned(),
            reachable,
            models,
            message,
        };
        if let Err(err) = validate_endpoint(endpoint) {
            return status(false, Vec::new(), err.to_string());
        }
        let auth = match bearer(endpoint.api_key.as_ref()) {
            Ok(auth) => auth,
            Err(err) => return status(false, Vec::new(), err.to_string()),
        };
        let http = match self.guarded(endpoint) {
            Some(guarded) => {
                if let Err(err) = super::ssrf::check_literal_host(&endpoint.base_url) {
                    return status(false, Vec::new(), err.to_string());
                }
                guarded
            }
            None => &self.http,
        };
        let mut request = http
            .get(format!("{}/models", endpoint.base_url))
            .timeout(STATUS_TIMEOUT);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                let detail = match Failure::from_reqwest(&err) {
                    Failure::Connect(detail) => detail,
                    _ => format!("no answer within {}s", STATUS_TIMEOUT.as_secs()),
                };
                return status(false, Vec::new(), unreachable_message(endpoint, &detail));
            }
        };
        let code = response.status();
        let text = response.text().await.unwrap_or_default();
        if code == StatusCode::SERVICE_UNAVAILABLE {
            return status(
                false,
                Vec::new(),
                format!(
                    "The model server at {} is still loading; try again in a few seconds.",
                    endpoint.base_url
                ),
            );
        }
        if !code.is_success() {
            let message = status_message(code, &provider_message(&text), model);
            return status(
                false,
                Vec::new(),
                format!(
                    "The endpoint at {} answered HTTP {code}: {message}",
                    endpoint.base_url
                ),
            );
        }
        let models: Vec<String> = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("data")?.as_array().map(|data| {
                    data.iter()
                        .filter_map(|m| m.get("id")?.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
        let message = if model.is_empty() {
            format!(
                "Reachable at {}, but no model is chosen.",
                endpoint.base_url
            )
        } else if models.is_empty() || models.iter().any(|m| m == model) {
            format!("Ready: model “{model}” at {}.", endpoint.base_url)
        } else {
            format!(
                "Reachable, but {} does not list the model “{model}”; it offers: {}.",
                endpoint.base_url,
                excerpt(&models.join(", "), 300)
            )
        };
        status(true, models, message)
    }
}

/// What [`LlmClient::status`] found.
#[derive(Debug, Clone)]
pub struct LlmStatus {
    /// Provider preset.
    pub provider: Provider,
    /// Base URL probed.
    pub base_url: String,
    /// Model that calls would use.
    pub model: String,
    /// The endpoint answered `GET /models` with success.
    pub reachable: bool,
    /// Models the endpoint lists.
    pub models: Vec<String>,
    /// What to tell a person.
    pub message: String,
}

/// The `Authorization` header for a key; a key that is not a valid header value is a
/// settings error (and is not echoed).
fn bearer(key: Option<&SecretString>) -> Result<Option<HeaderValue>, LlmError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret().trim()))
        .map_err(|_| {
            LlmError::InvalidSettings("the API key contains characters a key cannot have".into())
        })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

fn validate_endpoint(endpoint: &Endpoint) -> Result<(), LlmError> {
    if endpoint.base_url.is_empty() {
        return Err(LlmError::InvalidSettings(format!(
            "the {} provider needs a base URL",
            endpoint.provider
        )));
    }
    match reqwest::Url::parse(&endpoint.base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        _ => {
            return Err(LlmError::InvalidSettings(format!(
                "“{}” is not an http(s) URL",
                endpoint.base_url
            )))
        }
    }
    let has_key = endpoint
        .api_key
        .as_ref()
        .is_some_and(|key| !key.expose_secret().trim().is_empty());
    if endpoint.provider.preset().requires_api_key && !has_key {
        return Err(LlmError::MissingApiKey {
            provider: endpoint.provider.to_string(),
        });
    }
    Ok(())
}

fn validate(params: &CallParams) -> Result<(), LlmError> {
    validate_endpoint(&params.endpoint)?;
    if params.model.trim().is_empty() {
        return Err(LlmError::InvalidSettings(format!(
            "no model is chosen for the {} provider",
            params.endpoint.provider
        )));
    }
    if !(0.0..=2.0).contains(&params.temperature) {
        return Err(LlmError::InvalidSettings(format!(
            "temperature {} is outside 0 to 2",
            params.temperature
        )));
    }
    if params.max_tokens == Some(0) {
        return Err(LlmError::InvalidSettings(
            "max_tokens must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The chat-completions request body. In JSON-object mode the schema goes into the system
/// prompt, since the provider only guarantees syntactically valid JSON.
fn request_body(params: &CallParams, messages: &[Message], schema: Option<&OutputSchema>) -> Value {
    let mut messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = json!({
        "model": params.model,
        "temperature": params.temperature,
    });
    if let Some(seed) = params.seed {
        body["seed"] = json!(seed);
    }
    if let Some(max_tokens) = params.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    if let Some(alternatives) = params.top_logprobs {
        if params.endpoint.provider.preset().logprobs {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(alternatives);
        }
    }
    if let Some(schema) = schema {
        match params.endpoint.provider.preset().structured {
            StructuredMode::JsonSchema => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {"name": schema.name, "strict": true, "schema": schema.schema},
                });
            }
            StructuredMode::JsonObject => {
                let instruction = format!(
                    "Reply with one JSON object and nothing else. It must follow this JSON \
                     Schema:\n{}",
                    schema.schema
                );
                match messages.first_mut() {
                    Some(first) if first["role"] == "system" => {
                        let text = first["content"].as_str().unwrap_or_default();
                        first["content"] = json!(format!("{text}\n\n{instruction}"));
                    }
                    _ => messages.insert(0, json!({"role": "system", "content": instruction})),
                }
                body["response_format"] = json!({"type": "json_object"});
            }
        }
    }
    body["messages"] = Value::Array(messages);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, JsonSchema)]
    #[expect(dead_code, reason = "only the schema is used")]
    struct Verdict {
        score: u8,
    }

    #[test]
    fn request_bodies_use_each_providers_structured_mode() {
        let schema = OutputSchema::of::<Verdict>();
        let messages = [Message::system("Grade."), Message::user("2+2=4")];
        let local = CallParams::new(Endpoint::preset(Provider::LlamaCpp), "local").seed(7);
        let body = request_body(&local, &messages, Some(&schema));
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["messages"][0]["content"], "Grade.");

        let deepseek = CallParams::new(Endpoint::preset(Provider::DeepSeek), "deepseek-chat");
        let body = request_body(&deepseek, &messages, Some(&schema));
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        let system = body["messages"][0]["content"].as_str().unwrap_or_default();
        assert!(
            system.starts_with("Grade.\n\nReply with one JSON object"),
            "{system}"
        );
        assert!(system.contains("\"score\""));
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn token_probabilities_are_asked_only_of_providers_that_send_them() {
        let messages = [Message::user("2+2=4")];
        for provider in Provider::ALL {
            let params = CallParams::new(Endpoint::preset(provider), "m").top_logprobs(8);
            let body = request_body(&params, &messages, None);
            let asked = body.get("logprobs") == Some(&json!(true)) && body["top_logprobs"] == 8;
            let expected = matches!(provider, Provider::LlamaCpp | Provider::Vllm);
            assert_eq!(asked, expected, "{provider}: {body}");
        }
        let plain = CallParams::new(Endpoint::preset(Provider::LlamaCpp), "local");
        assert!(request_body(&plain, &messages, None)
            .get("logprobs")
            .is_none());
    }

    #[test]
    fn a_cached_reply_keeps_its_token_probabilities_and_drops_the_rest() {
        let body = json!({
            "id": "x",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "é1"},
                "finish_reason": "stop",
                "logprobs": {"content": [
                    {"id": 1, "token": "\u{fffd}", "bytes": [195], "logprob": -0.1, "top_logprobs": []},
                    {"id": 2, "token": "\u{fffd}", "bytes": [169], "logprob": -0.1, "top_logprobs": []},
                    {"id": 3, "token": "1", "bytes": [49], "logprob": -0.5,
                     "top_logprobs": [{"id": 3, "token": "1", "bytes": [49], "logprob": -0.5}]}
                ]}
            }],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3}
        })
        .to_string();
        let Ok(reply) = Reply::parse(body) else {
            panic!("the reply parses");
        };
        let cached = reply.cache_body();
        assert!(!cached.contains("\"id\""), "{cached}");
        let Ok(again) = Reply::parse(cached) else {
            panic!("the cached body parses");
        };
        assert_eq!(again.content, "é1");
        assert_eq!(again.logprobs, reply.logprobs);
        let tokens = again.logprobs.unwrap_or_default();
        assert_eq!(
            tokens[0].bytes,
            Some(vec![195]),
            "split characters keep their bytes"
        );
        assert_eq!(tokens[2].bytes, None, "whole ones do not need them");
        assert_eq!(tokens[2].top_logprobs[0].logprob, -0.5);
        assert_eq!(again.usage.completion_tokens, 3);
    }

    #[test]
    fn code_fences_are_stripped() {
        assert_eq!(strip_fences(" {\"a\":1} "), "{\"a\":1}");
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences("```\n{\"a\":1}```"), "{\"a\":1}");
    }

    #[test]
    fn unreachable_messages_say_how_to_fix_it() {
        let local = Endpoint::preset(Provider::LlamaCpp);
        assert_eq!(
            unreachable_message(&local, "Connection refused"),
            "No language model is reachable at http://127.0.0.1:8765/v1 — start it with \
             ./gradelab up or set GRADELAB_LLM__BASE_URL (Connection refused)."
        );
        let remote = Endpoint::preset(Provider::OpenAi);
        assert!(unreachable_message(&remote, "dns").contains("check the base URL"));
    }

    #[test]
    fn provider_error_messages_are_extracted() {
        assert_eq!(
            provider_message(r#"{"error":{"message":"Incorrect API key provided"}}"#),
            "Incorrect API key provided"
        );
        assert_eq!(
            provider_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(provider_message("  "), "(empty body)");
        assert_eq!(provider_message("Bad Gateway"), "Bad Gateway");
    }
}
