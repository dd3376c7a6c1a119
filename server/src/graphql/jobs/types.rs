//! GraphQL types for jobs.

use async_graphql::{Enum, Json, SimpleObject, ID};
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

/// A background job.
#[derive(SimpleObject)]
pub struct Job {
    /// Stable identifier.
    pub id: ID,
    /// What the job does.
    pub kind: JobKind,
    /// Where it is.
    pub status: JobStatus,
    /// The guide it works on, if any.
    pub guide_id: Option<ID>,
    /// Fraction done, 0 to 1.
    pub progress: f64,
    /// Last finished epoch (training jobs).
    pub current_epoch: Option<i32>,
    /// Parameters given at creation.
    pub params: Json<Value>,
    /// Outcome of a succeeded job.
    pub result: Option<Json<Value>>,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether the user asked it to stop.
    pub cancel_requested: bool,
    /// How many times a worker has started it (more than 1 after a restart).
    pub attempts: i32,
    /// LLM prompt tokens spent.
    pub prompt_tokens: i64,
    /// LLM completion tokens spent.
    pub completion_tokens: i64,
    /// Estimated LLM cost in US dollars.
    pub cost_usd: f64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a worker first started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<jobs::Model> for Job {
    fn from(job: jobs::Model) -> Self {
        Self {
            id: job.id.into(),
            kind: job.kind.into(),
            status: job.status.into(),
            guide_id: job.guide_id.map(Into::into),
            progress: job.progress,
            current_epoch: job.current_epoch,
            params: Json(job.params),
            result: job.result.map(Json),
            error: job.error,
            cancel_requested: job.cancel_requested,
            attempts: job.attempts,
            prompt_tokens: job.prompt_tokens,
            completion_tokens: job.completion_tokens,
            cost_usd: job.cost_usd,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

/// One entry of a job's event log.
#[derive(SimpleObject, Clone)]
pub struct JobEvent {
    /// The job.
    pub job_id: ID,
    /// Position in the job's log: 1, 2, 3, … Resume a subscription after the last one seen.
    pub seq: i32,
    /// `queued`, `started`, `progress`, `log`, `epoch`, `succeeded`, `failed`, `cancelled`, …
    pub kind: String,
    /// Event data; its shape depends on `kind`.
    pub payload: Json<Value>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl From<ServiceEvent> for JobEvent {
    fn from(event: ServiceEvent) -> Self {
        Self {
            job_id: event.job_id.into(),
            seq: event.seq,
            kind: event.kind,
            payload: Json(event.payload),
            at: event.at,
        }
    }
}
