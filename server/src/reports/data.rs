//! What a report shows, collected from the database: the gradings of a training job or a
//! test run joined to the teacher's marks, agreement recomputed with [`crate::metrics`],
//! the learning curve from the job's `epoch` events, and provenance with the job's LLM usage.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use entity::enums::JobKind;
use entity::{
    answers, grader_versions, graders, gradings, guide_items, guides, jobs, llm_calls, test_runs,
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use serde_json::Value;

use crate::metrics::{AgreementReport, ConfusionMatrix, ScorePair};
use crate::service::test_runs as test_run_service;
use crate::service::training;

/// Most disagreements listed.
pub const WORST_COUNT: usize = 8;
/// Longest student answer shown in the disagreements table, in characters.
const ANSWER_CHARS: usize = 600;
/// Longest rationale shown, in characters.
const RATIONALE_CHARS: usize = 600;

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A training job.
    TrainingJob(i32),
    /// A test run.
    TestRun(i32),
}

/// What went wrong collecting a report's data.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// No such training job or test run for this user.
    #[error("{0} {1} not found")]
    NotFound(&'static str, i32),
    /// Nothing to report yet.
    #[error("{0}")]
    NotReady(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// One headline figure.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Stable key, e.g. `qwk`.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Formatted value as shown.
    pub value: String,
    /// What it means.
    pub hint: String,
}

/// One point of the learning curve.
#[derive(Debug, Clone, Serialize)]
pub struct EpochPoint {
    /// Epoch number (0 = base grader).
    pub epoch: u32,
    /// Validation QWK, formatted.
    pub qwk: String,
    /// Validation MAE (normalised), formatted.
    pub mae: String,
    /// QWK as a number, for the chart.
    pub qwk_value: Option<f64>,
    /// MAE as a number, for the chart.
    pub mae_value: Option<f64>,
    /// Whether the change was kept.
    pub kept: bool,
    /// What the epoch tried.
    pub change: String,
    /// Tokens spent.
    pub tokens: i64,
}

/// Agreement on one item.
#[derive(Debug, Clone, Serialize)]
pub struct ItemRow {
    /// Item label.
    pub label: String,
    /// Maximum marks, formatted.
    pub max_marks: String,
    /// Answers compared.
    pub n: usize,
    /// Share of exact marks, formatted.
    pub exact: String,
    /// Mean absolute error in marks, formatted.
    pub mae: String,
    /// Mean absolute error as a number (for ranking).
    #[serde(skip)]
    pub mae_value: f64,
    /// Mean (grader − teacher) in marks, formatted with its sign.
    pub bias: String,
    /// Mean teacher mark, formatted.
    pub teacher_mean: String,
    /// Mean grader mark, formatted.
    pub grader_mean: String,
}

/// One of the largest disagreements.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// Item label.
    pub item_label: String,
    /// The teacher's student reference.
    pub student_ref: String,
    /// The student's answer (untrusted text, escaped on output).
    pub answer: String,
    /// Teacher's mark, formatted.
    pub teacher: String,
    /// Grader's mark, formatted.
    pub grader: String,
    /// Maximum marks, formatted.
    pub max_marks: String,
    /// Grader − teacher, formatted with its sign.
    pub difference: String,
    /// The grader's rationale (untrusted text, escaped on output).
    pub rationale: String,
}

/// How much repeated gradings of one answer vary.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Variance {
    /// Answers graded more than once.
    pub repeated_answers: usize,
    /// Share of those whose mark changed between repeats, formatted.
    pub flip_rate: Option<String>,
    /// Mean standard deviation of their marks, formatted.
    pub mean_sd: Option<String>,
}

/// One provenance line.
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    /// What.
    pub name: String,
    /// Value as shown.
    pub value: String,
    /// Identifiers and hashes: shown, but not figures a narrative may cite.
    pub nocite: bool,
}

