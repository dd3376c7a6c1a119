//! The common face of the grading engines: a grader version's config, the items and answers it grades, and the verdict that becomes a `gradings` row.
//!
//! A [`GraderConfig`] is what a grader version stores (`grader_versions.config`): plain serde
//! data tagged by engine. [`Grader::load`] turns it into something that grades — it loads the
//! guide's items, the train answers the similarity engine needs and the shared embedding
//! model — and [`Grader::grade`] grades a batch of answers into [`Verdict`]s, each of which
//! becomes one `gradings` row ([`Verdict::into_row`]). Training jobs and test runs use the
//! same code, so a version grades the same way wherever it is used.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::LazyLock;

use chrono::Utc;
use entity::enums::{Engine, Split};
use entity::{answers, gradings, guide_items};
use futures::StreamExt as _;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::calibration::Calibration;
use super::ensemble::EnsembleConfig;
use super::llm::{LlmGraderConfig, LlmGrading};
use super::similarity::{self, GradedAnswer, SimilarityIndex, SimilarityModel};
use crate::config::EmbeddingSettings;
use crate::embeddings::{Embedder, EmbeddingError};
use crate::ingest::Criterion;
use crate::llm::{CallContext, CallParams, LlmError};
use crate::state::AppState;

/// Why grading failed.
#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    /// The language model failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The similarity engine failed.
    #[error(transparent)]
    Similarity(#[from] similarity::SimilarityError),
    /// The embedding model is missing or failed.
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
    /// The config or the data cannot be graded as given.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A guide item as the graders see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradingItem {
    /// `guide_items.id`.
    pub id: i32,
    /// Label as printed in the guide.
    pub label: String,
    /// The question.
    pub question: String,
    /// The model answer (may be empty).
    pub model_answer: String,
    /// Rubric criteria.
    pub criteria: Vec<Criterion>,
    /// Maximum marks (> 0).
    pub max_marks: f64,
    /// Marks are awarded in multiples of this.
    pub mark_step: f64,
}

impl GradingItem {
    /// The item with a mark step (see [`infer_mark_step`]).
    pub fn from_model(item: &guide_items::Model, mark_step: f64) -> Self {
        Self {
            id: item.id,
            label: item.label.clone(),
            question: item.question.clone(),
            model_answer: item.model_answer.clone(),
            criteria: serde_json::from_value(item.rubric.clone()).unwrap_or_default(),
            max_marks: item.max_marks,
            mark_step,
        }
    }

    /// The item as the similarity engine sees it (its id is the decimal item id).
    pub fn to_similarity(&self) -> similarity::Item {
        similarity::Item {
            id: self.id.to_string(),
            question: self.question.clone(),
            model_answer: self.model_answer.clone(),
            criteria: self
                .criteria
                .iter()
                .map(|c| c.description.clone())
                .collect(),
            max_marks: self.max_marks,
            mark_step: self.mark_step,
        }
    }

    /// Marks for a normalised score: clamped to 0..max and rounded to the mark step.
    pub fn to_marks(&self, normalised: f64) -> f64 {
        similarity::to_marks(normalised, self.max_marks, self.mark_step)
    }

