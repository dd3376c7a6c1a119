//! Training jobs: calibrate a grader for a guide epoch by epoch on the teacher's scored answers, and the versioned graders they produce.
//!
//! Epoch 0 measures the base grader on the validation split. Each later epoch proposes one
//! change — for the LLM engine a different exemplar set or count (chosen by the metric from
//! the train split) or a calibration fitted on train predictions; for the similarity engine
//! more gradient epochs or a regression refit; for the ensemble either engine's change or a
//! new blend — grades the validation split with it and keeps it only when validation
//! agreement improves (quadratic weighted kappa, then MAE as the tie-break). The job stops
//! after `epochs` epochs, after `patience` epochs without improvement, when the next call
//! would exceed the token or cost budget, or when the user cancels (checked before every
//! model call). Every finished epoch is checkpointed; a job whose server died resumes after
//! its last finished epoch, and calls it repeats are answered by the LLM cache.
//!
//! The result is a new version of a grader (`graders` + `grader_versions`) whose config
//! holds everything needed to grade again — engine, model, prompt and its hash, exemplars,
//! calibration, regression weights, seed, mark steps and the training data's hash — plus the
//! validation gradings of that version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use entity::enums::{Engine, JobKind, Split};
use entity::{answers, grader_versions, graders, gradings, guide_items, guides, job_events, jobs};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, SqlErr,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::error::{AppError, ErrorCode};
use crate::grading::calibration::{Calibration, CalibrationMethod, GridPoint};
use crate::grading::ensemble::{EngineAgreement, EnsembleConfig, EnsembleWeights};
use crate::grading::grader::{
    grading_items, llm_params, scored_answers, shared_embedder, GraderConfig, GradingContext,
    GradingError, GradingItem, SimilarityGraderConfig, Verdict,
};
use crate::grading::llm::{
    self as llm_engine, build_pool, choose_fixed, ExemplarSettings, ExemplarStrategy,
    LlmGraderConfig, LlmGrading, PromptInfo, RawGrade,
};
use crate::grading::similarity::{
    Example, Features, SimilarityConfig, SimilarityIndex, SimilarityModel,
};
use crate::llm::LlmError;
use crate::metrics::{
    bin_quarters, paired_mae_noise, paired_qwk_noise, AgreementReport, ScorePair,
};
use crate::service::answers::stratified_assign;
use crate::service::jobs::{
    self as job_service, HandlerFuture, JobContext, JobError, JobHandler, Outcome,
};
use crate::state::AppState;

/// Most epochs a job may ask for.
pub const MAX_EPOCHS: u32 = 100;
/// Most exemplars per prompt.
pub const MAX_EXEMPLARS: usize = 8;
/// Share of the budget after which a `budget_warning` event is sent.
const WARN_AT: f64 = 0.8;

/// Paired bootstrap resamples behind an epoch's QWK noise (see [`Noise`]).
const QWK_RESAMPLES: usize = 1000;

/// What went wrong with a training request.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// No such guide for this user.
    #[error("guide {0} not found")]
    GuideNotFound(i32),
    /// No such grader for this user.
    #[error("grader {0} not found")]
    GraderNotFound(i32),
    /// No such grader version for this user.
    #[error("grader version {0} not found")]
    VersionNotFound(i32),
    /// No such job for this user.
    #[error("job {0} not found")]
    JobNotFound(i32),
    /// Invalid input; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The LLM settings cannot work.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// Creating the job failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<TrainingError> for AppError {
    fn from(err: TrainingError) -> Self {
        match err {
            TrainingError::GuideNotFound(id) => AppError::not_found("guide", id),
            TrainingError::GraderNotFound(id) => AppError::not_found("grader", id),
            TrainingError::VersionNotFound(id) => AppError::not_found("grader version", id),
            TrainingError::JobNotFound(id) => AppError::not_found("job", id),
            TrainingError::Invalid(message) => AppError::new(ErrorCode::BadUserInput, message),
            TrainingError::Llm(err) => err.into(),
            TrainingError::Job(err) => err.into(),
            TrainingError::Db(err) => AppError::internal(err),
        }
    }
}

/// A training job's parameters (stored in `jobs.params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingParams {
    /// Engine to train.
    pub engine: Engine,
    /// Name of the new grader (default: engine and guide title).
    pub name: Option<String>,
    /// Add the result as a new version of this grader instead of making a new grader.
    pub grader_id: Option<i32>,
    /// Epochs after epoch 0, at most.
    pub epochs: u32,
    /// Stop after this many epochs in a row without improvement.
    pub patience: u32,
    /// Stop before the job's prompt + completion tokens would exceed this.
    pub budget_tokens: Option<i64>,
    /// Stop before the job's estimated cost would exceed this, in US dollars.
    pub budget_usd: Option<f64>,
    /// Seed of every random choice (exemplar draws, shuffles).
    pub seed: u64,
    /// Model name; default: the owner's configured model.
    pub model: Option<String>,
    /// Sampling temperature (0 makes calls cacheable and repeatable).
    pub temperature: f64,
    /// Completion-token limit per grading call.
    pub max_tokens: u32,
    /// Exemplars in the base LLM grader (0: zero-shot).
    pub exemplars: usize,
    /// Most exemplars a change may try.
    pub max_exemplars: usize,
    /// Calibration fitted first (the other fit is tried later).
    pub calibration: CalibrationMethod,
    /// Train answers graded to fit a calibration.
    pub calibration_sample: usize,
    /// Grade at most this many validation answers (a stratified subset); default all.
    pub validation_limit: Option<usize>,
    /// Similarity engine: gradient epochs per training epoch.
    pub gradient_epochs: u32,
    /// Similarity engine: Adam step size.
    pub learning_rate: f64,
    /// Similarity engine: L2 penalty.
    pub l2: f64,
    /// Similarity engine: neighbours in the k-NN features.
    pub k: usize,
}

impl Default for TrainingParams {
    fn default() -> Self {
        let sim = SimilarityConfig::default();
        Self {
            engine: Engine::Similarity,
            name: None,
            grader_id: None,
            epochs: 5,
            patience: 3,
            budget_tokens: None,
            budget_usd: None,
            seed: 42,
            model: None,
            temperature: 0.0,
            max_tokens: 160,
            exemplars: 0,
            max_exemplars: 4,
            calibration: CalibrationMethod::Shift,
            calibration_sample: 40,
            validation_limit: None,
            gradient_epochs: 5,
            learning_rate: sim.learning_rate,
            l2: sim.l2,
            k: sim.k,
        }
    }
}

impl TrainingParams {
    fn check(&self) -> Result<(), TrainingError> {
        let bad = |m: &str| Err(TrainingError::Invalid(m.to_owned()));
        if self.epochs > MAX_EPOCHS {
            return bad(&format!("epochs must be at most {MAX_EPOCHS}."));
        }
        if self.patience == 0 {
            return bad("patience must be at least 1.");
        }
        if self.budget_tokens.is_some_and(|b| b <= 0) {
            return bad("budgetTokens must be positive.");
        }
        if self.budget_usd.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
            return bad("budgetUsd must be a positive number.");
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return bad("temperature must be between 0 and 2.");
        }
        if !(48..=4096).contains(&self.max_tokens) {
            return bad("maxTokens must be between 48 and 4096.");
        }
        if self.exemplars > MAX_EXEMPLARS || self.max_exemplars > MAX_EXEMPLARS {
            return bad(&format!("at most {MAX_EXEMPLARS} exemplars per prompt."));
        }
        if self.calibration_sample > 500 {
            return bad("calibrationSample must be at most 500.");
        }
        if self.validation_limit == Some(0) {
            return bad("validationLimit must be at least 1.");
        }
        if !(1..=1000).contains(&self.gradient_epochs) {
            return bad("gradientEpochs must be between 1 and 1000.");
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 1.0)
        {
            return bad("learningRate must be above 0 and at most 1.");
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad("l2 must be a non-negative number.");
        }
        if !(1..=100).contains(&self.k) {
            return bad("k must be between 1 and 100.");
        }
        if self
            .name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200)
        {
            return bad("A grader name must be between 1 and 200 characters long.");
        }
        Ok(())
    }

    fn uses_llm(&self) -> bool {
        matches!(self.engine, Engine::Llm | Engine::Ensemble)
    }

    fn similarity_config(&self) -> SimilarityConfig {
        SimilarityConfig {
            k: self.k,
            learning_rate: self.learning_rate,
            l2: self.l2,
            seed: self.seed,
            ..SimilarityConfig::default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Metrics and epoch records
// ---------------------------------------------------------------------------------------

/// Validation agreement of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct EpochMetrics {
    /// Validation answers graded.
    pub n: usize,
    /// Quadratic weighted kappa on normalised scores in quarters.
    pub qwk: Option<f64>,
    /// Mean absolute error of normalised scores.
    pub mae: Option<f64>,
    /// Pearson correlation of normalised scores.
    pub pearson: Option<f64>,
    /// Spearman rank correlation.
    pub spearman: Option<f64>,
    /// Share of exact marks.
    pub exact: Option<f64>,
    /// Share within one mark.
    pub within1: Option<f64>,
    /// Root mean squared error of normalised scores.
    pub rmse: Option<f64>,
    /// Mean (grader − teacher) of normalised scores.
    pub bias: Option<f64>,
}

impl EpochMetrics {
    /// The figures of an agreement report.
    pub fn from_report(report: &AgreementReport) -> Self {
        Self {
            n: report.n,
            qwk: report.qwk,
            mae: report.mae,
            pearson: report.pearson,
            spearman: report.spearman,
            exact: report.exact_agreement,
            within1: report.within_one_mark,
            rmse: report.rmse,
            bias: report.mean_bias,
        }
    }

    /// Whether `self` is better than `other`: higher QWK (undefined counts as 0), or equal
    /// QWK and lower MAE.
    pub fn better_than(&self, other: &Self) -> bool {
        let (a, b) = (self.qwk.unwrap_or(0.0), other.qwk.unwrap_or(0.0));
        if (a - b).abs() > 1e-9 {
            return a > b;
        }
        self.mae.unwrap_or(f64::INFINITY) < other.mae.unwrap_or(f64::INFINITY) - 1e-9
    }

    /// Whether `self` is better than `other`, with the differences weighed against their
    /// noise on the validation answers: QWK first, then MAE, each only when it moved by more
    /// than its noise (a gain keeps the change, a loss rejects it); when neither did, the
    /// point estimates decide as in [`EpochMetrics::better_than`]. So a calibration that
    /// cuts the error well beyond its noise is kept though QWK wobbled within its own, and
    /// one that loses QWK beyond its noise is rejected whatever it does to MAE.
    pub fn better_than_beyond(&self, other: &Self, noise: Option<Noise>) -> bool {
        const TOLERANCE: f64 = 1e-9;
        if let Some(noise) = noise {
            let gain = self.qwk.unwrap_or(0.0) - other.qwk.unwrap_or(0.0);
            if gain.abs() > noise.qwk.max(0.0) + TOLERANCE {
                return gain > 0.0;
            }
            if let (Some(mae), Some(other_mae)) = (self.mae, other.mae) {
                let cut = other_mae - mae;
                if cut.abs() > noise.mae.max(0.0) + TOLERANCE {
                    return cut > 0.0;
                }
            }
        }
        self.better_than(other)
    }
}

/// What an epoch changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `base`, `exemplars`, `exemplar_count`, `exemplar_set`, `calibration`,
    /// `gradient_epochs`, `refit`, `weights`.
    pub kind: String,
    /// In words.
    pub description: String,
}

