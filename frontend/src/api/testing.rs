//! Test runs and reports: start a run for a grader version, read its metrics, confusion
//! matrix, gradings and review queue, export its gradings, and generate, list and read
//! reports (`queries/{start_test_run,test_run,export_gradings,generate_report,reports,report}.graphql`).

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::jobs::JobStatus;
use super::json::Read;
use super::{http, ApiError};

type DateTime = String;

macro_rules! operation {
    ($name:ident, $path:tt) => {
        #[derive(GraphQLQuery)]
        #[graphql(schema_path = "../schema.graphql", query_path = $path, response_derives = "Serialize")]
        struct $name;
    };
}

operation!(StartTestRun, "queries/start_test_run.graphql");
operation!(TestRun, "queries/test_run.graphql");
operation!(ExportGradings, "queries/export_gradings.graphql");
operation!(GenerateReport, "queries/generate_report.graphql");
operation!(Reports, "queries/reports.graphql");
operation!(Report, "queries/report.graphql");

/// Grades the test split with grader version `grader_version_id`; returns the run's id.
pub async fn start(grader_version_id: String) -> Result<String, ApiError> {
    let variables = start_test_run::Variables {
        input: start_test_run::TestRunInput {
            grader_version_id,
            split: start_test_run::AnswerSplit::TEST,
            upload_id: None,
            repeats: 1,
            repeat_temperature: 0.7,
            limit: None,
        },
    };
    let data = http::post::<StartTestRun>(variables).await?;
    Ok(data.at("startTestRun").text("id"))
}

/// One graded answer beside the teacher's score.
#[derive(Clone, Debug, PartialEq)]
pub struct Graded {
    /// The item's label.
    pub item: String,
    /// The student.
    pub student: String,
    /// The answer (review queue only).
    pub text: String,
    /// The teacher's score.
    pub teacher: Option<f64>,
    /// The grader's score.
    pub score: f64,
    /// The item's maximum.
    pub max: f64,
    /// The grader's feedback (review queue only).
    pub feedback: String,
    /// Why a person should look (review queue only).
    pub reasons: Vec<String>,
}

