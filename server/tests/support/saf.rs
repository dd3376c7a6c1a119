// Each includer uses a different part of this file.
#![allow(dead_code)]
//! SAF (../shared/datasets/saf) for the similarity engine: load, train on `train`, evaluate on
//! `test_unseen_answers` and `test_unseen_questions` as ../shared/notes/FIDELITY.md does.
//! Shared by `tests/similarity_saf.rs` and `benches/similarity_saf.rs`; the dataset is read
//! in place, never copied into the repository.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gradelab::config::EmbeddingSettings;
use gradelab::embeddings::Embedder;
use gradelab::grading::similarity::{
    EpochStats, Features, GradedAnswer, Item, Regime, SimilarityConfig, SimilarityIndex,
    SimilarityModel,
};
use gradelab::metrics::{pearson, AgreementReport, ScorePair};
use serde::Deserialize;

/// SAF gives no mark step; its marks are quarter points (a few items use tenths or eighths).
pub const SAF_MARK_STEP: f64 = 0.25;

/// `$GRADELAB_DATASETS`, else `<repo>/../shared/datasets`.
pub fn datasets_dir() -> PathBuf {
    std::env::var_os("GRADELAB_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"))
}

/// The embedding settings the server would use (`GRADELAB_EMBEDDINGS__MODEL_DIR` or the default).
pub fn embedding_settings() -> EmbeddingSettings {
    let mut settings = EmbeddingSettings::default();
    if let Some(dir) = std::env::var_os("GRADELAB_EMBEDDINGS__MODEL_DIR") {
        settings.model_dir = dir.into();
    }
    settings
}

#[derive(Debug, Deserialize)]
struct ItemRow {
    id: String,
    question: String,
    reference_answer: String,
    max_score: f64,
}

/// One SAF answer.
#[derive(Debug, Clone, Deserialize)]
pub struct AnswerRow {
    pub id: String,
    pub item_id: String,
    pub answer: String,
    pub score: f64,
    pub split: String,
}

/// The dataset as the engine sees it.
pub struct Saf {
    pub items: Vec<Item>,
    pub answers: Vec<AnswerRow>,
}

impl Saf {
    pub fn load() -> Result<Self, String> {
        let dir = datasets_dir().join("saf");
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{}: {e} (set GRADELAB_DATASETS to the folder holding saf/)",
                    path.display()
                )
            })
        };
        let items = read("items.jsonl")?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<ItemRow>(l).map_err(|e| format!("items.jsonl: {e}")))
            .map(|row| {
                row.map(|r| Item {
                    id: r.id,
                    question: r.question,
                    model_answer: r.reference_answer,
                    criteria: Vec::new(),
                    max_marks: r.max_score,
                    mark_step: SAF_MARK_STEP,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answers = read("answers.jsonl")?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("answers.jsonl: {e}")))
            .collect::<Result<Vec<AnswerRow>, _>>()?;
        Ok(Self { items, answers })
    }

    pub fn split(&self, name: &str) -> Vec<&AnswerRow> {
        self.answers.iter().filter(|a| a.split == name).collect()
    }
}

/// r / MAE / QWK of one grader on one split (normalised scores; QWK on 0.25 bins).
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub r: Option<f64>,
    pub mae: Option<f64>,
    pub qwk: Option<f64>,
}

impl Row {
    pub const NONE: Row = Row {
        r: None,
        mae: None,
        qwk: None,
    };

    fn of(report: &AgreementReport) -> Self {
        Self {
            r: report.pearson,
            mae: report.mae,
            qwk: report.qwk,
        }
    }

    pub fn cells(&self) -> String {
        let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.3}"));
        format!("{} / {} / {}", f(self.r), f(self.mae), f(self.qwk))
    }
}

