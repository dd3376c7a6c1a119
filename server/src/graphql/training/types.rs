//! GraphQL types for training jobs, graders and grader versions.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Json, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::enums::Engine as DbEngine;
use entity::{grader_versions, graders};
use serde_json::Value;

use crate::error::GqlResultExt;
use crate::grading::calibration::CalibrationMethod as ServiceCalibration;
use crate::graphql::{parse_id, state};
use crate::service::training::{
    self as service, ConfigChange as ServiceChange, EpochMetrics, EpochRecord,
    TrainingEstimate as ServiceEstimate, TrainingParams,
};

/// How a grader scores answers.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DbEngine")]
pub enum GraderEngine {
    /// Rubric prompt, few-shot exemplars and calibration on a language model.
    Llm,
    /// Local sentence embeddings, lexical features and a fitted regression (offline).
    Similarity,
    /// Both, weighted by validation agreement.
    Ensemble,
}

/// How raw LLM scores are mapped onto the teacher's.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum CalibrationMethod {
    /// No calibration.
    None,
    /// The mean gap between the teacher's marks and the grader's added to every score: one
    /// parameter, so safe on a dozen answers; keeps the grader's ranking.
    Shift,
    /// A shift per question: the guide-wide one plus each question's own mean gap, shrunk
    /// towards the guide's when the question has few graded answers (a model can be harsh
    /// on one question and fair on the next).
    ItemShift,
    /// A least-squares line.
    Linear,
    /// A monotone (isotonic) map.
    Isotonic,
}

impl From<CalibrationMethod> for ServiceCalibration {
    fn from(method: CalibrationMethod) -> Self {
        match method {
            CalibrationMethod::None => Self::None,
            CalibrationMethod::Shift => Self::Shift,
            CalibrationMethod::ItemShift => Self::ItemShift,
            CalibrationMethod::Linear => Self::Linear,
            CalibrationMethod::Isotonic => Self::Isotonic,
        }
    }
}

/// What to train and within which limits.
#[derive(InputObject)]
pub struct TrainingInput {
    /// The guide whose scored answers train the grader.
    pub guide_id: ID,
    /// The engine.
    pub engine: GraderEngine,
    /// Name of the new grader (default: engine and guide title).
    pub name: Option<String>,
    /// Add the result as a new version of this grader (same guide and engine).
    pub grader_id: Option<ID>,
    /// Epochs after epoch 0 (which measures the base grader), at most.
    #[graphql(default = 5, validator(minimum = 0, maximum = 100))]
    pub epochs: i32,
    /// Stop after this many epochs in a row without improvement.
    #[graphql(default = 3, validator(minimum = 1, maximum = 100))]
    pub patience: i32,
    /// Stop before the job's prompt + completion tokens would exceed this.
    pub budget_tokens: Option<i64>,
    /// Stop once the job's estimated cost reaches this, in US dollars.
    pub budget_usd: Option<f64>,
    /// Seed of every random choice.
    #[graphql(default = 42, validator(minimum = 0))]
    pub seed: i64,
    /// Model name (default: your configured model).
    pub model: Option<String>,
    /// Sampling temperature (0 makes calls repeatable and cacheable).
    #[graphql(default = 0.0)]
    pub temperature: f64,
    /// Completion-token limit per grading call.
    #[graphql(default = 160, validator(minimum = 48, maximum = 4096))]
    pub max_tokens: i32,
    /// Exemplars in the base LLM grader (0: zero-shot).
    #[graphql(default = 0, validator(minimum = 0, maximum = 8))]
    pub exemplars: i32,
    /// Most exemplars a change may try.
    #[graphql(default = 4, validator(minimum = 1, maximum = 8))]
    pub max_exemplars: i32,
    /// Calibration fitted first.
    #[graphql(default_with = "CalibrationMethod::Shift")]
    pub calibration: CalibrationMethod,
    /// Train answers graded to fit a calibration.
    #[graphql(default = 40, validator(minimum = 0, maximum = 500))]
    pub calibration_sample: i32,
    /// Grade at most this many validation answers (a stratified subset).
    #[graphql(validator(minimum = 1))]
    pub validation_limit: Option<i32>,
    /// Similarity engine: gradient epochs per training epoch.
    #[graphql(default = 5, validator(minimum = 1, maximum = 1000))]
    pub gradient_epochs: i32,
    /// Similarity engine: Adam step size (default 0.02).
    pub learning_rate: Option<f64>,
    /// Similarity engine: L2 penalty (default 0.001).
    pub l2: Option<f64>,
    /// Similarity engine: neighbours in the k-NN features (default 10).
    #[graphql(validator(minimum = 1, maximum = 100))]
    pub k: Option<i32>,
}

