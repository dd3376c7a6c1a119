//! Durable background jobs: creation, the per-job event log, cancellation, and the worker
//! that claims queued jobs and runs them through a [`JobHandler`].
//!
//! A job's state lives in the database, never only in memory, so any number of replicas can
//! share one PostgreSQL database. A worker claims a job by taking its lease: on PostgreSQL
//! with `SELECT … FOR UPDATE SKIP LOCKED` inside a transaction (concurrent claimants skip
//! each other's rows instead of queueing on them), on SQLite with a conditional `UPDATE`
//! (at most one claimant wins; one process). The lease is renewed by a heartbeat while the
//! handler runs; a worker that loses its lease (it was paused past it and another replica
//! took the job) drops its handler. A job whose lease lapses — its replica was killed — is
//! claimed again and its handler resumes from the job's `checkpoint` (the last finished
//! epoch). On shutdown a worker lets its job finish for `jobs.shutdown_grace_secs`, then
//! drops the current call and hands the lease back so another replica claims it at once.
//!
//! Every event is first persisted with a per-job sequence number, then published. On
//! SQLite it goes straight to the in-process [`JobBus`]; on PostgreSQL it is announced with
//! `NOTIFY gradelab_job_events` (payload: the event id), and each replica's listener fetches
//! the row and feeds its own bus, so a subscriber on one replica sees the events of a job
//! running on another. Subscribers fill any gap from the log, so a lost notification or a
//! reconnect costs latency, never an event.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use entity::enums::{JobKind, JobStatus};
use entity::{job_events, jobs};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DbErr, EntityTrait, Iterable, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select,
    Set, SqlErr, Statement, TransactionTrait,
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{instrument, Instrument};

use crate::error::{AppError, ErrorCode};
use crate::observability;
use crate::state::AppState;

/// PostgreSQL channel announcing a new job event; the payload is the event's id.
pub const EVENTS_CHANNEL: &str = "gradelab_job_events";
/// PostgreSQL channel announcing claimable work (a new job, a lease handed back).
pub const WORK_CHANNEL: &str = "gradelab_jobs";

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

/// Live job events inside this process, the wake-up for idle workers and the shutdown
/// switch. Events go out shared: each subscriber receives every event of every job and
/// keeps those of its own, so a copy per subscriber would cost every subscription the
/// payloads of every running job.
pub struct JobBus {
    events: broadcast::Sender<Arc<JobEvent>>,
    work: Notify,
    shutdown: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for JobBus {
    fn default() -> Self {
        let (events, _) = broadcast::channel(4096);
        let (shutdown, _) = watch::channel(false);
        Self {
            events,
            work: Notify::new(),
            shutdown,
            workers: Mutex::new(Vec::new()),
        }
    }
}

impl JobBus {
    /// A receiver of every job event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobEvent>> {
        self.events.subscribe()
    }

    /// Whether [`JobBus::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that turns `true` when the process starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops workers from claiming new jobs and starts the grace period of running ones.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.work.notify_waiters();
    }

    fn publish(&self, event: JobEvent) {
        observability::event_delivered((Utc::now() - event.at).to_std().unwrap_or_default());
        let _ = self.events.send(Arc::new(event));
    }
}

fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DatabaseBackend::Postgres
}

/// `NOTIFY channel, payload` on PostgreSQL; nothing elsewhere.
async fn notify(db: &DatabaseConnection, channel: &str, payload: String) -> Result<(), DbErr> {
    if is_postgres(db) {
        db.execute(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.into(), payload.into()],
        ))
        .await?;
    }
    Ok(())
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
    // Other replicas' idle workers would also find it at their next poll.
    if let Err(err) = notify(&state.db, WORK_CHANNEL, job.id.to_string()).await {
        tracing::warn!(error = %err, job_id = job.id, "announcing a new job failed");
    }
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

/// `select` with the `checkpoint` column read as NULL: a training job's checkpoint (its
/// cached grades and state) can be large, and only the worker that resumes the job reads it,
/// never a list or the API.
pub fn without_checkpoint(select: Select<jobs::Entity>) -> Select<jobs::Entity> {
    select
        .select_only()
        .columns(jobs::Column::iter().filter(|c| !matches!(c, jobs::Column::Checkpoint)))
        .column_as(Expr::cust("NULL"), "checkpoint")
}

