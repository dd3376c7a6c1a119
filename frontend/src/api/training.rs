//! Training graders: the jobs, the cost estimate, starting a job, one job, and reading
//! its `epoch` events (`queries/{training_jobs,estimate_training,start_training,job}.graphql`).

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::jobs::{JobEvent, JobStatus};
use super::json::Read;
use super::{http, ApiError};

type DateTime = String;
#[expect(
    clippy::upper_case_acronyms,
    reason = "graphql_client names custom scalars after the schema"
)]
type JSON = Value;

macro_rules! operation {
    ($name:ident, $path:tt) => {
        #[derive(GraphQLQuery)]
        #[graphql(schema_path = "../schema.graphql", query_path = $path, response_derives = "Serialize")]
        struct $name;
    };
}

operation!(TrainingJobs, "queries/training_jobs.graphql");
operation!(EstimateTraining, "queries/estimate_training.graphql");
operation!(StartTraining, "queries/start_training.graphql");
operation!(Job, "queries/job.graphql");

/// How the grader scores answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A language model with a rubric prompt, exemplars and calibration.
    Llm,
    /// Local sentence embeddings and a fitted regression (offline).
    Similarity,
    /// Both, weighted by validation agreement.
    Ensemble,
}

impl Engine {
    /// All engines, for a select.
    pub const ALL: [Self; 3] = [Self::Llm, Self::Similarity, Self::Ensemble];

    /// The `<option>` value.
    pub fn key(self) -> &'static str {
        match self {
            Self::Llm => "LLM",
            Self::Similarity => "SIMILARITY",
            Self::Ensemble => "ENSEMBLE",
        }
    }

    /// From an `<option>` value.
    pub fn from_key(key: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|engine| engine.key() == key)
            .unwrap_or(Self::Llm)
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Llm => "Language model (rubric prompt, exemplars, calibration)",
            Self::Similarity => "Similarity (local embeddings and regression, offline)",
            Self::Ensemble => "Ensemble (both, weighted by agreement)",
        }
    }
}

/// What to train and within which limits; the rest takes the server's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The guide whose scored answers train the grader.
    pub guide_id: String,
    /// The engine.
    pub engine: Engine,
    /// Epochs after epoch 0.
    pub epochs: i64,
    /// Stop after this many epochs without improvement.
    pub patience: i64,
    /// Token budget, if any.
    pub budget_tokens: Option<i64>,
    /// Cost budget in US dollars, if any.
    pub budget_usd: Option<f64>,
}

macro_rules! training_input {
    ($module:ident, $plan:expr) => {{
        let plan = $plan;
        $module::TrainingInput {
            guide_id: plan.guide_id,
            engine: match plan.engine {
                Engine::Llm => $module::GraderEngine::LLM,
                Engine::Similarity => $module::GraderEngine::SIMILARITY,
                Engine::Ensemble => $module::GraderEngine::ENSEMBLE,
            },
            name: None,
            grader_id: None,
            epochs: plan.epochs,
            patience: plan.patience,
            budget_tokens: plan.budget_tokens,
            budget_usd: plan.budget_usd,
            // The schema's defaults.
            seed: 42,
            model: None,
            temperature: 0.0,
            max_tokens: 160,
            exemplars: 0,
            max_exemplars: 4,
            calibration: $module::CalibrationMethod::SHIFT,
            calibration_sample: 40,
            validation_limit: None,
            gradient_epochs: 5,
            learning_rate: None,
            l2: None,
            k: None,
        }
    }};
}

/// What a training job would cost at most.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The model.
    pub model: String,
    /// Model calls at most.
    pub calls: i64,
    /// Tokens at most.
    pub tokens: i64,
    /// Cost in US dollars; `None` when the model's price is unknown.
    pub cost_usd: Option<f64>,
    /// Scored train answers.
    pub train_answers: i64,
    /// Validation answers graded each epoch.
    pub validation_answers: i64,
    /// How the numbers were reached.
    pub note: String,
}