/// Everything the template shows apart from the narrative.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    /// Report title.
    pub title: String,
    /// "Training job" or "Test run".
    pub kind_label: String,
    /// The guide's title (untrusted text).
    pub guide_title: String,
    /// When the report was made.
    pub generated_at: String,
    /// Answers compared (first gradings with a teacher mark).
    pub answer_count: usize,
    /// Headline figures.
    pub headline: Vec<Metric>,
    /// Landis & Koch band of the QWK.
    pub qwk_band: String,
    /// Learning curve (training jobs).
    pub epochs: Vec<EpochPoint>,
    /// Per-item agreement.
    pub items: Vec<ItemRow>,
    /// Largest disagreements.
    pub worst: Vec<Disagreement>,
    /// Variance over repeats.
    pub variance: Variance,
    /// Provenance.
    pub provenance: Vec<Fact>,
    /// Teacher × grader counts over quarter bins.
    pub confusion: ConfusionMatrix,
    /// (teacher, grader) normalised scores, for the scatter plot.
    #[serde(skip)]
    pub scatter: Vec<(f64, f64)>,
    /// The training job or test run's job id.
    #[serde(skip)]
    pub job_id: Option<i32>,
    /// The test run, for a test-run report.
    #[serde(skip)]
    pub test_run_id: Option<i32>,
    /// The guide.
    #[serde(skip)]
    pub guide_id: i32,
}

impl ReportData {
    /// The item with the largest mean absolute error, when there are several items or it errs.
    pub fn worst_item(&self) -> Option<&ItemRow> {
        self.items
            .iter()
            .filter(|i| i.n > 0 && i.mae_value > 0.0)
            .max_by(|a, b| a.mae_value.total_cmp(&b.mae_value))
    }

    /// The best epoch of the learning curve: the last kept one.
    pub fn best_epoch(&self) -> Option<&EpochPoint> {
        self.epochs.iter().rev().find(|e| e.kept && e.epoch > 0)
    }
}

/// A share as a percentage with one decimal.
pub fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// A coefficient or normalised error with three decimals.
pub fn f3(v: f64) -> String {
    let s = format!("{v:.3}");
    if s == "-0.000" {
        "0.000".to_owned()
    } else {
        s
    }
}

/// Marks with at most two decimals and no trailing zeros.
pub fn marks(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    if s == "-0" {
        "0".to_owned()
    } else {
        s
    }
}

/// Marks with an explicit sign.
pub fn signed(v: f64) -> String {
    let s = marks(v);
    if v > 0.0 && s != "0" {
        format!("+{s}")
    } else {
        s
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), f)
}

fn date(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

/// Landis & Koch's words for a kappa.
pub fn kappa_band(qwk: Option<f64>) -> &'static str {
    match qwk {
        None => "undefined on these answers",
        Some(k) if k < 0.0 => "worse than chance",
        Some(k) if k < 0.2 => "slight agreement",
        Some(k) if k < 0.4 => "fair agreement",
        Some(k) if k < 0.6 => "moderate agreement",
        Some(k) if k < 0.8 => "substantial agreement",
        Some(_) => "almost perfect agreement",
    }
}

/// The job, version and gradings a report is built from.
struct Source {
    kind_label: &'static str,
    title: String,
    job: jobs::Model,
    test_run_id: Option<i32>,
    guide_id: i32,
    version: Option<grader_versions::Model>,
    epochs: Vec<training::EpochRecord>,
    /// Answers a test run left out because the model failed on them.
    ungraded: Vec<test_run_service::UngradedAnswer>,
}

async fn source(
    db: &DatabaseConnection,
    user_id: i32,
    subject: Subject,
) -> Result<Source, CollectError> {
    match subject {
        Subject::TrainingJob(id) => {
            let job = jobs::Entity::find_by_id(id)
                .filter(jobs::Column::UserId.eq(user_id))
                .filter(jobs::Column::Kind.eq(JobKind::Training))
                .one(db)
                .await?
                .ok_or(CollectError::NotFound("training job", id))?;
            let guide_id = job
                .guide_id
                .ok_or_else(|| CollectError::NotReady(format!("training job {id} has no guide")))?;
            let version = grader_versions::Entity::find()
                .filter(grader_versions::Column::JobId.eq(job.id))
                .order_by_desc(grader_versions::Column::Id)
                .one(db)
                .await?;
            let epochs = training::epochs(db, user_id, job.id)
                .await
                .map_err(|err| match err {
                    training::TrainingError::Db(err) => CollectError::Db(err),
                    other => CollectError::NotReady(other.to_string()),
                })?;
            Ok(Source {
                kind_label: "Training job",
                title: format!("Training job {id}"),
                job,
                test_run_id: None,
                guide_id,
                version,
                epochs,
                ungraded: Vec::new(),
            })
        }
        Subject::TestRun(id) => {
            let run = test_runs::Entity::find_by_id(id)
                .filter(test_runs::Column::UserId.eq(user_id))
                .one(db)
                .await?
                .ok_or(CollectError::NotFound("test run", id))?;
            let job = jobs::Entity::find_by_id(run.job_id)
                .filter(jobs::Column::UserId.eq(user_id))
                .one(db)
                .await?
                .ok_or(CollectError::NotFound("test run", id))?;
            let version = grader_versions::Entity::find_by_id(run.grader_version_id)
                .one(db)
                .await?;
            Ok(Source {
                kind_label: "Test run",
                title: format!("Test run {id}"),
                job,
                test_run_id: Some(run.id),
                guide_id: run.guide_id,
                version,
                epochs: Vec::new(),
                ungraded: test_run_service::parse_metrics(&run)
                    .map(|m| m.ungraded)
                    .unwrap_or_default(),
            })
        }
    }
}

