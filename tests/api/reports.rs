//! Reports: a self-contained HTML report on a training job or a test run, with escaped
//! hostile text, an LLM narrative that may only cite the report's numbers (a computed,
//! labelled fallback otherwise), downloads, and scoping to the owner.

use std::time::Duration;

use entity::enums::{JobKind, JobStatus};
use entity::{gradings, jobs, test_runs};
use gradelab::config::Settings;
use gradelab_tests::fault_proxy::FaultServer;
use gradelab_tests::{spawn_app_with, TestApp};
use sea_orm::prelude::DateTimeUtc;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use crate::answers::{guide_from_items, import_text, saf_subset, split_count};

const GENERATE: &str = "mutation($input: GenerateReportInput!) { generateReport(input: $input) {
    id title createdAt narrativeSource html fallbackReason narrativeJobId narrativePending downloadUrl jobId testRunId } }";
const REPORT: &str = "query($id: ID!) { report(id: $id) { id title narrativeSource html fallbackReason narrativePending narrative } }";
const REPORTS: &str = "query($first: Int!, $after: String) { reports(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id title narrativeSource } } } }";
const JOB: &str = "query($id: ID!) { job(id: $id) { id status error result } }";
const EPOCHS: &str = "query($job: ID!) { trainingEpochs(jobId: $job) { epoch metrics { qwk } } }";

fn now() -> DateTimeUtc {
    DateTimeUtc::from(std::time::SystemTime::now())
}

/// Payloads that must come out as text.
pub const XSS: &str = r#"<script>alert('xss')</script><img src=x onerror="alert(1)"><svg onload=alert(2)><a href="https://evil.example/">x</a>"#;

/// A server whose settings the test can reuse to open the database.
pub struct App {
    pub app: TestApp,
    pub settings: Settings,
}

pub async fn spawn(llm_base_url: Option<&str>, model_timeout_secs: u64) -> App {
    let mut captured = None;
    let app = spawn_app_with(|settings| {
        if let Some(url) = llm_base_url {
            settings.llm.provider = "llamacpp".into();
            settings.llm.base_url = url.to_owned();
            settings.llm.timeout_secs = model_timeout_secs;
            settings.llm.max_retries = 1;
            settings.llm.retry_base_ms = 10;
            settings.llm.retry_max_ms = 50;
        }
        captured = Some(settings.clone());
    })
    .await;
    App {
        app,
        settings: captured.expect("settings captured"),
    }
}

/// SAF items and answers, with `payload` woven into the title, the student references
/// and the answers when given.
fn dataset(payload: Option<&str>) -> (String, String) {
    let (items, answers) = saf_subset(&["4.13", "6.2_IPP"], 30);
    let Some(payload) = payload else {
        return (items, answers);
    };
    let answers: Vec<String> = answers
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|mut row| {
            row["id"] = json!(format!("{}{payload}", row["id"].as_str().unwrap_or("s")));
            row["answer"] = json!(format!(
                "{payload} {}",
                row["answer"].as_str().unwrap_or("")
            ));
            row.to_string()
        })
        .collect();
    (items, answers.join("\n") + "\n")
}