impl Change {
    fn new(kind: &str, description: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            description: description.into(),
        }
    }
}

/// One finished epoch, as persisted in the checkpoint and sent as an `epoch` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0 for the base grader.
    pub epoch: u32,
    /// Validation agreement of the epoch's candidate.
    pub metrics: EpochMetrics,
    /// Whether the change was kept (epoch 0 always is).
    pub kept: bool,
    /// The change tried.
    pub change: Change,
    /// Tokens the epoch spent (prompt + completion).
    pub tokens: i64,
    /// Prompt tokens the epoch spent.
    pub prompt_tokens: i64,
    /// Completion tokens the epoch spent.
    pub completion_tokens: i64,
    /// Estimated cost of the epoch in US dollars.
    pub cost: f64,
    /// Model calls made (cache hits included).
    pub calls: usize,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// The best epoch after this one.
    pub best_epoch: u32,
    /// Its QWK.
    pub best_qwk: Option<f64>,
    /// Its MAE.
    pub best_mae: Option<f64>,
    /// Standard error of the QWK difference between this epoch's candidate and the best
    /// grader before it, on the same validation answers (paired bootstrap). `None` for
    /// epoch 0 and for epochs recorded before it was measured.
    #[serde(default)]
    pub qwk_noise: Option<f64>,
    /// The same for the MAE difference (paired differences of absolute errors).
    #[serde(default)]
    pub mae_noise: Option<f64>,
}

/// Standard errors of the QWK and MAE differences between two graders on the same
/// validation answers: how far apart their figures must be to count as a change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Of the QWK difference (paired bootstrap over the answers).
    pub qwk: f64,
    /// Of the MAE difference.
    pub mae: f64,
}

impl Noise {
    /// The noise of comparing `candidate` with `best` (normalised grader marks of the same
    /// validation answers, rounded to marks) against the teacher's; `None` when either
    /// cannot be measured (e.g. fewer than two answers).
    fn between(teacher: &[f64], best: &[f64], candidate: &[f64], seed: u64) -> Option<Self> {
        Some(Self {
            qwk: paired_qwk_noise(
                &bin_quarters(teacher),
                &bin_quarters(best),
                &bin_quarters(candidate),
                QWK_RESAMPLES,
                seed,
            )?,
            mae: paired_mae_noise(teacher, best, candidate)?,
        })
    }
}

/// Why a job stopped before its last epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All epochs ran.
    Completed,
    /// `patience` epochs without improvement.
    Patience,
    /// The next call would have exceeded the budget.
    Budget,
}

/// What a job persists after each finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    epoch: u32,
    best: GraderConfig,
    best_epoch: u32,
    best_metrics: EpochMetrics,
    /// The best grader's normalised validation marks, for the paired comparison with the
    /// next candidate (empty in checkpoints written before they were kept).
    #[serde(default)]
    best_marks: Vec<f64>,
    since_improved: u32,
    history: Vec<EpochRecord>,
    stopped: Option<StopReason>,
}

/// Mark steps of a version's items and where the version came from, stored beside the
/// engine config.
///
/// The engine config is flattened into the same object, and the LLM engine's config has a
/// `seed` of its own — the same value as the job's. serde would hand a shared `seed` key to
/// the outer struct only, so reading is done by hand: the engine config from the whole
/// object, the version's own fields beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionConfig {
    /// The engine and its parameters.
    #[serde(flatten)]
    pub grader: GraderConfig,
    /// Seed of the training job.
    pub seed: u64,
    /// Item id → mark step the scores are rounded to.
    pub mark_steps: BTreeMap<i32, f64>,
    /// How it was trained.
    pub training: TrainingProvenance,
}

impl<'de> Deserialize<'de> for VersionConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;

        #[derive(Deserialize)]
        struct Own {
            seed: u64,
            mark_steps: BTreeMap<i32, f64>,
            training: TrainingProvenance,
        }
        let value = Value::deserialize(deserializer)?;
        let own: Own = serde_json::from_value(value.clone()).map_err(D::Error::custom)?;
        let grader: GraderConfig = serde_json::from_value(value).map_err(D::Error::custom)?;
        Ok(Self {
            grader,
            seed: own.seed,
            mark_steps: own.mark_steps,
            training: own.training,
        })
    }
}

/// How a version was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingProvenance {
    /// The job.
    pub job_id: i32,
    /// The guide.
    pub guide_id: i32,
    /// SHA-256 over the train and validation answers (id, item, score, split).
    pub training_data_sha256: String,
    /// Train answers.
    pub train_answers: usize,
    /// Validation answers graded.
    pub validation_answers: usize,
    /// Epochs run after epoch 0.
    pub epochs_run: u32,
    /// The epoch the version comes from.
    pub best_epoch: u32,
    /// Why the job stopped.
    pub stopped: StopReason,
}

// ---------------------------------------------------------------------------------------
// Stopping: cancel, budget, failure
// ---------------------------------------------------------------------------------------

/// Why an epoch did not finish.
enum Stop {
    Cancelled,
    Budget(String),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Stop {
    fn from(err: E) -> Self {
        Self::Failed(err.into())
    }
}

/// Spent totals of the job, as the LLM client accounts them.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    prompt: i64,
    completion: i64,
    cost: f64,
}

/// Checks cancel and budget around model calls and reports progress.
struct Guard {
    ctx: JobContext,
    budget_tokens: Option<i64>,
    budget_usd: Option<f64>,
    epochs: u32,
    epoch: u32,
    calls: usize,
    planned: usize,
    warned: bool,
}

impl Guard {
    async fn spent(&self) -> Result<Spent, DbErr> {
        let job = jobs::Entity::find_by_id(self.ctx.job.id)
            .one(&self.ctx.state.db)
            .await?;
        Ok(job.map_or_else(Spent::default, |j| Spent {
            prompt: j.prompt_tokens,
            completion: j.completion_tokens,
            cost: j.cost_usd,
        }))
    }