/// Collects everything a report on `subject` shows. Another user's job or run reads as
/// not found.
pub async fn collect(
    db: &DatabaseConnection,
    user_id: i32,
    subject: Subject,
) -> Result<ReportData, CollectError> {
    let src = source(db, user_id, subject).await?;
    let guide = guides::Entity::find_by_id(src.guide_id)
        .filter(guides::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(CollectError::NotFound("guide", src.guide_id))?;
    let items: HashMap<i32, guide_items::Model> = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide.id))
        .all(db)
        .await?
        .into_iter()
        .map(|i| (i.id, i))
        .collect();
    let rows = gradings::Entity::find()
        .filter(gradings::Column::JobId.eq(src.job.id))
        .filter(gradings::Column::UserId.eq(user_id))
        .order_by_asc(gradings::Column::AnswerId)
        .order_by_asc(gradings::Column::RepeatIndex)
        .order_by_asc(gradings::Column::Id)
        .all(db)
        .await?;
    if rows.is_empty() {
        return Err(CollectError::NotReady(format!(
            "{} has no gradings yet; wait until it has finished.",
            src.title
        )));
    }
    let answer_ids: Vec<i32> = {
        let mut ids: Vec<i32> = rows.iter().map(|g| g.answer_id).collect();
        ids.dedup();
        ids
    };
    let mut answers: HashMap<i32, answers::Model> = HashMap::new();
    for chunk in answer_ids.chunks(500) {
        for a in answers::Entity::find()
            .filter(answers::Column::Id.is_in(chunk.iter().copied()))
            .filter(answers::Column::UserId.eq(user_id))
            .all(db)
            .await?
        {
            answers.insert(a.id, a);
        }
    }

    // First gradings with a teacher mark: the agreement set.
    struct Row<'a> {
        answer: &'a answers::Model,
        item: &'a guide_items::Model,
        grading: &'a gradings::Model,
        teacher: f64,
    }
    let mut by_answer: BTreeMap<i32, Vec<&gradings::Model>> = BTreeMap::new();
    for g in &rows {
        by_answer.entry(g.answer_id).or_default().push(g);
    }
    let mut compared: Vec<Row<'_>> = Vec::new();
    let mut sds = Vec::new();
    let mut flips = 0usize;
    for (answer_id, gs) in &by_answer {
        let Some(answer) = answers.get(answer_id) else {
            continue;
        };
        let Some(item) = items.get(&answer.item_id) else {
            continue;
        };
        if gs.len() > 1 {
            let scores: Vec<f64> = gs.iter().map(|g| g.score).collect();
            let mean = scores.iter().sum::<f64>() / scores.len() as f64;
            let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scores.len() as f64;
            sds.push(var.sqrt());
            if scores.iter().any(|s| (s - scores[0]).abs() > 1e-9) {
                flips += 1;
            }
        }
        if let (Some(teacher), Some(first)) = (answer.teacher_score, gs.first()) {
            compared.push(Row {
                answer,
                item,
                grading: first,
                teacher,
            });
        }
    }
    if compared.is_empty() {
        return Err(CollectError::NotReady(format!(
            "{} has no graded answers with a teacher mark to compare.",
            src.title
        )));
    }
    let pair = |r: &Row<'_>| ScorePair {
        teacher: r.teacher,
        predicted: r.grading.score,
        max_marks: r.item.max_marks,
    };
    let pairs: Vec<ScorePair> = compared.iter().map(pair).collect();
    let report = AgreementReport::compute(&pairs);

    let headline = vec![
        Metric {
            key: "n".into(),
            name: "Answers compared".into(),
            value: report.n.to_string(),
            hint: "graded answers with a teacher mark".into(),
        },
        Metric {
            key: "qwk".into(),
            name: "Quadratic weighted kappa".into(),
            value: opt(report.qwk, f3),
            hint: kappa_band(report.qwk).into(),
        },
        Metric {
            key: "exact".into(),
            name: "Exact agreement".into(),
            value: opt(report.exact_agreement, pct),
            hint: "same mark as the teacher".into(),
        },
        Metric {
            key: "within1".into(),
            name: "Within one mark".into(),
            value: opt(report.within_one_mark, pct),
            hint: "at most one mark away".into(),
        },
        Metric {
            key: "mae_marks".into(),
            name: "Mean absolute error".into(),
            value: opt(report.mae_marks, marks),
            hint: "marks".into(),
        },
        Metric {
            key: "mae".into(),
            name: "MAE (normalised)".into(),
            value: opt(report.mae, f3),
            hint: "share of the item's maximum".into(),
        },
        Metric {
            key: "rmse".into(),
            name: "RMSE (normalised)".into(),
            value: opt(report.rmse, f3),
            hint: "large errors weigh more".into(),
        },
        Metric {
            key: "pearson".into(),
            name: "Pearson r".into(),
            value: opt(report.pearson, f3),
            hint: "linear correlation".into(),
        },
        Metric {
            key: "spearman".into(),
            name: "Spearman ρ".into(),
            value: opt(report.spearman, f3),
            hint: "rank correlation".into(),
        },
        Metric {
            key: "bias_marks".into(),
            name: "Mean bias".into(),
            value: opt(report.mean_bias_marks, signed),
            hint: "marks; positive = more generous than the teacher".into(),
        },
    ];

    // Per item, in guide order.
    let mut per_item: BTreeMap<(i32, i32), Vec<&Row<'_>>> = BTreeMap::new();
    for r in &compared {
        per_item
            .entry((r.item.position, r.item.id))
            .or_default()
            .push(r);
    }
    let item_rows = per_item
        .values()
        .map(|rs| {
            let item = rs[0].item;
            let ps: Vec<ScorePair> = rs.iter().map(|r| pair(r)).collect();
            let m = AgreementReport::compute(&ps);
            let n = ps.len().max(1) as f64;
            ItemRow {
                label: item.label.clone(),
                max_marks: marks(item.max_marks),
                n: ps.len(),
                exact: opt(m.exact_agreement, pct),
                mae: opt(m.mae_marks, marks),
                mae_value: m.mae_marks.unwrap_or(0.0),
                bias: opt(m.mean_bias_marks, signed),
                teacher_mean: marks(ps.iter().map(|p| p.teacher).sum::<f64>() / n),
                grader_mean: marks(ps.iter().map(|p| p.predicted).sum::<f64>() / n),
            }
        })
        .collect();

    // Largest disagreements, by normalised distance.
    let mut worst: Vec<&Row<'_>> = compared
        .iter()
        .filter(|r| (r.grading.score - r.teacher).abs() > 1e-9)
        .collect();
    worst.sort_by(|a, b| {
        let d = |r: &Row<'_>| {
            let p = pair(r);
            (p.predicted_normalised() - p.teacher_normalised()).abs()
        };
        d(b).total_cmp(&d(a)).then(a.answer.id.cmp(&b.answer.id))
    });
    let worst = worst
        .into_iter()
        .take(WORST_COUNT)
        .map(|r| Disagreement {
            item_label: r.item.label.clone(),
            student_ref: r.answer.student_ref.clone(),
            answer: truncate(&r.answer.text, ANSWER_CHARS),
            teacher: marks(r.teacher),
            grader: marks(r.grading.score),
            max_marks: marks(r.item.max_marks),
            difference: signed(r.grading.score - r.teacher),
            rationale: truncate(&r.grading.rationale, RATIONALE_CHARS),
        })
        .collect();

    let variance = Variance {
        repeated_answers: sds.len(),
        flip_rate: (!sds.is_empty()).then(|| pct(flips as f64 / sds.len() as f64)),
        mean_sd: (!sds.is_empty()).then(|| marks(sds.iter().sum::<f64>() / sds.len() as f64)),
    };

    let epochs = src
        .epochs
        .iter()
        .map(|e| EpochPoint {
            epoch: e.epoch,
            qwk: opt(e.metrics.qwk, f3),
            mae: opt(e.metrics.mae, f3),
            qwk_value: e.metrics.qwk,
            mae_value: e.metrics.mae,
            kept: e.kept,
            change: e.change.description.clone(),
            tokens: e.tokens,
        })
        .collect();

    let provenance = provenance(db, &src).await?;
    let scatter = pairs
        .iter()
        .map(|p| (p.teacher_normalised(), p.predicted_normalised()))
        .collect();
    Ok(ReportData {
        title: format!("{} — {}", src.title, guide.title),
        kind_label: src.kind_label.to_owned(),
        guide_title: guide.title,
        generated_at: date(Utc::now()),
        answer_count: report.n,
        headline,
        qwk_band: kappa_band(report.qwk).to_owned(),
        epochs,
        items: item_rows,
        worst,
        variance,
        provenance,
        confusion: report.confusion,
        scatter,
        job_id: Some(src.job.id),
        test_run_id: src.test_run_id,
        guide_id: src.guide_id,
    })
}

