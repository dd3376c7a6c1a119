//! Exports: a test run's gradings as CSV or JSON, and a guide's scored answers as OpenAI fine-tuning JSONL — always the caller's own data.

use entity::enums::Split;
use entity::{guide_items, guides};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};
use tracing::instrument;

use crate::grading::grader::{grading_items, scored_answers};
use crate::grading::llm::build_messages;
use crate::service::test_runs::{self, TestRunError};

/// A file made for download.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// Suggested file name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// The file's text.
    pub content: String,
    /// Records in it (CSV rows without the header, JSON gradings, JSONL lines).
    pub records: usize,
}

/// File format of a gradings export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradingsFormat {
    /// One row per graded answer, with a header row.
    Csv,
    /// The run's metrics and its per-answer rows.
    Json,
}

/// Columns of the gradings CSV, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "answer_id",
    "item",
    "student_ref",
    "teacher_score",
    "max_marks",
    "score",
    "scores",
    "spread",
    "error",
    "confidence",
    "consistency",
    "quality",
    "feedback",
    "rationale",
    "answer",
];

/// One CSV field: quoted when needed; text that a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`) is prefixed with `'`.
fn csv_text(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv_number(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// The gradings of one of the caller's test runs.
#[instrument(skip(db))]
pub async fn test_run_gradings(
    db: &DatabaseConnection,
    user_id: i32,
    run_id: i32,
    format: GradingsFormat,
) -> Result<Export, TestRunError> {
    let run = test_runs::get(db, user_id, run_id).await?;
    let results = test_runs::answer_results(db, user_id, run_id).await?;
    let records = results.len();
    Ok(match format {
        GradingsFormat::Csv => {
            let mut out = CSV_COLUMNS.join(",");
            out.push('\n');
            for r in &results {
                let scores = r
                    .scores
                    .iter()
                    .map(f64::to_string)
                    .collect::<Vec<_>>()
                    .join(";");
                let fields = [
                    r.answer_id.to_string(),
                    csv_text(&r.item_label),
                    csv_text(&r.student_ref),
                    csv_number(r.teacher_score),
                    r.max_marks.to_string(),
                    r.score.to_string(),
                    scores,
                    r.spread.to_string(),
                    csv_number(r.error),
                    csv_number(r.confidence),
                    csv_number(r.consistency),
                    r.quality.overall.to_string(),
                    csv_text(&r.feedback),
                    csv_text(&r.rationale),
                    csv_text(&r.text),
                ];
                out.push_str(&fields.join(","));
                out.push('\n');
            }
            Export {
                filename: format!("test-run-{}-gradings.csv", run.id),
                content_type: "text/csv; charset=utf-8".into(),
                content: out,
                records,
            }
        }
        GradingsFormat::Json => {
            let value = json!({
                "test_run_id": run.id,
                "guide_id": run.guide_id,
                "grader_version_id": run.grader_version_id,
                "metrics": run.metrics,
                "gradings": results,
            });
            Export {
                filename: format!("test-run-{}-gradings.json", run.id),
                content_type: "application/json".into(),
                content: serde_json::to_string_pretty(&value).unwrap_or_default(),
                records,
            }
        }
    })
}

/// The scored answers of one of the caller's guides in `split` as OpenAI chat fine-tuning
/// JSONL: per answer, the grading prompt (system + user, as the LLM engine sends it, with
/// no exemplars) and the verdict the model should give (assistant, the JSON verdict with
/// the teacher's score).
#[instrument(skip(db))]
pub async fn fine_tuning_jsonl(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    split: Split,
) -> Result<Export, TestRunError> {
    let guide = guides::Entity::find_by_id(guide_id)
        .filter(guides::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(TestRunError::GuideNotFound(guide_id))?;
    let item_rows = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide.id))
        .order_by_asc(guide_items::Column::Position)
        .all(db)
        .await?;
    let all_scored = scored_answers(db, user_id, guide.id, None).await?;
    let items = grading_items(&item_rows, &all_scored);
    let mut out = String::new();
    let mut records = 0;
    for answer in all_scored.iter().filter(|a| a.split == split) {
        let (Some(item), Some(score)) = (items.get(&answer.item_id), answer.teacher_score) else {
            continue;
        };
        let mut messages: Vec<Value> = build_messages(item, &[], &answer.text)
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok())
            .collect();
        let verdict = json!({
            "criteria": [],
            "score": score,
            "feedback": "",
            "rationale": format!("The teacher gave {score} of {} marks.", item.max_marks),
        });
        messages.push(json!({ "role": "assistant", "content": verdict.to_string() }));
        out.push_str(&json!({ "messages": messages }).to_string());
        out.push('\n');
        records += 1;
    }
    Ok(Export {
        filename: format!("guide-{}-{split}-fine-tuning.jsonl", guide.id),
        content_type: "application/jsonl".into(),
        content: out,
        records,
    })
}
