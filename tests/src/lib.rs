//! Test harness: [`spawn_app`] starts the real GradeLab server on 127.0.0.1:0 with its own
//! fresh database (a SQLite file, or a new PostgreSQL database when
//! `GRADELAB_TEST_DB=postgres`) and returns a [`TestApp`] with typed helpers.

pub mod fault_proxy;
pub mod restart;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use futures::{SinkExt, StreamExt};
use gradelab::config::Settings;
use gradelab::startup::Application;
use rand::Rng;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// A running server for one test. Dropping it stops the server and removes its data.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// HTTP client for requests to the server.
    pub client: reqwest::Client,
    /// The server's data directory (SQLite file, blobs).
    pub data_dir: PathBuf,
    _data: tempfile::TempDir,
    _shutdown: oneshot::Sender<()>,
    /// Dropped last: the server stops before its database goes.
    _postgres: Option<PgDatabase>,
}

/// A GraphQL response body.
#[derive(Debug)]
pub struct GqlResponse {
    /// `data`, or `Value::Null`.
    pub data: Value,
    /// `errors`, possibly empty.
    pub errors: Vec<Value>,
}

impl GqlResponse {
    /// The `data` of a response that must have no errors.
    pub fn ok(self) -> Value {
        assert!(
            self.errors.is_empty(),
            "unexpected errors: {:#?}",
            self.errors
        );
        self.data
    }

    /// The `extensions.code` of the first error.
    pub fn error_code(&self) -> Option<&str> {
        self.errors.first()?.pointer("/extensions/code")?.as_str()
    }

    /// The message of the first error.
    pub fn error_message(&self) -> Option<&str> {
        self.errors.first()?.get("message")?.as_str()
    }
}

/// A signed-up user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// The user's id.
    pub id: String,
    /// Email used at sign-up.
    pub email: String,
    /// Password used at sign-up.
    pub password: String,
    /// Session token.
    pub token: String,
}

/// Starts the server with default settings and a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server after letting the test adjust the settings.
/// An app whose LLM is the llama.cpp-style endpoint at `base_url` (a canned or
/// fault-injecting server), model `canned`, with its response cache off.
pub async fn spawn_app_with_canned_llm(base_url: &str) -> TestApp {
    spawn_app_with(|settings| {
        settings.llm.provider = "llamacpp".into();
        settings.llm.base_url = base_url.to_owned();
        settings.llm.model = "canned".into();
        settings.llm.cache = false;
    })
    .await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    gradelab::telemetry::init_for_test();
    let data = tempfile::tempdir().expect("temporary data directory");
    let mut settings = Settings {
        data_dir: data.path().to_path_buf(),
        ..Settings::default()
    };
    settings.server.bind = ([127, 0, 0, 1], 0).into();
    settings.web.dist_dir = workspace_root().join("frontend/dist");
    let postgres = if std::env::var("GRADELAB_TEST_DB").as_deref() == Ok("postgres") {
        let db = PgDatabase::create()
            .await
            .expect("test PostgreSQL database");
        settings.database.url = Some(db.url.clone().into());
        Some(db)
    } else {
        None
    };
    configure(&mut settings);
    let app = Application::build(settings).await.expect("server starts");
    let addr = app.local_addr().expect("bound address");
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base_url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        data_dir: data.path().to_path_buf(),
        _data: data,
        _shutdown: shutdown,
        _postgres: postgres,
    }
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