async fn provenance(db: &DatabaseConnection, src: &Source) -> Result<Vec<Fact>, DbErr> {
    let fact = |name: &str, value: String, nocite: bool| Fact {
        name: name.to_owned(),
        value,
        nocite,
    };
    let mut facts = Vec::new();
    if let Some(v) = &src.version {
        let grader = graders::Entity::find_by_id(v.grader_id).one(db).await?;
        let text = |pointer: &str| {
            v.config
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        facts.push(fact(
            "Grader",
            format!(
                "{} (version {})",
                grader.map_or_else(|| format!("grader {}", v.grader_id), |g| g.name),
                v.version
            ),
            true,
        ));
        if let Some(engine) = text("/engine") {
            facts.push(fact("Engine", engine, true));
        }
        if let Some(model) = text("/model").or_else(|| text("/llm/model")) {
            facts.push(fact("Model", model, true));
        }
        if let Some(hash) = text("/prompt/hash").or_else(|| text("/llm/prompt/hash")) {
            facts.push(fact("Prompt hash", hash, true));
        }
        if let Some(hash) = text("/training/training_data_sha256") {
            facts.push(fact("Training-data hash", hash, true));
        }
        if let Some(seed) = v.config.get("seed").and_then(Value::as_u64) {
            facts.push(fact("Seed", seed.to_string(), true));
        }
    }
    facts.push(fact(
        "Job",
        format!("{} ({:?})", src.job.id, src.job.status).to_lowercase(),
        true,
    ));
    facts.push(fact("Job created", date(src.job.created_at), true));
    if let Some(at) = src.job.started_at {
        facts.push(fact("Job started", date(at), true));
    }
    if let Some(at) = src.job.finished_at {
        facts.push(fact("Job finished", date(at), true));
    }
    let usage: Vec<(i64, i64, f64)> = llm_calls::Entity::find()
        .select_only()
        .column(llm_calls::Column::PromptTokens)
        .column(llm_calls::Column::CompletionTokens)
        .column(llm_calls::Column::CostUsd)
        .filter(llm_calls::Column::JobId.eq(src.job.id))
        .into_tuple()
        .all(db)
        .await?;
    let calls = usage.len();
    let (prompt, completion, cost) = if usage.is_empty() {
        (
            src.job.prompt_tokens,
            src.job.completion_tokens,
            src.job.cost_usd,
        )
    } else {
        usage.iter().fold((0, 0, 0.0), |(p, c, d), (up, uc, ud)| {
            (p + up, c + uc, d + ud)
        })
    };
    if !src.ungraded.is_empty() {
        let who: Vec<String> = src
            .ungraded
            .iter()
            .map(|u| format!("{} (question {})", u.student_ref, u.item_label))
            .collect();
        facts.push(fact(
            "Answers left out",
            format!(
                "{}, which the model could not grade: {}",
                src.ungraded.len(),
                who.join(", ")
            ),
            // Student and item names are the teacher's text, not figures to cite.
            true,
        ));
    }
    facts.push(fact("LLM calls", calls.to_string(), false));
    facts.push(fact("Prompt tokens", prompt.to_string(), false));
    facts.push(fact("Completion tokens", completion.to_string(), false));
    facts.push(fact("Cost (USD)", format!("{cost:.4}"), false));
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_as_the_report_shows_them() {
        assert_eq!(marks(2.0), "2");
        assert_eq!(marks(1.5), "1.5");
        assert_eq!(marks(0.333_333), "0.33");
        assert_eq!(marks(-0.001), "0");
        assert_eq!(signed(0.25), "+0.25");
        assert_eq!(signed(-0.5), "-0.5");
        assert_eq!(pct(0.4567), "45.7%");
        assert_eq!(f3(-0.0001), "0.000");
    }
}