/// Everything one run measured.
pub struct Evaluation {
    pub model: SimilarityModel,
    /// Train loss as initialised (epoch 0), then after each epoch.
    pub curve: Vec<EpochStats>,
    /// Grader → [unseen answers, unseen questions].
    pub rows: Vec<(String, [Row; 2])>,
    /// Marks-rounded report of the engine on each test split.
    pub engine_reports: HashMap<String, AgreementReport>,
    /// Regime of every graded answer per test split.
    pub regimes: HashMap<String, Vec<Regime>>,
    pub texts_embedded: usize,
    pub embed_time: Duration,
    pub train_time: Duration,
}

pub const SPLITS: [&str; 2] = ["test_unseen_answers", "test_unseen_questions"];

/// Trains on `train` for `epochs` epochs and evaluates on both test splits, with the
/// FIDELITY baselines (always full marks, train mean, raw cosine) measured on the same run.
pub async fn evaluate(
    embedder: &Embedder,
    saf: &Saf,
    config: SimilarityConfig,
    epochs: u32,
) -> Result<Evaluation, String> {
    let train: Vec<GradedAnswer> = saf
        .split("train")
        .into_iter()
        .map(|a| GradedAnswer {
            id: a.id.clone(),
            item_id: a.item_id.clone(),
            text: a.answer.clone(),
            score: a.score,
        })
        .collect();

    // Embed everything once, up front (the embedder caches; later calls are free).
    let mut all_texts: Vec<String> = saf.answers.iter().map(|a| a.answer.clone()).collect();
    for item in &saf.items {
        all_texts.extend(gradelab::grading::similarity::item_texts(item));
    }
    let before = embedder.cached();
    let started = Instant::now();
    embedder
        .embed(&all_texts)
        .await
        .map_err(|e| e.to_string())?;
    let embed_time = started.elapsed();
    let texts_embedded = embedder.cached() - before;

    let index = SimilarityIndex::build(embedder, &saf.items, &train, &config)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let examples = index.training_examples();
    let mut model = SimilarityModel::new(config);
    model.initialise(&examples);
    let mut curve = vec![model.loss(&examples)];
    curve.extend((0..epochs).map(|_| model.fit_epoch(&examples)));
    let train_time = started.elapsed();

    let items: HashMap<&str, &Item> = saf.items.iter().map(|i| (i.id.as_str(), i)).collect();
    let train_mean = {
        let norm: Vec<f64> = saf
            .split("train")
            .iter()
            .map(|a| a.score / items[a.item_id.as_str()].max_marks)
            .collect();
        norm.iter().sum::<f64>() / norm.len() as f64
    };

    let mut rows: Vec<(String, [Row; 2])> = Vec::new();
    let mut engine_reports = HashMap::new();
    let mut regimes = HashMap::new();
    for split in SPLITS {
        let answers = saf.split(split);
        let pairs_of = |predicted: &dyn Fn(usize, &AnswerRow, &Item) -> f64| -> Vec<ScorePair> {
            answers
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let item = items[a.item_id.as_str()];
                    ScorePair {
                        teacher: a.score,
                        predicted: predicted(i, a, item),
                        max_marks: item.max_marks,
                    }
                })
                .collect()
        };
        let featurise_input: Vec<(String, String)> = answers
            .iter()
            .map(|a| (a.item_id.clone(), a.answer.clone()))
            .collect();
        let features = index
            .featurise(embedder, &featurise_input)
            .await
            .map_err(|e| e.to_string())?;
        let predictions: Vec<_> = answers
            .iter()
            .zip(&features)
            .map(|(a, f)| model.grade(items[a.item_id.as_str()], f))
            .collect();
        regimes.insert(
            split.to_string(),
            predictions.iter().map(|p| p.regime).collect(),
        );

        let engine = AgreementReport::compute(&pairs_of(&|i, _, _| predictions[i].marks));
        let engine_raw = AgreementReport::compute(&pairs_of(&|i, _, item| {
            predictions[i].normalised * item.max_marks
        }));
        let new_item_head = AgreementReport::compute(&pairs_of(&|i, a, item| {
            let base_only = Features {
                base: features[i].base.clone(),
                knn: None,
            };
            debug_assert_eq!(a.item_id, item.id);
            model.grade(item, &base_only).marks
        }));
        let full = AgreementReport::compute(&pairs_of(&|_, _, item| item.max_marks));
        let mean = AgreementReport::compute(&pairs_of(&|_, _, item| train_mean * item.max_marks));
        // Raw cosine(student, reference) against the teacher: correlation only.
        let cos: Vec<f64> = features.iter().map(|f| f.base[0]).collect();
        let teacher: Vec<f64> = answers
            .iter()
            .map(|a| a.score / items[a.item_id.as_str()].max_marks)
            .collect();
        let cos_r = pearson(&cos, &teacher);

        let col = usize::from(split == SPLITS[1]);
        let mut put = |name: &str, row: Row| {
            let i = match rows.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    rows.push((name.to_string(), [Row::NONE; 2]));
                    rows.len() - 1
                }
            };
            rows[i].1[col] = row;
        };
        put(
            "always full marks",
            Row {
                r: None,
                qwk: None,
                ..Row::of(&full)
            },
        );
        put(
            "train mean",
            Row {
                r: None,
                qwk: None,
                ..Row::of(&mean)
            },
        );
        put(
            "MiniLM cosine(student, reference), raw",
            Row {
                r: cos_r,
                ..Row::NONE
            },
        );
        put("similarity engine, unrounded", Row::of(&engine_raw));
        put(
            "similarity engine, marks on the 0.25 step",
            Row::of(&engine),
        );
        put(
            "similarity engine, new-item head only (marks)",
            Row::of(&new_item_head),
        );
        engine_reports.insert(split.to_string(), engine);
    }
    Ok(Evaluation {
        model,
        curve,
        rows,
        engine_reports,
        regimes,
        texts_embedded,
        embed_time,
        train_time,
    })
}