    /// Before a model call of about `tokens` tokens: stop on cancel, or when the call could
    /// take the job over its budget.
    async fn before_call(&mut self, tokens: i64) -> Result<(), Stop> {
        if self.ctx.cancel_requested().await? {
            return Err(Stop::Cancelled);
        }
        let spent = self.spent().await?;
        let used = spent.prompt + spent.completion;
        if let Some(budget) = self.budget_tokens {
            if used + tokens > budget {
                return Err(Stop::Budget(format!(
                    "the token budget of {budget} is nearly spent ({used} used; the next call needs up to {tokens})"
                )));
            }
            if !self.warned && used as f64 >= WARN_AT * budget as f64 {
                self.warned = true;
                self.ctx
                    .emit(
                        "budget_warning",
                        json!({ "tokens": used, "budget_tokens": budget }),
                    )
                    .await?;
            }
        }
        if let Some(budget) = self.budget_usd {
            if spent.cost >= budget {
                return Err(Stop::Budget(format!(
                    "the cost budget of ${budget:.4} is spent (${:.4} used)",
                    spent.cost
                )));
            }
            if !self.warned && spent.cost >= WARN_AT * budget {
                self.warned = true;
                self.ctx
                    .emit(
                        "budget_warning",
                        json!({ "cost": spent.cost, "budget_usd": budget }),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// After a model call: progress within the epoch.
    async fn after_call(&mut self, what: &str) -> Result<(), Stop> {
        self.calls += 1;
        let within = if self.planned > 0 {
            (self.calls as f64 / self.planned as f64).min(1.0)
        } else {
            0.0
        };
        let fraction = (f64::from(self.epoch) + within) / f64::from(self.epochs + 1);
        self.ctx
            .progress(
                fraction * 0.98,
                &format!(
                    "epoch {}: {what} ({}/{})",
                    self.epoch,
                    self.calls,
                    self.planned.max(self.calls)
                ),
            )
            .await?;
        Ok(())
    }

    fn start_epoch(&mut self, epoch: u32, planned: usize) {
        self.epoch = epoch;
        self.calls = 0;
        self.planned = planned;
    }
}

// ---------------------------------------------------------------------------------------
// Engines in training
// ---------------------------------------------------------------------------------------

/// The train and validation data of a job.
struct Data {
    items: BTreeMap<i32, GradingItem>,
    train: Vec<answers::Model>,
    validation: Vec<answers::Model>,
}

impl Data {
    fn item(&self, id: i32) -> Result<&GradingItem, Stop> {
        self.items
            .get(&id)
            .ok_or_else(|| Stop::Failed(anyhow::anyhow!("item {id} disappeared during training")))
    }

    /// The teacher's and the grader's normalised validation marks (the grader's rounded to
    /// marks), as the metrics see them.
    fn normalised(&self, predictions: &[f64]) -> Result<(Vec<f64>, Vec<f64>), Stop> {
        let mut teacher = Vec::with_capacity(predictions.len());
        let mut grader = Vec::with_capacity(predictions.len());
        for (answer, p) in self.validation.iter().zip(predictions) {
            let item = self.item(answer.item_id)?;
            teacher.push(answer.teacher_score.unwrap_or_default() / item.max_marks);
            grader.push(item.to_marks(*p) / item.max_marks);
        }
        Ok((teacher, grader))
    }

    /// Metrics of normalised predictions for the validation answers (rounded to marks).
    fn metrics(&self, predictions: &[f64]) -> Result<EpochMetrics, Stop> {
        let mut pairs = Vec::with_capacity(predictions.len());
        for (answer, p) in self.validation.iter().zip(predictions) {
            let item = self.item(answer.item_id)?;
            pairs.push(ScorePair {
                teacher: answer.teacher_score.unwrap_or_default(),
                predicted: item.to_marks(*p),
                max_marks: item.max_marks,
            });
        }
        Ok(EpochMetrics::from_report(&AgreementReport::compute(&pairs)))
    }
}

/// A stratified, seeded subset of `rows` of at most `limit` rows (by item and score).
fn subset(
    rows: Vec<answers::Model>,
    limit: usize,
    items: &BTreeMap<i32, GradingItem>,
    seed: u64,
) -> Vec<answers::Model> {
    if rows.len() <= limit {
        return rows;
    }
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|a| {
            let max = items.get(&a.item_id).map_or(1.0, |i| i.max_marks);
            let q = ((a.teacher_score.unwrap_or_default() / max) * 4.0).round() as i64;
            (format!("{:010}:{q}", a.item_id), a.id.to_string())
        })
        .collect();
    let share = limit as f64 / rows.len() as f64;
    let buckets = stratified_assign(&keys, &[share, 1.0 - share], seed);
    let mut picked: Vec<answers::Model> = rows
        .into_iter()
        .zip(buckets)
        .filter(|(_, b)| *b == 0)
        .map(|(a, _)| a)
        .collect();
    picked.truncate(limit);
    picked
}

/// The LLM engine in training: grading with candidate configs, with raw grades cached by
/// the prompt-affecting part of the config (a calibration change costs no calls).
struct LlmTrainer {
    grading: LlmGrading,
    params: TrainingParams,
    pool: BTreeMap<i32, Vec<llm_engine::Exemplar>>,
    calibration_sample: Vec<answers::Model>,
    cache: HashMap<(String, i32), RawGrade>,
}

/// Which calls a config's raw grades depend on.
fn prompt_fingerprint(config: &LlmGraderConfig) -> String {
    let key = json!([
        config.model,
        config.temperature,
        config.max_tokens,
        config.seed,
        config.prompt.hash,
        config.exemplars,
    ]);
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
}

/// What an LLM epoch proposes.
#[expect(clippy::large_enum_variant, reason = "one per epoch")]
enum LlmProposal {
    /// Grade with this config.
    Config(LlmGraderConfig, Change),
    /// Fit this calibration on train predictions of the best config.
    Calibrate(CalibrationMethod),
}

impl LlmTrainer {
    fn base_config(&self, model: String, provider: String) -> LlmGraderConfig {
        let mut exemplars = ExemplarSettings {
            strategy: ExemplarStrategy::None,
            count: 0,
            fixed: BTreeMap::new(),
            pool: BTreeMap::new(),
        };
        if self.params.exemplars > 0 {
            exemplars = ExemplarSettings {
                strategy: ExemplarStrategy::Nearest,
                count: self.params.exemplars,
                fixed: BTreeMap::new(),
                pool: self.pool.clone(),
            };
        }
        LlmGraderConfig {
            provider,
            model,
            temperature: self.params.temperature,
            max_tokens: self.params.max_tokens,
            seed: self.params.seed as i64,
            prompt: PromptInfo::default(),
            exemplars,
            calibration: Calibration::Identity,
            expected_marks: true,
        }
    }

    /// The change tried in `epoch` (≥ 1), from the best config so far. Deterministic, so a
    /// resumed job tries what the lost run would have. The cycle of five alternates prompt
    /// changes (which cost validation calls) with calibration fits (which cost only the
    /// calibration sample's calls) and never proposes the change it just rejected:
    /// 1. exemplars: the nearest ones when the best grader has none, else one more (or
    ///    fewer) per prompt;
    /// 2. a calibration refit (the configured method first);
    /// 3. another exemplar set: a fixed draw per item instead of the nearest, or back;
    /// 4. a refit with the other calibration method;
    /// 5. a fresh fixed draw of one exemplar fewer (or of the default count).
    fn propose(&self, epoch: u32, best: &LlmGraderConfig) -> LlmProposal {
        let max = self.params.max_exemplars.max(1);
        let default_count = self.params.exemplars.clamp(1, max).max(3.min(max));
        let seed = self.params.seed.wrapping_add(u64::from(epoch));
        let first = match self.params.calibration {
            CalibrationMethod::None => CalibrationMethod::Shift,
            method => method,
        };
        let other = match first {
            CalibrationMethod::Shift => CalibrationMethod::Isotonic,
            _ => CalibrationMethod::Shift,
        };
        let zero_shot = best.exemplars.strategy == ExemplarStrategy::None;
        let with = |strategy: ExemplarStrategy, count: usize| {
            let mut config = best.clone();
            config.exemplars = ExemplarSettings {
                strategy,
                count,
                fixed: if strategy == ExemplarStrategy::Fixed {
                    choose_fixed(&self.pool, count, seed)
                } else {
                    BTreeMap::new()
                },
                pool: self.pool.clone(),
            };
            config
        };
        match epoch % 5 {
            1 if zero_shot => LlmProposal::Config(
                with(ExemplarStrategy::Nearest, default_count),
                Change::new(
                    "exemplars",
                    format!(
                        "add {default_count} exemplars per prompt: the teacher's marked train answers nearest to each answer, covering score levels"
                    ),
                ),
            ),
            1 => {
                let from = best.exemplars.count;
                let count = if from < max { from + 1 } else { from.saturating_sub(1).max(1) };
                LlmProposal::Config(
                    with(best.exemplars.strategy, count),
                    Change::new("exemplar_count", format!("{from} → {count} exemplars per prompt")),
                )
            }
            2 | 4 => {
                let preferred = if epoch % 5 == 2 { first } else { other };
                let method = if best.calibration.method() == preferred {
                    if preferred == first { other } else { first }
                } else {
                    preferred
                };
                LlmProposal::Calibrate(method)
            }
            3 => {
                let count = if zero_shot { default_count } else { best.exemplars.count };
                let (strategy, description) = match best.exemplars.strategy {
                    ExemplarStrategy::Fixed => (
                        ExemplarStrategy::Nearest,
                        format!("the {count} nearest exemplars instead of a fixed set"),
                    ),
                    _ => (
                        ExemplarStrategy::Fixed,
                        format!("a fixed set of {count} exemplars per item, covering score levels (draw {seed})"),
                    ),
                };
                LlmProposal::Config(with(strategy, count), Change::new("exemplar_set", description))
            }
            _ => {
                let count = if zero_shot {
                    default_count
                } else {
                    best.exemplars.count.saturating_sub(1).max(1)
                };
                LlmProposal::Config(
                    with(ExemplarStrategy::Fixed, count),
                    Change::new(
                        "exemplar_set",
                        format!("a new fixed draw of {count} exemplars per item (draw {seed})"),
                    ),
                )
            }
        }
    }

    /// Calls needed to grade `answers` with `config` (those not cached).
    fn uncached(&self, config: &LlmGraderConfig, answers: &[answers::Model]) -> usize {
        let key = prompt_fingerprint(config);
        answers
            .iter()
            .filter(|a| !self.cache.contains_key(&(key.clone(), a.id)))
            .count()
    }

    /// Tokens a call may take at most: its prompt at three characters per token (a
    /// generous count for English) and the completion limit.
    async fn call_tokens(
        &self,
        grading: &LlmGrading,
        item: &GradingItem,
        answer: &answers::Model,
    ) -> i64 {
        let exemplars = grading.exemplars_for(item, answer.id, &answer.text).await;
        let chars: usize = llm_engine::build_messages(item, &exemplars, &answer.text)
            .iter()
            .map(|m| m.content.len())
            .sum();
        (chars as u64).div_ceil(3) as i64 + i64::from(grading.config().max_tokens)
    }

    async fn raw(
        &mut self,
        data: &Data,
        config: &LlmGraderConfig,
        answer: &answers::Model,
        guard: &mut Guard,
        what: &str,
    ) -> Result<RawGrade, Stop> {
        let key = (prompt_fingerprint(config), answer.id);
        if let Some(raw) = self.cache.get(&key) {
            return Ok(raw.clone());
        }
        let item = data.item(answer.item_id)?;
        let grading = self.grading.with_config(config.clone());
        guard
            .before_call(self.call_tokens(&grading, item, answer).await)
            .await?;
        let raw = grading
            .grade_raw(item, answer.id, &answer.text)
            .await
            .map_err(|err| {
                Stop::Failed(
                    anyhow::Error::new(err).context(format!("grading answer {}", answer.id)),
                )
            })?;
        guard.after_call(what).await?;
        self.cache.insert(key, raw.clone());
        Ok(raw)
    }

    /// Calibrated normalised predictions for the validation answers.
    async fn predict(
        &mut self,
        data: &Data,
        config: &LlmGraderConfig,
        guard: &mut Guard,
    ) -> Result<Vec<f64>, Stop> {
        let mut out = Vec::with_capacity(data.validation.len());
        for answer in &data.validation {
            let raw = self
                .raw(data, config, answer, guard, "grading validation answers")
                .await?;
            let item = data.item(answer.item_id)?;
            out.push(
                config
                    .calibration
                    .apply_to(item.id, item.normalise(raw.raw_marks)),
            );
        }
        Ok(out)
    }

    /// A calibration of `config`'s raw scores fitted on the calibration sample.
    async fn fit(
        &mut self,
        data: &Data,
        config: &LlmGraderConfig,
        method: CalibrationMethod,
        guard: &mut Guard,
    ) -> Result<Calibration, Stop> {
        let mut points = Vec::new();
        for answer in self.calibration_sample.clone() {
            let raw = self
                .raw(
                    data,
                    config,
                    &answer,
                    guard,
                    "grading train answers for calibration",
                )
                .await?;
            let item = data.item(answer.item_id)?;
            points.push(GridPoint {
                item: item.id,
                raw: item.normalise(raw.raw_marks),
                teacher: item.normalise(answer.teacher_score.unwrap_or_default()),
                step: if item.max_marks > 0.0 {
                    item.mark_step / item.max_marks
                } else {
                    0.0
                },
            });
        }
        Ok(Calibration::fit_on_grid(method, &points))
    }

    /// Realises a proposal into a candidate config.
    async fn realise(
        &mut self,
        data: &Data,
        proposal: LlmProposal,
        best: &LlmGraderConfig,
        guard: &mut Guard,
    ) -> Result<(LlmGraderConfig, Change), Stop> {
        match proposal {
            LlmProposal::Config(config, change) => Ok((config, change)),
            LlmProposal::Calibrate(method) => {
                let calibration = self.fit(data, best, method, guard).await?;
                let mut config = best.clone();
                let description = format!(
                    "calibration refit on {} train predictions: {}",
                    self.calibration_sample.len(),
                    calibration.describe()
                );
                config.calibration = calibration;
                Ok((config, Change::new("calibration", description)))
            }
        }
    }

    /// Calls an epoch may need at most (for progress).
    fn planned(&self, data: &Data, proposal: &LlmProposal, best: &LlmGraderConfig) -> usize {
        match proposal {
            LlmProposal::Config(config, _) => self.uncached(config, &data.validation),
            LlmProposal::Calibrate(_) => {
                self.uncached(best, &self.calibration_sample)
                    + self.uncached(best, &data.validation)
            }
        }
    }

    /// Verdicts of `config` on the validation answers.
    async fn verdicts(
        &mut self,
        data: &Data,
        config: &LlmGraderConfig,
        guard: &mut Guard,
    ) -> Result<Vec<Verdict>, Stop> {
        let grading = self.grading.with_config(config.clone());
        let mut out = Vec::new();
        for answer in &data.validation {
            let raw = self
                .raw(data, config, answer, guard, "final validation grades")
                .await?;
            out.push(grading.verdict(data.item(answer.item_id)?, answer.id, &raw));
        }
        Ok(out)
    }
}

/// The similarity engine in training: mini-batch gradient descent on the train answers'
/// features, measured on the validation answers' features.
struct SimilarityTrainer {
    params: TrainingParams,
    examples: Vec<Example>,
    validation: Vec<Features>,
    train_answer_ids: Vec<i32>,
}

impl SimilarityTrainer {
    async fn new(state: &AppState, params: &TrainingParams, data: &Data) -> Result<Self, Stop> {
        let embedder = shared_embedder(&state.settings.embeddings).await?;
        let config = params.similarity_config();
        let items: Vec<_> = data
            .items
            .values()
            .map(GradingItem::to_similarity)
            .collect();
        let graded: Vec<_> = data
            .train
            .iter()
            .map(|a| crate::grading::similarity::GradedAnswer {
                id: a.id.to_string(),
                item_id: a.item_id.to_string(),
                text: a.text.clone(),
                score: a.teacher_score.unwrap_or_default(),
            })
            .collect();
        let index = SimilarityIndex::build(&embedder, &items, &graded, &config).await?;
        let texts: Vec<String> = data.validation.iter().map(|a| a.text.clone()).collect();
        let vectors = embedder.embed(&texts).await?;
        let validation = data
            .validation
            .iter()
            .zip(vectors)
            .map(|(a, v)| {
                index.features(&a.item_id.to_string(), &a.text, &v, Some(&a.id.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            params: params.clone(),
            examples: index.training_examples(),
            validation,
            train_answer_ids: data.train.iter().map(|a| a.id).collect(),
        })
    }

    fn train(&self, mut model: SimilarityModel, epochs: u32) -> SimilarityModel {
        for _ in 0..epochs {
            model.fit_epoch(&self.examples);
        }
        model
    }

    fn base(&self) -> (SimilarityGraderConfig, Change) {
        let g = self.params.gradient_epochs;
        let model = self.train(SimilarityModel::new(self.params.similarity_config()), g);
        (
            self.config(model),
            Change::new(
                "base",
                format!(
                    "regression on {} train answers after {g} gradient epochs (learning rate {}, L2 {})",
                    self.examples.len(),
                    self.params.learning_rate,
                    self.params.l2
                ),
            ),
        )
    }

    fn config(&self, model: SimilarityModel) -> SimilarityGraderConfig {
        SimilarityGraderConfig {
            model,
            train_answer_ids: self.train_answer_ids.clone(),
        }
    }

    /// The change tried in `epoch` (≥ 1): more gradient epochs (at the same, half or a
    /// quarter of the step size) or a refit from scratch with another L2 penalty.
    fn propose(
        &self,
        epoch: u32,
        best: &SimilarityGraderConfig,
    ) -> (SimilarityGraderConfig, Change) {
        let g = self.params.gradient_epochs;
        let mut model = best.model.clone();
        match epoch % 6 {
            1 | 4 => {
                let n = if epoch % 6 == 4 { 2 * g } else { g };
                let model = self.train(model, n);
                let lr = model.config.learning_rate;
                (
                    self.config(model),
                    Change::new(
                        "gradient_epochs",
                        format!("{n} more gradient epochs at learning rate {lr}"),
                    ),
                )
            }
            2 | 0 => {
                let scale = if epoch % 6 == 2 { 0.5 } else { 0.25 };
                model.config.learning_rate *= scale;
                let lr = model.config.learning_rate;
                let model = self.train(model, g);
                (
                    self.config(model),
                    Change::new(
                        "gradient_epochs",
                        format!("{g} more gradient epochs at learning rate {lr}"),
                    ),
                )
            }
            _ => {
                let factor = if epoch % 6 == 3 { 10.0 } else { 0.1 };
                let mut config = best.model.config.clone();
                config.l2 = (config.l2 * factor).max(1e-6);
                config.seed = self.params.seed.wrapping_add(u64::from(epoch));
                let epochs = best.model.epochs.max(g);
                let l2 = config.l2;
                let model = self.train(SimilarityModel::new(config), epochs);
                (
                    self.config(model),
                    Change::new(
                        "refit",
                        format!("refit from scratch with L2 {l2} for {epochs} gradient epochs"),
                    ),
                )
            }
        }
    }

    fn predict(&self, config: &SimilarityGraderConfig) -> Vec<f64> {
        self.validation
            .iter()
            .map(|f| config.model.predict(f))
            .collect()
    }

    fn verdicts(&self, data: &Data, config: &SimilarityGraderConfig) -> Result<Vec<Verdict>, Stop> {
        data.validation
            .iter()
            .zip(&self.validation)
            .map(|(answer, features)| {
                let item = data.item(answer.item_id)?;
                Ok(crate::grading::grader::similarity_verdict(
                    item,
                    answer.id,
                    config.model.predict(features),
                    features,
                ))
            })
            .collect()
    }
}

/// One engine (or both) in training.
#[expect(clippy::large_enum_variant, reason = "one per job")]
enum Trainer {
    Llm(LlmTrainer),
    Similarity(SimilarityTrainer),
    Ensemble(LlmTrainer, SimilarityTrainer),
}

impl Trainer {
    /// The base grader.
    async fn base(
        &mut self,
        data: &Data,
        model: &(String, String),
        guard: &mut Guard,
    ) -> Result<(GraderConfig, Change), Stop> {
        match self {
            Trainer::Llm(llm) => {
                let config = llm.base_config(model.0.clone(), model.1.clone());
                let description = format!(
                    "rubric prompt, {}, no calibration",
                    config.exemplars.describe()
                );
                Ok((GraderConfig::Llm(config), Change::new("base", description)))
            }
            Trainer::Similarity(sim) => {
                let (config, change) = sim.base();
                Ok((GraderConfig::Similarity(config), change))
            }
            Trainer::Ensemble(llm, sim) => {
                let llm_config = llm.base_config(model.0.clone(), model.1.clone());
                let (sim_config, _) = sim.base();
                let exemplars = llm_config.exemplars.describe();
                let (config, weights) = ensemble(
                    data,
                    llm,
                    sim,
                    llm_config,
                    sim_config,
                    BlendSearch::Coarse,
                    guard,
                )
                .await?;
                Ok((
                    GraderConfig::Ensemble(config),
                    Change::new(
                        "base",
                        format!("LLM ({exemplars}) and similarity engines, weighted {weights}"),
                    ),
                ))
            }
        }
    }

    /// Realises the change of `epoch` from `best`.
    async fn candidate(
        &mut self,
        data: &Data,
        epoch: u32,
        best: &GraderConfig,
        guard: &mut Guard,
    ) -> Result<(GraderConfig, Change), Stop> {
        match (self, best) {
            (Trainer::Llm(llm), GraderConfig::Llm(best)) => {
                let proposal = llm.propose(epoch, best);
                guard.planned = llm.planned(data, &proposal, best);
                let (config, change) = llm.realise(data, proposal, best, guard).await?;
                Ok((GraderConfig::Llm(config), change))
            }
            (Trainer::Similarity(sim), GraderConfig::Similarity(best)) => {
                let (config, change) = sim.propose(epoch, best);
                Ok((GraderConfig::Similarity(config), change))
            }
            (Trainer::Ensemble(llm, sim), GraderConfig::Ensemble(best)) => {
                // Cycle: the LLM's change, the similarity engine's change, a new blend.
                match epoch % 3 {
                    1 => {
                        let proposal = llm.propose(epoch.div_ceil(3), &best.llm);
                        guard.planned = llm.planned(data, &proposal, &best.llm);
                        let (llm_config, change) =
                            llm.realise(data, proposal, &best.llm, guard).await?;
                        let (config, weights) = ensemble(
                            data,
                            llm,
                            sim,
                            llm_config,
                            best.similarity.clone(),
                            BlendSearch::Coarse,
                            guard,
                        )
                        .await?;
                        Ok((
                            GraderConfig::Ensemble(config),
                            Change::new(
                                &change.kind,
                                format!("LLM: {}; weights {weights}", change.description),
                            ),
                        ))
                    }
                    2 => {
                        let (sim_config, change) = sim.propose(epoch.div_ceil(3), &best.similarity);
                        let (config, weights) = ensemble(
                            data,
                            llm,
                            sim,
                            best.llm.clone(),
                            sim_config,
                            BlendSearch::Coarse,
                            guard,
                        )
                        .await?;
                        Ok((
                            GraderConfig::Ensemble(config),
                            Change::new(
                                &change.kind,
                                format!("similarity: {}; weights {weights}", change.description),
                            ),
                        ))
                    }
                    _ => {
                        let (config, weights) = ensemble(
                            data,
                            llm,
                            sim,
                            best.llm.clone(),
                            best.similarity.clone(),
                            BlendSearch::Refine(best.weights),
                            guard,
                        )
                        .await?;
                        Ok((
                            GraderConfig::Ensemble(config),
                            Change::new(
                                "weights",
                                format!("blend searched on validation in twentieths: {weights}"),
                            ),
                        ))
                    }
                }
            }
            _ => Err(Stop::Failed(anyhow::anyhow!(
                "the checkpoint's grader does not match the job's engine"
            ))),
        }
    }

    /// Normalised validation predictions of `config`.
    async fn predict(
        &mut self,
        data: &Data,
        config: &GraderConfig,
        guard: &mut Guard,
    ) -> Result<Vec<f64>, Stop> {
        match (self, config) {
            (Trainer::Llm(llm), GraderConfig::Llm(c)) => llm.predict(data, c, guard).await,
            (Trainer::Similarity(sim), GraderConfig::Similarity(c)) => Ok(sim.predict(c)),
            (Trainer::Ensemble(llm, sim), GraderConfig::Ensemble(c)) => {
                let l = llm.predict(data, &c.llm, guard).await?;
                let s = sim.predict(&c.similarity);
                Ok(l.iter().zip(&s).map(|(l, s)| c.blend(*l, *s)).collect())
            }
            _ => Err(Stop::Failed(anyhow::anyhow!(
                "the grader does not match the job's engine"
            ))),
        }
    }

    /// Calls the change of `epoch` may need (for progress), before it is realised.
    fn planned(&self, data: &Data, epoch: u32, best: &GraderConfig) -> usize {
        match (self, best) {
            (Trainer::Llm(llm), GraderConfig::Llm(best)) => {
                if epoch == 0 {
                    data.validation.len()
                } else {
                    llm.planned(data, &llm.propose(epoch, best), best)
                }
            }
            (Trainer::Ensemble(llm, _), GraderConfig::Ensemble(best)) if epoch % 3 == 1 => {
                llm.planned(data, &llm.propose(epoch.div_ceil(3), &best.llm), &best.llm)
            }
            _ => 0,
        }
    }

    /// Verdicts of `config` on the validation answers.
    async fn verdicts(
        &mut self,
        data: &Data,
        config: &GraderConfig,
        guard: &mut Guard,
    ) -> Result<Vec<Verdict>, Stop> {
        match (self, config) {
            (Trainer::Llm(llm), GraderConfig::Llm(c)) => llm.verdicts(data, c, guard).await,
            (Trainer::Similarity(sim), GraderConfig::Similarity(c)) => sim.verdicts(data, c),
            (Trainer::Ensemble(llm, sim), GraderConfig::Ensemble(c)) => {
                let l = llm.verdicts(data, &c.llm, guard).await?;
                let s = sim.predict(&c.similarity);
                data.validation
                    .iter()
                    .zip(l.iter().zip(s))
                    .map(|(answer, (l, s))| Ok(c.combine(data.item(answer.item_id)?, l, s)))
                    .collect()
            }
            _ => Err(Stop::Failed(anyhow::anyhow!(
                "the grader does not match the job's engine"
            ))),
        }
    }
}

/// How an ensemble's blend is searched on the validation split.
#[derive(Debug, Clone, Copy)]
enum BlendSearch {
    /// Whenever an engine changes: the LLM's share in tenths, from weights proportional to
    /// each engine's validation QWK.
    Coarse,
    /// The ensemble's own "weights" epoch: twentieths, from the current weights.
    Refine(EnsembleWeights),
}

/// An ensemble of the two configs, its blend searched on the validation split: the LLM's
/// share in steps from 0 (the similarity engine alone) to 1 (the LLM alone), starting as
/// `search` says; a share replaces the current one only when its blend agrees better (QWK, then MAE),
/// so ties keep the starting weights. An engine that only adds noise on validation gets no
/// weight instead of the share its agreement alone would give it.
async fn ensemble(
    data: &Data,
    llm: &mut LlmTrainer,
    sim: &SimilarityTrainer,
    llm_config: LlmGraderConfig,
    sim_config: SimilarityGraderConfig,
    search: BlendSearch,
    guard: &mut Guard,
) -> Result<(EnsembleConfig, String), Stop> {
    let l = llm.predict(data, &llm_config, guard).await?;
    let s = sim.predict(&sim_config);
    let agreement = EngineAgreement {
        llm_qwk: data.metrics(&l)?.qwk,
        similarity_qwk: data.metrics(&s)?.qwk,
    };
    let (start, steps) = match search {
        BlendSearch::Coarse => (
            EnsembleWeights::from_agreement(agreement.llm_qwk, agreement.similarity_qwk),
            10,
        ),
        BlendSearch::Refine(current) => (current, 20),
    };
    let weights = search_blend(&l, &s, start, steps, |p| data.metrics(p))?;
    let described = format!(
        "{:.2} LLM / {:.2} similarity",
        weights.llm, weights.similarity
    );
    Ok((
        EnsembleConfig {
            llm: llm_config,
            similarity: sim_config,
            weights,
            agreement,
        },
        described,
    ))
}

/// The weights among `start` and the LLM shares `0, 1/steps, …, 1` whose blend of `l` and
/// `s` scores best by `metrics` (QWK, then MAE); `start` wins ties.
fn search_blend<E>(
    l: &[f64],
    s: &[f64],
    start: EnsembleWeights,
    steps: u32,
    metrics: impl Fn(&[f64]) -> Result<EpochMetrics, E>,
) -> Result<EnsembleWeights, E> {
    let mut best = (start, metrics(&blend(l, s, start))?);
    let steps = steps.max(1);
    for step in 0..=steps {
        let w = EnsembleWeights::with_llm_share(f64::from(step) / f64::from(steps));
        let m = metrics(&blend(l, s, w))?;
        if m.better_than(&best.1) {
            best = (w, m);
        }
    }
    Ok(best.0)
}

fn blend(l: &[f64], s: &[f64], w: EnsembleWeights) -> Vec<f64> {
    l.iter()
        .zip(s)
        .map(|(l, s)| (w.llm * l + w.similarity * s).clamp(0.0, 1.0))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The job
// ---------------------------------------------------------------------------------------

/// Runs training jobs.
#[derive(Default)]
pub struct TrainingHandler;

impl JobHandler for TrainingHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move { run(ctx).await })
    }
}

async fn load_data(
    state: &AppState,
    user_id: i32,
    guide_id: i32,
    params: &TrainingParams,
) -> anyhow::Result<Data> {
    let item_rows = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide_id))
        .order_by_asc(guide_items::Column::Position)
        .all(&state.db)
        .await?;
    let train = scored_answers(&state.db, user_id, guide_id, Some(Split::Train)).await?;
    let validation = scored_answers(&state.db, user_id, guide_id, Some(Split::Validation)).await?;
    let all: Vec<answers::Model> = train.iter().chain(&validation).cloned().collect();
    let items = grading_items(&item_rows, &all);
    let train: Vec<_> = train
        .into_iter()
        .filter(|a| items.contains_key(&a.item_id))
        .collect();
    let mut validation: Vec<_> = validation
        .into_iter()
        .filter(|a| items.contains_key(&a.item_id))
        .collect();
    if let Some(limit) = params.validation_limit {
        validation = subset(validation, limit, &items, params.seed);
    }
    anyhow::ensure!(
        !validation.is_empty(),
        "the guide has no scored validation answers"
    );
    Ok(Data {
        items,
        train,
        validation,
    })
}

fn training_data_hash(data: &Data) -> String {
    let mut rows: Vec<String> = data
        .train
        .iter()
        .chain(&data.validation)
        .map(|a| {
            format!(
                "{}:{}:{}:{}:{}",
                a.id,
                a.item_id,
                a.teacher_score.unwrap_or_default(),
                a.split,
                a.content_sha256
            )
        })
        .collect();
    rows.sort();
    hex::encode(Sha256::digest(rows.join("\n").as_bytes()))
}

async fn run(ctx: JobContext) -> anyhow::Result<Outcome> {
    let params: TrainingParams =
        serde_json::from_value(ctx.job.params.clone()).context("reading the job's parameters")?;
    let guide_id = ctx.job.guide_id.context("a training job needs a guide")?;
    let user_id = ctx.job.user_id;
    let state = ctx.state.clone();
    let data = load_data(&state, user_id, guide_id, &params).await?;
    let grading_ctx = GradingContext {
        user_id,
        job_id: Some(ctx.job.id),
    };
    let mut guard = Guard {
        ctx: ctx.clone(),
        budget_tokens: params.budget_tokens,
        budget_usd: params.budget_usd,
        epochs: params.epochs,
        epoch: 0,
        calls: 0,
        planned: 0,
        warned: false,
    };
    let mut model = (String::new(), String::new());
    let llm_trainer = if params.uses_llm() {
        let probe = LlmGraderConfig {
            provider: String::new(),
            model: params.model.clone().unwrap_or_default(),
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            seed: params.seed as i64,
            prompt: PromptInfo::default(),
            exemplars: ExemplarSettings::default(),
            calibration: Calibration::Identity,
            expected_marks: true,
        };
        let call_params = llm_params(&state, user_id, &probe).await?;
        model = (
            call_params.model.clone(),
            call_params.endpoint.provider.as_str().to_owned(),
        );
        let embedder = shared_embedder(&state.settings.embeddings).await.ok();
        let pool = build_pool(&data.train, params.seed);
        let calibration_sample = subset(
            data.train.clone(),
            params.calibration_sample,
            &data.items,
            params.seed ^ 0xCA1,
        );
        Some(LlmTrainer {
            grading: LlmGrading::new(state.llm.clone(), call_params, grading_ctx, probe, embedder),
            params: params.clone(),
            pool,
            calibration_sample,
            cache: HashMap::new(),
        })
    } else {
        None
    };
    let sim_trainer = if matches!(params.engine, Engine::Similarity | Engine::Ensemble) {
        match SimilarityTrainer::new(&state, &params, &data).await {
            Ok(t) => Some(t),
            Err(stop) => return finish_stop(stop),
        }
    } else {
        None
    };
    let mut trainer = match (params.engine, llm_trainer, sim_trainer) {
        (Engine::Llm, Some(l), _) => Trainer::Llm(l),
        (Engine::Similarity, _, Some(s)) => Trainer::Similarity(s),
        (Engine::Ensemble, Some(l), Some(s)) => Trainer::Ensemble(l, s),
        _ => anyhow::bail!("the engines could not be prepared"),
    };

    let resumed: Option<Checkpoint> = match &ctx.job.checkpoint {
        Some(value) => {
            Some(serde_json::from_value(value.clone()).context("reading the checkpoint")?)
        }
        None => None,
    };
    let mut cp = match resumed {
        Some(cp) => {
            emit_missing_epochs(&ctx, &cp.history).await?;
            ctx.emit("log", json!({ "message": format!("resuming after epoch {}", cp.epoch), "epoch": cp.epoch })).await?;
            cp
        }
        None => match epoch_zero(&ctx, &data, &mut trainer, &model, &mut guard).await {
            Ok(cp) => cp,
            Err(Stop::Budget(why)) => {
                anyhow::bail!("the budget is too small to measure even the base grader: {why}")
            }
            Err(stop) => return finish_stop(stop),
        },
    };

    while cp.stopped.is_none() && cp.epoch < params.epochs {
        if cp.since_improved >= params.patience {
            cp.stopped = Some(StopReason::Patience);
            ctx.emit(
                "early_stop",
                json!({ "epoch": cp.epoch, "patience": params.patience, "best_epoch": cp.best_epoch }),
            )
            .await?;
            break;
        }
        let epoch = cp.epoch + 1;
        match run_epoch(&ctx, &data, &mut trainer, &mut cp, epoch, &mut guard).await {
            Ok(()) => {}
            Err(Stop::Budget(why)) => {
                cp.stopped = Some(StopReason::Budget);
                ctx.emit("budget_exhausted", json!({ "epoch": epoch, "reason": why }))
                    .await?;
            }
            Err(stop) => return finish_stop(stop),
        }
    }
    let stopped = cp.stopped.unwrap_or(StopReason::Completed);
    ctx.checkpoint(Some(cp.epoch as i32), serde_json::to_value(&cp)?)
        .await?;

    // The version: created once per job (a resumed job finds the one it made).
    let verdicts = match trainer.verdicts(&data, &cp.best, &mut guard).await {
        Ok(v) => v,
        Err(Stop::Budget(_)) => Vec::new(),
        Err(stop) => return finish_stop(stop),
    };
    let version_config = VersionConfig {
        grader: cp.best.clone(),
        seed: params.seed,
        mark_steps: data
            .items
            .iter()
            .map(|(id, i)| (*id, i.mark_step))
            .collect(),
        training: TrainingProvenance {
            job_id: ctx.job.id,
            guide_id,
            training_data_sha256: training_data_hash(&data),
            train_answers: data.train.len(),
            validation_answers: data.validation.len(),
            epochs_run: cp.epoch,
            best_epoch: cp.best_epoch,
            stopped,
        },
    };
    let (grader, version) =
        save_version(&state, &ctx.job, &params, &version_config, &cp.best_metrics).await?;
    save_gradings(&state, user_id, version.id, ctx.job.id, verdicts).await?;
    ctx.emit(
        "grader_version",
        json!({ "grader_id": grader.id, "grader_version_id": version.id, "version": version.version }),
    )
    .await?;
    Ok(Outcome::Succeeded(json!({
        "grader_id": grader.id,
        "grader_version_id": version.id,
        "version": version.version,
        "engine": params.engine,
        "best_epoch": cp.best_epoch,
        "epochs_run": cp.epoch,
        "stopped": stopped,
        "metrics": cp.best_metrics,
        "baseline": cp.history.first().map(|r| r.metrics),
        "train_answers": data.train.len(),
        "validation_answers": data.validation.len(),
    })))
}

fn finish_stop(stop: Stop) -> anyhow::Result<Outcome> {
    match stop {
        Stop::Cancelled => Ok(Outcome::Cancelled),
        Stop::Budget(why) => Err(anyhow::anyhow!("stopped by the budget: {why}")),
        Stop::Failed(err) => Err(err),
    }
}

async fn epoch_zero(
    ctx: &JobContext,
    data: &Data,
    trainer: &mut Trainer,
    model: &(String, String),
    guard: &mut Guard,
) -> Result<Checkpoint, Stop> {
    let started = Instant::now();
    let before = guard.spent().await?;
    guard.start_epoch(0, 0);
    let (config, change) = trainer.base(data, model, guard).await?;
    guard.planned = trainer.planned(data, 0, &config);
    let predictions = trainer.predict(data, &config, guard).await?;
    let metrics = data.metrics(&predictions)?;
    let (_, marks) = data.normalised(&predictions)?;
    let after = guard.spent().await?;
    let record = EpochRecord {
        epoch: 0,
        metrics,
        kept: true,
        change,
        tokens: (after.prompt - before.prompt) + (after.completion - before.completion),
        prompt_tokens: after.prompt - before.prompt,
        completion_tokens: after.completion - before.completion,
        cost: after.cost - before.cost,
        calls: guard.calls,
        seconds: started.elapsed().as_secs_f64(),
        best_epoch: 0,
        best_qwk: metrics.qwk,
        best_mae: metrics.mae,
        qwk_noise: None,
        mae_noise: None,
    };
    let cp = Checkpoint {
        epoch: 0,
        best: config,
        best_epoch: 0,
        best_metrics: metrics,
        best_marks: marks,
        since_improved: 0,
        history: vec![record.clone()],
        stopped: None,
    };
    persist_epoch(ctx, &cp, &record, guard.epochs).await?;
    Ok(cp)
}

async fn run_epoch(
    ctx: &JobContext,
    data: &Data,
    trainer: &mut Trainer,
    cp: &mut Checkpoint,
    epoch: u32,
    guard: &mut Guard,
) -> Result<(), Stop> {
    if ctx.cancel_requested().await? {
        return Err(Stop::Cancelled);
    }
    let started = Instant::now();
    let before = guard.spent().await?;
    let planned = trainer.planned(data, epoch, &cp.best);
    guard.start_epoch(epoch, planned);
    let (candidate, change) = trainer.candidate(data, epoch, &cp.best, guard).await?;
    let predictions = trainer.predict(data, &candidate, guard).await?;
    let metrics = data.metrics(&predictions)?;
    let (teacher, marks) = data.normalised(&predictions)?;
    let noise = (cp.best_marks.len() == marks.len())
        .then(|| Noise::between(&teacher, &cp.best_marks, &marks, u64::from(epoch)))
        .flatten();
    let kept = metrics.better_than_beyond(&cp.best_metrics, noise);
    if kept {
        cp.best = candidate;
        cp.best_metrics = metrics;
        cp.best_marks = marks;
        cp.best_epoch = epoch;
        cp.since_improved = 0;
    } else {
        cp.since_improved += 1;
    }
    let after = guard.spent().await?;
    let record = EpochRecord {
        epoch,
        metrics,
        kept,
        change,
        tokens: (after.prompt - before.prompt) + (after.completion - before.completion),
        prompt_tokens: after.prompt - before.prompt,
        completion_tokens: after.completion - before.completion,
        cost: after.cost - before.cost,
        calls: guard.calls,
        seconds: started.elapsed().as_secs_f64(),
        best_epoch: cp.best_epoch,
        best_qwk: cp.best_metrics.qwk,
        best_mae: cp.best_metrics.mae,
        qwk_noise: noise.map(|n| n.qwk),
        mae_noise: noise.map(|n| n.mae),
    };
    cp.epoch = epoch;
    cp.history.push(record.clone());
    persist_epoch(ctx, cp, &record, guard.epochs).await?;
    Ok(())
}

/// Checkpoints first, then publishes the epoch: a crash in between re-publishes it on
/// resume ([`emit_missing_epochs`]), so no epoch is lost or told twice.
async fn persist_epoch(
    ctx: &JobContext,
    cp: &Checkpoint,
    record: &EpochRecord,
    epochs: u32,
) -> Result<(), Stop> {
    ctx.checkpoint(Some(record.epoch as i32), serde_json::to_value(cp)?)
        .await?;
    ctx.emit("epoch", serde_json::to_value(record)?).await?;
    let fraction = f64::from(record.epoch + 1) / f64::from(epochs + 1);
    ctx.progress(
        fraction * 0.98,
        &format!(
            "epoch {} {}: QWK {}, MAE {}",
            record.epoch,
            if record.kept { "kept" } else { "rejected" },
            fmt_opt(record.metrics.qwk),
            fmt_opt(record.metrics.mae)
        ),
    )
    .await?;
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.3}"))
}