fn read_estimate(estimate: &Value) -> Estimate {
    Estimate {
        model: estimate.text("model"),
        calls: estimate.int("calls"),
        tokens: estimate.int("totalTokens"),
        cost_usd: estimate.at("costUsd").as_f64(),
        train_answers: estimate.int("trainAnswers"),
        validation_answers: estimate.int("validationAnswers"),
        note: estimate.text("note"),
    }
}

/// The cost of `plan`, checked as `start` would check it.
pub async fn estimate(plan: Plan) -> Result<Estimate, ApiError> {
    let variables = estimate_training::Variables {
        input: training_input!(estimate_training, plan),
    };
    let data = http::post::<EstimateTraining>(variables).await?;
    Ok(read_estimate(data.at("estimateTraining")))
}

/// Starts a training job; returns its id.
pub async fn start(plan: Plan) -> Result<String, ApiError> {
    let variables = start_training::Variables {
        input: training_input!(start_training, plan),
    };
    let data = http::post::<StartTraining>(variables).await?;
    Ok(data.at("startTraining").text("id"))
}

/// A training job as lists show it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingJob {
    /// Id.
    pub id: String,
    /// Where it is.
    pub status: JobStatus,
    /// Fraction done.
    pub progress: f64,
    /// The guide's title, when the guide still exists.
    pub guide: Option<String>,
    /// Last finished epoch.
    pub epoch: Option<i64>,
    /// Cost so far, US dollars.
    pub cost_usd: f64,
    /// Creation time.
    pub created_at: String,
}

/// A guide to train on.
#[derive(Clone, Debug, PartialEq)]
pub struct GuideChoice {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
}

/// The training jobs, newest first, and the guides a new job can train on.
pub async fn overview() -> Result<(Vec<TrainingJob>, Vec<GuideChoice>), ApiError> {
    Ok(read_overview(
        &http::post::<TrainingJobs>(training_jobs::Variables).await?,
    ))
}

fn read_overview(data: &Value) -> (Vec<TrainingJob>, Vec<GuideChoice>) {
    let guides: Vec<GuideChoice> = data
        .at("guides")
        .list("nodes")
        .iter()
        .map(|guide| GuideChoice {
            id: guide.text("id"),
            title: guide.text("title"),
        })
        .collect();
    let jobs = data
        .list("jobs")
        .iter()
        .map(|job| {
            let guide_id = job.opt_text("guideId");
            TrainingJob {
                id: job.text("id"),
                status: JobStatus::from_name(&job.text("status")),
                progress: job.num("progress"),
                guide: guides
                    .iter()
                    .find(|g| Some(&g.id) == guide_id.as_ref())
                    .map(|g| g.title.clone()),
                epoch: job.at("currentEpoch").as_i64(),
                cost_usd: job.num("costUsd"),
                created_at: job.text("createdAt"),
            }
        })
        .collect();
    (jobs, guides)
}

/// One job's state.
#[derive(Clone, Debug, PartialEq)]
pub struct JobInfo {
    /// Whether it is a training job.
    pub training: bool,
    /// Where it is.
    pub status: JobStatus,
    /// Fraction done.
    pub progress: f64,
    /// The guide it works on.
    pub guide_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// The grader version a finished training job produced.
    pub grader_version_id: Option<String>,
}

/// An id in a JSON payload, written as a number or a string.
pub fn json_id(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

fn read_job(job: &Value) -> JobInfo {
    JobInfo {
        training: job.text("kind") == "TRAINING",
        status: JobStatus::from_name(&job.text("status")),
        progress: job.num("progress"),
        guide_id: job.opt_text("guideId"),
        error: job.opt_text("error"),
        created_at: job.text("createdAt"),
        grader_version_id: json_id(job.at("result").at("grader_version_id")),
    }
}

/// One of the caller's jobs.
pub async fn job(id: String) -> Result<JobInfo, ApiError> {
    Ok(read_job(
        http::post::<Job>(job::Variables { id }).await?.at("job"),
    ))
}

/// One finished epoch, from its `epoch` event: a point of the learning curve.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochPoint {
    /// 0 for the base grader.
    pub epoch: i64,
    /// Quadratic weighted kappa on validation (higher is better).
    pub qwk: Option<f64>,
    /// Mean absolute error of normalised scores (lower is better).
    pub mae: Option<f64>,
    /// Share of exact marks.
    pub exact: Option<f64>,
    /// Whether the change was kept.
    pub kept: bool,
    /// The change in words.
    pub change: String,
    /// Tokens spent.
    pub tokens: i64,
    /// The best epoch after this one.
    pub best_epoch: i64,
}

