//! Exports: a test run's gradings as CSV and JSON, and a guide's training split as OpenAI
//! fine-tuning JSONL, each parsed back the way a spreadsheet or the fine-tuning API would.

use std::time::Duration;

use gradelab_tests::spawn_app;
use serde_json::{json, Value};

use crate::test_runs::{finished_run, similarity_grader};

const EXPORT: &str = "query($id: ID!, $format: ExportFormat!) { testRun(id: $id) {
    answers(first: 1000) { answerId score teacherScore }
    exportGradings(format: $format) { filename contentType content records } } }";
const FINE_TUNING: &str =
    "query($g: ID!, $split: AnswerSplit) { exportFineTuning(guideId: $g, split: $split) {
    filename contentType content records } }";

/// Splits one CSV record list (RFC 4180 quoting) into rows of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[tokio::test]
async fn gradings_export_as_csv_and_json_and_the_training_split_as_fine_tuning_jsonl() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Edda").await;
    let (guide, version) = similarity_grader(&app, &teacher.token).await;
    let run = finished_run(
        &app,
        &teacher.token,
        json!({ "graderVersionId": version }),
        Duration::from_secs(300),
    )
    .await;

    // CSV: a header and one row per graded answer, with the same scores as the API.
    let csv = app
        .graphql(
            Some(&teacher.token),
            EXPORT,
            json!({ "id": run["id"], "format": "CSV" }),
        )
        .await
        .ok();
    let answers = csv["testRun"]["answers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let export = &csv["testRun"]["exportGradings"];
    assert_eq!(export["contentType"], "text/csv; charset=utf-8");
    assert!(export["filename"]
        .as_str()
        .is_some_and(|f| f.ends_with(".csv")));
    let rows = parse_csv(export["content"].as_str().unwrap_or_default());
    let header = &rows[0];
    assert_eq!(
        header[..6],
        [
            "answer_id",
            "item",
            "student_ref",
            "teacher_score",
            "max_marks",
            "score"
        ]
    );
    assert_eq!(rows.len() - 1, answers.len(), "one row per graded answer");
    assert_eq!(export["records"], answers.len());
    let answer_col = header
        .iter()
        .position(|h| h == "answer")
        .unwrap_or(usize::MAX);
    for (row, answer) in rows[1..].iter().zip(&answers) {
        assert_eq!(
            row.len(),
            header.len(),
            "every row has every column: {row:?}"
        );
        assert_eq!(row[0], answer["answerId"].as_str().unwrap_or_default());
        assert_eq!(row[5].parse::<f64>().ok(), answer["score"].as_f64());
        assert!(
            !row[answer_col].is_empty(),
            "the student's answer is in the file"
        );
    }

    // JSON: the metrics and the same rows.
    let json_export = app
        .graphql(
            Some(&teacher.token),
            EXPORT,
            json!({ "id": run["id"], "format": "JSON" }),
        )
        .await
        .ok();
    let export = &json_export["testRun"]["exportGradings"];
    assert_eq!(export["contentType"], "application/json");
    let parsed: Value =
        serde_json::from_str(export["content"].as_str().unwrap_or_default()).expect("valid JSON");
    assert_eq!(
        parsed["gradings"].as_array().map(Vec::len),
        Some(answers.len())
    );
    assert!(
        parsed["metrics"]["qwk"].is_number(),
        "{}",
        parsed["metrics"]
    );
    assert_eq!(
        parsed["test_run_id"].to_string(),
        run["id"].as_str().unwrap_or_default()
    );

    // Fine-tuning JSONL: one chat per scored train answer, the verdict carrying the
    // teacher's score.
    let split = app
        .graphql(
            Some(&teacher.token),
            "query($g: ID!) { answerSplitSummary(guideId: $g) { bySplit { split count } } }",
            json!({ "g": guide }),
        )
        .await
        .ok();
    let train_count = split["answerSplitSummary"]["bySplit"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["split"] == "TRAIN"))
        .and_then(|x| x["count"].as_u64())
        .expect("the summary lists the train split");
    let data = app
        .graphql(Some(&teacher.token), FINE_TUNING, json!({ "g": guide }))
        .await
        .ok();
    let export = &data["exportFineTuning"];
    assert!(export["filename"]
        .as_str()
        .is_some_and(|f| f.ends_with(".jsonl")));
    let lines: Vec<&str> = export["content"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .collect();
    assert!(lines.len() > 10, "{} lines", lines.len());
    assert_eq!(export["records"], lines.len());
    assert_eq!(
        lines.len() as u64,
        train_count,
        "one line per scored train answer"
    );
    for line in &lines {
        let chat: Value = serde_json::from_str(line).expect("each line is JSON");
        let messages = chat["messages"].as_array().cloned().unwrap_or_default();
        let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant"], "{line}");
        assert!(messages.iter().all(|m| m["content"].is_string()));
        let verdict: Value =
            serde_json::from_str(messages[2]["content"].as_str().unwrap_or_default())
                .expect("the assistant message is the JSON verdict");
        assert!(
            verdict["score"].is_number() && verdict["rationale"].is_string(),
            "{verdict}"
        );
        assert!(messages[1]["content"]
            .as_str()
            .is_some_and(|u| u.contains("Mark this student's answer")));
    }
    // The test split exports on request, and is a different set of answers.
    let test_split = app
        .graphql(
            Some(&teacher.token),
            FINE_TUNING,
            json!({ "g": guide, "split": "TEST" }),
        )
        .await
        .ok();
    assert_eq!(test_split["exportFineTuning"]["records"], answers.len());
}
