//! Training jobs: the learning curve streamed over a real WebSocket, only improving changes
//! kept, versioned graders and their diffs, cancel, resume after a killed server, the
//! budget cap, and an LLM job against the real local model.

use std::time::Duration;

use gradelab_tests::restart::KillableServer;
use gradelab_tests::{spawn_app, Subscription, TestApp};
use serde_json::{json, Value};

use crate::answers::{guide_from_items, import_text, saf_subset, split_count};
use crate::llm::real_model_app;

const START: &str =
    "mutation($input: TrainingInput!) { startTraining(input: $input) { id status kind guideId } }";
const ESTIMATE: &str = "query($input: TrainingInput!) { estimateTraining(input: $input) {
    provider model calls promptTokens completionTokens totalTokens costUsd trainAnswers validationAnswers note } }";
const JOB: &str = "query($id: ID!) { job(id: $id) { id status progress error result attempts currentEpoch promptTokens completionTokens costUsd } }";
const GRADERS: &str = "query($guide: ID!) { graders(guideId: $guide) { id name engine guideId
    versions { id version engine model promptHash config jobId validationMetrics { n qwk mae pearson exact within1 } }
    latestVersion { id version } } }";
const EPOCHS: &str = "query($job: ID!) { trainingEpochs(jobId: $job) { epoch kept changeKind change tokens calls seconds bestEpoch
    metrics { n qwk mae pearson spearman exact within1 } } }";

/// A guide made from SAF items, with their answers imported (a quarter of train carved
/// into validation). Returns the guide id.
pub(crate) async fn saf_guide(
    app: &TestApp,
    token: &str,
    items: &[&str],
    per_item: usize,
) -> Value {
    let (items_text, answers) = saf_subset(items, per_item);
    let guide = guide_from_items(app, token, "SAF subset", &items_text).await;
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
    guide
}

fn job_events_subscription(job_id: &Value) -> String {
    format!("subscription {{ jobEvents(jobId: {job_id}) {{ seq kind payload }} }}")
}

/// Every event of a job over the subscription, until its final one.
async fn collect_events(subscription: &mut Subscription, timeout: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no final event within {timeout:?}; got {}",
            summarise(&events)
        );
        let payload = subscription
            .next_data(left.as_secs().max(1))
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "subscription ended early ({err}); got {}",
                    summarise(&events)
                )
            });
        let event = payload["data"]["jobEvents"].clone();
        assert!(event.is_object(), "not an event: {payload}");
        let kind = event["kind"].as_str().unwrap_or_default().to_owned();
        events.push(event);
        if matches!(kind.as_str(), "succeeded" | "failed" | "cancelled") {
            return events;
        }
    }
}

