//! The dashboard in one request: recent guides, recent jobs and language-model spend
//! (`queries/dashboard.graphql`).

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::guides::GuideSummary;
use super::jobs::JobStatus;
use super::json::Read;
use super::testing::{read_reports, ReportSummary};
use super::{http, ApiError};

type DateTime = String;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/dashboard.graphql",
    response_derives = "Serialize"
)]
struct Dashboard;

/// What a job does, as a label.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "EXTRACTION" => "Item extraction",
        "TRAINING" => "Training",
        "TEST_RUN" => "Test run",
        "REPORT" => "Report",
        _ => "Job",
    }
}

/// A job as the dashboard lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSummary {
    /// Id.
    pub id: String,
    /// What it does.
    pub kind: &'static str,
    /// Where it is.
    pub status: JobStatus,
    /// The guide it works on.
    pub guide_id: Option<String>,
    /// Fraction done.
    pub progress: f64,
    /// LLM cost so far, US dollars.
    pub cost_usd: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// Spend for one purpose.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpend {
    /// `grade`, `extract_items`, …
    pub task: String,
    /// Calls made.
    pub calls: i64,
    /// Cost, US dollars.
    pub cost_usd: f64,
}

/// The user's language-model usage.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    /// Calls made.
    pub calls: i64,
    /// Calls answered from the cache.
    pub cache_hits: i64,
    /// Calls that failed.
    pub failed_calls: i64,
    /// Prompt plus completion tokens.
    pub tokens: i64,
    /// Cost, US dollars.
    pub cost_usd: f64,
    /// Per purpose, most expensive first.
    pub by_task: Vec<TaskSpend>,
}

/// Everything the dashboard shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Overview {
    /// Number of guides.
    pub guide_count: i64,
    /// The newest guides.
    pub guides: Vec<GuideSummary>,
    /// The newest jobs.
    pub jobs: Vec<JobSummary>,
    /// The newest reports.
    pub reports: Vec<ReportSummary>,
    /// Language-model usage.
    pub usage: Usage,
}

/// Loads the dashboard.
pub async fn load() -> Result<Overview, ApiError> {
    Ok(read(&http::post::<Dashboard>(dashboard::Variables).await?))
}

fn read(data: &Value) -> Overview {
    let guides = data.at("guides");
    let usage = data.at("llmUsage");
    let total = usage.at("total");
    Overview {
        guide_count: guides.int("totalCount"),
        guides: guides
            .list("nodes")
            .iter()
            .map(GuideSummary::read)
            .collect(),
        jobs: data
            .list("jobs")
            .iter()
            .map(|job| JobSummary {
                id: job.text("id"),
                kind: kind_label(&job.text("kind")),
                status: JobStatus::from_name(&job.text("status")),
                guide_id: job.opt_text("guideId"),
                progress: job.num("progress"),
                cost_usd: job.num("costUsd"),
                error: job.opt_text("error"),
                created_at: job.text("createdAt"),
            })
            .collect(),
        reports: read_reports(data),
        usage: Usage {
            calls: total.int("calls"),
            cache_hits: total.int("cacheHits"),
            failed_calls: total.int("failedCalls"),
            tokens: total.int("promptTokens") + total.int("completionTokens"),
            cost_usd: total.num("costUsd"),
            by_task: usage
                .list("byTask")
                .iter()
                .map(|task| TaskSpend {
                    task: task.text("task"),
                    calls: task.at("usage").int("calls"),
                    cost_usd: task.at("usage").num("costUsd"),
                })
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    #[test]
    fn reads_the_overview() {
        let totals = json!({
            "calls": 12, "cacheHits": 2, "failedCalls": 1, "promptTokens": 1000,
            "completionTokens": 234, "costUsd": 0.0123,
        });
        let data = typed::<Dashboard>(json!({
            "guides": { "totalCount": 1, "nodes": [{
                "id": "9", "title": "Bio", "filename": null, "status": "PENDING",
                "itemCount": 0, "totalMarks": 0.0, "createdAt": "2026-05-30T10:00:00Z",
            }]},
            "jobs": [{
                "id": "4", "kind": "EXTRACTION", "status": "SUCCEEDED", "guideId": "9",
                "progress": 1.0, "costUsd": 0.0, "error": null, "createdAt": "2026-05-30T10:00:00Z",
            }],
            "reports": { "nodes": [{
                "id": "2", "title": "Test run 3", "createdAt": "2026-05-30T10:00:00Z",
                "narrativePending": false,
            }]},
            "llmUsage": {
                "total": totals,
                "byTask": [{ "task": "extract_items", "usage": { "calls": 12, "costUsd": 0.0123 } }],
            },
        }));
        let overview = read(&data);
        assert_eq!(overview.guide_count, 1);
        assert_eq!(overview.guides[0].title, "Bio");
        let job = &overview.jobs[0];
        assert_eq!(
            (job.kind, job.status),
            ("Item extraction", JobStatus::Succeeded)
        );
        assert_eq!(job.guide_id.as_deref(), Some("9"));
        assert_eq!(overview.usage.tokens, 1234);
        assert_eq!(overview.reports[0].title, "Test run 3");
        assert_eq!(overview.usage.by_task[0].task, "extract_items");
        assert_eq!(overview.usage.by_task[0].calls, 12);
    }
}
