//! A test run whose model cannot grade one answer (a canned endpoint that answers that
//! answer with prose, never a verdict): the run finishes, and its page in the browser
//! names the answer that was left out and why.

use std::time::{Duration, Instant};

use gradelab_tests::fault_proxy::{Fault, FaultServer};
use gradelab_tests::{spawn_app_with_canned_llm, TestApp};
use serde_json::{json, Value};

use crate::{browser, gql, screenshot, start_driver, wait_for, wait_job};

/// A verdict in the shape of the grading prompt's schema for an item without criteria.
const VERDICT: &str =
    r#"{"criteria":[],"score":1,"feedback":"Canned feedback.","rationale":"Canned rationale."}"#;

/// The answer the endpoint will not grade.
const ODD_ANSWER: &str = "Zebra crossings are where chlorophyll waits for the bus.";

/// Waits for job `id` and checks it succeeded.
async fn finished_job(app: &TestApp, token: &str, id: &Value) -> Value {
    let job = wait_job(app, token, id).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    job
}

#[tokio::test]
async fn a_run_page_names_the_answer_its_grader_could_not_grade_and_why() {
    let endpoint = FaultServer::canned(VERDICT).await;
    endpoint.on_body_containing(ODD_ANSWER, Fault::Content("I would rather not say.".into()));
    let app = spawn_app_with_canned_llm(&endpoint.base_url).await;
    let teacher = app.sign_up("Rita").await;
    let token = teacher.token.as_str();

    let item = json!({ "id": "Q1", "question": "Explain photosynthesis.", "max_score": 2,
        "reference_answer": "Plants use light to turn carbon dioxide and water into glucose and oxygen." });
    let guide = gql(
        &app,
        token,
        "mutation($title: String!, $text: String) { createGuideFromItems(title: $title, text: $text) { id } }",
        json!({ "title": "Biology", "text": format!("{item}\n") }),
    )
    .await["createGuideFromItems"]["id"]
        .clone();
    let mut rows: Vec<String> = (0..9)
        .map(|i| {
            let split = match i % 3 {
                0 => "validation",
                1 => "train",
                _ => "test",
            };
            json!({ "id": format!("s{i}"), "item_id": "Q1", "score": i % 3,
                "answer": format!("Plants make glucose from light, answer {i}."), "split": split })
            .to_string()
        })
        .collect();
    rows.push(
        json!({ "id": "odd-1", "item_id": "Q1", "score": 0, "answer": ODD_ANSWER, "split": "test" })
            .to_string(),
    );
    let imported = gql(
        &app,
        token,
        "mutation($guide: ID!, $text: String!) { importAnswersText(guideId: $guide, text: $text) { imported } }",
        json!({ "guide": guide, "text": rows.join("\n") }),
    )
    .await;
    assert_eq!(imported["importAnswersText"]["imported"], 10, "{imported}");

    let training = gql(
        &app,
        token,
        "mutation($input: TrainingInput!) { startTraining(input: $input) { id } }",
        json!({ "input": { "guideId": guide, "engine": "LLM", "epochs": 0, "patience": 1,
            "exemplars": 0, "validationLimit": 1, "seed": 3 } }),
    )
    .await["startTraining"]["id"]
        .clone();
    let version = finished_job(&app, token, &training).await["result"]["grader_version_id"].clone();
    let run = gql(
        &app,
        token,
        "mutation($input: TestRunInput!) { startTestRun(input: $input) { id jobId } }",
        json!({ "input": { "graderVersionId": version } }),
    )
    .await["startTestRun"]
        .clone();
    finished_job(&app, token, &run["jobId"]).await;

    let driver = start_driver().await;
    let client = browser(&driver).await;
    let base = &app.base_url;
    client.goto(base).await.expect("the app loads");
    client
        .execute(
            "localStorage.setItem('gradelab.token', arguments[0]);",
            vec![json!(token)],
        )
        .await
        .expect("the session is stored");
    let page = format!(
        "{base}/test-runs/{}",
        run["id"].as_str().unwrap_or_default()
    );
    client.goto(&page).await.expect("the run's page loads");
    let notice = wait_for(&client, "[data-testid=ungraded]").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = notice.text().await.unwrap_or_default();
        if text.contains("odd-1") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    screenshot(&client, "test-run-ungraded").await;
    assert!(
        text.contains("1 answer could not be graded and is left out of these figures"),
        "{text}"
    );
    assert!(
        text.contains("odd-1, question Q1") && text.contains("not valid"),
        "the answer and the reason: {text}"
    );
    let metrics = wait_for(&client, "[data-testid=test-metrics]")
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(metrics.contains("3 answers compared"), "{metrics}");
    let _ = client.close().await;
}
