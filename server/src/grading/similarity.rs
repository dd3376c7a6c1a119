//! The `similarity` grading engine: sentence embeddings and lexical features, and a linear regression fitted on the teacher's scores.
//!
//! Every answer gets *base* features that mean the same thing for any item — cosine to the
//! model answer, best and mean cosine to the rubric criteria, cosine to the question, token
//! Jaccard with the model answer, log length ratio and criteria keyword coverage — and, when
//! its item already has graded train answers, *k-NN* features over those answers (the
//! similarity-weighted mean normalised score of the k nearest, the nearest one's score and
//! similarity, the item's mean score, and how much closer the answer is to a full-mark answer
//! than to any other).
//!
//! The grader says which regime it is in (`../shared/notes/FIDELITY.md`): [`Regime::GradedItem`]
//! (an item with at least `min_graded` graded answers: the head with k-NN features) or
//! [`Regime::NewItem`] (no graded answers: the head with base features only, which is what
//! generalises to new questions). Both heads are linear on standardised features, trained
//! together by mini-batch gradient descent (Adam, L2 penalty) one epoch at a time, so a
//! training job gets a real learning curve. Each head predicts a normalised score
//! (`marks / max_marks`); a calibration fitted on train predictions after every epoch
//! stretches it around the train mean so that its spread matches the teacher's (least
//! squares shrinks towards the mean, which costs agreement once marks are rounded); the
//! result is clipped to [0, 1] and rounded to the item's mark step.
//!
//! The fitted [`SimilarityModel`] is plain serde data — it goes into a grader version's config
//! JSON — and training is deterministic for a given seed. The [`SimilarityIndex`] (item and
//! train-answer embeddings) is rebuilt from the database when needed; embeddings are cached.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::embeddings::{cosine, Embedder, Embedding, EmbeddingError};

/// Names of the base features, in order (both regimes).
pub const BASE_FEATURES: [&str; 8] = [
    "cos_reference",
    "max_cos_criteria",
    "mean_cos_criteria",
    "cos_question",
    "jaccard_reference",
    "log_length_ratio",
    "keyword_coverage",
    "cos_reference_squared",
];

/// Names of the k-NN features, in order (only for items with graded answers).
pub const KNN_FEATURES: [&str; 5] = [
    "knn_weighted_mean",
    "nearest_score",
    "nearest_cos",
    "item_mean_score",
    "full_minus_partial_cos",
];

/// Version of the serialised [`SimilarityModel`] layout.
pub const MODEL_FORMAT: u32 = 1;

/// Why the engine could not featurise or grade.
#[derive(Debug, thiserror::Error)]
pub enum SimilarityError {
    /// An answer names an item the index does not know.
    #[error("unknown item {0:?}")]
    UnknownItem(String),
    /// An item cannot be graded as given.
    #[error("item {item:?}: {reason}")]
    InvalidItem {
        /// The item id.
        item: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Embedding failed.
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
}

/// A gradable item as the engine sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Stable id (the guide item id, or a dataset's item id).
    pub id: String,
    /// The question text.
    pub question: String,
    /// The model (reference) answer.
    pub model_answer: String,
    /// Rubric criteria. When empty, the model answer's sentences stand in for them.
    pub criteria: Vec<String>,
    /// Maximum marks (> 0).
    pub max_marks: f64,
    /// Marks are awarded in multiples of this (e.g. 0.5 or 1; > 0).
    pub mark_step: f64,
}

/// A student answer with the teacher's mark, from the train split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradedAnswer {
    /// Stable answer id (used to leave an answer out of its own neighbours).
    pub id: String,
    /// The item it answers.
    pub item_id: String,
    /// The student's text.
    pub text: String,
    /// The teacher's mark, 0..=max_marks.
    pub score: f64,
}

/// Which head grades an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// The item has graded train answers: k-NN features are used.
    GradedItem,
    /// The item has no (or too few) graded answers: base features only.
    NewItem,
}

impl Regime {
    /// The words a report uses for this regime.
    pub fn describe(self) -> &'static str {
        match self {
            Regime::GradedItem => "item with graded answers",
            Regime::NewItem => "new item",
        }
    }
}

/// Hyper-parameters; stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimilarityConfig {
    /// Neighbours in the k-NN feature.
    pub k: usize,
    /// Graded answers an item needs before the k-NN head grades it.
    pub min_graded: usize,
    /// Adam step size of the first epoch.
    pub learning_rate: f64,
    /// Step-size decay: epoch `e` (from 0) uses `learning_rate / (1 + lr_decay × e)`.
    pub lr_decay: f64,
    /// L2 penalty on the weights (ridge).
    pub l2: f64,
    /// Examples per gradient step.
    pub batch_size: usize,
    /// Seed for the shuffling of each epoch.
    pub seed: u64,
}