fn read_graded(answer: &Value, reasons: &Value) -> Graded {
    Graded {
        item: answer.text("itemLabel"),
        student: answer.text("studentRef"),
        text: answer.text("text"),
        teacher: answer.at("teacherScore").as_f64(),
        score: answer.num("score"),
        max: answer.num("maxMarks"),
        feedback: answer.text("feedback"),
        reasons: reasons
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A test run with its results (empty until its job has finished).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The run's guide.
    pub guide_id: String,
    /// Its job (follow it live).
    pub job_id: String,
    /// When it started.
    pub created_at: String,
    /// Its job's state.
    pub status: JobStatus,
    /// Its job's progress.
    pub progress: f64,
    /// `(label, value)` of each agreement metric; `None` when undefined.
    pub metrics: Vec<(&'static str, Option<f64>)>,
    /// Answers compared.
    pub n: i64,
    /// Answers in the review queue.
    pub review_count: i64,
    /// Answers the run could not grade: `(item label, student, why)`.
    pub ungraded: Vec<(String, String, String)>,
    /// Score bins of the confusion matrix.
    pub labels: Vec<f64>,
    /// `counts[teacher][grader]`.
    pub counts: Vec<Vec<i64>>,
    /// Every graded answer.
    pub answers: Vec<Graded>,
    /// The review queue, most urgent first.
    pub review: Vec<Graded>,
}

/// One of the caller's test runs.
pub async fn run(id: String) -> Result<Run, ApiError> {
    Ok(read_run(
        http::post::<TestRun>(test_run::Variables { id })
            .await?
            .at("testRun"),
    ))
}

fn read_run(run: &Value) -> Run {
    let metrics = run.at("metrics");
    let value = |key: &str| metrics.at(key).as_f64();
    let confusion = metrics.at("confusion");
    let floats = |list: &[Value]| list.iter().filter_map(Value::as_f64).collect::<Vec<_>>();
    Run {
        guide_id: run.text("guideId"),
        job_id: run.text("jobId"),
        created_at: run.text("createdAt"),
        status: JobStatus::from_name(&run.at("job").text("status")),
        progress: run.at("job").num("progress"),
        metrics: if metrics.is_null() {
            Vec::new()
        } else {
            vec![
                ("QWK", value("qwk")),
                ("Exact", value("exact")),
                ("Within one mark", value("withinOne")),
                ("MAE", value("mae")),
                ("RMSE", value("rmse")),
                ("Pearson", value("pearson")),
                ("Spearman", value("spearman")),
                ("Bias", value("bias")),
            ]
        },
        n: metrics.int("n"),
        review_count: metrics.int("reviewCount"),
        ungraded: metrics
            .list("ungraded")
            .iter()
            .map(|u| (u.text("itemLabel"), u.text("studentRef"), u.text("error")))
            .collect(),
        labels: floats(confusion.list("labels")),
        counts: confusion
            .list("counts")
            .iter()
            .map(|row| {
                row.as_array()
                    .map(|cells| cells.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default()
            })
            .collect(),
        answers: run
            .list("answers")
            .iter()
            .map(|a| read_graded(a, &Value::Null))
            .collect(),
        review: run
            .list("reviewQueue")
            .iter()
            .map(|r| read_graded(r.at("answer"), r.at("reasons")))
            .collect(),
    }
}

/// A file to save: name, type and content.
pub type Download = (String, String, String);

/// The run's gradings as CSV (`csv`) or JSON.
pub async fn export(id: String, csv: bool) -> Result<Download, ApiError> {
    let format = if csv {
        export_gradings::ExportFormat::CSV
    } else {
        export_gradings::ExportFormat::JSON
    };
    let data = http::post::<ExportGradings>(export_gradings::Variables { id, format }).await?;
    let file = data.at("testRun").at("exportGradings");
    Ok((
        file.text("filename"),
        file.text("contentType"),
        file.text("content"),
    ))
}

/// Writes a report on test run `test_run_id` (computed narrative); returns its id.
pub async fn generate_report(test_run_id: String) -> Result<String, ApiError> {
    let variables = generate_report::Variables {
        input: generate_report::GenerateReportInput {
            job_id: None,
            test_run_id: Some(test_run_id),
            use_llm: false,
        },
    };
    let data = http::post::<GenerateReport>(variables).await?;
    Ok(data.at("generateReport").text("id"))
}

/// A report as lists show it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportSummary {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// When it was generated.
    pub created_at: String,
    /// Whether the LLM narrative is still being written.
    pub pending: bool,
}

/// The caller's reports, newest first.
pub async fn reports() -> Result<Vec<ReportSummary>, ApiError> {
    Ok(read_reports(
        &http::post::<Reports>(reports::Variables).await?,
    ))
}

/// The `reports.nodes` of a query's `data`.
pub(crate) fn read_reports(data: &Value) -> Vec<ReportSummary> {
    data.at("reports")
        .list("nodes")
        .iter()
        .map(|r| ReportSummary {
            id: r.text("id"),
            title: r.text("title"),
            created_at: r.text("createdAt"),
            pending: r.flag("narrativePending"),
        })
        .collect()
}

/// One report: its summary and its whole HTML document.
pub async fn report(id: String) -> Result<(ReportSummary, String), ApiError> {
    let data = http::post::<Report>(report::Variables { id }).await?;
    let report = data.at("report");
    Ok((
        ReportSummary {
            id: report.text("id"),
            title: report.text("title"),
            created_at: report.text("createdAt"),
            pending: report.flag("narrativePending"),
        },
        report.text("html"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    #[test]
    fn reads_a_run_its_matrix_and_review_queue() {
        let answer = json!({
            "itemLabel": "1(a)", "studentRef": "S1", "text": "Ohm", "teacherScore": 1.0,
            "score": 0.0, "maxMarks": 1.0, "feedback": "Names the unit.",
        });
        let data = typed::<TestRun>(json!({ "testRun": {
            "id": "3", "guideId": "1", "jobId": "9", "createdAt": "2026-05-30T10:00:00Z",
            "job": { "status": "SUCCEEDED", "progress": 1.0 },
            "metrics": {
                "n": 4, "exact": 0.5, "withinOne": 1.0, "mae": 0.25, "rmse": 0.5, "pearson": null,
                "spearman": null, "qwk": 0.4, "bias": -0.1, "reviewCount": 1,
                "ungraded": [{ "itemLabel": "2", "studentRef": "S9", "error": "The model's reply is not valid" }],
                "confusion": { "labels": [0.0, 1.0], "counts": [[1, 0], [1, 2]] },
            },
            "answers": [{
                "itemLabel": "1(a)", "studentRef": "S1", "teacherScore": 1.0, "score": 0.0, "maxMarks": 1.0,
            }],
            "reviewQueue": [{ "reasons": ["large disagreement"], "answer": answer }],
        }}));
        let run = read_run(data.at("testRun"));
        assert_eq!(run.status, JobStatus::Succeeded);
        assert_eq!(run.metrics[0], ("QWK", Some(0.4)));
        assert_eq!(run.metrics[5], ("Pearson", None));
        assert_eq!(run.counts, vec![vec![1, 0], vec![1, 2]]);
        assert_eq!(run.answers[0].teacher, Some(1.0));
        assert_eq!(run.review[0].reasons, vec!["large disagreement".to_owned()]);
        assert_eq!(run.review[0].feedback, "Names the unit.");
        assert_eq!(
            run.ungraded,
            vec![(
                "2".to_owned(),
                "S9".to_owned(),
                "The model's reply is not valid".to_owned()
            )]
        );

        let running = typed::<TestRun>(json!({ "testRun": {
            "id": "3", "guideId": "1", "jobId": "9", "createdAt": "2026-05-30T10:00:00Z",
            "job": { "status": "RUNNING", "progress": 0.5 }, "metrics": null,
            "answers": [], "reviewQueue": [],
        }}));
        assert!(read_run(running.at("testRun")).metrics.is_empty());
    }

    #[test]
    fn reads_reports_and_exports() {
        let data = typed::<Reports>(json!({ "reports": { "nodes": [{
            "id": "2", "title": "Test run 3", "createdAt": "2026-05-30T10:00:00Z",
            "testRunId": "3", "jobId": "9", "narrativePending": false,
        }]}}));
        assert_eq!(read_reports(&data)[0].title, "Test run 3");
        typed::<Report>(json!({ "report": {
            "id": "2", "title": "T", "createdAt": "2026-05-30T10:00:00Z", "html": "<html></html>",
            "narrativePending": false,
        }}));
        typed::<ExportGradings>(json!({ "testRun": { "exportGradings": {
            "filename": "a.csv", "contentType": "text/csv", "content": "x",
        }}}));
        typed::<StartTestRun>(json!({ "startTestRun": { "id": "3" } }));
        typed::<GenerateReport>(json!({ "generateReport": { "id": "2" } }));
    }
}