impl TestApp {
    /// Posts a GraphQL operation, with a bearer token when given.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> GqlResponse {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base_url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the server");
        let body: Value = response.json().await.expect("JSON response");
        GqlResponse {
            data: body.get("data").cloned().unwrap_or(Value::Null),
            errors: body
                .get("errors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Signs up a new user with a unique email and returns it with its session token.
    pub async fn sign_up(&self, name: &str) -> TestUser {
        let email = format!(
            "{}.{}@example.org",
            name.to_lowercase(),
            rand::thread_rng().gen::<u32>()
        );
        let password = format!("correct horse {name}");
        let data = self
            .graphql(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }",
                json!({ "input": { "email": email, "password": password, "displayName": name } }),
            )
            .await
            .ok();
        TestUser {
            id: data["signUp"]["user"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            token: data["signUp"]["token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            email,
            password,
        }
    }

    /// Opens a graphql-transport-ws connection and starts one subscription.
    pub async fn subscribe(
        &self,
        token: Option<&str>,
        query: &str,
    ) -> anyhow::Result<Subscription> {
        let url = format!("{}/graphql", self.base_url.replacen("http", "ws", 1));
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        let payload = token.map_or(json!({}), |token| json!({ "token": token }));
        socket
            .send(Message::text(
                json!({ "type": "connection_init", "payload": payload }).to_string(),
            ))
            .await?;
        let mut subscription = Subscription { socket };
        let ack = subscription.next_message().await?;
        if ack["type"] != "connection_ack" {
            bail!("expected connection_ack, got {ack}");
        }
        subscription
            .socket
            .send(Message::text(
                json!({ "id": "1", "type": "subscribe", "payload": { "query": query } })
                    .to_string(),
            ))
            .await?;
        Ok(subscription)
    }
}

/// A live subscription over a real WebSocket.
pub struct Subscription {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Subscription {
    /// The next protocol message (pings are answered and skipped).
    pub async fn next_message(&mut self) -> anyhow::Result<Value> {
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

    /// The payload of the next `next` message, waiting at most `seconds`.
    pub async fn next_data(&mut self, seconds: u64) -> anyhow::Result<Value> {
        let message =
            tokio::time::timeout(std::time::Duration::from_secs(seconds), self.next_message())
                .await
                .context("no subscription message in time")??;
        match message["type"].as_str() {
            Some("next") => Ok(message["payload"].clone()),
            _ => bail!("expected a `next` message, got {message}"),
        }
    }
}

/// A PostgreSQL database created for one test, named after the test's process.
///
/// It is not dropped when the test ends: dropping it there would block the test's runtime
/// while the test's server may be half-way through opening a connection, and PostgreSQL's
/// `DROP DATABASE` waits for every backend, one stuck in authentication included, until
/// `authentication_timeout` (60 s). Instead each new test database first drops those of
/// test processes that have exited (nextest runs each test in a process of its own), and
/// `./gradelab pg start` drops any left before a run.
struct PgDatabase {
    url: String,
}

/// Test databases are `gradelab_test_<pid>_<random>`.
const PG_TEST_PREFIX: &str = "gradelab_test_";

impl PgDatabase {
    async fn create() -> anyhow::Result<Self> {
        let admin_url = std::env::var("GRADELAB_TEST_PG_URL")
            .context("GRADELAB_TEST_DB=postgres needs GRADELAB_TEST_PG_URL (an admin URL)")?;
        let name = format!(
            "{PG_TEST_PREFIX}{}_{:016x}",
            std::process::id(),
            rand::thread_rng().gen::<u64>()
        );
        let admin = sea_orm::Database::connect(&admin_url).await?;
        drop_orphaned_databases(&admin).await;
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
        })
    }
}

/// Drops the test databases whose process has exited (best effort: a failure or a slow
/// drop leaves the database for a later test or `./gradelab pg start`).
async fn drop_orphaned_databases(admin: &sea_orm::DatabaseConnection) {
    // Without /proc there is no telling a live test's database from an orphan.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let list = sea_orm::Statement::from_string(
        admin.get_database_backend(),
        format!("SELECT datname FROM pg_database WHERE starts_with(datname, '{PG_TEST_PREFIX}')"),
    );
    let Ok(rows) = admin.query_all(list).await else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let pid = name
            .strip_prefix(PG_TEST_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let drop = admin.execute_unprepared(&statement);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drop).await;
    }
}