impl TrainingInput {
    /// The guide id and the job parameters.
    pub fn into_params(self) -> Result<(i32, TrainingParams)> {
        let guide_id = parse_id(&self.guide_id, "guide")?;
        let grader_id = self
            .grader_id
            .map(|id| parse_id(&id, "grader"))
            .transpose()?;
        let defaults = TrainingParams::default();
        let count = |v: i32| usize::try_from(v.max(0)).unwrap_or(0);
        Ok((
            guide_id,
            TrainingParams {
                engine: self.engine.into(),
                name: self.name,
                grader_id,
                epochs: self.epochs.max(0) as u32,
                patience: self.patience.max(0) as u32,
                budget_tokens: self.budget_tokens,
                budget_usd: self.budget_usd,
                seed: self.seed.max(0) as u64,
                model: self.model.filter(|m| !m.trim().is_empty()),
                temperature: self.temperature,
                max_tokens: self.max_tokens.max(0) as u32,
                exemplars: count(self.exemplars),
                max_exemplars: count(self.max_exemplars),
                calibration: self.calibration.into(),
                calibration_sample: count(self.calibration_sample),
                validation_limit: self.validation_limit.map(count),
                gradient_epochs: self.gradient_epochs.max(0) as u32,
                learning_rate: self.learning_rate.unwrap_or(defaults.learning_rate),
                l2: self.l2.unwrap_or(defaults.l2),
                k: self.k.map(count).unwrap_or(defaults.k),
            },
        ))
    }
}

/// What a training job would cost at most, before it starts.
#[derive(SimpleObject)]
pub struct TrainingEstimate {
    /// Provider preset.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Model calls, at most (cached calls are free).
    pub calls: u64,
    /// Prompt tokens, estimated at four characters per token.
    pub prompt_tokens: u64,
    /// Completion tokens, at the `maxTokens` bound.
    pub completion_tokens: u64,
    /// Prompt + completion tokens.
    pub total_tokens: u64,
    /// Cost in US dollars; null when the model's price is unknown.
    pub cost_usd: Option<f64>,
    /// Scored train answers.
    pub train_answers: i32,
    /// Validation answers graded each epoch.
    pub validation_answers: i32,
    /// How the numbers were reached.
    pub note: String,
}

impl From<ServiceEstimate> for TrainingEstimate {
    fn from(e: ServiceEstimate) -> Self {
        Self {
            provider: e.provider,
            model: e.model,
            calls: e.calls,
            prompt_tokens: e.prompt_tokens,
            completion_tokens: e.completion_tokens,
            total_tokens: e.prompt_tokens + e.completion_tokens,
            cost_usd: e.cost_usd,
            train_answers: i32::try_from(e.train_answers).unwrap_or(i32::MAX),
            validation_answers: i32::try_from(e.validation_answers).unwrap_or(i32::MAX),
            note: e.note,
        }
    }
}

/// Agreement with the teacher on the validation split (normalised scores; QWK in quarters).
#[derive(SimpleObject, Clone, Copy)]
pub struct AgreementMetrics {
    /// Answers graded.
    pub n: i32,
    /// Quadratic weighted kappa on normalised scores binned to quarters.
    pub qwk: Option<f64>,
    /// Mean absolute error of normalised scores (0–1).
    pub mae: Option<f64>,
    /// Pearson correlation of normalised scores.
    pub pearson: Option<f64>,
    /// Spearman rank correlation.
    pub spearman: Option<f64>,
    /// Share of answers with exactly the teacher's marks.
    pub exact: Option<f64>,
    /// Share within one mark of the teacher.
    pub within1: Option<f64>,
    /// Root mean squared error of normalised scores.
    pub rmse: Option<f64>,
    /// Mean (grader − teacher) of normalised scores; positive is generous.
    pub bias: Option<f64>,
}

impl From<EpochMetrics> for AgreementMetrics {
    fn from(m: EpochMetrics) -> Self {
        Self {
            n: i32::try_from(m.n).unwrap_or(i32::MAX),
            qwk: m.qwk,
            mae: m.mae,
            pearson: m.pearson,
            spearman: m.spearman,
            exact: m.exact,
            within1: m.within1,
            rmse: m.rmse,
            bias: m.bias,
        }
    }
}