impl Default for SimilarityConfig {
    fn default() -> Self {
        Self {
            k: 10,
            min_graded: 3,
            learning_rate: 0.01,
            lr_decay: 0.5,
            l2: 1e-3,
            batch_size: 64,
            seed: 42,
        }
    }
}

/// The features of one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Base features, named by [`BASE_FEATURES`].
    pub base: Vec<f64>,
    /// k-NN features, named by [`KNN_FEATURES`]; `None` for a new item.
    pub knn: Option<Vec<f64>>,
}

impl Features {
    /// Which head grades this answer.
    pub fn regime(&self) -> Regime {
        if self.knn.is_some() {
            Regime::GradedItem
        } else {
            Regime::NewItem
        }
    }
}

/// A training example: features and the teacher's normalised score.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The answer's features.
    pub features: Features,
    /// `score / max_marks`, in [0, 1].
    pub target: f64,
    /// The item the answer belongs to: the new-item head learns from variation within items.
    pub item_id: String,
}

/// One answer's grade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The head that graded it.
    pub regime: Regime,
    /// The regression output clipped to [0, 1], before rounding.
    pub normalised: f64,
    /// Marks, rounded to the item's step and within 0..=max_marks.
    pub marks: f64,
}

/// Training loss of one head after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadStats {
    /// Examples this head trained on.
    pub n: usize,
    /// The objective: mean squared error of the regression output (before calibration).
    pub mse: f64,
    /// Mean absolute error of the grade (calibrated, clipped to [0, 1]; before rounding).
    pub mae: f64,
}

/// Loss of both heads after an epoch (epoch 0: as initialised), for the learning curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epochs finished so far (0 before training, 1 after the first epoch).
    pub epoch: u32,
    /// The k-NN head, on examples whose item has graded answers.
    pub graded_item: HeadStats,
    /// The base head, on every example (features and targets centred within each item).
    pub new_item: HeadStats,
}

/// A linear model on standardised features, with its Adam state so training can resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearHead {
    /// Feature names, in input order.
    pub features: Vec<String>,
    /// Per-feature mean of the train set (standardisation).
    pub mean: Vec<f64>,
    /// Per-feature standard deviation of the train set (1 where it was 0).
    pub scale: Vec<f64>,
    /// One weight per standardised feature.
    pub weights: Vec<f64>,
    /// Intercept.
    pub bias: f64,
    /// Adam first moments (weights, then bias).
    pub adam_m: Vec<f64>,
    /// Adam second moments (weights, then bias).
    pub adam_v: Vec<f64>,
    /// Gradient steps taken.
    pub steps: u64,
    /// Whether `mean`/`scale`/`bias` have been set from data.
    pub initialised: bool,
    /// Mean train target: the centre of the calibration stretch.
    #[serde(default)]
    pub target_mean: f64,
    /// Calibration fitted on train predictions after each epoch: outputs are spread by this
    /// factor around `target_mean` so that their spread matches the teacher's (a least-squares
    /// fit shrinks towards the mean, which costs agreement once marks are rounded).
    #[serde(default = "one")]
    pub stretch: f64,
}

impl LinearHead {
    fn new(features: &[&str]) -> Self {
        let n = features.len();
        Self {
            features: features.iter().map(|s| (*s).to_owned()).collect(),
            mean: vec![0.0; n],
            scale: vec![1.0; n],
            weights: vec![0.0; n],
            bias: 0.0,
            adam_m: vec![0.0; n + 1],
            adam_v: vec![0.0; n + 1],
            steps: 0,
            initialised: false,
            target_mean: 0.0,
            stretch: 1.0,
        }
    }

    /// Sets standardisation from `rows` and the intercept to the mean target.
    fn initialise(&mut self, rows: &[(Vec<f64>, f64)]) {
        let n = self.weights.len();
        if rows.is_empty() {
            return;
        }
        let count = rows.len() as f64;
        for j in 0..n {
            let mean = rows.iter().map(|(x, _)| x[j]).sum::<f64>() / count;
            let var = rows.iter().map(|(x, _)| (x[j] - mean).powi(2)).sum::<f64>() / count;
            self.mean[j] = mean;
            self.scale[j] = if var > 1e-12 { var.sqrt() } else { 1.0 };
        }
        self.bias = rows.iter().map(|(_, y)| y).sum::<f64>() / count;
        self.target_mean = self.bias;
        self.initialised = true;
    }

    fn raw(&self, x: &[f64]) -> f64 {
        self.bias
            + x.iter()
                .zip(&self.weights)
                .enumerate()
                .map(|(j, (v, w))| w * (v - self.mean[j]) / self.scale[j])
                .sum::<f64>()
    }