/// Publishes the epochs of the checkpoint that have no `epoch` event yet.
async fn emit_missing_epochs(ctx: &JobContext, history: &[EpochRecord]) -> anyhow::Result<()> {
    let told: BTreeSet<u64> = job_events::Entity::find()
        .filter(job_events::Column::JobId.eq(ctx.job.id))
        .filter(job_events::Column::Kind.eq("epoch"))
        .all(&ctx.state.db)
        .await?
        .iter()
        .filter_map(|e| e.payload.get("epoch").and_then(Value::as_u64))
        .collect();
    for record in history {
        if !told.contains(&u64::from(record.epoch)) {
            ctx.emit("epoch", serde_json::to_value(record)?).await?;
        }
    }
    Ok(())
}

async fn save_version(
    state: &AppState,
    job: &jobs::Model,
    params: &TrainingParams,
    config: &VersionConfig,
    metrics: &EpochMetrics,
) -> anyhow::Result<(graders::Model, grader_versions::Model)> {
    let db = &state.db;
    if let Some(version) = grader_versions::Entity::find()
        .filter(grader_versions::Column::JobId.eq(job.id))
        .one(db)
        .await?
    {
        let grader = graders::Entity::find_by_id(version.grader_id)
            .one(db)
            .await?
            .context("the version's grader is gone")?;
        return Ok((grader, version));
    }
    let guide_id = config.training.guide_id;
    let grader = match params.grader_id {
        Some(id) => graders::Entity::find_by_id(id)
            .filter(graders::Column::UserId.eq(job.user_id))
            .one(db)
            .await?
            .context("the grader to add a version to is gone")?,
        None => {
            let guide = guides::Entity::find_by_id(guide_id).one(db).await?;
            let name = params.name.clone().unwrap_or_else(|| {
                format!(
                    "{} grader for {}",
                    engine_title(params.engine),
                    guide.map_or_else(|| format!("guide {guide_id}"), |g| g.title)
                )
            });
            let now = Utc::now();
            graders::ActiveModel {
                user_id: Set(job.user_id),
                guide_id: Set(guide_id),
                name: Set(name.chars().take(200).collect()),
                engine: Set(params.engine),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?
        }
    };
    let value = serde_json::to_value(config)?;
    let metrics = serde_json::to_value(metrics)?;
    for _ in 0..5 {
        let last: Option<i32> = grader_versions::Entity::find()
            .select_only()
            .column_as(grader_versions::Column::Version.max(), "max")
            .filter(grader_versions::Column::GraderId.eq(grader.id))
            .into_tuple()
            .one(db)
            .await?
            .flatten();
        let inserted = grader_versions::ActiveModel {
            grader_id: Set(grader.id),
            version: Set(last.unwrap_or(0) + 1),
            config: Set(value.clone()),
            validation_metrics: Set(Some(metrics.clone())),
            job_id: Set(Some(job.id)),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(db)
        .await;
        match inserted {
            Ok(version) => {
                graders::Entity::update_many()
                    .col_expr(graders::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(graders::Column::Id.eq(grader.id))
                    .exec(db)
                    .await?;
                return Ok((grader, version));
            }
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                continue
            }
            Err(err) => return Err(err.into()),
        }
    }
    anyhow::bail!("could not number the new grader version")
}

async fn save_gradings(
    state: &AppState,
    user_id: i32,
    version_id: i32,
    job_id: i32,
    verdicts: Vec<Verdict>,
) -> Result<(), DbErr> {
    gradings::Entity::delete_many()
        .filter(gradings::Column::JobId.eq(job_id))
        .filter(gradings::Column::GraderVersionId.eq(version_id))
        .exec(&state.db)
        .await?;
    let rows: Vec<gradings::ActiveModel> = verdicts
        .into_iter()
        .map(|v| v.into_row(user_id, version_id, Some(job_id), 0))
        .collect();
    for chunk in rows.chunks(300) {
        gradings::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&state.db)
            .await?;
    }
    Ok(())
}

fn engine_title(engine: Engine) -> &'static str {
    match engine {
        Engine::Llm => "LLM",
        Engine::Similarity => "Similarity",
        Engine::Ensemble => "Ensemble",
    }
}