    /// `marks / max_marks`.
    pub fn normalise(&self, marks: f64) -> f64 {
        if self.max_marks > 0.0 {
            (marks / self.max_marks).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The coarsest step in 1, ½, ¼, ⅕, 0.1, 0.05, 0.01 of which the maximum and every observed
/// mark are multiples: the grid a grader's marks are rounded to.
pub fn infer_mark_step(max_marks: f64, scores: impl IntoIterator<Item = f64>) -> f64 {
    const STEPS: [f64; 7] = [1.0, 0.5, 0.25, 0.2, 0.1, 0.05, 0.01];
    let values: Vec<f64> = std::iter::once(max_marks)
        .chain(scores)
        .filter(|v| v.is_finite())
        .collect();
    let multiple = |v: f64, step: f64| ((v / step) - (v / step).round()).abs() < 1e-6;
    STEPS
        .into_iter()
        .find(|&step| values.iter().all(|&v| multiple(v, step)))
        .unwrap_or(0.01)
}

/// Items of a guide with mark steps inferred from the given scored answers.
pub fn grading_items(
    items: &[guide_items::Model],
    scored: &[answers::Model],
) -> BTreeMap<i32, GradingItem> {
    let mut scores: HashMap<i32, Vec<f64>> = HashMap::new();
    for answer in scored {
        if let Some(score) = answer.teacher_score {
            scores.entry(answer.item_id).or_default().push(score);
        }
    }
    items
        .iter()
        .map(|item| {
            let step = infer_mark_step(
                item.max_marks,
                scores.get(&item.id).cloned().unwrap_or_default(),
            );
            (item.id, GradingItem::from_model(item, step))
        })
        .collect()
}

/// An answer to grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerToGrade {
    /// `answers.id`.
    pub id: i32,
    /// `guide_items.id`.
    pub item_id: i32,
    /// The student's text.
    pub text: String,
}

impl From<&answers::Model> for AnswerToGrade {
    fn from(answer: &answers::Model) -> Self {
        Self {
            id: answer.id,
            item_id: answer.item_id,
            text: answer.text.clone(),
        }
    }
}

/// One grader's verdict on one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The answer.
    pub answer_id: i32,
    /// Final marks after calibration, on the item's mark step.
    pub score: f64,
    /// Marks as the engine produced them, before calibration (clamped to 0..max).
    pub raw_score: f64,
    /// Per-criterion verdicts (a JSON array).
    pub criteria: Value,
    /// Feedback addressed to the student.
    pub feedback: String,
    /// The grader's reasoning, for the teacher.
    pub rationale: String,
    /// Confidence in 0..1 when the engine reports one.
    pub confidence: Option<f64>,
}

impl Verdict {
    /// The `gradings` row for this verdict.
    pub fn into_row(
        self,
        user_id: i32,
        grader_version_id: i32,
        job_id: Option<i32>,
        repeat_index: i32,
    ) -> gradings::ActiveModel {
        gradings::ActiveModel {
            user_id: Set(user_id),
            answer_id: Set(self.answer_id),
            grader_version_id: Set(grader_version_id),
            job_id: Set(job_id),
            repeat_index: Set(repeat_index),
            score: Set(self.score),
            raw_score: Set(self.raw_score),
            criteria: Set(self.criteria),
            feedback: Set(self.feedback),
            rationale: Set(self.rationale),
            confidence: Set(self.confidence),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
    }
}

/// The similarity engine's part of a grader version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarityGraderConfig {
    /// The fitted regression (both heads, with their weights).
    pub model: SimilarityModel,
    /// Train answers whose marks the k-NN features look up (`answers.id`).
    pub train_answer_ids: Vec<i32>,
}

/// What a grader version stores: the engine and everything it needs to grade again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "a handful exist per job or request; boxing would only add indirection"
)]
pub enum GraderConfig {
    /// Rubric prompt, exemplars and calibration on a language model.
    Llm(LlmGraderConfig),
    /// Embeddings, lexical features and a regression.
    Similarity(SimilarityGraderConfig),
    /// Both, weighted.
    Ensemble(EnsembleConfig),
}

impl GraderConfig {
    /// The engine.
    pub fn engine(&self) -> Engine {
        match self {
            Self::Llm(_) => Engine::Llm,
            Self::Similarity(_) => Engine::Similarity,
            Self::Ensemble(_) => Engine::Ensemble,
        }
    }

    /// The language model it calls, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            Self::Llm(llm) => Some(&llm.model),
            Self::Ensemble(ensemble) => Some(&ensemble.llm.model),
            Self::Similarity(_) => None,
        }
    }
}