    /// The prediction clipped to [0, 1].
    fn predict(&self, x: &[f64]) -> f64 {
        let y = self.target_mean + (self.raw(x) - self.target_mean) * self.stretch;
        if y.is_finite() {
            y.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Refits the stretch: standard deviation of the targets over that of the raw outputs,
    /// kept within [1, 4] (never shrinks, never explodes on a near-constant output).
    fn calibrate(&mut self, rows: &[(Vec<f64>, f64)]) {
        let n = rows.len() as f64;
        if rows.len() < 2 {
            return;
        }
        let raw: Vec<f64> = rows.iter().map(|(x, _)| self.raw(x)).collect();
        let sd = |v: &mut dyn Iterator<Item = f64>| {
            let v: Vec<f64> = v.collect();
            let m = v.iter().sum::<f64>() / n;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt()
        };
        let sd_raw = sd(&mut raw.iter().copied());
        let sd_target = sd(&mut rows.iter().map(|(_, y)| *y));
        self.stretch = if sd_raw > 1e-9 {
            (sd_target / sd_raw).clamp(1.0, 4.0)
        } else {
            1.0
        };
    }

    /// One pass over `rows` in `order`, a gradient step per batch.
    fn train_epoch(
        &mut self,
        rows: &[(Vec<f64>, f64)],
        order: &[usize],
        learning_rate: f64,
        config: &SimilarityConfig,
    ) {
        const BETA1: f64 = 0.9;
        const BETA2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        let n = self.weights.len();
        let batch_size = config.batch_size.max(1);
        let mut grad = vec![0.0; n + 1];
        for batch in order.chunks(batch_size) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            for &i in batch {
                let (x, y) = &rows[i];
                // Squared error on the unclipped output: the clip is applied at prediction.
                let err = self.raw(x) - y;
                for (((g, v), mean), scale) in
                    grad.iter_mut().zip(x).zip(&self.mean).zip(&self.scale)
                {
                    *g += err * (v - mean) / scale;
                }
                grad[n] += err;
            }
            let m = batch.len() as f64;
            for (g, w) in grad.iter_mut().zip(&self.weights) {
                *g = *g / m + config.l2 * w;
            }
            grad[n] /= m;
            self.steps += 1;
            let t = self.steps as i32;
            let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
            for (j, g) in grad.iter().enumerate() {
                self.adam_m[j] = BETA1 * self.adam_m[j] + (1.0 - BETA1) * g;
                self.adam_v[j] = BETA2 * self.adam_v[j] + (1.0 - BETA2) * g * g;
                let step =
                    learning_rate * (self.adam_m[j] / c1) / ((self.adam_v[j] / c2).sqrt() + EPS);
                if j < n {
                    self.weights[j] -= step;
                } else {
                    self.bias -= step;
                }
            }
        }
    }

    fn stats(&self, rows: &[(Vec<f64>, f64)]) -> HeadStats {
        let n = rows.len();
        if n == 0 {
            return HeadStats {
                n,
                mse: 0.0,
                mae: 0.0,
            };
        }
        let (mut se, mut ae) = (0.0, 0.0);
        for (x, y) in rows {
            se += (self.raw(x) - y).powi(2);
            ae += (self.predict(x) - y).abs();
        }
        HeadStats {
            n,
            mse: se / n as f64,
            mae: ae / n as f64,
        }
    }
}

/// The fitted engine: configuration and both heads. Serialise it into a grader version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarityModel {
    /// Layout version ([`MODEL_FORMAT`]).
    pub format: u32,
    /// Hyper-parameters.
    pub config: SimilarityConfig,
    /// Epochs trained.
    pub epochs: u32,
    /// Head for items with graded answers (base + k-NN features).
    pub graded_item: LinearHead,
    /// Head for new items (base features).
    pub new_item: LinearHead,
}

impl SimilarityModel {
    /// An untrained model: it predicts 0 until the first epoch sets its intercepts.
    pub fn new(config: SimilarityConfig) -> Self {
        let graded: Vec<&str> = BASE_FEATURES.iter().chain(&KNN_FEATURES).copied().collect();
        Self {
            format: MODEL_FORMAT,
            config,
            epochs: 0,
            graded_item: LinearHead::new(&graded),
            new_item: LinearHead::new(&BASE_FEATURES),
        }
    }

    /// Fixes standardisation and intercepts from `train` (once; later calls do nothing).
    /// [`SimilarityModel::fit_epoch`] calls it; call it first to measure epoch 0.
    pub fn initialise(&mut self, train: &[Example]) {
        let (graded_rows, base_rows) = head_rows(train);
        if !self.graded_item.initialised {
            self.graded_item.initialise(&graded_rows);
        }
        if !self.new_item.initialised {
            self.new_item.initialise(&base_rows);
        }
    }

