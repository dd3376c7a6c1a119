//! Operational endpoints and Prometheus metrics: `/healthz`, `/readyz`, `/metrics`.
//!
//! Counters and histograms describe this process (one replica); Prometheus sums them over
//! replicas. `gradelab_jobs` (jobs by state) is read from the shared database at scrape
//! time, so every replica reports the same cluster-wide numbers: aggregate it with `max`,
//! not `sum`.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use entity::enums::JobStatus;
use entity::jobs;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sea_orm::sea_query::Expr;
use sea_orm::{EntityTrait, QuerySelect};

use crate::state::AppState;

type Labels = Vec<(&'static str, String)>;

/// Every metric this process exports.
pub struct Metrics {
    registry: Registry,
    jobs: Family<Labels, Gauge>,
    job_runs: Family<Labels, Counter>,
    job_run_seconds: Family<Labels, Histogram>,
    job_claims: Counter,
    job_releases: Counter,
    job_events: Counter,
    event_delivery_seconds: Histogram,
    llm_calls: Family<Labels, Counter>,
    llm_tokens: Family<Labels, Counter>,
    llm_call_seconds: Family<Labels, Histogram>,
    subscriptions_open: Gauge<i64, std::sync::atomic::AtomicI64>,
    notify_reconnects: Counter<u64, AtomicU64>,
}

fn seconds_histogram() -> Histogram {
    // 1 ms … ~9 min.
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("gradelab");
        let jobs = Family::<Labels, Gauge>::default();
        registry.register(
            "jobs",
            "Jobs in the shared database by state (cluster-wide, read at scrape time)",
            jobs.clone(),
        );
        let job_runs = Family::<Labels, Counter>::default();
        registry.register(
            "job_runs",
            "Job runs this replica finished, by kind and outcome (succeeded, failed, cancelled, released)",
            job_runs.clone(),
        );
        let job_run_seconds =
            Family::<Labels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        registry.register(
            "job_run_seconds",
            "Wall time of one job run on this replica, by kind",
            job_run_seconds.clone(),
        );
        let job_claims = Counter::default();
        registry.register(
            "job_claims",
            "Job leases this replica took (new jobs and take-overs)",
            job_claims.clone(),
        );
        let job_releases = Counter::default();
        registry.register(
            "job_releases",
            "Job leases this replica gave back at shutdown",
            job_releases.clone(),
        );
        let job_events = Counter::default();
        registry.register(
            "job_events_written",
            "Job events this replica wrote",
            job_events.clone(),
        );
        let event_delivery_seconds = seconds_histogram();
        registry.register(
            "job_event_delivery_seconds",
            "Time from a job event's write (any replica) to its delivery on this replica's live bus",
            event_delivery_seconds.clone(),
        );
        let llm_calls = Family::<Labels, Counter>::default();
        registry.register(
            "llm_calls",
            "LLM calls by model, outcome (ok, error) and cache (hit, miss)",
            llm_calls.clone(),
        );
        let llm_tokens = Family::<Labels, Counter>::default();
        registry.register(
            "llm_tokens",
            "LLM tokens billed, by model and type (prompt, completion)",
            llm_tokens.clone(),
        );
        let llm_call_seconds =
            Family::<Labels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        registry.register(
            "llm_call_seconds",
            "Latency of one LLM call (retries included), by model",
            llm_call_seconds.clone(),
        );
        let subscriptions_open = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "subscriptions_open",
            "Job-event subscriptions open on this replica",
            subscriptions_open.clone(),
        );
        let notify_reconnects = Counter::default();
        registry.register(
            "notify_reconnects",
            "Times this replica's LISTEN connection was re-established",
            notify_reconnects.clone(),
        );
        Self {
            registry,
            jobs,
            job_runs,
            job_run_seconds,
            job_claims,
            job_releases,
            job_events,
            event_delivery_seconds,
            llm_calls,
            llm_tokens,
            llm_call_seconds,
            subscriptions_open,
            notify_reconnects,
        }
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Records a finished job run (`outcome`: succeeded, failed, cancelled, released).
pub fn job_run(kind: &str, outcome: &str, took: Duration) {
    let m = metrics();
    m.job_runs
        .get_or_create(&vec![
            ("kind", kind.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
    m.job_run_seconds
        .get_or_create(&vec![("kind", kind.to_owned())])
        .observe(took.as_secs_f64());
}

/// Records a claimed lease.
pub fn job_claimed() {
    metrics().job_claims.inc();
}

/// Records a lease given back at shutdown.
pub fn job_released() {
    metrics().job_releases.inc();
}

/// Records a written job event.
pub fn job_event_written() {
    metrics().job_events.inc();
}

/// Records how long an event took from its write to this replica's live bus.
pub fn event_delivered(after: Duration) {
    metrics()
        .event_delivery_seconds
        .observe(after.as_secs_f64());
}

/// Records a re-established LISTEN connection.
pub fn notify_reconnected() {
    metrics().notify_reconnects.inc();
}

/// Records one LLM call.
pub fn llm_call(
    model: &str,
    ok: bool,
    cache_hit: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency: Duration,
) {
    let m = metrics();
    m.llm_calls
        .get_or_create(&vec![
            ("model", model.to_owned()),
            ("outcome", if ok { "ok" } else { "error" }.to_owned()),
            ("cache", if cache_hit { "hit" } else { "miss" }.to_owned()),
        ])
        .inc();
    for (kind, tokens) in [("prompt", prompt_tokens), ("completion", completion_tokens)] {
        m.llm_tokens
            .get_or_create(&vec![
                ("model", model.to_owned()),
                ("type", kind.to_owned()),
            ])
            .inc_by(u64::try_from(tokens).unwrap_or(0));
    }
    m.llm_call_seconds
        .get_or_create(&vec![("model", model.to_owned())])
        .observe(latency.as_secs_f64());
}

/// Counts an open subscription until the guard is dropped.
pub struct SubscriptionGuard(());

impl SubscriptionGuard {
    /// Counts one more open subscription.
    pub fn open() -> Self {
        metrics().subscriptions_open.inc();
        Self(())
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        metrics().subscriptions_open.dec();
    }
}

const ALL_STATES: [(JobStatus, &str); 5] = [
    (JobStatus::Queued, "queued"),
    (JobStatus::Running, "running"),
    (JobStatus::Succeeded, "succeeded"),
    (JobStatus::Failed, "failed"),
    (JobStatus::Cancelled, "cancelled"),
];

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics_handler(State(state): State<AppState>) -> Response {
    let m = metrics();
    let counts: Result<Vec<(JobStatus, i64)>, _> = jobs::Entity::find()
        .select_only()
        .column(jobs::Column::Status)
        .column_as(Expr::col(jobs::Column::Id).count(), "n")
        .group_by(jobs::Column::Status)
        .into_tuple()
        .all(&state.db)
        .await;
    match counts {
        Ok(counts) => {
            for (status, name) in ALL_STATES {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                m.jobs
                    .get_or_create(&vec![("state", name.to_owned())])
                    .set(n);
            }
        }
        Err(err) => tracing::warn!(error = %err, "counting jobs for /metrics failed"),
    }
    let mut body = String::new();
    if let Err(err) = encode(&mut body, &m.registry) {
        tracing::error!(error = %err, "encoding metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /readyz`: 200 when the database answers and the replica is not shutting down,
/// 503 otherwise (a load balancer then stops sending it traffic).
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.jobs.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(3), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database timed out").into_response(),
    }
}
