//! GraphQL types for reports.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Json, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::reports;
use serde_json::Value;

use crate::error::GqlResultExt;
use crate::graphql::{require_user, state};
use crate::service::reports as service;

/// Who wrote a report's narrative.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum NarrativeSource {
    /// The language model; every number it cites was checked against the report.
    Llm,
    /// Computed by GradeLab from the figures: the fallback when the model is not asked,
    /// fails, replies with garbage or cites a number the report does not show.
    Computed,
}

/// A self-contained HTML report on a training job or a test run.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Report {
    /// Stable identifier.
    pub id: ID,
    /// Title, e.g. "Training job 12 — Physics mock".
    pub title: String,
    /// When it was generated.
    pub created_at: DateTime<Utc>,
    /// Who wrote the narrative now in the report.
    pub narrative_source: NarrativeSource,
    /// The whole HTML document (no scripts, no external resources, a strict CSP).
    pub html: String,
    /// The narrative as JSON: `executive_summary`, `insights`, `recommendations`,
    /// `source`, `fallback_reason`, `model`.
    pub narrative: Option<Json<Value>>,
    /// Why the computed narrative is shown, when it is.
    pub fallback_reason: Option<String>,
    /// The training job (or the test run's job) the report is about.
    pub job_id: Option<ID>,
    /// The test run the report is about, if any.
    pub test_run_id: Option<ID>,
    /// The `report` job writing the LLM narrative (follow it with `jobEvents`), while it
    /// has not finished.
    pub narrative_job_id: Option<ID>,
    /// Where to download the HTML (`GET` with `Authorization: Bearer <token>`).
    pub download_url: String,
    #[graphql(skip)]
    pub pending_job: Option<i32>,
}

#[ComplexObject]
impl Report {
    /// Whether the LLM narrative is still being written.
    async fn narrative_pending(&self, ctx: &Context<'_>) -> Result<bool> {
        let Some(job_id) = self.pending_job else {
            return Ok(false);
        };
        let auth = require_user(ctx)?;
        service::narrative_pending(&state(ctx)?.db, auth.user_id, job_id)
            .await
            .gql()
    }
}

impl From<reports::Model> for Report {
    fn from(r: reports::Model) -> Self {
        let narrative = service::stored_narrative(&r);
        let pending_job = narrative.as_ref().and_then(|n| n.pending_job_id);
        Self {
            id: r.id.into(),
            title: r.title,
            created_at: r.created_at,
            narrative_source: if r.narrative_source == "llm" {
                NarrativeSource::Llm
            } else {
                NarrativeSource::Computed
            },
            html: r.html,
            narrative: r.narrative.map(Json),
            fallback_reason: narrative.and_then(|n| n.fallback_reason),
            job_id: r.job_id.map(Into::into),
            test_run_id: r.test_run_id.map(Into::into),
            narrative_job_id: pending_job.map(Into::into),
            download_url: format!("/reports/{}/download", r.id),
            pending_job,
        }
    }
}

/// What to report on: exactly one of `jobId` (a training job) or `testRunId`.
#[derive(InputObject)]
pub struct GenerateReportInput {
    /// A training job.
    pub job_id: Option<ID>,
    /// A test run.
    pub test_run_id: Option<ID>,
    /// Ask the language model for the narrative (in a background `report` job); when
    /// false, the computed narrative is used.
    #[graphql(default = true)]
    pub use_llm: bool,
}