    /// One epoch of mini-batch gradient descent for both heads over `train`; returns the
    /// train loss afterwards. The shuffle and the step size depend only on the seed and the
    /// epoch number, so a job resumed from a stored model repeats nothing.
    pub fn fit_epoch(&mut self, train: &[Example]) -> EpochStats {
        self.initialise(train);
        let (graded_rows, base_rows) = head_rows(train);
        let mut rng = StdRng::seed_from_u64(
            self.config.seed ^ u64::from(self.epochs).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let learning_rate =
            self.config.learning_rate / (1.0 + self.config.lr_decay * f64::from(self.epochs));
        let mut order: Vec<usize> = (0..graded_rows.len()).collect();
        order.shuffle(&mut rng);
        self.graded_item
            .train_epoch(&graded_rows, &order, learning_rate, &self.config);
        let mut order: Vec<usize> = (0..base_rows.len()).collect();
        order.shuffle(&mut rng);
        self.new_item
            .train_epoch(&base_rows, &order, learning_rate, &self.config);
        self.graded_item.calibrate(&graded_rows);
        self.new_item.calibrate(&base_rows);
        self.epochs += 1;
        self.loss(train)
    }

    /// Loss of both heads on `examples` (train or validation) as the model stands.
    pub fn loss(&self, examples: &[Example]) -> EpochStats {
        let (graded_rows, base_rows) = head_rows(examples);
        EpochStats {
            epoch: self.epochs,
            graded_item: self.graded_item.stats(&graded_rows),
            new_item: self.new_item.stats(&base_rows),
        }
    }

    /// The predicted normalised score in [0, 1], from the head of the answer's regime.
    pub fn predict(&self, features: &Features) -> f64 {
        match &features.knn {
            Some(knn) => self.graded_item.predict(&concat(&features.base, knn)),
            None => self.new_item.predict(&features.base),
        }
    }

    /// The grade for an answer to `item`: normalised score and marks on the item's step.
    pub fn grade(&self, item: &Item, features: &Features) -> Prediction {
        let normalised = self.predict(features);
        Prediction {
            regime: features.regime(),
            normalised,
            marks: to_marks(normalised, item.max_marks, item.mark_step),
        }
    }
}

/// `normalised × max_marks`, rounded to a multiple of `step`, within 0 and the highest
/// multiple of `step` not above `max_marks`.
pub fn to_marks(normalised: f64, max_marks: f64, step: f64) -> f64 {
    let max_marks = max_marks.max(0.0);
    let marks = normalised.clamp(0.0, 1.0) * max_marks;
    if step <= 0.0 {
        return marks + 0.0;
    }
    // The highest mark on the step grid (2 when the maximum is 2.5 and the step 1). Adding
    // 0.0 turns a negative zero into 0, so a mark never reads "-0".
    let top = ((max_marks / step) + 1e-9).floor() * step;
    ((marks / step).round() * step).clamp(0.0, top) + 0.0
}

/// (inputs, target) rows of the graded-item head (examples with k-NN features) and of the
/// new-item head (every example, base features).
type Rows = Vec<(Vec<f64>, f64)>;

fn head_rows(examples: &[Example]) -> (Rows, Rows) {
    let graded = examples
        .iter()
        .filter_map(|e| {
            e.features
                .knn
                .as_ref()
                .map(|knn| (concat(&e.features.base, knn), e.target))
        })
        .collect();
    (graded, within_item_rows(examples))
}

/// The new-item head's rows: each example's base features and target moved from its item's
/// mean to the overall mean. A new item's level is unknown, so the head learns how marks
/// vary with the features *within* an item; pooled across items, differences between
/// questions (all answers to some questions sit close to the reference) swamp that signal.
/// On SAF's unseen questions this is the difference between r 0.51 (pooled) and 0.6.
fn within_item_rows(examples: &[Example]) -> Rows {
    let width = examples.first().map_or(0, |e| e.features.base.len());
    let mut sums: HashMap<&str, (Vec<f64>, f64, f64)> = HashMap::new();
    let (mut all_x, mut all_y) = (vec![0.0; width], 0.0);
    for e in examples {
        let sum = sums
            .entry(e.item_id.as_str())
            .or_insert_with(|| (vec![0.0; width], 0.0, 0.0));
        for (j, v) in e.features.base.iter().enumerate().take(width) {
            sum.0[j] += v;
            all_x[j] += v;
        }
        sum.1 += e.target;
        sum.2 += 1.0;
        all_y += e.target;
    }
    let count = examples.len() as f64;
    examples
        .iter()
        .map(|e| {
            let (x_sum, y_sum, n) = &sums[e.item_id.as_str()];
            let x = e
                .features
                .base
                .iter()
                .enumerate()
                .take(width)
                .map(|(j, v)| v - x_sum[j] / n + all_x[j] / count)
                .collect();
            (x, e.target - y_sum / n + all_y / count)
        })
        .collect()
}

fn one() -> f64 {
    1.0
}

fn concat(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().chain(b).copied().collect()
}

/// Embeddings of an item's texts, in the order [`item_texts`] gives them.
#[derive(Debug, Clone)]
pub struct ItemEmbeddings {
    /// The model answer.
    pub model_answer: Embedding,
    /// The question.
    pub question: Embedding,
    /// Each criterion (or model-answer sentence standing in for one).
    pub criteria: Vec<Embedding>,
}

/// The texts of an item to embed: model answer, question, then the criteria.
pub fn item_texts(item: &Item) -> Vec<String> {
    let mut texts = vec![item.model_answer.clone(), item.question.clone()];
    texts.extend(effective_criteria(item));
    texts
}

/// The item's criteria, or the model answer's sentences (at least three words each) when
/// it has none.
pub fn effective_criteria(item: &Item) -> Vec<String> {
    let given: Vec<String> = item
        .criteria
        .iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    if !given.is_empty() {
        return given;
    }
    let sentences: Vec<String> = split_sentences(&item.model_answer)
        .into_iter()
        .filter(|s| tokens(s).len() >= 3)
        .collect();
    if sentences.is_empty() {
        vec![item.model_answer.clone()]
    } else {
        sentences
    }
}

/// Splits at `.`, `!`, `?` or `;` followed by whitespace, and at line breaks.
fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            push_sentence(&mut out, &mut current);
            continue;
        }
        current.push(c);
        if matches!(c, '.' | '!' | '?' | ';') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            push_sentence(&mut out, &mut current);
        }
    }
    push_sentence(&mut out, &mut current);
    out
}