fn summarise(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("{}:{}", e["seq"], e["kind"]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn epochs_of(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "epoch")
        .map(|e| e["payload"].clone())
        .collect()
}

fn metric(v: &Value, name: &str) -> Option<f64> {
    v["metrics"][name].as_f64()
}

/// `a` is better than `b`: QWK higher by more than `a`'s `qwk_noise` (undefined QWK as 0);
/// within it, MAE lower by more than `mae_noise`; within both (or without a noise figure,
/// as with fewer than two validation answers), higher QWK, then lower MAE.
fn better(a: &Value, b: &Value) -> bool {
    let (qa, qb) = (
        metric(a, "qwk").unwrap_or(0.0),
        metric(b, "qwk").unwrap_or(0.0),
    );
    let (ma, mb) = (
        metric(a, "mae").unwrap_or(f64::INFINITY),
        metric(b, "mae").unwrap_or(f64::INFINITY),
    );
    let noise = (a["qwk_noise"].as_f64(), a["mae_noise"].as_f64());
    if let (Some(qwk_noise), Some(mae_noise)) = noise {
        assert!(qwk_noise >= 0.0 && mae_noise >= 0.0, "{a}");
        if (qa - qb).abs() > qwk_noise + 1e-9 {
            return qa > qb;
        }
        if (ma - mb).abs() > mae_noise + 1e-9 {
            return ma < mb;
        }
    }
    if (qa - qb).abs() > 1e-9 {
        return qa > qb;
    }
    ma < mb - 1e-9
}

/// Checks that a change was kept exactly when it beat the best epoch so far; returns the
/// best epoch's record.
fn check_kept_only_improvements(epochs: &[Value]) -> Value {
    let mut best = epochs[0].clone();
    assert_eq!(best["epoch"], 0);
    assert_eq!(best["kept"], true, "epoch 0 is the base grader");
    assert_eq!(
        best["qwk_noise"],
        Value::Null,
        "epoch 0 is compared with nothing"
    );
    for record in &epochs[1..] {
        let improved = better(record, &best);
        assert_eq!(
            record["kept"], improved,
            "kept must mean improved: {record} vs best {best}"
        );
        if improved {
            best = record.clone();
        }
        assert_eq!(record["best_epoch"], best["epoch"]);
    }
    best
}

pub(crate) async fn wait_for_job(
    app: &TestApp,
    token: &str,
    job: &Value,
    timeout: Duration,
) -> Value {
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

#[tokio::test]
async fn similarity_training_streams_epochs_over_a_websocket_and_keeps_only_improvements() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Tina").await;
    let guide = saf_guide(&app, &teacher.token, &["4.13", "6.2_IPP", "12.3_PE"], 60).await;

    let input = json!({ "guideId": guide, "engine": "SIMILARITY", "epochs": 4, "patience": 4, "gradientEpochs": 2, "seed": 1 });
    let estimate = app
        .graphql(Some(&teacher.token), ESTIMATE, json!({ "input": input }))
        .await
        .ok();
    assert_eq!(
        estimate["estimateTraining"]["calls"], 0,
        "the similarity engine makes no model calls"
    );
    assert_eq!(estimate["estimateTraining"]["costUsd"], 0.0);
    assert_eq!(estimate["estimateTraining"]["validationAnswers"], 45);

    let started = app
        .graphql(Some(&teacher.token), START, json!({ "input": input }))
        .await
        .ok();
    let job_id = started["startTraining"]["id"].clone();
    assert_eq!(started["startTraining"]["kind"], "TRAINING");
    let mut subscription = app
        .subscribe(Some(&teacher.token), &job_events_subscription(&job_id))
        .await
        .expect("subscribed");
    let events = collect_events(&mut subscription, Duration::from_secs(300)).await;

    // Every event, in order, with no gap: the log replayed, then live.
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "{}",
        summarise(&events)
    );
    assert_eq!(
        events.last().map(|e| e["kind"].clone()),
        Some(json!("succeeded")),
        "{}",
        summarise(&events)
    );
    assert!(events.iter().any(|e| e["kind"] == "progress"));

    let epochs = epochs_of(&events);
    let numbers: Vec<i64> = epochs.iter().filter_map(|e| e["epoch"].as_i64()).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3, 4], "epoch 0 and four changes");
    for record in &epochs {
        for name in ["qwk", "mae", "pearson", "exact", "within1"] {
            assert!(metric(record, name).is_some(), "{name} in {record}");
        }
        assert_eq!(record["metrics"]["n"], 45);
        assert_eq!(record["tokens"], 0, "no model calls");
        assert!(record["change"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
    }
    let best = check_kept_only_improvements(&epochs);
    for record in &epochs[1..] {
        for noise in ["qwk_noise", "mae_noise"] {
            assert!(
                record[noise].as_f64().is_some_and(|n| n >= 0.0),
                "each change is weighed against the noise of 45 answers: {record}"
            );
        }
    }
    eprintln!(
        "similarity learning curve: {}",
        epochs
            .iter()
            .map(|e| format!(
                "e{} qwk {:.3} mae {:.3} r {:.3} {}",
                e["epoch"],
                metric(e, "qwk").unwrap_or(f64::NAN),
                metric(e, "mae").unwrap_or(f64::NAN),
                metric(e, "pearson").unwrap_or(f64::NAN),
                if e["kept"] == true {
                    "kept"
                } else {
                    "rejected"
                }
            ))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    // The version: config with the regression weights, validation metrics of the best epoch.
    let job = wait_for_job(&app, &teacher.token, &job_id, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["result"]["best_epoch"], best["epoch"]);
    let graders = app
        .graphql(Some(&teacher.token), GRADERS, json!({ "guide": guide }))
        .await
        .ok();
    let grader = &graders["graders"][0];
    assert_eq!(grader["engine"], "SIMILARITY");
    let version = &grader["versions"][0];
    assert_eq!(version["version"], 1);
    assert_eq!(
        version["id"].as_str(),
        Some(job["result"]["grader_version_id"].to_string().as_str())
    );
    assert_eq!(version["jobId"], job_id);
    assert_eq!(version["engine"], "similarity");
    let config = &version["config"];
    assert!(
        config["model"]["graded_item"]["weights"]
            .as_array()
            .is_some_and(|w| w.len() == 13),
        "{config}"
    );
    assert_eq!(
        config["training"]["job_id"].to_string(),
        job_id.as_str().unwrap_or_default()
    );
    assert_eq!(config["seed"], 1);
    assert_eq!(
        config["training"]["training_data_sha256"]
            .as_str()
            .map(str::len),
        Some(64)
    );
    let kept_qwk = version["validationMetrics"]["qwk"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let base_qwk = metric(&epochs[0], "qwk").unwrap_or(0.0);
    assert!(
        kept_qwk >= base_qwk,
        "the final version ({kept_qwk}) is no worse than epoch 0 ({base_qwk})"
    );
    assert_eq!(version["validationMetrics"]["qwk"], best["metrics"]["qwk"]);

    // The learning curve is persisted.
    let curve = app
        .graphql(Some(&teacher.token), EPOCHS, json!({ "job": job_id }))
        .await
        .ok();
    let curve = curve["trainingEpochs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(curve.len(), 5);
    assert_eq!(curve[4]["metrics"]["qwk"], epochs[4]["metrics"]["qwk"]);

    // A second run adds version 2 to the same grader; the two can be diffed.
    let grader_id = grader["id"].clone();
    let again = json!({ "guideId": guide, "engine": "SIMILARITY", "epochs": 1, "gradientEpochs": 3, "seed": 2, "graderId": grader_id });
    let second = app
        .graphql(Some(&teacher.token), START, json!({ "input": again }))
        .await
        .ok();
    let second_job = second["startTraining"]["id"].clone();
    let finished = wait_for_job(&app, &teacher.token, &second_job, Duration::from_secs(120)).await;
    assert_eq!(finished["status"], "SUCCEEDED", "{finished}");
    assert_eq!(finished["result"]["version"], 2);
    let graders = app
        .graphql(Some(&teacher.token), GRADERS, json!({ "guide": guide }))
        .await
        .ok();
    assert_eq!(
        graders["graders"].as_array().map(Vec::len),
        Some(1),
        "no second grader"
    );
    assert_eq!(graders["graders"][0]["latestVersion"]["version"], 2);
    let v1 = graders["graders"][0]["versions"][0]["id"].clone();
    let v2 = graders["graders"][0]["versions"][1]["id"].clone();
    let diff = app
        .graphql(
            Some(&teacher.token),
            "query($a: ID!, $b: ID!) { graderVersionDiff(fromId: $a, toId: $b) { path before after } }",
            json!({ "a": v1, "b": v2 }),
        )
        .await
        .ok();
    let paths: Vec<String> = diff["graderVersionDiff"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["path"].as_str().map(str::to_owned))
        .collect();
    assert!(paths.contains(&"/seed".to_owned()), "{paths:?}");
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/model/graded_item/weights/")),
        "{paths:?}"
    );
    let seed_change = diff["graderVersionDiff"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["path"] == "/seed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (seed_change["before"].clone(), seed_change["after"].clone()),
        (json!(1), json!(2))
    );

    // Another teacher sees none of it.
    let bob = app.sign_up("Bob").await;
    for (query, variables) in [
        (GRADERS, json!({ "guide": guide })),
        (
            "query($id: ID!) { grader(id: $id) { id } }",
            json!({ "id": grader_id }),
        ),
        (
            "query($id: ID!) { graderVersion(id: $id) { id } }",
            json!({ "id": v1 }),
        ),
        (
            "query($a: ID!, $b: ID!) { graderVersionDiff(fromId: $a, toId: $b) { path } }",
            json!({ "a": v1, "b": v2 }),
        ),
        (EPOCHS, json!({ "job": job_id })),
        (START, json!({ "input": input })),
        (ESTIMATE, json!({ "input": input })),
    ] {
        let response = app.graphql(Some(&bob.token), query, variables).await;
        assert_eq!(
            response.error_code(),
            Some("NOT_FOUND"),
            "{query}: {:?}",
            response.errors
        );
    }
}

#[tokio::test]
async fn training_needs_scored_validation_answers() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Val").await;
    let (items, answers) = saf_subset(&["4.13"], 20);
    let guide = guide_from_items(&app, &teacher.token, "No validation", &items).await;
    // Everything in train: nothing to validate on.
    import_text(
        &app,
        &teacher.token,
        &guide,
        &answers,
        json!({ "resplit": true, "fractions": { "train": 1, "validation": 0, "test": 0 } }),
    )
    .await
    .ok();
    let input = json!({ "guideId": guide, "engine": "SIMILARITY" });
    let refused = app
        .graphql(Some(&teacher.token), START, json!({ "input": input }))
        .await;
    assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
    assert!(refused
        .error_message()
        .unwrap_or_default()
        .contains("validation"));
    let jobs = app
        .graphql(
            Some(&teacher.token),
            "{ jobs(kind: TRAINING) { id } }",
            json!({}),
        )
        .await
        .ok();
    assert_eq!(jobs["jobs"], json!([]), "no job was queued");
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_at_the_next_safe_point() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Cy").await;
    let guide = saf_guide(&app, &teacher.token, &["4.13", "6.2_IPP"], 25).await;
    let input = json!({ "guideId": guide, "engine": "SIMILARITY", "epochs": 100, "patience": 100, "gradientEpochs": 1000 });
    let started = app
        .graphql(Some(&teacher.token), START, json!({ "input": input }))
        .await
        .ok();
    let job_id = started["startTraining"]["id"].clone();
    let mut subscription = app
        .subscribe(Some(&teacher.token), &job_events_subscription(&job_id))
        .await
        .expect("subscribed");
    // Wait for the first epoch, then cancel.
    loop {
        let payload = subscription.next_data(120).await.expect("events arrive");
        let event = &payload["data"]["jobEvents"];
        if event["kind"] == "epoch" {
            break;
        }
    }
    let cancelled = app
        .graphql(
            Some(&teacher.token),
            "mutation($id: ID!) { cancelJob(id: $id) { cancelRequested } }",
            json!({ "id": job_id }),
        )
        .await
        .ok();
    assert_eq!(cancelled["cancelJob"]["cancelRequested"], true);
    let log = app
        .graphql(
            Some(&teacher.token),
            "query($id: ID!) { jobEvents(jobId: $id) { seq kind } }",
            json!({ "id": job_id }),
        )
        .await
        .ok();
    let seq_at_cancel = log["jobEvents"]
        .as_array()
        .map_or(0, |events| events.len() as i64);
    let rest = collect_events(&mut subscription, Duration::from_secs(120)).await;
    assert_eq!(
        rest.last().map(|e| e["kind"].clone()),
        Some(json!("cancelled")),
        "{}",
        summarise(&rest)
    );
    let epochs_after_cancel = rest
        .iter()
        .filter(|e| e["kind"] == "epoch" && e["seq"].as_i64().unwrap_or(0) > seq_at_cancel)
        .count();
    assert!(
        epochs_after_cancel <= 1,
        "at most the epoch in flight finishes: {}",
        summarise(&rest)
    );
    let job = wait_for_job(&app, &teacher.token, &job_id, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "CANCELLED");
    assert!(job["currentEpoch"].as_i64().unwrap_or(100) < 100);
    let graders = app
        .graphql(Some(&teacher.token), GRADERS, json!({ "guide": guide }))
        .await
        .ok();
    assert_eq!(
        graders["graders"],
        json!([]),
        "a cancelled job makes no grader"
    );
}

#[tokio::test]
async fn a_job_resumes_after_its_server_is_killed_without_losing_or_repeating_epochs() {
    let data = tempfile::tempdir().expect("data directory");
    let first = KillableServer::start(data.path(), |_| {})
        .await
        .expect("first server starts");
    let token = first.sign_up("Rex").await;
    let (items, answers) = saf_subset(&["4.13", "6.2_IPP"], 30);
    let guide = first
        .graphql(
            Some(&token),
            "mutation($text: String) { createGuideFromItems(title: \"SAF\", text: $text) { id } }",
            json!({ "text": items }),
        )
        .await
        .ok()["createGuideFromItems"]["id"]
        .clone();
    first
        .graphql(
            Some(&token),
            "mutation($g: ID!, $text: String!) { importAnswersText(guideId: $g, text: $text, options: { validationFromTrain: 0.25 }) { imported } }",
            json!({ "g": guide, "text": answers }),
        )
        .await
        .ok();
    const EPOCHS_TOTAL: i64 = 6;
    let input = json!({ "guideId": guide, "engine": "SIMILARITY", "epochs": EPOCHS_TOTAL, "patience": EPOCHS_TOTAL, "gradientEpochs": 1000 });
    let job_id = first
        .graphql(Some(&token), START, json!({ "input": input }))
        .await
        .ok()["startTraining"]["id"]
        .clone();

    // Kill the server once the job has finished an epoch but not the whole run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let killed_after = loop {
        let job = first
            .graphql(Some(&token), JOB, json!({ "id": job_id }))
            .await
            .ok();
        let epoch = job["job"]["currentEpoch"].as_i64();
        assert_ne!(
            job["job"]["status"], "SUCCEEDED",
            "the job finished before the kill; make its epochs slower"
        );
        if epoch.is_some_and(|e| e >= 1) {
            break epoch.unwrap_or_default();
        }
        assert!(tokio::time::Instant::now() < deadline, "no epoch finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.kill();
    eprintln!("killed the first server after epoch {killed_after}");

    // A new server on the same data claims the job once its lease lapses and finishes it.
    let second = KillableServer::start(data.path(), |_| {})
        .await
        .expect("second server starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let job = loop {
        let job = second
            .graphql(Some(&token), JOB, json!({ "id": job_id }))
            .await
            .ok()["job"]
            .clone();
        if matches!(
            job["status"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELLED")
        ) {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was not resumed: {job}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["attempts"], 2, "claimed once by each server");
    let log = second
        .graphql(
            Some(&token),
            "query($id: ID!) { jobEvents(jobId: $id) { seq kind payload } }",
            json!({ "id": job_id }),
        )
        .await
        .ok();
    let events = log["jobEvents"].as_array().cloned().unwrap_or_default();
    let epochs: Vec<i64> = events
        .iter()
        .filter(|e| e["kind"] == "epoch")
        .filter_map(|e| e["payload"]["epoch"].as_i64())
        .collect();
    assert_eq!(
        epochs,
        (0..=EPOCHS_TOTAL).collect::<Vec<_>>(),
        "every epoch once, in order"
    );
    let starts: Vec<&Value> = events.iter().filter(|e| e["kind"] == "started").collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1]["payload"]["resumed"], true);
    assert!(events.iter().any(|e| e["kind"] == "log"
        && e["payload"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("resuming after epoch"))));
    let epoch_records: Vec<Value> = events
        .iter()
        .filter(|e| e["kind"] == "epoch")
        .map(|e| e["payload"].clone())
        .collect();
    check_kept_only_improvements(&epoch_records);
    assert_eq!(job["result"]["epochs_run"], EPOCHS_TOTAL);
    second.kill();
}

/// Two short-answer SAF items: per item, the first 3 train answers go to validation and the
/// next 6 stay in train (exemplar pool and calibration sample).
fn tiny_llm_subset() -> (String, String) {
    let (items, answers) = saf_subset(&["4.3", "2.3_DLL_v1.1"], 9);
    let mut per_item = std::collections::HashMap::new();
    let rows: Vec<String> = answers
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|row| row["split"] == "train")
        .map(|mut row| {
            let n = per_item.entry(row["item_id"].to_string()).or_insert(0);
            *n += 1;
            row["split"] = json!(if *n <= 3 { "validation" } else { "train" });
            row.to_string()
        })
        .collect();
    (items, rows.join("\n"))
}

#[tokio::test]
async fn an_llm_training_job_calibrates_with_the_real_local_model_and_respects_its_budget() {
    let Some(app) = real_model_app().await else {
        return;
    };
    let teacher = app.sign_up("Lou").await;
    let (items, answers) = tiny_llm_subset();
    let guide = guide_from_items(&app, &teacher.token, "SAF, two items", &items).await;
    let imported = import_text(&app, &teacher.token, &guide, &answers, json!({}))
        .await
        .ok();
    assert_eq!(
        split_count(&imported["importAnswersText"]["bySplit"], "VALIDATION"),
        6
    );

    let input = json!({ "guideId": guide, "engine": "LLM", "epochs": 2, "patience": 2, "maxTokens": 96,
        "exemplars": 0, "maxExemplars": 2, "calibrationSample": 4, "seed": 7 });
    let estimate = app
        .graphql(Some(&teacher.token), ESTIMATE, json!({ "input": input }))
        .await
        .ok();
    let estimate = &estimate["estimateTraining"];
    assert_eq!(estimate["calls"], 6 + 2 * 6, "{estimate}");
    assert_eq!(estimate["costUsd"], 0.0, "a local model is free");
    assert!(estimate["promptTokens"].as_i64().unwrap_or(0) > 0);

    let started = app
        .graphql(Some(&teacher.token), START, json!({ "input": input }))
        .await
        .ok();
    let job_id = started["startTraining"]["id"].clone();
    let mut subscription = app
        .subscribe(Some(&teacher.token), &job_events_subscription(&job_id))
        .await
        .expect("subscribed");
    let began = std::time::Instant::now();
    let events = collect_events(&mut subscription, Duration::from_secs(3600)).await;
    let wall = began.elapsed();
    assert_eq!(
        events.last().map(|e| e["kind"].clone()),
        Some(json!("succeeded")),
        "{}",
        summarise(&events)
    );
    let epochs = epochs_of(&events);
    assert_eq!(
        epochs.len(),
        3,
        "epoch 0 and two changes: {}",
        summarise(&events)
    );
    assert_eq!(epochs[0]["change"]["kind"], "base");
    assert_eq!(epochs[1]["change"]["kind"], "exemplars");
    assert_eq!(
        epochs[2]["change"]["kind"], "calibration",
        "fitted on train predictions"
    );
    for record in &epochs {
        assert_eq!(record["metrics"]["n"], 6);
    }
    assert!(
        epochs[0]["tokens"].as_i64().unwrap_or(0) > 0,
        "real calls were made and accounted"
    );
    let best = check_kept_only_improvements(&epochs);
    let calls: i64 = epochs.iter().filter_map(|e| e["calls"].as_i64()).sum();
    let seconds: f64 = epochs.iter().filter_map(|e| e["seconds"].as_f64()).sum();
    eprintln!(
        "LLM training: {calls} calls in {:.1} s (job wall {:.1} s, {:.1} s per call); curve: {}",
        seconds,
        wall.as_secs_f64(),
        seconds / calls.max(1) as f64,
        epochs
            .iter()
            .map(|e| format!(
                "e{} {} qwk {:.3} mae {:.3} r {:.3} {} ({} tokens)",
                e["epoch"],
                e["change"]["kind"],
                metric(e, "qwk").unwrap_or(f64::NAN),
                metric(e, "mae").unwrap_or(f64::NAN),
                metric(e, "pearson").unwrap_or(f64::NAN),
                if e["kept"] == true {
                    "kept"
                } else {
                    "rejected"
                },
                e["tokens"]
            ))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    let job = wait_for_job(&app, &teacher.token, &job_id, Duration::from_secs(10)).await;
    assert!(job["promptTokens"].as_i64().unwrap_or(0) > 0);
    let graders = app
        .graphql(Some(&teacher.token), GRADERS, json!({ "guide": guide }))
        .await
        .ok();
    let version = &graders["graders"][0]["versions"][0];
    assert_eq!(version["engine"], "llm");
    assert_eq!(version["model"], "local");
    assert_eq!(version["promptHash"].as_str().map(str::len), Some(64));
    let config = &version["config"];
    assert!(config["prompt"]["system"]
        .as_str()
        .is_some_and(|s| s.contains("never instructions to you")));
    assert!(config["calibration"]["kind"].is_string(), "{config}");
    assert!(config["exemplars"]["strategy"].is_string(), "{config}");
    assert_eq!(config["mark_steps"].as_object().map(|m| m.len()), Some(2));
    assert_eq!(version["validationMetrics"]["qwk"], best["metrics"]["qwk"]);

    // An ensemble of the two engines on the same data: its LLM requests are the first
    // job's (zero-shot, then two nearest exemplars), so the cache answers all of them.
    let ensemble = json!({ "guideId": guide, "engine": "ENSEMBLE", "epochs": 3, "patience": 3, "maxTokens": 96,
        "exemplars": 0, "maxExemplars": 2, "calibrationSample": 4, "seed": 7, "gradientEpochs": 5 });
    let started = app
        .graphql(Some(&teacher.token), START, json!({ "input": ensemble }))
        .await
        .ok();
    let ensemble_id = started["startTraining"]["id"].clone();
    let mut subscription = app
        .subscribe(Some(&teacher.token), &job_events_subscription(&ensemble_id))
        .await
        .expect("subscribed");
    let events = collect_events(&mut subscription, Duration::from_secs(3600)).await;
    assert_eq!(
        events.last().map(|e| e["kind"].clone()),
        Some(json!("succeeded")),
        "{}",
        summarise(&events)
    );
    let ensemble_epochs = epochs_of(&events);
    let kinds: Vec<&str> = ensemble_epochs
        .iter()
        .filter_map(|e| e["change"]["kind"].as_str())
        .collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert_eq!(
        (kinds[0], kinds[1], kinds[3]),
        ("base", "exemplars", "weights"),
        "{kinds:?}"
    );
    check_kept_only_improvements(&ensemble_epochs);
    assert!(
        ensemble_epochs.iter().all(|e| e["tokens"] == 0),
        "all answered from the cache"
    );
    let job = wait_for_job(&app, &teacher.token, &ensemble_id, Duration::from_secs(10)).await;
    let version = app
        .graphql(
            Some(&teacher.token),
            "query($id: ID!) { graderVersion(id: $id) { engine model config } }",
            json!({ "id": job["result"]["grader_version_id"].to_string() }),
        )
        .await
        .ok();
    let config = &version["graderVersion"]["config"];
    assert_eq!(version["graderVersion"]["engine"], "ensemble");
    let weights = &config["weights"];
    let sum =
        weights["llm"].as_f64().unwrap_or(0.0) + weights["similarity"].as_f64().unwrap_or(0.0);
    assert!((sum - 1.0).abs() < 1e-9, "{weights}");
    eprintln!(
        "ensemble curve: {}; weights {weights}",
        ensemble_epochs
            .iter()
            .map(|e| format!(
                "e{} {} qwk {:.3} mae {:.3} {}",
                e["epoch"],
                e["change"]["kind"],
                metric(e, "qwk").unwrap_or(f64::NAN),
                metric(e, "mae").unwrap_or(f64::NAN),
                if e["kept"] == true {
                    "kept"
                } else {
                    "rejected"
                }
            ))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    // The same job again, but trying one exemplar instead of two, under a budget of half
    // the tokens the first job's epoch 1 spent: epoch 0 repeats the first job's requests,
    // which the LLM cache answers for free; epoch 1's new requests stop on the budget.
    let budget = epochs[1]["tokens"].as_i64().unwrap_or(0) / 2;
    let capped = json!({ "guideId": guide, "engine": "LLM", "epochs": 2, "patience": 2, "maxTokens": 96,
        "exemplars": 0, "maxExemplars": 1, "calibrationSample": 4, "seed": 7, "budgetTokens": budget });
    let started = app
        .graphql(Some(&teacher.token), START, json!({ "input": capped }))
        .await
        .ok();
    let capped_id = started["startTraining"]["id"].clone();
    let mut subscription = app
        .subscribe(Some(&teacher.token), &job_events_subscription(&capped_id))
        .await
        .expect("subscribed");
    let events = collect_events(&mut subscription, Duration::from_secs(3600)).await;
    assert_eq!(
        events.last().map(|e| e["kind"].clone()),
        Some(json!("succeeded")),
        "{}",
        summarise(&events)
    );
    assert!(
        events.iter().any(|e| e["kind"] == "budget_exhausted"),
        "{}",
        summarise(&events)
    );
    let capped_epochs = epochs_of(&events);
    assert_eq!(
        capped_epochs.len(),
        1,
        "only epoch 0 finished: {}",
        summarise(&events)
    );
    assert_eq!(
        capped_epochs[0]["tokens"], 0,
        "epoch 0 was answered from the cache"
    );
    assert_eq!(
        capped_epochs[0]["metrics"], epochs[0]["metrics"],
        "the same grades"
    );
    let job = wait_for_job(&app, &teacher.token, &capped_id, Duration::from_secs(10)).await;
    assert_eq!(job["result"]["stopped"], "budget");
    let spent =
        job["promptTokens"].as_i64().unwrap_or(0) + job["completionTokens"].as_i64().unwrap_or(0);
    assert!(
        spent > 0 && spent <= budget,
        "spent {spent} of a {budget}-token budget"
    );
    eprintln!("budget run: {spent} of {budget} tokens, stopped in epoch 1");
}