/// Embedders by model directory, loaded once per process and shared by every job.
static EMBEDDERS: LazyLock<Mutex<HashMap<PathBuf, Embedder>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The shared sentence-embedding model named by `settings` (loaded on first use).
pub async fn shared_embedder(settings: &EmbeddingSettings) -> Result<Embedder, EmbeddingError> {
    let mut loaded = EMBEDDERS.lock().await;
    if let Some(embedder) = loaded.get(&settings.model_dir) {
        return Ok(embedder.clone());
    }
    let embedder = Embedder::open(settings.clone()).await?;
    loaded.insert(settings.model_dir.clone(), embedder.clone());
    Ok(embedder)
}

/// Who grading is for: the user charged and the job whose totals include the calls.
#[derive(Debug, Clone, Copy)]
pub struct GradingContext {
    /// The grader's owner.
    pub user_id: i32,
    /// The job, if any.
    pub job_id: Option<i32>,
}

impl GradingContext {
    /// The LLM call context for a grading call.
    pub fn call(&self) -> CallContext {
        let ctx = CallContext::task("grade").user(self.user_id);
        match self.job_id {
            Some(job) => ctx.job(job),
            None => ctx,
        }
    }
}

/// A loaded similarity engine: the fitted model and its index.
pub struct SimilarityRuntime {
    /// The fitted model.
    pub model: SimilarityModel,
    /// Items and train answers, embedded.
    pub index: SimilarityIndex,
    /// The embedding model.
    pub embedder: Embedder,
}

impl SimilarityRuntime {
    /// Builds the index over `items` and the train answers `train`.
    pub async fn build(
        embedder: Embedder,
        items: &BTreeMap<i32, GradingItem>,
        train: &[answers::Model],
        model: SimilarityModel,
    ) -> Result<Self, GradingError> {
        let sim_items: Vec<similarity::Item> =
            items.values().map(GradingItem::to_similarity).collect();
        let graded: Vec<GradedAnswer> = train
            .iter()
            .filter(|a| items.contains_key(&a.item_id))
            .filter_map(|a| {
                a.teacher_score.map(|score| GradedAnswer {
                    id: a.id.to_string(),
                    item_id: a.item_id.to_string(),
                    text: a.text.clone(),
                    score,
                })
            })
            .collect();
        let index = SimilarityIndex::build(&embedder, &sim_items, &graded, &model.config).await?;
        Ok(Self {
            model,
            index,
            embedder,
        })
    }

    /// Normalised predictions and regimes for `answers` (each answer is left out of its own
    /// neighbours).
    pub async fn predict(
        &self,
        answers: &[AnswerToGrade],
    ) -> Result<Vec<(f64, similarity::Features)>, GradingError> {
        let texts: Vec<String> = answers.iter().map(|a| a.text.clone()).collect();
        let vectors = self.embedder.embed(&texts).await?;
        answers
            .iter()
            .zip(vectors)
            .map(|(answer, vector)| {
                let id = answer.id.to_string();
                let features = self.index.features(
                    &answer.item_id.to_string(),
                    &answer.text,
                    &vector,
                    Some(&id),
                )?;
                Ok((self.model.predict(&features), features))
            })
            .collect()
    }
}

/// The similarity engine's verdict on one answer.
pub fn similarity_verdict(
    item: &GradingItem,
    answer_id: i32,
    normalised: f64,
    features: &similarity::Features,
) -> Verdict {
    let marks = item.to_marks(normalised);
    let cos = features.base.first().copied().unwrap_or_default();
    Verdict {
        answer_id,
        score: marks,
        raw_score: normalised * item.max_marks,
        criteria: json!([]),
        feedback: String::new(),
        rationale: format!(
            "Similarity engine ({}): {:.0}% of the marks predicted from the answer's closeness to the model answer (cosine {:.2}){}.",
            features.regime().describe(),
            normalised * 100.0,
            cos,
            if features.knn.is_some() {
                " and to the teacher's marked answers"
            } else {
                ""
            }
        ),
        confidence: None,
    }
}