fn push_sentence(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
    current.clear();
}

/// Lower-cased alphanumeric tokens.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Content words, crudely stemmed, for keyword coverage.
fn keywords(text: &str) -> HashSet<String> {
    tokens(text)
        .into_iter()
        .filter(|t| t.chars().count() >= 3 && !STOPWORDS.contains(&t.as_str()))
        .map(|t| stem(&t))
        .collect()
}

fn stem(token: &str) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(root) = token.strip_suffix(suffix) {
            if root.chars().count() >= 3 && !(suffix == "s" && root.ends_with('s')) {
                return root.to_owned();
            }
        }
    }
    token.to_owned()
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "has", "him", "his", "how", "its", "may", "now", "see", "who", "did",
    "get", "she", "too", "use", "that", "with", "have", "this", "will", "your", "from", "they",
    "been", "into", "more", "than", "then", "them", "these", "those", "there", "their", "what",
    "when", "where", "which", "while", "would", "could", "should", "because", "also", "only",
    "such", "each", "other", "some", "very", "just", "over", "both", "does", "done", "being",
    "were", "here", "about", "after", "before", "between", "through", "during", "under", "again",
    "further", "once", "same", "own", "so", "yes", "why", "it's", "is", "be", "an", "of", "to",
    "in", "on", "at", "by", "or", "as", "if", "no", "we", "it", "a", "i",
];

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

#[derive(Debug, Clone)]
struct BankEntry {
    answer_id: String,
    text: String,
    embedding: Embedding,
    /// Normalised teacher score.
    score: f64,
}

#[derive(Debug, Clone)]
struct ItemIndex {
    item: Item,
    embeddings: ItemEmbeddings,
    reference_tokens: HashSet<String>,
    reference_len: usize,
    criteria_keywords: HashSet<String>,
    bank: Vec<BankEntry>,
}

/// Items with their embeddings and the graded train answers of each: what features are
/// computed against. Built per training job or grader version; cheap to rebuild thanks to
/// the embedding cache.
#[derive(Debug, Clone)]
pub struct SimilarityIndex {
    k: usize,
    min_graded: usize,
    items: HashMap<String, ItemIndex>,
}

impl SimilarityIndex {
    /// Embeds the items and the graded answers and indexes them.
    pub async fn build(
        embedder: &Embedder,
        items: &[Item],
        graded: &[GradedAnswer],
        config: &SimilarityConfig,
    ) -> Result<Self, SimilarityError> {
        let mut texts = Vec::new();
        let mut spans = Vec::with_capacity(items.len());
        for item in items {
            let item_texts = item_texts(item);
            spans.push(item_texts.len());
            texts.extend(item_texts);
        }
        texts.extend(graded.iter().map(|g| g.text.clone()));
        let mut vectors = embedder.embed(&texts).await?.into_iter();
        let mut with_embeddings = Vec::with_capacity(items.len());
        for (item, span) in items.iter().zip(spans) {
            let mut take = vectors.by_ref().take(span);
            let (Some(model_answer), Some(question)) = (take.next(), take.next()) else {
                return Err(EmbeddingError::Task("missing item embeddings".into()).into());
            };
            with_embeddings.push((
                item.clone(),
                ItemEmbeddings {
                    model_answer,
                    question,
                    criteria: take.collect(),
                },
            ));
        }
        let graded_with: Vec<(GradedAnswer, Embedding)> =
            graded.iter().cloned().zip(vectors).collect();
        Self::from_embeddings(with_embeddings, graded_with, config)
    }

