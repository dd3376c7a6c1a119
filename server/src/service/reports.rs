//! Reports: generating one for a training job or a test run, listing and reading them, and
//! the `report` job that asks the LLM for the narrative.
//!
//! [`generate`] stores the report at once with the computed narrative. When the LLM is
//! wanted it also queues a `report` job; the job asks the caller's model for a narrative,
//! checks that every number it cites is shown in the report, and replaces the computed
//! narrative only when the check passes. Otherwise the computed one stays, labelled with
//! the reason.

use chrono::Utc;
use entity::enums::JobKind;
use entity::{jobs, reports};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::instrument;

use crate::error::AppError;
use crate::llm::{CachePolicy, CallContext, Message};
use crate::reports::data::{self, CollectError, ReportData, Subject};
use crate::reports::narrative::{self, Narrative, NarrativeSource, NarrativeText};
use crate::service::jobs::{
    self as job_service, HandlerFuture, JobContext, JobError, JobHandler, Outcome,
};
use crate::state::AppState;

/// Most tokens the narrative reply may use.
const NARRATIVE_MAX_TOKENS: u32 = 600;

/// What went wrong with a report request.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such report for this user.
    #[error("report {0} not found")]
    NotFound(i32),
    /// The subject is missing or not ready.
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
    /// Queueing the narrative job failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// Rendering failed (a bug).
    #[error("rendering the report failed: {0:#}")]
    Render(anyhow::Error),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<ReportError> for AppError {
    fn from(err: ReportError) -> Self {
        match err {
            ReportError::NotFound(id) => AppError::not_found("report", id),
            ReportError::Collect(CollectError::NotFound(what, id)) => AppError::not_found(what, id),
            ReportError::Collect(CollectError::NotReady(message))
            | ReportError::Invalid(message) => AppError::bad_input(message),
            ReportError::Collect(CollectError::Db(err)) | ReportError::Db(err) => {
                AppError::internal(err)
            }
            ReportError::Job(err) => err.into(),
            ReportError::Render(err) => AppError::internal(err),
        }
    }
}

/// Parameters of a `report` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReportJobParams {
    report_id: i32,
}

fn subject_of(report: &reports::Model) -> Option<Subject> {
    match (report.test_run_id, report.job_id) {
        (Some(id), _) => Some(Subject::TestRun(id)),
        (None, Some(id)) => Some(Subject::TrainingJob(id)),
        (None, None) => None,
    }
}

fn store_narrative(n: &Narrative) -> serde_json::Value {
    serde_json::to_value(n).unwrap_or_else(|_| json!({}))
}

