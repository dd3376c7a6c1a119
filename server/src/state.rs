//! Shared application state handed to every request and background task.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

use crate::config::Settings;
use crate::llm::{LlmClient, SecretBox};
use crate::service::accounts::{AccountEvent, SessionCache};
use crate::service::jobs::JobBus;

/// Cheap to clone: everything inside is reference-counted.
#[derive(Clone)]
pub struct AppState {
    /// Database pool.
    pub db: DatabaseConnection,
    /// Settings the server started with.
    pub settings: Arc<Settings>,
    /// Security events on accounts (sign-ins, API tokens), for the `accountEvents`
    /// subscription.
    pub account_events: broadcast::Sender<AccountEvent>,
    /// Live job events and the wake-up for job workers.
    pub jobs: Arc<JobBus>,
    /// Identifies this server process as a job lease owner.
    pub instance_id: Arc<str>,
    /// The language-model client (default endpoint from `settings.llm`).
    pub llm: Arc<LlmClient>,
    /// Bearer tokens resolved in the last moments.
    pub sessions: Arc<SessionCache>,
}

impl AppState {
    /// Builds the state around an open database; `secrets` seals users' API keys.
    pub fn new(db: DatabaseConnection, settings: Settings, secrets: SecretBox) -> Self {
        let (account_events, _) = broadcast::channel(256);
        let instance_id = format!(
            "{}-{}-{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        let llm = Arc::new(LlmClient::new(&settings.llm, db.clone()).with_secrets(secrets));
        Self {
            db,
            settings: Arc::new(settings),
            account_events,
            jobs: Arc::new(JobBus::default()),
            instance_id: instance_id.into(),
            llm,
            sessions: Arc::new(SessionCache::default()),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "gradelab".to_owned())
}
