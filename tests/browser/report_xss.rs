//! A report full of XSS payloads — in the guide's title and question, the student answers
//! and references, and an LLM narrative from a canned model — opened from disk in headless
//! Chromium, the way a teacher opens a downloaded report: no dialog, no injected element,
//! the payloads shown as text.

use std::time::Duration;

use fantoccini::Client;
use gradelab_tests::fault_proxy::FaultServer;
use gradelab_tests::{spawn_app_with, TestApp};
use serde_json::{json, Value};

use crate::{browser, gql, screenshot, start_driver, wait_for, wait_job};

const XSS: &str = r#"<script>alert('xss')</script><img src=x onerror="alert(1)"><svg onload=alert(2)></svg><iframe src="javascript:alert(1)"></iframe>"#;

/// A one-item guide and 40 hostile, teacher-scored answers, trained with the similarity
/// engine; returns the training job's id.
async fn hostile_training_job(app: &TestApp, token: &str) -> Value {
    let item = json!({
        "id": "Q1",
        "question": format!("Explain photosynthesis. {XSS}"),
        "reference_answer": "Plants use light energy to turn carbon dioxide and water into glucose and oxygen.",
        "max_score": 2,
    });
    let guide = gql(
        app,
        token,
        "mutation($title: String!, $text: String) { createGuideFromItems(title: $title, text: $text) { id } }",
        json!({ "title": format!("Biology {XSS}"), "text": format!("{item}\n") }),
    )
    .await["createGuideFromItems"]["id"]
        .clone();
    let texts = [
        "Plants use light energy to turn carbon dioxide and water into glucose and oxygen.",
        "Light energy makes glucose from carbon dioxide and water, releasing oxygen.",
        "Plants make food from sunlight.",
        "It is how plants breathe at night.",
        "Photosynthesis happens in chloroplasts using light.",
    ];
    let rows: Vec<String> = (0..40)
        .map(|i| {
            let text = texts[i % texts.len()];
            // Marks that the text does not fully explain: the grader will disagree
            // with some, so hostile answers reach the disagreements table.
            let score = (i % 3) as u32;
            json!({
                "id": format!("s{i}{XSS}"),
                "item_id": "Q1",
                "answer": format!("{XSS} {text} (variant {i})"),
                "score": score,
                "split": if i % 4 == 0 { "validation" } else { "train" },
            })
            .to_string()
        })
        .collect();
    gql(
        app,
        token,
        "mutation($guide: ID!, $text: String!) { importAnswersText(guideId: $guide, text: $text) { imported } }",
        json!({ "guide": guide, "text": rows.join("\n") }),
    )
    .await;
    let job = gql(
        app,
        token,
        "mutation($input: TrainingInput!) { startTraining(input: $input) { id } }",
        json!({ "input": { "guideId": guide, "engine": "SIMILARITY", "epochs": 2, "patience": 2, "seed": 3 } }),
    )
    .await["startTraining"]["id"]
        .clone();
    let finished = wait_job(app, token, &job).await;
    assert_eq!(finished["status"], "SUCCEEDED", "{finished}");
    job
}

async fn count(client: &Client, selector: &str) -> u64 {
    client
        .execute(
            &format!("return document.querySelectorAll({selector:?}).length;"),
            vec![],
        )
        .await
        .expect("script runs")
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn a_report_full_of_xss_payloads_renders_inert_in_chromium() {
    let narrative = json!({
        "executive_summary": format!("Agreement is mixed. {XSS}"),
        "insights": ["<img src=x onerror=\"document.title='pwned'\">Look at the disagreements."],
        "recommendations": ["<script>document.title='pwned'</script>Review the rubric."],
    });
    let canned = FaultServer::canned(narrative.to_string()).await;
    let app = spawn_app_with(|settings| {
        settings.llm.provider = "llamacpp".into();
        settings.llm.base_url = canned.base_url.clone();
        settings.llm.timeout_secs = 5;
        settings.llm.max_retries = 1;
    })
    .await;
    let teacher = app.sign_up("Xavier").await;
    let job = hostile_training_job(&app, &teacher.token).await;
    let report = gql(
        &app,
        &teacher.token,
        "mutation($input: GenerateReportInput!) { generateReport(input: $input) { id narrativeJobId } }",
        json!({ "input": { "jobId": job } }),
    )
    .await["generateReport"]
        .clone();
    let narrative_job = wait_job(&app, &teacher.token, &report["narrativeJobId"]).await;
    assert_eq!(narrative_job["status"], "SUCCEEDED");

    // Downloaded with the teacher's token, saved, opened from disk.
    let response = app
        .client
        .get(format!(
            "{}/reports/{}/download",
            app.base_url,
            report["id"].as_str().unwrap_or("")
        ))
        .bearer_auth(&teacher.token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("report html");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.html");
    std::fs::write(&path, &html).expect("report saved");

    let driver = start_driver().await;
    let client = browser(&driver).await;
    client
        .goto(&format!("file://{}", path.display()))
        .await
        .expect("report opens");
    wait_for(&client, "#headline").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // No dialog opened.
    assert!(
        client.get_alert_text().await.is_err(),
        "an alert dialog appeared"
    );
    // No injected element or handler; the document's own charts are there.
    for selector in [
        "script",
        "img",
        "iframe",
        "object",
        "embed",
        "[onerror]",
        "[onload]",
        "a[href]",
        "svg[onload]",
    ] {
        assert_eq!(count(&client, selector).await, 0, "{selector} was injected");
    }
    assert!(count(&client, "svg.chart").await >= 3, "the charts render");
    assert!(
        count(&client, "#disagreements tbody tr").await >= 1,
        "hostile answers are listed"
    );
    assert!(count(&client, "#learning-curve circle.point").await >= 1);
    let title = client.title().await.expect("title");
    assert!(!title.contains("pwned"), "{title}");
    // The payloads are visible as text, in the narrative (the model's) and the answers.
    let text = client
        .execute("return document.body.innerText;", vec![])
        .await
        .expect("text")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.matches("<script>alert('xss')</script>").count() >= 5,
        "payloads shown as text"
    );
    let fallback = gql(
        &app,
        &teacher.token,
        "query($id: ID!) { report(id: $id) { fallbackReason } }",
        json!({ "id": report["id"] }),
    )
    .await;
    assert!(
        text.contains("Written by the language model"),
        "the canned narrative was accepted: {fallback}"
    );
    assert!(text.contains("Review the rubric."));
    screenshot(&client, "report-xss").await;
    let _ = client
        .execute(
            "document.getElementById('learning-curve').scrollIntoView();",
            vec![],
        )
        .await;
    screenshot(&client, "report-xss-charts").await;
    let _ = client
        .execute(
            "window.scrollTo(0, document.body.scrollHeight * 0.55);",
            vec![],
        )
        .await;
    screenshot(&client, "report-xss-disagreements").await;
    client.close().await.expect("browser closed");
}