/// Reads a stored narrative.
pub fn stored_narrative(report: &reports::Model) -> Option<Narrative> {
    report
        .narrative
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// Generates a report on `subject` for `user_id` and stores it with the computed narrative;
/// with `use_llm`, queues the job that asks the LLM for a better one.
#[instrument(skip(state))]
pub async fn generate(
    state: &AppState,
    user_id: i32,
    subject: Subject,
    use_llm: bool,
) -> Result<reports::Model, ReportError> {
    let data = data::collect(&state.db, user_id, subject).await?;
    let reason = (!use_llm).then(|| "the language model was not asked for this report".to_owned());
    let narrative = narrative::computed(&data, reason);
    let html = crate::reports::render(&data, &narrative).map_err(ReportError::Render)?;
    let report = reports::ActiveModel {
        user_id: Set(user_id),
        job_id: Set(data.job_id),
        test_run_id: Set(data.test_run_id),
        title: Set(data.title.chars().take(250).collect()),
        html: Set(html),
        narrative: Set(Some(store_narrative(&narrative))),
        narrative_source: Set(NarrativeSource::Computed.as_str().to_owned()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    if !use_llm {
        return Ok(report);
    }
    let job = job_service::create(
        state,
        user_id,
        Some(data.guide_id),
        JobKind::Report,
        json!(ReportJobParams {
            report_id: report.id
        }),
    )
    .await?;
    let pending = Narrative {
        pending_job_id: Some(job.id),
        ..narrative
    };
    // The worker may already have finished: only mark it pending if it still is computed
    // and unmarked.
    let html = crate::reports::render(&data, &pending).map_err(ReportError::Render)?;
    reports::Entity::update_many()
        .col_expr(reports::Column::Html, sea_orm::sea_query::Expr::value(html))
        .col_expr(
            reports::Column::Narrative,
            sea_orm::sea_query::Expr::value(store_narrative(&pending)),
        )
        .filter(reports::Column::Id.eq(report.id))
        .filter(reports::Column::NarrativeSource.eq(NarrativeSource::Computed.as_str()))
        .filter(reports::Column::Html.eq(report.html.clone()))
        .exec(&state.db)
        .await?;
    get(&state.db, user_id, report.id).await
}

/// One of the caller's reports.
pub async fn get(
    db: &DatabaseConnection,
    user_id: i32,
    id: i32,
) -> Result<reports::Model, ReportError> {
    reports::Entity::find_by_id(id)
        .filter(reports::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(ReportError::NotFound(id))
}

/// The caller's reports with ids below `before`, newest first.
pub async fn list(
    db: &DatabaseConnection,
    user_id: i32,
    before: Option<i32>,
    limit: u64,
) -> Result<Vec<reports::Model>, ReportError> {
    let mut query = reports::Entity::find().filter(reports::Column::UserId.eq(user_id));
    if let Some(before) = before {
        query = query.filter(reports::Column::Id.lt(before));
    }
    Ok(query
        .order_by_desc(reports::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// How many reports the caller has.
pub async fn count(db: &DatabaseConnection, user_id: i32) -> Result<u64, ReportError> {
    Ok(reports::Entity::find()
        .filter(reports::Column::UserId.eq(user_id))
        .count(db)
        .await?)
}

/// Whether a narrative job is still queued or running.
pub async fn narrative_pending(
    db: &DatabaseConnection,
    user_id: i32,
    job_id: i32,
) -> Result<bool, ReportError> {
    Ok(jobs::Entity::find_by_id(job_id)
        .filter(jobs::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .is_some_and(|job| !job_service::is_finished(job.status)))
}

/// Asks the caller's LLM for a narrative of `data`.
async fn ask_llm(ctx: &JobContext, data: &ReportData) -> anyhow::Result<(NarrativeText, String)> {
    let llm = &ctx.state.llm;
    let params = llm
        .params_for_user(ctx.job.user_id)
        .await?
        .temperature(0.0)
        .seed(1)
        .max_tokens(NARRATIVE_MAX_TOKENS)
        // Each generation is a request for a fresh narrative: a cached, rejected reply
        // would make asking again pointless.
        .cache(CachePolicy::Never);
    let call = CallContext::task("narrative")
        .user(ctx.job.user_id)
        .job(ctx.job.id);
    let messages = [
        Message::system(narrative::SYSTEM_PROMPT),
        Message::user(narrative::user_prompt(data)),
    ];
    let reply = llm
        .structured::<NarrativeText>(&call, &params, &messages)
        .await?;
    Ok((reply.value, params.model))
}

/// Writes the narrative of a `report` job.
#[derive(Default)]
pub struct ReportHandler;

impl JobHandler for ReportHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move { run(ctx).await })
    }
}

async fn run(ctx: JobContext) -> anyhow::Result<Outcome> {
    let outcome = write_narrative(&ctx).await;
    if let Err(err) = &outcome {
        // Never leave the report saying its narrative is being written.
        if let Err(cleanup) = settle_after_failure(&ctx, err).await {
            tracing::warn!(
                error = format!("{cleanup:#}"),
                "could not settle a failed report job"
            );
        }
    }
    outcome
}

async fn settle_after_failure(ctx: &JobContext, err: &anyhow::Error) -> anyhow::Result<()> {
    let params: ReportJobParams = serde_json::from_value(ctx.job.params.clone())?;
    let report = get(&ctx.state.db, ctx.job.user_id, params.report_id).await?;
    let subject =
        subject_of(&report).ok_or_else(|| anyhow::anyhow!("the report has no subject"))?;
    let data = data::collect(&ctx.state.db, ctx.job.user_id, subject).await?;
    let reason: String = format!("writing the narrative failed: {err:#}")
        .chars()
        .take(400)
        .collect();
    save(
        ctx,
        &report,
        &data,
        &narrative::computed(&data, Some(reason)),
    )
    .await
}

async fn write_narrative(ctx: &JobContext) -> anyhow::Result<Outcome> {
    let params: ReportJobParams = serde_json::from_value(ctx.job.params.clone())?;
    let db = &ctx.state.db;
    let report = get(db, ctx.job.user_id, params.report_id).await?;
    let subject =
        subject_of(&report).ok_or_else(|| anyhow::anyhow!("the report has no subject"))?;
    let data = data::collect(db, ctx.job.user_id, subject).await?;
    let computed = narrative::computed(&data, None);
    // The figures a narrative may cite: the report as rendered, without any narrative.
    let allowed = crate::reports::allowed_numbers(&crate::reports::render(&data, &computed)?);
    if ctx.cancel_requested().await? {
        let n = narrative::computed(&data, Some("the narrative job was cancelled".into()));
        save(ctx, &report, &data, &n).await?;
        return Ok(Outcome::Cancelled);
    }
    ctx.progress(0.1, "asking the language model for the narrative")
        .await?;
    let narrative = match ask_llm(ctx, &data).await {
        Ok((text, model)) => {
            let candidate = Narrative::from_llm(text, &model);
            match allowed.check(&candidate) {
                Ok(()) => candidate,
                Err(rejection) => {
                    tracing::info!(%rejection, "narrative rejected");
                    ctx.emit(
                        "narrative_rejected",
                        json!({ "reason": rejection.to_string(), "narrative": store_narrative(&candidate) }),
                    )
                    .await?;
                    narrative::computed(&data, Some(rejection.to_string()))
                }
            }
        }
        Err(err) => {
            let reason = format!("the language model failed: {err:#}");
            narrative::computed(&data, Some(reason.chars().take(400).collect()))
        }
    };
    save(ctx, &report, &data, &narrative).await?;
    ctx.emit(
        "narrative",
        json!({ "source": narrative.source.as_str(), "fallback_reason": narrative.fallback_reason }),
    )
    .await?;
    Ok(Outcome::Succeeded(json!({
        "report_id": report.id,
        "narrative_source": narrative.source.as_str(),
        "fallback_reason": narrative.fallback_reason,
    })))
}

async fn save(
    ctx: &JobContext,
    report: &reports::Model,
    data: &ReportData,
    narrative: &Narrative,
) -> anyhow::Result<()> {
    let html = crate::reports::render(data, narrative)?;
    let mut row: reports::ActiveModel = report.clone().into();
    row.html = Set(html);
    row.narrative = Set(Some(store_narrative(narrative)));
    row.narrative_source = Set(narrative.source.as_str().to_owned());
    row.update(&ctx.state.db).await?;
    Ok(())
}
