//! Durable background jobs: creation, the per-job event log, cancellation, and the worker
//! that claims queued jobs and runs them through a [`JobHandler`].
//!
//! A job's state lives in the database, never only in memory. A worker claims a job by
//! taking its lease with a conditional `UPDATE` (at most one claimant wins, on SQLite and
//! PostgreSQL alike) and renews the lease with a heartbeat while the handler runs. A job
//! whose lease lapses (the server was stopped or killed) is claimed again and its handler
//! resumes from the job's `checkpoint`. Every event is first persisted with a per-job
//! sequence number, then broadcast to live subscribers, so a subscriber that reconnects
//! replays what it missed from the database.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entity::enums::{JobKind, JobStatus};
use entity::{job_events, jobs};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, Notify};
use tracing::{instrument, Instrument};

use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// How long a claimed job's lease lasts without a heartbeat.
const LEASE: Duration = Duration::from_secs(30);
/// How often a running job's lease is renewed.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often an idle worker looks for work it was not told about (other replicas' jobs,
/// lapsed leases).
const POLL: Duration = Duration::from_secs(2);

/// What went wrong with a job request.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job for this user.
    #[error("job {0} not found")]
    NotFound(i32),
    /// The job already finished.
    #[error("job {0} has already finished")]
    Finished(i32),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<JobError> for AppError {
    fn from(err: JobError) -> Self {
        match err {
            JobError::NotFound(id) => AppError::not_found("job", id),
            JobError::Finished(_) => AppError::new(ErrorCode::BadUserInput, err.to_string()),
            JobError::Db(err) => AppError::internal(err),
        }
    }
}

/// A persisted job event, as delivered to subscribers.
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// The job.
    pub job_id: i32,
    /// The job's owner; subscribers only see their own jobs' events.
    pub user_id: i32,
    /// 1, 2, 3, … within the job.
    pub seq: i32,
    /// Event type: `queued`, `started`, `progress`, `log`, `epoch`, `succeeded`, `failed`,
    /// `cancelled`, or a kind specific to the job.
    pub kind: String,
    /// Event data.
    pub payload: Value,
    /// When it happened.
    pub at: chrono::DateTime<Utc>,
}

impl JobEvent {
    /// Whether this event ends the job's stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind.as_str(), "succeeded" | "failed" | "cancelled")
    }

    fn from_row(row: job_events::Model, user_id: i32) -> Self {
        Self {
            job_id: row.job_id,
            user_id,
            seq: row.seq,
            kind: row.kind,
            payload: row.payload,
            at: row.created_at,
        }
    }
}

/// Live job events inside this process, and a wake-up for idle workers.
pub struct JobBus {
    events: broadcast::Sender<JobEvent>,
    work: Notify,
}

impl Default for JobBus {
    fn default() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            events,
            work: Notify::new(),
        }
    }
}

impl JobBus {
    /// A receiver of every job event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }
}