/// The caller's jobs, newest first, optionally of one kind or for one guide (without their
/// checkpoints: [`without_checkpoint`]).
pub async fn list(
    db: &DatabaseConnection,
    user_id: i32,
    kind: Option<JobKind>,
    guide_id: Option<i32>,
    limit: u64,
) -> Result<Vec<jobs::Model>, JobError> {
    let mut query =
        without_checkpoint(jobs::Entity::find()).filter(jobs::Column::UserId.eq(user_id));
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
    observability::job_event_written();
    let event_id = row.id;
    let event = JobEvent::from_row(row, job.user_id);
    if is_postgres(&state.db) {
        // Every replica's listener (this one's too) fetches the row and publishes it. The
        // event is already in the log: if the announcement fails, subscribers still read it
        // from there (they check the log when the live stream goes quiet).
        if let Err(err) = notify(&state.db, EVENTS_CHANNEL, event_id.to_string()).await {
            tracing::warn!(error = %err, event_id, "announcing a job event failed");
        }
    } else {
        state.jobs.publish(event.clone());
    }
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

/// Lease and polling timings, from `settings.jobs`.
#[derive(Debug, Clone, Copy)]
struct Timings {
    lease: Duration,
    heartbeat: Duration,
    poll: Duration,
    grace: Duration,
}

impl Timings {
    fn of(state: &AppState) -> Self {
        let jobs = &state.settings.jobs;
        let lease = Duration::from_secs(jobs.lease_secs.max(1));
        Self {
            lease,
            heartbeat: Duration::from_secs(jobs.heartbeat_secs.max(1)).min(lease / 2),
            poll: Duration::from_millis(jobs.poll_ms.max(10)),
            grace: Duration::from_secs(jobs.shutdown_grace_secs),
        }
    }
}

/// Starts `workers` job workers in the background, and on PostgreSQL the listener that
/// feeds this process's [`JobBus`] from `NOTIFY`. Workers run until [`drain`].
pub fn start_workers(state: AppState, handlers: Handlers, workers: usize) {
    let handlers = Arc::new(handlers);
    let timings = Timings::of(&state);
    let mut handles = Vec::with_capacity(workers);
    if is_postgres(&state.db) {
        let url = state.settings.database_url();
        let listener_state = state.clone();
        tokio::spawn(
            async move { listen(listener_state, url).await }
                .instrument(tracing::info_span!("job_listener")),
        );
    }
    for index in 0..workers {
        let owner = format!("{}-{index}", state.instance_id);
        let (state, handlers) = (state.clone(), handlers.clone());
        handles.push(tokio::spawn(
            async move { worker_loop(state, handlers, owner, timings).await }
                .instrument(tracing::info_span!("job_worker", index)),
        ));
    }
    if let Ok(mut all) = state.jobs.workers.lock() {
        all.extend(handles);
    }
}

/// Shuts the workers down: no new claims; a running job gets `jobs.shutdown_grace_secs` to
/// finish, then its current call is dropped and its lease handed back. Returns when every
/// worker has stopped, or after `timeout`.
pub async fn drain(state: &AppState, timeout: Duration) {
    state.jobs.begin_shutdown();
    let handles: Vec<JoinHandle<()>> = match state.jobs.workers.lock() {
        Ok(mut all) => all.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    if handles.is_empty() {
        return;
    }
    let all = futures::future::join_all(handles);
    if tokio::time::timeout(timeout, all).await.is_err() {
        tracing::warn!("job workers did not stop in time");
    }
}

async fn worker_loop(state: AppState, handlers: Arc<Handlers>, owner: String, timings: Timings) {
    let kinds: Vec<JobKind> = handlers.0.keys().copied().collect();
    let mut shutdown = state.jobs.shutdown_signal();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match claim(&state.db, &owner, &kinds, timings.lease).await {
            Ok(Some(job)) => run_claimed(&state, &handlers, &owner, job, timings).await,
            Ok(None) => {
                tokio::select! {
                    _ = tokio::time::timeout(timings.poll, state.jobs.work.notified()) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "claiming a job failed");
                tokio::select! {
                    () = tokio::time::sleep(timings.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// Queued, or running with a lapsed lease.
fn claimable(now: chrono::DateTime<Utc>) -> Condition {
    Condition::any()
        .add(jobs::Column::Status.eq(JobStatus::Queued))
        .add(
            Condition::all()
                .add(jobs::Column::Status.eq(JobStatus::Running))
                .add(jobs::Column::LeaseExpiresAt.lt(now)),
        )
}

/// The update that takes a job's lease.
fn take_lease(
    job: &jobs::Model,
    owner: &str,
    now: chrono::DateTime<Utc>,
    lease: Duration,
) -> sea_orm::UpdateMany<jobs::Entity> {
    let expires = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, Expr::value(JobStatus::Running))
        .col_expr(jobs::Column::LeaseOwner, Expr::value(owner))
        .col_expr(jobs::Column::LeaseExpiresAt, Expr::value(expires))
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
}

/// Takes the lease of the oldest claimable job: queued, or running with a lapsed lease.
async fn claim(
    db: &DatabaseConnection,
    owner: &str,
    kinds: &[JobKind],
    lease: Duration,
) -> Result<Option<jobs::Model>, DbErr> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let now = Utc::now();
    let claimed = if is_postgres(db) {
        // The row lock holds other claimants off until commit; SKIP LOCKED lets them take
        // the next job instead of waiting for this one.
        let txn = db.begin().await?;
        let candidate = jobs::Entity::find()
            .filter(claimable(now))
            .filter(jobs::Column::Kind.is_in(kinds.iter().copied()))
            .order_by_asc(jobs::Column::Id)
            .limit(1)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .one(&txn)
            .await?;
        let claimed = match candidate {
            Some(job) => {
                take_lease(&job, owner, now, lease).exec(&txn).await?;
                Some(job.id)
            }
            None => None,
        };
        txn.commit().await?;
        claimed
    } else {
        let candidates = jobs::Entity::find()
            .filter(claimable(now))
            .filter(jobs::Column::Kind.is_in(kinds.iter().copied()))
            .order_by_asc(jobs::Column::Id)
            .limit(8)
            .all(db)
            .await?;
        let mut claimed = None;
        for job in candidates {
            let taken = take_lease(&job, owner, now, lease)
                .filter(claimable(now))
                .exec(db)
                .await?
                .rows_affected
                == 1;
            if taken {
                claimed = Some(job.id);
                break;
            }
        }
        claimed
    };
    match claimed {
        Some(id) => {
            observability::job_claimed();
            jobs::Entity::find_by_id(id).one(db).await
        }
        None => Ok(None),
    }
}

/// How a run ended on this replica.
enum RunEnd {
    /// The handler returned.
    Finished(anyhow::Result<Outcome>),
    /// The lease was lost to another replica: this one must not write anything more.
    LeaseLost,
    /// Shutdown and the grace period ran out: hand the lease back.
    Released,
}

async fn run_claimed(
    state: &AppState,
    handlers: &Handlers,
    owner: &str,
    job: jobs::Model,
    timings: Timings,
) {
    let Some(handler) = handlers.0.get(&job.kind).cloned() else {
        return;
    };
    let kind = format!("{:?}", job.kind).to_lowercase();
    let span = tracing::info_span!("job", id = job.id, kind = %kind, attempt = job.attempts);
    async {
        let began = Instant::now();
        let resumed = job.checkpoint.is_some() || job.attempts > 1;
        let _ = emit(
            state,
            &job,
            "started",
            json!({ "attempt": job.attempts, "resumed": resumed, "worker": owner }),
        )
        .await;
        let ctx = JobContext {
            state: state.clone(),
            job: job.clone(),
        };
        let mut shutdown = state.jobs.shutdown_signal();
        let run = handler.run(ctx);
        let lease_kept = heartbeat(state.db.clone(), job.id, owner.to_owned(), timings);
        let grace_over = async {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(timings.grace).await;
        };
        let end = tokio::select! {
            outcome = run => RunEnd::Finished(outcome),
            () = lease_kept => RunEnd::LeaseLost,
            () = grace_over => RunEnd::Released,
        };
        let outcome = match end {
            RunEnd::Finished(outcome) => outcome,
            RunEnd::LeaseLost => {
                tracing::warn!("lost the job's lease to another worker; stopped running it");
                observability::job_run(&kind, "lease_lost", began.elapsed());
                return;
            }
            RunEnd::Released => {
                match release(state, &job, owner).await {
                    Ok(()) => observability::job_released(),
                    Err(err) => tracing::error!(error = %err, "handing the lease back failed"),
                }
                observability::job_run(&kind, "released", began.elapsed());
                return;
            }
        };
        if let Err(err) = &outcome {
            if will_retry(err, &job) {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "database busy; the job runs again"
                );
                match retry_later(state, &job, owner).await {
                    Ok(()) => observability::job_run(&kind, "retried", began.elapsed()),
                    Err(err) => tracing::error!(error = %err, "handing the job back failed"),
                }
                return;
            }
        }
        let label = match &outcome {
            Ok(Outcome::Succeeded(_)) => "succeeded",
            Ok(Outcome::Cancelled) => "cancelled",
            Err(_) => "failed",
        };
        match finish(state, &job, owner, outcome).await {
            Ok(true) => observability::job_run(&kind, label, began.elapsed()),
            Ok(false) => {
                tracing::warn!("the job's lease was taken over before it finished; result dropped");
                observability::job_run(&kind, "lease_lost", began.elapsed());
            }
            Err(err) => tracing::error!(error = %err, "recording the end of a job failed"),
        }
    }
    .instrument(span)
    .await;
}

/// Renews the lease every `timings.heartbeat`; returns when the lease is lost (another
/// worker owns the job now, or it was renewed too late).
async fn heartbeat(db: DatabaseConnection, job_id: i32, owner: String, timings: Timings) {
    let lease = chrono::Duration::from_std(timings.lease).unwrap_or(chrono::Duration::seconds(30));
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(timings.heartbeat).await;
        let renewed = jobs::Entity::update_many()
            .col_expr(
                jobs::Column::LeaseExpiresAt,
                Expr::value(Utc::now() + lease),
            )
            .filter(jobs::Column::Id.eq(job_id))
            .filter(jobs::Column::LeaseOwner.eq(owner.as_str()))
            .filter(jobs::Column::Status.eq(JobStatus::Running))
            .exec(&db)
            .await;
        match renewed {
            Ok(result) if result.rows_affected == 1 => last_renewed = Instant::now(),
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(error = %err, job_id, "lease renewal failed");
                if last_renewed.elapsed() >= timings.lease {
                    // Another replica may hold the job by now: stop before it runs twice.
                    return;
                }
            }
        }
    }
}

/// Hands a running job's lease back: it stays `running` with a lease that has already
/// lapsed, so the next claim (on any replica) resumes it from its checkpoint.
async fn release(state: &AppState, job: &jobs::Model, owner: &str) -> Result<(), DbErr> {
    if lapse_lease(state, job, owner).await? {
        emit(
            state,
            job,
            "log",
            json!({ "message": "this server is shutting down: the job was handed back and resumes from its last finished epoch" }),
        )
        .await?;
        notify(&state.db, WORK_CHANNEL, job.id.to_string()).await?;
    }
    Ok(())
}

/// Lets `owner`'s lease on a running job lapse now, so the next claim takes the job up
/// from its checkpoint. Returns whether `owner` still held it.
async fn lapse_lease(state: &AppState, job: &jobs::Model, owner: &str) -> Result<bool, DbErr> {
    let now = Utc::now();
    Ok(jobs::Entity::update_many()
        .col_expr(
            jobs::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            jobs::Column::LeaseExpiresAt,
            Expr::value(now - chrono::Duration::seconds(1)),
        )
        .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
        .filter(jobs::Column::Id.eq(job.id))
        .filter(jobs::Column::LeaseOwner.eq(owner))
        .filter(jobs::Column::Status.eq(JobStatus::Running))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1)
}

/// Attempts a job gets when it fails only because the database was momentarily busy.
const CONTENTION_ATTEMPTS: i32 = 10;

/// Whether a job that failed with `err` goes back to the queue (a write conflict or a lost
/// database connection, with attempts left) instead of failing: its handler should leave
/// visible state as it is.
pub(crate) fn will_retry(err: &anyhow::Error, job: &jobs::Model) -> bool {
    (is_contention(err) || is_connection_lost(err)) && job.attempts < CONTENTION_ATTEMPTS
}

/// The database connection dropped under the job (PostgreSQL restarted, a network blip):
/// the job is handed back and resumed from its checkpoint instead of failing. When the
/// database is still away, handing it back fails too and the lease simply lapses.
fn is_connection_lost(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    [
        "terminating connection",
        "the database system is shutting down",
        "the database system is starting up",
        "Connection refused",
        "Connection reset",
        "Broken pipe",
        "connection closed",
        "unexpected end of file",
        "error communicating with database",
        "pool timed out",
        "PoolTimedOut",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Whether a job failed because of a write conflict that running it again resolves:
/// SQLite's `database is locked` (a deferred transaction that could not take the write
/// lock, which `busy_timeout` does not wait out) or a PostgreSQL serialization failure or
/// deadlock. Handlers write in transactions, so the failed attempt left nothing behind.
fn is_contention(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    [
        "database is locked",
        "database table is locked",
        "could not serialize access",
        "deadlock detected",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Hands a job that hit a write conflict back to the queue at once (its lease lapsed), to
/// be claimed again — by this worker or another — and resumed from its checkpoint.
async fn retry_later(state: &AppState, job: &jobs::Model, owner: &str) -> Result<(), DbErr> {
    if lapse_lease(state, job, owner).await? {
        emit(
            state,
            job,
            "log",
            json!({ "message": format!("the database was busy; running the job again (attempt {} of {CONTENTION_ATTEMPTS})", job.attempts + 1) }),
        )
        .await?;
        state.jobs.work.notify_one();
        notify(&state.db, WORK_CHANNEL, job.id.to_string()).await?;
    }
    Ok(())
}

/// Records how a job ended, if `owner` still holds its lease. Returns whether it did.
async fn finish(
    state: &AppState,
    job: &jobs::Model,
    owner: &str,
    outcome: anyhow::Result<Outcome>,
) -> Result<bool, DbErr> {
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
    let recorded = update
        .filter(jobs::Column::Id.eq(job.id))
        .filter(jobs::Column::LeaseOwner.eq(owner))
        .filter(jobs::Column::Status.eq(JobStatus::Running))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    if recorded {
        emit(state, job, kind, payload).await?;
    }
    Ok(recorded)
}

/// Feeds this process's [`JobBus`] from PostgreSQL `NOTIFY`s until the process exits:
/// event ids become events (fetched from the log, in the order they were announced) and
/// work announcements wake an idle worker. Reconnects after a lost connection; subscribers
/// fill what was missed meanwhile from the log.
async fn listen(state: AppState, url: String) {
    let mut first = true;
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "LISTEN connection failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(err) = listener.listen_all([EVENTS_CHANNEL, WORK_CHANNEL]).await {
            tracing::warn!(error = %err, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !first {
            observability::notify_reconnected();
        }
        first = false;
        loop {
            let notification = match listener.try_recv().await {
                Ok(Some(notification)) => notification,
                Ok(None) => {
                    // The connection dropped; try_recv reconnects on its next call.
                    observability::notify_reconnected();
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN connection lost");
                    break;
                }
            };
            // Take whatever else already arrived, so one query fetches a burst of events.
            let mut event_ids = Vec::new();
            let mut batch = vec![notification];
            while let Some(more) = listener.next_buffered() {
                batch.push(more);
            }
            for n in batch {
                if n.channel() == WORK_CHANNEL {
                    state.jobs.work.notify_one();
                } else if let Ok(id) = n.payload().parse::<i32>() {
                    event_ids.push(id);
                }
            }
            if event_ids.is_empty() || state.jobs.events.receiver_count() == 0 {
                continue;
            }
            match fetch_events(&state.db, &event_ids).await {
                Ok(events) => {
                    for event in events {
                        state.jobs.publish(event);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "fetching announced job events failed"),
            }
        }
    }
}

/// The events with these ids, with their job's owner, in id order (for one job, id order
/// is `seq` order: its events are written one after another).
async fn fetch_events(db: &DatabaseConnection, ids: &[i32]) -> Result<Vec<JobEvent>, DbErr> {
    Ok(job_events::Entity::find()
        .filter(job_events::Column::Id.is_in(ids.iter().copied()))
        .find_also_related(jobs::Entity)
        .order_by_asc(job_events::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .filter_map(|(row, job)| job.map(|job| JobEvent::from_row(row, job.user_id)))
        .collect())
}
