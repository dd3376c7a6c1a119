//! A cluster on one machine for the scale-out tests and the benchmarks that run real
//! processes: a fresh PostgreSQL database, a canned OpenAI-compatible endpoint, real
//! `gradelab serve` processes on 127.0.0.1 sharing the database and a data directory, and
//! DOCX guides of any size.
//!
//! Shared by `tests/scale/main.rs` and the benchmarks in `server/benches/` (included with
//! `#[path]`), so it depends only on crates both have.

#![allow(dead_code, reason = "each includer uses part of the harness")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The admin URL of the PostgreSQL server (`GRADELAB_TEST_PG_URL`, or the local cluster that
/// `./gradelab pg start` runs).
pub fn pg_admin_url() -> String {
    std::env::var("GRADELAB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://gradelab:gradelab@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one run and dropped afterwards.
pub struct PgDb {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PgDb {
    /// Creates a database with a random name.
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        let admin_url = pg_admin_url();
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let admin = sea_orm::Database::connect(&admin_url)
            .await
            .with_context(|| "connecting to PostgreSQL (./gradelab pg start)".to_string())?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .context("admin URL has no database part")?;
        Ok(Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// An OpenAI-compatible endpoint that answers every chat completion with a valid grading
/// verdict for the request's JSON schema, after `latency`.
pub struct CannedLlm {
    /// Base URL with `/v1`.
    pub base_url: String,
    calls: Arc<AtomicUsize>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

struct Canned {
    latency: Duration,
    calls: Arc<AtomicUsize>,
}

impl CannedLlm {
    /// Starts the endpoint on 127.0.0.1:0.
    pub async fn start(latency: Duration) -> anyhow::Result<Self> {
        let calls = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(Canned {
            latency,
            calls: calls.clone(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route(
                "/v1/models",
                get(|| async {
                    Json(json!({"object": "list", "data": [{"id": "canned", "object": "model"}]}))
                }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            base_url: format!("http://{addr}/v1"),
            calls,
            _shutdown: tx,
        })
    }

    /// Chat completions answered so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A verdict that satisfies `schema`: one verdict per criterion, a score within the marks
/// that depends on the answer (so validation metrics vary between epochs).
fn verdict(schema: &Value, prompt: &str) -> Value {
    let max = schema
        .pointer("/properties/score/maximum")
        .and_then(Value::as_f64)
        .unwrap_or(1.0)
        .max(0.0);
    let hash = prompt
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let score = (hash % (max as u64 + 1)) as f64;
    let criteria = schema
        .pointer("/properties/criteria/minItems")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut verdict =
        json!({ "score": score, "feedback": "Clear answer.", "rationale": "Canned verdict." });
    if schema.pointer("/properties/criteria").is_some() {
        verdict["criteria"] = Value::Array(
            (0..criteria)
                .map(|i| json!({ "criterion": format!("criterion {i}"), "met": i % 2 == 0 }))
                .collect(),
        );
    }
    verdict
}

async fn chat(State(canned): State<Arc<Canned>>, Json(body): Json<Value>) -> Json<Value> {
    canned.calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(canned.latency).await;
    let schema = body
        .pointer("/response_format/json_schema/schema")
        .cloned()
        .unwrap_or(Value::Null);
    let prompt = body
        .pointer("/messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let content = verdict(&schema, &prompt).to_string();
    Json(json!({
        "id": "chatcmpl-canned",
        "object": "chat.completion",
        "created": 0,
        "model": "canned",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150 }
    }))
}

/// What every replica of a cluster shares.
#[derive(Clone)]
pub struct ClusterConfig {
    /// The `gradelab` binary.
    pub bin: PathBuf,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Shared data directory (blob store).
    pub data_dir: PathBuf,
    /// OpenAI-compatible base URL.
    pub llm_url: String,
    /// Job workers per replica.
    pub workers: usize,
    /// Lease length in seconds.
    pub lease_secs: u64,
}

/// A `gradelab serve` process.
pub struct Replica {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// Its process id (part of its job lease owner names).
    pub pid: u32,
    child: Child,
    client: reqwest::Client,
}

impl Replica {
    /// Starts a replica and waits until it listens. Its log goes to
    /// `data_dir/replica-<name>.log`.
    pub async fn start(config: &ClusterConfig, name: &str) -> anyhow::Result<Self> {
        let log = std::fs::File::create(config.data_dir.join(format!("replica-{name}.log")))?;
        let mut command = Command::new(&config.bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("GRADELAB_") {
                command.env_remove(key);
            }
        }
        command
            .arg("serve")
            .current_dir(&config.data_dir)
            .env("GRADELAB_CONFIG", config.data_dir.join("none.toml"))
            .env("GRADELAB_DATA_DIR", &config.data_dir)
            .env("GRADELAB_DATABASE__URL", &config.database_url)
            .env("GRADELAB_DATABASE__MAX_CONNECTIONS", "8")
            .env("GRADELAB_SERVER__BIND", "127.0.0.1:0")
            .env("GRADELAB_WEB__DIST_DIR", config.data_dir.join("no-web-app"))
            .env("GRADELAB_LLM__PROVIDER", "llamacpp")
            .env("GRADELAB_LLM__BASE_URL", &config.llm_url)
            .env("GRADELAB_LLM__MODEL", "canned")
            .env("GRADELAB_LLM__CACHE", "false")
            .env("GRADELAB_LLM__CONCURRENCY", "8")
            .env("GRADELAB_JOBS__WORKERS", config.workers.to_string())
            .env("GRADELAB_JOBS__LEASE_SECS", config.lease_secs.to_string())
            .env(
                "GRADELAB_JOBS__HEARTBEAT_SECS",
                (config.lease_secs / 3).max(1).to_string(),
            )
            .env("GRADELAB_JOBS__POLL_MS", "250")
            .env("GRADELAB_JOBS__SHUTDOWN_GRACE_SECS", "2")
            .env("RUST_LOG", "warn,gradelab=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", config.bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("replica stdout")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .strip_prefix("GradeLab is running at ")
                    .map(|rest| rest.trim_end_matches('/').to_owned())
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let base_url = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let _ = child.kill();
                bail!("replica {name} did not start; see its log in the data directory");
            }
        };
        Ok(Self {
            base_url,
            pid,
            child,
            client: reqwest::Client::new(),
        })
    }

    /// `kill -9`: no shutdown, no lease handed back.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit (at most `timeout`). Returns whether it
    /// exited in time.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Whether a job lease owner name belongs to this process.
    pub fn owns(&self, lease_owner: &str) -> bool {
        lease_owner.contains(&format!("-{}-", self.pid))
    }

    /// Posts a GraphQL operation; errors in the response become an `Err`.
    pub async fn graphql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base_url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body: Value = request.send().await?.json().await?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }

    /// A GET on `path`: status and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Signs up a user; returns the session token.
    pub async fn sign_up(&self, name: &str) -> anyhow::Result<String> {
        let data = self
            .graphql(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) { token } }",
                json!({ "input": { "email": format!("{name}.{}@example.org", rand::random::<u32>()),
                    "password": "correct horse battery", "displayName": name } }),
            )
            .await?;
        data["signUp"]["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no token in {data}"))
    }

    /// A guide of two questions with 9 scored answers each (3 validation, 6 train).
    pub async fn small_guide(&self, token: &str) -> anyhow::Result<Value> {
        let items = [
            json!({"label": "1", "question": "Name the gas plants take in for photosynthesis.", "model_answer": "Carbon dioxide.", "max_marks": 2}),
            json!({"label": "2", "question": "What is the unit of electrical resistance?", "model_answer": "The ohm.", "max_marks": 1}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        let data = self
            .graphql(
                Some(token),
                "mutation($title: String!, $text: String) { createGuideFromItems(title: $title, text: $text) { id } }",
                json!({ "title": "Scale test", "text": items }),
            )
            .await?;
        let guide = data["createGuideFromItems"]["id"].clone();
        let texts = [
            "carbon dioxide",
            "CO2",
            "oxygen",
            "it takes in air",
            "carbon dioxide gas",
            "nitrogen",
            "CO2 from the air",
            "I don't know",
            "carbon",
        ];
        let mut rows = Vec::new();
        for (label, max) in [("1", 2), ("2", 1)] {
            for (i, text) in texts.iter().enumerate() {
                rows.push(
                    json!({
                        "item_label": label,
                        "student": format!("S{i:02}"),
                        "text": format!("{text} ({label})"),
                        "teacher_score": (i % (max + 1)),
                        "split": if i < 3 { "validation" } else { "train" },
                    })
                    .to_string(),
                );
            }
        }
        self.graphql(
            Some(token),
            "mutation($guide: ID!, $text: String!) { importAnswersText(guideId: $guide, text: $text) { __typename } }",
            json!({ "guide": guide, "text": rows.join("\n") }),
        )
        .await?;
        Ok(guide)
    }

    /// Starts an LLM-engine training job of `epochs` epochs after the base; returns its id.
    pub async fn start_training(
        &self,
        token: &str,
        guide: &Value,
        epochs: u32,
    ) -> anyhow::Result<Value> {
        let input = json!({ "guideId": guide, "engine": "LLM", "epochs": epochs, "patience": epochs,
            "maxTokens": 96, "exemplars": 0, "maxExemplars": 2, "calibrationSample": 4, "seed": 7 });
        let data = self
            .graphql(
                Some(token),
                "mutation($input: TrainingInput!) { startTraining(input: $input) { id } }",
                json!({ "input": input }),
            )
            .await?;
        Ok(data["startTraining"]["id"].clone())
    }

    /// Opens a `jobEvents` subscription over a real WebSocket.
    pub async fn subscribe_job(
        &self,
        token: &str,
        job: &Value,
        after_seq: i32,
    ) -> anyhow::Result<EventStream> {
        let url = format!("{}/graphql", self.base_url.replacen("http", "ws", 1));
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        socket
            .send(Message::text(
                json!({ "type": "connection_init", "payload": { "token": token } }).to_string(),
            ))
            .await?;
        let mut stream = EventStream { socket };
        let ack = stream.next_message().await?;
        if ack["type"] != "connection_ack" {
            bail!("expected connection_ack, got {ack}");
        }
        let query = format!(
            "subscription {{ jobEvents(jobId: {job}, afterSeq: {after_seq}) {{ seq kind payload at }} }}"
        );
        stream
            .socket
            .send(Message::text(
                json!({ "id": "1", "type": "subscribe", "payload": { "query": query } })
                    .to_string(),
            ))
            .await?;
        Ok(stream)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One job's live events.
pub struct EventStream {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl EventStream {
    async fn next_message(&mut self) -> anyhow::Result<Value> {
        loop {
            let message = self
                .socket
                .next()
                .await
                .ok_or_else(|| anyhow!("socket closed"))??;
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text)?;
                    if value["type"] == "ping" {
                        self.socket
                            .send(Message::text(json!({ "type": "pong" }).to_string()))
                            .await?;
                        continue;
                    }
                    return Ok(value);
                }
                Message::Close(frame) => bail!("socket closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next event, or `None` when the subscription completed.
    pub async fn next_event(&mut self) -> anyhow::Result<Option<Value>> {
        let message = self.next_message().await?;
        match message["type"].as_str() {
            Some("next") => Ok(Some(message["payload"]["data"]["jobEvents"].clone())),
            Some("complete") => Ok(None),
            _ => bail!("unexpected message {message}"),
        }
    }

    /// Every event until the job's final one (or `timeout`), each with the instant it
    /// arrived.
    pub async fn collect(
        mut self,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(Value, std::time::SystemTime)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline, self.next_event())
                .await
                .map_err(|_| {
                    anyhow!(
                        "no final event in {timeout:?} after {} events",
                        events.len()
                    )
                })??;
            let Some(event) = next else { return Ok(events) };
            let terminal = matches!(
                event["kind"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            );
            events.push((event, std::time::SystemTime::now()));
            if terminal {
                return Ok(events);
            }
        }
    }
}

/// The directory holding the binaries of the profile `exe` was built with
/// (`target/<profile>` for `target/<profile>/deps/<exe>`).
pub fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let deps = exe.parent()?;
    Some(deps.parent()?.to_path_buf())
}

/// A DOCX guide of three questions (text unique to `n`) with an image of `image_bytes`
/// random bytes, stored uncompressed as JPEGs are.
pub fn docx_guide(n: usize, image_bytes: usize) -> anyhow::Result<Vec<u8>> {
    let paragraphs: String = (1..=3)
        .flat_map(|q| {
            [
                format!("Question {q} (2 marks)"),
                format!("Explain step {q} of process {n}."),
                format!("Model answer: step {q} of process {n} turns the input into the output."),
                String::new(),
            ]
        })
        .map(|line| format!("<w:p><w:r><w:t>{line}</w:t></w:r></w:p>"))
        .collect();
    docx_with_image(
        &format!("<w:p><w:r><w:t>Guide {n}</w:t></w:r></w:p>{paragraphs}"),
        image_bytes,
        n as u32,
    )
}

/// A DOCX whose document body is `body` (WordprocessingML paragraphs) with an image of
/// `image_bytes` pseudo-random bytes from `seed`, stored uncompressed as JPEGs are.
pub fn docx_with_image(body: &str, image_bytes: usize, seed: u32) -> anyhow::Result<Vec<u8>> {
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    let mut image = vec![0u8; image_bytes];
    let mut x = 2_463_534_242u32 ^ seed.wrapping_mul(2_654_435_761);
    for b in &mut image {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let deflated = zip::write::SimpleFileOptions::default();
    zip.start_file("word/document.xml", deflated)?;
    zip.write_all(document.as_bytes())?;
    zip.start_file(
        "word/media/image1.jpeg",
        deflated.compression_method(zip::CompressionMethod::Stored),
    )?;
    zip.write_all(&image)?;
    zip.finish()?;
    Ok(buf.into_inner())
}