    /// Indexes items and graded answers whose embeddings are already known.
    pub fn from_embeddings(
        items: Vec<(Item, ItemEmbeddings)>,
        graded: Vec<(GradedAnswer, Embedding)>,
        config: &SimilarityConfig,
    ) -> Result<Self, SimilarityError> {
        let mut index = HashMap::with_capacity(items.len());
        for (item, embeddings) in items {
            if !(item.max_marks > 0.0 && item.max_marks.is_finite()) {
                return Err(SimilarityError::InvalidItem {
                    item: item.id.clone(),
                    reason: format!("max marks must be positive, not {}", item.max_marks),
                });
            }
            let reference_tokens: HashSet<String> =
                tokens(&item.model_answer).into_iter().collect();
            let reference_len = tokens(&item.model_answer).len();
            let criteria_keywords = effective_criteria(&item)
                .iter()
                .flat_map(|c| keywords(c))
                .collect();
            index.insert(
                item.id.clone(),
                ItemIndex {
                    item,
                    embeddings,
                    reference_tokens,
                    reference_len,
                    criteria_keywords,
                    bank: Vec::new(),
                },
            );
        }
        for (answer, embedding) in graded {
            let entry = index
                .get_mut(&answer.item_id)
                .ok_or_else(|| SimilarityError::UnknownItem(answer.item_id.clone()))?;
            let score = (answer.score / entry.item.max_marks).clamp(0.0, 1.0);
            entry.bank.push(BankEntry {
                answer_id: answer.id,
                text: answer.text,
                embedding,
                score,
            });
        }
        Ok(Self {
            k: config.k.max(1),
            min_graded: config.min_graded.max(1),
            items: index,
        })
    }

    /// The item with this id.
    pub fn item(&self, item_id: &str) -> Option<&Item> {
        self.items.get(item_id).map(|i| &i.item)
    }

    /// Graded train answers held for an item.
    pub fn graded_count(&self, item_id: &str) -> usize {
        self.items.get(item_id).map_or(0, |i| i.bank.len())
    }

    /// The regime an answer to this item is graded in.
    pub fn regime(&self, item_id: &str) -> Regime {
        if self.graded_count(item_id) >= self.min_graded {
            Regime::GradedItem
        } else {
            Regime::NewItem
        }
    }

    /// Features of an answer to `item_id`. `exclude_answer_id` leaves that graded answer out
    /// of the neighbours (an answer must not see its own mark).
    pub fn features(
        &self,
        item_id: &str,
        text: &str,
        embedding: &[f32],
        exclude_answer_id: Option<&str>,
    ) -> Result<Features, SimilarityError> {
        let entry = self
            .items
            .get(item_id)
            .ok_or_else(|| SimilarityError::UnknownItem(item_id.to_owned()))?;
        Ok(entry.features(text, embedding, exclude_answer_id, self.k, self.min_graded))
    }

    /// Embeds and featurises answers given as `(item_id, text)`.
    pub async fn featurise(
        &self,
        embedder: &Embedder,
        answers: &[(String, String)],
    ) -> Result<Vec<Features>, SimilarityError> {
        let texts: Vec<String> = answers.iter().map(|(_, t)| t.clone()).collect();
        let vectors = embedder.embed(&texts).await?;
        answers
            .iter()
            .zip(vectors)
            .map(|((item_id, text), v)| self.features(item_id, text, &v, None))
            .collect()
    }

    /// Every graded answer as a training example, each featurised without itself among
    /// its neighbours. Sorted by item id then answer order, so training is deterministic.
    pub fn training_examples(&self) -> Vec<Example> {
        let mut ids: Vec<&String> = self.items.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let entry = &self.items[id];
            for answer in &entry.bank {
                out.push(Example {
                    item_id: id.clone(),
                    features: entry.features(
                        &answer.text,
                        &answer.embedding,
                        Some(&answer.answer_id),
                        self.k,
                        self.min_graded,
                    ),
                    target: answer.score,
                });
            }
        }
        out
    }
}

