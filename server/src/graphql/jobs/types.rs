//! GraphQL types for jobs.

use std::sync::Arc;

use async_graphql::{Enum, Json, Object, ID};
use chrono::{DateTime, Utc};
use entity::enums::{JobKind as DbKind, JobStatus as DbStatus};
use entity::jobs;
use serde_json::Value;

use crate::service::jobs::JobEvent as ServiceEvent;

/// What a job does.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DbKind")]
pub enum JobKind {
    /// Extracting items from a marking guide.
    Extraction,
    /// Calibrating a grader epoch by epoch.
    Training,
    /// Grading a test split and comparing with the teacher.
    TestRun,
    /// Writing a report.
    Report,
    /// Splitting a student's whole script into answers per item.
    ScriptSplit,
    /// Writing synthetic answers at chosen score levels.
    Synthesis,
}

/// Where a job is.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DbStatus")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Stopped by an error; see `error`.
    Failed,
    /// Stopped by the user.
    Cancelled,
}

/// A background job, holding its row shared: a page of guides hands out the latest jobs it
/// keeps across requests without copying their parameters and results.
pub struct Job(Arc<jobs::Model>);

impl From<jobs::Model> for Job {
    fn from(job: jobs::Model) -> Self {
        Self(Arc::new(job))
    }
}

impl From<Arc<jobs::Model>> for Job {
    fn from(job: Arc<jobs::Model>) -> Self {
        Self(job)
    }
}

/// A background job.
#[Object]
impl Job {
    /// Stable identifier.
    async fn id(&self) -> ID {
        self.0.id.into()
    }

    /// What the job does.
    async fn kind(&self) -> JobKind {
        self.0.kind.into()
    }

    /// Where it is.
    async fn status(&self) -> JobStatus {
        self.0.status.into()
    }

    /// The guide it works on, if any.
    async fn guide_id(&self) -> Option<ID> {
        self.0.guide_id.map(Into::into)
    }

    /// Fraction done, 0 to 1.
    async fn progress(&self) -> f64 {
        self.0.progress
    }

    /// Last finished epoch (training jobs).
    async fn current_epoch(&self) -> Option<i32> {
        self.0.current_epoch
    }

    /// Parameters given at creation.
    async fn params(&self) -> Json<&Value> {
        Json(&self.0.params)
    }

    /// Outcome of a succeeded job.
    async fn result(&self) -> Option<Json<&Value>> {
        self.0.result.as_ref().map(Json)
    }

    /// Why it failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// Whether the user asked it to stop.
    async fn cancel_requested(&self) -> bool {
        self.0.cancel_requested
    }

    /// How many times a worker has started it (more than 1 after a restart).
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    /// LLM prompt tokens spent.
    async fn prompt_tokens(&self) -> i64 {
        self.0.prompt_tokens
    }

    /// LLM completion tokens spent.
    async fn completion_tokens(&self) -> i64 {
        self.0.completion_tokens
    }

    /// Estimated LLM cost in US dollars.
    async fn cost_usd(&self) -> f64 {
        self.0.cost_usd
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When a worker first started it.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }

    /// When it finished.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

/// One entry of a job's event log, holding the event as the job bus shares it among
/// subscribers.
#[derive(Clone)]
pub struct JobEvent(Arc<ServiceEvent>);

impl From<ServiceEvent> for JobEvent {
    fn from(event: ServiceEvent) -> Self {
        Self(Arc::new(event))
    }
}

impl From<Arc<ServiceEvent>> for JobEvent {
    fn from(event: Arc<ServiceEvent>) -> Self {
        Self(event)
    }
}

/// One entry of a job's event log.
#[Object]
impl JobEvent {
    /// The job.
    async fn job_id(&self) -> ID {
        self.0.job_id.into()
    }

    /// Position in the job's log: 1, 2, 3, … Resume a subscription after the last one seen.
    async fn seq(&self) -> i32 {
        self.0.seq
    }

    /// `queued`, `started`, `progress`, `log`, `epoch`, `succeeded`, `failed`, `cancelled`, …
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    /// Event data; its shape depends on `kind`.
    async fn payload(&self) -> Json<&Value> {
        Json(&self.0.payload)
    }

    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}