/// Queues a job for `user_id` and wakes a worker.
#[instrument(skip(state, params))]
pub async fn create(
    state: &AppState,
    user_id: i32,
    guide_id: Option<i32>,
    kind: JobKind,
    params: Value,
) -> Result<jobs::Model, JobError> {
    let now = Utc::now();
    let job = jobs::ActiveModel {
        user_id: Set(user_id),
        guide_id: Set(guide_id),
        kind: Set(kind),
        status: Set(JobStatus::Queued),
        params: Set(params),
        progress: Set(0.0),
        cancel_requested: Set(false),
        attempts: Set(0),
        prompt_tokens: Set(0),
        completion_tokens: Set(0),
        cost_usd: Set(0.0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    emit(state, &job, "queued", json!({})).await?;
    state.jobs.work.notify_one();
    Ok(job)
}

/// One of the caller's jobs.
pub async fn get(db: &DatabaseConnection, user_id: i32, id: i32) -> Result<jobs::Model, JobError> {
    jobs::Entity::find_by_id(id)
        .filter(jobs::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(JobError::NotFound(id))
}

/// The caller's jobs, newest first, optionally of one kind or for one guide.
pub async fn list(
    db: &DatabaseConnection,
    user_id: i32,
    kind: Option<JobKind>,
    guide_id: Option<i32>,
    limit: u64,
) -> Result<Vec<jobs::Model>, JobError> {
    let mut query = jobs::Entity::find().filter(jobs::Column::UserId.eq(user_id));
    if let Some(kind) = kind {
        query = query.filter(jobs::Column::Kind.eq(kind));
    }
    if let Some(guide_id) = guide_id {
        query = query.filter(jobs::Column::GuideId.eq(guide_id));
    }
    Ok(query
        .order_by_desc(jobs::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// A job's persisted events with `seq` greater than `after`, in order.
pub async fn events_after(
    db: &DatabaseConnection,
    job: &jobs::Model,
    after: i32,
) -> Result<Vec<JobEvent>, JobError> {
    Ok(job_events::Entity::find()
        .filter(job_events::Column::JobId.eq(job.id))
        .filter(job_events::Column::Seq.gt(after))
        .order_by_asc(job_events::Column::Seq)
        .all(db)
        .await?
        .into_iter()
        .map(|row| JobEvent::from_row(row, job.user_id))
        .collect())
}

/// Asks a job to stop. A queued job is cancelled at once; a running one stops at its
/// next safe point.
#[instrument(skip(state))]
pub async fn cancel(state: &AppState, user_id: i32, id: i32) -> Result<jobs::Model, JobError> {
    let job = get(&state.db, user_id, id).await?;
    if is_finished(job.status) {
        return Err(JobError::Finished(id));
    }
    let now = Utc::now();
    // Only a still-queued job is finished here; the worker owns a running one.
    let cancelled_queued = jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, Expr::value(JobStatus::Cancelled))
        .col_expr(jobs::Column::CancelRequested, Expr::value(true))
        .col_expr(jobs::Column::FinishedAt, Expr::value(now))
        .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
        .filter(jobs::Column::Id.eq(id))
        .filter(jobs::Column::Status.eq(JobStatus::Queued))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    if cancelled_queued {
        emit(
            state,
            &job,
            "cancelled",
            json!({ "reason": "cancelled by the user" }),
        )
        .await?;
    } else {
        jobs::Entity::update_many()
            .col_expr(jobs::Column::CancelRequested, Expr::value(true))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(id))
            .exec(&state.db)
            .await?;
    }
    get(&state.db, user_id, id).await
}

/// Persists an event with the job's next sequence number, then publishes it live.
pub async fn emit(
    state: &AppState,
    job: &jobs::Model,
    kind: &str,
    payload: Value,
) -> Result<JobEvent, DbErr> {
    // The unique (job_id, seq) index arbitrates between concurrent writers; retry on a clash.
    let mut tries = 0;
    let row = loop {
        let last: Option<i32> = job_events::Entity::find()
            .select_only()
            .column_as(job_events::Column::Seq.max(), "max")
            .filter(job_events::Column::JobId.eq(job.id))
            .into_tuple()
            .one(&state.db)
            .await?
            .flatten();
        let inserted = job_events::ActiveModel {
            job_id: Set(job.id),
            seq: Set(last.unwrap_or(0) + 1),
            kind: Set(kind.to_owned()),
            payload: Set(payload.clone()),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&state.db)
        .await;
        match inserted {
            Ok(row) => break row,
            Err(err)
                if tries < 5
                    && matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
            {
                tries += 1;
            }
            Err(err) => return Err(err),
        }
    };
    let event = JobEvent::from_row(row, job.user_id);
    let _ = state.jobs.events.send(event.clone());
    Ok(event)
}

/// Whether a status is final.
pub fn is_finished(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
    )
}

/// How a job ended, as returned by a handler.
#[derive(Debug)]
pub enum Outcome {
    /// Done; the value is stored in `jobs.result`.
    Succeeded(Value),
    /// The user cancelled; the handler stopped at a safe point.
    Cancelled,
}

/// Boxed future returned by handlers.
pub type HandlerFuture = Pin<Box<dyn Future<Output = anyhow::Result<Outcome>> + Send>>;

/// Runs one kind of job. Handlers report through [`JobContext`] and must check
/// [`JobContext::cancel_requested`] between steps.
pub trait JobHandler: Send + Sync + 'static {
    /// Runs (or resumes, when `ctx.job.checkpoint` is set) the job.
    fn run(&self, ctx: JobContext) -> HandlerFuture;
}

/// What a running handler can do.
#[derive(Clone)]
pub struct JobContext {
    /// Shared state.
    pub state: AppState,
    /// The job as claimed (its `checkpoint` says where to resume).
    pub job: jobs::Model,
}

impl JobContext {
    /// Records an event.
    pub async fn emit(&self, kind: &str, payload: Value) -> Result<JobEvent, DbErr> {
        emit(&self.state, &self.job, kind, payload).await
    }

    /// Updates the progress fraction (0..1) and publishes a `progress` event.
    pub async fn progress(&self, fraction: f64, message: &str) -> Result<(), DbErr> {
        let fraction = fraction.clamp(0.0, 1.0);
        jobs::Entity::update_many()
            .col_expr(jobs::Column::Progress, Expr::value(fraction))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(jobs::Column::Id.eq(self.job.id))
            .exec(&self.state.db)
            .await?;
        self.emit(
            "progress",
            json!({ "progress": fraction, "message": message }),
        )
        .await?;
        Ok(())
    }

    /// Saves the state to resume from after a restart.
    pub async fn checkpoint(&self, epoch: Option<i32>, checkpoint: Value) -> Result<(), DbErr> {
        jobs::Entity::update_many()
            .col_expr(jobs::Column::Checkpoint, Expr::value(checkpoint))
            .col_expr(jobs::Column::CurrentEpoch, Expr::value(epoch))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(jobs::Column::Id.eq(self.job.id))
            .exec(&self.state.db)
            .await?;
        Ok(())
    }

    /// Whether the user asked the job to stop.
    pub async fn cancel_requested(&self) -> Result<bool, DbErr> {
        Ok(jobs::Entity::find_by_id(self.job.id)
            .filter(jobs::Column::CancelRequested.eq(true))
            .count(&self.state.db)
            .await?
            > 0)
    }
}

/// Handlers by job kind.
#[derive(Default, Clone)]
pub struct Handlers(HashMap<JobKind, Arc<dyn JobHandler>>);

impl Handlers {
    /// Registers the handler for `kind`.
    pub fn register(&mut self, kind: JobKind, handler: impl JobHandler) {
        self.0.insert(kind, Arc::new(handler));
    }
}

/// Starts `workers` job workers in the background. They run until the process exits.
pub fn start_workers(state: AppState, handlers: Handlers, workers: usize) {
    let handlers = Arc::new(handlers);
    for index in 0..workers {
        let owner = format!("{}-{index}", state.instance_id);
        let (state, handlers) = (state.clone(), handlers.clone());
        tokio::spawn(
            async move { worker_loop(state, handlers, owner).await }
                .instrument(tracing::info_span!("job_worker", index)),
        );
    }
}

async fn worker_loop(state: AppState, handlers: Arc<Handlers>, owner: String) {
    let kinds: Vec<JobKind> = handlers.0.keys().copied().collect();
    loop {
        match claim(&state.db, &owner, &kinds).await {
            Ok(Some(job)) => run_claimed(&state, &handlers, &owner, job).await,
            Ok(None) => {
                let _ = tokio::time::timeout(POLL, state.jobs.work.notified()).await;
            }
            Err(err) => {
                tracing::error!(error = %err, "claiming a job failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Takes the lease of the oldest claimable job: queued, or running with a lapsed lease.
async fn claim(
    db: &DatabaseConnection,
    owner: &str,
    kinds: &[JobKind],
) -> Result<Option<jobs::Model>, DbErr> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let now = Utc::now();
    let claimable = Condition::any()
        .add(jobs::Column::Status.eq(JobStatus::Queued))
        .add(
            Condition::all()
                .add(jobs::Column::Status.eq(JobStatus::Running))
                .add(jobs::Column::LeaseExpiresAt.lt(now)),
        );
    let candidates = jobs::Entity::find()
        .filter(claimable.clone())
        .filter(jobs::Column::Kind.is_in(kinds.iter().copied()))
        .order_by_asc(jobs::Column::Id)
        .limit(8)
        .all(db)
        .await?;
    for job in candidates {
        let taken = jobs::Entity::update_many()
            .col_expr(jobs::Column::Status, Expr::value(JobStatus::Running))
            .col_expr(jobs::Column::LeaseOwner, Expr::value(owner))
            .col_expr(jobs::Column::LeaseExpiresAt, Expr::value(now + LEASE))
            .col_expr(
                jobs::Column::Attempts,
                Expr::col(jobs::Column::Attempts).add(1),
            )
            .col_expr(
                jobs::Column::StartedAt,
                Expr::value(job.started_at.unwrap_or(now)),
            )
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(job.id))
            .filter(claimable.clone())
            .exec(db)
            .await?
            .rows_affected
            == 1;
        if taken {
            return jobs::Entity::find_by_id(job.id).one(db).await;
        }
    }
    Ok(None)
}

async fn run_claimed(state: &AppState, handlers: &Handlers, owner: &str, job: jobs::Model) {
    let Some(handler) = handlers.0.get(&job.kind).cloned() else {
        return;
    };
    let span = tracing::info_span!("job", id = job.id, kind = ?job.kind, attempt = job.attempts);
    async {
        let resumed = job.checkpoint.is_some() || job.attempts > 1;
        let _ = emit(
            state,
            &job,
            "started",
            json!({ "attempt": job.attempts, "resumed": resumed }),
        )
        .await;
        let heartbeat = tokio::spawn(heartbeat(state.db.clone(), job.id, owner.to_owned()));
        let ctx = JobContext {
            state: state.clone(),
            job: job.clone(),
        };
        let outcome = handler.run(ctx).await;
        heartbeat.abort();
        if let Err(err) = finish(state, &job, outcome).await {
            tracing::error!(error = %err, "recording the end of a job failed");
        }
    }
    .instrument(span)
    .await;
}

async fn heartbeat(db: DatabaseConnection, job_id: i32, owner: String) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let renewed = jobs::Entity::update_many()
            .col_expr(
                jobs::Column::LeaseExpiresAt,
                Expr::value(Utc::now() + LEASE),
            )
            .filter(jobs::Column::Id.eq(job_id))
            .filter(jobs::Column::LeaseOwner.eq(owner.as_str()))
            .exec(&db)
            .await;
        if let Err(err) = renewed {
            tracing::warn!(error = %err, job_id, "lease renewal failed");
        }
    }
}

async fn finish(
    state: &AppState,
    job: &jobs::Model,
    outcome: anyhow::Result<Outcome>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let (status, kind, payload, result, error) = match outcome {
        Ok(Outcome::Succeeded(result)) => (
            JobStatus::Succeeded,
            "succeeded",
            json!({ "result": result.clone() }),
            Some(result),
            None,
        ),
        Ok(Outcome::Cancelled) => (
            JobStatus::Cancelled,
            "cancelled",
            json!({ "reason": "cancelled by the user" }),
            None,
            None,
        ),
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "job failed");
            let message = format!("{err:#}");
            (
                JobStatus::Failed,
                "failed",
                json!({ "error": message.clone() }),
                None,
                Some(message),
            )
        }
    };
    let mut update = jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, Expr::value(status))
        .col_expr(jobs::Column::FinishedAt, Expr::value(now))
        .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            jobs::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(jobs::Column::Error, Expr::value(error));
    if status == JobStatus::Succeeded {
        update = update
            .col_expr(jobs::Column::Progress, Expr::value(1.0))
            .col_expr(jobs::Column::Result, Expr::value(result));
    }
    update
        .filter(jobs::Column::Id.eq(job.id))
        .exec(&state.db)
        .await?;
    emit(state, job, kind, payload).await?;
    Ok(())
}