impl ItemIndex {
    fn features(
        &self,
        text: &str,
        embedding: &[f32],
        exclude: Option<&str>,
        k: usize,
        min_graded: usize,
    ) -> Features {
        let e = &self.embeddings;
        let cos_reference = cosine(embedding, &e.model_answer);
        let criteria: Vec<f64> = e.criteria.iter().map(|c| cosine(embedding, c)).collect();
        let max_cos_criteria = criteria.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let max_cos_criteria = if max_cos_criteria.is_finite() {
            max_cos_criteria
        } else {
            cos_reference
        };
        let mean_cos_criteria = if criteria.is_empty() {
            cos_reference
        } else {
            criteria.iter().sum::<f64>() / criteria.len() as f64
        };
        let answer_tokens = tokens(text);
        let answer_set: HashSet<String> = answer_tokens.iter().cloned().collect();
        let answer_keywords = keywords(text);
        let keyword_coverage = if self.criteria_keywords.is_empty() {
            0.0
        } else {
            self.criteria_keywords
                .intersection(&answer_keywords)
                .count() as f64
                / self.criteria_keywords.len() as f64
        };
        let base = vec![
            cos_reference,
            max_cos_criteria,
            mean_cos_criteria,
            cosine(embedding, &e.question),
            jaccard(&answer_set, &self.reference_tokens),
            ((answer_tokens.len() as f64 + 1.0) / (self.reference_len as f64 + 1.0)).ln(),
            keyword_coverage,
            cos_reference * cos_reference,
        ];

        let neighbours: Vec<(f64, f64)> = self
            .bank
            .iter()
            .filter(|b| Some(b.answer_id.as_str()) != exclude)
            .map(|b| (cosine(embedding, &b.embedding), b.score))
            .collect();
        let knn = (neighbours.len() >= min_graded).then(|| knn_features(neighbours, k));
        Features { base, knn }
    }
}