// ---------------------------------------------------------------------------------------
// Requests: start, estimate, graders, versions, diffs
// ---------------------------------------------------------------------------------------

async fn owned_guide(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
) -> Result<guides::Model, TrainingError> {
    guides::Entity::find_by_id(guide_id)
        .filter(guides::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(TrainingError::GuideNotFound(guide_id))
}

/// Counts of a guide's scored answers that training would use.
#[derive(Debug, Clone, Copy)]
struct Counts {
    train: usize,
    validation: usize,
}

async fn check_data(
    state: &AppState,
    user_id: i32,
    guide_id: i32,
    params: &TrainingParams,
) -> Result<(Counts, Data), TrainingError> {
    owned_guide(&state.db, user_id, guide_id).await?;
    let data = match load_data(state, user_id, guide_id, params).await {
        Ok(data) => data,
        Err(_) => {
            return Err(TrainingError::Invalid(
                "This guide has no scored answers in the validation split: import answers (or re-split them) first."
                    .into(),
            ))
        }
    };
    if matches!(params.engine, Engine::Similarity | Engine::Ensemble) && data.train.len() < 2 {
        return Err(TrainingError::Invalid(
            "The similarity engine needs scored answers in the train split: import answers (or re-split them) first."
                .into(),
        ));
    }
    Ok((
        Counts {
            train: data.train.len(),
            validation: data.validation.len(),
        },
        data,
    ))
}

/// Queues a training job for one of the caller's guides.
#[instrument(skip(state, params))]
pub async fn start(
    state: &AppState,
    user_id: i32,
    guide_id: i32,
    params: TrainingParams,
) -> Result<jobs::Model, TrainingError> {
    params.check()?;
    check_data(state, user_id, guide_id, &params).await?;
    if let Some(grader_id) = params.grader_id {
        let grader = grader(&state.db, user_id, grader_id).await?;
        if grader.guide_id != guide_id || grader.engine != params.engine {
            return Err(TrainingError::Invalid(format!(
                "Grader {grader_id} is a {} grader of another guide or engine; train a new grader instead.",
                grader.engine
            )));
        }
    }
    if params.uses_llm() {
        // Fail now, not in the job, when the LLM settings cannot work.
        state.llm.params_for_user(user_id).await?;
    }
    let value = serde_json::to_value(&params).map_err(|e| TrainingError::Invalid(e.to_string()))?;
    Ok(job_service::create(state, user_id, Some(guide_id), JobKind::Training, value).await?)
}

/// What a training job would cost, at most.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingEstimate {
    /// Provider preset.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Model calls, at most (cache hits make it fewer).
    pub calls: u64,
    /// Prompt tokens (about four characters each).
    pub prompt_tokens: u64,
    /// Completion tokens, at the `maxTokens` bound.
    pub completion_tokens: u64,
    /// Cost in US dollars; `None` when the model has no known price.
    pub cost_usd: Option<f64>,
    /// Train answers.
    pub train_answers: usize,
    /// Validation answers graded each epoch.
    pub validation_answers: usize,
    /// How the numbers were reached.
    pub note: String,
}