/// A grader version made ready to grade.
pub struct Grader {
    config: GraderConfig,
    items: BTreeMap<i32, GradingItem>,
    similarity: Option<SimilarityRuntime>,
    llm: Option<LlmGrading>,
}

impl Grader {
    /// Loads what `config` needs for the guide `guide_id`: its items (with the mark steps
    /// inferred from the guide's scored answers), the train answers and the embedding model
    /// for the similarity engine, and the owner's LLM settings for the LLM engine.
    pub async fn load(
        state: &AppState,
        ctx: GradingContext,
        guide_id: i32,
        config: GraderConfig,
    ) -> Result<Self, GradingError> {
        Self::load_with_steps(state, ctx, guide_id, config, None).await
    }

    /// [`Grader::load`] with the mark steps a version was trained with (items not listed
    /// get steps inferred from the guide's scored answers).
    pub async fn load_with_steps(
        state: &AppState,
        ctx: GradingContext,
        guide_id: i32,
        config: GraderConfig,
        mark_steps: Option<&BTreeMap<i32, f64>>,
    ) -> Result<Self, GradingError> {
        let db = &state.db;
        let item_rows = guide_items::Entity::find()
            .filter(guide_items::Column::GuideId.eq(guide_id))
            .order_by_asc(guide_items::Column::Position)
            .all(db)
            .await?;
        let scored = scored_answers(db, ctx.user_id, guide_id, None).await?;
        let mut items = grading_items(&item_rows, &scored);
        if let Some(steps) = mark_steps {
            for (id, item) in items.iter_mut() {
                if let Some(step) = steps.get(id).filter(|s| **s > 0.0) {
                    item.mark_step = *step;
                }
            }
        }
        let similarity_config = match &config {
            GraderConfig::Similarity(s) => Some(s.clone()),
            GraderConfig::Ensemble(e) => Some(e.similarity.clone()),
            GraderConfig::Llm(_) => None,
        };
        let llm_config = match &config {
            GraderConfig::Llm(l) => Some(l.clone()),
            GraderConfig::Ensemble(e) => Some(e.llm.clone()),
            GraderConfig::Similarity(_) => None,
        };
        // The similarity engine needs the embedding model; the LLM engine only ranks
        // exemplars with it and falls back to token overlap without.
        let embedder = match similarity_config {
            Some(_) => Some(shared_embedder(&state.settings.embeddings).await?),
            None => shared_embedder(&state.settings.embeddings).await.ok(),
        };
        let similarity = match (similarity_config, embedder.clone()) {
            (Some(sim), Some(embedder)) => {
                let wanted: std::collections::HashSet<i32> =
                    sim.train_answer_ids.iter().copied().collect();
                let train: Vec<answers::Model> = scored
                    .iter()
                    .filter(|a| wanted.contains(&a.id))
                    .cloned()
                    .collect();
                Some(SimilarityRuntime::build(embedder, &items, &train, sim.model).await?)
            }
            _ => None,
        };
        let llm = match llm_config {
            Some(llm_config) => {
                let params = llm_params(state, ctx.user_id, &llm_config).await?;
                Some(LlmGrading::new(
                    state.llm.clone(),
                    params,
                    ctx,
                    llm_config,
                    embedder,
                ))
            }
            None => None,
        };
        Ok(Self {
            config,
            items,
            similarity,
            llm,
        })
    }

    /// How many answers [`Grader::grade`] grades at once: the LLM endpoint's parallel calls
    /// (see [`crate::llm::LlmClient::parallel_calls`]), one without the LLM engine.
    pub fn parallel_calls(&self) -> usize {
        self.llm.as_ref().map_or(1, LlmGrading::parallel_calls)
    }

    /// The config being graded with.
    pub fn config(&self) -> &GraderConfig {
        &self.config
    }

    /// The items, by id.
    pub fn items(&self) -> &BTreeMap<i32, GradingItem> {
        &self.items
    }

