//! A server that can be killed and started again on the same data directory, for restart
//! and resume tests.
//!
//! [`spawn_app`](crate::spawn_app) runs the server on the test's own runtime, so dropping
//! its `TestApp` stops serving HTTP but not the job workers, and deletes the data. A
//! [`KillableServer`] runs on a runtime of its own: [`KillableServer::kill`] shuts that
//! runtime down without waiting, which drops every task — HTTP, job workers, heartbeats —
//! at its next await point, like a process that was killed. Its data directory (a SQLite
//! database and the blob store) belongs to the caller and survives, so a second server can
//! be started on it and must pick up where the first one stopped.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use gradelab::config::Settings;
use gradelab::startup::Application;
use rand::Rng;
use serde_json::{json, Value};

use crate::{workspace_root, GqlResponse};

/// A server on its own runtime.
pub struct KillableServer {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// HTTP client for requests to the server.
    pub client: reqwest::Client,
    /// The data directory it was started on.
    pub data_dir: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

impl KillableServer {
    /// Starts a server on `data_dir` (SQLite database and blobs in it), after letting the
    /// test adjust the settings.
    pub async fn start(
        data_dir: &Path,
        configure: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        gradelab::telemetry::init_for_test();
        let mut settings = Settings {
            data_dir: data_dir.to_path_buf(),
            ..Settings::default()
        };
        settings.server.bind = ([127, 0, 0, 1], 0).into();
        settings.web.dist_dir = workspace_root().join("frontend/dist");
        configure(&mut settings);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("server runtime")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            match Application::build(settings).await {
                Ok(app) => {
                    let addr = app.local_addr();
                    let _ = tx.send(addr.map_err(anyhow::Error::from));
                    let _ = app.run_until(std::future::pending()).await;
                }
                Err(err) => {
                    let _ = tx.send(Err(err));
                }
            }
        });
        let addr = rx.await.context("the server task ended")??;
        Ok(Self {
            base_url: format!("http://{addr}"),
            client: reqwest::Client::new(),
            data_dir: data_dir.to_path_buf(),
            runtime: Some(runtime),
        })
    }

    /// Kills the server: every task stops at its next await, nothing is cleaned up.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

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

    /// Signs up a new user and returns its session token.
    pub async fn sign_up(&self, name: &str) -> String {
        let email = format!(
            "{}.{}@example.org",
            name.to_lowercase(),
            rand::thread_rng().gen::<u32>()
        );
        let data = self
            .graphql(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) { token } }",
                json!({ "input": { "email": email, "password": format!("correct horse {name}"), "displayName": name } }),
            )
            .await
            .ok();
        data["signUp"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for KillableServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