impl EpochPoint {
    /// The point an `epoch` event describes.
    pub fn from_event(event: &JobEvent) -> Option<Self> {
        if event.kind != "epoch" {
            return None;
        }
        let payload = &event.payload;
        let metrics = payload.at("metrics");
        Some(Self {
            epoch: payload.int("epoch"),
            qwk: metrics.at("qwk").as_f64(),
            mae: metrics.at("mae").as_f64(),
            exact: metrics.at("exact").as_f64(),
            kept: payload.flag("kept"),
            change: payload.at("change").text("description"),
            tokens: payload.int("tokens"),
            best_epoch: payload.int("best_epoch"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    fn plan() -> Plan {
        Plan {
            guide_id: "3".into(),
            engine: Engine::Similarity,
            epochs: 4,
            patience: 2,
            budget_tokens: None,
            budget_usd: Some(0.5),
        }
    }

    #[test]
    fn a_plan_becomes_the_schema_input_with_its_defaults() {
        let input = serde_json::to_value(training_input!(start_training, plan())).expect("JSON");
        assert_eq!(input["guideId"], "3");
        assert_eq!(input["engine"], "SIMILARITY");
        assert_eq!(input["epochs"], 4);
        assert_eq!(input["budgetUsd"], 0.5);
        assert_eq!(input["calibration"], "SHIFT");
        assert_eq!(input["maxTokens"], 160);
    }

    #[test]
    fn reads_estimates_jobs_and_epochs() {
        let estimate = typed::<EstimateTraining>(json!({ "estimateTraining": {
            "model": "local", "calls": 120, "totalTokens": 50000, "costUsd": null,
            "trainAnswers": 30, "validationAnswers": 10, "note": "upper bound",
        }}));
        let estimate = read_estimate(estimate.at("estimateTraining"));
        assert_eq!(
            (estimate.calls, estimate.tokens, estimate.cost_usd),
            (120, 50000, None)
        );

        let data = typed::<TrainingJobs>(json!({
            "jobs": [{
                "id": "8", "status": "RUNNING", "progress": 0.4, "guideId": "3",
                "currentEpoch": 1, "costUsd": 0.0, "createdAt": "2026-05-30T10:00:00Z",
            }],
            "guides": { "nodes": [{ "id": "3", "title": "Bio", "status": "READY" }] },
        }));
        let (jobs, guides) = read_overview(&data);
        assert_eq!(guides[0].title, "Bio");
        assert_eq!(jobs[0].guide.as_deref(), Some("Bio"));
        assert_eq!(jobs[0].epoch, Some(1));

        let job = typed::<Job>(json!({ "job": {
            "id": "8", "kind": "TRAINING", "status": "SUCCEEDED", "progress": 1.0,
            "guideId": "3", "error": null, "createdAt": "2026-05-30T10:00:00Z",
            "result": { "grader_id": 2, "grader_version_id": 5, "version": 1 },
        }}));
        let job = read_job(job.at("job"));
        assert!(job.training);
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.grader_version_id.as_deref(), Some("5"));

        let event = JobEvent {
            seq: 5,
            kind: "epoch".into(),
            payload: json!({
                "epoch": 1, "metrics": { "n": 10, "qwk": 0.61, "mae": 0.12, "exact": 0.5 },
                "kept": true, "change": { "kind": "exemplars", "description": "2 exemplars" },
                "tokens": 900, "best_epoch": 1,
            }),
            at: String::new(),
        };
        let point = EpochPoint::from_event(&event).expect("an epoch");
        assert_eq!((point.epoch, point.qwk, point.kept), (1, Some(0.61), true));
        assert_eq!(point.change, "2 exemplars");
        assert!(EpochPoint::from_event(&JobEvent {
            kind: "log".into(),
            ..event
        })
        .is_none());
    }
}
