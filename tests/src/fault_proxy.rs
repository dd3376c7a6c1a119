//! A scripted, fault-injecting OpenAI-compatible endpoint on 127.0.0.1:0.
//!
//! Each `POST /v1/chat/completions` takes the next [`Fault`] from the script; once the
//! script is empty every request passes. Passing means forwarding to a real model
//! ([`FaultServer::proxy`]) or answering with a canned completion ([`FaultServer::canned`]).
//! The server counts requests, keeps their bodies and records the most requests it ever had
//! in flight at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Prompt tokens a canned completion reports.
pub const CANNED_PROMPT_TOKENS: i64 = 100;
/// Completion tokens a canned completion reports.
pub const CANNED_COMPLETION_TOKENS: i64 = 20;

/// What the server does with one chat-completions request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer normally.
    Pass,
    /// This HTTP status with an OpenAI-style error body.
    Status(u16),
    /// HTTP 429 with this `Retry-After` value (seconds or an HTTP date).
    RateLimited(String),
    /// Wait this long before answering normally (a stall past the client's timeout).
    Stall(Duration),
    /// HTTP 200, a well-formed completion whose message content is this text.
    Content(String),
    /// HTTP 200 with this raw body (not a chat completion).
    Body(String),
}

struct Inner {
    script: Mutex<VecDeque<Fault>>,
    triggers: Mutex<Vec<(String, Fault)>>,
    bodies: Mutex<Vec<Value>>,
    canned: Mutex<String>,
    canned_logprobs: Mutex<Option<Value>>,
    latency: Mutex<Duration>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    upstream: Option<String>,
    client: reqwest::Client,
}

/// A running fault server. Dropping it stops it.
pub struct FaultServer {
    /// Base URL to give the client, e.g. `http://127.0.0.1:41234/v1`.
    pub base_url: String,
    inner: Arc<Inner>,
    _shutdown: oneshot::Sender<()>,
}

impl FaultServer {
    /// A server that answers passing requests with `content` as the assistant's message.
    pub async fn canned(content: impl Into<String>) -> Self {
        Self::start(None, content.into()).await
    }

    /// A server in front of the real model at `upstream` (a base URL with `/v1`).
    pub async fn proxy(upstream: &str) -> Self {
        Self::start(
            Some(upstream.trim_end_matches('/').to_owned()),
            String::new(),
        )
        .await
    }

    async fn start(upstream: Option<String>, canned: String) -> Self {
        let inner = Arc::new(Inner {
            script: Mutex::new(VecDeque::new()),
            triggers: Mutex::new(Vec::new()),
            bodies: Mutex::new(Vec::new()),
            canned: Mutex::new(canned),
            canned_logprobs: Mutex::new(None),
            latency: Mutex::new(Duration::ZERO),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            upstream,
            client: reqwest::Client::new(),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault server");
        let addr = listener.local_addr().expect("fault server address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            inner,
            _shutdown: shutdown,
        }
    }

    /// Appends faults to the script.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.script).extend(faults);
    }

    /// Answers every request whose body contains `needle` with `fault` (before the script),
    /// for a fault that follows one input rather than the order of requests.
    pub fn on_body_containing(&self, needle: impl Into<String>, fault: Fault) {
        lock(&self.inner.triggers).push((needle.into(), fault));
    }

    /// Changes the canned content.
    pub fn set_canned(&self, content: impl Into<String>) {
        *lock(&self.inner.canned) = content.into();
    }

    /// Sends `tokens` (an OpenAI `logprobs.content` array) with every canned completion.
    pub fn set_canned_logprobs(&self, tokens: Value) {
        *lock(&self.inner.canned_logprobs) = Some(tokens);
    }

    /// Delays every passing answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.inner.latency) = latency;
    }

    /// Chat-completions requests received so far.
    pub fn requests(&self) -> usize {
        lock(&self.inner.bodies).len()
    }

    /// The request bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        lock(&self.inner.bodies).clone()
    }

    /// The most requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts a request in flight until dropped (also when the client gives up and the
/// handler is cancelled).
struct InFlight(Arc<Inner>);

impl InFlight {
    fn enter(inner: &Arc<Inner>) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A chat completion with `content`, as an OpenAI-compatible server sends it.
pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 0,
        "model": "local",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": CANNED_PROMPT_TOKENS,
            "completion_tokens": CANNED_COMPLETION_TOKENS,
            "total_tokens": CANNED_PROMPT_TOKENS + CANNED_COMPLETION_TOKENS
        }
    })
}

async fn chat(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&inner);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&inner.bodies).push(parsed);
    let text = String::from_utf8_lossy(&body);
    let triggered = lock(&inner.triggers)
        .iter()
        .find(|(needle, _)| text.contains(needle.as_str()))
        .map(|(_, fault)| fault.clone());
    let fault = triggered.unwrap_or_else(|| lock(&inner.script).pop_front().unwrap_or(Fault::Pass));
    match fault {
        Fault::Pass => pass(&inner, body).await,
        Fault::Stall(wait) => {
            tokio::time::sleep(wait).await;
            pass(&inner, body).await
        }
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = format!("injected HTTP {code}");
            (
                status,
                Json(json!({"error": {"message": message, "type": "fault"}})),
            )
                .into_response()
        }
        Fault::RateLimited(retry_after) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {"message": "Rate limit reached", "type": "rate_limit"}})),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Fault::Content(content) => Json(completion(&content)).into_response(),
        Fault::Body(raw) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            raw,
        )
            .into_response(),
    }
}

async fn pass(inner: &Inner, body: Bytes) -> Response {
    let latency = *lock(&inner.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(upstream) = &inner.upstream else {
        let content = lock(&inner.canned).clone();
        let mut completion = completion(&content);
        if let Some(tokens) = lock(&inner.canned_logprobs).clone() {
            completion["choices"][0]["logprobs"] = json!({ "content": tokens });
        }
        return Json(completion).into_response();
    };
    let forwarded = inner
        .client
        .post(format!("{upstream}/chat/completions"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match forwarded {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = response.text().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

async fn models(State(inner): State<Arc<Inner>>) -> Response {
    if let Some(upstream) = &inner.upstream {
        if let Ok(response) = inner.client.get(format!("{upstream}/models")).send().await {
            let text = response.text().await.unwrap_or_default();
            return ([(header::CONTENT_TYPE, "application/json")], text).into_response();
        }
    }
    Json(json!({"object": "list", "data": [{"id": "local", "object": "model"}]})).into_response()
}