/// An upper bound on the calls, tokens and cost of a training job with `params`.
pub async fn estimate(
    state: &AppState,
    user_id: i32,
    guide_id: i32,
    params: TrainingParams,
) -> Result<TrainingEstimate, TrainingError> {
    params.check()?;
    let (counts, data) = check_data(state, user_id, guide_id, &params).await?;
    if !params.uses_llm() {
        return Ok(TrainingEstimate {
            provider: "local".into(),
            model: "all-MiniLM-L6-v2 (sentence embeddings)".into(),
            calls: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_usd: Some(0.0),
            train_answers: counts.train,
            validation_answers: counts.validation,
            note: "The similarity engine runs locally: no model calls, no cost.".into(),
        });
    }
    let call_params = state.llm.params_for_user(user_id).await?;
    let model = params.model.clone().unwrap_or(call_params.model.clone());
    let calibration = params.calibration_sample.min(counts.train) as u64;
    let val = counts.validation as u64;
    // Epoch 0 grades validation; each later epoch grades validation again (a new prompt)
    // or the calibration sample (a calibration refit), never both.
    let calls = val + u64::from(params.epochs) * val.max(calibration);
    let exemplars = params.max_exemplars.max(params.exemplars);
    let answer_chars = llm_engine::mean_chars(data.validation.iter().map(|a| a.text.as_str()));
    let exemplar_chars = llm_engine::mean_chars(data.train.iter().map(|a| a.text.as_str()));
    // Prompt length averaged over the items the validation answers belong to.
    let prompt_chars = data
        .validation
        .iter()
        .filter_map(|a| data.items.get(&a.item_id))
        .map(|item| llm_engine::prompt_chars(item, exemplars, exemplar_chars, answer_chars))
        .sum::<u64>()
        / data.validation.len().max(1) as u64;
    let e = crate::llm::estimate(
        call_params.endpoint.provider,
        &model,
        calls,
        prompt_chars,
        u64::from(params.max_tokens),
    );
    Ok(TrainingEstimate {
        provider: call_params.endpoint.provider.as_str().to_owned(),
        model,
        calls: e.calls,
        prompt_tokens: e.prompt_tokens,
        completion_tokens: e.completion_tokens,
        cost_usd: e.cost_usd,
        train_answers: counts.train,
        validation_answers: counts.validation,
        note: format!(
            "Upper bound: {val} validation answers graded in epoch 0 and in each of {} later epochs (or up to {calibration} train answers for a calibration), prompts with up to {exemplars} exemplars, replies at the {}-token limit. Cached calls cost nothing.",
            params.epochs, params.max_tokens
        ),
    })
}