/// k-NN features from (similarity, normalised score) pairs of an item's graded answers.
fn knn_features(mut neighbours: Vec<(f64, f64)>, k: usize) -> Vec<f64> {
    let item_mean = neighbours.iter().map(|(_, s)| s).sum::<f64>() / neighbours.len() as f64;
    let best = |full: bool| {
        neighbours
            .iter()
            .filter(|(_, s)| (*s >= 1.0 - 1e-9) == full)
            .map(|(c, _)| *c)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let (best_full, best_other) = (best(true), best(false));
    let full_minus_partial = if best_full.is_finite() && best_other.is_finite() {
        best_full - best_other
    } else {
        0.0
    };
    // Nearest first; ties broken by score so the order never depends on the input order.
    neighbours.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let top = &neighbours[..k.min(neighbours.len())];
    let (mut num, mut den) = (0.0, 0.0);
    for (c, s) in top {
        let w = c.max(1e-6);
        num += w * s;
        den += w;
    }
    let (nearest_cos, nearest_score) = top.first().copied().unwrap_or((0.0, item_mean));
    vec![
        if den > 0.0 { num / den } else { item_mean },
        nearest_score,
        nearest_cos,
        item_mean,
        full_minus_partial,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Embedding {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<_>>().into()
    }

    fn item(id: &str) -> Item {
        Item {
            id: id.into(),
            question: "Why does TCP use slow start?".into(),
            model_answer: "To probe the available bandwidth. It avoids congestion collapse.".into(),
            criteria: vec![],
            max_marks: 2.0,
            mark_step: 0.5,
        }
    }

    fn item_embeddings() -> ItemEmbeddings {
        ItemEmbeddings {
            model_answer: unit(&[1.0, 0.0, 0.0]),
            question: unit(&[0.0, 0.0, 1.0]),
            criteria: vec![unit(&[1.0, 0.2, 0.0]), unit(&[1.0, -0.2, 0.0])],
        }
    }

    /// Answers whose embedding moves from the reference direction towards an unrelated one
    /// as their mark falls: a learnable toy item.
    fn toy_index(config: &SimilarityConfig) -> SimilarityIndex {
        let mut graded = Vec::new();
        for i in 0..40 {
            let score = f64::from(i % 5) * 0.5; // 0..=2
            let off = 2.0 - score as f32;
            graded.push((
                GradedAnswer {
                    id: format!("a{i}"),
                    item_id: "q1".into(),
                    text: if score >= 1.5 {
                        "probe the available bandwidth and avoid congestion".into()
                    } else {
                        "it is faster".into()
                    },
                    score,
                },
                unit(&[1.0, off + 0.01 * (i as f32 % 3.0), 0.1]),
            ));
        }
        SimilarityIndex::from_embeddings(
            vec![
                (item("q1"), item_embeddings()),
                (item("q2"), item_embeddings()),
            ],
            graded,
            config,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sentences_stand_in_for_missing_criteria() {
        let c = effective_criteria(&item("q"));
        assert_eq!(
            c,
            vec![
                "To probe the available bandwidth.".to_string(),
                "It avoids congestion collapse.".to_string()
            ]
        );
        assert_eq!(
            split_sentences("P = 0.5 here. Next"),
            vec!["P = 0.5 here.", "Next"]
        );
    }

    #[test]
    fn marks_are_clipped_and_rounded_to_the_step() {
        assert_eq!(to_marks(0.62, 2.0, 0.5), 1.0);
        assert_eq!(to_marks(0.9, 2.0, 0.5), 2.0);
        assert_eq!(to_marks(1.7, 3.0, 1.0), 3.0);
        assert_eq!(to_marks(-0.3, 3.0, 1.0), 0.0);
        assert_eq!(to_marks(1.0, 2.5, 1.0), 2.0, "the highest mark on the step");
        assert_eq!(to_marks(0.5, 2.5, 1.0), 1.0);
        assert!(
            to_marks(-0.0, 4.0, 1.0).is_sign_positive(),
            "never a negative zero"
        );
    }

    #[test]
    fn an_answer_never_sees_its_own_mark_and_regimes_are_told_apart() {
        let config = SimilarityConfig {
            k: 1,
            ..SimilarityConfig::default()
        };
        let index = toy_index(&config);
        assert_eq!(index.regime("q1"), Regime::GradedItem);
        assert_eq!(index.regime("q2"), Regime::NewItem);
        assert_eq!(Regime::NewItem.describe(), "new item");
        let examples = index.training_examples();
        assert_eq!(examples.len(), 40);
        // With k = 1 and itself excluded, the nearest neighbour is another answer: a0 and
        // a15 share a direction (score 0, same jitter), so a0's nearest score is a15's.
        let a0 = &examples[0];
        let knn = a0
            .features
            .knn
            .as_ref()
            .unwrap_or_else(|| panic!("q1 is graded"));
        assert!(knn[2] > 0.9999, "nearest is the twin");
        assert!(knn[2] < 1.0 + 1e-9);
        let new = index
            .features("q2", "probe bandwidth", &unit(&[1.0, 0.0, 0.0]), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(new.regime(), Regime::NewItem);
        assert!(matches!(
            index.features("nope", "x", &unit(&[1.0, 0.0, 0.0]), None),
            Err(SimilarityError::UnknownItem(_))
        ));
    }

    #[test]
    fn training_lowers_the_loss_is_deterministic_and_survives_serde() {
        let config = SimilarityConfig::default();
        let index = toy_index(&config);
        let train = index.training_examples();
        let mut model = SimilarityModel::new(config.clone());
        let first = model.fit_epoch(&train);
        let mut last = first;
        for _ in 0..60 {
            last = model.fit_epoch(&train);
        }
        assert_eq!(last.epoch, 61);
        assert!(
            last.graded_item.mse < first.graded_item.mse * 0.5,
            "{first:?} -> {last:?}"
        );
        assert!(last.graded_item.mae < 0.1, "{last:?}");
        assert!(
            last.new_item.mse < first.new_item.mse,
            "{first:?} -> {last:?}"
        );

        // Same seed, same data: the same model, bit for bit.
        let mut again = SimilarityModel::new(config);
        for _ in 0..61 {
            again.fit_epoch(&train);
        }
        assert_eq!(again, model);

        // Through JSON (a grader version's config) and back: the same grades.
        let json = serde_json::to_string(&model).unwrap_or_else(|e| panic!("{e}"));
        let restored: SimilarityModel =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        let q1 = index.item("q1").unwrap_or_else(|| panic!("q1"));
        for example in &train {
            let a = model.grade(q1, &example.features);
            let b = restored.grade(q1, &example.features);
            // serde_json may round the last bit of a float: grades agree, scores to 1e-12.
            assert_eq!((a.regime, a.marks), (b.regime, b.marks));
            assert!((a.normalised - b.normalised).abs() < 1e-12);
            assert!((0.0..=2.0).contains(&a.marks));
            assert_eq!((a.marks / 0.5).fract(), 0.0, "on the half-mark step");
        }
        // A full-mark-like answer outgrades a wrong-looking one.
        let good = index
            .features(
                "q1",
                "probe the available bandwidth and avoid congestion",
                &unit(&[1.0, 0.0, 0.1]),
                None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let bad = index
            .features("q1", "it is faster", &unit(&[1.0, 2.0, 0.1]), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(model.grade(q1, &good).marks > model.grade(q1, &bad).marks);
    }

    #[test]
    fn the_new_item_head_sees_variation_within_items_not_between_them() {
        let example = |item: &str, x: f64, target: f64| Example {
            features: Features {
                base: vec![x],
                knn: None,
            },
            target,
            item_id: item.into(),
        };
        // Item "easy": every answer close to the reference; item "hard": every answer far.
        // Within each item, closer answers score higher.
        let rows = within_item_rows(&[
            example("easy", 0.9, 0.5),
            example("easy", 0.8, 0.0),
            example("hard", 0.3, 1.0),
            example("hard", 0.2, 0.5),
        ]);
        let xs: Vec<f64> = rows.iter().map(|(x, _)| x[0]).collect();
        let ys: Vec<f64> = rows.iter().map(|(_, y)| *y).collect();
        // Pooled, the feature and the target move in opposite directions; within items they
        // move together, and that is what the rows keep (means moved to the overall mean).
        for (a, b) in [(0, 1), (2, 3)] {
            assert!(xs[a] > xs[b] && ys[a] > ys[b], "{rows:?}");
        }
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(xs[0] + xs[1], xs[2] + xs[3]), "{rows:?}");
        assert!(close(ys.iter().sum::<f64>() / 4.0, 0.5), "{rows:?}");
    }
}