    /// Grades `answers`, the LLM engine up to [`Grader::parallel_calls`] at once; verdicts
    /// are in the answers' order and `progress(done, total)` is called after each answer
    /// the language model graded.
    pub async fn grade(
        &self,
        answers: &[AnswerToGrade],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Verdict>, GradingError> {
        for answer in answers {
            if !self.items.contains_key(&answer.item_id) {
                return Err(GradingError::Invalid(format!(
                    "answer {} is for item {}, which is not in this grader's guide",
                    answer.id, answer.item_id
                )));
            }
        }
        let similarity = match &self.similarity {
            Some(runtime) => Some(runtime.predict(answers).await?),
            None => None,
        };
        let mut llm_verdicts = Vec::with_capacity(answers.len());
        if let Some(llm) = &self.llm {
            // Up to the endpoint's parallel calls in flight; verdicts come back in order.
            // (The futures are made before the stream: a closure inside it would make the
            // job's future fail the `Send` check for every lifetime.)
            let calls: Vec<_> = answers
                .iter()
                .map(|answer| llm.grade(&self.items[&answer.item_id], answer))
                .collect();
            let mut verdicts = futures::stream::iter(calls).buffered(llm.parallel_calls());
            while let Some(verdict) = verdicts.next().await {
                llm_verdicts.push(verdict?);
                progress(llm_verdicts.len(), answers.len());
            }
        }
        let mut out = Vec::with_capacity(answers.len());
        for (i, answer) in answers.iter().enumerate() {
            let item = &self.items[&answer.item_id];
            let verdict = match (&self.config, &similarity) {
                (GraderConfig::Similarity(_), Some(sim)) => {
                    similarity_verdict(item, answer.id, sim[i].0, &sim[i].1)
                }
                (GraderConfig::Llm(_), _) => llm_verdicts[i].clone(),
                (GraderConfig::Ensemble(ensemble), Some(sim)) => {
                    ensemble.combine(item, &llm_verdicts[i], sim[i].0)
                }
                _ => {
                    return Err(GradingError::Invalid(
                        "the grader's engines were not loaded".into(),
                    ))
                }
            };
            out.push(verdict);
        }
        Ok(out)
    }
}

/// Call parameters for an LLM grader config: the owner's endpoint, with the config's model,
/// temperature, seed and token limit.
pub async fn llm_params(
    state: &AppState,
    user_id: i32,
    config: &LlmGraderConfig,
) -> Result<CallParams, LlmError> {
    let mut params = state.llm.params_for_user(user_id).await?;
    if !config.model.trim().is_empty() {
        params.model = config.model.clone();
    }
    Ok(params
        .temperature(config.temperature)
        .seed(config.seed)
        .max_tokens(config.max_tokens))
}

/// The caller's scored answers of a guide, optionally of one split, in id order.
pub async fn scored_answers(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    split: Option<Split>,
) -> Result<Vec<answers::Model>, DbErr> {
    let mut query = answers::Entity::find()
        .filter(answers::Column::UserId.eq(user_id))
        .filter(answers::Column::GuideId.eq(guide_id))
        .filter(answers::Column::TeacherScore.is_not_null());
    if let Some(split) = split {
        query = query.filter(answers::Column::Split.eq(split));
    }
    query.order_by_asc(answers::Column::Id).all(db).await
}

/// Applies a calibration to raw marks: the calibrated marks on the item's step.
pub fn calibrated_marks(item: &GradingItem, calibration: &Calibration, raw_marks: f64) -> f64 {
    item.to_marks(calibration.apply_to(item.id, item.normalise(raw_marks)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_steps_are_the_coarsest_grid_that_fits() {
        assert_eq!(infer_mark_step(4.0, [0.0, 2.0, 3.0]), 1.0);
        assert_eq!(infer_mark_step(2.5, [2.5, 0.0, 1.5, 1.25]), 0.25);
        assert_eq!(infer_mark_step(1.0, [0.5]), 0.5);
        assert_eq!(infer_mark_step(3.5, []), 0.5);
        assert_eq!(infer_mark_step(1.0, [0.3]), 0.1);
    }
}