/// The caller's graders of a guide, newest first.
pub async fn graders_of(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
) -> Result<Vec<graders::Model>, TrainingError> {
    owned_guide(db, user_id, guide_id).await?;
    Ok(graders::Entity::find()
        .filter(graders::Column::UserId.eq(user_id))
        .filter(graders::Column::GuideId.eq(guide_id))
        .order_by_desc(graders::Column::Id)
        .all(db)
        .await?)
}

/// One of the caller's graders.
pub async fn grader(
    db: &DatabaseConnection,
    user_id: i32,
    id: i32,
) -> Result<graders::Model, TrainingError> {
    graders::Entity::find_by_id(id)
        .filter(graders::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(TrainingError::GraderNotFound(id))
}

/// A grader's versions, oldest first.
pub async fn versions(
    db: &DatabaseConnection,
    grader_id: i32,
) -> Result<Vec<grader_versions::Model>, TrainingError> {
    Ok(grader_versions::Entity::find()
        .filter(grader_versions::Column::GraderId.eq(grader_id))
        .order_by_asc(grader_versions::Column::Version)
        .all(db)
        .await?)
}

/// One of the caller's grader versions.
pub async fn version(
    db: &DatabaseConnection,
    user_id: i32,
    id: i32,
) -> Result<grader_versions::Model, TrainingError> {
    let found = grader_versions::Entity::find_by_id(id)
        .find_also_related(graders::Entity)
        .one(db)
        .await?;
    match found {
        Some((version, Some(grader))) if grader.user_id == user_id => Ok(version),
        _ => Err(TrainingError::VersionNotFound(id)),
    }
}

/// One difference between two configs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// JSON pointer of the value, e.g. `/calibration/kind`.
    pub path: String,
    /// Value in the first version (absent: `None`).
    pub before: Option<Value>,
    /// Value in the second version.
    pub after: Option<Value>,
}

/// The differences between two JSON values, leaf by leaf (arrays of different lengths
/// and values of different types are compared whole).
pub fn diff_values(before: &Value, after: &Value) -> Vec<ConfigChange> {
    let mut out = Vec::new();
    diff_into("", Some(before), Some(after), &mut out);
    out
}

fn diff_into(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<ConfigChange>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                diff_into(&format!("{path}/{escaped}"), x.get(key), y.get(key), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_into(&format!("{path}/{i}"), Some(p), Some(q), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(ConfigChange {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            },
            before: a.cloned(),
            after: b.cloned(),
        }),
    }
}

/// What changed from one of the caller's grader versions to another.
pub async fn version_diff(
    db: &DatabaseConnection,
    user_id: i32,
    from: i32,
    to: i32,
) -> Result<Vec<ConfigChange>, TrainingError> {
    let a = version(db, user_id, from).await?;
    let b = version(db, user_id, to).await?;
    Ok(diff_values(&a.config, &b.config))
}