/// FIDELITY.md's table, for printing beside the measured one.
pub const FIDELITY_BASELINES: &[(&str, &str, &str)] = &[
    ("always full marks", "– / 0.164 / –", "– / 0.262 / –"),
    ("train mean", "– / 0.218 / –", "– / 0.270 / –"),
    (
        "MiniLM cosine(student, reference), raw",
        "0.213 / – / –",
        "0.532 / – / –",
    ),
    (
        "ridge on cosine, Jaccard, log length ratio",
        "0.383 / 0.201 / 0.227",
        "0.318 / 0.257 / 0.118",
    ),
    (
        "ridge on 3 features + |e_s − e_r|, e_s·e_r",
        "0.594 / 0.159 / 0.453",
        "0.084 / 0.272 / −0.003",
    ),
    ("per-item k-NN, k = 10", "0.588 / 0.134 / 0.414", "n/a"),
    (
        "target (issue 6)",
        "≥ 0.650 / – / ≥ 0.550",
        "≥ 0.550 / – / –",
    ),
];

/// The measured table and the baselines, as Markdown.
pub fn table(eval: &Evaluation) -> String {
    let mut out = String::from(
        "| grader | unseen answers r / MAE / QWK | unseen questions r / MAE / QWK |\n|---|---|---|\n",
    );
    for (name, [a, b]) in &eval.rows {
        out.push_str(&format!(
            "| {name} (measured) | {} | {} |\n",
            a.cells(),
            b.cells()
        ));
    }
    for (name, a, b) in FIDELITY_BASELINES {
        out.push_str(&format!("| {name} (FIDELITY.md) | {a} | {b} |\n"));
    }
    out
}

/// The [unseen answers, unseen questions] rows of a grader.
pub fn row(eval: &Evaluation, name: &str) -> Option<[Row; 2]> {
    eval.rows.iter().find(|(n, _)| n == name).map(|(_, r)| *r)
}

/// Loads the model and the dataset.
pub fn setup() -> Result<(Embedder, Saf), String> {
    let embedder = Embedder::load(&embedding_settings()).map_err(|e| e.to_string())?;
    let saf = Saf::load()?;
    Ok((embedder, saf))
}