/// One finished epoch of a training job: a point of the learning curve.
#[derive(SimpleObject)]
pub struct TrainingEpoch {
    /// 0 for the base grader.
    pub epoch: i32,
    /// Validation agreement of the epoch's candidate.
    pub metrics: AgreementMetrics,
    /// Whether the change was kept: validation QWK rose by more than `qwkNoise`; or QWK
    /// moved less than that and MAE fell by more than `maeNoise`; or both moved less than
    /// their noise and QWK rose (MAE falling on equal QWK).
    pub kept: bool,
    /// Standard error of the QWK difference between this candidate and the best grader
    /// before it, on the same validation answers (paired bootstrap). Null for epoch 0.
    pub qwk_noise: Option<f64>,
    /// Standard error of their MAE difference (paired). Null for epoch 0.
    pub mae_noise: Option<f64>,
    /// Kind of change: `base`, `exemplars`, `exemplar_count`, `exemplar_set`,
    /// `calibration`, `gradient_epochs`, `refit` or `weights`.
    pub change_kind: String,
    /// The change in words.
    pub change: String,
    /// Tokens spent in the epoch.
    pub tokens: i64,
    /// Estimated cost of the epoch in US dollars.
    pub cost_usd: f64,
    /// Model calls made (cache hits included).
    pub calls: i32,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The best epoch so far.
    pub best_epoch: i32,
}

impl From<EpochRecord> for TrainingEpoch {
    fn from(r: EpochRecord) -> Self {
        Self {
            epoch: r.epoch as i32,
            metrics: r.metrics.into(),
            kept: r.kept,
            qwk_noise: r.qwk_noise,
            mae_noise: r.mae_noise,
            change_kind: r.change.kind,
            change: r.change.description,
            tokens: r.tokens,
            cost_usd: r.cost,
            calls: i32::try_from(r.calls).unwrap_or(i32::MAX),
            seconds: r.seconds,
            best_epoch: r.best_epoch as i32,
        }
    }
}

/// A named grader of one guide; its configurations are its versions.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Grader {
    /// Stable identifier.
    pub id: ID,
    /// The guide it grades.
    pub guide_id: ID,
    /// Its name.
    pub name: String,
    /// Its engine.
    pub engine: GraderEngine,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When its last version was made.
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    pub db_id: i32,
}

impl From<graders::Model> for Grader {
    fn from(g: graders::Model) -> Self {
        Self {
            id: g.id.into(),
            db_id: g.id,
            guide_id: g.guide_id.into(),
            name: g.name,
            engine: g.engine.into(),
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[ComplexObject]
impl Grader {
    /// Its versions, oldest first.
    async fn versions(&self, ctx: &Context<'_>) -> Result<Vec<GraderVersion>> {
        let rows = service::versions(&state(ctx)?.db, self.db_id).await.gql()?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Its newest version.
    async fn latest_version(&self, ctx: &Context<'_>) -> Result<Option<GraderVersion>> {
        let rows = service::versions(&state(ctx)?.db, self.db_id).await.gql()?;
        Ok(rows.into_iter().last().map(Into::into))
    }
}

/// An immutable grader artifact: engine, model, prompt, exemplars, calibration, regression
/// weights, seed, mark steps and training provenance, in `config`.
#[derive(SimpleObject)]
pub struct GraderVersion {
    /// Stable identifier.
    pub id: ID,
    /// The grader.
    pub grader_id: ID,
    /// 1, 2, 3, … within the grader.
    pub version: i32,
    /// Its engine (from the config).
    pub engine: Option<String>,
    /// The language model it calls, if any.
    pub model: Option<String>,
    /// SHA-256 of the prompt template, if it prompts a model.
    pub prompt_hash: Option<String>,
    /// The whole artifact as JSON.
    pub config: Json<Value>,
    /// Agreement on the validation split when it was made.
    pub validation_metrics: Option<AgreementMetrics>,
    /// The training job that made it.
    pub job_id: Option<ID>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl From<grader_versions::Model> for GraderVersion {
    fn from(v: grader_versions::Model) -> Self {
        let text = |pointer: &str| {
            v.config
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let engine = text("/engine");
        let model = text("/model").or_else(|| text("/llm/model"));
        let prompt_hash = text("/prompt/hash").or_else(|| text("/llm/prompt/hash"));
        let validation_metrics = v
            .validation_metrics
            .clone()
            .and_then(|m| serde_json::from_value::<EpochMetrics>(m).ok())
            .map(Into::into);
        Self {
            id: v.id.into(),
            grader_id: v.grader_id.into(),
            version: v.version,
            engine,
            model,
            prompt_hash,
            config: Json(v.config),
            validation_metrics,
            job_id: v.job_id.map(Into::into),
            created_at: v.created_at,
        }
    }
}

/// One difference between two grader versions' configs.
#[derive(SimpleObject)]
pub struct ConfigChange {
    /// JSON pointer of the changed value, e.g. `/calibration/kind`.
    pub path: String,
    /// Its value in the first version (null: absent).
    pub before: Option<Json<Value>>,
    /// Its value in the second version (null: absent).
    pub after: Option<Json<Value>>,
}

impl From<ServiceChange> for ConfigChange {
    fn from(c: ServiceChange) -> Self {
        Self {
            path: c.path,
            before: c.before.map(Json),
            after: c.after.map(Json),
        }
    }
}