/// The finished epochs of one of the caller's training jobs, in order.
pub async fn epochs(
    db: &DatabaseConnection,
    user_id: i32,
    job_id: i32,
) -> Result<Vec<EpochRecord>, TrainingError> {
    let job = jobs::Entity::find_by_id(job_id)
        .filter(jobs::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(TrainingError::JobNotFound(job_id))?;
    let events = job_events::Entity::find()
        .filter(job_events::Column::JobId.eq(job.id))
        .filter(job_events::Column::Kind.eq("epoch"))
        .order_by_asc(job_events::Column::Seq)
        .all(db)
        .await?;
    let mut seen = BTreeSet::new();
    Ok(events
        .into_iter()
        .filter_map(|e| serde_json::from_value::<EpochRecord>(e.payload).ok())
        .filter(|r| seen.insert(r.epoch))
        .collect())
}

/// Parses a version's stored config.
pub fn parse_version_config(version: &grader_versions::Model) -> Option<VersionConfig> {
    serde_json::from_value(version.config.clone()).ok()
}

/// Loads a stored version into a grader ready to grade (for test runs), with the mark steps
/// it was trained with.
pub async fn load_grader(
    state: &AppState,
    user_id: i32,
    version_id: i32,
    job_id: Option<i32>,
) -> Result<crate::grading::grader::Grader, TrainingError> {
    let version = version(&state.db, user_id, version_id).await?;
    let grader = grader(&state.db, user_id, version.grader_id).await?;
    let config = parse_version_config(&version).ok_or_else(|| {
        TrainingError::Invalid(format!(
            "grader version {version_id} has an unreadable config"
        ))
    })?;
    crate::grading::grader::Grader::load_with_steps(
        state,
        GradingContext { user_id, job_id },
        grader.guide_id,
        config.grader,
        Some(&config.mark_steps),
    )
    .await
    .map_err(|err| match err {
        GradingError::Llm(err) => TrainingError::Llm(err),
        GradingError::Db(err) => TrainingError::Db(err),
        other => TrainingError::Invalid(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn m(qwk: Option<f64>, mae: f64) -> EpochMetrics {
        EpochMetrics {
            qwk,
            mae: Some(mae),
            ..EpochMetrics::default()
        }
    }

    /// Agreement of normalised predictions with `teacher` on a quarter-mark item of 4 marks.
    fn agreement(teacher: &[f64], predicted: &[f64]) -> EpochMetrics {
        let pairs: Vec<ScorePair> = teacher
            .iter()
            .zip(predicted)
            .map(|(t, p)| ScorePair {
                teacher: t * 4.0,
                predicted: (p * 4.0).round(),
                max_marks: 4.0,
            })
            .collect();
        EpochMetrics::from_report(&AgreementReport::compute(&pairs))
    }

    #[test]
    fn the_blend_search_silences_an_engine_that_only_adds_noise() {
        let teacher = [1.0, 0.75, 0.5, 0.25, 0.0, 1.0, 0.5, 0.0, 0.75, 0.25];
        // The similarity engine ranks every answer right; the LLM gives everyone about half.
        let similarity: Vec<f64> = teacher.iter().map(|t| t * 0.9 + 0.05).collect();
        let llm = [0.5, 0.45, 0.55, 0.5, 0.6, 0.4, 0.5, 0.55, 0.45, 0.5];
        let by_agreement = EnsembleWeights::with_llm_share(0.3);
        let metrics = |p: &[f64]| Ok::<_, Infallible>(agreement(&teacher, p));
        let Ok(found) = search_blend(&llm, &similarity, by_agreement, 10, metrics);
        assert_eq!(found, EnsembleWeights::with_llm_share(0.0), "{found:?}");
        let started = agreement(&teacher, &blend(&llm, &similarity, by_agreement));
        assert!(agreement(&teacher, &blend(&llm, &similarity, found)).better_than(&started));

        // Swapped, the LLM takes (nearly) all the weight; and a start no share beats is kept.
        let Ok(found) = search_blend(&similarity, &llm, by_agreement, 10, metrics);
        assert!(found.llm >= 0.9, "{found:?}");
        let alone = EnsembleWeights::with_llm_share(0.0);
        let Ok(kept) = search_blend(&llm, &similarity, alone, 20, metrics);
        assert_eq!(kept, alone);
    }

    #[test]
    fn improvement_is_higher_qwk_then_lower_mae() {
        assert!(m(Some(0.5), 0.2).better_than(&m(Some(0.4), 0.1)));
        assert!(!m(Some(0.4), 0.1).better_than(&m(Some(0.5), 0.2)));
        assert!(
            m(Some(0.5), 0.1).better_than(&m(Some(0.5), 0.2)),
            "MAE breaks the tie"
        );
        assert!(
            !m(Some(0.5), 0.2).better_than(&m(Some(0.5), 0.2)),
            "equal is not better"
        );
        assert!(
            m(Some(0.1), 0.3).better_than(&m(None, 0.1)),
            "undefined QWK counts as 0"
        );
    }

    #[test]
    fn qwk_decides_beyond_its_noise_then_mae_beyond_its_own_then_the_point_figures() {
        let noise = |qwk, mae| Some(Noise { qwk, mae });
        // Session 8's slice-2 shift: QWK 0.225 → 0.198 on 24 answers, MAE 0.323 → 0.264.
        let (best, shifted) = (m(Some(0.225), 0.323), m(Some(0.198), 0.264));
        assert!(
            !shifted.better_than(&best),
            "without noise QWK alone decides"
        );
        assert!(
            shifted.better_than_beyond(&best, noise(0.17, 0.02)),
            "QWK within its noise, MAE cut beyond its own: kept"
        );
        assert!(
            !shifted.better_than_beyond(&best, noise(0.02, 0.02)),
            "a QWK loss beyond its noise loses, whatever MAE does"
        );
        assert!(
            !shifted.better_than_beyond(&best, noise(0.17, 0.08)),
            "both within their noise: the point figures, QWK first"
        );
        // This session's slice-2 exemplars: QWK +0.058, MAE +0.001, both within the noise.
        assert!(m(Some(0.207), 0.330).better_than_beyond(&m(Some(0.148), 0.329), noise(0.17, 0.02)));
        // Slice 1's degenerate shift to nearly all full marks: QWK lost beyond its noise.
        assert!(!m(Some(0.150), 0.136).better_than_beyond(&m(Some(0.344), 0.167), noise(0.1, 0.02)));
        assert!(
            m(Some(0.6), 0.4).better_than_beyond(&m(Some(0.2), 0.2), noise(0.17, 0.02)),
            "a QWK gain beyond its noise wins, whatever MAE does"
        );
        assert!(
            !m(Some(0.225), 0.323).better_than_beyond(&m(Some(0.225), 0.323), noise(0.1, 0.02)),
            "equal is not better"
        );
    }

    #[test]
    fn an_llm_version_config_reads_back_as_written() {
        let llm = trainer().base_config("local".into(), "llamacpp".into());
        // The job's seed is the engine's seed (one `seed` key is stored for both).
        let seed = llm.seed as u64;
        let config = VersionConfig {
            grader: GraderConfig::Llm(llm),
            seed,
            mark_steps: BTreeMap::from([(7, 0.5)]),
            training: TrainingProvenance {
                job_id: 3,
                guide_id: 2,
                training_data_sha256: "ab".repeat(32),
                train_answers: 10,
                validation_answers: 4,
                epochs_run: 2,
                best_epoch: 1,
                stopped: StopReason::Completed,
            },
        };
        let stored = serde_json::to_value(&config).expect("serialises");
        let read: VersionConfig = serde_json::from_value(stored).expect("reads back");
        assert_eq!(read, config);
    }

    fn trainer() -> LlmTrainer {
        let settings = crate::config::LlmSettings::default();
        let client = std::sync::Arc::new(crate::llm::LlmClient::new(
            &settings,
            sea_orm::DatabaseConnection::default(),
        ));
        let params = TrainingParams {
            engine: Engine::Llm,
            max_exemplars: 4,
            ..TrainingParams::default()
        };
        let base = LlmGraderConfig {
            provider: "llamacpp".into(),
            model: "local".into(),
            temperature: 0.0,
            max_tokens: 96,
            seed: 42,
            prompt: PromptInfo::default(),
            exemplars: ExemplarSettings::default(),
            calibration: Calibration::Identity,
            expected_marks: false,
        };
        let grading = LlmGrading::new(
            client.clone(),
            client.default_params(),
            GradingContext {
                user_id: 1,
                job_id: None,
            },
            base,
            None,
        );
        LlmTrainer {
            grading,
            params,
            pool: BTreeMap::new(),
            calibration_sample: Vec::new(),
            cache: HashMap::new(),
        }
    }

    fn kind(p: &LlmProposal) -> String {
        match p {
            LlmProposal::Config(config, change) => format!(
                "{}:{}:{}",
                change.kind,
                config.exemplars.strategy.as_str(),
                config.exemplars.count
            ),
            LlmProposal::Calibrate(method) => format!("calibration:{}", method.as_str()),
        }
    }

    #[test]
    fn llm_changes_alternate_prompts_and_calibration_without_repeating_a_rejection() {
        let t = trainer();
        let zero_shot = t.base_config("local".into(), "llamacpp".into());
        let kinds: Vec<String> = (1..=5).map(|e| kind(&t.propose(e, &zero_shot))).collect();
        assert_eq!(
            kinds,
            vec![
                "exemplars:nearest:3",
                "calibration:shift",
                "exemplar_set:fixed:3",
                "calibration:isotonic",
                "exemplar_set:fixed:3",
            ]
        );
        // With exemplars and a shift kept, the next changes build on them.
        let mut best = zero_shot;
        best.exemplars.strategy = ExemplarStrategy::Nearest;
        best.exemplars.count = 3;
        best.calibration = Calibration::fit(CalibrationMethod::Shift, &[(0.0, 0.1), (1.0, 0.9)]);
        assert_eq!(kind(&t.propose(6, &best)), "exemplar_count:nearest:4");
        assert_eq!(
            kind(&t.propose(7, &best)),
            "calibration:isotonic",
            "not the method it has"
        );
        assert_eq!(kind(&t.propose(8, &best)), "exemplar_set:fixed:3");
        assert_eq!(kind(&t.propose(10, &best)), "exemplar_set:fixed:2");
    }

    #[test]
    fn diffs_name_the_changed_leaves() {
        let a = json!({"engine": "llm", "calibration": {"kind": "identity"}, "exemplars": {"count": 2, "ids": [1, 2]}});
        let b = json!({"engine": "llm", "calibration": {"kind": "linear", "slope": 0.8}, "exemplars": {"count": 3, "ids": [1, 2, 5]}});
        let changes = diff_values(&a, &b);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/calibration/kind",
                "/calibration/slope",
                "/exemplars/count",
                "/exemplars/ids"
            ]
        );
        assert_eq!(changes[1].before, None);
        assert_eq!(changes[2].after, Some(json!(3)));
        assert!(diff_values(&a, &a).is_empty());
    }

    #[test]
    fn params_have_sane_defaults_and_limits() {
        assert!(TrainingParams::default().check().is_ok());
        let bad = TrainingParams {
            patience: 0,
            ..TrainingParams::default()
        };
        assert!(bad.check().is_err());
        let parsed: TrainingParams =
            serde_json::from_value(json!({"engine": "llm", "epochs": 2})).unwrap_or_default();
        assert_eq!(parsed.engine, Engine::Llm);
        assert_eq!(parsed.patience, 3);
    }
}