pub async fn wait_for_job(app: &TestApp, token: &str, job: &Value, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let data = app
            .graphql(Some(token), JOB, json!({ "id": job }))
            .await
            .ok();
        let status = data["job"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if matches!(status.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED") {
            return data["job"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} still {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A finished similarity training job on a small SAF guide; returns its id.
pub async fn trained_job(app: &TestApp, token: &str, title: &str, payload: Option<&str>) -> Value {
    let (items, answers) = dataset(payload);
    let guide = guide_from_items(app, token, title, &items).await;
    let imported = import_text(
        app,
        token,
        &guide,
        &answers,
        json!({ "validationFromTrain": 0.25, "seed": 5 }),
    )
    .await
    .ok();
    assert!(split_count(&imported["importAnswersText"]["bySplit"], "VALIDATION") > 0);
    let input = json!({ "guideId": guide, "engine": "SIMILARITY", "epochs": 2, "patience": 2, "gradientEpochs": 2, "seed": 1 });
    let started = app
        .graphql(
            Some(token),
            "mutation($input: TrainingInput!) { startTraining(input: $input) { id } }",
            json!({ "input": input }),
        )
        .await
        .ok();
    let job_id = started["startTraining"]["id"].clone();
    let job = wait_for_job(app, token, &job_id, Duration::from_secs(600)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    job_id
}

async fn generate(app: &TestApp, token: &str, input: Value) -> Value {
    app.graphql(Some(token), GENERATE, json!({ "input": input }))
        .await
        .ok()["generateReport"]
        .clone()
}

/// Waits for the narrative job of a report and returns the report as it then is.
pub async fn settled(app: &TestApp, token: &str, report: &Value, timeout: Duration) -> Value {
    if let Some(job) = report["narrativeJobId"].as_str() {
        let job = wait_for_job(app, token, &json!(job), timeout).await;
        assert_eq!(job["status"], "SUCCEEDED", "{job}");
    }
    let data = app
        .graphql(Some(token), REPORT, json!({ "id": report["id"] }))
        .await
        .ok();
    assert_eq!(data["report"]["narrativePending"], false);
    data["report"].clone()
}

/// Checks the document is self-contained: a CSP meta tag, no script, no external URL.
pub fn assert_self_contained(html: &str) {
    assert!(
        html.contains(r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">"#),
        "CSP meta tag"
    );
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "no script element");
    for attr in ["src=", "href="] {
        for quote in ["\"", "'", ""] {
            for scheme in ["http://", "https://", "//"] {
                let needle = format!("{attr}{quote}{scheme}");
                assert!(!lower.contains(&needle), "external reference {needle}");
            }
        }
    }
    assert!(!lower.contains("<link"), "no linked resources");
    assert!(!lower.contains("@import"), "no imported style sheets");
    assert!(!lower.contains("url("), "no CSS url()");
}

/// The `<svg class="chart learning-curve">` element.
fn learning_curve(html: &str) -> &str {
    let start = html
        .find(r#"<svg class="chart learning-curve""#)
        .expect("a learning-curve svg");
    let end = html[start..].find("</svg>").expect("closed svg") + start;
    &html[start..end]
}

fn headline(html: &str, key: &str) -> String {
    let marker = format!(r#"data-key="{key}""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("headline {key}"));
    let rest = &html[start..];
    let v = rest.find(r#"<div class="v">"#).expect("value") + r#"<div class="v">"#.len();
    let end = rest[v..].find("</div>").expect("value end") + v;
    rest[v..end].to_owned()
}

#[tokio::test]
async fn a_training_report_is_self_contained_with_headline_figures_and_a_learning_curve() {
    let App { app, .. } = spawn(None, 5).await;
    let teacher = app.sign_up("Rita").await;
    let job_id = trained_job(&app, &teacher.token, "Networks quiz", None).await;
    let job = wait_for_job(&app, &teacher.token, &job_id, Duration::from_secs(5)).await;

    let report = generate(
        &app,
        &teacher.token,
        json!({ "jobId": job_id, "useLlm": false }),
    )
    .await;
    assert_eq!(report["narrativeSource"], "COMPUTED");
    assert_eq!(report["narrativePending"], false);
    assert_eq!(report["narrativeJobId"], Value::Null, "no LLM asked");
    assert!(report["title"]
        .as_str()
        .unwrap_or("")
        .contains("Networks quiz"));
    let html = report["html"].as_str().expect("html");
    assert_self_contained(html);

    // The headline figures are the job's own validation figures, recomputed from its gradings.
    let metrics = &job["result"]["metrics"];
    let qwk = metrics["qwk"].as_f64().expect("the job measured a QWK");
    assert_eq!(headline(html, "qwk"), format!("{qwk:.3}"));
    assert_eq!(headline(html, "n"), metrics["n"].to_string());
    let exact = metrics["exact"].as_f64().expect("exact agreement");
    assert_eq!(headline(html, "exact"), format!("{:.1}%", exact * 100.0));

    // One learning-curve point per epoch of the job.
    let epochs = app
        .graphql(Some(&teacher.token), EPOCHS, json!({ "job": job_id }))
        .await
        .ok();
    let epochs = epochs["trainingEpochs"].as_array().expect("epochs").clone();
    assert_eq!(epochs.len(), 3, "epoch 0 and two changes");
    let curve = learning_curve(html);
    assert_eq!(
        curve.matches(r#"<circle class="point""#).count(),
        epochs.len()
    );
    for e in &epochs {
        assert!(curve.contains(&format!(r#"data-epoch="{}""#, e["epoch"])));
    }
    for part in [
        r#"<svg class="chart confusion""#,
        r#"<svg class="chart scatter""#,
        r#"<table id="items">"#,
        r#"<table id="disagreements">"#,
        r#"<table id="provenance">"#,
        "Training-data hash",
        "Prompt tokens",
        "Computed summary (fallback)",
    ] {
        assert!(html.contains(part), "the report shows {part}");
    }

    // Listed, and downloadable as an attachment with the same HTML.
    let list = app
        .graphql(Some(&teacher.token), REPORTS, json!({ "first": 10 }))
        .await
        .ok();
    assert_eq!(list["reports"]["totalCount"], 1);
    assert_eq!(list["reports"]["edges"][0]["node"]["id"], report["id"]);
    let response = app
        .client
        .get(format!(
            "{}{}",
            app.base_url,
            report["downloadUrl"].as_str().unwrap_or("")
        ))
        .bearer_auth(&teacher.token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    let disposition = response
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(response
        .headers()
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("default-src 'none'")));
    assert_eq!(response.text().await.expect("body"), html);
    let anonymous = app
        .client
        .get(format!(
            "{}{}",
            app.base_url,
            report["downloadUrl"].as_str().unwrap_or("")
        ))
        .send()
        .await
        .expect("download");
    assert_eq!(anonymous.status(), 401);
}

/// A narrative that cites only numbers every report shows (none) and carries payloads.
fn hostile_narrative() -> String {
    json!({
        "executive_summary": format!("Agreement is mixed. {XSS}"),
        "insights": [format!("Look at the disagreements <img src=x onerror=\"alert('n')\">"), "Bias is small."],
        "recommendations": ["<script>document.title='pwned'</script>Review the rubric."],
    })
    .to_string()
}

#[tokio::test]
async fn hostile_answers_titles_and_llm_narratives_come_out_escaped() {
    let canned = FaultServer::canned(hostile_narrative()).await;
    let App { app, .. } = spawn(Some(&canned.base_url), 5).await;
    let teacher = app.sign_up("Esc").await;
    let job_id = trained_job(&app, &teacher.token, &format!("Quiz {XSS}"), Some(XSS)).await;

    let report = generate(&app, &teacher.token, json!({ "jobId": job_id })).await;
    assert!(
        report["narrativeJobId"].is_string(),
        "an LLM narrative job: {report}"
    );
    let report = settled(&app, &teacher.token, &report, Duration::from_secs(60)).await;
    assert_eq!(
        report["narrativeSource"], "LLM",
        "{}",
        report["fallbackReason"]
    );
    assert_eq!(canned.requests(), 1);
    let html = report["html"].as_str().expect("html");
    assert_self_contained(html);
    let lower = html.to_lowercase();
    for tag in [
        "<script",
        "<img",
        "<svg onload",
        "<a href",
        "onerror=\"",
        "<a ",
    ] {
        assert!(!lower.contains(tag), "{tag} came through unescaped");
    }
    // The payloads are there as text: in the title, the answers, the student references
    // and the narrative.
    let escaped = "&lt;script&gt;alert(";
    assert!(html.matches(escaped).count() >= 3, "escaped payloads shown");
    assert!(html.contains("&lt;img src=x onerror="));
    assert!(html.contains("Review the rubric."));
    assert!(html.contains("Written by the language model"));
    // The model saw figures, not student text.
    let prompt = canned.bodies()[0].to_string();
    assert!(
        !prompt.contains("alert('xss')"),
        "student text is not sent to the model"
    );
}

#[tokio::test]
async fn garbage_or_an_invented_number_falls_back_to_the_computed_narrative_labelled() {
    let canned = FaultServer::canned("Sure! Here is a lovely report: {not json").await;
    let App { app, .. } = spawn(Some(&canned.base_url), 5).await;
    let teacher = app.sign_up("Fay").await;
    let job_id = trained_job(&app, &teacher.token, "Networks quiz", None).await;

    // Garbage.
    let first = generate(&app, &teacher.token, json!({ "jobId": job_id })).await;
    let first = settled(&app, &teacher.token, &first, Duration::from_secs(60)).await;
    assert_eq!(first["narrativeSource"], "COMPUTED");
    let reason = first["fallbackReason"].as_str().unwrap_or_default();
    assert!(reason.contains("language model failed"), "{reason}");
    let html = first["html"].as_str().expect("html");
    assert!(html.contains("Computed summary (fallback)"));
    assert!(html.contains("Why: the language model failed"));

    // Well-formed, but citing a figure the report does not show.
    canned.set_canned(
        json!({
            "executive_summary": "The grader agrees with the teacher almost perfectly (QWK 0.987).",
            "insights": ["Exact agreement is 99.9%."],
            "recommendations": ["Use it."],
        })
        .to_string(),
    );
    let second = generate(&app, &teacher.token, json!({ "jobId": job_id })).await;
    let second = settled(&app, &teacher.token, &second, Duration::from_secs(60)).await;
    assert_eq!(second["narrativeSource"], "COMPUTED");
    let reason = second["fallbackReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("0.987") && reason.contains("99.9%"),
        "{reason}"
    );
    let html = second["html"].as_str().expect("html");
    assert!(
        !html.contains("almost perfectly (QWK 0.987)"),
        "the rejected text is not shown"
    );
    assert!(html.contains("not in the report"));
    assert_eq!(second["narrative"]["source"], "computed");

    // A narrative that only cites the report's own figures is accepted.
    let qwk = headline(html, "qwk");
    let n = headline(html, "n");
    canned.set_canned(
        json!({
            "executive_summary": format!("On {n} answers the QWK is {qwk}."),
            "insights": ["The largest disagreements deserve a look."],
            "recommendations": ["Add scored answers and train again."],
        })
        .to_string(),
    );
    let third = generate(&app, &teacher.token, json!({ "jobId": job_id })).await;
    let third = settled(&app, &teacher.token, &third, Duration::from_secs(60)).await;
    assert_eq!(
        third["narrativeSource"], "LLM",
        "{}",
        third["fallbackReason"]
    );
    assert!(third["html"]
        .as_str()
        .unwrap_or("")
        .contains(&format!("On {n} answers the QWK is {qwk}.")));
}

#[tokio::test]
async fn another_users_report_reads_as_not_found_in_the_api_and_the_download() {
    let App { app, .. } = spawn(None, 5).await;
    let owner = app.sign_up("Owner").await;
    let other = app.sign_up("Other").await;
    let job_id = trained_job(&app, &owner.token, "Private quiz", None).await;
    let report = generate(
        &app,
        &owner.token,
        json!({ "jobId": job_id, "useLlm": false }),
    )
    .await;

    let read = app
        .graphql(Some(&other.token), REPORT, json!({ "id": report["id"] }))
        .await;
    assert_eq!(read.error_code(), Some("NOT_FOUND"));
    let list = app
        .graphql(Some(&other.token), REPORTS, json!({ "first": 10 }))
        .await
        .ok();
    assert_eq!(list["reports"]["totalCount"], 0);
    let download = app
        .client
        .get(format!(
            "{}/reports/{}/download",
            app.base_url,
            report["id"].as_str().unwrap_or("")
        ))
        .bearer_auth(&other.token)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 404);
    // Nor can the other user report on the owner's job.
    let stolen = app
        .graphql(
            Some(&other.token),
            GENERATE,
            json!({ "input": { "jobId": job_id } }),
        )
        .await;
    assert_eq!(stolen.error_code(), Some("NOT_FOUND"));
    let both = app
        .graphql(
            Some(&owner.token),
            GENERATE,
            json!({ "input": { "jobId": job_id, "testRunId": "1" } }),
        )
        .await;
    assert_eq!(both.error_code(), Some("BAD_USER_INPUT"));
}

/// Inserts a finished test run of the training job's version whose gradings copy the
/// job's, graded twice, with every third answer's second mark changed (variance).
async fn insert_test_run(db: &DatabaseConnection, training_job: i32) -> i32 {
    let source = gradings::Entity::find()
        .filter(gradings::Column::JobId.eq(training_job))
        .all(db)
        .await
        .expect("gradings");
    assert!(!source.is_empty());
    let first = &source[0];
    let job = jobs::ActiveModel {
        user_id: Set(first.user_id),
        guide_id: Set(None),
        kind: Set(JobKind::TestRun),
        status: Set(JobStatus::Succeeded),
        params: Set(json!({})),
        progress: Set(1.0),
        cancel_requested: Set(false),
        attempts: Set(1),
        prompt_tokens: Set(0),
        completion_tokens: Set(0),
        cost_usd: Set(0.0),
        created_at: Set(now()),
        updated_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("job");
    let training = jobs::Entity::find_by_id(training_job)
        .one(db)
        .await
        .expect("training job")
        .expect("exists");
    let run = test_runs::ActiveModel {
        user_id: Set(first.user_id),
        job_id: Set(job.id),
        guide_id: Set(training.guide_id.expect("guide")),
        grader_version_id: Set(first.grader_version_id),
        metrics: Set(None),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("test run");
    for (i, g) in source.iter().enumerate() {
        for repeat in 0..2 {
            let changed = repeat == 1 && i % 3 == 0;
            gradings::ActiveModel {
                user_id: Set(g.user_id),
                answer_id: Set(g.answer_id),
                grader_version_id: Set(g.grader_version_id),
                job_id: Set(Some(job.id)),
                repeat_index: Set(repeat),
                score: Set(if changed { g.score + 0.5 } else { g.score }),
                raw_score: Set(g.raw_score),
                criteria: Set(g.criteria.clone()),
                feedback: Set(g.feedback.clone()),
                rationale: Set(g.rationale.clone()),
                confidence: Set(g.confidence),
                created_at: Set(now()),
                ..Default::default()
            }
            .insert(db)
            .await
            .expect("grading");
        }
    }
    run.id
}

#[tokio::test]
async fn a_test_run_report_recomputes_agreement_and_shows_variance_over_repeats() {
    let App { app, settings } = spawn(None, 5).await;
    let teacher = app.sign_up("Tim").await;
    let job_id = trained_job(&app, &teacher.token, "Networks quiz", None).await;
    let db = gradelab::startup::connect(&settings).await.expect("db");
    let training_job: i32 = job_id.as_str().unwrap_or("0").parse().expect("id");
    let run_id = insert_test_run(&db, training_job).await;
    let n = gradings::Entity::find()
        .filter(gradings::Column::JobId.eq(training_job))
        .all(&db)
        .await
        .expect("gradings")
        .len();

    let report = generate(
        &app,
        &teacher.token,
        json!({ "testRunId": run_id.to_string(), "useLlm": false }),
    )
    .await;
    assert_eq!(report["testRunId"], run_id.to_string());
    let html = report["html"].as_str().expect("html");
    assert_self_contained(html);
    assert_eq!(headline(html, "n"), n.to_string(), "first gradings only");
    assert!(
        !html.contains("chart learning-curve"),
        "no learning curve for a test run"
    );
    let flipped = n.div_ceil(3);
    let expected = format!(
        "{n} answers were graded more than once: the mark changed between repeats on {:.1}% of them",
        flipped as f64 * 100.0 / n as f64
    );
    assert!(html.contains(&expected), "variance: {expected}");

    // Another user cannot report on it.
    let other = app.sign_up("Other").await;
    let stolen = app
        .graphql(
            Some(&other.token),
            GENERATE,
            json!({ "input": { "testRunId": run_id.to_string() } }),
        )
        .await;
    assert_eq!(stolen.error_code(), Some("NOT_FOUND"));
}

#[tokio::test]
async fn the_local_model_writes_a_checked_narrative_or_the_report_says_it_fell_back() {
    let Some(url) = crate::llm::real_model_url() else {
        return;
    };
    let App { app, .. } = spawn(Some(&url), 900).await;
    let teacher = app.sign_up("Lena").await;
    let job_id = trained_job(&app, &teacher.token, "Networks quiz", None).await;
    let began = std::time::Instant::now();
    let report = generate(&app, &teacher.token, json!({ "jobId": job_id })).await;
    let report = settled(&app, &teacher.token, &report, Duration::from_secs(1800)).await;
    let html = report["html"].as_str().expect("html");
    assert_self_contained(html);
    let source = report["narrativeSource"].as_str().unwrap_or_default();
    eprintln!(
        "local model narrative: {source} in {:.0?}; reason: {}; narrative: {}",
        began.elapsed(),
        report["fallbackReason"],
        report["narrative"]
    );
    match source {
        "LLM" => {
            assert!(html.contains("Written by the language model"));
            assert_eq!(report["fallbackReason"], Value::Null);
            assert!(!report["narrative"]["executive_summary"]
                .as_str()
                .unwrap_or("")
                .is_empty());
        }
        "COMPUTED" => {
            assert!(html.contains("Computed summary (fallback)"));
            // A small model may stray in several ways; each has its own, human reason.
            let reason = report["fallbackReason"].as_str().unwrap_or_default();
            assert!(
                [
                    "not in the report",
                    "language model failed",
                    "repeats itself",
                    "narrative is empty"
                ]
                .iter()
                .any(|known| reason.contains(known)),
                "{reason}"
            );
        }
        other => panic!("unexpected narrative source {other}"),
    }
}
